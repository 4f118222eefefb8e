import { BerthError, NAME_PATTERN } from '@berth/client-sdk/protocol';

/** Throws INVALID_NAME unless `name` matches NAME_PATTERN (project, session and agent names). */
export function assertName(kind: string, name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new BerthError('INVALID_NAME', `invalid ${kind} name ${JSON.stringify(name)}`, { details: { kind, name } });
  }
}
