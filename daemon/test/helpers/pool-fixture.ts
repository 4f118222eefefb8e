import { join } from 'node:path';
import type { BerthEvent, Pool, Task } from '@berth/client-sdk/protocol';
import { collectEvents } from './bridge-daemon.js';
import { ensureNodeGitImage } from './claude-image.js';
import { makeRepo, poll, spawnDaemon, startWithProject, type DaemonProcess } from './daemon.js';
import { commitFiles } from './git.js';
import { TASK_AGENT } from './task-agent.js';

const ENV = { BERTH_ACTIVITY_CHECK_SEC: '1', BERTH_RESYNC_SEC: '2' };

/**
 * A berthd for pool tests: agents `worker` and `reviewer` (helpers/task-agent.ts in NODE_GIT_IMAGE),
 * its events collected (across restarts, into one list), and the waits pool tests share.
 */
export class PoolFixture implements AsyncDisposable {
  readonly events: BerthEvent[] = [];
  private follow = { stop: () => {} };

  private constructor(
    public d: DaemonProcess,
    readonly image: string,
  ) {
    this.follow = collectEvents(d, this.events);
  }

  static async start(): Promise<PoolFixture> {
    const image = await ensureNodeGitImage();
    const { d } = await startWithProject({ env: ENV });
    const f = new PoolFixture(d, image);
    await f.agent('worker');
    await f.agent('reviewer');
    return f;
  }

  /** Defines a scripted agent (extra environment steers it, see task-agent.ts). */
  agent(name: string, extra: { env?: Record<string, string>; stuckAfterSec?: number; onStuck?: 'restart' | 'notify' | 'none' } = {}): Promise<unknown> {
    return this.d.client.agents.define({ name, image: this.image, command: ['node', '-e', TASK_AGENT], restartPolicy: 'never', ...extra });
  }

  /** A project (git repo under the daemon's PROJECTS_ROOT) with `files` committed. */
  async project(name: string, files: Record<string, string> = { 'README.md': 'hi\n' }): Promise<string> {
    const repo = await makeRepo(join(this.d.home, 'projects', name));
    commitFiles(repo, files, 'seed');
    await this.d.client.projects.add({ name, path: repo });
    return repo;
  }

  async tasksOf(project: string): Promise<Task[]> {
    return (await this.d.client.tasks.list({ project, limit: 1000 })).items;
  }

  untilPool(id: string, pred: (p: Pool, tasks: Task[]) => boolean, what: string, timeoutMs = 600_000): Promise<Pool> {
    return poll(async () => {
      const p = await this.d.client.pools.get({ id });
      return pred(p, await this.tasksOf(p.project)) ? p : null;
    }, timeoutMs, what);
  }

  /** Every claim of the project's tasks, in order. */
  claimsOf(project: string): Extract<BerthEvent, { type: 'task.claimed' }>[] {
    return this.events.filter((e): e is Extract<BerthEvent, { type: 'task.claimed' }> => e.type === 'task.claimed' && e.data.task.project === project);
  }

  /** kill -9 of berthd, and a new one on the same home. */
  async killAndRestart(): Promise<void> {
    this.follow.stop();
    this.d.client.close();
    this.d.proc.kill('SIGKILL');
    await this.d.waitExit();
    this.d = spawnDaemon({ home: this.d.home, ownsHome: true, env: ENV });
    await this.d.waitReady();
    this.follow = collectEvents(this.d, this.events);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.follow.stop();
    await this.d[Symbol.asyncDispose]();
  }
}
