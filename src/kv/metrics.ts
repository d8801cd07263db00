import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { rejectOtherMethods } from '../cluster/http-server.js';
import { WRITE_SOURCES, type Storage } from './storage.js';
import { REFUSAL_REASONS } from '../cluster/cluster-auth.js';
import { REPLICA_CLOSE_REASONS } from './tcp-replica-server.js';

/**
 * A KV server's Prometheus metrics, on a registry of its own so that several
 * KV servers in one process (tests) do not collide. Served as text by
 * GET /metrics.
 *
 *   flexstore_kv_keys                         records held, tombstones included
 *   flexstore_sync_keys_streamed_total{direction="in|out"}
 *                                             records received / sent by anti-entropy,
 *                                             hint delivery and peers' pushes
 *   flexstore_sync_passes_total{outcome}      anti-entropy passes: complete, partial
 *                                             (some peer failed), aborted (stopped)
 *   flexstore_hints_stored_total              hints stored for other replicas
 *   flexstore_hints_delivered_total           hinted keys delivered to their target
 *   flexstore_hints_pending                   hints held now
 *   flexstore_hint_delivery_rounds_total      rounds of the hint-delivery loop completed
 *   flexstore_tombstones_purged_total         tombstones removed after the grace period
 *   flexstore_versions_refused_total{path}    records refused because their version was more
 *                                             than MAX_CLOCK_SKEW ahead of this server's clock,
 *                                             by path: replica_http, replica_tcp (gateway writes
 *                                             and read repair), sync_apply (peers' pushes and
 *                                             hints), sync_pull, sync_stream (records this
 *                                             server took from peers)
 *   flexstore_storage_full                    1 while the storage cannot commit (disk full, I/O
 *                                             error, LMDB map full) and writes are refused; else 0
 *   flexstore_storage_writes_refused_total{path}
 *                                             writes refused with 507 STORAGE_FULL, by path: the
 *                                             paths above, hints and purge (tombstone purge)
 *   flexstore_auth_refused_total{reason}      internal requests and replica connections refused
 *                                             for their credential (cluster-auth.ts REFUSAL_REASONS)
 *   flexstore_replica_connections_closed_total{reason}
 *                                             replica-port connections the server closed:
 *                                             frame_timeout, handshake_timeout, protocol_error,
 *                                             max_connections (refused at accept)
 *   flexstore_replica_connections             replica-port connections open, handshaking ones included
 *   flexstore_replica_inflight_bytes          bytes of partly received frames held (MAX_INFLIGHT_BYTES bounds it)
 *   flexstore_kv_process_*, flexstore_kv_nodejs_*   Node process metrics
 *
 * The gauges read storage (and its health) and the replica port when scraped, so they cost nothing between scrapes.
 */
export class KvMetrics {
  readonly registry = new Registry();
  readonly keysStreamed: Counter<'direction'>;
  readonly passes: Counter<'outcome'>;
  readonly hintsStored: Counter;
  readonly hintsDelivered: Counter;
  readonly hintRounds: Counter;
  readonly tombstonesPurged: Counter;
  readonly versionsRefused: Counter<'path'>;
  readonly storageRefused: Counter<'path'>;
  readonly authRefused: Counter<'reason'>;
  readonly secretReloads: Counter<'outcome'>;
  readonly replicaConnectionsClosed: Counter<'reason'>;
  /** The replica port, once it listens: read by its gauges (0 before). */
  replicaPort: { connections(): number; inflightBytes(): number } | undefined;

  constructor(storage: Storage) {
    collectDefaultMetrics({ register: this.registry, prefix: 'flexstore_kv_' });
    const registers = [this.registry];
    new Gauge({
      name: 'flexstore_kv_keys',
      help: 'Records this KV server holds, tombstones included',
      registers,
      collect() {
        this.set(storage.count());
      },
    });
    new Gauge({
      name: 'flexstore_hints_pending',
      help: 'Hints held for other replicas, not yet delivered',
      registers,
      collect() {
        this.set(storage.hints.count());
      },
    });
    this.keysStreamed = new Counter({
      name: 'flexstore_sync_keys_streamed_total',
      help: 'Records moved by anti-entropy, hint delivery and peer pushes, by direction (in: received, out: sent)',
      labelNames: ['direction'],
      registers,
    });
    this.passes = new Counter({
      name: 'flexstore_sync_passes_total',
      help: 'Anti-entropy passes, by outcome (complete, partial, aborted)',
      labelNames: ['outcome'],
      registers,
    });
    this.hintsStored = new Counter({
      name: 'flexstore_hints_stored_total',
      help: 'Hints stored for replicas that missed a write',
      registers,
    });
    this.hintsDelivered = new Counter({
      name: 'flexstore_hints_delivered_total',
      help: 'Hinted keys delivered to their target replica',
      registers,
    });
    this.hintRounds = new Counter({
      name: 'flexstore_hint_delivery_rounds_total',
      help: 'Rounds of the hint-delivery loop completed (each looks at every target with hints)',
      registers,
    });
    this.tombstonesPurged = new Counter({
      name: 'flexstore_tombstones_purged_total',
      help: 'Tombstones removed once older than the cluster tombstone grace',
      registers,
    });
    this.versionsRefused = new Counter({
      name: 'flexstore_versions_refused_total',
      help: 'Records refused because their version was more than MAX_CLOCK_SKEW ahead of this server\'s clock, by path',
      labelNames: ['path'],
      registers,
    });
    for (const path of WRITE_SOURCES) this.versionsRefused.inc({ path }, 0);
    new Gauge({
      name: 'flexstore_storage_full',
      help: 'Whether the storage cannot commit (disk full, I/O error, LMDB map full): 1 while writes are refused with STORAGE_FULL',
      registers,
      collect() {
        this.set(storage.health.state === 'full' ? 1 : 0);
      },
    });
    this.storageRefused = new Counter({
      name: 'flexstore_storage_writes_refused_total',
      help: 'Writes refused with 507 STORAGE_FULL because the storage could not commit, by path',
      labelNames: ['path'],
      registers,
    });
    for (const path of [...WRITE_SOURCES, 'hints', 'purge']) this.storageRefused.inc({ path }, 0);
    this.authRefused = new Counter({
      name: 'flexstore_auth_refused_total',
      help: 'Internal requests and replica connections refused for a missing or bad cluster credential, by reason',
      labelNames: ['reason'],
      registers,
    });
    // Start every labelled series at 0 so rate() works from the first scrape.
    for (const reason of REFUSAL_REASONS) this.authRefused.inc({ reason }, 0);
    this.secretReloads = new Counter({
      name: 'flexstore_secret_reloads_total',
      help: 'Reloads of the cluster secret file after it changed, by outcome (failed: the previous secrets stayed in force)',
      labelNames: ['outcome'],
      registers,
    });
    for (const outcome of ['ok', 'failed']) this.secretReloads.inc({ outcome }, 0);
    this.replicaConnectionsClosed = new Counter({
      name: 'flexstore_replica_connections_closed_total',
      help: 'Replica-port connections closed by this server, by reason (frame_timeout, handshake_timeout, protocol_error, max_connections)',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of REPLICA_CLOSE_REASONS) this.replicaConnectionsClosed.inc({ reason }, 0);
    const port = () => this.replicaPort;
    new Gauge({
      name: 'flexstore_replica_connections',
      help: 'Replica-port connections open, handshaking ones included',
      registers,
      collect() {
        this.set(port()?.connections() ?? 0);
      },
    });
    new Gauge({
      name: 'flexstore_replica_inflight_bytes',
      help: 'Bytes of partly received replica-protocol frames held across all connections',
      registers,
      collect() {
        this.set(port()?.inflightBytes() ?? 0);
      },
    });
    for (const direction of ['in', 'out']) this.keysStreamed.inc({ direction }, 0);
    for (const outcome of ['complete', 'partial', 'aborted']) this.passes.inc({ outcome }, 0);
  }

  streamed(direction: 'in' | 'out', n: number): void {
    if (n > 0) this.keysStreamed.inc({ direction }, n);
  }
}

/** GET /metrics: the Prometheus text exposition of metrics.registry. */
export function registerMetricsRoute(app: FastifyInstance, metrics: KvMetrics): void {
  app.get('/metrics', async (_req, reply) => {
    const text = await metrics.registry.metrics();
    return reply.code(200).header('content-type', metrics.registry.contentType).send(text);
  });
  rejectOtherMethods(app, '/metrics', ['GET']);
}
