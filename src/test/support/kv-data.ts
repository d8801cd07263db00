import assert from 'node:assert/strict';
import { http, kvUrl } from './probe.js';
import { waitFor } from './process.js';

/**
 * Writing known data through a gateway and reading it back, for the
 * integration tests: [key, value] pairs, each written and read by its own
 * request, `concurrency` at a time.
 */

export type Entries = Array<[string, string]>;

/** PUTs every pair; each must be acknowledged (201). */
export async function putAll(gw: string, entries: Entries, { query = '', concurrency = 32 } = {}): Promise<void> {
  await eachLimit(entries, concurrency, async ([k, v]) => {
    const res = await http('PUT', kvUrl(gw, k, query), { body: v });
    assert.equal(res.status, 201, `${k}: ${res.text}`);
  });
}

/** GETs every pair; each must read 200 with its value. */
export async function assertAllRead(gw: string, entries: Entries, { query = '', concurrency = 32 } = {}): Promise<void> {
  await eachLimit(entries, concurrency, async ([k, v]) => {
    const res = await http('GET', kvUrl(gw, k, query));
    assert.equal(res.status, 200, `${k}: ${res.text}`);
    assert.equal(res.text, v, k);
  });
}

/**
 * Eight clients PUT `crash/<n>` keys through the gateway until `minAcked` are
 * acknowledged; then `fault` runs (a kill -9, say) while they still write, and
 * the clients stop. Resolves with every acknowledged pair. A request cut off
 * by the fault counts as not acknowledged.
 */
export async function ackedAcrossFault(gw: string, minAcked: number, fault: () => Promise<unknown>): Promise<Entries> {
  const acked: Entries = [];
  let stop = false;
  let n = 0;
  const writer = async () => {
    while (!stop) {
      const k = `crash/${n++}`;
      const v = `v-${k}`;
      try {
        const res = await http('PUT', kvUrl(gw, k), { body: v, timeoutMs: 5000 });
        if (res.status === 201) acked.push([k, v]);
      } catch {
        // Cut off mid-request by the fault: not acknowledged.
      }
    }
  };
  const writers = Array.from({ length: 8 }, writer);
  try {
    await waitFor(`${minAcked} acknowledged writes`, () => acked.length >= minAcked, { timeoutMs: 30_000 });
    await fault();
  } finally {
    stop = true;
    await Promise.all(writers);
  }
  return acked;
}

/** Runs fn over items, at most `limit` at once. */
export async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
