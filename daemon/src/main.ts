import { setMaxListeners } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, type ConfigChange, type DaemonStatus } from '@berth/client-sdk/protocol';
import { AgentService } from './agents/service.js';
import { AuditLog } from './bridge/audit.js';
import { CredentialSource } from './bridge/credential.js';
import { BridgeHost } from './bridge/host.js';
import { ModelRelay } from './bridge/relay.js';
import { UsageService } from './bridge/usage-service.js';
import { loadLayered, parseMemory, socketAccess, summarize, type Config, type ConfigKey, type Layers, type LoadOptions } from './config/index.js';
import { ConfigWatcher, type ReloadResult } from './config/reload.js';
import { EventBus } from './events/bus.js';
import { EngineMonitor } from './health/engine-monitor.js';
import { systemClock, type Clock } from './shared/clock.js';
import { LogReader } from './logs/reader.js';
import { Health } from './health/index.js';
import { StuckMonitor } from './health/stuck.js';
import { setLogLevel, type Logger } from './log.js';
import { ProjectService } from './projects/service.js';
import { RpcDispatcher } from './rpc/dispatcher.js';
import { createHandlers } from './rpc/handlers.js';
import { pgit } from './checkouts/project-git.js';
import { PoolController } from './pools/controller.js';
import { PoolService } from './pools/service.js';
import { ScheduleController } from './schedules/controller.js';
import { ScheduleService } from './schedules/service.js';
import { bridgeTasks } from './tasks/bridge.js';
import { TaskService } from './tasks/service.js';
import { TaskFileWatcher } from './tasks/watch.js';
import type { SocketListener } from './rpc/listener.js';
import { RpcServer } from './rpc/server.js';
import { LogIngest } from './logs/ingest.js';
import { LogRetention } from './logs/retention.js';
import { Reconciler, type ReconcilerOptions } from './reconcile/controller.js';
import { crashBackoffMs } from './reconcile/plan.js';
import { EngineWatcher } from './reconcile/watch.js';
import { DockerRuntime } from './runtime/docker/engine.js';
import { LABELS, networkName } from './runtime/labels.js';
import { LocalRuntime } from './runtime/local/runtime.js';
import { desktopNotifier } from './notify/desktop.js';
import { Notifier } from './notify/notifier.js';
import { WebhookQueue } from './notify/webhooks.js';
import type { ContainerRuntime } from './runtime/port.js';
import { Admission, autoMaxRunning } from './sessions/admission.js';
import { Secrets } from './sessions/secrets.js';
import { SessionService } from './sessions/service.js';
import { ImageService } from './images/service.js';
import { Devcontainers } from './images/devcontainer.js';
import { SessionCheckouts } from './sessions/checkouts.js';
import { CheckoutManager } from './checkouts/manager.js';
import { GIT_LIMITS, setGitGlobalConfig } from './checkouts/git.js';
import { Store } from './store/index.js';
import { Backups } from './maintenance/backup.js';
import { DiskUsage } from './maintenance/disk.js';
import { backupJob, checkoutsJob, imagesJob, pruneJob, type Pruner } from './maintenance/jobs.js';
import { RestoredOrphans } from './maintenance/restore.js';
import { Maintenance, type Scheduler } from './maintenance/runner.js';
import { VERSION } from './version.js';

export interface Daemon {
  config: Config;
  log: Logger;
  /** Stops serving and releases everything. Agent containers are left running, always. */
  stop(reason: string): Promise<void>;
  /** Reloads config.yaml and secrets.yaml now (SIGHUP); null when this daemon was started without `reload`. */
  reloadConfig(trigger: string): ReloadResult | null;
}

export { loadConfig, loadLayered } from './config/index.js';
export { createLogger } from './log.js';

export interface StartOptions extends Omit<BuildOptions, 'log'> {
  /** The socket, already bound by boot (requests are held until the daemon serves them). Default: bind config.socket. */
  listener?: SocketListener;
  /**
   * How `config` was loaded (file, environment, flags) and its layers: given, berthd watches
   * config.yaml and secrets.yaml and reloads them on change (berthd's entry gives it; tests'
   * in-process daemons do not, unless they ask).
   */
  reload?: { options: LoadOptions; layers: Layers };
}

export interface BuildOptions {
  log: Logger;
  /** Default: the system clock. Tests pass a fake one to move time. */
  clock?: Clock;
  /** Default: Docker (DOCKER_HOST) or local processes, as AGENT_MODE says. */
  runtime?: ContainerRuntime;
  /** Overrides of the reconciler's workers, resync and timeouts (config gives the rest). */
  reconciler?: ReconcilerOptions;
  /** The maintenance jobs' timer (default node-cron); tests pass one they fire themselves. */
  maintenanceScheduler?: Scheduler;
}

/** Every part of a daemon, wired, nothing started: what `startDaemon` runs and what tests drive directly. */
export interface DaemonParts {
  config: Config;
  log: Logger;
  clock: Clock;
  store: Store;
  instanceId: string;
  bus: EventBus;
  runtime: ContainerRuntime;
  monitor: EngineMonitor;
  health: Health;
  reconciler: Reconciler;
  watcher: EngineWatcher;
  checkouts: SessionCheckouts;
  projects: ProjectService;
  agents: AgentService;
  images: ImageService;
  sessions: SessionService;
  admission: Admission;
  stuck: StuckMonitor;
  /** Claude bridges (null in AGENT_MODE=local: bare processes get none). */
  bridge: BridgeHost | null;
  credential: CredentialSource;
  usage: UsageService;
  /** Notifications (desktop, webhooks, the `notification` event) from the session events on the bus. */
  notifier: Notifier;
  tasks: TaskService;
  /** Each project's `.berth/tasks.yaml`, kept in step with its tasks. */
  taskFiles: TaskFileWatcher;
  pools: PoolService;
  poolController: PoolController;
  /** How each live config key reaches the components that copied its value (config/reload-policy.ts says which keys are live). */
  liveConfig: Partial<Record<ConfigKey, (config: Config) => void>>;
  /** Scheduled maintenance (backup, prune, images, checkouts), each also run by hand. */
  maintenance: Maintenance;
  backups: Backups;
  disk: DiskUsage;
  schedules: ScheduleService;
  scheduleController: ScheduleController;
  /** Every session's output copied into `$BERTH_HOME/logs` as it arrives. */
  logIngest: LogIngest;
  /** Size and age limits of the stored output; `pruneLogs(now)` is the maintenance pass. */
  logRetention: LogRetention;
}

/**
 * Composition root: the only place that constructs adapters and wires them together. Opens the
 * store and makes berth's directories; starts nothing (no loop, no socket).
 */
export function buildDaemon(config: Config, opts: BuildOptions): DaemonParts {
  const { log } = opts;
  const clock = opts.clock ?? systemClock;
  mkdirSync(config.home, { recursive: true, mode: 0o700 });
  mkdirSync(join(config.home, 'shared'), { recursive: true, mode: 0o755 });
  setGitGlobalConfig(join(config.home, 'gitconfig'));
  GIT_LIMITS.defaultTimeoutMs = config.gitTimeoutSec * 1000;
  const store = Store.open(join(config.home, 'berth.db'));
  const instanceId = store.meta.instanceId();
  const bus = new EventBus();
  const runtime = opts.runtime ?? (config.agentMode === 'local' ? new LocalRuntime(config.home) : new DockerRuntime({ dockerHost: config.dockerHost }));
  const monitor = new EngineMonitor(runtime, config.agentDefaultImage, bus, log.child({ component: 'engine' }));
  const health = new Health(store, monitor, bus, log.child({ component: 'health' }));
  monitor.onChecked = () => void health.snapshot();

  const secrets = new Secrets(config.home);
  const audit = new AuditLog(config.home);
  const credential = new CredentialSource(config.modelCredential, secrets);
  const relay = config.agentMode === 'local' ? null : new ModelRelay(config.modelUpstream, config.modelMaxInflight, credential, log.child({ component: 'relay' }));
  const bridge =
    relay === null
      ? null
      : new BridgeHost({
          home: config.home,
          sessions: store.sessions,
          usage: store.usage,
          relay,
          audit,
          bus,
          log: log.child({ component: 'bridge' }),
          clock,
          onTurnEnded: (id) => sessions.finishGracefulStop(id),
          tasks: { call: (s, method, params) => agentTasks.call(s, method, params), touch: (id) => agentTasks.touch(id) },
        });

  const checkoutManager = new CheckoutManager(config.home, log.child({ component: 'checkouts' }));
  const checkouts = new SessionCheckouts(checkoutManager, store.sessions, store.projects, log.child({ component: 'checkouts' }), bus);
  const restoredOrphans = new RestoredOrphans(store.meta, log.child({ component: 'restore' }));
  const logsRoot = join(config.home, 'logs');
  mkdirSync(logsRoot, { recursive: true, mode: 0o700 });
  const logRetention = new LogRetention(
    logsRoot,
    { sessionBytes: config.logRetentionBytes, totalBytes: config.logRetentionTotalBytes, days: config.logRetentionDays },
    log.child({ component: 'log-retention' }),
  );
  const logIngest = new LogIngest({
    runtime,
    sessions: store.sessions,
    bus,
    log: log.child({ component: 'log-ingest' }),
    clock,
    root: logsRoot,
    segmentBytes: config.logSegmentBytes,
    retention: logRetention,
  });
  const reconciler = new Reconciler(
    {
      sessions: store.sessions,
      runtime,
      bus,
      log: log.child({ component: 'reconciler' }),
      clock,
      secrets,
      instanceId,
      onEngineError: () => monitor.poke(),
      beforeDelete: async (s) => {
        await checkouts.finishRemoval(s);
        await bridge?.close(s.id, { forget: true });
        await logIngest.removed(s);
      },
      ...(bridge ? { bridge } : {}),
      keepOrphans: (candidates) => restoredOrphans.keep(candidates),
      engineLogBytes: config.logEngineBytes,
    },
    { resyncMs: config.resyncSec * 1000, orphanGraceMs: config.orphanGraceSec * 1000, ...opts.reconciler },
  );
  const watcher = new EngineWatcher(runtime, reconciler, monitor, log.child({ component: 'watch' }), clock);
  bus.subscribe((e) => {
    if (e.type === 'engine.available') reconciler.resyncSoon();
  });

  const projects = new ProjectService(store.projects, store.sessions, bus, config.projectsRoot, {
    reposDir: join(config.home, 'repos'),
    checkouts: checkoutManager,
    onRemoved: async (name) => {
      // Only this daemon's: another berthd on the same engine may have a project of that name.
      const owner = { [LABELS.managed]: 'true', [LABELS.instance]: instanceId };
      await runtime.removeNetwork(networkName(name, false, instanceId), owner);
      await runtime.removeNetwork(networkName(name, true, instanceId), owner);
    },
  });
  const agents = new AgentService(store.agents, store.sessions, bus);
  const images = new ImageService(runtime, { agents: store.agents, projects: store.projects, sessions: store.sessions }, bus, log.child({ component: 'images' }), {
    defaultImage: config.agentDefaultImage,
    imagesDir: config.imagesDir,
    buildCaCerts: config.buildCaCerts,
    instanceId,
  });
  const stuck = new StuckMonitor({
    sessions: store.sessions,
    agents: store.agents,
    runtime,
    bus,
    log: log.child({ component: 'stuck' }),
    clock,
    defaultStuckAfterSec: config.agentStuckTimeoutMinutes * 60,
    checkMs: config.activityCheckSec * 1000,
    restart: (id) => {
      const s = store.sessions.get(id);
      if (!s) return;
      const now = clock.now();
      store.sessions.stuckRestart(id, new Date(now.getTime() + crashBackoffMs(s.crashCount + 1)).toISOString(), now.toISOString());
      reconciler.enqueue(id);
    },
  });
  const cap = config.maxRunning === 'auto' ? autoMaxRunning(parseMemory(config.agentMemoryLimit) ?? 4 * 1024 ** 3, config.agentCpuLimit) : config.maxRunning;
  const admission = new Admission({ sessions: store.sessions, reconciler, bus, log: log.child({ component: 'admission' }), clock }, cap);
  const sessions = new SessionService({
    sessions: store.sessions,
    projects: store.projects,
    agents: store.agents,
    runtime,
    reconciler,
    bus,
    config,
    log: log.child({ component: 'sessions' }),
    checkouts,
    images,
    devcontainers: new Devcontainers(log.child({ component: 'devcontainer' })),
    ...(bridge ? { onStopRequested: (id: string, deadline: string) => bridge.requestStop(id, deadline) } : {}),
    admission: { mustWait: (id, priority) => admission.mustWait(id, priority) },
    logs: new LogReader({ root: join(config.home, 'logs'), clock }),
    logsCaughtUp: (id: string) => logIngest.caughtUp(id),
    removedSessions: store.removedSessions,
  });

  const usage = new UsageService({ sessions: store.sessions, usage: store.usage, audit, resolve: (id) => sessions.resolve(id) });

  const tasks = new TaskService({
    tasks: store.tasks,
    pools: store.pools,
    projects: store.projects,
    bus,
    clock,
    log: log.child({ component: 'tasks' }),
    ...(bridge ? { hostFile: (id: string, name: string, text: string | null) => bridge.hostFile(id, name, text) } : {}),
    sessionAlive: (id) => {
      const s = store.sessions.get(id);
      return s !== undefined && s.desired !== 'removed';
    },
    checkMs: config.activityCheckSec * 1000,
  });
  const agentTasks = bridgeTasks(tasks);
  bus.subscribe((e) => {
    if (e.type === 'session.removed') tasks.forget(e.data.id);
  });
  const taskFiles = new TaskFileWatcher({ projects: () => store.projects.list(), tasks, bus, log: log.child({ component: 'task-files' }) });
  const pools = new PoolService({ pools: store.pools, tasks: store.tasks, projects: store.projects, agents: store.agents, sessions: store.sessions, usage: store.usage, bus, clock, poke: (id) => poolController.poke(id) });
  const poolController = new PoolController({
    pools: store.pools,
    tasks: store.tasks,
    taskService: tasks,
    sessions: store.sessions,
    agents: store.agents,
    projects: store.projects,
    usage: store.usage,
    bus,
    clock,
    log: log.child({ component: 'pools' }),
    view: (p) => pools.view(p),
    resyncMs: config.resyncSec * 1000,
    work: {
      start: (p, o) => sessions.start(p, o),
      stop: (id) => sessions.stop(id),
      remove: (id, o) => sessions.remove(id, o),
      importTip: async (s) => {
        await checkouts.queue.importNow(s);
        return checkouts.queue.imported.get(s.id) ?? null;
      },
      tail: async (s) => {
        const text = (await sessions.logs(s.id, { tail: 20 })).map((l) => l.line).join('\n');
        return text.length > 2000 ? text.slice(-2000) : text;
      },
      touches: async (s, tip, path) => {
        const project = store.projects.get(s.project);
        if (!project || !s.base) return false;
        return (await pgit(project.path, ['diff', '--name-only', `refs/heads/${s.base}...${tip}`, '--', path])).trim() !== '';
      },
      squash: async (s, message) => (await sessions.merge(s.id, 'squash', message)).commit,
    },
  });

  const schedules = new ScheduleService({
    schedules: store.schedules,
    projects: store.projects,
    agents: store.agents,
    tasks: store.tasks,
    sessions: store.sessions,
    bus,
    clock,
    controller: (): ScheduleController => scheduleController,
  });
  const scheduleController = new ScheduleController({
    schedules: store.schedules,
    sessions: store.sessions,
    agents: store.agents,
    task: (id) => (store.tasks.get(id) ? tasks.get(id) : null),
    work: { start: (p, o) => sessions.start(p, o), stop: (id) => sessions.stop(id), remove: (id) => sessions.remove(id) },
    bus,
    clock,
    log: log.child({ component: 'schedules' }),
  });

  const notifyLog = log.child({ component: 'notify' });
  const notifier = new Notifier({
    bus,
    lookup: (id) => {
      const s = store.sessions.get(id);
      return s && { ...s, onStuck: store.agents.get(s.agent)?.onStuck };
    },
    desktop: desktopNotifier({ log: notifyLog }),
    webhooks: config.notifyWebhooks.map((hook) => new WebhookQueue(hook, { clock, log: notifyLog })),
    log: notifyLog,
  });

  // Agent limits, runtime and docker access need no setter: sessions read `config` (updated in place) when they are made.
  const liveConfig: DaemonParts['liveConfig'] = {
    logLevel: (c) => setLogLevel(log, c.logLevel),
    resyncSec: (c) => {
      reconciler.setResyncMs(c.resyncSec * 1000);
      poolController.setResyncMs(c.resyncSec * 1000);
    },
    gitTimeoutSec: (c) => {
      GIT_LIMITS.defaultTimeoutMs = c.gitTimeoutSec * 1000;
    },
    agentDefaultImage: (c) => {
      images.setDefaultImage(c.agentDefaultImage);
      monitor.setDefaultImage(c.agentDefaultImage);
    },
    agentDockerAccess: (c) => {
      if (c.agentDockerAccess === 'socket') log.warn('AGENT_DOCKER_ACCESS=socket: new agents get the Docker engine socket, which is equivalent to root on this host');
    },
    notifyWebhooks: (c) => notifier.setWebhooks(c.notifyWebhooks.map((hook) => new WebhookQueue(hook, { clock, log: notifyLog }))),
    modelUpstream: (c) => relay?.configure(c.modelUpstream, c.modelMaxInflight),
    modelMaxInflight: (c) => relay?.configure(c.modelUpstream, c.modelMaxInflight),
    modelCredential: (c) => {
      credential.setSpec(c.modelCredential);
      log.info({ credential: credential.describe() }, 'Model credential changed');
    },
  };

  const maintenanceLog = log.child({ component: 'maintenance' });
  const backups = new Backups(store.db, { home: config.home, keep: config.backupKeep, clock, log: maintenanceLog });
  // What the prune job removes: stored output past retention, then the records of removed sessions
  // whose output is gone by age (logRetentionDays after removal), and half-written backup copies.
  const pruners: Pruner[] = [
    async () => {
      const r = await logRetention.pruneLogs(clock.now());
      return { name: 'logs', removed: r.removedDirs, bytes: r.removedBytes };
    },
    async () => {
      const before = new Date(clock.now().getTime() - config.logRetentionDays * 86_400_000).toISOString();
      const items = store.removedSessions.pruneRemovedBefore(before);
      return { name: 'removed-sessions', removed: items.length, items };
    },
    async () => {
      const items = await backups.removeStaleTemps(60 * 60 * 1000);
      return { name: 'backup-temps', removed: items.length, items };
    },
  ];
  const maintenance = new Maintenance(
    { runs: store.maintenance, bus, log: maintenanceLog, clock, cron: config.maintenanceCron, ...(opts.maintenanceScheduler ? { scheduler: opts.maintenanceScheduler } : {}) },
    [backupJob(backups), pruneJob(pruners), imagesJob(runtime, instanceId, maintenanceLog), checkoutsJob(() => checkouts.repairAll())],
  );
  const disk = new DiskUsage(config.home, clock);

  return { config, log, clock, store, instanceId, bus, runtime, monitor, health, reconciler, watcher, checkouts, projects, agents, images, sessions, admission, stuck, bridge, credential, usage, notifier, tasks, taskFiles, pools, poolController, liveConfig, maintenance, backups, disk, schedules, scheduleController, logIngest, logRetention };
}

/** Builds the daemon, serves its socket and runs its loops until stop(). */
export async function startDaemon(config: Config, log: Logger, opts: StartOptions = {}): Promise<Daemon> {
  const startedAt = new Date();
  log.info({ version: VERSION, pid: process.pid, home: config.home, configFile: config.configFile }, 'Starting berthd');
  if (config.agentDockerAccess === 'socket') {
    log.warn('AGENT_DOCKER_ACCESS=socket: agents get the Docker engine socket, which is equivalent to root on this host');
  }
  if (config.agentMode === 'local') {
    log.warn('AGENT_MODE=local: agents run as bare processes with no isolation');
  }
  const { listener, reload, ...build } = opts;
  const { store, instanceId, bus, monitor, health, reconciler, watcher, checkouts, projects, agents, images, sessions, admission, stuck, bridge, credential, usage, notifier, tasks, taskFiles, pools, poolController, liveConfig, maintenance, backups, disk, schedules, scheduleController, logIngest } = buildDaemon(config, {
    ...build,
    log,
  });
  const configWatcher = reload
    ? new ConfigWatcher({
        current: config,
        layers: reload.layers,
        load: () => loadLayered(reload.options),
        apply: liveConfig,
        onSecretsChanged: (names) => {
          // The bridge re-reads secrets.yaml when its stat changes; a same-size edit within one mtime tick is forced here.
          const name = config.modelCredential.startsWith('secret:') ? config.modelCredential.slice('secret:'.length) : null;
          if (name && names.includes(name)) {
            credential.setSpec(config.modelCredential);
            log.info({ secret: name }, `Model credential: the new value of secret ${name} is used from the next request`);
          }
        },
        bus,
        log: log.child({ component: 'config' }),
      })
    : null;
  if (configWatcher) health.addCheck(() => configWatcher.check());

  const status = async (): Promise<DaemonStatus> => {
    // Status is polled by editors and scripts: a two-second-old engine check is fresh enough.
    // GET /health always checks live.
    const report = await health.report(2000);
    return {
      version: VERSION,
      pid: process.pid,
      instanceId,
      startedAt: startedAt.toISOString(),
      uptimeSec: Math.round((Date.now() - startedAt.getTime()) / 1000),
      socket: config.socket,
      config: summarize(config),
      engine: monitor.engineStatus,
      health: report,
      maintenance: maintenance.status(),
      disk: disk.current(),
    };
  };

  const reloadConfig = (): ConfigChange => {
    if (!configWatcher) throw new BerthError('CONFIG_RELOAD_UNAVAILABLE', 'this berthd cannot read its configuration again: it was started without its load options');
    const r = configWatcher.reload('rpc');
    if (r.problem) {
      throw new BerthError('CONFIG_INVALID', `not applied, the running configuration is kept: ${r.problem.message}`, {
        details: { key: r.problem.key, file: r.problem.file },
      });
    }
    return { trigger: 'rpc', keys: r.keys, restartNeeded: r.restartNeeded, secrets: r.secrets };
  };
  const dispatcher = new RpcDispatcher(createHandlers({ projects, agents, sessions, images, usage, tasks, pools, schedules, status, reloadConfig, maintenance, backups }), log.child({ component: 'rpc' }));
  const server = new RpcServer({ dispatcher, health, bus, sessions, images, log: log.child({ component: 'server' }) });

  // Before the first request: what was being made when berthd went down, not what starts now.
  checkouts.captureInterrupted();
  try {
    if (listener) await server.serve(listener);
    else await server.listen(config.socket, socketAccess(config));
  } catch (err) {
    store.close();
    throw err;
  }

  // Bridges of the sessions that should run: after a restart (kill -9 included) their containers
  // find the socket again where they looked for it, without being restarted.
  if (bridge) {
    for (const id of store.sessions.activeIds()) {
      await bridge.ensure(id).catch((err: Error) => log.warn({ sessionId: id, err: err.message }, 'Cannot serve the Claude bridge'));
    }
    log.info({ bridges: bridge.open, credential: credential.describe() }, 'Serving Claude bridges');
  }

  // The first engine check runs before we announce readiness, so the startup log says at once
  // whether the engine and the default image are there.
  await monitor.refresh();
  const loops = new AbortController();
  // Every long-running part (a dozen) listens to it: more than Node's default warning level of 10.
  setMaxListeners(32, loops.signal);
  const monitorDone = monitor.start(loops.signal);
  // Before the reconciler: an agent that exited while berthd was down is reported as adoption finds it.
  const notifierDone = notifier.start(loops.signal);
  // Adoption: the reconciler looks at every session against the containers the engine has now; it
  // never restarts or recreates a running agent whose session wants it running.
  const reconcilerDone = reconciler.start(loops.signal);
  const watcherDone = watcher.start(loops.signal);
  const admissionDone = admission.start(loops.signal);
  const stuckDone = stuck.start(loops.signal);
  const tasksDone = tasks.start(loops.signal);
  const taskFilesDone = taskFiles.start(loops.signal);
  const poolsDone = poolController.start(loops.signal);
  const configDone = configWatcher?.start(loops.signal);
  await configWatcher?.ready;
  const schedulesDone = scheduleController.start(loops.signal);
  const logsDone = logIngest.start(loops.signal);
  reconciler.resyncSoon();
  checkouts.start();
  const maintenanceDone = maintenance.start(loops.signal);
  void disk.refresh().catch((err: unknown) => log.debug({ err: (err as Error).message }, 'Measuring BERTH_HOME failed'));

  bus.publish('daemon.started', { version: VERSION, pid: process.pid });
  log.info({ socket: config.socket }, `Started berthd on ${config.socket}`);

  let stopping: Promise<void> | null = null;
  return {
    config,
    log,
    reloadConfig: (trigger) => configWatcher?.reload(trigger) ?? null,
    stop(reason: string) {
      stopping ??= (async () => {
        log.info({ reason }, 'Stopping berthd');
        bus.publish('daemon.stopping', { reason });
        loops.abort();
        checkouts.stop();
        await server.close();
        await bridge?.closeAll();
        await Promise.all([monitorDone, reconcilerDone, watcherDone, notifierDone, admissionDone, stuckDone, tasksDone, taskFilesDone, poolsDone, configDone, maintenanceDone, schedulesDone, logsDone]);
        store.close();
        log.info('Stopped berthd');
      })();
      return stopping;
    },
  };
}
