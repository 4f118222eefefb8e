import type { Project } from '@berth/client-sdk/protocol';
import type { Db } from './db.js';

interface Row {
  name: string;
  path: string;
  network: string | null;
  next_seq: number;
  git_url: string | null;
  branch: string | null;
  ssh_key_path: string | null;
  worktrees: string;
  default_image: string | null;
  created_at: string;
  updated_at: string;
}

const toProject = (r: Row): Project => ({
  name: r.name,
  path: r.path,
  network: r.network as Project['network'],
  gitUrl: r.git_url,
  branch: r.branch,
  sshKeyPath: r.ssh_key_path,
  worktrees: r.worktrees as Project['worktrees'],
  defaultImage: r.default_image,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** The `projects` table. */
export class ProjectsRepo {
  private readonly stmts;

  constructor(private readonly db: Db) {
    this.stmts = {
      get: db.prepare<[string], Row>('SELECT * FROM projects WHERE name = ?'),
      byPath: db.prepare<[string], Row>('SELECT * FROM projects WHERE path = ?'),
      list: db.prepare<[], Row>('SELECT * FROM projects ORDER BY name'),
      insert: db.prepare(
        `INSERT INTO projects (name, path, network, git_url, branch, ssh_key_path, worktrees, default_image, created_at, updated_at)
         VALUES (@name, @path, @network, @gitUrl, @branch, @sshKeyPath, @worktrees, @defaultImage, @createdAt, @updatedAt)`,
      ),
      update: db.prepare(
        'UPDATE projects SET network = @network, worktrees = @worktrees, default_image = @defaultImage, updated_at = @updatedAt WHERE name = @name',
      ),
      takeSeq: db.prepare<[string], { next_seq: number }>('UPDATE projects SET next_seq = next_seq + 1 WHERE name = ? RETURNING next_seq - 1 AS next_seq'),
      remove: db.prepare<[string]>('DELETE FROM projects WHERE name = ?'),
    };
  }

  get(name: string): Project | undefined {
    const r = this.stmts.get.get(name);
    return r && toProject(r);
  }

  getByPath(path: string): Project | undefined {
    const r = this.stmts.byPath.get(path);
    return r && toProject(r);
  }

  list(): Project[] {
    return this.stmts.list.all().map(toProject);
  }

  insert(p: Project): void {
    this.db.transaction(() => this.stmts.insert.run(p))();
  }

  update(p: Pick<Project, 'name' | 'network' | 'worktrees' | 'defaultImage' | 'updatedAt'>): void {
    this.db.transaction(() => this.stmts.update.run(p))();
  }

  /** Hands out the project's next session number (container `berth-<project>-<n>`); never reused. */
  takeSeq(name: string): number {
    const r = this.stmts.takeSeq.get(name);
    if (!r) throw new Error(`no project ${name}`);
    return r.next_seq;
  }

  /** Returns whether a row was removed. */
  remove(name: string): boolean {
    return this.db.transaction(() => this.stmts.remove.run(name).changes > 0)();
  }
}
