import type { Task } from '@berth/client-sdk/protocol';

/** Notes shown to the next attempt: the latest ones, each cut, so the prompt stays well under what one argument or variable may hold (128 KiB). */
const MAX_NOTES = 10;
const MAX_NOTE_CHARS = 2000;

/**
 * What an agent is told about its task: title, body, and every note earlier attempts, reviews and
 * merges left (what to change, what conflicted). Given as BERTH_TASK_PROMPT and, in the agent's
 * command, wherever it says {{task.prompt}}.
 */
export function promptOf(t: Task, role: 'worker' | 'reviewer' = 'worker'): string {
  const lines = [
    role === 'reviewer'
      ? `Review berth task ${t.id} on branch ${t.result?.branch ?? `berth/task-${t.id}`} against its base. Decide with \`berth-task approve\` or \`berth-task changes --notes "..."\`.`
      : `berth task ${t.id}: ${t.title}`,
  ];
  if (role === 'reviewer') lines.push('', `Task: ${t.title}`);
  if (t.body) lines.push('', t.body);
  if (role === 'reviewer' && t.result?.summary) lines.push('', `The agent's summary: ${t.result.summary}`);
  const notes = t.notes.slice(-MAX_NOTES * 3).filter((n) => n.kind === 'changes' || n.kind === 'conflict' || n.kind === 'failed' || n.kind === 'expired' || n.kind === 'stuck' || n.kind === 'exited');
  if (notes.length) {
    lines.push('', 'Earlier attempts:');
    for (const n of notes.slice(-MAX_NOTES)) lines.push(`- attempt ${n.attempt} (${n.kind}): ${n.text.length > MAX_NOTE_CHARS ? `${n.text.slice(0, MAX_NOTE_CHARS)}…` : n.text}`);
  }
  if (role === 'worker') lines.push('', 'Commit your work on this branch, then run `berth-task complete --summary "..."` (or `berth-task fail --reason "..."`).');
  return lines.join('\n');
}

/** An argument of the agent's command with {{task.id}}, {{task.title}} and {{task.prompt}} filled in. */
export function substitute(arg: string, t: Task, role: 'worker' | 'reviewer' = 'worker'): string {
  return arg.replace(/\{\{\s*task\.(id|title|prompt)\s*\}\}/g, (_, k: string) => (k === 'id' ? String(t.id) : k === 'title' ? t.title : promptOf(t, role)));
}
