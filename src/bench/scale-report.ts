import type { Measurement } from './load.js';
import {
  VERDICT_ALIGN,
  machineLine,
  verdictRows,
  type BenchConfig,
  type MachineInfo,
  type Verdict,
} from './comparison-report.js';
import { fmtInt, fmtMs, markdownTable, r2, textTable } from './tables.js';

/**
 * The scale report: what throughput, memory and disk cost as the stored key
 * count grows, and whether they stay flat between the smallest and the
 * largest count measured.
 */

/** One stored-key count of a scale run. */
export interface ScaleStep {
  keys: number;
  /** Keys written to reach this count, and how fast. */
  loadedKeys: number;
  loadSeconds: number;
  loadKeysPerSec: number;
  loadFailed: number;
  put: Measurement;
  get: Measurement;
  /** Per KV server, in MiB; heap figures are absent when the KV server does not report them. */
  kvMemory: Array<{ rssMiB: number; rssAnonMiB?: number; rssFileMiB?: number; heapUsedMiB?: number }>;
  /** LMDB files on disk per KV server, MiB. */
  kvDiskMiB: number[];
}

export interface ScaleReport {
  kind: 'flexstore-bench-scale';
  version: 1;
  machine: MachineInfo;
  config: Omit<BenchConfig, 'workloads' | 'systems' | 'keys' | 'rounds'> & {
    scaleKeys: number[];
    /** Concurrent writers (or batches in flight, with loadBatch) while loading. */
    loadConnections: number;
    /** Keys per POST /batch while loading; absent in reports that loaded with one PUT per key. */
    loadBatch?: number;
  };
  steps: ScaleStep[];
  /** How KV heap was read, or why it could not be. */
  heapSource: string;
  elapsedSec: number;
}

const SCALE_HEADERS = [
  'Keys stored', 'load keys/s', 'PUT req/s', 'PUT p99 ms', 'GET req/s', 'GET p99 ms',
  'KV RSS MiB', 'anon MiB', 'file MiB', 'heap MiB', 'disk MiB',
];

const avg = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const fmtMiB = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(0));

function scaleRows(steps: readonly ScaleStep[]): string[][] {
  const mean = (xs: Array<number | undefined>) => (xs.every((x) => x !== undefined) ? avg(xs as number[]) : undefined);
  return steps.map((s) => [
    fmtInt(s.keys),
    fmtInt(s.loadKeysPerSec),
    fmtInt(s.put.rps),
    fmtMs(s.put.p99),
    fmtInt(s.get.rps),
    fmtMs(s.get.p99),
    fmtMiB(mean(s.kvMemory.map((k) => k.rssMiB))),
    fmtMiB(mean(s.kvMemory.map((k) => k.rssAnonMiB))),
    fmtMiB(mean(s.kvMemory.map((k) => k.rssFileMiB))),
    fmtMiB(mean(s.kvMemory.map((k) => k.heapUsedMiB))),
    fmtMiB(mean(s.kvDiskMiB)),
  ]);
}

const SCALE_NOTE =
  'Memory and disk are the mean per KV server. RSS splits into anonymous memory (the JS heap and other ' +
  'private allocations) and file-backed pages (mostly the LMDB memory map, reclaimable page cache).';

/** Throughput at the largest key count over the smallest must be at least this. */
export const SCALE_THROUGHPUT_MIN = 0.9;
/**
 * KV heap at the largest key count over the smallest may be at most this: a
 * heap that holds per-key state grows with the keys (10× and 100× here);
 * heapUsed also swings with when the last collection ran.
 */
export const SCALE_HEAP_MAX = 1.5;

/** The scale targets, between the smallest and the largest key count measured. */
export function scaleVerdicts(r: ScaleReport): Verdict[] {
  if (r.steps.length < 2) return [];
  const first = r.steps[0]!;
  const last = r.steps[r.steps.length - 1]!;
  const label = `${fmtInt(last.keys)} vs ${fmtInt(first.keys)} keys`;
  const out: Verdict[] = [];
  for (const [name, a, b] of [['PUT', first.put.rps, last.put.rps], ['GET', first.get.rps, last.get.rps]] as const) {
    if (!(a > 0)) continue;
    const ratio = b / a;
    const pass = ratio >= SCALE_THROUGHPUT_MIN;
    out.push({
      name: `${name} req/s, ${label}`,
      flexstore: b,
      baseline: a,
      unit: 'req/s',
      ratio: r2(ratio),
      target: `≥ ${SCALE_THROUGHPUT_MIN.toFixed(2)}×`,
      pass,
      shortfall: pass ? '' : `${fmtInt(SCALE_THROUGHPUT_MIN * a - b)} req/s short (${((ratio / SCALE_THROUGHPUT_MIN) * 100).toFixed(0)}% of target)`,
    });
  }
  const heap = (s: ScaleStep) => {
    const xs = s.kvMemory.map((k) => k.heapUsedMiB);
    return xs.length > 0 && xs.every((x) => x !== undefined) ? avg(xs as number[]) : undefined;
  };
  const h0 = heap(first);
  const h1 = heap(last);
  if (h0 !== undefined && h1 !== undefined && h0 > 0) {
    const ratio = h1 / h0;
    const pass = ratio <= SCALE_HEAP_MAX;
    out.push({
      name: `KV heap MiB, ${label}`,
      flexstore: h1,
      baseline: h0,
      unit: 'MiB',
      ratio: r2(ratio),
      target: `≤ ${SCALE_HEAP_MAX.toFixed(1)}× (flat)`,
      pass,
      shortfall: pass ? '' : `grew ${ratio.toFixed(1)}× with ${(last.keys / first.keys).toFixed(0)}× the keys`,
    });
  }
  return out;
}

const SCALE_VERDICT_HEADERS = ['Target', 'largest', 'smallest', 'ratio', 'target', 'result'];

export function terminalScaleReport(r: ScaleReport): string {
  const vs = scaleVerdicts(r);
  const verdictTable = vs.length ? `\n${textTable(SCALE_VERDICT_HEADERS, verdictRows(vs), VERDICT_ALIGN)}\n` : '';
  return `${textTable(SCALE_HEADERS, scaleRows(r.steps))}\n${SCALE_NOTE}\nKV heap: ${r.heapSource}\n${verdictTable}`;
}

export function markdownScaleReport(r: ScaleReport, opts: { headingLevel?: number } = {}): string {
  const h = '#'.repeat(opts.headingLevel ?? 2);
  const vs = scaleVerdicts(r);
  return [
    `${h} Cost as the data grows`,
    '',
    `Machine: ${machineLine(r.machine)}.  `,
    `Setup: ${r.config.kvServers} KV servers, N=${r.config.replicationFactor}, consistency ${r.config.consistency}, sync ${r.config.sync ?? 'commit'}; ` +
      `${r.config.connections} connections, ${r.config.durationSec} s per run, ${r.config.valueSize}-byte values; ` +
      (r.config.loadBatch
        ? `keys loaded through POST /batch, ${r.config.loadBatch} per batch, ${r.config.loadConnections} batches in flight. `
        : `keys loaded with ${r.config.loadConnections} concurrent writers. `) +
      `Total run time ${Math.round(r.elapsedSec)} s.`,
    '',
    markdownTable(SCALE_HEADERS, scaleRows(r.steps)),
    '',
    `${SCALE_NOTE} KV heap: ${r.heapSource}.`,
    '',
    ...(vs.length ? [markdownTable(SCALE_VERDICT_HEADERS, verdictRows(vs), VERDICT_ALIGN), ''] : []),
  ].join('\n');
}
