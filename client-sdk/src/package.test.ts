import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = (p: string) => fileURLToPath(new URL(`../dist/${p}`, import.meta.url));

/** Imports `file` in a fresh node whose loader refuses commander and cli-progress; the exit status and stderr. */
function importRefusingCli(file: string): { status: number | null; stderr: string } {
  const hooks = `export async function resolve(s, c, next) { if (/^(commander|cli-progress)$/.test(s)) throw new Error('CLI dependency loaded: ' + s); return next(s, c); }`;
  const register = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));`;
  const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '-e', `await import(${JSON.stringify(file)});`], {
    encoding: 'utf8',
  });
  return { status: r.status, stderr: r.stderr };
}

describe('the SDK package', () => {
  it('its entry loads nothing of the CLI (commander, cli-progress), which the CLI alone needs', () => {
    expect(importRefusingCli(dist('index.js'))).toMatchObject({ status: 0 });
    // The check bites: the CLI does load them.
    const cli = importRefusingCli(dist('cli/index.js'));
    expect(cli.status).not.toBe(0);
    expect(cli.stderr).toMatch(/CLI dependency loaded: (commander|cli-progress)/);
  });

  it('declares the CLI\'s libraries optional and the SDK\'s only runtime dependency as required', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as Record<string, Record<string, string>>;
    expect(Object.keys(pkg.dependencies!)).toEqual(['json-rpc-2.0']);
    expect(Object.keys(pkg.optionalDependencies!).sort()).toEqual(['cli-progress', 'commander']);
  });
});
