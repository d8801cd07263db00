import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HybridClock, compareVersions, formatVersion, isVersion, parseVersion } from './hlc.js';

test('versions are strictly increasing even when the wall clock stalls or goes back', () => {
  let wall = 1_700_000_000_000;
  const steps = [0, 0, 5, -100, 0, 1, -5000, 10];
  let i = 0;
  const clock = new HybridClock('gw1', () => (wall += steps[i++ % steps.length]!));
  let prev = clock.next();
  for (let n = 0; n < 10_000; n++) {
    const v = clock.next();
    assert.ok(v > prev, `${v} > ${prev}`);
    prev = v;
  }
});

test('observe moves the clock past a version from elsewhere', () => {
  const clock = new HybridClock('gw1', () => 1000);
  const future = formatVersion({ wall: 5000, counter: 7 }, 'gw2');
  clock.observe(future);
  const v = clock.next();
  assert.ok(compareVersions(v, future) > 0);
  assert.deepEqual(parseVersion(v), { wall: 5000, counter: 8 });
});

test('string order equals (wall, counter, id) order', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 47 }),
      fc.integer({ min: 0, max: 0xffffff }),
      fc.integer({ min: 0, max: 2 ** 47 }),
      fc.integer({ min: 0, max: 0xffffff }),
      (w1, c1, w2, c2) => {
        const a = formatVersion({ wall: w1, counter: c1 }, 'a');
        const b = formatVersion({ wall: w2, counter: c2 }, 'a');
        const expected = w1 !== w2 ? Math.sign(w1 - w2) : Math.sign(c1 - c2);
        assert.equal(Math.sign(compareVersions(a, b)), expected);
        assert.deepEqual(parseVersion(a), { wall: w1, counter: c1 });
      },
    ),
  );
});

test('two gateways in the same millisecond produce distinct, ordered versions', () => {
  const a = new HybridClock('gw-a', () => 42).next();
  const b = new HybridClock('gw-b', () => 42).next();
  assert.notEqual(a, b);
  assert.ok(a < b);
});

test('isVersion rejects malformed strings and bad ids', () => {
  assert.ok(isVersion(formatVersion({ wall: 1, counter: 2 }, 'x')));
  for (const bad of ['', 'abc', '0000000000001.000002.x', '000000000001.000002.', '000000000001.000002.a b', 42]) {
    assert.equal(isVersion(bad), false, String(bad));
  }
  assert.throws(() => new HybridClock('bad id'));
});
