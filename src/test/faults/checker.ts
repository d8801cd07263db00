import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Placement } from '../../cluster/placement.js';
import { Ring } from '../../cluster/ring.js';
import type { Member } from '../../cluster/types.js';
import { eachLimit, http, kvUrl } from '../support/index.js';
import { versionOfEtag, type History, type ReadRecord, type WriteRecord } from './workload.js';

/**
 * Judges a workload history against what FlexStore promises (README,
 * "Consistency model"), with one gateway stamping every version so versions
 * follow real time:
 *
 * 1. Final state. After the faults heal, a quorum read of each key returns its
 *    newest acknowledged write (highest version among the acks), or a write
 *    whose outcome was indeterminate and that had not finished before that ack
 *    was sent — only such a write can carry a newer version. A key with no ack
 *    may read as absent or as any of its indeterminate writes. Anything else —
 *    an older value, a value nobody wrote, absence where an ack says there is
 *    a value, a key that cannot be read — is a lost key.
 * 2. No stale reads. A quorum read during the workload returns a version at
 *    least as new as every write acknowledged before the read was sent.
 * 3. Replicas. Each key's N owners (computed from the registry's members with
 *    the same ring every gateway uses) hold the newest acknowledged version or
 *    newer, read directly from each KV server's replica API: no gateway in
 *    between, so the check itself repairs nothing. It only runs when no
 *    member is joining, leaving or down: until then the owners are in flux.
 * 4. Acknowledgements. Each acknowledged write names at least W of its key's
 *    owners as the replicas that took it (checkAckQuorums), and no write is
 *    acknowledged entirely inside a window in which no quorum could answer
 *    (acksInside).
 */

export interface Expectation {
  /** Newest acknowledged write, by version. */
  floor?: WriteRecord;
  /** Writes whose value the final read may return: the floor and the indeterminate writes after it. */
  candidates: WriteRecord[];
  /** Whether the key may read as absent (no ack, or a candidate is a delete). */
  absentAllowed: boolean;
}

export function expectationFor(writes: readonly WriteRecord[]): Expectation {
  let floor: WriteRecord | undefined;
  for (const w of writes) {
    if (w.outcome === 'acked' && (!floor || w.version! > floor.version!)) floor = w;
  }
  // An indeterminate write that finished before the floor was sent was stamped
  // before it, so last-writer-wins must have discarded it.
  const late = writes.filter((w) => w.outcome === 'indeterminate' && (!floor || w.end > floor.start));
  const candidates = floor ? [floor, ...late] : late;
  const absentAllowed = !floor || candidates.some((w) => w.kind === 'delete');
  return { floor, candidates, absentAllowed };
}

export interface FinalRead {
  key: string;
  status: number;
  value?: string;
  version?: string;
  replicas?: string;
  error?: string;
}

export interface LostKey {
  key: string;
  why: string;
  read: FinalRead;
  expected: { value: string | null; version: string; seq: number } | null;
  /** Indeterminate writes that would also have been accepted. */
  alsoAllowed: Array<{ value: string | null; seq: number }>;
}

/** Rule 1: every key against its final quorum read. */
export function checkFinalReads(history: History, reads: ReadonlyMap<string, FinalRead>): LostKey[] {
  const lost: LostKey[] = [];
  for (const [key, writes] of history.writes) {
    const read = reads.get(key) ?? { key, status: 0, error: 'not read' };
    const exp = expectationFor(writes);
    const why = judgeFinal(history, key, exp, read);
    if (why) {
      lost.push({
        key,
        why,
        read,
        expected: exp.floor ? { value: exp.floor.value, version: exp.floor.version!, seq: exp.floor.seq } : null,
        alsoAllowed: exp.candidates.filter((w) => w !== exp.floor).map((w) => ({ value: w.value, seq: w.seq })),
      });
    }
  }
  return lost;
}

function judgeFinal(history: History, key: string, exp: Expectation, read: FinalRead): string | null {
  if (read.status === 404) {
    return exp.absentAllowed ? null : 'absent, but an acknowledged write says it holds a value';
  }
  if (read.status !== 200) return `unreadable: ${read.status || ''} ${read.error ?? ''}`.trim();
  const w = history.writeOf(read.value ?? '');
  if (!w || w.key !== key) return 'holds a value no write to this key produced';
  if (!exp.candidates.includes(w)) {
    if (w.outcome === 'rejected') return 'holds a value from a write the gateway rejected';
    return w.outcome === 'acked'
      ? 'holds an acknowledged value older than the newest acknowledged one'
      : 'holds a value from a write that was superseded before the newest acknowledged one';
  }
  if (w === exp.floor && read.version !== w.version) return `newest acknowledged value under another version`;
  if (w !== exp.floor && exp.floor && !(read.version! > exp.floor.version!)) {
    return 'an indeterminate write shows with a version not newer than the newest ack';
  }
  return null;
}

export interface StaleRead {
  read: ReadRecord;
  why: string;
  /** The newest write acknowledged before the read was sent, when that is what it went back past. */
  ackedBefore?: { value: string | null; version: string; seq: number };
}

/**
 * Rule 2: reads during the workload never go back past an acknowledged write,
 * and every value read is the one its write stored under that version. A
 * DELETE answered 404 said the key was absent: it is judged as a read.
 */
export function checkStaleReads(history: History): StaleRead[] {
  const stale: StaleRead[] = [];
  const absentByDelete: ReadRecord[] = history
    .allWrites()
    .filter((w) => w.outcome === 'noop')
    .map((w) => ({ key: w.key, start: w.start, end: w.end, outcome: 'absent' }));
  for (const r of [...history.reads, ...absentByDelete]) {
    if (r.outcome === 'failed') continue;
    const writes = history.writes.get(r.key) ?? [];
    if (r.outcome === 'value') {
      const why = misattributed(history, r);
      if (why) {
        stale.push({ read: r, why });
        continue;
      }
    }
    let floor: WriteRecord | undefined;
    for (const w of writes) {
      if (w.outcome === 'acked' && w.end < r.start && (!floor || w.version! > floor.version!)) floor = w;
    }
    if (!floor) continue;
    let ok: boolean;
    if (r.outcome === 'value') ok = r.version !== undefined && r.version >= floor.version!;
    else {
      // Absent is right if the floor is a delete, if an acknowledged delete
      // with a newer version than the floor had begun before the read ended,
      // or if an indeterminate delete (its version unknown) may be newer: it
      // had begun before the read ended and had not ended before the floor began.
      ok =
        floor.kind === 'delete' ||
        writes.some(
          (w) =>
            w.kind === 'delete' &&
            w.start < r.end &&
            ((w.outcome === 'acked' && w.version! > floor!.version!) ||
              (w.outcome === 'indeterminate' && (w.end === 0 || w.end > floor!.start))),
        );
    }
    if (!ok) {
      stale.push({
        read: r,
        why: 'older than a write acknowledged before the read began',
        ackedBefore: { value: floor.value, version: floor.version!, seq: floor.seq },
      });
    }
  }
  return stale;
}

/**
 * Why a value read does not belong to the version it came with: a value no
 * write to this key produced, one stored under another version, or one whose
 * write began only after the read had ended. Null when it fits.
 */
function misattributed(history: History, r: ReadRecord): string | null {
  const w = history.writeOf(r.value ?? '');
  if (!w || w.key !== r.key) return 'a value no write to this key produced';
  if (w.start > r.end) return 'a value whose write began after the read ended';
  if (w.outcome === 'acked' && w.version !== r.version) return `the value of version ${w.version} under version ${r.version}`;
  if (w.outcome === 'noop' || w.outcome === 'rejected') return `a value from a write that was ${w.outcome}`;
  return null;
}

export interface UnderAcked {
  key: string;
  seq: number;
  kind: WriteRecord['kind'];
  /** Who the gateway said acknowledged the write. */
  replicas: string;
  /** Write quorum and the owners it was counted against, per placement considered. */
  needed: number;
  owners: string[][];
}

/**
 * A write quorum of n owners, written out here rather than imported: the
 * checker must not share the arithmetic it is checking.
 */
function writeQuorum(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * Rule 4: every acknowledged write names (X-FlexStore-Replicas) at least W of
 * its key's owners, counted when the answer arrived. A gateway that
 * acknowledged after fewer would otherwise go unnoticed: a SIGKILLed replica
 * keeps what the OS cached, and repair copies a write from a single holder to
 * all N before the replica rule looks.
 *
 * `placements` are the placements the workload may have run under (for a
 * join or leave, the one before and the one after): a write must reach W
 * owners in one of their read or target lists. During a change the gateway
 * needs W in both lists, so this is a lower bound that every correct
 * acknowledgement meets.
 */
export function checkAckQuorums(history: History, placements: readonly Placement[], n: number): UnderAcked[] {
  const out: UnderAcked[] = [];
  for (const w of history.allWrites()) {
    if (w.outcome !== 'acked') continue;
    const acked = new Set((w.replicas ?? '').split(',').filter(Boolean));
    const lists = placements.flatMap((p) => {
      const { read, target } = p.lists(w.key);
      return read === target ? [read] : [read, target];
    });
    const needed = writeQuorum(Math.min(n, Math.max(1, ...lists.map((l) => l.length))));
    const met = lists.some((owners) => owners.filter((id) => acked.has(id)).length >= writeQuorum(owners.length));
    if (!met) out.push({ key: w.key, seq: w.seq, kind: w.kind, replicas: w.replicas ?? '', needed, owners: lists });
  }
  return out;
}

/** Acknowledged writes that began and ended inside [from, to]: a window in which no quorum could answer. */
export function acksInside(history: History, from: number, to: number): WriteRecord[] {
  return history.allWrites().filter((w) => w.outcome === 'acked' && w.start >= from && w.end <= to);
}

/** A placement from GET /nodes members, as every gateway computes it. */
export function placementOf(members: ReadonlyArray<{ id: string; url: string; state: string; phase?: string }>, n: number): Placement {
  return new Placement(
    members.map((m) => ({
      id: m.id,
      url: m.url,
      state: m.state as Member['state'],
      lastHeartbeat: 0,
      registeredAt: 0,
      ...(m.phase !== undefined && { phase: m.phase as Member['phase'] }),
    })),
    n,
  );
}

/** Quorum reads of every key through the gateway, retried while the cluster settles. */
export async function readFinal(
  gatewayUrl: string,
  keys: readonly string[],
  { attempts = 5, concurrency = 16 } = {},
): Promise<Map<string, FinalRead>> {
  const out = new Map<string, FinalRead>();
  await eachLimit(keys, concurrency, async (key) => {
    let last: FinalRead = { key, status: 0 };
    for (let i = 0; i < attempts; i++) {
      try {
        const res = await http('GET', kvUrl(gatewayUrl, key), { timeoutMs: 5000 });
        last = {
          key,
          status: res.status,
          value: res.status === 200 ? res.text : undefined,
          version: versionOfEtag(res.headers.etag),
          replicas: headerText(res.headers['x-flexstore-replicas']),
          error: res.status === 200 || res.status === 404 ? undefined : (res.json?.code ?? res.text.slice(0, 200)),
        };
        if (res.status === 200 || res.status === 404) break;
      } catch (err) {
        last = { key, status: 0, error: err instanceof Error ? err.message : String(err) };
      }
      await sleep(200 * (i + 1));
    }
    out.set(key, last);
  });
  return out;
}

export interface ReplicaCopy {
  id: string;
  url: string;
  /** Version held (tombstones included); null when the replica has no record. */
  version: string | null;
  error?: string;
}

export interface UnderReplicated {
  key: string;
  floor: { value: string | null; version: string; seq: number };
  owners: ReplicaCopy[];
}

export interface ReplicaReport {
  /** Why the check could not run to the end (a membership change under way, a member down). */
  notReady?: string;
  members: Array<{ id: string; url: string; state: string; phase?: string }>;
  /** Keys with an acknowledged write whose N owners do not all hold it. */
  underReplicated: UnderReplicated[];
  /** key → owner ids, for keys with an acknowledged write. */
  owners: Map<string, string[]>;
  keysChecked: number;
}

/**
 * Per key, the newest write acknowledged by `until` (a performance.now()
 * time; by default, the whole history). Versions only grow, so a replica that
 * holds a key's floor taken at some moment still passes after later writes:
 * a floor taken at the heal can be checked while the workload runs on.
 */
export function ackedFloors(history: History, until = Infinity): Map<string, WriteRecord> {
  const floors = new Map<string, WriteRecord>();
  for (const [key, writes] of history.writes) {
    const { floor } = expectationFor(writes.filter((w) => w.outcome === 'acked' && w.end <= until));
    if (floor) floors.set(key, floor);
  }
  return floors;
}

/** Rule 3, once, for the given floors. */
export async function checkReplicas(
  registryUrl: string,
  replicationFactor: number,
  floors: ReadonlyMap<string, WriteRecord>,
  { concurrency = 24 } = {},
): Promise<ReplicaReport> {
  const res = await http('GET', `${registryUrl}/nodes`, { timeoutMs: 3000 });
  if (res.status !== 200) {
    return { notReady: `registry answered ${res.status}`, members: [], underReplicated: [], owners: new Map(), keysChecked: 0 };
  }
  const members: ReplicaReport['members'] = (res.json?.members ?? []).map(
    (m: { id: string; url: string; state: string; phase?: string }) => ({ id: m.id, url: m.url, state: m.state, phase: m.phase }),
  );
  const report: ReplicaReport = { members, underReplicated: [], owners: new Map(), keysChecked: 0 };
  // The registry reports every member's phase; one without is not known to be settled.
  const moving = members.filter((m) => m.phase !== 'active');
  if (moving.length > 0) {
    report.notReady = `membership change under way: ${moving.map((m) => `${m.id} ${m.phase ?? '(no phase)'}`).join(', ')}`;
    return report;
  }
  const down = members.filter((m) => m.state !== 'up');
  if (down.length > 0) {
    report.notReady = `members down: ${down.map((m) => m.id).join(', ')}`;
    return report;
  }
  const ring = new Ring(members.map((m) => m.id));
  const urlOf = new Map(members.map((m) => [m.id, m.url]));
  const targets = [...floors].map(([key, floor]) => ({ key, floor }));
  await eachLimit(targets, concurrency, async ({ key, floor }) => {
    const ids = ring.preferenceList(key, replicationFactor);
    report.owners.set(key, ids);
    const copies = await Promise.all(ids.map((id) => readReplica(id, urlOf.get(id)!, key)));
    if (isShort(floor, copies)) {
      report.underReplicated.push({
        key,
        floor: { value: floor.value, version: floor.version!, seq: floor.seq },
        owners: copies,
      });
    }
  });
  report.keysChecked = targets.length;
  report.underReplicated.sort((a, b) => (a.key < b.key ? -1 : 1));
  return report;
}

/** Rule 3 for one key: some owner lacks the newest acknowledged version (or anything newer). */
export function isShort(floor: WriteRecord, copies: readonly ReplicaCopy[]): boolean {
  return copies.some((c) => c.version === null || c.version < floor.version!);
}

async function readReplica(id: string, url: string, key: string): Promise<ReplicaCopy> {
  try {
    const res = await http('GET', `${url}/internal/kv/${encodeURIComponent(key)}`, { timeoutMs: 2000 });
    if (res.status === 404) return { id, url, version: null };
    const v = headerText(res.headers['x-flexstore-version']);
    if (res.status !== 200 || !v) return { id, url, version: null, error: `status ${res.status}` };
    return { id, url, version: v };
  } catch (err) {
    return { id, url, version: null, error: err instanceof Error ? err.message : String(err) };
  }
}

export interface Convergence {
  converged: boolean;
  /**
   * From `since` until the start of the first check that found every replica
   * up to date, in ms (so 0 when nothing needed repair; the resolution is one
   * check plus intervalMs); null when the deadline passed first.
   */
  convergeMs: number | null;
  polls: number;
  /** Keys short at the first check that ran to the end: the repair work there was to do. */
  initiallyShort: number | null;
  /** Why checks before that could not run to the end, each reason once. */
  notReady: string[];
  last: ReplicaReport;
}

/**
 * Repeats the replica check until it passes or the deadline passes. The
 * cluster repairs copies by itself (hinted hand-off, anti-entropy), so a
 * single early check would test timing, not correctness; the time it took is
 * what the summary reports.
 */
export async function waitForReplicas(
  registryUrl: string,
  replicationFactor: number,
  floors: ReadonlyMap<string, WriteRecord>,
  { since, deadlineMs = 60_000, intervalMs = 250 }: { since: number; deadlineMs?: number; intervalMs?: number },
): Promise<Convergence> {
  const deadline = performance.now() + deadlineMs;
  let polls = 0;
  let initiallyShort: number | null = null;
  const notReady = new Set<string>();
  for (;;) {
    polls++;
    const checkStart = performance.now();
    let last: ReplicaReport;
    try {
      last = await checkReplicas(registryUrl, replicationFactor, floors);
    } catch (err) {
      last = {
        notReady: `check failed: ${err instanceof Error ? err.message : String(err)}`,
        members: [],
        underReplicated: [],
        owners: new Map(),
        keysChecked: 0,
      };
    }
    if (last.notReady) notReady.add(last.notReady);
    else if (initiallyShort === null) initiallyShort = last.underReplicated.length;
    if (!last.notReady && last.underReplicated.length === 0) {
      // Timed at the check's start: a check takes a few hundred ms under load,
      // which says how fast the checker is, not the cluster.
      const convergeMs = Math.max(0, checkStart - since);
      return { converged: true, convergeMs, polls, initiallyShort, notReady: [...notReady], last };
    }
    if (performance.now() > deadline) {
      return { converged: false, convergeMs: null, polls, initiallyShort, notReady: [...notReady], last };
    }
    await sleep(intervalMs);
  }
}

/**
 * Final reads whose X-FlexStore-Replicas name a node outside the owners the
 * checker computed: if there are any, the replica check looked at the wrong
 * servers and proves nothing.
 */
export function placementMismatches(
  reads: ReadonlyMap<string, FinalRead>,
  owners: ReadonlyMap<string, string[]>,
): Array<{ key: string; served: string; owners: string[] }> {
  const out: Array<{ key: string; served: string; owners: string[] }> = [];
  for (const [key, ids] of owners) {
    const served = reads.get(key)?.replicas;
    if (!served) continue;
    if (served.split(',').some((id) => id && !ids.includes(id))) out.push({ key, served, owners: ids });
  }
  return out;
}

function headerText(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}
