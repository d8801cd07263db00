// The bare baseline: node:http answering a fixed body to any method and path.
// It is the most any Node.js HTTP service can do on this machine, so every
// other system is read against it.
//
//   node node-server.mjs <port> <body-bytes>
// Prints {"port": n} on stdout once listening (port 0 picks a free one).
import http from 'node:http';

const port = Number(process.argv[2] ?? 0);
const size = Number(process.argv[3] ?? 100);
const body = Buffer.alloc(size, 'x');
const headers = { 'content-type': 'application/octet-stream', 'content-length': String(body.length) };

const server = http.createServer((req, res) => {
  // Drain the request body first: answering before it is read would let a
  // PUT cost less here than it can anywhere else.
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(200, headers);
    res.end(body);
  });
});
// Longer than any run, so the load generator's connections stay open.
server.keepAliveTimeout = 120_000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)).closeAllConnections());
