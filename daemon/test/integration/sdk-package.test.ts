import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, poll, sh, startWithProject, tempDir } from '../helpers/daemon.js';

const run = promisify(execFile);
const SDK_DIR = join(REPO_ROOT, 'client-sdk');

/**
 * `npm pack` gives a tarball that installs on its own (SDK only, --omit=optional) and whose README
 * example runs against a real berthd.
 */
describe('the SDK as a package', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('npm pack installs without the CLI libraries, and the README example runs against berthd', async () => {
    const out = await tempDir('bt-pack-');
    dirs.push(out);
    const packed = JSON.parse((await run('npm', ['pack', '--json', '--pack-destination', out], { cwd: SDK_DIR })).stdout) as { filename: string; files: { path: string }[] }[];
    const files = packed[0]!.files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['README.md', 'package.json', 'bin/berth.js', 'dist/index.js', 'dist/index.d.ts', 'dist/client.js']));
    expect(files.filter((f) => f.startsWith('src/') || f.includes('.test.'))).toEqual([]);

    const app = join(out, 'app');
    await run('mkdir', ['-p', app]);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'plugin', private: true, type: 'module' }));
    await run('npm', ['install', '--omit=optional', '--no-audit', '--no-fund', '--prefer-offline', join(out, packed[0]!.filename)], { cwd: app, timeout: 180_000 });
    expect(existsSync(join(app, 'node_modules/@berth/client-sdk/dist/index.js'))).toBe(true);
    expect(existsSync(join(app, 'node_modules/commander'))).toBe(false);
    expect(existsSync(join(app, 'node_modules/cli-progress'))).toBe(false);

    const readme = readFileSync(join(SDK_DIR, 'README.md'), 'utf8');
    const example = /## A plugin in 15 lines\s+```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeTruthy();
    await writeFile(join(app, 'example.mjs'), example!);

    const { d } = await startWithProject();
    await using _ = d;
    await d.client.agents.define({ name: 'brief', command: sh('echo hi'), restartPolicy: 'never' });
    const s = await d.client.sessions.start({ project: 'web', agent: 'brief' });
    await poll(async () => (await d.client.sessions.get({ id: s.id })).state === 'exited', 60_000, 'the session to exit');
    const r = await run(process.execPath, ['example.mjs'], { cwd: app, env: { ...process.env, BERTH_SOCKET: d.socket }, timeout: 120_000 });
    expect(r.stdout).toContain('berthd: connected');
    expect(r.stdout).toContain('done: exited');
  });
});
