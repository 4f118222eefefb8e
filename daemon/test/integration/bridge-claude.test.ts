import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BerthEvent } from '@berth/client-sdk/protocol';
import { CLAUDE_IMAGE, ensureClaudeImage } from '../helpers/claude-image.js';
import { poll, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { docker } from '../helpers/docker.js';
import { ModelUpstream } from '../helpers/model-upstream.mjs';

const KEY = 'sk-ant-api03-host-key-for-the-real-cli';
const ANSWER = 'The tests pass now.';

/**
 * The whole way: berthd starts a session from images/base whose agent is the real Claude Code CLI
 * (`claude -p`), with no network at all; Claude Code reaches the stand-in upstream only through the
 * session's bridge, as the host, and its hooks tell berth what it does.
 */
describe('the real Claude Code CLI in a berth session', () => {
  let up: ModelUpstream;
  let d: DaemonProcess;
  const events: BerthEvent[] = [];
  const ac = new AbortController();

  beforeAll(async () => {
    await ensureClaudeImage();
    up = await ModelUpstream.start({ answer: ANSWER });
    ({ d } = await startWithProject({ env: { BERTH_MODEL_UPSTREAM: up.url, BERTH_MODEL_CREDENTIAL: 'secret:anthropic' } }));
    await writeFile(join(d.home, 'secrets.yaml'), `anthropic: ${KEY}\n`, { mode: 0o600 });
    void (async () => {
      for await (const e of d.client.events({ signal: ac.signal })) events.push(e);
    })().catch(() => {});
  }, 900_000);

  afterAll(async () => {
    ac.abort();
    await d?.[Symbol.asyncDispose]();
    await up?.close();
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
    const done = await poll(async () => {
      const x = await d.client.sessions.get({ id: s.id });
      return x.state === 'exited' || x.state === 'failed' ? x : null;
    }, 180_000, 'claude -p to finish');
    const logs = (await d.client.sessions.logs({ id: s.id })).map((l) => l.line).join('\n');
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
});
