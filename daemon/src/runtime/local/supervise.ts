/**
 * The per-session supervisor of AGENT_MODE=local, started detached by berthd so the agent outlives a
 * daemon restart. It runs the agent in its own process group, writes its output as timestamped
 * NDJSON lines, and records the exit. Usage: node supervise.js DIR (DIR holds meta.json).
 */
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants } from 'node:os';

interface Meta {
  command: string[];
  env: Record<string, string>;
  cwd: string;
}

const dir = process.argv[2]!;
const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as Meta;
const logFile = join(dir, 'log.ndjson');
const write = (stream: 'stdout' | 'stderr', line: string) =>
  appendFileSync(logFile, `${JSON.stringify({ ts: new Date().toISOString(), stream, line })}\n`);

const child = spawn(meta.command[0]!, meta.command.slice(1), {
  cwd: meta.cwd,
  env: meta.env,
  detached: true,
  stdio: ['ignore', 'pipe', 'pipe'],
});

let exited = false;
const finish = (exitCode: number) => {
  if (exited) return;
  exited = true;
  writeFileSync(join(dir, 'exit.json'), JSON.stringify({ exitCode, finishedAt: new Date().toISOString() }));
  process.exit(0);
};

for (const stream of ['stdout', 'stderr'] as const) {
  let partial = '';
  child[stream]!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const p of parts) write(stream, p);
  });
  child[stream]!.on('end', () => {
    if (partial) write(stream, partial);
    partial = '';
  });
}

child.on('error', (err) => {
  write('stderr', `berth: cannot run ${meta.command[0]}: ${err.message}`);
  finish(127);
});
child.on('exit', (code, signal) => {
  const signum = signal ? ((constants.signals as Record<string, number>)[signal] ?? 9) : 0;
  // Let the output pipes drain before recording the exit.
  setTimeout(() => finish(code ?? 128 + signum), 50);
});
writeFileSync(join(dir, 'state.json'), JSON.stringify({ supervisorPid: process.pid, pid: child.pid, startedAt: new Date().toISOString() }));

// A signal to the supervisor goes to the agent's whole process group.
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.on(sig, () => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      // already gone
    }
  });
}
