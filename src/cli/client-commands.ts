import { FlexStoreClient, FlexStoreConnectionError, FlexStoreRequestError } from '../client/index.js';
import { clientSettingsFrom, type CommandName } from './commands.js';
import { formatRows, type ParsedCommand } from './options.js';
import { readClientTls } from './client-tls.js';

/**
 * put, get, del, ls and status: thin wrappers over FlexStoreClient. Each
 * resolves to the process exit code; the caller sets it rather than calling
 * process.exit, so a large value piped to stdout is flushed completely.
 */

type ClientCommand = (client: FlexStoreClient, args: string[], parsed: ParsedCommand, json: boolean) => Promise<number>;

const handlers: Partial<Record<CommandName, ClientCommand>> = {
  async put(client, [key, value], parsed, json) {
    const contentType = parsed.values['content-type'];
    const body = value === '-' ? await readStdin() : value!;
    const res = await client.put(key!, body, typeof contentType === 'string' ? { contentType } : {});
    print(json ? JSON.stringify(res) : `stored ${JSON.stringify(res.key)} version ${res.version}`);
    return 0;
  },

  async get(client, [key], _parsed, json) {
    const res = await client.get(key!);
    if (res === null) return notFound(key!);
    if (json) {
      const text = utf8OrUndefined(res.value);
      print(
        JSON.stringify({
          key,
          version: res.version,
          contentType: res.contentType,
          ...(text !== undefined ? { value: text, encoding: 'utf8' } : { value: res.value.toString('base64'), encoding: 'base64' }),
        }),
      );
    } else {
      await writeStdout(res.value);
    }
    return 0;
  },

  async del(client, [key], _parsed, json) {
    if (!(await client.delete(key!))) return notFound(key!);
    print(json ? JSON.stringify({ key, deleted: true }) : `deleted ${JSON.stringify(key)}`);
    return 0;
  },

  async ls(client, [prefix], parsed, json) {
    const limit = typeof parsed.values.limit === 'number' ? parsed.values.limit : Infinity;
    const keys: string[] = [];
    let after: string | undefined;
    // Pages are fetched by hand rather than with client.keys() so --limit can bound the page size too.
    while (keys.length < limit) {
      const pageSize = Number.isFinite(limit) ? Math.min(limit - keys.length, 1000) : undefined;
      const page = await client.list({ prefix, after, limit: pageSize });
      for (const k of page.keys) {
        if (keys.length >= limit) break;
        keys.push(k);
        if (!json) print(k);
      }
      if (page.next === null || page.next === after) break;
      after = page.next;
    }
    if (json) print(JSON.stringify(keys));
    return 0;
  },

  async status(client, _args, _parsed, json) {
    const view = await client.cluster();
    if (json) {
      print(JSON.stringify(view, null, 2));
      return 0;
    }
    const members = (view as { members?: unknown } | null)?.members;
    if (!Array.isArray(members)) {
      print(JSON.stringify(view, null, 2));
      return 0;
    }
    if (members.length === 0) {
      print('no members registered');
      return 0;
    }
    const rows = members.map((m: Record<string, unknown>) => [
      String(m.id ?? ''),
      String(m.url ?? ''),
      // The column stays one word for the usual case; a full disk is rare and must not be missed.
      m.storage === 'full' ? `${String(m.state ?? '')}, storage full` : String(m.state ?? ''),
      String(m.phase ?? 'active'),
      formatOwnership(m.ownership),
      formatTransfer(m.transfer),
    ]);
    for (const line of formatRows([['ID', 'URL', 'STATE', 'PHASE', 'OWNERSHIP', 'TRANSFER'], ...rows])) print(line.slice(2));
    const pending = (view as { pendingAcquirers?: unknown }).pendingAcquirers;
    if (Array.isArray(pending) && pending.length > 0) {
      print(`membership change in progress: waiting for ${pending.join(', ')} to finish pulling their ranges`);
    }
    const skew = (view as { clockSkewWarning?: unknown }).clockSkewWarning;
    if (typeof skew === 'string') print(`warning: ${skew}`);
    const waiting = members.filter((m: Record<string, unknown>) => m.phase === 'pending').map((m: Record<string, unknown>) => String(m.id));
    if (waiting.length > 0) print(`waiting for a join slot (MAX_JOINING): ${waiting.join(', ')}`);
    const full = members.filter((m: Record<string, unknown>) => m.storage === 'full').map((m: Record<string, unknown>) => String(m.id));
    if (full.length > 0) {
      print(`warning: storage full on ${full.join(', ')}: refusing writes, serving reads; free space in its data dir (docs/operations.md, "A full disk")`);
    }
    return 0;
  },
};

/** "12/40 ranges, 5,310 keys (hints 3)" from a member's reported progress. */
function formatTransfer(t: unknown): string {
  if (typeof t !== 'object' || t === null) return '-';
  const p = t as Record<string, number>;
  const parts = [`${p.rangesDone ?? 0}/${p.rangesTotal ?? 0} ranges`, `${(p.keysMoved ?? 0).toLocaleString('en')} keys`];
  if (p.hintsPending) parts.push(`hints ${p.hintsPending}`);
  return parts.join(', ');
}

export function isClientCommand(name: CommandName): boolean {
  return Object.hasOwn(handlers, name);
}

export async function runClientCommand(name: CommandName, parsed: ParsedCommand): Promise<number> {
  const handler = handlers[name];
  if (!handler) throw new Error(`${name} is not a client command`);
  const settings = clientSettingsFrom(parsed.values);
  const client = new FlexStoreClient({
    gateway: settings.gateway,
    timeoutMs: settings.timeoutMs,
    // FLEXSTORE_TOKEN reaches settings.token through the option row; none given sends none.
    token: settings.token ?? '',
    ...readClientTls(parsed.values),
    ...(settings.consistency ? { consistency: settings.consistency } : {}),
  });
  try {
    return await handler(client, parsed.positionals, parsed, settings.json);
  } catch (err) {
    if (err instanceof FlexStoreRequestError || err instanceof FlexStoreConnectionError) {
      const hint =
        err instanceof FlexStoreRequestError && err.status === 401
          ? settings.token === undefined
            ? '; the gateway needs a client token: set FLEXSTORE_TOKEN or give --token'
            : '; the gateway does not accept this token'
          : '';
      process.stderr.write(`error: ${err.message} (${err.code})${hint}\n`);
      return 1;
    }
    throw err;
  } finally {
    await client.close();
  }
}

function notFound(key: string): number {
  process.stderr.write(`error: key not found: ${JSON.stringify(key)} (KEY_NOT_FOUND)\n`);
  return 1;
}

/** The ring reports a fraction of the hash space; a value above 1 is taken as already a percentage. */
function formatOwnership(x: unknown): string {
  if (typeof x !== 'number' || !Number.isFinite(x)) return '-';
  return `${(x <= 1 ? x * 100 : x).toFixed(1)}%`;
}

function print(line: string): void {
  process.stdout.write(line + '\n');
}

function writeStdout(buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    // A reader that stops early (`flexstore get k | head -c 10`) is not an error.
    process.stdout.write(buf, (err) => (err && (err as NodeJS.ErrnoException).code !== 'EPIPE' ? reject(err) : resolve()));
  });
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function utf8OrUndefined(buf: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return undefined;
  }
}
