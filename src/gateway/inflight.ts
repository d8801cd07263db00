import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { FastifyInstance } from 'fastify';
import { Overloaded } from '../cluster/errors.js';
import { sendError } from '../cluster/http-server.js';

/**
 * MAX_INFLIGHT_BYTES: a bound on the request bodies the gateway holds at
 * once. Without it, 30 clients each sending a 16 MiB batch make the gateway
 * hold all of them (and what it decodes from them) together.
 *
 * A request reserves its body's size before a byte of the body is read: the
 * declared Content-Length, or for a chunked body the most its route reads
 * (the body limit). A write whose reservation does not fit is answered
 * `503 OVERLOADED` with Retry-After and `Connection: close`, its body never
 * read; the connection is closed a moment later (lingerOnClose). The
 * reservation is held until the response is done or the connection is
 * gone, whichever comes first, so an aborted client never keeps one.
 *
 * The bound is on raw body bytes. What the gateway makes of a body costs
 * more (a batch is decoded to a string, parsed, and its values copied into
 * replica frames), so the gateway's memory peak is a small multiple of it;
 * docs/security.md gives the measured figure. Known gap: a replica write
 * that timed out may leave its frame queued on the connection to the
 * replica after the response (and the reservation) are gone.
 */

/** Seconds a refused client is told to wait: bodies in flight usually finish well within it. */
export const RETRY_AFTER_SECONDS = 1;

/** How long the connection of a refused request stays open after the 503 (see lingerOnClose). */
const LINGER_MS = 1000;

/** Bytes reserved for bodies being read or handled, against a cap. */
export class InflightBudget {
  private held = 0;

  constructor(readonly maxBytes: number) {}

  get bytes(): number {
    return this.held;
  }

  /**
   * Reserves n bytes when they fit under the cap. A body alone is always
   * admitted, even past the cap: a cap below a route's body limit must not
   * refuse that route for ever. The gateway then holds at most
   * max(cap, largest body limit).
   */
  tryReserve(n: number): boolean {
    if (n <= 0) return true;
    if (this.held > 0 && this.held + n > this.maxBytes) return false;
    this.held += n;
    return true;
  }

  release(n: number): void {
    if (n <= 0) return;
    this.held -= n;
    // A release without its reservation would be a bug; never go below zero.
    if (this.held < 0) this.held = 0;
  }
}

/**
 * The bytes a request's body will occupy once read: its Content-Length, or
 * the body limit for a chunked body. 0 when there is no body to read: none
 * declared, a GET or HEAD (fastify never reads their bodies), or a declared
 * length above the limit (refused 413 unread).
 */
export function declaredBodyBytes(method: string, headers: IncomingHttpHeaders, bodyLimit: number): number {
  if (method === 'GET' || method === 'HEAD') return 0;
  const cl = headers['content-length'];
  if (cl !== undefined) {
    const n = Number(cl);
    return Number.isSafeInteger(n) && n > 0 && n <= bodyLimit ? n : 0;
  }
  return headers['transfer-encoding'] !== undefined ? bodyLimit : 0;
}

/**
 * One full garbage collection once a burst of large bodies is over.
 *
 * What a burst leaves behind is garbage: body text and parsed items in V8's
 * heap, value Buffers and replica frames outside it (freed only when V8
 * collects the objects that own them). V8 collects when JavaScript
 * allocates; a gateway gone quiet allocates next to nothing, so that
 * garbage, and the memory glibc cannot return while it is held, stayed for
 * minutes (measured with the cap alone: idle 79 MB, 424-602 MB ten seconds
 * after rounds of 30 × 16 MB batches, of which 200-340 MB dead Buffers).
 * Once no body has been held for idleMs after at least minBytes were
 * admitted, one collection runs. It pauses the gateway (110-230 ms measured
 * on a busy 2-core machine with a 150-180 MB heap), once per burst and
 * never while bodies are in flight.
 */
export class BurstCollector {
  private admitted = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly gc: (() => void) | undefined,
    private readonly opts: { minBytes: number; idleMs: number } = { minBytes: 32 * 1024 * 1024, idleMs: 1000 },
  ) {}

  /** A body of n bytes was admitted: a burst may be going on. */
  noteAdmitted(n: number): void {
    this.admitted += n;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** No body is held any more. */
  noteIdle(): void {
    if (this.gc === undefined || this.admitted < this.opts.minBytes || this.timer !== undefined) return;
    const gc = this.gc;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.admitted = 0;
      gc();
    }, this.opts.idleMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * V8's full collection, without starting Node with --expose-gc: the flag,
 * set now, installs `gc` in contexts made after it, and that function
 * collects the whole isolate's heap. undefined when V8 refuses.
 */
export function fullGc(): (() => void) | undefined {
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === 'function') return own as () => void;
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    setFlagsFromString('--no-expose-gc');
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

export interface InflightLimitOptions {
  budget: InflightBudget;
  /** Collects garbage after a burst; default: none. */
  collector?: BurstCollector;
  /** Called after every reservation and release with the bytes now held. */
  onChange?: (bytes: number) => void;
  /** Called for every request refused. */
  onRefused?: () => void;
}

/** Installs the reservation (an onRequest hook) on every route of app. */
export function installInflightLimit(app: FastifyInstance, opts: InflightLimitOptions): void {
  const { budget } = opts;
  app.addHook('onRequest', (req, reply, done) => {
    const n = declaredBodyBytes(req.method, req.headers, req.routeOptions.bodyLimit ?? 0);
    if (n === 0) return done();
    if (!budget.tryReserve(n)) {
      opts.onRefused?.();
      lingerOnClose(req.raw.socket);
      reply.header('retry-after', String(RETRY_AFTER_SECONDS)).header('connection', 'close');
      sendError(
        reply,
        new Overloaded('the gateway holds as many request bodies as MAX_INFLIGHT_BYTES allows; retry after Retry-After seconds', {
          maxInflightBytes: budget.maxBytes,
        }),
      );
      return;
    }
    opts.onChange?.(budget.bytes);
    opts.collector?.noteAdmitted(n);
    const res = reply.raw;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      res.off('close', release);
      forget();
      budget.release(n);
      opts.onChange?.(budget.bytes);
      if (budget.bytes === 0) opts.collector?.noteIdle();
    };
    // The response's 'close' ends most requests (finished or aborted); the
    // socket's covers a pipelined request whose response never started.
    res.once('close', release);
    const forget = onSocketClose(req.raw.socket, release);
    done();
  });
}

/**
 * A lingering close for a refused request. Closing a connection while the
 * client's body is still arriving makes the kernel answer with a reset, and
 * a client still writing its body may then see the reset (EPIPE,
 * ECONNRESET) instead of the 503 already sent. Node closes the socket of a
 * `Connection: close` response with destroySoon(); on this socket that
 * instead ends the sending side after the response, stops reading (the
 * body is never read: the client's writes stall in the kernel's buffers
 * while it reads the answer), and destroys the socket LINGER_MS later.
 */
function lingerOnClose(socket: Socket): void {
  socket.destroySoon = function lingeringClose(this: Socket): void {
    if (this.writable) this.end();
    this.pause();
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
  };
}

const closeWaiters = new WeakMap<Socket, Set<() => void>>();

/**
 * Runs fn when socket closes (at once if it has); returns a function that
 * cancels it. One listener per socket however many requests wait on it.
 */
function onSocketClose(socket: Socket, fn: () => void): () => void {
  if (socket.destroyed) {
    queueMicrotask(fn);
    return () => {};
  }
  let waiters = closeWaiters.get(socket);
  if (waiters === undefined) {
    const set = new Set<() => void>();
    waiters = set;
    closeWaiters.set(socket, set);
    socket.once('close', () => {
      closeWaiters.delete(socket);
      for (const f of [...set]) f();
    });
  }
  const set = waiters;
  set.add(fn);
  return () => void set.delete(fn);
}
