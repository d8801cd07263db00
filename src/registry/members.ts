import { Conflict, MemberBound, TooManyMembers } from '../cluster/errors.js';
import { silentLogger, type Logger } from '../cluster/logger.js';
import { Placement, isChanging, phaseOf, type MemberPhase } from '../cluster/placement.js';
import type { Member, MemberView, TransferProgress } from '../cluster/types.js';
import { ChangeFeed } from './change-feed.js';
import { defaultRegistryConfig } from './config.js';
import { deriveMemberId } from './member-id.js';

/**
 * The registry's member table: who is in the ring (ids and urls), who is up,
 * and an `index` that watchers block on.
 *
 * `index` increases by one on every change a watcher cares about: a member
 * joins, leaves, is replaced, changes url, goes up/down, or reports its
 * storage full or ok again (gateways and peers stop sending it writes they
 * know it refuses, and resume). A heartbeat that
 * changes nothing but lastHeartbeat leaves it alone, so a quiet cluster does
 * not wake every gateway once a second.
 *
 * Membership is separate from liveness (docs/architecture.md, Membership): a member that stops
 * heartbeating turns `down` but stays in the table, so placement does not move.
 *
 * Membership changes go through phases (see src/cluster/placement.ts): a new
 * member is `pending` while MAX_JOINING others join, then `joining` until it
 * has pulled its ranges; a deregistered one is `leaving` until its ranges have
 * been pulled by their new owners. `epoch` counts placement changes; a change
 * completes when every acquirer is up and reports (in its heartbeat) a
 * finished sync pass for the current epoch. A joining or pending member down
 * longer than JOIN_TIMEOUT is dropped (not banned: it may register again).
 * Removed ids are remembered so a removed server cannot come back with stale
 * data.
 *
 * Cost: a heartbeat of a known member that changes nothing but its time and
 * progress is O(1) — two map lookups, no placement, no copy of the member
 * list, no file write. Placement (two rings and their arcs) is built once per
 * membership change and cached; completion is checked only when membership,
 * liveness or an acquirer's synced epoch moved.
 */

export interface MemberTableOptions {
  /** A member whose last heartbeat is older than this is marked down by sweep(). */
  downAfterMs: number;
  log?: Pick<Logger, 'info' | 'warn'>;
  /** Placement settings used to find acquirers. Defaults 3 and 256. */
  replicationFactor?: number;
  vnodes?: number;
  /** A member down longer than this is refused when it returns. Default 10 days. */
  tombstoneGraceMs?: number;
  /** Down this long → decommissioned automatically. 0 (default) = never. */
  downRemoveAfterMs?: number;
  /** A joining or pending member down this long is dropped. Default 60 s. */
  joinTimeoutMs?: number;
  /** Members joining at once; the rest wait as pending. Default 2. */
  maxJoining?: number;
  /** Largest table; a new member beyond it is refused. Default 512. */
  maxMembers?: number;
  /** Called after every change the member file must record. */
  onMembershipChange?: () => void;
}

/** What the persisted file keeps of a member; state is never persisted. */
export interface MemberRecord {
  id: string;
  url: string;
  registeredAt: number;
  lastHeartbeat: number;
  phase?: MemberPhase;
}

export interface RegisterRequest {
  url: string;
  id?: string;
  transfer?: TransferProgress;
  tcpPort?: number;
  /** The member's clock minus the registry's, as this heartbeat showed it. */
  clockOffsetMs?: number;
  /** Whether the member's storage takes commits, as it reports it; absent from servers that do not report it. */
  storage?: 'ok' | 'full';
  /** The request proved the cluster secret (req.clusterAuth === 'member'). */
  authenticated?: boolean;
}

export interface RemoveResult {
  member: Member;
  /** True when the member left the table now; false when it started leaving. */
  removedNow: boolean;
}

export interface RegisterResult {
  member: Member;
  /** The index moved (join, url change, replacement, or down → up). */
  changed: boolean;
  /** The set of ids or their urls changed: the member file must be rewritten. */
  membershipChanged: boolean;
  /** Id of a member with the same url that this registration replaced. */
  replacedId?: string;
}

/** What a registration would do, before it is made: the registry dials a new URL first. */
export type Admission = 'heartbeat' | 'new-url';

/**
 * Removed ids kept to refuse their return. Each removal adds one; bad
 * registrations cannot (they are refused before any removal), so the bound
 * only matters to a cluster with thousands of decommissions. Known gap: the
 * oldest removed ids are forgotten beyond it.
 */
export const MAX_REMOVED = 4096;

export class MemberTable {
  private readonly members = new Map<string, Member>();
  /** url → id, so a registration finds a member by url in O(1). */
  private readonly byUrl = new Map<string, string>();
  private readonly feed = new ChangeFeed();
  private readonly downAfterMs: number;
  private readonly log: Pick<Logger, 'info' | 'warn'>;
  private currentEpoch = 0;
  /** Removed member id → when; insertion order is age order (MAX_REMOVED bound). */
  private readonly removed = new Map<string, number>();
  private readonly replicationFactor: number;
  private readonly vnodes: number;
  readonly tombstoneGraceMs: number;
  private readonly downRemoveAfterMs: number;
  private readonly joinTimeoutMs: number;
  private readonly maxJoining: number;
  private readonly maxMembers: number;
  private readonly onMembershipChange: () => void;
  /** Placement and its acquirers for the current ids and phases; null once they change. */
  private cached: { placement: Placement; acquirers: string[] } | null = null;
  /** Members joining or leaving, and joining alone; recounted on every membership change. */
  private changingCount = 0;
  private joiningCount = 0;
  private pendingCount = 0;
  /** Work counters for tests and /health: the heartbeat path must not move them. */
  readonly stats = { placementBuilds: 0, completionChecks: 0 };

  constructor(opts: MemberTableOptions) {
    this.downAfterMs = opts.downAfterMs;
    this.log = opts.log ?? silentLogger;
    this.replicationFactor = opts.replicationFactor ?? defaultRegistryConfig.replicationFactor;
    this.vnodes = opts.vnodes ?? defaultRegistryConfig.vnodes;
    this.tombstoneGraceMs = opts.tombstoneGraceMs ?? defaultRegistryConfig.tombstoneGraceMs;
    this.downRemoveAfterMs = opts.downRemoveAfterMs ?? defaultRegistryConfig.downRemoveAfterMs;
    this.joinTimeoutMs = opts.joinTimeoutMs ?? defaultRegistryConfig.joinTimeoutMs;
    this.maxJoining = opts.maxJoining ?? defaultRegistryConfig.maxJoining;
    this.maxMembers = opts.maxMembers ?? defaultRegistryConfig.maxMembers;
    this.onMembershipChange = opts.onMembershipChange ?? (() => {});
  }

  get index(): number {
    return this.feed.index;
  }

  get epoch(): number {
    return this.currentEpoch;
  }

  removedIds(): Array<{ id: string; at: number }> {
    return [...this.removed].map(([id, at]) => ({ id, at }));
  }

  get size(): number {
    return this.members.size;
  }

  get upCount(): number {
    let n = 0;
    for (const m of this.members.values()) if (m.state === 'up') n++;
    return n;
  }

  /**
   * Restores a persisted member list. Every member starts `down`: the registry
   * cannot know who survived its restart until they heartbeat again. The index
   * resumes past the persisted one so that it rarely goes backwards across a
   * restart (it still can, since state changes are not persisted).
   */
  load(
    records: readonly MemberRecord[],
    persistedIndex = 0,
    extra: { epoch?: number; removed?: Array<{ id: string; at: number }> } = {},
  ): void {
    this.members.clear();
    this.byUrl.clear();
    for (const r of records) {
      this.members.set(r.id, { ...r, phase: r.phase ?? 'active', state: 'down' });
      this.byUrl.set(r.url, r.id);
    }
    this.feed.advanceTo(persistedIndex);
    this.currentEpoch = Math.max(this.currentEpoch, extra.epoch ?? 0);
    for (const r of extra.removed ?? []) this.ban(r.id, r.at);
    this.membershipMoved();
    this.bump();
  }

  /** True when this is a heartbeat of a known member at its own url (the cheap path; never rate-limited). */
  isKnownAt(id: string | undefined, url: string): boolean {
    const m = this.members.get(id ?? deriveMemberId(url));
    return m !== undefined && m.url === url;
  }

  /**
   * Runs every refusal register() would (removed, tombstone grace, id↔url
   * binding, member cap) without changing anything, and says whether the
   * registration brings a url the table does not know: the registry dials
   * such a url's health check before it calls register().
   */
  admit(req: RegisterRequest, now: number): Admission {
    const id = req.id ?? deriveMemberId(req.url);
    const known = this.members.get(id);
    if (known && known.url === req.url) {
      this.refuseStale(known, now);
      return 'heartbeat';
    }
    this.refuse(id, req, now);
    return 'new-url';
  }

  /**
   * Registers or heartbeats a member. The id defaults to deriveMemberId(url).
   *
   * An id stays bound to its url: a known id at another url, or another id at
   * a known member's url, is refused with MEMBER_BOUND unless the request is
   * authenticated and the member now at stake is down. Then the url moves
   * (same id) or the old member is replaced and banned (another id: a KV
   * server whose data dir, and so its stable id, was wiped).
   */
  register(req: RegisterRequest, now: number): RegisterResult {
    const id = req.id ?? deriveMemberId(req.url);
    const known = this.members.get(id);
    if (known && known.url === req.url) {
      this.refuseStale(known, now);
      return this.heartbeat(known, req, now);
    }
    this.refuse(id, req, now);

    let replacedId: string | undefined;
    const holderId = this.byUrl.get(req.url);
    if (holderId !== undefined && holderId !== id) {
      const holder = this.members.get(holderId)!;
      this.drop(holder, now, true);
      replacedId = holderId;
      this.log.warn(
        { url: req.url, oldId: holderId, newId: id },
        'a new id registered with the url of a member that is down; replacing the old member (its data dir was likely wiped)',
      );
    }

    let member = known;
    if (member) {
      this.log.info({ id, oldUrl: member.url, url: req.url }, 'member changed url');
      this.byUrl.delete(member.url);
      member.url = req.url;
      this.byUrl.set(req.url, id);
      member.state = 'up';
      member.lastHeartbeat = Math.max(member.lastHeartbeat, now);
      // A joiner that was away may have missed writes the gateways sent past it: it acquires again.
      if (this.isAcquirer(id)) this.currentEpoch++;
    } else {
      member = this.add(id, req.url, now);
    }
    if (req.transfer) member.transfer = req.transfer;
    // Reported, not a view change: the index does not move for it.
    if (req.clockOffsetMs !== undefined) member.clockOffsetMs = req.clockOffsetMs;
    if (req.tcpPort === undefined) delete member.tcpPort;
    else member.tcpPort = req.tcpPort;
    if (req.storage === undefined) delete member.storage;
    else member.storage = req.storage;

    this.membershipMoved();
    this.settle(now);
    this.bump();
    this.onMembershipChange();
    const result: RegisterResult = { member: { ...member }, changed: true, membershipChanged: true };
    if (replacedId !== undefined) result.replacedId = replacedId;
    return result;
  }

  /** A known member at its own url: O(1) unless its liveness, port, storage state or synced epoch moved. */
  private heartbeat(member: Member, req: RegisterRequest, now: number): RegisterResult {
    let changed = false;
    let membershipChanged = false;
    let check = false;
    member.lastHeartbeat = Math.max(member.lastHeartbeat, now);
    if (member.state !== 'up') {
      member.state = 'up';
      changed = true;
      this.log.info({ id: member.id, url: member.url }, 'member is up');
      if (this.changingCount > 0 && this.isAcquirer(member.id)) {
        // Writes went past it while it was down (docs/security.md): it must pull its ranges again.
        this.currentEpoch++;
        membershipChanged = true;
        this.log.info({ id: member.id, epoch: this.currentEpoch }, 'an acquirer is back: it syncs its ranges again');
      }
      check = true;
    }
    if (req.transfer) {
      const before = member.transfer?.syncedEpoch;
      member.transfer = req.transfer;
      if (before !== req.transfer.syncedEpoch && this.changingCount > 0) check = true;
    }
    if (req.clockOffsetMs !== undefined) member.clockOffsetMs = req.clockOffsetMs;
    if (req.tcpPort !== member.tcpPort) {
      // Gateways must learn a new replica port at once: it changes how they reach the member.
      if (req.tcpPort === undefined) delete member.tcpPort;
      else member.tcpPort = req.tcpPort;
      changed = true;
    }
    if (req.storage !== member.storage) {
      const was = member.storage;
      if (req.storage === undefined) delete member.storage;
      else member.storage = req.storage;
      if (req.storage === 'full') this.log.warn({ id: member.id, url: member.url }, 'member storage is full: it refuses writes and serves reads');
      else if (was === 'full') this.log.info({ id: member.id, url: member.url }, 'member storage takes writes again');
      changed = true;
    }
    if (check && this.settle(now)) changed = membershipChanged = true;
    if (changed || membershipChanged) this.bump();
    if (membershipChanged) this.onMembershipChange();
    return { member: { ...member }, changed: changed || membershipChanged, membershipChanged };
  }

  /** Refuses a member that must not come back: removed, or down past the tombstone grace. */
  private refuseStale(known: Member, now: number): void {
    if (known.state === 'down' && known.lastHeartbeat > 0 && now - known.lastHeartbeat > this.tombstoneGraceMs) {
      throw new Conflict(
        `member ${known.id} was down for longer than the tombstone grace (${this.tombstoneGraceMs} ms) and may hold deleted data; ` +
          'remove it (DELETE /deregister), wipe its data dir and start it again as a new member',
        { id: known.id, downForMs: now - known.lastHeartbeat },
      );
    }
  }

  /** Every refusal of a registration that is not a plain heartbeat. */
  private refuse(id: string, req: RegisterRequest, now: number): void {
    if (this.removed.has(id)) {
      throw new Conflict(
        `member ${id} was removed from the ring; wipe its data dir and start it again to add it as a new member`,
        { id },
      );
    }
    const known = this.members.get(id);
    if (known) {
      this.refuseStale(known, now);
      if (!req.authenticated || known.state !== 'down') {
        throw new MemberBound(
          `member ${id} is registered at ${known.url}; an id stays bound to its url unless the registration is ` +
            'authenticated with the cluster secret and the member is down at its old url',
          { id, url: known.url, requestedUrl: req.url },
        );
      }
    }
    const holderId = this.byUrl.get(req.url);
    if (holderId !== undefined && holderId !== id) {
      const holder = this.members.get(holderId)!;
      if (!req.authenticated || holder.state !== 'down') {
        throw new MemberBound(
          `${req.url} is the url of member ${holderId}; another id may take it only with a registration ` +
            'authenticated with the cluster secret while that member is down (or remove it first: flexstore node remove)',
          { id, url: req.url, memberId: holderId },
        );
      }
    }
    if (!known && holderId === undefined && this.members.size >= this.maxMembers) {
      throw new TooManyMembers(`the registry holds ${this.members.size} members, the most MAX_MEMBERS allows`, {
        maxMembers: this.maxMembers,
      });
    }
  }

  /** A new member: active when it is the first, joining when a slot is free, pending otherwise. */
  private add(id: string, url: string, now: number): Member {
    const phase: MemberPhase = !this.hasOwner()
      ? 'active'
      : this.pendingCount === 0 && this.joiningCount < this.maxJoining
        ? 'joining'
        : 'pending';
    const member: Member = { id, url, state: 'up', phase, lastHeartbeat: now, registeredAt: now };
    this.members.set(id, member);
    this.byUrl.set(url, id);
    if (phase !== 'pending') this.currentEpoch++;
    this.log.info({ id, url, phase, epoch: this.currentEpoch }, phase === 'pending' ? 'member registered; waiting for a join slot' : 'member joined');
    return member;
  }

  /**
   * Decommissions the member with this id (or, without an id, this url). An
   * active member starts leaving: it stays in the ring, serving, until its
   * ranges have moved. A joining or pending member, or any member with
   * `force`, is removed at once (forcing skips the hand-off: use it only for a
   * member whose data is gone).
   */
  remove(q: { id?: string; url?: string }, opts: { force?: boolean } = {}, now = Date.now()): RemoveResult | undefined {
    const member = this.members.get(this.find(q)?.id ?? '');
    if (!member) return undefined;
    let removedNow: boolean;
    const phase = phaseOf(member);
    if (opts.force || phase === 'joining' || phase === 'pending') {
      this.drop(member, now, true);
      removedNow = true;
      this.log.info({ id: member.id, url: member.url, force: !!opts.force }, 'member removed');
    } else if (phase === 'leaving') {
      removedNow = false;
    } else {
      member.phase = 'leaving';
      this.currentEpoch++;
      removedNow = false;
      this.log.info({ id: member.id, url: member.url, epoch: this.currentEpoch }, 'member is leaving; its ranges move to their new owners');
    }
    const snapshot = { ...member };
    this.membershipMoved();
    if (this.settle(now)) removedNow = !this.members.has(member.id);
    this.bump();
    this.onMembershipChange();
    return { member: snapshot, removedNow };
  }

  /** A copy of the member matching id (and url, when both are given). */
  find(q: { id?: string; url?: string }): Member | undefined {
    let member: Member | undefined;
    if (q.id !== undefined) {
      member = this.members.get(q.id);
      if (member && q.url !== undefined && member.url !== q.url) return undefined;
    } else if (q.url !== undefined) {
      const id = this.byUrl.get(q.url);
      member = id === undefined ? undefined : this.members.get(id);
    }
    return member ? { ...member } : undefined;
  }

  /**
   * Marks down every up member whose last heartbeat is older than downAfterMs,
   * drops joining and pending members down longer than joinTimeoutMs, and
   * starts the decommission of active ones down longer than downRemoveAfterMs.
   * One index bump covers everything one sweep changed. Returns the ids that
   * went down.
   */
  sweep(now: number): string[] {
    const wentDown: string[] = [];
    let membership = false;
    for (const m of this.members.values()) {
      if (m.state === 'up' && now - m.lastHeartbeat > this.downAfterMs) {
        m.state = 'down';
        wentDown.push(m.id);
        this.log.warn({ id: m.id, url: m.url, silentMs: now - m.lastHeartbeat }, 'member is down');
      }
    }
    for (const m of [...this.members.values()]) {
      if (m.state !== 'down') continue;
      const phase = phaseOf(m);
      const downFor = now - m.lastHeartbeat;
      if ((phase === 'joining' || phase === 'pending') && downFor > this.joinTimeoutMs) {
        // Not banned: it never owned anything, so it may register again and start over.
        this.drop(m, now, false);
        membership = true;
        this.log.warn({ id: m.id, url: m.url, phase, downForMs: downFor }, 'member down longer than JOIN_TIMEOUT: its join is aborted');
      } else if (this.downRemoveAfterMs > 0 && phase === 'active' && downFor > this.downRemoveAfterMs) {
        m.phase = 'leaving';
        this.currentEpoch++;
        membership = true;
        this.log.warn(
          { id: m.id, url: m.url, downForMs: downFor },
          'member down longer than DOWN_REMOVE_AFTER: removing it; the survivors re-replicate its ranges',
        );
      }
    }
    if (membership) {
      this.membershipMoved();
      this.settle(now);
    }
    if (wentDown.length > 0 || membership) this.bump();
    if (membership) this.onMembershipChange();
    return wentDown;
  }

  /**
   * Members that must still finish a sync pass before the current change
   * completes: every acquirer that has not reported the current epoch, and
   * every acquirer that is down (gateways stop counting on it: see
   * Coordinator.write).
   */
  pendingAcquirers(): string[] {
    if (this.changingCount === 0) return [];
    return this.acquirers().filter((id) => {
      const m = this.members.get(id);
      return !m || m.state !== 'up' || (m.transfer?.syncedEpoch ?? -1) < this.currentEpoch;
    });
  }

  private acquirers(): string[] {
    if (!this.cached) {
      this.stats.placementBuilds++;
      const placement = new Placement([...this.members.values()], this.replicationFactor, this.vnodes);
      this.cached = { placement, acquirers: [...placement.acquirers()] };
    }
    return this.cached.acquirers;
  }

  private isAcquirer(id: string): boolean {
    return this.changingCount > 0 && this.acquirers().includes(id);
  }

  /** Whether some member owns ranges now (active or leaving): a new member then has to join. */
  private hasOwner(): boolean {
    for (const m of this.members.values()) {
      const p = phaseOf(m);
      if (p === 'active' || p === 'leaving') return true;
    }
    return false;
  }

  /** Ids or phases changed: forget the cached placement and recount the phases. O(members). */
  private membershipMoved(): void {
    this.cached = null;
    let changing = 0;
    let joining = 0;
    let pending = 0;
    for (const m of this.members.values()) {
      const p = phaseOf(m);
      if (isChanging(p)) changing++;
      if (p === 'joining') joining++;
      if (p === 'pending') pending++;
    }
    this.changingCount = changing;
    this.joiningCount = joining;
    this.pendingCount = pending;
  }

  /**
   * Completes a join or leave once every acquirer is up and synced the
   * current epoch (joining members become active, leaving ones are removed),
   * then moves pending members into free join slots. Returns true when it
   * changed anything.
   */
  private settle(now: number): boolean {
    let moved = false;
    if (this.changingCount > 0) {
      this.stats.completionChecks++;
      if (this.pendingAcquirers().length === 0) {
        for (const m of [...this.members.values()]) {
          if (phaseOf(m) === 'joining') {
            m.phase = 'active';
            this.log.info({ id: m.id, url: m.url }, 'member joined the ring: its ranges are in place');
          } else if (phaseOf(m) === 'leaving') {
            this.drop(m, now, true);
            this.log.info({ id: m.id, url: m.url }, 'member left the ring: its ranges have moved');
          }
        }
        this.currentEpoch++;
        this.membershipMoved();
        moved = true;
      }
    }
    if (this.promote()) moved = true;
    return moved;
  }

  /**
   * Moves up pending members, oldest registration first, into free join
   * slots (or, when nobody owns anything any more, makes the first one
   * active). A pending member that is down keeps its place but is skipped.
   */
  private promote(): boolean {
    if (this.pendingCount === 0 || this.joiningCount >= this.maxJoining) return false;
    const waiting = [...this.members.values()]
      .filter((m) => phaseOf(m) === 'pending' && m.state === 'up')
      .sort((a, b) => a.registeredAt - b.registeredAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (waiting.length === 0) return false;
    let slots = this.maxJoining - this.joiningCount;
    const owner = this.hasOwner();
    for (const m of waiting) {
      if (slots === 0) break;
      m.phase = owner ? 'joining' : 'active';
      slots--;
      this.log.info({ id: m.id, url: m.url, phase: m.phase }, 'a join slot freed: pending member moves on');
      if (!owner) break;
    }
    this.currentEpoch++;
    this.membershipMoved();
    return true;
  }

  /** Takes a member out of the table; `ban` also refuses its id from now on. */
  private drop(m: Member, now: number, ban: boolean): void {
    this.members.delete(m.id);
    if (this.byUrl.get(m.url) === m.id) this.byUrl.delete(m.url);
    if (ban) this.ban(m.id, now);
    this.currentEpoch++;
    this.cached = null;
  }

  private ban(id: string, at: number): void {
    this.removed.delete(id);
    this.removed.set(id, at);
    if (this.removed.size > MAX_REMOVED) this.removed.delete(this.removed.keys().next().value!);
  }

  /** Members and the urls of the up ones, both sorted by id (never arrival order). */
  view(): MemberView {
    const members = [...this.members.values()]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      // Phase spelled out even when active, so a reader never has to guess what a missing one means.
      .map((m) => ({ ...m, phase: phaseOf(m) }));
    return {
      nodes: members.filter((m) => m.state === 'up').map((m) => m.url),
      members,
      index: this.feed.index,
      epoch: this.currentEpoch,
      tombstoneGraceMs: this.tombstoneGraceMs,
    };
  }

  /** What the member file keeps, sorted by id so the file diffs cleanly. */
  records(): MemberRecord[] {
    return this.view().members.map(({ id, url, registeredAt, lastHeartbeat, phase }) => ({
      id,
      url,
      registeredAt,
      lastHeartbeat,
      phase: phase ?? 'active',
    }));
  }

  /** See ChangeFeed.waitForChange: resolves once the index passes sinceIndex, or on timeout, abort or close. */
  waitForChange(sinceIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.feed.waitForChange(sinceIndex, timeoutMs, signal);
  }

  /** Number of blocked waitForChange calls (for tests and /health). */
  get waiting(): number {
    return this.feed.waiting;
  }

  /** Releases every blocked wait and makes later waits return at once. */
  close(): void {
    this.feed.close();
  }

  private bump(): void {
    this.feed.bump();
  }
}
