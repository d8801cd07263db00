import { Packr } from 'msgpackr';
import { InvalidRequest } from '../cluster/errors.js';
import { isVersion } from '../cluster/hlc.js';
import type { ReplicaRecord } from '../cluster/types.js';

/**
 * The wire shapes of the repair API (src/kv/repair-api.ts) and its client
 * (src/kv/repair-client.ts), and the checks both sides run on them. Bodies are
 * MessagePack (`application/x-msgpack`) so values travel as raw bytes;
 * requests that carry no values may also be JSON.
 *
 * Hash positions travel as 16 hex digits (a uint64 does not fit a JSON
 * number); ranges are inclusive [start, end] like placement arcs.
 */

export const MSGPACK = 'application/x-msgpack';
export const SYNC_DIGESTS_PATH = '/internal/sync/digests';
export const SYNC_ENTRIES_PATH = '/internal/sync/entries';
export const SYNC_FETCH_PATH = '/internal/sync/fetch';
export const SYNC_RANGE_PATH = '/internal/sync/range';
export const SYNC_APPLY_PATH = '/internal/sync/apply';
export const SYNC_STATUS_PATH = '/internal/sync/status';

/** Most ranges in one digests request. */
export const MAX_DIGEST_RANGES = 20_000;
/** Most entries in one entries page. */
export const MAX_ENTRIES_LIMIT = 10_000;
/** Most keys in one fetch, apply or hints request. */
export const MAX_BATCH_KEYS = 10_000;
/** A fetch answer stops adding records past this many value bytes and says where to resume. */
export const FETCH_BYTE_BUDGET = 4 * 1024 * 1024;

/** Plain MessagePack maps (no msgpackr record extension), so any MessagePack decoder can talk to it. */
export const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: false });

/** One record as the repair API ships it: a ReplicaRecord with its key. */
export interface RepairRecord extends ReplicaRecord {
  key: string;
}

/** One index entry as the entries endpoint lists it. */
export interface RepairEntry {
  key: string;
  version: string;
  tombstone: boolean;
}

export interface EntriesPage {
  entries: RepairEntry[];
  more: boolean;
}

/**
 * One page of a range's records as the range endpoint answers: each as
 * [key, the record's bytes as its storage holds them] (record-codec.ts), so
 * neither side decodes or re-encodes values.
 */
export interface RawPage {
  raw: Array<{ key: string; bytes: Buffer }>;
  more: boolean;
}

/** Checks a range answer's `raw` list: [key, bytes] pairs. */
export function rawList(value: unknown, field: string, max: number): Array<{ key: string; bytes: Buffer }> {
  if (!Array.isArray(value)) throw new InvalidRequest(`${field} must be an array of [key, bytes]`);
  if (value.length > max) throw new InvalidRequest(`${field} holds ${value.length} records; the limit is ${max}`);
  return value.map((pair: unknown, i) => {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || pair[0] === '' || !(pair[1] instanceof Uint8Array)) {
      throw new InvalidRequest(`${field}[${i}] must be [non-empty key, bytes]`);
    }
    const b = pair[1];
    return { key: pair[0], bytes: Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength) };
  });
}

export function hashToHex(h: bigint): string {
  return h.toString(16).padStart(16, '0');
}

export function hexToHash(value: unknown, field: string): bigint {
  if (typeof value !== 'string' || !/^[0-9a-fA-F]{1,16}$/.test(value)) {
    throw new InvalidRequest(`${field} must be a hash position of 1-16 hex digits`, { got: String(value).slice(0, 40) });
  }
  return BigInt(`0x${value}`);
}

export function parseRange(value: unknown, field: string): [bigint, bigint] {
  if (!Array.isArray(value) || value.length !== 2) throw new InvalidRequest(`${field} must be [startHex, endHex]`);
  const start = hexToHash(value[0], `${field}[0]`);
  const end = hexToHash(value[1], `${field}[1]`);
  if (start > end) throw new InvalidRequest(`${field} starts after it ends`);
  return [start, end];
}

export function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidRequest('request body must be an object');
  }
  return body as Record<string, unknown>;
}

export function stringList(value: unknown, field: string, max: number): string[] {
  if (!Array.isArray(value) || !value.every((k) => typeof k === 'string' && k.length > 0)) {
    throw new InvalidRequest(`${field} must be an array of non-empty strings`);
  }
  if (value.length > max) throw new InvalidRequest(`${field} holds ${value.length} items; the limit is ${max}`);
  return value as string[];
}

/**
 * Checks one decoded record and returns it as a RepairRecord: the same object
 * (no copy per record on the hot path), its value made a Buffer.
 */
export function parseRecord(value: unknown, field: string): RepairRecord {
  const r = value as Partial<Record<keyof RepairRecord, unknown>> | null;
  if (typeof r !== 'object' || r === null) throw new InvalidRequest(`${field} must be a record object`);
  if (typeof r.key !== 'string' || r.key.length === 0) throw new InvalidRequest(`${field}.key must be a non-empty string`);
  if (!isVersion(r.version)) throw new InvalidRequest(`${field}.version is not a version`, { key: r.key });
  if (typeof r.tombstone !== 'boolean') throw new InvalidRequest(`${field}.tombstone must be a boolean`, { key: r.key });
  if (typeof r.contentType !== 'string') throw new InvalidRequest(`${field}.contentType must be a string`, { key: r.key });
  const v = r.value;
  if (Buffer.isBuffer(v)) return r as RepairRecord;
  if (v instanceof Uint8Array) r.value = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  else if (v === undefined || v === null) r.value = Buffer.alloc(0);
  else throw new InvalidRequest(`${field}.value must be bytes`, { key: r.key });
  return r as RepairRecord;
}

export function recordList(value: unknown, field: string, max: number): RepairRecord[] {
  if (!Array.isArray(value)) throw new InvalidRequest(`${field} must be an array of records`);
  if (value.length > max) throw new InvalidRequest(`${field} holds ${value.length} records; the limit is ${max}`);
  return value.map((r, i) => parseRecord(r, `${field}[${i}]`));
}

export function entryList(value: unknown, field: string): RepairEntry[] {
  if (!Array.isArray(value)) throw new InvalidRequest(`${field} must be an array of entries`);
  for (const e of value as Array<Partial<RepairEntry> | null>) {
    if (typeof e?.key !== 'string' || !isVersion(e.version) || typeof e.tombstone !== 'boolean') {
      throw new InvalidRequest(`${field} holds an entry without {key, version, tombstone}`);
    }
  }
  return value as RepairEntry[];
}

/**
 * Decodes a request or response body by its content type: MessagePack, else
 * JSON. The KV server hands routes raw Buffers (replica-api.ts replaces
 * fastify's parsers); a body some other parser already decoded is used as is.
 */
export function decodeBody(contentType: string | undefined, body: unknown): { data: unknown; msgpack: boolean } {
  const msgpack = (contentType ?? '').split(';')[0]!.trim().toLowerCase() === MSGPACK;
  if (body !== undefined && body !== null && !Buffer.isBuffer(body)) return { data: body, msgpack };
  const raw = body ?? Buffer.alloc(0);
  if (raw.length === 0) return { data: {}, msgpack };
  try {
    return { data: msgpack ? packr.unpack(raw) : JSON.parse(raw.toString('utf8')), msgpack };
  } catch (err) {
    throw new InvalidRequest(`request body is not valid ${msgpack ? 'MessagePack' : 'JSON'}`, {}, { cause: err });
  }
}
