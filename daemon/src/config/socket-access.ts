import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { BerthError } from '@berth/client-sdk/protocol';
import type { Layers } from './layers.js';

/**
 * Who may use berthd's socket: its owner only (0600, the default), or also one group (0660; the
 * system unit's `berth`, which users join). Read before berthd binds, so it stays free of the
 * validator like layers.ts; a group that does not exist stops berthd (exit 78) rather than leaving a
 * socket nobody was meant to have, or nobody can use.
 */

export const SOCKET_MODES = ['0600', '0660'] as const;
export const SOCKET_GROUP_RE = /^(?:[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|\d{1,10})$/;

export interface SocketAccess {
  /** The socket's mode: 0o600, or 0o660 when a group may use it. */
  mode: number;
  /** The group given the socket (and the way to it), or null for berthd's own. */
  group: { name: string | null; gid: number } | null;
}

/** A group's gid from the group database: /etc/group, then `getent` (NSS: LDAP, sssd). */
export function lookupGroup(name: string, groupFile = '/etc/group'): number | null {
  const text = (() => {
    try {
      return readFileSync(groupFile, 'utf8');
    } catch {
      return '';
    }
  })();
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && f[0] === name && /^\d+$/.test(f[2]!)) return Number(f[2]);
  }
  try {
    const out = execFileSync('getent', ['group', name], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
    const gid = out.split(':')[2];
    return gid && /^\d+$/.test(gid) ? Number(gid) : null;
  } catch {
    return null;
  }
}

type Values = { socketGroup?: unknown; socketMode?: unknown };
type Sources = Layers['source'];

function invalid(values: Values, source: Sources, key: 'socketGroup' | 'socketMode', expected: string): BerthError {
  const env = key === 'socketGroup' ? 'BERTH_SOCKET_GROUP' : 'BERTH_SOCKET_MODE';
  const value = values[key];
  const from = source[key] ?? 'default';
  return new BerthError('CONFIG_INVALID', `invalid ${env} (${key}) = ${JSON.stringify(value)} from ${from}: expected ${expected}`, {
    details: { key, env, value, source: from, expected },
  });
}

/** The socket's mode and group as configured; CONFIG_INVALID for a bad mode or a group that does not exist. */
export function socketAccess(values: Values, source: Sources = {}, groupFile?: string): SocketAccess {
  const rawGroup = values.socketGroup;
  const rawMode = values.socketMode;
  let group: SocketAccess['group'] = null;
  if (rawGroup !== null && rawGroup !== undefined) {
    const g = String(rawGroup);
    if (!SOCKET_GROUP_RE.test(g)) throw invalid(values, source, 'socketGroup', 'a group name or numeric gid, like berth');
    if (/^\d+$/.test(g)) group = { name: null, gid: Number(g) };
    else {
      const gid = lookupGroup(g, groupFile);
      if (gid === null) {
        throw new BerthError('CONFIG_INVALID', `the socket's group ${g} (BERTH_SOCKET_GROUP, from ${source.socketGroup ?? 'default'}) does not exist`, {
          hint: `Create it (\`sudo groupadd --system ${g}\`; scripts/install-service.sh --system does), or unset BERTH_SOCKET_GROUP for a socket only berthd's user may use.`,
          details: { key: 'socketGroup', env: 'BERTH_SOCKET_GROUP', value: g, source: source.socketGroup ?? 'default' },
        });
      }
      group = { name: g, gid };
    }
  }
  let mode = group ? 0o660 : 0o600;
  if (rawMode !== null && rawMode !== undefined) {
    const m = String(rawMode);
    if (!(SOCKET_MODES as readonly string[]).includes(m)) throw invalid(values, source, 'socketMode', `one of: ${SOCKET_MODES.join(', ')}`);
    mode = parseInt(m, 8);
  }
  return { mode, group };
}
