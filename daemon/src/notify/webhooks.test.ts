import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Notification } from '@berth/client-sdk/protocol';
import { FakeClock } from '../../test/helpers/clock.js';
import { systemClock } from '../shared/clock.js';
import { WebhookQueue, webhookTarget, type Post } from './webhooks.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

const note = (id: string, kind: Notification['kind'] = 'exited'): Notification => ({
  id,
  kind,
  session: { id: 's1', name: 'fixer', project: 'web', agent: 'claude' },
  message: 'exited with code 3',
  ts: '2026-01-02T03:04:05.000Z',
});

/** Lets pending promise callbacks (and the queue's loop) run; no timers. */
async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

interface Call {
  url: string;
  body: Notification;
  headers: Record<string, string>;
  signal: AbortSignal;
}

/** A Post answering with `answers` in turn (a number is a status, an Error a failed connection, 'hang' no answer). */
function scripted(answers: (number | Error | 'hang')[], fallback: number | 'hang' = 200) {
  const calls: Call[] = [];
  const post: Post = (url, body, headers, signal) => {
    calls.push({ url, body: JSON.parse(body) as Notification, headers, signal });
    const a = answers.shift() ?? fallback;
    if (a === 'hang') {
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
    }
    return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
  };
  return { post, calls };
}

describe('WebhookQueue', () => {
  it('retries with exponential backoff on the injected clock: 500, 500, then delivered on the third try', async () => {
    const clock = new FakeClock(0);
    const { log } = capture();
    const { post, calls } = scripted([500, 500, 200]);
    const q = new WebhookQueue({ url: 'http://127.0.0.1:9/hook' }, { clock, log, post });
    const ctl = new AbortController();
    const done = q.start(ctl.signal);
    q.push(note('n1'));
    await settle();
    expect(calls).toHaveLength(1);
    clock.advance(999);
    await settle();
    expect(calls).toHaveLength(1);
    clock.advance(1);
    await settle();
    expect(calls).toHaveLength(2);
    clock.advance(1999);
    await settle();
    expect(calls).toHaveLength(2);
    clock.advance(1);
    await settle();
    expect(calls).toHaveLength(3);
    expect(calls.map((c) => c.body.id)).toEqual(['n1', 'n1', 'n1']);
    expect(calls.map((c) => c.headers['x-berth-attempt'])).toEqual(['1', '2', '3']);
    expect(calls[0]!.headers['content-type']).toBe('application/json');
    expect(calls[0]!.headers['x-berth-notification']).toBe('n1');
    clock.advance(60_000);
    await settle();
    expect(calls).toHaveLength(3);
    ctl.abort();
    await done;
  });

  it('gives up after 5 tries (waits of 1, 2, 4, 8 s) with a warning, then goes on with the next', async () => {
    const clock = new FakeClock(0);
    const { log, lines } = capture();
    const { post, calls } = scripted([new Error('ECONNREFUSED'), 503, 429, 408, 502, 200]);
    const q = new WebhookQueue({ url: 'https://user:secret@hooks.example.com/T0/B0/token?x=1' }, { clock, log, post });
    const ctl = new AbortController();
    const done = q.start(ctl.signal);
    q.push(note('n1'));
    q.push(note('n2'));
    const at: number[] = [];
    for (let t = 0; t <= 20_000; t += 500) {
      await settle();
      while (at.length < calls.length) at.push(t);
      clock.advance(500);
    }
    expect(calls.map((c) => c.body.id)).toEqual(['n1', 'n1', 'n1', 'n1', 'n1', 'n2']);
    expect(at.slice(0, 5)).toEqual([0, 1000, 3000, 7000, 15000]);
    const warn = lines.find((l) => l.level === 40);
    expect(warn).toMatchObject({ notificationId: 'n1', attempt: 5, webhook: 'https://hooks.example.com' });
    // The URL's secrets stay out of the log.
    expect(JSON.stringify(lines)).not.toMatch(/secret|token|T0/);
    ctl.abort();
    await done;
  });

  it('a status that cannot get better (4xx but 408 and 429) is not tried again', async () => {
    const clock = new FakeClock(0);
    const { post, calls } = scripted([404]);
    const q = new WebhookQueue({ url: 'http://127.0.0.1:9/hook' }, { clock, log: capture().log, post });
    expect(await q.deliver(note('n1'), new AbortController().signal)).toBe(false);
    expect(calls).toHaveLength(1);
  });

  it('a POST without an answer is cut at the timeout and tried again', async () => {
    const { post, calls } = scripted(['hang', 200]);
    const q = new WebhookQueue({ url: 'http://127.0.0.1:9/hook' }, { clock: systemClock, log: capture().log, post, timeoutMs: 20, firstDelayMs: 0 });
    expect(await q.deliver(note('n1'), new AbortController().signal)).toBe(true);
    expect(calls).toHaveLength(2);
    expect(calls[0]!.signal.aborted).toBe(true);
  });

  it('keeps at most `capacity` waiting: the oldest is dropped with a warning', async () => {
    const clock = new FakeClock(0);
    const { log, lines } = capture();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const delivered: string[] = [];
    const post: Post = async (_u, body) => {
      await gate;
      delivered.push((JSON.parse(body) as Notification).id);
      return 204;
    };
    const q = new WebhookQueue({ url: 'http://127.0.0.1:9/hook' }, { clock, log, post, capacity: 3 });
    const ctl = new AbortController();
    const done = q.start(ctl.signal);
    q.push(note('n1'));
    await settle();
    for (const id of ['n2', 'n3', 'n4', 'n5', 'n6']) q.push(note(id));
    expect(q.pending).toBe(3);
    const drops = lines.filter((l) => l.level === 40);
    expect(drops.map((l) => l.notificationId)).toEqual(['n2', 'n3']);
    release();
    await settle();
    expect(delivered).toEqual(['n1', 'n4', 'n5', 'n6']);
    ctl.abort();
    await done;
  });

  it('push returns at once while a delivery waits, and takes only the kinds asked for', async () => {
    const clock = new FakeClock(0);
    const { post, calls } = scripted([], 'hang');
    const q = new WebhookQueue({ url: 'http://127.0.0.1:9/hook', events: ['failed', 'budget'] }, { clock, log: capture().log, post, timeoutMs: 60_000 });
    const ctl = new AbortController();
    const done = q.start(ctl.signal);
    q.push(note('n1', 'exited'));
    q.push(note('n2', 'failed'));
    q.push(note('n3', 'waiting-input'));
    q.push(note('n4', 'budget'));
    await settle();
    expect(calls.map((c) => c.body.id)).toEqual(['n2']);
    expect(q.pending).toBe(1);
    ctl.abort();
    await done;
    expect(calls[0]!.signal.aborted).toBe(true);
    expect(q.pending).toBe(0);
  });

  it('stopping during a backoff wait ends the loop without waiting it out', async () => {
    const clock = new FakeClock(0);
    const { post, calls } = scripted([500], 500);
    const q = new WebhookQueue({ url: 'http://127.0.0.1:9/hook' }, { clock, log: capture().log, post });
    const ctl = new AbortController();
    const done = q.start(ctl.signal);
    q.push(note('n1'));
    await settle();
    expect(calls).toHaveLength(1);
    ctl.abort();
    await done;
    expect(calls).toHaveLength(1);
  });

  it('webhookTarget keeps only scheme, host and port', () => {
    expect(webhookTarget('https://u:p@hooks.slack.com:8443/services/T/B/X?token=1')).toBe('https://hooks.slack.com:8443');
  });
});
