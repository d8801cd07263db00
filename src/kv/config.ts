import type { SyncMode } from './storage.js';

/** Configuration of one KV server. Every field has a documented default. */
export interface KvConfig {
  /** TCP port to listen on; 0 picks a free one. Default 8001. */
  port: number;
  /** Interface to bind. Default 0.0.0.0. */
  host: string;
  /** Registry base URL. Default http://localhost:8000. */
  registryUrl: string;
  /**
   * TCP port of the binary replica protocol gateways use (see
   * src/cluster/tcp-protocol.ts); 0 picks a free one, which the server
   * advertises to the registry. Default 0.
   */
  tcpPort: number;
  /**
   * Replica-protocol port others reach this server by, when something in
   * between (a proxy, a container's port mapping) listens on another port
   * than tcpPort; gateways dial it on the host of advertiseUrl. Default: the
   * port the replica protocol bound.
   */
  advertiseTcpPort?: number;
  /** LMDB environment and node-id file. Default ./data/kv-<port>. */
  dataDir: string;
  /**
   * URL others reach this server by. Default http://127.0.0.1:<port> when host
   * is a wildcard (0.0.0.0, ::) or unset, else http://<host>:<port>.
   */
  advertiseUrl?: string;
  /** Stable node id. Default: generated once and kept in <dataDir>/node-id. */
  nodeId?: string;
  /** How often to heartbeat the registry. Default 1000 ms. */
  heartbeatIntervalMs: number;
  /** Largest replica request body accepted (value plus framing). Default 16 MiB. */
  maxBodyBytes: number;
  /** pino level. Default info. */
  logLevel: string;
  /**
   * N, the replicas per key, as the gateways use it (capped at the member
   * count): anti-entropy derives which ranges this server shares with whom
   * from it. Must equal the gateways' setting. Default 3.
   */
  replicationFactor: number;
  /**
   * Virtual nodes per member on the placement ring. Must equal the gateways'
   * setting, or this server repairs ranges it does not own. Default 256.
   */
  vnodes: number;
  /**
   * Time between anti-entropy passes (each about ±10% jittered). Passes also
   * run at start-up and whenever the member view's epoch or members change.
   * 0 turns anti-entropy and tombstone purging off (hinted hand-off still
   * runs). Default 10000 ms.
   */
  antiEntropyIntervalMs: number;
  /**
   * When a write is acknowledged (see SyncMode in storage.ts): 'commit' after
   * its commit is fsynced (survives kill -9 and power loss); 'interval' once
   * the OS holds it, with an fsync every syncIntervalMs (survives kill -9; a
   * power loss can lose the last interval on this server). Default 'commit'.
   */
  sync: SyncMode;
  /** With sync 'interval': time between fsyncs. Default 100 ms. */
  syncIntervalMs: number;
}

export const defaultKvConfig: KvConfig = {
  port: 8001,
  tcpPort: 0,
  host: '0.0.0.0',
  registryUrl: 'http://localhost:8000',
  dataDir: './data/kv-8001',
  heartbeatIntervalMs: 1000,
  maxBodyBytes: 16 * 1024 * 1024,
  logLevel: 'info',
  replicationFactor: 3,
  vnodes: 256,
  antiEntropyIntervalMs: 10_000,
  sync: 'commit',
  syncIntervalMs: 100,
};

/** The advertise-URL rule above, shared by the CLI and the server. */
export function defaultAdvertiseUrl(host: string | undefined, port: number): string {
  const wildcard = !host || host === '0.0.0.0' || host === '::' || host === '[::]';
  if (wildcard) return `http://127.0.0.1:${port}`;
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `http://${h}:${port}`;
}
