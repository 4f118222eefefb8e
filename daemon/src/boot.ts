import { isAbsolute, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { BerthError } from '@berth/client-sdk/protocol';
import { configLayers } from './config/layers.js';
import { socketAccess } from './config/socket-access.js';
import { SocketListener } from './rpc/listener.js';
import { VERSION } from './version.js';

/**
 * berthd's entry: binds the socket first, then loads the daemon. Only node's own modules, commander
 * and the protocol's errors are loaded before the socket answers; the engine client, the store, the
 * validator and the HTTP framework come after, while connecting clients are held, not refused.
 */

function fail(err: unknown): never {
  if (err instanceof BerthError) {
    process.stderr.write(`berthd: error[${err.code}]: ${err.message}\n  hint: ${err.hint}\n`);
    process.exit(err.code === 'CONFIG_INVALID' ? 78 /* EX_CONFIG */ : 1);
  }
  process.stderr.write(`berthd: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
}

/**
 * `berthd --restore FILE`: puts a backup in place of the state database, berthd not running. The
 * socket is held while it works, so no berthd can start on the half-swapped database meanwhile;
 * a berthd serving it already makes this fail with RESTORE_DAEMON_RUNNING, having changed nothing.
 */
async function restore(file: string, loadOpts: Parameters<typeof configLayers>[0]): Promise<void> {
  const layers = configLayers(loadOpts);
  const socket = layers.raw.socket;
  if (typeof socket !== 'string' || !isAbsolute(socket)) throw new BerthError('CONFIG_INVALID', `BERTH_SOCKET must be an absolute path (got ${JSON.stringify(socket)})`);
  let listener: SocketListener;
  try {
    listener = await SocketListener.open(socket, { warn: () => {} }, socketAccess(layers.raw, layers.source));
  } catch (err) {
    if (err instanceof BerthError && err.code === 'SOCKET_IN_USE') {
      throw new BerthError('RESTORE_DAEMON_RUNNING', `berthd is running on ${socket}: a database cannot be restored under it`, { details: { socket } });
    }
    throw err;
  }
  listener.fail(new BerthError('DAEMON_UNREACHABLE', 'berthd is restoring a backup; start it when that is done'));
  try {
    const { restoreDb } = await import('./maintenance/restore.js');
    const r = await restoreDb(layers.home, resolve(file));
    process.stdout.write(
      `restored ${r.from} (schema version ${r.userVersion}) to ${r.db}\n` +
        (r.previous ? `the database it replaced is kept at ${r.previous}\n` : '') +
        (r.otherInstance ? 'warning: the backup is of another berth installation (another instance id)\n' : '') +
        'start berthd: it adopts the running containers of the sessions in the backup; containers of sessions made after it are kept running, unsupervised, and logged\n',
    );
  } finally {
    await listener.close();
  }
}

/** `berthd [--config FILE] [--socket PATH] [--log-level LEVEL] [--restore FILE]`: runs in the foreground until SIGTERM/SIGINT. */
export async function runCli(argv: string[]): Promise<void> {
  const program = new Command('berthd')
    .description('berth daemon: supervises AI coding agents in isolated containers')
    .version(VERSION)
    .option('-c, --config <file>', 'config file (default: $BERTH_HOME/config.yaml)')
    .option('-s, --socket <path>', 'RPC socket path (default: $BERTH_SOCKET or $BERTH_HOME/berth.sock)')
    .addOption(new Option('-l, --log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .option('--pretty', 'human-readable logs even when stdout is not a terminal')
    .option('--restore <file>', 'put a backup (berth backup) in place of the state database and exit; berthd must be stopped')
    .parse(argv);
  const opts = program.opts<{ config?: string; socket?: string; logLevel?: string; pretty?: boolean; restore?: string }>();
  const loadOpts = {
    ...(opts.config !== undefined ? { configFile: opts.config } : {}),
    overrides: { socket: opts.socket, logLevel: opts.logLevel },
  };
  if (opts.restore !== undefined) {
    await restore(opts.restore, loadOpts).catch(fail);
    process.exit(0);
  }

  // Handlers go in before the socket opens: a signal during startup must still end cleanly.
  let stopDaemon: ((reason: string) => Promise<void>) | null = null;
  let stopRequested: NodeJS.Signals | null = null;
  let signals = 0;
  let flush = () => {};
  const shutdown = (sig: NodeJS.Signals) => {
    stopDaemon!(sig).then(
      () => {
        flush();
        process.exit(0);
      },
      (err: unknown) => {
        process.stderr.write(`berthd: failed to stop cleanly: ${(err as Error)?.stack ?? String(err)}\n`);
        process.exit(1);
      },
    );
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) {
      process.stderr.write(`berthd: second ${sig}: exiting now\n`);
      process.exit(130);
    }
    if (stopDaemon) shutdown(sig);
    else stopRequested = sig;
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // SIGHUP reloads config.yaml and secrets.yaml; before the daemon runs, the files are being read anyway.
  let reloadConfig: ((trigger: string) => unknown) | null = null;
  process.on('SIGHUP', () => void reloadConfig?.('SIGHUP'));

  // The socket path without the validator; a path the validator will refuse is left to it.
  let listener: SocketListener | null = null;
  const early: [Record<string, unknown>, string][] = [];
  try {
    const layers = configLayers(loadOpts);
    const socket = layers.raw.socket;
    if (typeof socket === 'string' && isAbsolute(socket)) {
      listener = await SocketListener.open(socket, { warn: (obj, msg) => void early.push([obj, msg]) }, socketAccess(layers.raw, layers.source));
    }
  } catch (err) {
    fail(err);
  }

  const startupFailed = async (err: unknown): Promise<never> => {
    if (listener) {
      listener.fail(err);
      await listener.close();
    }
    flush();
    fail(err);
  };

  try {
    const main = await import('./main.js');
    const { config, layers } = main.loadLayered(loadOpts);
    const log = main.createLogger(config.logLevel, opts.pretty ? { pretty: true } : {});
    flush = () => log.flush?.();
    for (const [obj, msg] of early) log.warn(obj, msg);
    const daemon = await main.startDaemon(config, log, { ...(listener ? { listener } : {}), reload: { options: loadOpts, layers } });
    stopDaemon = (reason) => daemon.stop(reason);
    reloadConfig = (trigger) => daemon.reloadConfig(trigger);
  } catch (err) {
    await startupFailed(err);
  }
  if (stopRequested) shutdown(stopRequested);
}
