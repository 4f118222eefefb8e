import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { BerthEvent } from '@berth/client-sdk/protocol';
import { EventBus } from '../events/bus.js';
import { createLogger, setLogLevel } from '../log.js';
import { loadLayered, readSmallFile, type Config, type ConfigKey } from './index.js';
import { ConfigWatcher } from './reload.js';
import { diffConfig, reloadOf, RELOAD_POLICY } from './reload-policy.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'bt-rl-'));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

const silent = pino({ level: 'silent' });

/** A berth home with config.yaml `text`, loaded as berthd loads it (env: only HOME/BERTH_HOME, and `env`). */
function setup(text: string, env: Record<string, string> = {}, log = silent) {
  const home = tmp();
  const file = join(home, 'config.yaml');
  writeFileSync(file, text);
  const options = { env: { HOME: home, BERTH_HOME: home, ...env } };
  const first = loadLayered(options);
  const bus = new EventBus();
  const events: BerthEvent[] = [];
  bus.subscribe((e) => void events.push(e));
  const applied: [ConfigKey, unknown][] = [];
  const apply = Object.fromEntries(
    (['logLevel', 'resyncSec', 'notifyWebhooks'] as ConfigKey[]).map((k) => [k, (c: Config) => void applied.push([k, c[k]])]),
  );
  const watcher = new ConfigWatcher({ current: first.config, layers: first.layers, load: () => loadLayered(options), apply, bus, log });
  return { home, file, config: first.config, watcher, events, applied };
}

describe('reload policy', () => {
  it('names a component for each live key; an undeclared key needs a restart', () => {
    for (const [key, how] of Object.entries(RELOAD_POLICY)) expect(how, key).toMatchObject({ apply: 'live', by: expect.any(String) });
    expect(reloadOf('logLevel')).toEqual({ apply: 'live', by: 'logger' });
    expect(reloadOf('socket')).toEqual({ apply: 'restart' });
    expect(reloadOf('agentMode')).toEqual({ apply: 'restart' });
    expect(reloadOf('newKeyNobodyDeclared' as ConfigKey)).toEqual({ apply: 'restart' });
  });

  it('diffs key by key: live, restart, and file edits the environment shadows', () => {
    const h = tmp();
    const env = { HOME: h, BERTH_HOME: h, AGENT_PIDS_LIMIT: '200' };
    writeFileSync(join(h, 'config.yaml'), 'logLevel: info\nagentPidsLimit: 100\n');
    const a = loadLayered({ env });
    writeFileSync(join(h, 'config.yaml'), `logLevel: debug\nagentPidsLimit: 300\nsocket: ${join(h, 'x.sock')}\nnotifyWebhooks: [{url: "http://127.0.0.1:1/h"}]\n`);
    const b = loadLayered({ env });
    const d = diffConfig(a.config, a.layers.file, b.config, b.layers);
    expect(d.live).toEqual(expect.arrayContaining([{ key: 'logLevel', by: 'logger' }, { key: 'notifyWebhooks', by: 'notifier' }]));
    expect(d.live).toHaveLength(2);
    expect(d.restart).toEqual(['socket']);
    expect(d.shadowed).toEqual([{ key: 'agentPidsLimit', by: 'AGENT_PIDS_LIMIT' }]);
    expect(diffConfig(b.config, b.layers.file, b.config, b.layers)).toEqual({ live: [], restart: [], shadowed: [] });
  });
});

describe('ConfigWatcher.reload', () => {
  it('applies live keys in place and through their setters, reports restart keys without applying them', () => {
    const s = setup('logLevel: info\n');
    const socket = s.config.socket;
    writeFileSync(s.file, `logLevel: debug\nresyncSec: 7\nsocket: ${join(s.home, 'other.sock')}\n`);
    const r = s.watcher.reload('test');
    expect(r).toMatchObject({ ok: true, restartNeeded: ['socket'], secrets: [] });
    expect(r.keys.sort()).toEqual(['logLevel', 'resyncSec']);
    expect(s.config).toMatchObject({ logLevel: 'debug', resyncSec: 7, socket });
    expect(s.applied).toEqual(expect.arrayContaining([['logLevel', 'debug'], ['resyncSec', 7]]));
    expect(s.events.map((e) => e.type)).toEqual(['config.changed']);
    expect(s.events[0]!.data).toEqual({ trigger: 'test', keys: r.keys, restartNeeded: ['socket'], secrets: [] });
    expect(s.watcher.check()).toMatchObject({ name: 'config', ok: true, warning: true });
  });

  it('an unchanged file publishes nothing', () => {
    const s = setup('logLevel: info\n');
    expect(s.watcher.reload('test')).toMatchObject({ ok: true, keys: [], restartNeeded: [] });
    expect(s.events).toEqual([]);
  });

  it('an invalid edit keeps the running config, names the key, fails the (warning) check until fixed', () => {
    const s = setup('logLevel: info\n');
    writeFileSync(s.file, 'logLevel: loud\nresyncSec: 9\n');
    const r = s.watcher.reload('test');
    expect(r.ok).toBe(false);
    expect(r.problem).toMatchObject({ key: 'logLevel', file: s.file });
    expect(s.config).toMatchObject({ logLevel: 'info', resyncSec: 30 });
    expect(s.applied).toEqual([]);
    expect(s.events.map((e) => e.type)).toEqual(['config.invalid']);
    expect(s.watcher.check()).toMatchObject({ ok: false, warning: true, detail: expect.stringContaining('logLevel') });

    writeFileSync(s.file, 'logLevel: info\nresyncSec: [not, yaml\n');
    expect(s.watcher.reload('test').problem).toMatchObject({ key: 'config.yaml' });
    writeFileSync(s.file, 'logLevel: info\nresync: 3\n');
    expect(s.watcher.reload('test').problem).toMatchObject({ key: 'resync' });

    writeFileSync(s.file, 'logLevel: info\nresyncSec: 9\n');
    const fixed = s.watcher.reload('test');
    expect(fixed).toMatchObject({ ok: true, keys: ['resyncSec'] });
    expect(s.watcher.check().ok).toBe(true);
    expect(s.events.at(-1)!.type).toBe('config.changed');
  });

  it('the fix of an invalid edit that restores the running values still clears the problem and says so', () => {
    const s = setup('logLevel: info\n');
    writeFileSync(s.file, 'logLevel: loud\n');
    s.watcher.reload('test');
    writeFileSync(s.file, 'logLevel: info\n');
    expect(s.watcher.reload('test')).toMatchObject({ ok: true, keys: [] });
    expect(s.watcher.check().ok).toBe(true);
    expect(s.events.map((e) => e.type)).toEqual(['config.invalid', 'config.changed']);
  });

  it('secrets: names that changed, never values; an unparsable secrets.yaml is refused by file', () => {
    const s = setup('logLevel: info\n');
    writeFileSync(join(s.home, 'secrets.yaml'), 'a: one\nb: two\n', { mode: 0o600 });
    expect(s.watcher.reload('test').secrets).toEqual(['a', 'b']);
    writeFileSync(join(s.home, 'secrets.yaml'), 'a: one\nb: three\nc: new\n', { mode: 0o600 });
    expect(s.watcher.reload('test').secrets).toEqual(['b', 'c']);
    writeFileSync(join(s.home, 'secrets.yaml'), 'a: one\n', { mode: 0o600 });
    expect(s.watcher.reload('test').secrets).toEqual(['b', 'c']);
    expect(JSON.stringify(s.events)).not.toMatch(/one|three|new"/);
    writeFileSync(join(s.home, 'secrets.yaml'), '- a list\n', { mode: 0o600 });
    expect(s.watcher.reload('test').problem).toMatchObject({ key: 'secrets.yaml' });
  });

  it('a FIFO, a link to a device or a huge config file is refused without blocking', () => {
    const s = setup('logLevel: info\n');
    rmSync(s.file);
    symlinkSync('/dev/zero', s.file);
    expect(s.watcher.reload('test').problem?.message).toMatch(/not a regular file/);
    rmSync(s.file);
    writeFileSync(s.file, `# ${'x'.repeat(1024 * 1024 + 10)}\n`);
    expect(s.watcher.reload('test').problem?.message).toMatch(/limit/);
    expect(() => readSmallFile(s.file)).toThrow(/limit/);
  });
});

describe('what the reload logs and publishes', () => {
  it('never a webhook URL (it may carry a token); a restart still pending is shown on the check', () => {
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
    const s = setup('logLevel: info\n', {}, log);
    writeFileSync(s.file, 'notifyWebhooks: [{url: "https://hooks.example/T0K3N?key=S3CRET"}]\n');
    expect(s.watcher.reload('test').keys).toEqual(['notifyWebhooks']);
    writeFileSync(s.file, 'notifyWebhooks: [{url: "ftp://hooks.example/T0K3N2"}]\n');
    const bad = s.watcher.reload('test');
    expect(bad.problem).toMatchObject({ key: 'notifyWebhooks' });
    const all = lines.join('') + JSON.stringify(s.events);
    expect(all).not.toMatch(/T0K3N|S3CRET/);
    expect(all).toContain('Applied notifyWebhooks');

    writeFileSync(s.file, `socket: ${join(s.home, 'b.sock')}\n`);
    expect(s.watcher.reload('test').restartNeeded).toEqual(['socket']);
    expect(s.watcher.check()).toMatchObject({ ok: true, detail: expect.stringContaining('needs a restart to apply: socket') });
  });
});

describe('setLogLevel', () => {
  it('reaches the children made before and after the change', () => {
    const root = createLogger('info', { pretty: false });
    const child = root.child({ component: 'x' });
    const grandchild = child.child({ sessionId: 'y' });
    setLogLevel(root, 'debug');
    expect([root.level, child.level, grandchild.level]).toEqual(['debug', 'debug', 'debug']);
    expect(root.child({ c: 1 }).level).toBe('debug');
    setLogLevel(root, 'warn');
    expect(grandchild.isLevelEnabled('info')).toBe(false);
  });
});
