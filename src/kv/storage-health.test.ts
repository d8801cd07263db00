import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidRequest, StorageFull } from '../cluster/errors.js';
import { StorageHealth, storageFailure, type StorageState } from './storage-health.js';

/**
 * The storage-health state machine on its own: no LMDB, commits and probes
 * are functions the test controls. Errors are shaped as lmdb-js and Node
 * raise them (a numeric or string `code`; a failed asynchronous commit's
 * "Commit failed" with its cause in a `commitError` promise).
 */

function errno(code: number | string, message = 'write failed'): Error {
  return Object.assign(new Error(message), { code });
}

/** What lmdb-js rejects a failed asynchronous commit's writes with. */
function lmdbCommitFailure(cause: unknown): Error {
  const commitError = Promise.reject(cause);
  return Object.assign(new Error('Commit failed (see commitError for details)'), { commitError });
}

function harness(probeMs = 20) {
  const changes: Array<[StorageState, string | undefined]> = [];
  const refused: string[] = [];
  let probeResult: () => Promise<void> = () => Promise.reject(errno(28));
  let probes = 0;
  const health = new StorageHealth({
    probeMs,
    probe: () => {
      probes++;
      return probeResult();
    },
    onChange: (state, cause) => changes.push([state, cause]),
    onRefused: (path) => refused.push(path),
  });
  return {
    health,
    changes,
    refused,
    get probes() {
      return probes;
    },
    probeWith(fn: () => Promise<void>) {
      probeResult = fn;
    },
  };
}

async function until(what: string, cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('StorageHealth', () => {
  it('passes commits and their ordinary failures through while ok', async () => {
    const h = harness();
    assert.equal(await h.health.commit('replica_http', async () => 42), 42);
    await assert.rejects(
      h.health.commit('replica_http', () => Promise.reject(new InvalidRequest('bad'))),
      (err: unknown) => err instanceof InvalidRequest,
    );
    await assert.rejects(h.health.commit('replica_http', () => Promise.reject(errno('EACCES'))), /write failed/);
    assert.equal(h.health.state, 'ok');
    assert.deepEqual(h.changes, []);
    assert.deepEqual(h.refused, []);
    await h.health.close();
  });

  for (const [code, name] of [[28, 'ENOSPC'], [5, 'EIO'], [-30792, 'MDB_MAP_FULL'], ['ENOSPC', 'ENOSPC'], ['EDQUOT', 'EDQUOT']] as const) {
    it(`a commit failing with ${JSON.stringify(code)} turns it full and is answered STORAGE_FULL`, async () => {
      const h = harness(10_000);
      const failure = errno(code);
      await assert.rejects(h.health.commit('replica_tcp', () => Promise.reject(failure)), (err: unknown) => {
        assert.ok(err instanceof StorageFull);
        assert.equal(err.status, 507);
        assert.equal(err.details.reason, name);
        assert.equal(err.cause, failure);
        return true;
      });
      assert.equal(h.health.state, 'full');
      assert.equal(h.health.fullCause, name);
      assert.ok(h.health.since > 0);
      assert.deepEqual(h.changes, [['full', name]]);
      assert.deepEqual(h.refused, ['replica_tcp']);
      await h.health.close();
    });
  }

  it("classifies lmdb-js's 'Commit failed' by its commitError, and handles that promise", async () => {
    const unhandled: unknown[] = [];
    const listener = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', listener);
    try {
      assert.equal(await storageFailure(lmdbCommitFailure(errno(5, 'Input/output error'))), 'EIO');
      // A commit that failed for another reason is not a full disk.
      assert.equal(await storageFailure(lmdbCommitFailure(errno(-30783, 'MDB_BAD_TXN'))), undefined);
      assert.equal(await storageFailure(new Error('Commit failed')), undefined);
      const h = harness(10_000);
      await assert.rejects(h.health.commit('sync_apply', () => Promise.reject(lmdbCommitFailure(errno(28)))), StorageFull);
      assert.equal(h.health.fullCause, 'ENOSPC');
      await h.health.close();
      // Give Node a turn to report any rejection nobody handled.
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', listener);
    }
  });

  it('while full, refuses every write up front without attempting its commit', async () => {
    const h = harness(10_000);
    await assert.rejects(h.health.commit('replica_http', () => Promise.reject(errno(28))), StorageFull);
    let attempted = 0;
    for (const path of ['replica_http', 'hints', 'purge']) {
      await assert.rejects(
        h.health.commit(path, async () => {
          attempted++;
        }),
        (err: unknown) => err instanceof StorageFull && err.details.reason === 'ENOSPC',
      );
    }
    assert.equal(attempted, 0);
    assert.deepEqual(h.refused, ['replica_http', 'replica_http', 'hints', 'purge']);
    assert.deepEqual(h.changes, [['full', 'ENOSPC']], 'one change, however many refusals');
    await h.health.close();
  });

  it('probes every probeMs while full and turns ok at the first probe that commits', async () => {
    const h = harness(20);
    assert.equal(h.probes, 0, 'no probe while ok');
    await assert.rejects(h.health.commit('replica_http', () => Promise.reject(errno(5))), StorageFull);
    await until('three failed probes', () => h.probes >= 3);
    assert.equal(h.health.state, 'full');
    // A failing probe with another cause keeps it full and names the new cause.
    h.probeWith(() => Promise.reject(lmdbCommitFailure(errno(28))));
    const before = h.probes;
    await until('a probe failing with ENOSPC', () => h.probes > before && h.health.fullCause === 'ENOSPC');
    assert.equal(h.health.state, 'full');
    h.probeWith(() => Promise.resolve());
    await until('ok again', () => h.health.state === 'ok');
    assert.deepEqual(h.changes, [['full', 'EIO'], ['ok', undefined]]);
    assert.equal(h.health.fullCause, undefined);
    assert.equal(h.health.since, 0);
    const probes = h.probes;
    assert.equal(await h.health.commit('replica_http', async () => 'written'), 'written');
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(h.probes, probes, 'no probe once ok');
    await h.health.close();
  });

  it('turns full again on the next failed commit after recovering', async () => {
    const h = harness(10);
    h.probeWith(() => Promise.resolve());
    await assert.rejects(h.health.commit('replica_http', () => Promise.reject(errno(28))), StorageFull);
    await until('ok', () => h.health.state === 'ok');
    await assert.rejects(h.health.commit('sync_pull', () => Promise.reject(errno(5))), StorageFull);
    assert.equal(h.health.state, 'full');
    assert.deepEqual(h.changes.map(([s]) => s), ['full', 'ok', 'full']);
    await h.health.close();
  });

  it('observe() turns it full for a storage failure outside a write (a periodic fsync) and ignores others', async () => {
    const h = harness(10_000);
    await h.health.observe(new Error('not a storage code'));
    assert.equal(h.health.state, 'ok');
    await h.health.observe(errno(5));
    assert.equal(h.health.state, 'full');
    assert.deepEqual(h.refused, [], 'nothing was refused: no write was attempted');
    await h.health.close();
  });

  it('close() stops the probing', async () => {
    const h = harness(15);
    await assert.rejects(h.health.commit('replica_http', () => Promise.reject(errno(28))), StorageFull);
    await until('a probe', () => h.probes >= 1);
    await h.health.close();
    const probes = h.probes;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(h.probes, probes);
  });
});
