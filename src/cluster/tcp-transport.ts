import type { Socket } from 'node:net';
import { MAX_ERROR_TEXT, ProtocolError, ReplicaUnreachable, peerError } from './errors.js';
import { isVersion } from './hlc.js';
import { OPEN_CLUSTER, type ClusterSecurity } from './security.js';
import { certificateProblem, clientCertificateRefused, tcpConnect } from './tls.js';
import {
  decodeError,
  decodeListReply,
  decodePutReply,
  decodeRecordReply,
  encodeGet,
  encodeHints,
  encodeList,
  encodePut,
} from './tcp-codec.js';
import { FrameDecoder, FrameWriter, Op } from './tcp-protocol.js';
import { HANDSHAKE_TIMEOUT_MS, proveMember } from './tcp-handshake.js';
import type { CallOptions, ListPage, ListQuery, PutResult, ReplicaTransport } from './transport.js';
import type { ReplicaRecord } from './types.js';

/**
 * ReplicaTransport over the framed TCP protocol (tcp-protocol.ts) served by
 * src/kv/tcp-replica-server.ts. Nodes are still named by their HTTP base URL;
 * `resolvePort` says which TCP port that node serves the protocol on; a node
 * without one fails the call with ReplicaUnreachable. Nothing falls back to
 * HTTP here: the gateway picks the transport per node up front
 * (src/gateway/replica-router.ts).
 *
 * Persistent connections per node (one by default), opened on first use, each carrying
 * any number of requests at once; calls are spread over them round-robin.
 * Frames produced in one event-loop turn go out in one write. A lost
 * connection fails its calls at once and the next call reconnects; a refused
 * connect backs off (fail-fast meanwhile) so a dead node costs nothing.
 *
 * Each connection opens with the handshake of tcp-handshake.ts; calls made
 * meanwhile wait in its writer, and a failed handshake fails them like a
 * failed connect (with the handshake's reason).
 *
 * Deadlines are kept in one timer wheel per transport, swept every TICK_MS,
 * instead of a timer per call. As with HTTP, a call that times out may still
 * have been applied by the replica; read repair settles it.
 */

export interface TcpReplicaTransportOptions {
  /** Default deadline of one call, connect to reply. Default 2000 ms. */
  timeoutMs?: number;
  /**
   * Connections per node; calls are spread over them. Default 1: one socket
   * per node coalesces the most frames per write (measured: fewer write
   * syscalls per PUT on both sides than with 2), and the protocol pipelines.
   */
  connections?: number;
  /** The replica TCP port of the node at this HTTP base URL; undefined when it serves none. */
  resolvePort: (nodeUrl: string) => number | undefined;
  /** Cluster secrets and TLS of this process (security.ts). Default: open, plain TCP. */
  security?: ClusterSecurity;
}

/** Resolution of the deadline sweep: a call fails at most this much after its deadline. */
const TICK_MS = 10;
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 1000;

interface Call {
  id: number;
  conn: Connection;
  op: string;
  timeoutMs: number;
  slot: number;
  settle(op: number, body: Buffer): void;
  fail(err: ReplicaUnreachable): void;
}

export class TcpReplicaTransport implements ReplicaTransport {
  private readonly timeoutMs: number;
  private readonly connections: number;
  private readonly resolvePort: (nodeUrl: string) => number | undefined;
  private readonly security: ClusterSecurity;
  private readonly nodes = new Map<string, Node>();
  private readonly wheel = new DeadlineWheel();
  private closed = false;

  constructor(opts: TcpReplicaTransportOptions) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.connections = Math.max(1, opts.connections ?? 1);
    this.resolvePort = opts.resolvePort;
    this.security = opts.security ?? OPEN_CLUSTER;
  }

  get(nodeUrl: string, key: string, opts?: CallOptions): Promise<ReplicaRecord | null> {
    return this.call(nodeUrl, 'GET', opts, (id) => encodeGet(id, key), (op, body) => {
      if (op === Op.NOT_FOUND) return null;
      const rec = decodeRecordReply(body);
      if (!isVersion(rec.version)) throw new ProtocolError('GET reply without a valid version');
      return rec;
    });
  }

  put(nodeUrl: string, key: string, rec: ReplicaRecord, opts?: CallOptions): Promise<PutResult> {
    return this.call(nodeUrl, 'PUT', opts, (id) => encodePut(id, key, rec), (_op, body) => {
      const r = decodePutReply(body);
      if (!isVersion(r.version)) throw new ProtocolError('PUT reply without a valid version');
      return r;
    });
  }

  list(nodeUrl: string, query: ListQuery, opts?: CallOptions): Promise<ListPage> {
    return this.call(nodeUrl, 'list', opts, (id) => encodeList(id, query), (_op, body) => decodeListReply(body));
  }

  storeHints(nodeUrl: string, targetId: string, keys: string[], opts?: CallOptions): Promise<void> {
    return this.call(nodeUrl, 'hints', opts, (id) => encodeHints(id, targetId, keys), () => undefined);
  }

  /** Closes every connection; calls in flight fail with ReplicaUnreachable. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const conns = [...this.nodes.values()].flatMap((n) => n.conns.filter((c): c is Connection => c !== null));
    this.nodes.clear();
    await Promise.all(conns.map((c) => c.destroy('transport is closed')));
  }

  private call<T>(
    nodeUrl: string,
    op: string,
    opts: CallOptions | undefined,
    encode: (id: number) => Buffer,
    decode: (replyOp: number, body: Buffer) => T,
  ): Promise<T> {
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    let conn: Connection;
    let frame: Buffer;
    let id: number;
    try {
      conn = this.node(nodeUrl).pick();
      id = conn.nextId();
      frame = encode(id);
    } catch (err) {
      return Promise.reject(asUnreachable(nodeUrl, op, err));
    }
    return new Promise<T>((resolve, reject) => {
      const call: Call = {
        id,
        conn,
        op,
        timeoutMs,
        slot: 0,
        settle(replyOp, body) {
          if (replyOp === Op.ERROR) {
            const { code, text } = decodeError(body);
            reject(peerError(nodeUrl, `${op} answered ERROR: ${text.slice(0, MAX_ERROR_TEXT)}`, code));
          } else if (replyOp === Op.OK || (replyOp === Op.NOT_FOUND && op === 'GET')) {
            resolve(decode(replyOp, body));
          } else {
            throw new ProtocolError(`${op} answered with unexpected op ${replyOp}`);
          }
        },
        fail: reject,
      };
      conn.pending.set(id, call);
      this.wheel.add(call, Date.now() + timeoutMs);
      conn.writer.write(frame);
    });
  }

  private node(nodeUrl: string): Node {
    if (this.closed) throw new ReplicaUnreachable(nodeUrl, 'transport is closed');
    const port = this.resolvePort(nodeUrl);
    if (port === undefined) throw new ReplicaUnreachable(nodeUrl, 'node advertises no replica TCP port');
    let node = this.nodes.get(nodeUrl);
    if (node === undefined) {
      let host: string;
      try {
        // URL keeps IPv6 brackets; net.connect wants the bare address.
        host = new URL(nodeUrl).hostname.replace(/^\[(.*)\]$/, '$1');
      } catch (err) {
        throw new ReplicaUnreachable(nodeUrl, 'not a valid node URL', { cause: err });
      }
      node = new Node(nodeUrl, host, port, this.connections, this.timeoutMs, this.wheel, this.security);
      this.nodes.set(nodeUrl, node);
    } else if (node.port !== port) {
      // The node restarted on another port: its old connections lead nowhere useful.
      node.retarget(port);
    }
    return node;
  }
}

/** One replica's connections and its reconnect backoff. */
class Node {
  readonly conns: Array<Connection | null>;
  private next = 0;
  private backoffMs = 0;
  private retryAt = 0;
  private lastError = '';

  constructor(
    readonly url: string,
    readonly host: string,
    public port: number,
    size: number,
    readonly connectTimeoutMs: number,
    private readonly wheel: DeadlineWheel,
    readonly security: ClusterSecurity,
  ) {
    this.conns = new Array<Connection | null>(size).fill(null);
  }

  pick(): Connection {
    const i = this.next;
    this.next = (i + 1) % this.conns.length;
    const c = this.conns[i];
    if (c && !c.dead) return c;
    if (Date.now() < this.retryAt) {
      throw new ReplicaUnreachable(this.url, `not connected (${this.lastError}); retrying in ${this.retryAt - Date.now()} ms`);
    }
    const fresh = new Connection(this, this.wheel);
    this.conns[i] = fresh;
    return fresh;
  }

  retarget(port: number): void {
    this.port = port;
    this.backoffMs = 0;
    this.retryAt = 0;
    for (const c of this.conns) void c?.destroy('node moved to another port');
  }

  connected(): void {
    this.backoffMs = 0;
    this.retryAt = 0;
  }

  connectFailed(why: string): void {
    // Every connection of one attempt fails together; that is one failure, not several.
    if (Date.now() < this.retryAt) return;
    this.backoffMs = Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, this.backoffMs * 2));
    this.retryAt = Date.now() + this.backoffMs;
    this.lastError = why;
  }
}

/** One TCP connection and the calls waiting on it. */
class Connection {
  readonly pending = new Map<number, Call>();
  readonly writer: FrameWriter;
  dead = false;
  private readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private established = false;
  private ids = 0;
  private readonly closed: Promise<void>;

  constructor(
    private readonly node: Node,
    private readonly wheel: DeadlineWheel,
  ) {
    // TLS when the process has TLS material: established only once the handshake verified the replica.
    const { socket, readyEvent } = tcpConnect(node.host, node.port, node.security);
    this.socket = socket;
    this.writer = new FrameWriter(this.socket);
    // Calls queue until the handshake proved both ends (tcp-handshake.ts).
    this.writer.hold();
    this.decoder = new FrameDecoder((id, op, body) => this.onFrame(id, op, body));
    // Without this a black-holed address would hold the connection (and fail
    // every call queued on it) until the OS gives up, minutes later.
    this.socket.setTimeout(node.connectTimeoutMs, () => {
      why = `connect timed out after ${node.connectTimeoutMs} ms`;
      this.socket.destroy();
    });
    this.socket.once(readyEvent, () => {
      this.socket.setTimeout(0);
      // A replica that accepts but never answers the handshake (a paused
      // process) is like one that never answers a call: calls meet their
      // deadlines, and the handshake gives up after its own.
      proveMember(this.socket, node.security.secrets, HANDSHAKE_TIMEOUT_MS).then(
        () => {
          if (this.dead) return;
          this.established = true;
          node.connected();
          this.socket.on('data', (chunk: Buffer) => {
            try {
              this.decoder.push(chunk);
            } catch (err) {
              void this.destroy(`protocol error: ${(err as Error).message}`);
            }
          });
          this.socket.resume();
          this.writer.release();
        },
        (err: Error) => {
          why = `handshake failed: ${err.message}`;
          this.socket.destroy();
        },
      );
    });
    let why = 'connection closed by the replica';
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      const cert = certificateProblem(err);
      const refused = clientCertificateRefused(err);
      why = cert
        ? `TLS certificate of the replica not trusted: ${cert}`
        : refused
          ? `the replica refused this process's TLS certificate: ${refused}`
          : `${err.code ? `${err.code} ` : ''}${err.message}`;
    });
    this.closed = new Promise((resolve) => {
      this.socket.once('close', () => {
        if (!this.established && !this.dead) node.connectFailed(why);
        this.fail(why);
        resolve();
      });
    });
  }

  nextId(): number {
    do this.ids = (this.ids + 1) >>> 0;
    while (this.pending.has(this.ids));
    return this.ids;
  }

  destroy(why: string): Promise<void> {
    this.fail(why);
    this.socket.destroy();
    return this.closed;
  }

  private fail(why: string): void {
    this.dead = true;
    this.decoder.stop();
    if (this.pending.size === 0) return;
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) {
      this.wheel.remove(call);
      const what = this.established ? 'connection lost' : 'connect failed';
      call.fail(new ReplicaUnreachable(this.node.url, `${call.op} failed: ${what}: ${why}`));
    }
  }

  private onFrame(id: number, op: number, body: Buffer): void {
    const call = this.pending.get(id);
    // A reply to a call that already timed out.
    if (call === undefined) return;
    this.pending.delete(id);
    this.wheel.remove(call);
    try {
      call.settle(op, body);
    } catch (err) {
      call.fail(asUnreachable(this.node.url, call.op, err));
      if (err instanceof ProtocolError) void this.destroy(`protocol error: ${err.message}`);
    }
  }

  /** Called by the wheel when the call's deadline passed. */
  expire(call: Call): void {
    if (this.pending.get(call.id) !== call) return;
    this.pending.delete(call.id);
    call.fail(new ReplicaUnreachable(this.node.url, `${call.op} failed: timed out after ${call.timeoutMs} ms`));
  }
}

/**
 * Deadlines bucketed by TICK_MS slot; one interval sweeps the due slots. The
 * interval runs only while calls are pending and is unref'd, so an idle
 * transport keeps no timer and never holds the process open.
 */
class DeadlineWheel {
  private readonly slots = new Map<number, Set<Call>>();
  private count = 0;
  private cursor = 0;
  private timer: NodeJS.Timeout | null = null;

  add(call: Call, deadline: number): void {
    if (this.timer === null) {
      this.cursor = Math.floor(Date.now() / TICK_MS);
      this.timer = setInterval(() => this.sweep(), TICK_MS);
      this.timer.unref();
    }
    const slot = Math.max(this.cursor, Math.ceil(deadline / TICK_MS));
    call.slot = slot;
    let set = this.slots.get(slot);
    if (set === undefined) this.slots.set(slot, (set = new Set()));
    set.add(call);
    this.count++;
  }

  remove(call: Call): void {
    const set = this.slots.get(call.slot);
    if (set?.delete(call)) {
      this.count--;
      if (set.size === 0) this.slots.delete(call.slot);
    }
  }

  private sweep(): void {
    const now = Math.floor(Date.now() / TICK_MS);
    for (; this.cursor <= now; this.cursor++) {
      const due = this.slots.get(this.cursor);
      if (due === undefined) continue;
      this.slots.delete(this.cursor);
      this.count -= due.size;
      for (const call of due) call.conn.expire(call);
    }
    if (this.count === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

function asUnreachable(nodeUrl: string, op: string, err: unknown): ReplicaUnreachable {
  if (err instanceof ReplicaUnreachable) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new ReplicaUnreachable(nodeUrl, `${op} failed: ${msg}`, { cause: err });
}
