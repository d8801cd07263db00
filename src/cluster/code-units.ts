/**
 * Strings as bytes, one UTF-16 code unit at a time (CESU-8 style): every code
 * unit is encoded as if it were a code point, 1–3 bytes, so a surrogate pair
 * takes 6 and a lone surrogate survives the round trip. For strings without
 * surrogates the bytes are exactly UTF-8.
 *
 * Two properties make this the encoding of keys both on disk and on the
 * replica wire: bytewise order equals JS string order (`<`, UTF-16 code
 * units), which UTF-8 does not give for characters above U+FFFF; and any JS
 * string, even one plain UTF-8 would turn into U+FFFD, arrives unchanged.
 */

const SURROGATE = /[\uD800-\uDFFF]/;

export function codeUnitBytes(s: string): number {
  if (!SURROGATE.test(s)) return Buffer.byteLength(s);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
  }
  return n;
}

/** Writes s at off (the caller made room: codeUnitBytes(s)); returns the end offset. */
export function writeCodeUnits(buf: Buffer, s: string, off: number): number {
  if (!SURROGATE.test(s)) return off + buf.write(s, off, 'utf8');
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) buf[off++] = c;
    else if (c < 0x800) {
      buf[off++] = 0xc0 | (c >> 6);
      buf[off++] = 0x80 | (c & 0x3f);
    } else {
      buf[off++] = 0xe0 | (c >> 12);
      buf[off++] = 0x80 | ((c >> 6) & 0x3f);
      buf[off++] = 0x80 | (c & 0x3f);
    }
  }
  return off;
}

export function readCodeUnits(buf: Buffer, start: number, end: number): string {
  // An encoded surrogate starts ED A0..BF, which UTF-8 never contains: without
  // one, the fast native decoder is exact.
  let i = buf.indexOf(0xed, start);
  while (i !== -1 && i < end - 1 && buf[i + 1]! < 0xa0) i = buf.indexOf(0xed, i + 1);
  if (i === -1 || i >= end - 1) return buf.toString('utf8', start, end);
  let out = '';
  for (let p = start; p < end; ) {
    const b = buf[p]!;
    const n = b < 0x80 ? 1 : b < 0xe0 ? 2 : 3;
    // A unit cut short by `end` (malformed input) must not take bits from the
    // next field: it reads as U+FFFD, as the native decoder reads a cut UTF-8 sequence.
    if (p + n > end) return out + '\ufffd';
    if (n === 1) out += String.fromCharCode(b);
    else if (n === 2) out += String.fromCharCode(((b & 0x1f) << 6) | (buf[p + 1]! & 0x3f));
    else out += String.fromCharCode(((b & 0x0f) << 12) | ((buf[p + 1]! & 0x3f) << 6) | (buf[p + 2]! & 0x3f));
    p += n;
  }
  return out;
}
