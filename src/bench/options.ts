import { parseArgs } from 'node:util';
import type { Consistency } from '../cluster/types.js';
import type { SyncMode } from '../kv/storage.js';

/** A workload: what each request of a run does. */
export type Workload = 'get' | 'put' | 'mix' | 'delete';
/** A system under test: FlexStore and the baselines it is measured against. */
export type SystemName = 'node' | 'proxy' | 'flexstore' | 'etcd';

export const WORKLOADS: readonly Workload[] = ['get', 'put', 'mix', 'delete'];
/**
 * Run order inside a workload. The bare proxy runs right before FlexStore so
 * that the pair the targets compare sees the same machine state.
 */
export const SYSTEMS: readonly SystemName[] = ['node', 'proxy', 'flexstore', 'etcd'];

export interface BenchOptions {
  /** Concurrent keep-alive connections of the load generator. Default 32. */
  connections: number;
  /** Seconds per measured run. Default 5 (2 with --quick). */
  durationSec: number;
  /** Bytes per value written and per body the baselines answer. Default 100. */
  valueSize: number;
  /** Keys preloaded before the runs; reads and writes pick uniformly among them. Default 10000. */
  keys: number;
  /** FlexStore's N. Default 3. */
  replicationFactor: number;
  /** FlexStore's default consistency for every request. Default quorum. */
  consistency: Consistency;
  /** The KV servers' --sync: when a write is acknowledged (see src/kv/storage.ts). Default commit. */
  kvSync: SyncMode;
  /** Each workload × system is measured this many times, alternating systems; the median is reported. Default 1. */
  rounds: number;
  workloads: Workload[];
  systems: SystemName[];
  /** Short runs and a small key space, for a smoke check. */
  quick: boolean;
  /** Measure the cost of data growth instead of the comparison. */
  scale: boolean;
  /**
   * Stored-key counts the scale run measures at, ascending. Default
   * 10000,100000: 1,000,000 keys (loaded through POST /batch at about 15k
   * keys/s on a 2-core machine) make the run about 4 minutes and are opt-in.
   */
  scaleKeys: number[];
  /**
   * Keys a joining KV server streams in the streaming measurement (after the
   * comparison runs, when FlexStore is measured). 0 skips it. Default 200000
   * (20000 with --quick).
   */
  streamKeys: number;
  /** Also regenerate docs/benchmarks.md from the results. */
  writeDocs: boolean;
  /** Where results are written. Default bench/results in the repository. */
  outDir: string | undefined;
  /** When set, the FlexStore gateway runs under --cpu-prof and the profile lands here. */
  cpuProfDir: string | undefined;
  help: boolean;
}

export const DEFAULT_OPTIONS: Readonly<BenchOptions> = {
  connections: 32,
  durationSec: 5,
  valueSize: 100,
  keys: 10_000,
  replicationFactor: 3,
  consistency: 'quorum',
  kvSync: 'commit',
  rounds: 1,
  workloads: [...WORKLOADS],
  systems: [...SYSTEMS],
  quick: false,
  scale: false,
  scaleKeys: [10_000, 100_000],
  streamKeys: 200_000,
  writeDocs: false,
  outDir: undefined,
  cpuProfDir: undefined,
  help: false,
};

const QUICK = { durationSec: 2, keys: 2_000, scaleKeys: [2_000, 20_000], streamKeys: 20_000 };

export class BenchUsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'BenchUsageError';
  }
}

export const BENCH_HELP = `Usage: flexstore bench [options]

Starts a FlexStore cluster (1 registry, 3 KV servers, 1 gateway) and the
baselines as separate processes on loopback, loads them with autocannon and
prints one table: req/s and latency per system and workload, and FlexStore's
ratio to the bare proxy against its targets. Results go to bench/results/.

Options:
  --connections <n>          Concurrent connections (default: 32)
  --duration <s>             Seconds per measured run (default: 5; 2 with --quick)
  --value-size <bytes>       Value and baseline body size (default: 100)
  --keys <n>                 Keys preloaded; requests pick among them (default: 10000)
  --replication-factor <n>   FlexStore N (default: 3)
  --consistency <level>      one, quorum or all (default: quorum)
  --kv-sync <mode>           KV servers' --sync: commit (fsync before each
                             acknowledgement) or interval (default: commit)
  --rounds <n>               Alternating rounds; medians are reported (default: 1)
  --workloads <list>         Comma list of get,put,mix,delete (default: all)
  --systems <list>           Comma list of flexstore,node,proxy,etcd (default: all;
                             etcd runs only when the etcd binary is on PATH)
  --quick                    Short runs and 2000 keys: a smoke check
  --scale                    Measure throughput and KV memory as the data grows
  --scale-keys <list>        Key counts for --scale (default: 10000,100000;
                             add 1000000 for the full curve, about 4 min here)
  --stream-keys <n>          Keys a joining KV server streams in the streaming
                             measurement (default: 200000; 0 skips it)
  --write-docs               Regenerate docs/benchmarks.md from the results
  --out <dir>                Results directory (default: bench/results)
  --cpu-prof <dir>           Profile the FlexStore gateway; print its top functions
  -h, --help                 Show this help
`;

function positiveInt(name: string, raw: string, min = 1): number {
  if (!/^\d+$/.test(raw.replaceAll('_', ''))) throw new BenchUsageError(`--${name} must be an integer, got ${JSON.stringify(raw)}`);
  const n = Number(raw.replaceAll('_', ''));
  if (n < min) throw new BenchUsageError(`--${name} must be at least ${min}, got ${n}`);
  return n;
}

function list<T extends string>(name: string, raw: string, allowed: readonly T[]): T[] {
  const items = raw.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (items.length === 0) throw new BenchUsageError(`--${name} needs at least one of ${allowed.join(', ')}`);
  for (const item of items) {
    if (!allowed.includes(item as T)) {
      throw new BenchUsageError(`--${name}: unknown ${JSON.stringify(item)}; choose from ${allowed.join(', ')}`);
    }
  }
  // Canonical order, so a run always alternates the same way whatever order the flag lists.
  return allowed.filter((a) => items.includes(a));
}

/** Parses `flexstore bench` arguments; throws BenchUsageError on anything it does not accept. */
export function parseBenchArgs(argv: string[]): BenchOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        connections: { type: 'string' },
        duration: { type: 'string' },
        'value-size': { type: 'string' },
        keys: { type: 'string' },
        'replication-factor': { type: 'string' },
        consistency: { type: 'string' },
        'kv-sync': { type: 'string' },
        rounds: { type: 'string' },
        workloads: { type: 'string' },
        systems: { type: 'string' },
        quick: { type: 'boolean' },
        scale: { type: 'boolean' },
        'scale-keys': { type: 'string' },
        'stream-keys': { type: 'string' },
        'write-docs': { type: 'boolean' },
        out: { type: 'string' },
        'cpu-prof': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new BenchUsageError(err instanceof Error ? err.message : String(err));
  }
  const v = parsed.values;
  const o: BenchOptions = { ...DEFAULT_OPTIONS, workloads: [...WORKLOADS], systems: [...SYSTEMS] };
  o.help = v.help ?? false;
  o.quick = v.quick ?? false;
  if (o.quick) Object.assign(o, { durationSec: QUICK.durationSec, keys: QUICK.keys, scaleKeys: [...QUICK.scaleKeys], streamKeys: QUICK.streamKeys });
  o.scale = v.scale ?? false;
  o.writeDocs = v['write-docs'] ?? false;
  if (v.connections !== undefined) o.connections = positiveInt('connections', v.connections);
  if (v.duration !== undefined) {
    const d = Number(v.duration);
    if (!Number.isFinite(d) || d <= 0) throw new BenchUsageError(`--duration must be a positive number of seconds, got ${JSON.stringify(v.duration)}`);
    o.durationSec = d;
  }
  if (v['value-size'] !== undefined) o.valueSize = positiveInt('value-size', v['value-size'], 0);
  if (v.keys !== undefined) o.keys = positiveInt('keys', v.keys);
  if (v['replication-factor'] !== undefined) o.replicationFactor = positiveInt('replication-factor', v['replication-factor']);
  if (v.consistency !== undefined) {
    if (!['one', 'quorum', 'all'].includes(v.consistency)) {
      throw new BenchUsageError(`--consistency must be one, quorum or all, got ${JSON.stringify(v.consistency)}`);
    }
    o.consistency = v.consistency as Consistency;
  }
  if (v['kv-sync'] !== undefined) {
    if (v['kv-sync'] !== 'commit' && v['kv-sync'] !== 'interval') {
      throw new BenchUsageError(`--kv-sync must be commit or interval, got ${JSON.stringify(v['kv-sync'])}`);
    }
    o.kvSync = v['kv-sync'];
  }
  if (v.rounds !== undefined) o.rounds = positiveInt('rounds', v.rounds);
  if (v.workloads !== undefined) o.workloads = list('workloads', v.workloads, WORKLOADS);
  if (v.systems !== undefined) o.systems = list('systems', v.systems, SYSTEMS);
  if (v['scale-keys'] !== undefined) {
    const counts = v['scale-keys'].split(',').map((s) => positiveInt('scale-keys', s.trim()));
    o.scaleKeys = [...new Set(counts)].sort((a, b) => a - b);
  }
  if (v['stream-keys'] !== undefined) o.streamKeys = positiveInt('stream-keys', v['stream-keys'], 0);
  o.outDir = v.out;
  o.cpuProfDir = v['cpu-prof'];
  if (o.connections > o.keys && o.workloads.includes('delete')) {
    throw new BenchUsageError('--keys must be at least --connections: every DELETE connection needs its own live keys');
  }
  return o;
}
