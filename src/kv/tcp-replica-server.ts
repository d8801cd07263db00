import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { InvalidRequest, Unavailable } from '../cluster/errors.js';
import { MAX_LIST_LIMIT, checkLimit, checkVersion } from '../cluster/http-wire.js';
import type { Logger } from '../cluster/logger.js';
import type { ClusterSecurity } from '../cluster/security.js';
import { tcpListen } from '../cluster/tls.js';
import type { RefusalReason } from '../cluster/cluster-auth.js';
import { acceptMember, type HandshakeError } from '../cluster/tcp-handshake.js';
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
import { FrameDecoder, FrameWriter, Op } from '../cluster/tcp-protocol.js';
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
 */

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
}

export interface RunningTcpReplicaServer {
  /** The bound port. */
  port: number;
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
  let closing = false;
  // With TLS a connection reaches this point only after its handshake (and, with mutual TLS, its client certificate) passed.
  const server = tcpListen(opts.security, (socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    // No frame is read before the peer proved the cluster secret (tcp-handshake.ts).
    handshaking.add(socket);
    acceptMember(socket, opts.security?.secrets ?? []).then(
      (proven) => {
        handshaking.delete(socket);
        if (closing || socket.destroyed) return void socket.destroy();
        const conn = new ReplicaConnection(socket, opts, proven);
        connections.add(conn);
        socket.on('close', () => connections.delete(conn));
        socket.resume();
      },
      (err: HandshakeError) => {
        handshaking.delete(socket);
        opts.onAuthRefused?.(err.reason);
        opts.log?.warn({ remote: `${socket.remoteAddress}:${socket.remotePort}`, reason: err.reason, err: err.message }, 'refused a replica connection');
      },
    );
  });
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

  let closed: Promise<void> | null = null;
  return {
    port,
    close() {
      closed ??= (async () => {
        closing = true;
        for (const socket of handshaking) socket.destroy();
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...connections].map((c) => c.drain()));
        await stopped;
      })();
      return closed;
    },
  };
}

class ReplicaConnection {
  private readonly decoder: FrameDecoder;
  private readonly writer: FrameWriter;
  private inFlight = 0;
  private closing = false;
  private drained: (() => void) | null = null;

  /** The secrets `proven` was last found in: rechecked only when a reload replaced them. */
  private checkedAgainst: readonly Buffer[] | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly opts: TcpReplicaServerOptions,
    /** The cluster secret the client proved when the connection opened; undefined in an open cluster. */
    private readonly proven?: Buffer,
  ) {
    this.checkedAgainst = opts.security?.secrets;
    this.decoder = new FrameDecoder((id, op, body) => this.onFrame(id, op, body));
    // A client that sends faster than it reads is paused until its replies drain.
    let paused = false;
    this.writer = new FrameWriter(socket, () => {
      if (paused) return;
      paused = true;
      socket.pause();
      socket.once('drain', () => {
        paused = false;
        socket.resume();
      });
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch (err) {
        this.opts.log?.warn(
          { err, remote: `${socket.remoteAddress}:${socket.remotePort}` },
          'closing replica connection after a protocol error',
        );
        this.decoder.stop();
        socket.destroy();
      }
    });
    // Resets and write errors end only this connection; 'close' follows.
    socket.on('error', () => {});
    socket.on('close', () => this.decoder.stop());
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
