import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { fetchJson, waitUntil } from './child.js';
import { BenchCluster } from './cluster.js';
import { loadKeysBatched } from './batch-load.js';
import { KV_SERVERS, type Cleanup } from './compare.js';
import { range, runLoad } from './load.js';
import type { BenchOptions } from './options.js';
import { machineInfo } from './output.js';
import type { ScaleReport, ScaleStep } from './scale-report.js';
import { kvProtocol, makeValue, workloadRequests } from './workloads.js';

const MiB = 2 ** 20;
/** Load rate assumed for the first estimate, before one has been measured (2 cores, N=3, quorum). */
const ASSUMED_KEYS_PER_SEC = 5000;
/** Keys per POST /batch while loading, and batches in flight. */
const LOAD_BATCH = 100;
const LOAD_BATCHES_IN_FLIGHT = 8;

const log = (line: string) => process.stderr.write(`${line}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

function fmtDuration(sec: number): string {
  const s = Math.ceil(sec);
  return s < 120 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** VmRSS, RssAnon and RssFile of a process from /proc (Linux), in MiB. */
export async function procMemory(pid: number): Promise<{ rssMiB: number; rssAnonMiB?: number; rssFileMiB?: number } | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) / 1024 : undefined;
  };
  const rss = kib('VmRSS');
  if (rss === undefined) return undefined;
  return { rssMiB: rss, rssAnonMiB: kib('RssAnon'), rssFileMiB: kib('RssFile') };
}

/**
 * The KV server's live JS heap in MiB: `memory.heapUsed` from
 * `/health-check?gc=1`, which collects garbage first (the bench starts KV
 * servers with --expose-gc), so garbage left by the load does not count.
 * Undefined while the endpoint does not report it.
 */
export async function reportedHeapMiB(kvUrl: string): Promise<number | undefined> {
  try {
    const res = await fetchJson('GET', `${kvUrl}/health-check?gc=1`, undefined, 10_000);
    const heap = res.json?.memory?.heapUsed;
    return typeof heap === 'number' ? heap / MiB : undefined;
  } catch {
    return undefined;
  }
}

/** Disk space the files under dir actually occupy (allocated blocks, so a sparse LMDB map counts as used). */
export async function diskUsageMiB(dir: string): Promise<number> {
  let bytes = 0;
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) await walk(p);
      else if (entry.isFile()) bytes += (await stat(p)).blocks * 512;
    }
  };
  try {
    await walk(dir);
  } catch {
    return NaN;
  }
  return bytes / MiB;
}

/** Complete anti-entropy passes a KV server has finished, from its /metrics. */
async function completePasses(kvUrl: string): Promise<number | undefined> {
  try {
    const res = await request(`${kvUrl}/metrics`, { headersTimeout: 5000, bodyTimeout: 5000 });
    const text = await res.body.text();
    const m = /^flexstore_sync_passes_total\{outcome="complete"\} (\d+)/m.exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Longest wait for the replicas to settle before a measured run. */
const SETTLE_TIMEOUT_MS = 90_000;

/**
 * Waits until every KV server has completed an anti-entropy pass that began
 * after the caller's writes ended (two more complete passes than now), so a
 * measured run sees the store at rest rather than replicas still comparing
 * and exchanging the stragglers of a bulk load (at 1M keys such a pass takes
 * seconds of CPU). Resolves with the seconds waited; gives up (and says so)
 * after SETTLE_TIMEOUT_MS.
 */
async function settle(cluster: BenchCluster): Promise<number> {
  const t0 = Date.now();
  const urls = cluster.kvs.map((_, i) => cluster.kvUrl(i));
  const start = await Promise.all(urls.map(completePasses));
  if (start.some((n) => n === undefined)) return 0;
  try {
    await waitUntil(
      'an anti-entropy pass on every KV server',
      async () => (await Promise.all(urls.map(completePasses))).every((n, i) => n !== undefined && n >= start[i]! + 2),
      SETTLE_TIMEOUT_MS,
    );
  } catch {
    log(`replicas still comparing after ${SETTLE_TIMEOUT_MS / 1000} s; measuring anyway`);
  }
  return (Date.now() - t0) / 1000;
}

/**
 * Cost as the data grows: loads the key space step by step up to each count
 * in --scale-keys and at each measures PUT and GET throughput over all keys
 * stored so far (each run once the replicas have settled) and the KV
 * servers' memory and disk.
 */
export async function runScale(opts: BenchOptions, cleanups: Cleanup[]): Promise<ScaleReport> {
  const started = Date.now();
  const value = makeValue(opts.valueSize);
  const protocol = kvProtocol(value);
  const steps = opts.scaleKeys;
  // Two measured runs, each after waiting for the replicas to settle (about two 10-s anti-entropy periods at most).
  const perStepRuns = 2 * (opts.durationSec + 0.5 + 15) + 1;
  const estimate = (keysPerSec: number, from: number, stepsLeft: number[]) =>
    (stepsLeft[stepsLeft.length - 1]! - from) / keysPerSec + stepsLeft.length * perStepRuns;

  log(
    `Scale plan: ${steps.map(fmt).join(', ')} keys; estimated ${fmtDuration(estimate(ASSUMED_KEYS_PER_SEC, 0, steps) + 5)} ` +
      `(assuming ${fmt(ASSUMED_KEYS_PER_SEC)} keys/s; refined after the first step).`,
  );

  log(`FlexStore: starting 1 registry, ${KV_SERVERS} KV servers, 1 gateway (N=${opts.replicationFactor}, ${opts.consistency}, sync ${opts.kvSync})`);
  const cluster = await BenchCluster.start({ kvCount: KV_SERVERS, replicationFactor: opts.replicationFactor, consistency: opts.consistency, sync: opts.kvSync });
  cleanups.push(() => cluster.stop());

  const results: ScaleStep[] = [];
  let stored = 0;
  let heapSeen = false;
  for (let s = 0; s < steps.length; s++) {
    const target = steps[s]!;
    const load = await loadKeysBatched({
      url: cluster.gatewayUrl,
      keys: range(stored, target),
      value,
      batchSize: LOAD_BATCH,
      connections: LOAD_BATCHES_IN_FLIGHT,
      label: `loading keys ${fmt(stored)}..${fmt(target)}`,
    });
    const loadedKeys = target - stored;
    log(
      `loaded ${fmt(load.loaded)} keys (${fmt(stored)} → ${fmt(target)}) in ${load.seconds.toFixed(1)} s: ${fmt(load.keysPerSec)} keys/s` +
        (load.failed + load.unanswered > 0 ? `; ${fmt(load.failed + load.unanswered)} keys NOT written` : ''),
    );
    stored = target;
    log(`settled in ${(await settle(cluster)).toFixed(1)} s`);
    const put = await runLoad({
      url: cluster.gatewayUrl,
      connections: opts.connections,
      durationSec: opts.durationSec,
      label: `${fmt(target)} keys  PUT`,
      next: workloadRequests('put', protocol, target),
    });
    log(`settled in ${(await settle(cluster)).toFixed(1)} s`);
    const get = await runLoad({
      url: cluster.gatewayUrl,
      connections: opts.connections,
      durationSec: opts.durationSec,
      label: `${fmt(target)} keys  GET`,
      next: workloadRequests('get', protocol, target),
    });
    const kvMemory = await Promise.all(
      cluster.kvs.map(async (kv, i) => {
        const mem = (await procMemory(kv.proc.pid)) ?? { rssMiB: NaN };
        const heapUsedMiB = await reportedHeapMiB(cluster.kvUrl(i));
        if (heapUsedMiB !== undefined) heapSeen = true;
        return { ...mem, ...(heapUsedMiB !== undefined ? { heapUsedMiB } : {}) };
      }),
    );
    const kvDiskMiB = await Promise.all(cluster.kvs.map((kv) => diskUsageMiB(kv.dataDir)));
    results.push({
      keys: target,
      loadedKeys,
      loadSeconds: Math.round(load.seconds * 10) / 10,
      loadKeysPerSec: load.keysPerSec,
      loadFailed: load.failed + load.unanswered,
      put,
      get,
      kvMemory: kvMemory.map((m) => roundMem(m)),
      kvDiskMiB: kvDiskMiB.map((d) => Math.round(d * 10) / 10),
    });
    const left = steps.slice(s + 1);
    if (left.length > 0) {
      log(`estimated remaining: ${fmtDuration(estimate(Math.max(1, load.keysPerSec), stored, left))}`);
    }
  }

  return {
    kind: 'flexstore-bench-scale',
    version: 1,
    machine: machineInfo(),
    config: {
      connections: opts.connections,
      durationSec: opts.durationSec,
      valueSize: opts.valueSize,
      replicationFactor: opts.replicationFactor,
      consistency: opts.consistency,
      sync: opts.kvSync,
      kvServers: KV_SERVERS,
      scaleKeys: steps,
      loadConnections: LOAD_BATCHES_IN_FLIGHT,
      loadBatch: LOAD_BATCH,
    },
    steps: results,
    heapSource: heapSeen
      ? 'memory.heapUsed from each KV server\'s /health-check?gc=1, after a full garbage collection'
      : 'not available (the KV /health-check reports no memory figures); RSS is read from /proc/<pid>/status',
    elapsedSec: Math.round((Date.now() - started) / 100) / 10,
  };
}

function roundMem<T extends Record<string, number | undefined>>(m: T): T {
  const out: Record<string, number | undefined> = {};
  for (const [k, v] of Object.entries(m)) out[k] = v === undefined ? undefined : Math.round(v * 10) / 10;
  return out as T;
}
