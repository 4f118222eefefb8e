// The floor for bench/tasks: a bare node http server on a Unix socket, in a process of its own,
// answering each request with fixed bytes: POST /NAME gets the file `NAME.json` in DIR (the body is
// read and dropped; no JSON, no work). Usage: node floor-server.mjs SOCKET DIR
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

const [path, dir] = process.argv.slice(2);
const answers = new Map(readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => [f.slice(0, -5), readFileSync(join(dir, f))]));
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const bytes = answers.get(req.url.slice(1));
    res.writeHead(bytes ? 200 : 404, { 'content-type': 'application/json' });
    res.end(bytes || '{}');
  });
});
server.keepAliveTimeout = 60_000;
server.listen(path, () => process.send?.('ready'));
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
