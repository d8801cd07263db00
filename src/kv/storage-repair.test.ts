import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { open } from 'lmdb';
import { hash64 } from '../cluster/hash.js';
import { HASH_SPACE_MAX } from '../cluster/placement.js';
import type { ReplicaRecord } from '../cluster/types.js';
import { digestHex, entryHash, keyHashBytes } from './hash-index-codec.js';
import { InvalidRequest } from '../cluster/errors.js';
import { Storage, type HashEntry } from './storage.js';
import { record, tempDirs, tombstone, version as v } from '../test/support/index.js';

const tempDir = tempDirs('flexstore-sync-');

const rec = (version: string, deleted = false, value = 'x'): ReplicaRecord => (deleted ? tombstone(version) : record(version, value));

/** A closed data dir holding n keys `${prefix}${i}` (every tombEvery-th a tombstone), and its full-range digest. */
async function seededDir(prefix: string, n: number, tombEvery: number): Promise<{ dir: string; digest: string[] }> {
  const dir = tempDir();
  const s = Storage.open(dir);
  const keys = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  await s.putMany(keys.map((key, i) => ({ key, rec: rec(v(100 + i), i % tombEvery === 0) })));
  const digest = s.digests([[0n, HASH_SPACE_MAX]]);
  await s.close();
  return { dir, digest };
}

/** Every record as the records db holds it, by key. */
function allRecords(s: Storage): Map<string, { version: string; tombstone: boolean }> {
  const out = new Map<string, { version: string; tombstone: boolean }>();
  let afterKey = '';
  for (;;) {
    const page = s.list({ after: afterKey, limit: 1000 });
    for (const e of page.entries) out.set(e.key, { version: e.version, tombstone: e.tombstone });
    if (!page.more) return out;
    afterKey = page.entries[page.entries.length - 1]!.key;
  }
}

function scanAll(s: Storage, start = 0n, end = HASH_SPACE_MAX): HashEntry[] {
  const out: HashEntry[] = [];
  s.scanHashRange(start, end, (e) => {
    out.push(e);
  });
  return out;
}

/** The digest computed the slow way, straight from the records. */
function bruteDigest(records: Map<string, { version: string }>, start: bigint, end: bigint): string {
  let hi = 0;
  let lo = 0;
  for (const [key, r] of records) {
    const h = hash64(key);
    if (h < start || h > end) continue;
    const e = entryHash(r.version, keyHashBytes(key));
    hi ^= e.hi;
    lo ^= e.lo;
  }
  return digestHex({ hi: hi >>> 0, lo: lo >>> 0 });
}

/** The index must list exactly the records, in (hash, key) order, with their versions. */
function assertIndexMatches(s: Storage): void {
  const records = allRecords(s);
  const index = scanAll(s);
  assert.equal(index.length, records.size, 'one index entry per record');
  for (let i = 0; i < index.length; i++) {
    const e = index[i]!;
    assert.equal(e.hash, hash64(e.key));
    assert.deepEqual({ version: e.version, tombstone: e.tombstone }, records.get(e.key), `index entry of ${e.key}`);
    if (i > 0) {
      const p = index[i - 1]!;
      assert.ok(p.hash < e.hash || (p.hash === e.hash && p.key < e.key), 'index is in (hash, key) order');
    }
  }
}

describe('hash index', () => {
  test('stays consistent with the records through random puts, overwrites and tombstones', async () => {
    const op = fc.record({
      key: fc.oneof(fc.constantFrom('a', 'b', 'c', 'key/1', 'é', '\u{1f600}', 'z\u0000z'), fc.string({ minLength: 1, maxLength: 8 })),
      wall: fc.integer({ min: 1, max: 50 }),
      tombstone: fc.boolean(),
      many: fc.boolean(),
    });
    const ranges = fc.array(fc.tuple(fc.bigInt({ min: 0n, max: HASH_SPACE_MAX }), fc.bigInt({ min: 0n, max: HASH_SPACE_MAX })), { maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), ranges, async (ops, rs) => {
        const dir = tempDir();
        let s = Storage.open(dir);
        try {
          const batch: Array<{ key: string; rec: ReplicaRecord }> = [];
          for (const o of ops) {
            const r = rec(v(o.wall, 0, 'g1'), o.tombstone, `${o.key}@${o.wall}`);
            if (o.many) batch.push({ key: o.key, rec: r });
            else await s.put(o.key, r);
          }
          await s.putMany(batch);
          assertIndexMatches(s);
          const records = allRecords(s);
          const asked: Array<[bigint, bigint]> = [[0n, HASH_SPACE_MAX], ...rs.map(([a, b]): [bigint, bigint] => (a <= b ? [a, b] : [b, a]))];
          // Ranges that start and end on key hashes hit the partial-bucket scans' edges.
          for (const key of records.keys()) asked.push([hash64(key), hash64(key)], [0n, hash64(key)]);
          const expected = asked.map(([a, b]) => bruteDigest(records, a, b));
          assert.deepEqual(s.digests(asked), expected);
          // The digest cache is rebuilt from the index on open.
          await s.close();
          s = Storage.open(dir);
          assert.deepEqual(s.digests(asked), expected);
        } finally {
          await s.close();
        }
      }),
      { numRuns: 40 },
    );
  });

  test('scanHashRange honours inclusive bounds and after/until cursors', async () => {
    const s = Storage.open(tempDir());
    try {
      const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
      await s.putMany(keys.map((key) => ({ key, rec: rec(v(1)) })));
      const sorted = scanAll(s);
      assert.equal(sorted.length, 200);
      const lo = sorted[50]!;
      const hi = sorted[120]!;
      const inRange = scanAll(s, lo.hash, hi.hash);
      assert.deepEqual(inRange.map((e) => e.key), sorted.slice(50, 121).map((e) => e.key));
      assert.equal(scanAll(s, lo.hash + 1n, hi.hash - 1n).length, 69);
      const page = s.hashRangePage(0n, HASH_SPACE_MAX, 10, { after: lo.key });
      assert.deepEqual(page.entries.map((e) => e.key), sorted.slice(51, 61).map((e) => e.key));
      assert.equal(page.more, true);
      const bounded = s.hashRangePage(0n, HASH_SPACE_MAX, 1000, { after: lo.key, until: hi.key });
      assert.deepEqual(bounded.entries.map((e) => e.key), sorted.slice(51, 121).map((e) => e.key));
      assert.equal(bounded.more, false);
      const last = s.hashRangePage(hi.hash, HASH_SPACE_MAX, 1000);
      assert.deepEqual(last.entries.map((e) => e.key), sorted.slice(120).map((e) => e.key));
      // An `after` below the range start is ignored; `until` past the end is capped by it.
      const capped = s.hashRangePage(lo.hash, hi.hash, 1000, { after: sorted[0]!.key, until: sorted[199]!.key });
      assert.equal(capped.entries.length, 71);
    } finally {
      await s.close();
    }
  });
});

describe('Storage sync operations', () => {
  test('putMany is last-writer-wins per record and counts what it applied', async () => {
    const s = Storage.open(tempDir());
    try {
      await s.put('a', rec(v(10)));
      await s.put('b', rec(v(10)));
      const { applied } = await s.putMany([
        { key: 'a', rec: rec(v(9), false, 'older') },
        { key: 'b', rec: rec(v(11), false, 'newer') },
        { key: 'c', rec: rec(v(5), true) },
        { key: 'c', rec: rec(v(4), false, 'older than the first c') },
        { key: 'd', rec: rec(v(1)) },
        { key: 'd', rec: rec(v(2), false, 'second d wins') },
      ]);
      assert.equal(applied, 4);
      assert.equal(s.get('a')?.version, v(10));
      assert.equal(s.get('b')?.value.toString(), 'newer');
      assert.deepEqual(s.get('c'), rec(v(5), true));
      assert.equal(s.get('d')?.value.toString(), 'second d wins');
      assert.deepEqual(s.getMany(['d', 'nope', 'a']).map((r) => r?.version ?? null), [v(2), null, v(10)]);
      await assert.rejects(s.putMany([{ key: 'e', rec: rec(v(1)) }, { key: 'f', rec: rec('bad') }]));
      assert.equal(s.get('e'), null, 'a bad record rejects the whole batch');
      assertIndexMatches(s);
    } finally {
      await s.close();
    }
  });

  test('insertMany inserts new keys and falls back to last-writer-wins for keys already held', async () => {
    const s = Storage.open(tempDir());
    const viaPutMany = Storage.open(tempDir());
    try {
      await s.put('held-old', rec(v(10)));
      await s.put('held-new', rec(v(30)));
      await viaPutMany.put('held-old', rec(v(10)));
      await viaPutMany.put('held-new', rec(v(30)));
      const batch = [
        ...Array.from({ length: 300 }, (_, i) => ({ key: `new/${i}`, rec: rec(v(20, i), i % 7 === 0) })),
        { key: 'held-old', rec: rec(v(20), false, 'streamed newer') },
        { key: 'held-new', rec: rec(v(20), false, 'streamed older') },
      ];
      const { applied } = await s.insertMany(batch);
      assert.equal(applied, 301, 'every new key and the newer version of a held key');
      assert.equal(s.get('held-old')?.value.toString(), 'streamed newer');
      assert.equal(s.get('held-new')?.version, v(30), 'an older streamed version never replaces a newer one');
      assert.equal(s.get('new/7')?.tombstone, true);
      await viaPutMany.putMany(batch);
      // Same records, same index and digests, whichever path wrote them.
      assertIndexMatches(s);
      assert.deepEqual(allRecords(s), allRecords(viaPutMany));
      const ranges: Array<[bigint, bigint]> = [[0n, HASH_SPACE_MAX], [0n, HASH_SPACE_MAX / 3n], [HASH_SPACE_MAX / 2n, HASH_SPACE_MAX]];
      assert.deepEqual(s.digests(ranges), viaPutMany.digests(ranges));
      assert.equal(s.digests(ranges)[0], bruteDigest(allRecords(s), 0n, HASH_SPACE_MAX));
      await assert.rejects(s.insertMany([{ key: 'e', rec: rec(v(1)) }, { key: 'f', rec: rec('bad') }]));
      assert.equal(s.get('e'), null, 'a bad record rejects the whole batch');
    } finally {
      await s.close();
      await viaPutMany.close();
    }
  });

  test('insertRaw stores another replica\'s records as they are stored there, and checks them first', async () => {
    const src = Storage.open(tempDir());
    const dst = Storage.open(tempDir());
    try {
      await src.putMany(Array.from({ length: 200 }, (_, i) => ({ key: `r/${i}`, rec: rec(v(50, i), i % 9 === 0, `value ${i}`) })));
      await dst.put('r/3', rec(v(99), false, 'newer here'));
      const raw: Array<{ key: string; bytes: Buffer }> = [];
      src.scanHashRangeRaw(0n, HASH_SPACE_MAX, (key, bytes) => {
        raw.push({ key, bytes });
      });
      assert.equal(raw.length, 200);
      assert.equal((await dst.insertRaw(raw)).applied, 199, 'all but the key held newer here');
      assert.equal(dst.get('r/3')?.value.toString(), 'newer here');
      for (let i = 0; i < 200; i++) if (i !== 3) assert.deepEqual(dst.get(`r/${i}`), src.get(`r/${i}`));
      assertIndexMatches(dst);
      assert.equal(dst.digests([[0n, HASH_SPACE_MAX]])[0], bruteDigest(allRecords(dst), 0n, HASH_SPACE_MAX));
      const good = raw[0]!.bytes;
      for (const bad of [Buffer.from([9, 0, 0, 0, 0]), good.subarray(0, 7), Buffer.concat([Buffer.from([1, 0, 3, 0, 0]), Buffer.from('bad')])]) {
        await assert.rejects(dst.insertRaw([{ key: 'fine', bytes: good }, { key: 'x', bytes: bad }]), InvalidRequest);
      }
      assert.equal(dst.get('fine'), null, 'a malformed record rejects the whole batch');
      const fresh = Storage.open(tempDir());
      try {
        const { applied } = await fresh.insertRaw(raw, (h) => h.tombstone);
        assert.equal(applied, 200 - 23, 'skipped records (here the 23 tombstones) are not written');
        assert.equal(fresh.get('r/0'), null);
        assert.equal(fresh.get('r/1')?.value.toString(), 'value 1');
      } finally {
        await fresh.close();
      }
    } finally {
      await src.close();
      await dst.close();
    }
  });

  test('purgeTombstones removes only tombstones older than the horizon, from both databases', async () => {
    const s = Storage.open(tempDir());
    try {
      const now = Date.now();
      await s.putMany([
        { key: 'old-tomb', rec: rec(v(now - 10_000), true) },
        { key: 'new-tomb', rec: rec(v(now), true) },
        { key: 'old-live', rec: rec(v(now - 10_000)) },
        ...Array.from({ length: 50 }, (_, i) => ({ key: `bulk${i}`, rec: rec(v(now - 20_000), true) })),
      ]);
      assert.equal(await s.purgeTombstones(now - 5_000), 51);
      assert.equal(s.get('old-tomb'), null);
      assert.equal(s.get('new-tomb')?.tombstone, true);
      assert.equal(s.get('old-live')?.tombstone, false);
      assertIndexMatches(s);
      assert.deepEqual(s.digests([[0n, HASH_SPACE_MAX]]), [bruteDigest(allRecords(s), 0n, HASH_SPACE_MAX)]);
      assert.equal(await s.purgeTombstones(now - 5_000), 0);
    } finally {
      await s.close();
    }
  });

  test('opening a data dir without the hash index builds it once', async () => {
    const { dir, digest } = await seededDir('m', 2500, 7);
    let s: Storage;
    // Make it look like a data dir written before the hash index existed.
    const root = open({ path: join(dir, 'flexstore.mdb'), maxDbs: 8 });
    root.openDB({ name: 'hash-index', keyEncoding: 'binary' }).clearSync();
    root.openDB<unknown, string>({ name: 'meta' }).putSync('layout', { format: 1, keyOrder: 'utf16' });
    await root.close();

    s = Storage.open(dir);
    try {
      assert.equal(s.migration?.fromFormat, 1);
      assert.equal(s.migration?.entries, 2500);
      assertIndexMatches(s);
      assert.deepEqual(s.digests([[0n, HASH_SPACE_MAX]]), digest);
      await s.close();
      s = Storage.open(dir);
      assert.equal(s.migration, null, 'the layout was bumped: no second build');
    } finally {
      await s.close();
    }
  });

  test('a format-2 data dir (versions kept in index entries) opens as is, its entry values ignored', async () => {
    const { dir, digest } = await seededDir('f', 500, 5);
    let s: Storage;
    // Format 2 kept [flags][entry hash][version] in each entry; plant stale ones.
    const root = open({ path: join(dir, 'flexstore.mdb'), maxDbs: 8 });
    const index = root.openDB<Buffer, Buffer>({ name: 'hash-index', keyEncoding: 'binary', encoding: 'binary' });
    root.transactionSync(() => {
      for (const { key } of index.getRange({})) index.putSync(key, Buffer.from('\u0001\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000000000000001.000000.stale'));
    });
    const meta = root.openDB<unknown, string>({ name: 'meta' });
    meta.putSync('layout', { format: 2, keyOrder: 'utf16' });
    await root.close();

    s = Storage.open(dir);
    try {
      assert.equal(s.migration, null, 'nothing to rebuild');
      assertIndexMatches(s);
      assert.deepEqual(s.digests([[0n, HASH_SPACE_MAX]]), digest);
      await s.put('f1', rec(v(999)));
      assert.equal(scanAll(s).find((e) => e.key === 'f1')?.version, v(999));
    } finally {
      await s.close();
    }
    const again = open({ path: join(dir, 'flexstore.mdb'), maxDbs: 8 });
    assert.deepEqual(again.openDB<unknown, string>({ name: 'meta' }).get('layout'), { format: 3, keyOrder: 'utf16' });
    // A layout from a newer FlexStore is refused, not guessed at.
    again.openDB<unknown, string>({ name: 'meta' }).putSync('layout', { format: 4, keyOrder: 'utf16' });
    await again.close();
    assert.throws(() => Storage.open(dir), /storage layout/);
  });

  test('hints: stored per target, paged, and deleted only when delivered at least as new', async () => {
    const s = Storage.open(tempDir());
    try {
      await s.put('k1', rec(v(5)));
      await s.put('k2', rec(v(5)));
      assert.equal(await s.hints.add('node-b', ['k1', 'k2', 'missing']), 3);
      assert.equal(await s.hints.add('node-a', ['k1']), 1);
      assert.deepEqual(s.hints.targets(), ['node-a', 'node-b']);
      assert.deepEqual(s.hints.page('node-b', 10), [
        { key: 'k1', version: v(5) },
        { key: 'k2', version: v(5) },
        { key: 'missing', version: '' },
      ]);
      assert.deepEqual(s.hints.page('node-b', 1, 'k1').map((h) => h.key), ['k2']);
      // k2 was written again (and re-hinted) after an older delivery read it.
      await s.put('k2', rec(v(6)));
      await s.hints.add('node-b', ['k2']);
      const removed = await s.hints.remove('node-b', [
        { key: 'k1', version: v(5) },
        { key: 'k2', version: v(5) },
        { key: 'missing', version: null },
      ]);
      assert.equal(removed, 2);
      assert.deepEqual(s.hints.page('node-b', 10), [{ key: 'k2', version: v(6) }]);
      assert.equal(s.hints.count(), 2);
      assert.equal(await s.hints.drop('node-a'), 1);
      assert.deepEqual(s.hints.targets(), ['node-b']);
      await assert.rejects(s.hints.add('not a node id', ['k1']));
    } finally {
      await s.close();
    }
  });
});
