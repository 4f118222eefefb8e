/**
 * The one registry of berth error codes. Every failure a client can see carries one of these
 * string codes (in JSON-RPC `error.data.code`, in CLI output, in startup failures). README's
 * error table is generated from this list and a test keeps the two in sync.
 *
 * `rpc` is the numeric JSON-RPC code: the spec's reserved codes for protocol-level failures,
 * 1000 and up for berth's own. `hint` tells the user what to do next. `terminal`: when the
 * reconciler meets this error making a session's container, no retry will fix it; the session
 * goes to `failed` and waits for the user (every other error is retried with backoff).
 * `http`: the status an HTTP route answers the error with (httpStatusOf; 409 when not given).
 */
export const errorRegistry = {
  // JSON-RPC protocol level (reserved numeric codes, per the specification)
  PARSE_ERROR: { http: 400, rpc: -32700, hint: 'Send one valid JSON document (UTF-8) as the request body.' },
  INVALID_REQUEST: {
    http: 400,
    rpc: -32600,
    hint: 'Send {"jsonrpc":"2.0","method":"...","params":{...}|[...],"id":...}; see the RPC reference in README.',
  },
  REQUEST_TOO_LARGE: { http: 413, rpc: -32600, hint: 'Request bodies are limited to 1 MiB; split the batch or send less data.' },
  NESTING_TOO_DEEP: { http: 400, rpc: -32600, hint: 'Request JSON may nest at most 64 levels deep.' },
  METHOD_NOT_FOUND: { rpc: -32601, hint: 'Run `berth --help` or see the RPC reference in README for method names.' },
  INVALID_PARAMS: { http: 400, rpc: -32602, hint: 'Check the parameter names and types against the RPC reference in README.' },
  INTERNAL_ERROR: { http: 500, rpc: -32603, hint: 'This is a bug in berthd; the daemon log has the details.' },

  // Names and paths
  INVALID_NAME: {
    http: 400,
    rpc: 1001,
    hint: 'Names are 1-63 characters: lowercase letters, digits and "-", starting with a letter or digit.',
  },
  PATH_OUTSIDE_ROOT: {
    rpc: 1002,
    hint: 'Move or clone the repository under PROJECTS_ROOT, or point PROJECTS_ROOT at the tree that holds it.',
  },
  PATH_NOT_FOUND: { rpc: 1003, hint: 'Check the path; it must exist on the machine berthd runs on.' },
  NOT_A_GIT_REPO: {
    rpc: 1004,
    hint: 'Point at the top directory of a git repository (run `git init` there, or clone one).',
  },

  // Projects
  PROJECT_NOT_FOUND: { http: 404, rpc: 1100, hint: 'List projects with `berth project ls`; add one with `berth project add NAME PATH`.' },
  PROJECT_EXISTS: { rpc: 1101, hint: 'Choose another name, or remove the existing project first (`berth project rm NAME`).' },
  PROJECT_PATH_IN_USE: { rpc: 1102, hint: 'That repository is already a project; use the existing project name.' },
  PROJECT_HAS_SESSIONS: { rpc: 1103, hint: 'Remove its sessions first (`berth ps -a`, then `berth rm ID`).' },
  PROJECT_OWNED_BY_ROOT: {
    rpc: 1104,
    hint: 'Agents never run as root: chown the repository to the user who works on it (`sudo chown -R you: PATH`).',
  },
  PROJECT_OBJECTS_LINKED: {
    terminal: true,
    rpc: 1106,
    hint: 'Make the object store self-contained: `git repack -a -d` then remove .git/objects/info/alternates, and replace links under .git/objects with the files themselves.',
  },
  PROJECT_PATH_CHANGED: {
    terminal: true,
    rpc: 1105,
    hint: 'The project directory (or its .git) was replaced by a link or moved since `project add`: put the repository back at its path, or remove the project and add it where it is now.',
  },

  // Agents
  AGENT_NOT_FOUND: { http: 404, rpc: 1200, hint: 'List agents with `berth agent ls`; define one with `berth agent add NAME -- CMD...`.' },
  AGENT_IN_USE: { rpc: 1201, hint: 'Remove the sessions that run this agent first (`berth ps -a`).' },

  // Sessions
  SESSION_NOT_FOUND: { http: 404, rpc: 1400, hint: 'List sessions with `berth ps -a`; address one by id, id prefix or name.' },
  SESSION_AMBIGUOUS: { rpc: 1401, hint: 'Several sessions start with that id prefix: give more characters or the name.' },
  SESSION_NAME_TAKEN: { rpc: 1402, hint: 'Another session (of another project or agent) has that name; choose another --name.' },
  SESSION_NOT_RUNNING: { rpc: 1403, hint: 'Start it first (`berth restart ID`).' },
  SESSION_START_TIMEOUT: { rpc: 1404, hint: 'The container did not reach running in time; see `berth inspect ID` and the daemon log.' },
  SECRET_NOT_FOUND: { terminal: true, rpc: 1405, hint: 'Add the secret to $BERTH_HOME/secrets.yaml (mode 0600) as `name: value`.' },
  SECRETS_FILE_INSECURE: { terminal: true, rpc: 1406, hint: 'Make $BERTH_HOME/secrets.yaml readable by its owner only: chmod 600 it.' },
  DIRTY_CHECKOUT: {
    rpc: 1408,
    hint: 'Commit or discard the changes in the session, or remove with --force: berth keeps them on refs/berth/wip/<session>.',
  },
  NO_CHECKOUT: { rpc: 1409, hint: 'Read sessions (and one sharing the main checkout) have no branch of their own to diff or merge.' },
  CHECKOUT_FAILED: { terminal: true, rpc: 1410, hint: 'berth could not make the session checkout; the message has git\'s reason.' },
  MERGE_CONFLICT: {
    rpc: 1411,
    hint: 'Nothing was changed. Resolve by hand (`git merge berth/<session>` in the project), or rebase the session branch.',
  },
  MAIN_CHECKOUT_DIRTY: { rpc: 1412, hint: 'Commit or stash the changes in the project\'s main checkout, then merge again.' },
  NOT_ON_BASE_BRANCH: { rpc: 1413, hint: 'Check out the base branch in the project\'s main checkout (`git switch BASE`), then merge again.' },
  MERGE_NOT_FAST_FORWARD: { rpc: 1414, hint: 'The base moved on: merge with --merge or --squash instead of --ff.' },
  IMPORT_FAILED: { rpc: 1417, hint: 'git refused the session\'s commits (malformed or missing objects, see the message); nothing in the project changed. Fix the branch inside the session (recommit the work with plain git) and retry.' },
  SESSION_RUNNING: { rpc: 1419, hint: 'Stop it first (`berth stop ID`), or stop and remove it in one step: `berth rm --stop ID`.' },
  GIT_FAILED: { rpc: 1418, hint: 'git could not read the session\'s checkout (a file it cannot read, such as a FIFO, or a git that ran past its deadline or memory limit; the message says which). Nothing was changed; remove the offending file inside the session and retry.' },
  DIFF_FAILED: { rpc: 1416, hint: 'git could not read the checkout (see the message); `berth status ID` still lists the changed paths.' },
  GIT_CLONE_FAILED: { rpc: 1415, hint: 'Check the URL, the deploy key (sshKeyPath) and that the host is reachable; the message has git\'s reason.' },
  EXEC_TIMEOUT: { rpc: 1407, hint: 'The command ran past timeoutSec; raise it, or make the command finish sooner.' },
  EXEC_TTY_UNSUPPORTED: {
    http: 400,
    rpc: 1420,
    hint: 'AGENT_MODE=local runs bare processes and cannot give a command a terminal: run it without -t (berth exec -i ID -- CMD), or use AGENT_MODE=docker.',
  },

  // Engine
  ENGINE_UNAVAILABLE: {
    http: 503,
    rpc: 1300,
    hint: 'Start the Docker engine (`sudo systemctl start docker`) or set DOCKER_HOST; berthd retries on its own.',
  },
  IMAGE_NOT_FOUND: {
    terminal: true,
    rpc: 1301,
    hint: 'Build it (`berth image build NAME --file Dockerfile`), or point the agent or project at an image the engine has.',
  },
  IMAGE_BUILD_FAILED: { rpc: 1305, hint: 'A Dockerfile step failed; the error names the step and its last output lines.' },
  IMAGE_IN_USE: { rpc: 1306, hint: 'Remove the sessions that run this image first (`berth ps -a`).' },
  RUNTIME_NOT_FOUND: {
    terminal: true,
    rpc: 1302,
    hint: 'Install and register that OCI runtime with the engine, or unset AGENT_RUNTIME; the error lists the runtimes the engine has.',
  },
  CONTAINER_CREATE_FAILED: { terminal: true, rpc: 1303, hint: 'The engine refused the container; the message has its reason (limits, mounts, network).' },
  CONTAINER_START_FAILED: { terminal: true, rpc: 1304, hint: 'The engine could not start the container; the message has its reason (mounts, runtime, command).' },
  NETWORK_CONFLICT: {
    terminal: true,
    rpc: 1307,
    hint: 'A network with the name berth uses is not one berth made for this project (labels, Internal flag or driver differ); berth never joins it. Remove it (`docker network rm ID`, the id is in the message) or recreate what uses it under another name, then `berth restart` the session.',
  },
  NETWORK_NOT_FOUND: {
    rpc: 1308,
    hint: 'The project network was removed while berth used it (`docker network prune`?); berth makes it again and retries on its own.',
  },
  CONTAINER_NAME_TAKEN: {
    rpc: 1309,
    hint: "Another container (another berthd's, or one made by hand) has the session's container name; berth gives the session a name of its own and retries on its own.",
  },

  // The Claude bridge (answered to the agent in the Messages API's error shape, with this code)
  BRIDGE_PATH_FORBIDDEN: {
    http: 403,
    rpc: 1500,
    hint: 'The bridge relays only POST /v1/messages and /v1/messages/count_tokens (also without the /v1 prefix), plus its own /rpc and /health; anything else is refused and logged.',
  },
  BUDGET_EXCEEDED: {
    http: 403,
    rpc: 1501,
    hint: "The session used its token budget, which is fixed when a session is made: start a new session with a larger one (`berth start PROJECT --agent NAME --budget-tokens N`), or raise the agent's for its next sessions (`berth agent add NAME --budget-tokens N ...`); `berth usage ID` shows what it used.",
  },
  MODEL_CREDENTIAL_MISSING: {
    http: 401,
    rpc: 1502,
    hint: 'Log in to Claude Code on the host as the user berthd runs as (`claude`, then /login), or make a token with `claude setup-token`, put it in $BERTH_HOME/secrets.yaml and set BERTH_MODEL_CREDENTIAL=secret:NAME.',
  },
  MODEL_CREDENTIAL_EXPIRED: {
    http: 401,
    rpc: 1503,
    hint: "The host's Claude Code login expired: run `claude` once on the host (it renews the login), or use a long-lived `claude setup-token` token with BERTH_MODEL_CREDENTIAL=secret:NAME.",
  },
  MODEL_UPSTREAM_FAILED: {
    http: 502,
    rpc: 1504,
    hint: 'berthd could not reach the model upstream (BERTH_MODEL_UPSTREAM); check the host\'s network and the daemon log. The agent may retry.',
  },
  BRIDGE_REQUEST_TOO_LARGE: { http: 413, rpc: 1505, hint: 'Requests through the bridge are limited to 32 MiB, as the Messages API limits them.' },

  // Tasks and pools
  TASK_NOT_FOUND: { http: 404, rpc: 1600, hint: 'List tasks with `berth task ls PROJECT`; tasks are addressed by their number.' },
  TASK_NOT_HELD: {
    rpc: 1601,
    hint: 'A session may only heartbeat, complete, fail or release the task it claimed: run `berth-task claim` first (it prints the task this session holds).',
  },
  TASK_LEASE_LOST: {
    rpc: 1602,
    hint: 'The lease ran out (no heartbeat in time) or the task was cancelled, so it went to another attempt: stop work on it, and claim again for a new task. Heartbeat more often than the lease (`berth-task heartbeat`).',
  },
  TASK_STATE: { rpc: 1603, hint: 'The task is not in a state that allows this (see `berth task show ID`): cancel a claimed task before removing it; reopen a failed one with `berth task update ID --reopen`.' },
  TASK_TOO_LARGE: { http: 413, rpc: 1604, hint: 'A task body is limited to 64 KiB, its title to 500 characters, a summary or note to 16 KiB: put long material in a file in the repository and point to it.' },
  TASK_DEPENDENCY_INVALID: { http: 400, rpc: 1605, hint: 'dependsOn names tasks of the same project by id (by key in a task file), and may not form a cycle.' },
  TASKS_FILE_INVALID: { http: 400, rpc: 1606, hint: 'Fix the task file (the message names the entry and field); nothing was changed. Each entry needs a key and a title; see "Tasks" in README for the format.' },
  POOL_NOT_FOUND: { http: 404, rpc: 1610, hint: 'List pools with `berth pool ls`.' },
  POOL_EXISTS: { rpc: 1611, hint: 'A pool of that name is running for the project: scale it (`berth pool scale ID N`) or stop it first.' },
  LOGS_TOO_MANY_LINES: {
    http: 413,
    rpc: 1705,
    hint: 'sessions.logs answers at most 10,000 lines (16 MiB of text) in one array: narrow it with tail, since, until or grep, or read the stream (GET /sessions/:id/logs, client.logs(), `berth logs`), which has no limit.',
  },
  LOG_FILTER_INVALID: {
    http: 400,
    rpc: 1706,
    hint: 'since/until take an RFC 3339 time (2026-12-02T10:00:00Z), Unix seconds or a duration ago (10m, 1h30m); grep takes a JavaScript regular expression of at most 1,000 characters.',
  },
  TASK_NOT_REVIEWING: { rpc: 1612, hint: 'Only a reviewer session started by a pool decides on the task it was given to review.' },
  SCHEDULE_NOT_FOUND: { http: 404, rpc: 1710, hint: 'List schedules with `berth schedule ls`; add one with `berth schedule add NAME --cron "0 3 * * *" --project P --agent A`.' },
  SCHEDULE_EXISTS: { rpc: 1711, hint: 'Choose another name, change the schedule (`berth schedule update NAME ...`), or remove it first (`berth schedule rm NAME`).' },
  SCHEDULE_CRON_INVALID: {
    http: 400,
    rpc: 1712,
    hint: 'Give five fields: minute hour day-of-month month day-of-week, as "0 3 * * 1-5" (03:00 Monday to Friday) or "*/15 * * * *"; ranges, lists, steps, names (mon, jan), L (last day; 5L the last Friday) and 5#2 (the second Friday) work; seconds and W do not.',
  },
  SCHEDULE_TZ_INVALID: { http: 400, rpc: 1713, hint: 'Give an IANA time zone name such as Europe/Berlin, America/New_York or UTC (see `timedatectl list-timezones`).' },

  // Daemon startup and client connection (not sent over RPC, but reported with the same codes)
  // Maintenance, backup and restore
  MAINTENANCE_JOB_UNKNOWN: { http: 404, rpc: 1730, hint: 'Name one of the jobs `berth maintenance ls` lists: backup, prune, images, checkouts.' },
  MAINTENANCE_JOB_RUNNING: { rpc: 1731, hint: 'That job is running now (scheduled or started by someone else); wait for it (`berth maintenance ls`) and run it again if needed.' },
  BACKUP_FAILED: { http: 500, rpc: 1732, hint: 'The message says why (disk full, permissions, the copy failed its integrity check); older backups were kept. Free space under $BERTH_HOME/backups and run `berth backup` again.' },
  BACKUP_TARGET_EXISTS: { rpc: 1733, hint: 'berth backup --to never overwrites: give a file name that is not taken yet in $BERTH_HOME/backups/ (berthd writes backups nowhere else).' },
  RESTORE_DAEMON_RUNNING: { rpc: 1734, hint: 'Stop berthd first (`systemctl --user stop berthd`, or SIGTERM it; agent containers keep running), then run `berthd --restore FILE` and start berthd again.' },
  RESTORE_INVALID: { rpc: 1735, hint: 'Restore a file `berth backup` made (under $BERTH_HOME/backups/): it must pass SQLite\'s integrity check and be a berth database no newer than this berthd. Nothing was changed.' },

  CONFIG_INVALID: { rpc: 1900, hint: 'Fix the named key in the config file or environment; README lists accepted values.' },
  CONFIG_RELOAD_UNAVAILABLE: {
    rpc: 1750,
    hint: 'This berthd was started without its load options (embedded in a program or a test) and cannot read its config again: restart it to apply config changes.',
  },
  SOCKET_IN_USE: { rpc: 1901, hint: 'Another berthd already serves this socket; stop it, or set BERTH_SOCKET to another path.' },
  SOCKET_PATH_TOO_LONG: { rpc: 1902, hint: 'Choose a shorter BERTH_SOCKET (or BERTH_HOME) path.' },
  SOCKET_PATH_NOT_SOCKET: { rpc: 1903, hint: 'Something other than a socket sits at BERTH_SOCKET; move it away or choose another path.' },
  DAEMON_UNREACHABLE: {
    rpc: 1904,
    hint: 'Start berthd (`npm start` in the berth checkout, or `systemctl start berthd`), or pass --socket / set BERTH_SOCKET.',
  },
  TIMEOUT: { http: 504, rpc: 1905, hint: 'berthd did not answer in time; check `berth status` and the daemon log.' },
  CONNECTION_LOST: {
    rpc: 1906,
    hint: 'The connection to berthd broke before its answer (berthd restarted, or closed a connection it kept idle). Reads are retried once on a fresh connection; anything else may or may not have happened: look (`berth ps -a`, `berth inspect ID`) before repeating it.',
  },
  ABORTED: { rpc: 1907, hint: 'The caller cancelled the call (its AbortSignal, or the client was closed); what berthd had started may still finish.' },
} as const satisfies Record<string, { rpc: number; hint: string; terminal?: true; http?: number }>;

export type ErrorCode = keyof typeof errorRegistry;

export const errorCodes = Object.keys(errorRegistry) as ErrorCode[];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(errorRegistry, value);
}

/** Whether the reconciler should stop retrying on this error (see `terminal` in the registry). */
export function isTerminal(code: ErrorCode): boolean {
  return (errorRegistry[code] as { terminal?: true }).terminal === true;
}

/** The HTTP status of a route's answer carrying this error (see `http` in the registry). */
export function httpStatusOf(code: ErrorCode): number {
  return (errorRegistry[code] as { http?: number }).http ?? 409;
}

/** What berth puts in a JSON-RPC error's `data`. */
export interface ErrorData {
  code: ErrorCode;
  hint?: string;
  /** Structured facts about the failure (the offending key, path, pid ...). */
  details?: Record<string, unknown>;
}

/**
 * The one error type of berth, on both sides of the socket: thrown by the daemon, rebuilt by the
 * client from the JSON-RPC error. Branch on `code`, never on `message`.
 */
export class BerthError extends Error {
  override readonly name = 'BerthError';
  readonly code: ErrorCode;
  readonly hint: string;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint ?? errorRegistry[code].hint;
    this.details = options.details;
  }

  get rpcCode(): number {
    return errorRegistry[this.code].rpc;
  }

  toData(): ErrorData {
    const data: ErrorData = { code: this.code, hint: this.hint };
    if (this.details !== undefined) data.details = this.details;
    return data;
  }
}

/** The README's error table, rendered from the registry (README is checked against this). */
export function renderErrorTable(): string {
  const rows = errorCodes.map(
    (c) => `| \`${c}\` | ${errorRegistry[c].rpc} | ${isTerminal(c) ? 'no: the session fails' : ''} | ${errorRegistry[c].hint.replace(/\|/g, '\\|')} |`,
  );
  return ['| code | JSON-RPC code | retried by the reconciler? | what to do |', '|---|---|---|---|', ...rows].join('\n');
}
