import { parseVersion } from '../cluster/hlc.js';
import type { Storage } from './storage.js';
import type { RepairClient } from './repair-client.js';
import type { RepairEntry, RepairRecord } from './repair-wire.js';

/**
 * Repairs one hash range between this KV server and one peer: a merge join of
 * the two sides' (hash, key)-ordered entry lists, then last-writer-wins
 * transfers of whatever differs.
 *
 * - The peer's entries arrive in pages (the next page is requested while the
 *   current one is compared); the local side is scanned in pages up to the
 *   last key of the peer's page, so memory stays bounded by the page sizes
 *   however many keys the range holds.
 * - A key the peer holds newer, or only the peer holds, is pulled (fetched in
 *   batches, written with one putMany per batch); a key held newer here, or
 *   only here, is pushed (apply on the peer). Both sides apply only newer
 *   versions, so a transfer that races a client write, another replica's
 *   repair or a retry can never go backwards.
 * - Up to MAX_IN_FLIGHT transfer batches run at once, across every range
 *   synced with the same peer.
 * - A range this server holds nothing in (a joiner's acquired ranges, the
 *   common bulk case) skips the comparison: the peer's records are streamed
 *   page by page, values included, one request per page instead of an
 *   entries page plus a fetch per batch. This doubled the keys/s a joining
 *   server takes in (docs/benchmarks.md).
 * - A record from the future (more than MAX_CLOCK_SKEW ahead of this server's
 *   clock) is not stored, whichever way it comes (storage.ts counts it). The
 *   range then still differs and the next pass compares it again; that is
 *   the price of never letting one such record block the rest of a range.
 * - A tombstone older than the purge horizon is not copied to a replica that
 *   lacks the key: it is due for removal everywhere, and copying it would
 *   only bring back what purging removed. It still replaces an older live
 *   value, which must not survive the delete.
 */

/** Entries per page asked of the peer and scanned locally. */
export const ENTRIES_PAGE = 4000;
/**
 * Keys per fetch or apply batch. Large batches amortise each commit's fsync
 * and each request's overhead (putMany of 2000 100-byte records measured
 * about 40% more keys/s than of 500); a batch holds the write lock for
 * roughly 15 ms, which a concurrent client put waits out.
 */
export const TRANSFER_BATCH = 2000;
/** Batches in flight per peer. */
export const MAX_IN_FLIGHT = 4;

export interface PeerTransferOptions {
  storage: Storage;
  client: RepairClient;
  peerUrl: string;
  /** Tombstones whose wall time is before this (ms) are purge-due; undefined: none are. */
  purgeBeforeMs?: number;
  /** Records received from the peer and written locally (applied or not). */
  onPulled(n: number): void;
  /** Records sent to the peer. */
  onPushed(n: number): void;
}

/** Batches pulls and pushes for one peer and keeps a few batches in flight. */
export class PeerTransfer {
  private pulls: string[] = [];
  private pushes: string[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown = null;

  constructor(private readonly opts: PeerTransferOptions) {}

  /** True when the entry is a tombstone past the purge horizon. */
  purgeDue(e: Pick<RepairEntry, 'version' | 'tombstone'>): boolean {
    const before = this.opts.purgeBeforeMs;
    return before !== undefined && e.tombstone && (parseVersion(e.version)?.wall ?? Infinity) < before;
  }

  /** Writes records streamed from the peer (as stored there), as one more batch in flight. */
  async store(raw: Array<{ key: string; bytes: Buffer }>): Promise<void> {
    await this.launch(async () => {
      await this.opts.storage.insertRaw(raw, (h) => this.purgeDue(h), 'sync_stream');
      this.opts.onPulled(raw.length);
    });
  }

  async pull(key: string): Promise<void> {
    this.pulls.push(key);
    if (this.pulls.length >= TRANSFER_BATCH) await this.flushPulls();
  }

  async push(key: string): Promise<void> {
    this.pushes.push(key);
    if (this.pushes.length >= TRANSFER_BATCH) await this.flushPushes();
  }

  /** Sends what is batched and waits for every batch; rejects if any batch failed. */
  async finish(): Promise<void> {
    await this.flushPulls();
    await this.flushPushes();
    await Promise.all(this.inFlight);
    if (this.failure) throw this.failure;
  }

  /** Waits for in-flight batches without raising their errors (cleanup after a failure). */
  async settle(): Promise<void> {
    await Promise.all(this.inFlight);
  }

  private async flushPulls(): Promise<void> {
    const keys = this.pulls;
    this.pulls = [];
    if (keys.length === 0) return;
    const { storage, client, peerUrl } = this.opts;
    await this.launch(async () => {
      await client.fetchPages(peerUrl, keys, async (records) => {
        await storage.putMany(records.map((r) => ({ key: r.key, rec: r })), 'sync_pull');
        this.opts.onPulled(records.length);
      });
    });
  }

  private async flushPushes(): Promise<void> {
    const keys = this.pushes;
    this.pushes = [];
    if (keys.length === 0) return;
    const { storage, client, peerUrl } = this.opts;
    await this.launch(async () => {
      const { sent } = await pushRecords(storage, client, peerUrl, keys);
      this.opts.onPushed(sent);
    });
  }

  /** Starts task once fewer than MAX_IN_FLIGHT run; rejects early once any batch failed. */
  private async launch(task: () => Promise<void>): Promise<void> {
    while (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
    const p: Promise<void> = task()
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }
}

/** Keys read per getMany while pushing: bounds what one push holds in memory with large values. */
const PUSH_READ_KEYS = 16;
/** A push is sent once it holds this many value bytes. */
const PUSH_BYTES = 4 * 1024 * 1024;

/**
 * Sends this server's current records for keys to the peer (apply, last-
 * writer-wins there) in requests of about 4 MiB of values, reading them as it
 * goes so memory stays bounded. Records are read when sent, so a key written
 * since it was chosen goes out newest. Resolves with how many records were
 * sent and the version sent for each key (null: no record held).
 */
export async function pushRecords(
  storage: Storage,
  client: RepairClient,
  peerUrl: string,
  keys: readonly string[],
): Promise<{ sent: number; versions: Array<string | null> }> {
  const versions: Array<string | null> = [];
  let batch: RepairRecord[] = [];
  let bytes = 0;
  let sent = 0;
  const send = async () => {
    if (batch.length === 0) return;
    await client.apply(peerUrl, batch);
    sent += batch.length;
    batch = [];
    bytes = 0;
  };
  for (let i = 0; i < keys.length; i += PUSH_READ_KEYS) {
    const slice = keys.slice(i, i + PUSH_READ_KEYS);
    storage.getMany(slice).forEach((rec, j) => {
      versions.push(rec?.version ?? null);
      if (!rec) return;
      batch.push({ key: slice[j]!, ...rec });
      bytes += rec.value.length;
    });
    if (bytes >= PUSH_BYTES) await send();
  }
  await send();
  return { sent, versions };
}

/**
 * Compares [start, end] with the peer and queues every differing key on
 * transfer. With push false only the peer's newer keys move (the peer is
 * acquiring the range and pulls it itself). Resolves when the comparison is
 * done; the transfers finish with transfer.finish(). Rejects when the peer
 * fails or signal aborts.
 */
export async function repairRange(
  range: { start: bigint; end: bigint; push: boolean },
  storage: Storage,
  client: RepairClient,
  peerUrl: string,
  transfer: PeerTransfer,
  signal: AbortSignal,
): Promise<void> {
  const { start, end, push } = range;
  if (storage.hashRangePage(start, end, 1).entries.length === 0 && (await streamRange(range, client, peerUrl, transfer, signal))) {
    return;
  }
  const ask = (after?: string) => {
    const p = client.entries(peerUrl, { start, end, limit: ENTRIES_PAGE, ...(after !== undefined && { after }) });
    // A prefetched page that is never awaited (the sync failed) must not be an unhandled rejection.
    p.catch(() => {});
    return p;
  };
  let next = ask();
  let localAfter: string | undefined;
  for (;;) {
    const page = await next;
    signal.throwIfAborted();
    // The peer's page covers its keys up to `boundary` (its last key), or to
    // the end of the range when it has no more.
    const boundary = page.more ? page.entries[page.entries.length - 1]?.key : undefined;
    if (page.more) next = ask(boundary);
    const remote = new Map<string, RepairEntry>();
    for (const e of page.entries) remote.set(e.key, e);
    for (;;) {
      const opts = { ...(localAfter !== undefined && { after: localAfter }), ...(boundary !== undefined && { until: boundary }) };
      const local = storage.hashRangePage(start, end, ENTRIES_PAGE, opts);
      for (const le of local.entries) {
        const re = remote.get(le.key);
        if (re) {
          remote.delete(le.key);
          if (re.version > le.version) await transfer.pull(le.key);
          else if (push && le.version > re.version) await transfer.push(le.key);
        } else if (push && !transfer.purgeDue(le)) {
          await transfer.push(le.key);
        }
      }
      if (local.entries.length > 0) localAfter = local.entries[local.entries.length - 1]!.key;
      if (!local.more) break;
      signal.throwIfAborted();
    }
    for (const re of remote.values()) if (!transfer.purgeDue(re)) await transfer.pull(re.key);
    if (!page.more || boundary === undefined) return;
    localAfter = boundary;
  }
}

/** Records per page of a streamed range: about one transfer batch. */
const STREAM_PAGE = TRANSFER_BATCH;

/**
 * Copies every record of [start, end] from the peer, the next page asked for
 * while the current one is written. Resolves false (nothing copied) when the
 * peer predates the range endpoint, so the caller compares entries instead.
 * Writes are last-writer-wins: a client write that lands here meanwhile is
 * never replaced by an older streamed version.
 */
async function streamRange(
  range: { start: bigint; end: bigint },
  client: RepairClient,
  peerUrl: string,
  transfer: PeerTransfer,
  signal: AbortSignal,
): Promise<boolean> {
  const ask = (after?: string) => {
    const p = client.range(peerUrl, { start: range.start, end: range.end, limit: STREAM_PAGE, ...(after !== undefined && { after }) });
    p.catch(() => {});
    return p;
  };
  let next = ask();
  for (;;) {
    const page = await next;
    if (page === null) return false;
    signal.throwIfAborted();
    const last = page.raw[page.raw.length - 1]?.key;
    if (page.more && last !== undefined) next = ask(last);
    if (page.raw.length > 0) await transfer.store(page.raw);
    if (!page.more || last === undefined) return true;
  }
}
