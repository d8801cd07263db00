import { Agent, request } from 'undici';
import { undiciConnectOptions } from '../cluster/tls.js';
import { MemberUnreachable } from '../cluster/errors.js';
import type { ClusterSecurity } from '../cluster/security.js';

/**
 * The one place the registry dials a URL it was given: before a new URL joins
 * the table, `GET <url>/health` must answer 2xx within `timeoutMs`. A
 * registration naming a URL nobody serves (a typo, a dead host, a forged
 * registration) is refused with 422 MEMBER_UNREACHABLE instead of entering the
 * ring as a joiner that never syncs. KV servers register only once they
 * listen, and retry every heartbeat, so a refused one is admitted at the next
 * beat after it answers.
 *
 * At most `maxInFlight` probes run at once; beyond that the registration is
 * told to retry (the caller answers 503), so a flood of registrations cannot
 * pile up sockets.
 */
export type HealthProbe = (url: string) => Promise<void>;

export const PROBE_TIMEOUT_MS = 2000;
const MAX_IN_FLIGHT = 32;

export class ProbeBusy extends Error {}

export function healthProbe(security?: ClusterSecurity, opts: { timeoutMs?: number; maxInFlight?: number } = {}): HealthProbe & { close(): Promise<void> } {
  const timeoutMs = opts.timeoutMs ?? PROBE_TIMEOUT_MS;
  const maxInFlight = opts.maxInFlight ?? MAX_IN_FLIGHT;
  const agent = new Agent({
    connect: { timeout: timeoutMs, ...undiciConnectOptions(security) },
    // One probe per new member: nothing to keep alive.
    pipelining: 0,
  });
  let inFlight = 0;
  const probe = async (url: string): Promise<void> => {
    if (inFlight >= maxInFlight) throw new ProbeBusy('too many health checks in flight');
    inFlight++;
    try {
      let status: number;
      try {
        const res = await request(`${url}/health`, {
          method: 'GET',
          dispatcher: agent,
          signal: AbortSignal.timeout(timeoutMs),
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
        status = res.statusCode;
        await res.body.dump();
      } catch (err) {
        throw new MemberUnreachable(
          `${url}/health did not answer (${(err as Error).message}); a member joins only once its url answers its health check`,
          { url },
          { cause: err },
        );
      }
      if (status < 200 || status >= 300) {
        throw new MemberUnreachable(`${url}/health answered ${status}; a member joins only once its health check answers 2xx`, {
          url,
          status,
        });
      }
    } finally {
      inFlight--;
    }
  };
  return Object.assign(probe, { close: () => agent.close() });
}
