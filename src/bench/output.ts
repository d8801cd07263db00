import { execFileSync } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderSvg, throughputSpec } from './chart.js';
import { configLine, machineLine, markdownReport, type BenchReport, type MachineInfo } from './comparison-report.js';
import { renderDocs } from './docs-splice.js';
import { markdownScaleReport, type ScaleReport } from './scale-report.js';

/** The repository root (this file runs from dist/bench). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEFAULT_RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');
export const DOCS_FILE = path.join(REPO_ROOT, 'docs', 'benchmarks.md');

export const BENCH_FILES = { json: 'latest.json', md: 'latest.md', svg: 'latest.svg' };
export const SCALE_FILES = { json: 'scale-latest.json', md: 'scale-latest.md' };

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  let commit: string | undefined;
  try {
    const git = (...args: string[]) =>
      execFileSync('git', args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    commit = git('rev-parse', '--short', 'HEAD');
    // Numbers from uncommitted code must not pass for the commit's own.
    if (git('status', '--porcelain', '--untracked-files=no', '--', 'src', 'package.json') !== '') {
      commit += ' with uncommitted changes';
    }
  } catch {
    // not a git checkout: the results simply name no commit
  }
  return {
    cpu: (cpus[0]?.model ?? 'unknown CPU').trim(),
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    ...(commit ? { commit } : {}),
  };
}

/** Write-then-rename, so a reader never sees half a file. */
async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** latest.json, latest.md and latest.svg; returns the paths written. */
export async function writeBenchResults(report: BenchReport, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = [path.join(dir, BENCH_FILES.json), path.join(dir, BENCH_FILES.md), path.join(dir, BENCH_FILES.svg)];
  await writeAtomic(files[0]!, JSON.stringify(report, null, 2) + '\n');
  await writeAtomic(
    files[1]!,
    `# FlexStore benchmark\n\n${markdownReport(report, { chart: BENCH_FILES.svg, headingLevel: 2 })}`,
  );
  const svg = await renderSvg(throughputSpec(report.summaries, [machineLine(report.machine), configLine(report.config)]));
  await writeAtomic(files[2]!, svg);
  return files;
}

export async function writeScaleResults(report: ScaleReport, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = [path.join(dir, SCALE_FILES.json), path.join(dir, SCALE_FILES.md)];
  await writeAtomic(files[0]!, JSON.stringify(report, null, 2) + '\n');
  await writeAtomic(files[1]!, `# FlexStore scale benchmark\n\n${markdownScaleReport(report, { headingLevel: 2 })}`);
  return files;
}

const FALLBACK_INTRO = '# Benchmarks\n\nRun `npm run bench` (and `npm run bench:scale`); see `flexstore bench --help`.\n';

/**
 * Regenerates the results part of docs/benchmarks.md from the latest results
 * in `dir` (comparison and scale, whichever exist), keeping the hand-written
 * introduction above it.
 */
export async function writeDocs(dir: string, docsFile = DOCS_FILE): Promise<string> {
  const bench = await readJson<BenchReport>(path.join(dir, BENCH_FILES.json));
  const scale = await readJson<ScaleReport>(path.join(dir, SCALE_FILES.json));
  const chart = path.relative(path.dirname(docsFile), path.join(dir, BENCH_FILES.svg)).split(path.sep).join('/');
  const parts: string[] = [];
  if (bench) parts.push(markdownReport(bench, { chart, headingLevel: 2 }));
  else parts.push('## Latest results\n\nNo comparison run recorded yet: run `npm run bench -- --write-docs`.\n');
  if (scale) parts.push(markdownScaleReport(scale, { headingLevel: 2 }));
  else parts.push('## Cost as the data grows\n\nNo scale run recorded yet: run `npm run bench:scale -- --write-docs`.\n');
  let existing: string | undefined;
  try {
    existing = await readFile(docsFile, 'utf8');
  } catch {
    existing = undefined;
  }
  await mkdir(path.dirname(docsFile), { recursive: true });
  await writeAtomic(docsFile, renderDocs(existing, parts.join('\n'), FALLBACK_INTRO));
  return docsFile;
}
