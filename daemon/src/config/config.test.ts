import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError } from '@berth/client-sdk/protocol';
import { loadConfig, parseMemory } from './index.js';

const dirs: string[] = [];
const home = () => {
  const d = mkdtempSync(join(tmpdir(), 'bt-cfg-'));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

const fail = (fn: () => unknown): BerthError => {
  try {
    fn();
  } catch (err) {
    return err as BerthError;
  }
  throw new Error('expected an error');
};

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const h = home();
    const c = loadConfig({ env: { HOME: h } });
    expect(c).toMatchObject({
      home: join(h, '.berth'),
      socket: join(h, '.berth', 'berth.sock'),
      agentMode: 'docker',
      agentDefaultImage: 'claude-agent-base',
      agentMemoryLimit: '4g',
      agentCpuLimit: 2,
      agentPidsLimit: 512,
      agentDockerAccess: null,
      agentRuntime: null,
      projectsRoot: join(h, 'projects'),
      dockerHost: null,
      configFile: null,
    });
  });

  it('layers defaults < file < environment < flags', () => {
    const h = home();
    writeFileSync(join(h, 'config.yaml'), 'agentCpuLimit: 1\nagentPidsLimit: 100\nagentMemoryLimit: 1g\n');
    const c = loadConfig({ env: { HOME: h, BERTH_HOME: h, AGENT_PIDS_LIMIT: '200', AGENT_MEMORY_LIMIT: '2g' }, overrides: { agentMemoryLimit: '3g' } });
    expect(c).toMatchObject({ agentCpuLimit: 1, agentPidsLimit: 200, agentMemoryLimit: '3g', configFile: join(h, 'config.yaml') });
  });

  it('expands ~ in paths and BERTH_HOME moves the socket', () => {
    const h = home();
    const c = loadConfig({ env: { HOME: h, BERTH_HOME: '~/state', PROJECTS_ROOT: '~/src' } });
    expect(c.home).toBe(join(h, 'state'));
    expect(c.socket).toBe(join(h, 'state', 'berth.sock'));
    expect(c.projectsRoot).toBe(join(h, 'src'));
  });

  it('reads the log store sizes like memory sizes, with a floor of 64k', () => {
    const h = home();
    const d = loadConfig({ env: { HOME: h } });
    expect([d.logSegmentBytes, d.logRetentionBytes, d.logRetentionTotalBytes, d.logRetentionDays]).toEqual([16 * 1024 ** 2, 256 * 1024 ** 2, 4 * 1024 ** 3, 14]);
    const c = loadConfig({ env: { HOME: h, BERTH_LOG_SEGMENT_BYTES: '64k', BERTH_LOG_RETENTION_BYTES: '1048576', BERTH_LOG_RETENTION_DAYS: '0.5' } });
    expect([c.logSegmentBytes, c.logRetentionBytes, c.logRetentionDays]).toEqual([65536, 1048576, 0.5]);
    const e = fail(() => loadConfig({ env: { HOME: h, BERTH_LOG_SEGMENT_BYTES: '1k' } }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details).toMatchObject({ key: 'logSegmentBytes', env: 'BERTH_LOG_SEGMENT_BYTES' });
  });

  it('names key, value, source and what is accepted', () => {
    const h = home();
    const e = fail(() => loadConfig({ env: { HOME: h, AGENT_CPU_LIMIT: 'two' } }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details).toMatchObject({ key: 'agentCpuLimit', env: 'AGENT_CPU_LIMIT', value: 'two', source: 'AGENT_CPU_LIMIT' });
    expect(e.message).toMatch(/AGENT_CPU_LIMIT.*"two".*CPUs/);
  });

  it('reports the file as the source of a bad file value', () => {
    const h = home();
    writeFileSync(join(h, 'config.yaml'), 'agentMode: vm\n');
    const e = fail(() => loadConfig({ env: { HOME: h, BERTH_HOME: h } }));
    expect(e.details).toMatchObject({ key: 'agentMode', source: `${join(h, 'config.yaml')}: agentMode` });
  });

  it('rejects unknown keys, YAML that is not a mapping, broken YAML and a missing --config file', () => {
    const h = home();
    const f = join(h, 'c.yaml');
    writeFileSync(f, 'agentMemory: 1g\n');
    expect(fail(() => loadConfig({ env: { HOME: h }, configFile: f })).details).toMatchObject({ key: 'agentMemory' });
    writeFileSync(f, '- a\n- b\n');
    expect(fail(() => loadConfig({ env: { HOME: h }, configFile: f })).message).toMatch(/mapping/);
    writeFileSync(f, 'a: [\n');
    expect(fail(() => loadConfig({ env: { HOME: h }, configFile: f })).message).toMatch(/not valid YAML/);
    expect(fail(() => loadConfig({ env: { HOME: h }, configFile: join(h, 'nope.yaml') })).code).toBe('CONFIG_INVALID');
  });

  it('accepts the DOCKER_HOST forms the docker CLI does', () => {
    const h = home();
    for (const v of ['unix:///var/run/docker.sock', 'tcp://127.0.0.1:2375', 'ssh://me@host']) {
      expect(loadConfig({ env: { HOME: h, DOCKER_HOST: v } }).dockerHost).toBe(v);
    }
  });
});

describe('parseMemory', () => {
  it('reads sizes as the docker CLI does', () => {
    expect(parseMemory('4g')).toBe(4 * 1024 ** 3);
    expect(parseMemory('512m')).toBe(512 * 1024 ** 2);
    expect(parseMemory('1.5G')).toBe(1.5 * 1024 ** 3);
    expect(parseMemory('1024')).toBe(1024);
    expect(parseMemory('lots')).toBeNull();
    expect(parseMemory('0')).toBeNull();
    expect(parseMemory('-1g')).toBeNull();
  });
});

describe('maintenance config', () => {
  it('backupKeep defaults to 7; maintenanceCron takes per-job cron or "off", from the environment (JSON) or the file (a mapping)', () => {
    const h = home();
    expect(loadConfig({ env: { HOME: h } })).toMatchObject({ backupKeep: 7, maintenanceCron: {} });
    const env = { HOME: h, BERTH_BACKUP_KEEP: '3', BERTH_MAINTENANCE_CRON: '{"backup": "0 2 * * *", "images": "off"}' };
    expect(loadConfig({ env })).toMatchObject({ backupKeep: 3, maintenanceCron: { backup: '0 2 * * *', images: 'off' } });
    const file = join(h, 'config.yaml');
    writeFileSync(file, 'maintenanceCron:\n  prune: "*/30 * * * *"\n');
    expect(loadConfig({ env: { HOME: h }, configFile: file }).maintenanceCron).toEqual({ prune: '*/30 * * * *' });
  });

  it('refuses an unknown job, a bad cron expression and a keep below 1, naming the key', () => {
    const h = home();
    for (const [k, v] of [
      ['BERTH_MAINTENANCE_CRON', '{"bakup": "0 2 * * *"}'],
      ['BERTH_MAINTENANCE_CRON', '{"backup": "every day"}'],
      ['BERTH_MAINTENANCE_CRON', 'not json'],
      ['BERTH_BACKUP_KEEP', '0'],
    ] as const) {
      const e = fail(() => loadConfig({ env: { HOME: h, [k]: v } }));
      expect(e.code, `${k}=${v}`).toBe('CONFIG_INVALID');
      expect(e.details?.env).toBe(k);
    }
  });
});
