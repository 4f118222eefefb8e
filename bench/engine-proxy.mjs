// A counting pass-through to the Docker engine: berthd pointed at it (DOCKER_HOST=unix://PATH)
// talks to the real engine, and every API request it makes is counted by method and route.
// Used by bench/scale.mjs and the scale integration test to count what a resync costs.
import { connect, createServer } from 'node:net';
import { rm } from 'node:fs/promises';

const REQUEST_LINE = /(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (\/[^ ?]*)[^ ]* HTTP\/1\.[01]\r\n/g;

/** `/v1.41/containers/abc.../json` → `GET /containers/:id/json`. */
export function route(method, path) {
  const p = path
    .replace(/^\/v\d+\.\d+/, '')
    .replace(/^\/(containers|images|networks|volumes|exec)\/(?!json$|create$|prune$)[^/]+/, '/$1/:id');
  return `${method} ${p}`;
}

/**
 * Listens on `path` and forwards each connection to `engine` (default /var/run/docker.sock).
 * Returns { counts: Map<route, n>, total(), reset(), close() }.
 */
export async function startEngineProxy(path, engine = '/var/run/docker.sock') {
  await rm(path, { force: true });
  const counts = new Map();
  const sockets = new Set();
  const server = createServer((client) => {
    const upstream = connect(engine);
    sockets.add(client).add(upstream);
    let carry = '';
    client.on('data', (chunk) => {
      // Request lines may straddle chunks: keep a short tail. (Bodies are JSON; a false match
      // would need a request line inside one, which berth never sends.)
      const text = carry + chunk.toString('latin1');
      for (const m of text.matchAll(REQUEST_LINE)) {
        const r = route(m[1], m[2]);
        counts.set(r, (counts.get(r) ?? 0) + 1);
      }
      carry = text.slice(-512);
      const cut = carry.lastIndexOf('\r\n');
      carry = cut >= 0 ? carry.slice(cut) : carry;
    });
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(path, resolve));
  return {
    counts,
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    reset: () => counts.clear(),
    snapshot: () => Object.fromEntries([...counts].sort((a, b) => b[1] - a[1])),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
      await rm(path, { force: true });
    },
  };
}
