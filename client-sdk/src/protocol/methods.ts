import type { Agent, AgentLimits, DaemonStatus, Project } from './types.js';

/**
 * Every JSON-RPC method berthd serves, once: its params (by name) and its result.
 * Server handlers and the client's methods are both typed against this map.
 */
export interface Methods {
  'daemon.status': { params: Record<string, never>; result: DaemonStatus };

  'projects.add': { params: { name: string; path: string }; result: Project };
  'projects.list': { params: Record<string, never>; result: Project[] };
  'projects.get': { params: { name: string }; result: Project };
  'projects.remove': { params: { name: string }; result: { removed: string } };

  'agents.define': {
    params: {
      name: string;
      command: string[];
      image?: string | null;
      env?: Record<string, string>;
      role?: string | null;
      readOnly?: boolean;
      limits?: AgentLimits;
    };
    result: Agent;
  };
  'agents.list': { params: Record<string, never>; result: Agent[] };
  'agents.get': { params: { name: string }; result: Agent };
  'agents.remove': { params: { name: string }; result: { removed: string } };
}

export type MethodName = keyof Methods;
export type ParamsOf<M extends MethodName> = Methods[M]['params'];
export type ResultOf<M extends MethodName> = Methods[M]['result'];

/**
 * Parameter order for by-position calls (`"params": ["web", "/home/me/projects/web"]`).
 * A by-position call maps its array onto these names; extra elements are an error.
 */
export const positionalParams: { readonly [M in MethodName]: readonly (keyof ParamsOf<M> & string)[] } = {
  'daemon.status': [],
  'projects.add': ['name', 'path'],
  'projects.list': [],
  'projects.get': ['name'],
  'projects.remove': ['name'],
  'agents.define': ['name', 'command', 'image', 'env', 'role', 'readOnly', 'limits'],
  'agents.list': [],
  'agents.get': ['name'],
  'agents.remove': ['name'],
};

export const methodNames = Object.keys(positionalParams) as MethodName[];
