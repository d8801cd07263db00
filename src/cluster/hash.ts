import { hash } from 'node:crypto';

/**
 * The stable 64-bit hash behind placement: the first 8 bytes of the MD5 digest
 * of the UTF-8 bytes, read big-endian. MD5 is used for its spread and because
 * every runtime computes it identically, not for security. Changing this
 * function moves every key: the golden tests in ring.test.ts pin it.
 *
 * crypto.hash is the one-shot form: half the cost of createHash() per key on
 * the gateway's hot path, same digest.
 */
export function hash64(input: string): bigint {
  return hash('md5', input, 'buffer').readBigUInt64BE(0);
}
