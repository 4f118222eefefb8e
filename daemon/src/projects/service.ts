import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';
import { BerthError, NAME_PATTERN, type NetworkMode, type Project } from '@berth/client-sdk/protocol';
import { workTreeTop } from '../checkouts/git.js';
import type { EventBus } from '../events/bus.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionsRepo } from '../store/sessions.js';

export function assertName(kind: string, name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new BerthError('INVALID_NAME', `invalid ${kind} name ${JSON.stringify(name)}`, { details: { kind, name } });
  }
}

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
    /** Called after a project is forgotten, to drop its engine networks (best effort). */
    private readonly onRemoved: (name: string) => Promise<void> = async () => {},
    private readonly now: () => Date = () => new Date(),
  ) {}

  async add(name: string, path: string): Promise<Project> {
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
    const project: Project = { name, path: real, network: null, createdAt: ts, updatedAt: ts };
    try {
      this.repo.insert(project);
    } catch (err) {
      // Lost a race with a concurrent add of the same name or path.
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new BerthError('PROJECT_EXISTS', `a project named ${name} already exists`, { details: { name } });
      }
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new BerthError('PROJECT_PATH_IN_USE', `${real} is already a project`, { details: { path: real } });
      }
      throw err;
    }
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

  update(name: string, changes: { network?: NetworkMode | null }): Project {
    const p = this.get(name);
    const next = { ...p, ...(changes.network !== undefined ? { network: changes.network } : {}), updatedAt: this.now().toISOString() };
    this.repo.update(next);
    return this.get(name);
  }

  /** Forgets the project. The repository on disk is never touched. Refused while it has sessions. */
  async remove(name: string): Promise<{ removed: string }> {
    this.get(name);
    const n = this.sessions.countByProject(name);
    if (n > 0) {
      throw new BerthError('PROJECT_HAS_SESSIONS', `project ${name} has ${n} session(s)`, { details: { name, sessions: n } });
    }
    this.repo.remove(name);
    this.bus.publish('project.removed', { name });
    await this.onRemoved(name).catch(() => {});
    return { removed: name };
  }
}
