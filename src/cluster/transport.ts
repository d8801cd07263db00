import type { ReplicaRecord } from './types.js';

/**
 * The gateway ↔ KV-server replica protocol, behind one small interface so a
 * faster transport can replace HTTP without touching the coordinator. Every
 * implementation must pass the same contract tests (transport.contract.ts).
 *
 * Failures (connection refused, timeout, a 5xx) reject with a ReplicaUnreachable
 * (errors.ts); the coordinator counts them against the quorum and suspects the
 * node. A replica that refuses the request itself (a 4xx: bad key, bad
 * version) rejects with that error's own class: it counts against the quorum
 * too, but the replica is up.
 */
export interface ReplicaTransport {
  /** The replica's record for key, tombstones included; null when it has none. */
  get(nodeUrl: string, key: string, opts?: CallOptions): Promise<ReplicaRecord | null>;
  /**
   * Stores rec if its version is newer than what the replica holds (last
   * writer wins), and resolves only after the replica's durable commit.
   * `applied` is false when the replica already held this or a newer version;
   * `version` is the version the replica holds afterwards.
   */
  put(nodeUrl: string, key: string, rec: ReplicaRecord, opts?: CallOptions): Promise<PutResult>;
  /**
   * Asks the replica at nodeUrl, which holds these keys, to deliver them to
   * member `targetId` once that member is reachable (hinted handoff). Resolves
   * once the hints are stored durably.
   */
  storeHints(nodeUrl: string, targetId: string, keys: string[], opts?: CallOptions): Promise<void>;
  /** Keys the replica holds in key order, tombstones included (merged by the caller). */
  list(nodeUrl: string, query: ListQuery, opts?: CallOptions): Promise<ListPage>;
  /** Closes every pooled connection. */
  close(): Promise<void>;
}

export interface CallOptions {
  /** Overrides the transport's default timeout. */
  timeoutMs?: number;
}

export interface PutResult {
  applied: boolean;
  version: string;
}

export interface ListQuery {
  prefix: string;
  /** Exclusive lower bound; '' for the start. */
  after: string;
  limit: number;
}

export interface ListEntry {
  key: string;
  version: string;
  tombstone: boolean;
}

export interface ListPage {
  entries: ListEntry[];
  /** True when the replica has more keys after the last entry. */
  more: boolean;
}
