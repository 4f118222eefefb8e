import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRpc, startDaemon, type DaemonProcess } from '../helpers/daemon.js';

type Res = { jsonrpc: string; id: unknown; result?: unknown; error?: { code: number; message: string; data?: { code: string } } };

/**
 * JSON-RPC 2.0 behaviour over the real socket of a real berthd process. The numbered cases follow
 * the examples section of the specification.
 */
describe('JSON-RPC 2.0 on the socket', () => {
  let d: DaemonProcess;
  const call = async (body: unknown) => rawRpc(d.socket, typeof body === 'string' ? body : JSON.stringify(body));
  const stillServing = async () => {
    const r = await call({ jsonrpc: '2.0', method: 'projects.list', id: 'alive' });
    expect(r.status).toBe(200);
    expect((r.body as Res).result).toEqual(expect.any(Array));
  };

  beforeAll(async () => {
    d = await startDaemon();
    await d.client.agents.define({ name: 'echo', command: ['echo', 'hi'] });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('echoes numeric and string ids on success', async () => {
    const a = (await call({ jsonrpc: '2.0', method: 'agents.get', params: { name: 'echo' }, id: 7 })).body as Res;
    expect(a).toMatchObject({ jsonrpc: '2.0', id: 7, result: { name: 'echo' } });
    expect(a).not.toHaveProperty('error');
    const b = (await call({ jsonrpc: '2.0', method: 'agents.get', params: { name: 'echo' }, id: 'x-1' })).body as Res;
    expect(b.id).toBe('x-1');
  });

  it('accepts params by position and by name', async () => {
    const pos = (await call({ jsonrpc: '2.0', method: 'agents.get', params: ['echo'], id: 1 })).body as Res;
    const named = (await call({ jsonrpc: '2.0', method: 'agents.get', params: { name: 'echo' }, id: 2 })).body as Res;
    expect(pos.result).toEqual(named.result);
  });

  it('answers a call without params when the method takes none', async () => {
    const r = (await call({ jsonrpc: '2.0', method: 'agents.list', id: 3 })).body as Res;
    expect(r.result).toEqual([expect.objectContaining({ name: 'echo' })]);
  });

  it('sends no body for a notification, even one that fails', async () => {
    const ok = await call({ jsonrpc: '2.0', method: 'agents.list' });
    expect(ok.status).toBe(204);
    expect(ok.text).toBe('');
    const bad = await call({ jsonrpc: '2.0', method: 'no.such.method' });
    expect(bad.status).toBe(204);
    expect(bad.text).toBe('');
    // A notification really runs: defining through one leaves the agent behind.
    await call({ jsonrpc: '2.0', method: 'agents.define', params: { name: 'via-note', command: ['true'] } });
    expect((await d.client.agents.get({ name: 'via-note' })).command).toEqual(['true']);
  });

  it('-32601 for a method that does not exist', async () => {
    const r = (await call({ jsonrpc: '2.0', method: 'foobar', id: '1' })).body as Res;
    expect(r).toMatchObject({ id: '1', error: { code: -32601, data: { code: 'METHOD_NOT_FOUND' } } });
  });

  it('-32700 with id null for invalid JSON', async () => {
    const r = await call('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32700, data: { code: 'PARSE_ERROR' } } });
  });

  it('-32600 for an invalid request object', async () => {
    const r = (await call({ jsonrpc: '2.0', method: 1, params: 'bar' })).body as Res;
    expect(r).toMatchObject({ id: null, error: { code: -32600, data: { code: 'INVALID_REQUEST' } } });
  });

  it('-32700 (single error) for a batch that is invalid JSON', async () => {
    const r = await call('[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]');
    expect(Array.isArray(r.body)).toBe(false);
    expect((r.body as Res).error!.code).toBe(-32700);
  });

  it('-32600 (single error) for an empty batch', async () => {
    const r = await call('[]');
    expect(Array.isArray(r.body)).toBe(false);
    expect((r.body as Res).error!.code).toBe(-32600);
  });

  it('one -32600 per element for a batch of non-requests', async () => {
    const one = (await call('[1]')).body as Res[];
    expect(one).toHaveLength(1);
    expect(one[0]!.error!.code).toBe(-32600);
    const three = (await call('[1,2,3]')).body as Res[];
    expect(three.map((e) => [e.id, e.error!.code])).toEqual([
      [null, -32600],
      [null, -32600],
      [null, -32600],
    ]);
  });

  it('answers a mixed batch in order, leaving out notifications', async () => {
    const r = (
      await call([
        { jsonrpc: '2.0', method: 'agents.get', params: ['echo'], id: '1' },
        { jsonrpc: '2.0', method: 'agents.list' },
        { jsonrpc: '2.0', method: 'projects.get', params: ['nope'], id: '2' },
        { foo: 'boo' },
        { jsonrpc: '2.0', method: 'foo.get', params: { name: 'myself' }, id: '5' },
        { jsonrpc: '2.0', method: 'agents.list', id: '9' },
      ])
    ).body as Res[];
    expect(r.map((x) => [x.id, x.error?.data?.code ?? 'ok'])).toEqual([
      ['1', 'ok'],
      ['2', 'PROJECT_NOT_FOUND'],
      [null, 'INVALID_REQUEST'],
      ['5', 'METHOD_NOT_FOUND'],
      ['9', 'ok'],
    ]);
  });

  it('sends nothing for a batch of notifications', async () => {
    const r = await call([
      { jsonrpc: '2.0', method: 'agents.list', params: [] },
      { jsonrpc: '2.0', method: 'projects.list' },
    ]);
    expect(r.status).toBe(204);
    expect(r.text).toBe('');
  });

  it('uses a berth code outside the reserved range for domain errors', async () => {
    const r = (await call({ jsonrpc: '2.0', method: 'projects.get', params: { name: 'ghost' }, id: 1 })).body as Res;
    expect(r.error!.data!.code).toBe('PROJECT_NOT_FOUND');
    expect(r.error!.code).toBeGreaterThan(0);
  });

  describe('malformed input: right error, and the daemon keeps serving', () => {
    const corpus: [string, string, number, string][] = [
      ['not JSON at all', 'hello', -32700, 'PARSE_ERROR'],
      ['empty body', '', -32700, 'PARSE_ERROR'],
      ['truncated object', '{"jsonrpc":"2.0","method":"daemon.status"', -32700, 'PARSE_ERROR'],
      ['invalid UTF-8 turned JSON', '{"jsonrpc":"2.0","method":"\uFFFD","id":1}', -32601, 'METHOD_NOT_FOUND'],
      ['a JSON string', '"daemon.status"', -32600, 'INVALID_REQUEST'],
      ['null', 'null', -32600, 'INVALID_REQUEST'],
      ['jsonrpc 1.0', '{"jsonrpc":"1.0","method":"daemon.status","id":1}', -32600, 'INVALID_REQUEST'],
      ['jsonrpc missing', '{"method":"daemon.status","id":1}', -32600, 'INVALID_REQUEST'],
      ['jsonrpc as number', '{"jsonrpc":2.0,"method":"daemon.status","id":1}', -32600, 'INVALID_REQUEST'],
      ['method missing', '{"jsonrpc":"2.0","id":1}', -32600, 'INVALID_REQUEST'],
      ['id as object', '{"jsonrpc":"2.0","method":"daemon.status","id":{"a":1}}', -32600, 'INVALID_REQUEST'],
      ['params as string', '{"jsonrpc":"2.0","method":"projects.get","params":"x","id":1}', -32600, 'INVALID_REQUEST'],
      ['params null', '{"jsonrpc":"2.0","method":"projects.get","params":null,"id":1}', -32600, 'INVALID_REQUEST'],
      ['unknown method', '{"jsonrpc":"2.0","method":"rm -rf","id":1}', -32601, 'METHOD_NOT_FOUND'],
      ['prototype key as method', '{"jsonrpc":"2.0","method":"__proto__","id":1}', -32601, 'METHOD_NOT_FOUND'],
      ['wrong param type', '{"jsonrpc":"2.0","method":"projects.get","params":{"name":42},"id":1}', -32602, 'INVALID_PARAMS'],
      ['missing param', '{"jsonrpc":"2.0","method":"projects.add","params":{"name":"x"},"id":1}', -32602, 'INVALID_PARAMS'],
      ['unknown param', '{"jsonrpc":"2.0","method":"projects.get","params":{"name":"x","nmae":"y"},"id":1}', -32602, 'INVALID_PARAMS'],
      ['too many positional', '{"jsonrpc":"2.0","method":"projects.get","params":["a","b"],"id":1}', -32602, 'INVALID_PARAMS'],
      ['command not an array', '{"jsonrpc":"2.0","method":"agents.define","params":{"name":"a","command":"ls"},"id":1}', -32602, 'INVALID_PARAMS'],
      ['bad memory limit', '{"jsonrpc":"2.0","method":"agents.define","params":{"name":"a","command":["ls"],"limits":{"memory":"lots"}},"id":1}', -32602, 'INVALID_PARAMS'],
      ['bad name', '{"jsonrpc":"2.0","method":"agents.define","params":{"name":"Bad_Name","command":["ls"]},"id":1}', 1001, 'INVALID_NAME'],
      ['deep nesting', `{"jsonrpc":"2.0","method":"projects.get","params":{"name":${'['.repeat(5000)}${']'.repeat(5000)}},"id":1}`, -32600, 'NESTING_TOO_DEEP'],
      ['deep nesting, unbalanced', '['.repeat(100_000), -32600, 'NESTING_TOO_DEEP'],
    ];
    it.each(corpus)('%s', async (_what, body, code, stable) => {
      const r = await call(body);
      expect(r.status).toBe(200);
      const res = r.body as Res;
      expect(res.error, r.text).toBeDefined();
      expect(res.error!.code).toBe(code);
      expect(res.error!.data!.code).toBe(stable);
      await stillServing();
    });

    it('oversized body: 413 with REQUEST_TOO_LARGE, no hang', async () => {
      const big = JSON.stringify({ jsonrpc: '2.0', method: 'projects.get', params: { name: 'x'.repeat(1024 * 1024 + 10) }, id: 1 });
      // Answered while the client still writes: the rest is read and dropped, so the answer always
      // arrives (no reset), each time.
      for (let i = 0; i < 5; i++) {
        const r = await call(big);
        expect(r.status).toBe(413);
        expect((r.body as Res).error!.data!.code).toBe('REQUEST_TOO_LARGE');
      }
      await stillServing();
    });

    it('body with no content type is still read as JSON-RPC', async () => {
      const r = await rawRpc(d.socket, '{"jsonrpc":"2.0","method":"projects.list","id":1}', {});
      expect((r.body as Res).result).toEqual(expect.any(Array));
    });

    it('a non-JSON content type does not matter either', async () => {
      const r = await rawRpc(d.socket, '{"jsonrpc":"2.0","method":"projects.list","id":1}', { 'content-type': 'text/plain' });
      expect((r.body as Res).result).toEqual(expect.any(Array));
    });
  });

  it('serves 200 concurrent clients, each on its own connection', async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        rawRpc(d.socket, JSON.stringify({ jsonrpc: '2.0', method: 'agents.get', params: ['echo'], id: i }), {
          'content-type': 'application/json',
          connection: 'close',
        }),
      ),
    );
    expect(results.map((r) => (r.body as Res).id)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(results.every((r) => (r.body as Res).result)).toBe(true);
    await stillServing();
  });
});
