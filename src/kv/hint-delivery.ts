import type { MemberView } from '../cluster/types.js';
import type { Logger } from '../cluster/logger.js';
import type { KvMetrics } from './metrics.js';
import { pushRecords } from './range-repair.js';
import type { Storage } from './storage.js';
import type { RepairClient } from './repair-client.js';

/**
 * Hinted hand-off delivery. The gateway leaves hints on a replica that took a
 * write when another replica of the key failed it (POST /internal/hints,
 * stored by hint-store.ts). Every 500 ms this loop looks at each target with
 * hints: when the view shows it up, the hinted keys' current local records
 * are pushed to it with apply (last-writer-wins there) in batches, and each
 * delivered hint is deleted, unless a newer write re-hinted the key meanwhile.
 *
 * So a replica that was down gets the writes it missed within a second of
 * coming back, without waiting for an anti-entropy pass; anti-entropy remains
 * the backstop for writes whose hint was never stored (the gateway itself
 * failed, or this server was down too).
 *
 * - A target that is no longer a member (removed from the ring) gets nothing:
 *   its hints are dropped, since its ranges now belong to others.
 * - A delivery failure keeps the hints and is retried on the next tick; it is
 *   logged once per target until a delivery succeeds.
 * - Hints for keys this server no longer holds (purged) are dropped.
 * - A target reported with `storage: "full"` gets nothing until it reports
 *   ok again (it would refuse the records); while this server's own storage
 *   is full no round runs (delivered hints could not be deleted).
 */

const TICK_MS = 500;
/** Hints read and delivered per batch. */
const BATCH = 500;

export interface HintDeliveryOptions {
  selfId: string;
  storage: Storage;
  client: RepairClient;
  metrics: KvMetrics;
  log: Pick<Logger, 'info' | 'warn'>;
  /** The latest member view, or null before the first one. */
  view: () => MemberView | null;
}

export class HintDelivery {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  /** Targets whose last delivery failed, so the next failure is not logged again. */
  private readonly failing = new Set<string>();

  constructor(private readonly opts: HintDeliveryOptions) {}

  start(): void {
    if (this.timer || this.stopped) return;
    this.schedule();
  }

  /** Stops the loop and waits for a delivery in progress. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One round over every target (exposed for tests); resolves with how many hints were delivered. */
  async deliverAll(): Promise<number> {
    const view = this.opts.view();
    if (!view || this.opts.storage.health.state === 'full') return 0;
    const { storage, selfId } = this.opts;
    let delivered = 0;
    for (const target of storage.hints.targets()) {
      if (this.stopped) break;
      const member = view.members.find((m) => m.id === target);
      if (!member || target === selfId) {
        // Nobody to deliver to: removed from the ring (or a hint about ourselves).
        if (view.members.length > 0) {
          const dropped = await storage.hints.drop(target);
          this.opts.log.info({ target, dropped }, 'dropped hints for a server that is not a member');
        }
        continue;
      }
      if (member.state !== 'up' || member.storage === 'full') continue;
      delivered += await this.deliverTo(target, member.url);
    }
    return delivered;
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.running = this.deliverAll()
        .then(
          () => {},
          (err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'hint delivery failed'),
        )
        .finally(() => {
          this.running = null;
          this.opts.metrics.hintRounds.inc();
          if (!this.stopped) this.schedule();
        });
    }, TICK_MS);
    this.timer.unref();
  }

  private async deliverTo(target: string, url: string): Promise<number> {
    const { storage, client, metrics, log } = this.opts;
    let delivered = 0;
    let after: string | undefined;
    const t0 = Date.now();
    for (;;) {
      if (this.stopped) break;
      const hints = storage.hints.page(target, BATCH, after);
      if (hints.length === 0) break;
      after = hints[hints.length - 1]!.key;
      let result: { sent: number; versions: Array<string | null> };
      try {
        result = await pushRecords(storage, client, url, hints.map((h) => h.key));
      } catch (err) {
        if (!this.failing.has(target)) {
          this.failing.add(target);
          log.warn({ target, url, pending: storage.hints.count(), err: (err as Error).message }, 'cannot deliver hints yet; retrying');
        }
        break;
      }
      this.failing.delete(target);
      metrics.streamed('out', result.sent);
      metrics.hintsDelivered.inc(result.sent);
      delivered += result.sent;
      await storage.hints.remove(
        target,
        hints.map((h, i) => ({ key: h.key, version: result.versions[i] ?? null })),
      );
    }
    if (delivered > 0) {
      log.info({ target, delivered, ms: Date.now() - t0, pending: storage.hints.count() }, 'delivered hinted writes');
    }
    return delivered;
  }
}
