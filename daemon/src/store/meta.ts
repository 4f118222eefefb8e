import { randomBytes } from 'node:crypto';
import type { Db } from './db.js';

/** The `meta` table: small facts about this daemon's state, such as its instance id. */
export class MetaRepo {
  constructor(private readonly db: Db) {}

  get(key: string): string | undefined {
    return (this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(key))?.value;
  }

  set(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /** This daemon's identity on the engine, made once and kept. */
  instanceId(): string {
    return this.db.transaction(() => {
      let id = this.get('instance_id');
      if (!id) {
        id = randomBytes(6).toString('hex');
        this.set('instance_id', id);
      }
      return id;
    })();
  }
}
