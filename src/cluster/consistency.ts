import type { Consistency } from './types.js';

/**
 * The quorum arithmetic every process must agree on. The gateway acknowledges
 * a write once `requiredReplicas` of the key's owners have it; anti-entropy
 * relies on that same number to know how many owners an acquiring server must
 * compare with before it can be sure it has every acknowledged write. Keep the
 * two in this one file: changing one without the other loses writes during a
 * join or leave.
 */

/** More than half of n: any two majorities of the same n owners share a member. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** Replicas that must answer an operation of this consistency over n owners. */
export function requiredReplicas(c: Consistency, n: number): number {
  if (c === 'one') return Math.min(1, n);
  if (c === 'all') return n;
  return majority(n);
}

/**
 * Owners an acquiring server must compare a range with to meet every
 * acknowledged write: each such write is on a majority of the n owners, so
 * any n - majority(n) + 1 of them include one that holds it. Capped at the
 * owners there are (a ring smaller than n).
 */
export function comparisonsToAcquire(n: number, owners: number): number {
  return Math.min(n - majority(n) + 1, owners);
}

/**
 * The future owners a write counts during a join or leave: all of them except
 * acquirers (owners in `target` that are not in `read`) that are not up. A
 * write never waits for a member that is down: a joiner killed mid-join would
 * otherwise fail every write to its ranges until JOIN_TIMEOUT. It is still
 * sent the write. Safe because an acquirer cannot complete the change while
 * it is down, and one that comes back must pull its ranges again from the
 * read owners (the registry raises the epoch), where every acknowledged write
 * is on a majority.
 */
export function countedTargets<M extends { id: string; state: string }>(target: readonly M[], readIds: ReadonlySet<string>): M[] {
  return target.filter((m) => m.state === 'up' || readIds.has(m.id));
}
