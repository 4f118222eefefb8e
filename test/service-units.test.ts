import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const root = new URL('../', import.meta.url).pathname;

// Keys newer than Debian 12's systemd (252): older managers ignore them, newer ones use them.
const NEWER_KEYS = /Unknown key '(RestartSteps|RestartMaxDelaySec)'/;

async function verify(unit: string, user: boolean): Promise<string[]> {
  const xdg = await mkdtemp(join(tmpdir(), 'bt-xdg-'));
  try {
    const args = ['verify', ...(user ? ['--user'] : []), unit];
    const r = await exec('systemd-analyze', args, { env: { ...process.env, XDG_RUNTIME_DIR: xdg } }).catch(
      (e: { stdout: string; stderr: string; code: number }) => {
        throw new Error(`systemd-analyze verify exited ${e.code}:\n${e.stderr}${e.stdout}`);
      },
    );
    return `${r.stdout}${r.stderr}`
      .split('\n')
      .filter((l) => l.trim() && !NEWER_KEYS.test(l));
  } finally {
    await rm(xdg, { recursive: true, force: true });
  }
}

describe('service units', () => {
  it('systemd system unit passes systemd-analyze verify and says what the issue asks', async () => {
    const unit = join(root, 'systemd/berthd.service');
    expect(await verify(unit, false)).toEqual([]);
    const text = await readFile(unit, 'utf8');
    for (const line of [
      'After=docker.service network-online.target',
      'User=berth',
      'SupplementaryGroups=docker',
      'Environment=BERTH_HOME=/var/lib/berth',
      'Environment=BERTH_SOCKET=/run/berth/berth.sock',
      'RuntimeDirectoryMode=0700',
      'Restart=on-failure',
      'KillMode=process',
    ]) {
      expect(text.split('\n')).toContain(line);
    }
  });

  it('systemd user unit passes systemd-analyze verify --user', async () => {
    expect(await verify(join(root, 'systemd/berthd-user.service'), true)).toEqual([]);
  });

  it('verify really catches mistakes (the check can fail)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bt-unit-'));
    try {
      const bad = join(dir, 'bad.service');
      const text = (await readFile(join(root, 'systemd/berthd.service'), 'utf8')).replace('Restart=on-failure', 'Restart=sometimes');
      await (await import('node:fs/promises')).writeFile(bad, text);
      expect((await verify(bad, false)).join('\n')).toMatch(/restart specifier/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('launchd plist parses as a valid plist with RunAtLoad, KeepAlive and log paths', async () => {
    const script = [
      'import plistlib, json, sys',
      'with open(sys.argv[1], "rb") as f: d = plistlib.load(f, fmt=plistlib.FMT_XML)',
      'print(json.dumps(d))',
    ].join('\n');
    const { stdout } = await exec('python3', ['-c', script, join(root, 'launchd/dev.berth.berthd.plist')]);
    const plist = JSON.parse(stdout) as Record<string, unknown>;
    expect(plist).toMatchObject({
      Label: 'dev.berth.berthd',
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      StandardOutPath: expect.stringMatching(/berthd\.log$/),
      StandardErrorPath: expect.stringMatching(/berthd\.err\.log$/),
    });
    expect((plist.ProgramArguments as string[])[1]).toMatch(/daemon\/bin\/berthd\.js$/);
  });
});
