import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { InvalidRequest, PayloadTooLarge, Unavailable } from '../cluster/errors.js';
import { MAX_LIST_LIMIT, checkLimit, checkVersion } from '../cluster/http-wire.js';
import type { Logger } from '../cluster/logger.js';
import type { ClusterSecurity } from '../cluster/security.js';
import { tcpListen } from '../cluster/tls.js';
import type { RefusalReason } from '../cluster/cluster-auth.js';
import { HANDSHAKE_TIMEOUT_MS, acceptMember, type HandshakeError } from '../cluster/tcp-handshake.js';
import {
  decodeHints,
  decodeKey,
  decodeList,
  decodePut,
  encodeEmpty,
  encodeError,
  encodeListReply,
  encodePutReply,
  encodeRecordReply,
} from '../cluster/tcp-codec.js';
import { FrameDecoder, FrameWriter, InflightBudget, MAX_FRAME_BYTES, Op } from '../cluster/tcp-protocol.js';
import type { Storage } from './storage.js';

/**
 * The replica API of replica-api.ts over the framed TCP protocol of
 * src/cluster/tcp-protocol.ts, for gateways using TcpReplicaTransport. Same
 * storage, same semantics: GET answers the record, tombstones included
 * (NOT_FOUND when there is none); PUT is last-writer-wins and is answered
 * only after its commit is on disk (a version from the future: an ERROR
 * frame VERSION_FROM_FUTURE, nothing applied, the connection kept); LIST is GET /internal/keys; HINTS stores
 * hinted-handoff notes through `storeHints`.
 *
 * A connection carries many requests at once. Reads answer in the turn they
 * arrive, writes when their commit resolves, so replies leave out of order
 * and are matched by request id. A failing operation is answered with an
 * ERROR frame; only a broken frame closes its connection, and never the server.
 * Every connection first passes the handshake of tcp-handshake.ts; one that
 * fails it is closed before a single frame is read.
 *
 * What a connection may cost is bounded (docs/security.md, "Replica port
 * limits"): the handshake and every frame have deadlines, a frame over
 * maxFrameBytes is dropped unread and answered PAYLOAD_TOO_LARGE, partial
 * frames share one byte budget (a connection past it is paused), and at most
 * maxConnections are open. A connection closed for any of these is logged and
 * counted (onConnectionClosed).
 */

/** Why the server closed (or refused) a connection; labels of flexstore_replica_connections_closed_total. */
export const REPLICA_CLOSE_REASONS = ['frame_timeout', 'handshake_timeout', 'protocol_error', 'max_connections'] as const;
export type ReplicaCloseReason = (typeof REPLICA_CLOSE_REASONS)[number];

/**
 * Request framing on top of a maxBodyBytes value: a PUT frame holds id and op
 * (5), its header (8), a version (at most 255), a content type (at most 65535)
 * and the key. Keys get 64 KiB, far past any gateway's MAX_KEY_BYTES.
 */
const REQUEST_FRAMING_BYTES = 5 + 8 + 0xff + 0xffff + 64 * 1024;

/** The largest request frame a server with this maxBodyBytes accepts: the same values as its HTTP replica API. */
export function replicaFrameLimit(maxBodyBytes: number): number {
  return Math.min(MAX_FRAME_BYTES, maxBodyBytes + REQUEST_FRAMING_BYTES);
}

export interface TcpReplicaServerOptions {
  /** The KV server's storage; the caller opens it and closes it after close() resolves. */
  storage: Pick<Storage, 'get' | 'put' | 'list'>;
  host: string;
  /** 0 picks a free port; the bound one is in the result. */
  port: number;
  /** Stores hints for member `target` (see src/kv/hint-store.ts). Without it HINTS is answered with ERROR. */
  storeHints?: (target: string, keys: string[]) => Promise<void>;
  /** Where protocol errors (the connection is dropped) and listener errors are reported. Default: nowhere. */
  log?: Pick<Logger, 'warn'>;
  /** Cluster secrets and TLS of this process (security.ts). Default: open, plain TCP. */
  security?: ClusterSecurity;
  /** Called for every connection refused by the handshake (a metric counts them). */
  onAuthRefused?: (reason: RefusalReason) => void;
  /** Longest request frame read; a longer one is dropped and answered PAYLOAD_TOO_LARGE. Default MAX_FRAME_BYTES (replicaFrameLimit derives one from maxBodyBytes). */
  maxFrameBytes?: number;
  /** A frame must arrive whole within this many ms of its first byte, or its connection is closed. Default: no deadline. */
  frameTimeoutMs?: number;
  /** Most bytes of partial frames held across all connections; past it a connection is paused. Default: no budget. */
  maxInflightBytes?: number;
  /** Most connections open at once (handshaking ones included); more are closed at accept. Default: no cap. */
  maxConnections?: number;
  /** How long a connection has to complete the handshake. Default HANDSHAKE_TIMEOUT_MS. */
  handshakeTimeoutMs?: number;
  /** Called for every connection closed by the limits above or by a protocol error (a metric counts them). */
  onConnectionClosed?: (reason: ReplicaCloseReason) => void;
}

export interface RunningTcpReplicaServer {
  /** The bound port. */
  port: number;
  /** Connections open now, handshaking ones included. */
  connections(): number;
  /** Bytes of partial frames held now (0 without a budget). */
  inflightBytes(): number;
  /**
   * Stops accepting, answers requests already read (a write in flight still
   * commits and is acknowledged), then closes every connection. Idempotent.
   */
  close(): Promise<void>;
}

/** How long close() lets clients read their last replies before cutting their connections. */
const CLOSE_GRACE_MS = 2000;

export async function startTcpReplicaServer(opts: TcpReplicaServerOptions): Promise<RunningTcpReplicaServer> {
  const connections = new Set<ReplicaConnection>();
  const handshaking = new Set<Socket>();
  const budget = opts.maxInflightBytes === undefined ? undefined : new InflightBudget(opts.maxInflightBytes);
  const warn = closureLog(opts.log);
  const closed = (socket: { remoteAddress?: string; remotePort?: number } | undefined, reason: ReplicaCloseReason, details: object, msg: string): void => {
    opts.onConnectionClosed?.(reason);
    warn(reason, { remote: `${socket?.remoteAddress}:${socket?.remotePort}`, ...details }, msg);
  };
  let closing = false;
  // With TLS a connection reaches this point only after its handshake (and, with mutual TLS, its client certificate) passed.
  const server = tcpListen(opts.security, (socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    // No frame is read before the peer proved the cluster secret (tcp-handshake.ts).
    handshaking.add(socket);
    acceptMember(socket, opts.security?.secrets ?? [], opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS).then(
      (proven) => {
        handshaking.delete(socket);
        if (closing || socket.destroyed) return void socket.destroy();
        const conn = new ReplicaConnection(socket, opts, budget, proven, (err) =>
          closed(socket, 'protocol_error', { err }, 'closing replica connection after a protocol error'),
        );
        connections.add(conn);
        socket.on('close', () => connections.delete(conn));
        socket.resume();
      },
      (err: HandshakeError) => {
        handshaking.delete(socket);
        // A silent peer is refused as 'missing' like one without a secret, and counted as a timeout too.
        opts.onAuthRefused?.(err.reason);
        if (err.timedOut) closed(socket, 'handshake_timeout', { err: err.message }, 'closed a replica connection that did not complete the handshake');
        else opts.log?.warn({ remote: `${socket.remoteAddress}:${socket.remotePort}`, reason: err.reason, err: err.message }, 'refused a replica connection');
      },
    );
  });
  if (opts.maxConnections !== undefined) {
    server.maxConnections = opts.maxConnections;
    // Node closes the connection itself, before any handler of ours runs.
    server.on('drop', (data) => closed(data, 'max_connections', { maxConnections: opts.maxConnections }, 'refused a replica connection over the cap'));
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // A failed accept must not crash the KV server; the listener keeps going.
  server.on('error', (err) => opts.log?.warn({ err }, 'tcp replica server error'));
  const port = (server.address() as AddressInfo).port;
  // One sweep for all deadlines rather than a timer per frame: a frame is
  // closed at most a quarter of the deadline (at most 1 s) after it.
  const frameTimeoutMs = opts.frameTimeoutMs;
  const sweep =
    frameTimeoutMs === undefined
      ? undefined
      : setInterval(() => {
          const now = Date.now();
          for (const conn of connections) {
            const started = conn.frameStartedAt;
            if (started === 0 || now - started <= frameTimeoutMs) continue;
            closed(conn.socket, 'frame_timeout', { frameTimeoutMs, held: conn.held }, 'closed a replica connection that did not send a whole frame in time');
            conn.destroy();
          }
        }, Math.max(10, Math.min(1000, Math.floor(frameTimeoutMs / 4))));
  sweep?.unref();

  let stopped: Promise<void> | null = null;
  return {
    port,
    connections: () => handshaking.size + connections.size,
    inflightBytes: () => budget?.bytes ?? 0,
    close() {
      stopped ??= (async () => {
        closing = true;
        if (sweep) clearInterval(sweep);
        for (const socket of handshaking) socket.destroy();
        const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...connections].map((c) => c.drain()));
        await listenerClosed;
      })();
      return stopped;
    },
  };
}

/** Why a connection is not being read: its replies are backing up, or the partial-frame budget is spent. */
const PAUSED_WRITES = 1;
const PAUSED_BUDGET = 2;

/**
 * Warnings for closed connections: one line per reason per second at most,
 * saying how many more were closed since the last, so a flood of probes does
 * not flood the log too (the metric counts every one).
 */
function closureLog(log: Pick<Logger, 'warn'> | undefined): (reason: ReplicaCloseReason, fields: object, msg: string) => void {
  const last = new Map<ReplicaCloseReason, { at: number; more: number }>();
  return (reason, fields, msg) => {
    const now = Date.now();
    let entry = last.get(reason);
    if (entry === undefined) last.set(reason, (entry = { at: 0, more: 0 }));
    if (now - entry.at < 1000) {
      entry.more++;
      return;
    }
    log?.warn({ ...fields, reason, ...(entry.more > 0 ? { moreSinceLastLine: entry.more } : {}) }, msg);
    entry.at = now;
    entry.more = 0;
  };
}

class ReplicaConnection {
  private readonly decoder: FrameDecoder;
  private readonly writer: FrameWriter;
  private inFlight = 0;
  private closing = false;
  private drained: (() => void) | null = null;
  private paused = 0;

  /** The secrets `proven` was last found in: rechecked only when a reload replaced them. */
  private checkedAgainst: readonly Buffer[] | undefined;

  constructor(
    readonly socket: Socket,
    private readonly opts: TcpReplicaServerOptions,
    budget: InflightBudget | undefined,
    /** The cluster secret the client proved when the connection opened; undefined in an open cluster. */
    private readonly proven: Buffer | undefined,
    onProtocolError: (err: unknown) => void,
  ) {
    this.checkedAgainst = opts.security?.secrets;
    this.decoder = new FrameDecoder((id, op, body) => this.onFrame(id, op, body), {
      maxFrameBytes: opts.maxFrameBytes,
      onOversize: (id, _op, length) => this.onOversize(id, length),
      budget,
      pause: () => this.pause(PAUSED_BUDGET),
      resume: () => this.resume(PAUSED_BUDGET),
    });
    // A client that sends faster than it reads is paused until its replies drain.
    this.writer = new FrameWriter(socket, () => {
      if (this.paused & PAUSED_WRITES) return;
      this.pause(PAUSED_WRITES);
      socket.once('drain', () => this.resume(PAUSED_WRITES));
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch (err) {
        onProtocolError(err);
        this.destroy();
      }
    });
    // Resets and write errors end only this connection; 'close' follows.
    socket.on('error', () => {});
    // Nothing of a partial frame outlives its connection, and its budget is given back.
    socket.on('close', () => this.decoder.stop());
  }

  /** Date.now() when the frame being received began; 0 between frames. */
  get frameStartedAt(): number {
    return this.decoder.frameStartedAt;
  }

  /** Bytes of a partial frame held. */
  get held(): number {
    return this.decoder.held;
  }

  destroy(): void {
    this.decoder.stop();
    this.socket.destroy();
  }

  private pause(why: number): void {
    if (this.paused === 0) this.socket.pause();
    this.paused |= why;
  }

  private resume(why: number): void {
    this.paused &= ~why;
    if (this.paused === 0 && !this.socket.destroyed) this.socket.resume();
  }

  /** Answers what was read, then ends the connection; cuts it after CLOSE_GRACE_MS. */
  drain(): Promise<void> {
    this.closing = true;
    return new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      const timer = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
      timer.unref();
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.drained = () => {
        this.decoder.stop();
        this.writer.flush();
        this.socket.end();
      };
      if (this.inFlight === 0) this.drained();
    });
  }

  /** Cheap per frame: the array is compared by identity and searched only after a reload. */
  private provenStillHeld(): boolean {
    const secrets = this.opts.security?.secrets;
    if (secrets === this.checkedAgainst) return true;
    if (secrets === undefined || !secrets.some((s) => s.equals(this.proven!))) return false;
    this.checkedAgainst = secrets;
    return true;
  }

  private onFrame(id: number, op: number, body: Buffer): void {
    if (this.proven !== undefined && !this.provenStillHeld()) {
      // The secret this connection was opened with was rotated out (a reload
      // of the secret file): nothing more is applied; the client reconnects
      // and proves a secret held now, or is refused.
      this.opts.log?.warn({ remote: `${this.socket.remoteAddress}:${this.socket.remotePort}` }, 'closed a replica connection opened with a secret no longer held');
      this.socket.destroy();
      return;
    }
    if (this.closing) {
      this.writer.write(encodeError(id, new Unavailable('replica server is closing')));
      return;
    }
    const { storage } = this.opts;
    switch (op) {
      case Op.GET: {
        const key = decodeKey(body);
        this.answer(id, () => {
          const rec = storage.get(key);
          return rec ? encodeRecordReply(id, rec) : encodeEmpty(id, Op.NOT_FOUND);
        });
        return;
      }
      case Op.PUT: {
        const { key, rec } = decodePut(body);
        this.answerLater(id, () => {
          checkVersion(rec.version, 'version');
          return storage.put(key, rec, 'replica_tcp').then((r) => encodePutReply(id, r));
        });
        return;
      }
      case Op.LIST: {
        const q = decodeList(body);
        this.answer(id, () => {
          checkLimit(q.limit, MAX_LIST_LIMIT, { got: q.limit });
          return encodeListReply(id, storage.list(q));
        });
        return;
      }
      case Op.HINTS: {
        const { target, keys } = decodeHints(body);
        this.answerLater(id, () => {
          const store = this.opts.storeHints;
          if (!store) throw new Unavailable('this replica does not store hints');
          return store(target, keys).then(() => encodeEmpty(id, Op.OK));
        });
        return;
      }
      default:
        // A newer client's operation: say so, and keep the connection.
        this.writer.write(encodeError(id, new InvalidRequest(`unknown operation ${op}`)));
    }
  }

  /** A frame over maxFrameBytes was read and dropped: the request fails as an HTTP body over maxBodyBytes would (413). */
  private onOversize(id: number, length: number): void {
    const limit = this.opts.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.writer.write(encodeError(id, new PayloadTooLarge(`frame of ${length} bytes exceeds this replica's ${limit}-byte limit`)));
  }

  private answer(id: number, run: () => Buffer): void {
    let reply: Buffer;
    try {
      reply = run();
    } catch (err) {
      reply = encodeError(id, err);
    }
    this.writer.write(reply);
  }

  private answerLater(id: number, run: () => Promise<Buffer>): void {
    this.inFlight++;
    let p: Promise<Buffer>;
    try {
      p = run();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.catch((err: unknown) => encodeError(id, err)).then((reply) => {
      this.writer.write(reply);
      if (--this.inFlight === 0 && this.closing) this.drained?.();
    });
  }
}
