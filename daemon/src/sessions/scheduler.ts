/**
 * What the session service needs of the reconciler: it only changes desired state and asks for a
 * pass. (The reconciler implements this; the service never imports it.)
 */
export interface SessionScheduler {
  /** Queue a reconcile of the session (deduplicated; returns at once). */
  enqueue(id: string): void;
  /** The grace period the next stop of the session gives its agent before SIGKILL. */
  setStopTimeout(id: string, timeoutSec: number): void;
}
