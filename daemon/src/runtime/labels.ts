/**
 * Labels on everything berth creates in the engine. Ownership is always found by listing by these,
 * never remembered: a container belongs to a session because its labels say so.
 */
export const LABELS = {
  managed: 'dev.berth.managed',
  /** The berthd that owns it (a random id kept in its database), so daemons sharing an engine keep apart. */
  instance: 'dev.berth.instance',
  session: 'dev.berth.session',
  project: 'dev.berth.project',
  agent: 'dev.berth.agent',
  specHash: 'dev.berth.spec-hash',
} as const;

export const containerName = (project: string, seq: number) => `berth-${project}-${seq}`;
export const networkName = (project: string, internal: boolean) => `berth-net-${project}${internal ? '-internal' : ''}`;
export const agentVolumeName = (sessionId: string) => `berth-agent-${sessionId}`;
