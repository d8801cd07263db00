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
  readonly versionsRefused: Counter<'path'>;
  readonly inflightBytes: Gauge;
  readonly inflightRefused: Counter;

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
    this.versionsRefused = new Counter({
      name: 'flexstore_versions_refused_total',
      help: 'Versions read from replicas that were more than MAX_CLOCK_SKEW ahead of this gateway\'s clock: answered, never adopted by its clock nor read-repaired',
      labelNames: ['path'],
      registers: [this.registry],
    });
    this.versionsRefused.inc({ path: 'read' }, 0);
    this.inflightBytes = new Gauge({
      name: 'flexstore_inflight_body_bytes',
      help: 'Bytes of request bodies the gateway holds reservations for (bounded by MAX_INFLIGHT_BYTES)',
      registers: [this.registry],
    });
    this.inflightRefused = new Counter({
      name: 'flexstore_inflight_refused_total',
      help: 'Requests refused with 503 OVERLOADED because their bodies would pass MAX_INFLIGHT_BYTES',
      registers: [this.registry],
    });
    this.members = new Gauge({
      name: 'flexstore_members',
      help: 'KV servers in the gateway view, by state (up, down; pending, joining, leaving; storage_full: refusing writes, serving reads)',
      labelNames: ['state'],
      registers: [this.registry],
    });
  }

  /**
   * prom-client hashes a label set on every inc/observe; on the hot path the
   * labelled children are looked up once per distinct set and reused. Label
   * sets are few (routes × methods × statuses, ops × outcomes), so the caches
   * stay small.
   */
  private readonly requestChildren = new Map<string, { count: { inc(): void }; latency: { observe(v: number): void } }>();
  private readonly replicaOk = new Map<string, { inc(): void }>();

  observeRequest(route: string, method: string, status: number, seconds: number): void {
    const id = `${route} ${method} ${status}`;
    let c = this.requestChildren.get(id);
    if (!c) {
      const labels = { route, method, status: String(status) };
      c = { count: this.requests.labels(labels), latency: this.latency.labels(labels) };
      this.requestChildren.set(id, c);
    }
    c.count.inc();
    c.latency.observe(seconds);
  }

  replicaResult(op: string, nodeId: string, ok: boolean): void {
    if (ok) {
      let c = this.replicaOk.get(op);
      if (!c) this.replicaOk.set(op, (c = this.replicaRequests.labels({ op, outcome: 'ok' })));
      c.inc();
      return;
    }
    this.replicaRequests.inc({ op, outcome: 'error' });
    this.replicaErrors.inc({ op, node: nodeId });
  }
}
