import type { MemberView } from '../cluster/types.js';

/**
 * Clock skew between the members of a cluster, as a gateway sees it for
 * GET /cluster and `flexstore status`.
 *
 * Every clock is measured against the registry's: a KV server sends its
 * clock in each heartbeat and the registry keeps the difference
 * (Member.clockOffsetMs); the gateway compares its own clock with the one the
 * registry sends in each member view. Two members' skew is the difference of
 * their offsets, so the registry's own error cancels out. Each offset is off
 * by the network delay of one message (milliseconds on a LAN), and the view
 * a gateway holds may be up to one watch interval (30 s) old: clocks drift
 * slowly, so that is good enough to report, never to decide.
 *
 * Members that are down are left out: their offset is as old as their last
 * heartbeat.
 */

export interface ClockReport {
  /** The gateway's MAX_CLOCK_SKEW: versions further ahead are refused (KV) and never adopted (gateway). */
  maxClockSkewMs: number;
  /** This gateway's clock minus the registry's, or null before the registry sent its clock. */
  gatewayOffsetMs: number | null;
  /** Largest difference between two clocks (up members and this gateway); 0 with fewer than two known. */
  spreadMs: number;
  /** Set when spreadMs is more than half of maxClockSkewMs: names the two clocks furthest apart. */
  warning: string | null;
  /** Up member id → its clock minus the registry's, for members that reported one. */
  offsets: Record<string, number>;
}

export function clockReport(view: MemberView | null, gatewayId: string, gatewayOffsetMs: number | null, maxClockSkewMs: number): ClockReport {
  const clocks: Array<{ who: string; offset: number }> = [];
  const offsets: Record<string, number> = {};
  for (const m of view?.members ?? []) {
    if (m.state !== 'up' || typeof m.clockOffsetMs !== 'number') continue;
    offsets[m.id] = m.clockOffsetMs;
    clocks.push({ who: `member ${m.id}`, offset: m.clockOffsetMs });
  }
  if (gatewayOffsetMs !== null) clocks.push({ who: `gateway ${gatewayId}`, offset: gatewayOffsetMs });
  let spreadMs = 0;
  let warning: string | null = null;
  if (clocks.length >= 2) {
    const ahead = clocks.reduce((a, b) => (b.offset > a.offset ? b : a));
    const behind = clocks.reduce((a, b) => (b.offset < a.offset ? b : a));
    spreadMs = ahead.offset - behind.offset;
    if (spreadMs > maxClockSkewMs / 2) {
      warning =
        `clock skew of ${seconds(spreadMs)} between ${ahead.who} and ${behind.who} is more than half of ` +
        `MAX_CLOCK_SKEW (${seconds(maxClockSkewMs)}): versions from the clock ahead are refused by KV servers behind ` +
        'once it passes MAX_CLOCK_SKEW; check NTP on these hosts';
    }
  }
  return { maxClockSkewMs, gatewayOffsetMs, spreadMs, warning, offsets };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
