// The one-hop baseline: a node:http server forwarding each request (method,
// path, body) over a keep-alive undici Pool to the bare server and returning
// its status and body. It is the cheapest service that, like the FlexStore
// gateway, answers only after another process has: the yardstick for the
// gateway's own overhead.
//
//   node proxy.mjs <port> <upstream-url> <pool-connections>
// Prints {"port": n} on stdout once listening (port 0 picks a free one).
import http from 'node:http';
import { Pool } from 'undici';

const port = Number(process.argv[2] ?? 0);
const upstream = process.argv[3];
const connections = Number(process.argv[4] ?? 32);
if (!upstream) {
  process.stderr.write('usage: proxy.mjs <port> <upstream-url> [connections]\n');
  process.exit(2);
}
// The same pool settings the gateway uses towards each KV server.
const pool = new Pool(upstream, { connections, pipelining: 1, keepAliveTimeout: 30_000 });

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    try {
      const up = await pool.request({
        method: req.method,
        path: req.url,
        body: chunks.length > 0 ? Buffer.concat(chunks) : undefined,
        headers: req.headers['content-type'] ? { 'content-type': req.headers['content-type'] } : undefined,
      });
      const body = Buffer.from(await up.body.arrayBuffer());
      res.writeHead(up.statusCode, {
        'content-type': up.headers['content-type'] ?? 'application/octet-stream',
        'content-length': String(body.length),
      });
      res.end(body);
    } catch (err) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(String(err?.message ?? err));
    }
  });
});
server.keepAliveTimeout = 120_000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.closeAllConnections();
    server.close(() => pool.close().finally(() => process.exit(0)));
  });
}
