import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BerthClient, BerthError, type Session } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { TEST_UID, makeRepo, poll, sh, startWithProject, tempDir, type DaemonProcess } from '../helpers/daemon.js';

/** A git blocked on an agent's FIFO is killed after 30 s here, not the default 120 s: the tests wait for that deadline. */
const FAST_GIT = { BERTH_GIT_TIMEOUT_SEC: '30' };

/**
 * Attacks on the host's resources and paths, each named after the threat it covers:
 *  4. memory and disk from agent-sized inputs (sparse and huge files, endless files, FIFOs);
 *  5. inotify exhaustion through files and directories made inside a checkout's `.git`;
 *  6. the project owner's repository configuration and files making berthd (root) run or read;
 *  9. the project path swapped for a link after `projects.add`.
 * Resources are measured (RSS from /proc, disk with du, inotify watches from fdinfo), never time:
 * deadlines below only guard against hangs.
 */

const MB = 1024 * 1024;
/** Project names unique to this run: networks are per project name on a shared engine. */
const uniq = randomBytes(3).toString('hex');
const measured: string[] = [];
const note = (s: string) => {
  measured.push(s);
  console.log(`[boundary-host] ${s}`);
};

const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BerthError ? e.code : `not a BerthError: ${String(e)}`));

/** A client for calls that legitimately take long on a busy box (hang guard only). */
const patient = (d: DaemonProcess) => new BerthClient({ socketPath: d.socket, timeoutMs: 600_000 });

function procKb(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

/** Resets the process's peak RSS to its current RSS (Linux clear_refs 5), so VmHWM is the peak from now on. */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** Runs `fn` and returns by how much berthd's resident set peaked above what it was before. */
async function peakGrowthMb<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; growthMb: number; beforeMb: number; peakMb: number }> {
  const before = procKb(pid, 'VmRSS');
  resetPeak(pid);
  const value = await fn();
  const peak = procKb(pid, 'VmHWM');
  return { value, growthMb: Math.round((peak - before) / 1024), beforeMb: Math.round(before / 1024), peakMb: Math.round(peak / 1024) };
}

/** Blocks actually used on disk (a sparse file counts for what it occupies). */
function duBytes(path: string): number {
  if (!existsSync(path)) return 0;
  return Number(execFileSync('du', ['-s', '-B1', path], { encoding: 'utf8' }).split(/\s/)[0]);
}

/** berthd's inotify watches: the `inotify wd:` lines of every inotify descriptor it holds. */
function inotifyWatches(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== 'anon_inode:inotify') continue;
    n += readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').split('\n').filter((l) => l.startsWith('inotify wd:')).length;
  }
  return n;
}

/** CPU time berthd used so far, in clock ticks (utime + stime). */
function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}

/** Host processes of git's kind (git, its `timeout`/`prlimit` wrappers) working inside `home`. */
function gitProcessesIn(home: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!/^(git|git-.*|timeout|prlimit)$/.test(comm)) continue;
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cwd.startsWith(home) || cmd.includes(home)) found.push(`${pid} ${comm} ${cmd.slice(0, 200)}`);
    } catch {
      // gone
    }
  }
  return found;
}

async function noGitLeft(d: DaemonProcess): Promise<void> {
  // A git killed at its deadline needs a moment to be reaped; nothing may outlive that.
  await poll(async () => gitProcessesIn(d.home).length === 0, 200_000, 'no git child left in berth home').catch(() => {});
  expect(gitProcessesIn(d.home)).toEqual([]);
}

/** git as the project's owner (uid 1000), so nothing the test itself runs in an owner's repo runs as root. */
function ownerGit(cwd: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'safe.directory=*', '-c', 'user.email=o@berth.dev', '-c', 'user.name=owner', ...args], {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    uid: TEST_UID,
    gid: TEST_UID,
    env: { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1' },
  }).trim();
}

const inBox = (d: DaemonProcess, s: Session, script: string, timeoutSec = 300) =>
  patient(d).sessions.exec({ id: s.id, cmd: sh(script), timeoutSec }).then((r) => {
    if (r.exitCode !== 0) throw new Error(`in-container script failed (${r.exitCode}): ${r.stderr}\n${script}`);
    return r;
  });

/** Any container of this daemon bind-mounting something that is, or resolves into, `outside`. */
function mountsInto(d: DaemonProcess, outside: string): string[] {
  const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=dev.berth.instance=${d.instanceId}`], { encoding: 'utf8' }).split('\n').filter(Boolean);
  const hits: string[] = [];
  const realOutside = realpathSync(outside);
  for (const id of ids) {
    const mounts = JSON.parse(execFileSync('docker', ['inspect', '--format', '{{json .Mounts}}', id], { encoding: 'utf8' })) as { Source: string }[];
    for (const m of mounts) {
      let real = m.Source;
      try {
        real = realpathSync(m.Source);
      } catch {
        // volume paths the test cannot resolve
      }
      if (m.Source.startsWith(outside) || real.startsWith(realOutside)) hits.push(`${id.slice(0, 12)}: ${m.Source} -> ${real}`);
    }
  }
  return hits;
}

afterAll(() => {
  if (measured.length) console.log(`[boundary-host] measurements:\n  ${measured.join('\n  ')}`);
});

// ---------------------------------------------------------------------------------------------------
// Threat 4: memory and disk from agent-sized inputs.
// ---------------------------------------------------------------------------------------------------

describe('threat 4 (agent-sized inputs)', () => {
  const P = `bh4-${uniq}`;
  let d: DaemonProcess;
  let repo: string;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    commitFiles(repo, { 'README.md': 'hello\n', 'a.txt': 'a\n' }, 'initial');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('threat 4 (agent-sized inputs): a sparse 510 MB .git/index, then one declaring 4 billion entries: status/diff do not grow berthd by 200 MB nor $BERTH_HOME/shadow by 50 MB', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'idx' });
    await inBox(d, s, 'echo b > b.txt && git add b.txt && git commit -qm "agent: b" && echo change >> a.txt');
    const shadow = join(d.home, 'shadow');
    const c = patient(d);
    try {
      for (const [what, script] of [
        ['sparse 510 MB index', 'truncate -s 510M .git/index'],
        // "DIRC", version 2, 0xFFFFFFFF entries, then 510 MB of holes.
        ['index header declaring 4294967295 entries', "printf 'DIRC\\000\\000\\000\\002\\377\\377\\377\\377' > .git/index && truncate -s 510M .git/index"],
      ] as const) {
        await inBox(d, s, script);
        const du0 = duBytes(shadow);
        const r = await peakGrowthMb(d.pid, async () => {
          const status = await c.sessions.status({ id: s.id });
          const diff = await c.sessions.diff({ id: s.id });
          const stat = await c.sessions.diff({ id: s.id, stat: true });
          return { status, diff, stat };
        });
        const grew = duBytes(shadow) - du0;
        note(`4a ${what}: berthd RSS ${r.beforeMb} MB -> peak ${r.peakMb} MB (+${r.growthMb} MB); shadow +${Math.round(grew / MB)} MB`);
        // The agent's index is its own business: berth's view comes from the shadow's index.
        expect(r.value.status.lastCommit?.subject).toBe('agent: b');
        expect(r.value.status.dirty).toContainEqual({ path: 'a.txt', status: 'M' });
        expect(r.value.diff.diff).toContain('+change');
        expect(r.growthMb).toBeLessThan(200);
        expect(grew).toBeLessThan(50 * MB);
      }
      await noGitLeft(d);
    } finally {
      c.close();
      await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    }
  }, 600_000);

  it('threat 4 (agent-sized inputs) variant: a sparse 1.5 GB "pack" in the clone\'s object store (no disk for the agent) is not copied into $BERTH_HOME/shadow by status', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'sparsepack' });
    const shadow = join(d.home, 'shadow');
    const c = patient(d);
    try {
      const name = `pack-${'ab'.repeat(20)}`;
      await inBox(d, s, `truncate -s 1500M .git/objects/pack/${name}.pack && truncate -s 1M .git/objects/pack/${name}.idx`);
      const clone = duBytes(s.checkout!.dir);
      const du0 = duBytes(shadow);
      const r = await peakGrowthMb(d.pid, () => codeOf(c.sessions.status({ id: s.id })));
      const grew = duBytes(shadow) - du0;
      note(`4a variant sparse pack: clone uses ${Math.round(clone / MB)} MB on disk; status -> ${r.value}; shadow +${Math.round(grew / MB)} MB; berthd RSS +${r.growthMb} MB`);
      expect(r.growthMb).toBeLessThan(200);
      // 1.5 GB of holes the agent never paid for must not become 1.5 GB of berth's disk.
      expect(grew).toBeLessThan(200 * MB);
      await noGitLeft(d);
    } finally {
      c.close();
      await inBox(d, s, 'rm -f .git/objects/pack/pack-*').catch(() => {});
      await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    }
  }, 600_000);

  it('threat 4 (agent-sized inputs) variant: a 40 MB packed-refs of empty lines (under the 64 MiB berthd accepts) with the loose branch ref deleted does not grow berthd by 200 MB', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'packedrefs' });
    const c = patient(d);
    const ref = '.git/refs/heads/berth/packedrefs';
    let tip = '';
    try {
      tip = (await inBox(d, s, `cat ${ref}`)).stdout.trim();
      const r = await peakGrowthMb(d.pid, async () => {
        await inBox(d, s, `yes '' | head -c 40000000 > .git/packed-refs && rm ${ref}`);
        const code = await codeOf(c.sessions.status({ id: s.id }));
        // The 2 s backstop reads the same file again while the tip stays unreadable.
        await new Promise((res) => setTimeout(res, 6000));
        return code;
      });
      const live = await codeOf(d.client.daemon.status());
      note(`4a variant packed-refs (40 MB of newlines): status -> ${r.value}; berthd RSS ${r.beforeMb} MB -> peak ${r.peakMb} MB (+${r.growthMb} MB); daemon.status afterwards -> ${live}`);
      expect(live).toBe('ok');
      expect(r.growthMb).toBeLessThan(200);
    } finally {
      // Leave nothing that keeps the backstop re-reading the file for the other tests.
      if (tip) await inBox(d, s, `echo ${tip} > ${ref} && rm -f .git/packed-refs`).catch(() => {});
      c.close();
      await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    }
  }, 600_000);

  /** A diff result, or the code it failed with. */
  const diffOrCode = (p: Promise<{ diff: string; truncated: boolean }>) =>
    p.then(
      (v) => ({ code: 'ok', bytes: Buffer.byteLength(v.diff), truncated: v.truncated, text: v.diff }),
      (e: unknown) => ({ code: e instanceof BerthError ? e.code : String(e), bytes: 0, truncated: false, text: String((e as Error).message).replace(/\s+/g, ' ').slice(-160) }),
    );

  it('threat 4 (agent-sized inputs): diff of an uncommitted 600 MB file is cut at 1 MiB, berthd RSS stays bounded, daemon.status answers meanwhile, $BERTH_HOME does not grow by 600 MB', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'bigfile' });
    const c = patient(d);
    try {
      await inBox(d, s, 'echo small change >> a.txt && yes | head -c 600000000 > big.txt', 600);
      const home0 = duBytes(d.home);
      let statusDuring = 'not asked';
      let diffStillRunning = false;
      const r = await peakGrowthMb(d.pid, async () => {
        let settled = false;
        const diffP = diffOrCode(c.sessions.diff({ id: s.id })).finally(() => (settled = true));
        statusDuring = await codeOf(d.client.daemon.status());
        diffStillRunning = !settled;
        const diff = await diffP;
        const stat = await diffOrCode(c.sessions.diff({ id: s.id, stat: true }));
        const status = await c.sessions.status({ id: s.id });
        return { diff, stat, status };
      });
      const grew = duBytes(d.home) - home0;
      const { diff, stat, status } = r.value;
      note(`4b 600 MB file: diff -> ${diff.code} ${diff.bytes} bytes truncated=${diff.truncated}${diff.code === 'ok' ? '' : ` (${diff.text})`}; stat -> ${stat.code}; daemon.status during diff -> ${statusDuring} (diff still running then: ${diffStillRunning}); berthd RSS ${r.beforeMb} -> peak ${r.peakMb} MB (+${r.growthMb} MB); BERTH_HOME +${Math.round(grew / MB)} MB`);
      expect(statusDuring).toBe('ok');
      expect(status.dirty).toEqual(expect.arrayContaining([{ path: 'big.txt', status: '??' }, { path: 'a.txt', status: 'M' }]));
      expect(r.growthMb).toBeLessThan(200);
      expect(grew).toBeLessThan(100 * MB);
      await noGitLeft(d);
      // The reviewer still gets the diff, cut at the cap, with the small change in it: one big file
      // must not make `berth diff` fail and so hide everything else the agent changed.
      expect(stat).toMatchObject({ code: 'ok' });
      expect(stat.text).toContain('big.txt');
      expect(diff).toMatchObject({ code: 'ok' });
      expect(diff.bytes).toBeLessThanOrEqual(MB);
      expect(diff.text).toContain('+small change');
    } finally {
      c.close();
      await inBox(d, s, 'rm -f big.txt && git checkout -- a.txt').catch(() => {});
      await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    }
  }, 900_000);

  it('threat 4 (agent-sized inputs) variant: a tracked file grown to 300 MB (git must hash it for status, and diff both sides): status answers, diff is cut at 1 MiB or refused, berthd RSS and $BERTH_HOME stay bounded', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'bigtracked' });
    const c = patient(d);
    try {
      await inBox(d, s, 'yes tracked | head -c 300000000 >> a.txt', 600);
      const home0 = duBytes(d.home);
      const r = await peakGrowthMb(d.pid, async () => ({
        status: await c.sessions.status({ id: s.id }),
        diff: await diffOrCode(c.sessions.diff({ id: s.id })),
        stat: await diffOrCode(c.sessions.diff({ id: s.id, stat: true })),
        live: await codeOf(d.client.daemon.status()),
      }));
      const grew = duBytes(d.home) - home0;
      note(`4b variant 300 MB tracked file: status dirty ${JSON.stringify(r.value.status.dirty)}; diff -> ${r.value.diff.code} ${r.value.diff.bytes} bytes${r.value.diff.code === 'ok' ? '' : ` (${r.value.diff.text})`}; stat -> ${r.value.stat.code}; berthd RSS +${r.growthMb} MB; BERTH_HOME +${Math.round(grew / MB)} MB`);
      expect(r.value.live).toBe('ok');
      expect(r.value.status.dirty).toContainEqual({ path: 'a.txt', status: 'M' });
      expect(r.growthMb).toBeLessThan(200);
      expect(grew).toBeLessThan(100 * MB);
      expect(r.value.diff.bytes).toBeLessThanOrEqual(MB);
      expect(r.value.stat).toMatchObject({ code: 'ok' });
      await noGitLeft(d);
    } finally {
      c.close();
      await inBox(d, s, 'git checkout -- a.txt').catch(() => {});
      await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    }
  }, 900_000);

  it('threat 4 (agent-sized inputs) variant: a FIFO with an endless writer swapped in for a tracked file, an untracked FIFO, and a file appended without end: status/diff complete or fail with a code, the daemon answers, no git is left behind', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'endless' });
    const c = patient(d);
    try {
      await inBox(d, s, 'echo g > grow.txt && git add grow.txt && git commit -qm "agent: grow"');
      await inBox(
        d,
        s,
        [
          'rm a.txt && mkfifo a.txt && mkfifo untracked.fifo',
          // Writers block on the FIFOs until someone opens them for reading, then write forever.
          'setsid sh -c "yes > a.txt" </dev/null >/dev/null 2>&1 &',
          'setsid sh -c "yes > untracked.fifo" </dev/null >/dev/null 2>&1 &',
          // Appended without end (kept under 300 MB of disk by starting over).
          'setsid sh -c "while :; do yes endless | head -c 20000000 >> grow.txt; [ \\$(stat -c %s grow.txt) -gt 300000000 ] && : > grow.txt; done" </dev/null >/dev/null 2>&1 &',
          'sleep 1',
        ].join('\n'),
      );
      const home0 = duBytes(join(d.home, 'shadow'));
      const r = await peakGrowthMb(d.pid, async () => {
        const out: Record<string, string> = {};
        const statusP = codeOf(c.sessions.status({ id: s.id }));
        const diffP = codeOf(c.sessions.diff({ id: s.id }));
        out.daemonStatus = await codeOf(d.client.daemon.status());
        out.status = await statusP;
        out.diff = await diffP;
        out.stat = await codeOf(c.sessions.diff({ id: s.id, stat: true }));
        return out;
      });
      const grew = duBytes(join(d.home, 'shadow')) - home0;
      note(`4b variant FIFO/endless: ${JSON.stringify(r.value)}; berthd RSS +${r.growthMb} MB; shadow +${Math.round(grew / MB)} MB`);
      expect(r.value.daemonStatus).toBe('ok');
      for (const k of ['status', 'diff', 'stat']) expect(r.value[k]).not.toMatch(/^not a BerthError/);
      expect(r.growthMb).toBeLessThan(200);
      expect(grew).toBeLessThan(100 * MB);
      await noGitLeft(d);
    } finally {
      c.close();
      await inBox(d, s, 'pkill -f "yes" ; pkill -f "while :" ; rm -f a.txt untracked.fifo grow.txt; true').catch(() => {});
      await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    }
  }, 900_000);
});

// ---------------------------------------------------------------------------------------------------
// Threat 5: inotify exhaustion.
// ---------------------------------------------------------------------------------------------------

describe('threat 5 (inotify exhaustion)', () => {
  const P = `bh5-${uniq}`;
  let d: DaemonProcess;
  let repo: string;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    commitFiles(repo, { 'README.md': 'hello\n' }, 'initial');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  const reachesHost = (branch: string, subject: string) =>
    poll(async () => {
      try {
        return hostGit(repo, 'log', '--format=%s', '-1', branch) === subject;
      } catch {
        return false;
      }
    }, 60_000, `${subject} on the host's ${branch}`);

  it('threat 5 (inotify exhaustion): 40,000 files in .git/junk/ and 40,000 more directly in .git/ leave berthd with a handful of watches, and later commits still reach berth/<name>', async () => {
    const w0 = inotifyWatches(d.pid);
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'files' });
    const w1 = inotifyWatches(d.pid);
    const cpu0 = cpuTicks(d.pid);
    const rss0 = procKb(d.pid, 'VmRSS');
    resetPeak(d.pid);
    await inBox(d, s, 'mkdir .git/junk && cd .git/junk && seq 1 40000 | xargs touch', 600);
    await new Promise((r) => setTimeout(r, 3000));
    const cpuJunk = cpuTicks(d.pid) - cpu0;
    await inBox(d, s, 'cd .git && seq 1 40000 | sed "s/^/junk-/" | xargs touch', 600);
    // Let every event the storm queued be handled before counting.
    await new Promise((r) => setTimeout(r, 5000));
    const w2 = inotifyWatches(d.pid);
    const cpuDirect = cpuTicks(d.pid) - cpu0 - cpuJunk;
    const peak = procKb(d.pid, 'VmHWM');
    await inBox(d, s, 'echo after > after.txt && git add after.txt && git commit -qm "agent: after the storm"');
    await reachesHost('berth/files', 'agent: after the storm');
    const w3 = inotifyWatches(d.pid);
    note(`5 40k files: inotify watches ${w0} before session, ${w1} with it, ${w2} after 80,000 files, ${w3} after the commit; berthd CPU ${cpuJunk} ticks for 40,000 files in .git/junk/ (+3 s idle), ${cpuDirect} ticks for 40,000 files directly in .git/ (+5 s idle); RSS peak +${Math.round((peak - rss0) / 1024)} MB`);
    expect(w2 - w0).toBeLessThan(10);
    expect(w3 - w0).toBeLessThan(10);
    expect(Math.round((peak - rss0) / 1024)).toBeLessThan(200);
    await d.client.sessions.remove({ id: s.id, force: true });
    await noGitLeft(d);
  }, 900_000);

  it('threat 5 (inotify exhaustion) variant: an event storm (80,000 files made directly in the watched .git/) costs berthd at most 3x the CPU it cost the agent, and no runaway memory', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'storm' });
    try {
      await new Promise((r) => setTimeout(r, 3000));
      const cpu0 = cpuTicks(d.pid);
      const rss0 = procKb(d.pid, 'VmRSS');
      resetPeak(d.pid);
      // `times` prints the shell's and its children's user and system CPU: what the storm cost the agent.
      const r = await inBox(d, s, 'cd .git && seq 1 80000 | sed "s/^/storm-/" | xargs touch; times', 900);
      const secs = [...r.stdout.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
      const agentTicks = Math.round(((secs[2] ?? 0) + (secs[3] ?? 0)) * 100);
      // Until berthd has handled what was queued (its CPU stops moving), within a hang guard.
      let last = -1;
      await poll(async () => {
        const now = cpuTicks(d.pid);
        const idle = now - last < 20;
        last = now;
        await new Promise((res) => setTimeout(res, 2000));
        return idle;
      }, 600_000, 'berthd idle again');
      const berthTicks = cpuTicks(d.pid) - cpu0;
      const growth = Math.round((procKb(d.pid, 'VmHWM') - rss0) / 1024);
      await inBox(d, s, 'echo after > after.txt && git add after.txt && git commit -qm "agent: after the event storm"');
      await reachesHost('berth/storm', 'agent: after the event storm');
      note(`5 variant event storm (80,000 files directly in .git/): agent CPU ${agentTicks} ticks, berthd CPU ${berthTicks} ticks (x${(berthTicks / Math.max(1, agentTicks)).toFixed(1)}), berthd RSS peak +${growth} MB, watches ${inotifyWatches(d.pid)}`);
      expect(growth).toBeLessThan(200);
      // Handling an event may cost a little more than making it, never an order of magnitude more.
      expect(berthTicks).toBeLessThan(3 * Math.max(agentTicks, 100));
    } finally {
      await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    }
  }, 900_000);

  it('threat 5 (inotify exhaustion) variant: 40,000 directories under .git/refs/heads/berth/x/ and .git/ add no watches, and later commits still reach berth/<name>', async () => {
    const w0 = inotifyWatches(d.pid);
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'dirs' });
    await inBox(d, s, 'mkdir -p .git/refs/heads/berth/x && cd .git/refs/heads/berth/x && seq 1 20000 | xargs mkdir', 600);
    await inBox(d, s, 'mkdir .git/d && cd .git/d && seq 1 20000 | xargs mkdir', 600);
    await new Promise((r) => setTimeout(r, 5000));
    const w1 = inotifyWatches(d.pid);
    await inBox(d, s, 'echo after > after.txt && git add after.txt && git commit -qm "agent: after the dirs"');
    await reachesHost('berth/dirs', 'agent: after the dirs');
    const w2 = inotifyWatches(d.pid);
    note(`5 variant 40k dirs: inotify watches ${w0} before, ${w1} after 40,000 directories, ${w2} after the commit`);
    expect(w1 - w0).toBeLessThan(10);
    expect(w2 - w0).toBeLessThan(10);
    await d.client.sessions.remove({ id: s.id, force: true });
  }, 900_000);

  it('threat 5 (inotify exhaustion) variant: the watched refs directory replaced 300 times (watch churn) leaks no watch, and commits still reach berth/<name> through the backstop', async () => {
    const w0 = inotifyWatches(d.pid);
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'churn' });
    await inBox(
      d,
      s,
      'cd .git/refs/heads && for i in $(seq 1 300); do mv berth b2 && mkdir berth && cp b2/* berth/ && rm -r b2; done; cd ../../.. && mv .git/refs .git/refs2 && cp -r .git/refs2 .git/refs && rm -r .git/refs2',
      600,
    );
    // Several backstop rounds.
    await new Promise((r) => setTimeout(r, 6000));
    const w1 = inotifyWatches(d.pid);
    await inBox(d, s, 'echo churn > churn.txt && git add churn.txt && git commit -qm "agent: after the churn"');
    await reachesHost('berth/churn', 'agent: after the churn');
    const w2 = inotifyWatches(d.pid);
    note(`5 variant churn: inotify watches ${w0} before, ${w1} after 300 replacements, ${w2} after the commit`);
    expect(w1 - w0).toBeLessThan(10);
    expect(w2 - w0).toBeLessThan(10);
    await d.client.sessions.remove({ id: s.id, force: true });
  }, 900_000);
});

// ---------------------------------------------------------------------------------------------------
// Threat 6: the project owner's configuration (and files) run or read things as berthd.
// ---------------------------------------------------------------------------------------------------

describe('threat 6 (owner config runs code as berthd)', () => {
  const P = `bh6-${uniq}`;
  let d: DaemonProcess;
  let repo: string;
  let outside: string;
  let markers: string;
  let bin: string;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    outside = await tempDir('bt-own-');
    chmodSync(outside, 0o755);
    markers = join(outside, 'markers');
    bin = join(outside, 'bin');
    mkdirSync(markers, { mode: 0o1777 });
    chmodSync(markers, 0o1777);
    mkdirSync(join(bin, 'hooks'), { recursive: true, mode: 0o755 });
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    rmSync(outside, { recursive: true, force: true });
  });

  /** An executable that records which uid ran it (one file per run, so root and 1000 never share one). */
  const marker = (name: string, tail = 'exit 0', dir = bin) => {
    const p = join(dir, name);
    writeFileSync(p, `#!/bin/sh\nid -u > ${markers}/${name.replace(/\//g, '_')}.$$\n${tail}\n`, { mode: 0o755 });
    chmodSync(p, 0o755);
    return p;
  };

  /** Markers left by the test's own git run as the owner (not berth's doing; uid 1000 all the same). */
  const ownRuns = new Set<string>();
  const ranAs = () =>
    readdirSync(markers).map((f) => ({ f, uid: readFileSync(join(markers, f), 'utf8').trim() }));
  const summary = (runs: { f: string; uid: string }[]) =>
    [...new Set(runs.filter((r) => !ownRuns.has(r.f)).map((r) => `${r.f.replace(/\.\d+$/, '')}=${r.uid}`))].sort().join(', ') || 'none';

  /** Every command-running key git knows of, pointed at marker scripts. */
  function evilConfig(prefix: string): string[] {
    const hooks = join(bin, 'hooks');
    for (const h of [
      'pre-commit', 'prepare-commit-msg', 'commit-msg', 'post-commit', 'pre-merge-commit', 'post-merge', 'post-checkout',
      'reference-transaction', 'post-index-change', 'pre-auto-gc', 'post-rewrite', 'pre-push', 'fsmonitor-watchman', 'push-to-checkout',
    ]) {
      marker(h, 'exit 0', hooks);
    }
    return [
      `core.hooksPath=${hooks}`,
      `core.fsmonitor=${marker(`${prefix}fsmonitor`, 'exit 1')}`,
      `core.alternateRefsCommand=${marker(`${prefix}alternateRefsCommand`)}`,
      'core.alternateRefsPrefixes=refs/heads/',
      `core.sshCommand=${marker(`${prefix}sshCommand`, 'exit 1')}`,
      `core.pager=${marker(`${prefix}pager`, 'cat')}`,
      `core.editor=${marker(`${prefix}editor`)}`,
      `sequence.editor=${marker(`${prefix}sequence-editor`)}`,
      `core.askPass=${marker(`${prefix}askpass`)}`,
      `credential.helper=!${marker(`${prefix}credential`)}`,
      `filter.x.clean=${marker(`${prefix}filter-clean`, 'cat')}`,
      `filter.x.smudge=${marker(`${prefix}filter-smudge`, 'cat')}`,
      // A long-running filter that completes the handshake and offers no capability (a failing one would break the owner's own merges).
      `filter.y.process=${marker(`${prefix}filter-process`, "printf '0016git-filter-server\\n000eversion=2\\n00000000'\nexec cat >/dev/null")}`,
      `merge.x.driver=${marker(`${prefix}merge-driver`)} %O %A %B`,
      `diff.external=${marker(`${prefix}diff-external`)}`,
      `diff.x.textconv=${marker(`${prefix}textconv`, 'cat "$1"')}`,
      `uploadpack.packObjectsHook=${marker(`${prefix}packObjectsHook`)}`,
      `gc.auto=1`,
      `maintenance.auto=true`,
      `alias.merge=!${marker(`${prefix}alias`)}`,
    ];
  }

  /** Writes `keys` into `file` as git config (as root), then gives the whole repo back to its owner. */
  function writeConfig(file: string, keys: string[]): void {
    for (const kv of keys) {
      const i = kv.indexOf('=');
      execFileSync('git', ['config', '--file', file, '--add', kv.slice(0, i), kv.slice(i + 1)]);
    }
  }

  /** Sessions started, committed in, inspected, merged by all three strategies and force-removed. */
  async function driveEverything(project: string, projectRepo: string, tag: string): Promise<void> {
    const ff = await d.client.sessions.start({ project, agent: 'coder', name: `${tag}-ff` });
    const mg = await d.client.sessions.start({ project, agent: 'coder', name: `${tag}-merge` });
    const sq = await d.client.sessions.start({ project, agent: 'coder', name: `${tag}-squash` });
    await inBox(d, ff, 'echo ff > ff.x && echo p > ff.p && git add -A && git commit -qm "agent: ff"');
    await inBox(d, mg, "sed -i 's/^two$/two (session)/' shared.x && echo m > m.p && git add -A && git commit -qm 'agent: merge'");
    await inBox(d, sq, 'echo s > s.x && git add -A && git commit -qm "agent: squash 1" && echo t > t.x && git add -A && git commit -qm "agent: squash 2"');
    for (const s of [ff, mg, sq]) {
      await poll(async () => {
        try {
          return ownerGit(projectRepo, 'rev-parse', `berth/${s.name}`) !== ownerGit(projectRepo, 'rev-parse', 'main');
        } catch {
          return false;
        }
      }, 60_000, `auto-import of ${s.name}`);
      await d.client.sessions.status({ id: s.id });
      await d.client.sessions.diff({ id: s.id });
      await d.client.sessions.diff({ id: s.id, stat: true });
    }
    await d.client.sessions.merge({ id: ff.id, strategy: 'ff' });
    // The owner moves main too, so the next merge is a real three-way one (merge driver, filters).
    writeFileSync(join(projectRepo, 'shared.x'), 'one (owner)\ntwo\nthree\n');
    execFileSync('chown', [`${TEST_UID}:${TEST_UID}`, join(projectRepo, 'shared.x')]);
    const beforeOwn = new Set(readdirSync(markers));
    ownerGit(projectRepo, '-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', 'commit', '-qam', 'owner: shared');
    for (const f of readdirSync(markers)) if (!beforeOwn.has(f)) ownRuns.add(f);
    expect(await codeOf(d.client.sessions.merge({ id: mg.id, strategy: 'merge', message: 'merge it' }))).toMatch(/^(ok|MERGE_CONFLICT)$/);
    expect(await codeOf(d.client.sessions.merge({ id: sq.id, strategy: 'squash', message: 'squash it' }))).toMatch(/^(ok|MERGE_CONFLICT)$/);
    for (const s of [ff, mg, sq]) {
      await inBox(d, s, 'echo dirty >> shared.x && echo new > untracked.x').catch(() => {});
      await d.client.sessions.remove({ id: s.id, force: true });
    }
  }

  async function addProject(name: string): Promise<string> {
    const r = await makeRepo(join(d.home, 'projects', name));
    commitFiles(r, { '.gitattributes': '*.x filter=x diff=x merge=x\n*.p filter=y\n', 'shared.x': 'one\ntwo\nthree\n', 'base.p': 'p\n' }, 'base with attributes');
    return r;
  }

  it('threat 6 (owner config runs code as berthd): filters, merge driver, fsmonitor, hooksPath, alternateRefsCommand, packObjectsHook, sshCommand, diff.external ... in the project\'s .git/config run, if at all, as the owner (uid 1000), never as root', async () => {
    commitFiles(repo, { '.gitattributes': '*.x filter=x diff=x merge=x\n*.p filter=y\n', 'shared.x': 'one\ntwo\nthree\n', 'base.p': 'p\n' }, 'base with attributes');
    // An alternates file so alternate-refs commands have something to trigger on: berth refuses a
    // store that borrows from another outright (nothing of the owner's runs for that), so it is
    // removed again before the sessions that drive every other key.
    const other = await makeRepo(join(outside, 'other'));
    writeFileSync(join(repo, '.git', 'objects', 'info', 'alternates'), `${join(other, '.git', 'objects')}\n`);
    writeFileSync(join(repo, '.git', 'info', 'attributes'), '* diff=x\n');
    writeConfig(join(repo, '.git', 'config'), evilConfig(''));
    execFileSync('chown', ['-R', `${TEST_UID}:${TEST_UID}`, repo]);
    expect(await codeOf(d.client.sessions.start({ project: P, agent: 'coder', name: 'cfg-alt' }))).toBe('PROJECT_OBJECTS_LINKED');
    rmSync(join(repo, '.git', 'objects', 'info', 'alternates'));
    await driveEverything(P, repo, 'cfg');
    const runs = ranAs();
    note(`6 owner config: markers left by berth's calls: ${summary(runs)}`);
    expect(runs.filter((r) => r.uid !== String(TEST_UID))).toEqual([]);
  }, 900_000);

  it('threat 6 (owner config runs code as berthd) variant: the same keys through include.path / includeIf from a file the owner names run, if at all, as the owner, never as root', async () => {
    const incName = `inc-${uniq}`;
    const inc = await addProject(incName);
    const file = join(outside, 'evil.inc');
    writeConfig(file, evilConfig('inc-'));
    chmodSync(file, 0o644);
    writeConfig(join(inc, '.git', 'config'), [`include.path=${file}`, `includeIf.gitdir:/.path=${file}`]);
    execFileSync('chown', ['-R', `${TEST_UID}:${TEST_UID}`, inc]);
    await d.client.projects.add({ name: incName, path: inc });
    await driveEverything(incName, inc, 'inc');
    const runs = ranAs();
    note(`6 variant include.path: markers left by berth's calls (both tests): ${summary(runs)}`);
    expect(runs.filter((r) => r.uid !== String(TEST_UID))).toEqual([]);
  }, 900_000);

  it('threat 6 (owner config runs code as berthd) variant: objects/info/alternates naming a root-only repository does not make berthd (root) read it for the owner: no secret in status/diff, none imported into the project', async () => {
    // A repository only root can reach (0700 parent), with a commit whose id the owner learnt.
    const vault = await tempDir('bt-vault-');
    try {
      const secretRepo = await makeRepo(join(vault, 'secret'), { owner: 0 });
      const secretSha = commitFiles(secretRepo, { 'secret.txt': 'ROOT-ONLY-SECRET-5d1c\n' }, 'root only subject 9e2b', 0);
      expect(() => ownerGit(secretRepo, 'cat-file', '-p', `${secretSha}:secret.txt`)).toThrow();
      const altName = `alt-${uniq}`;
      const alt = await addProject(altName);
      await d.client.projects.add({ name: altName, path: alt });
      const s = await d.client.sessions.start({ project: altName, agent: 'coder', name: 'alt' });
      // The owner names the vault as an alternate of their project; the agent (same uid) points its branch at the secret commit.
      writeFileSync(join(alt, '.git', 'objects', 'info', 'alternates'), `${join(secretRepo, '.git', 'objects')}\n`);
      execFileSync('chown', [`${TEST_UID}:${TEST_UID}`, join(alt, '.git', 'objects', 'info', 'alternates')]);
      await inBox(d, s, `echo ${secretSha} > .git/refs/heads/berth/alt`);
      const status = await d.client.sessions.status({ id: s.id }).then((st) => JSON.stringify(st), (e: unknown) => `error ${(e as BerthError).code}`);
      const diff = await d.client.sessions.diff({ id: s.id }).then((x) => x.diff, (e: unknown) => `error ${(e as BerthError).code}`);
      await new Promise((r) => setTimeout(r, 5000)); // a few backstop rounds of auto-import
      let imported = '';
      try {
        // Without the alternate, only what berth copied into the project itself is readable.
        rmSync(join(alt, '.git', 'objects', 'info', 'alternates'));
        imported = ownerGit(alt, 'cat-file', '-p', `${secretSha}:secret.txt`);
      } catch {
        imported = '';
      }
      note(`6 variant root-only alternate: status ${status.slice(0, 400)}; diff ${diff.includes('ROOT-ONLY-SECRET') ? 'SHOWS the secret' : 'does not show the secret'}; project ${imported ? 'RECEIVED the secret objects' : 'has no secret objects'}`);
      expect(status).not.toContain('9e2b');
      expect(status).not.toContain('secret.txt');
      expect(diff).not.toContain('ROOT-ONLY-SECRET');
      expect(imported).not.toContain('ROOT-ONLY-SECRET');
      await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    } finally {
      rmSync(vault, { recursive: true, force: true });
    }
  }, 600_000);
});

// ---------------------------------------------------------------------------------------------------
// Threat 9: TOCTOU on the project path.
// ---------------------------------------------------------------------------------------------------

describe('threat 9 (TOCTOU on the project path)', () => {
  const P = `bh9-${uniq}`;
  let d: DaemonProcess;
  let repo: string;
  let vault: string;
  let outsideRepo: string;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    commitFiles(repo, { 'INSIDE.txt': 'inside\n' }, 'inside');
    // The repository outside PROJECTS_ROOT, in a directory only root can enter.
    vault = await tempDir('bt-out-');
    outsideRepo = await makeRepo(join(vault, 'repo'), { owner: 0 });
    commitFiles(outsideRepo, { 'OUTSIDE-SECRET.txt': 'outside secret 44af\n' }, 'outside secret subject 71c0', 0);
    hostGit(outsideRepo, 'gc', '-q');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    await d.client.agents.define({ name: 'reader', command: sh('sleep 3600'), readOnly: true });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    rmSync(vault, { recursive: true, force: true });
  });

  /** Swaps `path` for a link to `target` for the duration of `fn`, then puts it back. */
  async function swapped<T>(path: string, target: string, fn: () => Promise<T>): Promise<T> {
    const aside = `${path}.aside`;
    renameSync(path, aside);
    symlinkSync(target, path);
    try {
      return await fn();
    } finally {
      rmSync(path, { force: true });
      renameSync(aside, path);
    }
  }

  it('threat 9 (TOCTOU on the project path): the project directory swapped for a link to a repository outside PROJECTS_ROOT: new write and read sessions fail with PROJECT_PATH_CHANGED and nothing mounts the outside path', async () => {
    await swapped(repo, outsideRepo, async () => {
      expect(await codeOf(d.client.sessions.start({ project: P, agent: 'coder', name: 'swap-w' }))).toBe('PROJECT_PATH_CHANGED');
      expect(await codeOf(d.client.sessions.start({ project: P, agent: 'reader', name: 'swap-r' }))).toBe('PROJECT_PATH_CHANGED');
      expect(await codeOf(d.client.sessions.start({ project: P, agent: 'coder', mode: 'read', name: 'swap-r2' }))).toBe('PROJECT_PATH_CHANGED');
    });
    expect(mountsInto(d, vault)).toEqual([]);
    expect(existsSync(join(d.home, 'checkouts', P, 'swap-w'))).toBe(false);
    // Put back, the same project works again.
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'back' });
    expect((await inBox(d, s, 'ls')).stdout).toContain('INSIDE.txt');
    await d.client.sessions.remove({ id: s.id, force: true });
  }, 300_000);

  it('threat 9 (TOCTOU on the project path) variant: .git, .git/objects, or a gitfile in place of .git, leading to the outside repository: sessions fail with PROJECT_PATH_CHANGED, nothing outside is cloned or mounted', async () => {
    const cases: [string, () => Promise<string[]>][] = [
      ['.git -> outside/.git', () => swapped(join(repo, '.git'), join(outsideRepo, '.git'), starts)],
      ['.git/objects -> outside/.git/objects', () => swapped(join(repo, '.git', 'objects'), join(outsideRepo, '.git', 'objects'), starts)],
      [
        '.git as a gitfile naming outside/.git',
        async () => {
          const git = join(repo, '.git');
          renameSync(git, `${git}.aside`);
          writeFileSync(git, `gitdir: ${join(outsideRepo, '.git')}\n`);
          try {
            return await starts();
          } finally {
            rmSync(git, { force: true });
            renameSync(`${git}.aside`, git);
          }
        },
      ],
    ];
    let n = 0;
    async function starts(): Promise<string[]> {
      n++;
      return [
        await codeOf(d.client.sessions.start({ project: P, agent: 'coder', name: `gw-${n}` })),
        await codeOf(d.client.sessions.start({ project: P, agent: 'reader', name: `gr-${n}` })),
      ];
    }
    for (const [what, run] of cases) {
      const codes = await run();
      note(`9 variant ${what}: write/read start -> ${codes.join('/')}`);
      expect(codes, what).toEqual(['PROJECT_PATH_CHANGED', 'PROJECT_PATH_CHANGED']);
    }
    expect(mountsInto(d, vault)).toEqual([]);
    for (let i = 1; i <= n; i++) expect(existsSync(join(d.home, 'checkouts', P, `gw-${i}`))).toBe(false);
  }, 300_000);

  it('threat 9 (TOCTOU on the project path) variant: swapped after the session started, the agent exits and berth restarts its container: the restarted container must not see the outside repository', async () => {
    // Exits with 3 when told to, and is restarted (on-failure) by berth.
    await d.client.agents.define({
      name: 'crasher',
      command: sh('while [ ! -e /tmp/die ]; do sleep 0.2; done; rm -f /tmp/die; exit 3'),
      readOnly: true,
      restartPolicy: 'on-failure',
    });
    await d.client.agents.define({ name: 'wcrasher', command: sh('while [ ! -e /tmp/die ]; do sleep 0.2; done; rm -f /tmp/die; exit 3'), restartPolicy: 'on-failure' });
    const r = await d.client.sessions.start({ project: P, agent: 'crasher', name: 'crash-r' });
    const w = await d.client.sessions.start({ project: P, agent: 'wcrasher', name: 'crash-w' });
    const objects = join(repo, '.git', 'objects');
    expect((await inBox(d, r, 'ls /workspace')).stdout).toContain('INSIDE.txt');
    const seen: Record<string, string> = {};
    try {
      await swapped(repo, outsideRepo, async () => {
        for (const s of [r]) {
          await d.client.sessions.exec({ id: s.id, cmd: sh('touch /tmp/die') });
          await poll(async () => {
            const x = await d.client.sessions.get({ id: s.id });
            return ((x.restartCount >= 1 && x.state === 'running') || x.state === 'failed') && x;
          }, 120_000, `restart of ${s.name}`).catch(() => null);
          const x = await d.client.sessions.get({ id: s.id });
          seen[s.name] = `${x.state}/${x.restartCount}: ${await inBox(d, s, 'ls /workspace').then((o) => o.stdout.trim().replace(/\n/g, ' '), (e: unknown) => `exec failed: ${String(e).slice(0, 80)}`)}`;
        }
        // (docker inspect still names the project path, which during the swap leads outside; what
        // counts is what a (re)started container sees, checked above and below.)
      });
      // The write session's read-only object store mount, swapped for the outside repository's.
      const outsideObjects = readdirSync(join(outsideRepo, '.git', 'objects', 'pack')).filter((f) => f.endsWith('.pack'));
      await swapped(objects, join(outsideRepo, '.git', 'objects'), async () => {
        await d.client.sessions.exec({ id: w.id, cmd: sh('touch /tmp/die') });
        await poll(async () => {
          const x = await d.client.sessions.get({ id: w.id });
          return ((x.restartCount >= 1 && x.state === 'running') || x.state === 'failed') && x;
        }, 120_000, 'restart of crash-w').catch(() => null);
        const x = await d.client.sessions.get({ id: w.id });
        seen['crash-w'] = `${x.state}/${x.restartCount}: ${await inBox(d, w, `ls ${objects}/pack`).then((o) => o.stdout.trim().replace(/\n/g, ' '), (e: unknown) => `exec failed: ${String(e).slice(0, 80)}`)}`;
      });
      note(`9 variant restart after swap: ${JSON.stringify(seen)}; outside packs: ${outsideObjects.join(' ')}`);
      expect(seen['crash-r']).not.toContain('OUTSIDE-SECRET');
      for (const p of outsideObjects) expect(seen['crash-w']).not.toContain(p);
      expect(mountsInto(d, vault)).toEqual([]);
    } finally {
      for (const s of [r, w]) await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
    }
  }, 600_000);

  it('threat 9 (TOCTOU on the project path) variant: .git/objects/pack (below the level berth checks) swapped for a link to the outside repository\'s packs: berthd (root) reads nothing of it for status, diff or import', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'packlink' });
    const outsideSha = hostGit(outsideRepo, 'rev-parse', 'HEAD');
    const pack = join(repo, '.git', 'objects', 'pack');
    const out: Record<string, string> = {};
    await swapped(pack, join(outsideRepo, '.git', 'objects', 'pack'), async () => {
      await inBox(d, s, `echo ${outsideSha} > .git/refs/heads/berth/packlink`);
      out.status = await d.client.sessions.status({ id: s.id }).then((x) => JSON.stringify(x), (e: unknown) => `error ${(e as BerthError).code}`);
      out.diff = await d.client.sessions.diff({ id: s.id }).then((x) => x.diff, (e: unknown) => `error ${(e as BerthError).code}`);
      await new Promise((r) => setTimeout(r, 5000)); // backstop rounds of auto-import
    });
    let imported = '';
    try {
      imported = ownerGit(repo, 'cat-file', '-p', `${outsideSha}:OUTSIDE-SECRET.txt`);
    } catch {
      imported = '';
    }
    note(`9 variant objects/pack link: status ${out.status?.slice(0, 400)}; diff ${out.diff?.includes('outside secret') ? 'SHOWS outside content' : 'shows nothing outside'}; project ${imported ? 'RECEIVED outside objects' : 'has no outside objects'}`);
    expect(out.status).not.toContain('71c0');
    expect(out.status).not.toContain('OUTSIDE-SECRET');
    expect(out.diff).not.toContain('outside secret');
    expect(imported).not.toContain('outside secret');
    await inBox(d, s, 'git update-ref refs/heads/berth/packlink HEAD@{1} 2>/dev/null || true').catch(() => {});
    await d.client.sessions.remove({ id: s.id, force: true }).catch(() => {});
  }, 300_000);
});
