// Rewrites the error table in README.md from the registry (client-sdk/src/protocol/errors.ts).
// Run after `npm run build`: node scripts/gen-error-table.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import { renderErrorTable } from '../client-sdk/dist/protocol/index.js';

const file = new URL('../README.md', import.meta.url);
const text = readFileSync(file, 'utf8');
const start = '<!-- errors:start -->';
const end = '<!-- errors:end -->';
const a = text.indexOf(start);
const b = text.indexOf(end);
if (a < 0 || b < a) throw new Error('README.md lacks the errors:start / errors:end markers');
writeFileSync(file, `${text.slice(0, a + start.length)}\n${renderErrorTable()}\n${text.slice(b)}`);
console.log('README.md error table updated');
