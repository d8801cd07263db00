import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { http, kvUrl } from '../support/index.js';

/**
 * A bounded client workload against one gateway, recording a history the
 * checker can judge. Clients pick keys at random from a small key space so
 * that keys are overwritten many times and, now and then, written by two
 * clients at once (last-writer-wins must still pick the newest version).
 *
 * Every value is unique in the run (`<seq>@<key>`), so a value read back names
 * exactly one write. Times are `performance.now()` of this process: a write's
 * `end` is when its answer arrived, a read's `start` when it was sent, so
 * "acknowledged before the read started" is a real-time fact, not a guess.
 */

/**
 * - `acked`: the gateway said it is done (201 for PUT, 200 for DELETE).
 * - `indeterminate`: 5xx, a timeout or a broken connection. The write may
 *   have reached some replicas (there is no rollback), so it may or may not
 *   show up later: the checker allows it, and only it, besides the acks.
 * - `noop`: a DELETE answered 404 — the quorum read found no live value, so
 *   nothing was written.
 * - `rejected`: any other 4xx. The workload only sends valid requests, so this
 *   is a bug worth failing on.
 */
export type WriteOutcome = 'acked' | 'indeterminate' | 'noop' | 'rejected';

export interface WriteRecord {
  seq: number;
  key: string;
  kind: 'put' | 'delete';
  /** The value written; null for a delete (a tombstone). */
  value: string | null;
  start: number;
  end: number;
  outcome: WriteOutcome;
  /** The version the gateway stamped; known only for acknowledged writes. */
  version?: string;
  status?: number;
  error?: string;
  /** X-FlexStore-Replicas of the answer: who acknowledged it. */
  replicas?: string;
}

export interface ReadRecord {
  key: string;
  start: number;
  end: number;
  /** 200 and 404 are answers; anything else (or a transport error) is a failed read. */
  outcome: 'value' | 'absent' | 'failed';
  value?: string;
  version?: string;
  status?: number;
  error?: string;
}

export class History {
  /** Per key, in the order the clients sent them. */
  readonly writes = new Map<string, WriteRecord[]>();
  readonly reads: ReadRecord[] = [];
  private readonly bySeq = new Map<number, WriteRecord>();

  constructor(readonly keys: readonly string[]) {
    for (const k of keys) this.writes.set(k, []);
  }

  addWrite(w: WriteRecord): void {
    this.writes.get(w.key)!.push(w);
    this.bySeq.set(w.seq, w);
  }

  /** The write that produced a value read back, or undefined for a value nobody wrote. */
  writeOf(value: string): WriteRecord | undefined {
    const at = value.indexOf('@');
    if (at <= 0) return undefined;
    const w = this.bySeq.get(Number(value.slice(0, at)));
    return w && w.value === value ? w : undefined;
  }

  allWrites(): WriteRecord[] {
    return [...this.writes.values()].flat();
  }

  count(outcome: WriteOutcome): number {
    let n = 0;
    for (const list of this.writes.values()) for (const w of list) if (w.outcome === outcome) n++;
    return n;
  }

  get operations(): number {
    let n = this.reads.length;
    for (const list of this.writes.values()) n += list.length;
    return n;
  }
}

export interface WorkloadOptions {
  gatewayUrl: string;
  /** Keys are `<keyPrefix>/<i>`; one prefix per case keeps cases apart in logs. */
  keyPrefix: string;
  /** Size of the key space. Default 200. */
  keys?: number;
  /** Concurrent clients, each with one request in flight. Default 8. */
  clients?: number;
  /** Share of operations that are PUTs. Default 0.6. */
  putRatio?: number;
  /** Share of operations that are DELETEs (the rest are reads). Default 0.05. */
  deleteRatio?: number;
  /**
   * Pause between one client's operations. Default 5 ms. It keeps eight
   * clients from starving the servers of CPU on a small machine, where a
   * starved heartbeat looks like a failure the test did not inject.
   */
  thinkMs?: number;
  /** A request without an answer by then is abandoned: its outcome is indeterminate. Default 5000. */
  requestTimeoutMs?: number;
  /** Hard bounds: the workload stops by itself after this many operations or milliseconds. */
  maxOps?: number;
  maxMs?: number;
  /** PRNG seed for key and operation choice. */
  seed?: number;
}

export class Workload {
  readonly history: History;
  readonly seed: number;
  private stopping = false;
  private seq = 0;
  private ops = 0;
  private acked = 0;
  private readonly started = performance.now();
  private readonly clients: Promise<void>[];
  private readonly random: () => number;
  private readonly opts: Required<Omit<WorkloadOptions, 'seed'>>;

  constructor(options: WorkloadOptions) {
    this.opts = {
      keys: 200,
      clients: 8,
      putRatio: 0.6,
      deleteRatio: 0.05,
      thinkMs: 5,
      requestTimeoutMs: 5000,
      maxOps: 50_000,
      maxMs: 120_000,
      ...options,
    };
    this.seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.random = mulberry32(this.seed);
    const keys = Array.from({ length: this.opts.keys }, (_, i) => `${this.opts.keyPrefix}/${i}`);
    this.history = new History(keys);
    this.clients = Array.from({ length: this.opts.clients }, () => this.client());
  }

  /** Acknowledged writes so far. */
  get acknowledged(): number {
    return this.acked;
  }

  get operations(): number {
    return this.ops;
  }

  /** Resolves once `n` writes in total have been acknowledged; rejects after timeoutMs. */
  async acksAtLeast(n: number, timeoutMs = 20_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.acked < n) {
      if (this.stopping) throw new Error(`workload stopped at ${this.acked} of ${n} acknowledged writes`);
      if (performance.now() > deadline) {
        throw new Error(`only ${this.acked} of ${n} writes acknowledged after ${timeoutMs} ms`);
      }
      await sleep(20);
    }
  }

  /** Stops the clients and waits for the requests in flight to settle. */
  async stop(): Promise<History> {
    this.stopping = true;
    await Promise.all(this.clients);
    return this.history;
  }

  private done(): boolean {
    return (
      this.stopping || this.ops >= this.opts.maxOps || performance.now() - this.started > this.opts.maxMs
    );
  }

  private async client(): Promise<void> {
    // Let the constructor finish before the first request.
    await sleep(0);
    while (!this.done()) {
      const key = this.history.keys[Math.floor(this.random() * this.history.keys.length)]!;
      const r = this.random();
      this.ops++;
      if (r < this.opts.putRatio) await this.put(key);
      else if (r < this.opts.putRatio + this.opts.deleteRatio) await this.del(key);
      else await this.read(key);
      if (this.opts.thinkMs > 0) await sleep(this.opts.thinkMs);
    }
  }

  private async put(key: string): Promise<void> {
    const seq = ++this.seq;
    const value = `${seq}@${key}`;
    const w: WriteRecord = { seq, key, kind: 'put', value, start: performance.now(), end: 0, outcome: 'indeterminate' };
    await this.write(w, 'PUT', 201, { body: value, headers: { 'content-type': 'text/plain' } });
  }

  private async del(key: string): Promise<void> {
    const seq = ++this.seq;
    const w: WriteRecord = { seq, key, kind: 'delete', value: null, start: performance.now(), end: 0, outcome: 'indeterminate' };
    await this.write(w, 'DELETE', 200, {});
  }

  /** Sends a write and records its outcome: `acked` on `ackStatus`, a DELETE's 404 `noop` (see WriteOutcome). */
  private async write(
    w: WriteRecord,
    method: 'PUT' | 'DELETE',
    ackStatus: number,
    req: { body?: string; headers?: Record<string, string> },
  ): Promise<void> {
    this.history.addWrite(w);
    try {
      const res = await http(method, kvUrl(this.opts.gatewayUrl, w.key), { ...req, timeoutMs: this.opts.requestTimeoutMs });
      w.end = performance.now();
      w.status = res.status;
      w.replicas = header(res.headers['x-flexstore-replicas']);
      if (res.status === ackStatus) {
        w.outcome = 'acked';
        w.version = res.json?.version;
        this.acked++;
      } else if (method === 'DELETE' && res.status === 404) {
        w.outcome = 'noop';
      } else if (res.status >= 500) {
        w.error = res.json?.code ?? res.text.slice(0, 200);
      } else {
        w.outcome = 'rejected';
        w.error = res.text.slice(0, 200);
      }
    } catch (err) {
      w.end = performance.now();
      w.error = errorText(err);
    }
  }

  private async read(key: string): Promise<void> {
    const r: ReadRecord = { key, start: performance.now(), end: 0, outcome: 'failed' };
    this.history.reads.push(r);
    try {
      const res = await http('GET', kvUrl(this.opts.gatewayUrl, key), { timeoutMs: this.opts.requestTimeoutMs });
      r.end = performance.now();
      r.status = res.status;
      if (res.status === 200) {
        r.outcome = 'value';
        r.value = res.text;
        r.version = versionOfEtag(res.headers.etag);
      } else if (res.status === 404) {
        r.outcome = 'absent';
      } else {
        r.error = res.json?.code ?? res.text.slice(0, 200);
      }
    } catch (err) {
      r.end = performance.now();
      r.error = errorText(err);
    }
  }
}

export function versionOfEtag(etag: string | string[] | undefined): string | undefined {
  const v = header(etag);
  return v ? v.replace(/^"|"$/g, '') : undefined;
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

function errorText(err: unknown): string {
  if (err instanceof Error) return `${(err as NodeJS.ErrnoException).code ?? err.name}: ${err.message}`;
  return String(err);
}

/** Small seeded PRNG: a failing run can be replayed with the same sequence of key and operation choices. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
