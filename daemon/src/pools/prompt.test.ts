import { describe, expect, it } from 'vitest';
import type { Task } from '@berth/client-sdk/protocol';
import { promptOf, substitute } from './prompt.js';

const task = (over: Partial<Task> = {}): Task => ({
  id: 7, project: 'web', key: null, title: 'Add a flag', body: 'Details.', priority: 0, labels: [], dependsOn: [], state: 'claimed', claim: null,
  attempts: 1, maxAttempts: 3, result: null, notes: [], pool: 'web-pool', createdAt: 't', updatedAt: 't', ...over,
});

describe('what an agent is told about its task', () => {
  it('has the title, the body and what earlier attempts and reviews said', () => {
    const p = promptOf(task({ notes: [{ at: 't', attempt: 1, session: 's', kind: 'changes', text: 'name it --verbose' }, { at: 't', attempt: 1, session: null, kind: 'reopened', text: 'by hand' }] }));
    expect(p).toContain('berth task 7: Add a flag');
    expect(p).toContain('Details.');
    expect(p).toContain('attempt 1 (changes): name it --verbose');
    expect(p).not.toContain('by hand');
    expect(promptOf(task({ result: { branch: 'berth/task-7', commit: 'c', summary: 'did it', merged: null } }), 'reviewer')).toContain('berth/task-7');
  });

  it('stays bounded however many and however long the notes (it travels in one argument or variable)', () => {
    const notes = Array.from({ length: 200 }, (_, i) => ({ at: 't', attempt: i, session: null, kind: 'exited' as const, text: 'x'.repeat(16 * 1024) }));
    const p = promptOf(task({ body: 'b'.repeat(64 * 1024), notes }));
    expect(Buffer.byteLength(p)).toBeLessThan(100 * 1024);
    expect(p).toContain('attempt 199 (exited)');
    // Counted in bytes: three bytes a character.
    const wide = promptOf(task({ body: '漢'.repeat(21_000), notes: notes.map((n) => ({ ...n, text: '字'.repeat(5000) })), result: { branch: 'b', commit: 'c', summary: '要'.repeat(5000), merged: null } }), 'reviewer');
    expect(Buffer.byteLength(wide)).toBeLessThanOrEqual(100 * 1024);
    expect(wide).not.toContain('\uFFFD');
  });

  it('fills {{task.*}} in the agent command and leaves everything else alone', () => {
    expect(substitute('--id={{task.id}} {{ task.title }} {{task.other}} $HOME', task())).toBe('--id=7 Add a flag {{task.other}} $HOME');
    expect(substitute('{{task.prompt}}', task())).toBe(promptOf(task()));
  });
});
