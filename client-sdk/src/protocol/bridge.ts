import type { BridgeTaskMethods } from './tasks.js';
import type { AgentLimits, SessionActivity, UsageTotals } from './types.js';

/**
 * The Claude bridge: one Unix socket per session, served by berthd. Which socket a request arrives
 * on is the session's identity. In the container the socket's directory is mounted read-only at
 * /host, so a berthd that restarts (kill -9 included) makes the socket again where the container
 * already looks.
 *
 * HTTP on the socket:
 *   POST /v1/messages, POST /v1/messages/count_tokens   the Messages API, relayed to the upstream
 *        with berthd's credential (whatever credential the container sends is dropped); also as
 *        /messages and /messages/count_tokens, for clients whose base URL carries the /v1
 *        (the Vercel AI SDK: task-master-ai, OpenCode)
 *   POST /rpc                                            JSON-RPC 2.0, BridgeMethods below
 *   GET  /health                                         200 {"ok":true} while berthd serves the bridge
 *   anything else                                        403, logged
 * Errors are the Messages API's shape, so Claude Code shows them:
 *   {"type":"error","error":{"type":"permission_error"|"api_error"|...,"message":"…"},"berth":{"code":"BUDGET_EXCEEDED",...}}
 */
export const BRIDGE_DIR_IN_CONTAINER = '/host';
export const BRIDGE_SOCKET_NAME = 'claude-bridge.sock';
export const BRIDGE_SOCKET_IN_CONTAINER = `${BRIDGE_DIR_IN_CONTAINER}/${BRIDGE_SOCKET_NAME}`;
/** Set in every session: where the bridge socket is. */
export const BRIDGE_SOCKET_ENV = 'CLAUDE_BRIDGE_SOCKET';

/** The Claude Code hook events the base image reports (settings in images/base). */
export type HookEvent =
  | 'SessionStart'
  | 'UserPromptSubmit'
  | 'PreToolUse'
  | 'PostToolUse'
  | 'PostToolUseFailure'
  | 'PermissionRequest'
  | 'PermissionDenied'
  | 'Elicitation'
  | 'Notification'
  | 'Stop'
  | 'SubagentStop'
  | 'SessionEnd';

/** What the agent side may call on its bridge (nothing here reaches another session). */
export interface BridgeMethods extends BridgeTaskMethods {
  /** Who am I: the session this socket belongs to. */
  'bridge.hello': {
    params: Record<string, never>;
    result: {
      session: { id: string; name: string };
      project: string;
      agent: string;
      branch: string | null;
      limits: AgentLimits;
      budgetTokens: number | null;
      usage: UsageTotals | null;
      /** Set when a graceful stop was asked for: finish the current unit of work and exit before `deadline`. */
      stopRequested: { deadline: string } | null;
    };
  };
  /**
   * A Claude Code hook fired (the hook's JSON input as `payload`, forwarded by
   * /opt/berth/hook.mjs). berth keeps only the event name, the notification message and the
   * tool name; never prompts, transcripts or tool input.
   */
  'bridge.hook': {
    params: { event: HookEvent | string; payload?: Record<string, unknown> };
    /**
     * `stopRequested` as in bridge.hello: the base image's hook then tells Claude Code (as context on
     * its next step) to finish its unit of work and end its turn. A turn that ends (Stop,
     * SessionEnd) while a graceful stop is asked for stops the session then, not at the deadline.
     */
    result: { activity: SessionActivity; stopRequested: { deadline: string } | null };
  };
}
