import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HybridClock, compareVersions, formatVersion, isFromFuture, isVersion, parseVersion, versionAheadMs } from './hlc.js';

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

test('a version from the future is not adopted: the clock stays where it was', () => {
  let now = 1_700_000_000_000;
  const clock = new HybridClock('gw1', () => now, { maxSkewMs: 10_000 });
  const before = clock.next();
  assert.equal(clock.observe(formatVersion({ wall: now + 10_001, counter: 0 }, 'gw2')), false);
  assert.equal(clock.observe('ffffffffffff.ffffff.zzzz'), false);
  const after = clock.next();
  assert.deepEqual(parseVersion(after), { wall: now, counter: 1 }, `${before} then ${after}`);
  // At the limit it is adopted, and once real time passes it nothing is borrowed.
  assert.equal(clock.observe(formatVersion({ wall: now + 10_000, counter: 5 }, 'gw2')), true);
  assert.deepEqual(parseVersion(clock.next()), { wall: now + 10_000, counter: 6 });
  now += 20_000;
  assert.deepEqual(parseVersion(clock.next()), { wall: now, counter: 0 });
});

test('the counter never overflows its 6 digits: past ffffff the time field moves 1 ms', () => {
  const now = 1_700_000_000_000;
  const clock = new HybridClock('gw1', () => now);
  assert.equal(clock.observe(formatVersion({ wall: now, counter: 0xfffffe }, 'gw2')), true);
  const versions = [clock.next(), clock.next(), clock.next()];
  assert.deepEqual(versions.map((v) => parseVersion(v)), [
    { wall: now, counter: 0xffffff },
    { wall: now + 1, counter: 0 },
    { wall: now + 1, counter: 1 },
  ]);
  for (const v of versions) assert.ok(isVersion(v), v);
});

test('a version read once at the end of the clock no longer wedges later writes', () => {
  const clock = new HybridClock('gw1', () => 1_700_000_000_000);
  clock.observe('ffffffffffff.ffffff.zzzz');
  for (let i = 0; i < 3; i++) assert.ok(isVersion(clock.next()));
});

test('isFromFuture and versionAheadMs compare a version with a clock', () => {
  const v = formatVersion({ wall: 50_000, counter: 3 }, 'g');
  assert.equal(versionAheadMs(v, 40_000), 10_000);
  assert.equal(isFromFuture(v, 40_000, 10_000), false);
  assert.equal(isFromFuture(v, 39_999, 10_000), true);
  assert.equal(isFromFuture('not a version', 0, 0), false);
  assert.equal(versionAheadMs('not a version', 0), undefined);
});

/**
 * One clock driven by arbitrary steps: wall-clock moves (back too), versions
 * issued, versions from elsewhere observed (near, far ahead, at a full
 * counter). A model predicts each version exactly; and a version is never
 * further ahead of the latest real time seen than MAX_CLOCK_SKEW (an adopted
 * version) plus 1 ms per counter overflow.
 */
test('property: versions strictly increase, always parse, and run ahead of real time only by adopted versions and counter overflows', () => {
  const maxSkewMs = 10_000;
  const step = fc.oneof(
    fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: -20_000, max: 20_000 }) }),
    fc.record({ op: fc.constant('next' as const), n: fc.integer({ min: 1, max: 50 }) }),
    fc.record({
      op: fc.constant('observe' as const),
      ahead: fc.oneof(fc.integer({ min: -30_000, max: 30_000 }), fc.constant(2 ** 47)),
      counter: fc.oneof(fc.integer({ min: 0, max: 0xffffff }), fc.constant(0xffffff), fc.constant(0xfffff0)),
    }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
      let now = 1_700_000_000_000;
      const clock = new HybridClock('gw1', () => now, { maxSkewMs });
      let prev = '';
      let latestNow = now;
      let overflows = 0;
      // The model: the latest (wall, counter) the clock may hold.
      let bound = { wall: 0, counter: 0 };
      const newer = (a: { wall: number; counter: number }, b: { wall: number; counter: number }) =>
        a.wall !== b.wall ? a.wall > b.wall : a.counter > b.counter;
      for (const s of steps) {
        if (s.op === 'tick') {
          now = Math.max(0, now + s.ms);
          latestNow = Math.max(latestNow, now);
        } else if (s.op === 'observe') {
          const wall = Math.min(now + s.ahead, 0xffffffffffff);
          const seen = { wall: Math.max(0, wall), counter: s.counter };
          const adopted = clock.observe(formatVersion(seen, 'other'));
          assert.equal(adopted, seen.wall - now <= maxSkewMs);
          if (adopted && newer(seen, bound)) bound = seen;
        } else {
          for (let i = 0; i < s.n; i++) {
            const v = clock.next();
            assert.ok(isVersion(v), v);
            assert.ok(v > prev, `${v} > ${prev}`);
            prev = v;
            const ts = parseVersion(v)!;
            // Expected: the physical time if it is newer, else one past the bound (the counter, or 1 ms on overflow).
            const expected =
              now > bound.wall
                ? { wall: now, counter: 0 }
                : bound.counter < 0xffffff
                  ? { wall: bound.wall, counter: bound.counter + 1 }
                  : { wall: bound.wall + 1, counter: 0 };
            assert.deepEqual(ts, expected);
            if (now <= bound.wall && bound.counter === 0xffffff) overflows++;
            bound = ts;
            assert.ok(ts.wall - latestNow <= maxSkewMs + overflows, `${ts.wall - latestNow} ms ahead after ${overflows} overflows`);
          }
        }
      }
    }),
  );
});
