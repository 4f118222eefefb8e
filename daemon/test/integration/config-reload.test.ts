import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BerthEvent, HealthReport } from '@berth/client-sdk';
import { getJson, poll, sh, startDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

/** Events of `d` (from its start: the buffer is replayed), collected until stop(); resolves once the stream is open. */
async function collect(d: DaemonProcess): Promise<{ events: BerthEvent[]; stop: () => void }> {
  const events: BerthEvent[] = [];
  const ctl = new AbortController();
  void (async () => {
    try {
      for await (const e of d.client.events({ signal: ctl.signal, since: 0 })) if (e.type !== 'gap') events.push(e);
    } catch {
      // aborted, or the daemon stopped
    }
  })();
  await poll(async () => events.some((e) => e.type === 'daemon.started'), 60_000, 'the event stream');
  return { events, stop: () => ctl.abort() };
}

type Of<T extends BerthEvent['type']> = Extract<BerthEvent, { type: T }>;
const find = <T extends BerthEvent['type']>(events: BerthEvent[], type: T, pred: (e: Of<T>) => boolean = () => true) =>
  events.find((e): e is Of<T> => e.type === type && pred(e as Of<T>));

/** Writes like an editor that saves by rename: a temp file moved over the old one. */
async function save(file: string, text: string, mode = 0o644): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, file);
}

const health = async (d: DaemonProcess) => (await getJson(d.socket, '/health')) as { status: number; body: HealthReport };
const configCheck = async (d: DaemonProcess) => (await health(d)).body.checks.find((c) => c.name === 'config');

describe('config reloaded live', () => {
  it('a logLevel edit applies at once; a socket edit says it needs a restart; an invalid edit is refused, reported and picked up when fixed', async () => {
    const { tempDir } = await import('../helpers/daemon.js');
    const home = await tempDir();
    const file = join(home, 'config.yaml');
    await writeFile(file, 'logLevel: info\nresyncSec: 30\n');
    await using d = await startDaemon({ home, ownsHome: true });
    const { events, stop } = await collect(d);
    try {
      expect((await configCheck(d))?.ok).toBe(true);

      // A live key: applied, logged by key, evented. debug lines appear from then on.
      await save(file, 'logLevel: debug\nresyncSec: 5\n');
      const changed = await poll(async () => find(events, 'config.changed', (e) => e.data.keys.includes('logLevel')), 60_000, 'config.changed for logLevel');
      expect(changed.data.keys.sort()).toEqual(['logLevel', 'resyncSec']);
      expect(changed.data.restartNeeded).toEqual([]);
      await d.waitForLog('"msg":"Applied logLevel"', 60_000);
      await d.waitForLog('"msg":"Applied resyncSec"', 60_000);
      expect((await d.client.daemon.status()).config).toMatchObject({ logLevel: 'debug', resyncSec: 5 });
      await d.waitForLog('"level":20', 60_000);

      // A restart key: reported, not applied.
      const socket = (await d.client.daemon.status()).socket;
      await save(file, `logLevel: debug\nresyncSec: 5\nsocket: ${join(home, 'other.sock')}\n`);
      const restart = await poll(async () => find(events, 'config.changed', (e) => e.data.restartNeeded.includes('socket')), 60_000, 'restart needed for socket');
      expect(restart.data.keys).toEqual([]);
      await d.waitForLog('socket changed: needs a restart to apply', 60_000);
      expect((await d.client.daemon.status()).socket).toBe(socket);

      // An invalid value: refused with the key, shown on /health (a warning: still 200), old value governs.
      await save(file, 'logLevel: loud\nresyncSec: 5\n');
      const invalid = await poll(async () => find(events, 'config.invalid'), 60_000, 'config.invalid');
      expect(invalid.data.key).toBe('logLevel');
      const h = await health(d);
      expect(h.status).toBe(200);
      expect(h.body.status).toBe('ok');
      expect(h.body.checks.find((c) => c.name === 'config')).toMatchObject({ ok: false, warning: true });
      expect(h.body.checks.find((c) => c.name === 'config')!.detail).toContain('logLevel');
      expect((await d.client.daemon.status()).config.logLevel).toBe('debug');

      // Fixed: picked up, health clear. An unknown key is invalid too, named.
      await save(file, 'logLevel: warn\nresyncSec: 5\nresyncSeconds: 3\n');
      await poll(async () => events.filter((e) => e.type === 'config.invalid').length >= 2, 60_000, 'second config.invalid');
      expect((events.filter((e) => e.type === 'config.invalid').at(-1) as Of<'config.invalid'>).data.key).toBe('resyncSeconds');
      await save(file, 'logLevel: warn\nresyncSec: 5\n');
      await poll(async () => find(events, 'config.changed', (e) => e.data.keys.includes('logLevel') && e.data !== changed.data), 60_000, 'the fix applied');
      await poll(async () => (await configCheck(d))?.ok === true, 60_000, 'the config check clear');
      expect((await d.client.daemon.status()).config.logLevel).toBe('warn');
    } finally {
      stop();
    }
  }, 240_000);

  it('a key set by the environment is not changed by a file edit, and the log says why', async () => {
    const { tempDir } = await import('../helpers/daemon.js');
    const home = await tempDir();
    const file = join(home, 'config.yaml');
    await writeFile(file, 'agentPidsLimit: 100\n');
    await using d = await startDaemon({ home, ownsHome: true, env: { AGENT_PIDS_LIMIT: '200' } });
    await d.waitForLog('Watching the config files', 60_000);
    await save(file, 'agentPidsLimit: 300\n');
    await d.waitForLog('agentPidsLimit changed in', 60_000);
    expect(d.output).toContain('AGENT_PIDS_LIMIT sets it');
    expect((await d.client.daemon.status()).config.agentPidsLimit).toBe(200);
  }, 120_000);

  it('a config.yaml deleted and re-created is picked up, and so is an edit of the target of a symlinked one', async () => {
    const { tempDir } = await import('../helpers/daemon.js');
    const { mkdir, rm, symlink } = await import('node:fs/promises');
    const home = await tempDir();
    const file = join(home, 'config.yaml');
    await writeFile(file, 'agentCpuLimit: 1\n');
    await using d = await startDaemon({ home, ownsHome: true });
    const { events, stop } = await collect(d);
    try {
      await rm(file);
      await writeFile(file, 'agentCpuLimit: 1.5\n');
      await poll(async () => find(events, 'config.changed', (e) => e.data.keys.includes('agentCpuLimit')), 60_000, 'agentCpuLimit applied');
      expect((await d.client.daemon.status()).config.agentCpuLimit).toBe(1.5);

      await mkdir(join(home, 'dotfiles'));
      const target = join(home, 'dotfiles', 'berth.yaml');
      await writeFile(target, 'agentCpuLimit: 1.5\nagentPidsLimit: 64\n');
      await rm(file);
      await symlink(target, file);
      await poll(async () => find(events, 'config.changed', (e) => e.data.keys.includes('agentPidsLimit')), 60_000, 'the link swapped in');
      await writeFile(target, 'agentCpuLimit: 1.5\nagentPidsLimit: 96\n');
      await poll(async () => (await d.client.daemon.status()).config.agentPidsLimit === 96, 60_000, 'the edit of the target applied');
    } finally {
      stop();
    }
  }, 120_000);

  it('with configWatch: false only SIGHUP reads the files again', async () => {
    const { tempDir } = await import('../helpers/daemon.js');
    const home = await tempDir();
    const file = join(home, 'config.yaml');
    await writeFile(file, 'configWatch: false\nagentCpuLimit: 1\n');
    await using d = await startDaemon({ home, ownsHome: true });
    await d.waitForLog('Config files not watched', 60_000);
    const { events, stop } = await collect(d);
    try {
      // Nothing changed: a SIGHUP reloads quietly and berthd keeps running (SIGHUP's default would end it).
      d.proc.kill('SIGHUP');
      expect((await d.client.daemon.status()).pid).toBe(d.pid);

      await save(file, 'configWatch: false\nagentCpuLimit: 1.5\n');
      d.proc.kill('SIGHUP');
      const hup = await poll(async () => find(events, 'config.changed', (e) => e.data.keys.includes('agentCpuLimit')), 60_000, 'agentCpuLimit applied');
      expect(hup.data.trigger).toBe('SIGHUP');
      expect((await d.client.daemon.status()).config.agentCpuLimit).toBe(1.5);
      expect(d.exitCode).toBeNull();
    } finally {
      stop();
    }
  }, 120_000);

  it('berth config reload (daemon.reloadConfig) applies now and answers what changed; an invalid file fails with CONFIG_INVALID naming the key', async () => {
    const { tempDir, BERTH_BIN } = await import('../helpers/daemon.js');
    const { execFile } = await import('node:child_process');
    const home = await tempDir();
    // Not watched, so that no file watch races the command: only the reload asked for reads the edit.
    const target = join(home, 'config.yaml');
    await writeFile(target, 'configWatch: false\nagentPidsLimit: 100\n');
    await using d = await startDaemon({ home, ownsHome: true });
    const berth = (...args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((res) =>
        execFile(process.execPath, [BERTH_BIN, '--socket', d.socket, ...args], { env: { PATH: process.env.PATH, HOME: home } }, (err, stdout, stderr) =>
          res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        ),
      );

    await writeFile(target, 'configWatch: false\nagentPidsLimit: 128\nlogLevel: debug\n');
    const r = await berth('--json', 'config', 'reload');
    expect(r.code).toBe(0);
    const change = JSON.parse(r.stdout) as { trigger: string; keys: string[]; restartNeeded: string[] };
    expect(change.trigger).toBe('rpc');
    expect(change.keys.sort()).toEqual(['agentPidsLimit', 'logLevel']);
    expect((await d.client.daemon.status()).config.agentPidsLimit).toBe(128);

    await writeFile(target, 'configWatch: false\nagentPidsLimit: 8\n');
    const bad = await berth('config', 'reload');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('CONFIG_INVALID');
    expect(bad.stderr).toContain('agentPidsLimit');
    const err = (await d.client.daemon.reloadConfig().catch((e: unknown) => e)) as { code: string; details?: { key?: string } };
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.details?.key).toBe('agentPidsLimit');
    expect((await d.client.daemon.status()).config.agentPidsLimit).toBe(128);
    const status = await berth('status');
    expect(status.stdout).toMatch(/WARN config: agentPidsLimit/);
  }, 120_000);

  it('a secrets.yaml change reaches new sessions; a running one keeps its value; names are logged, never values', async () => {
    const { d } = await startWithProject();
    await using _ = d;
    const { events, stop } = await collect(d);
    try {
      const secrets = join(d.home, 'secrets.yaml');
      await writeFile(secrets, 'token: first-value-1111\n', { mode: 0o600 });
      await d.client.agents.define({ name: 'keyed', command: sh('sleep 3600'), secrets: { TOKEN: 'token' } });
      const old = await d.client.sessions.start({ project: 'web', agent: 'keyed' });
      expect((await d.client.sessions.exec({ id: old.id, cmd: sh('echo "$TOKEN"') })).stdout).toBe('first-value-1111\n');

      await save(secrets, 'token: second-value-2222\n', 0o600);
      const changed = await poll(async () => find(events, 'config.changed', (e) => e.data.secrets.includes('token')), 60_000, 'the secrets change');
      expect(changed.data.keys).toEqual([]);
      const fresh = await d.client.sessions.start({ project: 'web', agent: 'keyed' });
      expect((await d.client.sessions.exec({ id: fresh.id, cmd: sh('echo "$TOKEN"') })).stdout).toBe('second-value-2222\n');
      expect((await d.client.sessions.exec({ id: old.id, cmd: sh('echo "$TOKEN"') })).stdout).toBe('first-value-1111\n');
      expect(d.output).toContain('Secrets changed');
      expect(d.output).not.toContain('second-value-2222');
      expect(d.output).not.toContain('first-value-1111');
      expect(JSON.stringify(events)).not.toContain('second-value-2222');

      // A secrets.yaml berthd cannot parse is refused like a bad config edit, named by its file.
      await save(secrets, 'token: [unclosed\n', 0o600);
      const invalid = await poll(async () => find(events, 'config.invalid', (e) => e.data.key === 'secrets.yaml'), 60_000, 'secrets.yaml refused');
      expect(invalid.data.message).not.toContain('second-value-2222');
    } finally {
      stop();
    }
  }, 240_000);

  it('a config.yaml that is a FIFO or huge does not hang berthd: refused, reported, and the daemon answers', async () => {
    const { tempDir } = await import('../helpers/daemon.js');
    const home = await tempDir();
    const file = join(home, 'config.yaml');
    await writeFile(file, 'logLevel: info\n');
    await using d = await startDaemon({ home, ownsHome: true });
    const { events, stop } = await collect(d);
    try {
      await d.client.daemon.status();
      const { rm } = await import('node:fs/promises');
      const { execFileSync } = await import('node:child_process');
      await rm(file);
      execFileSync('mkfifo', [file]);
      await poll(async () => find(events, 'config.invalid', (e) => /not a regular file/.test(e.data.message)), 60_000, 'the FIFO refused');
      expect((await d.client.daemon.status()).config.logLevel).toBe('info');
      await rm(file);
      await writeFile(file, `# ${'x'.repeat(2 * 1024 * 1024)}\n`);
      await poll(async () => find(events, 'config.invalid', (e) => /limit/.test(e.data.message)), 60_000, 'the huge file refused');
      expect((await configCheck(d))?.ok).toBe(false);
    } finally {
      stop();
    }
  }, 120_000);
});
