import { createHash } from 'node:crypto';

/**
 * The stable 64-bit hash behind placement: the first 8 bytes of the MD5 digest
 * of the UTF-8 bytes, read big-endian. MD5 is used for its spread and because
 * every runtime computes it identically, not for security. Changing this
 * function moves every key: the golden tests in ring.test.ts pin it.
 */
export function hash64(input: string): bigint {
  return createHash('md5').update(input, 'utf8').digest().readBigUInt64BE(0);
}
