import type { Database } from 'lmdb';
import { InvalidKey, InvalidRequest } from '../cluster/errors.js';
import { encodeKey, encodedKeyBytes, keyCodec } from './record-codec.js';
import { isNodeId } from './node-id.js';

/**
 * Hints: durable notes that another replica (the *target*) missed a write
 * this KV server holds. The gateway leaves one here when a write reached this
 * replica but failed on the target; src/kv/hint-delivery.ts delivers the hinted keys'
 * current records once the target is up again.
 *
 * A third sub-database of the storage environment:
 *
 *   key   = target id (ASCII, [A-Za-z0-9_-]) 0x00 key bytes (keyCodec)
 *   value = the version this server held for the key when the hint was stored
 *           ('' when it held none)
 *
 * The version makes delivery safe against a race: a hint is deleted only when
 * the record delivered is at least as new as the one it was stored for, so a
 * hint re-stored for a newer write while an older delivery was in flight
 * survives. A hint says nothing about the value; delivery always sends the
 * newest local record.
 */

/** Longest node id (see node-id.ts) plus the separator: what a hint key adds to a record key. */
export const HINT_KEY_OVERHEAD = 65;
const SEP = 0;

export interface HintEntry {
  key: string;
  /** The version held when the hint was stored; '' when none was. */
  version: string;
}

export class HintStore {
  constructor(
    private readonly db: Database<Buffer, Buffer>,
    /** The version held for key, read inside the caller's transaction. */
    private readonly versionOf: (key: string) => string | undefined,
    private readonly maxKeyBytes: number,
    /** Runs each commit; the storage's refuses them while its disk is full (storage-health.ts). */
    private readonly commit: <T>(write: () => Promise<T>) => Promise<T> = (write) => write(),
  ) {}

  /** Stores a hint per key for target, durably; resolves with how many were stored. */
  async add(target: string, keys: readonly string[]): Promise<number> {
    checkTarget(target);
    const prefix = targetPrefix(target);
    const hintKeys = keys.map((key) => {
      if (typeof key !== 'string' || key.length === 0) throw new InvalidKey('hint keys must be non-empty strings');
      if (encodedKeyBytes(key) > this.maxKeyBytes) throw new InvalidKey(`key is longer than ${this.maxKeyBytes} bytes`);
      return { key, hintKey: Buffer.concat([prefix, encodeKey(key)]) };
    });
    if (hintKeys.length === 0) return 0;
    return this.commit(() =>
      this.db.transaction(() => {
        for (const { key, hintKey } of hintKeys) {
          void this.db.put(hintKey, Buffer.from(this.versionOf(key) ?? '', 'latin1'));
        }
        return hintKeys.length;
      }),
    );
  }

  /** Ids that have hints, one index seek per id. */
  targets(): string[] {
    const out: string[] = [];
    let start: Buffer | undefined;
    for (;;) {
      let next: Buffer | undefined;
      for (const key of this.db.getKeys(start ? { start, limit: 1 } : { limit: 1 })) next = key;
      if (!next) return out;
      const sep = next.indexOf(SEP);
      const target = next.toString('latin1', 0, sep === -1 ? next.length : sep);
      out.push(target);
      // Every hint of target sorts before target 0x01.
      start = Buffer.concat([Buffer.from(target, 'latin1'), Buffer.from([SEP + 1])]);
    }
  }

  /** Up to limit hints for target in key-byte order, after the given key. */
  page(target: string, limit: number, after?: string): HintEntry[] {
    const prefix = targetPrefix(target);
    const range = {
      start: after === undefined ? prefix : Buffer.concat([prefix, encodeKey(after)]),
      exclusiveStart: after !== undefined,
      end: Buffer.concat([Buffer.from(target, 'latin1'), Buffer.from([SEP + 1])]),
      limit,
    };
    const out: HintEntry[] = [];
    for (const { key, value } of this.db.getRange(range)) {
      out.push({ key: keyCodec.readKey(key, prefix.length, key.length), version: value.toString('latin1') });
    }
    return out;
  }

  /**
   * Deletes target's hints for delivered keys, each only if it was stored for
   * a version no newer than the one delivered (null: the key had no record,
   * so there was nothing to deliver). Resolves with how many were deleted.
   */
  async remove(target: string, delivered: ReadonlyArray<{ key: string; version: string | null }>): Promise<number> {
    const prefix = targetPrefix(target);
    const items = delivered.map((d) => ({ hintKey: Buffer.concat([prefix, encodeKey(d.key)]), version: d.version }));
    if (items.length === 0) return 0;
    return this.commit(() =>
      this.db.transaction(() => {
        let removed = 0;
        for (const { hintKey, version } of items) {
          const stored = this.db.get(hintKey);
          if (stored === undefined) continue;
          if (version !== null && stored.toString('latin1') > version) continue;
          void this.db.remove(hintKey);
          removed++;
        }
        return removed;
      }),
    );
  }

  /** Deletes every hint for target (a member that left the ring). Resolves with the count. */
  async drop(target: string): Promise<number> {
    let removed = 0;
    for (;;) {
      const page = this.page(target, 1000);
      if (page.length === 0) return removed;
      removed += await this.remove(target, page.map((h) => ({ key: h.key, version: null })));
    }
  }

  /** Hints held, for every target. */
  count(): number {
    return (this.db.getStats() as { entryCount: number }).entryCount;
  }
}

function checkTarget(target: string): void {
  if (!isNodeId(target)) throw new InvalidRequest('target must be a member id ([A-Za-z0-9_-]{1,64})', { target });
}

function targetPrefix(target: string): Buffer {
  const out = Buffer.allocUnsafe(target.length + 1);
  out.write(target, 0, 'latin1');
  out[target.length] = SEP;
  return out;
}
