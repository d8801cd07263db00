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
 * clock runs far ahead wins over writes that really came later, until the
 * others' clocks pass it. `observe()` keeps a gateway from issuing versions
 * older than anything it has read, which bounds this for read-then-write users.
 */

const WALL_DIGITS = 12;
const COUNTER_DIGITS = 6;
const MAX_COUNTER = 0xffffff;
const VERSION_RE = /^[0-9a-f]{12}\.[0-9a-f]{6}\.[A-Za-z0-9_-]{1,64}$/;

export interface HlcTimestamp {
  wall: number;
  counter: number;
}

export class HybridClock {
  private wall = 0;
  private counter = 0;

  constructor(
    /** Suffix of every version this clock issues; [A-Za-z0-9_-]{1,64}. */
    readonly nodeId: string,
    private readonly now: () => number = Date.now,
  ) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) {
      throw new Error(`clock id must match [A-Za-z0-9_-]{1,64}, got ${JSON.stringify(nodeId)}`);
    }
  }

  /** A new version, strictly greater than every version issued or observed before. */
  next(): string {
    const physical = this.now();
    if (physical > this.wall) {
      this.wall = physical;
      this.counter = 0;
    } else if (this.counter < MAX_COUNTER) {
      this.counter++;
    } else {
      // 16M versions in one millisecond: borrow from the future rather than repeat.
      this.wall++;
      this.counter = 0;
    }
    return formatVersion({ wall: this.wall, counter: this.counter }, this.nodeId);
  }

  /** Moves the clock past a version seen elsewhere, so the next one is newer. */
  observe(version: string): void {
    const ts = parseVersion(version);
    if (!ts) return;
    if (ts.wall > this.wall || (ts.wall === this.wall && ts.counter > this.counter)) {
      this.wall = ts.wall;
      this.counter = ts.counter;
    }
  }
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
