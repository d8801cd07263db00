import { defineOptions, opt, type ConfigOf } from '../cluster/option-spec.js';
import { host, insecure, logLevel, portOption, registryUrl, replicationFactor, vnodes, securityOptions, clockOptions, limitOptions } from '../cluster/shared-options.js';
import type { SyncMode } from './storage.js';

export const SYNC_MODES = ['commit', 'interval'] as const satisfies readonly SyncMode[];

/** The data dir a KV server uses unless given one: one per port, so servers on one machine never share. */
export function defaultKvDataDir(port: number): string {
  return `./data/kv-${port}`;
}

/**
 * Configuration of one KV server: one row per option (flag, environment
 * variable, kind, default, doc line, check). The CLI, --help, the README's
 * table and validateKvConfig all come from these rows.
 */
export const kvOptions = defineOptions('kv', {
  port: portOption(8001),
  // Gateways learn the bound port from the registry (tcp_port in every
  // heartbeat), so a free port is a fine default.
  tcpPort: opt.port({
    flag: 'tcp-port',
    env: 'TCP_PORT',
    default: 0,
    valueName: '<port>',
    doc: 'Port of the binary replica protocol for gateways; 0 picks a free one (advertised to the registry)',
  }),
  // For a proxy or a container's port mapping in front of tcpPort; gateways
  // dial it on the host of advertiseUrl, so 0 (pick one) means nothing here.
  advertiseTcpPort: opt.port({
    flag: 'advertise-tcp-port',
    env: 'ADVERTISE_TCP_PORT',
    min: 1,
    defaultText: 'the port the replica protocol bound',
    valueName: '<port>',
    doc: 'Replica-protocol port gateways reach this server by (behind a proxy or a port mapping), on the host of --advertise-url',
  }),
  host,
  registryUrl,
  dataDir: opt.string({
    flag: 'data-dir',
    env: 'DATA_DIR',
    default: defaultKvDataDir(8001),
    defaultText: './data/kv-<port>',
    valueName: '<dir>',
    doc: 'LMDB files and the node-id file',
  }),
  // Applied with the port actually bound, so port 0 works too (see listenUrl).
  advertiseUrl: opt.url({
    flag: 'advertise-url',
    env: 'ADVERTISE_URL',
    defaultText: 'http://127.0.0.1:<port>, or http://<host>:<port> for a specific --host',
    valueName: '<url>',
    doc: 'URL other processes reach this server by',
  }),
  nodeId: opt.string({
    flag: 'node-id',
    env: 'NODE_ID',
    defaultText: 'generated once, kept in the data dir',
    valueName: '<id>',
    doc: 'Stable node id',
  }),
  heartbeatIntervalMs: opt.int({
    flag: 'heartbeat-ms',
    env: 'HEARTBEAT_INTERVAL_MS',
    default: 1000,
    valueName: '<ms>',
    doc: 'Heartbeat interval to the registry',
  }),
  maxBodyBytes: opt.int({ default: 16 * 1024 * 1024, doc: 'Largest replica request body accepted (value plus framing)' }),
  // Anti-entropy derives which ranges this server shares with whom from N and the vnodes.
  replicationFactor,
  vnodes,
  // Passes are about ±10% jittered, and also run at start-up and whenever the
  // member view changes. 0 turns anti-entropy and tombstone purging off
  // (hinted hand-off still runs).
  antiEntropyIntervalMs: opt.int({
    flag: 'anti-entropy-ms',
    env: 'ANTI_ENTROPY_INTERVAL_MS',
    default: 10_000,
    min: 0,
    valueName: '<ms>',
    doc: 'How often ranges are compared with the other replicas (0 = never)',
  }),
  // See SyncMode in storage.ts for what each mode survives.
  sync: opt.enum(SYNC_MODES, {
    flag: 'sync',
    env: 'SYNC',
    default: 'commit',
    valueName: '<mode>',
    doc: 'commit: acknowledge a write after its commit is fsynced (survives power loss); interval: once the OS holds it, fsyncing every --sync-interval-ms (survives kill -9, not power loss)',
  }),
  syncIntervalMs: opt.int({
    flag: 'sync-interval-ms',
    env: 'SYNC_INTERVAL_MS',
    default: 100,
    valueName: '<ms>',
    doc: 'With --sync interval: time between fsyncs',
  }),
  frameTimeoutMs: opt.int({
    flag: 'frame-timeout-ms',
    env: 'FRAME_TIMEOUT_MS',
    default: 10_000,
    min: 100,
    valueName: '<ms>',
    doc: 'Replica port: a frame whose header has arrived must arrive whole within this, or its connection is closed',
  }),
  maxInflightBytes: opt.int({
    flag: 'max-inflight-bytes',
    env: 'MAX_INFLIGHT_BYTES',
    default: 256 * 1024 * 1024,
    valueName: '<n>',
    doc: 'Replica port: most bytes of partly received frames held across all connections; past it reading pauses',
  }),
  storageProbeMs: opt.int({
    flag: 'storage-probe-ms',
    env: 'STORAGE_PROBE_MS',
    default: 5000,
    min: 100,
    valueName: '<ms>',
    doc: 'While storage is full, how often a small probe commit checks whether writes can resume',
  }),
  logLevel,
  ...limitOptions,
  ...securityOptions,
  ...clockOptions,
  insecure,
});

export type KvConfig = ConfigOf<typeof kvOptions.rows>;

export const defaultKvConfig: Readonly<KvConfig> = kvOptions.defaults;

/** Throws `invalid kv config: <field> ...` for the first field refused. */
export const validateKvConfig = (config: KvConfig): void => kvOptions.validate(config);
