// Settled history for scale runs: rows written straight into a stopped berthd's database.
import { join } from 'node:path';
import Database from 'better-sqlite3';

/**
 * Writes `n` settled sessions (stopped, their containers long gone, no checkout) into the database
 * of the stopped berthd at `home`, each a copy of the real row `templateId` with its own id, name
 * and creation time (before every real row, as history is).
 */
export function addHistory(home, templateId, n) {
  const db = new Database(join(home, 'berth.db'));
  try {
    const t = db.prepare('SELECT * FROM sessions WHERE id = ?').get(templateId);
    if (!t) throw new Error(`no session ${templateId} to copy`);
    const cols = Object.keys(t);
    const insert = db.prepare(`INSERT INTO sessions (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`);
    db.transaction(() => {
      for (let i = 0; i < n; i++) {
        insert.run({
          ...t,
          id: `h${String(i).padStart(31, '0')}`,
          name: `hist-${i}`,
          seq: 1_000_000 + i,
          container_name: `berth-hist-${i}`,
          desired: 'stopped',
          state: 'stopped',
          container_id: null,
          checkout_dir: null,
          checkout_state: null,
          checkout_dev: null,
          checkout_ino: null,
          branch: null,
          base: null,
          base_sha: null,
          created_at: new Date(Date.parse('2026-01-01T00:00:00Z') + i * 1000).toISOString(),
        });
      }
    })();
  } finally {
    db.close();
  }
}
