import { formatVersion, type HybridClock } from '../../cluster/hlc.js';
import type { ReplicaRecord } from '../../cluster/types.js';

/**
 * Versions and replica records for tests that write to storage or to a
 * replica directly, bypassing a gateway (which would stamp them itself).
 */

/** The version a gateway `id` would stamp at `wall` ms: tests pick walls to order writes. */
export function version(wall: number, counter = 0, id = 'g1'): string {
  return formatVersion({ wall, counter }, id);
}

/** A live record at `version`; `extra` overrides any field (a content type, a tombstone flag). */
export function record(version: string, value: Buffer | string = 'x', extra: Partial<ReplicaRecord> = {}): ReplicaRecord {
  return {
    value: typeof value === 'string' ? Buffer.from(value) : value,
    version,
    tombstone: false,
    contentType: 'text/plain',
    ...extra,
  };
}

/** A delete at `version`, as a gateway writes one: a tombstone with an empty value. */
export function tombstone(version: string): ReplicaRecord {
  return record(version, Buffer.alloc(0), { tombstone: true });
}

/**
 * A record stamped with `clock`'s next version, so each is newer than every
 * one before it: `value` live, or a tombstone when `deleted`.
 */
export function stamped(clock: HybridClock, value: string, deleted = false): ReplicaRecord {
  return deleted ? tombstone(clock.next()) : record(clock.next(), value);
}
