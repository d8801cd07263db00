import type { ReplicaTransport } from '../cluster/transport.js';

/**
 * Collects hints (key K missed by replica T; holder H has it) for a moment
 * and sends them to each holder in one request, so that an outage of one
 * replica costs one extra request per flush interval, not per write. Hints
 * are durable only once the holder stored them: a gateway that dies with
 * hints in this buffer loses them, and anti-entropy repairs those keys later.
 */
export interface HintBufferOptions {
  transport: ReplicaTransport;
  /** How long hints wait to be batched. Default 100 ms. */
  flushMs?: number;
  /** Keys held at most; beyond this new hints are dropped (anti-entropy covers them). Default 100,000. */
  maxKeys?: number;
  onFlushed?: (count: number, ok: boolean) => void;
  onDropped?: (count: number) => void;
}

/**
 * Keys per request are cut so one request stays under this, counting 3 bytes
 * per UTF-16 unit (its most in a frame) plus framing: well inside what a KV
 * server reads in one request (its maxBodyBytes, 16 MiB by default, over HTTP
 * or TCP), even with JSON escapes doubling it. 100,000 keys of 1 KiB would
 * otherwise make one 100 MB request that every replica refuses.
 */
const HINT_REQUEST_BYTES = 4 * 1024 * 1024;

function* requests(keys: Iterable<string>): Generator<string[]> {
  let batch: string[] = [];
  let bytes = 0;
  for (const key of keys) {
    const size = 3 * key.length + 8;
    if (batch.length > 0 && bytes + size > HINT_REQUEST_BYTES) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(key);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}

export class HintBuffer {
  /** holder url → target id → keys */
  private pending = new Map<string, Map<string, Set<string>>>();
  private size = 0;
  private timer: NodeJS.Timeout | null = null;
  private inFlight = new Set<Promise<void>>();
  private readonly flushMs: number;
  private readonly maxKeys: number;

  constructor(private readonly opts: HintBufferOptions) {
    this.flushMs = opts.flushMs ?? 100;
    this.maxKeys = opts.maxKeys ?? 100_000;
  }

  add(holderUrl: string, targetId: string, key: string): void {
    if (this.size >= this.maxKeys) {
      this.opts.onDropped?.(1);
      return;
    }
    let byTarget = this.pending.get(holderUrl);
    if (!byTarget) this.pending.set(holderUrl, (byTarget = new Map()));
    let keys = byTarget.get(targetId);
    if (!keys) byTarget.set(targetId, (keys = new Set()));
    if (!keys.has(key)) {
      keys.add(key);
      this.size++;
    }
    this.timer ??= setTimeout(() => this.flush(), this.flushMs);
  }

  get pendingKeys(): number {
    return this.size;
  }

  /** Sends everything buffered; resolves when those requests have finished. */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    this.pending = new Map();
    this.size = 0;
    for (const [holder, byTarget] of batch) {
      for (const [target, keys] of byTarget) {
        for (const list of requests(keys)) {
          const p = this.opts.transport.storeHints(holder, target, list).then(
            () => this.opts.onFlushed?.(list.length, true),
            () => this.opts.onFlushed?.(list.length, false),
          );
          this.inFlight.add(p);
          void p.finally(() => this.inFlight.delete(p));
        }
      }
    }
    await Promise.all([...this.inFlight]);
  }

  async close(): Promise<void> {
    await this.flush();
  }
}
