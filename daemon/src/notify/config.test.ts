import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError } from '@berth/client-sdk/protocol';
import { loadConfig } from '../config/index.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A home with `yaml` as its config.yaml; the config loaded from it and `env`. */
function load(yaml: string | null, env: Record<string, string> = {}) {
  const home = mkdtempSync(join(tmpdir(), 'bt-cfg-'));
  dirs.push(home);
  if (yaml !== null) writeFileSync(join(home, 'config.yaml'), yaml);
  return loadConfig({ env: { HOME: home, BERTH_HOME: home, ...env } });
}

function fails(fn: () => unknown): BerthError {
  try {
    fn();
  } catch (err) {
    return err as BerthError;
  }
  throw new Error('expected an error');
}

describe('notifyWebhooks', () => {
  it('is none by default', () => {
    expect(load(null).notifyWebhooks).toEqual([]);
  });

  it('is a list in config.yaml', () => {
    const c = load('notifyWebhooks:\n  - url: http://127.0.0.1:8080/berth\n  - url: https://hooks.example.com/x?token=1\n    events: [exited, failed]\n');
    expect(c.notifyWebhooks).toEqual([
      { url: 'http://127.0.0.1:8080/berth' },
      { url: 'https://hooks.example.com/x?token=1', events: ['exited', 'failed'] },
    ]);
  });

  it('is JSON in BERTH_NOTIFY_WEBHOOKS, which beats the file', () => {
    const c = load('notifyWebhooks:\n  - url: http://a.example/\n', { BERTH_NOTIFY_WEBHOOKS: '[{"url":"http://b.example/","events":["budget"]}]' });
    expect(c.notifyWebhooks).toEqual([{ url: 'http://b.example/', events: ['budget'] }]);
  });

  it('refuses what is not a list of http(s) webhooks, naming the key', () => {
    for (const [yaml, env] of [
      ['notifyWebhooks:\n  - url: ftp://example.com/x\n', {}],
      ['notifyWebhooks:\n  - url: file:///etc/passwd\n', {}],
      ['notifyWebhooks:\n  - url: http://a.example/\n    events: [exploded]\n', {}],
      ['notifyWebhooks:\n  - url: http://a.example/\n    secret: x\n', {}],
      ['notifyWebhooks:\n  url: http://a.example/\n', {}],
      [null, { BERTH_NOTIFY_WEBHOOKS: 'http://a.example/' }],
      [null, { BERTH_NOTIFY_WEBHOOKS: '[{"url":"not a url"}]' }],
    ] as [string | null, Record<string, string>][]) {
      const err = fails(() => load(yaml, env));
      expect(err, String(yaml ?? env.BERTH_NOTIFY_WEBHOOKS)).toBeInstanceOf(BerthError);
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.details).toMatchObject({ key: 'notifyWebhooks', env: 'BERTH_NOTIFY_WEBHOOKS' });
    }
  });
});
