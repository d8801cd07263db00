import { UsageError, cliOptions, configFrom, formatCommandHelp, parseCommand, type CommandSpec } from '../cli/options.js';
import { defineOptions, opt, type ConfigOf } from '../cluster/option-spec.js';
import { CONSISTENCY_LEVELS, gatewayOptions } from '../gateway/config.js';
import { SYNC_MODES } from '../kv/config.js';

/** A workload: what each request of a run does. */
export type Workload = 'get' | 'put' | 'mix' | 'delete';
/** A system under test: FlexStore and the baselines it is measured against. */
export type SystemName = 'node' | 'proxy' | 'flexstore' | 'etcd' | 'flexstore-tls';

export const WORKLOADS: readonly Workload[] = ['get', 'put', 'mix', 'delete'];
/**
 * Run order inside a workload. The bare proxy runs right before FlexStore so
 * that the pair the targets compare sees the same machine state.
 */
export const SYSTEMS: readonly SystemName[] = ['node', 'proxy', 'flexstore', 'etcd'];
/** FlexStore with TLS on every link: measured by --tls, right after the plain cluster. */
export const TLS_SYSTEM: SystemName = 'flexstore-tls';
/** Every system in report order. */
export const REPORT_SYSTEMS: readonly SystemName[] = ['node', 'proxy', 'flexstore', TLS_SYSTEM, 'etcd'];

/** `flexstore bench` options: flags only, no environment variables. */
const benchOptions = defineOptions('bench', {
  connections: opt.count({ flag: 'connections', default: 32, valueName: '<n>', doc: 'Concurrent keep-alive connections of the load generator' }),
  durationSec: opt.seconds({ flag: 'duration', default: 5, valueName: '<s>', doc: 'Seconds per measured run (2 with --quick)' }),
  valueSize: opt.count({
    flag: 'value-size',
    default: 100,
    min: 0,
    valueName: '<bytes>',
    doc: 'Bytes per value written and per body the baselines answer',
  }),
  keys: opt.count({
    flag: 'keys',
    default: 10_000,
    valueName: '<n>',
    doc: 'Keys preloaded; reads and writes pick uniformly among them (2000 with --quick)',
  }),
  replicationFactor: opt.count({
    flag: 'replication-factor',
    default: gatewayOptions.defaults.replicationFactor,
    valueName: '<n>',
    doc: "FlexStore's N",
  }),
  consistency: opt.enum(CONSISTENCY_LEVELS, {
    flag: 'consistency',
    default: 'quorum',
    valueName: '<level>',
    doc: "FlexStore's default consistency for every request",
  }),
  kvSync: opt.enum(SYNC_MODES, {
    flag: 'kv-sync',
    default: 'commit',
    valueName: '<mode>',
    doc: "The KV servers' --sync: commit (fsync before each acknowledgement) or interval",
  }),
  rounds: opt.count({
    flag: 'rounds',
    default: 1,
    valueName: '<n>',
    doc: 'Each workload and system is measured this many times, alternating systems; medians are reported',
  }),
  workloads: opt.enums(WORKLOADS, { flag: 'workloads', default: [...WORKLOADS], defaultText: 'all', valueName: '<list>', doc: `Comma list of ${WORKLOADS.join(',')}` }),
  systems: opt.enums(SYSTEMS, {
    flag: 'systems',
    default: [...SYSTEMS],
    defaultText: 'all',
    valueName: '<list>',
    doc: `Comma list of ${SYSTEMS.join(',')} (etcd runs only when the etcd binary is on PATH)`,
  }),
  tls: opt.boolean({
    flag: 'tls',
    default: false,
    doc: 'Also measure a second FlexStore cluster with TLS on every link (certificates made in a temp dir) and print the cost',
  }),
  quick: opt.boolean({ flag: 'quick', default: false, doc: 'Short runs and a small key space: a smoke check' }),
  scale: opt.boolean({ flag: 'scale', default: false, doc: 'Measure throughput and KV memory as the data grows, instead of the comparison' }),
  // 1,000,000 keys (loaded through POST /batch at about 15k keys/s on a
  // 2-core machine) make the run about 4 minutes, so they are opt-in.
  scaleKeys: opt.counts({
    flag: 'scale-keys',
    default: [10_000, 100_000],
    valueName: '<list>',
    doc: 'Stored-key counts --scale measures at (add 1000000 for the full curve, about 4 min here)',
  }),
  streamKeys: opt.count({
    flag: 'stream-keys',
    default: 200_000,
    min: 0,
    valueName: '<n>',
    doc: 'Keys a joining KV server streams in the streaming measurement (20000 with --quick; 0 skips it)',
  }),
  writeDocs: opt.boolean({ flag: 'write-docs', default: false, doc: 'Regenerate docs/benchmarks.md from the results' }),
  outDir: opt.string({ flag: 'out', defaultText: 'bench/results', valueName: '<dir>', doc: 'Results directory' }),
  cpuProfDir: opt.string({ flag: 'cpu-prof', valueName: '<dir>', doc: 'Profile the FlexStore gateway (--cpu-prof); print its top functions' }),
});

export type BenchOptions = ConfigOf<typeof benchOptions.rows> & { help: boolean };

export const DEFAULT_OPTIONS: Readonly<BenchOptions> = { ...benchOptions.defaults, help: false };

/** Defaults of --quick, for the options not given. */
const QUICK: Partial<BenchOptions> = { durationSec: 2, keys: 2_000, scaleKeys: [2_000, 20_000], streamKeys: 20_000 };

export { UsageError as BenchUsageError };

const spec: CommandSpec = {
  name: 'bench',
  summary: [
    'Starts a FlexStore cluster (1 registry, 3 KV servers, 1 gateway) and the',
    'baselines as separate processes on loopback, loads them with autocannon and',
    "prints one table: req/s and latency per system and workload, and FlexStore's",
    'ratio to the bare proxy against its targets. Results go to bench/results/.',
  ].join('\n'),
  positionals: [0, 0],
  options: cliOptions(benchOptions.rows),
};

export const BENCH_HELP = formatCommandHelp(spec);

/** Parses `flexstore bench` arguments; throws BenchUsageError on anything it does not accept. */
export function parseBenchArgs(argv: string[]): BenchOptions {
  const parsed = parseCommand(spec, argv, {});
  if (parsed.help) return { ...DEFAULT_OPTIONS, help: true };
  const o: BenchOptions = { ...configFrom(benchOptions.defaults, spec.options, parsed.values), help: false };
  if (o.quick) {
    for (const opt of spec.options) {
      const quick = QUICK[opt.field as keyof BenchOptions];
      if (quick !== undefined && !parsed.explicit.has(opt.flag)) Object.assign(o, { [opt.field]: structuredClone(quick) });
    }
  }
  o.scaleKeys = [...new Set(o.scaleKeys)].sort((a, b) => a - b);
  if (o.tls) {
    // The TLS cluster runs right after the plain one in every round, so the pair sees the same machine state.
    const at = o.systems.indexOf('flexstore');
    if (at === -1) throw new UsageError('--tls compares FlexStore with and without TLS: --systems must include flexstore');
    o.systems = [...o.systems.slice(0, at + 1), TLS_SYSTEM, ...o.systems.slice(at + 1)];
  }
  if (o.connections > o.keys && o.workloads.includes('delete')) {
    throw new UsageError('--keys must be at least --connections: every DELETE connection needs its own live keys');
  }
  return o;
}
