import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDirs } from '../test/support/index.js';
import { NODE_ID_FILE, NodeIdError, loadOrCreateNodeId } from './node-id.js';

const tempDir = tempDirs('flexstore-node-id-');

test('generates an id once and keeps it', () => {
  const dir = tempDir();
  const id = loadOrCreateNodeId(dir);
  assert.match(id, /^kv-[0-9a-f]{12}$/);
  assert.equal(readFileSync(join(dir, NODE_ID_FILE), 'utf8').trim(), id);
  assert.equal(loadOrCreateNodeId(dir), id);
  assert.deepEqual(readdirSync(dir), [NODE_ID_FILE], 'no temp files left behind');
});

test('ids differ between data dirs', () => {
  assert.notEqual(loadOrCreateNodeId(tempDir()), loadOrCreateNodeId(tempDir()));
});

test('creates a missing data dir', () => {
  const dir = join(tempDir(), 'nested', 'kv-1');
  const id = loadOrCreateNodeId(dir);
  assert.equal(loadOrCreateNodeId(dir), id);
});

test('an explicit id is stored and must match later', () => {
  const dir = tempDir();
  assert.equal(loadOrCreateNodeId(dir, 'kv_alpha-1'), 'kv_alpha-1');
  assert.equal(loadOrCreateNodeId(dir), 'kv_alpha-1');
  assert.equal(loadOrCreateNodeId(dir, 'kv_alpha-1'), 'kv_alpha-1');
  assert.throws(() => loadOrCreateNodeId(dir, 'kv-beta'), (err: unknown) => {
    assert.ok(err instanceof NodeIdError);
    assert.match(err.message, /belongs to node "kv_alpha-1", not "kv-beta"/);
    return true;
  });
});

test('a generated id conflicts with a different explicit one', () => {
  const dir = tempDir();
  const id = loadOrCreateNodeId(dir);
  assert.throws(() => loadOrCreateNodeId(dir, 'other'), NodeIdError);
  assert.equal(loadOrCreateNodeId(dir, id), id);
});

test('rejects invalid explicit ids', () => {
  const dir = tempDir();
  for (const bad of ['', 'a b', 'x'.repeat(65), 'ü', 'a/b', 'a.b']) {
    assert.throws(() => loadOrCreateNodeId(dir, bad), NodeIdError, JSON.stringify(bad));
  }
  assert.deepEqual(readdirSync(dir), [], 'nothing stored for a rejected id');
  assert.equal(loadOrCreateNodeId(dir, 'x'.repeat(64)), 'x'.repeat(64));
});

test('refuses a corrupt stored id instead of replacing it', () => {
  const dir = tempDir();
  writeFileSync(join(dir, NODE_ID_FILE), 'not an id\n');
  assert.throws(() => loadOrCreateNodeId(dir), /not a node id/);
  assert.equal(readFileSync(join(dir, NODE_ID_FILE), 'utf8'), 'not an id\n');
});
