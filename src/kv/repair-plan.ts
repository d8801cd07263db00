import { comparisonsToAcquire } from '../cluster/consistency.js';
import type { Arc, Placement } from '../cluster/placement.js';
import { DigestBuckets } from './hash-index-codec.js';

/**
 * The pure part of an anti-entropy pass (anti-entropy.ts runs it): which arcs
 * to compare with which peer, which pieces of a differing arc to merge, and
 * how adjacent pieces combine into ranges to stream. No I/O here, so each
 * rule is unit-tested on its own (repair-plan.test.ts).
 */

/** The digest of a range holding no record (the XOR of nothing). */
export const EMPTY_DIGEST = '0000000000000000';

export interface PassPlan {
  /** Acquired arc index → comparisons with its read owners still needed. */
  needed: Map<number, number>;
  /** Peer id → indexes of the arcs this server shares with it; up peers only. */
  byPeer: Map<string, number[]>;
}

/**
 * For every arc whose read or target list holds `selfId`, the other members of
 * those lists that are up are its peers there. An arc in the target list but
 * not the read list is being acquired: it needs comparisons with enough read
 * owners to meet every acknowledged write (consistency.ts).
 */
export function planPass(placement: Placement, arcs: readonly Arc[], selfId: string, replicationFactor: number): PassPlan {
  const n = Math.min(replicationFactor, placement.readRing.size || 1);
  const needed = new Map<number, number>();
  const byPeer = new Map<string, number[]>();
  arcs.forEach((arc, i) => {
    const inRead = arc.read.includes(selfId);
    const inTarget = arc.target.includes(selfId);
    if (!inRead && !inTarget) return;
    if (inTarget && !inRead) needed.set(i, comparisonsToAcquire(n, arc.read.length));
    for (const id of new Set([...arc.read, ...arc.target])) {
      if (id === selfId || placement.members.get(id)?.state !== 'up') continue;
      let list = byPeer.get(id);
      if (!list) byPeer.set(id, (list = []));
      list.push(i);
    }
  });
  return { needed, byPeer };
}

/**
 * [start, end] cut at digest-bucket boundaries (DigestBuckets.BITS high bits
 * of the hash): each piece's digest comes from the bucket cache.
 */
export function splitAtBuckets(start: bigint, end: bigint): Array<[bigint, bigint]> {
  const span = 1n << BigInt(64 - DigestBuckets.BITS);
  const out: Array<[bigint, bigint]> = [];
  let from = start;
  while (from <= end) {
    const bucketEnd = (from / span) * span + span - 1n;
    const to = bucketEnd < end ? bucketEnd : end;
    out.push([from, to]);
    from = to + 1n;
  }
  return out;
}

export interface Piece {
  arc: number;
  start: bigint;
  end: bigint;
  /** False where the peer is acquiring the arc: it pulls, so pushing would send everything twice. */
  push: boolean;
  differs: boolean;
  /** Known empty on both sides. */
  empty: boolean;
}

export interface Classified {
  /** Every piece of every differing arc, in hash order. */
  pieces: Piece[];
  /** The pieces whose digests must still be compared (cut from arcs non-empty on both sides). */
  toCompare: Piece[];
  /** Arcs that need nothing: digests equal, or empty at a peer that pulls. */
  agreed: number;
}

/**
 * Turns the arcs shared with one peer and both sides' digests of them into
 * pieces. An arc empty on one side moves whole: there is nothing to narrow,
 * and its pieces' digests would only cost a round trip (if the empty side is
 * a peer acquiring the arc, it pulls: nothing to push or pull, nothing to
 * scan). Any other differing arc is cut at the digest buckets' edges and only
 * the buckets that differ are merged, so keys in flight under writes cost a
 * scan of a few buckets, not of whole arcs.
 */
export function classifyArcs(
  arcs: readonly Arc[],
  arcIdxs: readonly number[],
  peerId: string,
  remote: readonly string[],
  local: readonly string[],
): Classified {
  const pieces: Piece[] = [];
  const toCompare: Piece[] = [];
  let agreed = 0;
  arcIdxs.forEach((i, k) => {
    if (remote[k] === local[k]) {
      agreed++;
      return;
    }
    const arc = arcs[i]!;
    const push = arc.read.includes(peerId) || !arc.target.includes(peerId);
    if (remote[k] === EMPTY_DIGEST && !push) {
      agreed++;
    } else if (remote[k] === EMPTY_DIGEST || local[k] === EMPTY_DIGEST) {
      pieces.push({ arc: i, start: arc.start, end: arc.end, push, differs: true, empty: false });
    } else {
      for (const [start, end] of splitAtBuckets(arc.start, arc.end)) {
        const piece = { arc: i, start, end, push, differs: true, empty: false };
        pieces.push(piece);
        toCompare.push(piece);
      }
    }
  });
  return { pieces, toCompare, agreed };
}

/** Records the piece digests' comparison on the pieces themselves. */
export function markCompared(toCompare: readonly Piece[], remote: readonly string[], local: readonly string[]): void {
  toCompare.forEach((p, j) => {
    p.differs = remote[j] !== local[j];
    p.empty = !p.differs && local[j] === EMPTY_DIGEST;
  });
}

export interface PeerRange {
  start: bigint;
  end: bigint;
  push: boolean;
  /** Indexes of the arcs this range covers pieces of. */
  arcs: number[];
}

export interface MergePlan {
  /** Ranges to merge key by key, in hash order. */
  ranges: PeerRange[];
  /** Arc index → differing pieces of it (an arc is done when all are merged). */
  left: Map<number, number>;
  /** Arcs whose every piece agreed after all (a write landed meanwhile). */
  agreed: number;
}

/**
 * Adjacent differing pieces in the same direction become one range, so a fresh
 * replica pulls everything in a few long streams rather than thousands of
 * short ones. A piece empty on both sides may be run through at no cost, so a
 * sparse store is not cut into a stream per occupied bucket.
 */
export function mergePieces(pieces: readonly Piece[]): MergePlan {
  const left = new Map<number, number>();
  const ranges: PeerRange[] = [];
  for (const p of pieces) {
    const last = ranges[ranges.length - 1];
    const adjacent = last !== undefined && last.end + 1n === p.start;
    if (!p.differs) {
      if (adjacent && p.empty) last.end = p.end;
      continue;
    }
    left.set(p.arc, (left.get(p.arc) ?? 0) + 1);
    if (adjacent && last.push === p.push) {
      last.end = p.end;
      last.arcs.push(p.arc);
    } else {
      ranges.push({ start: p.start, end: p.end, push: p.push, arcs: [p.arc] });
    }
  }
  let agreed = 0;
  for (const i of new Set(pieces.map((p) => p.arc))) if (!left.has(i)) agreed++;
  return { ranges, left, agreed };
}
