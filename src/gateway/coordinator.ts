import type { HybridClock } from '../cluster/hlc.js';
import { countedTargets, requiredReplicas } from '../cluster/consistency.js';
import { FlexStoreError, NoMembers, QuorumNotMet, ReplicaUnreachable, StorageFull } from '../cluster/errors.js';
import type { Logger } from '../cluster/logger.js';
import type { ReplicaTransport, ListEntry } from '../cluster/transport.js';
import type { Consistency, Member, ReplicaRecord } from '../cluster/types.js';
import type { ClusterView } from './cluster-view.js';
import type { GatewayMetrics } from './metrics.js';
import { atLeast, callQuorum, type QuorumResult } from './quorum.js';
import type { HintBuffer } from './hint-buffer.js';

export interface CoordinatorOptions {
  hints?: HintBuffer;
  log: Pick<Logger, 'debug'>;
}

export interface ReadResult {
  record: ReplicaRecord | null;
  /** Ids of the replicas whose answers the result is built from. */
  replicas: string[];
}

export interface WriteResult {
  version: string;
  replicas: string[];
}

/**
 * Coordinates one client operation across the key's replicas.
 *
 * Semantics (stated here because this is the interface they belong to):
 * - PUT stamps a new HLC version and succeeds once W replicas have committed
 *   it durably. If fewer than W answer, the client gets 503 — but replicas that
 *   did answer keep the write (there is no rollback), so a failed PUT may
 *   still become visible later. A retried PUT simply writes a newer version.
 * - GET asks R replicas (healthy ones first, rotating for load) and returns the
 *   newest version among them. Replicas that answered with an older version or
 *   none are sent the newest in the background (read repair), unless the
 *   newest is from the future (more than MAX_CLOCK_SKEW ahead of this
 *   gateway's clock): that one is answered but not repaired nor adopted.
 * - A write every replica refuses as VERSION_FROM_FUTURE (this gateway's
 *   clock runs ahead of theirs) fails with 503 QUORUM_NOT_MET; each replica's
 *   entry in `replicas` carries its code.
 * - DELETE is a quorum read (404 when there is no live value) followed by a
 *   quorum write of a tombstone.
 * - With W + R > N (the quorum default), a read that succeeds sees every write
 *   acknowledged before it started. `one` trades that away for availability.
 * - While a member joins or leaves, a write goes to the current owners and the
 *   future owners and needs the level's count in *each* set, so the guarantee
 *   above survives the switch-over; reads use the current owners. Future
 *   owners still acquiring the key that are down are not counted (see
 *   countedTargets): they pull it again before the change completes.
 * - A replica that failed a write it should have taken is remembered as a
 *   hint on one that took it; the hint holder delivers the key when the
 *   failed replica is back (hinted handoff). Anti-entropy covers the rest.
 * - A replica whose storage is full answers writes 507 STORAGE_FULL: a
 *   failed replica for the write's quorum (and hinted like any other), but
 *   not a suspect one, since it serves reads as before.
 */
export class Coordinator {
  private rotation = 0;

  constructor(
    private readonly view: ClusterView,
    private readonly transport: ReplicaTransport,
    private readonly clock: HybridClock,
    private readonly metrics: GatewayMetrics,
    private readonly opts: CoordinatorOptions,
  ) {}

  async get(key: string, consistency: Consistency): Promise<ReadResult> {
    const prefs = this.placement(key);
    const need = requiredReplicas(consistency, prefs.length);
    const res = await callQuorum(this.readOrder(prefs), atLeast(need), need, (m) =>
      this.track('get', m, this.transport.get(m.url, key)),
    );
    if (res.ok.length < need) throw this.quorumError('read', need, res);

    let newest: ReplicaRecord | null = null;
    for (const { value } of res.ok) {
      if (value && (!newest || value.version > newest.version)) newest = value;
    }
    if (newest) {
      if (this.clock.observe(newest.version)) {
        this.repair(key, newest, res);
      } else {
        // From the future (a forged version, or a record stored before KV
        // servers refused them): answered, since the replicas hold it, but
        // neither adopted by the clock (every later write would be stamped
        // after it, and 12 hex digits run out) nor copied to other replicas.
        this.metrics.versionsRefused.inc({ path: 'read' });
        this.opts.log.debug({ key, version: newest.version }, 'read a version from the future; not adopted, not repaired');
      }
    }
    return { record: newest, replicas: res.ok.map((r) => r.member.id) };
  }

  async put(key: string, value: Buffer, contentType: string, consistency: Consistency): Promise<WriteResult> {
    const rec: ReplicaRecord = { value, version: this.clock.next(), tombstone: false, contentType };
    return this.write(key, rec, consistency, 'write');
  }

  /** Returns null when there was no live value to delete. */
  async delete(key: string, consistency: Consistency): Promise<WriteResult | null> {
    const current = await this.get(key, consistency);
    if (!current.record || current.record.tombstone) return null;
    const rec: ReplicaRecord = {
      value: Buffer.alloc(0),
      version: this.clock.next(),
      tombstone: true,
      contentType: 'application/octet-stream',
    };
    return this.write(key, rec, consistency, 'delete');
  }

  /**
   * Lists live keys in order, merged from every reachable member. A key shows
   * when the newest version among the members asked is live; a member that is
   * down may hold newer versions, so a listing is eventually consistent.
   * Pages never skip keys: `next` is only advanced past keys every member with
   * more to send has already covered.
   */
  async list(prefix: string, after: string, limit: number): Promise<{ keys: string[]; next: string | null }> {
    // A pending member owns nothing yet: its listing could only add noise.
    const members = this.view.allMembers().filter((m) => m.phase !== 'pending');
    if (members.length === 0) throw new NoMembers('no KV servers are registered');
    const keys: string[] = [];
    let cursor = after;
    // Bounded rounds: tombstone-heavy ranges return short pages, not hangs.
    for (let round = 0; round < 8; round++) {
      const pages = await Promise.allSettled(
        members.map((m) =>
          this.track('list', m, this.transport.list(m.url, { prefix, after: cursor, limit: limit + 1 })),
        ),
      );
      const answered = pages.filter((p) => p.status === 'fulfilled');
      if (answered.length === 0) {
        throw new QuorumNotMet('list', 1, 0, { replicas: members.map((m) => m.id) });
      }
      const newest = new Map<string, ListEntry>();
      let frontier: string | null = null;
      for (const p of answered) {
        const page = p.value;
        for (const e of page.entries) {
          const seen = newest.get(e.key);
          if (!seen || e.version > seen.version) newest.set(e.key, e);
        }
        if (page.more && page.entries.length > 0) {
          const last = page.entries[page.entries.length - 1]!.key;
          if (frontier === null || last < frontier) frontier = last;
        }
      }
      const sorted = [...newest.keys()].filter((k) => frontier === null || k <= frontier).sort();
      for (const k of sorted) {
        if (newest.get(k)!.tombstone) continue;
        keys.push(k);
        if (keys.length === limit) {
          const moreAfter = frontier !== null || sorted[sorted.length - 1] !== k;
          return { keys, next: moreAfter ? k : null };
        }
      }
      if (frontier === null) return { keys, next: null };
      cursor = frontier;
    }
    return { keys, next: cursor };
  }

  private async write(key: string, rec: ReplicaRecord, consistency: Consistency, op: 'write' | 'delete'): Promise<WriteResult> {
    const { read, target } = this.view.writeLists(key);
    if (read.length === 0 && target.length === 0) throw new NoMembers('no KV servers are registered');
    const targets = [...read];
    if (target !== read) for (const m of target) if (!targets.some((t) => t.id === m.id)) targets.push(m);
    const readIds = new Set(read.map((m) => m.id));
    const counted = target === read ? target : countedTargets(target, readIds);
    const needRead = requiredReplicas(consistency, read.length);
    const needTarget = counted.length === 0 ? 0 : requiredReplicas(consistency, counted.length);
    const targetIds = new Set(counted.map((m) => m.id));
    const satisfied = (ok: ReadonlyArray<{ member: Member }>) => {
      let r = 0;
      let t = 0;
      for (const { member } of ok) {
        if (readIds.has(member.id)) r++;
        if (targetIds.has(member.id)) t++;
      }
      return r >= needRead && t >= needTarget;
    };
    // Every replica gets the write at once, down or not: the cheapest way to
    // keep copies current. Only the quorum is awaited.
    const res = await callQuorum(targets, satisfied, targets.length, (m) =>
      this.track('put', m, this.transport.put(m.url, key, rec)),
    );
    if (this.opts.hints) void res.settled.then((all) => this.hint(key, all));
    if (!satisfied(res.ok)) throw this.quorumError(op, Math.max(needRead, needTarget), res);
    return { version: rec.version, replicas: res.ok.map((r) => r.member.id) };
  }

  /** Leaves a hint for each replica that missed the write on one that took it. */
  private hint(key: string, all: QuorumResult<unknown>): void {
    if (all.failed.length === 0 || all.ok.length === 0) return;
    const holder = all.ok[0]!.member;
    for (const { member } of all.failed) this.opts.hints!.add(holder.url, member.id, key);
  }

  private placement(key: string): Member[] {
    const prefs = this.view.readList(key);
    if (prefs.length === 0) throw new NoMembers('no KV servers are registered');
    return prefs;
  }

  /** Healthy replicas first, rotated so reads spread over them; the rest as fallbacks. */
  private readOrder(prefs: Member[]): Member[] {
    const now = Date.now();
    const healthy: Member[] = [];
    const others: Member[] = [];
    for (const m of prefs) (this.view.isHealthy(m, now) ? healthy : others).push(m);
    if (healthy.length > 1) {
      const shift = this.rotation++ % healthy.length;
      healthy.push(...healthy.splice(0, shift));
    }
    return healthy.concat(others);
  }

  private repair(key: string, newest: ReplicaRecord, res: QuorumResult<ReplicaRecord | null>): void {
    for (const { member, value } of res.ok) {
      if (value && value.version >= newest.version) continue;
      this.transport.put(member.url, key, newest).then(
        () => this.metrics.readRepairs.inc({ outcome: 'ok' }),
        (err: unknown) => {
          this.metrics.readRepairs.inc({ outcome: 'error' });
          this.opts.log.debug({ err, key, node: member.id }, 'read repair failed');
        },
      );
    }
  }

  private track<T>(op: string, m: Member, p: Promise<T>): Promise<T> {
    return p.then(
      (v) => {
        this.view.markSuccess(m.url);
        this.metrics.replicaResult(op, m.id, true);
        return v;
      },
      (err: unknown) => {
        // A replica that refused the request itself (a 4xx) is up: only an
        // unreachable one is suspect. So is one whose storage is full: it
        // failed the write but serves reads, and a suspect is read from last.
        if (err instanceof ReplicaUnreachable && !(err.cause instanceof StorageFull)) this.view.markFailure(m.url);
        this.metrics.replicaResult(op, m.id, false);
        this.opts.log.debug({ err, node: m.id, op }, 'replica request failed');
        throw err;
      },
    );
  }

  private quorumError(op: string, need: number, res: QuorumResult<unknown>): QuorumNotMet {
    this.metrics.quorumFailures.inc({ op });
    return new QuorumNotMet(op, need, res.ok.length, {
      replicas: [
        ...res.ok.map((r) => ({ id: r.member.id, ok: true })),
        ...res.failed.map((f) => ({
          id: f.member.id,
          ok: false,
          ...(codeOf(f.error) && { code: codeOf(f.error) }),
          error: f.error instanceof Error ? f.error.message : String(f.error),
        })),
      ],
    });
  }
}

/** The FlexStore code of a replica's failure: its own, or the one a replica answered with (STORAGE_FULL, say). */
function codeOf(err: unknown): string | undefined {
  if (err instanceof FlexStoreError) return err.code;
  if (err instanceof ReplicaUnreachable && err.cause instanceof FlexStoreError) return err.cause.code;
  return undefined;
}
