import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { runComparison, type Cleanup } from './compare.js';
import { BENCH_HELP, BenchUsageError, parseBenchArgs } from './options.js';
import { DEFAULT_RESULTS_DIR, writeBenchResults, writeDocs, writeScaleResults } from './output.js';
import { terminalReport } from './comparison-report.js';
import { terminalScaleReport } from './scale-report.js';
import { runScale } from './scale.js';

/**
 * `flexstore bench` and `npm run bench`: the comparison run (default) or the
 * scale run (--scale). Returns the exit code: 0 done, 1 the run failed,
 * 2 usage error. Every process it started is stopped before it returns,
 * also on failure and on SIGINT/SIGTERM.
 */
export async function runBench(argv: string[]): Promise<number> {
  let opts;
  try {
    opts = parseBenchArgs(argv);
  } catch (err) {
    if (err instanceof BenchUsageError) {
      process.stderr.write(`flexstore bench: ${err.message} (see 'flexstore bench --help')\n`);
      return err.exitCode;
    }
    throw err;
  }
  if (opts.help) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }

  const started = Date.now();
  const cleanups: Cleanup[] = [];
  const cleanUp = async () => {
    while (cleanups.length > 0) {
      try {
        await cleanups.pop()!();
      } catch (err) {
        process.stderr.write(`flexstore bench: while stopping: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
  };
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\nflexstore bench: ${sig}, stopping everything it started\n`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  // A profiled gateway runs slower: its numbers go beside the profile, never over the published results.
  const outDir = opts.outDir ?? opts.cpuProfDir ?? DEFAULT_RESULTS_DIR;
  try {
    if (opts.scale) {
      const report = await runScale(opts, cleanups);
      await cleanUp();
      process.stdout.write('\n' + terminalScaleReport(report));
      const files = await writeScaleResults(report, outDir);
      process.stderr.write(`\nwrote ${files.join(', ')}\n`);
    } else {
      const { report, profile } = await runComparison(opts, cleanups);
      await cleanUp();
      process.stdout.write('\n' + terminalReport(report));
      if (profile) {
        process.stdout.write(
          `\nGateway CPU profile ${profile.file}\n` +
            `busy ${profile.totalMs - profile.idleMs} ms of ${profile.totalMs} ms; top self time:\n` +
            profile.top.map((e, i) => `${String(i + 1).padStart(3)}. ${e.pct.toFixed(1).padStart(5)}%  ${e.selfMs.toFixed(0).padStart(6)} ms  ${e.fn}  ${e.where}`).join('\n') +
            '\n',
        );
      }
      const files = await writeBenchResults(report, outDir);
      process.stderr.write(`\nwrote ${files.join(', ')}\n`);
    }
    if (opts.writeDocs) {
      const docs = await writeDocs(outDir);
      process.stderr.write(`wrote ${docs}\n`);
    }
  } catch (err) {
    await cleanUp();
    process.stderr.write(`flexstore bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  process.stderr.write(`total elapsed ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return 0;
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  runBench(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`flexstore bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
