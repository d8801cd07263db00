import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TransferProgress } from '../cluster/types.js';
import { MAX_REMOVED, MemberTable } from './members.js';

const T0 = 1_700_000_000_000;
const progress = (syncedEpoch: number): TransferProgress => ({
  syncedEpoch,
  rangesTotal: 0,
  rangesDone: 0,
  keysMoved: 0,
  keysMovedTotal: 0,
});

/** A table with `ids` active (each joined and synced in turn). */
function activeTable(ids: string[], opts: Partial<ConstructorParameters<typeof MemberTable>[0]> = {}) {
  let persists = 0;
  const t = new MemberTable({ downAfterMs: 100, vnodes: 16, onMembershipChange: () => persists++, ...opts });
  for (const id of ids) {
    t.register({ url: `http://${id}`, id }, T0);
    t.register({ url: `http://${id}`, id, transfer: progress(t.epoch) }, T0);
  }
  for (const id of ids) assert.equal(t.find({ id })?.phase, 'active', id);
  return { t, persists: () => persists };
}

const phases = (t: MemberTable) => Object.fromEntries(t.view().members.map((m) => [m.id, m.phase]));

describe('JOIN_TIMEOUT', () => {
  it('a joiner down longer than the timeout is dropped, not banned, and may register again', () => {
    const { t } = activeTable(['a', 'b', 'c'], { joinTimeoutMs: 1000 });
    t.register({ url: 'http://j', id: 'j' }, T0 + 10);
    assert.equal(t.find({ id: 'j' })?.phase, 'joining');
    t.sweep(T0 + 200);
    assert.equal(t.find({ id: 'j' })?.state, 'down');
    t.sweep(T0 + 1000);
    assert.equal(t.find({ id: 'j' })?.phase, 'joining', 'not yet past the timeout');
    const epoch = t.epoch;
    t.sweep(T0 + 1011);
    assert.equal(t.find({ id: 'j' }), undefined, 'dropped');
    assert.ok(t.epoch > epoch);
    assert.deepEqual(t.pendingAcquirers(), []);
    assert.deepEqual(t.removedIds(), []);
    assert.equal(t.register({ url: 'http://j', id: 'j' }, T0 + 2000).member.phase, 'joining', 'it starts over');
  });

  it('a dead joiner blocks a decommission until the timeout drops it; then the decommission completes', () => {
    const { t } = activeTable(['a', 'b', 'c', 'd'], { joinTimeoutMs: 1000 });
    t.register({ url: 'http://j', id: 'j' }, T0 + 10);
    t.remove({ id: 'd' }, {}, T0 + 20);
    // Everybody else keeps beating and reports every epoch; j is dead.
    const beatAll = (now: number) => {
      for (const id of ['a', 'b', 'c', 'd']) if (t.find({ id })) t.register({ url: `http://${id}`, id, transfer: progress(t.epoch) }, now);
    };
    for (let now = T0 + 100; now <= T0 + 1000; now += 100) {
      beatAll(now);
      t.sweep(now);
    }
    assert.equal(t.find({ id: 'd' })?.phase, 'leaving', 'stuck behind the dead joiner');
    assert.ok(t.pendingAcquirers().includes('j'));
    for (let now = T0 + 1100; now <= T0 + 1300; now += 100) {
      beatAll(now);
      t.sweep(now);
    }
    beatAll(T0 + 1400);
    assert.equal(t.find({ id: 'j' }), undefined);
    assert.equal(t.find({ id: 'd' }), undefined, 'the decommission completed');
  });

  it('an acquirer that was down syncs again before the change completes', () => {
    const { t } = activeTable(['a', 'b', 'c']);
    t.register({ url: 'http://j', id: 'j' }, T0 + 10);
    t.sweep(T0 + 500);
    const epoch = t.epoch;
    // It comes back claiming the epoch it synced before it went away.
    t.register({ url: 'http://j', id: 'j', transfer: progress(epoch) }, T0 + 600);
    assert.ok(t.epoch > epoch, 'its return raised the epoch');
    assert.equal(t.find({ id: 'j' })?.phase, 'joining');
    t.register({ url: 'http://j', id: 'j', transfer: progress(t.epoch) }, T0 + 700);
    assert.equal(t.find({ id: 'j' })?.phase, 'active');
  });
});

describe('MAX_JOINING', () => {
  it('beyond the limit new members wait as pending and move on in registration order', () => {
    const { t } = activeTable(['a'], { maxJoining: 2 });
    for (const [i, id] of ['j1', 'j2', 'p1', 'p2', 'p3'].entries()) t.register({ url: `http://${id}`, id }, T0 + 10 + i);
    assert.deepEqual(phases(t), { a: 'active', j1: 'joining', j2: 'joining', p1: 'pending', p2: 'pending', p3: 'pending' });
    assert.deepEqual(t.pendingAcquirers().sort(), ['j1', 'j2'], 'pending members acquire nothing');
    // Pending members are in no ring: the view says so and they take no ranges.
    const beat = (id: string, now: number) => t.register({ url: `http://${id}`, id, transfer: progress(t.epoch) }, now);
    for (const id of ['a', 'p1', 'p2', 'p3']) beat(id, T0 + 20);
    beat('j1', T0 + 30);
    beat('j2', T0 + 30);
    assert.deepEqual(phases(t), { a: 'active', j1: 'active', j2: 'active', p1: 'joining', p2: 'joining', p3: 'pending' });
    for (const id of ['p1', 'p2']) beat(id, T0 + 40);
    assert.equal(t.find({ id: 'p3' })?.phase, 'joining');
  });

  it('a pending member that is down keeps its place but is skipped; it is dropped after JOIN_TIMEOUT', () => {
    const { t } = activeTable(['a'], { maxJoining: 1, joinTimeoutMs: 1000 });
    t.register({ url: 'http://j', id: 'j' }, T0 + 10);
    t.register({ url: 'http://p1', id: 'p1' }, T0 + 11);
    t.register({ url: 'http://p2', id: 'p2' }, T0 + 12);
    for (const id of ['a', 'j', 'p2']) t.register({ url: `http://${id}`, id }, T0 + 500);
    t.sweep(T0 + 500);
    assert.equal(t.find({ id: 'p1' })?.state, 'down');
    t.register({ url: 'http://j', id: 'j', transfer: progress(t.epoch) }, T0 + 510);
    assert.deepEqual(phases(t), { a: 'active', j: 'active', p1: 'pending', p2: 'joining' });
    for (const id of ['a', 'j', 'p2']) t.register({ url: `http://${id}`, id }, T0 + 1500);
    t.sweep(T0 + 1500);
    assert.equal(t.find({ id: 'p1' }), undefined);
  });

  it('the view and the member file keep the pending phase', () => {
    const { t } = activeTable(['a'], { maxJoining: 1 });
    t.register({ url: 'http://j', id: 'j' }, T0 + 10);
    t.register({ url: 'http://p', id: 'p' }, T0 + 11);
    assert.equal(t.records().find((r) => r.id === 'p')?.phase, 'pending');
    const again = new MemberTable({ downAfterMs: 100, vnodes: 16 });
    again.load(t.records(), t.index, { epoch: t.epoch });
    assert.equal(again.find({ id: 'p' })?.phase, 'pending');
  });
});

describe('MAX_MEMBERS and bounds', () => {
  it('a new member beyond the cap is refused; known members still beat', () => {
    const t = new MemberTable({ downAfterMs: 100, vnodes: 16, maxMembers: 3 });
    for (const id of ['a', 'b', 'c']) t.register({ url: `http://${id}`, id }, T0);
    assert.throws(() => t.register({ url: 'http://d', id: 'd' }, T0 + 1), { code: 'TOO_MANY_MEMBERS' });
    assert.throws(() => t.admit({ url: 'http://d', id: 'd' }, T0 + 1), { code: 'TOO_MANY_MEMBERS' });
    assert.equal(t.register({ url: 'http://a', id: 'a' }, T0 + 2).member.id, 'a');
    assert.equal(t.size, 3);
  });

  it('the removed list is bounded', () => {
    const t = new MemberTable({ downAfterMs: 100, vnodes: 4 });
    t.load([], 0, { removed: Array.from({ length: MAX_REMOVED + 10 }, (_, i) => ({ id: `r${i}`, at: T0 + i })) });
    assert.equal(t.removedIds().length, MAX_REMOVED);
    assert.equal(t.removedIds()[0]!.id, 'r10', 'the oldest go first');
  });
});

describe('heartbeat cost', () => {
  it('a heartbeat that changes nothing builds no placement, checks no completion and writes no file', () => {
    const { t, persists } = activeTable(['a', 'b', 'c']);
    t.register({ url: 'http://j', id: 'j' }, T0 + 10);
    // The owners learn the new epoch once (that report is a change); after it, beats change nothing.
    for (const id of ['a', 'b', 'c']) t.register({ url: `http://${id}`, id, transfer: progress(t.epoch) }, T0 + 11);
    t.register({ url: 'http://j', id: 'j', transfer: progress(t.epoch - 1) }, T0 + 11);
    assert.deepEqual(t.pendingAcquirers(), ['j']);
    const before = { ...t.stats, persists: persists(), index: t.index };
    for (let i = 0; i < 1000; i++) {
      for (const id of ['a', 'b', 'c']) t.register({ url: `http://${id}`, id, transfer: progress(t.epoch) }, T0 + 20 + i);
      // Progress moves every beat (rangesDone), the synced epoch does not.
      t.register({ url: 'http://j', id: 'j', transfer: { ...progress(t.epoch - 1), rangesDone: i } }, T0 + 20 + i);
    }
    assert.deepEqual({ ...t.stats, persists: persists(), index: t.index }, before);
    assert.equal(t.find({ id: 'j' })?.transfer?.rangesDone, 999, 'progress is still recorded');
  });

  it('sweeps of a quiet table build nothing either', () => {
    const { t } = activeTable(['a', 'b', 'c']);
    t.register({ url: 'http://j', id: 'j' }, T0 + 10);
    t.pendingAcquirers();
    const before = { ...t.stats };
    for (let i = 0; i < 100; i++) t.sweep(T0 + 20);
    assert.deepEqual(t.stats, before);
  });
});
