import { Ring } from '../cluster/ring.js';
import type { Member, MemberView } from '../cluster/types.js';

/**
 * The gateway's picture of the cluster: the registry's member view, the ring
 * built from it, and the gateway's own short-term memory of replicas that just
 * failed. The ring is rebuilt only when the set of member ids changes, so a
 * member going down or up never moves a key (placement is by membership, not
 * liveness).
 */
export class ClusterView {
  private members = new Map<string, Member>();
  private byUrl = new Map<string, Member>();
  private ring: Ring = new Ring([]);
  private ringKey = '';
  /** url → epoch ms until which the replica is treated as suspect. */
  private readonly suspectUntil = new Map<string, number>();
  index = -1;
  updatedAt = 0;

  constructor(
    private readonly vnodes: number,
    /** How long a replica that failed a request is tried last. */
    private readonly suspectMs = 1000,
  ) {}

  update(view: MemberView): void {
    this.members = new Map(view.members.map((m) => [m.id, m]));
    this.byUrl = new Map(view.members.map((m) => [m.url, m]));
    const ids = [...this.members.keys()].sort();
    const key = ids.join('\n');
    if (key !== this.ringKey) {
      this.ring = new Ring(ids, this.vnodes);
      this.ringKey = key;
    }
    this.index = view.index;
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

  /** The key's first N distinct members (N capped at the member count). */
  preferenceList(key: string, n: number): Member[] {
    return this.ring.preferenceList(key, n).map((id) => this.members.get(id)!);
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

  ownership(): Record<string, number> {
    return this.ring.ownership();
  }

  get vnodeCount(): number {
    return this.vnodes;
  }
}
