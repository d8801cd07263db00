import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { VersionFromFuture } from '../cluster/errors.js';
import { HybridClock, formatVersion } from '../cluster/hlc.js';
import { HEADER_VERSION, KV_PATH } from '../cluster/http-wire.js';
import { HASH_SPACE_MAX } from '../cluster/placement.js';
import { TcpReplicaTransport } from '../cluster/tcp-transport.js';
import { freePort, record, stamped, tempDirs } from '../test/support/index.js';
import { PeerTransfer, repairRange } from './range-repair.js';
import { encodeRecord } from './record-codec.js';
import { RepairClient } from './repair-client.js';
import { MSGPACK, packr } from './repair-wire.js';
import { startKvServer, type RunningKvServer } from './server.js';
import { Storage, type WriteSource } from './storage.js';

/**
 * Versions from the future are refused on every path a record reaches a KV
 * server by: the storage calls themselves, a gateway's replica write over
 * HTTP and TCP (read repair is one of those), a peer's apply (anti-entropy
 * pushes and hint delivery both send apply), and records this server pulls
 * or streams from a peer during a repair.
 */

const SKEW = 10_000;
const tempDir = tempDirs('flexstore-future-');
const at = (wall: number, counter = 0, id = 'g1') => formatVersion({ wall: Math.round(wall), counter }, id);

describe('storage refuses versions from the future', () => {
  let now = 1_700_000_000_000;
  let storage: Storage;
  const refusals: Array<[WriteSource, number]> = [];

  before(() => {
    storage = Storage.open(tempDir(), {
      now: () => now,
      maxClockSkewMs: SKEW,
      onVersionRefused: (source, n) => refusals.push([source, n]),
    });
  });
  after(() => storage.close());

  test('put rejects with VERSION_FROM_FUTURE and writes nothing; at the limit it applies', async () => {
    refusals.length = 0;
    await assert.rejects(storage.put('p', record(at(now + SKEW + 1))), (err: unknown) => {
      assert.ok(err instanceof VersionFromFuture);
      assert.equal(err.status, 409);
      assert.deepEqual(err.details, { version: at(now + SKEW + 1), aheadMs: SKEW + 1, maxClockSkewMs: SKEW });
      return true;
    });
    await assert.rejects(storage.put('p', record('ffffffffffff.000000.zzzz'), 'replica_tcp'), VersionFromFuture);
    assert.equal(storage.get('p'), null);
    assert.deepEqual(refusals, [['replica_http', 1], ['replica_tcp', 1]]);
    assert.deepEqual(await storage.put('p', record(at(now + SKEW))), { applied: true, version: at(now + SKEW) });
  });

  test('a refused version is accepted once the clock has caught up with it', async () => {
    const v = at(now + 30_000);
    await assert.rejects(storage.put('later', record(v)), VersionFromFuture);
    now += 25_000;
    assert.deepEqual(await storage.put('later', record(v)), { applied: true, version: v });
  });

  test('putMany applies the rest of a batch and counts what it refused', async () => {
    refusals.length = 0;
    const res = await storage.putMany([
      { key: 'm1', rec: record(at(now)) },
      { key: 'm2', rec: record(at(now + 60_000)) },
      { key: 'm3', rec: record(at(now - 5)) },
    ]);
    assert.deepEqual(res, { applied: 2, refused: 1 });
    assert.equal(storage.get('m2'), null);
    assert.ok(storage.get('m1') && storage.get('m3'));
    assert.deepEqual(await storage.putMany([{ key: 'm4', rec: record(at(now + 60_000)) }], 'sync_pull'), { applied: 0, refused: 1 });
    assert.deepEqual(refusals, [['sync_apply', 1], ['sync_pull', 1]]);
  });

  test('insertMany and insertRaw (a streamed range) leave future records out', async () => {
    refusals.length = 0;
    assert.deepEqual(
      await storage.insertMany([{ key: 'i1', rec: record(at(now)) }, { key: 'i2', rec: record('ffffffffffff.ffffff.zzzz') }]),
      { applied: 1, refused: 1 },
    );
    const raw = [
      { key: 'r1', bytes: encodeRecord(record(at(now - 1))) },
      { key: 'r2', bytes: encodeRecord(record(at(now + SKEW + 1000))) },
    ];
    assert.deepEqual(await storage.insertRaw(raw), { applied: 1, refused: 1 });
    assert.equal(storage.get('i2'), null);
    assert.equal(storage.get('r2'), null);
    assert.deepEqual(refusals, [['sync_stream', 1], ['sync_stream', 1]]);
  });
});

async function refusedMetric(url: string): Promise<Record<string, number>> {
  const text = await (await request(`${url}/metrics`)).body.text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^flexstore_versions_refused_total\{path="(\w+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

describe('a KV server refuses them on every path, and counts each by path', () => {
  let kv: RunningKvServer;
  /** A peer whose clock runs 60 s ahead: it holds records the server above must refuse. */
  let ahead: RunningKvServer;
  let tcpPort: number;
  const client = new RepairClient({ timeoutMs: 5000 });
  let tcp: TcpReplicaTransport;
  const forged = 'ffffffffffff.000000.zzzz';

  before(async () => {
    tcpPort = await freePort();
    const common = { port: 0, host: '127.0.0.1', registryUrl: 'http://127.0.0.1:9', antiEntropyIntervalMs: 0, logLevel: 'silent' as const };
    kv = await startKvServer({ ...common, dataDir: tempDir(), tcpPort });
    ahead = await startKvServer({ ...common, dataDir: tempDir(), clockOffsetMs: 60_000 });
    tcp = new TcpReplicaTransport({ resolvePort: () => tcpPort, timeoutMs: 5000 });
  });
  after(async () => {
    await tcp.close();
    await client.close();
    await Promise.all([kv.close(), ahead.close()]);
  });

  test('replica write over HTTP: 409 VERSION_FROM_FUTURE, nothing applied', async () => {
    const res = await request(`${kv.url}${KV_PATH}victim`, { method: 'PUT', headers: { [HEADER_VERSION]: forged }, body: 'forged' });
    const body = (await res.body.json()) as Record<string, unknown>;
    assert.equal(res.statusCode, 409);
    assert.equal(body.code, 'VERSION_FROM_FUTURE');
    assert.equal(body.success, false);
    assert.equal(body.version, forged);
    assert.equal((await request(`${kv.url}${KV_PATH}victim`)).statusCode, 404);
    assert.equal((await refusedMetric(kv.url)).replica_http, 1);
  });

  test('replica write over TCP: an ERROR reply, nothing applied', async () => {
    await assert.rejects(tcp.put(kv.url, 'victim-tcp', record(forged)), (err: unknown) => {
      assert.ok(err instanceof VersionFromFuture, String(err));
      assert.match((err as Error).message, /VERSION_FROM_FUTURE/);
      return true;
    });
    assert.equal(await tcp.get(kv.url, 'victim-tcp'), null);
    // The connection stays usable: a refusal is an answer, not a protocol error.
    const ok = stamped(new HybridClock('gw'), 'fine');
    assert.equal((await tcp.put(kv.url, 'victim-tcp', ok)).applied, true);
    assert.equal((await refusedMetric(kv.url)).replica_tcp, 1);
  });

  test('apply (anti-entropy push, hint delivery): the rest applies, the answer says how many were refused', async () => {
    const clock = new HybridClock('peer');
    const records = [{ key: 'a1', ...stamped(clock, 'one') }, { key: 'a2', ...record(forged) }, { key: 'a3', ...stamped(clock, 'three') }];
    const res = await request(`${kv.url}/internal/sync/apply`, { method: 'POST', headers: { 'content-type': MSGPACK }, body: packr.pack({ records }) });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(packr.unpack(Buffer.from(await res.body.arrayBuffer())), { applied: 2, refused: 1 });
    assert.equal((await client.fetch(kv.url, ['a1', 'a2', 'a3'])).map((r) => r.key).join(), 'a1,a3');
    assert.equal((await refusedMetric(kv.url)).sync_apply, 1);
  });

  test('a range streamed from a peer, and keys pulled from it, leave its future records out', async () => {
    // The peer 60 s ahead stamps and accepts versions 60 s past real time.
    const aheadClock = new HybridClock('fast', () => Date.now() + 60_000);
    const fresh = [0, 1, 2].map((i) => ({ key: `s/${i}`, ...stamped(aheadClock, `v${i}`) }));
    const normal = { key: 's/ok', ...stamped(new HybridClock('slow'), 'ok') };
    assert.equal(await client.apply(ahead.url, [...fresh, normal]), 4);

    const refusals: Array<[WriteSource, number]> = [];
    const local = Storage.open(tempDir(), { onVersionRefused: (s, n) => refusals.push([s, n]) });
    try {
      const sync = async () => {
        const transfer = new PeerTransfer({ storage: local, client, peerUrl: ahead.url, onPulled: () => {}, onPushed: () => {} });
        await repairRange({ start: 0n, end: HASH_SPACE_MAX, push: false }, local, client, ahead.url, transfer, new AbortController().signal);
        await transfer.finish();
      };
      // Nothing held locally: the range is streamed.
      await sync();
      assert.deepEqual(refusals, [['sync_stream', 3]]);
      assert.ok(local.get('s/ok'));
      for (const r of fresh) assert.equal(local.get(r.key), null);
      // Now the range is compared key by key and the peer's newer keys pulled.
      await sync();
      assert.deepEqual(refusals, [['sync_stream', 3], ['sync_pull', 3]]);
      for (const r of fresh) assert.equal(local.get(r.key), null);
    } finally {
      await local.close();
    }
  });
});
