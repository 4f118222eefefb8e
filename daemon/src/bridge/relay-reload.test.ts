import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Secrets } from '../sessions/secrets.js';
import { CredentialSource } from './credential.js';
import { ModelRelay } from './relay.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

function listen(server: Server): Promise<string> {
  closers.push(() => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))));
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

/** An upstream that answers with its name and records the headers it got. */
async function upstream(name: string, seen: IncomingHttpHeaders[]): Promise<string> {
  return listen(
    createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ from: name }));
      });
    }),
  );
}

/** A stand-in for the bridge: relays each request it gets through `relay`. */
async function front(relay: ModelRelay): Promise<string> {
  return listen(
    createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => void relay.relay('s1', '/v1/messages', req, res, Buffer.concat(chunks)));
    }),
  );
}

function post(base: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = request(`${base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve(text));
    });
    r.on('error', reject);
    r.end('{}');
  });
}

describe('ModelRelay and CredentialSource reconfigured live', () => {
  it('the next request goes to the new upstream with the new credential and limit', async () => {
    const home = mkdtempSync(join(tmpdir(), 'bt-relay-'));
    closers.push(async () => rmSync(home, { recursive: true, force: true }));
    writeFileSync(join(home, 'secrets.yaml'), 'key: sk-ant-api03-first\n');
    chmodSync(join(home, 'secrets.yaml'), 0o600);
    const seenA: IncomingHttpHeaders[] = [];
    const seenB: IncomingHttpHeaders[] = [];
    const a = await upstream('a', seenA);
    const b = await upstream('b', seenB);
    const credential = new CredentialSource('none', new Secrets(home));
    const relay = new ModelRelay(a, 2, credential, pino({ level: 'silent' }));
    const url = await front(relay);

    expect(JSON.parse(await post(url))).toEqual({ from: 'a' });
    expect(seenA[0]!['x-api-key']).toBeUndefined();

    relay.configure(b, 5);
    credential.setSpec('secret:key');
    expect(JSON.parse(await post(url))).toEqual({ from: 'b' });
    expect(seenB[0]!['x-api-key']).toBe('sk-ant-api03-first');
    expect(relay.queue.limit).toBe(5);
    expect(seenA).toHaveLength(1);

    // A changed secret reaches the next request (secrets.yaml is read again when it changes).
    writeFileSync(join(home, 'secrets.yaml'), 'key: sk-ant-api03-second-longer\n');
    expect(JSON.parse(await post(url))).toEqual({ from: 'b' });
    expect(seenB[1]!['x-api-key']).toBe('sk-ant-api03-second-longer');
  });
});
