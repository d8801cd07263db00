import type { Member } from '../cluster/types.js';

/**
 * Calls replicas until `need` of them succeed, launching `initial` at once and
 * one more untried candidate for each failure. Resolves as soon as `need`
 * succeed or when every launched call has settled; calls still in flight go on
 * in the background (a write they carry may still land: that is the ambiguous
 * outcome every quorum store has, and the next read's repair settles it).
 */
export interface QuorumResult<T> {
  ok: Array<{ member: Member; value: T }>;
  failed: Array<{ member: Member; error: unknown }>;
}

export function callQuorum<T>(
  candidates: Member[],
  need: number,
  initial: number,
  call: (m: Member) => Promise<T>,
): Promise<QuorumResult<T>> {
  return new Promise((resolve) => {
    const result: QuorumResult<T> = { ok: [], failed: [] };
    let next = 0;
    let inFlight = 0;
    let done = false;

    const finish = () => {
      if (done) return;
      done = true;
      // Snapshot: late answers must not change what the caller saw.
      resolve({ ok: [...result.ok], failed: [...result.failed] });
    };

    const launch = () => {
      const member = candidates[next++]!;
      inFlight++;
      call(member).then(
        (value) => {
          inFlight--;
          result.ok.push({ member, value });
          if (result.ok.length >= need) finish();
          else if (inFlight === 0 && next >= candidates.length) finish();
        },
        (error: unknown) => {
          inFlight--;
          result.failed.push({ member, error });
          if (done) return;
          if (next < candidates.length) launch();
          // Once the quorum is out of reach, calls in flight are still awaited
          // (each is bounded by the replica timeout) so the error can say
          // exactly how many replicas answered.
          else if (inFlight === 0) finish();
        },
      );
    };

    if (need <= 0) return finish();
    const first = Math.min(Math.max(initial, need), candidates.length);
    for (let i = 0; i < first; i++) launch();
    if (first === 0) finish();
  });
}
