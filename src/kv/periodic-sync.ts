/**
 * The timer behind sync 'interval' (storage.ts): fsyncs the environment every
 * `ms`, one fsync at a time, so a slow disk stretches the interval rather than
 * queueing fsyncs. A failed fsync is reported and tried again on the next
 * tick; the data stays in the OS's cache meanwhile.
 */
export class PeriodicSync {
  private readonly timer: NodeJS.Timeout;
  private inFlight: Promise<void> | null = null;

  constructor(sync: () => Promise<void>, ms: number, onError?: (err: Error) => void) {
    this.timer = setInterval(() => {
      if (this.inFlight) return;
      this.inFlight = sync()
        .catch((err: Error) => onError?.(err))
        .finally(() => (this.inFlight = null));
    }, ms);
    this.timer.unref();
  }

  /** Stops the timer; resolves when the fsync in flight, if any, has ended. */
  stop(): Promise<void> {
    clearInterval(this.timer);
    return this.inFlight ?? Promise.resolve();
  }
}
