import { describe, expect, it } from 'vitest';
import { JsonText, stringifyResponses } from './json-text.js';

describe('JsonText', () => {
  const page = new JsonText<{ items: number[] }>('{"items":[1,2]}');

  it('goes into a response envelope as written', () => {
    const text = stringifyResponses({ jsonrpc: '2.0', id: 7, result: page });
    expect(text).toBe('{"jsonrpc":"2.0","id":7,"result":{"items":[1,2]}}');
    expect(JSON.parse(text)).toEqual({ jsonrpc: '2.0', id: 7, result: { items: [1, 2] } });
  });

  it('leaves ordinary responses, errors and batches as JSON.stringify writes them', () => {
    const err = { jsonrpc: '2.0', id: 'a"b', error: { code: -32601, message: 'no' } };
    expect(stringifyResponses(err)).toBe(JSON.stringify(err));
    const batch = [{ jsonrpc: '2.0', id: null, result: page }, { jsonrpc: '2.0', id: 2, result: [1] }, err];
    expect(JSON.parse(stringifyResponses(batch))).toEqual(JSON.parse(JSON.stringify(batch)));
  });

  it('serialises to its value anywhere else', () => {
    expect(JSON.stringify({ log: page })).toBe('{"log":{"items":[1,2]}}');
  });
});
