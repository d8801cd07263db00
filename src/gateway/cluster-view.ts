import { Placement, phaseOf } from '../cluster/placement.js';
import type { Member, MemberView } from '../cluster/types.js';

/**
 * The gateway's picture of the cluster: the registry's member view, the
 * placement built from it (read and target rings, see placement.ts), and the
 * gateway's own short-term memory of replicas that just failed. Placement is
 * rebuilt only when member ids or phases change, so a member going down or up
 * never moves a key (placement is by membership, not liveness).
 */
export class ClusterView {
  private members = new Map<string, Member>();
  private byUrl = new Map<string, Member>();
  private placement: Placement;
  private placementKey = '';
  /** url → epoch ms until which the replica is treated as suspect. */
  private readonly suspectUntil = new Map<string, number>();
  index = -1;
  epoch = 0;
  updatedAt = 0;

  constructor(
    private readonly vnodes: number,
    private readonly replicationFactor: number,
    /** How long a replica that failed a request is tried last. */
    private readonly suspectMs = 1000,
  ) {
    this.placement = new Placement([], replicationFactor, vnodes);
  }

  update(view: MemberView): void {
    this.members = new Map(view.members.map((m) => [m.id, m]));
    this.byUrl = new Map(view.members.map((m) => [m.url, m]));
    const key = view.members
      .map((m) => `${m.id}:${phaseOf(m)}`)
      .sort()
      .join('\n');
    if (key !== this.placementKey) {
      this.placement = new Placement(view.members, this.replicationFactor, this.vnodes);
      this.placementKey = key;
    }
    this.index = view.index;
    this.epoch = view.epoch ?? 0;
    this.updatedAt = Date.now();
  }

  get hasView(): boolean {
    return this.index >= 0;
  }

  allMembers(): Member[] {
    return [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  memberByUrl(url: string): Member | undefined {
    return this.byUrl.get(url);
  }

  /** The key's current owners: first N distinct members of the read ring. */
  readList(key: string): Member[] {
    return this.placement.readList(key).map((id) => this.members.get(id)!);
  }

  /**
   * Owners once the current join or leave completes. Equal to readList outside
   * a change (the same array contents; callers compare by id).
   */
  targetList(key: string): Member[] {
    return this.placement.targetList(key).map((id) => this.members.get(id)!);
  }

  /** Current and future owners of the key, hashed once (writes need both). */
  writeLists(key: string): { read: Member[]; target: Member[] } {
    const { read, target } = this.placement.lists(key);
    const r = read.map((id) => this.members.get(id)!);
    return { read: r, target: target === read ? r : target.map((id) => this.members.get(id)!) };
  }

  get changing(): boolean {
    return this.placement.changing;
  }

  /** Members that must still report a finished sync for the current epoch. */
  pendingAcquirers(): string[] {
    return this.placement.pendingAcquirers(this.epoch, this.members);
  }

  /** Up per the registry and not failed in the last suspectMs. */
  isHealthy(m: Member, now = Date.now()): boolean {
    if (m.state !== 'up') return false;
    const until = this.suspectUntil.get(m.url);
    return until === undefined || until < now;
  }

  markFailure(url: string): void {
    this.suspectUntil.set(url, Date.now() + this.suspectMs);
  }

  markSuccess(url: string): void {
    if (this.suspectUntil.size > 0) this.suspectUntil.delete(url);
  }

  isSuspect(url: string, now = Date.now()): boolean {
    const until = this.suspectUntil.get(url);
    return until !== undefined && until >= now;
  }

  /** Share of the hash space each current owner holds as primary. */
  ownership(): Record<string, number> {
    return this.placement.readRing.ownership();
  }

  get vnodeCount(): number {
    return this.vnodes;
  }
}
