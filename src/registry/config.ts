/** Configuration of the service registry. Every field has a documented default. */
export interface RegistryConfig {
  /** TCP port to listen on; 0 picks a free one. Default 8000. */
  port: number;
  /** Interface to bind. Default 0.0.0.0. */
  host: string;
  /** Folder where the member list is kept (members.json). Default ./data/registry. */
  dataDir: string;
  /** A member that has not heartbeated for this long is marked down. Default 3000 ms. */
  downAfterMs: number;
  /** How often liveness is re-evaluated. Default 250 ms. */
  sweepIntervalMs: number;
  /** Upper bound on the `wait` of a blocking GET /nodes. Default 60 s. */
  maxWaitSeconds: number;
  /** pino level: fatal, error, warn, info, debug, trace or silent. Default info. */
  logLevel: string;
}

export const defaultRegistryConfig: RegistryConfig = {
  port: 8000,
  host: '0.0.0.0',
  dataDir: './data/registry',
  downAfterMs: 3000,
  sweepIntervalMs: 250,
  maxWaitSeconds: 60,
  logLevel: 'info',
};
