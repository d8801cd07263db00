import type { Socket } from 'node:net';
import { ProtocolError } from './errors.js';

/**
 * The framed binary replica protocol spoken between gateways and KV servers
 * over persistent TCP connections (src/cluster/tcp-transport.ts,
 * src/kv/tcp-replica-server.ts). It carries the same operations with the same
 * semantics as the HTTP replica API (src/kv/replica-api.ts).
 *
 * Every frame, in both directions:
 *
 *   [length u32 BE][request id u32 BE][op u8][body]
 *
 * `length` counts the bytes after itself (5 + body). Requests and replies are
 * matched by id, so one connection carries many requests at once and a server
 * may answer them in any order. A length over MAX_FRAME_BYTES (or under 5),
 * or a body that does not parse, is a protocol error: the receiver closes the
 * connection.
 *
 * A KV server also bounds what one connection can cost it
 * (tcp-replica-server.ts; docs/security.md "Replica port limits"):
 * - Request frames up to a limit derived from its maxBodyBytes. A longer one
 *   (up to MAX_FRAME_BYTES) is read and dropped, never buffered, and answered
 *   ERROR PAYLOAD_TOO_LARGE; the connection stays, as after an HTTP 413.
 * - A frame must arrive whole within frameTimeoutMs of its first byte, or the
 *   connection is closed. Between frames a connection may stay idle.
 * - Bytes of partly received frames count against one budget for all
 *   connections; a connection that takes it past the budget is not read again
 *   until bytes are freed (its frame deadline keeps running).
 * Gateways decode replies without these limits: replies answer their own
 * requests, and a LIST page can be large.
 *
 * Bodies are laid out in tcp-codec.ts.
 */

export const Op = {
  GET: 1,
  PUT: 2,
  LIST: 3,
  HINTS: 4,
  OK: 0x80,
  NOT_FOUND: 0x81,
  ERROR: 0x82,
} as const;

/** Bytes of the length, id and op fields. */
export const FRAME_HEADER_BYTES = 9;
/** Largest frame (after the length field) either side ever accepts. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/**
 * A split frame up to this size is copied into a buffer allocated at its
 * header (bounded, and the common case of pipelined small requests); a larger
 * one is kept as the chunks it arrived in and joined once whole.
 */
const SMALL_FRAME_BYTES = 64 * 1024;
/** About what a reader woken by InflightBudget brings before it is checked again: one socket read. */
const READ_BYTES = 64 * 1024;

/** A reader paused by InflightBudget. */
interface BudgetWaiter {
  /** Bytes it holds now. */
  held(): number;
  resume(): void;
}

/**
 * Bytes held in partly received frames by all connections of one server.
 * Counted per chunk kept, so a small tail keeping a 64 KiB read alive counts
 * as 64 KiB: the count is memory, not payload. A reader past the limit
 * pauses (see FrameDecoder) and is woken in arrival order as bytes free.
 * The count can pass the limit by the read that took it there, one per
 * paused connection, and by a lone frame: a reader holding all of the count
 * is never paused, or a frame larger than the budget could never arrive.
 */
export class InflightBudget {
  private used = 0;
  private readonly waiting = new Set<BudgetWaiter>();

  constructor(readonly limit: number) {}

  /** Bytes held now. */
  get bytes(): number {
    return this.used;
  }

  /** Readers paused now. */
  get paused(): number {
    return this.waiting.size;
  }

  take(n: number): void {
    this.used += n;
  }

  /** Whether a reader holding `mine` bytes must pause. */
  over(mine: number): boolean {
    return this.used > this.limit && this.used > mine;
  }

  release(n: number): void {
    this.used -= n;
    this.wake();
  }

  wait(w: BudgetWaiter): void {
    this.waiting.add(w);
    this.wake();
  }

  cancel(w: BudgetWaiter): void {
    this.waiting.delete(w);
  }

  private wake(): void {
    // Each reader woken may bring one more read before it checks again: wake
    // no more than the room left takes.
    let room = this.limit - this.used;
    for (const w of this.waiting) {
      if (room <= 0 && this.used > w.held()) break;
      this.waiting.delete(w);
      room -= READ_BYTES;
      w.resume();
    }
  }
}

export interface FrameDecoderOptions {
  /** Longest frame accepted. Default MAX_FRAME_BYTES. */
  maxFrameBytes?: number;
  /**
   * Called, once all of it has been read and dropped, for a frame longer than
   * maxFrameBytes but within MAX_FRAME_BYTES. Without it such a frame is a
   * ProtocolError.
   */
  onOversize?: (id: number, op: number, length: number) => void;
  /** The budget partial frames count against; without it nothing is counted and nothing pauses. */
  budget?: InflightBudget;
  /** Stops the reads (socket.pause) while the budget is exceeded; `resume` starts them again. */
  pause?: () => void;
  resume?: () => void;
}

/**
 * Turns a stream of TCP chunks into frames. Complete frames inside a chunk
 * are handed on as views of it. A split frame is held as the chunks it came
 * in and joined into one buffer when its last byte arrives (a small one is
 * copied into a buffer of its size as it arrives), so memory grows with the
 * bytes received, never with the length a peer declares, and every byte is
 * copied at most once. Bodies are views into buffers the decoder does not
 * reuse; a consumer that keeps one for long should copy it so the rest of its
 * chunk can be freed.
 */
export class FrameDecoder {
  private readonly maxFrameBytes: number;
  private readonly budget: InflightBudget | undefined;
  private readonly head = Buffer.alloc(4);
  private headFill = 0;
  /** Length of the frame being received, and how much of it is still to come (0: between frames). */
  private frameLen = 0;
  private need = 0;
  /** A split small frame, filled as it arrives. */
  private small: Buffer | null = null;
  /** A split large frame: views of the chunks it came in. */
  private pieces: Buffer[] = [];
  /** Bytes counted against the budget. */
  private heldBytes = 0;
  /** An oversize frame being dropped, and its id and op (the first 5 bytes). */
  private skipping = false;
  private readonly skipHead = Buffer.alloc(5);
  private skipFill = 0;
  private started = 0;
  private waiting = false;
  private stopped = false;

  constructor(
    private readonly onFrame: (id: number, op: number, body: Buffer) => void,
    private readonly opts: FrameDecoderOptions = {},
  ) {
    this.maxFrameBytes = opts.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.budget = opts.budget;
  }

  /** Bytes of a partial frame held now (as counted against the budget). */
  get held(): number {
    return this.heldBytes;
  }

  /** Date.now() when the first byte of the frame still being received arrived; 0 between frames. */
  get frameStartedAt(): number {
    return this.started;
  }

  /** Feeds one chunk; throws ProtocolError on a bad length. Frames after a stop() are dropped. */
  push(chunk: Buffer): void {
    let off = 0;
    const end = chunk.length;
    while (off < end && !this.stopped) {
      if (this.need > 0) {
        const n = Math.min(end - off, this.need);
        this.take(chunk, off, n);
        off += n;
        this.need -= n;
        if (this.need > 0) break;
        this.finish();
      } else if (this.headFill > 0 || end - off < 4) {
        if (this.headFill === 0) this.started = Date.now();
        while (this.headFill < 4 && off < end) this.head[this.headFill++] = chunk[off++]!;
        if (this.headFill < 4) break;
        this.headFill = 0;
        this.start(this.head.readUInt32BE(0));
      } else {
        const len = chunk.readUInt32BE(off);
        if (end - off - 4 >= len && len >= 5 && len <= this.maxFrameBytes) {
          this.emit(chunk.subarray(off + 4, off + 4 + len));
          off += 4 + len;
        } else {
          off += 4;
          this.started = Date.now();
          this.start(len);
        }
      }
    }
    const budget = this.budget;
    if (budget !== undefined && this.heldBytes > 0 && !this.waiting && !this.stopped && budget.over(this.heldBytes)) {
      this.waiting = true;
      this.opts.pause?.();
      budget.wait(this.waiter);
    }
  }

  /** Drops buffered bytes, gives back their budget and ignores anything pushed later (the connection is closing). */
  stop(): void {
    this.stopped = true;
    if (this.waiting) this.budget?.cancel(this.waiter);
    this.waiting = false;
    this.reset();
  }

  private readonly waiter: BudgetWaiter = {
    held: () => this.heldBytes,
    resume: (): void => {
      this.waiting = false;
      if (!this.stopped) this.opts.resume?.();
    },
  };

  private start(len: number): void {
    if (len < 5) throw new ProtocolError(`frame length ${len} is shorter than its header`);
    if (len > this.maxFrameBytes && (this.opts.onOversize === undefined || len > MAX_FRAME_BYTES)) {
      const limit = this.opts.onOversize === undefined ? this.maxFrameBytes : MAX_FRAME_BYTES;
      throw new ProtocolError(`frame of ${len} bytes exceeds the ${limit}-byte limit`);
    }
    this.frameLen = len;
    this.need = len;
    if (len > this.maxFrameBytes) {
      this.skipping = true;
      this.skipFill = 0;
    } else if (len <= SMALL_FRAME_BYTES) {
      this.small = Buffer.allocUnsafe(len);
      this.hold(len);
    }
  }

  private take(chunk: Buffer, off: number, n: number): void {
    if (this.skipping) {
      for (let i = off; this.skipFill < 5 && i < off + n; i++) this.skipHead[this.skipFill++] = chunk[i]!;
    } else if (this.small !== null) {
      chunk.copy(this.small, this.frameLen - this.need, off, off + n);
    } else {
      this.pieces.push(chunk.subarray(off, off + n));
      // The view keeps the whole chunk alive.
      this.hold(chunk.length);
    }
  }

  private hold(n: number): void {
    this.heldBytes += n;
    this.budget?.take(n);
  }

  private finish(): void {
    const len = this.frameLen;
    if (this.skipping) {
      this.reset();
      this.opts.onOversize!(this.skipHead.readUInt32BE(0), this.skipHead[4]!, len);
      return;
    }
    const frame = this.small ?? (this.pieces.length === 1 ? this.pieces[0]! : Buffer.concat(this.pieces, len));
    this.reset();
    this.emit(frame);
  }

  /** Forgets the frame in progress and gives back its budget. */
  private reset(): void {
    this.small = null;
    this.pieces = [];
    this.skipping = false;
    this.need = 0;
    this.headFill = 0;
    this.started = 0;
    const held = this.heldBytes;
    this.heldBytes = 0;
    if (held > 0) this.budget?.release(held);
  }

  private emit(frame: Buffer): void {
    this.onFrame(frame.readUInt32BE(0), frame[4]!, frame.subarray(5));
  }
}

/**
 * Queues frames for one socket and writes everything queued in one event-loop
 * turn at once: one syscall and, with Nagle off, one packet train for all the
 * replies (or requests) produced in that turn.
 */
export class FrameWriter {
  private queue: Buffer[] = [];
  private bytes = 0;
  private scheduled = false;
  /** While held, frames queue and nothing is written (a connection still in its handshake). */
  private held = false;

  constructor(
    private readonly socket: Socket,
    /** Called when the socket's buffer is full, so a server can stop reading new requests. */
    private readonly onBackpressure?: () => void,
  ) {}

  /** Queues frames without writing them until release(). */
  hold(): void {
    this.held = true;
  }

  /** Writes what was queued while held, and everything after at once. */
  release(): void {
    this.held = false;
    this.flush();
  }

  write(frame: Buffer): void {
    this.queue.push(frame);
    this.bytes += frame.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.held) return;
    const queue = this.queue;
    if (queue.length === 0) return;
    const bytes = this.bytes;
    this.queue = [];
    this.bytes = 0;
    if (this.socket.destroyed) return;
    let ok: boolean;
    if (queue.length === 1) {
      ok = this.socket.write(queue[0]!);
    } else if (bytes <= 1024 * 1024) {
      ok = this.socket.write(Buffer.concat(queue, bytes));
    } else {
      // Large values: a writev of the frames beats copying megabytes into one buffer.
      this.socket.cork();
      for (const f of queue) this.socket.write(f);
      this.socket.uncork();
      ok = this.socket.writableLength < this.socket.writableHighWaterMark;
    }
    if (!ok) this.onBackpressure?.();
  };
}

/** A frame with room for bodyBytes, its header already written; the body starts at FRAME_HEADER_BYTES. */
export function allocFrame(id: number, op: number, bodyBytes: number): Buffer {
  // Refused here, the one request fails; sent, the peer would drop the whole connection.
  if (5 + bodyBytes > MAX_FRAME_BYTES) {
    throw new RangeError(`frame of ${5 + bodyBytes} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`);
  }
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bodyBytes);
  buf.writeUInt32BE(5 + bodyBytes, 0);
  buf.writeUInt32BE(id, 4);
  buf[8] = op;
  return buf;
}
