import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BerthError } from '@berth/client-sdk/protocol';
import { configLayers } from './layers.js';
import { loadConfig } from './index.js';
import { lookupGroup, socketAccess } from './socket-access.js';

const dir = mkdtempSync(join(tmpdir(), 'bt-grp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const groups = join(dir, 'group');
writeFileSync(groups, 'root:x:0:\nberth:x:997:alice,bob\nbt-other:x:1234:\n');
const absent = `bt-absent-${process.pid}`;

const fail = (fn: () => unknown): BerthError => {
  try {
    fn();
  } catch (err) {
    return err as BerthError;
  }
  throw new Error('expected an error');
};

describe('socketAccess', () => {
  it('is 0600 for berthd alone by default, 0660 with a group', () => {
    expect(socketAccess({ socketGroup: null, socketMode: null })).toEqual({ mode: 0o600, group: null });
    expect(socketAccess({ socketGroup: 'berth', socketMode: null }, {}, groups)).toEqual({ mode: 0o660, group: { name: 'berth', gid: 997 } });
    expect(socketAccess({ socketGroup: '1234', socketMode: null }, {}, groups)).toEqual({ mode: 0o660, group: { name: null, gid: 1234 } });
    expect(socketAccess({ socketGroup: null, socketMode: '0660' })).toEqual({ mode: 0o660, group: null });
  });

  it('reads both from the environment and the config file, as every key', () => {
    const h = mkdtempSync(join(dir, 'h-'));
    writeFileSync(join(h, 'config.yaml'), 'socketGroup: berth\n');
    const layers = configLayers({ env: { HOME: h, BERTH_HOME: h, BERTH_SOCKET_MODE: '0600' } });
    expect(socketAccess(layers.raw, layers.source, groups)).toEqual({ mode: 0o600, group: { name: 'berth', gid: 997 } });
    expect(loadConfig({ env: { HOME: h, BERTH_HOME: h } })).toMatchObject({ socketGroup: 'berth', socketMode: null });
  });

  it('refuses a group that does not exist, and a mode other than 0600 or 0660, naming key and source', () => {
    const e = fail(() => socketAccess({ socketGroup: absent }, { socketGroup: 'BERTH_SOCKET_GROUP' }, groups));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details).toMatchObject({ env: 'BERTH_SOCKET_GROUP', value: absent, source: 'BERTH_SOCKET_GROUP' });
    expect(e.hint).toContain(`groupadd --system ${absent}`);
    const m = fail(() => socketAccess({ socketMode: '0666' }, { socketMode: 'BERTH_SOCKET_MODE' }));
    expect(m.details).toMatchObject({ env: 'BERTH_SOCKET_MODE', value: '0666', expected: 'one of: 0600, 0660' });
    expect(fail(() => socketAccess({ socketGroup: 'a b' })).code).toBe('CONFIG_INVALID');
    expect(fail(() => loadConfig({ env: { HOME: dir, BERTH_SOCKET_MODE: '777' } })).details).toMatchObject({ key: 'socketMode' });
  });

  it('looks groups up in the group file, then the system database', () => {
    expect(lookupGroup('bt-other', groups)).toBe(1234);
    expect(lookupGroup('root', join(dir, 'none'))).toBe(0);
    expect(lookupGroup(absent, groups)).toBeNull();
  });
});
