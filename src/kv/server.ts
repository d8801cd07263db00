import type { AddressInfo } from 'node:net';
import { InvalidKey, InvalidRequest } from '../cluster/errors.js';
import { createHttpServer } from '../cluster/http-server.js';
import { Heartbeater } from '../cluster/registry-client.js';
import type { RunningServer } from '../cluster/types.js';
import { defaultAdvertiseUrl, defaultKvConfig, type KvConfig } from './config.js';
import { loadOrCreateNodeId } from './node-id.js';
import { KV_PATH, registerReplicaApi } from './replica-api.js';
import { Storage } from './storage.js';

export interface RunningKvServer extends RunningServer {
  /** Stable node id, kept in <dataDir>/node-id. */
  id: string;
}

/**
 * Starts one KV server: opens its storage, serves the replica API and
 * heartbeats to the registry. Start-up never waits for the registry: the
 * server serves gateways that already know it while registration retries
 * every heartbeat interval.
 *
 * Without config.dataDir the data lives in ./data/kv-<configured port>; give a
 * dataDir when asking for port 0, or every such server shares ./data/kv-0.
 */
export async function startKvServer(config: Partial<KvConfig> = {}): Promise<RunningKvServer> {
  const given = withoutUndefined(config);
  const port = given.port ?? defaultKvConfig.port;
  const cfg: KvConfig = { ...defaultKvConfig, ...given, port, dataDir: given.dataDir ?? `./data/kv-${port}` };

  // Identity first: a data dir that belongs to another node must fail before
  // anything is opened or bound.
  const id = loadOrCreateNodeId(cfg.dataDir, cfg.nodeId);
  const storage = Storage.open(cfg.dataDir);
  const app = createHttpServer({
    logLevel: cfg.logLevel,
    bodyLimit: cfg.maxBodyBytes,
    component: 'kv',
    // The router rejects an undecodable path before any route runs; under
    // /internal/kv/ that path is a key.
    badUrlError: (badUrl) =>
      badUrl.startsWith(KV_PATH)
        ? new InvalidKey('key is not valid percent-encoded UTF-8', { raw: badUrl.slice(KV_PATH.length, 200) })
        : new InvalidRequest(`malformed URL: ${badUrl.slice(0, 200)}`),
  });
  registerReplicaApi(app, { storage, nodeId: id });

  try {
    await app.listen({ port: cfg.port, host: cfg.host });
  } catch (err) {
    await app.close().catch(() => {});
    await storage.close();
    throw err;
  }
  const boundPort = (app.server.address() as AddressInfo).port;
  const url = cfg.advertiseUrl ?? defaultAdvertiseUrl(cfg.host, boundPort);
  app.log.info({ id, url, dataDir: cfg.dataDir, keys: storage.count() }, 'kv server listening');

  const heartbeater = new Heartbeater({
    registryUrl: cfg.registryUrl,
    id,
    url,
    intervalMs: cfg.heartbeatIntervalMs,
    log: app.log,
  });
  heartbeater.start();

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      // Heartbeats stop first (the registry will mark this node down, not
      // remove it), then requests drain, each in-flight put finishing its
      // commit, and only then does storage close.
      await heartbeater.stop();
      await app.close();
      await storage.close();
      app.log.info({ id }, 'kv server stopped');
    })();
    return closing;
  };

  return { url, port: boundPort, id, close };
}

/** An explicit `undefined` in a partial config means "default", not "unset". */
function withoutUndefined<T extends object>(obj: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
