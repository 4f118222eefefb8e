import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError } from '@berth/client-sdk';
import { describe, expect, it } from 'vitest';
import { docker } from '../helpers/docker.js';
import { BERTHD_BIN, BERTH_BIN, poll, sh, startDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const exec = promisify(execFile);

/** Runs a CLI (berth or berthd) to its end: exit code and output, never a throw. */
async function run(bin: string, args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const berth = (d: DaemonProcess, ...args: string[]) => run(BERTH_BIN, ['--socket', d.socket, ...args], { HOME: d.home });
const berthd = (home: string, ...args: string[]) => run(BERTHD_BIN, args, { HOME: home, BERTH_HOME: home });

const inspect = async (id: string) =>
  JSON.parse(await docker('inspect', id))[0] as { Id: string; State: { Running: boolean; StartedAt: string }; RestartCount: number };

describe('maintenance on the real engine', () => {
  it('backup while sessions run, restore with berthd stopped: the backup\'s sessions are adopted (same containers, never restarted), later ones kept running', async () => {
    // A short orphan grace: without the restore guard, the later session's container would be swept within seconds.
    const env = { BERTH_RESYNC_SEC: '2', BERTH_ORPHAN_GRACE_SEC: '2' };
    const { d: first } = await startWithProject({ env });
    let d2: DaemonProcess | null = null;
    try {
      const c = first.client;
      await c.agents.define({ name: 'coder', command: sh('sleep 3600') });
      const s1 = await c.sessions.start({ project: 'web', agent: 'coder', name: 'one' });
      const s2 = await c.sessions.start({ project: 'web', agent: 'coder', name: 'two', mode: 'read' });
      const before = { [s1.id]: await inspect(s1.containerId!), [s2.id]: await inspect(s2.containerId!) };

      const b = await berth(first, 'backup');
      expect(b.code, b.stderr).toBe(0);
      const backup = b.stdout.trim();
      expect(backup).toMatch(new RegExp(`^${first.home}/backups/berth-\\d{8}T\\d{9}Z\\.db$`));

      // After the backup: a session and an agent the backup does not have.
      const later = await c.sessions.start({ project: 'web', agent: 'coder', name: 'later' });
      await c.agents.define({ name: 'newer', command: sh('true') });

      // Refused while berthd runs, by berthd and by the CLI; nothing is changed.
      const refused = await berthd(first.home, '--restore', backup);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('RESTORE_DAEMON_RUNNING');
      const cliRefused = await berth(first, 'restore', backup);
      expect(cliRefused.code).toBe(1);
      expect(cliRefused.stderr).toContain('error[RESTORE_DAEMON_RUNNING]');
      expect((await c.agents.list()).map((a) => a.name)).toContain('newer');

      expect(await first.stop()).toBe(0);
      // With berthd stopped the CLI runs `berthd --restore` (BERTHD names it here: not on PATH in tests).
      const restored = await run(BERTH_BIN, ['--socket', first.socket, 'restore', backup], { HOME: first.home, BERTH_HOME: first.home, BERTHD: BERTHD_BIN });
      expect(restored.code, restored.stderr).toBe(0);
      expect(restored.stdout).toContain('berth.db.before-restore-');

      d2 = await startDaemon({ home: first.home, env });
      const c2 = d2.client;
      // The db content is the backup's.
      expect((await c2.agents.list()).map((a) => a.name)).toEqual(['coder']);
      const items = (await c2.sessions.list({ limit: 100 })).items;
      expect(items.map((s) => s.name).sort()).toEqual(['one', 'two']);
      for (const s of [s1, s2]) {
        const got = await poll(async () => {
          const x = await c2.sessions.get({ id: s.id });
          return x.state === 'running' ? x : null;
        }, 120_000, `${s.name} adopted`);
        expect(got.containerId).toBe(s.containerId);
        const now = await inspect(s.containerId!);
        expect(now.State.Running).toBe(true);
        expect(now.State.StartedAt).toBe(before[s.id]!.State.StartedAt);
        expect(now.RestartCount).toBe(0);
      }

      // The later session's container is kept (logged), while orphans that appear now are still swept.
      await d2.waitForLog('the restored database does not know', 120_000);
      const stray = await docker('run', '-d', '--label', 'dev.berth.managed=true', '--label', `dev.berth.instance=${first.instanceId}`, '--label', 'dev.berth.session=stray', 'berth-test-busybox:latest', 'sleep', '3600');
      await poll(async () => !(await docker('ps', '-aq', '--filter', `id=${stray}`)), 120_000, 'the new orphan swept');
      expect((await inspect(later.containerId!)).State.Running).toBe(true);
    } finally {
      await d2?.stop().catch(() => {});
      await first[Symbol.asyncDispose]();
    }
  });

  it('maintenance run images removes a dangling image berth built, never a user\'s, another berthd\'s or one in use; status shows runs and disk use', async () => {
    const { d } = await startWithProject();
    const tag = `berth-test-maint-${Date.now().toString(36)}`;
    const ids: string[] = [];
    try {
      const dir = join(d.home, 'build');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'Dockerfile'), 'FROM berth-test-busybox:latest\nARG N\nLABEL n=$N\n');
      const build = async (name: string, n: string) => {
        const r = await d.client.images.build({ name, dockerfile: join(dir, 'Dockerfile'), buildArgs: { N: n } });
        ids.push(r.id);
        return r.id;
      };
      // Built by berth, then rebuilt: the first is dangling.
      const dangling = await build(`${tag}:x`, '1');
      await build(`${tag}:x`, '2');
      // Built by berth, run by a session, then rebuilt: dangling but in use.
      const used = await build(`${tag}:used`, 'u1');
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600'), image: `${tag}:used` });
      const s = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'user-of-image' });
      await build(`${tag}:used`, 'u2');
      // The user's own, and one labelled as another berthd's, each made dangling the same way.
      const cliBuild = async (name: string, labels: string[], n: string) => {
        const r = await exec('docker', ['build', '-q', '-t', name, '--build-arg', `N=${n}`, ...labels.flatMap((l) => ['--label', l]), dir], { env: { ...process.env, DOCKER_BUILDKIT: '0' } });
        ids.push(r.stdout.trim());
        return r.stdout.trim();
      };
      const user = await cliBuild(`${tag}:user`, [], 'a');
      await cliBuild(`${tag}:user`, [], 'b');
      const other = await cliBuild(`${tag}:other`, ['dev.berth.image=true', 'dev.berth.instance=000000000000'], 'a');
      await cliBuild(`${tag}:other`, ['dev.berth.image=true', 'dev.berth.instance=000000000000'], 'b');

      const r = await berth(d, '--json', 'maintenance', 'run', 'images');
      expect(r.code, r.stderr).toBe(0);
      const ran = JSON.parse(r.stdout) as { ok: boolean; summary: { removed: number; images: string[] } };
      expect(ran.ok).toBe(true);
      expect(ran.summary.images).toEqual([dangling]);
      const exists = (id: string) => docker('image', 'inspect', id).then(() => true, () => false);
      expect(await exists(dangling)).toBe(false);
      for (const id of [used, user, other]) expect(await exists(id)).toBe(true);
      expect((await d.client.sessions.get({ id: s.id })).state).toBe('running');

      // Unknown job: a clear error listing the jobs.
      const unknown = await d.client.maintenance.run({ job: 'nope' }).catch((e: unknown) => e as BerthError);
      expect(unknown).toBeInstanceOf(BerthError);
      expect((unknown as BerthError).code).toBe('MAINTENANCE_JOB_UNKNOWN');
      expect((unknown as BerthError).details?.jobs).toEqual(['backup', 'prune', 'images', 'checkouts']);

      const b = await d.client.maintenance.backup({});
      expect(existsSync(b.path)).toBe(true);
      // Disk use is measured behind the status call (null only until the first walk ends).
      const st = await poll(async () => {
        const x = await d.client.daemon.status();
        return x.disk ? x : null;
      }, 60_000, 'disk use measured');
      const byJob = Object.fromEntries(st.maintenance.map((j) => [j.job, j]));
      expect(byJob.images?.lastRun?.ok).toBe(true);
      expect(byJob.backup?.lastRun?.summary?.path).toBe(b.path);
      expect(byJob.backup?.nextRunAt).not.toBeNull();
      // The checkout repairs run at start.
      await poll(async () => (await d.client.maintenance.list()).find((j) => j.job === 'checkouts')?.lastRun, 60_000, 'the checkouts job at start');
      expect(st.disk?.db).toBeGreaterThan(0);
      expect(st.disk?.total).toBeGreaterThanOrEqual(st.disk!.db + st.disk!.checkouts);
      const text = await berth(d, 'status');
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toMatch(/^ {2}images +ok .*removed=1/m);
      expect(text.stdout).toMatch(/^ {2}backup +ok /m);
      expect(text.stdout).toMatch(/^disk +\d/m);
      const ls = await berth(d, 'maintenance', 'ls');
      expect(ls.stdout).toMatch(/^backup +17 3 \* \* \*/m);
    } finally {
      await d[Symbol.asyncDispose]();
      for (const t of ['x', 'used', 'user', 'other']) await docker('rmi', '-f', `${tag}:${t}`).catch(() => {});
      for (const id of ids) await docker('rmi', '-f', id).catch(() => {});
    }
  });
});
