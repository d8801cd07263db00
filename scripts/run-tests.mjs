#!/usr/bin/env node
// Runs the compiled tests: every *.test.js under dist/ (or under the folders
// given), sorted, passed to `node --test` as explicit paths. Node 20's --test
// does not expand globs and Node 22 treats arguments as globs; plain file
// paths mean the same on both.
//
//   node scripts/run-tests.mjs [--concurrency N | N] [folder-or-file ...]
//
// Concurrency defaults to 2 (TEST_CONCURRENCY overrides): integration tests
// start real processes and too many at once make their timing flaky.
//
// The run fails (exit code 1), besides when a test fails, when:
// - a folder or file named on the command line does not exist (a misspelt
//   target would otherwise quietly run nothing; exit code 2, nothing runs);
// - a test file runs no tests (a file whose tests were all commented out or
//   whose describe() is empty passes under node --test); each such file is
//   named on stderr after node's summary.
//
// Every test gets a timeout of TEST_TIMEOUT_MS (default 20 min, passed as
// --test-timeout): a hung test fails instead of stalling the run. On Node 20
// node --test applies the same bound to each file as a whole, so it is sized
// for the slowest file, the fault suite: about ten cases of a workload plus up
// to 60 s each to converge. A test that needs another bound sets its own
// ({ timeout }), which wins.
//
// Output is node's own reporter on stdout (TAP when stdout is not a terminal,
// as node chooses by default; CI reads its closing "# tests / # pass / # fail"
// lines). A second reporter (scripts/test-count-reporter.mjs) writes the
// per-file test counts to a temporary file.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));

let concurrency = process.env.TEST_CONCURRENCY || '2';
const timeoutMs = process.env.TEST_TIMEOUT_MS || String(20 * 60_000);
const targets = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === '--concurrency') concurrency = args[++i] ?? '';
  else if (arg.startsWith('--concurrency=')) concurrency = arg.slice('--concurrency='.length);
  else if (/^\d+$/.test(arg)) concurrency = arg;
  else targets.push(arg);
}
if (!/^[1-9]\d*$/.test(concurrency)) {
  console.error(`run-tests: concurrency must be a positive integer, got ${JSON.stringify(concurrency)}`);
  process.exit(2);
}
if (!/^[1-9]\d*$/.test(timeoutMs)) {
  console.error(`run-tests: TEST_TIMEOUT_MS must be a positive integer, got ${JSON.stringify(timeoutMs)}`);
  process.exit(2);
}

function collect(path, out) {
  let st;
  try {
    st = statSync(path);
  } catch {
    return false;
  }
  if (st.isFile()) {
    if (path.endsWith('.test.js')) out.push(path);
    return true;
  }
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
    const child = join(path, entry.name);
    if (entry.isDirectory()) collect(child, out);
    else if (entry.isFile() && entry.name.endsWith('.test.js')) out.push(child);
  }
  return true;
}

const files = [];
const missing = [];
for (const target of targets.length > 0 ? targets : ['dist']) {
  // A folder that exists but has no compiled tests yet is not an error; one that does not exist is.
  if (!collect(resolve(root, target), files)) missing.push(target);
}
if (missing.length > 0) {
  for (const target of missing) console.error(`run-tests: ${target} does not exist (misspelt, or the build did not run?)`);
  process.exit(2);
}
// The process-level suites first, the fault suite (the longest file) at their
// head: started last, a long file would run alone at the end while the other
// slot sits idle.
const rank = (f) => (f.includes('/test/faults/') ? 0 : f.includes('/test/') ? 1 : 2);
const unique = [...new Set(files)]
  .map((f) => relative(root, f))
  .sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
if (unique.length === 0) {
  console.error(`run-tests: no *.test.js files under ${targets.length > 0 ? targets.join(', ') : 'dist'} (did the build run?)`);
  process.exit(1);
}

const countsDir = mkdtempSync(join(tmpdir(), 'flexstore-run-tests-'));
const countsFile = join(countsDir, 'counts.json');
const countReporter = pathToFileURL(join(root, 'scripts', 'test-count-reporter.mjs')).href;
const child = spawn(
  process.execPath,
  [
    '--test',
    `--test-concurrency=${concurrency}`,
    `--test-timeout=${timeoutMs}`,
    `--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`,
    '--test-reporter-destination=stdout',
    `--test-reporter=${countReporter}`,
    `--test-reporter-destination=${countsFile}`,
    ...unique,
  ],
  { cwd: root, stdio: 'inherit' },
);
// Forward Ctrl-C/termination so an interrupted run does not leave test processes behind.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  let status = code ?? (signal ? 1 : 0);
  if (!signal) status = Math.max(status, checkEveryFileRanTests());
  rmSync(countsDir, { recursive: true, force: true });
  process.exit(status);
});

/** 0 when every file ran at least one test; otherwise names the others on stderr and returns 1. */
function checkEveryFileRanTests() {
  let counts;
  try {
    counts = JSON.parse(readFileSync(countsFile, 'utf8'));
  } catch (err) {
    console.error(`run-tests: cannot read the per-file test counts (${err.message})`);
    return 1;
  }
  let status = 0;
  // The slowest files, for keeping the suite within its time bound.
  const slowest = unique
    .map((file) => [file, counts[resolve(root, file)]?.durationMs ?? 0])
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12);
  if (slowest.some(([, ms]) => ms > 0)) {
    console.error(`run-tests: slowest files: ${slowest.map(([f, ms]) => `${relative('dist', f)} ${(ms / 1000).toFixed(1)}s`).join(', ')}`);
  }
  for (const file of unique) {
    const c = counts[resolve(root, file)] ?? { tests: 0, failedToRun: false };
    if (c.tests > 0) continue;
    status = 1;
    console.error(
      c.failedToRun
        ? `run-tests: ${file} reported no test results (it failed as a whole; see its error above)`
        : `run-tests: ${file} ran no tests`,
    );
  }
  return status;
}
