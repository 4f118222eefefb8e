import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js';

function http(socketPath: string, method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, agent: false, headers: body !== undefined ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The routes and streams answer errors in one shape ({error: {code, message, hint}}), with the status the registry gives. */
describe('one HTTP surface', () => {
  let d: DaemonProcess;
  beforeAll(async () => {
    d = await startDaemon({ args: ['--log-level', 'debug'] });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  it('refuses before a stream starts with {error} and the registry status', async () => {
    const notFound = await http(d.socket, 'GET', '/sessions/nope/logs');
    expect(notFound.status).toBe(404);
    expect(JSON.parse(notFound.text).error).toMatchObject({ code: 'SESSION_NOT_FOUND', message: expect.any(String), hint: expect.any(String) });

    const badTail = await http(d.socket, 'GET', '/sessions/nope/logs?tail=-1');
    expect([badTail.status, JSON.parse(badTail.text).error.code]).toEqual([400, 'INVALID_PARAMS']);

    const notJson = await http(d.socket, 'POST', '/images/build', '{nope');
    expect([notJson.status, JSON.parse(notJson.text).error.code]).toEqual([400, 'PARSE_ERROR']);

    const badParams = await http(d.socket, 'POST', '/images/build-defaults', JSON.stringify({ stacks: 'all' }));
    expect([badParams.status, JSON.parse(badParams.text).error.code]).toEqual([400, 'INVALID_PARAMS']);
  });

  it('a stream that fails after it started ends with an {error} line the client turns into the error', async () => {
    const r = await http(d.socket, 'POST', '/images/build', JSON.stringify({ name: 'claude-agent-nope:x', dockerfile: '/nonexistent/Dockerfile' }));
    expect(r.status).toBe(200);
    const last = JSON.parse(r.text.trim().split('\n').at(-1)!);
    expect(last.error).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    await expect(d.client.buildImage({ name: 'claude-agent-nope:x', dockerfile: '/nonexistent/Dockerfile' } as never, () => {})).rejects.toMatchObject({
      code: last.error.code,
    });
  });

  it('every request logs through berth\'s logger with its own request id', async () => {
    await http(d.socket, 'GET', '/sessions/nope/logs?tail=-1');
    await d.waitForLog(/"reqId":"r\d+"/);
  });
});
