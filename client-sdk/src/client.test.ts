import { describe, expect, it } from 'vitest';
import { BerthClient } from './client.js';
import { methodNames } from './protocol/index.js';

describe('BerthClient', () => {
  it('has one typed method for every RPC method of the protocol', () => {
    const c = new BerthClient({ socketPath: '/nonexistent.sock' });
    const missing = methodNames.filter((m) => {
      const [ns, fn] = m.split('.') as [string, string];
      return typeof (c as unknown as Record<string, Record<string, unknown>>)[ns]?.[fn] !== 'function';
    });
    c.close();
    expect(missing).toEqual([]);
  });

  it('turns a missing daemon into DAEMON_UNREACHABLE', async () => {
    const c = new BerthClient({ socketPath: '/nonexistent/berth.sock' });
    await expect(c.daemon.status()).rejects.toMatchObject({ code: 'DAEMON_UNREACHABLE' });
    c.close();
  });
});
