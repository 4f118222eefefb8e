import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, type ImageVariant } from '@berth/client-sdk/protocol';

/** The earlier task list's naming convention for agent images. */
export const IMAGE_PREFIX = 'claude-agent-';

/**
 * The build argument through which a stack names the image it extends. Its default in the
 * Dockerfile (`ARG BASE=claude-agent-base`) is how berth learns the dependency order; at build
 * time berth passes the parent image of the same variant (`claude-agent-base:dev` for dev).
 */
export const PARENT_ARG = 'BASE';

/** One shipped image: `images/<name>/Dockerfile`. */
export interface Stack {
  name: string;
  dir: string;
  dockerfile: string;
  /** The stack it extends (`null` for one built on an outside image, like base). */
  parent: string | null;
  /** Lower-cased `FROM … AS <stage>` names: a Dockerfile with `prod`/`dev` stages builds the one asked for. */
  stages: string[];
  /** Names of the build arguments it declares. */
  args: string[];
}

/** A stack's directory name under images/ (and the name RPC params may give). */
export const STACK_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/** Stage names, declared build arguments and the parent stack, from a Dockerfile's text. */
export function parseDockerfile(text: string): { parent: string | null; stages: string[]; args: string[] } {
  const stages = [...text.matchAll(/^\s*FROM\s+\S+\s+AS\s+(\S+)/gim)].map((m) => m[1]!.toLowerCase());
  const args = [...new Set([...text.matchAll(/^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)/gim)].map((m) => m[1]!))];
  const arg = new RegExp(`^\\s*ARG\\s+${PARENT_ARG}=["']?${IMAGE_PREFIX}([a-z0-9][a-z0-9_.-]*?)(?::[\\w.-]+)?["']?\\s*$`, 'im').exec(text);
  return { parent: arg ? arg[1]! : null, stages, args };
}

/** Every `<dir>/<name>/Dockerfile`, sorted by name. A missing directory has no stacks. */
export async function readStacks(dir: string): Promise<Stack[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: Stack[] = [];
  for (const e of entries) {
    if (!e.isDirectory() || !STACK_NAME.test(e.name)) continue;
    const dockerfile = join(dir, e.name, 'Dockerfile');
    let text: string;
    try {
      text = await readFile(dockerfile, 'utf8');
    } catch {
      continue;
    }
    out.push({ name: e.name, dir: join(dir, e.name), dockerfile, ...parseDockerfile(text) });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * `wanted` (all when omitted) and every stack they extend, parents before children, otherwise
 * by name. Unknown names are INVALID_PARAMS listing what ships; a dependency cycle is refused.
 */
export function buildOrder(stacks: Stack[], wanted?: string[]): Stack[] {
  const byName = new Map(stacks.map((s) => [s.name, s]));
  for (const w of wanted ?? []) {
    if (!byName.has(w)) {
      throw new BerthError('INVALID_PARAMS', `no shipped stack ${JSON.stringify(w)}; the stacks are: ${stacks.map((s) => s.name).join(', ') || '(none)'}`, {
        details: { stack: w, stacks: stacks.map((s) => s.name) },
      });
    }
  }
  const order: Stack[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (s: Stack, path: string[]) => {
    if (state.get(s.name) === 'done') return;
    if (state.get(s.name) === 'visiting') {
      throw new BerthError('IMAGE_BUILD_FAILED', `stacks extend each other in a cycle: ${[...path, s.name].join(' → ')}`, {
        details: { cycle: [...path, s.name], step: null, lines: [] },
      });
    }
    state.set(s.name, 'visiting');
    const parent = s.parent !== null ? byName.get(s.parent) : undefined;
    if (parent) visit(parent, [...path, s.name]);
    state.set(s.name, 'done');
    order.push(s);
  };
  for (const s of wanted ? wanted.map((w) => byName.get(w)!) : stacks) visit(s, []);
  return order;
}

/** `claude-agent-<stack>:<tag>` for prod; `:dev` (or `:<tag>-dev`) for dev. */
export function stackImageName(stack: string, variant: ImageVariant, tag = 'latest'): string {
  const t = variant === 'prod' ? tag : tag === 'latest' ? 'dev' : `${tag}-dev`;
  return `${IMAGE_PREFIX}${stack}:${t}`;
}

/** The tag part of an image reference (`repo:tag`, `host:5000/repo:tag`), or null when it has none. */
export function tagOf(name: string): string | null {
  return /:([^/:]+)$/.exec(name)?.[1] ?? null;
}

/** The variant a tag implies when none is given: `dev` and `*-dev` are dev. */
export function variantOfTag(name: string): ImageVariant {
  const tag = tagOf(name) ?? 'latest';
  return tag === 'dev' || tag.endsWith('-dev') ? 'dev' : 'prod';
}

/** The shipped stack a `claude-agent-<stack>[:tag]` name refers to, if any. */
export function stackOfName(name: string, stacks: Stack[]): Stack | null {
  const m = new RegExp(`^${IMAGE_PREFIX}([a-z0-9][a-z0-9_.-]*?)(?::[^/:]+)?$`).exec(name);
  return (m && stacks.find((s) => s.name === m[1])) || null;
}
