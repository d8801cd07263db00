import { defineOptions, opt, type ConfigOf } from '../cluster/option-spec.js';
import { host, insecure, logLevel, portOption, replicationFactor, vnodes, securityOptions, limitOptions } from '../cluster/shared-options.js';

/**
 * Configuration of the service registry: one row per option (flag,
 * environment variable, kind, default, doc line, check). The CLI, --help,
 * the README's table and validateRegistryConfig all come from these rows.
 */
export const registryOptions = defineOptions('registry', {
  port: portOption(8000),
  host,
  dataDir: opt.string({
    flag: 'data-dir',
    env: 'DATA_DIR',
    default: './data/registry',
    valueName: '<dir>',
    doc: 'Where the member list, members.json, is kept',
  }),
  downAfterMs: opt.int({
    flag: 'down-after-ms',
    env: 'DOWN_AFTER_MS',
    default: 3000,
    valueName: '<ms>',
    doc: 'Mark a member down after this long without a heartbeat',
  }),
  sweepIntervalMs: opt.int({ default: 250, doc: 'How often liveness is re-evaluated' }),
  maxWaitSeconds: opt.int({ default: 60, min: 0, doc: 'Upper bound on the wait of a blocking GET /nodes' }),
  // The registry computes placement to know which members must acquire
  // ranges before a join or a leave completes.
  replicationFactor,
  vnodes,
  // A member down longer than the grace could resurrect keys deleted
  // meanwhile (their tombstones are purged): wipe its data dir and add it as
  // a new member.
  tombstoneGraceMs: opt.duration({
    flag: 'tombstone-grace',
    env: 'TOMBSTONE_GRACE',
    default: 10 * 24 * 3600 * 1000,
    valueName: '<duration>',
    doc: 'Keep tombstones this long; a member down longer is refused when it returns',
    check: (ms) => (ms > 0 ? undefined : 'must be > 0'),
  }),
  downRemoveAfterMs: opt.duration({
    flag: 'down-remove-after',
    env: 'DOWN_REMOVE_AFTER',
    default: 0,
    valueName: '<duration>',
    doc: 'Decommission a member down this long (0 = never); must be less than the tombstone grace',
    // Otherwise a removed member's ranges could miss tombstone purges.
    check: (ms, c) =>
      ms > 0 && ms >= (c.tombstoneGraceMs as number)
        ? 'must be less than tombstoneGraceMs, or a removed member could miss tombstone purges'
        : undefined,
  }),
  // Joins and the registry's own bounds (docs/security.md, Registry limits and joins).
  joinTimeoutMs: opt.duration({
    flag: 'join-timeout',
    env: 'JOIN_TIMEOUT',
    default: 60_000,
    valueName: '<duration>',
    doc: 'A joining (or pending) member down this long is dropped and its join aborted; it may register again',
    check: (ms) => (ms > 0 ? undefined : 'must be > 0'),
  }),
  maxJoining: opt.int({
    flag: 'max-joining',
    env: 'MAX_JOINING',
    default: 2,
    valueName: '<n>',
    doc: 'Members joining at once; later ones wait as pending, in registration order',
  }),
  maxMembers: opt.int({
    flag: 'max-members',
    env: 'MAX_MEMBERS',
    default: 512,
    valueName: '<n>',
    doc: 'Largest member table; a new registration beyond it is refused (503 TOO_MANY_MEMBERS)',
  }),
  registrationRate: opt.int({
    flag: 'registration-rate',
    env: 'REGISTRATION_RATE',
    default: 20,
    min: 0,
    valueName: '<per-second>',
    doc: 'Unauthenticated registry calls per second per source address, heartbeats of known members aside (0 = no limit)',
  }),
  registrationBurst: opt.int({
    flag: 'registration-burst',
    env: 'REGISTRATION_BURST',
    default: 40,
    valueName: '<n>',
    doc: 'Burst allowed above --registration-rate',
  }),
  logLevel,
  ...limitOptions,
  ...securityOptions,
  insecure,
  adminToken: opt.string({
    flag: 'admin-token',
    env: 'ADMIN_TOKEN',
    valueName: '<token>',
    doc: 'Bearer token that may deregister members (so may any holder of the cluster secret)',
  }),
});

export type RegistryConfig = ConfigOf<typeof registryOptions.rows>;

export const defaultRegistryConfig: Readonly<RegistryConfig> = registryOptions.defaults;

/** Throws `invalid registry config: <field> ...` for the first field refused. */
export const validateRegistryConfig = (config: RegistryConfig): void => registryOptions.validate(config);
