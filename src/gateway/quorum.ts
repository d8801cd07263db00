import type { Member } from '../cluster/types.js';

/**
 * Calls replicas until `satisfied` holds for the set that succeeded,
 * launching `initial` at once and one more untried candidate for each
 * failure. Resolves as soon as it is satisfied or when every launched call
 * has settled with no candidate left (the error then says exactly how many
 * answered). Calls still in flight go on in the background (a write they
 * carry may still land: the ambiguous outcome every quorum store has, which
 * the next read's repair settles); `settled` resolves when all are done.
 */
export interface QuorumResult<T> {
  ok: Array<{ member: Member; value: T }>;
  failed: Array<{ member: Member; error: unknown }>;
  /** Every launched call's outcome, once all have settled. */
  settled: Promise<QuorumResult<T>>;
}

export function callQuorum<T>(
  candidates: Member[],
  satisfied: (ok: ReadonlyArray<{ member: Member; value: T }>) => boolean,
  initial: number,
  call: (m: Member) => Promise<T>,
): Promise<QuorumResult<T>> {
  return new Promise((resolve) => {
    const ok: Array<{ member: Member; value: T }> = [];
    const failed: Array<{ member: Member; error: unknown }> = [];
    let next = 0;
    let inFlight = 0;
    let done = false;
    let settle!: (r: QuorumResult<T>) => void;
    const settled = new Promise<QuorumResult<T>>((r) => (settle = r));

    const snapshot = (): QuorumResult<T> => ({ ok: [...ok], failed: [...failed], settled });
    const finish = () => {
      if (done) return;
      done = true;
      // A snapshot: late answers must not change what the caller saw.
      resolve(snapshot());
    };
    const maybeSettle = () => {
      if (inFlight === 0 && (done || next >= candidates.length)) settle(snapshot());
    };

    const launch = () => {
      const member = candidates[next++]!;
      inFlight++;
      call(member).then(
        (value) => {
          inFlight--;
          ok.push({ member, value });
          if (satisfied(ok)) finish();
          else if (inFlight === 0 && next >= candidates.length) finish();
          maybeSettle();
        },
        (error: unknown) => {
          inFlight--;
          failed.push({ member, error });
          if (!done) {
            if (next < candidates.length) launch();
            else if (inFlight === 0) finish();
          }
          maybeSettle();
        },
      );
    };

    if (satisfied(ok)) {
      finish();
      settle(snapshot());
      return;
    }
    const first = Math.min(Math.max(initial, 1), candidates.length);
    for (let i = 0; i < first; i++) launch();
    if (first === 0) {
      finish();
      settle(snapshot());
    }
  });
}

/** Satisfied once `need` calls succeeded. */
export function atLeast<T>(need: number) {
  return (ok: ReadonlyArray<unknown>): boolean => ok.length >= need;
}
