import { randomBytes } from 'node:crypto';
import type { RestartPolicy, SessionMode } from '@berth/client-sdk/protocol';
import { containerName } from '../runtime/labels.js';
import type { SessionSpec } from '../shared/session-spec.js';
import type { SessionRecord } from '../store/sessions.js';
import { specHash } from './spec.js';

/** The row of a session just asked for: desired running, nothing observed yet, its checkout (if its own) still to make. */
export function newSessionRecord(i: {
  name: string;
  project: string;
  agent: string;
  mode: SessionMode;
  seq: number;
  /** Another row already holds the container name made from the session's name. */
  containerNameTaken?: boolean;
  spec: SessionSpec;
  restartPolicy: RestartPolicy;
  checkoutDir: string | null;
  budgetTokens: number | null;
  priority: number;
  ts: string;
}): SessionRecord {
  return {
    id: randomBytes(6).toString('hex'),
    name: i.name,
    project: i.project,
    agent: i.agent,
    mode: i.mode,
    seq: i.seq,
    containerName: containerName(i.name, i.seq, i.containerNameTaken),
    spec: i.spec,
    specHash: specHash(i.spec),
    restartPolicy: i.restartPolicy,
    desired: 'running',
    generation: 1,
    recreate: false,
    state: 'pending',
    containerId: null,
    restartCount: 0,
    crashCount: 0,
    nextRestartAt: null,
    handledFinish: null,
    errorCode: null,
    errorMessage: null,
    exitCode: null,
    checkoutDir: i.checkoutDir,
    checkoutState: i.checkoutDir ? 'creating' : null,
    checkoutIdentity: null,
    removeOpts: null,
    branch: null,
    base: null,
    baseSha: null,
    budgetTokens: i.budgetTokens,
    activity: null,
    gracefulDeadline: null,
    queuedAt: null,
    priority: i.priority,
    stuckRestarts: 0,
    merged: null,
    createdAt: i.ts,
    startedAt: null,
    finishedAt: null,
    updatedAt: i.ts,
  };
}
