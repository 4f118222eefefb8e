import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostGit } from '../helpers/git.js';
import { BERTHD_BIN, DaemonProcess, REPO_ROOT, makeRepo, poll, sh, tempDir } from '../helpers/daemon.js';

/** The capabilities the system unit leaves berthd (CapabilityBoundingSet= of systemd/berthd.service). */
function unitCapabilities(): string[] {
  const unit = readFileSync(join(REPO_ROOT, 'systemd/berthd.service'), 'utf8');
  const line = /^CapabilityBoundingSet=(.+)$/m.exec(unit);
  if (!line) throw new Error('systemd/berthd.service has no CapabilityBoundingSet=');
  return line[1]!.trim().split(/\s+/);
}

const CAP_BITS: Record<string, number> = {
  CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_DAC_READ_SEARCH: 2, CAP_FOWNER: 3, CAP_FSETID: 4, CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7,
};

const hasSetpriv = (() => {
  try {
    execFileSync('setpriv', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/**
 * The system unit runs berthd as root with only the capabilities its CapabilityBoundingSet names.
 * Here berthd runs under the same bounding set (setpriv, no-new-privileges; systemd is not PID 1 in
 * CI) and does what needs them: a write session in a project another user owns (git as the owner,
 * the checkout handed over), an agent leaving a 0000 file in a 0500 directory and a sticky
 * directory, status and diff over them, a merge into the project as its owner, and removal.
 */
describe.skipIf(process.getuid?.() !== 0 || !hasSetpriv)('berthd within the system unit\'s capability bounding set', () => {
  it('runs a write session in another user\'s project, merges it as the owner and removes what the agent left, whatever its modes', async () => {
    const caps = unitCapabilities();
    for (const c of caps) expect(CAP_BITS, `${c} is not one the test knows`).toHaveProperty(c);
    const home = await tempDir();
    await mkdir(join(home, 'projects'));
    const repo = await makeRepo(join(home, 'projects', 'web'));
    const bounding = ['-all', ...caps.map((c) => `+${c.slice(4).toLowerCase()}`)].join(',');
    const proc = spawn('setpriv', ['--bounding-set', bounding, '--no-new-privs', '--', process.execPath, BERTHD_BIN], {
      env: {
        PATH: process.env.PATH,
        HOME: home,
        BERTH_HOME: home,
        PROJECTS_ROOT: join(home, 'projects'),
        AGENT_DEFAULT_IMAGE: process.env.BERTH_TEST_IMAGE ?? 'berth-test-busybox:latest',
        BERTH_MAX_RUNNING: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await using d = new DaemonProcess(proc, home, join(home, 'berth.sock'), true);
    await d.waitReady();
    const bnd = /^CapBnd:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${d.pid}/status`, 'utf8'))![1]!;
    expect(BigInt(`0x${bnd}`)).toBe(caps.reduce((m, c) => m | (1n << BigInt(CAP_BITS[c]!)), 0n));

    await d.client.projects.add({ name: 'web', path: repo });
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project: 'web', agent: 'coder', name: 'caps' });
    const r = await d.client.sessions.exec({
      id: s.id,
      cmd: sh('echo hi > new.txt && git add new.txt && git commit -qm "agent: new" && mkdir -p ro/x && echo x > ro/x/f && chmod 000 ro/x/f && chmod 500 ro/x && mkdir st && chmod 1777 st && echo y > st/g'),
    });
    expect(r.exitCode, r.stderr).toBe(0);
    await poll(async () => (await d.client.sessions.status({ id: s.id })).ahead === 1, 20_000, 'the agent commit imported');
    const status = await d.client.sessions.status({ id: s.id });
    expect(status.dirty.map((f) => f.path).sort()).toEqual(['ro/x/f', 'st/g']);
    expect((await d.client.sessions.diff({ id: s.id, stat: true })).diff).toMatch(/new\.txt/);

    await d.client.sessions.stop({ id: s.id });
    const merged = await d.client.sessions.merge({ id: s.id, strategy: 'ff' });
    expect(merged).toBeTruthy();
    expect(hostGit(repo, 'log', '--format=%s', '-1', 'main')).toBe('agent: new');
    const removed = await d.client.sessions.remove({ id: s.id, force: true });
    expect(removed.notes.join('\n')).toMatch(/refs\/berth\/wip\/caps/);
    expect(existsSync(s.checkout!.dir)).toBe(false);
  });
});
