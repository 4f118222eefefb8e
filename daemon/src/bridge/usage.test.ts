import { describe, expect, it } from 'vitest';
import { UsageMeter, costNanos } from './usage.js';

const sse = (events: object[]) => events.map((e) => `event: ${(e as { type: string }).type}\ndata: ${JSON.stringify(e)}\n\n`).join('');

describe('UsageMeter', () => {
  it('reads message_start and the cumulative message_delta of a stream, however it is cut', () => {
    const text = sse([
      { type: 'message_start', message: { model: 'claude-sonnet-4-5', usage: { input_tokens: 10, output_tokens: 1, cache_read_input_tokens: 4, cache_creation_input_tokens: 2 } } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hé ✓' } },
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 30 } },
      { type: 'message_delta', delta: {}, usage: { output_tokens: 42, input_tokens: 12 } },
      { type: 'message_stop' },
    ]);
    const bytes = Buffer.from(text);
    for (const size of [1, 3, 7, 64, bytes.length]) {
      const m = new UsageMeter('text/event-stream; charset=utf-8');
      for (let i = 0; i < bytes.length; i += size) m.push(bytes.subarray(i, i + size));
      expect(m.end()).toEqual({ input: 12, output: 42, cacheRead: 4, cacheCreation: 2 });
      expect(m.model).toBe('claude-sonnet-4-5');
    }
  });

  it('reads the usage of a JSON answer, and counts nothing in garbage or an error', () => {
    const m = new UsageMeter('application/json');
    m.push(Buffer.from('{"model":"claude-haiku-4-5","usage":{"input_tokens":3,'));
    m.push(Buffer.from('"output_tokens":5}}'));
    expect(m.end()).toEqual({ input: 3, output: 5, cacheRead: 0, cacheCreation: 0 });
    const bad = new UsageMeter('text/html');
    bad.push(Buffer.from('<html>oops'));
    expect(bad.end()).toEqual({ input: 0, output: 0, cacheRead: 0, cacheCreation: 0 });
    const neg = new UsageMeter('application/json');
    neg.push(Buffer.from('{"usage":{"input_tokens":-5,"output_tokens":"9"}}'));
    expect(neg.end()).toEqual({ input: 0, output: 0, cacheRead: 0, cacheCreation: 0 });
  });

  it('skips an endless line instead of holding it', () => {
    const m = new UsageMeter('text/event-stream');
    m.push(Buffer.from(`data: ${'x'.repeat(2 * 1024 * 1024)}`));
    m.push(Buffer.from(`${'y'.repeat(10)}\n`));
    m.push(Buffer.from(sse([{ type: 'message_delta', usage: { output_tokens: 9 } }])));
    expect(m.end().output).toBe(9);
  });
});

describe('costNanos', () => {
  it('prices by model family from list prices, as Claude Code estimates them', () => {
    // claude -p against the stand-in reported total_cost_usd 0.00025125 for these counts on an Opus 4.x model.
    expect(costNanos('claude-opus-4-8', { input: 11, output: 7, cacheRead: 5, cacheCreation: 3 })).toBe(251_250);
    expect(costNanos('claude-sonnet-4-5', { input: 1_000_000, output: 0, cacheRead: 0, cacheCreation: 0 })).toBe(3e9);
    expect(costNanos('claude-3-opus-20240229', { input: 0, output: 1_000_000, cacheRead: 0, cacheCreation: 0 })).toBe(75e9);
    expect(costNanos(null, { input: 0, output: 1000, cacheRead: 0, cacheCreation: 0 })).toBe(15_000_000);
  });
});
