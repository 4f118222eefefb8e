import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readCaCerts } from '../../src/images/ca.js';
import { REPO_ROOT } from './daemon.js';
import { TEST_LABEL, docker } from './docker.js';

export const OFFLINE_BASE = 'berth-offline-base:bookworm';
/** images/base with the real Claude Code CLI, on the offline base, without task-master. */
export const CLAUDE_IMAGE = 'berth-test-claude-base:bridge';
const CONTEXT = join(REPO_ROOT, 'images/base');
/** The hash of images/base the image was built from: an image built from other files is rebuilt. */
const CONTEXT_LABEL = 'dev.berth.test.context';
const LOCK = '/tmp/berth-test-claude-image.lock';

async function contextHash(): Promise<string> {
  const h = createHash('sha256');
  for (const name of (await readdir(CONTEXT)).sort()) h.update(`${name}\0`).update(await readFile(join(CONTEXT, name))).update('\0');
  return h.digest('hex').slice(0, 16);
}

function build(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('docker', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-8000)));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-8000)));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, out }));
  });
}

/** Test files run in parallel processes: one builds, the others wait (a lock dir with the builder's pid). */
async function locked<T>(fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      await mkdir(LOCK);
      await writeFile(join(LOCK, 'pid'), String(process.pid));
      break;
    } catch {
      const pid = Number(await readFile(join(LOCK, 'pid'), 'utf8').catch(() => '0'));
      let alive = false;
      try {
        if (pid) process.kill(pid, 0);
        alive = pid > 0;
      } catch {
        alive = false;
      }
      const age = Date.now() - ((await stat(LOCK).catch(() => null))?.mtimeMs ?? Date.now());
      if (!alive && age > 2000) await rm(LOCK, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(LOCK, { recursive: true, force: true });
  }
}

/**
 * Builds `image` (CLAUDE_IMAGE unless a test file asks for a tag of its own) from images/base unless
 * an image built from the same files is there. Kept between runs on purpose (labelled for the sweep):
 * removing it would drop its cached layers and download Claude Code (~400 MB) again next time. A tag
 * of its own keeps a test file on the image it built while a checkout with other images/base files
 * rebuilds CLAUDE_IMAGE; the two share every layer up to the first file that differs.
 */
export async function ensureClaudeImage(image = CLAUDE_IMAGE): Promise<string> {
  const hash = await contextHash();
  const current = async () => (await docker('image', 'inspect', '-f', `{{index .Config.Labels "${CONTEXT_LABEL}"}}`, image).catch(() => '')) === hash;
  if (await current()) return image;
  return locked(async () => {
    if (await current()) return image;
    const ca = await readCaCerts('/usr/local/share/ca-certificates');
    const args = ['build', '--force-rm', '--target', 'prod', '--build-arg', `BASE_IMAGE=${OFFLINE_BASE}`, '--build-arg', 'TASK_MASTER=0', '--build-arg', 'CLAUDE_CODE=1'];
    if (ca.length) args.push('--build-arg', `EXTRA_CA_CERTS=${ca.join('\n')}`);
    args.push('--label', `${TEST_LABEL}=true`, '--label', `${CONTEXT_LABEL}=${hash}`, '-t', image, CONTEXT);
    const before = await docker('image', 'inspect', '-f', '{{.Id}}', image).catch(() => '');
    const b = await build(args);
    if (b.code !== 0) throw new Error(`docker build of ${image} failed (${b.code}):\n${b.out}`);
    // The image built from older files is left untagged: it goes (layers the new one shares stay).
    // Not while another tag still names it (CLAUDE_IMAGE and a test file's own tag, built from the same
    // files, are one image): `docker rmi ID` would take every tag of the repository with it.
    const tags = await docker('image', 'inspect', '-f', '{{len .RepoTags}}', before).catch(() => '');
    if (before && tags === '0') await docker('rmi', before).catch(() => {});
    return image;
  });
}

/** Node 20 and git on the offline base: scripted agents that commit and talk to their bridge. */
export const NODE_GIT_IMAGE = 'berth-test-node-git:latest';

/** Builds NODE_GIT_IMAGE once (kept between runs, labelled for the sweep). */
export async function ensureNodeGitImage(): Promise<string> {
  const there = async () => (await docker('image', 'inspect', '-f', '{{.Id}}', NODE_GIT_IMAGE).catch(() => '')) !== '';
  if (await there()) return NODE_GIT_IMAGE;
  return locked(async () => {
    if (await there()) return NODE_GIT_IMAGE;
    const dir = `/tmp/berth-test-node-git-${process.pid}`;
    await mkdir(dir, { recursive: true });
    try {
      await writeFile(
        join(dir, 'Dockerfile'),
        `FROM ${OFFLINE_BASE}\nRUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates && rm -rf /var/lib/apt/lists/*\n`,
      );
      const b = await build(['build', '--force-rm', '--label', `${TEST_LABEL}=true`, '-t', NODE_GIT_IMAGE, dir]);
      if (b.code !== 0) throw new Error(`docker build of ${NODE_GIT_IMAGE} failed (${b.code}):\n${b.out}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return NODE_GIT_IMAGE;
  });
}
