import type autocannonType from 'autocannon';

/** One HTTP request the load generator sends. */
export interface RequestSpec {
  method: 'GET' | 'PUT' | 'DELETE' | 'POST';
  path: string;
  body?: Buffer | string;
  headers?: Record<string, string>;
}

/**
 * Produces each request of a run. `overflow` marks a request made after the
 * workload ran out of meaningful work (a DELETE past the last live key): it
 * is sent, since autocannon cannot skip a slot, but left out of the counts.
 */
export type NextRequest = () => { spec: RequestSpec; overflow?: boolean; exhausted?: boolean; tag?: number };

export interface LoadSpec {
  /** Base URL: http://127.0.0.1:port */
  url: string;
  connections: number;
  /** Run for this long... */
  durationSec?: number;
  /** ...or until this many requests are answered (then duration is ignored). */
  amount?: number;
  next: NextRequest;
  /** Shown on the progress line. */
  label: string;
  /** Per-request timeout. Default 10 s. */
  timeoutSec?: number;
  /**
   * Progress on stderr: updated in place every second on a terminal, a line
   * every 10 s otherwise, and a result line at the end. Default true.
   */
  progress?: boolean;
  /** Print the result line at the end (when progress is on). Default true. */
  summary?: boolean;
  /** Called with the tag of each request that was answered with a non-2xx status. */
  onFailure?: (tag: number, status: number) => void;
}

/** What one run measured. Latencies are of 2xx answers only, in milliseconds. */
export interface Measurement {
  /** Answered requests, any status. */
  requests: number;
  ok: number;
  non2xx: number;
  /** Connection errors and timeouts: requests with no answer. */
  errors: number;
  timeouts: number;
  durationSec: number;
  /** Answered requests per second. */
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  statusCodes: Record<string, number>;
  /** The workload ran out of work before the duration ended (see NextRequest). */
  exhausted?: boolean;
}

let autocannonModule: typeof autocannonType | undefined;

async function loadAutocannon(): Promise<typeof autocannonType> {
  if (autocannonModule) return autocannonModule;
  try {
    autocannonModule = (await import('autocannon')).default as typeof autocannonType;
  } catch (err) {
    throw new Error("the benchmark needs the dev dependency 'autocannon': run npm install in the repository", { cause: err });
  }
  return autocannonModule;
}

/**
 * A growable store of latency samples. Exact percentiles from every sample
 * rather than autocannon's histogram, which keeps whole milliseconds and so
 * reads 0 or 1 ms for every sub-millisecond baseline.
 */
export class Samples {
  private buf = new Float64Array(1 << 16);
  length = 0;

  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }

  /** Percentiles by nearest rank; sorts the samples in place. */
  percentiles(ps: number[]): number[] {
    const sorted = this.buf.subarray(0, this.length).sort();
    if (sorted.length === 0) return ps.map(() => 0);
    // The epsilon keeps 99.9/100 * 1000 (= 999.0000000000001 in binary floating point) at rank 999.
    const rank = (p: number) => Math.ceil((p * sorted.length) / 100 - 1e-9);
    return ps.map((p) => sorted[Math.min(sorted.length - 1, Math.max(0, rank(p) - 1))]!);
  }

  mean(): number {
    let sum = 0;
    for (let i = 0; i < this.length; i++) sum += this.buf[i]!;
    return this.length === 0 ? 0 : sum / this.length;
  }
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** Runs one autocannon load in this process and measures it. */
export async function runLoad(spec: LoadSpec): Promise<Measurement> {
  const autocannon = await loadAutocannon();
  const samples = new Samples();
  const statusCodes: Record<string, number> = {};
  let answered = 0;
  let ok = 0;
  let errors = 0;
  let timeouts = 0;
  let overflowAnswered = 0;
  let overflowOk = 0;
  let exhausted = false;
  let lastSecondCount = 0;
  /** When the last request that was part of the work got its answer. */
  let lastWorkAnswerAt = 0;
  let instance: autocannonType.Instance | undefined;

  // autocannon hands set-up and response the same per-request context, which ties an answer to its request.
  type Ctx = { tag?: number; overflow?: boolean };
  const setupRequest = (req: autocannonType.Request, context: object): autocannonType.Request => {
    const r = spec.next();
    (context as Ctx).tag = r.tag;
    (context as Ctx).overflow = r.overflow === true;
    if (r.exhausted && !exhausted) {
      exhausted = true;
      // Stopping from inside request set-up would tear down the client mid-write.
      setImmediate(() => instance?.stop());
    }
    req.method = r.spec.method;
    req.path = r.spec.path;
    req.body = r.spec.body ?? '';
    // A fresh object every time: autocannon adds Content-Length to the one it is given.
    req.headers = { ...r.spec.headers };
    return req;
  };

  const tty = process.stderr.isTTY === true;
  const showProgress = spec.progress !== false;
  const started = Date.now();
  const total = spec.amount ? `${spec.amount.toLocaleString('en-US')} req` : `${spec.durationSec} s`;
  let ticks = 0;
  const ticker = setInterval(() => {
    ticks++;
    const perSec = answered - lastSecondCount;
    lastSecondCount = answered;
    if (!showProgress || (!tty && ticks % 10 !== 0)) return;
    const elapsed = ((Date.now() - started) / 1000).toFixed(0);
    const done = spec.amount ? `${answered.toLocaleString('en-US')}/${total}` : `${elapsed}/${total}`;
    const line = `  ${spec.label}  ${done}  ${perSec.toLocaleString('en-US')} req/s  errors ${errors + (answered - ok)}`;
    process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
  }, 1000);

  let result: autocannonType.Result;
  try {
    result = await new Promise<autocannonType.Result>((resolve, reject) => {
      instance = autocannon(
        {
          url: spec.url,
          connections: spec.connections,
          duration: spec.durationSec ?? 10,
          amount: spec.amount,
          timeout: spec.timeoutSec ?? 10,
          pipelining: 1,
          requests: [
            {
              setupRequest,
              onResponse: (status: number, _body: string, context: object) => {
                if ((context as Ctx).overflow) {
                  overflowAnswered++;
                  if (status >= 200 && status < 300) overflowOk++;
                } else {
                  lastWorkAnswerAt = Date.now();
                }
                const tag = (context as Ctx).tag;
                if ((status < 200 || status >= 300) && tag !== undefined) spec.onFailure?.(tag, status);
              },
            },
          ],
        },
        (err: unknown, res: autocannonType.Result) => (err ? reject(err) : resolve(res)),
      );
      instance.on('response', (_client, statusCode, _bytes, responseTime) => {
        answered++;
        const code = String(statusCode);
        statusCodes[code] = (statusCodes[code] ?? 0) + 1;
        if (statusCode >= 200 && statusCode < 300) {
          ok++;
          samples.push(responseTime);
        }
      });
      instance.on('reqError', (err: { message?: string }) => {
        if (String(err?.message).includes('timed out')) timeouts++;
        errors++;
      });
    });
  } finally {
    clearInterval(ticker);
    if (showProgress && tty) process.stderr.write('\r\x1b[K');
  }

  // Requests made past the end of the work are no part of the measurement, whatever they were answered.
  const requests = answered - overflowAnswered;
  // autocannon acts on stop() only at its next one-second tick and counts
  // the wait in its duration: a run that ran out of work ended when the last
  // request of the work was answered (what comes after answers overflow).
  const durationSec =
    exhausted && lastWorkAnswerAt > started
      ? (lastWorkAnswerAt - started) / 1000
      : result.duration > 0
        ? result.duration
        : (Date.now() - started) / 1000;
  const [p50, p99, p999, max] = samples.percentiles([50, 99, 99.9, 100]);
  const m: Measurement = {
    requests,
    ok: ok - overflowOk,
    non2xx: answered - ok - (overflowAnswered - overflowOk),
    errors,
    timeouts,
    durationSec: round2(durationSec),
    rps: Math.round(requests / durationSec),
    p50: round2(p50!),
    p99: round2(p99!),
    p999: round2(p999!),
    max: round2(max!),
    mean: round2(samples.mean()),
    statusCodes,
  };
  if (exhausted) m.exhausted = true;
  if (showProgress && spec.summary !== false) {
    process.stderr.write(
      `  ${spec.label}  ${m.rps.toLocaleString('en-US')} req/s  p50 ${m.p50} ms  p99 ${m.p99} ms  ` +
        `errors ${m.errors}  non-2xx ${m.non2xx}${m.exhausted ? '  (ran out of keys early)' : ''}\n`,
    );
  }
  return m;
}

export interface LoadKeysResult {
  /** Keys written successfully. */
  loaded: number;
  /** Keys still not written after the retries. */
  failed: number;
  /** Requests that got no answer at all (their keys cannot be told apart, so they are not retried). */
  unanswered: number;
  seconds: number;
  /** Keys written per second over the whole load, retries included. */
  keysPerSec: number;
}

/**
 * Writes every key in `keys` once through `put`, with many concurrent
 * writers, retrying keys answered with an error up to twice.
 */
export async function loadKeys(opts: {
  url: string;
  keys: ArrayLike<number>;
  put: (i: number) => RequestSpec;
  connections: number;
  label: string;
}): Promise<LoadKeysResult> {
  const started = Date.now();
  let pending: ArrayLike<number> = opts.keys;
  let unanswered = 0;
  for (let attempt = 0; attempt < 3 && pending.length > 0; attempt++) {
    const failed: number[] = [];
    let pos = 0;
    const keys = pending;
    const m = await runLoad({
      url: opts.url,
      // autocannon refuses more connections than requests.
      connections: Math.max(1, Math.min(opts.connections, keys.length)),
      amount: keys.length,
      label: attempt === 0 ? opts.label : `${opts.label} (retry ${attempt})`,
      next: () => {
        const i = keys[Math.min(pos++, keys.length - 1)]!;
        return { spec: opts.put(i), tag: i };
      },
      onFailure: (tag) => failed.push(tag),
      timeoutSec: 30,
      summary: false,
    });
    unanswered += m.errors;
    pending = failed;
  }
  const seconds = (Date.now() - started) / 1000;
  const loaded = opts.keys.length - pending.length - unanswered;
  return { loaded, failed: pending.length, unanswered, seconds, keysPerSec: Math.round(loaded / seconds) };
}

/** The integers [from, to) as a compact array. */
export function range(from: number, to: number): Uint32Array {
  const out = new Uint32Array(Math.max(0, to - from));
  for (let i = 0; i < out.length; i++) out[i] = from + i;
  return out;
}
