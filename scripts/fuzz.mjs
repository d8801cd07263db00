#!/usr/bin/env node
// Runs only the property-based fuzz tests (every *.fuzz.test.js under dist/),
// through scripts/run-tests.mjs, with many more cases than the test suite
// gives them: FUZZ_RUNS when set, else FUZZ_LONG_FACTOR × the default
// (src/test/support/fuzz.ts). Build first (`npm run fuzz` does).
//
//   node scripts/fuzz.mjs [run-tests options]
//
// A failure prints its seed and path; FUZZ_SEED and FUZZ_PATH replay it with
// the one test run alone (src/test/support/fuzz.ts shows the command).

import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const dist = join(root, 'dist');
const support = join(dist, 'test', 'support', 'fuzz.js');
if (!existsSync(support)) {
  console.error('fuzz: dist/test/support/fuzz.js is missing (did the build run?)');
  process.exit(2);
}
const { DEFAULT_FUZZ_RUNS, FUZZ_LONG_FACTOR } = await import(pathToFileURL(support).href);

function collect(dir, out) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) collect(path, out);
    else if (entry.name.endsWith('.fuzz.test.js')) out.push(relative(root, path));
  }
  return out;
}
const files = collect(dist, []).sort();
if (files.length === 0) {
  console.error('fuzz: no *.fuzz.test.js under dist/');
  process.exit(1);
}

const runs = process.env.FUZZ_RUNS || String(DEFAULT_FUZZ_RUNS * FUZZ_LONG_FACTOR);
console.error(`fuzz: ${files.length} files, FUZZ_RUNS=${runs}`);
const child = spawn(process.execPath, [join(root, 'scripts', 'run-tests.mjs'), ...process.argv.slice(2), ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, FUZZ_RUNS: runs },
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
