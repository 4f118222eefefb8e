import { existsSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { BerthError, type NetworkMode, type ParamsOf, type Project, type WorktreePolicy } from '@berth/client-sdk/protocol';
import { git, workTreeTop } from '../checkouts/git.js';
import type { CheckoutManager } from '../checkouts/manager.js';
import type { EventBus } from '../events/bus.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionsRepo } from '../store/sessions.js';
import { assertName } from '../shared/names.js';

/** True when `child` is `root` or lies below it. Both must already be real (symlink-free) paths. */
export function isWithin(root: string, child: string): boolean {
  const rel = relative(root, child);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Projects: git repositories under PROJECTS_ROOT. Paths are resolved through every symlink before
 * the root check, so neither `..` nor a link can smuggle in a directory outside the root.
 */
export class ProjectService {
  constructor(
    private readonly repo: ProjectsRepo,
    private readonly sessions: SessionsRepo,
    private readonly bus: EventBus,
    private readonly projectsRoot: string,
    private readonly opts: {
      /** Where projects given by URL are cloned (`<reposDir>/<name>`). */
      reposDir: string;
      checkouts: CheckoutManager;
      /** Called after a project is forgotten, to drop its engine networks (best effort). */
      onRemoved?: (name: string) => Promise<void>;
      now?: () => Date;
    },
  ) {}

  private get now(): () => Date {
    return this.opts.now ?? (() => new Date());
  }

  async add(p: ParamsOf<'projects.add'>): Promise<Project> {
    const extra = { branch: p.branch ?? null, worktrees: p.worktrees ?? ('always' as WorktreePolicy), defaultImage: null };
    if (p.gitUrl !== undefined) return this.addFromUrl(p.name, p.gitUrl, p.sshKeyPath ?? null, extra);
    return this.addPath(p.name, p.path ?? '', extra);
  }

  /** Clones `url` into `$BERTH_HOME/repos/<name>` (or adopts an earlier clone of the same URL there). */
  private async addFromUrl(name: string, url: string, sshKeyPath: string | null, extra: { branch: string | null; worktrees: WorktreePolicy; defaultImage: null }): Promise<Project> {
    assertName('project', name);
    if (this.repo.get(name)) throw new BerthError('PROJECT_EXISTS', `a project named ${name} already exists`, { details: { name } });
    if (sshKeyPath !== null) {
      if (!isAbsolute(sshKeyPath)) throw new BerthError('INVALID_PARAMS', 'sshKeyPath must be absolute', { details: { sshKeyPath } });
      const st = await stat(sshKeyPath).catch(() => null);
      if (!st?.isFile()) throw new BerthError('PATH_NOT_FOUND', `ssh key ${sshKeyPath} does not exist`, { details: { sshKeyPath } });
    }
    const dir = join(this.opts.reposDir, name);
    let adopted = false;
    if (existsSync(dir)) {
      const origin = (await git(['config', '--get', 'remote.origin.url'], { cwd: dir }).catch(() => '')).trim();
      if (origin !== url) {
        throw new BerthError('GIT_CLONE_FAILED', `${dir} already exists and is not a clone of ${url}`, {
          hint: 'Move that directory away, or add the project under another name.',
          details: { dir },
        });
      }
      adopted = true;
    } else {
      const rootOwner = await stat(this.projectsRoot).catch(() => null);
      await this.opts.checkouts.remotes.cloneProject(url, dir, {
        ...(extra.branch ? { branch: extra.branch } : {}),
        sshKeyPath,
        owner: rootOwner && rootOwner.uid !== 0 ? { uid: rootOwner.uid, gid: rootOwner.gid } : null,
      });
    }
    const ts = this.now().toISOString();
    const project: Project = { name, path: dir, network: null, gitUrl: url, sshKeyPath, ...extra, createdAt: ts, updatedAt: ts };
    this.insert(project);
    if (adopted) this.bus.publish('project.added', { project });
    else this.bus.publish('project.added', { project });
    return project;
  }

  private insert(project: Project): void {
    try {
      this.repo.insert(project);
    } catch (err) {
      // Lost a race with a concurrent add of the same name or path.
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new BerthError('PROJECT_EXISTS', `a project named ${project.name} already exists`, { details: { name: project.name } });
      }
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new BerthError('PROJECT_PATH_IN_USE', `${project.path} is already a project`, { details: { path: project.path } });
      }
      throw err;
    }
  }

  private async addPath(name: string, path: string, extra: { branch: string | null; worktrees: WorktreePolicy; defaultImage: null }): Promise<Project> {
    assertName('project', name);
    if (!isAbsolute(path)) {
      throw new BerthError('INVALID_PARAMS', `project path must be absolute, got ${JSON.stringify(path)}`, {
        details: { path },
      });
    }
    let root: string;
    try {
      root = await realpath(this.projectsRoot);
    } catch {
      throw new BerthError('PATH_OUTSIDE_ROOT', `PROJECTS_ROOT ${this.projectsRoot} does not exist, so no project can be added`, {
        hint: `Create ${this.projectsRoot}, or set PROJECTS_ROOT to the directory that holds your repositories.`,
        details: { path, projectsRoot: this.projectsRoot },
      });
    }
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      throw new BerthError('PATH_NOT_FOUND', `project path ${path} does not exist`, { details: { path } });
    }
    if (!isWithin(root, real)) {
      throw new BerthError('PATH_OUTSIDE_ROOT', `project path ${path} resolves to ${real}, outside PROJECTS_ROOT ${root}`, {
        details: { path, resolved: real, projectsRoot: root },
      });
    }
    if (!(await stat(real)).isDirectory()) {
      throw new BerthError('NOT_A_GIT_REPO', `project path ${real} is not a directory`, { details: { path: real } });
    }
    const top = await workTreeTop(real);
    if (top === null || (await realpath(top)) !== real) {
      throw new BerthError(
        'NOT_A_GIT_REPO',
        top === null ? `${real} is not a git work tree` : `${real} is inside the git repository ${top}, not its top directory`,
        { details: { path: real, ...(top ? { repositoryTop: top } : {}) } },
      );
    }
    if (this.repo.get(name)) {
      throw new BerthError('PROJECT_EXISTS', `a project named ${name} already exists`, { details: { name } });
    }
    const other = this.repo.getByPath(real);
    if (other) {
      throw new BerthError('PROJECT_PATH_IN_USE', `${real} is already project ${other.name}`, {
        details: { path: real, project: other.name },
      });
    }
    const ts = this.now().toISOString();
    const project: Project = { name, path: real, network: null, gitUrl: null, sshKeyPath: null, ...extra, createdAt: ts, updatedAt: ts };
    this.insert(project);
    this.bus.publish('project.added', { project });
    return project;
  }

  list(): Project[] {
    return this.repo.list();
  }

  get(name: string): Project {
    assertName('project', name);
    const p = this.repo.get(name);
    if (!p) throw new BerthError('PROJECT_NOT_FOUND', `no project named ${name}`, { details: { name } });
    return p;
  }

  update(name: string, changes: { network?: NetworkMode | null; worktrees?: WorktreePolicy; defaultImage?: string | null }): Project {
    const p = this.get(name);
    const next = {
      ...p,
      ...(changes.network !== undefined ? { network: changes.network } : {}),
      ...(changes.worktrees !== undefined ? { worktrees: changes.worktrees } : {}),
      ...(changes.defaultImage !== undefined ? { defaultImage: changes.defaultImage } : {}),
      updatedAt: this.now().toISOString(),
    };
    this.repo.update(next);
    return this.get(name);
  }

  /**
   * Forgets the project. The repository on disk is never touched (a clone berthd made stays in
   * `$BERTH_HOME/repos/<name>`, and adding the same URL under that name again adopts it).
   * Refused while the project has sessions.
   */
  async remove(name: string): Promise<{ removed: string }> {
    this.get(name);
    const n = this.sessions.countByProject(name);
    if (n > 0) {
      const names = this.sessions.namesBy('project', name);
      throw new BerthError('PROJECT_HAS_SESSIONS', `project ${name} has ${n} session(s): ${names.join(', ')}${n > names.length ? ', …' : ''}`, {
        details: { name, sessions: n, names },
      });
    }
    this.repo.remove(name);
    this.bus.publish('project.removed', { name });
    await (this.opts.onRemoved?.(name) ?? Promise.resolve()).catch(() => {});
    return { removed: name };
  }
}
