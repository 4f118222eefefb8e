import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { Logger } from '../log.js';

/** What berth takes from a project's devcontainer.json; everything else is reported once. */
export type DevcontainerImage =
  | { kind: 'image'; image: string }
  | { kind: 'build'; dockerfile: string; context: string; args: Record<string, string>; tag: string };

const SUPPORTED = new Set(['name', 'image', 'build', '$schema']);

/** JSON with comments and trailing commas, as devcontainer.json allows. */
export function parseJsonc(text: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
      out += '\n';
    } else if (c === '/' && text[i + 1] === '*') {
      i += 2;
      while (i < text.length && !(text[i] === '*' && text[i + 1] === '/')) i++;
      i++;
    } else out += c;
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, '$1'));
}

/**
 * Reads `.devcontainer/devcontainer.json` (or `.devcontainer.json`) of a project: `image`, or
 * `build.dockerfile` (+ `context`, `args`) resolved inside the project. Unsupported fields are
 * logged once per project. Returns null when there is none (or it cannot be used).
 */
export class Devcontainers {
  private readonly warned = new Set<string>();

  constructor(private readonly log: Logger) {}

  async read(project: { name: string; path: string }): Promise<DevcontainerImage | null> {
    for (const rel of ['.devcontainer/devcontainer.json', '.devcontainer.json']) {
      const file = join(project.path, rel);
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch {
        continue;
      }
      let doc: Record<string, unknown>;
      try {
        doc = parseJsonc(text) as Record<string, unknown>;
      } catch (err) {
        this.warnOnce(project.name, `${file} is not valid JSON: ${(err as Error).message}`);
        return null;
      }
      const unsupported = Object.keys(doc).filter((k) => !SUPPORTED.has(k));
      if (unsupported.length) this.warnOnce(project.name, `${file}: berth ignores ${unsupported.join(', ')} (it uses only image and build)`);
      if (typeof doc.image === 'string' && doc.image) return { kind: 'image', image: doc.image };
      const build = doc.build as { dockerfile?: unknown; context?: unknown; args?: unknown } | undefined;
      if (build && typeof build.dockerfile === 'string') {
        const base = dirname(file);
        const dockerfile = resolve(base, build.dockerfile);
        const context = resolve(base, typeof build.context === 'string' ? build.context : '.');
        for (const p of [dockerfile, context]) {
          const r = relative(project.path, p);
          if (r.startsWith('..') || isAbsolute(r)) {
            this.warnOnce(project.name, `${file}: ${p} is outside the project; ignoring the devcontainer build`);
            return null;
          }
        }
        const args = Object.fromEntries(Object.entries((build.args as Record<string, unknown>) ?? {}).map(([k, v]) => [k, String(v)]));
        const content = await readFile(dockerfile, 'utf8').catch(() => '');
        const hash = createHash('sha256').update(JSON.stringify({ content, context: relative(project.path, context), args })).digest('hex').slice(0, 12);
        return { kind: 'build', dockerfile, context, args, tag: `berth-devcontainer-${project.name}:${hash}` };
      }
      return null;
    }
    return null;
  }

  private warnOnce(project: string, message: string): void {
    const key = `${project}\0${message}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.log.warn({ project }, message);
  }
}
