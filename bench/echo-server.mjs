// The baseline for bench/rpc: a bare Node `net` server on a Unix socket that echoes what it gets.
import { createServer } from 'node:net';

const path = process.argv[2];
const server = createServer((s) => s.pipe(s));
server.listen(path);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
