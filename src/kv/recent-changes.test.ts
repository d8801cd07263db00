import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DigestBuckets } from './hash-index-codec.js';
import { RecentChanges } from './recent-changes.js';

const MAX = (1n << 64n) - 1n;

function change(hash: bigint, hi: number, lo: number) {
  const keyHash = Buffer.alloc(8);
  keyHash.writeBigUInt64BE(hash);
  return { bucket: DigestBuckets.bucketOf(hash), keyHash, hi: hi >>> 0, lo: lo >>> 0 };
}

test('range() is the XOR of the unexpired changes whose hash is in the range, whole or partial buckets', () => {
  const arb = fc.record({
    changes: fc.array(
      fc.record({ hash: fc.bigInt({ min: 0n, max: MAX }), hi: fc.integer({ min: 0, max: 0xffffffff }), lo: fc.integer({ min: 0, max: 0xffffffff }), at: fc.integer({ min: 0, max: 100 }) }),
      { maxLength: 60 },
    ),
    ranges: fc.array(fc.tuple(fc.bigInt({ min: 0n, max: MAX }), fc.bigInt({ min: 0n, max: MAX })), { minLength: 1, maxLength: 8 }),
    now: fc.integer({ min: 0, max: 150 }),
  });
  fc.assert(
    fc.property(arb, ({ changes, ranges, now }) => {
      let clock = 0;
      const recent = new RecentChanges(50, () => clock);
      const sorted = [...changes].sort((a, b) => a.at - b.at);
      for (const c of sorted) {
        clock = c.at;
        recent.add([change(c.hash, c.hi, c.lo)]);
      }
      clock = Math.max(clock, now);
      for (const [a, b] of ranges) {
        const [start, end] = a <= b ? [a, b] : [b, a];
        let hi = 0;
        let lo = 0;
        for (const c of sorted) {
          if (c.at <= clock - 50 || c.hash < start || c.hash > end) continue;
          hi = (hi ^ c.hi) >>> 0;
          lo = (lo ^ c.lo) >>> 0;
        }
        assert.deepEqual(recent.range(start, end), { hi, lo });
      }
    }),
    { numRuns: 300 },
  );
});

test('changes expire after the window, and a window of 0 keeps nothing', () => {
  let clock = 1000;
  const recent = new RecentChanges(100, () => clock);
  recent.add([change(5n, 1, 2), change(MAX, 3, 4)]);
  assert.equal(recent.size, 2);
  assert.deepEqual(recent.range(0n, MAX), { hi: 1 ^ 3, lo: 2 ^ 4 });
  clock = 1099;
  assert.deepEqual(recent.range(0n, 10n), { hi: 1, lo: 2 });
  clock = 1100;
  assert.deepEqual(recent.range(0n, MAX), { hi: 0, lo: 0 });
  assert.equal(recent.size, 0);

  const none = new RecentChanges(0, () => clock);
  none.add([change(5n, 1, 2)]);
  assert.equal(none.size, 0);
  assert.deepEqual(none.range(0n, MAX), { hi: 0, lo: 0 });
});
