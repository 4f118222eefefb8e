import { parse as parseCsv } from 'csv-parse/sync';
import { parse as parseYaml } from 'yaml';
import { BerthError, MAX_TASK_FILE, type TaskFileEntry } from '@berth/client-sdk/protocol';

export { MAX_TASK_FILE };

const KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const FIELDS = new Set(['key', 'title', 'body', 'priority', 'labels', 'dependsOn', 'maxAttempts']);

const invalid = (where: string, msg: string) => new BerthError('TASKS_FILE_INVALID', `${where}: ${msg}`, { details: { where } });

function strings(where: string, field: string, v: unknown): string[] {
  if (v === undefined || v === null || v === '') return [];
  if (typeof v === 'string') return v.split(/[,;]/).map((x) => x.trim()).filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number')) return v.map(String);
  throw invalid(where, `${field} must be a list of strings`);
}

function int(where: string, field: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw invalid(where, `${field} must be a whole number from ${min} to ${max}`);
  return n;
}

/** One entry, checked: a key, a title, known fields only. */
export function toEntry(where: string, raw: unknown): TaskFileEntry {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(where, 'each task is a mapping with at least key and title');
  const o = raw as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !FIELDS.has(k));
  if (unknown.length) throw invalid(where, `unknown field ${JSON.stringify(unknown[0])} (fields: ${[...FIELDS].join(', ')})`);
  const key = typeof o.key === 'number' ? String(o.key) : o.key;
  if (typeof key !== 'string' || !KEY.test(key)) throw invalid(where, 'key must be 1-100 letters, digits, ".", "_" or "-", starting with a letter or digit');
  if (typeof o.title !== 'string' || o.title.trim() === '') throw invalid(where, 'title must be a non-empty string');
  if (o.body !== undefined && o.body !== null && typeof o.body !== 'string') throw invalid(where, 'body must be a string');
  const priority = int(where, 'priority', o.priority, -1_000_000, 1_000_000);
  const maxAttempts = int(where, 'maxAttempts', o.maxAttempts, 1, 100);
  const labels = strings(where, 'labels', o.labels);
  const dependsOn = strings(where, 'dependsOn', o.dependsOn);
  return {
    key,
    title: o.title,
    ...(typeof o.body === 'string' && o.body !== '' ? { body: o.body } : {}),
    ...(priority !== undefined ? { priority } : {}),
    ...(labels.length ? { labels } : {}),
    ...(dependsOn.length ? { dependsOn } : {}),
    ...(maxAttempts !== undefined ? { maxAttempts } : {}),
  };
}

/**
 * A task file's entries. YAML and JSON: a list of tasks, or a mapping with a `tasks` list. CSV: a
 * header row naming the fields (key,title,body,priority,labels,dependsOn,maxAttempts); lists are
 * separated by `;` or `,` inside a quoted cell. Anything malformed is TASKS_FILE_INVALID naming the entry.
 */
export function parseTaskFile(format: 'yaml' | 'json' | 'csv', text: string): TaskFileEntry[] {
  if (Buffer.byteLength(text, 'utf8') > MAX_TASK_FILE) throw invalid('file', `larger than ${MAX_TASK_FILE} bytes`);
  let doc: unknown;
  try {
    if (format === 'json') doc = JSON.parse(text);
    else if (format === 'yaml') doc = parseYaml(text, { maxAliasCount: 100, uniqueKeys: true }) ?? [];
    else {
      doc = parseCsv(text, { columns: true, skip_empty_lines: true, trim: true, bom: true, relax_column_count: false }) as Record<string, string>[];
    }
  } catch (err) {
    throw invalid('file', `not valid ${format.toUpperCase()}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc && typeof doc === 'object' && !Array.isArray(doc) && 'tasks' in doc) doc = (doc as { tasks: unknown }).tasks;
  if (!Array.isArray(doc)) throw invalid('file', 'expected a list of tasks (or a mapping with a "tasks" list)');
  return doc.map((raw, i) => toEntry(`entry ${i + 1}`, raw));
}

/** The format a file name says (tasks.yaml, .yml, .json, .csv), or null. */
export function formatOf(file: string): 'yaml' | 'json' | 'csv' | null {
  const m = /\.(ya?ml|json|csv)$/i.exec(file);
  if (!m) return null;
  const ext = m[1]!.toLowerCase();
  return ext === 'json' ? 'json' : ext === 'csv' ? 'csv' : 'yaml';
}
