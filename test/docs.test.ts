import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configKeys } from '../daemon/src/config/index.js';
import { errorCodes, methodNames, renderErrorTable } from '../client-sdk/src/protocol/index.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README stays in sync with the code', () => {
  it('error table equals the registry (regenerate: npm run docs:errors)', () => {
    const m = /<!-- errors:start -->\n([\s\S]*?)\n<!-- errors:end -->/.exec(readme);
    expect(m, 'README lacks the error table markers').not.toBeNull();
    expect(m![1]).toBe(renderErrorTable());
    expect(errorCodes.length).toBeGreaterThan(10);
  });

  it('documents every RPC method', () => {
    for (const m of methodNames) expect(readme, m).toContain(`\`${m}\``);
  });

  it('documents every configuration key by its environment name and file key', () => {
    for (const [key, env] of Object.entries(configKeys)) {
      expect(readme, env).toContain(`\`${env}\``);
      expect(readme, key).toContain(`\`${key}\``);
    }
    expect(readme).toContain('`BERTH_HOME`');
  });
});
