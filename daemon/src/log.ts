import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * JSON lines on stdout (journald and `docker logs` friendly); pretty when stdout is a terminal.
 */
export function createLogger(level: string, opts: { pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  const base = { name: 'berthd' };
  if (pretty) {
    return pino({
      level,
      base,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,name' } },
    });
  }
  return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime });
}
