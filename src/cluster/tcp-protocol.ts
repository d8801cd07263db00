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
 * may answer them in any order. A frame longer than MAX_FRAME_BYTES, or a body
 * that does not parse, is a protocol error: the receiver closes the connection.
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
/** Largest frame (after the length field) either side accepts. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/**
 * Turns a stream of TCP chunks into frames. Complete frames inside a chunk
 * are handed on as views of it; a frame split across chunks is copied once
 * into a buffer of its exact size (allocated when its length is known), so
 * the work is linear in the bytes received however the stream is cut.
 * Bodies are views into buffers the decoder does not reuse; a consumer that
 * keeps one for long should copy it so the rest of its chunk can be freed.
 */
export class FrameDecoder {
  private readonly head = Buffer.alloc(4);
  private headFill = 0;
  private frame: Buffer | null = null;
  private frameFill = 0;
  private stopped = false;

  constructor(
    private readonly onFrame: (id: number, op: number, body: Buffer) => void,
    private readonly maxFrameBytes = MAX_FRAME_BYTES,
  ) {}

  /** Feeds one chunk; throws ProtocolError on a bad length. Frames after a stop() are dropped. */
  push(chunk: Buffer): void {
    let off = 0;
    const end = chunk.length;
    while (off < end && !this.stopped) {
      if (this.frame !== null) {
        const n = Math.min(end - off, this.frame.length - this.frameFill);
        chunk.copy(this.frame, this.frameFill, off, off + n);
        this.frameFill += n;
        off += n;
        if (this.frameFill < this.frame.length) return;
        const frame = this.frame;
        this.frame = null;
        this.emit(frame);
      } else if (this.headFill > 0 || end - off < 4) {
        while (this.headFill < 4 && off < end) this.head[this.headFill++] = chunk[off++]!;
        if (this.headFill < 4) return;
        this.headFill = 0;
        this.startFrame(this.head.readUInt32BE(0));
      } else {
        const len = chunk.readUInt32BE(off);
        if (end - off - 4 >= len && len >= 5) {
          this.emit(chunk.subarray(off + 4, off + 4 + len));
          off += 4 + len;
        } else {
          off += 4;
          this.startFrame(len);
        }
      }
    }
  }

  /** Drops buffered bytes and ignores anything pushed later (the connection is closing). */
  stop(): void {
    this.stopped = true;
    this.frame = null;
  }

  private startFrame(len: number): void {
    if (len < 5) throw new ProtocolError(`frame length ${len} is shorter than its header`);
    if (len > this.maxFrameBytes) {
      throw new ProtocolError(`frame of ${len} bytes exceeds the ${this.maxFrameBytes}-byte limit`);
    }
    this.frame = Buffer.allocUnsafe(len);
    this.frameFill = 0;
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
