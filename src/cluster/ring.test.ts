import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Ring, DEFAULT_VNODES } from './ring.js';
import { hash64 } from './hash.js';

// Placement is the contract between processes and releases. If one of these
// golden answers changes, data written by an older release would be looked for
// on the wrong servers: change placement only with a migration plan.
test('golden: hash64 is MD5-based and stable', () => {
  assert.equal(hash64('').toString(16), 'd41d8cd98f00b204');
  assert.equal(hash64('mykey').toString(16), '9adbe0b3033881f8');
  assert.equal(hash64('kv1#0').toString(16), '23f87e2da70eb029');
});

test('golden: default vnodes', () => {
  assert.equal(DEFAULT_VNODES, 256);
});

test('golden: key → replica ids, three members', () => {
  const ring = new Ring(['kv1', 'kv2', 'kv3']);
  const golden: Array<[string, string[]]> = [
    ['mykey', ['kv1', 'kv3', 'kv2']],
    ['user:42', ['kv3', 'kv2', 'kv1']],
    ['a', ['kv1', 'kv2', 'kv3']],
    ['🙂/emoji', ['kv3', 'kv1', 'kv2']],
    ['long/key/with/slashes', ['kv2', 'kv3', 'kv1']],
    ['x'.repeat(1024), ['kv3', 'kv1', 'kv2']],
  ];
  for (const [key, ids] of golden) assert.deepEqual(ring.preferenceList(key, 3), ids, key);
});

test('golden: key → replica ids, five generated ids', () => {
  const ring = new Ring(['kv-3f9a1c0e7b21', 'kv-8d02be44a9c5', 'kv-a1b2c3d4e5f6', 'kv-0c1d2e3f4a5b', 'kv-77aa88bb99cc']);
  const golden: Array<[string, string[]]> = [
    ['mykey', ['kv-77aa88bb99cc', 'kv-0c1d2e3f4a5b', 'kv-3f9a1c0e7b21']],
    ['user:42', ['kv-a1b2c3d4e5f6', 'kv-0c1d2e3f4a5b', 'kv-8d02be44a9c5']],
    ['a', ['kv-0c1d2e3f4a5b', 'kv-3f9a1c0e7b21', 'kv-a1b2c3d4e5f6']],
    ['🙂/emoji', ['kv-77aa88bb99cc', 'kv-8d02be44a9c5', 'kv-a1b2c3d4e5f6']],
    ['long/key/with/slashes', ['kv-77aa88bb99cc', 'kv-3f9a1c0e7b21', 'kv-a1b2c3d4e5f6']],
  ];
  for (const [key, ids] of golden) assert.deepEqual(ring.preferenceList(key, 3), ids, key);
});

test('placement ignores member order and duplicates', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.stringMatching(/^[a-z0-9-]{1,12}$/), { minLength: 1, maxLength: 6 }),
      fc.string(),
      fc.integer({ min: 1, max: 5 }),
      (ids, key, n) => {
        const a = new Ring(ids, 32);
        const b = new Ring([...ids].reverse().concat(ids), 32);
        assert.deepEqual(a.preferenceList(key, n), b.preferenceList(key, n));
      },
    ),
    { numRuns: 200 },
  );
});

test('preference lists are distinct members, capped at the member count', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.stringMatching(/^[a-z0-9]{1,8}$/), { minLength: 0, maxLength: 5 }),
      fc.string(),
      fc.integer({ min: 0, max: 7 }),
      (ids, key, n) => {
        const list = new Ring(ids, 16).preferenceList(key, n);
        assert.equal(list.length, Math.min(n, ids.length));
        assert.equal(new Set(list).size, list.length);
        for (const id of list) assert.ok(ids.includes(id));
      },
    ),
    { numRuns: 300 },
  );
});

function primaryCounts(ring: Ring, keys: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const k of keys) {
    const p = ring.preferenceList(k, 1)[0]!;
    counts.set(p, (counts.get(p) ?? 0) + 1);
  }
  return counts;
}

const KEYS = Array.from({ length: 30_000 }, (_, i) => `key-${i}`);

test('balance: three members each own 33% ± 5% of keys', () => {
  for (const ids of [['kv1', 'kv2', 'kv3'], ['kv-3f9a1c0e7b21', 'kv-8d02be44a9c5', 'kv-a1b2c3d4e5f6']]) {
    const counts = primaryCounts(new Ring(ids), KEYS);
    for (const id of ids) {
      const share = (counts.get(id) ?? 0) / KEYS.length;
      assert.ok(Math.abs(share - 1 / 3) <= 0.05, `${id} owns ${(share * 100).toFixed(1)}%`);
    }
    const own = new Ring(ids).ownership();
    const total = Object.values(own).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(total - 1) < 1e-9);
  }
});

test('minimal movement: a joining member takes about 1/(n+1) of keys, only from others to itself', () => {
  const before = new Ring(['kv1', 'kv2', 'kv3']);
  const after = new Ring(['kv1', 'kv2', 'kv3', 'kv4']);
  let moved = 0;
  for (const k of KEYS) {
    const a = before.preferenceList(k, 1)[0];
    const b = after.preferenceList(k, 1)[0];
    if (a !== b) {
      moved++;
      assert.equal(b, 'kv4', 'a key may only move to the new member');
    }
  }
  const fraction = moved / KEYS.length;
  assert.ok(Math.abs(fraction - 1 / 4) < 0.06, `moved ${(fraction * 100).toFixed(1)}%`);

  // With N=3 the new member joins about 3/4 of preference lists and each
  // changed list loses exactly one old member.
  for (const k of KEYS.slice(0, 2000)) {
    const a = new Set(before.preferenceList(k, 3));
    const b = after.preferenceList(k, 3);
    const lost = [...a].filter((id) => !b.includes(id));
    assert.ok(lost.length <= 1);
    if (lost.length === 1) assert.ok(b.includes('kv4'));
  }
});
