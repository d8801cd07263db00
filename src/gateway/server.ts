import { randomBytes } from 'node:crypto';
import { InvalidKey, InvalidRequest } from '../cluster/errors.js';
import { HybridClock, offsetClock } from '../cluster/hlc.js';
import { createHttpServer } from '../cluster/http-server.js';
import { MembershipWatcher } from '../cluster/registry-client.js';
import type { MemberView, RunningServer } from '../cluster/types.js';
import { listenUrl } from '../cluster/listen-url.js';
import { loadClusterSecurity } from '../cluster/security.js';
import { watchSecretFile } from '../cluster/secret-reloader.js';
import { clockReport } from './clock-skew.js';
import { installClientAccess } from './access.js';
import { loadTokenStore, watchTokenFile } from './token-store.js';
import { httpScheme } from '../cluster/tls.js';
import { checkBind } from '../cluster/bind-guard.js';
import { defaultGatewayConfig, validateGatewayConfig, type GatewayConfig } from './config.js';
import { ClusterView } from './cluster-view.js';
import { Coordinator } from './coordinator.js';
import { HintBuffer } from './hint-buffer.js';
import { GatewayMetrics } from './metrics.js';
import { BurstCollector, InflightBudget, fullGc, installInflightLimit } from './inflight.js';
import { ReplicaRouter } from './replica-router.js';
import { registerRoutes } from './routes.js';

export interface RunningGateway extends RunningServer {
  id: string;
}

/**
 * Starts a gateway. It serves as soon as it listens: while the registry is
 * unreachable it keeps the last member view it had (or none, answering 503
 * until it gets one), and learns changes through a blocking watch.
 */
export async function startGateway(overrides: Partial<GatewayConfig> = {}): Promise<RunningGateway> {
  const config: GatewayConfig = { ...defaultGatewayConfig, ...overrides };
  validateGatewayConfig(config);
  const security = loadClusterSecurity(config);
  checkBind(config, security);
  const tokens = config.authTokensFile === undefined ? undefined : loadTokenStore(config.authTokensFile);
  const gatewayId = config.gatewayId ?? `gw-${randomBytes(4).toString('hex')}`;

  // The body limit is the value limit; a little room for the rest is not
  // needed because only /kv PUT bodies are read.
  const app = createHttpServer({
    logLevel: config.logLevel,
    bodyLimit: config.maxValueBytes,
    component: 'gateway',
    security,
    requestTimeoutMs: config.requestTimeoutMs,
    maxConnections: config.maxConnections,
    badUrlError: (url) =>
      url.startsWith('/kv/')
        ? new InvalidKey('key is not valid percent-encoded UTF-8')
        : new InvalidRequest(`malformed URL: ${url}`),
  });
  const view = new ClusterView(config.vnodes, config.replicationFactor);
  const metrics = new GatewayMetrics();
  const collector = new BurstCollector(fullGc());
  installInflightLimit(app, {
    budget: new InflightBudget(config.maxInflightBytes),
    collector,
    onChange: (bytes) => metrics.inflightBytes.set(bytes),
    onRefused: () => metrics.inflightRefused.inc(),
  });
  const transport = new ReplicaRouter({
    kind: config.replicaTransport,
    timeoutMs: config.replicaTimeoutMs,
    tcpPortOf: (url) => view.memberByUrl(url)?.tcpPort,
    security,
  });
  const now = offsetClock(config.clockOffsetMs);
  const clock = new HybridClock(gatewayId, now, { maxSkewMs: config.maxClockSkewMs });
  const hints = new HintBuffer({
    transport,
    onFlushed: (n, ok) => metrics.hints.inc({ outcome: ok ? 'stored' : 'failed' }, n),
    onDropped: (n) => metrics.hints.inc({ outcome: 'dropped' }, n),
  });
  const coordinator = new Coordinator(view, transport, clock, metrics, { hints, log: app.log });
  const watcher = new MembershipWatcher({ registryUrl: config.registryUrl, log: app.log, security, now });
  // The watcher's latest answer, not the ClusterView: offsets change without a view change.
  const clocks = () => clockReport(watcher.view, gatewayId, watcher.registryClockOffsetMs, config.maxClockSkewMs);
  installClientAccess(app, { tokens, metricsPublic: config.metricsPublic, maxKeyBytes: config.maxKeyBytes, registry: metrics.registry });
  registerRoutes(app, { config, gatewayId, view, coordinator, metrics, clocks });

  watcher.on('change', (v: MemberView) => {
    const before = view.index;
    view.update(v);
    app.log.info(
      { index: v.index, previous: before, members: v.members.map((m) => `${m.id}=${m.state}`) },
      'member view changed',
    );
  });
  await watcher.start();
  if (watcher.view) view.update(watcher.view);

  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    await watcher.stop();
    await transport.close();
    throw err;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const url = listenUrl(config.host, port, httpScheme(security));
  const secretReloader = watchSecretFile(security, { log: app.log });
  const tokenReloader = tokens && watchTokenFile(tokens, { log: app.log, registry: metrics.registry });
  app.log.info({ url, gatewayId, registryUrl: config.registryUrl, n: config.replicationFactor }, 'gateway listening');

  let closing: Promise<void> | undefined;
  return {
    id: gatewayId,
    url,
    port,
    close: () =>
      (closing ??= (async () => {
        secretReloader?.close();
        tokenReloader?.close();
        await watcher.stop();
        await app.close();
        collector.close();
        await hints.close();
        await transport.close();
      })()),
  };
}
