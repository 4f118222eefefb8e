#!/usr/bin/env node
// The berth MCP server (stdio): the task methods of the Claude bridge (BridgeTaskMethods in
// client-sdk/src/protocol/tasks.ts) as tools for Claude Code, which starts it from berth's plugin
// (/opt/berth/claude-plugins, enabled in /etc/claude-code/managed-settings.json). Each tool is one
// JSON-RPC call on $CLAUDE_BRIDGE_SOCKET; the socket is the session's identity, so no tool names a task.
// berthd's refusals come back as tool errors that start with berth's code (TASK_NOT_HELD ...), so
// the model can tell "not yours" from "try again".
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';
import { BridgeError, callBridge, escapeText, safeJson } from './bridge-rpc.mjs';

const leaseSec = z
  .number()
  .int()
  .min(10)
  .max(86_400)
  .optional()
  .describe('Lease length in seconds (10 to 86400). The task goes back to the backlog if the lease runs out without a heartbeat; default 600.');
// Longer than 16 KiB (of UTF-8) is refused by berthd as TASK_TOO_LARGE, which the model sees.
const note = (what) => z.string().describe(what);

const server = new McpServer({ name: 'berth', version: '1.0.0' });

function ok(text) {
  return { content: [{ type: 'text', text }] };
}

function refused(err) {
  if (err instanceof BridgeError) {
    const head = `${err.code}${err.rpcCode === null ? '' : ` (${err.rpcCode})`}: ${escapeText(err.message)}`;
    return { isError: true, content: [{ type: 'text', text: err.hint ? `${head}\n${escapeText(err.hint)}` : head }] };
  }
  return { isError: true, content: [{ type: 'text', text: `INTERNAL_ERROR: ${escapeText(err?.message ?? err)}` }] };
}

/**
 * One tool: a bridge method, its result's task shown as JSON with `lead` above it. Never deferred
 * behind Claude Code's tool search (anthropic/alwaysLoad): an agent told in its prompt to work on
 * its task should find these tools among its own from the first step.
 */
function tool(name, method, config, lead) {
  server.registerTool(name, { ...config, _meta: { 'anthropic/alwaysLoad': true } }, async (args) => {
    try {
      const result = await callBridge(method, args ?? {});
      const task = result?.task;
      if (task === null) return ok('No task is open to claim: every task of the project is done, claimed by another session, or waiting for its dependencies.');
      if (!task || typeof task !== 'object') return refused(new BridgeError('BRIDGE_PROTOCOL', `${method} answered without a task`));
      return ok(`${lead(task)}\n\n${safeJson(task)}`);
    } catch (err) {
      return refused(err);
    }
  });
}

const leaseArgs = { leaseSec };

tool(
  'claim_task',
  'tasks.claim',
  {
    title: 'Claim a berth task',
    description:
      "Claim the task this berth session works on: the one it already holds (or, for a pool's reviewer, the one it reviews), else the highest-priority open task of the project. Returns the task as JSON (id, title, body, notes from earlier attempts), or says none is open. Claiming again is safe: it returns the same task and renews its lease.",
    inputSchema: leaseArgs,
  },
  (t) =>
    t.state === 'review'
      ? `This session reviews berth task ${Number(t.id)}: review its branch${t.result?.branch ? ` ${escapeText(t.result.branch, 200)}` : ''}, then call review_task with approve, or changes and notes saying what to change.`
      : `This session holds berth task ${Number(t.id)}${t.claim?.leaseUntil ? ` (lease until ${escapeText(t.claim.leaseUntil, 40)})` : ''}. When it is done, commit your work and call complete_task with a summary; if you cannot do it, call fail_task or release_task.`,
);

tool(
  'heartbeat_task',
  'tasks.heartbeat',
  {
    title: 'Renew the lease of the berth task',
    description: 'Renew the lease of the task this session holds, so it is not handed to another agent. Call it during long work (model traffic also renews it).',
    inputSchema: leaseArgs,
  },
  (t) => `Lease of berth task ${Number(t.id)} renewed${t.claim?.leaseUntil ? ` until ${escapeText(t.claim.leaseUntil, 40)}` : ''}.`,
);

tool(
  'complete_task',
  'tasks.complete',
  {
    title: 'Complete the berth task',
    description: 'Report the task this session holds as done, with a summary of what changed. Commit the work on the branch first.',
    inputSchema: { summary: note('What was done: the change, where, and how it was checked (at most 16 KiB).') },
  },
  (t) => `Berth task ${Number(t.id)} is ${t.state === 'review' ? 'completed and waits for review' : escapeText(t.state, 20)}.`,
);

tool(
  'fail_task',
  'tasks.fail',
  {
    title: 'Give up the berth task as failed',
    description: 'Report that the task this session holds cannot be done, with the reason. It goes to another attempt, or is failed once its attempts are used up.',
    inputSchema: { reason: note('Why the task could not be done (at most 16 KiB).') },
  },
  (t) => `Berth task ${Number(t.id)} given up (now ${escapeText(t.state, 20)}).`,
);

tool(
  'release_task',
  'tasks.release',
  {
    title: 'Release the berth task',
    description: 'Hand the task this session holds back to the backlog for another attempt, optionally saying why.',
    inputSchema: { reason: note('Why it is released (at most 16 KiB).').optional() },
  },
  (t) => `Berth task ${Number(t.id)} released (now ${escapeText(t.state, 20)}).`,
);

tool(
  'review_task',
  'tasks.review',
  {
    title: 'Decide on the berth task under review',
    description: "For a pool's reviewer session: approve the task it reviews, or ask for changes (notes say what to change; the task reopens with them).",
    inputSchema: {
      decision: z.enum(['approve', 'changes']).describe('approve, or changes to send it back'),
      notes: note('What to change (needed for changes), or remarks on approval (at most 16 KiB).').optional(),
    },
  },
  (t) => `Review of berth task ${Number(t.id)} recorded (now ${escapeText(t.state, 20)}).`,
);

await server.connect(new StdioServerTransport());
