import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BerthEvent } from '@berth/client-sdk/protocol';
import { CLAUDE_IMAGE, ensureClaudeImage } from '../helpers/claude-image.js';
import { finished, poll, type DaemonProcess } from '../helpers/daemon.js';
import { docker } from '../helpers/docker.js';
import { startBridgeDaemon, type BridgeDaemon } from '../helpers/bridge-daemon.js';
import type { ModelUpstream } from '../helpers/model-upstream.mjs';

const KEY = 'sk-ant-api03-host-key-for-the-real-cli';

/**
 * Claude Code as a person runs it: interactive, on a terminal (tmux session `claude`), in the
 * workspace with its onboarding and trust dialog already answered; the agent lasts as long as it.
 */
const interactiveClaude = (args: string) => {
  const trust = JSON.stringify({ hasCompletedOnboarding: true, projects: { '/workspace': { hasTrustDialogAccepted: true } } });
  return [
    'sh',
    '-c',
    `echo '${trust}' > "$HOME/.claude.json"; tmux new-session -d -s claude -x 160 -y 50 'claude ${args}'; ` +
      'while tmux has-session -t claude 2>/dev/null; do sleep 1; done',
  ];
};
const ANSWER = 'The tests pass now.';

/**
 * The whole way: berthd starts a session from images/base whose agent is the real Claude Code CLI
 * (`claude -p`), with no network at all; Claude Code reaches the stand-in upstream only through the
 * session's bridge, as the host, and its hooks tell berth what it does.
 */
describe('the real Claude Code CLI in a berth session', () => {
  let b: BridgeDaemon;
  let up: ModelUpstream;
  let d: DaemonProcess;
  let events: BerthEvent[];

  beforeAll(async () => {
    await ensureClaudeImage();
    b = await startBridgeDaemon({ upstream: { answer: ANSWER }, secrets: { anthropic: KEY }, env: { BERTH_ACTIVITY_CHECK_SEC: '1' } });
    ({ d, up, events } = b);
  }, 900_000);

  afterAll(async () => {
    await b?.[Symbol.asyncDispose]();
  });

  it('`claude -p` answers through the bridge with --network none, as the host, counted and reported', async () => {
    await d.client.agents.define({
      name: 'coder',
      image: CLAUDE_IMAGE,
      command: ['claude', '-p', 'fix the failing tests', '--output-format', 'json'],
      network: 'none',
      restartPolicy: 'never',
    });
    const s = await d.client.sessions.start({ project: 'web', agent: 'coder' });
    const { session: done, logs } = await finished(d.client, s.id, 180_000, 'claude -p to finish');
    expect(done.exitCode, logs).toBe(0);
    const line = logs.split('\n').find((l) => l.startsWith('{') && l.includes('"type":"result"'));
    expect(line, logs).toBeTruthy();
    const result = JSON.parse(line!) as { result: string; usage: Record<string, number> };
    expect(result.result).toBe(ANSWER);

    // The upstream saw the host's key and nothing of the container's placeholder.
    const calls = up.messages();
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) {
      expect(c.headers['x-api-key']).toBe(KEY);
      expect(c.headers.authorization).toBeUndefined();
    }
    // berth counted what the upstream reported, request for request.
    const usage = await d.client.sessions.usage({ id: s.id });
    expect(usage.requests).toBe(calls.length);
    expect(usage.inputTokens).toBe(11 * calls.length);
    expect(usage.outputTokens).toBe(7 * calls.length);
    expect(usage.cacheReadTokens).toBe(5 * calls.length);
    expect(usage.cacheCreationTokens).toBe(3 * calls.length);
    // Claude Code's own count agrees.
    expect(result.usage.input_tokens).toBe(11);
    // Its hooks reached berth: the turn ended.
    expect(events.some((e) => e.type === 'session.activity' && e.data.id === s.id)).toBe(true);
    expect((await d.client.sessions.get({ id: s.id })).activity?.reason).toMatch(/^hook:(Stop|SessionEnd)/);
    // Nothing of the key in the container's description or its output.
    expect(await docker('inspect', done.containerId!)).not.toContain(KEY);
    expect(logs).not.toContain(KEY);
  }, 300_000);

  it('Claude Code asking for permission (a real prompt, in tmux) is waiting-input at once and never called stuck', async () => {
    // The model asks to run a command; Claude Code, in its default permission mode, asks a person.
    up.opts.toolUse = { name: 'Bash', input: { command: 'touch /workspace/asked', description: 'Make a file' } };
    await d.client.agents.define({
      name: 'asker',
      image: CLAUDE_IMAGE,
      command: interactiveClaude('"make a file" --permission-mode default'),
      network: 'none',
      stuckAfterSec: 6,
      restartPolicy: 'always',
    });
    const s = await d.client.sessions.start({ project: 'web', agent: 'asker' });
    const e = await poll(
      async () => events.find((x) => x.type === 'session.activity' && x.data.id === s.id && x.data.activity.state === 'waiting-input'),
      120_000,
      'waiting-input',
    );
    expect(e.type === 'session.activity' && e.data.activity.reason).toBe('hook:PermissionRequest: permission to use Bash');
    // For the record (no timing assertion): from the model's last answer to the event.
    const asked = up.messages().filter((m) => m.tool === 'Bash').at(-1)!;
    console.log(`permission prompt: waiting-input on /events ${Date.parse(e.ts) - asked.at} ms after the model asked for the tool`);
    // It is the permission prompt on Claude Code's screen.
    const screen = await d.client.sessions.exec({ id: s.id, cmd: ['tmux', 'capture-pane', '-p', '-t', 'claude'] });
    expect(screen.stdout).toContain('Do you want to proceed?');
    await poll(async () => events.some((x) => x.type === 'notification' && x.data.kind === 'waiting-input' && x.data.session.id === s.id), 10_000, 'its notification');
    expect(events.find((x) => x.type === 'notification' && x.data.session.id === s.id)).toMatchObject({ data: { message: 'waiting for input: permission to use Bash' } });
    // Three times its stuck timeout with nothing but the prompt on screen: not stuck, not restarted.
    await new Promise((r) => setTimeout(r, 18_000));
    const x = await d.client.sessions.get({ id: s.id });
    expect(x.activity?.state).toBe('waiting-input');
    expect(x.containerId).toBe(s.containerId);
    expect(x.restartCount).toBe(0);
    expect(events.some((y) => y.type === 'session.activity' && y.data.id === s.id && y.data.activity.state === 'stuck')).toBe(false);
    // One wait, one notification (Claude Code's own Notification hook about the same dialog comes later).
    expect(events.filter((y) => y.type === 'notification' && y.data.session.id === s.id)).toHaveLength(1);
    await d.client.sessions.remove({ id: s.id, force: true });
  }, 300_000);

  it('a graceful stop reaches Claude Code mid-turn: told on its next step, stopped when its turn ends, not at the deadline', async () => {
    // A turn with one tool call that takes a while; the tool is allowed, so nobody is asked.
    up.opts.toolUse = { name: 'Bash', input: { command: 'sleep 5', description: 'Wait a little' } };
    up.opts.keepBodies = true;
    await d.client.agents.define({
      name: 'finisher',
      image: CLAUDE_IMAGE,
      command: interactiveClaude('"do the work" --permission-mode default --allowedTools "Bash(sleep 5)"'),
      network: 'none',
      restartPolicy: 'always',
    });
    const s = await d.client.sessions.start({ project: 'web', agent: 'finisher' });
    await poll(async () => (await d.client.sessions.get({ id: s.id })).activity?.reason === 'hook:PreToolUse: Bash', 120_000, 'the tool call');
    const asked = await d.client.sessions.stop({ id: s.id, graceful: true, withinSec: 600 });
    expect(asked.gracefulStop).not.toBeNull();
    const stopped = await poll(async () => {
      const x = await d.client.sessions.get({ id: s.id });
      return x.state === 'stopped' ? x : null;
    }, 180_000, 'the stop at the end of its turn');
    // Its turn ended (the Stop hook), not the 10 minutes it was given.
    expect(Date.parse(stopped.finishedAt!)).toBeLessThan(Date.parse(asked.gracefulStop!.deadline) - 300_000);
    expect(stopped.activity?.reason).toMatch(/^hook:(Stop|SessionEnd)/);
    // The model heard of it with the tool's result, in the request that ended the turn.
    const told = up.messages().filter((m) => m.body?.includes('a graceful stop of this session was asked for'));
    expect(told.length).toBeGreaterThan(0);
    // Policy `always`: still stopped.
    await new Promise((r) => setTimeout(r, 3000));
    expect((await d.client.sessions.get({ id: s.id })).state).toBe('stopped');
    up.opts.toolUse = null;
    up.opts.keepBodies = false;
  }, 300_000);
});
