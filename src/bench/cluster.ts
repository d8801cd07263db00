import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Consistency } from '../cluster/types.js';
import type { SyncMode } from '../kv/storage.js';
import { isUpAndActive, setProbeTls, waitHealthy } from '../test/support/probe.js';
import { FlexProcess, freePort } from '../test/support/process.js';
import { BENCH_WAIT, fetchJson, waitUntil } from './child.js';

export interface BenchClusterOptions {
  kvCount: number;
  replicationFactor: number;
  consistency: Consistency;
  /** The KV servers' --sync. */
  sync: SyncMode;
  /** TLS on every link with the ca.crt/server.crt/server.key of `flexstore certs` in this dir. */
  tlsDir?: string;
}

/**
 * A FlexStore cluster of separate processes on loopback, started through the
 * CLI exactly as an operator would: one registry, `kvCount` KV servers and
 * one gateway, with data in a temp dir that stop() removes.
 *
 * Heartbeat and down-after intervals are the production defaults: under full
 * load on a small machine a shorter down-after would mark busy servers down
 * and measure failover instead of steady state.
 *
 * Built on the test suite's process launcher (FlexProcess), but stopped
 * gracefully (SIGTERM) rather than killed, so a profiled process writes its
 * profile.
 */
export class BenchCluster {
  registryPort = 0;
  gatewayPort = 0;
  registry!: FlexProcess;
  gateway!: FlexProcess;
  readonly kvs: Array<{ port: number; dataDir: string; proc: FlexProcess }> = [];

  private constructor(
    readonly dir: string,
    readonly opts: BenchClusterOptions,
  ) {}

  static async start(opts: BenchClusterOptions): Promise<BenchCluster> {
    const dir = await mkdtemp(path.join(tmpdir(), 'flexstore-bench-'));
    const c = new BenchCluster(dir, opts);
    if (opts.tlsDir) {
      // The set-up probes (health, cluster view) trust the CA; the load generator does not verify (autocannon), which costs nothing it would measure.
      const read = (f: string) => readFileSync(path.join(opts.tlsDir!, f));
      setProbeTls({ ca: read('ca.crt'), cert: read('server.crt'), key: read('server.key') });
    }
    try {
      c.registryPort = await freePort();
      c.registry = new FlexProcess('registry', [
        'registry',
        '--port', String(c.registryPort),
        '--host', '127.0.0.1',
        '--data-dir', path.join(dir, 'registry'),
        '--replication-factor', String(opts.replicationFactor),
        '--log-level', 'warn',
        ...c.tlsArgs,
      ]);
      await waitHealthy(c.registry, `${c.registryUrl}/health`, BENCH_WAIT);
      for (let i = 0; i < opts.kvCount; i++) await c.addKv();
      c.gatewayPort = await freePort();
      await c.startGateway();
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  /**
   * Starts one more KV server and waits until it answers (not until it has
   * joined: a caller timing the join watches that itself).
   */
  async addKv(logLevel = 'warn'): Promise<{ port: number; dataDir: string; proc: FlexProcess }> {
    const i = this.kvs.length;
    const port = await freePort();
    const dataDir = path.join(this.dir, `kv-${i}`);
    const proc = new FlexProcess(`kv${i}`, [
      'kv',
      '--port', String(port),
      '--host', '127.0.0.1',
      '--registry-url', this.registryUrl,
      '--data-dir', dataDir,
      '--replication-factor', String(this.opts.replicationFactor),
      '--sync', this.opts.sync,
      '--log-level', logLevel,
      ...this.tlsArgs,
    ], { LOG_LEVEL: logLevel }, ['--expose-gc']); // --expose-gc: the scale run reads the live heap (/health-check?gc=1)
    const kv = { port, dataDir, proc };
    this.kvs.push(kv);
    await waitHealthy(proc, `${this.scheme}://127.0.0.1:${port}/health-check`, BENCH_WAIT);
    return kv;
  }

  get scheme(): 'http' | 'https' {
    return this.opts.tlsDir ? 'https' : 'http';
  }

  get tlsArgs(): string[] {
    const d = this.opts.tlsDir;
    return d ? ['--tls-cert', path.join(d, 'server.crt'), '--tls-key', path.join(d, 'server.key'), '--tls-ca', path.join(d, 'ca.crt')] : [];
  }

  get registryUrl(): string {
    return `${this.scheme}://127.0.0.1:${this.registryPort}`;
  }

  get gatewayUrl(): string {
    return `${this.scheme}://127.0.0.1:${this.gatewayPort}`;
  }

  kvUrl(i: number): string {
    return `${this.scheme}://127.0.0.1:${this.kvs[i]!.port}`;
  }

  /**
   * (Re)starts the gateway on its port. The gateway holds no data, so a
   * restart between preload and measurement is invisible to the results;
   * it lets a profiled gateway see only the measured traffic.
   */
  async startGateway(nodeFlags: string[] = []): Promise<void> {
    if (this.gateway?.running) await this.gateway.stop();
    this.gateway = new FlexProcess(
      'gateway',
      [
        'gateway',
        '--port', String(this.gatewayPort),
        '--host', '127.0.0.1',
        '--registry-url', this.registryUrl,
        '--replication-factor', String(this.opts.replicationFactor),
        '--consistency', this.opts.consistency,
        '--log-level', 'warn',
        ...this.tlsArgs,
      ],
      {},
      nodeFlags,
    );
    await waitHealthy(this.gateway, `${this.gatewayUrl}/cluster`, BENCH_WAIT);
    // Up and active: measuring while a member still joins would time its range pull too.
    await waitUntil(`${this.opts.kvCount} KV servers up and active at the gateway`, async () => {
      const res = await fetchJson('GET', `${this.gatewayUrl}/cluster`);
      const members = (res.json?.members ?? []) as Array<{ state: string; phase?: string }>;
      return members.filter(isUpAndActive).length === this.opts.kvCount;
    });
  }

  /** Graceful stop, so a gateway started with --cpu-prof writes its profile. */
  async stopGateway(): Promise<void> {
    await this.gateway?.stop(10_000);
  }

  kvPids(): number[] {
    return this.kvs.map((k) => k.proc.pid);
  }

  async stop(): Promise<void> {
    const procs = [this.gateway, ...this.kvs.map((k) => k.proc), this.registry].filter(Boolean);
    await Promise.all(procs.map((p) => p.stop(3000)));
    await rm(this.dir, { recursive: true, force: true });
  }

  logs(): string {
    const procs = [this.registry, ...this.kvs.map((k) => k.proc), this.gateway].filter(Boolean);
    return procs.map((p) => `--- ${p.name}\n${p.logs()}`).join('\n');
  }
}
