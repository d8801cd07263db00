/** Configuration of one KV server. Every field has a documented default. */
export interface KvConfig {
  /** TCP port to listen on; 0 picks a free one. Default 8001. */
  port: number;
  /** Interface to bind. Default 0.0.0.0. */
  host: string;
  /** Registry base URL. Default http://localhost:8000. */
  registryUrl: string;
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
}

export const defaultKvConfig: KvConfig = {
  port: 8001,
  host: '0.0.0.0',
  registryUrl: 'http://localhost:8000',
  dataDir: './data/kv-8001',
  heartbeatIntervalMs: 1000,
  maxBodyBytes: 16 * 1024 * 1024,
  logLevel: 'info',
};

/** The advertise-URL rule above, shared by the CLI and the server. */
export function defaultAdvertiseUrl(host: string | undefined, port: number): string {
  const wildcard = !host || host === '0.0.0.0' || host === '::' || host === '[::]';
  if (wildcard) return `http://127.0.0.1:${port}`;
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `http://${h}:${port}`;
}
