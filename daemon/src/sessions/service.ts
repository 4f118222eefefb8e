import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BerthError,
  type ExecResult,
  type LogLine,
  type MergeResult,
  type ParamsOf,
  type RemoveResult,
  type SessionDiff,
  type SessionStatus,
  type Session,
  type SessionList,
  type SessionMode,
  type SessionState,
} from '@berth/client-sdk/protocol';
import type { AgentsRepo } from '../store/agents.js';
import type { SessionCheckouts } from './checkouts.js';
import type { Devcontainers } from '../images/devcontainer.js';
import type { ImageService } from '../images/service.js';
import type { Agent, Project } from '@berth/client-sdk/protocol';
import type { Config } from '../config/index.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import { assertName } from '../shared/names.js';
import { assertProjectPath } from '../checkouts/safe-fs.js';
import type { ContainerRuntime, ExecSession } from '../runtime/port.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionRecord, SessionsRepo } from '../store/sessions.js';
import { ImageResolver } from './image.js';
import { containerName } from '../runtime/labels.js';
import { newSessionRecord } from './record.js';
import { resolveSpec, specHash, type SessionSpec, type SpecInput } from './spec.js';
import { listSessions } from './list.js';
import type { JsonText } from '../shared/json-text.js';
import { waitForSession } from './wait.js';
import { SessionWork } from './work.js';
import { SessionIo, type ExecStreamRequest, type LogQuery, type LogSubject } from './io.js';
import type { LogReader, StoredLine } from '../logs/reader.js';
import type { RemovedSessionsRepo } from '../store/removed-sessions.js';
import type { SessionScheduler } from './scheduler.js';

const SETTLED: ReadonlySet<SessionState> = new Set(['running', 'failed', 'exited', 'stopped']);

export interface SessionServiceDeps {
  sessions: SessionsRepo;
  projects: ProjectsRepo;
  agents: AgentsRepo;
  runtime: ContainerRuntime;
  reconciler: SessionScheduler;
  bus: EventBus;
  config: Config;
  log: Logger;
  checkouts: SessionCheckouts;
  images: ImageService;
  devcontainers: Devcontainers;
  now?: () => Date;
  /** How long sessions.start waits for the container to run. */
  startTimeoutMs?: number;
  /** Tells the agent a graceful stop was asked for (its bridge writes /host/stop-requested). */
  onStopRequested?: (id: string, deadline: string) => void;
  /** The capacity cap (Admission): whether a session about to run must wait for a slot. */
  admission?: { mustWait(id: string, priority: number): boolean };
  /** berth's log store; without it, logs are read from the engine. */
  logs?: LogReader;
  /** Resolves once the store holds what the engine had of the session when called (bounded). */
  logsCaughtUp?: (id: string) => Promise<void>;
  /** Records of removed sessions (their logs stay readable until retention ends). */
  removedSessions?: RemovedSessionsRepo;
}

interface StartRequest {
  project: Project;
  agent: Agent;
  mode: SessionMode;
  owner: { uid: number; gid: number };
  overrides: SpecInput['overrides'];
  image: string;
}


export type { SessionScheduler } from './scheduler.js';

/**
 * Session RPCs. They validate, write desired state, enqueue the session for the reconciler and wait
 * for it to settle; they never touch the engine's lifecycle themselves.
 */
/** For berth's own callers (pools): not part of the RPC. */
export interface StartOptions {
  /** Runs in the transaction that inserts the new row (a throw undoes the insert). */
  onInsert?: (rec: SessionRecord) => void;
  /** A branch `berth/<name>` kept from an earlier session is continued instead of refused. */
  continueBranch?: boolean;
  /** A write session gets its own checkout even where the project would let it share the main one. */
  ownCheckout?: boolean;
}

export class SessionService {
  private readonly now: () => Date;
  private readonly images: ImageResolver;
  private readonly work: SessionWork;
  private readonly io: SessionIo;

  constructor(private readonly d: SessionServiceDeps) {
    this.now = d.now ?? (() => new Date());
    this.images = new ImageResolver(d);
    this.work = new SessionWork({ ...d, now: this.now, resolve: (id) => this.resolve(id) });
    this.io = new SessionIo({ ...d, now: this.now });
  }

  /**
   * Starts a session: checks the request, resolves the image, allocates a name and the row,
   * makes the write session's checkout (the row goes again if that fails), then waits for the
   * reconciler to run the container. A name that exists starts that session again.
   */
  async start(p: ParamsOf<'sessions.start'>, opts: StartOptions = {}): Promise<Session> {
    const req = await this.startRequest(p);
    const ts = this.now().toISOString();
    if (p.name !== undefined) {
      const again = this.startAgain(p, p.name, ts);
      if (again) return again;
    }
    const created = this.allocate(p, req, ts, opts);
    if ('settled' in created) return created.settled;
    const record = await this.withCheckout(created.record, req, opts.continueBranch === true);
    this.d.log.info({ sessionId: record.id, name: record.name, project: req.project.name, agent: req.agent.name, mode: req.mode }, 'Session created');
    this.d.bus.publish('session.created', { session: this.d.sessions.view(record) });
    // Over the capacity cap it waits as pending and starts by itself when a slot frees: no waiting here.
    if (this.d.admission?.mustWait(record.id, p.priority ?? 0)) {
      const cur = this.d.sessions.get(record.id) ?? record;
      this.d.checkouts.watch(cur);
      return this.d.sessions.view(cur);
    }
    this.d.reconciler.enqueue(record.id);
    try {
      return await this.settle(record.id);
    } finally {
      // Watching the checkout's refs starts once the container is up, so it does not slow the start.
      const cur = this.d.sessions.get(record.id);
      if (cur) this.d.checkouts.watch(cur);
    }
  }

  /** What a start needs, checked: names, the project and agent, the project directory and its owner, the image. */
  private async startRequest(p: ParamsOf<'sessions.start'>): Promise<StartRequest> {
    assertName('project', p.project);
    assertName('agent', p.agent);
    if (p.name !== undefined) assertName('session', p.name);
    const project = this.d.projects.get(p.project);
    if (!project) throw new BerthError('PROJECT_NOT_FOUND', `no project named ${p.project}`, { details: { name: p.project } });
    const agent = this.d.agents.get(p.agent);
    if (!agent) throw new BerthError('AGENT_NOT_FOUND', `no agent named ${p.agent}`, { details: { name: p.agent } });
    const mode = p.mode ?? (agent.readOnly ? 'read' : 'write');
    await assertProjectPath(project.path);
    const owner = await this.owner(project.path);
    const overrides = {
      ...(p.command ? { command: p.command } : {}),
      ...(p.env ? { env: p.env } : {}),
      ...(p.limits ? { limits: p.limits } : {}),
    };
    const image = await this.images.resolve(project, agent);
    return { project, agent, mode, owner, overrides, image };
  }

  /** Starting a session that exists by that name starts it again (one container, never two). */
  private startAgain(p: ParamsOf<'sessions.start'>, name: string, ts: string): Promise<Session> | null {
    const existing = this.d.sessions.byName(name);
    if (!existing) return null;
    if (existing.project !== p.project || existing.agent !== p.agent) {
      throw new BerthError('SESSION_NAME_TAKEN', `session name ${name} belongs to ${existing.project}/${existing.agent}`, {
        details: { name, id: existing.id },
      });
    }
    if (existing.desired !== 'running' || (existing.state !== 'running' && existing.state !== 'creating' && existing.state !== 'pending')) {
      this.d.sessions.setDesired(existing.id, 'running', ts, { recreate: existing.state !== 'running', resetCrashes: true });
      if (this.d.admission?.mustWait(existing.id, p.priority ?? existing.priority)) return Promise.resolve(this.d.sessions.view(this.d.sessions.get(existing.id)!));
    }
    this.d.reconciler.enqueue(existing.id);
    return this.settle(existing.id);
  }

  /**
   * The new row, under a name of its own. A write session gets its own checkout and branch, unless
   * the project lets the only active write session share the main checkout (worktrees:
   * when-shared). Which one is decided and stored with the row, atomically: the spec a write session
   * is created with names its own checkout, never the project, so no crash or early reconcile pass
   * can give it the main checkout.
   */
  private allocate(p: ParamsOf<'sessions.start'>, req: StartRequest, ts: string, opts: StartOptions): { record: SessionRecord } | { settled: Promise<Session> } {
    const { project, agent, mode } = req;
    for (let attempt = 0; attempt < 5; attempt++) {
      const seq = this.d.projects.takeSeq(project.name);
      const name = p.name ?? `${project.name}-${seq}`;
      try {
        const record = this.d.sessions.insertNew(project.name, (sharingMain) => {
          const own = mode === 'write' && (opts.ownCheckout === true || !(project.worktrees === 'when-shared' && sharingMain === 0));
          const checkoutDir = own ? this.d.checkouts.manager.checkoutDir(project.name, name) : null;
          const spec = this.spec({ agent, project, mode, owner: req.owner, overrides: req.overrides, image: req.image, checkoutDir });
          return newSessionRecord({ name, project: project.name, agent: agent.name, mode, seq, containerNameTaken: this.d.sessions.hasContainerName(containerName(name, seq)), spec, restartPolicy: p.restartPolicy ?? agent.restartPolicy, checkoutDir, budgetTokens: p.budgetTokens !== undefined ? p.budgetTokens : agent.budgetTokens, priority: p.priority ?? 0, ts });
        }, opts.onInsert);
        return { record };
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_CONSTRAINT_UNIQUE') throw err;
        if (p.name !== undefined) {
          // Lost a race with a concurrent start of the same name: that one is ours too.
          const other = this.d.sessions.byName(p.name);
          if (other) return { settled: this.settle(other.id) };
        }
        // an automatic name collided with a chosen one: take the next number
      }
    }
    throw new BerthError('INTERNAL_ERROR', 'could not allocate a session name');
  }

  /** Makes the session's own checkout, if it has one; when that fails, the row goes too. */
  private async withCheckout(created: SessionRecord, req: StartRequest, continueBranch: boolean): Promise<SessionRecord> {
    if (created.checkoutState !== 'creating') return created;
    try {
      return await this.d.checkouts.makeCheckout(created, req.project, { agent: req.agent.name, owner: req.owner, continueBranch });
    } catch (err) {
      this.d.sessions.remove(created.id);
      throw err;
    }
  }

  list(p: ParamsOf<'sessions.list'>): JsonText<SessionList> {
    if (p.removed) {
      if (p.state || p.active) throw new BerthError('INVALID_PARAMS', 'removed lists removed sessions: state and active do not apply', { details: { removed: true } });
      const removed = this.d.removedSessions;
      return listSessions({ page: (q) => (removed ? removed.page(q) : []) }, p);
    }
    return listSessions(this.d.sessions, p);
  }

  get(idOrName: string): Session {
    return this.d.sessions.view(this.resolve(idOrName));
  }

  async stop(idOrName: string, timeoutSec = 10): Promise<Session> {
    const s = this.resolve(idOrName);
    if (s.desired !== 'stopped') {
      this.d.reconciler.setStopTimeout(s.id, timeoutSec);
      this.d.sessions.setDesired(s.id, 'stopped', this.now().toISOString());
    }
    this.d.reconciler.enqueue(s.id);
    const done = await waitForSession(this.d.sessions, this.d.bus, s.id, (x) => x.state === 'stopped' || x.state === 'failed' || x.desired !== 'stopped', (timeoutSec + 30) * 1000);
    return this.d.sessions.view(done ?? s);
  }

  /**
   * Asks the agent to finish its current unit of work and exit: desired becomes `stopped` at once
   * (so no restart policy brings it back), the container is stopped only at the deadline if it is
   * still running then. Returns without waiting.
   */
  stopGracefully(idOrName: string, withinSec = 600): Session {
    const s = this.resolve(idOrName);
    if (s.desired !== 'running') return this.d.sessions.view(s);
    const now = this.now();
    const deadline = new Date(now.getTime() + withinSec * 1000).toISOString();
    const next = this.d.sessions.setDesired(s.id, 'stopped', now.toISOString(), { gracefulDeadline: deadline }) ?? s;
    this.d.onStopRequested?.(s.id, deadline);
    this.d.reconciler.enqueue(s.id);
    this.d.log.info({ sessionId: s.id, deadline }, 'Graceful stop asked for');
    return this.d.sessions.view(next);
  }

  /**
   * The agent finished its unit of work while a graceful stop was asked for (Claude Code's turn
   * ended): the deadline becomes now, so the reconciler stops it at once.
   */
  finishGracefulStop(id: string): void {
    const s = this.d.sessions.get(id);
    const now = this.now().toISOString();
    if (!s || s.desired !== 'stopped' || !s.gracefulDeadline || s.gracefulDeadline <= now) return;
    this.d.sessions.setDesired(s.id, 'stopped', now, { gracefulDeadline: now });
    this.d.reconciler.enqueue(s.id);
    this.d.log.info({ sessionId: s.id }, 'Agent finished its turn during a graceful stop: stopping it now');
  }

  /** A fresh container from the current agent profile (same overrides, same /agent volume). */
  async restart(idOrName: string): Promise<Session> {
    const s = this.resolve(idOrName);
    const project = this.d.projects.get(s.project);
    const agent = this.d.agents.get(s.agent);
    let spec: SessionSpec = s.spec;
    if (project && agent) {
      spec = this.spec({
        agent,
        project,
        mode: s.mode,
        owner: await this.owner(project.path),
        overrides: s.spec.overrides,
        image: await this.images.resolve(project, agent, false),
        checkoutDir: s.checkoutDir,
      });
    }
    this.d.sessions.setDesired(s.id, 'running', this.now().toISOString(), { spec, specHash: specHash(spec), recreate: true, resetCrashes: true });
    this.d.reconciler.enqueue(s.id);
    return this.settle(s.id);
  }

  remove(idOrName: string, opts: { force?: boolean; deleteBranch?: boolean; stop?: boolean } = {}): Promise<RemoveResult> {
    return this.work.remove(this.resolve(idOrName), opts);
  }

  status(idOrName: string): Promise<SessionStatus> {
    return this.d.checkouts.status(this.resolve(idOrName));
  }

  diff(idOrName: string, stat = false): Promise<SessionDiff> {
    return this.d.checkouts.diff(this.resolve(idOrName), stat);
  }

  merge(idOrName: string, strategy: 'ff' | 'merge' | 'squash' = 'merge', message?: string, includeUncommitted = false): Promise<MergeResult> {
    return this.work.merge(this.resolve(idOrName), strategy, message, includeUncommitted);
  }

  /** `sessions.logs`: at most LOGS_RPC_MAX_LINES lines, of a live or a removed session. */
  logs(idOrName: string, q: Omit<LogQuery, 'follow' | 'signal'>): Promise<LogLine[]> {
    return this.io.logs(this.logSubject(idOrName), q);
  }

  /** Lines for GET /sessions/:id/logs, in batches; follows while the caller keeps the stream open. */
  logStream(idOrName: string, q: LogQuery): Promise<AsyncIterable<StoredLine[]>> {
    return this.io.logBatches(this.logSubject(idOrName), q);
  }

  /**
   * The session whose logs `idOrName` means: a live one (as resolve), else a removed one by id,
   * id prefix, or name (the newest removed of that name).
   */
  logSubject(idOrName: string): LogSubject {
    try {
      const s = this.resolve(idOrName);
      return { id: s.id, live: s };
    } catch (err) {
      const removed = this.d.removedSessions;
      if (!(err instanceof BerthError) || err.code !== 'SESSION_NOT_FOUND' || !removed) throw err;
      const exact = removed.get(idOrName) ?? removed.byName(idOrName);
      if (exact) return { id: exact.id, live: null };
      if (/^[0-9a-f]{4,11}$/.test(idOrName)) {
        const m = removed.byIdPrefix(idOrName);
        if (m.length === 1) return { id: m[0]!.id, live: null };
        if (m.length > 1) throw new BerthError('SESSION_AMBIGUOUS', `more than one removed session id starts with ${idOrName}`, { details: { prefix: idOrName } });
      }
      throw err;
    }
  }

  exec(idOrName: string, cmd: string[], timeoutSec = 60): Promise<ExecResult> {
    return this.io.exec(this.resolve(idOrName), cmd, timeoutSec);
  }

  /** A command attached to the running session (the `sessions.exec` stream); the caller must close() it. */
  execStream(idOrName: string, p: ExecStreamRequest): Promise<ExecSession> {
    return this.io.execStream(this.resolve(idOrName), p);
  }

  /** The container spec from the profile, the project, the daemon's config and the call's overrides. */
  private spec(i: Omit<SpecInput, 'config' | 'sharedDir' | 'checkout'> & { checkoutDir?: string | null }): SessionSpec {
    const { checkoutDir, ...rest } = i;
    return resolveSpec({
      ...rest,
      config: this.d.config,
      sharedDir: join(this.d.config.home, 'shared'),
      checkout: checkoutDir ? { dir: checkoutDir, gitObjects: join(i.project.path, '.git', 'objects') } : null,
    });
  }

  /** id, unique id prefix (4+), or name. */
  resolve(idOrName: string): SessionRecord {
    const exact = this.d.sessions.get(idOrName) ?? this.d.sessions.byName(idOrName);
    if (exact) return exact;
    if (/^[0-9a-f]{4,11}$/.test(idOrName)) {
      const m = this.d.sessions.byIdPrefix(idOrName);
      if (m.length === 1) return m[0]!;
      if (m.length > 1) throw new BerthError('SESSION_AMBIGUOUS', `more than one session id starts with ${idOrName}`, { details: { prefix: idOrName } });
    }
    throw new BerthError('SESSION_NOT_FOUND', `no session ${JSON.stringify(idOrName)}`, { details: { id: idOrName } });
  }

  private async owner(path: string): Promise<{ uid: number; gid: number }> {
    let st;
    try {
      st = await stat(path);
    } catch {
      throw new BerthError('PATH_NOT_FOUND', `the project directory ${path} is gone`, {
        hint: 'Restore the repository at that path, or remove the project and add it again where it is now.',
        details: { path },
      });
    }
    // Local agents run as berthd's own user whatever owns the project; containers take the owner's uid.
    if (st.uid === 0 && this.d.config.agentMode === 'docker') {
      throw new BerthError('PROJECT_OWNED_BY_ROOT', `${path} is owned by root, and agents never run as root`, { details: { path } });
    }
    return { uid: st.uid, gid: st.gid };
  }

  /** Waits until the session settles; a failure becomes the call's error (the session stays, `failed`). */
  private async settle(id: string): Promise<Session> {
    const s = await waitForSession(this.d.sessions, this.d.bus, 
      id,
      (x) => x.desired !== 'running' || (!x.recreate && SETTLED.has(x.state)),
      this.d.startTimeoutMs ?? 120_000,
    );
    if (!s) throw new BerthError('SESSION_NOT_FOUND', `session ${id} was removed while starting`, { details: { id } });
    if (s.state === 'failed' && s.desired === 'running') {
      const code = (s.errorCode ?? 'CONTAINER_START_FAILED') as BerthError['code'];
      throw new BerthError(code, `session ${s.name} failed: ${s.errorMessage ?? code}`, { details: { id: s.id, name: s.name } });
    }
    if (s.desired === 'running' && (s.recreate || !SETTLED.has(s.state))) {
      throw new BerthError('SESSION_START_TIMEOUT', `session ${s.name} is still ${s.state}`, { details: { id: s.id, state: s.state } });
    }
    return this.d.sessions.view(s);
  }
}
