import type { Measurement } from './load.js';
import { REPORT_SYSTEMS, WORKLOADS, type SystemName, type Workload } from './options.js';
import { STREAM_TARGET_KEYS_PER_SEC, type StreamResult } from './stream.js';
import { fmtInt, fmtMs, markdownTable, r2, textTable } from './tables.js';

/**
 * The comparison report: FlexStore against the baselines (bare node:http, a
 * bare proxy, etcd) per workload. Rounds are folded into medians, FlexStore
 * is checked against its targets, and the result is rendered for the
 * terminal and for Markdown. The report's shape is what bench/results keeps.
 */

export const SYSTEM_LABEL: Record<SystemName, string> = {
  node: 'bare node:http',
  proxy: 'bare proxy',
  flexstore: 'FlexStore',
  etcd: 'etcd (3 members)',
  'flexstore-tls': 'FlexStore, TLS',
};

export const WORKLOAD_LABEL: Record<Workload, string> = {
  get: 'GET',
  put: 'PUT',
  mix: 'GET/PUT 90/10',
  delete: 'DELETE',
};

/** One measured run. */
export interface RunRecord {
  round: number;
  system: SystemName;
  workload: Workload;
  m: Measurement;
}

/** A system × workload over all rounds: medians of each figure, error counts summed. */
export interface Summary {
  system: SystemName;
  workload: Workload;
  rounds: number;
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  errors: number;
  non2xx: number;
  requests: number;
  /** Rounds that ran out of live keys before the duration ended (DELETE). */
  exhaustedRounds: number;
}

/** A target FlexStore is held to, against the bare proxy. */
export interface Verdict {
  name: string;
  flexstore: number;
  baseline: number;
  unit: 'req/s' | 'ms' | 'keys/s' | 'MiB';
  /** flexstore / baseline */
  ratio: number;
  target: string;
  pass: boolean;
  /** What is missing when it does not pass, in the target's own terms. */
  shortfall: string;
}

export interface Ratio {
  workload: Workload;
  /** FlexStore req/s divided by each baseline's; absent when either was not measured. */
  vs: Partial<Record<Exclude<SystemName, 'flexstore'>, number>>;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  date: string;
  commit?: string;
}

export interface BenchConfig {
  connections: number;
  durationSec: number;
  valueSize: number;
  keys: number;
  replicationFactor: number;
  consistency: string;
  /** The KV servers' --sync; absent in reports from before the option existed (they ran 'commit'). */
  sync?: string;
  rounds: number;
  workloads: Workload[];
  systems: SystemName[];
  kvServers: number;
}

export interface BenchReport {
  kind: 'flexstore-bench';
  version: 1;
  machine: MachineInfo;
  config: BenchConfig;
  skipped: Array<{ system: SystemName; reason: string }>;
  summaries: Summary[];
  ratios: Ratio[];
  verdicts: Verdict[];
  /** The streaming measurement (stream.ts); absent when it was not run. */
  stream?: StreamResult;
  runs: RunRecord[];
  elapsedSec: number;
}

/** Median; the mean of the middle two for an even count; NaN for none. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Folds the rounds of each system × workload into one row, in workload then system order. */
export function summarize(runs: readonly RunRecord[]): Summary[] {
  const out: Summary[] = [];
  for (const workload of WORKLOADS) {
    for (const system of REPORT_SYSTEMS) {
      const rs = runs.filter((r) => r.system === system && r.workload === workload).map((r) => r.m);
      if (rs.length === 0) continue;
      out.push({
        system,
        workload,
        rounds: rs.length,
        rps: Math.round(median(rs.map((m) => m.rps))),
        p50: r2(median(rs.map((m) => m.p50))),
        p99: r2(median(rs.map((m) => m.p99))),
        p999: r2(median(rs.map((m) => m.p999))),
        errors: rs.reduce((a, m) => a + m.errors, 0),
        non2xx: rs.reduce((a, m) => a + m.non2xx, 0),
        requests: rs.reduce((a, m) => a + m.requests, 0),
        exhaustedRounds: rs.filter((m) => m.exhausted).length,
      });
    }
  }
  return out;
}

function find(s: readonly Summary[], system: SystemName, workload: Workload): Summary | undefined {
  return s.find((x) => x.system === system && x.workload === workload);
}

/** FlexStore's throughput relative to each baseline, per workload. */
export function ratios(summaries: readonly Summary[]): Ratio[] {
  const out: Ratio[] = [];
  for (const workload of WORKLOADS) {
    const fs = find(summaries, 'flexstore', workload);
    if (!fs) continue;
    const vs: Ratio['vs'] = {};
    for (const base of ['node', 'proxy', 'etcd'] as const) {
      const b = find(summaries, base, workload);
      if (b && b.rps > 0) vs[base] = r2(fs.rps / b.rps);
    }
    out.push({ workload, vs });
  }
  return out;
}

/** Throughput targets: FlexStore req/s over the bare proxy's. */
export const THROUGHPUT_TARGETS: ReadonlyArray<{ workload: Workload; min: number }> = [
  { workload: 'get', min: 1.0 },
  { workload: 'put', min: 0.75 },
];
/** Tail-latency target: FlexStore's p99 no higher than the bare proxy's, for these workloads. */
export const P99_TARGET_WORKLOADS: readonly Workload[] = ['get', 'put'];

/** Checks FlexStore against the targets; a target whose runs are missing is left out. */
export function verdicts(summaries: readonly Summary[], stream?: StreamResult): Verdict[] {
  const out: Verdict[] = [];
  for (const { workload, min } of THROUGHPUT_TARGETS) {
    const fs = find(summaries, 'flexstore', workload);
    const px = find(summaries, 'proxy', workload);
    if (!fs || !px || px.rps <= 0) continue;
    const ratio = fs.rps / px.rps;
    const pass = ratio >= min;
    const need = min * px.rps - fs.rps;
    out.push({
      name: `${WORKLOAD_LABEL[workload]} req/s`,
      flexstore: fs.rps,
      baseline: px.rps,
      unit: 'req/s',
      ratio: r2(ratio),
      target: `≥ ${min.toFixed(2)}× proxy`,
      pass,
      shortfall: pass
        ? ''
        : `${fmtInt(need)} req/s short (${(ratio / min * 100).toFixed(0)}% of target; needs ${(min / ratio).toFixed(1)}× its rate)`,
    });
  }
  for (const workload of P99_TARGET_WORKLOADS) {
    const fs = find(summaries, 'flexstore', workload);
    const px = find(summaries, 'proxy', workload);
    if (!fs || !px || px.p99 <= 0) continue;
    const pass = fs.p99 <= px.p99;
    out.push({
      name: `${WORKLOAD_LABEL[workload]} p99`,
      flexstore: fs.p99,
      baseline: px.p99,
      unit: 'ms',
      ratio: r2(fs.p99 / px.p99),
      target: '≤ proxy p99',
      pass,
      shortfall: pass ? '' : `${r2(fs.p99 - px.p99)} ms over (${(fs.p99 / px.p99).toFixed(1)}× the proxy's p99)`,
    });
  }
  if (stream) {
    const min = STREAM_TARGET_KEYS_PER_SEC;
    const pass = stream.keysPerSec >= min;
    out.push({
      name: 'Streaming keys/s',
      flexstore: stream.keysPerSec,
      baseline: min,
      unit: 'keys/s',
      ratio: r2(stream.keysPerSec / min),
      target: `≥ ${fmtInt(min)} keys/s`,
      pass,
      shortfall: pass ? '' : `${fmtInt(min - stream.keysPerSec)} keys/s short (${((stream.keysPerSec / min) * 100).toFixed(0)}% of target)`,
    });
  }
  return out;
}

const RESULT_HEADERS = ['Workload', 'System', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'errors', 'non-2xx'];

function resultRows(summaries: readonly Summary[]): string[][] {
  return summaries.map((s) => [
    WORKLOAD_LABEL[s.workload],
    SYSTEM_LABEL[s.system] + (s.exhaustedRounds > 0 ? ' *' : ''),
    fmtInt(s.rps),
    fmtMs(s.p50),
    fmtMs(s.p99),
    fmtMs(s.p999),
    fmtInt(s.errors),
    fmtInt(s.non2xx),
  ]);
}

const RATIO_HEADERS = ['Workload', 'FlexStore req/s', '÷ bare node:http', '÷ bare proxy', '÷ etcd'];

function ratioRows(summaries: readonly Summary[], rs: readonly Ratio[]): string[][] {
  const x = (v: number | undefined) => (v === undefined ? '–' : `${v.toFixed(2)}×`);
  return rs.map((r) => [
    WORKLOAD_LABEL[r.workload],
    fmtInt(find(summaries, 'flexstore', r.workload)?.rps ?? 0),
    x(r.vs.node),
    x(r.vs.proxy),
    x(r.vs.etcd),
  ]);
}

export const VERDICT_HEADERS = ['Target', 'FlexStore', 'bare proxy / goal', 'ratio', 'target', 'result'];
export const VERDICT_ALIGN = [0, 4, 5];

/** Rows of a verdict table: the scale report's too. */
export function verdictRows(vs: readonly Verdict[]): string[][] {
  const val = (v: Verdict, n: number) => (v.unit === 'ms' ? `${fmtMs(n)} ms` : v.unit === 'MiB' ? `${n.toFixed(0)} MiB` : fmtInt(n));
  return vs.map((v) => [
    v.name,
    val(v, v.flexstore),
    val(v, v.baseline),
    `${v.ratio.toFixed(2)}×`,
    v.target,
    v.pass ? 'PASS' : `MISS: ${v.shortfall}`,
  ]);
}

function exhaustedNote(summaries: readonly Summary[]): string | undefined {
  return summaries.some((s) => s.exhaustedRounds > 0)
    ? '* ran out of live keys to delete before the duration ended; the rate is over the shorter run.'
    : undefined;
}

function streamLine(st: StreamResult | undefined): string | undefined {
  if (!st) return undefined;
  return (
    `Streaming between KV servers: a joining server pulled ${fmtInt(st.keysMoved)} of ${fmtInt(st.keys)} keys ` +
    `(${st.valueSize}-byte values) in ${(st.passMs / 1000).toFixed(1)} s = ${fmtInt(st.keysPerSec)} keys/s; ` +
    `it was active ${st.joinSec} s after its process started.`
  );
}

const TLS_HEADERS = ['Workload', 'plain req/s', 'TLS req/s', 'TLS ÷ plain', 'plain p99 ms', 'TLS p99 ms'];

/** FlexStore with TLS on every link against the same cluster without, per workload (with --tls). */
export function tlsCostRows(summaries: readonly Summary[]): string[][] {
  const rows: string[][] = [];
  for (const workload of WORKLOADS) {
    const plain = find(summaries, 'flexstore', workload);
    const tls = find(summaries, 'flexstore-tls', workload);
    if (!plain || !tls) continue;
    rows.push([
      WORKLOAD_LABEL[workload],
      fmtInt(plain.rps),
      fmtInt(tls.rps),
      plain.rps > 0 ? `${(tls.rps / plain.rps).toFixed(2)}×` : '–',
      fmtMs(plain.p99),
      fmtMs(tls.p99),
    ]);
  }
  return rows;
}

/** The report as printed on the terminal. */
export function terminalReport(r: BenchReport): string {
  const tlsRows = tlsCostRows(r.summaries);
  const parts = [
    textTable(RESULT_HEADERS, resultRows(r.summaries), 2),
    exhaustedNote(r.summaries),
    tlsRows.length ? '\nTLS cost (same run, medians of the rounds):\n' + textTable(TLS_HEADERS, tlsRows) : undefined,
    r.ratios.length ? '\n' + textTable(RATIO_HEADERS, ratioRows(r.summaries, r.ratios)) : undefined,
    r.verdicts.length ? '\n' + textTable(VERDICT_HEADERS, verdictRows(r.verdicts), VERDICT_ALIGN) : undefined,
    r.stream ? '\n' + streamLine(r.stream) : undefined,
    ...r.skipped.map((s) => `\n${SYSTEM_LABEL[s.system]} skipped: ${s.reason}`),
  ];
  return parts.filter((p) => p !== undefined).join('\n') + '\n';
}

export function machineLine(m: MachineInfo): string {
  return `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Node.js ${m.node}${m.commit ? `, commit ${m.commit}` : ''}, ${m.date}`;
}

export function configLine(c: BenchConfig): string {
  return (
    `${c.kvServers} KV servers, N=${c.replicationFactor}, consistency ${c.consistency}, sync ${c.sync ?? 'commit'}; ` +
    `${c.connections} connections, ${c.durationSec} s per run, ${c.rounds} round${c.rounds === 1 ? '' : 's'} (medians), ` +
    `${c.valueSize}-byte values, ${fmtInt(c.keys)} keys`
  );
}

/** The report as Markdown: the body of latest.md and of the generated part of docs/benchmarks.md. */
export function markdownReport(r: BenchReport, opts: { chart?: string; headingLevel?: number } = {}): string {
  const h = '#'.repeat(opts.headingLevel ?? 2);
  const out = [
    `${h} Latest results`,
    '',
    `Machine: ${machineLine(r.machine)}.  `,
    `Setup: ${configLine(r.config)}. Total run time ${Math.round(r.elapsedSec)} s.`,
    '',
  ];
  if (opts.chart) out.push(`![req/s per system and workload](${opts.chart})`, '');
  out.push(markdownTable(RESULT_HEADERS, resultRows(r.summaries), 2), '');
  const note = exhaustedNote(r.summaries);
  if (note) out.push(`\\${note}`, '');
  if (r.ratios.length) {
    out.push(`${h}# FlexStore relative to the baselines (req/s)`, '', markdownTable(RATIO_HEADERS, ratioRows(r.summaries, r.ratios)), '');
  }
  const tlsRows = tlsCostRows(r.summaries);
  if (tlsRows.length) out.push(`${h}# TLS cost (same run)`, '', markdownTable(TLS_HEADERS, tlsRows), '');
  if (r.verdicts.length) {
    out.push(`${h}# Targets`, '', markdownTable(VERDICT_HEADERS, verdictRows(r.verdicts), VERDICT_ALIGN), '');
  }
  if (r.stream) out.push(streamLine(r.stream)!, '');
  for (const s of r.skipped) out.push(`${SYSTEM_LABEL[s.system]} was not measured: ${s.reason}.`, '');
  return out.join('\n');
}
