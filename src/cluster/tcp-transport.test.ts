import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Storage } from '../kv/storage.js';
import { startTcpReplicaServer, type RunningTcpReplicaServer } from '../kv/tcp-replica-server.js';
import { InvalidKey, InvalidRequest, ReplicaUnreachable, Unavailable } from './errors.js';
import { formatVersion } from './hlc.js';
import { decodeKey, encodeEmpty, encodeRecordReply } from './tcp-codec.js';
import { FrameDecoder, FrameWriter, Op } from './tcp-protocol.js';
import { TcpReplicaTransport } from './tcp-transport.js';
import { acceptMember } from './tcp-handshake.js';
import { replicaTransportContract } from './transport.contract.js';
import { record as rec } from '../test/support/index.js';

/** A port that was free a moment ago: connecting to it is refused. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function listen(srv: Server): Promise<number> {
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return (srv.address() as AddressInfo).port;
}

// Open, and closed: in a closed cluster each connection opens with the secret
// handshake; the server holds two secrets (a rotation), the client one.
const ROTATION = [Buffer.from('old-secret-0123456789'), Buffer.from('new-secret-0123456789')];
for (const closed of [false, true]) {
  replicaTransportContract(`TcpReplicaTransport${closed ? ' with a cluster secret' : ''}`, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'flexstore-tcp-transport-'));
    const storage = Storage.open(dataDir);
    const server = await startTcpReplicaServer({ storage, host: '127.0.0.1', port: 0, ...(closed && { security: { secrets: ROTATION } }) });
    const nodeUrl = 'http://127.0.0.1:7001';
    const deadUrl = 'http://127.0.0.1:7002';
    const ports = new Map([
      [nodeUrl, server.port],
      [deadUrl, await closedPort()],
    ]);
    const timeoutMs = 2000;
    const transport = new TcpReplicaTransport({
      timeoutMs,
      resolvePort: (url) => ports.get(url),
      ...(closed && { security: { secrets: [ROTATION[1]!] } }),
    });
    return {
      transport,
      nodeUrl,
      deadUrl,
      timeoutMs,
      async cleanup() {
        await transport.close();
        await server.close();
        await storage.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  });
}

describe('TcpReplicaTransport failures and concurrency', () => {
  const nodeUrl = 'http://127.0.0.1:7001';
  const silentUrl = 'http://127.0.0.1:7003';
  const reverseUrl = 'http://127.0.0.1:7004';
  const v = (counter: number) => formatVersion({ wall: Date.now(), counter }, 'g');
  let dataDir: string;
  let storage: Storage;
  let server: RunningTcpReplicaServer;
  const hinted: Array<{ target: string; keys: string[] }> = [];
  let hintsServer: RunningTcpReplicaServer;
  const sockets = new Set<Socket>();
  let silent: Server;
  let reverse: Server;
  const ports = new Map<string, number>();
  const transport = new TcpReplicaTransport({ timeoutMs: 300, connections: 1, resolvePort: (url) => ports.get(url) });

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'flexstore-tcp-failures-'));
    storage = Storage.open(dataDir);
    server = await startTcpReplicaServer({ storage, host: '127.0.0.1', port: 0 });
    ports.set(nodeUrl, server.port);
    hintsServer = await startTcpReplicaServer({
      storage,
      host: '127.0.0.1',
      port: 0,
      storeHints: async (target, keys) => void hinted.push({ target, keys }),
    });
    ports.set('http://127.0.0.1:7005', hintsServer.port);
    // Accepts connections and never answers, like a paused (SIGSTOP) replica.
    silent = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    ports.set(silentUrl, await listen(silent));
    // Answers each batch of GETs in reverse order: replies must be matched by id, not position.
    reverse = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      const writer = new FrameWriter(s);
      let batch: Array<{ id: number; key: string }> = [];
      const decoder = new FrameDecoder((id, _op, body) => {
        if (batch.length === 0) setTimeout(() => {
          for (const r of batch.reverse()) {
            writer.write(
              r.key === 'absent'
                ? encodeEmpty(r.id, Op.NOT_FOUND)
                : encodeRecordReply(r.id, rec(formatVersion({ wall: 1, counter: 0 }, 'r'), r.key)),
            );
          }
          batch = [];
        }, 5);
        batch.push({ id, key: decodeKey(body) });
      });
      // A replica of this release opens with the handshake (an open one here).
      void acceptMember(s, []).then(() => {
        s.on('data', (c: Buffer) => decoder.push(c));
        s.resume();
      }, () => {});
    });
    ports.set(reverseUrl, await listen(reverse));
  });

  after(async () => {
    await transport.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
    await new Promise<void>((resolve) => reverse.close(() => resolve()));
    await server.close();
    await hintsServer.close();
    await storage.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a node without a TCP port rejects at once, so the caller can fall back', async () => {
    await assert.rejects(transport.get('http://no-port', 'k'), (err: unknown) => {
      assert.ok(err instanceof ReplicaUnreachable);
      assert.match(err.message, /advertises no replica TCP port/);
      return true;
    });
  });

  test('a replica that never answers fails the call at the deadline', async () => {
    const started = Date.now();
    await assert.rejects(transport.get(silentUrl, 'k'), /GET failed: timed out after 300 ms/);
    await assert.rejects(transport.put(silentUrl, 'k', rec(v(0)), { timeoutMs: 100 }), /timed out after 100 ms/);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 400 && elapsed < 2000, `took ${elapsed} ms`);
  });

  test('replies in any order reach their own calls', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => (i % 7 === 3 ? 'absent' : `key-${i}`));
    const got = await Promise.all(keys.map((k) => transport.get(reverseUrl, k)));
    got.forEach((r, i) => assert.equal(r === null ? 'absent' : r.value.toString(), keys[i]));
  });

  test('thousands of calls in flight on one connection each get their own answer', async () => {
    const n = 2000;
    const puts = await Promise.all(
      Array.from({ length: n }, (_, i) => transport.put(nodeUrl, `many/${i}`, rec(v(i), `v${i}`), { timeoutMs: 5000 })),
    );
    puts.forEach((r, i) => assert.deepEqual(r, { applied: true, version: r.version }, `put ${i}`));
    const gets = await Promise.all(
      Array.from({ length: n }, (_, i) => transport.get(nodeUrl, `many/${i}`, { timeoutMs: 5000 })),
    );
    gets.forEach((r, i) => assert.equal(r?.value.toString(), `v${i}`));
  });

  test('a failed operation is an ERROR frame and a ReplicaUnreachable; the connection lives on', async () => {
    await assert.rejects(transport.put(nodeUrl, 'k', rec('not-a-version')), /PUT answered ERROR: INVALID_REQUEST/);
    await assert.rejects(transport.put(nodeUrl, '', rec(v(0))), /PUT answered ERROR: INVALID_KEY/);
    await assert.rejects(transport.list(nodeUrl, { prefix: '', after: '', limit: 0 }), /list answered ERROR: INVALID_REQUEST/);
    await assert.rejects(transport.storeHints(nodeUrl, 'kv-2', ['a']), (err: unknown) => {
      assert.ok(err instanceof ReplicaUnreachable);
      assert.match(err.message, /hints answered ERROR: UNAVAILABLE/);
      return true;
    });
    assert.equal(await transport.get(nodeUrl, 'never-written'), null);
  });

  test("an ERROR frame's code comes back as its class; only the replica's own failure is unreachable", async () => {
    await assert.rejects(transport.put(nodeUrl, 'k', rec('not-a-version')), (err: unknown) => {
      assert.ok(err instanceof InvalidRequest, String(err));
      assert.match(err.message, /PUT answered ERROR: INVALID_REQUEST version must be a version/);
      return true;
    });
    await assert.rejects(transport.put(nodeUrl, '', rec(v(0))), InvalidKey);
    await assert.rejects(transport.list(nodeUrl, { prefix: '', after: '', limit: 0 }), InvalidRequest);
    await assert.rejects(transport.storeHints(nodeUrl, 'kv-2', ['a']), (err: unknown) => {
      assert.ok(err instanceof ReplicaUnreachable);
      assert.ok(err.cause instanceof Unavailable);
      return true;
    });
  });

  test('hints reach the server handler intact', async () => {
    const keys = ['a', 'b/c', '\ud800lone', '日本'];
    await transport.storeHints('http://127.0.0.1:7005', 'kv-2', keys);
    assert.deepEqual(hinted, [{ target: 'kv-2', keys }]);
  });

  test('closing the server still acknowledges a write already in flight', async () => {
    let started!: () => void;
    const putStarted = new Promise<void>((resolve) => (started = resolve));
    const slow = await startTcpReplicaServer({
      storage: {
        get: (k) => storage.get(k),
        list: (q) => storage.list(q),
        put: async (k, r) => {
          started();
          await new Promise((resolve) => setTimeout(resolve, 100));
          return storage.put(k, r);
        },
      },
      host: '127.0.0.1',
      port: 0,
    });
    ports.set('http://127.0.0.1:7006', slow.port);
    const version = v(0);
    const put = transport.put('http://127.0.0.1:7006', 'closing/k', rec(version), { timeoutMs: 2000 });
    await putStarted;
    await slow.close();
    assert.deepEqual(await put, { applied: true, version });
    assert.equal(storage.get('closing/k')?.version, version);
    await assert.rejects(transport.get('http://127.0.0.1:7006', 'closing/k'), ReplicaUnreachable);
  });

  test('an invalid node URL and a closed transport reject with ReplicaUnreachable', async () => {
    ports.set('not a url', server.port);
    await assert.rejects(transport.get('not a url', 'k'), /not a valid node URL/);
    const t = new TcpReplicaTransport({ resolvePort: () => server.port });
    assert.equal(await t.get(nodeUrl, 'never-written'), null);
    await t.close();
    await assert.rejects(t.get(nodeUrl, 'k'), /transport is closed/);
  });
});
