import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MEMBER_ID_PATTERN, deriveMemberId } from './member-id.js';
import { MemberTable } from './members.js';

const T0 = 1_700_000_000_000;

function recordingLog() {
  const warnings: Array<{ obj: object; msg?: string }> = [];
  return { warnings, log: { info() {}, warn: (obj: object, msg?: string) => warnings.push({ obj, msg }) } };
}

describe('deriveMemberId', () => {
  it('makes a readable id from the url', () => {
    assert.equal(deriveMemberId('http://127.0.0.1:8001'), 'http___127_0_0_1_8001');
    assert.equal(deriveMemberId('https://kv-1.local:9000'), 'https___kv-1_local_9000');
  });

  it('keeps long urls within the id rule and apart from each other', () => {
    const a = deriveMemberId(`http://${'a'.repeat(100)}.example:1`);
    const b = deriveMemberId(`http://${'a'.repeat(100)}.example:2`);
    assert.match(a, MEMBER_ID_PATTERN);
    assert.match(b, MEMBER_ID_PATTERN);
    assert.notEqual(a, b);
    assert.equal(a.length, 64);
  });
});

describe('MemberTable', () => {
  it('a join bumps the index; a plain heartbeat does not', () => {
    const t = new MemberTable({ downAfterMs: 1000 });
    assert.equal(t.index, 0);
    const r1 = t.register({ url: 'http://h:1', id: 'a' }, T0);
    assert.deepEqual([r1.changed, r1.membershipChanged], [true, true]);
    assert.equal(t.index, 1);
    const r2 = t.register({ url: 'http://h:1', id: 'a' }, T0 + 500);
    assert.deepEqual([r2.changed, r2.membershipChanged], [false, false]);
    assert.equal(t.index, 1);
    assert.equal(t.view().members[0]!.lastHeartbeat, T0 + 500);
    assert.equal(t.view().members[0]!.registeredAt, T0);
  });

  it('derives the id from the url when none is given', () => {
    const t = new MemberTable({ downAfterMs: 1000 });
    const r = t.register({ url: 'http://127.0.0.1:8001' }, T0);
    assert.equal(r.member.id, 'http___127_0_0_1_8001');
  });

  it('sweep marks silent members down once; a heartbeat brings them up', () => {
    const t = new MemberTable({ downAfterMs: 1000 });
    t.register({ url: 'http://h:1', id: 'a' }, T0);
    t.register({ url: 'http://h:2', id: 'b' }, T0);
    const before = t.index;
    assert.deepEqual(t.sweep(T0 + 1000), [], 'exactly downAfterMs old is still up');
    assert.deepEqual(t.sweep(T0 + 1001).sort(), ['a', 'b']);
    assert.equal(t.index, before + 1, 'one bump per sweep');
    assert.deepEqual(t.sweep(T0 + 5000), []);
    assert.equal(t.index, before + 1);
    assert.deepEqual(t.view().nodes, []);

    // a owns its ranges (b is still joining: its return would make it sync again, a membership change).
    const r = t.register({ url: 'http://h:1', id: 'a' }, T0 + 6000);
    assert.equal(r.changed, true);
    assert.equal(r.membershipChanged, false);
    assert.equal(t.index, before + 2);
    assert.deepEqual(t.view().nodes, ['http://h:1']);
  });

  it('another id at a known url is refused; authenticated and with the old member down, it replaces it', () => {
    const { log, warnings } = recordingLog();
    const t = new MemberTable({ downAfterMs: 1000, log });
    t.register({ url: 'http://h:1', id: 'old' }, T0);
    assert.throws(() => t.register({ url: 'http://h:1', id: 'new' }, T0 + 1), { code: 'MEMBER_BOUND' });
    assert.throws(() => t.register({ url: 'http://h:1', id: 'new', authenticated: true }, T0 + 1), { code: 'MEMBER_BOUND' }, 'the old member is up');
    t.sweep(T0 + 2000);
    assert.throws(() => t.register({ url: 'http://h:1', id: 'new' }, T0 + 2001), { code: 'MEMBER_BOUND' }, 'not authenticated');
    const r = t.register({ url: 'http://h:1', id: 'new', authenticated: true }, T0 + 2002);
    assert.equal(r.replacedId, 'old');
    assert.equal(r.membershipChanged, true);
    assert.deepEqual(t.view().members.map((m) => m.id), ['new']);
    assert.equal(warnings.filter((w) => /replacing/.test(w.msg ?? '')).length, 1);
    assert.throws(() => t.register({ url: 'http://h:2', id: 'old' }, T0 + 2003), /removed/);
  });

  it('a known id at another url is refused; authenticated and with the member down, the url moves', () => {
    const t = new MemberTable({ downAfterMs: 1000 });
    t.register({ url: 'http://h:1', id: 'a' }, T0);
    assert.throws(() => t.register({ url: 'http://h:9', id: 'a' }, T0 + 1), { code: 'MEMBER_BOUND' });
    assert.throws(() => t.register({ url: 'http://h:9', id: 'a', authenticated: true }, T0 + 1), { code: 'MEMBER_BOUND' });
    assert.equal(t.admit({ url: 'http://h:1', id: 'a' }, T0 + 1), 'heartbeat');
    t.sweep(T0 + 2000);
    assert.throws(() => t.admit({ url: 'http://h:9', id: 'a' }, T0 + 2001), { code: 'MEMBER_BOUND' });
    assert.equal(t.admit({ url: 'http://h:9', id: 'a', authenticated: true }, T0 + 2001), 'new-url');
    const r = t.register({ url: 'http://h:9', id: 'a', authenticated: true }, T0 + 2001);
    assert.equal(r.membershipChanged, true);
    assert.deepEqual(t.view().nodes, ['http://h:9']);
    assert.equal(t.size, 1);
    assert.equal(t.isKnownAt('a', 'http://h:9'), true);
    assert.equal(t.isKnownAt('a', 'http://h:1'), false);
    assert.equal(t.find({ url: 'http://h:1' }), undefined);
  });

  it('views are sorted by id, not arrival', () => {
    const t = new MemberTable({ downAfterMs: 1000 });
    for (const id of ['c', 'a', 'b']) t.register({ url: `http://${id}:1`, id }, T0);
    const v = t.view();
    assert.deepEqual(v.members.map((m) => m.id), ['a', 'b', 'c']);
    assert.deepEqual(v.nodes, ['http://a:1', 'http://b:1', 'http://c:1']);
    assert.deepEqual(t.records().map((m) => m.id), ['a', 'b', 'c']);
  });

  it('remove by id or url; a mismatched pair finds nothing', () => {
    const t = new MemberTable({ downAfterMs: 1000 });
    t.register({ url: 'http://h:1', id: 'a' }, T0);
    t.register({ url: 'http://h:2', id: 'b' }, T0);
    assert.equal(t.remove({ id: 'a', url: 'http://h:2' }), undefined);
    assert.equal(t.remove({ url: 'http://h:2' })?.member.id, 'b');
    assert.equal(t.remove({ id: 'a' })?.member.url, 'http://h:1');
    assert.equal(t.remove({ id: 'a' }), undefined);
    assert.equal(t.size, 0);
    assert.equal(t.index, 4);
  });

  it('load starts every member down and resumes past the persisted index', () => {
    const t = new MemberTable({ downAfterMs: 1000 });
    t.load([{ id: 'a', url: 'http://h:1', registeredAt: T0 - 2, lastHeartbeat: T0 - 1 }], 41);
    assert.equal(t.index, 42);
    assert.equal(t.view().members[0]!.state, 'down');
    assert.equal(t.view().members[0]!.lastHeartbeat, T0 - 1);
    t.register({ url: 'http://h:1', id: 'a' }, T0);
    assert.equal(t.index, 43);
    assert.equal(t.upCount, 1);
  });

  describe('waitForChange', () => {
    it('resolves at once when the index is already past', async () => {
      const t = new MemberTable({ downAfterMs: 1000 });
      t.register({ url: 'http://h:1', id: 'a' }, T0);
      await t.waitForChange(0, 60_000);
      assert.equal(t.waiting, 0);
    });

    it('wakes on a change, not on a plain heartbeat', async () => {
      const t = new MemberTable({ downAfterMs: 1000 });
      t.register({ url: 'http://h:1', id: 'a' }, T0);
      let woke = false;
      const p = t.waitForChange(1, 60_000).then(() => (woke = true));
      t.register({ url: 'http://h:1', id: 'a' }, T0 + 1);
      await Promise.resolve();
      assert.equal(woke, false);
      assert.equal(t.waiting, 1);
      t.register({ url: 'http://h:2', id: 'b' }, T0 + 2);
      await p;
      assert.equal(t.waiting, 0);
    });

    it('resolves after the timeout', async () => {
      const t = new MemberTable({ downAfterMs: 1000 });
      const start = Date.now();
      await t.waitForChange(0, 50);
      assert.ok(Date.now() - start >= 45);
      assert.equal(t.waiting, 0);
    });

    it('resolves on abort and on close', async () => {
      const t = new MemberTable({ downAfterMs: 1000 });
      const ac = new AbortController();
      const aborted = t.waitForChange(0, 60_000, ac.signal);
      const released = t.waitForChange(0, 60_000);
      assert.equal(t.waiting, 2);
      ac.abort();
      await aborted;
      t.close();
      await released;
      assert.equal(t.waiting, 0);
      await t.waitForChange(0, 60_000);
    });
  });
});

describe('MemberTable phases: joins and leaves complete only after the acquirers synced', () => {
  const progress = (syncedEpoch: number) => ({
    syncedEpoch,
    rangesTotal: 0,
    rangesDone: 0,
    keysMoved: 0,
    keysMovedTotal: 0,
  });

  it('the first member is active at once; later ones join', () => {
    const t = new MemberTable({ downAfterMs: 1000, vnodes: 16 });
    assert.equal(t.register({ url: 'http://h:1', id: 'a' }, T0).member.phase, 'active');
    assert.equal(t.register({ url: 'http://h:2', id: 'b' }, T0).member.phase, 'joining');
    assert.deepEqual(t.pendingAcquirers(), ['b']);
    // A report for an older epoch does not complete the join.
    t.register({ url: 'http://h:2', id: 'b', transfer: progress(t.epoch - 1) }, T0 + 1);
    assert.equal(t.find({ id: 'b' })?.phase, 'joining');
    t.register({ url: 'http://h:2', id: 'b', transfer: progress(t.epoch) }, T0 + 2);
    assert.equal(t.find({ id: 'b' })?.phase, 'active');
    assert.deepEqual(t.pendingAcquirers(), []);
  });

  it('a leaving member stays until the new owners synced, then is removed and refused', () => {
    const changes: number[] = [];
    const t = new MemberTable({ downAfterMs: 1000, vnodes: 16, onMembershipChange: () => changes.push(t.index) });
    for (const id of ['a', 'b', 'c', 'd']) {
      t.register({ url: `http://${id}`, id }, T0);
      t.register({ url: `http://${id}`, id, transfer: progress(t.epoch) }, T0);
    }
    for (const id of ['a', 'b', 'c', 'd']) assert.equal(t.find({ id })?.phase, 'active', id);
    const res = t.remove({ id: 'd' }, {}, T0 + 10);
    assert.equal(res?.removedNow, false);
    assert.equal(t.find({ id: 'd' })?.phase, 'leaving');
    const pending = t.pendingAcquirers();
    assert.ok(pending.length > 0 && !pending.includes('d'));
    for (const id of pending) t.register({ url: `http://${id}`, id, transfer: progress(t.epoch) }, T0 + 20);
    assert.equal(t.find({ id: 'd' }), undefined);
    assert.throws(() => t.register({ url: 'http://d', id: 'd' }, T0 + 30), /removed/);
    assert.ok(changes.length > 0);
  });

  it('refuses a member that was down longer than the tombstone grace', () => {
    const t = new MemberTable({ downAfterMs: 100, tombstoneGraceMs: 1000 });
    t.register({ url: 'http://h:1', id: 'a' }, T0);
    t.sweep(T0 + 500);
    assert.equal(t.find({ id: 'a' })?.state, 'down');
    assert.throws(() => t.register({ url: 'http://h:1', id: 'a' }, T0 + 5000), /tombstone grace/);
  });

  it('DOWN_REMOVE_AFTER decommissions a member that stays down', () => {
    const t = new MemberTable({ downAfterMs: 100, downRemoveAfterMs: 1000, vnodes: 16 });
    for (const id of ['a', 'b', 'c']) {
      t.register({ url: `http://${id}`, id }, T0);
      t.register({ url: `http://${id}`, id, transfer: progress(t.epoch) }, T0);
    }
    t.register({ url: 'http://a', id: 'a' }, T0 + 1500);
    t.register({ url: 'http://b', id: 'b' }, T0 + 1500);
    t.sweep(T0 + 1500);
    // With three members and N=3 nobody has to acquire anything: c is gone at once.
    assert.equal(t.find({ id: 'c' }), undefined);
  });
});
