import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Every live child of a logger made by createLogger: a pino child copies its parent's level when it
 * is made, so a level changed on the root alone would not reach the components' loggers. Weak, and
 * dropped when collected, so per-run children do not pile up.
 */
const families = new WeakMap<Logger, { children: Set<WeakRef<Logger>>; gone: FinalizationRegistry<WeakRef<Logger>> }>();

/**
 * JSON lines on stdout (journald and `docker logs` friendly); pretty when stdout is a terminal.
 */
export function createLogger(level: string, opts: { pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  const base = { name: 'berthd' };
  const children = new Set<WeakRef<Logger>>();
  const gone = new FinalizationRegistry<WeakRef<Logger>>((ref) => children.delete(ref));
  const onChild = (child: Logger) => {
    const ref = new WeakRef(child);
    children.add(ref);
    gone.register(child, ref);
  };
  const root = pretty
    ? pino({
        level,
        base,
        onChild,
        transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,name' } },
      })
    : pino({ level, base, onChild, timestamp: pino.stdTimeFunctions.isoTime });
  families.set(root, { children, gone });
  return root;
}

/** Sets the level of `root` and of every live child it has made (the config's `logLevel`, reloaded live). */
export function setLogLevel(root: Logger, level: string): void {
  root.level = level;
  for (const ref of families.get(root)?.children ?? []) {
    const child = ref.deref();
    if (child) child.level = level;
  }
}
