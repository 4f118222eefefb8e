import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BerthEvent } from '@berth/client-sdk/protocol';
import { ensureClaudeImage } from '../helpers/claude-image.js';
import { finished, sh, type DaemonProcess } from '../helpers/daemon.js';
import { startBridgeDaemon, type BridgeDaemon } from '../helpers/bridge-daemon.js';
import type { ModelUpstream } from '../helpers/model-upstream.mjs';

/** images/base as the bridge tests build it, under a tag of its own (see ensureClaudeImage). */
const IMAGE = 'berth-test-claude-base:tasks';
const KEY = 'sk-ant-api03-host-key-for-the-task-tools';
const ANSWER = 'The task is done.';
/** The berth plugin's MCP server `tasks`, as Claude Code names its tools. */
const TOOL = (name: string) => `mcp__plugin_berth_tasks__${name}`;
const TOOLS = ['claim_task', 'heartbeat_task', 'complete_task', 'fail_task', 'release_task', 'review_task'];

/** `KEY rest` lines of an agent's output, by KEY (the last one wins). */
function marks(logs: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of logs.split('\n')) {
    const hit = /^([A-Z_]+) ?(.*)$/.exec(line);
    if (hit) m.set(hit[1]!, hit[2]!);
  }
  return m;
}

/**
 * Tasks from inside a session of images/base, through a real berthd and its bridge: `berth-task` for
 * scripted agents, and the berth MCP tools for the real Claude Code CLI (`claude -p`), whose model
 * (the stand-in upstream) calls them; nothing in the container has a network.
 */
describe('tasks in images/base: berth-task and the MCP tools', () => {
  let b: BridgeDaemon;
  let up: ModelUpstream;
  let d: DaemonProcess;
  let events: BerthEvent[];

  beforeAll(async () => {
    await ensureClaudeImage(IMAGE);
    b = await startBridgeDaemon({ upstream: { answer: ANSWER, keepBodies: true }, secrets: { anthropic: KEY } });
    ({ d, up, events } = b);
  }, 900_000);

  afterAll(async () => {
    await b?.[Symbol.asyncDispose]();
  });

  it('berth-task: claim prints the task, heartbeat, complete; nothing open is 3, not held is 4, usage 2, no bridge 1', async () => {
    // A title with a right-to-left override: printed escaped, read back intact.
    const title = 'Add a login page \u202egnp.exe';
    const task = await d.client.tasks.add({ project: 'web', title, body: 'The form posts to /login.' });
    const script = [
      't=/tmp/bt; mkdir -p $t',
      'berth-task complete --summary early 2>$t/e1; rc=$?; echo "EARLY $rc $(head -1 $t/e1)"',
      'berth-task claim --lease 5 2>/dev/null; echo "BADLEASE $?"',
      'CLAUDE_BRIDGE_SOCKET=/tmp/nowhere.sock berth-task claim 2>$t/e2; rc=$?; echo "UNREACHABLE $rc $(head -1 $t/e2)"',
      'berth-task show >/dev/null 2>&1; echo "SHOW_BEFORE $?"',
      'berth-task claim --lease 120 >$t/claimed.json; echo "CLAIM $?"',
      `echo "CLAIMED $(jq -c '{id, state, session: .claim.session}' $t/claimed.json)"`,
      `[ "$(jq -r .title $t/claimed.json)" = "$(printf 'Add a login page \\342\\200\\256gnp.exe')" ] && echo TITLE_OK`,
      `echo "RAW_BIDI $(LC_ALL=C grep -c "$(printf '\\342\\200\\256')" $t/claimed.json)"`,
      'berth-task show >/dev/null 2>&1; echo "SHOW $?"',
      `echo "AGAIN $(berth-task claim | jq -c '{id}')"`,
      'berth-task heartbeat -q; echo "HEARTBEAT $?"',
      `printf 'did it' | berth-task complete --summary-file - >$t/done.json; rc=$?; echo "COMPLETE $rc $(jq -c '{id, state}' $t/done.json)"`,
      'berth-task claim >$t/none.json 2>/dev/null; echo "EMPTY $? $(wc -c <$t/none.json)"',
      'berth-task complete --summary again 2>$t/e3; rc=$?; echo "AFTER $rc $(head -1 $t/e3)"',
      'berth-task show >/dev/null 2>&1; echo "SHOW_AFTER $?"',
    ].join('\n');
    await d.client.agents.define({ name: 'scripted', image: IMAGE, command: sh(script), network: 'none', restartPolicy: 'never' });
    const s = await d.client.sessions.start({ project: 'web', agent: 'scripted' });
    const { session: done, logs } = await finished(d.client, s.id, 180_000, 'the scripted agent');
    expect(done.exitCode, logs).toBe(0);
    const m = marks(logs);
    const out = (k: string) => m.get(k) ?? `(no ${k} line in)\n${logs}`;

    // Not held before the claim: exit 4 with the code (and its numeric JSON-RPC code).
    expect(out('EARLY')).toMatch(/^4 berth-task: TASK_NOT_HELD \(1601\): /);
    expect(out('BADLEASE')).toBe('2');
    expect(out('UNREACHABLE')).toMatch(/^1 berth-task: BRIDGE_UNREACHABLE: /);
    expect(out('SHOW_BEFORE')).toBe('3');

    expect(out('CLAIM')).toBe('0');
    expect(JSON.parse(out('CLAIMED'))).toEqual({ id: task.id, state: 'claimed', session: s.id });
    expect(m.has('TITLE_OK'), logs).toBe(true);
    expect(out('RAW_BIDI')).toBe('0');
    // /host/task.json is what a pool gives its sessions; a task claimed through the bridge is in the answer (and in claim again).
    expect(out('SHOW')).toBe('3');
    // Claiming again returns the task it holds.
    expect(JSON.parse(out('AGAIN'))).toEqual({ id: task.id });
    expect(out('HEARTBEAT')).toBe('0');
    const [rc, json] = out('COMPLETE').split(' ', 2);
    expect([rc, JSON.parse(json!)]).toEqual(['0', { id: task.id, state: 'done' }]);
    // The only task is done: nothing open (3, nothing on stdout); holding nothing (4); no task file (3).
    expect(out('EMPTY')).toBe('3 0');
    expect(out('AFTER')).toMatch(/^4 berth-task: TASK_NOT_HELD \(1601\): /);
    expect(out('SHOW_AFTER')).toBe('3');

    const after = await d.client.tasks.get({ id: task.id });
    expect(after).toMatchObject({ state: 'done', claim: null, result: { summary: 'did it', branch: done.checkout?.branch } });
    expect(events.some((e) => e.type === 'task.claimed' && e.data.task.id === task.id && e.data.session.id === s.id)).toBe(true);
    await d.client.sessions.remove({ id: s.id, force: true });
  }, 300_000);

  it('claude -p: the model claims the task with the berth MCP tool and completes it, no permission asked', async () => {
    const task = await d.client.tasks.add({ project: 'web', title: 'Write the changelog' });
    up.seen.length = 0;
    up.opts.toolSteps = [
      { name: TOOL('claim_task'), input: {} },
      { name: TOOL('complete_task'), input: { summary: 'Changelog written by Claude Code' } },
    ];
    await d.client.agents.define({
      name: 'claude-tasks',
      image: IMAGE,
      command: ['claude', '-p', 'Claim your berth task, do it, and complete it.', '--output-format', 'json'],
      network: 'none',
      restartPolicy: 'never',
    });
    const s = await d.client.sessions.start({ project: 'web', agent: 'claude-tasks' });
    const { session: done, logs } = await finished(d.client, s.id, 240_000, 'claude -p to finish');
    const asked = up.messages().map((q) => ({ tool: q.tool, body: JSON.parse(q.body ?? '{}') as { tools?: { name: string }[]; messages?: { role: string; content: unknown }[] } }));
    const trace = `logs:\n${logs}\nupstream: ${JSON.stringify(asked.map((a) => [a.tool, (a.body.tools ?? []).map((t) => t.name)]))}`;
    expect(done.exitCode, trace).toBe(0);
    const line = logs.split('\n').find((l) => l.startsWith('{') && l.includes('"type":"result"'));
    // Allowed by the image's managed settings: `-p` has nobody to ask, so anything else is a denial.
    expect(JSON.parse(line ?? '{}'), trace).toMatchObject({ is_error: false, result: ANSWER, permission_denials: [] });

    // Claude Code offered the model the six tools of the berth plugin, and the model called two.
    const offered = new Set(asked.flatMap((a) => (a.body.tools ?? []).map((t) => t.name)).filter((n) => n.startsWith('mcp__plugin_berth_')));
    expect([...offered].sort(), trace).toEqual(TOOLS.map(TOOL).sort());
    expect(asked.map((a) => a.tool).filter(Boolean), trace).toEqual([TOOL('claim_task'), TOOL('complete_task')]);
    // What the tools answered reached the model, not a permission refusal.
    const results = asked.at(-1)!.body.messages!.flatMap((msg) => (Array.isArray(msg.content) ? (msg.content as { type: string; is_error?: boolean; content?: unknown }[]) : [])).filter((c) => c.type === 'tool_result');
    expect(results.map((r) => r.is_error ?? false), trace).toEqual([false, false]);
    expect(JSON.stringify(results[0]!.content)).toContain(`This session holds berth task ${task.id}`);

    // The session that ran Claude Code claimed the task and completed it.
    expect(events.some((e) => e.type === 'task.claimed' && e.data.task.id === task.id && e.data.session.id === s.id), trace).toBe(true);
    expect(await d.client.tasks.get({ id: task.id })).toMatchObject({ state: 'done', claim: null, result: { summary: 'Changelog written by Claude Code', branch: done.checkout?.branch } });
    up.opts.toolSteps = null;
    await d.client.sessions.remove({ id: s.id, force: true });
  }, 300_000);
});
