import { randomBytes } from 'node:crypto';
import { TOKEN_PREFIX, TOKEN_ROLES, TokenFileError, parseTokenFile, sha256Hex, type TokenRole } from '../gateway/tokens.js';
import { UsageError, type ParsedCommand } from './options.js';

/**
 * `flexstore token create --name NAME --role ROLE [--prefix P]...`: a new
 * client token (fs_ and 32 random bytes in base64url), printed once, and the
 * entry that grants it in a gateway's AUTH_TOKENS_FILE. The entry holds the
 * token's SHA-256 only; the token itself is kept nowhere, so a lost token is
 * replaced, never recovered.
 */

/** Random bytes in a token: 256 bits, beyond any guessing, so one unsalted SHA-256 is enough to store it. */
export const TOKEN_BYTES = 32;

export interface TokenFileEntry {
  name: string;
  sha256: string;
  role: TokenRole;
  prefixes?: string[];
}

export function newToken(): string {
  return TOKEN_PREFIX + randomBytes(TOKEN_BYTES).toString('base64url');
}

/** The file entry of token; throws UsageError when the gateway's parser would refuse it. */
export function tokenEntry(token: string, name: string, role: TokenRole, prefixes: readonly string[]): TokenFileEntry {
  const entry: TokenFileEntry = { name, sha256: sha256Hex(token), role, ...(prefixes.length > 0 && { prefixes: [...prefixes] }) };
  try {
    parseTokenFile(JSON.stringify({ tokens: [entry] }));
  } catch (err) {
    // The messages name tokens[0] and a field; the flag is what the user typed.
    if (err instanceof TokenFileError) throw new UsageError(err.message.replace(/^tokens\[0\]\./, '--'));
    throw err;
  }
  return entry;
}

export async function runTokenCommand(parsed: ParsedCommand): Promise<number> {
  const [action] = parsed.positionals as [string];
  if (action !== 'create') throw new UsageError(`flexstore token: unknown action ${JSON.stringify(action)}; expected create`);
  const name = parsed.values.name;
  const role = parsed.values.role;
  if (typeof name !== 'string') throw new UsageError('flexstore token create: --name NAME is required');
  if (typeof role !== 'string') throw new UsageError(`flexstore token create: --role is required (${TOKEN_ROLES.join(', ')})`);
  const prefixes = (parsed.values.prefix as string[] | undefined) ?? [];
  let entry: TokenFileEntry;
  const token = newToken();
  try {
    entry = tokenEntry(token, name, role as TokenRole, prefixes);
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`flexstore token create: ${err.message}`);
    throw err;
  }
  if (parsed.values.json === true) {
    process.stdout.write(`${JSON.stringify({ token, entry })}\n`);
    return 0;
  }
  const scope = entry.prefixes ? `keys under ${entry.prefixes.map((p) => JSON.stringify(p)).join(', ')}` : 'every key';
  process.stdout.write(
    [
      `token ${JSON.stringify(name)} (${role}, ${scope}); shown only now, store it in your secret store:`,
      '',
      `  ${token}`,
      '',
      `add this entry to the "tokens" array of the gateway's AUTH_TOKENS_FILE (it holds the token's SHA-256, not the token):`,
      '',
      `  ${JSON.stringify(entry)}`,
      '',
      'clients send it as Authorization: Bearer <token>; the CLI reads FLEXSTORE_TOKEN (or --token).',
      '',
    ].join('\n'),
  );
  return 0;
}
