import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, describe, test } from 'node:test';
import { Storage } from '../kv/storage.js';
import { startTcpReplicaServer, type RunningTcpReplicaServer } from '../kv/tcp-replica-server.js';
import type { RefusalReason } from './cluster-auth.js';
import { ReplicaUnreachable } from './errors.js';
import { encodePut } from './tcp-codec.js';
import { proveMember } from './tcp-handshake.js';
import { TcpReplicaTransport } from './tcp-transport.js';
import { record, tempDirs, version } from '../test/support/index.js';

const A = Buffer.from('secret-A-0123456789abcdef');
const B = Buffer.from('secret-B-0123456789abcdef');

describe('replica protocol handshake', () => {
  const open: Array<{ close(): Promise<void> }> = [];
  after(async () => {
    for (const o of open.reverse()) await o.close();
  });
  // Registered after the closing above, so the dirs go once their stores have.
  const tempDir = tempDirs('flexstore-tcp-handshake-');

  async function replica(secrets: Buffer[]): Promise<{ server: RunningTcpReplicaServer; storage: Storage; refused: RefusalReason[] }> {
    const storage = Storage.open(tempDir());
    const refused: RefusalReason[] = [];
    const server = await startTcpReplicaServer({
      storage,
      host: '127.0.0.1',
      port: 0,
      security: { secrets },
      onAuthRefused: (r) => void refused.push(r),
    });
    open.push({ close: () => storage.close() }, server);
    return { server, storage, refused };
  }

  function transport(port: number, secrets: Buffer[]): TcpReplicaTransport {
    const t = new TcpReplicaTransport({ timeoutMs: 2000, resolvePort: () => port, security: { secrets } });
    open.push(t);
    return t;
  }

  const nodeUrl = 'http://127.0.0.1:7001';
  const v = () => version(Date.now(), 0, 'hs');

  test('the right secret, and either secret during a rotation, passes; calls then work', async () => {
    const { server } = await replica([B, A]);
    for (const secrets of [[A], [B], [A, B]]) {
      const t = transport(server.port, secrets);
      const ver = v();
      assert.deepEqual(await t.put(nodeUrl, 'k', record(ver, 'x')), { applied: true, version: ver });
      assert.equal((await t.get(nodeUrl, 'k'))?.value.toString(), 'x');
    }
  });

  test('a wrong secret or none is refused: the call fails, nothing is applied, the refusal is counted', async () => {
    const { server, storage, refused } = await replica([A]);
    const wrong = transport(server.port, [B]);
    await assert.rejects(wrong.put(nodeUrl, 'wrong', record(v(), 'x')), (err: unknown) => {
      assert.ok(err instanceof ReplicaUnreachable);
      assert.match(err.message, /handshake failed: the replica refused this process's cluster secret \(bad_signature\)/);
      return true;
    });
    const none = transport(server.port, []);
    await assert.rejects(none.put(nodeUrl, 'none', record(v(), 'x')), /refused this process's cluster secret \(missing\)/);
    assert.equal(storage.get('wrong'), null);
    assert.equal(storage.get('none'), null);
    assert.deepEqual(refused, ['bad_signature', 'missing']);
  });

  test('a client with a secret will not talk to an open replica', async () => {
    const { server, storage } = await replica([]);
    const t = transport(server.port, [A]);
    await assert.rejects(t.put(nodeUrl, 'k', record(v(), 'x')), /the replica has no cluster secret; this process has one/);
    assert.equal(storage.get('k'), null);
    // Both open: today's protocol, behind a handshake of zero MACs.
    const both = transport(server.port, []);
    assert.equal(await both.get(nodeUrl, 'k'), null);
  });

  test('a frame sent before the handshake closes the connection and applies nothing', async () => {
    const { server, storage, refused } = await replica([A]);
    const sock = connect({ host: '127.0.0.1', port: server.port });
    sock.on('error', () => {});
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    sock.resume();
    sock.write(encodePut(1, 'victim', record('ffffffffffff.000000.zzzz', 'forged')));
    await closed;
    assert.equal(storage.get('victim'), null);
    assert.deepEqual(refused, ['malformed']);
  });

  test('a client that answers with a MAC of the wrong secret cannot send frames after it', async () => {
    const { server, storage, refused } = await replica([A]);
    const sock = connect({ host: '127.0.0.1', port: server.port });
    sock.on('error', () => {});
    await new Promise((resolve) => sock.once('connect', resolve));
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    // The handshake fails on the client's side (the server said FXNO); the
    // frame written behind it must still apply nothing.
    await assert.rejects(proveMember(sock, [B], 2000), /refused/);
    sock.resume();
    sock.write(encodePut(1, 'victim', record(v(), 'forged')));
    await closed;
    assert.equal(storage.get('victim'), null);
    assert.deepEqual(refused, ['bad_signature']);
  });
});
