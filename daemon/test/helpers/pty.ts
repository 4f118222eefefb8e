import { execFile } from 'node:child_process';

/**
 * Runs a program on a real pseudo-terminal (python3's pty and termios; node-pty is not available)
 * and drives it like a person at a keyboard: type text, wait for output, resize the window.
 * The program is its session's leader with the pty as its controlling terminal, so the kernel
 * sends it SIGWINCH on a resize and Ctrl-C is the terminal's to interpret.
 */
export type PtyStep =
  | { send: string }
    /** Waits until the output since the last `expect` matches `re` (a Python regex). */
  | { expect: string }
  /** Sends `send` every `everySec` until the output since it was first sent matches `expect`. */
  | { send: string; until: string; everySec: number }
  | { resize: [rows: number, cols: number] };

export interface PtyResult {
  exitCode: number;
  output: string;
  /** Whether the terminal was back in canonical mode with echo (not raw) after the program ended. */
  cooked: boolean;
}

const DRIVER = String.raw`
import fcntl, json, os, re, select, struct, subprocess, sys, termios, time

spec = json.loads(sys.argv[1])
deadline_s = spec['deadlineSec']
master, slave = os.openpty()

def setsize(rows, cols):
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))

setsize(*spec['size'])

def become_ctty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)

proc = subprocess.Popen(spec['argv'], stdin=slave, stdout=slave, stderr=slave, env=spec['env'],
                        start_new_session=True, preexec_fn=become_ctty, close_fds=True)
out = b''
mark = 0

def pump(timeout):
    '''Reads what the terminal shows within timeout; False when nothing came (or it is closed).'''
    global out
    r, _, _ = select.select([master], [], [], timeout)
    if not r:
        return False
    try:
        data = os.read(master, 65536)
    except OSError:
        return False
    out += data
    return bool(data)

def fail(msg):
    proc.kill()
    sys.stdout.write(json.dumps({'error': msg, 'output': out.decode('utf8', 'replace')}))
    sys.exit(0)

def wait_for(pattern, since, send=None, every=None):
    global mark
    start = time.time()
    last_sent = start
    while True:
        m = re.search(pattern.encode(), out[since:])
        if m:
            mark = since + m.end()
            return
        if time.time() - start > deadline_s:
            fail('no %r in the output' % pattern)
        if send is not None and time.time() - last_sent > every:
            os.write(master, send.encode())
            last_sent = time.time()
        pump(0.05)

for step in spec['steps']:
    if 'resize' in step:
        setsize(*step['resize'])
    elif 'until' in step:
        since = len(out)
        os.write(master, step['send'].encode())
        wait_for(step['until'], since, step['send'], step['everySec'])
    elif 'send' in step:
        os.write(master, step['send'].encode())
    elif 'expect' in step:
        wait_for(step['expect'], mark)

start = time.time()
while proc.poll() is None:
    if time.time() - start > deadline_s:
        fail('the program did not exit')
    pump(0.05)
while pump(0.2):
    pass
attrs = termios.tcgetattr(slave)
cooked = bool(attrs[3] & termios.ICANON) and bool(attrs[3] & termios.ECHO)
sys.stdout.write(json.dumps({'exitCode': proc.returncode, 'output': out.decode('utf8', 'replace'), 'cooked': cooked}))
`;

/** `argv` on a pty of `size` [rows, cols], driven through `steps`; each wait gives up after `deadlineSec`. */
export function runInPty(argv: string[], steps: PtyStep[], opts: { size: [number, number]; env: Record<string, string>; deadlineSec: number }): Promise<PtyResult> {
  const spec = JSON.stringify({ argv, steps, size: opts.size, env: opts.env, deadlineSec: opts.deadlineSec });
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', DRIVER, spec], { maxBuffer: 16 * 1024 * 1024, timeout: (opts.deadlineSec * (steps.length + 2) + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`pty driver failed: ${err.message}\n${stderr}`));
      const r = JSON.parse(stdout) as PtyResult & { error?: string };
      if (r.error) return reject(new Error(`${r.error}; the terminal showed:\n${r.output}`));
      resolve(r);
    });
  });
}
