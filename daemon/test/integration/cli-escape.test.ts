import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { BERTH_BIN, poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const exec = promisify(execFile);
/** Container names derive from the project's; a unique one keeps clear of other runs on this engine. */
const project = () => `inj-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

const OSC52 = '\x1b]52;c;aGk=\x07'; // write "hi" to the clipboard
const TITLE = '\x1b]0;pwned\x07'; // retitle the window
const C1_CSI = '\u009b2K'; // one-byte CSI: erase line
const SUBJECT = `fix typo${OSC52}${TITLE} ${C1_CSI}done`;
const AUTHOR = `Mallory ${OSC52}${TITLE}Evil`;
/** Erases its own line and returns the cursor: a terminal would show only "README.md". */
const HIDDEN = 'evil.sh\x1b[2K\x1b[1A\rREADME.md';
const PAYLOAD = `${OSC52}${TITLE}${C1_CSI}\rhidden\n`;
/** Reads as "invoiceexe.pdf" on a terminal that honours the right-to-left override. */
const BIDI = 'invoice\u202efdp.exe';
/** A newline in a name, trying to pass for a status line of its own. */
const FORGED = 'notes\n  M  harmless.txt';

/**
 * A string as a busybox `printf` format: every byte outside a safe set as `\ooo`, so the script
 * carries no raw control character and no quote.
 */
const oct = (s: string) =>
  [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9 ._-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `\\${b.toString(8).padStart(3, '0')}`)).join('');
/** The string as a double-quoted shell word (command substitution drops trailing newlines). */
const str = (s: string) => `"$(printf '${oct(s)}')"`;

/** What a terminal would act on: ESC, CR, other C0 but \n and \t, DEL, C1, bidi and invisible format characters. */
const RAW = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2028\u2029\u2060\u2066-\u2069\ufeff]/u;

/** `berth` as a user runs it; stdout and stderr as raw bytes. */
async function berthRaw(d: DaemonProcess, ...args: string[]): Promise<{ code: number; stdout: Buffer; stderr: Buffer }> {
  try {
    const r = await exec(process.execPath, [BERTH_BIN, '--socket', d.socket, ...args], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: Buffer; stderr: Buffer };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Human output: no raw ESC or CR byte, no C1 or bidi character, no lone byte (U+FFFD after decoding). */
async function human(d: DaemonProcess, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  const r = await berthRaw(d, ...args);
  expect(r.code, `berth ${args.join(' ')}: ${r.stderr.toString()}`).toBe(0);
  for (const [name, buf] of [['stdout', r.stdout], ['stderr', r.stderr]] as const) {
    expect(buf.includes(0x1b), `raw ESC on ${name} of berth ${args.join(' ')}`).toBe(false);
    expect(buf.includes(0x0d), `raw CR on ${name} of berth ${args.join(' ')}`).toBe(false);
    const text = buf.toString('utf8');
    expect(text, `${name} of berth ${args.join(' ')}`).not.toMatch(RAW);
    expect(text).not.toContain('\ufffd');
  }
  return { stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}

async function json<T>(d: DaemonProcess, ...args: string[]): Promise<T> {
  const r = await berthRaw(d, '--json', ...args);
  expect(r.code, r.stderr.toString()).toBe(0);
  return JSON.parse(r.stdout.toString('utf8')) as T;
}

describe('terminal injection: agent-written text reaches the terminal escaped', () => {
  it('commit subject, author, dirty file names, diff and log lines with OSC 52, title, CSI, CR and C1 print escaped; --json keeps them exact', async () => {
    const web = project();
    const { d } = await startWithProject({}, web);
    await using _ = d;
    // The agent's own output, logged on both streams.
    await d.client.agents.define({
      name: 'inkjet',
      command: sh(`printf '${oct(`log ${OSC52}${TITLE}osc\n`)}'; printf '${oct(`overwrite\rhid ${C1_CSI}den\n`)}' >&2; sleep 3600`),
    });
    const s = await d.client.sessions.start({ project: web, agent: 'inkjet', name: 'inkjet' });
    const attack = [
      'set -e',
      `printf '${oct(PAYLOAD)}' > payload.txt`,
      'git add payload.txt',
      `GIT_AUTHOR_NAME=${str(AUTHOR)} git commit -qm ${str(SUBJECT)}`,
      `echo x > ${str(HIDDEN)}`,
    ].join('\n');
    const r = await d.client.sessions.exec({ id: s.id, cmd: sh(attack) });
    expect(r.exitCode, r.stderr).toBe(0);

    // --json: the exact strings the agent wrote.
    const st = await json<{ lastCommit: { subject: string; author: string }; dirty: { path: string }[] }>(d, 'status', 'inkjet');
    expect(st.lastCommit).toMatchObject({ subject: SUBJECT, author: AUTHOR });
    expect(st.dirty.map((x) => x.path)).toContain(HIDDEN);
    const df = await json<{ diff: string }>(d, 'diff', 'inkjet');
    expect(df.diff).toContain(`+${PAYLOAD.replace('\n', '')}`);

    // Human output: the same strings, visible and inert.
    const status = (await human(d, 'status', 'inkjet')).stdout;
    expect(status).toContain('fix typo\\x1b]52;c;aGk=\\x07\\x1b]0;pwned\\x07 \\x9b2Kdone (Mallory \\x1b]52;c;aGk=\\x07\\x1b]0;pwned\\x07Evil)');
    expect(status).toContain('?? evil.sh\\x1b[2K\\x1b[1A\\rREADME.md');
    const diff = (await human(d, 'diff', 'inkjet')).stdout;
    expect(diff).toContain('+\\x1b]52;c;aGk=\\x07\\x1b]0;pwned\\x07\\x9b2K\\rhidden\n');
    await human(d, 'diff', '--stat', 'inkjet');

    const logs = await poll(async () => {
      const l = await human(d, 'logs', 'inkjet');
      return l.stdout.includes('osc') && l.stderr.includes('den') ? l : null;
    }, 15_000, 'the agent\'s log lines');
    expect(logs.stdout).toBe('log \\x1b]52;c;aGk=\\x07\\x1b]0;pwned\\x07osc\n');
    expect(logs.stderr).toBe('overwrite\\rhid \\x9b2Kden\n');
    await human(d, 'logs', '--timestamps', 'inkjet');
    const jl = (await berthRaw(d, '--json', 'logs', 'inkjet')).stdout.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { line: string });
    expect(jl.map((l) => l.line).sort()).toEqual([`log ${OSC52}${TITLE}osc`, `overwrite\rhid ${C1_CSI}den`]);

    const ex = await human(d, 'exec', 'inkjet', '--', 'cat', 'payload.txt');
    expect(ex.stdout).toBe('\\x1b]52;c;aGk=\\x07\\x1b]0;pwned\\x07\\x9b2K\\rhidden\n');
    expect((await json<{ stdout: string }>(d, 'exec', 'inkjet', '--', 'cat', 'payload.txt')).stdout).toBe(PAYLOAD);

    for (const args of [['ps'], ['ps', '-a'], ['inspect', 'inkjet'], ['status'], ['agent', 'ls']]) await human(d, ...args);
  });

  it('a bidi override cannot disguise a file name, and a newline in one cannot forge a status line', async () => {
    const web = project();
    const { d } = await startWithProject({}, web);
    await using _ = d;
    await d.client.agents.define({ name: 'bidi', command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project: web, agent: 'bidi', name: 'bidi' });
    const r = await d.client.sessions.exec({ id: s.id, cmd: sh(`set -e\necho x > ${str(BIDI)}\necho y > ${str(FORGED)}`) });
    expect(r.exitCode, r.stderr).toBe(0);

    const st = await json<{ dirty: { path: string; status: string }[] }>(d, 'status', 'bidi');
    expect(st.dirty.map((x) => x.path).sort()).toEqual([BIDI, FORGED].sort());

    const lines = (await human(d, 'status', 'bidi')).stdout.split('\n');
    expect(lines).toContain('  ?? invoice\\u202efdp.exe');
    expect(lines).toContain('  ?? notes\\n  M  harmless.txt');
    // branch, commit, "changes 2 uncommitted:", one line per file, and the final newline
    expect(lines).toHaveLength(6);
    expect(lines.filter((l) => l.includes('harmless.txt'))).toHaveLength(1);

    const diff = (await human(d, 'diff', 'bidi')).stdout;
    expect(diff).not.toMatch(RAW);
    await human(d, 'diff', '--stat', 'bidi');

    // An error whose message quotes a name: the CLI prints it escaped, with its code.
    const bad = await berthRaw(d, 'logs', `ghost${OSC52}\u202e`);
    expect(bad.code).toBe(1);
    const err = bad.stderr.toString('utf8');
    expect(bad.stderr.includes(0x1b)).toBe(false);
    expect(err).not.toMatch(RAW);
    expect(err).toMatch(/^error\[SESSION_NOT_FOUND\]/);
  });
});
