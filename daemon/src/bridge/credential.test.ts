import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError } from '@berth/client-sdk/protocol';
import { Secrets } from '../sessions/secrets.js';
import { CredentialSource } from './credential.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
function home() {
  const d = mkdtempSync(join(tmpdir(), 'bt-cred-'));
  dirs.push(d);
  return d;
}
const code = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return (err as BerthError).code;
  }
  return null;
};

describe('CredentialSource', () => {
  it('secret:NAME: an API key goes out as x-api-key, a setup-token OAuth token as a bearer with the OAuth beta', () => {
    const h = home();
    writeFileSync(join(h, 'secrets.yaml'), 'key: sk-ant-api03-abc\ntok: sk-ant-oat01-xyz\n');
    chmodSync(join(h, 'secrets.yaml'), 0o600);
    const secrets = new Secrets(h);
    expect(new CredentialSource('secret:key', secrets, { claudeConfigDir: h }).get()).toEqual({ kind: 'api-key', headers: { 'x-api-key': 'sk-ant-api03-abc' }, betas: [] });
    expect(new CredentialSource('secret:tok', secrets, { claudeConfigDir: h }).get()).toEqual({
      kind: 'oauth',
      headers: { authorization: 'Bearer sk-ant-oat01-xyz' },
      betas: ['oauth-2025-04-20'],
    });
    expect(code(() => new CredentialSource('secret:nope', secrets, { claudeConfigDir: h }).get())).toBe('SECRET_NOT_FOUND');
  });

  it('claude-login: the host login, re-read when it changes; expired and missing logins say so', () => {
    const h = home();
    let now = 1_000_000;
    const src = new CredentialSource('claude-login', new Secrets(h), { claudeConfigDir: h, now: () => now });
    expect(code(() => src.get())).toBe('MODEL_CREDENTIAL_MISSING');
    const file = join(h, '.credentials.json');
    writeFileSync(file, JSON.stringify({ claudeAiOauth: { accessToken: 'sk-ant-oat01-one', expiresAt: 2_000_000 } }));
    expect(src.get().headers).toEqual({ authorization: 'Bearer sk-ant-oat01-one' });
    writeFileSync(file, JSON.stringify({ claudeAiOauth: { accessToken: 'sk-ant-oat01-renewed!', expiresAt: 9_000_000 } }));
    expect(src.get().headers).toEqual({ authorization: 'Bearer sk-ant-oat01-renewed!' });
    now = 9_000_001;
    expect(code(() => src.get())).toBe('MODEL_CREDENTIAL_EXPIRED');
    writeFileSync(file, '{not json');
    expect(code(() => src.get())).toBe('MODEL_CREDENTIAL_MISSING');
  });

  it('auto: the login when there is one, else no credential; none: never one', () => {
    const h = home();
    const auto = new CredentialSource('auto', new Secrets(h), { claudeConfigDir: h });
    expect(auto.get().kind).toBe('none');
    writeFileSync(join(h, '.credentials.json'), JSON.stringify({ claudeAiOauth: { accessToken: 'sk-ant-oat01-t' } }));
    expect(auto.get().kind).toBe('oauth');
    expect(new CredentialSource('none', new Secrets(h), { claudeConfigDir: h }).get()).toEqual({ kind: 'none', headers: {}, betas: [] });
    expect(auto.describe()).not.toContain('sk-ant');
  });
});
