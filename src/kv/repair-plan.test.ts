import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { comparisonsToAcquire, majority, requiredReplicas } from '../cluster/consistency.js';
import { HASH_SPACE_MAX, Placement, type Arc } from '../cluster/placement.js';
import type { Member } from '../cluster/types.js';
import { EMPTY_DIGEST, classifyArcs, markCompared, mergePieces, planPass, splitAtBuckets, type Piece } from './repair-plan.js';

const SPAN = 1n << 48n; // one digest bucket
const member = (id: string, extra: Partial<Member> = {}): Member => ({
  id,
  url: `http://${id}`,
  state: 'up',
  lastHeartbeat: 0,
  registeredAt: 0,
  ...extra,
});
const arc = (start: bigint, end: bigint, read: string[], target = read): Arc => ({ start, end, read, target });

describe('quorum arithmetic', () => {
  test('an acquirer compares with enough owners to meet every majority-acknowledged write', () => {
    for (let n = 1; n <= 7; n++) {
      const c = comparisonsToAcquire(n, n);
      // Any c owners and any majority of n owners share a member.
      assert.ok(c + majority(n) > n, `n=${n}: ${c} comparisons miss a majority`);
      assert.ok(c >= 1 && c <= n);
    }
    assert.equal(comparisonsToAcquire(3, 3), 2);
    assert.equal(comparisonsToAcquire(5, 2), 2, 'capped at the owners there are');
    assert.deepEqual([requiredReplicas('one', 3), requiredReplicas('quorum', 3), requiredReplicas('all', 3)], [1, 2, 3]);
    assert.equal(requiredReplicas('one', 0), 0);
  });
});

describe('planPass', () => {
  test('a joiner must acquire the arcs it targets; up peers only; arcs without self are skipped', () => {
    const members = [member('a'), member('b'), member('c', { state: 'down' }), member('d', { phase: 'joining' })];
    const p = new Placement(members, 3, 16);
    const arcs = p.arcs();
    const plan = planPass(p, arcs, 'd', 3);
    assert.ok(plan.needed.size > 0);
    for (const [i, left] of plan.needed) {
      assert.ok(arcs[i]!.target.includes('d') && !arcs[i]!.read.includes('d'));
      assert.equal(left, comparisonsToAcquire(3, arcs[i]!.read.length));
    }
    assert.ok(!plan.byPeer.has('c'), 'a down peer is not compared with');
    assert.ok(!plan.byPeer.has('d'), 'never itself');
    for (const [peer, idxs] of plan.byPeer) {
      for (const i of idxs) {
        const a = arcs[i]!;
        assert.ok(a.read.includes('d') || a.target.includes('d'), 'only arcs self holds or acquires');
        assert.ok(a.read.includes(peer) || a.target.includes(peer), 'only arcs the peer holds or acquires');
      }
    }
    // An active member of a stable ring acquires nothing.
    const stable = new Placement([member('a'), member('b'), member('c')], 3, 16);
    assert.equal(planPass(stable, stable.arcs(), 'a', 3).needed.size, 0);
  });
});

describe('classifyArcs', () => {
  const arcs = [
    arc(0n, SPAN * 2n - 1n, ['me', 'p']), // equal digests
    arc(SPAN * 2n, SPAN * 4n - 1n, ['me', 'p']), // both non-empty, differ: cut into buckets
    arc(SPAN * 4n, SPAN * 5n - 1n, ['me', 'p']), // empty here: moves whole
    arc(SPAN * 5n, SPAN * 6n - 1n, ['me'], ['me', 'p']), // p acquires, p empty: nothing to do
  ];
  test('equal digests agree, non-empty differences are cut at buckets, an empty side moves whole, an empty acquirer is skipped', () => {
    const r = classifyArcs(arcs, [0, 1, 2, 3], 'p', ['aa', 'bb', 'cc', EMPTY_DIGEST], ['aa', 'dd', EMPTY_DIGEST, 'ee']);
    assert.equal(r.agreed, 2);
    assert.deepEqual(
      r.pieces.map((p) => [p.arc, p.start / SPAN, p.push]),
      [[1, 2n, true], [1, 3n, true], [2, 4n, true]],
    );
    assert.deepEqual(r.toCompare.map((p) => p.arc), [1, 1]);
  });
  test('no push to a peer that is acquiring the arc', () => {
    const r = classifyArcs(arcs, [3], 'p', ['ff'], ['ee']);
    assert.equal(r.pieces.length, 1);
    assert.equal(r.pieces[0]!.push, false);
  });
});

describe('mergePieces', () => {
  const piece = (arcIdx: number, bucket: bigint, over: Partial<Piece> = {}): Piece => ({
    arc: arcIdx,
    start: bucket * SPAN,
    end: bucket * SPAN + SPAN - 1n,
    push: true,
    differs: true,
    empty: false,
    ...over,
  });
  test('adjacent differing pieces join; empty-both pieces are run through; agreeing ones cut', () => {
    const pieces = [piece(0, 0n), piece(0, 1n), piece(0, 2n, { differs: false, empty: true }), piece(1, 3n), piece(1, 4n, { differs: false }), piece(1, 5n)];
    const m = mergePieces(pieces);
    assert.deepEqual(
      m.ranges.map((r) => [r.start / SPAN, (r.end + 1n) / SPAN, r.arcs]),
      [[0n, 4n, [0, 0, 1]], [5n, 6n, [1]]],
    );
    assert.deepEqual([...m.left], [[0, 2], [1, 2]]);
    assert.equal(m.agreed, 0);
  });
  test('a change of direction starts a new range; an arc whose pieces all agree counts as agreed', () => {
    const m = mergePieces([piece(0, 0n), piece(1, 1n, { push: false }), piece(2, 2n, { differs: false })]);
    assert.equal(m.ranges.length, 2);
    assert.equal(m.agreed, 1);
  });
  test('every differing piece is covered by exactly one range, and nothing else that differs', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ differs: fc.boolean(), empty: fc.boolean(), push: fc.boolean(), gap: fc.boolean() }), { maxLength: 40 }), (spec) => {
        let bucket = 0n;
        const pieces = spec.map((s, i) => {
          bucket += s.gap ? 2n : 1n;
          return piece(i % 3, bucket, { differs: s.differs, empty: !s.differs && s.empty, push: s.push });
        });
        markCompared([], [], []);
        const m = mergePieces(pieces);
        for (const p of pieces) {
          const covering = m.ranges.filter((r) => r.start <= p.start && p.end <= r.end);
          if (p.differs) {
            assert.equal(covering.length, 1);
            assert.equal(covering[0]!.push, p.push);
          } else if (!p.empty) assert.equal(covering.length, 0, 'a piece that agrees and holds keys is never rescanned');
        }
        const differing = pieces.filter((p) => p.differs).length;
        assert.equal([...m.left.values()].reduce((a, b) => a + b, 0), differing);
      }),
    );
  });
});

describe('markCompared', () => {
  test('a piece differs when the digests differ; it is empty when both are the empty digest', () => {
    const ps: Piece[] = [0n, 1n, 2n].map((b) => ({ arc: 0, start: b, end: b, push: true, differs: true, empty: false }));
    markCompared(ps, ['a', EMPTY_DIGEST, 'c'], ['a', EMPTY_DIGEST, 'd']);
    assert.deepEqual(ps.map((p) => [p.differs, p.empty]), [[false, false], [false, true], [true, false]]);
  });
});

describe('splitAtBuckets', () => {
  const SPAN = 1n << 48n; // 65,536 digest buckets over the 64-bit hash space
  test('cuts a range at bucket edges into contiguous pieces, each inside one bucket', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: HASH_SPACE_MAX }), fc.bigInt({ min: 0n, max: 1n << 50n }), (start, len) => {
        const end = start + len > HASH_SPACE_MAX ? HASH_SPACE_MAX : start + len;
        const pieces = splitAtBuckets(start, end);
        assert.equal(pieces[0]![0], start);
        assert.equal(pieces[pieces.length - 1]![1], end);
        pieces.forEach(([s, e], i) => {
          assert.ok(s <= e);
          assert.equal(s / SPAN, e / SPAN, 'one bucket per piece');
          if (i > 0) assert.equal(pieces[i - 1]![1] + 1n, s, 'no gap, no overlap');
        });
      }),
    );
    assert.equal(splitAtBuckets(0n, HASH_SPACE_MAX).length, 65_536);
    assert.deepEqual(splitAtBuckets(SPAN - 1n, SPAN), [[SPAN - 1n, SPAN - 1n], [SPAN, SPAN]]);
    assert.deepEqual(splitAtBuckets(5n, 5n), [[5n, 5n]]);
  });
});
