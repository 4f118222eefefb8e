// Shared set-up for the benchmarks: arguments, the engine and test image, a berthd in a temp home.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthClient } from '../client-sdk/dist/index.js';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const IMAGE = 'berth-test-busybox:latest';

export function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

export const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
export const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;

/** Makes sure an engine runs and the offline test image exists. */
export function prepareEngine() {
  execFileSync('bash', [join(root, 'scripts/ensure-docker.sh')], { stdio: 'inherit' });
  execFileSync('bash', [join(root, 'scripts/build-test-images.sh')], { stdio: 'inherit' });
}

/** A fresh home and a berthd on it, with the bench limits; resolves once the socket answers. */
export async function startBerthd(prefix, env = {}, bin = join(root, 'daemon/bin/berthd.js')) {
  const home = mkdtempSync(join(tmpdir(), prefix));
  const daemon = spawn(process.execPath, [bin, '--log-level', 'warn'], {
    env: { ...process.env, BERTH_HOME: home, PROJECTS_ROOT: join(home, 'projects'), AGENT_DEFAULT_IMAGE: IMAGE, AGENT_MEMORY_LIMIT: '256m', AGENT_CPU_LIMIT: '1', AGENT_PIDS_LIMIT: '128', BERTH_MAX_RUNNING: '0', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const client = new BerthClient({ socketPath: join(home, 'berth.sock'), timeoutMs: 600_000 });
  for (let i = 0; i < 100; i++) {
    try {
      await client.daemon.status();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const rssMiB = () => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${daemon.pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  };
  return { home, daemon, client, rssMiB };
}

/** Project `web` for a bench berthd: an empty repository (one commit) owned by uid 1000 under its projects root. */
export async function addProject(client, home, name = 'web') {
  const repo = join(home, 'projects', name);
  mkdirSync(repo, { recursive: true });
  execFileSync('git', ['init', '-q', '-b', 'main', repo]);
  execFileSync('git', ['-C', repo, '-c', 'user.email=b@b', '-c', 'user.name=b', 'commit', '-q', '--allow-empty', '-m', 'init']);
  execFileSync('chown', ['-R', '1000:1000', repo]);
  await client.projects.add({ name, path: repo });
  return repo;
}

/** `docker run -d` arguments matching a berth session container: limits, hardening, mounts, network. */
export function dockerRunArgs({ workspace, readonly, shared, volume, network }) {
  return [
    'run', '-d', '--init', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges:true', '--memory', '256m', '--memory-swap', '256m',
    '--cpus', '1', '--pids-limit', '128', '--user', '1000:1000', '--restart', 'no', '--log-opt', 'max-size=10m', '--log-opt', 'max-file=3',
    '--mount', `type=bind,source=${workspace},target=/workspace${readonly ? ',readonly' : ''}`,
    '--mount', `type=bind,source=${shared},target=/shared,readonly`,
    '--mount', `type=volume,source=${volume},target=/agent`,
    '--network', network, '--label', 'dev.berth.test=true', '--label', `dev.berth.bench=${process.pid}`, IMAGE, 'sleep', '3600',
  ];
}

/** Removes sessions a failed run left, stops berthd, removes what the raw side made and berthd's home. */
export async function finish({ home, client, daemon }) {
  const instance = (await client.daemon.status().catch(() => null))?.instanceId ?? null;
  const sessions = [];
  for (let cursor; ; ) {
    const page = await client.sessions.list(cursor ? { cursor } : {}).catch(() => ({ items: [], nextCursor: null }));
    sessions.push(...page.items);
    if (!(cursor = page.nextCursor)) break;
  }
  await Promise.all(sessions.map((s) => client.sessions.remove({ id: s.id, force: true }).catch((e) => console.error(`bench: removing ${s.name}: ${e.message}`))));
  client.close();
  const exited = new Promise((r) => (daemon.exitCode !== null ? r() : daemon.once('exit', r)));
  daemon.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  // Only what this run made: its berthd's objects (by instance) and its raw containers (by pid);
  // test runs on the same engine keep theirs.
  const ids = (...a) => execFileSync('docker', a, { encoding: 'utf8' }).split('\n').filter(Boolean);
  const filters = [`label=dev.berth.bench=${process.pid}`, ...(instance ? [`label=dev.berth.instance=${instance}`] : [])];
  for (const f of filters) {
    const cs = ids('ps', '-aq', '--filter', f);
    if (cs.length) execFileSync('docker', ['rm', '-f', ...cs], { stdio: 'ignore' });
    for (const v of ids('volume', 'ls', '-q', '--filter', f)) execFileSync('docker', ['volume', 'rm', '-f', v], { stdio: 'ignore' });
    for (const n of ids('network', 'ls', '-q', '--filter', f)) execFileSync('docker', ['network', 'rm', n], { stdio: 'ignore' });
  }
  rmSync(home, { recursive: true, force: true });
}

/** A generated repository of `files` files in 50 directories, one commit on main, owned by uid 1000. Returns a git runner in it. */
export function generateRepo(repo, files) {
  mkdirSync(repo, { recursive: true });
  const g = (...a) => execFileSync('git', ['-c', 'safe.directory=*', '-c', 'user.email=b@b', '-c', 'user.name=b', ...a], { cwd: repo, encoding: 'utf8' });
  g('init', '-q', '-b', 'main');
  for (let i = 0; i < files; i++) {
    const d = join(repo, `dir${i % 50}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `file${i}.txt`), `file ${i}\n${'x'.repeat(200)}\n`);
  }
  g('add', '-A');
  g('commit', '-q', '-m', 'generated');
  execFileSync('chown', ['-R', '1000:1000', repo]);
  return g;
}

/**
 * berthd as it was at `rev`, built from its own sources in a temp dir next to this tree's
 * dependencies (plus simple-git, which older revisions used). Returns the dir; its berthd is
 * daemon/bin/berthd.js. The caller removes it.
 */
export function buildRevision(rev) {
  const old = mkdtempSync(join(tmpdir(), 'bench-before-'));
  execFileSync('sh', ['-c', `git -C "${root}" archive ${rev} | tar -x -C "${old}"`]);
  mkdirSync(join(old, 'node_modules'));
  for (const e of readdirSync(join(root, 'node_modules'))) {
    if (e === '@berth') continue;
    symlinkSync(join(root, 'node_modules', e), join(old, 'node_modules', e));
  }
  mkdirSync(join(old, 'node_modules', '@berth'));
  symlinkSync(join(old, 'client-sdk'), join(old, 'node_modules', '@berth', 'client-sdk'));
  if (!existsSync(join(old, 'node_modules', 'simple-git'))) {
    const deps = join(old, 'deps');
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', deps, 'simple-git@3'], { stdio: 'ignore' });
    for (const e of readdirSync(join(deps, 'node_modules'))) if (!existsSync(join(old, 'node_modules', e))) symlinkSync(join(deps, 'node_modules', e), join(old, 'node_modules', e));
  }
  try {
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-b', 'client-sdk', 'daemon'], { cwd: old, stdio: 'ignore' });
  } catch {
    // Type errors against this tree's newer dependencies; tsc still emits the JavaScript.
  }
  if (!existsSync(join(old, 'daemon/dist/main.js'))) throw new Error(`could not build berthd at ${rev}`);
  return old;
}
