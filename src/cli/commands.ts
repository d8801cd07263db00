import { DEFAULT_GATEWAY, DEFAULT_TIMEOUT_MS } from '../client/index.js';
import { defineOptions, opt, type ConfigOf } from '../cluster/option-spec.js';
import { clusterSecret, clusterSecretFile, logLevel, registryUrl, replicationFactor } from '../cluster/shared-options.js';
import { CONSISTENCY_LEVELS, gatewayOptions, type GatewayConfig } from '../gateway/config.js';
import { TOKEN_ROLES } from '../gateway/tokens.js';
import { defaultKvDataDir, kvOptions, type KvConfig } from '../kv/config.js';
import { registryOptions, type RegistryConfig } from '../registry/config.js';
import { UsageError, cliOptions, configFrom, type CommandSpec, type OptionValues } from './options.js';

/**
 * The flexstore commands: their options come from the components' rows
 * (registry/config.ts, kv/config.ts, gateway/config.ts) and, for the
 * commands that start no server, from the rows below.
 */

export type CommandName = 'registry' | 'kv' | 'gateway' | 'dev' | 'put' | 'get' | 'del' | 'ls' | 'status' | 'node' | 'certs' | 'token';

const devOptions = defineOptions('dev', {
  registryPort: opt.port({ flag: 'registry-port', default: registryOptions.defaults.port, valueName: '<port>', doc: 'Registry port' }),
  gatewayPort: opt.port({ flag: 'gateway-port', default: gatewayOptions.defaults.port, valueName: '<port>', doc: 'Gateway port' }),
  kvPorts: opt.ports({
    flag: 'kv-ports',
    default: [0, 1, 2].map((i) => kvOptions.defaults.port + i),
    valueName: '<ports>',
    doc: 'One KV server per port, comma-separated',
  }),
  dataDir: opt.string({ flag: 'data-dir', env: 'DATA_DIR', default: './data', valueName: '<dir>', doc: 'Parent of registry/ and kv-<port>/' }),
  replicationFactor,
  logLevel,
});

export type DevConfig = ConfigOf<typeof devOptions.rows>;

/** How the CLI trusts an https:// gateway or registry, and the pair it presents when that one requires client certificates. */
const clientTlsRows = {
  ca: opt.string({ flag: 'ca', env: 'FLEXSTORE_CA', valueName: '<file>', doc: 'PEM CA bundle an https:// server is verified against (e.g. ca.crt of flexstore certs)' }),
  cert: opt.string({ flag: 'cert', env: 'FLEXSTORE_CERT', valueName: '<file>', doc: 'PEM client certificate, for a server with --tls-client-auth require' }),
  key: opt.string({ flag: 'key', env: 'FLEXSTORE_KEY', valueName: '<file>', doc: 'PEM private key of --cert' }),
};

const certsOptions = defineOptions('certs', {
  out: opt.string({ flag: 'out', valueName: '<dir>', doc: 'Directory of ca.crt, ca.key, server.crt, server.key (created if absent)' }),
  hosts: opt.string({
    flag: 'hosts',
    valueName: '<hosts>',
    doc: 'Comma-separated DNS names and IP addresses the certificate is valid for (localhost, 127.0.0.1 and ::1 always are)',
  }),
  days: opt.int({ flag: 'days', default: 825, valueName: '<n>', doc: 'Validity of server.crt in days' }),
  force: opt.boolean({ flag: 'force', doc: 'Make a new CA even if <dir>/ca.key exists (by default it issues the new pair)' }),
});

const tokenOptions = defineOptions('token', {
  name: opt.string({ flag: 'name', valueName: '<name>', doc: 'Name of the token in the file (shown in 403 answers), e.g. the application using it' }),
  role: opt.enum(TOKEN_ROLES, { flag: 'role', valueName: '<role>', doc: `What the token may do: ${TOKEN_ROLES.join(', ')}` }),
  prefix: opt.string({ flag: 'prefix', valueName: '<prefix>', doc: 'Key prefix the token is limited to; repeat for several (default: every key)' }),
  json: opt.boolean({ flag: 'json', default: false, doc: 'Print {"token", "entry"} as JSON' }),
});

const clientOptions = defineOptions('client', {
  gateway: opt.url({ flag: 'gateway', env: 'FLEXSTORE_GATEWAY', default: DEFAULT_GATEWAY, valueName: '<url>', doc: 'Gateway base URL' }),
  token: opt.string({
    flag: 'token',
    env: 'FLEXSTORE_TOKEN',
    valueName: '<token>',
    doc: 'Client token, sent as Authorization: Bearer (a gateway with AUTH_TOKENS_FILE needs one); prefer the variable, a flag shows in ps',
  }),
  // Left unset, the request names none and the gateway applies its own default.
  consistency: opt.enum(CONSISTENCY_LEVELS, {
    flag: 'consistency',
    valueName: '<level>',
    defaultText: "the gateway's",
    doc: `Replicas that must answer: ${CONSISTENCY_LEVELS.join(', ')}`,
  }),
  timeoutMs: opt.int({
    flag: 'timeout-ms',
    env: 'FLEXSTORE_TIMEOUT_MS',
    default: DEFAULT_TIMEOUT_MS,
    valueName: '<ms>',
    doc: 'Give up on a request after this long',
  }),
  json: opt.boolean({ flag: 'json', default: false, doc: 'Print machine-readable JSON' }),
  ...clientTlsRows,
});

export type ClientSettings = ConfigOf<typeof clientOptions.rows>;

/** Options of one client command only; read by flag from the parsed values. */
const commandOptions = {
  contentType: opt.string({
    flag: 'content-type',
    defaultText: 'text/plain; charset=utf-8, or application/octet-stream for stdin',
    valueName: '<type>',
    doc: 'Content type stored with the value',
  }),
  limit: opt.int({ flag: 'limit', defaultText: 'no limit', valueName: '<n>', doc: 'Print at most this many keys' }),
  force: opt.boolean({ flag: 'force', doc: 'Remove at once without moving its ranges (only for a member whose data is lost)' }),
  adminToken: opt.string({
    flag: 'admin-token',
    env: 'FLEXSTORE_ADMIN_TOKEN',
    valueName: '<token>',
    doc: "The registry's admin token (its ADMIN_TOKEN)",
  }),
};

const client = cliOptions(clientOptions.rows);
const clientWith = (rows: Parameters<typeof cliOptions>[0]) => [...client.filter((o) => o.flag !== 'json'), ...cliOptions(rows), ...client.filter((o) => o.flag === 'json')];

export const commands: Readonly<Record<CommandName, CommandSpec>> = {
  registry: {
    name: 'registry',
    summary: 'Run the service registry: KV servers register and heartbeat here, gateways watch it.',
    positionals: [0, 0],
    options: cliOptions(registryOptions.rows),
    notes: ['Durations: 500ms, 30s, 10m, 2h, 10d; a bare number is seconds.'],
  },
  kv: {
    name: 'kv',
    summary: 'Run a KV storage server (one replica of the data, stored in LMDB).',
    positionals: [0, 0],
    options: cliOptions(kvOptions.rows),
  },
  gateway: {
    name: 'gateway',
    summary: 'Run a gateway: the client-facing HTTP API that coordinates replicas.',
    positionals: [0, 0],
    options: cliOptions(gatewayOptions.rows),
  },
  dev: {
    name: 'dev',
    summary: 'Run a local cluster (registry, KV servers, gateway) as child processes.',
    positionals: [0, 0],
    options: cliOptions(devOptions.rows),
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
    options: clientWith({ contentType: commandOptions.contentType }),
    notes: ["VALUE '-' reads the value from stdin as bytes.", "A KEY starting with '-' goes after '--'."],
  },
  get: {
    name: 'get',
    summary: "Write a value's raw bytes to stdout.",
    args: 'KEY',
    positionals: [1, 1],
    options: cliOptions(clientOptions.rows, { json: { doc: 'Print key, version, content type and value as JSON' } }),
  },
  del: { name: 'del', summary: 'Delete a key.', args: 'KEY', positionals: [1, 1], options: client },
  ls: {
    name: 'ls',
    summary: 'List keys in key order, following pages.',
    args: '[PREFIX]',
    positionals: [0, 1],
    options: clientWith({ limit: commandOptions.limit }),
  },
  status: {
    name: 'status',
    summary: "Show the gateway's view of the cluster: members, state, phase, ownership, transfers.",
    positionals: [0, 0],
    options: client,
  },
  node: {
    name: 'node',
    summary: 'Manage members: `node remove ID|URL` decommissions a KV server (its ranges move to their new owners first).',
    args: 'remove ID|URL',
    positionals: [2, 2],
    // Either credential deregisters: the admin token, or the cluster secret (the request is then signed).
    options: cliOptions({
      registryUrl,
      force: commandOptions.force,
      adminToken: commandOptions.adminToken,
      clusterSecret,
      clusterSecretFile,
      json: clientOptions.rows.json,
      ...clientTlsRows,
    }),
  },
  token: {
    name: 'token',
    summary: 'Make a client token: `token create --name NAME --role ROLE [--prefix P]...` prints it once, and its entry for AUTH_TOKENS_FILE.',
    args: 'create',
    positionals: [1, 1],
    options: cliOptions(tokenOptions.rows).map((o) => (o.flag === 'prefix' ? { ...o, multiple: true } : o)),
    notes: [
      'The token is printed once and kept nowhere: the entry holds only its SHA-256.',
      "Add the entry to the gateway's token file; the gateway picks it up within a second, no restart.",
    ],
  },
  certs: {
    name: 'certs',
    summary: 'Create a CA and a certificate pair for a TLS cluster (needs the openssl command).',
    positionals: [0, 0],
    options: cliOptions(certsOptions.rows),
    notes: [
      'Writes ca.crt, ca.key, server.crt and server.key (keys mode 0600); the one pair serves every component, as server and as client.',
      'An existing ca.key issues the new pair, so rerunning with more hosts keeps the CA every member trusts.',
    ],
  },
};

export function isCommandName(name: string): name is CommandName {
  return Object.hasOwn(commands, name);
}

// ---------------------------------------------------------------------------
// Typed configs of parsed values

export function registryConfigFrom(v: OptionValues): RegistryConfig {
  return configFrom(registryOptions.defaults, commands.registry.options, v);
}

export function kvConfigFrom(v: OptionValues): KvConfig {
  const config = configFrom(kvOptions.defaults, commands.kv.options, v);
  if (v['data-dir'] === undefined) config.dataDir = defaultKvDataDir(config.port);
  return config;
}

export function gatewayConfigFrom(v: OptionValues): GatewayConfig {
  return configFrom(gatewayOptions.defaults, commands.gateway.options, v);
}

export function devConfigFrom(v: OptionValues): DevConfig {
  const config = configFrom(devOptions.defaults, commands.dev.options, v);
  const all = [config.registryPort, config.gatewayPort, ...config.kvPorts];
  // dev must know each port up front to poll it and to name the KV data dirs (kv-<port>).
  if (all.includes(0)) throw new UsageError('dev needs fixed ports; 0 (pick a free port) is not supported here');
  const dup = all.find((p, i) => all.indexOf(p) !== i);
  if (dup !== undefined) throw new UsageError(`port ${dup} is used twice; every server needs its own port`);
  return config;
}

export function clientSettingsFrom(v: OptionValues): ClientSettings {
  return configFrom(clientOptions.defaults, client, v);
}
