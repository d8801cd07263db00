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
  /**
   * Copies of each key and virtual nodes per member: the registry computes
   * placement to know which members must acquire ranges before a join or a
   * leave completes. Must equal the gateways' settings. Defaults 3 and 256.
   */
  replicationFactor: number;
  vnodes: number;
  /**
   * Tombstones younger than this are never purged, and a member down longer
   * than this is refused when it comes back (its data could resurrect keys
   * deleted meanwhile: wipe its data dir and add it as a new member).
   * Default 10 days.
   */
  tombstoneGraceMs: number;
  /**
   * A member down this long is decommissioned automatically (its ranges are
   * re-replicated from the survivors). 0 turns this off (the default); must
   * be less than tombstoneGraceMs.
   */
  downRemoveAfterMs: number;
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
  replicationFactor: 3,
  vnodes: 256,
  tombstoneGraceMs: 10 * 24 * 3600 * 1000,
  downRemoveAfterMs: 0,
  logLevel: 'info',
};
