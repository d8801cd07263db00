import { hash64 } from './hash.js';

/**
 * Consistent-hash ring with virtual nodes. This module is the placement
 * contract between processes and releases: every gateway that sees the same
 * member ids computes the same preference lists. Golden tests in ring.test.ts
 * pin key → replica ids; a change that moves them moves data.
 *
 * Rules:
 * - member i contributes `vnodes` tokens hash64(`${id}#${v}`), v = 0..vnodes-1;
 * - tokens are sorted by value, ties (astronomically unlikely) by member id;
 * - a key's position is hash64(key); its preference list is the first N
 *   distinct members met walking clockwise from the first token >= position,
 *   wrapping at 2^64.
 * Placement depends only on the set of ids, never on list order or arrival.
 */

export const DEFAULT_VNODES = 256;

export class Ring {
  readonly ids: readonly string[];
  private readonly tokens: BigUint64Array;
  /** owner[i] = index into ids of the member owning tokens[i]. */
  private readonly owner: Uint32Array;

  constructor(memberIds: Iterable<string>, readonly vnodes: number = DEFAULT_VNODES) {
    const ids = [...new Set(memberIds)].sort();
    this.ids = ids;
    const entries: Array<{ token: bigint; owner: number }> = [];
    ids.forEach((id, owner) => {
      for (let v = 0; v < vnodes; v++) entries.push({ token: hash64(`${id}#${v}`), owner });
    });
    entries.sort((a, b) =>
      a.token < b.token ? -1 : a.token > b.token ? 1 : a.owner - b.owner,
    );
    this.tokens = BigUint64Array.from(entries.map((e) => e.token));
    this.owner = Uint32Array.from(entries.map((e) => e.owner));
  }

  /** The ring's token values in ascending order. */
  tokenValues(): BigUint64Array {
    return this.tokens;
  }

  get size(): number {
    return this.ids.length;
  }

  /** The first min(n, members) distinct member ids clockwise from the key. */
  preferenceList(key: string, n: number): string[] {
    return this.preferenceListForHash(hash64(key), n);
  }

  preferenceListForHash(h: bigint, n: number): string[] {
    const want = Math.min(n, this.ids.length);
    const out: string[] = [];
    if (want === 0) return out;
    const len = this.tokens.length;
    let i = this.firstTokenAtOrAfter(h);
    const seen = new Uint8Array(this.ids.length);
    for (let steps = 0; steps < len && out.length < want; steps++, i++) {
      if (i === len) i = 0;
      const o = this.owner[i]!;
      if (!seen[o]) {
        seen[o] = 1;
        out.push(this.ids[o]!);
      }
    }
    return out;
  }

  /**
   * Fraction of the hash space each member holds as primary (first replica).
   * Shown in GET /cluster; with 256 vnodes three members each hold 33% ± 5%.
   */
  ownership(): Record<string, number> {
    const share: Record<string, number> = {};
    for (const id of this.ids) share[id] = 0;
    const len = this.tokens.length;
    if (len === 0) return share;
    const space = 2n ** 64n;
    for (let i = 0; i < len; i++) {
      // Token i owns the arc (tokens[i-1], tokens[i]].
      const prev = i === 0 ? this.tokens[len - 1]! - space : this.tokens[i - 1]!;
      const arc = this.tokens[i]! - prev;
      share[this.ids[this.owner[i]!]!]! += Number(arc) / Number(space);
    }
    return share;
  }

  private firstTokenAtOrAfter(h: bigint): number {
    let lo = 0;
    let hi = this.tokens.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.tokens[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.tokens.length ? 0 : lo;
  }
}
