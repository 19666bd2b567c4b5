/**
 * IP addresses as text and as bytes, and the Linux `sockaddr_in` / `sockaddr_in6` layout
 * that PF_KEY address extensions embed (family in host order, port in network order).
 */

import { AF_INET, AF_INET6 } from './constants.js';

/** Parse dotted-quad IPv4 text into 4 bytes written at `out[off..]`; false if malformed. */
export function parseIPv4Into(s: string, out: Uint8Array, off: number): boolean {
  let part = 0;
  let digits = 0;
  let n = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; /* '.' terminates the last part */
    if (c === 46) {
      if (digits === 0 || part > 3) return false;
      out[off + part++] = n;
      n = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && n === 0) return false; /* no leading zeros: 01 is ambiguous (octal) */
      n = n * 10 + (c - 48);
      if (n > 255 || ++digits > 3) return false;
    } else return false;
  }
  return part === 4;
}

/** IPv4 text to 4 bytes, or undefined. */
export function parseIPv4(s: string): Uint8Array | undefined {
  const b = new Uint8Array(4);
  return parseIPv4Into(s, b, 0) ? b : undefined;
}

/** IPv6 text (RFC 4291 forms, with an optional embedded IPv4 tail) to 16 bytes, or undefined. */
export function parseIPv6(s: string): Uint8Array | undefined {
  const out = new Uint8Array(16);
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return undefined;
  const parseGroups = (txt: string, allowV4: boolean): number[] | undefined => {
    if (txt === '') return [];
    const groups = txt.split(':');
    const words: number[] = [];
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (allowV4 && i === groups.length - 1 && g.includes('.')) {
        const v4 = parseIPv4(g);
        if (!v4) return undefined;
        words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
        words.push(parseInt(g, 16));
      }
    }
    return words;
  };
  let words: number[];
  if (dbl === -1) {
    const w = parseGroups(s, true);
    if (!w || w.length !== 8) return undefined;
    words = w;
  } else {
    const head = parseGroups(s.slice(0, dbl), false);
    const tail = parseGroups(s.slice(dbl + 2), true);
    if (!head || !tail || head.length + tail.length > 7) return undefined;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i] >> 8;
    out[2 * i + 1] = words[i] & 0xff;
  }
  return out;
}

export function formatIPv4(b: Uint8Array, off = 0): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/**
 * IPv4 text as a 32-bit number; throws RangeError if malformed. Built messages repeat a
 * few peers' addresses, so results are kept in a small direct-mapped cache keyed by the
 * text's length and last two characters (a hit costs a string comparison, no parse).
 */
const scratch = new Uint8Array(4);
const N4_SLOTS = 256;
const n4Text: string[] = new Array<string>(N4_SLOTS).fill('');
const n4Value = new Float64Array(N4_SLOTS);
export function ipv4Number(s: string): number {
  const n = s.length;
  const slot = n < 7 ? 0 : (n * 31 + s.charCodeAt(n - 1) * 7 + s.charCodeAt(n - 2)) & (N4_SLOTS - 1);
  if (n4Text[slot] === s) return n4Value[slot];
  if (!parseIPv4Into(s, scratch, 0)) throw new RangeError(`not an IPv4 address: ${s}`);
  const v = ((scratch[0] << 24) | (scratch[1] << 16) | (scratch[2] << 8) | scratch[3]) >>> 0;
  n4Text[slot] = s;
  n4Value[slot] = v;
  return v;
}

/**
 * IPv4 text from bytes through a small direct-mapped cache: a PF_KEY peer mostly repeats
 * a few addresses, and a miss costs no more than formatting.
 */
const V4_SLOTS = 4096;
const v4Keys = new Float64Array(V4_SLOTS).fill(-1);
const v4Text: string[] = new Array(V4_SLOTS).fill('');
export function formatIPv4Cached(b: Uint8Array, off: number): string {
  return formatIPv4Word(((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0);
}

/** formatIPv4Cached for the address as a number (its four bytes in network order). */
export function formatIPv4Word(k: number): string {
  const slot = (k ^ (k >>> 12)) & (V4_SLOTS - 1);
  if (v4Keys[slot] === k) return v4Text[slot];
  const t = `${k >>> 24}.${(k >>> 16) & 0xff}.${(k >>> 8) & 0xff}.${k & 0xff}`;
  v4Keys[slot] = k;
  v4Text[slot] = t;
  return t;
}

/** RFC 5952 canonical text: lower case, longest run of two or more zero words as "::". */
export function formatIPv6(b: Uint8Array, off = 0): string {
  const w: number[] = new Array(8);
  for (let i = 0; i < 8; i++) w[i] = (b[off + 2 * i] << 8) | b[off + 2 * i + 1];
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  // IPv4-mapped addresses keep their dotted tail (::ffff:192.0.2.1).
  if (bestStart === 0 && bestLen === 5 && w[5] === 0xffff) {
    return `::ffff:${formatIPv4(b, off + 12)}`;
  }
  const hex = (from: number, to: number) => w.slice(from, to).map((x) => x.toString(16)).join(':');
  if (bestStart === -1) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/** The address family a text address belongs to, or 0 if it is neither. */
export function familyOf(addr: string): number {
  if (parseIPv4(addr)) return AF_INET;
  if (parseIPv6(addr)) return AF_INET6;
  return 0;
}

/** Address bytes for a family; throws on malformed text (a programming or user error). */
export function addressBytes(family: number, addr: string): Uint8Array {
  const b = family === AF_INET ? parseIPv4(addr) : family === AF_INET6 ? parseIPv6(addr) : undefined;
  if (!b) throw new RangeError(`not an ${family === AF_INET6 ? 'IPv6' : 'IPv4'} address: ${addr}`);
  return b;
}

export function formatAddress(family: number, b: Uint8Array, off = 0): string {
  return family === AF_INET ? formatIPv4(b, off) : formatIPv6(b, off);
}

/** Length of a Linux sockaddr for a family: sockaddr_in 16, sockaddr_in6 28. */
export function sockaddrLength(family: number): number {
  return family === AF_INET ? 16 : family === AF_INET6 ? 28 : 0;
}

/** A prefix length (0..32 or 0..128) as a netmask in text form. */
export function prefixToMask(family: number, prefixlen: number): string {
  const n = family === AF_INET ? 4 : 16;
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const bits = Math.max(0, Math.min(8, prefixlen - 8 * i));
    b[i] = bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff;
  }
  return formatAddress(family, b);
}

/** The prefix length of a contiguous netmask, or -1 if the mask is not contiguous. */
export function maskToPrefix(family: number, mask: string): number {
  const b = addressBytes(family, mask);
  let len = 0;
  let i = 0;
  for (; i < b.length && b[i] === 0xff; i++) len += 8;
  if (i < b.length) {
    let x = b[i];
    while (x & 0x80) { len++; x = (x << 1) & 0xff; }
    if (x !== 0) return -1;
    for (i++; i < b.length; i++) if (b[i] !== 0) return -1;
  }
  return len;
}
