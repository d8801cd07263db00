import { createHash } from 'node:crypto';
import type { Member, MemberView } from '../cluster/types.js';

/**
 * The registry's member table: who is in the ring (ids and urls), who is up,
 * and an `index` that watchers block on.
 *
 * `index` increases by one on every change a watcher cares about: a member
 * joins, leaves, is replaced, changes url, or goes up/down. A heartbeat that
 * changes nothing but lastHeartbeat leaves it alone, so a quiet cluster does
 * not wake every gateway once a second.
 *
 * Membership is separate from liveness (see DESIGN.md): a member that stops
 * heartbeating turns `down` but stays in the table, so placement does not move.
 * Only an explicit deregister removes it.
 */

export const MEMBER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

const MAX_ID_LENGTH = 64;
const ID_HASH_HEX = 16;

/**
 * The id a member gets when it registers without one: its url with every
 * character outside [A-Za-z0-9_-] replaced by '_', so
 * http://127.0.0.1:8001 becomes http___127_0_0_1_8001. Readable in logs and
 * stable across registry restarts. A url too long for the 64-character id rule
 * keeps its first 47 characters, a '-' and 16 hex digits of its sha256, which
 * keeps distinct long urls apart.
 *
 * Known gap: urls differing only in replaced characters (http://a.b vs
 * http://a_b) map to the same id; KV servers avoid this by sending their own
 * stable id, which the design expects them to do anyway.
 */
export function deriveMemberId(url: string): string {
  const safe = url.replace(/[^A-Za-z0-9_-]/g, '_');
  if (safe.length <= MAX_ID_LENGTH) return safe;
  const digest = createHash('sha256').update(url).digest('hex').slice(0, ID_HASH_HEX);
  return `${safe.slice(0, MAX_ID_LENGTH - ID_HASH_HEX - 1)}-${digest}`;
}

export interface MemberTableLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface MemberTableOptions {
  /** A member whose last heartbeat is older than this is marked down by sweep(). */
  downAfterMs: number;
  log?: MemberTableLog;
}

/** What the persisted file keeps of a member; state is never persisted. */
export interface MemberRecord {
  id: string;
  url: string;
  registeredAt: number;
  lastHeartbeat: number;
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

interface Waiter {
  since: number;
  done: () => void;
}

const silentLog: MemberTableLog = { info() {}, warn() {} };

export class MemberTable {
  private readonly members = new Map<string, Member>();
  private readonly waiters = new Set<Waiter>();
  private readonly downAfterMs: number;
  private readonly log: MemberTableLog;
  private currentIndex = 0;
  private closed = false;

  constructor(opts: MemberTableOptions) {
    this.downAfterMs = opts.downAfterMs;
    this.log = opts.log ?? silentLog;
  }

  get index(): number {
    return this.currentIndex;
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
  load(records: readonly MemberRecord[], persistedIndex = 0): void {
    this.members.clear();
    for (const r of records) {
      this.members.set(r.id, { ...r, state: 'down' });
    }
    this.currentIndex = Math.max(this.currentIndex, persistedIndex);
    this.bump();
  }

  /**
   * Registers or heartbeats a member. The id defaults to deriveMemberId(url).
   * A different id with an already-known url replaces the old member: that is
   * a KV server whose data dir (and so its stable id) was wiped.
   */
  register(req: { url: string; id?: string }, now: number): RegisterResult {
    const id = req.id ?? deriveMemberId(req.url);
    let changed = false;
    let membershipChanged = false;
    let replacedId: string | undefined;

    for (const other of this.members.values()) {
      if (other.url === req.url && other.id !== id) {
        this.members.delete(other.id);
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
      member = { id, url: req.url, state: 'up', lastHeartbeat: now, registeredAt: now };
      this.members.set(id, member);
      changed = membershipChanged = true;
      this.log.info({ id, url: req.url }, 'member joined');
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

    if (changed) this.bump();
    const result: RegisterResult = { member: { ...member }, changed, membershipChanged };
    if (replacedId !== undefined) result.replacedId = replacedId;
    return result;
  }

  /** Removes the member with this id (or, without an id, this url). */
  remove(q: { id?: string; url?: string }): Member | undefined {
    const member = this.find(q);
    if (!member) return undefined;
    this.members.delete(member.id);
    this.bump();
    this.log.info({ id: member.id, url: member.url }, 'member deregistered');
    return { ...member };
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
    if (wentDown.length > 0) this.bump();
    return wentDown;
  }

  /** Members and the urls of the up ones, both sorted by id (never arrival order). */
  view(): MemberView {
    const members = [...this.members.values()]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((m) => ({ ...m }));
    return {
      nodes: members.filter((m) => m.state === 'up').map((m) => m.url),
      members,
      index: this.currentIndex,
    };
  }

  /** What the member file keeps, sorted by id so the file diffs cleanly. */
  records(): MemberRecord[] {
    return this.view().members.map(({ id, url, registeredAt, lastHeartbeat }) => ({
      id,
      url,
      registeredAt,
      lastHeartbeat,
    }));
  }

  /**
   * Resolves once index > sinceIndex, after timeoutMs, when signal aborts, or
   * when the table is closed — whichever comes first. Never rejects: the caller
   * answers with whatever the view is by then.
   */
  waitForChange(sinceIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || this.currentIndex > sinceIndex || timeoutMs <= 0 || signal?.aborted) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const waiter: Waiter = {
        since: sinceIndex,
        done: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', waiter.done);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.done, timeoutMs);
      signal?.addEventListener('abort', waiter.done, { once: true });
      this.waiters.add(waiter);
    });
  }

  /** Number of blocked waitForChange calls (for tests and /health). */
  get waiting(): number {
    return this.waiters.size;
  }

  /** Releases every blocked wait and makes later waits return at once. */
  close(): void {
    this.closed = true;
    for (const w of [...this.waiters]) w.done();
  }

  private bump(): void {
    this.currentIndex++;
    for (const w of [...this.waiters]) {
      if (this.currentIndex > w.since) w.done();
    }
  }
}
