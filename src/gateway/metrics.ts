import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The gateway's Prometheus metrics, on a registry of its own so that several
 * gateways in one process (tests) do not collide.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly latency: Histogram<'route' | 'method' | 'status'>;
  readonly replicaRequests: Counter<'op' | 'outcome'>;
  readonly replicaErrors: Counter<'op' | 'node'>;
  readonly readRepairs: Counter<'outcome'>;
  readonly quorumFailures: Counter<'op'>;
  readonly hints: Counter<'outcome'>;
  readonly members: Gauge<'state'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'flexstore_gateway_' });
    this.requests = new Counter({
      name: 'flexstore_http_requests_total',
      help: 'HTTP requests served by the gateway, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: 'flexstore_http_request_duration_seconds',
      help: 'Gateway request latency, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    this.replicaRequests = new Counter({
      name: 'flexstore_replica_requests_total',
      help: 'Requests from this gateway to KV replicas, by operation and outcome (ok, error)',
      labelNames: ['op', 'outcome'],
      registers: [this.registry],
    });
    this.replicaErrors = new Counter({
      name: 'flexstore_replica_errors_total',
      help: 'Failed replica requests (unreachable, timeout, 5xx), by operation and node id',
      labelNames: ['op', 'node'],
      registers: [this.registry],
    });
    this.readRepairs = new Counter({
      name: 'flexstore_read_repairs_total',
      help: 'Stale replicas sent the newest version after a read, by outcome',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.quorumFailures = new Counter({
      name: 'flexstore_quorum_failures_total',
      help: 'Client requests that failed because too few replicas answered',
      labelNames: ['op'],
      registers: [this.registry],
    });
    this.hints = new Counter({
      name: 'flexstore_hints_total',
      help: 'Hints for replicas that missed a write, by outcome (stored on a holder, failed, dropped)',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.members = new Gauge({
      name: 'flexstore_members',
      help: 'KV servers in the gateway view, by state',
      labelNames: ['state'],
      registers: [this.registry],
    });
  }

  replicaResult(op: string, nodeId: string, ok: boolean): void {
    this.replicaRequests.inc({ op, outcome: ok ? 'ok' : 'error' });
    if (!ok) this.replicaErrors.inc({ op, node: nodeId });
  }
}
