import { join } from 'node:path';
import { BerthError } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { codeOf, cpuTicks, duBytes, FAST_GIT, inBox, inotifyWatches, MB, noGitLeft, note, patient, peakGrowthMb, printMeasured, procKb, resetPeak, uniq } from '../helpers/boundary-host.js';

/**
 * Attacks on the host's resources and paths, each named after the threat it covers (this file: threats 4 and 5; the helpers are in helpers/boundary-host.ts):
 *  4. memory and disk from agent-sized inputs (sparse and huge files, endless files, FIFOs);
 *  5. inotify exhaustion through files and directories made inside a checkout's `.git`;
 *  6. the project owner's repository configuration and files making berthd (root) run or read;
 *  9. the project path swapped for a link after `projects.add`.
 * Resources are measured (RSS from /proc, disk with du, inotify watches from fdinfo), never time:
 * deadlines below only guard against hangs.
 */

afterAll(printMeasured);

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

