import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnDaemon, startDaemon, tempDir } from '../helpers/daemon.js';

/** Config errors stop the real berthd before it listens, naming key, value and what is accepted. */
describe('berthd configuration at startup', () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ['AGENT_MODE', { AGENT_MODE: 'vm' }, /AGENT_MODE \(agentMode\) = "vm".*one of: docker, local/],
    ['AGENT_MEMORY_LIMIT', { AGENT_MEMORY_LIMIT: 'lots' }, /AGENT_MEMORY_LIMIT \(agentMemoryLimit\) = "lots".*512m or 4g/],
    ['AGENT_CPU_LIMIT', { AGENT_CPU_LIMIT: '-1' }, /AGENT_CPU_LIMIT \(agentCpuLimit\) = "-1".*greater than 0/],
    ['AGENT_PIDS_LIMIT', { AGENT_PIDS_LIMIT: '1.5' }, /AGENT_PIDS_LIMIT \(agentPidsLimit\) = "1.5".*whole number/],
    ['AGENT_DOCKER_ACCESS', { AGENT_DOCKER_ACCESS: 'tcp' }, /AGENT_DOCKER_ACCESS.*"tcp".*socket/],
    ['DOCKER_HOST', { DOCKER_HOST: 'localhost:2375' }, /DOCKER_HOST \(dockerHost\) = "localhost:2375".*unix:\/\//],
    ['PROJECTS_ROOT', { PROJECTS_ROOT: 'relative/dir' }, /PROJECTS_ROOT.*"relative\/dir".*absolute path/],
  ];
  it.each(cases)('a bad %s stops berthd with exit 78 and says what is accepted', async (_k, env, message) => {
    const home = await tempDir();
    try {
      const d = spawnDaemon({ home, env });
      expect(await d.waitExit()).toBe(78);
      expect(d.output).toContain('CONFIG_INVALID');
      expect(d.output).toMatch(message);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('reads $BERTH_HOME/config.yaml, and the environment beats it', async () => {
    const home = await tempDir();
    try {
      await writeFile(join(home, 'config.yaml'), 'agentMemoryLimit: 1g\nagentPidsLimit: 100\nagentRuntime: runc\n');
      await using d = await startDaemon({ home, env: { AGENT_PIDS_LIMIT: '200' } });
      const s = await d.client.daemon.status();
      expect(s.config).toMatchObject({ agentMemoryLimit: '1g', agentPidsLimit: 200, agentRuntime: 'runc' });
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('--config FILE is read, and a bad key in it is named with the file', async () => {
    const home = await tempDir();
    try {
      const file = join(home, 'other.yaml');
      await writeFile(file, 'agentMode: local\nagentCpus: 3\n');
      const d = spawnDaemon({ home, args: ['--config', file] });
      expect(await d.waitExit()).toBe(78);
      expect(d.output).toContain('unknown key "agentCpus"');
      expect(d.output).toContain(file);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('--log-level and --socket flags beat the environment', async () => {
    const home = await tempDir();
    try {
      const sock = join(home, 'flag.sock');
      await using d = await startDaemon({ home, args: ['--socket', sock, '--log-level', 'warn'], env: { BERTH_SOCKET: sock } });
      const s = await d.client.daemon.status();
      expect(s.socket).toBe(sock);
      expect(s.config.logLevel).toBe('warn');
      expect(d.output).not.toContain('Started berthd');
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
