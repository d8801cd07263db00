import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startKvServer } from './server.js';

const root = mkdtempSync(join(tmpdir(), 'flexstore-kv-config-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('a bad config is refused, naming the field, before a data dir is created or a port bound', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ advertiseTcpPort: 0 }, /advertiseTcpPort must be a port from 1 to 65535/],
    [{ advertiseTcpPort: 70000 }, /advertiseTcpPort/],
    [{ replicationFactor: 0 }, /replicationFactor/],
    [{ sync: 'sometimes' }, /sync must be 'commit' or 'interval'/],
  ];
  for (const [i, [bad, message]] of cases.entries()) {
    const dataDir = join(root, `kv-${i}`);
    await assert.rejects(startKvServer({ port: 0, registryUrl: 'http://127.0.0.1:9', dataDir, ...bad }), message);
    assert.equal(existsSync(dataDir), false, `${JSON.stringify(bad)} created its data dir`);
  }
});
