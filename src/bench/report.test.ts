import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Measurement } from './load.js';
import { Samples } from './load.js';
import { BenchUsageError, DEFAULT_OPTIONS, parseBenchArgs } from './options.js';
import { topSelfTime, type CpuProfile } from './profile.js';
import {
  markdownReport,
  median,
  ratios,
  summarize,
  terminalReport,
  verdicts,
  type BenchReport,
  type RunRecord,
  type Summary,
} from './comparison-report.js';
import { DOCS_BEGIN, DOCS_END, renderDocs } from './docs-splice.js';
import { markdownScaleReport, scaleVerdicts, type ScaleReport } from './scale-report.js';
import { markdownTable, textTable } from './tables.js';
import { KeyDeck, workloadRequests, kvProtocol, makeValue } from './workloads.js';

function m(rps: number, p99: number, extra: Partial<Measurement> = {}): Measurement {
  return {
    requests: rps * 8,
    ok: rps * 8,
    non2xx: 0,
    errors: 0,
    timeouts: 0,
    durationSec: 8,
    rps,
    p50: p99 / 4,
    p99,
    p999: p99 * 2,
    max: p99 * 3,
    mean: p99 / 3,
    statusCodes: { '200': rps * 8 },
    ...extra,
  };
}

function summary(system: Summary['system'], workload: Summary['workload'], rps: number, p99: number): Summary {
  return { system, workload, rounds: 1, rps, p50: 1, p99, p999: p99 * 2, errors: 0, non2xx: 0, requests: rps, exhaustedRounds: 0 };
}

describe('median', () => {
  it('takes the middle of an odd count, whatever the order', () => {
    assert.equal(median([5, 1, 3]), 3);
    assert.equal(median([7]), 7);
  });
  it('averages the middle two of an even count', () => {
    assert.equal(median([4, 1, 3, 2]), 2.5);
  });
  it('is NaN for no values, and does not reorder its input', () => {
    assert.ok(Number.isNaN(median([])));
    const xs = [3, 1, 2];
    median(xs);
    assert.deepEqual(xs, [3, 1, 2]);
  });
});

describe('summarize', () => {
  it('reports the median of each figure per system × workload and sums the errors', () => {
    const runs: RunRecord[] = [
      { round: 1, system: 'proxy', workload: 'get', m: m(1000, 10, { errors: 1 }) },
      { round: 2, system: 'proxy', workload: 'get', m: m(3000, 30, { non2xx: 2 }) },
      { round: 3, system: 'proxy', workload: 'get', m: m(2000, 50, { errors: 4 }) },
      { round: 1, system: 'flexstore', workload: 'get', m: m(900, 12) },
    ];
    const s = summarize(runs);
    const proxy = s.find((x) => x.system === 'proxy')!;
    assert.equal(proxy.rounds, 3);
    assert.equal(proxy.rps, 2000);
    assert.equal(proxy.p99, 30);
    assert.equal(proxy.errors, 5);
    assert.equal(proxy.non2xx, 2);
  });

  it('orders rows by workload, then by the canonical system order', () => {
    const runs: RunRecord[] = [
      { round: 1, system: 'flexstore', workload: 'put', m: m(1, 1) },
      { round: 1, system: 'node', workload: 'put', m: m(1, 1) },
      { round: 1, system: 'flexstore', workload: 'get', m: m(1, 1) },
      { round: 1, system: 'proxy', workload: 'get', m: m(1, 1) },
    ];
    assert.deepEqual(
      summarize(runs).map((s) => `${s.workload}/${s.system}`),
      ['get/proxy', 'get/flexstore', 'put/node', 'put/flexstore'],
    );
  });

  it('counts the rounds that ran out of keys', () => {
    const runs: RunRecord[] = [
      { round: 1, system: 'flexstore', workload: 'delete', m: m(1, 1, { exhausted: true }) },
      { round: 2, system: 'flexstore', workload: 'delete', m: m(1, 1) },
    ];
    assert.equal(summarize(runs)[0]!.exhaustedRounds, 1);
  });
});

describe('ratios and targets', () => {
  const rows = [
    summary('node', 'get', 10_000, 2),
    summary('proxy', 'get', 5000, 10),
    summary('flexstore', 'get', 2500, 20),
    summary('proxy', 'put', 4000, 10),
    summary('flexstore', 'put', 3200, 8),
  ];

  it('divides FlexStore req/s by each measured baseline', () => {
    const r = ratios(rows);
    assert.deepEqual(r.find((x) => x.workload === 'get')!.vs, { node: 0.25, proxy: 0.5 });
    assert.deepEqual(r.find((x) => x.workload === 'put')!.vs, { proxy: 0.8 });
  });

  it('holds GET to 1.0× and PUT to 0.75× the proxy, p99 to the proxy p99', () => {
    const v = verdicts(rows);
    const by = (name: string) => v.find((x) => x.name === name)!;
    assert.equal(by('GET req/s').pass, false);
    assert.equal(by('GET req/s').ratio, 0.5);
    assert.match(by('GET req/s').shortfall, /^2,500 req\/s short \(50% of target; needs 2\.0× its rate\)$/);
    assert.equal(by('PUT req/s').pass, true, '0.80× meets the 0.75× target');
    assert.equal(by('PUT req/s').shortfall, '');
    assert.equal(by('GET p99').pass, false);
    assert.match(by('GET p99').shortfall, /^10 ms over \(2\.0× the proxy's p99\)$/);
    assert.equal(by('PUT p99').pass, true);
  });

  it('treats exactly meeting a target as a pass', () => {
    const v = verdicts([summary('proxy', 'get', 1000, 5), summary('flexstore', 'get', 1000, 5)]);
    assert.ok(v.every((x) => x.pass));
  });

  it('holds streaming to 50,000 keys/s', () => {
    const stream = (keysPerSec: number) => ({ keys: 1000, valueSize: 100, loadKeysPerSec: 1, keysMoved: 1000, passMs: 1, keysPerSec, joinSec: 1 });
    const [slow] = verdicts([], stream(40_000));
    assert.equal(slow?.name, 'Streaming keys/s');
    assert.equal(slow?.pass, false);
    assert.equal(slow?.ratio, 0.8);
    assert.match(slow!.shortfall, /10,000 keys\/s short \(80% of target\)/);
    assert.equal(verdicts([], stream(50_000))[0]?.pass, true);
  });

  it('leaves out targets whose runs are missing', () => {
    assert.deepEqual(verdicts([summary('flexstore', 'get', 1, 1)]), []);
  });
});

describe('tables', () => {
  it('aligns text columns: labels left, numbers right', () => {
    const t = textTable(['name', 'req/s'], [['a', '1'], ['long', '1,000']]);
    assert.equal(t, ['name  req/s', '----  -----', 'a         1', 'long  1,000'].join('\n'));
  });

  it('writes Markdown with right-aligned numeric columns and escaped pipes', () => {
    const t = markdownTable(['a', 'b'], [['x|y', '2']]);
    assert.equal(t, ['| a | b |', '| --- | ---: |', '| x\\|y | 2 |'].join('\n'));
  });

  it('renders a whole report with PASS/MISS and skipped systems', () => {
    const summaries = [summary('proxy', 'get', 5000, 10), summary('flexstore', 'get', 5500, 9)];
    const report: BenchReport = {
      kind: 'flexstore-bench',
      version: 1,
      machine: { cpu: 'CPU', cores: 2, memoryGiB: 4, os: 'Linux', node: 'v20', date: '2025-01-01T00:00:00Z' },
      config: {
        connections: 32, durationSec: 8, valueSize: 100, keys: 10_000, replicationFactor: 3,
        consistency: 'quorum', rounds: 1, workloads: ['get'], systems: ['proxy', 'flexstore'], kvServers: 3,
      },
      skipped: [{ system: 'etcd', reason: 'no etcd on PATH' }],
      summaries,
      ratios: ratios(summaries),
      verdicts: verdicts(summaries),
      runs: [],
      elapsedSec: 20,
    };
    const text = terminalReport(report);
    assert.match(text, /GET req\/s .* 1\.10× .* PASS/);
    assert.match(text, /etcd \(3 members\) skipped: no etcd on PATH/);
    const md = markdownReport(report, { chart: '../bench/results/latest.svg' });
    assert.match(md, /!\[req\/s per system and workload\]\(\.\.\/bench\/results\/latest\.svg\)/);
    assert.match(md, /\| GET \| FlexStore \| 5,500 \| 1\.00 \| 9\.00 \| 18\.00 \| 0 \| 0 \|/);
  });
});

describe('docs', () => {
  it('keeps the hand-written part and replaces only the generated block', () => {
    const first = renderDocs(undefined, 'TABLE 1', '# Bench\n\nintro\n');
    assert.equal(first, `# Bench\n\nintro\n\n${DOCS_BEGIN}\n\nTABLE 1\n\n${DOCS_END}\n`);
    const edited = first.replace('intro', 'edited intro') + '\nfooter\n';
    const second = renderDocs(edited, 'TABLE 2', 'unused');
    assert.equal(second, `# Bench\n\nedited intro\n\n${DOCS_BEGIN}\n\nTABLE 2\n\n${DOCS_END}\n\nfooter\n`);
  });
});

describe('scale targets', () => {
  const step = (keys: number, put: number, get: number, heap: number) => ({
    keys, loadedKeys: keys, loadSeconds: 1, loadKeysPerSec: keys, loadFailed: 0,
    put: m(put, 10), get: m(get, 5),
    kvMemory: [{ rssMiB: 100, heapUsedMiB: heap }, { rssMiB: 100, heapUsedMiB: heap }],
    kvDiskMiB: [1, 1],
  });
  const report = (steps: ReturnType<typeof step>[]): ScaleReport => ({
    kind: 'flexstore-bench-scale', version: 1,
    machine: { cpu: 'x', cores: 2, memoryGiB: 1, os: 'y', node: 'v20', date: 'd' },
    config: { connections: 32, durationSec: 5, valueSize: 100, replicationFactor: 3, consistency: 'quorum', kvServers: 3, scaleKeys: steps.map((s) => s.keys), loadConnections: 64 },
    steps, heapSource: 'test', elapsedSec: 1,
  });

  it('compares the largest key count with the smallest: throughput ≥ 0.9×, heap ≤ 1.5×', () => {
    const v = scaleVerdicts(report([step(10_000, 5000, 10_000, 30), step(100_000, 4000, 9500, 31), step(1_000_000, 4400, 9000, 60)]));
    assert.deepEqual(v.map((x) => [x.name, x.ratio, x.pass]), [
      ['PUT req/s, 1,000,000 vs 10,000 keys', 0.88, false],
      ['GET req/s, 1,000,000 vs 10,000 keys', 0.9, true],
      ['KV heap MiB, 1,000,000 vs 10,000 keys', 2, false],
    ]);
    assert.match(v[0]!.shortfall, /100 req\/s short/);
    assert.match(markdownScaleReport(report([step(10_000, 5000, 10_000, 30), step(1_000_000, 4400, 9000, 60)])), /MISS: grew 2\.0× with 100× the keys/);
    assert.deepEqual(scaleVerdicts(report([step(10_000, 1, 1, 1)])), [], 'one step compares nothing');
  });
});

describe('latency samples', () => {
  it('gives nearest-rank percentiles', () => {
    const s = new Samples();
    for (let i = 1000; i >= 1; i--) s.push(i / 10);
    assert.deepEqual(s.percentiles([50, 99, 99.9, 100]), [50, 99, 99.9, 100]);
    assert.equal(s.mean(), 50.05);
  });
  it('grows past its first buffer', () => {
    const s = new Samples();
    for (let i = 0; i < 200_000; i++) s.push(1);
    assert.equal(s.length, 200_000);
  });
});

describe('workloads', () => {
  it('deletes every key of the deck once, then marks the overflow', () => {
    const deck = new KeyDeck(3);
    const next = workloadRequests('delete', kvProtocol(makeValue(4)), 3, deck);
    const paths = [next(), next(), next()].map((r) => r.spec.path).sort();
    assert.deepEqual(paths, ['/kv/key-0', '/kv/key-1', '/kv/key-2']);
    const over = next();
    assert.equal(over.overflow, true);
    assert.equal(over.exhausted, true);
    assert.equal(next().exhausted, false);
    assert.equal(deck.taken().length, 3);
  });

  it('sends about one write in ten in the mixed workload', () => {
    const next = workloadRequests('mix', kvProtocol(makeValue(100)), 100);
    let puts = 0;
    for (let i = 0; i < 10_000; i++) if (next().spec.method === 'PUT') puts++;
    assert.ok(puts > 800 && puts < 1200, `${puts} writes in 10000`);
  });
});

describe('options', () => {
  it('has the documented defaults', () => {
    const o = parseBenchArgs([]);
    assert.deepEqual(o, { ...DEFAULT_OPTIONS });
    assert.equal(o.connections, 32);
    assert.equal(o.durationSec, 5);
    assert.equal(o.streamKeys, 200_000);
    assert.deepEqual(o.systems, ['node', 'proxy', 'flexstore', 'etcd']);
  });

  it('parses lists into canonical order and --quick into short runs', () => {
    const o = parseBenchArgs(['--systems', 'etcd,flexstore', '--workloads', 'put,get', '--quick', '--duration', '3']);
    assert.deepEqual(o.systems, ['flexstore', 'etcd']);
    assert.deepEqual(o.workloads, ['get', 'put']);
    assert.equal(o.durationSec, 3, 'an explicit flag wins over --quick');
    assert.equal(o.keys, 2000);
    assert.deepEqual(parseBenchArgs(['--scale-keys', '100000,10000,10000']).scaleKeys, [10_000, 100_000]);
    assert.equal(o.streamKeys, 20_000, '--quick streams fewer keys');
    assert.equal(parseBenchArgs(['--stream-keys', '0']).streamKeys, 0, '0 skips the streaming measurement');
    assert.equal(parseBenchArgs([]).kvSync, 'commit');
    assert.equal(parseBenchArgs(['--kv-sync', 'interval']).kvSync, 'interval');
  });

  it('rejects what it does not know', () => {
    for (const argv of [['--systems', 'redis'], ['--rounds', '0'], ['--consistency', 'most'], ['--nope'], ['--duration', 'x'], ['--stream-keys', '-5'], ['--kv-sync', 'never']]) {
      assert.throws(() => parseBenchArgs(argv), BenchUsageError, argv.join(' '));
    }
  });
});

describe('cpu profile summary', () => {
  it('charges each sample the interval to the next and ranks functions by self time', () => {
    const frame = (functionName: string, url = 'file:///repo/dist/x.js', lineNumber = 0) => ({
      functionName, url, lineNumber, columnNumber: 0,
    });
    const profile: CpuProfile = {
      nodes: [
        { id: 1, callFrame: frame('(root)', '') },
        { id: 2, callFrame: frame('hot', 'file:///repo/dist/x.js', 9) },
        { id: 3, callFrame: frame('cold') },
        { id: 4, callFrame: frame('(idle)', '') },
      ],
      samples: [2, 2, 3, 4, 2],
      timeDeltas: [0, 1000, 1000, 1000, 1000],
    };
    const s = topSelfTime(profile, 10, '/repo');
    assert.equal(s.totalMs, 4);
    assert.equal(s.idleMs, 1);
    assert.deepEqual(s.top.map((e) => [e.fn, e.where, e.selfMs, e.pct]), [
      ['hot', 'dist/x.js:10', 2, 66.7],
      ['cold', 'dist/x.js:1', 1, 33.3],
    ]);
  });
});
