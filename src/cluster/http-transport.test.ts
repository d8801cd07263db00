import assert from 'node:assert/strict';
import { createServer as createHttp, type Server as HttpServer } from 'node:http';
import { createServer as createTcp, type Server as TcpServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startKvServer } from '../kv/server.js';
import { InternalError, InvalidKey, ReplicaUnreachable } from './errors.js';
import { formatVersion } from './hlc.js';
import { HttpReplicaTransport } from './http-transport.js';
import { replicaTransportContract } from './transport.contract.js';

/** A port that was free a moment ago: connecting to it is refused. */
async function closedPortUrl(): Promise<string> {
  const srv = createTcp();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

// Open, and closed: in a closed cluster every call is signed (cluster-auth.ts)
// and the KV server checks it; the server holds two secrets (a rotation), the
// client signs with the newer one.
const ROTATION = ['old-secret-0123456789', 'new-secret-0123456789'];
for (const closed of [false, true]) {
  replicaTransportContract(`HttpReplicaTransport${closed ? ' with a cluster secret' : ''}`, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'flexstore-transport-'));
    const server = await startKvServer({
      port: 0,
      host: '127.0.0.1',
      dataDir,
      registryUrl: 'http://127.0.0.1:1',
      heartbeatIntervalMs: 60_000,
      logLevel: 'silent',
      ...(closed && { clusterSecret: ROTATION.join(',') }),
    });
    const timeoutMs = 2000;
    const transport = new HttpReplicaTransport({ timeoutMs, ...(closed && { security: { secrets: [Buffer.from(ROTATION[1]!)] } }) });
    return {
      transport,
      nodeUrl: server.url,
      deadUrl: await closedPortUrl(),
      timeoutMs,
      async cleanup() {
        await transport.close();
        await server.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  });
}

describe('HttpReplicaTransport failure mapping', () => {
  const rec = {
    value: Buffer.from('x'),
    version: formatVersion({ wall: 1, counter: 0 }, 'g'),
    tombstone: false,
    contentType: 'application/octet-stream',
  };
  let silent: TcpServer;
  let silentUrl: string;
  const sockets = new Set<Socket>();
  let fake: HttpServer;
  let fakeUrl: string;
  const transport = new HttpReplicaTransport({ timeoutMs: 300 });

  before(async () => {
    // Accepts connections and never answers, like a paused (SIGSTOP) server.
    silent = createTcp((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;

    fake = createHttp((req, res) => {
      req.resume();
      const [status, code] = req.url!.includes('500')
        ? [500, 'INTERNAL']
        : req.url!.includes('400')
          ? [400, 'INVALID_KEY']
          : [404, 'NOT_FOUND'];
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ success: false, error: `fake ${status}`, code }));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  });

  after(async () => {
    await transport.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
    fake.closeAllConnections();
    await new Promise<void>((resolve) => fake.close(() => resolve()));
  });

  test('a server that never answers fails the call at the deadline', async () => {
    const started = Date.now();
    await assert.rejects(transport.get(silentUrl, 'k'), (err: unknown) => {
      assert.ok(err instanceof ReplicaUnreachable);
      assert.match(err.message, /timed out after 300 ms/);
      return true;
    });
    await assert.rejects(transport.put(silentUrl, 'k', rec, { timeoutMs: 100 }), /timed out after 100 ms/);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 350 && elapsed < 2000, `took ${elapsed} ms`);
  });

  test('5xx, 4xx and a 404 without KEY_NOT_FOUND reject with the server error', async () => {
    await assert.rejects(transport.get(fakeUrl, 'k500'), /GET answered 500: INTERNAL fake 500/);
    await assert.rejects(transport.put(fakeUrl, 'k400', rec), /PUT answered 400: INVALID_KEY fake 400/);
    await assert.rejects(transport.get(fakeUrl, 'k404'), (err: unknown) => {
      assert.ok(err instanceof ReplicaUnreachable);
      assert.match(err.message, /404: NOT_FOUND/);
      return true;
    });
    await assert.rejects(transport.list(fakeUrl, { prefix: '', after: '', limit: 1 }), ReplicaUnreachable);
  });

  test("a replica's 4xx rejects with its error's class: the replica refused the request, it is not unreachable", async () => {
    await assert.rejects(transport.put(fakeUrl, 'k400', rec), (err: unknown) => {
      assert.ok(err instanceof InvalidKey, String(err));
      assert.match(err.message, /PUT answered 400: INVALID_KEY fake 400/);
      return true;
    });
    await assert.rejects(transport.get(fakeUrl, 'k500'), (err: unknown) => {
      assert.ok(err instanceof ReplicaUnreachable);
      assert.ok(err.cause instanceof InternalError);
      return true;
    });
  });

  test('an invalid node URL and a closed transport reject with ReplicaUnreachable', async () => {
    await assert.rejects(transport.get('not a url', 'k'), ReplicaUnreachable);
    const t = new HttpReplicaTransport();
    await t.close();
    await assert.rejects(t.get(fakeUrl, 'k'), /transport is closed/);
  });
});
