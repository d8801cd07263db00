import { defineOptions, opt, type ConfigOf } from '../cluster/option-spec.js';
import { host, insecure, logLevel, portOption, registryUrl, replicationFactor, vnodes, securityOptions, clockOptions, limitOptions } from '../cluster/shared-options.js';
import type { Consistency } from '../cluster/types.js';

export const CONSISTENCY_LEVELS = ['one', 'quorum', 'all'] as const satisfies readonly Consistency[];

/**
 * Configuration of one gateway: one row per option (flag, environment
 * variable, kind, default, doc line, check). The CLI, --help, the README's
 * table and validateGatewayConfig all come from these rows.
 */
export const gatewayOptions = defineOptions('gateway', {
  port: portOption(5000),
  host,
  registryUrl,
  replicationFactor,
  defaultConsistency: opt.enum(CONSISTENCY_LEVELS, {
    flag: 'consistency',
    env: 'DEFAULT_CONSISTENCY',
    default: 'quorum',
    valueName: '<level>',
    doc: `Consistency when a request names none: ${CONSISTENCY_LEVELS.join(', ')}`,
  }),
  maxKeyBytes: opt.int({ flag: 'max-key-bytes', env: 'MAX_KEY_BYTES', default: 1024, valueName: '<n>', doc: 'Largest key in UTF-8 bytes' }),
  // The body limit is the value limit: only /kv PUT bodies are read.
  maxValueBytes: opt.int({
    flag: 'max-value-bytes',
    env: 'MAX_VALUE_BYTES',
    default: 1024 * 1024,
    valueName: '<n>',
    doc: 'Largest value in bytes; a larger PUT gets 413',
  }),
  replicaTimeoutMs: opt.int({
    flag: 'replica-timeout-ms',
    env: 'REPLICA_TIMEOUT_MS',
    default: 2000,
    valueName: '<ms>',
    doc: 'A replica request taking longer counts as failed',
  }),
  vnodes,
  // Left unset, the server picks gw-<random>: two gateways must never stamp the same suffix.
  gatewayId: opt.id({
    flag: 'gateway-id',
    env: 'GATEWAY_ID',
    defaultText: 'random per process',
    valueName: '<id>',
    doc: 'Suffix of the versions this gateway stamps',
  }),
  replicaTransport: opt.enum(['tcp', 'http'] as const, {
    flag: 'replica-transport',
    env: 'REPLICA_TRANSPORT',
    default: 'tcp',
    valueName: '<kind>',
    doc: 'How to reach KV servers: tcp (binary protocol where offered, else http) or http',
  }),
  authTokensFile: opt.string({
    flag: 'auth-tokens-file',
    env: 'AUTH_TOKENS_FILE',
    valueName: '<file>',
    doc: 'JSON file of client tokens (SHA-256 hashes, roles, key prefixes); when set every /kv and /batch request needs a Bearer token. Re-read when it changes',
  }),
  metricsPublic: opt.boolean({
    flag: 'metrics-public',
    env: 'METRICS_PUBLIC',
    default: false,
    doc: 'With --auth-tokens-file: serve /metrics and /cluster without a token',
  }),
  maxInflightBytes: opt.int({
    flag: 'max-inflight-bytes',
    env: 'MAX_INFLIGHT_BYTES',
    default: 256 * 1024 * 1024,
    valueName: '<n>',
    doc: 'Most bytes of request bodies the gateway holds at once; past it writes get 503 OVERLOADED with Retry-After',
  }),
  logLevel,
  ...limitOptions,
  ...securityOptions,
  ...clockOptions,
  insecure,
});

export type GatewayConfig = ConfigOf<typeof gatewayOptions.rows>;

export const defaultGatewayConfig: Readonly<GatewayConfig> = gatewayOptions.defaults;

/** Throws `invalid gateway config: <field> ...` for the first field refused. */
export const validateGatewayConfig = (config: GatewayConfig): void => gatewayOptions.validate(config);
