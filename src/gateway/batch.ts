import type { IncomingMessage } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import type { FastifyInstance } from 'fastify';
import { InvalidKey, InvalidRequest, PayloadTooLarge, normalizeError, toErrorBody, type ErrorBody } from '../cluster/errors.js';
import { rejectOtherMethods } from '../cluster/http-server.js';
import { checkKeyBytes } from '../cluster/http-wire.js';
import type { Consistency } from '../cluster/types.js';
import { checkBatchKeys } from './access.js';
import type { Coordinator } from './coordinator.js';

/**
 * `POST /batch`: many PUTs in one request.
 *
 * Each item is an ordinary PUT of its own key: its own version, its own
 * quorum, its own outcome. A batch is not a transaction: some items can
 * succeed while others fail (503 QUORUM_NOT_MET when their replicas are
 * down), and a failed item may still land later, like a failed PUT. What a
 * batch saves is the client's and the gateway's per-request HTTP work; the
 * replica writes of a batch leave together and the KV servers commit them
 * together.
 *
 * The whole body is checked before anything is written: one malformed item
 * rejects the batch with 400 (413 for an oversized value) naming the item,
 * and, with client tokens, one key outside the token's prefixes with 403.
 * Items are written in one go; a key given twice is written twice, and the
 * later item (the higher version) wins.
 */

/** Most items in one batch. */
export const MAX_BATCH_ITEMS = 1000;
/** Largest batch body. */
export const MAX_BATCH_BYTES = 16 * 1024 * 1024;

const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface BatchItem {
  key: string;
  value: Buffer;
  contentType: string;
}

/** An item's outcome: its version, or the error body a PUT of it alone would have answered, with that answer's status. */
export type BatchItemResult = { key: string; success: true; version: string } | ({ key: string; status: number } & ErrorBody);

export interface BatchLimits {
  maxKeyBytes: number;
  maxValueBytes: number;
}

/** The items of a batch body (its text, or its bytes), checked against the limits; throws a FlexStoreError naming the first bad item. */
export function parseBatch(body: unknown, limits: BatchLimits): BatchItem[] {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : '');
  } catch {
    throw new InvalidRequest('batch body must be JSON: {"items": [{"key": "...", "value": "..."}, ...]}');
  }
  const items = (doc as { items?: unknown } | null)?.items;
  if (!Array.isArray(items)) throw new InvalidRequest('batch body must be an object with an "items" array');
  if (items.length === 0 || items.length > MAX_BATCH_ITEMS) {
    throw new InvalidRequest(`a batch holds 1 to ${MAX_BATCH_ITEMS} items`, { items: items.length });
  }
  return items.map((raw, item) => parseItem(raw, item, limits));
}

function parseItem(raw: unknown, item: number, limits: BatchLimits): BatchItem {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidRequest('each batch item must be an object', { item });
  }
  const { key, value, valueBase64, contentType } = raw as Record<string, unknown>;
  if (typeof key !== 'string' || key === '') throw new InvalidKey('key must be a non-empty string', { item });
  checkKeyBytes(key, limits.maxKeyBytes, { item });
  let bytes: Buffer;
  if (typeof value === 'string' && valueBase64 === undefined) {
    bytes = Buffer.from(value, 'utf8');
  } else if (typeof valueBase64 === 'string' && value === undefined) {
    if (!BASE64.test(valueBase64)) throw new InvalidRequest('valueBase64 is not valid base64', { item, key });
    bytes = Buffer.from(valueBase64, 'base64');
  } else {
    throw new InvalidRequest('each batch item needs exactly one of "value" (a string) or "valueBase64"', { item, key });
  }
  if (bytes.length > limits.maxValueBytes) {
    throw new PayloadTooLarge(`value is ${bytes.length} bytes; the limit is ${limits.maxValueBytes}`, { item, key });
  }
  if (contentType !== undefined && (typeof contentType !== 'string' || contentType === '' || contentType.length > 1024)) {
    throw new InvalidRequest('contentType must be a non-empty string of at most 1024 characters', { item, key });
  }
  return { key, value: bytes, contentType: (contentType as string | undefined) ?? DEFAULT_CONTENT_TYPE };
}

/** Writes every item as its own PUT; never throws for an item, only reports it. */
export async function writeBatch(coordinator: Coordinator, items: readonly BatchItem[], consistency: Consistency): Promise<BatchItemResult[]> {
  return Promise.all(
    items.map(async ({ key, value, contentType }): Promise<BatchItemResult> => {
      try {
        const res = await coordinator.put(key, value, contentType, consistency);
        return { key, success: true, version: res.version };
      } catch (err) {
        const fe = normalizeError(err);
        return { key, ...toErrorBody(fe), status: fe.status };
      }
    }),
  );
}

export function registerBatchRoute(
  app: FastifyInstance,
  deps: { coordinator: Coordinator; limits: BatchLimits; consistencyOf: (query: unknown) => Consistency },
): void {
  // A scope of its own: the body is read as text here, as bytes on every other route.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (req, payload, done) => readText(req.raw, payload, MAX_BATCH_BYTES, done));
    scope.post('/batch', { bodyLimit: MAX_BATCH_BYTES }, async (req) => {
      const consistency = deps.consistencyOf(req.query);
      const items = parseBatch(req.body, deps.limits);
      // The text is garbage once parsed; the request would keep it until the response.
      req.body = undefined;
      checkBatchKeys(req.clientToken, items.map((i) => i.key));
      const results = await writeBatch(deps.coordinator, items, consistency);
      const failed = results.filter((r) => !r.success).length;
      return { success: failed === 0, failed, results };
    });
  });
  rejectOtherMethods(app, '/batch', ['POST']);
}

/**
 * Reads a body as UTF-8 text, decoding each chunk as it arrives. Fastify's
 * own readers keep every chunk and copy them into one Buffer before
 * decoding: for a 16 MiB batch that is 32 MiB of Buffers, allocated outside
 * V8's heap, that live until a full collection and that glibc rarely gives
 * back to the OS. Decoded at once, each chunk dies young and the text lives
 * in V8's heap, which returns its pages when it shrinks.
 */
function readText(
  raw: IncomingMessage,
  payload: NodeJS.ReadableStream,
  limit: number,
  done: (err: Error | null, body?: string) => void,
): void {
  const declared = raw.headers['content-length'] === undefined ? undefined : Number(raw.headers['content-length']);
  if (declared !== undefined && declared > limit) {
    done(new PayloadTooLarge(`request body is larger than the limit of ${limit} bytes`, { limit }));
    return;
  }
  const decoder = new StringDecoder('utf8');
  const parts: string[] = [];
  let received = 0;
  const finish = (err: Error | null, body?: string) => {
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onError);
    done(err, body);
  };
  const onData = (chunk: Buffer) => {
    received += chunk.length;
    if (received > limit) finish(new PayloadTooLarge(`request body is larger than the limit of ${limit} bytes`, { limit }));
    else parts.push(decoder.write(chunk));
  };
  const onEnd = () => {
    if (declared !== undefined && received !== declared) {
      finish(new InvalidRequest('request body length does not match Content-Length'));
      return;
    }
    parts.push(decoder.end());
    finish(null, parts.join(''));
  };
  // Fastify's readers answer 400 too: the body stopped short (the client went away).
  const onError = (err: Error) => finish(new InvalidRequest(`request body could not be read: ${err.message}`));
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
  payload.resume();
}
