import { createHash } from 'node:crypto';

export const MEMBER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

const MAX_ID_LENGTH = 64;
const ID_HASH_HEX = 16;

/**
 * The id a member gets when it registers without one: its url with every
 * character outside [A-Za-z0-9_-] replaced by '_', so
 * http://127.0.0.1:8001 becomes http___127_0_0_1_8001. Readable in logs and
 * stable across registry restarts. A url too long for the 64-character id rule
 * keeps its first 47 characters, a '-' and 16 hex digits of its sha256, which
 * keeps distinct long urls apart.
 *
 * Known gap: urls differing only in replaced characters (http://a.b vs
 * http://a_b) map to the same id; KV servers avoid this by sending their own
 * stable id, which the design expects them to do anyway.
 */
export function deriveMemberId(url: string): string {
  const safe = url.replace(/[^A-Za-z0-9_-]/g, '_');
  if (safe.length <= MAX_ID_LENGTH) return safe;
  const digest = createHash('sha256').update(url).digest('hex').slice(0, ID_HASH_HEX);
  return `${safe.slice(0, MAX_ID_LENGTH - ID_HASH_HEX - 1)}-${digest}`;
}
