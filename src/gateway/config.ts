import type { Consistency } from '../cluster/types.js';

/** Configuration of one gateway. Every field has a documented default. */
export interface GatewayConfig {
  /** TCP port to listen on; 0 picks a free one. Default 5000. */
  port: number;
  /** Interface to bind. Default 0.0.0.0. */
  host: string;
  /** Registry base URL. Default http://localhost:8000. */
  registryUrl: string;
  /** Copies of each key (N), capped at the number of members. Default 3. */
  replicationFactor: number;
  /** Consistency when a request names none. Default quorum. */
  defaultConsistency: Consistency;
  /** Largest key in UTF-8 bytes. Default 1024. */
  maxKeyBytes: number;
  /** Largest value in bytes; larger PUTs get 413. Default 1 MiB. */
  maxValueBytes: number;
  /** A replica request that takes longer counts as failed. Default 2000 ms. */
  replicaTimeoutMs: number;
  /** Virtual nodes per member on the ring. Part of placement: all gateways must agree. Default 256. */
  vnodes: number;
  /**
   * How the gateway talks to KV servers: `tcp` (the binary replica protocol,
   * for members that advertise a replica port; HTTP for the others) or
   * `http` only. Default tcp.
   */
  replicaTransport: 'tcp' | 'http';
  /** Id used as the suffix of versions this gateway stamps. Default: random per process. */
  gatewayId?: string;
  /** pino level. Default info. */
  logLevel: string;
}

export const defaultGatewayConfig: GatewayConfig = {
  port: 5000,
  host: '0.0.0.0',
  registryUrl: 'http://localhost:8000',
  replicationFactor: 3,
  defaultConsistency: 'quorum',
  maxKeyBytes: 1024,
  maxValueBytes: 1024 * 1024,
  replicaTimeoutMs: 2000,
  vnodes: 256,
  replicaTransport: 'tcp',
  logLevel: 'info',
};
