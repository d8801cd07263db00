import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { InvalidKey, InvalidRequest } from '../cluster/errors.js';
import { hash64 } from '../cluster/hash.js';
import { record as rec, tempDirs, version as v } from '../test/support/index.js';
import { digestHex, entryHash, keyHashBytes } from './hash-index-codec.js';
import { Storage } from './storage.js';

const tempDir = tempDirs('flexstore-storage-');

/** JS string order: UTF-16 code units, what `<` does. */
function jsSorted(keys: string[]): string[] {
  return [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

describe('Storage', () => {
  let storage: Storage;
  before(() => {
    storage = Storage.open(tempDir());
  });
  after(() => storage.close());

  test('round-trips bytes, content type and tombstones', async () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    assert.deepEqual(await storage.put('bin', rec(v(1), all, { contentType: 'image/png' })), {
      applied: true,
      version: v(1),
    });
    const got = storage.get('bin');
    assert.ok(got);
    assert.ok(Buffer.isBuffer(got.value));
    assert.deepEqual(got, rec(v(1), all, { contentType: 'image/png' }));

    await storage.put('empty', rec(v(1), Buffer.alloc(0), { contentType: 'text/plain; charset=utf-8' }));
    assert.deepEqual(storage.get('empty'), rec(v(1), Buffer.alloc(0), { contentType: 'text/plain; charset=utf-8' }));

    await storage.put('bin', rec(v(2), Buffer.alloc(0), { tombstone: true }));
    assert.deepEqual(storage.get('bin'), rec(v(2), Buffer.alloc(0), { tombstone: true }));
    assert.equal(storage.get('never'), null);
  });

  test('returned values do not alias lmdb buffers', async () => {
    await storage.put('alias-a', rec(v(1), 'aaaa'));
    await storage.put('alias-b', rec(v(1), 'bbbb'));
    const a = storage.get('alias-a');
    storage.get('alias-b');
    assert.equal(a?.value.toString(), 'aaaa');
  });

  test('applies only newer versions (last writer wins)', async () => {
    await storage.put('lww', rec(v(10), 'ten'));
    assert.deepEqual(await storage.put('lww', rec(v(9), 'nine')), { applied: false, version: v(10) });
    assert.deepEqual(await storage.put('lww', rec(v(10), 'same')), { applied: false, version: v(10) });
    assert.equal(storage.get('lww')?.value.toString(), 'ten');
    assert.deepEqual(await storage.put('lww', rec(v(10, 1), 'later')), { applied: true, version: v(10, 1) });
    // The id breaks ties within one millisecond and counter.
    assert.deepEqual(await storage.put('lww', rec(v(10, 1, 'g2'), 'g2')), { applied: true, version: v(10, 1, 'g2') });
    assert.equal(storage.get('lww')?.value.toString(), 'g2');
  });

  test('concurrent puts of one key leave the newest', async () => {
    const versions = Array.from({ length: 100 }, (_, i) => v(1000 + i));
    const shuffled = [...versions].sort(() => Math.random() - 0.5);
    const results = await Promise.all(shuffled.map((ver) => storage.put('race', rec(ver, ver))));
    const newest = versions.at(-1)!;
    assert.equal(storage.get('race')?.version, newest);
    assert.equal(storage.get('race')?.value.toString(), newest);
    const newestResult = results[shuffled.indexOf(newest)];
    assert.deepEqual(newestResult, { applied: true, version: newest });
    for (const r of results) assert.ok(r.version <= newest);
  });

  test('rejects bad keys and versions', async () => {
    assert.throws(() => storage.get(''), InvalidKey);
    assert.throws(() => storage.get('k'.repeat(storage.maxKeyBytes + 1)), InvalidKey);
    await assert.rejects(storage.put('', rec(v(1))), InvalidKey);
    await assert.rejects(storage.put('k', rec('not-a-version')), InvalidRequest);
    await storage.put('k'.repeat(storage.maxKeyBytes), rec(v(1)));
    assert.equal(storage.get('k'.repeat(storage.maxKeyBytes))?.version, v(1));
  });
});

describe('Storage.list', () => {
  let storage: Storage;
  // Non-ASCII across all UTF-8 lengths, astral characters (where UTF-8 and
  // UTF-16 orders disagree), NULs and keys that are prefixes of each other.
  const keys = [
    'a', 'a\u0000', 'a\u0000b', 'a\u0001', 'ab', 'a/b', 'aa', 'Z', 'z', 'é', 'e\u0301', '\u07ff', '\u0800',
    '\ud7ff', '\ue000', '\uffff', '\u{10000}', '\u{1f600}', '\u{1f600}x', '\u{10ffff}', '日本', '日本語', '\u0000',
    '\u0004', '\u001b', ' ',
  ];
  before(async () => {
    storage = Storage.open(tempDir());
    await Promise.all(keys.map((k, i) => storage.put(k, rec(v(1, i), k, { tombstone: i % 5 === 0 }))));
  });
  after(() => storage.close());

  test('returns every key in JS string order with versions and tombstones', () => {
    const page = storage.list({ limit: 1000 });
    assert.equal(page.more, false);
    assert.deepEqual(
      page.entries.map((e) => e.key),
      jsSorted(keys),
    );
    for (const e of page.entries) {
      const i = keys.indexOf(e.key);
      assert.deepEqual(e, { key: e.key, version: v(1, i), tombstone: i % 5 === 0 });
    }
    assert.equal(storage.count(), keys.length);
  });

  test('pages with after and limit, flagging more', () => {
    const seen: string[] = [];
    let after = '';
    for (;;) {
      const page = storage.list({ after, limit: 4 });
      seen.push(...page.entries.map((e) => e.key));
      if (!page.more) break;
      assert.equal(page.entries.length, 4);
      after = page.entries.at(-1)!.key;
    }
    assert.deepEqual(seen, jsSorted(keys));
  });

  test('filters by prefix, with after inside and outside the prefix', () => {
    const withA = jsSorted(keys.filter((k) => k.startsWith('a')));
    assert.deepEqual(storage.list({ prefix: 'a', limit: 100 }).entries.map((e) => e.key), withA);
    assert.deepEqual(storage.list({ prefix: 'a', after: 'a\u0000', limit: 100 }).entries.map((e) => e.key), withA.slice(2));
    assert.deepEqual(storage.list({ prefix: 'a', after: '0', limit: 100 }).entries.map((e) => e.key), withA);
    assert.deepEqual(storage.list({ prefix: 'a', after: 'b', limit: 100 }).entries, []);
    const page = storage.list({ prefix: 'a', limit: withA.length });
    assert.equal(page.more, false);
    assert.equal(storage.list({ prefix: 'a', limit: withA.length - 1 }).more, true);
    assert.deepEqual(storage.list({ prefix: '日本', limit: 10 }).entries.map((e) => e.key), ['日本', '日本語']);
    assert.deepEqual(storage.list({ prefix: '\u{1f600}', limit: 10 }).entries.map((e) => e.key), ['\u{1f600}', '\u{1f600}x']);
    assert.deepEqual(storage.list({ prefix: 'nothing', limit: 10 }), { entries: [], more: false });
  });

  test('any set of keys, lone surrogates included, round-trips in JS order', async () => {
    const unit = fc.oneof(
      fc.constantFrom('a', 'b', '\u0000', '\u007f', '\u0080', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\uffff'),
      fc.constantFrom('\u{10000}', '\u{1f600}', '\u{10ffff}', '\ud800', '\udfff', '\ued00'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    );
    const dir = tempDir();
    const s = Storage.open(dir);
    try {
      await fc.assert(
        fc.asyncProperty(fc.uniqueArray(fc.string({ unit, minLength: 1, maxLength: 6 }), { maxLength: 30 }), async (ks) => {
          const prefix = `${Math.random()}/`;
          await Promise.all(ks.map((k) => s.put(prefix + k, rec(v(1), k))));
          const listed = s.list({ prefix, limit: 1000 }).entries.map((e) => e.key.slice(prefix.length));
          assert.deepEqual(listed, jsSorted(ks));
          for (const k of ks) assert.equal(s.get(prefix + k)?.value.toString(), Buffer.from(k).toString());
        }),
        { numRuns: 60 },
      );
    } finally {
      await s.close();
    }
  });
});

test('the stored version is the max of any sequence of puts', async () => {
  const s = Storage.open(tempDir());
  try {
    let round = 0;
    const version = fc
      .tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 3 }), fc.constantFrom('g1', 'g2', 'gateway-3'))
      .map(([wall, counter, id]) => v(wall, counter, id));
    await fc.assert(
      fc.asyncProperty(fc.array(version, { minLength: 1, maxLength: 30 }), fc.boolean(), async (versions, parallel) => {
        const key = `prop-${round++}`;
        if (parallel) await Promise.all(versions.map((ver) => s.put(key, rec(ver, ver))));
        else for (const ver of versions) await s.put(key, rec(ver, ver));
        const max = versions.reduce((a, b) => (b > a ? b : a));
        assert.equal(s.get(key)?.version, max);
        assert.equal(s.get(key)?.value.toString(), max);
      }),
      { numRuns: 100 },
    );
  } finally {
    await s.close();
  }
});

test('data survives close and reopen', async () => {
  const dir = tempDir();
  const first = Storage.open(dir);
  await first.put('kept', rec(v(5), 'value', { contentType: 'text/plain' }));
  await first.put('gone', rec(v(5), Buffer.alloc(0), { tombstone: true }));
  await first.close();
  await first.close();

  const second = Storage.open(dir);
  try {
    assert.deepEqual(second.get('kept'), rec(v(5), 'value', { contentType: 'text/plain' }));
    assert.equal(second.get('gone')?.tombstone, true);
    assert.equal(second.count(), 2);
    assert.deepEqual(await second.put('kept', rec(v(4), 'old')), { applied: false, version: v(5) });
  } finally {
    await second.close();
  }
});

test("sync 'interval': writes resolve, fsync() flushes, data survives close and reopen", async () => {
  const dir = tempDir();
  const first = Storage.open(dir, { sync: 'interval', syncIntervalMs: 5 });
  const keys = Array.from({ length: 50 }, (_, i) => `k${i}`);
  await Promise.all(keys.map((k) => first.put(k, rec(v(5), k))));
  await first.fsync();
  assert.deepEqual(await first.put('k0', rec(v(4), 'old')), { applied: false, version: v(5) });
  await first.close();

  const second = Storage.open(dir);
  try {
    assert.deepEqual(keys.filter((k) => second.get(k)?.value.toString() !== k), []);
    await second.fsync(); // a no-op with sync 'commit'
  } finally {
    await second.close();
  }
});

test('sync options are checked', () => {
  const dir = tempDir();
  assert.throws(() => Storage.open(dir, { sync: 'never' as 'commit' }), /sync must be commit or interval/);
  assert.throws(() => Storage.open(dir, { sync: 'interval', syncIntervalMs: 0 }), /syncIntervalMs/);
});

test('settled digests leave out the changes of the settle window, then catch up', async () => {
  const s = Storage.open(tempDir(), { settleWindowMs: 300 });
  try {
    const ranges = [[0n, (1n << 64n) - 1n], [0n, 1n << 62n], [1n << 40n, (1n << 63n) + 12345n]] as const;
    await s.putMany(Array.from({ length: 200 }, (_, i) => ({ key: `old${i}`, rec: rec(v(5), 'x') })));
    await new Promise((resolve) => setTimeout(resolve, 350));
    const before = s.digests(ranges);
    assert.deepEqual(s.digests(ranges, true), before, 'nothing recent: settled equals current');

    await s.putMany(Array.from({ length: 100 }, (_, i) => ({ key: `new${i}`, rec: rec(v(6), 'y') })));
    await s.put('old7', rec(v(7), 'z'));
    const current = s.digests(ranges);
    assert.notDeepEqual(current, before);
    assert.deepEqual(s.digests(ranges, true), before, 'within the window, settled digests are those from before the writes');

    const deadline = Date.now() + 5000;
    while (JSON.stringify(s.digests(ranges, true)) !== JSON.stringify(current)) {
      assert.ok(Date.now() < deadline, 'settled digests never caught up with the current ones');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await s.close();
  }
});

test('digests stay exact while keys change under cached partial-bucket digests', async () => {
  const s = Storage.open(tempDir());
  const MAX = (1n << 64n) - 1n;
  const clamp = (h: bigint) => (h < 0n ? 0n : h > MAX ? MAX : h);
  const bruteForce = (start: bigint, end: bigint): string => {
    let hi = 0;
    let lo = 0;
    s.scanHashRange(start, end, (e) => {
      const d = entryHash(e.version, keyHashBytes(e.key));
      hi = (hi ^ d.hi) >>> 0;
      lo = (lo ^ d.lo) >>> 0;
    });
    return digestHex({ hi, lo });
  };
  try {
    const keys = Array.from({ length: 12 }, (_, i) => `c${i}`);
    // Ranges that cut the buckets of the keys: each digest has partial-bucket scans.
    const ranges = keys.flatMap((k) => {
      const h = hash64(k);
      return [[clamp(h - 1000n), clamp(h + 1000n)], [clamp(h - (1n << 40n)), h], [h, clamp(h + 5n)]] as Array<[bigint, bigint]>;
    });
    let wall = 1;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 0, max: keys.length - 1 }), fc.boolean()), { minLength: 1, maxLength: 15 }), async (ops) => {
        for (const [i, tombstone] of ops) {
          await s.put(keys[i]!, rec(v(wall++), 'x', tombstone ? { tombstone: true, value: Buffer.alloc(0) } : {}));
          assert.deepEqual(s.digests(ranges), ranges.map(([a, b]) => bruteForce(a, b)));
        }
      }),
      { numRuns: 20 },
    );
  } finally {
    await s.close();
  }
});
