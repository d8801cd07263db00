import { readFileSync, realpathSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { BenchCluster } from './cluster.js';

/**
 * `npm run bench:registry-flood`: the registry under a flood of bad
 * registrations (issue: "A registry that stays responsive").
 *
 * Starts a registry, 3 KV servers and a gateway on loopback (production
 * heartbeat and down-after settings), then for `--seconds` (20) a worker
 * thread sends `--rate` (2,000) bad registrations a second: unknown ids whose
 * urls are a closed port of 127.0.0.1. Meanwhile the main thread measures
 * `GET /nodes` latency (10 a second), watches the member view for any member
 * going down (a flap), and PUTs through the gateway (20 a second). The flood
 * runs in its own thread so that its work does not show up as registry
 * latency. Loopback only: nothing else is ever dialled or registered.
 *
 * Targets: GET /nodes p99 < 50 ms, no flap, every PUT acknowledged.
 */

interface FloodResult {
  sent: number;
  /** Ticks skipped because the previous one was still in flight (the flood is bounded, never queued). */
  skippedTicks: number;
  statuses: Record<string, number>;
  seconds: number;
}

const TICK_MS = 100;

/**
 * The flood itself, over raw pipelined HTTP/1.1 on a few keep-alive sockets:
 * a full HTTP client would spend more CPU sending than the registry spends
 * refusing, and on a small machine that CPU comes out of the registry's share.
 * Bounded: a tick is skipped while more than two ticks' worth of answers are
 * outstanding, so nothing queues up.
 */
async function flood(registryUrl: string, closedPort: number, rate: number, seconds: number): Promise<FloodResult> {
  const { hostname, port } = new URL(registryUrl);
  const statuses: Record<string, number> = {};
  const perTick = Math.round((rate * TICK_MS) / 1000);
  const ticks = Math.round((seconds * 1000) / TICK_MS);
  const SOCKETS = 16;
  let sent = 0;
  let answered = 0;
  let skippedTicks = 0;
  const sockets = await Promise.all(
    Array.from({ length: SOCKETS }, () =>
      new Promise<Socket>((resolve, reject) => {
        const s = connect(Number(port), hostname, () => resolve(s));
        s.once('error', reject);
      }),
    ),
  );
  for (const s of sockets) {
    let tail = '';
    s.on('data', (chunk: Buffer) => {
      const text = tail + chunk.toString('latin1');
      for (const m of text.matchAll(/HTTP\/1\.1 (\d{3}) /g)) {
        statuses[m[1]!] = (statuses[m[1]!] ?? 0) + 1;
        answered++;
      }
      // A status line cut in two by the chunk boundary is matched with the next chunk.
      const cut = text.lastIndexOf('HTTP/1.1 ');
      tail = cut >= 0 && text.length - cut < 14 ? text.slice(cut) : text.slice(-8).replace(/^.*?(H?T?T?P?\/?1?\.?1?)$/, '$1');
    });
    s.on('error', () => {});
  }
  const start = Date.now();
  for (let t = 0; t < ticks; t++) {
    const wait = start + t * TICK_MS - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (sent - answered > 2 * perTick) {
      skippedTicks++;
      continue;
    }
    const batches: string[][] = sockets.map(() => []);
    for (let i = 0; i < perTick; i++) {
      const body = JSON.stringify({ node_url: `http://127.0.0.1:${closedPort}/f${t}-${i}`, id: `flood-${t}-${i}` });
      batches[i % SOCKETS]!.push(
        `POST /register HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      sent++;
    }
    batches.forEach((b, i) => sockets[i]!.write(b.join('')));
  }
  const deadline = Date.now() + 10_000;
  while (answered < sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const elapsed = (Date.now() - start) / 1000;
  for (const s of sockets) s.destroy();
  if (answered < sent) statuses.unanswered = sent - answered;
  return { sent, skippedTicks, statuses, seconds: elapsed };
}

if (!isMainThread) {
  const { registryUrl, closedPort, rate, seconds } = workerData as { registryUrl: string; closedPort: number; rate: number; seconds: number };
  parentPort!.postMessage(await flood(registryUrl, closedPort, rate, seconds));
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

/** CPU seconds a process has used (Linux /proc), or NaN elsewhere. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** GET /nodes ten times a second while `go()` holds, for at most `seconds`; latencies sorted. */
async function measureNodes(reg: string, go: () => boolean, seconds: number): Promise<{ latencies: number[]; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const end = Date.now() + seconds * 1000;
  while (go() && Date.now() < end) {
    const t0 = performance.now();
    try {
      const res = await getJson(`${reg}/nodes`);
      if (res.status !== 200) errors++;
    } catch {
      errors++;
    }
    latencies.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { latencies: latencies.sort((a, b) => a - b), errors };
}

async function getJson(url: string, timeoutMs = 10_000): Promise<{ status: number; json: any }> {
  const res = await request(url, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  return { status: res.statusCode, json: await res.body.json() };
}

export async function runRegistryFlood(argv: string[]): Promise<number> {
  const arg = (name: string, dflt: number) => {
    const i = argv.indexOf(`--${name}`);
    const v = i >= 0 ? Number(argv[i + 1]) : dflt;
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
    return v;
  };
  const rate = arg('rate', 2000);
  const seconds = arg('seconds', 20);
  const baselineSeconds = arg('baseline-seconds', 5);
  const cluster = await BenchCluster.start({ kvCount: 3, replicationFactor: 3, consistency: 'quorum', sync: 'commit' });
  const stopAll = () => cluster.stop();
  process.once('SIGINT', () => void stopAll().finally(() => process.exit(130)));
  try {
    const { freePort } = await import('../test/support/process.js');
    const closedPort = await freePort();
    const reg = cluster.registryUrl;
    const members0 = (await getJson(`${reg}/nodes`)).json.members as Array<{ id: string }>;
    const cpu0 = cpuSeconds(cluster.registry.pid);

    // The same probe without the flood first: on a shared machine its p99 is the floor the flood's is read against.
    const baseline = await measureNodes(reg, () => true, baselineSeconds);
    let running = true;
    const during = measureNodes(reg, () => running, Infinity);

    // Every change of the view reaches a blocking watch: a member going down cannot slip between polls.
    let flaps = 0;
    let viewChanges = 0;
    const downIds = new Set<string>();
    const ac = new AbortController();
    const watchLoop = (async () => {
      let index = (await getJson(`${reg}/nodes`)).json.index as number;
      while (running) {
        try {
          const res = await request(`${reg}/nodes?index=${index}&wait=1`, { signal: ac.signal });
          const view = (await res.body.json()) as { index: number; members: Array<{ id: string; state: string }> };
          if (view.index !== index) viewChanges++;
          index = view.index;
          for (const m of view.members) {
            if (m.state !== 'up' && !downIds.has(m.id)) {
              downIds.add(m.id);
              flaps++;
            } else if (m.state === 'up') downIds.delete(m.id);
          }
        } catch {
          if (!running) break;
        }
      }
    })();

    let putsOk = 0;
    const putFailures: string[] = [];
    const putLoop = (async () => {
      for (let i = 0; running; i++) {
        try {
          const res = await request(`${cluster.gatewayUrl}/kv/flood-${i}`, { method: 'PUT', body: `v${i}`, headersTimeout: 10_000 });
          const text = await res.body.text();
          if (res.statusCode === 201 || res.statusCode === 200) putsOk++;
          else putFailures.push(`${res.statusCode} ${text.slice(0, 200)}`);
        } catch (err) {
          putFailures.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    process.stderr.write(`flooding ${reg} with ${rate} bad registrations/s for ${seconds} s...\n`);
    const worker = new Worker(new URL(import.meta.url), { workerData: { registryUrl: reg, closedPort, rate, seconds } });
    const floodResult = await new Promise<FloodResult>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    const cpu1 = cpuSeconds(cluster.registry.pid);
    running = false;
    ac.abort();
    const { latencies, errors: nodesErrors } = await during;
    await Promise.all([watchLoop, putLoop]);

    const after = (await getJson(`${reg}/nodes`)).json.members as Array<{ id: string; state: string }>;
    latencies.sort((a, b) => a - b);
    const p50 = percentile(latencies, 0.5);
    const p99 = percentile(latencies, 0.99);
    const met = p99 < 50 && flaps === 0 && putFailures.length === 0 && nodesErrors === 0;
    const lines = [
      `registry flood: ${floodResult.sent} bad registrations in ${floodResult.seconds.toFixed(1)} s ` +
        `(${Math.round(floodResult.sent / floodResult.seconds)}/s; ${floodResult.skippedTicks} ticks skipped while the previous was in flight)`,
      `  answers: ${Object.entries(floodResult.statuses).map(([s, n]) => `${s}: ${n}`).join(', ')}`,
      `  GET /nodes during the flood: ${latencies.length} requests, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${(latencies.at(-1) ?? 0).toFixed(1)} ms, errors ${nodesErrors}`,
      `  GET /nodes before it (baseline, same machine load): ${baseline.latencies.length} requests, p50 ${percentile(baseline.latencies, 0.5).toFixed(1)} ms, ` +
        `p99 ${percentile(baseline.latencies, 0.99).toFixed(1)} ms`,
      `  machine load average (1 min) at the end: ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores`,
      `  member flaps (down seen by a blocking watch): ${flaps}; view changes: ${viewChanges}`,
      `  PUTs through the gateway: ${putsOk} acknowledged, ${putFailures.length} failed${putFailures.length ? ` (first: ${putFailures[0]})` : ''}`,
      `  registry CPU during the flood: ${(cpu1 - cpu0).toFixed(1)} s of ${floodResult.seconds.toFixed(1)} s`,
      `  members: ${members0.length} before, ${after.length} after, ${after.filter((m) => m.state === 'up').length} up`,
      `  targets (p99 < 50 ms, no flap, every PUT acknowledged): ${met ? 'met' : 'NOT met'}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return met ? 0 : 1;
  } finally {
    await stopAll();
  }
}

const invokedAs = process.argv[1];
if (isMainThread && invokedAs && import.meta.url === pathToFileURL(realpathSync(invokedAs)).href) {
  runRegistryFlood(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`registry flood: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
