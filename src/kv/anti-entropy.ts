import type { Logger } from '../cluster/logger.js';
import { Placement, type Arc } from '../cluster/placement.js';
import type { Member, MemberView, TransferProgress } from '../cluster/types.js';
import { DigestBuckets } from './hash-index-codec.js';
import type { KvMetrics } from './metrics.js';
import { PeerTransfer, repairRange } from './range-repair.js';
import type { Storage } from './storage.js';
import type { RepairClient } from './repair-client.js';

/**
 * Anti-entropy and range acquisition: the loop that makes this KV server's
 * ranges agree with its peers'.
 *
 * A pass takes the member view as it is when the pass starts and builds its
 * Placement. For every arc whose read or target list holds this server, the
 * other members of those lists that are up are its peers there. Peer by peer,
 * one digests request covers all the arcs shared with that peer; each arc
 * whose digest differs is merged key by key (range-repair.ts) and the newer
 * side's records move. Passes run at start (a returning server catches up at
 * once), when the view's epoch or member set changes, and every interval.
 *
 * Acquisition. While members join or leave, an arc may list this server in
 * its target list but not its read list: it must acquire the arc. Every
 * acknowledged write is on a write quorum W = floor(n/2)+1 of the arc's read
 * owners, so comparing with n - W + 1 of them (capped at how many there are)
 * is sure to meet every such write. A pass in which each acquired arc got
 * that many successful comparisons with read owners records
 * syncedEpoch = the epoch the pass started from; a pass with nothing to
 * acquire records it as soon as it completes. The registry completes a change
 * once every acquirer reports syncedEpoch >= epoch, and the writes it sent
 * during the change to both lists cover what the pass did not see.
 *
 * Tombstone purge (after a pass, when the view carries tombstoneGraceMs, at
 * most once a minute, or every grace/2 for graces under two minutes, but never
 * more often than passes run): tombstones whose version is older than
 * now - grace are removed. Each purge reads every record's header in key
 * order (about 0.05 s per 100,000 keys). Within the grace every replica has had the delete by quorum write,
 * hinted hand-off or several passes; a member down longer than the grace is
 * refused by the registry, so it cannot bring back deleted values. Versions
 * carry the writing gateway's wall clock, so clock skew eats into the grace.
 *
 * A server never pushes a range to a peer that is acquiring it: the acquirer
 * pulls it, and pushing too would send every key twice. Nor does it compare
 * such a range while the peer holds nothing there: there is nothing to pull.
 *
 * Narrowing: an arc whose digest differs is cut at the digest buckets' edges
 * (65,536 buckets over the hash space, each digest O(1) from the cache) and
 * only the buckets that differ are merged key by key, so the keys a pass
 * scans grow with how many keys differ, not with the arc's size. (Without it,
 * passes under writes rescanned whole arcs: at 1M keys one scale run measured
 * 650 GET/s against 13,625 with it.) An arc empty on one side is not cut:
 * everything in it moves anyway.
 *
 * Known gap: two owners of a range may repair the same keys at once in both
 * directions (harmless, last-writer-wins, but the bytes are sent twice).
 */

export interface AntiEntropyOptions {
  selfId: string;
  storage: Storage;
  client: RepairClient;
  metrics: KvMetrics;
  log: Pick<Logger, 'debug' | 'info' | 'warn'>;
  replicationFactor: number;
  vnodes: number;
  /** Time between passes; 0 disables anti-entropy (passes and purges). */
  intervalMs: number;
  /** How often a running pass logs progress. Default 5000 ms. */
  progressLogMs?: number;
}

const PURGE_EVERY_MS = 60_000;
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

/** The digest of a range holding no record (the XOR of nothing). */
const EMPTY_DIGEST = '0000000000000000';

/** Differing ranges of one peer merged at once. */
const RANGE_CONCURRENCY = 2;

interface PeerRange {
  start: bigint;
  end: bigint;
  /** False where the peer is acquiring the range: it pulls, so pushing would send everything twice. */
  push: boolean;
  /** Indexes into the pass's arc list that this range covers. */
  arcs: number[];
}

export class AntiEntropy {
  private view: MemberView | null = null;
  private signature = '';
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private rerun = false;
  private readonly abort = new AbortController();
  private lastPurge = 0;
  private syncedEpoch = 0;
  private rangesTotal = 0;
  private rangesDone = 0;
  private keysMoved = 0;
  private keysMovedTotal = 0;

  constructor(private readonly opts: AntiEntropyOptions) {}

  /** Starts the loop; a pass runs as soon as a view is known. No-op when intervalMs is 0. */
  start(): void {
    if (this.loop || this.opts.intervalMs <= 0 || this.abort.signal.aborted) return;
    this.loop = this.run();
  }

  /** Feeds the latest view; a new epoch, member, URL, phase or liveness change starts a pass. */
  viewChanged(view: MemberView): void {
    this.view = view;
    const sig = JSON.stringify([
      view.epoch ?? 0,
      view.members.map((m) => [m.id, m.url, m.phase ?? 'active', m.state]).sort(),
    ]);
    if (sig === this.signature) return;
    this.signature = sig;
    this.rerun = true;
    this.wake?.();
  }

  progress(): TransferProgress {
    return {
      syncedEpoch: this.syncedEpoch,
      rangesTotal: this.rangesTotal,
      rangesDone: this.rangesDone,
      keysMoved: this.keysMoved,
      keysMovedTotal: this.keysMovedTotal,
      hintsPending: this.opts.storage.hints.count(),
    };
  }

  /** Stops the loop, abandoning a running pass at its next step. Idempotent. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      this.rerun = false;
      const view = this.view;
      if (view) {
        try {
          await this.pass(view);
          await this.maybePurge(view);
        } catch (err) {
          if (!signal.aborted) this.opts.log.warn({ err: (err as Error).message }, 'anti-entropy pass failed');
        }
      }
      if (signal.aborted || this.rerun) continue;
      // ±10% jitter keeps servers that started together from syncing in lockstep.
      const ms = this.opts.intervalMs * (0.9 + Math.random() * 0.2);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  private async pass(view: MemberView): Promise<void> {
    const { selfId, storage, client, log, metrics } = this.opts;
    const signal = this.abort.signal;
    const epoch = view.epoch ?? 0;
    if (!view.members.some((m) => m.id === selfId)) {
      log.debug({ epoch }, 'anti-entropy skipped: this server is not a member yet');
      return;
    }
    const placement = new Placement(view.members, this.opts.replicationFactor, this.opts.vnodes);
    const arcs = placement.arcs();
    const n = Math.min(this.opts.replicationFactor, placement.readRing.size || 1);
    // Acquired arc index → comparisons still needed with read owners.
    const needed = new Map<number, number>();
    const byPeer = new Map<string, number[]>();
    arcs.forEach((arc, i) => {
      const inRead = arc.read.includes(selfId);
      const inTarget = arc.target.includes(selfId);
      if (!inRead && !inTarget) return;
      if (inTarget && !inRead) needed.set(i, Math.min(n - (Math.floor(n / 2) + 1) + 1, arc.read.length));
      for (const id of new Set([...arc.read, ...arc.target])) {
        if (id === selfId || placement.members.get(id)?.state !== 'up') continue;
        let list = byPeer.get(id);
        if (!list) byPeer.set(id, (list = []));
        list.push(i);
      }
    });

    // A routine pass compares settled digests (recent-changes.ts): writes still
    // in flight are not differences yet. A pass that acquires ranges compares
    // current ones, so a join or leave completes with the latest writes.
    const settled = needed.size === 0;
    const t0 = Date.now();
    this.rangesTotal = [...byPeer.values()].reduce((sum, l) => sum + l.length, 0);
    this.rangesDone = 0;
    this.keysMoved = 0;
    let pushed = 0;
    let failedPeers = 0;
    const ticker = setInterval(() => {
      const s = (Date.now() - t0) / 1000;
      log.info(
        { epoch, rangesDone: this.rangesDone, rangesTotal: this.rangesTotal, keysMoved: this.keysMoved, keysPushed: pushed, keysPerSec: Math.round((this.keysMoved + pushed) / s) },
        'anti-entropy pass in progress',
      );
    }, this.opts.progressLogMs ?? 5000);
    ticker.unref();
    try {
      for (const [peerId, arcIdxs] of [...byPeer].sort(([a], [b]) => (a < b ? -1 : 1))) {
        signal.throwIfAborted();
        const peer = placement.members.get(peerId)!;
        const transfer = new PeerTransfer({
          storage,
          client,
          peerUrl: peer.url,
          ...(view.tombstoneGraceMs !== undefined && { purgeBeforeMs: Date.now() - view.tombstoneGraceMs }),
          onPulled: (k) => {
            this.keysMoved += k;
            this.keysMovedTotal += k;
            metrics.streamed('in', k);
          },
          onPushed: (k) => {
            pushed += k;
            metrics.streamed('out', k);
          },
        });
        try {
          const matched = await this.repairWithPeer(peer, arcs, arcIdxs, transfer, settled);
          for (const i of matched) {
            const left = needed.get(i);
            if (left !== undefined && arcs[i]!.read.includes(peerId)) needed.set(i, left - 1);
          }
        } catch (err) {
          await transfer.settle();
          signal.throwIfAborted();
          failedPeers++;
          log.warn({ peer: peerId, url: peer.url, err: (err as Error).message }, 'anti-entropy with a peer failed; retrying next pass');
        }
      }
    } catch (err) {
      if (signal.aborted) {
        metrics.passes.inc({ outcome: 'aborted' });
        return;
      }
      throw err;
    } finally {
      clearInterval(ticker);
    }

    const acquired = [...needed.values()].every((left) => left <= 0);
    const before = this.syncedEpoch;
    if (acquired) this.syncedEpoch = epoch;
    metrics.passes.inc({ outcome: failedPeers === 0 ? 'complete' : 'partial' });
    const summary = {
      epoch,
      syncedEpoch: this.syncedEpoch,
      acquiring: needed.size,
      peers: byPeer.size,
      failedPeers,
      rangesDone: this.rangesDone,
      rangesTotal: this.rangesTotal,
      keysMoved: this.keysMoved,
      keysPushed: pushed,
      ms: Date.now() - t0,
    };
    // Passes that found nothing to do are the common case; only log them at debug.
    const quiet = this.keysMoved === 0 && pushed === 0 && failedPeers === 0 && before === this.syncedEpoch;
    if (quiet) log.debug(summary, 'anti-entropy pass done');
    else log.info(summary, 'anti-entropy pass done');
  }

  /**
   * Compares every arc shared with one peer and merges the ones that differ.
   * Resolves with the arc indexes that are now in agreement; rejects if the
   * peer failed (then none counts).
   */
  private async repairWithPeer(peer: Member, arcs: Arc[], arcIdxs: number[], transfer: PeerTransfer, settled: boolean): Promise<number[]> {
    const { storage, client } = this.opts;
    const signal = this.abort.signal;
    const ranges = arcIdxs.map((i) => [arcs[i]!.start, arcs[i]!.end] as const);
    const remote = await client.digests(peer.url, ranges, settled);
    // Local digests now, after the previous peers' repairs.
    const local = storage.digests(ranges, settled);
    // Each differing arc becomes pieces to merge. One empty on one side moves
    // whole: there is nothing to narrow, and its pieces' digests would only
    // cost a round trip. (If the empty side is a peer acquiring the arc, it
    // pulls: nothing to push, nothing to pull, so nothing to scan here.) Any
    // other arc is cut at the digest buckets' edges (1/65536 of the hash space
    // each) and only the buckets that differ are merged, so the keys in flight
    // under writes cost a scan of a few buckets, not of whole arcs.
    interface Piece { arc: number; start: bigint; end: bigint; push: boolean; differs: boolean; empty: boolean }
    const pieces: Piece[] = [];
    const toCompare: Piece[] = [];
    arcIdxs.forEach((i, k) => {
      if (remote[k] === local[k]) {
        this.rangesDone++;
        return;
      }
      const arc = arcs[i]!;
      const push = arc.read.includes(peer.id) || !arc.target.includes(peer.id);
      if (remote[k] === EMPTY_DIGEST && !push) {
        this.rangesDone++;
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
    if (toCompare.length > 0) {
      const pieceRanges = toCompare.map((p) => [p.start, p.end] as const);
      const pieceRemote = await client.digests(peer.url, pieceRanges, settled);
      const pieceLocal = storage.digests(pieceRanges, settled);
      signal.throwIfAborted();
      toCompare.forEach((p, j) => {
        p.differs = pieceRemote[j] !== pieceLocal[j];
        p.empty = !p.differs && pieceLocal[j] === EMPTY_DIGEST;
      });
    }

    // Pieces still to merge, per arc: an arc counts as done when all of its are.
    const left = new Map<number, number>();
    const merged: PeerRange[] = [];
    for (const p of pieces) {
      const last = merged[merged.length - 1];
      const adjacent = last !== undefined && last.end + 1n === p.start;
      if (!p.differs) {
        // Empty on both sides: a merged range may run through it at no cost,
        // so a sparse store is not cut into a stream per occupied bucket.
        if (adjacent && p.empty) last.end = p.end;
        continue;
      }
      left.set(p.arc, (left.get(p.arc) ?? 0) + 1);
      // Adjacent differing pieces are merged: a fresh replica pulls
      // everything in a few long streams rather than thousands of short ones.
      if (adjacent && last.push === p.push) {
        last.end = p.end;
        last.arcs.push(p.arc);
      } else {
        merged.push({ start: p.start, end: p.end, push: p.push, arcs: [p.arc] });
      }
    }
    // Arcs whose every bucket agreed after all (a write landed meanwhile).
    for (const i of new Set(pieces.map((p) => p.arc))) if (!left.has(i)) this.rangesDone++;
    let next = 0;
    const worker = async () => {
      while (next < merged.length) {
        const r = merged[next++]!;
        await repairRange(r, storage, client, peer.url, transfer, signal);
        for (const i of r.arcs) {
          const n = left.get(i)! - 1;
          left.set(i, n);
          if (n === 0) this.rangesDone++;
        }
      }
    };
    const workers = Array.from({ length: Math.min(RANGE_CONCURRENCY, merged.length) }, worker);
    const results = await Promise.allSettled(workers);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    await transfer.finish();
    return arcIdxs;
  }

  private async maybePurge(view: MemberView): Promise<void> {
    const grace = view.tombstoneGraceMs;
    if (grace === undefined) return;
    const every = Math.max(this.opts.intervalMs, Math.min(PURGE_EVERY_MS, grace / 2));
    if (Date.now() - this.lastPurge < every) return;
    this.lastPurge = Date.now();
    const removed = await this.opts.storage.purgeTombstones(Date.now() - grace);
    this.opts.metrics.tombstonesPurged.inc(removed);
    if (removed > 0) this.opts.log.info({ removed, graceMs: grace }, 'purged tombstones past the grace period');
  }
}
