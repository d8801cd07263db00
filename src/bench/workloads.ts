import type { NextRequest, RequestSpec } from './load.js';
import type { Workload } from './options.js';

/** Share of writes in the mixed workload. */
export const MIX_WRITE_RATIO = 0.1;

/** The i-th key of the benchmark key space. */
export function keyName(i: number): string {
  return `key-${i}`;
}

/** A value of `size` printable bytes; the content is irrelevant, only its size. */
export function makeValue(size: number): Buffer {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = alphabet.charCodeAt((i * 7919) % alphabet.length);
  return buf;
}

/** How a system spells read, write and delete of key i as HTTP requests. */
export interface Protocol {
  get(i: number): RequestSpec;
  put(i: number): RequestSpec;
  delete(i: number): RequestSpec;
}

/**
 * FlexStore's client API (`/kv/<key>`). The bare server and proxy are sent
 * the very same requests, so the baselines parse and move the same bytes.
 */
export function kvProtocol(value: Buffer): Protocol {
  return {
    get: (i) => ({ method: 'GET', path: `/kv/${keyName(i)}` }),
    put: (i) => ({
      method: 'PUT',
      path: `/kv/${keyName(i)}`,
      body: value,
      headers: { 'content-type': 'application/octet-stream' },
    }),
    delete: (i) => ({ method: 'DELETE', path: `/kv/${keyName(i)}` }),
  };
}

/**
 * etcd's v3 JSON gateway: every operation is a POST with base64 key and
 * value. Ranges are linearizable (etcd's default), the counterpart of a
 * quorum read.
 */
export function etcdProtocol(value: Buffer): Protocol {
  const v64 = value.toString('base64');
  const k64 = (i: number) => Buffer.from(keyName(i)).toString('base64');
  const json = { 'content-type': 'application/json' };
  return {
    get: (i) => ({ method: 'POST', path: '/v3/kv/range', body: `{"key":"${k64(i)}"}`, headers: json }),
    put: (i) => ({ method: 'POST', path: '/v3/kv/put', body: `{"key":"${k64(i)}","value":"${v64}"}`, headers: json }),
    delete: (i) => ({ method: 'POST', path: '/v3/kv/deleterange', body: `{"key":"${k64(i)}"}`, headers: json }),
  };
}

/**
 * The live keys a DELETE run may still delete, in random order, shared by
 * all connections so no key is deleted twice.
 */
export class KeyDeck {
  private readonly order: Uint32Array;
  private pos = 0;

  constructor(keys: Iterable<number> | number) {
    const list = typeof keys === 'number' ? Array.from({ length: keys }, (_, i) => i) : [...keys];
    this.order = Uint32Array.from(list);
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      const t = this.order[i]!;
      this.order[i] = this.order[j]!;
      this.order[j] = t;
    }
  }

  next(): number | undefined {
    return this.pos < this.order.length ? this.order[this.pos++] : undefined;
  }

  /** The keys handed out so far. */
  taken(): number[] {
    return Array.from(this.order.subarray(0, this.pos));
  }
}

/**
 * The request stream of a workload over keys [0, keys). Reads and writes
 * pick keys uniformly at random; a DELETE takes the next key from `deck`
 * when one is given (stateful systems) and a random key otherwise (the
 * baselines, which keep no keys).
 */
export function workloadRequests(workload: Workload, protocol: Protocol, keys: number, deck?: KeyDeck): NextRequest {
  const pick = () => Math.floor(Math.random() * keys);
  switch (workload) {
    case 'get':
      return () => ({ spec: protocol.get(pick()) });
    case 'put':
      return () => ({ spec: protocol.put(pick()) });
    case 'mix':
      return () => ({ spec: Math.random() < MIX_WRITE_RATIO ? protocol.put(pick()) : protocol.get(pick()) });
    case 'delete': {
      if (!deck) return () => ({ spec: protocol.delete(pick()) });
      let ranOut = false;
      return () => {
        const i = deck.next();
        if (i !== undefined) return { spec: protocol.delete(i) };
        const first = !ranOut;
        ranOut = true;
        return { spec: protocol.delete(0), overflow: true, exhausted: first };
      };
    }
  }
}
