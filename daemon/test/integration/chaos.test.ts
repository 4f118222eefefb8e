import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Session } from '@berth/client-sdk';
import { describe, expect, it } from 'vitest';
import { docker } from '../helpers/docker.js';
import { commitFiles, hostGit } from '../helpers/git.js';
import { poll, sh, startDaemon, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

/** A small seeded PRNG (mulberry32), so a failing round can be replayed from the printed seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const quiet = <T>(p: Promise<T>) => p.then((v) => v, () => null);

/**
 * kill -9 chaos: concurrent starts, commits, stops, restarts, forced removals and merges while
 * berthd is killed at a random moment, then restarted on the same home. After every round: no write
 * session's container mounts anything but its own checkout; every commit an agent made (and was
 * told about) is in the project; no session that was started and not removed is lost; no orphan or
 * duplicate container; everything converges.
 */
describe('chaos: kill -9 of berthd in the middle of concurrent operations', () => {
  it('keeps every boundary and every commit across random kills', async () => {
    const seed = Number(process.env.BERTH_CHAOS_SEED ?? Date.now() % 100000);
    const rounds = Number(process.env.BERTH_CHAOS_ROUNDS ?? 10);
    const rand = rng(seed);
    console.log(`chaos seed ${seed} (BERTH_CHAOS_SEED=${seed} replays it), ${rounds} rounds`);
    const first = await startWithProject({ env: { BERTH_RESYNC_SEC: '2', BERTH_ORPHAN_GRACE_SEC: '5' } });
    const { repo } = first;
    let d: DaemonProcess = first.d;
    const daemons: DaemonProcess[] = [d];
    try {
      commitFiles(repo, { 'a.txt': 'a\n' }, 'base');
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
      const commits = new Map<string, string>(); // sha -> session name
      const alive = new Map<string, Session>(); // started and not removed (as far as we were told)
      let n = 0;

      for (let round = 0; round < rounds; round++) {
        const known = [...alive.values()];
        const pick = () => known[Math.floor(rand() * known.length)];
        const ops: Promise<unknown>[] = [];
        const c = d.client;
        for (let i = 0; i < 2; i++) {
          const name = `c${n++}`;
          ops.push(
            quiet(c.sessions.start({ project: 'web', agent: 'coder', name })).then((s) => {
              if (s) alive.set(s.id, s);
            }),
          );
        }
        for (let i = 0; i < 3 && known.length; i++) {
          const s = pick()!;
          ops.push(
            quiet(c.sessions.exec({ id: s.id, cmd: sh(`echo ${round}-${i} >> log.txt && git add log.txt && git commit -qm r${round} && git rev-parse HEAD`) })).then((r) => {
              if (r?.exitCode === 0) commits.set(r.stdout.trim(), s.name);
            }),
          );
        }
        if (known.length > 2) {
          const s = pick()!;
          const r = rand();
          if (r < 0.3) ops.push(quiet(c.sessions.restart({ id: s.id })));
          else if (r < 0.55) ops.push(quiet(c.sessions.stop({ id: s.id, timeoutSec: 1 })));
          else if (r < 0.8) {
            ops.push(
              quiet(c.sessions.remove({ id: s.id, force: true, deleteBranch: true })).then((x) => {
                if (x) alive.delete(s.id);
              }),
            );
          } else ops.push(quiet(c.sessions.merge({ id: s.id, strategy: 'merge' })));
        }
        // Kill at a random moment while those run.
        await new Promise((r) => setTimeout(r, Math.floor(rand() * 2500)));
        await d.stop('SIGKILL');
        await Promise.all(ops);
        d = await startDaemon({ home: first.d.home, env: { BERTH_RESYNC_SEC: '2', BERTH_ORPHAN_GRACE_SEC: '5' } });
        daemons.push(d);

        // Sessions we were told about whose removal never completed are still there, and settle.
        const listAll = async () => (await d.client.sessions.list({ limit: 1000 })).items;
        const settled = await poll(
          async () => {
            const items = await listAll();
            return items.every((s) => ['running', 'stopped', 'exited', 'failed'].includes(s.state) || s.desired === 'removed') ? items : null;
          },
          60_000,
          `round ${round}: every session settles`,
        );
        for (const id of alive.keys()) {
          if (!settled.some((s) => s.id === id)) {
            // A removal we launched may have finished before the kill without our hearing back.
            const x = await quiet(d.client.sessions.get({ id }));
            if (x === null) alive.delete(id);
          }
        }
        for (const s of settled) if (!alive.has(s.id)) alive.set(s.id, s);

        // Boundary: a write session's container mounts its own checkout and never the project.
        const containers = (await docker('ps', '-aq', '--no-trunc', '--filter', `label=dev.berth.instance=${d.instanceId ?? (await d.client.daemon.status()).instanceId}`)).split('\n').filter(Boolean);
        const perSession = new Map<string, number>();
        for (const id of containers) {
          // berthd goes on reconciling while we look: a container listed a moment ago may be gone.
          const raw = await docker('inspect', id).catch(() => null);
          if (raw === null) continue;
          const info = JSON.parse(raw)[0] as { Config: { Labels: Record<string, string> }; Mounts: { Source: string; Destination: string }[] };
          const sid = info.Config.Labels['dev.berth.session']!;
          perSession.set(sid, (perSession.get(sid) ?? 0) + 1);
          const s = settled.find((x) => x.id === sid);
          // Orphans are swept after their grace period; the poll below waits for that.
          if (!s) continue;
          const ws = info.Mounts.find((m) => m.Destination === '/workspace')!;
          expect(s.mode).toBe('write');
          expect(s.checkout, `session ${s.name} has its own checkout`).not.toBeNull();
          expect(ws.Source, `round ${round}: ${s.name} mounts its own checkout`).toBe(s.checkout!.dir);
          expect(ws.Source).not.toBe(repo);
          for (const m of info.Mounts) expect(m.Source === repo || m.Source.startsWith(`${repo}/`) ? m.Destination : 'ok').toMatch(/^(ok|\/.*\/\.git\/objects)$/);
        }
        for (const [sid, count] of perSession) expect(count, `round ${round}: containers of session ${sid}`).toBe(1);
        // No orphan outlives its grace period.
        await poll(
          async () => {
            const ids = new Set((await listAll()).map((s) => s.id));
            const labels = (await docker('ps', '-a', '--format', '{{.Label "dev.berth.session"}}', '--filter', `label=dev.berth.instance=${(await d.client.daemon.status()).instanceId}`)).split('\n').filter(Boolean);
            return labels.every((l) => ids.has(l));
          },
          30_000,
          `round ${round}: no orphan container`,
        );

        // Every commit an agent was seen making is in the project (imported within seconds).
        await poll(
          async () => {
            const all = new Set(hostGit(repo, 'rev-list', '--all').split('\n'));
            return [...commits.keys()].every((sha) => all.has(sha));
          },
          30_000,
          `round ${round}: all ${commits.size} agent commits reachable in the project`,
        );
      }

      console.log(`chaos: ${rounds} kills, ${n} starts asked, ${commits.size} agent commits confirmed, ${alive.size} sessions alive at the end`);
      expect(commits.size).toBeGreaterThan(0);
      // Wind down: remove everything, with its work kept on refs.
      for (const s of (await d.client.sessions.list({ limit: 1000 })).items) await quiet(d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }));
      const all = new Set(hostGit(repo, 'rev-list', '--all').split('\n'));
      for (const [sha, name] of commits) expect(all.has(sha), `commit ${sha} of ${name}`).toBe(true);
      expect(hostGit(repo, 'fsck', '--no-progress', '--no-dangling', '--connectivity-only')).toBe('');
    } finally {
      for (const x of daemons.reverse()) await quiet(x[Symbol.asyncDispose]());
    }
  }, 600_000);

  it('threat 10: a write session caught between its row and its checkout by a kill -9 is finished in its own checkout, never the project', async () => {
    const { d, repo } = await startWithProject();
    const daemons: DaemonProcess[] = [d];
    try {
      commitFiles(repo, { 'a.txt': 'a\n' }, 'base');
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
      const half = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'half' });
      const none = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'none' });
      await d.stop('SIGKILL');
      // As the crash leaves it: rows marked `creating`, no containers yet; `half` has a half-made
      // clone berth recorded making, `none` was killed before its directory existed.
      for (const s of [half, none]) await docker('rm', '-f', s.containerId!);
      const Database = (await import('better-sqlite3')).default;
      const db = new Database(join(d.home, 'berth.db'));
      db.prepare("UPDATE sessions SET checkout_state = 'creating', state = 'pending', container_id = NULL, branch = NULL WHERE name IN ('half', 'none')").run();
      db.prepare("UPDATE sessions SET checkout_dev = NULL, checkout_ino = NULL WHERE name = 'none'").run();
      db.close();
      await rm(join(half.checkout!.dir, '.git', 'HEAD'));
      await rm(none.checkout!.dir, { recursive: true });

      const d2 = await startDaemon({ home: d.home, env: { BERTH_RESYNC_SEC: '1' } });
      daemons.push(d2);
      for (const s of [half, none]) {
        const got = await poll(async () => {
          const x = await d2.client.sessions.get({ id: s.id });
          return x.state === 'running' ? x : null;
        }, 30_000, `${s.name} running again`);
        const info = JSON.parse(await docker('inspect', got.containerId!))[0] as { Mounts: { Source: string; Destination: string }[] };
        expect(info.Mounts.find((m) => m.Destination === '/workspace')!.Source).toBe(s.checkout!.dir);
        const r = await d2.client.sessions.exec({ id: s.id, cmd: sh('git branch --show-current && git status --porcelain') });
        expect(r.stdout).toBe(`berth/${s.name}\n`);
      }
    } finally {
      for (const x of daemons.reverse()) await quiet(x[Symbol.asyncDispose]());
    }
  });

  it('threat 10: an rm --force interrupted after saving the wip ref is finished after the restart', async () => {
    const { d, repo } = await startWithProject();
    const daemons: DaemonProcess[] = [d];
    try {
      commitFiles(repo, { 'a.txt': 'a\n' }, 'base');
      await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
      const s = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'gone' });
      await d.client.sessions.exec({ id: s.id, cmd: sh('echo w > wip.txt && git add wip.txt && git commit -qm "agent work" && echo u > unsaved.txt') });
      await d.stop('SIGKILL');
      // The crash came after the container went and before the checkout did.
      await docker('rm', '-f', s.containerId!);
      const Database = (await import('better-sqlite3')).default;
      const db = new Database(join(d.home, 'berth.db'));
      db.prepare(`UPDATE sessions SET desired = 'removed', remove_opts = '{"force":true,"deleteBranch":true}', generation = generation + 1 WHERE name = 'gone'`).run();
      db.close();
      await writeFile(join(s.checkout!.dir, 'more.txt'), 'more\n');

      const d2 = await startDaemon({ home: d.home, env: { BERTH_RESYNC_SEC: '1' } });
      daemons.push(d2);
      await poll(async () => ((await quiet(d2.client.sessions.get({ id: s.id }))) === null ? true : null), 30_000, 'the session row gone');
      expect(existsSync(s.checkout!.dir)).toBe(false);
      expect(hostGit(repo, 'show', 'refs/berth/wip/gone:unsaved.txt')).toBe('u');
      expect(hostGit(repo, 'show', 'refs/berth/wip/gone:more.txt')).toBe('more');
      expect(hostGit(repo, 'log', '--format=%s', '-1', 'refs/berth/archive/gone')).toBe('agent work');
    } finally {
      for (const x of daemons.reverse()) await quiet(x[Symbol.asyncDispose]());
    }
  });
});
