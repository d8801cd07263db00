import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createCerts } from '../../cli/certs-command.js';
import { http, isUpAndActive, setProbeSecret, setProbeTls, waitHealthy, type HttpResult, type ProbeTls } from './probe.js';
import { FlexProcess, freePort, waitFor } from './process.js';

export interface ClusterOptions {
  kvCount?: number;
  replicationFactor?: number;
  gateways?: number;
  /** Registry marks a member down after this long without a heartbeat. */
  downAfterMs?: number;
  heartbeatMs?: number;
  extraGatewayArgs?: string[];
  /** Extra flags for the registry (e.g. --tombstone-grace 3s). */
  registryArgs?: string[];
  /** Extra flags for every KV server (e.g. --anti-entropy-ms 1000). */
  kvArgs?: string[];
  /** How each of the first KV servers starts (by index), e.g. one with a data dir of its own; the rest as addKv() does. */
  kvOptions?: KvOptions[];
  /**
   * TLS on every process: the ca.crt/server.crt/server.key of `flexstore
   * certs` in dir; URLs become https://, and http() probes trust the CA and
   * present the pair (setProbeTls). clientAuth 'require': mutual TLS.
   */
  tls?: { dir: string; clientAuth?: 'require' } | null;
  /**
   * Cluster secret ("new,old" during a rotation) given to every process with
   * --cluster-secret; '' (the default) runs an open cluster. Read whenever a
   * process starts, so a test may change it between restarts.
   */
  secret?: string;
  /**
   * true: each process gets the secret in a file of its own (its
   * --cluster-secret-file, <dir>/secrets/<process name>, written from
   * `secret` when the process first starts), which rewriteSecret changes
   * while it runs.
   */
  secretFile?: boolean;
}

/** How one KV server is started; kept in its slot so a restart reuses it. */
export interface KvOptions {
  /** Port to listen on; a free one when absent. */
  port?: number;
  /** URL the server registers under, e.g. a fault proxy in front of it. */
  advertiseUrl?: string;
  /** Registry URL this server heartbeats to, e.g. through a fault proxy. */
  registryUrl?: string;
  /** Port of its binary replica protocol; a free one when absent. */
  tcpPort?: number;
  /** Replica-protocol port it registers, e.g. a fault proxy's in front of tcpPort. */
  advertiseTcpPort?: number;
  /** Flags for this server alone, after the cluster's kvArgs (the later of a repeated flag wins); kept for restarts. */
  args?: string[];
}

interface KvSlot {
  port: number;
  dataDir: string;
  proc: FlexProcess;
  options: KvOptions;
}

/**
 * A real cluster of separate processes on free loopback ports: one registry,
 * KV servers and gateways, each started through the CLI. Every process it
 * starts is stopped by stop(); the data lives in a temp dir removed there too.
 */
export class TestCluster {
  registryPort = 0;
  registry!: FlexProcess;
  readonly kvs: KvSlot[] = [];
  readonly gateways: Array<{ port: number; proc: FlexProcess; args: string[] }> = [];

  private constructor(
    readonly dir: string,
    readonly opts: Required<ClusterOptions>,
  ) {}

  static async start(options: ClusterOptions = {}): Promise<TestCluster> {
    const opts: Required<ClusterOptions> = {
      kvCount: 3,
      replicationFactor: 3,
      gateways: 1,
      downAfterMs: 1000,
      heartbeatMs: 200,
      extraGatewayArgs: [],
      registryArgs: [],
      kvArgs: [],
      kvOptions: [],
      tls: null,
      secret: '',
      secretFile: false,
      ...options,
    };
    // FLEXSTORE_TEST_TLS=1 runs every cluster that does not say otherwise over TLS, so a whole suite
    // (api, faults) can be run over TLS as it is.
    if (options.tls === undefined && process.env.FLEXSTORE_TEST_TLS === '1') opts.tls = { dir: await sharedCerts() };
    if (opts.tls) setProbeTls(tlsProbe(opts.tls.dir));
    // FLEXSTORE_TEST_SECRET=<secret> closes every cluster that names no secret, and signs the
    // suite's own probes of member paths, so a suite written for an open cluster runs closed.
    if (options.secret === undefined && process.env.FLEXSTORE_TEST_SECRET) {
      opts.secret = process.env.FLEXSTORE_TEST_SECRET;
      setProbeSecret(opts.secret);
    }
    const dir = await mkdtemp(path.join(tmpdir(), 'flexstore-test-'));
    const c = new TestCluster(dir, opts);
    try {
      c.registryPort = await freePort();
      await c.startRegistry();
      // Started side by side: one after another, process start-up alone was a
      // good part of the suite's time. Slots are made first so kv<i> is always
      // the i-th KV server and gets kvOptions[i].
      for (let i = 0; i < opts.kvCount; i++) await c.addKvSlot(opts.kvOptions[i]);
      await Promise.all(c.kvs.map((_, i) => c.startKv(i)));
      for (let i = 0; i < opts.gateways; i++) c.gateways.push({ port: await freePort(), proc: undefined as never, args: [] });
      await Promise.all(c.gateways.map((_, i) => c.startGateway(i)));
      await c.waitForUp(opts.kvCount);
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  /** http or https, as every process of this cluster serves. */
  get scheme(): 'http' | 'https' {
    return this.opts.tls ? 'https' : 'http';
  }

  get registryUrl(): string {
    return `${this.scheme}://127.0.0.1:${this.registryPort}`;
  }

  get gatewayUrl(): string {
    return `${this.scheme}://127.0.0.1:${this.gateways[0]!.port}`;
  }

  kvUrl(i: number): string {
    return `${this.scheme}://127.0.0.1:${this.kvs[i]!.port}`;
  }

  /** FlexStoreClient options that trust this cluster (its CA and pair); none without TLS. */
  get clientTls(): ProbeTls {
    return this.opts.tls ? tlsProbe(this.opts.tls.dir) : {};
  }

  /** --tls-cert, --tls-key, --tls-ca (and --tls-client-auth) for every process; none without TLS. */
  get tlsArgs(): string[] {
    const t = this.opts.tls;
    if (!t) return [];
    return [
      '--tls-cert', path.join(t.dir, 'server.crt'),
      '--tls-key', path.join(t.dir, 'server.key'),
      '--tls-ca', path.join(t.dir, 'ca.crt'),
      ...(t.clientAuth ? ['--tls-client-auth', t.clientAuth] : []),
    ];
  }

  /** The URL the registry and gateways know the KV server by (its advertise URL). */
  memberUrl(i: number): string {
    return this.kvs[i]!.options.advertiseUrl ?? this.kvUrl(i);
  }

  async startRegistry(): Promise<void> {
    this.registry = new FlexProcess('registry', [
      'registry',
      '--port', String(this.registryPort),
      '--host', '127.0.0.1',
      '--data-dir', path.join(this.dir, 'registry'),
      '--down-after-ms', String(this.opts.downAfterMs),
      '--replication-factor', String(this.opts.replicationFactor),
      ...this.tlsArgs,
      ...this.secretArgs('registry'),
      ...this.opts.registryArgs,
    ]);
    await waitHealthy(this.registry, `${this.registryUrl}/health`);
  }

  async addKv(options: KvOptions = {}): Promise<number> {
    const i = await this.addKvSlot(options);
    await this.startKv(i);
    return i;
  }

  /** A KV slot (port, data dir) not started yet; its index. */
  private async addKvSlot(options: KvOptions = {}): Promise<number> {
    const port = options.port ?? (await freePort());
    this.kvs.push({ port, dataDir: path.join(this.dir, `kv-${port}`), proc: undefined as never, options });
    return this.kvs.length - 1;
  }

  async startKv(i: number): Promise<void> {
    const slot = this.kvs[i]!;
    slot.proc = new FlexProcess(`kv${i}`, [
      'kv',
      '--port', String(slot.port),
      '--host', '127.0.0.1',
      '--registry-url', slot.options.registryUrl ?? this.registryUrl,
      '--data-dir', slot.dataDir,
      '--heartbeat-ms', String(this.opts.heartbeatMs),
      '--replication-factor', String(this.opts.replicationFactor),
      ...this.tlsArgs,
      ...this.secretArgs(`kv${i}`),
      ...this.opts.kvArgs,
      ...(slot.options.advertiseUrl ? ['--advertise-url', slot.options.advertiseUrl] : []),
      ...(slot.options.tcpPort ? ['--tcp-port', String(slot.options.tcpPort)] : []),
      ...(slot.options.advertiseTcpPort ? ['--advertise-tcp-port', String(slot.options.advertiseTcpPort)] : []),
      ...(slot.options.args ?? []),
    ]);
    await waitHealthy(slot.proc, `${this.kvUrl(i)}/health-check`);
  }

  async addGateway(extraArgs: string[] = []): Promise<string> {
    const port = await freePort();
    this.gateways.push({ port, proc: undefined as never, args: extraArgs });
    return this.startGateway(this.gateways.length - 1);
  }

  /** Starts gateway i (again) on its port; resolves with its URL once it answers. */
  async startGateway(i: number): Promise<string> {
    const g = this.gateways[i]!;
    g.proc = new FlexProcess(`gateway${i}`, [
      'gateway',
      '--port', String(g.port),
      '--host', '127.0.0.1',
      '--registry-url', this.registryUrl,
      '--replication-factor', String(this.opts.replicationFactor),
      ...this.tlsArgs,
      ...this.secretArgs(`gateway${i}`),
      ...this.opts.extraGatewayArgs,
      ...g.args,
    ]);
    const url = `${this.scheme}://127.0.0.1:${g.port}`;
    await waitHealthy(g.proc, `${url}/cluster`);
    return url;
  }

  private secretArgs(name: string): string[] {
    if (this.opts.secret === '') return [];
    if (!this.opts.secretFile) return ['--cluster-secret', this.opts.secret];
    const file = this.secretFileOf(name);
    mkdirSync(path.dirname(file), { recursive: true });
    // A restart keeps what rewriteSecret last put there.
    try {
      readFileSync(file);
    } catch {
      writeFileSync(file, `${this.opts.secret.split(',').join('\n')}\n`, { mode: 0o600 });
    }
    return ['--cluster-secret-file', file];
  }

  /** The secret file of a process ('registry', 'kv0', 'gateway1', ...) under secretFile: true. */
  secretFileOf(name: string): string {
    return path.join(this.dir, 'secrets', name);
  }

  /** Every process of the cluster by name: registry, kv<i>, gateway<i>. */
  processNames(): string[] {
    return ['registry', ...this.kvs.map((_, i) => `kv${i}`), ...this.gateways.map((_, i) => `gateway${i}`)];
  }

  /** The process called name (see processNames). */
  process(name: string): FlexProcess {
    if (name === 'registry') return this.registry;
    const m = /^(kv|gateway)(\d+)$/.exec(name);
    const p = m && (m[1] === 'kv' ? this.kvs[Number(m[2])]?.proc : this.gateways[Number(m[2])]?.proc);
    if (!p) throw new Error(`no process ${name}`);
    return p;
  }

  /**
   * Replaces the secret file of process name with content (one secret per
   * line, as given) by a rename, as an operator's `mv` would; the process
   * reloads it within about a second.
   */
  rewriteSecret(name: string, content: string): void {
    const file = this.secretFileOf(name);
    writeFileSync(`${file}.tmp`, content, { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  /** Waits until the gateway(s) see `count` members up and active (no join or leave in progress). */
  async waitForUp(count: number, gatewayUrl?: string): Promise<void> {
    const urls = gatewayUrl ? [gatewayUrl] : this.gateways.map((g) => `${this.scheme}://127.0.0.1:${g.port}`);
    for (const url of urls) {
      await waitFor(`${count} members up and active at ${url}`, async () => {
        const res = await http('GET', `${url}/cluster`);
        const members: Array<{ state: string; phase?: string }> = res.json?.members ?? [];
        const up = members.filter(isUpAndActive).length;
        return up === count && members.length === count;
      });
    }
  }

  /** Waits until the registry reports the KV server as `state`. */
  async waitForState(i: number, state: 'up' | 'down'): Promise<void> {
    const url = this.memberUrl(i);
    await waitFor(`${url} ${state} in the registry`, async () => {
      const res = await http('GET', `${this.registryUrl}/nodes`);
      return res.json?.members?.some((m: { url: string; state: string }) => m.url === url && m.state === state);
    });
  }

  async killKv(i: number): Promise<void> {
    await this.kvs[i]!.proc.kill();
  }

  /** SIGSTOP: the process keeps its sockets open but answers nothing. */
  pauseKv(i: number): void {
    this.kvs[i]!.proc.signal('SIGSTOP');
  }

  resumeKv(i: number): void {
    this.kvs[i]!.proc.signal('SIGCONT');
  }

  /** kill -9 of the registry and, after `downMs`, a new one on the same port and data dir. */
  async restartRegistry(downMs = 0): Promise<void> {
    await this.registry.kill();
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.startRegistry();
  }

  /** Asks the registry to remove the KV server from the ring (DELETE /deregister). */
  async decommission(i: number): Promise<HttpResult> {
    return http('DELETE', `${this.registryUrl}/deregister`, {
      body: JSON.stringify({ node_url: this.memberUrl(i) }),
      headers: { 'content-type': 'application/json' },
    });
  }

  async stop(): Promise<void> {
    const procs = [...this.gateways.map((g) => g.proc), ...this.kvs.map((k) => k.proc), this.registry];
    await Promise.all(procs.filter(Boolean).map((p) => p.kill()));
    await rm(this.dir, { recursive: true, force: true });
  }

  logs(): string {
    const procs = [this.registry, ...this.kvs.map((k) => k.proc), ...this.gateways.map((g) => g.proc)];
    return procs.filter(Boolean).map((p) => `--- ${p.name}\n${p.logs()}`).join('\n');
  }
}

/**
 * A starter of process clusters, every one stopped when the tests around
 * the call end (the suite, or the file at top level): a test that fails
 * half-way still leaves no servers behind.
 */
export function testClusters(): (options?: ClusterOptions) => Promise<TestCluster> {
  const clusters: TestCluster[] = [];
  after(async () => {
    await Promise.all(clusters.map((c) => c.stop()));
  });
  return async (options) => {
    const c = await TestCluster.start(options);
    clusters.push(c);
    return c;
  };
}

let shared: Promise<string> | undefined;

/** One certificate dir per test process (FLEXSTORE_TEST_TLS, TLS cases of a suite), removed at exit. */
export function sharedCerts(): Promise<string> {
  shared ??= (async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'flexstore-test-certs-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    await createCerts({ out: dir, hosts: [] });
    return dir;
  })();
  return shared;
}

/** What a probe of a TLS cluster made by `flexstore certs` in dir trusts and presents. */
export function tlsProbe(dir: string): ProbeTls {
  return {
    ca: readFileSync(path.join(dir, 'ca.crt')),
    cert: readFileSync(path.join(dir, 'server.crt')),
    key: readFileSync(path.join(dir, 'server.key')),
  };
}
