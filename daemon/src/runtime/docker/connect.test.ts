import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connectDocker } from './connect.js';
import { isTransportError } from './errors.js';

type Modem = { socketPath?: unknown; host?: string; port?: string; protocol?: string; username?: string; ca?: unknown; cert?: unknown; key?: unknown; timeout?: number };
const modem = (d: { modem: unknown }) => d.modem as Modem;

describe('connectDocker (DOCKER_HOST as the docker CLI reads it, through docker-modem)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of ['DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  it('a unix socket, by default /var/run/docker.sock; streams have no request timeout', () => {
    const c = connectDocker({ dockerHost: null, timeoutMs: 1234 });
    expect([c.socketPath, c.host, modem(c.docker).timeout, modem(c.streams).timeout]).toEqual(['/var/run/docker.sock', 'unix:///var/run/docker.sock', 1234, 0]);
    expect(connectDocker({ dockerHost: 'unix:///run/user/1000/docker.sock' }).socketPath).toBe('/run/user/1000/docker.sock');
  });

  it("tcp with the CLI's default ports, TLS with DOCKER_CERT_PATH's files", () => {
    const plain = connectDocker({ dockerHost: 'tcp://engine.example' });
    expect([plain.socketPath, modem(plain.docker).host, modem(plain.docker).port, modem(plain.docker).protocol]).toEqual([null, 'engine.example', '2375', 'http']);
    const certs = mkdtempSync(join(tmpdir(), 'bt-certs-'));
    try {
      for (const f of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(certs, f), `-----BEGIN CERTIFICATE-----\n${f}\n-----END CERTIFICATE-----\n`);
      process.env.DOCKER_TLS_VERIFY = '1';
      process.env.DOCKER_CERT_PATH = certs;
      const tls = modem(connectDocker({ dockerHost: 'tcp://engine.example' }).docker);
      expect([tls.port, tls.protocol]).toEqual(['2376', 'https']);
      expect(String(tls.cert)).toContain('cert.pem');
      expect(String(tls.key)).toContain('key.pem');
      expect(tls.ca).toBeTruthy();
    } finally {
      rmSync(certs, { recursive: true, force: true });
    }
  });

  it('ssh:// with its user; the process environment is left as it was', () => {
    process.env.DOCKER_HOST = 'unix:///somewhere/else.sock';
    const m = modem(connectDocker({ dockerHost: 'ssh://me@build.example:2222' }).docker);
    expect([m.protocol, m.username, m.host, m.port]).toEqual(['ssh', 'me', 'build.example', '2222']);
    expect(process.env.DOCKER_HOST).toBe('unix:///somewhere/else.sock');
    expect(() => connectDocker({ dockerHost: 'npipe:////./pipe/docker_engine' })).toThrow(/unsupported DOCKER_HOST scheme/);
  });
});

describe('engine errors are classified by what they carry, not their text', () => {
  it('an HTTP status means the engine answered; an errno or an ssh transport level means it did not', () => {
    expect(isTransportError(Object.assign(new Error('(HTTP code 404) no such container - socket hang up'), { statusCode: 404 }))).toBe(false);
    expect(isTransportError(Object.assign(new Error('connect ECONNREFUSED /var/run/docker.sock'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isTransportError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isTransportError(Object.assign(new Error('Timed out while waiting for handshake'), { level: 'client-timeout' }))).toBe(true);
    expect(isTransportError(new Error('ECONNREFUSED timeout socket hang up'))).toBe(false);
  });
});
