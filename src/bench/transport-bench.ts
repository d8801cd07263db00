import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { HybridClock } from '../cluster/hlc.js';
import { HttpReplicaTransport } from '../cluster/http-transport.js';
import { TcpReplicaTransport } from '../cluster/tcp-transport.js';
import type { ReplicaTransport } from '../cluster/transport.js';
import type { ReplicaRecord } from '../cluster/types.js';
import { startKvServer } from '../kv/server.js';
import { Storage } from '../kv/storage.js';
import { startTcpReplicaServer } from '../kv/tcp-replica-server.js';

/**
 * Replica transport micro-benchmark: the gateway's side of a replica call, HTTP
 * against the framed TCP protocol, with no gateway or quorum logic around it.
 * Each protocol's KV server (storage + server) runs alone in a child process;
 * the client runs here and keeps a fixed number of calls in flight.
 *
 *   node dist/bench/transport-bench.js [--duration 5] [--inflight 32,256]
 *                                      [--connections 2] [--keys 10000]
 *
 * `--connections` takes a list to compare TCP connection counts; HTTP always
 * uses HttpReplicaTransport's default pool.
 */

const VALUE = Buffer.alloc(100, 'v');
const NODE_URL_TCP = 'http://127.0.0.1:1';

interface Result {
  protocol: string;
  op: 'GET' | 'PUT';
  inflight: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU time per operation, microseconds, of the client and of the server process. */
  clientCpuUs: number;
  serverCpuUs: number;
}

async function serve(kind: string, dataDir: string): Promise<void> {
  if (kind === 'http') {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const kv = await startKvServer({
      port: 0,
      host: '127.0.0.1',
      dataDir,
      registryUrl: `http://127.0.0.1:${closedPort}`,
      heartbeatIntervalMs: 600_000,
      logLevel: 'silent',
    });
    console.log(JSON.stringify({ url: kv.url }));
    process.once('SIGTERM', () => void kv.close().then(() => process.exit(0)));
  } else {
    const storage = Storage.open(dataDir);
    const srv = await startTcpReplicaServer({ storage, host: '127.0.0.1', port: 0 });
    console.log(JSON.stringify({ port: srv.port }));
    process.once('SIGTERM', () => void srv.close().then(() => storage.close()).then(() => process.exit(0)));
  }
}

/** Starts `--serve kind` in a child process and resolves with the JSON line it prints. */
async function startChild(kind: string, dataDir: string): Promise<{ child: ChildProcess; info: { url?: string; port?: number } }> {
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [self, '--serve', kind, '--data', dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl !== -1) resolve(buf.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
  return { child, info: JSON.parse(line) as { url?: string; port?: number } };
}

/**
 * CPU seconds a process has used, from /proc (Linux); NaN elsewhere. Under a
 * busy machine throughput swings with what else runs, CPU per operation much less.
 */
function processCpuSec(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, fields 14 and 15 of stat, in clock ticks (USER_HZ, 100 on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** Keeps `inflight` calls running for durationMs; latencies in ms. */
async function drive(inflight: number, durationMs: number, call: (i: number) => Promise<unknown>, serverPid = 0) {
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  const server0 = processCpuSec(serverPid);
  let errors = 0;
  let n = 0;
  const end = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await call(n++);
          latencies.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const clientCpuUs = (cpu.user + cpu.system) / latencies.length;
  const serverCpuUs = ((processCpuSec(serverPid) - server0) * 1e6) / latencies.length;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return { opsPerSec: latencies.length / elapsed, p50: pct(0.5), p99: pct(0.99), errors, clientCpuUs, serverCpuUs };
}

async function measure(
  protocol: string,
  transport: ReplicaTransport,
  nodeUrl: string,
  serverPid: number,
  opts: { durationMs: number; inflight: number[]; keys: number },
): Promise<Result[]> {
  const clock = new HybridClock('bench');
  const rec = (): ReplicaRecord => ({ value: VALUE, version: clock.next(), tombstone: false, contentType: 'application/octet-stream' });
  const key = (i: number) => `bench/key-${i % opts.keys}`;
  const results: Result[] = [];
  // Load the keys the GETs read, and warm connections and JIT.
  for (let i = 0; i < opts.keys; i += 256) {
    await Promise.all(Array.from({ length: Math.min(256, opts.keys - i) }, (_, j) => transport.put(nodeUrl, key(i + j), rec())));
  }
  await drive(64, 500, (i) => transport.get(nodeUrl, key(i)));
  for (const inflight of opts.inflight) {
    for (const op of ['GET', 'PUT'] as const) {
      const call = op === 'GET' ? (i: number) => transport.get(nodeUrl, key(i * 7919)) : (i: number) => transport.put(nodeUrl, key(i * 7919), rec());
      const r = await drive(inflight, opts.durationMs, call, serverPid);
      results.push({ protocol, op, inflight, ...r });
      process.stderr.write(`${protocol} ${op} inflight=${inflight}: ${Math.round(r.opsPerSec)} ops/s\n`);
    }
  }
  return results;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      data: { type: 'string' },
      duration: { type: 'string', default: '5' },
      inflight: { type: 'string', default: '32,256' },
      connections: { type: 'string', default: '2' },
      keys: { type: 'string', default: '10000' },
    },
  });
  if (values.serve) return serve(values.serve, values.data!);

  const list = (s: string) => s.split(',').map((x) => Number(x.trim()));
  const opts = { durationMs: Number(values.duration) * 1000, inflight: list(values.inflight), keys: Number(values.keys) };
  const dirs = [mkdtempSync(join(tmpdir(), 'flexstore-bench-http-')), mkdtempSync(join(tmpdir(), 'flexstore-bench-tcp-'))];
  const children: ChildProcess[] = [];
  const results: Result[] = [];
  try {
    const http = await startChild('http', dirs[0]!);
    children.push(http.child);
    const httpTransport = new HttpReplicaTransport({ timeoutMs: 10_000 });
    results.push(...(await measure('http', httpTransport, http.info.url!, http.child.pid!, opts)));
    await httpTransport.close();

    const tcp = await startChild('tcp', dirs[1]!);
    children.push(tcp.child);
    for (const connections of list(values.connections)) {
      const t = new TcpReplicaTransport({ timeoutMs: 10_000, connections, resolvePort: () => tcp.info.port });
      results.push(...(await measure(`tcp×${connections}`, t, NODE_URL_TCP, tcp.child.pid!, opts)));
      await t.close();
    }
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => new Promise((resolve) => (c.exitCode !== null ? resolve(null) : c.once('exit', resolve)))));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }

  const fmt = (n: number, w: number, d = 0) => n.toFixed(d).padStart(w);
  console.log(`\n100-byte values, ${values.duration} s per row, client and server in separate processes\n`);
  console.log('protocol  op   inflight    ops/s   p50 ms   p99 ms  errors  vs http  client µs/op  server µs/op');
  for (const r of results) {
    const base = results.find((h) => h.protocol === 'http' && h.op === r.op && h.inflight === r.inflight);
    const ratio = base ? `${(r.opsPerSec / base.opsPerSec).toFixed(2)}×` : '';
    console.log(
      `${r.protocol.padEnd(9)} ${r.op}  ${fmt(r.inflight, 8)} ${fmt(r.opsPerSec, 8)} ${fmt(r.p50, 8, 2)} ${fmt(r.p99, 8, 2)} ${fmt(r.errors, 7)} ${ratio.padStart(8)} ${fmt(r.clientCpuUs, 13, 1)} ${fmt(r.serverCpuUs, 13, 1)}`,
    );
  }
}

await main();
