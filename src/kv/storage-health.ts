import { StorageFull } from '../cluster/errors.js';

/**
 * Whether a KV server's storage takes commits: 'ok', or 'full' once a commit
 * failed because the storage cannot take it (the disk is full, an I/O error,
 * LMDB's map is full).
 *
 * While full, every write is refused up front with StorageFull (507): no
 * commit is attempted, so LMDB is not driven through failure after failure
 * and whatever was committed stays as it was (LMDB writes new pages and then
 * the meta page; a commit that fails leaves the previous one in force).
 * Reads are untouched. Every probeMs a small probe commit (storage.ts) is
 * tried; the first that succeeds returns the state to 'ok'. So a server whose
 * disk was freed takes writes again by itself, without a restart.
 *
 * Known gap: a probe is one small commit, so it may succeed on pages LMDB
 * already holds free while a large write still cannot be committed; that
 * write then fails and the state turns full again (the write is answered
 * STORAGE_FULL either way). MDB_PANIC (LMDB gave up on the environment) is
 * treated as full too, but no probe can succeed: only a restart clears it.
 */

export type StorageState = 'ok' | 'full';

/**
 * What a write is refused on, for the refusal counter: the write sources of
 * storage.ts (replica_http, replica_tcp, sync_apply, sync_pull, sync_stream),
 * hints, and the tombstone purge.
 */
export type WritePath = string;

export interface StorageHealthOptions {
  /** A small commit that succeeds only when the storage takes writes again. */
  probe: () => Promise<void>;
  /** Time between probes while full. */
  probeMs: number;
  /** Told of every change of state; `cause` names the error that made it full. */
  onChange?: (state: StorageState, cause?: string) => void;
  /** Told of every write refused with StorageFull, by path. */
  onRefused?: (path: WritePath) => void;
}

/** errno values (Linux numbers, as lmdb-js reports them: positive) and LMDB codes meaning the storage cannot take a commit. */
const STORAGE_ERRNOS = new Map<number, string>([
  [5, 'EIO'],
  [27, 'EFBIG'],
  [28, 'ENOSPC'],
  [30, 'EROFS'],
  [122, 'EDQUOT'],
  [-30792, 'MDB_MAP_FULL'],
  [-30795, 'MDB_PANIC'],
]);
const STORAGE_CODES = new Set(STORAGE_ERRNOS.values());

/**
 * How long to wait for lmdb-js to settle a failed commit's commitError. It is
 * rejected in the same turn as the writes themselves, so this only bounds a
 * failure lmdb-js reported without a status.
 */
const COMMIT_CAUSE_WAIT_MS = 200;

export class StorageHealth {
  private current: StorageState = 'ok';
  private cause: string | undefined;
  private fullSince = 0;
  private timer: NodeJS.Timeout | null = null;
  private probing: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly opts: StorageHealthOptions) {}

  get state(): StorageState {
    return this.current;
  }

  /** The error code that made the storage full (ENOSPC, EIO, ...); undefined while ok. */
  get fullCause(): string | undefined {
    return this.current === 'full' ? this.cause : undefined;
  }

  /** Epoch ms since which the storage is full; 0 while ok. */
  get since(): number {
    return this.current === 'full' ? this.fullSince : 0;
  }

  /**
   * Runs one write's commit. While full it is refused up front with
   * StorageFull; a commit that fails because the storage cannot take it
   * turns the state full and is answered StorageFull too (its cause attached).
   * Any other failure is passed on as it is.
   */
  async commit<T>(path: WritePath, write: () => Promise<T>): Promise<T> {
    if (this.current === 'full') throw this.refuse(path);
    try {
      return await write();
    } catch (err) {
      const cause = await storageFailure(err);
      if (cause === undefined) throw err;
      this.markFull(cause);
      throw this.refuse(path, err);
    }
  }

  /**
   * Looks at a storage failure outside a write (a periodic fsync): one that
   * means the storage cannot take commits turns the state full.
   */
  async observe(err: unknown): Promise<void> {
    const cause = await storageFailure(err);
    if (cause !== undefined) this.markFull(cause);
  }

  /** Stops probing and waits for a probe in flight. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.probing;
  }

  private markFull(cause: string): void {
    if (this.current === 'full' || this.closed) return;
    this.current = 'full';
    this.cause = cause;
    this.fullSince = Date.now();
    this.opts.onChange?.('full', cause);
    this.schedule();
  }

  private refuse(path: WritePath, err?: unknown): StorageFull {
    this.opts.onRefused?.(path);
    return new StorageFull(
      `storage cannot commit (${this.cause ?? 'unknown'}): this server refuses writes and serves reads until a commit succeeds again`,
      { reason: this.cause ?? 'unknown' },
      err === undefined ? undefined : { cause: err },
    );
  }

  private schedule(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.probing = this.probe().finally(() => (this.probing = null));
    }, this.opts.probeMs);
    this.timer.unref();
  }

  private async probe(): Promise<void> {
    try {
      await this.opts.probe();
    } catch (err) {
      // Classified only so that lmdb-js's commitError is handled; whatever
      // the cause, the storage is still not taking commits.
      const cause = await storageFailure(err);
      if (cause !== undefined) this.cause = cause;
      this.schedule();
      return;
    }
    if (this.closed) return;
    this.current = 'ok';
    this.cause = undefined;
    this.opts.onChange?.('ok');
  }
}

/**
 * The storage error code behind err when it means the storage cannot take a
 * commit (STORAGE_ERRNOS), else undefined. lmdb-js rejects every write of a
 * failed asynchronous commit with "Commit failed" and puts the cause in
 * `commitError`, a promise of its own: it is always handled here, or it would
 * be an unhandled rejection.
 */
export async function storageFailure(err: unknown): Promise<string | undefined> {
  const direct = storageCode(err);
  if (direct !== undefined) return direct;
  if (!isLmdbCommitFailure(err)) return undefined;
  const pending = err.commitError;
  let timer: NodeJS.Timeout | undefined;
  const cause = await Promise.race([
    Promise.resolve(pending).then(
      () => undefined,
      (e: unknown) => e,
    ),
    new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), COMMIT_CAUSE_WAIT_MS))),
  ]);
  clearTimeout(timer);
  return storageCode(cause);
}

function storageCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  if (typeof code === 'number') return STORAGE_ERRNOS.get(code);
  if (typeof code === 'string' && STORAGE_CODES.has(code)) return code;
  return undefined;
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return typeof (x as { then?: unknown } | null | undefined)?.then === 'function';
}

/**
 * Handles the commitError of a failed asynchronous commit's rejection (see
 * storageFailure) for a caller that does not classify it: a write among
 * several whose first failure was classified.
 */
export function settleCommitError(err: unknown): void {
  if (isLmdbCommitFailure(err)) Promise.resolve(err.commitError).catch(() => {});
}

/** True for the error lmdb-js rejects a failed asynchronous commit's writes with. */
export function isLmdbCommitFailure(err: unknown): err is Error & { commitError: PromiseLike<unknown> } {
  return err instanceof Error && isThenable((err as { commitError?: unknown }).commitError);
}

let filterInstalled = false;

/**
 * lmdb-js rejects a promise of its own for every failed asynchronous commit
 * (the start of its event-turn batch, lmdb/write.js), which no caller can
 * reach: with Node's default --unhandled-rejections=throw, the first commit
 * that fails for a full disk kills the process. This process-wide listener
 * swallows exactly those rejections (the writes themselves are rejected to
 * their callers, who see the failure) and leaves every other rejection to
 * Node's default: raised as an uncaught exception, unless another listener
 * takes care of it. Installed once per process, by Storage.open.
 */
export function installCommitFailureFilter(): void {
  if (filterInstalled) return;
  filterInstalled = true;
  // A failed commit's cause (commitError) is rejected right after its writes
  // and reported in the same round, even when handled meanwhile: known by its promise.
  const causes = new WeakSet<object>();
  process.on('unhandledRejection', (reason, promise) => {
    if (isLmdbCommitFailure(reason)) {
      settleCommitError(reason);
      causes.add(reason.commitError);
      return;
    }
    if (causes.has(promise)) return;
    if (process.listenerCount('unhandledRejection') === 1) throw reason;
  });
}
