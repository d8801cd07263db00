/** Shared shapes that cross process boundaries. */

/**
 * A member's state as the registry reports it.
 * - `up`: heartbeating; serves reads and writes.
 * - `down`: stopped heartbeating. Still owns its ranges (placement does not
 *   change); gateways route around it until it heartbeats again.
 */
export type MemberState = 'up' | 'down';

export interface Member {
  /** Stable node id, generated once by the KV server and kept in its data dir. */
  id: string;
  /** Base URL other processes reach the KV server by, e.g. http://127.0.0.1:8001 */
  url: string;
  /** Liveness: heartbeating or not. */
  state: MemberState;
  /**
   * Place in the ring (see placement.ts). `joining`: receives writes and pulls
   * its ranges, serves no reads yet. `active`: a full owner. `leaving`: still
   * serves, while its ranges move to their new owners. `pending`: registered
   * and heartbeating, waiting for a join slot; in no ring, takes no traffic.
   * Absent means active.
   */
  phase?: 'pending' | 'joining' | 'active' | 'leaving';
  /** Port of the member's binary replica protocol (same host as url), when it offers one. */
  tcpPort?: number;
  /** Progress of this member's range transfers, as it last reported it. */
  transfer?: TransferProgress;
  /**
   * How far the member's clock was ahead of the registry's (negative: behind)
   * at its last heartbeat, in ms; network delay makes it a few ms low.
   */
  clockOffsetMs?: number;
  /**
   * `full`: the member's storage cannot commit (disk full, I/O error); it
   * serves reads and refuses writes with 507 STORAGE_FULL until a commit
   * succeeds again. Absent means ok.
   */
  storage?: 'ok' | 'full';
  /** Epoch ms of the last heartbeat the registry received. */
  lastHeartbeat: number;
  /** Epoch ms when the member first registered. */
  registeredAt: number;
}

/** A KV server's report of its range transfers (anti-entropy and hand-off). */
export interface TransferProgress {
  /** The placement epoch the member last completed a full sync for. */
  syncedEpoch: number;
  /** Ranges it must pull in the current pass, and how many are done. */
  rangesTotal: number;
  rangesDone: number;
  /** Keys received in the current pass, and in total since start. */
  keysMoved: number;
  keysMovedTotal: number;
  /** Hints held for members that are down, to deliver when they return. */
  hintsPending?: number;
}

/** The registry's answer to GET /nodes. */
export interface MemberView {
  /** URLs of members that are up (the seed's field). */
  nodes: string[];
  members: Member[];
  /** Increases whenever membership or a member's state changes. */
  index: number;
  /**
   * Increases whenever a member joins, starts leaving or is removed: the
   * placement generation. A change completes when every acquirer has
   * reported `syncedEpoch >= epoch`.
   */
  epoch?: number;
  /** Tombstones younger than this are never purged; see docs/operations.md. */
  tombstoneGraceMs?: number;
  /** The registry's clock (epoch ms) when it sent this view: a reader compares its own clock with it. */
  clockMs?: number;
}

/** Consistency level of one client request. */
export type Consistency = 'one' | 'quorum' | 'all';

/** One key's record as a replica stores it. */
export interface ReplicaRecord {
  /** Value bytes; empty for a tombstone. */
  value: Buffer;
  /** HLC version string (see hlc.ts); totally ordered by plain string comparison. */
  version: string;
  tombstone: boolean;
  contentType: string;
}

/** What every start function (startRegistry, startKvServer, startGateway) resolves to. */
export interface RunningServer {
  /** Base URL the server is reachable at, e.g. http://127.0.0.1:8001 */
  url: string;
  /** The bound port (useful when the config asked for port 0). */
  port: number;
  /** Stops accepting, finishes in-flight work, releases ports and files. Idempotent. */
  close(): Promise<void>;
  /**
   * Settles with the reason when the server stopped itself (e.g. a KV server
   * refused by the registry), after it has closed; never settles otherwise.
   */
  failed?: Promise<Error>;
}
