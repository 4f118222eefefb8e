import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { BerthError } from '@berth/client-sdk/protocol';

/**
 * Secrets live in `$BERTH_HOME/secrets.yaml` (`name: value`), owner-only. Profiles name them; their
 * values are read only when a container is created, and are never stored, logged or returned.
 */
export class Secrets {
  constructor(private readonly home: string) {}

  get file(): string {
    return join(this.home, 'secrets.yaml');
  }

  /** Values for `refs` (env name → secret name). Throws SECRET_NOT_FOUND / SECRETS_FILE_INSECURE. */
  resolve(refs: Record<string, string>): Record<string, string> {
    const names = Object.entries(refs);
    if (!names.length) return {};
    let st;
    try {
      st = statSync(this.file);
    } catch {
      throw new BerthError('SECRET_NOT_FOUND', `secret ${names[0]![1]} is not defined: ${this.file} does not exist`, {
        details: { secret: names[0]![1] },
      });
    }
    if (st.mode & 0o077) {
      throw new BerthError('SECRETS_FILE_INSECURE', `${this.file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); refusing to use it`);
    }
    const all = (parse(readFileSync(this.file, 'utf8')) ?? {}) as Record<string, unknown>;
    const out: Record<string, string> = {};
    for (const [env, name] of names) {
      const v = all[name];
      if (v === undefined || v === null) {
        throw new BerthError('SECRET_NOT_FOUND', `secret ${name} (for ${env}) is not in ${this.file}`, { details: { secret: name, env } });
      }
      out[env] = String(v);
    }
    return out;
  }
}
