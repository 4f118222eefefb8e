import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { parse, printParseErrorCode, type ParseError } from 'jsonc-parser';
import type { Logger } from '../log.js';

/** What berth takes from a project's devcontainer.json; everything else is reported once. */
export type DevcontainerImage =
  | { kind: 'image'; image: string }
  | { kind: 'build'; dockerfile: string; context: string; args: Record<string, string>; tag: string };

const SUPPORTED = new Set(['name', 'image', 'build', '$schema']);

/** JSON with comments and trailing commas, as devcontainer.json allows; throws on anything else. */
export function parseJsonc(text: string): unknown {
  const errors: ParseError[] = [];
  const value: unknown = parse(text, errors, { allowTrailingComma: true, disallowComments: false });
  if (errors.length) {
    const e = errors[0]!;
    const line = text.slice(0, e.offset).split('\n').length;
    throw new SyntaxError(`${printParseErrorCode(e.error)} at line ${line}`);
  }
  return value;
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
        const value = parseJsonc(text);
        if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SyntaxError('the top level must be an object');
        doc = value as Record<string, unknown>;
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
