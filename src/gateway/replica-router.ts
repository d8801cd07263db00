import { HttpReplicaTransport } from '../cluster/http-transport.js';
import { TcpReplicaTransport } from '../cluster/tcp-transport.js';
import { OPEN_CLUSTER, type ClusterSecurity } from '../cluster/security.js';
import type {
  CallOptions,
  ListPage,
  ListQuery,
  PutResult,
  ReplicaTransport,
} from '../cluster/transport.js';
import type { ReplicaRecord } from '../cluster/types.js';

export type TransportKind = 'tcp' | 'http';

/**
 * Picks the transport per replica: the binary TCP protocol when the member
 * advertises a replica port (and the gateway is configured for it), HTTP
 * otherwise. The choice depends only on what the member advertises, never on
 * a failure: falling back after a TCP timeout would make a dead replica cost
 * two timeouts.
 */
export class ReplicaRouter implements ReplicaTransport {
  private readonly http: HttpReplicaTransport;
  private readonly tcp: TcpReplicaTransport | null;
  private readonly tcpPortOf: (nodeUrl: string) => number | undefined;

  constructor(opts: {
    kind: TransportKind;
    timeoutMs: number;
    tcpPortOf: (nodeUrl: string) => number | undefined;
    security?: ClusterSecurity;
  }) {
    const security = opts.security ?? OPEN_CLUSTER;
    this.http = new HttpReplicaTransport({ timeoutMs: opts.timeoutMs, security });
    this.tcp = opts.kind === 'tcp' ? new TcpReplicaTransport({ timeoutMs: opts.timeoutMs, resolvePort: opts.tcpPortOf, security }) : null;
    this.tcpPortOf = opts.tcpPortOf;
  }

  private pick(nodeUrl: string): ReplicaTransport {
    return this.tcp && this.tcpPortOf(nodeUrl) !== undefined ? this.tcp : this.http;
  }

  get(nodeUrl: string, key: string, opts?: CallOptions): Promise<ReplicaRecord | null> {
    return this.pick(nodeUrl).get(nodeUrl, key, opts);
  }

  put(nodeUrl: string, key: string, rec: ReplicaRecord, opts?: CallOptions): Promise<PutResult> {
    return this.pick(nodeUrl).put(nodeUrl, key, rec, opts);
  }

  storeHints(nodeUrl: string, targetId: string, keys: string[], opts?: CallOptions): Promise<void> {
    return this.pick(nodeUrl).storeHints(nodeUrl, targetId, keys, opts);
  }

  list(nodeUrl: string, query: ListQuery, opts?: CallOptions): Promise<ListPage> {
    return this.pick(nodeUrl).list(nodeUrl, query, opts);
  }

  async close(): Promise<void> {
    await Promise.all([this.http.close(), this.tcp?.close()]);
  }
}
