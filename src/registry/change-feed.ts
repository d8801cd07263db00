/**
 * The registry's change index and the watches blocked on it. Gateways and KV
 * servers long-poll `GET /nodes?wait=` with the index they last saw; each call
 * parks here until the index moves past it, so a quiet cluster costs no
 * traffic and a change reaches every watcher at once.
 */
interface Waiter {
  since: number;
  done: () => void;
}

export class ChangeFeed {
  private readonly waiters = new Set<Waiter>();
  private current = 0;
  private closed = false;

  get index(): number {
    return this.current;
  }

  /** Never moves backwards: a restarted registry resumes above what it persisted. */
  advanceTo(index: number): void {
    this.current = Math.max(this.current, index);
  }

  /**
   * Resolves once index > sinceIndex, after timeoutMs, when signal aborts, or
   * when the feed is closed — whichever comes first. Never rejects: the caller
   * answers with whatever the view is by then.
   */
  waitForChange(sinceIndex: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || this.current > sinceIndex || timeoutMs <= 0 || signal?.aborted) {
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

  get waiting(): number {
    return this.waiters.size;
  }

  close(): void {
    this.closed = true;
    for (const w of [...this.waiters]) w.done();
  }

  bump(): void {
    this.current++;
    for (const w of [...this.waiters]) {
      if (this.current > w.since) w.done();
    }
  }
}
