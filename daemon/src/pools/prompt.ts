import type { Task } from '@berth/client-sdk/protocol';

/** Notes shown to the next attempt: the latest ones, each cut, so the prompt stays well under what one argument or variable may hold (128 KiB). */
const MAX_NOTES = 10;
const MAX_NOTE_CHARS = 2000;
/** Linux takes at most 128 KiB in one argument or environment variable; the prompt stays under 100 KiB (bytes, not characters). */
const MAX_PROMPT_BYTES = 100 * 1024;

/** `text` cut to at most `max` bytes of UTF-8 (the … included), on a character boundary. */
function cutBytes(text: string, max: number): string {
  if (Buffer.byteLength(text, 'utf8') <= max) return text;
  const cut = Buffer.from(text, 'utf8').subarray(0, max - 3).toString('utf8');
  // A character split at the end decodes as U+FFFD: drop it.
  return `${cut.replace(/\uFFFD$/, '')}…`;
}

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
  const tail = role === 'worker' ? '\n\nCommit your work on this branch, then run `berth-task complete --summary "..."` (or `berth-task fail --reason "..."`).' : '';
  return cutBytes(lines.join('\n'), MAX_PROMPT_BYTES - Buffer.byteLength(tail)) + tail;
}

/** An argument of the agent's command with {{task.id}}, {{task.title}} and {{task.prompt}} filled in. */
export function substitute(arg: string, t: Task, role: 'worker' | 'reviewer' = 'worker'): string {
  return arg.replace(/\{\{\s*task\.(id|title|prompt)\s*\}\}/g, (_, k: string) => (k === 'id' ? String(t.id) : k === 'title' ? t.title : promptOf(t, role)));
}
