import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDirs } from '../test/support/index.js';
import type { MemberRecord } from './members.js';
import { CorruptMemberFile, MEMBER_FILE, MemberStore } from './store.js';

const tempDir = tempDirs('flexstore-registry-store-');

const rec = (id: string): MemberRecord => ({ id, url: `http://${id}:1`, registeredAt: 1, lastHeartbeat: 2 });

describe('MemberStore', () => {
  it('load on a fresh dir returns null and creates the dir', async () => {
    const dir = join(tempDir(), 'nested', 'registry');
    const store = new MemberStore(dir);
    assert.equal(await store.load(), null);
    assert.deepEqual(await readdir(dir), []);
  });

  it('round-trips a snapshot', async () => {
    const dir = tempDir();
    const store = new MemberStore(dir);
    await store.save({ index: 7, members: [rec('a'), rec('b')] });
    const loaded = await new MemberStore(dir).load();
    assert.deepEqual(loaded, { index: 7, epoch: 0, members: [rec('a'), rec('b')], removed: [] });
    assert.deepEqual(await readdir(dir), [MEMBER_FILE], 'no tmp file left behind');
  });

  it('concurrent saves never overlap and the newest wins', async () => {
    const dir = tempDir();
    const store = new MemberStore(dir);
    const saves = [];
    for (let i = 1; i <= 20; i++) {
      saves.push(store.save({ index: i, members: Array.from({ length: i }, (_, k) => rec(`m${k}`)) }));
    }
    await Promise.all(saves);
    await store.flush();
    const loaded = await store.load();
    assert.equal(loaded?.index, 20);
    assert.equal(loaded?.members.length, 20);
  });

  it('a save after a finished drain is written too', async () => {
    const dir = tempDir();
    const store = new MemberStore(dir);
    await store.save({ index: 1, members: [rec('a')] });
    await store.save({ index: 2, members: [rec('a'), rec('b')] });
    assert.equal((await store.load())?.index, 2);
  });

  it('ignores and removes a leftover tmp file', async () => {
    const dir = tempDir();
    const store = new MemberStore(dir);
    await store.save({ index: 3, members: [rec('a')] });
    await writeFile(join(dir, `${MEMBER_FILE}.tmp`), '{"torn');
    assert.equal((await store.load())?.index, 3);
    assert.deepEqual(await readdir(dir), [MEMBER_FILE]);
  });

  it('a failed write rejects save and flush', async () => {
    const dir = tempDir();
    const store = new MemberStore(join(dir, 'missing-dir'));
    await assert.rejects(store.save({ index: 1, members: [] }), { code: 'ENOENT' });
    await store.flush();
  });

  const corrupt: Array<[string, string]> = [
    ['not JSON', '{"version": 1, "index": '],
    ['not an object', '[]'],
    ['unknown version', '{"version": 2, "index": 0, "members": []}'],
    ['bad index', '{"version": 1, "index": -1, "members": []}'],
    ['members not an array', '{"version": 1, "index": 0, "members": {}}'],
    ['member without url', '{"version": 1, "index": 0, "members": [{"id": "a", "registeredAt": 1, "lastHeartbeat": 1}]}'],
    [
      'duplicate ids',
      JSON.stringify({ version: 1, index: 0, members: [rec('a'), rec('a')] }),
    ],
  ];
  for (const [name, text] of corrupt) {
    it(`a corrupt file fails loading: ${name}`, async () => {
      const dir = tempDir();
      await writeFile(join(dir, MEMBER_FILE), text);
      await assert.rejects(new MemberStore(dir).load(), (err: unknown) => {
        assert.ok(err instanceof CorruptMemberFile);
        assert.match(err.message, /members\.json is corrupt/);
        return true;
      });
    });
  }

  it('writes readable JSON with a format version', async () => {
    const dir = tempDir();
    await new MemberStore(dir).save({ index: 1, members: [rec('a')] });
    const data = JSON.parse(await readFile(join(dir, MEMBER_FILE), 'utf8'));
    assert.equal(data.version, 1);
    assert.deepEqual(data.members, [rec('a')]);
  });
});
