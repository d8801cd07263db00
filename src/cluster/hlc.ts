/**
 * Hybrid logical clock. A version is
 *
 *   <wall ms, 12 hex digits>.<counter, 6 hex digits>.<gateway id>
 *
 * Fixed-width hex makes plain string comparison equal to (wall, counter, id)
 * order, so every process compares versions with `<` and no parsing. The id
 * suffix makes the order total across gateways: two gateways stamping in the
 * same millisecond still produce distinct, ordered versions.
 *
 * Known limit (shared with every last-writer-wins store): a gateway whose wall
 * clock runs ahead wins over writes that really came later, until the
 * others' clocks pass it. `observe()` keeps a gateway from issuing versions
 * older than anything it has read, which bounds this for read-then-write users.
 * Time is an input, not a fact: a version more than the cluster's
 * MAX_CLOCK_SKEW ahead of the receiver's clock is refused (KV servers, see
 * isFromFuture) and never observed (here), so a forged or badly skewed
 * version cannot shadow later writes, nor push this clock to the end of its
 * fixed width.
 */

const WALL_DIGITS = 12;
const COUNTER_DIGITS = 6;
const MAX_COUNTER = 0xffffff;
/** The largest wall time 12 hex digits hold (about the year 10889). */
const MAX_WALL = 0xffffffffffff;
/** Default MAX_CLOCK_SKEW; see maxClockSkewMs in shared-options.ts for why 10 s. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 10_000;
const VERSION_RE = /^[0-9a-f]{12}\.[0-9a-f]{6}\.[A-Za-z0-9_-]{1,64}$/;

export interface HlcTimestamp {
  wall: number;
  counter: number;
}

export class HybridClock {
  private wall = 0;
  private counter = 0;
  /** How far ahead of now() an observed version may be and still be adopted. */
  readonly maxSkewMs: number;

  constructor(
    /** Suffix of every version this clock issues; [A-Za-z0-9_-]{1,64}. */
    readonly nodeId: string,
    /** Wall-clock milliseconds; injected by tests (and by --clock-offset-ms) to skew this clock. */
    readonly now: () => number = Date.now,
    opts: { maxSkewMs?: number } = {},
  ) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) {
      throw new Error(`clock id must match [A-Za-z0-9_-]{1,64}, got ${JSON.stringify(nodeId)}`);
    }
    this.maxSkewMs = opts.maxSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
  }

  /**
   * A new version, strictly greater than every version issued or observed
   * before. The counter never overflows its 6 digits: past ffffff the wall
   * field moves 1 ms forward instead (16M versions in one millisecond borrow
   * from the future rather than repeat). Throws only when the wall field
   * itself is exhausted, which needs a clock past the year 10889.
   */
  next(): string {
    const physical = this.now();
    if (physical > this.wall) {
      this.wall = physical;
      this.counter = 0;
    } else if (this.counter < MAX_COUNTER) {
      this.counter++;
    } else {
      this.wall++;
      this.counter = 0;
    }
    if (this.wall > MAX_WALL) throw new Error(`clock ${this.nodeId} is past the largest version time (${this.wall} ms)`);
    return formatVersion({ wall: this.wall, counter: this.counter }, this.nodeId);
  }

  /**
   * Moves the clock past a version seen elsewhere, so the next one is newer.
   * A version from the future (isFromFuture) is not adopted: returns false
   * and leaves the clock as it was. Returns true otherwise (malformed
   * versions are ignored and also return true: there is nothing to refuse).
   */
  observe(version: string): boolean {
    const ts = parseVersion(version);
    if (!ts) return true;
    if (ts.wall - this.now() > this.maxSkewMs) return false;
    if (ts.wall > this.wall || (ts.wall === this.wall && ts.counter > this.counter)) {
      this.wall = ts.wall;
      this.counter = ts.counter;
    }
    return true;
  }
}

/** The host's clock shifted by offsetMs (--clock-offset-ms, for testing skew): the clock a process runs on. */
export function offsetClock(offsetMs: number): () => number {
  return offsetMs === 0 ? Date.now : () => Date.now() + offsetMs;
}

/**
 * How many ms the version's time is ahead of `nowMs` (negative: behind), or
 * undefined for a malformed version.
 */
export function versionAheadMs(version: string, nowMs: number): number | undefined {
  const ts = parseVersion(version);
  return ts ? ts.wall - nowMs : undefined;
}

/** True when the version's time is more than maxSkewMs ahead of nowMs: it must not be applied or adopted. */
export function isFromFuture(version: string, nowMs: number, maxSkewMs: number): boolean {
  const ahead = versionAheadMs(version, nowMs);
  return ahead !== undefined && ahead > maxSkewMs;
}

export function formatVersion(ts: HlcTimestamp, nodeId: string): string {
  return (
    ts.wall.toString(16).padStart(WALL_DIGITS, '0') +
    '.' +
    ts.counter.toString(16).padStart(COUNTER_DIGITS, '0') +
    '.' +
    nodeId
  );
}

export function isVersion(v: unknown): v is string {
  return typeof v === 'string' && VERSION_RE.test(v);
}

export function parseVersion(v: string): HlcTimestamp | null {
  if (!isVersion(v)) return null;
  return {
    wall: parseInt(v.slice(0, WALL_DIGITS), 16),
    counter: parseInt(v.slice(WALL_DIGITS + 1, WALL_DIGITS + 1 + COUNTER_DIGITS), 16),
  };
}

/** Last-writer-wins order. Returns >0 when a is newer than b. */
export function compareVersions(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
