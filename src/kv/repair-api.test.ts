import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { hash64 } from '../cluster/hash.js';
import { HybridClock } from '../cluster/hlc.js';
import { HASH_SPACE_MAX } from '../cluster/placement.js';
import { startKvServer, type RunningKvServer } from './server.js';
import { RepairClient } from './repair-client.js';
import { RecordCodec, encodeRecord } from './record-codec.js';
import { MSGPACK, packr, type RepairRecord } from './repair-wire.js';
import { stamped } from '../test/support/index.js';

/**
 * The repair API of one KV server, through RepairClient and raw requests. No
 * registry runs: the server serves while its registration keeps retrying.
 */

const root = mkdtempSync(join(tmpdir(), 'flexstore-repair-api-'));
const client = new RepairClient({ timeoutMs: 5000 });
const clock = new HybridClock('apitest');
let kv: RunningKvServer;

const rec = (key: string, value: string, tombstone = false): RepairRecord => ({ key, ...stamped(clock, value, tombstone) });

before(async () => {
  kv = await startKvServer({
    port: 0,
    host: '127.0.0.1',
    dataDir: join(root, 'kv'),
    registryUrl: 'http://127.0.0.1:9',
    antiEntropyIntervalMs: 0,
    logLevel: 'silent',
  });
});

after(async () => {
  await kv.close();
  await client.close();
  rmSync(root, { recursive: true, force: true });
});

describe('repair API', () => {
  const records = Array.from({ length: 120 }, (_, i) => rec(`s/${i}`, `v${i}`, i % 9 === 0));

  test('apply stores records last-writer-wins and says how many applied', async () => {
    assert.equal(await client.apply(kv.url, records), 120);
    assert.equal(await client.apply(kv.url, records.slice(0, 10)), 0, 'the same versions again change nothing');
    const older = { ...records[1]!, value: Buffer.from('older'), version: '000000000001.000000.old' };
    assert.equal(await client.apply(kv.url, [older]), 0);
  });

  test('entries pages through a range in hash order', async () => {
    const seen: string[] = [];
    let afterKey: string | undefined;
    for (;;) {
      const page = await client.entries(kv.url, { start: 0n, end: HASH_SPACE_MAX, limit: 25, ...(afterKey && { after: afterKey }) });
      seen.push(...page.entries.map((e) => e.key));
      if (!page.more) break;
      afterKey = page.entries[page.entries.length - 1]!.key;
    }
    const expected = records.map((r) => r.key).sort((a, b) => {
      const ha = hash64(a);
      const hb = hash64(b);
      return ha < hb ? -1 : ha > hb ? 1 : a < b ? -1 : 1;
    });
    assert.deepEqual(seen, expected);
    const one = hash64('s/5');
    const narrow = await client.entries(kv.url, { start: one, end: one, limit: 10 });
    assert.deepEqual(narrow.entries, [{ key: 's/5', version: records[5]!.version, tombstone: false }]);
  });

  test('range pages through a range in hash order, records as stored', async () => {
    const codec = new RecordCodec();
    const seen: RepairRecord[] = [];
    let afterKey: string | undefined;
    for (;;) {
      const page = await client.range(kv.url, { start: 0n, end: HASH_SPACE_MAX, limit: 25, ...(afterKey && { after: afterKey }) });
      assert.ok(page, 'the server serves the range endpoint');
      for (const { key, bytes } of page.raw) {
        assert.ok(bytes.equals(encodeRecord(codec.decode(bytes))), 'the bytes are the stored encoding');
        seen.push({ key, ...codec.decode(bytes) });
      }
      if (!page.more) break;
      afterKey = page.raw[page.raw.length - 1]!.key;
    }
    const byHash = (a: string, b: string) => {
      const ha = hash64(a);
      const hb = hash64(b);
      return ha < hb ? -1 : ha > hb ? 1 : a < b ? -1 : 1;
    };
    assert.deepEqual(seen.map((r) => r.key), records.map((r) => r.key).sort(byHash));
    for (const r of seen) assert.deepEqual(r, records.find((x) => x.key === r.key));
    const one = hash64('s/5');
    const narrow = await client.range(kv.url, { start: one, end: one, limit: 10 });
    assert.deepEqual(narrow, { raw: [{ key: 's/5', bytes: encodeRecord(records[5]!) }], more: false });
  });

  test('digests answer per range, in order, and match between equal replicas', async () => {
    const ranges: Array<[bigint, bigint]> = [[0n, HASH_SPACE_MAX], [0n, 0n], [hash64('s/5'), hash64('s/5')]];
    const digests = await client.digests(kv.url, ranges);
    assert.equal(digests.length, 3);
    assert.match(digests[0]!, /^[0-9a-f]{16}$/);
    assert.equal(digests[1], '0000000000000000', 'an empty range XORs to zero');
    assert.notEqual(digests[2], digests[1]);
    // This server runs without anti-entropy, so its settle window is 0: settled digests are the current ones.
    assert.deepEqual(await client.digests(kv.url, ranges, true), digests);
  });

  test('fetch returns the records held, values as bytes', async () => {
    const got = await client.fetch(kv.url, ['s/1', 'nope', 's/9']);
    assert.deepEqual(got.map((r) => r.key), ['s/1', 's/9']);
    assert.deepEqual(got[0], records[1]);
    assert.equal(got[1]!.tombstone, true);
  });

  test('fetch answers stop near 4 MiB of values and the client follows next', async () => {
    const big = Array.from({ length: 6 }, (_, i) => ({ ...rec(`big/${i}`, ''), value: Buffer.alloc(1024 * 1024, i) }));
    assert.equal(await client.apply(kv.url, big), 6);
    const keys = big.map((r) => r.key);
    const res = await request(`${kv.url}/internal/sync/fetch`, {
      method: 'POST',
      headers: { 'content-type': MSGPACK },
      body: packr.pack({ keys }),
    });
    const first = packr.unpack(Buffer.from(await res.body.arrayBuffer())) as { records: unknown[]; next?: number };
    assert.equal(first.records.length, 4);
    assert.equal(first.next, 4);
    const all = await client.fetch(kv.url, keys);
    assert.deepEqual(all.map((r) => r.key), keys);
    assert.ok(all.every((r, i) => r.value.equals(big[i]!.value)));
    // The range endpoint keeps to the same budget.
    let pages = 0;
    let bigSeen = 0;
    let afterKey: string | undefined;
    for (;;) {
      const page = (await client.range(kv.url, { start: 0n, end: HASH_SPACE_MAX, limit: 10_000, ...(afterKey && { after: afterKey }) }))!;
      pages++;
      const bytes = page.raw.reduce((n, r) => n + r.bytes.length, 0);
      assert.ok(bytes <= 5 * 1024 * 1024, `a range page holds ${bytes} bytes`);
      bigSeen += page.raw.filter((r) => r.key.startsWith('big/')).length;
      if (!page.more) break;
      afterKey = page.raw[page.raw.length - 1]!.key;
    }
    assert.equal(bigSeen, 6);
    assert.ok(pages >= 2, 'six 1 MiB values take more than one page');
  });

  test('JSON requests get JSON answers; apply insists on MessagePack', async () => {
    const res = await request(`${kv.url}/internal/sync/digests`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ranges: [['0', 'ffffffffffffffff']] }),
    });
    assert.equal(res.statusCode, 200);
    const body = (await res.body.json()) as { digests: string[] };
    assert.equal(body.digests.length, 1);
    const apply = await request(`${kv.url}/internal/sync/apply`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ records: [] }),
    });
    assert.equal(apply.statusCode, 400);
    assert.equal(((await apply.body.json()) as { code: string }).code, 'INVALID_REQUEST');
  });

  test('malformed requests are 400 INVALID_REQUEST', async () => {
    const bad = async (path: string, body: unknown) => {
      const res = await request(`${kv.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': MSGPACK },
        body: packr.pack(body),
      });
      assert.equal(res.statusCode, 400, `${path} ${JSON.stringify(body)}`);
      await res.body.dump();
    };
    await bad('/internal/sync/digests', { ranges: [['10', '01']] });
    await bad('/internal/sync/digests', { ranges: [['xyz', '01']] });
    await bad('/internal/sync/digests', { ranges: [['01', '10']], settled: 'yes' });
    await bad('/internal/sync/entries', { start: '0', end: 'ff', limit: 0 });
    await bad('/internal/sync/fetch', { keys: [''] });
    await bad('/internal/sync/apply', { records: [{ key: 'k', version: 'nope', tombstone: false, contentType: '', value: Buffer.alloc(0) }] });
    await bad('/internal/hints', { target: 'bad id!', keys: ['k'] });
    const wrongMethod = await request(`${kv.url}/internal/sync/entries`);
    assert.equal(wrongMethod.statusCode, 405);
    await wrongMethod.body.dump();
  });

  test('range resolves null for a peer that predates it (404), so callers compare entries instead', async () => {
    const old = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"NOT_FOUND","message":"no such route"}}');
    });
    await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(old.address() as AddressInfo).port}`;
      assert.equal(await client.range(url, { start: 0n, end: HASH_SPACE_MAX, limit: 10 }), null);
      await assert.rejects(client.entries(url, { start: 0n, end: HASH_SPACE_MAX, limit: 10 }), /answered 404/);
    } finally {
      await new Promise<void>((resolve) => old.close(() => resolve()));
    }
  });

  test('health-check?gc=1 answers like health-check (it collects garbage only under --expose-gc)', async () => {
    for (const path of ['/health-check', '/health-check?gc=1']) {
      const res = await request(`${kv.url}${path}`);
      assert.equal(res.statusCode, 200);
      const body = (await res.body.json()) as { status: string; memory: { heapUsed: number } };
      assert.equal(body.status, 'ok');
      assert.ok(body.memory.heapUsed > 0);
    }
  });

  test('status reports transfer progress', async () => {
    const res = await request(`${kv.url}/internal/sync/status`);
    const body = (await res.body.json()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['hintsPending', 'keysMoved', 'keysMovedTotal', 'rangesDone', 'rangesTotal', 'syncedEpoch']);
    assert.deepEqual(body, kv.progress());
  });
});
