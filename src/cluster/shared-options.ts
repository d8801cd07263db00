import { DEFAULT_MAX_CLOCK_SKEW_MS } from './hlc.js';
import { opt } from './option-spec.js';
import { DEFAULT_VNODES } from './ring.js';

/**
 * Option rows more than one component has. Placement settings are here
 * because every process must agree on them: a registry, gateway or KV server
 * with another replication factor or vnode count computes other owners for
 * the same keys (the registry moves the wrong ranges, a KV server repairs
 * ranges it does not hold).
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const replicationFactor = opt.int({
  flag: 'replication-factor',
  env: 'REPLICATION_FACTOR',
  default: 3,
  valueName: '<n>',
  doc: 'Copies of each key (N, capped at the member count); registry, gateways and KV servers must agree',
});

/** Not a flag: a cluster's vnode count is fixed when it is created. */
export const vnodes = opt.int({ default: DEFAULT_VNODES, doc: 'Virtual nodes per member on the placement ring; every process must agree' });

// Typed as string: callers pass levels through from their own settings.
export const logLevel = opt.enum(LOG_LEVELS as readonly string[], {
  flag: 'log-level',
  env: 'LOG_LEVEL',
  default: 'info',
  valueName: '<level>',
  doc: `Log level (pino, JSON lines): ${LOG_LEVELS.join(', ')}`,
});

export function portOption(port: number) {
  return opt.port({ flag: 'port', env: 'PORT', default: port, valueName: '<port>', doc: 'TCP port; 0 picks a free one' });
}

/**
 * Loopback by default: a cluster reachable from other hosts is a choice, and
 * then needs a cluster secret (bind-guard.ts). See listen-url.ts for the URL
 * a wildcard bind (0.0.0.0) is reached by.
 */
export const host = opt.string({ flag: 'host', env: 'HOST', default: '127.0.0.1', valueName: '<host>', doc: 'Interface to bind; a non-loopback one needs a cluster secret (or --insecure)' });

/** Not read from the environment (a boolean row): an open public bind must be asked for on the command line. */
export const insecure = opt.boolean({
  flag: 'insecure',
  default: false,
  doc: 'Allow a non-loopback --host without a cluster secret: anyone who reaches the port can join and change data',
});

export const DEFAULT_REGISTRY_URL = 'http://localhost:8000';

export const registryUrl = opt.url({
  flag: 'registry-url',
  env: 'REGISTRY_URL',
  default: DEFAULT_REGISTRY_URL,
  valueName: '<url>',
  doc: 'Registry base URL',
});

// Cluster membership and TLS: every registry, gateway and KV server of a
// cluster holds the same secret and trusts the same CA (security.ts).

export const clusterSecret = opt.string({
  flag: 'cluster-secret',
  env: 'CLUSTER_SECRET',
  valueName: '<secret>',
  doc: 'Shared secret every member proves on internal calls; "new,old" accepts both during a rotation',
});

export const clusterSecretFile = opt.string({
  flag: 'cluster-secret-file',
  env: 'CLUSTER_SECRET_FILE',
  valueName: '<file>',
  doc: 'File holding the cluster secret (a second line: the previous secret, during a rotation); re-read when it changes',
});

export const tlsCert = opt.string({ flag: 'tls-cert', env: 'TLS_CERT', valueName: '<file>', doc: 'PEM certificate: serve HTTPS and TLS, and present it to peers' });
export const tlsKey = opt.string({ flag: 'tls-key', env: 'TLS_KEY', valueName: '<file>', doc: 'PEM private key of --tls-cert' });
export const tlsCa = opt.string({ flag: 'tls-ca', env: 'TLS_CA', valueName: '<file>', doc: 'PEM CA bundle peers are verified against' });
export const tlsClientAuth = opt.enum(['none', 'require'] as const, {
  flag: 'tls-client-auth',
  env: 'TLS_CLIENT_AUTH',
  default: 'none',
  valueName: '<mode>',
  doc: 'require: refuse TLS clients without a certificate signed by --tls-ca (mutual TLS)',
});

/** The rows of security.ts's SecurityConfig, spread into each server component's options. */
export const securityOptions = { clusterSecret, clusterSecretFile, tlsCert, tlsKey, tlsCa, tlsClientAuth };

// Clocks (hlc.ts). 10 s by default: NTP-synced hosts agree within
// milliseconds, so 10 s tolerates a badly synced VM (or one resuming from a
// pause) while a forged or skewed version can shadow later writes for at most
// that long. Gateways and KV servers should agree on it.
export const maxClockSkewMs = opt.duration({
  flag: 'max-clock-skew',
  env: 'MAX_CLOCK_SKEW',
  default: DEFAULT_MAX_CLOCK_SKEW_MS,
  min: 1,
  valueName: '<duration>',
  doc: 'Versions more than this ahead of the local clock are refused (KV servers) and never adopted (gateways)',
});

// For testing clock skew with real processes: the only way to run a member
// whose clock is really off without changing the host's time.
export const clockOffsetMs = opt.int({
  flag: 'clock-offset-ms',
  env: 'FLEXSTORE_CLOCK_OFFSET_MS',
  default: 0,
  min: -(2 ** 40),
  valueName: '<ms>',
  doc: 'Testing only: shifts the clock this process stamps, checks and reports versions with (negative: behind)',
});

/** The rows of clock handling, spread into gateway and KV server options. */
export const clockOptions = { maxClockSkewMs, clockOffsetMs };

// Resource bounds every HTTP server has (http-server.ts), in the shape of
// Redis's `timeout`/`maxclients`: a client that opens a request and never
// finishes it, or opens connections without end, cannot hold a server.
export const requestTimeoutMs = opt.int({
  flag: 'request-timeout-ms',
  env: 'REQUEST_TIMEOUT_MS',
  default: 30_000,
  min: 100,
  valueName: '<ms>',
  doc: 'A request whose headers and body have not all arrived by then is answered 408 and its connection closed',
});

export const maxConnections = opt.int({
  flag: 'max-connections',
  env: 'MAX_CONNECTIONS',
  default: 10_000,
  valueName: '<n>',
  doc: 'Most client connections the HTTP server (and a KV server\'s replica port) holds open; more are closed at once',
});

/** The rows of http-server.ts's limits, spread into every server component's options. */
export const limitOptions = { requestTimeoutMs, maxConnections };
