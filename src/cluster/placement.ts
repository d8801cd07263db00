import { hash64 } from './hash.js';
import { Ring } from './ring.js';
import type { Member } from './types.js';

/**
 * Placement while membership changes. Two rings are derived from the member
 * list:
 *
 * - the *read ring*: every member except those still `joining` — the owners
 *   that hold the data now;
 * - the *target ring*: every member except those `leaving` — the owners once
 *   the change completes.
 *
 * A `pending` member (waiting for a join slot, see docs/security.md) is in
 * neither ring: it owns nothing, acquires nothing and takes no traffic.
 *
 * Outside a change the two are the same ring. During one, a write goes to the
 * union of both preference lists and must reach a quorum in each, and reads
 * use the read ring; so when the change completes and the target ring becomes
 * the read ring, every acknowledged write is on a quorum of its new owners.
 * A member that is in a range's target list but not its read list is an
 * *acquirer* of that range: it must pull the range from the read owners before
 * the change may complete (see src/kv/anti-entropy.ts).
 */

export const HASH_SPACE_MAX = (1n << 64n) - 1n;

/** A contiguous hash range [start, end] (both inclusive) with fixed preference lists. */
export interface Arc {
  start: bigint;
  end: bigint;
  /** Current owners (read ring), preference order. */
  read: string[];
  /** Owners after the change (target ring), preference order. */
  target: string[];
}

export class Placement {
  readonly readRing: Ring;
  readonly targetRing: Ring;
  readonly members: ReadonlyMap<string, Member>;
  private readonly changingNow: boolean;

  constructor(
    members: readonly Member[],
    readonly replicationFactor: number,
    readonly vnodes?: number,
  ) {
    this.members = new Map(members.map((m) => [m.id, m]));
    this.changingNow = members.some((m) => isChanging(phaseOf(m)));
    this.readRing = new Ring(
      members.filter((m) => phaseOf(m) === 'active' || phaseOf(m) === 'leaving').map((m) => m.id),
      vnodes,
    );
    this.targetRing = new Ring(
      members.filter((m) => phaseOf(m) === 'active' || phaseOf(m) === 'joining').map((m) => m.id),
      vnodes,
    );
  }

  /** True while some member is joining or leaving. */
  get changing(): boolean {
    return this.changingNow;
  }

  readList(key: string): string[] {
    return this.readRing.preferenceList(key, this.replicationFactor);
  }

  targetList(key: string): string[] {
    return this.targetRing.preferenceList(key, this.replicationFactor);
  }

  /** Both lists from one hash; outside a change they are the same array. */
  lists(key: string): { read: string[]; target: string[] } {
    const h = hash64(key);
    const read = this.readRing.preferenceListForHash(h, this.replicationFactor);
    const target = this.changingNow ? this.targetRing.preferenceListForHash(h, this.replicationFactor) : read;
    return { read, target };
  }

  /**
   * Every range of the hash space with constant read and target lists,
   * in hash order, covering [0, 2^64-1] exactly once.
   */
  arcs(): Arc[] {
    const bounds = new Set<bigint>();
    for (const ring of [this.readRing, this.targetRing]) for (const t of ring.tokenValues()) bounds.add(t);
    const sorted = [...bounds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (sorted.length === 0) return [];
    const n = this.replicationFactor;
    const arcs: Arc[] = [];
    const at = (h: bigint) => ({
      read: this.readRing.preferenceListForHash(h, n),
      target: this.targetRing.preferenceListForHash(h, n),
    });
    // Keys hashing above the last token wrap to the first: [0, first] and
    // (last, MAX] share the first token's lists.
    const first = sorted[0]!;
    arcs.push({ start: 0n, end: first, ...at(first) });
    for (let i = 1; i < sorted.length; i++) {
      arcs.push({ start: sorted[i - 1]! + 1n, end: sorted[i]!, ...at(sorted[i]!) });
    }
    const last = sorted[sorted.length - 1]!;
    if (last < HASH_SPACE_MAX) arcs.push({ start: last + 1n, end: HASH_SPACE_MAX, ...at(first) });
    return arcs;
  }

  /** Ids that must acquire some range before the current change can complete. */
  acquirers(): Set<string> {
    const out = new Set<string>();
    if (!this.changing) return out;
    for (const arc of this.arcs()) for (const id of arc.target) if (!arc.read.includes(id)) out.add(id);
    return out;
  }

  /**
   * Acquirers that have not yet reported a finished acquisition pass for
   * `epoch` (their heartbeat's transfer.syncedEpoch): the change completes
   * when this is empty. The registry decides with it and gateways show it.
   * `current` holds the latest member records: a Placement is kept while
   * only liveness and progress change, so its own copies may be stale.
   */
  pendingAcquirers(epoch: number, current: ReadonlyMap<string, Member>): string[] {
    return [...this.acquirers()].filter((id) => (current.get(id)?.transfer?.syncedEpoch ?? -1) < epoch);
  }
}

export function phaseOf(m: Member): MemberPhase {
  return m.phase ?? 'active';
}

export type MemberPhase = 'pending' | 'joining' | 'active' | 'leaving';

/** Joining and leaving move ranges; pending (waiting for a join slot) and active do not. */
export function isChanging(phase: MemberPhase): boolean {
  return phase === 'joining' || phase === 'leaving';
}

export function keyHash(key: string): bigint {
  return hash64(key);
}
