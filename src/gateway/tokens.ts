import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Client tokens of a gateway (AUTH_TOKENS_FILE). The file holds no token,
 * only its SHA-256, so a leaked file grants nothing:
 *
 *   {"tokens": [{"name": "app", "sha256": "<hex SHA-256 of the token's UTF-8>",
 *                "role": "readwrite", "prefixes": ["app/"]}]}
 *
 * Roles, each allowing what the one before does:
 * - `read`: GET a key, list keys; /metrics and /cluster.
 * - `readwrite`: also PUT, DELETE and POST /batch.
 * - `admin`: the same data access; reserved for operator endpoints.
 * `prefixes` limits every data operation to keys starting with one of them;
 * without it a token reaches every key.
 *
 * The parser is strict (unknown fields, duplicate names or hashes, an empty
 * prefix list are refused): a typo such as "prefix" for "prefixes" must not
 * silently widen a token to every key.
 */

export const TOKEN_ROLES = ['read', 'readwrite', 'admin'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

export interface TokenEntry {
  name: string;
  /** SHA-256 of the token's UTF-8, 32 bytes. */
  sha256: Buffer;
  role: TokenRole;
  /** Key prefixes the token may touch; null: every key. */
  prefixes: readonly string[] | null;
}

/** The token file does not parse or break a rule; the message names the entry and field. */
export class TokenFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenFileError';
  }
}

const ENTRY_FIELDS = new Set(['name', 'sha256', 'role', 'prefixes']);
const HEX64 = /^[0-9a-f]{64}$/i;
const MAX_NAME = 128;
const MAX_PREFIX_CHARS = 4096;

export function sha256Hex(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The entries of a token file's text; throws TokenFileError naming the first problem. */
export function parseTokenFile(text: string): TokenEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new TokenFileError(`token file is not JSON: ${jsonProblem(err)}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new TokenFileError('token file must be an object: {"tokens": [...]}');
  }
  const extra = Object.keys(doc).filter((k) => k !== 'tokens');
  if (extra.length > 0) throw new TokenFileError(`token file has unknown field ${fieldName(extra[0]!)}; only "tokens"`);
  const list = (doc as { tokens?: unknown }).tokens;
  if (!Array.isArray(list)) throw new TokenFileError('token file needs a "tokens" array');
  const names = new Set<string>();
  const hashes = new Set<string>();
  return list.map((raw, i) => {
    const where = `tokens[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new TokenFileError(`${where} must be an object`);
    const r = raw as Record<string, unknown>;
    const unknown = Object.keys(r).find((k) => !ENTRY_FIELDS.has(k));
    if (unknown !== undefined) throw new TokenFileError(`${where} has unknown field ${fieldName(unknown)}`);
    const { name, sha256, role, prefixes } = r;
    if (typeof name !== 'string' || name.trim() === '' || name.length > MAX_NAME) {
      throw new TokenFileError(`${where}.name must be a non-empty string of at most ${MAX_NAME} characters`);
    }
    if (names.has(name)) throw new TokenFileError(`${where}.name ${JSON.stringify(name)} is used twice`);
    names.add(name);
    if (typeof sha256 !== 'string' || !HEX64.test(sha256)) {
      throw new TokenFileError(`${where}.sha256 must be 64 hex digits (the SHA-256 of the token)`);
    }
    const hex = sha256.toLowerCase();
    if (hashes.has(hex)) throw new TokenFileError(`${where}.sha256 is the hash of another entry too`);
    hashes.add(hex);
    if (typeof role !== 'string' || !(TOKEN_ROLES as readonly string[]).includes(role)) {
      throw new TokenFileError(`${where}.role must be one of ${TOKEN_ROLES.join(', ')}`);
    }
    let pre: string[] | null = null;
    if (prefixes !== undefined) {
      if (!Array.isArray(prefixes) || prefixes.length === 0) {
        throw new TokenFileError(`${where}.prefixes must be a non-empty array of strings; leave it out for every key`);
      }
      for (const p of prefixes) {
        if (typeof p !== 'string' || p.length > MAX_PREFIX_CHARS) {
          throw new TokenFileError(`${where}.prefixes must hold strings of at most ${MAX_PREFIX_CHARS} characters`);
        }
      }
      // "" covers every key: the same as no prefixes.
      pre = prefixes.includes('') ? null : [...new Set(prefixes as string[])];
    }
    return { name, sha256: Buffer.from(hex, 'hex'), role: role as TokenRole, prefixes: pre };
  });
}

/** The prefix of the tokens `flexstore token create` makes: recognisable in a leaked config or a secret scanner. */
export const TOKEN_PREFIX = 'fs_';

/**
 * The syntax error without the excerpt of the text V8 puts in it (`..."[fs_abc"... is
 * not valid JSON`): a token pasted into the file by mistake must not reach a log.
 */
function jsonProblem(err: unknown): string {
  const message = (err as Error).message.replace(/,?\s*(\.\.\.)?".*$/s, '').trim();
  return message === '' ? 'syntax error' : message;
}

/** An unknown field's name for a message, unless it could be a token pasted as a field name. */
function fieldName(name: string): string {
  return name.length <= 32 && !name.startsWith(TOKEN_PREFIX) ? JSON.stringify(name) : `(a name of ${name.length} characters)`;
}

/**
 * The entry whose hash matches the token, or undefined. Every entry is
 * compared, with timingSafeEqual, whatever matched: the time taken does not
 * tell which entry (or how much of a hash) matched.
 */
export function findToken(entries: readonly TokenEntry[], token: string): TokenEntry | undefined {
  const digest = createHash('sha256').update(token, 'utf8').digest();
  let found: TokenEntry | undefined;
  for (const e of entries) {
    if (timingSafeEqual(e.sha256, digest) && found === undefined) found = e;
  }
  return found;
}
