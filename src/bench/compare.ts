import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createCerts } from '../cli/certs-command.js';
import { startBareProxy, startBareServer } from './baselines.js';
import { BenchCluster } from './cluster.js';
import { EtcdCluster, findEtcd } from './etcd.js';
import { loadKeys, range, runLoad, type Measurement } from './load.js';
import type { BenchOptions, SystemName } from './options.js';
import { summarizeNewestProfile, type ProfileSummary } from './profile.js';
import {
  SYSTEM_LABEL,
  WORKLOAD_LABEL,
  ratios,
  summarize,
  verdicts,
  type BenchReport,
  type RunRecord,
} from './comparison-report.js';
import { machineInfo, REPO_ROOT } from './output.js';
import { runStreamBench, type StreamResult } from './stream.js';
import { KeyDeck, etcdProtocol, kvProtocol, makeValue, workloadRequests, type Protocol } from './workloads.js';

/** KV servers in the benchmarked FlexStore cluster. */
export const KV_SERVERS = 3;
/** Concurrent writers while preloading. More than the run's connections: loading is about finishing soon. */
export const LOAD_CONNECTIONS = 64;
/** Rough load rates on a 2-core machine, only for the up-front time estimate. */
const EST_KEYS_PER_SEC: Partial<Record<SystemName, number>> = { flexstore: 1200, 'flexstore-tls': 1000, etcd: 1500 };

interface Target {
  system: SystemName;
  url: string;
  protocol: Protocol;
  /** Keeps the keys it is sent: needs a preload, and DELETE runs use up its live keys. */
  stateful: boolean;
  /** Keys deleted since the last (re)load. */
  deleted: number[];
}

export interface CompareOutcome {
  report: BenchReport;
  profile?: ProfileSummary;
}

export type Cleanup = () => Promise<void>;

const log = (line: string) => process.stderr.write(`${line}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/**
 * The comparison run: starts every requested system, preloads the stateful
 * ones, then for each round and workload measures the systems one after
 * another, so that slow drift of the machine (heat, other tenants) spreads
 * over all systems instead of favouring one.
 */
export async function runComparison(opts: BenchOptions, cleanups: Cleanup[]): Promise<CompareOutcome> {
  const started = Date.now();
  const value = makeValue(opts.valueSize);
  const skipped: BenchReport['skipped'] = [];
  let systems = [...opts.systems];

  let etcdBinary: string | undefined;
  if (systems.includes('etcd')) {
    etcdBinary = findEtcd();
    if (!etcdBinary) {
      skipped.push({ system: 'etcd', reason: "no 'etcd' binary on PATH (Debian: apt-get install etcd-server)" });
      log(`etcd: skipped, no 'etcd' binary on PATH (Debian package etcd-server)`);
      systems = systems.filter((s) => s !== 'etcd');
    }
  }

  if (systems.length === 0) throw new Error('no system left to measure');
  const runs = opts.rounds * opts.workloads.length * systems.length;
  const warmSec = opts.quick ? 0.5 : 1;
  const estimate =
    runs * (opts.durationSec + 0.5) +
    systems.length * (warmSec + 0.5) +
    systems.reduce((a, s) => a + (EST_KEYS_PER_SEC[s] ? opts.keys / EST_KEYS_PER_SEC[s]! : 0), 0) * (opts.workloads.includes('delete') ? opts.rounds : 1) +
    (systems.includes('flexstore') ? 4 + (opts.streamKeys > 0 ? 8 + opts.streamKeys / 40_000 : 0) : 0) +
    (systems.includes('etcd') ? 3 : 0);
  log(
    `Plan: ${systems.map((s) => SYSTEM_LABEL[s]).join(', ')} × ${opts.workloads.map((w) => WORKLOAD_LABEL[w]).join(', ')}; ` +
      `${runs} run${runs === 1 ? '' : 's'} of ${opts.durationSec} s; estimated ${Math.ceil(estimate)} s in all.`,
  );

  const targets: Target[] = [];
  let cluster: BenchCluster | undefined;

  if (systems.includes('node') || systems.includes('proxy')) {
    const node = await startBareServer(opts.valueSize);
    cleanups.push(() => node.stop());
    if (systems.includes('node')) targets.push({ system: 'node', url: node.url, protocol: kvProtocol(value), stateful: false, deleted: [] });
    if (systems.includes('proxy')) {
      const proxy = await startBareProxy(node.url, 32);
      cleanups.push(() => proxy.stop());
      targets.push({ system: 'proxy', url: proxy.url, protocol: kvProtocol(value), stateful: false, deleted: [] });
    }
  }
  if (systems.includes('flexstore')) {
    log(`FlexStore: starting 1 registry, ${KV_SERVERS} KV servers, 1 gateway (N=${opts.replicationFactor}, ${opts.consistency}, sync ${opts.kvSync})`);
    cluster = await BenchCluster.start({ kvCount: KV_SERVERS, replicationFactor: opts.replicationFactor, consistency: opts.consistency, sync: opts.kvSync });
    const c = cluster;
    cleanups.push(() => c.stop());
    targets.push({ system: 'flexstore', url: cluster.gatewayUrl, protocol: kvProtocol(value), stateful: true, deleted: [] });
  }
  if (systems.includes('flexstore-tls')) {
    const certs = await mkdtemp(path.join(tmpdir(), 'flexstore-bench-certs-'));
    cleanups.push(() => rm(certs, { recursive: true, force: true }));
    await createCerts({ out: certs, hosts: [] });
    log(`FlexStore, TLS: starting the same cluster with TLS on every link (certificates in ${certs})`);
    const tlsCluster = await BenchCluster.start({
      kvCount: KV_SERVERS,
      replicationFactor: opts.replicationFactor,
      consistency: opts.consistency,
      sync: opts.kvSync,
      tlsDir: certs,
    });
    cleanups.push(() => tlsCluster.stop());
    targets.push({ system: 'flexstore-tls', url: tlsCluster.gatewayUrl, protocol: kvProtocol(value), stateful: true, deleted: [] });
  }
  if (systems.includes('etcd') && etcdBinary) {
    log('etcd: starting 3 members');
    const etcd = await EtcdCluster.start(etcdBinary);
    cleanups.push(() => etcd.stop());
    targets.push({ system: 'etcd', url: etcd.leaderUrl, protocol: etcdProtocol(value), stateful: true, deleted: [] });
  }
  // Keep the canonical order whatever order they started in.
  targets.sort((a, b) => systems.indexOf(a.system) - systems.indexOf(b.system));

  for (const t of targets.filter((t) => t.stateful)) await preload(t, range(0, opts.keys), 'preload', 'preloaded');

  if (opts.cpuProfDir && cluster) {
    await mkdir(opts.cpuProfDir, { recursive: true });
    log(`FlexStore: restarting the gateway under --cpu-prof (profile in ${opts.cpuProfDir})`);
    await cluster.startGateway(['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`]);
  }

  // The first seconds of a Node.js server run unoptimised code; no system should pay for that in its first run.
  for (const t of targets) {
    await runLoad({
      url: t.url,
      connections: opts.connections,
      durationSec: warmSec,
      label: `${SYSTEM_LABEL[t.system]} warm-up`,
      next: workloadRequests('mix', t.protocol, opts.keys),
      progress: false,
    });
  }

  const records: RunRecord[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    if (round > 1) {
      for (const t of targets.filter((t) => t.stateful && t.deleted.length > 0)) {
        await preload(t, Uint32Array.from(t.deleted), 'reload', 'reloaded the deleted');
        t.deleted = [];
      }
    }
    for (const workload of opts.workloads) {
      for (const t of targets) {
        const deck = workload === 'delete' && t.stateful ? new KeyDeck(opts.keys) : undefined;
        const m: Measurement = await runLoad({
          url: t.url,
          connections: opts.connections,
          durationSec: opts.durationSec,
          label: `[${round}/${opts.rounds}] ${WORKLOAD_LABEL[workload].padEnd(13)} ${SYSTEM_LABEL[t.system].padEnd(16)}`,
          next: workloadRequests(workload, t.protocol, opts.keys, deck),
        });
        if (deck) t.deleted.push(...deck.taken());
        records.push({ round, system: t.system, workload, m });
      }
    }
  }

  let profile: ProfileSummary | undefined;
  if (opts.cpuProfDir && cluster) {
    await cluster.stopGateway();
    profile = await summarizeNewestProfile(opts.cpuProfDir, 10, REPO_ROOT);
  }

  let stream: StreamResult | undefined;
  if (cluster && opts.streamKeys > 0) {
    // Its own cluster, alone on the machine: everything the comparison started
    // is stopped first (an idle etcd still compacts and fsyncs, and halved the
    // figure in one run).
    while (cleanups.length > 0) await cleanups.pop()!();
    stream = await runStreamBench({ keys: opts.streamKeys, valueSize: opts.valueSize, sync: opts.kvSync, log }, cleanups);
  }

  const summaries = summarize(records);
  const report: BenchReport = {
    kind: 'flexstore-bench',
    version: 1,
    machine: machineInfo(),
    config: {
      connections: opts.connections,
      durationSec: opts.durationSec,
      valueSize: opts.valueSize,
      keys: opts.keys,
      replicationFactor: opts.replicationFactor,
      consistency: opts.consistency,
      sync: opts.kvSync,
      rounds: opts.rounds,
      workloads: opts.workloads,
      systems,
      kvServers: KV_SERVERS,
    },
    skipped,
    summaries,
    ratios: ratios(summaries),
    verdicts: verdicts(summaries, stream),
    ...(stream && { stream }),
    runs: records,
    elapsedSec: Math.round((Date.now() - started) / 100) / 10,
  };
  return { report, profile };

  async function preload(t: Target, keys: ArrayLike<number>, label: string, done: string): Promise<void> {
    const r = await loadKeys({
      url: t.url,
      keys,
      put: t.protocol.put,
      connections: LOAD_CONNECTIONS,
      label: `${SYSTEM_LABEL[t.system]} ${label}`,
    });
    log(
      `${SYSTEM_LABEL[t.system]}: ${done} ${fmt(r.loaded)} keys in ${r.seconds.toFixed(1)} s (${fmt(r.keysPerSec)} keys/s)` +
        (r.failed + r.unanswered > 0 ? `; ${fmt(r.failed + r.unanswered)} keys NOT written` : ''),
    );
  }
}
