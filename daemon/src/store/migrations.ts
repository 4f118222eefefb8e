/**
 * Sessions the reconciler must look at whatever the engine says: desired state not reached yet,
 * a restart due, or a crash count that clean running will reset. (Settled ones, running, exited for good, failed or stopped, are looked at only
 * when the engine's listing disagrees with what their row records.) The SQL is the partial
 * index's own predicate, so the query that uses it must say it the same way; changing either
 * takes a new migration that makes the index again.
 */
export const UNSETTLED = `(desired = 'removed'
  OR (desired = 'stopped' AND state != 'stopped')
  OR (desired = 'running' AND state NOT IN ('running', 'exited', 'failed'))
  OR (desired = 'running' AND state = 'exited' AND next_restart_at IS NOT NULL)
  OR (desired = 'running' AND state = 'running' AND crash_count > 0))`;

/** What `berth ps` shows by default: sessions that run or are on their way to (a restart due included). */
export const ACTIVE = `(state IN ('pending', 'creating', 'running', 'stopping') OR (state = 'exited' AND next_restart_at IS NOT NULL))`;

/**
 * Versioned schema. Each migration moves the database from version `n - 1` to `n` and runs in its
 * own transaction together with the `user_version` bump. Never edit a shipped migration: add one.
 */
export interface Migration {
  version: number;
  description: string;
  up: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: 'projects and agents',
    up: `
      CREATE TABLE projects (
        name        TEXT PRIMARY KEY,
        path        TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
      ) STRICT;

      CREATE TABLE agents (
        name        TEXT PRIMARY KEY,
        image       TEXT,
        command     TEXT NOT NULL,           -- JSON array of strings
        env         TEXT NOT NULL DEFAULT '{}', -- JSON object
        role        TEXT,
        read_only   INTEGER NOT NULL DEFAULT 0,
        limits      TEXT NOT NULL DEFAULT '{}', -- JSON object {memory?, cpus?, pids?}
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 2,
    description: 'sessions; agent restart/network/hardening/secrets; project network and session counter; meta',
    up: `
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;

      ALTER TABLE projects ADD COLUMN network TEXT;
      ALTER TABLE projects ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 1;

      ALTER TABLE agents ADD COLUMN restart_policy TEXT NOT NULL DEFAULT 'on-failure';
      ALTER TABLE agents ADD COLUMN network TEXT;
      ALTER TABLE agents ADD COLUMN read_only_rootfs INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE agents ADD COLUMN cap_add TEXT NOT NULL DEFAULT '[]';
      ALTER TABLE agents ADD COLUMN secrets TEXT NOT NULL DEFAULT '{}';

      CREATE TABLE sessions (
        id              TEXT PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        project         TEXT NOT NULL REFERENCES projects(name),
        agent           TEXT NOT NULL,
        mode            TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        container_name  TEXT NOT NULL UNIQUE,
        spec            TEXT NOT NULL,            -- JSON SessionSpec, frozen at start/restart
        spec_hash       TEXT NOT NULL,
        restart_policy  TEXT NOT NULL,
        desired         TEXT NOT NULL,
        generation      INTEGER NOT NULL DEFAULT 1, -- bumped by every change of desired state
        recreate        INTEGER NOT NULL DEFAULT 0, -- 1: replace the container on the next pass (restart)
        state           TEXT NOT NULL,
        container_id    TEXT,
        restart_count   INTEGER NOT NULL DEFAULT 0,
        crash_count     INTEGER NOT NULL DEFAULT 0, -- consecutive failed runs, for backoff
        next_restart_at TEXT,
        handled_finish  TEXT,                     -- FinishedAt of the last exit already acted on
        error_code      TEXT,
        error_message   TEXT,
        exit_code       INTEGER,
        created_at      TEXT NOT NULL,
        started_at      TEXT,
        finished_at     TEXT,
        updated_at      TEXT NOT NULL
      ) STRICT;
      CREATE INDEX sessions_by_project ON sessions (project, created_at, id);
      CREATE INDEX sessions_by_created ON sessions (created_at, id);
    `,
  },
  {
    version: 3,
    description: 'git-URL projects, worktree policy; session checkouts',
    up: `
      ALTER TABLE projects ADD COLUMN git_url TEXT;
      ALTER TABLE projects ADD COLUMN branch TEXT;
      ALTER TABLE projects ADD COLUMN ssh_key_path TEXT;
      ALTER TABLE projects ADD COLUMN worktrees TEXT NOT NULL DEFAULT 'always';

      ALTER TABLE sessions ADD COLUMN checkout_dir TEXT;  -- the session's own clone, or NULL
      ALTER TABLE sessions ADD COLUMN branch TEXT;        -- berth/<name>
      ALTER TABLE sessions ADD COLUMN base TEXT;          -- branch it started from
      ALTER TABLE sessions ADD COLUMN base_sha TEXT;      -- commit it started from
    `,
  },
  {
    version: 4,
    description: 'project default image',
    up: `ALTER TABLE projects ADD COLUMN default_image TEXT;`,
  },
  {
    version: 5,
    description: 'session checkouts recorded before they are made, with their identity; resumable removal',
    up: `
      ALTER TABLE sessions ADD COLUMN checkout_state TEXT;    -- creating | ready (NULL: no checkout of its own)
      ALTER TABLE sessions ADD COLUMN checkout_dev INTEGER;   -- device and inode of the directory berth made
      ALTER TABLE sessions ADD COLUMN checkout_ino INTEGER;
      ALTER TABLE sessions ADD COLUMN remove_opts TEXT;       -- JSON {force, deleteBranch} once removal was asked for
      UPDATE sessions SET checkout_state = 'ready' WHERE checkout_dir IS NOT NULL;
      CREATE INDEX sessions_with_checkout ON sessions (checkout_state) WHERE checkout_state IS NOT NULL;
    `,
  },
  {
    version: 6,
    description: 'indexes for the resync and the list filters, so history does not make them scan',
    up: `
      CREATE INDEX sessions_by_state ON sessions (state, created_at, id);
      CREATE INDEX sessions_with_container ON sessions (container_id) WHERE container_id IS NOT NULL;
      CREATE INDEX sessions_unsettled ON sessions (id) WHERE ${UNSETTLED};
      CREATE INDEX sessions_active ON sessions (created_at, id) WHERE ${ACTIVE};
      CREATE INDEX sessions_by_image ON sessions (json_extract(spec, '$.image')) WHERE desired != 'removed';
    `,
  },
  {
    version: 7,
    description: 'Claude bridge: model usage per session and model (kept after the session is removed), budgets, agent activity',
    up: `
      CREATE TABLE session_usage (
        session_id            TEXT NOT NULL,
        model                 TEXT NOT NULL,
        requests              INTEGER NOT NULL DEFAULT 0,
        input_tokens          INTEGER NOT NULL DEFAULT 0,
        output_tokens         INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens     INTEGER NOT NULL DEFAULT 0,
        cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
        cost_nanos            INTEGER NOT NULL DEFAULT 0,  -- estimated, in 1e-9 USD
        PRIMARY KEY (session_id, model)
      ) WITHOUT ROWID;
      ALTER TABLE agents ADD COLUMN budget_tokens INTEGER;
      ALTER TABLE sessions ADD COLUMN budget_tokens INTEGER;
      ALTER TABLE sessions ADD COLUMN activity TEXT;  -- JSON {state, since, reason}, NULL until the agent reports
    `,
  },
  {
    version: 8,
    description: 'graceful stop: the agent is asked to finish, and stopped at this deadline if it has not',
    up: `ALTER TABLE sessions ADD COLUMN graceful_deadline TEXT;`,
  },
  {
    version: 9,
    description: 'capacity: sessions waiting for a slot, first by priority then in order',
    up: `
      ALTER TABLE sessions ADD COLUMN queued_at TEXT;                   -- waiting for a slot since (NULL: not waiting)
      ALTER TABLE sessions ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
      CREATE INDEX sessions_queued ON sessions (priority DESC, queued_at, id) WHERE queued_at IS NOT NULL;
    `,
  },
  {
    version: 10,
    description: 'stuck agents: per agent when and what to do, per session the stuck restarts in a row',
    up: `
      ALTER TABLE agents ADD COLUMN stuck_after_sec INTEGER;  -- NULL: AGENT_STUCK_TIMEOUT_MINUTES
      ALTER TABLE agents ADD COLUMN on_stuck TEXT NOT NULL DEFAULT 'restart';
      ALTER TABLE sessions ADD COLUMN stuck_restarts INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 11,
    description: 'what berth merged of a session: commit, strategy, the branch tip it merged (JSON)',
    up: `
      ALTER TABLE sessions ADD COLUMN merged TEXT;
    `,
  },
  {
    version: 12,
    description: 'tasks (a backlog claimed under leases), their dependencies, pools of sessions working through them',
    up: `
      CREATE TABLE tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        key TEXT,                                   -- from a task file: its key, unique per project
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        priority INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '[]',          -- JSON array of strings
        state TEXT NOT NULL DEFAULT 'open',
        claim_session TEXT,                         -- the session holding it (state claimed)
        claim_name TEXT,
        lease_until TEXT,
        lease_sec INTEGER,                          -- the lease the holder asked for (kept across restarts)
        attempts INTEGER NOT NULL DEFAULT 0,        -- claims so far
        waiting INTEGER NOT NULL DEFAULT 0,         -- dependencies not done yet (kept by the triggers below)
        max_attempts INTEGER NOT NULL DEFAULT 3,
        result TEXT,                                -- JSON TaskResult
        notes TEXT NOT NULL DEFAULT '[]',           -- JSON TaskNote[]
        pool TEXT,
        reviewer_session TEXT,                      -- the session reviewing it (state review)
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE UNIQUE INDEX tasks_key ON tasks (project, key) WHERE key IS NOT NULL;
      -- A claim is one seek here: open, waiting on nothing, highest priority, then oldest. (Judging
      -- dependencies in the claim's query walked past every blocked task ahead of the first claimable
      -- one, again on every claim.)
      CREATE INDEX tasks_claimable ON tasks (project, priority DESC, id) WHERE state = 'open' AND waiting = 0;
      CREATE INDEX tasks_by_state ON tasks (state, project, id);
      CREATE INDEX tasks_project ON tasks (project, id);
      -- No index on lease_until: claimed tasks are at most one per session (tasks_by_state finds them),
      -- and every claim, completion and heartbeat would write one more page.
      -- A session holds one task at most, and a task one session: never two holders.
      CREATE UNIQUE INDEX tasks_holder ON tasks (claim_session) WHERE claim_session IS NOT NULL;
      CREATE UNIQUE INDEX tasks_reviewer ON tasks (reviewer_session) WHERE reviewer_session IS NOT NULL;
      CREATE TABLE task_deps (
        task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        depends_on INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        PRIMARY KEY (task_id, depends_on)
      ) WITHOUT ROWID;
      CREATE INDEX task_deps_rev ON task_deps (depends_on);
      -- tasks.waiting is counted again from task_deps whenever it can change: a dependency added or
      -- removed (a dependency's task deleted included, through the cascade), or a task going into or
      -- out of done. Counted, not incremented, so it cannot drift.
      CREATE TRIGGER task_deps_added AFTER INSERT ON task_deps BEGIN
        UPDATE tasks SET waiting = (SELECT count(*) FROM task_deps d JOIN tasks u ON u.id = d.depends_on WHERE d.task_id = tasks.id AND u.state != 'done')
          WHERE id = new.task_id;
      END;
      CREATE TRIGGER task_deps_removed AFTER DELETE ON task_deps BEGIN
        UPDATE tasks SET waiting = (SELECT count(*) FROM task_deps d JOIN tasks u ON u.id = d.depends_on WHERE d.task_id = tasks.id AND u.state != 'done')
          WHERE id = old.task_id;
      END;
      -- Only for a task that others depend on (EXISTS: most have none), and through FROM: written as
      -- WHERE id IN (SELECT ...), the same UPDATE took 0.2 ms on 100,000 tasks, this one a few µs.
      CREATE TRIGGER tasks_done_changed AFTER UPDATE OF state ON tasks
        WHEN (old.state = 'done') != (new.state = 'done') AND EXISTS (SELECT 1 FROM task_deps WHERE depends_on = new.id) BEGIN
        UPDATE tasks SET waiting = (SELECT count(*) FROM task_deps d JOIN tasks u ON u.id = d.depends_on WHERE d.task_id = tasks.id AND u.state != 'done')
          FROM (SELECT task_id FROM task_deps WHERE depends_on = new.id) AS dependent WHERE tasks.id = dependent.task_id;
      END;
      CREATE TABLE pools (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        agent TEXT NOT NULL,
        parallel INTEGER NOT NULL,
        reviewer TEXT,
        auto_merge INTEGER NOT NULL DEFAULT 0,
        until_empty INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'running',
        tokens INTEGER NOT NULL DEFAULT 0,         -- model tokens of its sessions already removed
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE TABLE pool_sessions (
        session_id TEXT PRIMARY KEY,
        pool TEXT NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
        task_id INTEGER NOT NULL,
        role TEXT NOT NULL,                         -- worker | reviewer
        created_at TEXT NOT NULL
      );
      CREATE INDEX pool_sessions_pool ON pool_sessions (pool);
    `,
  },
  {
    version: 13,
    description: 'maintenance_runs: the recent runs of each maintenance job (backup, prune, images, checkouts)',
    up: `
      -- Each run of a maintenance job (the last few per job are kept: MaintenanceRunsRepo.record).
      CREATE TABLE maintenance_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        summary TEXT,                               -- JSON, when ok
        error TEXT                                  -- the cause, when not
      );
      CREATE INDEX maintenance_runs_job ON maintenance_runs (job, id);
    `,
  },
  {
    version: 14,
    description: 'schedules (sessions started on a cron schedule) and the history of their runs',
    up: `
      -- Removing a schedule's project or agent removes the schedule (and its history): the sessions it started stay.
      CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        agent TEXT NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
        cron TEXT NOT NULL,
        tz TEXT,
        command TEXT,                              -- JSON array of strings, or null: the agent's
        task_id INTEGER,
        concurrency TEXT NOT NULL DEFAULT 'forbid',
        starting_deadline_sec INTEGER NOT NULL,
        suspended INTEGER NOT NULL DEFAULT 0,
        last_scheduled_at TEXT,                    -- the latest scheduled time acted on (started, skipped, missed, failed)
        runs INTEGER NOT NULL DEFAULT 0,           -- sessions started so far: the next is named <name>-<runs+1>
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX schedules_agent ON schedules (agent);
      CREATE INDEX schedules_project ON schedules (project);
      CREATE TABLE schedule_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule TEXT NOT NULL REFERENCES schedules(name) ON DELETE CASCADE,
        scheduled_at TEXT NOT NULL,
        started_at TEXT NOT NULL,
        manual INTEGER NOT NULL DEFAULT 0,
        outcome TEXT NOT NULL,                     -- started | skipped | replaced | missed | failed
        reason TEXT,
        session_id TEXT,
        session_name TEXT,
        final_state TEXT,                          -- the session's state once it ended
        exit_code INTEGER
      );
      CREATE INDEX schedule_runs_schedule ON schedule_runs (schedule, id);
      -- Runs whose session may still run: looked at on every pass.
      CREATE INDEX schedule_runs_open ON schedule_runs (schedule) WHERE session_id IS NOT NULL AND final_state IS NULL;
    `,
  },
  {
    version: 15,
    description: 'removed sessions: a record of each (its last public view), kept so its logs stay readable until retention ends',
    up: `
      CREATE TABLE removed_sessions (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,               -- free for a new session once removed
        project     TEXT NOT NULL,               -- no foreign key: the project may go before the record
        agent       TEXT NOT NULL,
        branch      TEXT,
        exit_code   INTEGER,
        created_at  TEXT NOT NULL,
        removed_at  TEXT NOT NULL,
        view        TEXT NOT NULL                -- JSON Session as listed when it was removed
      ) STRICT;
      CREATE INDEX removed_sessions_by_name ON removed_sessions (name, removed_at);
      CREATE INDEX removed_sessions_by_created ON removed_sessions (created_at, id);
      CREATE INDEX removed_sessions_by_removed ON removed_sessions (removed_at);
    `,
  },
];

export const latestVersion = migrations.at(-1)!.version;
