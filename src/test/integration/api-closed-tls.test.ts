import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * The whole API suite (api.test.ts), unchanged, against a closed cluster with
 * TLS on every link: test support's FLEXSTORE_TEST_TLS and
 * FLEXSTORE_TEST_SECRET start every cluster of that file with certificates
 * of `flexstore certs` and a cluster secret, and sign the suite's own probes
 * of member paths. Run as a child so those switches hold for that file alone.
 */

const here = path.dirname(fileURLToPath(import.meta.url));

test('the API suite passes on a cluster with TLS and a cluster secret', { timeout: 240_000 }, async () => {
  const file = path.join(here, 'api.test.js');
  // Without this the child would report to this process's runner instead of printing TAP.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  let stdout = '';
  let code = 0;
  try {
    ({ stdout } = await promisify(execFile)(process.execPath, ['--test', '--test-reporter=tap', file], {
      env: { ...env, FLEXSTORE_TEST_TLS: '1', FLEXSTORE_TEST_SECRET: 'api-suite-cluster-secret-0123456789' },
      maxBuffer: 64 * 1024 * 1024,
    }));
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    code = e.code ?? 1;
    stdout = e.stdout ?? '';
  }
  const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(stdout)?.[1] ?? NaN);
  const failed = stdout.split('\n').filter((l) => /^\s*not ok /.test(l));
  assert.equal(code, 0, `api.test.js failed on a closed TLS cluster:\n${failed.join('\n')}\n${stdout.slice(-4000)}`);
  assert.ok(count('pass') >= 10, `too few API tests ran: ${count('pass')}`);
  assert.equal(count('fail'), 0);
  assert.equal(count('skipped'), 0);
});
