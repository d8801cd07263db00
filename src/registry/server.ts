import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { createHttpServer } from '../cluster/http-server.js';
import type { RunningServer } from '../cluster/types.js';
import { listenUrl } from '../cluster/listen-url.js';
import { loadClusterSecurity } from '../cluster/security.js';
import { watchSecretFile } from '../cluster/secret-reloader.js';
import { httpScheme } from '../cluster/tls.js';
import { checkBind } from '../cluster/bind-guard.js';
import { defaultRegistryConfig, validateRegistryConfig, type RegistryConfig } from './config.js';
import { MemberTable } from './members.js';
import { registerRegistryRoutes, registryProtection } from './routes.js';
import { RefusalCounts } from '../cluster/auth-hooks.js';
import { MemberStore } from './store.js';

/** Registry bodies are one small JSON object (a heartbeat is under 1 KiB); anything larger is a mistake. */
const BODY_LIMIT = 16 * 1024;
/** How long close() lets released watches write their answers before cutting connections. */
const WATCH_DRAIN_MS = 1000;
/** How often heartbeat times are written to the member file. */
const HEARTBEAT_SAVE_MS = 30_000;

/**
 * Starts the service registry: loads the member list from
 * `<dataDir>/members.json` (every loaded member starts `down` until it
 * heartbeats), sweeps liveness every sweepIntervalMs, and serves the HTTP API
 * of routes.ts. Fails fast on an invalid config or a corrupt member file.
 */
export async function startRegistry(config: Partial<RegistryConfig> = {}): Promise<RunningServer> {
  const cfg: RegistryConfig = { ...defaultRegistryConfig, ...config };
  validateRegistryConfig(cfg);
  const security = loadClusterSecurity(cfg);
  checkBind(cfg, security);
  await mkdir(cfg.dataDir, { recursive: true });

  const refusals = new RefusalCounts();
  const app = createHttpServer({
    logLevel: cfg.logLevel,
    bodyLimit: BODY_LIMIT,
    component: 'registry',
    security,
    requestTimeoutMs: cfg.requestTimeoutMs,
    maxConnections: cfg.maxConnections,
    protect: registryProtection,
    ...(cfg.adminToken !== undefined && { adminToken: cfg.adminToken }),
    onAuthRefused: refusals.inc,
  });
  const store = new MemberStore(cfg.dataDir);
  const persisted = await store.load();
  let persist = (): Promise<void> => Promise.resolve();
  const table = new MemberTable({
    downAfterMs: cfg.downAfterMs,
    log: app.log,
    replicationFactor: cfg.replicationFactor,
    vnodes: cfg.vnodes,
    tombstoneGraceMs: cfg.tombstoneGraceMs,
    downRemoveAfterMs: cfg.downRemoveAfterMs,
    joinTimeoutMs: cfg.joinTimeoutMs,
    maxJoining: cfg.maxJoining,
    maxMembers: cfg.maxMembers,
    onMembershipChange: () => {
      persist().catch((err: unknown) => app.log.error({ err }, 'could not write the member file'));
    },
  });
  if (persisted) {
    table.load(persisted.members, persisted.index, {
      ...(persisted.epoch !== undefined && { epoch: persisted.epoch }),
      ...(persisted.removed !== undefined && { removed: persisted.removed }),
    });
    app.log.info({ members: persisted.members.length, file: store.file }, 'loaded the member list; all members down until they heartbeat');
  }

  persist = (): Promise<void> =>
    store.save({ index: table.index, epoch: table.epoch, members: table.records(), removed: table.removedIds() });
  const routes = registerRegistryRoutes(app, {
    table,
    config: cfg,
    persist,
    security,
    refusals,
    limits: { ratePerSec: cfg.registrationRate, burst: cfg.registrationBurst },
  });

  const sweeper = setInterval(() => table.sweep(Date.now()), cfg.sweepIntervalMs);
  sweeper.unref();
  // Heartbeat times reach the file only now and then: enough for the
  // tombstone-grace check after a restart to be off by at most this much.
  const saver = setInterval(() => {
    if (table.upCount > 0) persist().catch((err: unknown) => app.log.error({ err }, 'could not write the member file'));
  }, HEARTBEAT_SAVE_MS);
  saver.unref();

  try {
    await app.listen({ port: cfg.port, host: cfg.host });
  } catch (err) {
    clearInterval(sweeper);
    clearInterval(saver);
    table.close();
    await app.close();
    await routes.close();
    throw err;
  }
  const port = (app.server.address() as AddressInfo).port;
  const url = listenUrl(cfg.host, port, httpScheme(security));
  app.log.info({ url, dataDir: cfg.dataDir, members: table.size }, 'registry listening');
  const secretReloader = watchSecretFile(security, { log: app.log });

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      secretReloader?.close();
      clearInterval(sweeper);
      clearInterval(saver);
      // Blocked watchers get the current view rather than a reset connection.
      table.close();
      await Promise.race([routes.watchesSettled(), delay(WATCH_DRAIN_MS, undefined, { ref: false })]);
      await app.close();
      await routes.close();
      try {
        await store.flush();
      } catch (err) {
        app.log.error({ err }, 'could not write the member file while closing');
      }
    })();
    return closing;
  };

  return { url, port, close };
}
