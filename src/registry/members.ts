import { Conflict } from '../cluster/errors.js';
import { silentLogger, type Logger } from '../cluster/logger.js';
import { Placement, phaseOf, type MemberPhase } from '../cluster/placement.js';
import type { Member, MemberView, TransferProgress } from '../cluster/types.js';
import { ChangeFeed } from './change-feed.js';
import { defaultRegistryConfig } from './config.js';
import { deriveMemberId } from './member-id.js';

/**
 * The registry's member table: who is in the ring (ids and urls), who is up,
 * and an `index` that watchers block on.
 *
 * `index` increases by one on every change a watcher cares about: a member
 * joins, leaves, is replaced, changes url, or goes up/down. A heartbeat that
 * changes nothing but lastHeartbeat leaves it alone, so a quiet cluster does
 * not wake every gateway once a second.
 *
 * Membership is separate from liveness (docs/architecture.md, Membership): a member that stops
 * heartbeating turns `down` but stays in the table, so placement does not move.
 *
 * Membership changes go through phases (see src/cluster/placement.ts): a new
 * member is `joining` until it has pulled its ranges, a deregistered one is
 * `leaving` until its ranges have been pulled by their new owners. `epoch`
 * counts placement changes; a change completes when every acquirer reports
 * (in its heartbeat) a finished sync pass for the current epoch. Removed ids
 * are remembered so a removed server cannot come back with stale data.
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


export class MemberTable {
  private readonly members = new Map<string, Member>();
  private readonly feed = new ChangeFeed();
  private readonly downAfterMs: number;
  private readonly log: Pick<Logger, 'info' | 'warn'>;
  private currentEpoch = 0;
  /** Removed member id → when. */
  private readonly removed = new Map<string, number>();
  private readonly replicationFactor: number;
  private readonly vnodes: number;
  readonly tombstoneGraceMs: number;
  private readonly downRemoveAfterMs: number;
  private readonly onMembershipChange: () => void;

  constructor(opts: MemberTableOptions) {
    this.downAfterMs = opts.downAfterMs;
    this.log = opts.log ?? silentLogger;
    this.replicationFactor = opts.replicationFactor ?? defaultRegistryConfig.replicationFactor;
    this.vnodes = opts.vnodes ?? defaultRegistryConfig.vnodes;
    this.tombstoneGraceMs = opts.tombstoneGraceMs ?? defaultRegistryConfig.tombstoneGraceMs;
    this.downRemoveAfterMs = opts.downRemoveAfterMs ?? defaultRegistryConfig.downRemoveAfterMs;
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
    for (const r of records) {
      this.members.set(r.id, { ...r, phase: r.phase ?? 'active', state: 'down' });
    }
    this.feed.advanceTo(persistedIndex);
    this.currentEpoch = Math.max(this.currentEpoch, extra.epoch ?? 0);
    for (const r of extra.removed ?? []) this.removed.set(r.id, r.at);
    this.bump();
  }

  /**
   * Registers or heartbeats a member. The id defaults to deriveMemberId(url).
   * A different id with an already-known url replaces the old member: that is
   * a KV server whose data dir (and so its stable id) was wiped.
   */
  register(req: RegisterRequest, now: number): RegisterResult {
    const id = req.id ?? deriveMemberId(req.url);
    let changed = false;
    let membershipChanged = false;
    let replacedId: string | undefined;

    if (this.removed.has(id)) {
      throw new Conflict(
        `member ${id} was removed from the ring; wipe its data dir and start it again to add it as a new member`,
        { id },
      );
    }
    const known = this.members.get(id);
    if (known && known.state === 'down' && known.lastHeartbeat > 0 && now - known.lastHeartbeat > this.tombstoneGraceMs) {
      throw new Conflict(
        `member ${id} was down for longer than the tombstone grace (${this.tombstoneGraceMs} ms) and may hold deleted data; ` +
          'remove it (DELETE /deregister), wipe its data dir and start it again as a new member',
        { id, downForMs: now - known.lastHeartbeat },
      );
    }

    for (const other of this.members.values()) {
      if (other.url === req.url && other.id !== id) {
        this.members.delete(other.id);
        this.removed.set(other.id, now);
        this.currentEpoch++;
        replacedId = other.id;
        changed = membershipChanged = true;
        this.log.warn(
          { url: req.url, oldId: other.id, newId: id },
          'a new id registered with a known url; replacing the old member (its data dir was likely wiped)',
        );
        break;
      }
    }

    let member = this.members.get(id);
    if (!member) {
      // The first member owns everything at once; later ones pull their ranges first.
      const hasActive = [...this.members.values()].some((m) => phaseOf(m) === 'active');
      const phase: MemberPhase = hasActive ? 'joining' : 'active';
      member = { id, url: req.url, state: 'up', phase, lastHeartbeat: now, registeredAt: now };
      if (req.tcpPort !== undefined) member.tcpPort = req.tcpPort;
      this.members.set(id, member);
      this.currentEpoch++;
      changed = membershipChanged = true;
      this.log.info({ id, url: req.url, phase, epoch: this.currentEpoch }, 'member joined');
    } else {
      if (member.url !== req.url) {
        this.log.info({ id, oldUrl: member.url, url: req.url }, 'member changed url');
        member.url = req.url;
        changed = membershipChanged = true;
      }
      if (member.state !== 'up') {
        member.state = 'up';
        changed = true;
        this.log.info({ id, url: member.url }, 'member is up');
      }
      member.lastHeartbeat = Math.max(member.lastHeartbeat, now);
    }
    if (req.transfer) member.transfer = req.transfer;
    // Reported, not a view change: the index does not move for it.
    if (req.clockOffsetMs !== undefined) member.clockOffsetMs = req.clockOffsetMs;
    if (req.tcpPort !== member.tcpPort) {
      // Gateways must learn a new replica port at once: it changes how they reach the member.
      if (req.tcpPort === undefined) delete member.tcpPort;
      else member.tcpPort = req.tcpPort;
      changed = true;
    }

    if (this.maybeComplete(now)) changed = membershipChanged = true;
    if (changed) this.bump();
    if (membershipChanged) this.onMembershipChange();
    const result: RegisterResult = { member: { ...member }, changed, membershipChanged };
    if (replacedId !== undefined) result.replacedId = replacedId;
    return result;
  }

  /**
   * Decommissions the member with this id (or, without an id, this url). An
   * active member starts leaving: it stays in the ring, serving, until its
   * ranges have moved. A joining member, or any member with `force`, is
   * removed at once (forcing skips the hand-off: use it only for a member
   * whose data is gone).
   */
  remove(q: { id?: string; url?: string }, opts: { force?: boolean } = {}, now = Date.now()): RemoveResult | undefined {
    const member = this.members.get(this.find(q)?.id ?? '');
    if (!member) return undefined;
    let removedNow: boolean;
    if (opts.force || phaseOf(member) === 'joining') {
      this.drop(member, now);
      removedNow = true;
      this.log.info({ id: member.id, url: member.url, force: !!opts.force }, 'member removed');
    } else if (phaseOf(member) === 'leaving') {
      removedNow = false;
    } else {
      member.phase = 'leaving';
      this.currentEpoch++;
      removedNow = false;
      this.log.info({ id: member.id, url: member.url, epoch: this.currentEpoch }, 'member is leaving; its ranges move to their new owners');
    }
    const snapshot = { ...member };
    if (this.maybeComplete(now)) removedNow = !this.members.has(member.id);
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
      for (const m of this.members.values()) if (m.url === q.url) member = m;
    }
    return member ? { ...member } : undefined;
  }

  /**
   * Marks down every up member whose last heartbeat is older than downAfterMs.
   * One index bump covers all members that went down in the same sweep.
   * Returns their ids.
   */
  sweep(now: number): string[] {
    const wentDown: string[] = [];
    for (const m of this.members.values()) {
      if (m.state === 'up' && now - m.lastHeartbeat > this.downAfterMs) {
        m.state = 'down';
        wentDown.push(m.id);
        this.log.warn({ id: m.id, url: m.url, silentMs: now - m.lastHeartbeat }, 'member is down');
      }
    }
    let membership = false;
    if (this.downRemoveAfterMs > 0) {
      for (const m of this.members.values()) {
        if (m.state === 'down' && phaseOf(m) === 'active' && now - m.lastHeartbeat > this.downRemoveAfterMs) {
          m.phase = 'leaving';
          this.currentEpoch++;
          membership = true;
          this.log.warn(
            { id: m.id, url: m.url, downForMs: now - m.lastHeartbeat },
            'member down longer than DOWN_REMOVE_AFTER: removing it; the survivors re-replicate its ranges',
          );
        }
      }
    }
    if (this.maybeComplete(now)) membership = true;
    if (wentDown.length > 0 || membership) this.bump();
    if (membership) this.onMembershipChange();
    return wentDown;
  }

  /** Members that must still finish a sync pass before the current change completes. */
  pendingAcquirers(): string[] {
    if (!this.changing()) return [];
    const placement = this.placement();
    if (!placement.changing) return [];
    return placement.pendingAcquirers(this.currentEpoch, this.members);
  }

  /**
   * Whether a join or leave is under way, without building rings: sweep()
   * asks four times a second, and two 256-vnode rings cost MD5 work that
   * showed up as the registry's whole idle CPU.
   */
  private changing(): boolean {
    for (const m of this.members.values()) if (phaseOf(m) !== 'active') return true;
    return false;
  }

  private placement(): Placement {
    return new Placement([...this.members.values()], this.replicationFactor, this.vnodes);
  }

  /**
   * Completes a join or leave once every acquirer has synced the current
   * epoch: joining members become active, leaving ones are removed. Returns
   * true when it changed anything.
   */
  private maybeComplete(now: number): boolean {
    if (!this.changing()) return false;
    const placement = this.placement();
    if (!placement.changing) return false;
    if (placement.pendingAcquirers(this.currentEpoch, this.members).length > 0) return false;
    for (const m of [...this.members.values()]) {
      if (phaseOf(m) === 'joining') {
        m.phase = 'active';
        this.log.info({ id: m.id, url: m.url }, 'member joined the ring: its ranges are in place');
      } else if (phaseOf(m) === 'leaving') {
        this.drop(m, now);
        this.log.info({ id: m.id, url: m.url }, 'member left the ring: its ranges have moved');
      }
    }
    this.currentEpoch++;
    return true;
  }

  private drop(m: Member, now: number): void {
    this.members.delete(m.id);
    this.removed.set(m.id, now);
    this.currentEpoch++;
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
