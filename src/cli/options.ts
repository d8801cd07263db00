import { parseArgs } from 'node:util';
import { defaultGatewayConfig, type GatewayConfig } from '../gateway/config.js';
import { defaultKvConfig, type KvConfig } from '../kv/config.js';
import { defaultRegistryConfig, type RegistryConfig } from '../registry/config.js';
import type { Consistency } from '../cluster/types.js';
import { DEFAULT_GATEWAY, DEFAULT_TIMEOUT_MS } from '../client/index.js';

/**
 * Every flag and environment variable the CLI accepts, one table per command.
 * The tables drive parsing, validation and --help, so a default shown in help
 * is the default applied. Precedence: flag, then environment, then default.
 *
 * Functions here are pure (argv and env are passed in) so they can be tested
 * without touching the real process.
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const CONSISTENCY_LEVELS = ['one', 'quorum', 'all'] as const satisfies readonly Consistency[];

export type OptionKind =
  | 'port' // integer 0..65535
  | 'ports' // comma-separated list of ports
  | 'positiveInt' // integer >= 1
  | 'url' // http(s) URL, trailing slash removed
  | 'string' // non-empty
  | 'id' // the charset a version suffix allows (see cluster/hlc.ts)
  | 'enum' // one of `choices`
  | 'level' // a log level
  | 'duration' // 500ms, 30s, 10m, 2h, 10d; a bare number is seconds; 0 allowed
  | 'boolean'; // a flag without value; never read from the environment

export interface OptionSpec {
  /** Long flag without the dashes, e.g. `data-dir`. Also the key in parsed values. */
  flag: string;
  env?: string;
  kind: OptionKind;
  choices?: readonly string[];
  /** Raw default, validated like user input. Absent: the option is unset unless given. */
  default?: string;
  /** Shown instead of `default` when the default is derived from other options. */
  defaultText?: string;
  /** Placeholder in help, e.g. `<port>`. */
  valueName?: string;
  help: string;
}

export type CommandName =
  | 'registry'
  | 'kv'
  | 'gateway'
  | 'dev'
  | 'put'
  | 'get'
  | 'del'
  | 'ls'
  | 'status'
  | 'node';

export interface CommandSpec {
  name: CommandName;
  summary: string;
  /** Positional arguments as shown in usage, e.g. `KEY VALUE`. */
  args?: string;
  /** [min, max] positional arguments. */
  positionals: [number, number];
  options: OptionSpec[];
  notes?: string[];
}

export type OptionValue = string | number | boolean | number[] | undefined;
export type OptionValues = Record<string, OptionValue>;

export interface ParsedCommand {
  help: boolean;
  values: OptionValues;
  positionals: string[];
}

/** A mistake in how the CLI was invoked: reported in one line, exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

// ---------------------------------------------------------------------------
// The tables

const logLevel: OptionSpec = {
  flag: 'log-level',
  env: 'LOG_LEVEL',
  kind: 'level',
  default: 'info',
  valueName: '<level>',
  help: `Log level: ${LOG_LEVELS.join(', ')}`,
};

function hostOption(def: string): OptionSpec {
  return { flag: 'host', env: 'HOST', kind: 'string', default: def, valueName: '<host>', help: 'Interface to bind' };
}

function registryUrlOption(def: string): OptionSpec {
  return { flag: 'registry-url', env: 'REGISTRY_URL', kind: 'url', default: def, valueName: '<url>', help: 'Registry base URL' };
}

const clientOptions: OptionSpec[] = [
  { flag: 'gateway', env: 'FLEXSTORE_GATEWAY', kind: 'url', default: DEFAULT_GATEWAY, valueName: '<url>', help: 'Gateway base URL' },
  {
    flag: 'consistency',
    kind: 'enum',
    choices: CONSISTENCY_LEVELS,
    valueName: '<level>',
    defaultText: "the gateway's",
    help: `Replicas that must answer: ${CONSISTENCY_LEVELS.join(', ')}`,
  },
  {
    flag: 'timeout-ms',
    env: 'FLEXSTORE_TIMEOUT_MS',
    kind: 'positiveInt',
    default: String(DEFAULT_TIMEOUT_MS),
    valueName: '<ms>',
    help: 'Give up on a request after this long',
  },
];

const jsonOption: OptionSpec = { flag: 'json', kind: 'boolean', help: 'Print machine-readable JSON' };

export const commands: Readonly<Record<CommandName, CommandSpec>> = {
  registry: {
    name: 'registry',
    summary: 'Run the service registry: KV servers register and heartbeat here, gateways watch it.',
    positionals: [0, 0],
    options: [
      { flag: 'port', env: 'PORT', kind: 'port', default: String(defaultRegistryConfig.port), valueName: '<port>', help: 'TCP port; 0 picks a free one' },
      hostOption(defaultRegistryConfig.host),
      { flag: 'data-dir', env: 'DATA_DIR', kind: 'string', default: defaultRegistryConfig.dataDir, valueName: '<dir>', help: 'Where the member list is kept' },
      {
        flag: 'down-after-ms',
        env: 'DOWN_AFTER_MS',
        kind: 'positiveInt',
        default: String(defaultRegistryConfig.downAfterMs),
        valueName: '<ms>',
        help: 'Mark a member down after this long without a heartbeat',
      },
      {
        flag: 'replication-factor',
        env: 'REPLICATION_FACTOR',
        kind: 'positiveInt',
        default: String(defaultRegistryConfig.replicationFactor),
        valueName: '<n>',
        help: 'Copies of each key; must equal the gateways\' (used to know who must move data on a join or leave)',
      },
      {
        flag: 'tombstone-grace',
        env: 'TOMBSTONE_GRACE',
        kind: 'duration',
        default: '10d',
        valueName: '<duration>',
        help: 'Keep tombstones this long; a member down longer is refused when it returns',
      },
      {
        flag: 'down-remove-after',
        env: 'DOWN_REMOVE_AFTER',
        kind: 'duration',
        default: '0',
        valueName: '<duration>',
        help: 'Decommission a member down this long (0 = never); must be less than the tombstone grace',
      },
      logLevel,
    ],
    notes: ['Durations: 500ms, 30s, 10m, 2h, 10d; a bare number is seconds.'],
  },
  kv: {
    name: 'kv',
    summary: 'Run a KV storage server (one replica of the data, stored in LMDB).',
    positionals: [0, 0],
    options: [
      { flag: 'port', env: 'PORT', kind: 'port', default: String(defaultKvConfig.port), valueName: '<port>', help: 'TCP port; 0 picks a free one' },
      {
        flag: 'tcp-port',
        env: 'TCP_PORT',
        kind: 'port',
        default: String(defaultKvConfig.tcpPort),
        valueName: '<port>',
        help: 'Port of the binary replica protocol for gateways; 0 picks a free one (advertised to the registry)',
      },
      {
        flag: 'advertise-tcp-port',
        env: 'ADVERTISE_TCP_PORT',
        kind: 'port',
        defaultText: 'the port the replica protocol bound',
        valueName: '<port>',
        help: 'Replica-protocol port gateways reach this server by (behind a proxy or a port mapping), on the host of --advertise-url',
      },
      hostOption(defaultKvConfig.host),
      registryUrlOption(defaultKvConfig.registryUrl),
      { flag: 'data-dir', env: 'DATA_DIR', kind: 'string', defaultText: './data/kv-<port>', valueName: '<dir>', help: 'LMDB files and the node-id file' },
      {
        flag: 'advertise-url',
        env: 'ADVERTISE_URL',
        kind: 'url',
        defaultText: 'http://127.0.0.1:<port>, or http://<host>:<port> for a specific --host',
        valueName: '<url>',
        help: 'URL other processes reach this server by',
      },
      { flag: 'node-id', env: 'NODE_ID', kind: 'string', defaultText: 'generated once, kept in the data dir', valueName: '<id>', help: 'Stable node id' },
      {
        flag: 'heartbeat-ms',
        env: 'HEARTBEAT_INTERVAL_MS',
        kind: 'positiveInt',
        default: String(defaultKvConfig.heartbeatIntervalMs),
        valueName: '<ms>',
        help: 'Heartbeat interval to the registry',
      },
      {
        flag: 'replication-factor',
        env: 'REPLICATION_FACTOR',
        kind: 'positiveInt',
        default: String(defaultKvConfig.replicationFactor),
        valueName: '<n>',
        help: "Copies of each key; must equal the gateways' (decides which ranges this server syncs)",
      },
      {
        flag: 'sync',
        env: 'SYNC',
        kind: 'enum',
        choices: ['commit', 'interval'],
        default: defaultKvConfig.sync,
        valueName: '<mode>',
        help: 'commit: acknowledge a write after its commit is fsynced (survives power loss); interval: once the OS holds it, fsyncing every --sync-interval-ms (survives kill -9, not power loss)',
      },
      {
        flag: 'sync-interval-ms',
        env: 'SYNC_INTERVAL_MS',
        kind: 'positiveInt',
        default: String(defaultKvConfig.syncIntervalMs),
        valueName: '<ms>',
        help: 'With --sync interval: time between fsyncs',
      },
      {
        flag: 'anti-entropy-ms',
        env: 'ANTI_ENTROPY_INTERVAL_MS',
        kind: 'positiveInt',
        default: String(defaultKvConfig.antiEntropyIntervalMs),
        valueName: '<ms>',
        help: 'How often ranges are compared with the other replicas',
      },
      logLevel,
    ],
  },
  gateway: {
    name: 'gateway',
    summary: 'Run a gateway: the client-facing HTTP API that coordinates replicas.',
    positionals: [0, 0],
    options: [
      { flag: 'port', env: 'PORT', kind: 'port', default: String(defaultGatewayConfig.port), valueName: '<port>', help: 'TCP port; 0 picks a free one' },
      hostOption(defaultGatewayConfig.host),
      registryUrlOption(defaultGatewayConfig.registryUrl),
      {
        flag: 'replication-factor',
        env: 'REPLICATION_FACTOR',
        kind: 'positiveInt',
        default: String(defaultGatewayConfig.replicationFactor),
        valueName: '<n>',
        help: 'Copies of each key, capped at the member count',
      },
      {
        flag: 'consistency',
        env: 'DEFAULT_CONSISTENCY',
        kind: 'enum',
        choices: CONSISTENCY_LEVELS,
        default: defaultGatewayConfig.defaultConsistency,
        valueName: '<level>',
        help: `Consistency when a request names none: ${CONSISTENCY_LEVELS.join(', ')}`,
      },
      {
        flag: 'max-key-bytes',
        env: 'MAX_KEY_BYTES',
        kind: 'positiveInt',
        default: String(defaultGatewayConfig.maxKeyBytes),
        valueName: '<n>',
        help: 'Largest key in UTF-8 bytes',
      },
      {
        flag: 'max-value-bytes',
        env: 'MAX_VALUE_BYTES',
        kind: 'positiveInt',
        default: String(defaultGatewayConfig.maxValueBytes),
        valueName: '<n>',
        help: 'Largest value in bytes',
      },
      {
        flag: 'replica-timeout-ms',
        env: 'REPLICA_TIMEOUT_MS',
        kind: 'positiveInt',
        default: String(defaultGatewayConfig.replicaTimeoutMs),
        valueName: '<ms>',
        help: 'A replica request taking longer counts as failed',
      },
      { flag: 'gateway-id', env: 'GATEWAY_ID', kind: 'id', defaultText: 'random per process', valueName: '<id>', help: 'Suffix of the versions this gateway stamps' },
      {
        flag: 'replica-transport',
        env: 'REPLICA_TRANSPORT',
        kind: 'enum',
        choices: ['tcp', 'http'],
        default: defaultGatewayConfig.replicaTransport,
        valueName: '<kind>',
        help: 'How to reach KV servers: tcp (binary protocol where offered, else http) or http',
      },
      logLevel,
    ],
  },
  dev: {
    name: 'dev',
    summary: 'Run a local cluster (registry, KV servers, gateway) as child processes.',
    positionals: [0, 0],
    options: [
      { flag: 'registry-port', kind: 'port', default: '8000', valueName: '<port>', help: 'Registry port' },
      { flag: 'gateway-port', kind: 'port', default: '5000', valueName: '<port>', help: 'Gateway port' },
      { flag: 'kv-ports', kind: 'ports', default: '8001,8002,8003', valueName: '<ports>', help: 'One KV server per port, comma-separated' },
      { flag: 'data-dir', env: 'DATA_DIR', kind: 'string', default: './data', valueName: '<dir>', help: 'Parent of registry/ and kv-<port>/' },
      {
        flag: 'replication-factor',
        env: 'REPLICATION_FACTOR',
        kind: 'positiveInt',
        default: String(defaultGatewayConfig.replicationFactor),
        valueName: '<n>',
        help: 'Copies of each key',
      },
      logLevel,
    ],
    notes: [
      'Data stays in the data dir, so the next run finds it again.',
      'Other server variables (e.g. MAX_VALUE_BYTES) pass through to the children.',
    ],
  },
  put: {
    name: 'put',
    summary: 'Store a value.',
    args: 'KEY VALUE',
    positionals: [2, 2],
    options: [
      ...clientOptions,
      {
        flag: 'content-type',
        kind: 'string',
        defaultText: 'text/plain; charset=utf-8, or application/octet-stream for stdin',
        valueName: '<type>',
        help: 'Content type stored with the value',
      },
      jsonOption,
    ],
    notes: ["VALUE '-' reads the value from stdin as bytes.", "A KEY starting with '-' goes after '--'."],
  },
  get: {
    name: 'get',
    summary: "Write a value's raw bytes to stdout.",
    args: 'KEY',
    positionals: [1, 1],
    options: [...clientOptions, { ...jsonOption, help: 'Print key, version, content type and value as JSON' }],
  },
  del: {
    name: 'del',
    summary: 'Delete a key.',
    args: 'KEY',
    positionals: [1, 1],
    options: [...clientOptions, jsonOption],
  },
  ls: {
    name: 'ls',
    summary: 'List keys in key order, following pages.',
    args: '[PREFIX]',
    positionals: [0, 1],
    options: [
      ...clientOptions,
      { flag: 'limit', kind: 'positiveInt', defaultText: 'no limit', valueName: '<n>', help: 'Print at most this many keys' },
      jsonOption,
    ],
  },
  status: {
    name: 'status',
    summary: "Show the gateway's view of the cluster: members, state, phase, ownership, transfers.",
    positionals: [0, 0],
    options: [...clientOptions, jsonOption],
  },
  node: {
    name: 'node',
    summary: 'Manage members: `node remove ID|URL` decommissions a KV server (its ranges move to their new owners first).',
    args: 'remove ID|URL',
    positionals: [2, 2],
    options: [
      registryUrlOption(defaultRegistryUrl()),
      { flag: 'force', kind: 'boolean', help: 'Remove at once without moving its ranges (only for a member whose data is lost)' },
      jsonOption,
    ],
  },
};

function defaultRegistryUrl(): string {
  return defaultKvConfig.registryUrl;
}

export function isCommandName(name: string): name is CommandName {
  return Object.hasOwn(commands, name);
}

// ---------------------------------------------------------------------------
// Parsing

type Source = { kind: 'flag' | 'env' | 'default'; label: string };

/**
 * Parses one command's argv (everything after the command name) against its
 * table, then fills each option from the flag, the environment or the default.
 * Throws UsageError on anything it cannot accept. With --help, returns at once
 * without validating the rest, so help always works.
 */
export function parseCommand(spec: CommandSpec, argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParsedCommand {
  const parseOptions: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const o of spec.options) parseOptions[o.flag] = { type: o.kind === 'boolean' ? 'boolean' : 'string' };

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options: parseOptions, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  const given = parsed.values as Record<string, string | boolean | undefined>;
  if (given.help) return { help: true, values: {}, positionals: parsed.positionals };

  const [min, max] = spec.positionals;
  const n = parsed.positionals.length;
  if (n < min || n > max) {
    const expected = spec.args ? `expected ${spec.args}` : 'expected no arguments';
    const extra = n > max ? `unexpected argument ${JSON.stringify(parsed.positionals[max])}` : `missing argument`;
    throw new UsageError(`${extra}; ${expected}`);
  }

  const values: OptionValues = {};
  for (const o of spec.options) {
    const flagValue = given[o.flag];
    if (o.kind === 'boolean') {
      values[o.flag] = flagValue === true;
      continue;
    }
    const envValue = o.env ? env[o.env] : undefined;
    let raw: string | undefined;
    let source: Source;
    if (typeof flagValue === 'string') {
      raw = flagValue;
      source = { kind: 'flag', label: `--${o.flag}` };
    } else if (o.env && envValue !== undefined && envValue !== '') {
      // An empty variable counts as unset: compose files and shells often export NAME= to mean "no value".
      raw = envValue;
      source = { kind: 'env', label: o.env };
    } else {
      raw = o.default;
      source = { kind: 'default', label: `default of --${o.flag}` };
    }
    values[o.flag] = raw === undefined ? undefined : convert(o, raw, source);
  }
  return { help: false, values, positionals: parsed.positionals };
}

function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = String(e?.message ?? err);
  const optionName = /'(-{1,2}[^' ]+)/.exec(message)?.[1];
  switch (e?.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${optionName ?? message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(message)) return `option ${optionName} does not take a value`;
      if (/ambiguous/.test(message)) return `option ${optionName} needs a value (write ${optionName}=<value> for a value starting with '-')`;
      return `option ${optionName ?? ''} needs a value`.replace('  ', ' ');
    default:
      return message.split('\n')[0]!;
  }
}

function convert(o: OptionSpec, raw: string, source: Source): OptionValue {
  const fail = (expected: string): never => {
    const from = source.kind === 'env' ? ' (from the environment)' : '';
    throw new UsageError(`invalid ${source.label} ${JSON.stringify(raw)}${from}: ${expected}`);
  };
  switch (o.kind) {
    case 'port':
      return parsePort(raw) ?? fail('expected a port, an integer from 0 to 65535');
    case 'ports': {
      const parts = raw.split(',').map((p) => p.trim());
      const ports = parts.map(parsePort);
      if (parts.length === 0 || ports.some((p) => p === undefined)) fail('expected comma-separated ports, e.g. 8001,8002,8003');
      return ports as number[];
    }
    case 'positiveInt': {
      const n = parseInteger(raw);
      return n !== undefined && n >= 1 ? n : fail('expected an integer of at least 1');
    }
    case 'url':
      return parseHttpUrl(raw) ?? fail('expected an http:// or https:// URL');
    case 'string':
      return raw.trim() !== '' ? raw : fail('expected a non-empty value');
    case 'id':
      return /^[A-Za-z0-9_-]{1,64}$/.test(raw) ? raw : fail('expected 1 to 64 characters from A-Z a-z 0-9 _ -');
    case 'enum':
      return o.choices?.includes(raw) ? raw : fail(`expected one of ${o.choices?.join(', ')}`);
    case 'level':
      return (LOG_LEVELS as readonly string[]).includes(raw) ? raw : fail(`expected one of ${LOG_LEVELS.join(', ')}`);
    case 'duration':
      return parseDuration(raw) ?? fail('expected a duration such as 500ms, 30s, 10m, 2h or 10d');
    case 'boolean':
      return fail('takes no value');
  }
}

export function parseInteger(raw: string): number | undefined {
  if (!/^\d+$/.test(raw.trim())) return undefined;
  const n = Number(raw.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of `500ms`, `30s`, `10m`, `2h`, `10d`; a bare number is seconds. */
export function parseDuration(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!;
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

export function parsePort(raw: string): number | undefined {
  const n = parseInteger(raw);
  return n !== undefined && n <= 65535 ? n : undefined;
}

/** Accepts http(s) URLs only; drops a trailing slash so callers can append paths. */
export function parseHttpUrl(raw: string): string | undefined {
  let u: URL;
  try {
    u = new URL(raw.trim());
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.search || u.hash) return undefined;
  return u.href.replace(/\/+$/, '');
}

// ---------------------------------------------------------------------------
// Typed configs

function int(v: OptionValues, flag: string): number {
  const x = v[flag];
  if (typeof x !== 'number') throw new Error(`option --${flag} is not a number`);
  return x;
}
function str(v: OptionValues, flag: string): string {
  const x = v[flag];
  if (typeof x !== 'string') throw new Error(`option --${flag} is not set`);
  return x;
}
function optInt(v: OptionValues, flag: string): number | undefined {
  const x = v[flag];
  return typeof x === 'number' ? x : undefined;
}
function optStr(v: OptionValues, flag: string): string | undefined {
  const x = v[flag];
  return typeof x === 'string' ? x : undefined;
}

export function registryConfigFrom(v: OptionValues): RegistryConfig {
  return {
    ...defaultRegistryConfig,
    port: int(v, 'port'),
    host: str(v, 'host'),
    dataDir: str(v, 'data-dir'),
    downAfterMs: int(v, 'down-after-ms'),
    replicationFactor: int(v, 'replication-factor'),
    tombstoneGraceMs: int(v, 'tombstone-grace'),
    downRemoveAfterMs: int(v, 'down-remove-after'),
    logLevel: str(v, 'log-level'),
  };
}

export function kvConfigFrom(v: OptionValues): KvConfig {
  const port = int(v, 'port');
  const config: KvConfig = {
    ...defaultKvConfig,
    port,
    host: str(v, 'host'),
    registryUrl: str(v, 'registry-url'),
    dataDir: optStr(v, 'data-dir') ?? `./data/kv-${port}`,
    heartbeatIntervalMs: int(v, 'heartbeat-ms'),
    tcpPort: int(v, 'tcp-port'),
    replicationFactor: int(v, 'replication-factor'),
    antiEntropyIntervalMs: int(v, 'anti-entropy-ms'),
    sync: str(v, 'sync') as KvConfig['sync'],
    syncIntervalMs: int(v, 'sync-interval-ms'),
    logLevel: str(v, 'log-level'),
  };
  // Left unset, the server applies defaultAdvertiseUrl with the port it actually bound (port 0 included).
  const advertiseUrl = optStr(v, 'advertise-url');
  if (advertiseUrl !== undefined) config.advertiseUrl = advertiseUrl;
  const nodeId = optStr(v, 'node-id');
  if (nodeId !== undefined) config.nodeId = nodeId;
  const advertiseTcpPort = optInt(v, 'advertise-tcp-port');
  if (advertiseTcpPort === 0) throw new UsageError('--advertise-tcp-port must be a port gateways can dial, 1 to 65535');
  if (advertiseTcpPort !== undefined) config.advertiseTcpPort = advertiseTcpPort;
  return config;
}

export function gatewayConfigFrom(v: OptionValues): GatewayConfig {
  const config: GatewayConfig = {
    ...defaultGatewayConfig,
    port: int(v, 'port'),
    host: str(v, 'host'),
    registryUrl: str(v, 'registry-url'),
    replicationFactor: int(v, 'replication-factor'),
    defaultConsistency: str(v, 'consistency') as Consistency,
    maxKeyBytes: int(v, 'max-key-bytes'),
    maxValueBytes: int(v, 'max-value-bytes'),
    replicaTimeoutMs: int(v, 'replica-timeout-ms'),
    replicaTransport: str(v, 'replica-transport') as GatewayConfig['replicaTransport'],
    logLevel: str(v, 'log-level'),
  };
  const gatewayId = optStr(v, 'gateway-id');
  if (gatewayId !== undefined) config.gatewayId = gatewayId;
  return config;
}

export interface DevConfig {
  registryPort: number;
  gatewayPort: number;
  kvPorts: number[];
  dataDir: string;
  replicationFactor: number;
  logLevel: string;
}

export function devConfigFrom(v: OptionValues): DevConfig {
  const config: DevConfig = {
    registryPort: int(v, 'registry-port'),
    gatewayPort: int(v, 'gateway-port'),
    kvPorts: v['kv-ports'] as number[],
    dataDir: str(v, 'data-dir'),
    replicationFactor: int(v, 'replication-factor'),
    logLevel: str(v, 'log-level'),
  };
  const all = [config.registryPort, config.gatewayPort, ...config.kvPorts];
  // dev must know each port up front to poll it and to name the KV data dirs (kv-<port>).
  if (all.includes(0)) throw new UsageError('dev needs fixed ports; 0 (pick a free port) is not supported here');
  const dup = all.find((p, i) => all.indexOf(p) !== i);
  if (dup !== undefined) throw new UsageError(`port ${dup} is used twice; every server needs its own port`);
  return config;
}

export interface ClientSettings {
  gateway: string;
  timeoutMs: number;
  consistency?: Consistency;
  json: boolean;
}

export function clientSettingsFrom(v: OptionValues): ClientSettings {
  const settings: ClientSettings = { gateway: str(v, 'gateway'), timeoutMs: int(v, 'timeout-ms'), json: v.json === true };
  const consistency = optStr(v, 'consistency');
  if (consistency !== undefined) settings.consistency = consistency as Consistency;
  return settings;
}

// ---------------------------------------------------------------------------
// Help

export function formatCommandHelp(spec: CommandSpec): string {
  const usage = `Usage: flexstore ${spec.name} [options]${spec.args ? ` ${spec.args}` : ''}`;
  const rows: Array<[string, string, string]> = spec.options.map((o) => {
    const flag = `--${o.flag}${o.valueName ? ` ${o.valueName}` : ''}`;
    const def = o.default !== undefined ? o.default : o.defaultText;
    return [flag, o.env ?? '', def !== undefined && o.kind !== 'boolean' ? `${o.help} (default: ${def})` : o.help];
  });
  rows.push(['-h, --help', '', 'Show this help']);
  const lines = [usage, '', spec.summary, '', 'Options (flag, environment variable, meaning):', ...formatRows(rows)];
  lines.push('', 'Flags win over environment variables, which win over defaults.');
  if (spec.notes) lines.push(...spec.notes);
  return lines.join('\n') + '\n';
}

export function formatRows(rows: ReadonlyArray<readonly string[]>): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    ('  ' + row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]! + 2))).join('')).trimEnd(),
  );
}
