import type { AddressInfo } from 'node:net';
import { InvalidKey, InvalidRequest } from '../cluster/errors.js';
import { createHttpServer, pathOf } from '../cluster/http-server.js';
import { KV_PATH } from '../cluster/http-wire.js';
import { Heartbeater, MembershipWatcher } from '../cluster/registry-client.js';
import type { RunningServer, TransferProgress } from '../cluster/types.js';
import { AntiEntropy } from './anti-entropy.js';
import { offsetClock } from '../cluster/hlc.js';
import { listenUrl } from '../cluster/listen-url.js';
import type { Logger } from '../cluster/logger.js';
import { loadClusterSecurity } from '../cluster/security.js';
import { watchSecretFile } from '../cluster/secret-reloader.js';
import { httpScheme } from '../cluster/tls.js';
import { checkBind } from '../cluster/bind-guard.js';
import { defaultKvConfig, defaultKvDataDir, validateKvConfig, type KvConfig } from './config.js';
import { HintDelivery } from './hint-delivery.js';
import { KvMetrics, registerMetricsRoute } from './metrics.js';
import { loadOrCreateNodeId } from './node-id.js';
import { registerReplicaApi } from './replica-api.js';
import { Storage } from './storage.js';
import { registerRepairApi } from './repair-api.js';
import { RepairClient } from './repair-client.js';
import { replicaFrameLimit, startTcpReplicaServer, type RunningTcpReplicaServer } from './tcp-replica-server.js';
import { HANDSHAKE_TIMEOUT_MS } from '../cluster/tcp-handshake.js';

export interface RunningKvServer extends RunningServer {
  /** Stable node id, kept in <dataDir>/node-id. */
  id: string;
  /** Range-transfer progress, as sent to the registry with every heartbeat. */
  progress(): TransferProgress;
}

const KV_OPEN_PATHS = new Set(['/health', '/health-check', '/metrics']);

/** Upper bound of the settle window of routine anti-entropy passes (half the interval below 10 s). */
const MAX_SETTLE_WINDOW_MS = 5000;

/**
 * Starts one KV server: opens its storage, serves the replica and repair APIs
 * and /metrics, heartbeats to the registry (reporting transfer progress),
 * follows the member view, and runs anti-entropy and hinted hand-off.
 * Start-up never waits for the registry: the server serves gateways that
 * already know it while registration retries every heartbeat interval, and
 * its first anti-entropy pass runs when the first view arrives.
 *
 * Without config.dataDir the data lives in ./data/kv-<configured port>; give a
 * dataDir when asking for port 0, or every such server shares ./data/kv-0.
 */
export async function startKvServer(config: Partial<KvConfig> = {}): Promise<RunningKvServer> {
  const given = withoutUndefined(config);
  const port = given.port ?? defaultKvConfig.port;
  const cfg: KvConfig = { ...defaultKvConfig, ...given, port, dataDir: given.dataDir ?? defaultKvDataDir(port) };
  validateKvConfig(cfg);
  const security = loadClusterSecurity(cfg);
  checkBind(cfg, security);

  // Identity first: a data dir that belongs to another node must fail before
  // anything is opened or bound.
  const id = loadOrCreateNodeId(cfg.dataDir, cfg.nodeId);
  // The clock versions are checked against (storage.ts) and reported to the registry by.
  const now = offsetClock(cfg.clockOffsetMs);
  const refusals = new RefusalLog();
  const storage = Storage.open(cfg.dataDir, {
    now,
    maxClockSkewMs: cfg.maxClockSkewMs,
    onVersionRefused: (path, n) => {
      metrics.versionsRefused.inc({ path }, n);
      refusals.note(path, n, app.log);
    },
    sync: cfg.sync,
    syncIntervalMs: cfg.syncIntervalMs,
    // Routine anti-entropy passes leave writes younger than this to the next pass (recent-changes.ts).
    settleWindowMs: Math.min(MAX_SETTLE_WINDOW_MS, Math.floor(cfg.antiEntropyIntervalMs / 2)),
    onSyncError: (err) => app.log.error({ err }, 'periodic fsync failed; retrying at the next interval'),
    storageProbeMs: cfg.storageProbeMs,
    onStorageState: (state, cause) => {
      if (state === 'full') {
        app.log.error(
          { dataDir: cfg.dataDir, cause, probeMs: cfg.storageProbeMs },
          'storage cannot commit: refusing writes (507 STORAGE_FULL) and serving reads until a probe commit succeeds; free space in the data dir',
        );
      } else {
        app.log.warn({ dataDir: cfg.dataDir }, 'storage commits again: taking writes');
      }
    },
    onWriteRefused: (path) => metrics.storageRefused.inc({ path }),
  });
  const app = createHttpServer({
    logLevel: cfg.logLevel,
    bodyLimit: cfg.maxBodyBytes,
    component: 'kv',
    security,
    requestTimeoutMs: cfg.requestTimeoutMs,
    maxConnections: cfg.maxConnections,
    // Every internal route (replica, keys, sync, hints) is for members only;
    // /health, /health-check and /metrics stay open. Listed by what is open,
    // so a path the router decodes to an internal route (%69nternal) is not.
    protect: (_method, url) => (KV_OPEN_PATHS.has(pathOf(url)) ? 'open' : 'member'),
    onAuthRefused: (reason) => metrics.authRefused.inc({ reason }),
    // The router rejects an undecodable path before any route runs; under
    // /internal/kv/ that path is a key.
    badUrlError: (badUrl) =>
      badUrl.startsWith(KV_PATH)
        ? new InvalidKey('key is not valid percent-encoded UTF-8', { raw: badUrl.slice(KV_PATH.length, 200) })
        : new InvalidRequest(`malformed URL: ${badUrl.slice(0, 200)}`),
  });
  if (storage.migration) {
    app.log.info({ dataDir: cfg.dataDir, ...storage.migration }, 'built the hash index for a data dir of an older layout');
  }
  const metrics = new KvMetrics(storage);
  const client = new RepairClient({ security });
  const watcher = new MembershipWatcher({ registryUrl: cfg.registryUrl, log: app.log, security });
  const antiEntropy = new AntiEntropy({
    selfId: id,
    storage,
    client,
    metrics,
    log: app.log,
    replicationFactor: cfg.replicationFactor,
    vnodes: cfg.vnodes,
    intervalMs: cfg.antiEntropyIntervalMs,
  });
  const hints = new HintDelivery({ selfId: id, storage, client, metrics, log: app.log, view: () => watcher.view });
  const progress = () => antiEntropy.progress();

  registerReplicaApi(app, { storage, nodeId: id });
  registerRepairApi(app, { storage, metrics, progress });
  registerMetricsRoute(app, metrics);

  try {
    await app.listen({ port: cfg.port, host: cfg.host });
  } catch (err) {
    await app.close().catch(() => {});
    await client.close();
    await storage.close();
    throw err;
  }
  const boundPort = (app.server.address() as AddressInfo).port;
  const url = cfg.advertiseUrl ?? listenUrl(cfg.host, boundPort, httpScheme(security));
  // The binary replica protocol, on its own port of the same host; gateways
  // learn the port from the registry (tcp_port in every heartbeat).
  let tcp: RunningTcpReplicaServer;
  try {
    tcp = await startTcpReplicaServer({
      storage,
      host: cfg.host,
      port: cfg.tcpPort,
      log: app.log,
      security,
      onAuthRefused: (reason) => metrics.authRefused.inc({ reason }),
      // The same values as the HTTP replica API (maxBodyBytes); docs/security.md "Replica port limits".
      maxFrameBytes: replicaFrameLimit(cfg.maxBodyBytes),
      frameTimeoutMs: cfg.frameTimeoutMs,
      maxInflightBytes: cfg.maxInflightBytes,
      maxConnections: cfg.maxConnections,
      // A peer that cannot send a frame in time cannot be waited for to say hello either.
      handshakeTimeoutMs: Math.min(HANDSHAKE_TIMEOUT_MS, cfg.frameTimeoutMs),
      onConnectionClosed: (reason) => metrics.replicaConnectionsClosed.inc({ reason }),
      // Counted here as on the HTTP path (repair-api.ts): gateways send hints over this protocol by default.
      storeHints: (target, keys) => storage.hints.add(target, keys).then((stored) => void metrics.hintsStored.inc(stored)),
    });
  } catch (err) {
    await app.close().catch(() => {});
    await client.close();
    await storage.close();
    throw err;
  }
  metrics.replicaPort = tcp;
  const tcpAdvertised = cfg.advertiseTcpPort ?? tcp.port;
  // Watched from here on: nothing below can fail start-up and leave the watch behind.
  const secretReloader = watchSecretFile(security, { log: app.log, onReload: (outcome) => metrics.secretReloads.inc({ outcome }) });
  app.log.info(
    { id, url, tcpPort: tcp.port, advertisedTcpPort: tcpAdvertised, dataDir: cfg.dataDir, sync: cfg.sync, keys: storage.count(), hintsPending: storage.hints.count() },
    'kv server listening',
  );

  let closing: Promise<void> | null = null;
  let failWith!: (err: Error) => void;
  const failed = new Promise<Error>((resolve) => (failWith = resolve));
  const heartbeater = new Heartbeater({
    registryUrl: cfg.registryUrl,
    id,
    url,
    intervalMs: cfg.heartbeatIntervalMs,
    log: app.log,
    security,
    // clock_ms: the registry compares it with its own clock (clock skew in /cluster).
    // storage: "full" tells the registry, and through it gateways and peers, that writes are refused here.
    report: () => ({ transfer: progress(), tcp_port: tcpAdvertised, clock_ms: now(), storage: storage.health.state }),
    // The registry refuses a member it removed or that was down past the
    // tombstone grace: its data may hold deletes the others have purged, so
    // serving it could bring deleted values back. Stop rather than serve.
    onRejected: (err) => {
      app.log.error({ id, err: err.message }, 'the registry refused this server; shutting down');
      void close().then(() => failWith(new Error(`the registry refused this server: ${err.message}`)));
    },
  });

  const close = (): Promise<void> => {
    closing ??= (async () => {
      // Heartbeats stop first (the registry will mark this node down, not
      // remove it), then the repair loops (closing the client aborts their
      // calls to peers) and the watch, then requests drain, each in-flight put
      // finishing its commit, and only then does storage close.
      secretReloader?.close();
      await heartbeater.stop();
      await Promise.all([antiEntropy.stop(), hints.stop(), watcher.stop(), client.close()]);
      await Promise.all([app.close(), tcp.close()]);
      await storage.close();
      app.log.info({ id }, 'kv server stopped');
    })();
    return closing;
  };

  watcher.on('change', (view) => antiEntropy.viewChanged(view));
  heartbeater.start();
  antiEntropy.start();
  hints.start();
  // Not awaited: start-up does not wait for the registry (see above).
  void watcher.start();

  return { url, port: boundPort, id, close, progress, failed };
}

/**
 * Logs refused future versions at warn, at most once a minute per path with
 * the count since the last line: a skewed gateway would otherwise log on
 * every write. The metric counts every one.
 */
class RefusalLog {
  private readonly last = new Map<string, { at: number; pending: number }>();
  note(path: string, n: number, log: Pick<Logger, 'warn'>): void {
    const now = Date.now();
    const entry = this.last.get(path) ?? { at: 0, pending: 0 };
    entry.pending += n;
    this.last.set(path, entry);
    if (now - entry.at < 60_000) return;
    log.warn({ path, refused: entry.pending }, 'refused versions from the future (a skewed clock or a forged version; see flexstore_versions_refused_total)');
    entry.at = now;
    entry.pending = 0;
  }
}

/** An explicit `undefined` in a partial config means "default", not "unset". */
function withoutUndefined<T extends object>(obj: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
