import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { duration, emit, line } from '../output.js';
import { maintenanceLines } from './maintenance.js';

export function register(program: Command, { out, connect }: CliContext): void {
  program
    .command('status [id]')
    .description('without ID: the daemon, the engine and health checks; with ID: a session\'s branch, commits and uncommitted files')
    .action(async (id: string | undefined, _o, cmd: Command) => {
      if (id !== undefined) {
        const st = await connect(cmd).sessions.status({ id });
        emit(out, st, () => {
          const c = st.lastCommit;
          const lines = [
            line`branch   ${st.branch ?? '(none)'}` + (st.base && st.base !== st.branch ? line` (base ${st.base}: ${st.ahead} ahead, ${st.behind} behind)` : ''),
            c ? line`commit   ${c.sha.slice(0, 12)} ${c.subject} (${c.author})` : 'commit   (none)',
            st.dirty.length ? `changes  ${st.dirty.length} uncommitted:` : 'changes  none',
            ...st.dirty.map((d) => line`  ${d.status.padEnd(2)} ${d.path}`),
          ];
          return lines.join('\n') + '\n';
        });
        return;
      }
      const s = await connect(cmd).daemon.status();
      emit(out, s, () => {
        const engine = s.engine.available
          ? `Docker ${s.engine.version} (API ${s.engine.apiVersion}) at ${s.engine.host}`
          : `UNAVAILABLE at ${s.engine.host}: ${s.engine.error}`;
        const lines = [
          `berthd ${s.version}  pid ${s.pid}  up ${duration(s.uptimeSec)}`,
          `socket   ${s.socket}`,
          `home     ${s.config.home}`,
          `mode     ${s.config.agentMode}`,
          `engine   ${engine}`,
          `health   ${s.health.status}`,
          ...s.health.checks.map(
            (c) => `  ${c.ok ? 'ok  ' : c.warning ? 'WARN' : 'FAIL'} ${c.name}: ${c.detail}${c.ok || !c.remediation ? '' : `\n       fix: ${c.remediation}`}`,
          ),
          // An older berthd has neither.
          ...(s.maintenance ? maintenanceLines(s.maintenance, s.disk ?? null) : []),
        ];
        return lines.join('\n') + '\n';
      });
    });

  program
    .command('config')
    .description("berthd's configuration")
    .command('reload')
    .description('read config.yaml and secrets.yaml again now (as SIGHUP does): what changed, what needs a restart; an invalid file is refused, naming the key')
    .action(async (_o, cmd: Command) => {
      const r = await connect(cmd).daemon.reloadConfig();
      emit(out, r, () => {
        const lines = [
          `applied          ${r.keys.length ? r.keys.join(', ') : '(no change)'}`,
          ...(r.restartNeeded.length ? [`needs a restart  ${r.restartNeeded.join(', ')}`] : []),
          ...(r.secrets.length ? [`secrets changed  ${r.secrets.join(', ')}`] : []),
        ];
        return lines.map((l) => line`${l}`).join('\n') + '\n';
      });
    });
}
