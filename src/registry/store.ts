import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { MemberRecord } from './members.js';

/**
 * The registry's memory across restarts: `<dataDir>/members.json`.
 *
 * Only membership is kept (ids, urls, registeredAt, and lastHeartbeat as of
 * the last write); up/down state is not, because after a restart nobody is
 * known to be up until it heartbeats. Losing a write is harmless for joins —
 * the member re-registers within a heartbeat — which is why the registry does
 * not hold heartbeat answers on the disk.
 *
 * File format, version 1:
 *   {"version": 1, "index": <n>, "members": [{"id", "url", "registeredAt", "lastHeartbeat"}]}
 *
 * Writes are atomic (tmp file, fsync, rename, fsync of the folder), so a crash
 * leaves either the old or the new list, never a torn one.
 */

export const MEMBER_FILE = 'members.json';
const FORMAT_VERSION = 1;

export interface PersistedMembers {
  /** The table's index when the snapshot was taken. */
  index: number;
  members: MemberRecord[];
  /** Placement epoch; absent in files written before phases existed. */
  epoch?: number;
  /** Ids removed from the ring, refused if they come back. */
  removed?: Array<{ id: string; at: number }>;
}

/** The member file exists but cannot be trusted; the registry refuses to start. */
export class CorruptMemberFile extends Error {
  constructor(
    readonly file: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(
      `registry member file ${file} is corrupt (${reason}); repair it or move it away to start with an empty member list`,
      options,
    );
    this.name = 'CorruptMemberFile';
  }
}

export class MemberStore {
  readonly file: string;
  private readonly tmpFile: string;
  /** The newest snapshot not yet handed to a write. */
  private pending: PersistedMembers | null = null;
  private draining: Promise<void> | null = null;

  constructor(readonly dataDir: string) {
    this.file = join(dataDir, MEMBER_FILE);
    this.tmpFile = `${this.file}.tmp`;
  }

  /** The persisted list, or null when there is none yet (a fresh data dir). */
  async load(): Promise<PersistedMembers | null> {
    await mkdir(this.dataDir, { recursive: true });
    // A tmp file is a write that never reached its rename; the real file is intact.
    await rm(this.tmpFile, { force: true });
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new CorruptMemberFile(this.file, 'not valid JSON', { cause: err });
    }
    return parsePersisted(this.file, data);
  }

  /**
   * Queues a snapshot for writing. Writes never overlap: while one is running,
   * later snapshots wait, and only the newest of them is written (older ones
   * are superseded). Resolves once a write at least as new as this snapshot is
   * durable; rejects if that last write failed.
   */
  save(snapshot: PersistedMembers): Promise<void> {
    this.pending = snapshot;
    if (!this.draining) this.draining = this.drain();
    return this.draining;
  }

  /** Waits for queued writes; rejects if the last one failed. */
  async flush(): Promise<void> {
    if (this.draining) await this.draining;
  }

  private async drain(): Promise<void> {
    let lastError: unknown = null;
    try {
      while (this.pending) {
        const snapshot = this.pending;
        this.pending = null;
        try {
          await this.writeAtomically(serialize(snapshot));
          lastError = null;
        } catch (err) {
          lastError = err;
        }
      }
    } finally {
      // Cleared synchronously after the last check of `pending`, so a save()
      // arriving later always starts a new drain instead of joining a finished one.
      this.draining = null;
    }
    if (lastError !== null) throw lastError;
  }

  private async writeAtomically(text: string): Promise<void> {
    const fh = await open(this.tmpFile, 'w', 0o644);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(this.tmpFile, this.file);
    await syncDir(this.dataDir);
  }
}

/** Makes the rename itself durable. Some platforms cannot fsync a folder; the rename is still atomic there. */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw err;
  } finally {
    await fh?.close();
  }
}

function serialize(s: PersistedMembers): string {
  const body = { version: FORMAT_VERSION, index: s.index, epoch: s.epoch ?? 0, members: s.members, removed: s.removed ?? [] };
  return `${JSON.stringify(body, null, 2)}\n`;
}

function parsePersisted(file: string, data: unknown): PersistedMembers {
  if (!isObject(data)) throw new CorruptMemberFile(file, 'top level is not an object');
  if (data.version !== FORMAT_VERSION) {
    throw new CorruptMemberFile(file, `unknown format version ${JSON.stringify(data.version)}`);
  }
  const index = data.index;
  if (!Number.isSafeInteger(index) || (index as number) < 0) {
    throw new CorruptMemberFile(file, '"index" is not a non-negative integer');
  }
  if (!Array.isArray(data.members)) throw new CorruptMemberFile(file, '"members" is not an array');
  const seenIds = new Set<string>();
  const members = data.members.map((m: unknown, i: number): MemberRecord => {
    const where = `members[${i}]`;
    if (!isObject(m)) throw new CorruptMemberFile(file, `${where} is not an object`);
    const { id, url, registeredAt, lastHeartbeat, phase } = m;
    if (typeof id !== 'string' || id.length === 0) throw new CorruptMemberFile(file, `${where}.id is not a non-empty string`);
    if (seenIds.has(id)) throw new CorruptMemberFile(file, `duplicate member id ${JSON.stringify(id)}`);
    seenIds.add(id);
    if (typeof url !== 'string' || url.length === 0) throw new CorruptMemberFile(file, `${where}.url is not a non-empty string`);
    if (!isTimestamp(registeredAt)) throw new CorruptMemberFile(file, `${where}.registeredAt is not a timestamp`);
    if (!isTimestamp(lastHeartbeat)) throw new CorruptMemberFile(file, `${where}.lastHeartbeat is not a timestamp`);
    if (phase !== undefined && phase !== 'pending' && phase !== 'joining' && phase !== 'active' && phase !== 'leaving') {
      throw new CorruptMemberFile(file, `${where}.phase is not pending, joining, active or leaving`);
    }
    return { id, url, registeredAt, lastHeartbeat, ...(phase !== undefined && { phase }) };
  });
  const epoch = data.epoch === undefined ? 0 : data.epoch;
  if (!Number.isSafeInteger(epoch) || (epoch as number) < 0) {
    throw new CorruptMemberFile(file, '"epoch" is not a non-negative integer');
  }
  const removedRaw = data.removed === undefined ? [] : data.removed;
  if (!Array.isArray(removedRaw)) throw new CorruptMemberFile(file, '"removed" is not an array');
  const removed = removedRaw.map((r: unknown, i: number) => {
    if (!isObject(r) || typeof r.id !== 'string' || !isTimestamp(r.at)) {
      throw new CorruptMemberFile(file, `removed[${i}] is not {id, at}`);
    }
    return { id: r.id, at: r.at };
  });
  return { index: index as number, members, epoch: epoch as number, removed };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isTimestamp(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}
