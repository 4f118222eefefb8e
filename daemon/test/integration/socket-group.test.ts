import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN, REPO_ROOT, TEST_UID, spawnDaemon, startDaemon, tempDir } from '../helpers/daemon.js';

const exec = promisify(execFile);
const root = process.getuid?.() === 0;

/**
 * The system unit's socket: 0660, group `berth`, which users join. Run as root (CI is): a group of the
 * test's own (bt-sock-*, removed afterwards), a member and a non-member as TEST_UID with the group as
 * its primary gid or not.
 */
describe.skipIf(!root)('a socket shared with a group (BERTH_SOCKET_GROUP)', () => {
  const group = `bt-sock-${randomBytes(3).toString('hex')}`;
  let gid = 0;

  beforeAll(async () => {
    await exec('groupadd', [group]);
    gid = Number((await exec('getent', ['group', group])).stdout.split(':')[2]);
  });
  afterAll(async () => {
    await exec('groupdel', [group]).catch(() => {});
  });

  const berthAs = (socket: string, ids: { uid: number; gid: number }) =>
    exec(process.execPath, [BERTH_BIN, '--json', '--socket', socket, 'status'], { ...ids, env: { PATH: process.env.PATH, HOME: '/tmp' } }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );

  it('makes the socket 0660 and the pid file 0640 for the group, its directory 0710; members get in, others get the hint', async () => {
    await using d = await startDaemon({ env: { BERTH_SOCKET_GROUP: group } });
    const sock = await stat(d.socket);
    expect([sock.mode & 0o777, sock.gid]).toEqual([0o660, gid]);
    const pid = await stat(`${d.socket}.pid`);
    expect([pid.mode & 0o777, pid.gid]).toEqual([0o640, gid]);
    const dir = await stat(d.home);
    expect([dir.mode & 0o077, dir.gid]).toEqual([0o010, gid]);

    const member = await berthAs(d.socket, { uid: TEST_UID, gid });
    expect(member.code, member.stderr).toBe(0);
    expect(JSON.parse(member.stdout)).toMatchObject({ pid: d.pid });

    const other = await berthAs(d.socket, { uid: TEST_UID, gid: TEST_UID });
    expect(other.code).toBe(1);
    const e = JSON.parse(other.stderr).error;
    expect(e).toMatchObject({ code: 'DAEMON_UNREACHABLE', details: { errno: 'EACCES' } });
    expect(e.hint).toContain(`join group ${group}: \`sudo usermod -aG ${group} $USER\`, then log in again`);
  });

  it('names the group when the directory, not the socket, keeps a user out', async () => {
    const home = await tempDir();
    try {
      const sockDir = join(home, 'run');
      await chmod(home, 0o711);
      await using d = await startDaemon({ home, env: { BERTH_SOCKET_GROUP: group, BERTH_SOCKET: join(sockDir, 'b.sock') } });
      expect([(await stat(sockDir)).mode & 0o777, (await stat(sockDir)).gid]).toEqual([0o710, gid]);
      expect((await berthAs(d.socket, { uid: TEST_UID, gid })).code).toBe(0);
      const other = await berthAs(d.socket, { uid: TEST_UID, gid: TEST_UID });
      const e = JSON.parse(other.stderr).error;
      expect(e).toMatchObject({ code: 'DAEMON_UNREACHABLE', details: { errno: 'EACCES' } });
      expect(e.hint).toContain(`sudo usermod -aG ${group} $USER`);
      // The CLI's default (no ~/.berth/berth.sock: the system socket) picks a socket it cannot see
      // behind that directory, so the user gets this hint rather than "start berthd".
      const sdk = join(REPO_ROOT, 'client-sdk/dist/index.js');
      const script = `import { defaultSocketPath } from ${JSON.stringify(sdk)}; console.log(defaultSocketPath({ HOME: '/tmp/bt-nohome' }, ${JSON.stringify(d.socket)}))`;
      const picked = await exec(process.execPath, ['--input-type=module', '-e', script], { uid: TEST_UID, gid: TEST_UID });
      expect(picked.stdout.trim()).toBe(d.socket);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('keeps the default 0600 socket without the option', async () => {
    await using d = await startDaemon();
    expect((await stat(d.socket)).mode & 0o777).toBe(0o600);
    expect((await stat(`${d.socket}.pid`)).mode & 0o777).toBe(0o600);
  });

  it('refuses to start (exit 78) on a group that does not exist or a mode it does not take', async () => {
    for (const [env, code] of [
      [{ BERTH_SOCKET_GROUP: `${group}-absent` }, /does not exist/],
      [{ BERTH_SOCKET_MODE: '0666' }, /BERTH_SOCKET_MODE.*one of: 0600, 0660/],
    ] as const) {
      const home = await tempDir();
      try {
        const d = spawnDaemon({ home, env: { ...env } });
        expect(await d.waitExit()).toBe(78);
        expect(d.output).toContain('CONFIG_INVALID');
        expect(d.output).toMatch(code);
        await expect(stat(join(home, 'berth.sock'))).rejects.toThrow();
      } finally {
        await rm(home, { recursive: true, force: true });
      }
    }
  });

  it('reads the group from the config file too', async () => {
    const home = await tempDir();
    try {
      await writeFile(join(home, 'config.yaml'), `socketGroup: ${group}\n`);
      await using d = await startDaemon({ home });
      expect((await stat(d.socket)).gid).toBe(gid);
      expect(await readFile(`${d.socket}.pid`, 'utf8')).toBe(`${d.pid}\n`);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
