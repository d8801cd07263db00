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

import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));

let concurrency = process.env.TEST_CONCURRENCY || '2';
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
for (const target of targets.length > 0 ? targets : ['dist']) {
  // A folder that has no compiled tests yet is not an error; a misspelt one is worth a warning.
  if (!collect(resolve(root, target), files)) console.error(`run-tests: ${target} does not exist; skipped`);
}
const unique = [...new Set(files)].map((f) => relative(root, f)).sort();
if (unique.length === 0) {
  console.error(`run-tests: no *.test.js files under ${targets.length > 0 ? targets.join(', ') : 'dist'} (did the build run?)`);
  process.exit(1);
}

const child = spawn(process.execPath, ['--test', `--test-concurrency=${concurrency}`, ...unique], {
  cwd: root,
  stdio: 'inherit',
});
// Forward Ctrl-C/termination so an interrupted run does not leave test processes behind.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  process.exit(code ?? (signal ? 1 : 0));
});
