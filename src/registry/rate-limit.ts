/**
 * Token buckets per source address: the registry's bound on unauthenticated
 * calls (docs/security.md, Registry limits and joins). Each address may make
 * `ratePerSec` calls a second on average and `burst` at once.
 *
 * The limiter's own memory is bounded too: at most `maxAddresses` buckets,
 * the least recently used dropped first (a Map's insertion order, refreshed
 * on every use). A dropped address comes back with a full bucket, so a flood
 * from more addresses than the bound is limited less strictly — a known gap
 * that the member cap and the health check still cover.
 */
export interface RateLimiterOptions {
  /** Tokens added per second; 0 disables limiting. */
  ratePerSec: number;
  /** Bucket size: calls allowed at once after a quiet spell. */
  burst: number;
  /** Buckets kept at most. Default 10,000. */
  maxAddresses?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxAddresses: number;

  constructor(private readonly opts: RateLimiterOptions) {
    this.maxAddresses = opts.maxAddresses ?? 10_000;
  }

  get enabled(): boolean {
    return this.opts.ratePerSec > 0;
  }

  /** Buckets held now (bounded by maxAddresses). */
  get size(): number {
    return this.buckets.size;
  }

  /**
   * Takes one token for `address`. Returns 0 when the call may go on, or the
   * milliseconds until a token is back (the caller answers 429 with them).
   */
  take(address: string, now: number): number {
    const { ratePerSec, burst } = this.opts;
    if (ratePerSec <= 0) return 0;
    let b = this.buckets.get(address);
    if (b) {
      this.buckets.delete(address);
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) * ratePerSec) / 1000);
      b.at = now;
    } else {
      b = { tokens: burst, at: now };
      if (this.buckets.size >= this.maxAddresses) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(address, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) * 1000) / ratePerSec);
  }
}
