import { describe, expect, it } from 'vitest';
import { BerthError } from '@berth/client-sdk/protocol';
import { formatOf, MAX_TASK_FILE, parseTaskFile } from './file.js';

/** The error parseTaskFile throws for `text`, or a failure when it throws none. */
function refusal(format: 'yaml' | 'json' | 'csv', text: string): BerthError {
  try {
    parseTaskFile(format, text);
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    return err as BerthError;
  }
  throw new Error(`accepted: ${text.slice(0, 80)}`);
}

const both = [
  { key: 'schema', title: 'Design the schema', body: 'Tables for users and orders.', priority: 5, labels: ['db', 'design'] },
  { key: 'api', title: 'Write the API', dependsOn: ['schema'], maxAttempts: 2 },
];

describe('parseTaskFile', () => {
  it('reads a YAML list, and a mapping with a tasks list, the same', () => {
    const list = `
- key: schema
  title: Design the schema
  body: Tables for users and orders.
  priority: 5
  labels: [db, design]
- key: api
  title: Write the API
  dependsOn: [schema]
  maxAttempts: 2
`;
    expect(parseTaskFile('yaml', list)).toEqual(both);
    const mapping = `tasks:\n${list.replace(/^/gm, '  ')}`;
    expect(parseTaskFile('yaml', mapping)).toEqual(both);
  });

  it('reads JSON: a list or {"tasks": [...]}', () => {
    expect(parseTaskFile('json', JSON.stringify(both))).toEqual(both);
    expect(parseTaskFile('json', JSON.stringify({ tasks: both }))).toEqual(both);
  });

  it('reads CSV by its header; lists in a cell are split on ";" or ","; empty cells are left out', () => {
    const csv = [
      'key,title,body,priority,labels,dependsOn,maxAttempts',
      'schema,Design the schema,Tables for users and orders.,5,db;design,,',
      'api,Write the API,,,,schema,2',
    ].join('\n');
    expect(parseTaskFile('csv', csv)).toEqual(both);
    // Columns in any order, a quoted cell with a comma list, a BOM from a spreadsheet.
    const other = '\ufefftitle,key,labels\n"Write, then test",t1,"a, b"\n';
    expect(parseTaskFile('csv', other)).toEqual([{ key: 't1', title: 'Write, then test', labels: ['a', 'b'] }]);
  });

  it('keeps dependsOn as keys (the import maps them to ids) and numbers as keys as strings', () => {
    expect(parseTaskFile('yaml', '- {key: 1, title: one}\n- {key: two, title: two, dependsOn: [1]}\n')).toEqual([
      { key: '1', title: 'one' },
      { key: 'two', title: 'two', dependsOn: ['1'] },
    ]);
  });

  it('an empty YAML file is no tasks', () => {
    expect(parseTaskFile('yaml', '')).toEqual([]);
    expect(parseTaskFile('yaml', 'tasks: []\n')).toEqual([]);
  });

  it('refuses a field it does not know, naming the entry', () => {
    const e = refusal('yaml', '- {key: a, title: A}\n- {key: b, title: B, owner: me}\n');
    expect(e.code).toBe('TASKS_FILE_INVALID');
    expect(e.details).toEqual({ where: 'entry 2' });
    expect(refusal('csv', 'key,title,assignee\na,A,me\n').code).toBe('TASKS_FILE_INVALID');
  });

  it('refuses a missing or malformed key, and a missing title', () => {
    for (const text of ['- {title: no key}\n', '- {key: "../x", title: T}\n', '- {key: "a b", title: T}\n', `- {key: ${'k'.repeat(101)}, title: T}\n`, '- {key: a}\n', '- {key: a, title: "  "}\n']) {
      expect(refusal('yaml', text).code, text).toBe('TASKS_FILE_INVALID');
    }
    expect(refusal('json', '[{"key":"a\\nb","title":"T"}]').code).toBe('TASKS_FILE_INVALID');
  });

  it('refuses values of the wrong type', () => {
    for (const text of ['- {key: a, title: T, priority: high}\n', '- {key: a, title: T, priority: 1.5}\n', '- {key: a, title: T, maxAttempts: 0}\n', '- {key: a, title: T, labels: {x: 1}}\n', '- {key: a, title: T, body: [1]}\n', '- just a string\n', 'tasks: {a: 1}\n', '42\n']) {
      expect(refusal('yaml', text).code, text).toBe('TASKS_FILE_INVALID');
    }
  });

  it('refuses a duplicate mapping key in YAML (a field given twice)', () => {
    expect(refusal('yaml', '- key: a\n  title: T\n  title: U\n').code).toBe('TASKS_FILE_INVALID');
  });

  it('refuses what does not parse as its format', () => {
    expect(refusal('json', '[{"key": "a",').code).toBe('TASKS_FILE_INVALID');
    expect(refusal('yaml', '- key: [a\n').code).toBe('TASKS_FILE_INVALID');
    expect(refusal('csv', 'key,title\na,A,extra\n').code).toBe('TASKS_FILE_INVALID');
  });

  it('refuses a file past MAX_TASK_FILE before parsing it', () => {
    const big = `- key: a\n  title: T\n  body: "${'x'.repeat(MAX_TASK_FILE)}"\n`;
    const e = refusal('yaml', big);
    expect(e.code).toBe('TASKS_FILE_INVALID');
    expect(e.details).toEqual({ where: 'file' });
  });

  it('bounds YAML aliases (a billion laughs is refused, not expanded)', () => {
    const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`), 'tasks: []'].join('\n');
    expect(refusal('yaml', laughs).code).toBe('TASKS_FILE_INVALID');
  });
});

describe('formatOf', () => {
  it('reads the format from the extension, any case', () => {
    expect(formatOf('tasks.yaml')).toBe('yaml');
    expect(formatOf('x/tasks.YML')).toBe('yaml');
    expect(formatOf('tasks.json')).toBe('json');
    expect(formatOf('tasks.csv')).toBe('csv');
    expect(formatOf('tasks.txt')).toBeNull();
    expect(formatOf('tasks')).toBeNull();
  });
});
