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
];

export const latestVersion = migrations.at(-1)!.version;
