import { execFile, execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN, poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const run = promisify(execFile);
const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
// CI installs zsh and fish (.ci/run); elsewhere a shell that is missing is skipped, and says so.
const shellTest = (shell: string) => (has(shell) || process.env.CI ? it : it.skip);

describe('berth completion: bash, zsh and fish, with names from berthd', () => {
  let d: DaemonProcess;
  let dir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    ({ d } = await startWithProject({}, 'webapp'));
    await d.client.agents.define({ name: 'sleeper', command: sh('sleep 3600') });
    await d.client.sessions.start({ project: 'webapp', agent: 'sleeper', name: 'lookout', mode: 'read' });
    dir = d.home;
    // `berth` on PATH as a user has it, talking to this test's berthd through $BERTH_SOCKET.
    await writeFile(join(dir, 'berth'), `#!/bin/sh\nexec ${process.execPath} ${BERTH_BIN} "$@"\n`, { mode: 0o755 });
    env = { PATH: `${dir}:${process.env.PATH}`, HOME: dir, BERTH_SOCKET: d.socket };
    for (const shell of ['bash', 'zsh', 'fish']) {
      const script = (await run(process.execPath, [BERTH_BIN, 'completion', shell], { env })).stdout;
      await writeFile(join(dir, `completion.${shell}`), script);
    }
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
  });

  /** What bash offers for the words typed so far (the last is the one completed). */
  const offered = async (words: string[]) => {
    const quoted = words.map((w) => `'${w}'`).join(' ');
    const script = `source ${dir}/completion.bash; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _berth; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = await run('bash', ['-c', script], { env });
    return r.stdout.split('\n').filter(Boolean).sort();
  };

  it('bash: commands, subcommands, options, and session/project/agent names', async () => {
    expect(await offered(['berth', 'lo'])).toEqual(['logs']);
    expect(await offered(['berth', 'agent', ''])).toEqual(['add', 'list', 'ls', 'remove', 'rm', 'show']);
    expect(await offered(['berth', 'logs', '--fo'])).toEqual(['--follow']);
    expect(await offered(['berth', 'agent', 'add', '--im'])).toEqual(['--image']);
    expect(await offered(['berth', 'logs', 'loo'])).toEqual(['lookout']);
    // An option's value is not taken for the argument: after `-n 5` the session is still to come.
    expect(await offered(['berth', 'logs', '-n', '5', ''])).toEqual(['lookout']);
    expect(await offered(['berth', '--json', 'project', 'show', ''])).toEqual(['webapp']);
    expect(await offered(['berth', 'agent', 'show', 's'])).toEqual(['sleeper']);
    expect(await offered(['berth', 'start', ''])).toEqual(['webapp']);
    // Nothing is offered after `--` (the command run in the session is the user's).
    expect(await offered(['berth', 'exec', 'lookout', '--', ''])).toEqual([]);
  });

  shellTest('fish')('fish: commands, subcommands, options and session names', async () => {
    const complete = async (line: string) =>
      (await run('fish', ['-c', `source ${dir}/completion.fish; complete -C'${line}'`], { env })).stdout
        .split('\n')
        .map((l) => l.split('\t')[0]!)
        .filter(Boolean)
        .sort();
    expect(await complete('berth lo')).toEqual(['logs']);
    expect(await complete('berth agent ')).toEqual(['add', 'list', 'ls', 'remove', 'rm', 'show']);
    expect(await complete('berth logs --fo')).toEqual(['--follow']);
    expect(await complete('berth logs loo')).toEqual(['lookout']);
    expect(await complete('berth project show ')).toEqual(['webapp']);
  });

  const terminals = {
    bash: { cmd: 'bash --norc --noprofile', setup: `source ${'${dir}'}/completion.bash` },
    zsh: { cmd: 'zsh -f', setup: `autoload -U compinit && compinit -u && source ${'${dir}'}/completion.zsh` },
  } as const;
  for (const [shell, t] of Object.entries(terminals)) {
    shellTest(shell)(`on a real terminal (${shell} in tmux): TAB completes a command, an option and a session name`, async () => {
      const tmux = (...args: string[]) => run('tmux', ['-L', `berth-test-${process.pid}-${shell}`, ...args], { env });
      const screen = async () => (await tmux('capture-pane', '-p', '-t', 'c')).stdout;
      await tmux('new-session', '-d', '-s', 'c', '-x', '120', '-y', '20', t.cmd);
      try {
        await tmux('send-keys', '-t', 'c', `${t.setup.replace('${dir}', dir)}; PS1='$ '; clear`, 'Enter');
        await tmux('send-keys', '-t', 'c', 'berth lo', 'Tab');
        await poll(async () => /^\$ berth logs\s*$/m.test(await screen()), 20_000, `berth logs on the screen (${shell})`);
        await tmux('send-keys', '-t', 'c', '--', '--fo', 'Tab');
        await poll(async () => /^\$ berth logs --follow\s*$/m.test(await screen()), 20_000, `--follow on the screen (${shell})`);
        await tmux('send-keys', '-t', 'c', 'look', 'Tab');
        await poll(async () => /^\$ berth logs --follow lookout\s*$/m.test(await screen()), 20_000, `the session name on the screen (${shell})`);
      } finally {
        await tmux('kill-server').catch(() => {});
      }
    });
  }

  it('prints nothing, quietly, when berthd cannot be reached', async () => {
    const r = await run(process.execPath, [BERTH_BIN, '--socket', join(dir, 'nowhere.sock'), '__complete', 'session'], { env });
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('');
    const bad = await run(process.execPath, [BERTH_BIN, 'completion', 'tcsh'], { env }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stderr: string }).stderr).toMatch(/bash\|zsh\|fish/);
  });
});
