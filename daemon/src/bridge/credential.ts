import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { BerthError } from '@berth/client-sdk/protocol';
import type { Secrets } from '../sessions/secrets.js';

/** What the bridge adds to a request on its way out. */
export interface Credential {
  kind: 'api-key' | 'oauth' | 'none';
  headers: Record<string, string>;
  /** anthropic-beta values the credential needs (OAuth tokens need `oauth-2025-04-20`). */
  betas: string[];
}

const OAUTH_BETA = 'oauth-2025-04-20';

/** An OAuth access token (Claude Code's login, `claude setup-token`) or an API key, told apart by prefix. */
export function credentialFor(token: string): Credential {
  const t = token.trim();
  if (t.startsWith('sk-ant-oat')) return { kind: 'oauth', headers: { authorization: `Bearer ${t}` }, betas: [OAUTH_BETA] };
  return { kind: 'api-key', headers: { 'x-api-key': t }, betas: [] };
}

/**
 * The model credential, as config `modelCredential` names it: `secret:NAME` (secrets.yaml),
 * `claude-login` (the Claude Code login of berthd's user: `.credentials.json` in
 * `$CLAUDE_CONFIG_DIR` or `~/.claude`, read for every request, so a login renewed on the host is used
 * at once), `none`, or `auto` (claude-login when that file exists, else none). Read
 * for every request on the host side only: the value is never logged, stored or returned.
 */
export class CredentialSource {
  private cached: { key: string; token: string; expiresAt: number | null } | null = null;
  private secret: { key: string; credential: Credential } | null = null;
  readonly loginFile: string;

  constructor(
    public spec: string,
    private readonly secrets: Secrets,
    opts: { claudeConfigDir?: string; now?: () => number } = {},
  ) {
    this.loginFile = join(opts.claudeConfigDir ?? process.env.CLAUDE_CONFIG_DIR ?? join(homedir(), '.claude'), '.credentials.json');
    this.now = opts.now ?? Date.now;
  }

  private readonly now: () => number;

  /** Config `modelCredential` changed live: the next request uses it. */
  setSpec(spec: string): void {
    this.spec = spec;
    this.secret = null;
    this.cached = null;
  }

  /** What is used, for status and logs (never the value). */
  describe(): string {
    if (this.spec === 'auto') return `auto (${this.loginExists() ? `claude-login: ${this.loginFile}` : 'none: no Claude Code login on this host'})`;
    if (this.spec === 'claude-login') return `claude-login: ${this.loginFile}`;
    return this.spec;
  }

  get(): Credential {
    if (this.spec === 'none') return { kind: 'none', headers: {}, betas: [] };
    if (this.spec.startsWith('secret:')) {
      // secrets.yaml is parsed again only when it changed (a parse per model call is not free).
      let key = '';
      try {
        const st = statSync(this.secrets.file);
        key = `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}`;
      } catch {
        // resolve() says what is wrong
      }
      if (!key || this.secret?.key !== key) {
        const { value } = this.secrets.resolve({ value: this.spec.slice('secret:'.length) });
        this.secret = { key, credential: credentialFor(value!) };
      }
      return this.secret.credential;
    }
    if (this.spec === 'auto' && !this.loginExists()) return { kind: 'none', headers: {}, betas: [] };
    return this.login();
  }

  private loginExists(): boolean {
    try {
      return statSync(this.loginFile).isFile();
    } catch {
      return false;
    }
  }

  private login(): Credential {
    // Read for every request (a small file): a login the host renews is used at once, whatever the
    // file system's timestamp resolution.
    let key: string;
    try {
      key = readFileSync(this.loginFile, 'utf8');
    } catch {
      throw new BerthError('MODEL_CREDENTIAL_MISSING', `no Claude Code login for berthd's user: cannot read ${this.loginFile}`, {
        details: { file: this.loginFile },
      });
    }
    if (this.cached?.key !== key) {
      let oauth: { accessToken?: unknown; expiresAt?: unknown } | undefined;
      try {
        oauth = (JSON.parse(key) as { claudeAiOauth?: typeof oauth }).claudeAiOauth;
      } catch (err) {
        throw new BerthError('MODEL_CREDENTIAL_MISSING', `cannot read the Claude Code login in ${this.loginFile}: ${(err as Error).message}`, {
          details: { file: this.loginFile },
        });
      }
      if (!oauth || typeof oauth.accessToken !== 'string' || !oauth.accessToken) {
        throw new BerthError('MODEL_CREDENTIAL_MISSING', `${this.loginFile} holds no Claude Code login (claudeAiOauth.accessToken)`, {
          details: { file: this.loginFile },
        });
      }
      this.cached = { key, token: oauth.accessToken, expiresAt: typeof oauth.expiresAt === 'number' ? oauth.expiresAt : null };
    }
    const { token, expiresAt } = this.cached;
    if (expiresAt !== null && expiresAt <= this.now()) {
      throw new BerthError('MODEL_CREDENTIAL_EXPIRED', `the Claude Code login in ${this.loginFile} expired at ${new Date(expiresAt).toISOString()}`, {
        details: { file: this.loginFile, expiresAt: new Date(expiresAt).toISOString() },
      });
    }
    return { kind: 'oauth', headers: { authorization: `Bearer ${token}` }, betas: [OAUTH_BETA] };
  }
}
