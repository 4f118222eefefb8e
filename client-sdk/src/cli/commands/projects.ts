import { usageError } from '../context.js';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { BerthError, type NetworkMode, type WorktreePolicy } from '../../protocol/index.js';
import type { CliContext } from '../context.js';
import { ago, emit, ids, line, table } from '../output.js';

export function register(program: Command, { out, connect }: CliContext): void {
  const project = program.command('project').description('manage projects (git repositories under PROJECTS_ROOT)');
  project
    .command('add <name> [path]')
    .description('register the git repository at PATH as project NAME, or clone one with --git URL')
    .option('--git <url>', 'clone this URL into $BERTH_HOME/repos/NAME (https://, ssh://, user@host:path, file://)')
    .option('--ssh-key <file>', 'deploy key for an ssh URL')
    .option('--branch <branch>', 'base branch for write sessions (default: what the main checkout has checked out)')
    .option('--worktrees <policy>', 'always (default) | when-shared')
    .action(async (name: string, path: string | undefined, o: { git?: string; sshKey?: string; branch?: string; worktrees?: string }, cmd: Command) => {
      if ((path === undefined) === (o.git === undefined)) throw usageError('give either PATH or --git URL');
      const p = await connect(cmd).projects.add({
        name,
        ...(path !== undefined ? { path: resolve(path) } : { gitUrl: o.git! }),
        ...(o.sshKey ? { sshKeyPath: resolve(o.sshKey) } : {}),
        ...(o.branch ? { branch: o.branch } : {}),
        ...(o.worktrees ? { worktrees: o.worktrees as WorktreePolicy } : {}),
      });
      emit(out, p, () => `added project ${p.name} (${p.path}${p.gitUrl ? ` from ${p.gitUrl}` : ''})\n`);
    });
  project
    .command('ls')
    .alias('list')
    .description('list projects')
    .option('-q, --quiet', 'only the names, one a line')
    .action(async (o: { quiet?: boolean }, cmd: Command) => {
      const list = await connect(cmd).projects.list();
      if (o.quiet && !out.json) return out.print(ids(list.map((p) => p.name)));
      emit(out, list, () =>
        list.length ? table(['NAME', 'PATH', 'ADDED'], list.map((p) => [p.name, p.path, ago(p.createdAt)])) : 'no projects\n',
      );
    });
  project
    .command('show <name>')
    .description('show one project')
    .action(async (name: string, _o, cmd: Command) => {
      const p = await connect(cmd).projects.get({ name });
      emit(out, p, () =>
        [
          `name       ${p.name}`,
          `path       ${p.path}`,
          ...(p.gitUrl ? [`git url    ${p.gitUrl}`] : []),
          `branch     ${p.branch ?? '(the main checkout\'s current branch)'}`,
          `worktrees  ${p.worktrees}`,
          `added      ${p.createdAt}`,
        ].map((l) => line`${l}`).join('\n') + '\n',
      );
    });
  project
    .command('update <name>')
    .description('change project settings')
    .option('--network <mode>', 'default network for its sessions: bridge | internal | none')
    .option('--worktrees <policy>', 'always | when-shared')
    .option('--default-image <image>', 'image every session of this project runs (overrides the agents\'); "none" to unset')
    .action(async (name: string, o: { network?: string; worktrees?: string; defaultImage?: string }, cmd: Command) => {
      const p = await connect(cmd).projects.update({
        name,
        ...(o.defaultImage !== undefined ? { defaultImage: o.defaultImage === 'none' ? null : o.defaultImage } : {}),
        ...(o.network !== undefined ? { network: o.network as NetworkMode } : {}),
        ...(o.worktrees !== undefined ? { worktrees: o.worktrees as WorktreePolicy } : {}),
      });
      emit(out, p, () => `updated project ${p.name}\n`);
    });
  project
    .command('rm <name>')
    .alias('remove')
    .description('forget a project (the repository on disk is not touched)')
    .action(async (name: string, _o, cmd: Command) => {
      const r = await connect(cmd).projects.remove({ name });
      emit(out, r, () => `removed project ${r.removed} (files on disk untouched)\n`);
    });
}
