/**
 * One small codec per PF_KEY extension family (decode, encode, encodingLength), and the
 * table from extension type (1..32, openswan numbering) to codec and message field.
 *
 * Byte order is the one KLIPS and its tools use on little-endian Linux: host order for
 * lengths, counters, bit counts, NAT-T ports and interface numbers; network order for
 * SPIs, sockaddr ports and (KLIPS's own quirk) the SPI range bounds.
 *
 * Each decoder checks what KLIPS's pfkey_*_parse checks, with KLIPS's errno. klips is
 * stricter in one respect: padding and sin_zero bytes must be zero and padding must be
 * minimal, so every accepted extension has exactly one encoding (see docs/wire.md).
 */

import {
  AF_INET, AF_INET6, SADB_SASTATE_DEAD, SADB_SASTATE_MAX, SADB_IDENTTYPE_MAX,
  SADB_SATYPE_MAX, SATYPE_TO_PROTO, DEBUG_SUBSYSTEMS, type DebugSubsystem,
} from './constants.js';
import { ERRNO, fail } from './errno.js';
import { addressBytes, formatAddress, sockaddrLength } from './sockaddr.js';

// ---------- value types ----------

export interface Sa {
  spi: number;
  replay: number;
  state: number;
  auth: number;
  encrypt: number;
  flags: number;
  /** KLIPS's `sadb_x_sa_ref`; present exactly when the 24-byte k_sadb_sa form is used. */
  ref?: number;
}

export interface Lifetime {
  allocations: number;
  bytes: bigint;
  addtime: bigint;
  usetime: bigint;
  /** openswan's `sadb_x_lifetime_packets`; present exactly when the 40-byte form is used. */
  packets?: number;
}

export interface Address {
  proto: number;
  prefixlen: number;
  family: number;
  port: number;
  addr: string;
  /** sockaddr_in6 only. */
  flowinfo?: number;
  scopeId?: number;
}

export interface Key {
  bits: number;
  /** ceil(bits / 8) bytes. */
  key: Uint8Array;
}

export interface Ident {
  type: number;
  id: bigint;
  /** The identity string without its NUL terminator, one character per byte (latin1). */
  data: string;
}

export interface Sens {
  dpd: number;
  sensLevel: number;
  integLevel: number;
  /** Bitmaps, a multiple of 8 bytes each. */
  sensBitmap: Uint8Array;
  integBitmap: Uint8Array;
}

export interface Comb {
  auth: number;
  encrypt: number;
  flags: number;
  authMinbits: number;
  authMaxbits: number;
  encryptMinbits: number;
  encryptMaxbits: number;
  softAllocations: number;
  hardAllocations: number;
  softBytes: bigint;
  hardBytes: bigint;
  softAddtime: bigint;
  hardAddtime: bigint;
  softUsetime: bigint;
  hardUsetime: bigint;
}

export interface Prop {
  replay: number;
  combs: Comb[];
}

export interface Alg {
  id: number;
  ivlen: number;
  minbits: number;
  maxbits: number;
}

export interface Supported {
  algs: Alg[];
}

export interface SpiRange {
  min: number;
  max: number;
}

export interface KmPrivate {
  data: Uint8Array;
}

export interface XSatype {
  satype: number;
}

export type XDebug = Record<DebugSubsystem, number>;

export interface Protocol {
  proto: number;
  direction: number;
  flags: number;
}

export interface NatTType {
  type: number;
}

export interface NatTPort {
  port: number;
}

export interface Plumbif {
  ifnum: number;
}

export interface Saref {
  me: number;
  him: number;
}

/** Every extension a message may carry, by field name. */
export interface Extensions {
  sa?: Sa;
  lifetimeCurrent?: Lifetime;
  lifetimeHard?: Lifetime;
  lifetimeSoft?: Lifetime;
  addressSrc?: Address;
  addressDst?: Address;
  addressProxy?: Address;
  keyAuth?: Key;
  keyEncrypt?: Key;
  identitySrc?: Ident;
  identityDst?: Ident;
  sensitivity?: Sens;
  proposal?: Prop;
  supportedAuth?: Supported;
  supportedEncrypt?: Supported;
  spirange?: SpiRange;
  kmprivate?: KmPrivate;
  satype2?: XSatype;
  sa2?: Sa;
  addressDst2?: Address;
  addressSrcFlow?: Address;
  addressDstFlow?: Address;
  addressSrcMask?: Address;
  addressDstMask?: Address;
  debug?: XDebug;
  protocol?: Protocol;
  natTType?: NatTType;
  natTSport?: NatTPort;
  natTDport?: NatTPort;
  natTOa?: Address;
  plumbif?: Plumbif;
  saref?: Saref;
}
export type ExtField = keyof Extensions;

// ---------- codec plumbing ----------

/**
 * A codec sees the whole message (`dv`/`u8`), the extension's byte offset and its total
 * length in bytes (header included, from sadb_ext_len).
 */
export interface ExtCodec<T> {
  decode(dv: DataView, u8: Uint8Array, off: number, len: number, exttype: number): T;
  encodingLength(v: T): number;
  encode(v: T, dv: DataView, u8: Uint8Array, off: number, exttype: number): void;
}

const LE = true;
const pad8 = (n: number) => (n + 7) & ~7;

function bad(errno: number, off: number, exttype: number, reason: string): never {
  fail(errno, reason, { offset: off, exttype });
}

function header(dv: DataView, off: number, len: number, exttype: number): void {
  if (len / 8 > 0xffff) throw new RangeError(`extension of ${len} bytes is too long for sadb_ext_len`);
  dv.setUint16(off, len / 8, LE);
  dv.setUint16(off + 2, exttype, LE);
}

function allZero(u8: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (u8[i] !== 0) return false;
  return true;
}

function requireZeroPad(u8: Uint8Array, from: number, to: number, off: number, exttype: number, what: string): void {
  if (!allZero(u8, from, to)) bad(ERRNO.EINVAL, off, exttype, `${what} must be zero`);
}

/** A copy of bytes [from, to) that never shares memory with the input (even a Buffer). */
function copyBytes(u8: Uint8Array, from: number, to: number): Uint8Array {
  const out = new Uint8Array(to - from);
  out.set(u8.subarray(from, to));
  return out;
}

function exactLength(len: number, want: number, off: number, exttype: number, what: string): void {
  if (len !== want) bad(ERRNO.EINVAL, off, exttype, `${what} extension is ${len} bytes, must be ${want}`);
}

// ---------- SA (sadb_sa, 16 bytes; k_sadb_sa, 24 bytes) ----------

/** KLIPS's SAref table index width: refs are below 2^15, or the NULL ref 0. */
export const IPSEC_SA_REF_TABLE_NUM_ENTRIES = 1 << 15;
export const IPSEC_SAREF_NULL = 0;

const saCodec: ExtCodec<Sa> = {
  decode(dv, u8, off, len, exttype) {
    if (len !== 16 && len !== 24) bad(ERRNO.EINVAL, off, exttype, `SA extension is ${len} bytes, must be 16 or 24`);
    const sa: Sa = {
      spi: dv.getUint32(off + 4, false),
      replay: u8[off + 8],
      state: u8[off + 9],
      auth: u8[off + 10],
      encrypt: u8[off + 11],
      flags: dv.getUint32(off + 12, LE),
    };
    if (sa.state > SADB_SASTATE_MAX) bad(ERRNO.EINVAL, off, exttype, `SA state ${sa.state} out of range`);
    if (sa.state === SADB_SASTATE_DEAD) bad(ERRNO.EINVAL, off, exttype, 'SA state DEAD is not accepted');
    if (sa.replay > 64) bad(ERRNO.EINVAL, off, exttype, `replay window ${sa.replay} > 64`);
    if (len === 24) {
      const ref = dv.getUint32(off + 16, LE);
      if (ref !== IPSEC_SAREF_NULL && ref !== 0xffffffff && ref >= IPSEC_SA_REF_TABLE_NUM_ENTRIES) {
        bad(ERRNO.EINVAL, off, exttype, `SAref ${ref} out of range`);
      }
      requireZeroPad(u8, off + 20, off + 24, off, exttype, 'SA reserved bytes');
      sa.ref = ref;
    }
    return sa;
  },
  encodingLength: (v) => (v.ref === undefined ? 16 : 24),
  encode(v, dv, u8, off, exttype) {
    const len = v.ref === undefined ? 16 : 24;
    header(dv, off, len, exttype);
    dv.setUint32(off + 4, v.spi >>> 0, false);
    u8[off + 8] = v.replay;
    u8[off + 9] = v.state;
    u8[off + 10] = v.auth;
    u8[off + 11] = v.encrypt;
    dv.setUint32(off + 12, v.flags >>> 0, LE);
    if (v.ref !== undefined) {
      dv.setUint32(off + 16, v.ref >>> 0, LE);
      dv.setUint32(off + 20, 0, LE);
    }
  },
};

// ---------- lifetime (32 bytes RFC 2367; 40 bytes openswan with x_packets) ----------

const lifetimeCodec: ExtCodec<Lifetime> = {
  decode(dv, u8, off, len, exttype) {
    if (len !== 32 && len !== 40) bad(ERRNO.EINVAL, off, exttype, `lifetime extension is ${len} bytes, must be 32 or 40`);
    const lt: Lifetime = {
      allocations: dv.getUint32(off + 4, LE),
      bytes: dv.getBigUint64(off + 8, LE),
      addtime: dv.getBigUint64(off + 16, LE),
      usetime: dv.getBigUint64(off + 24, LE),
    };
    if (len === 40) {
      lt.packets = dv.getUint32(off + 32, LE);
      requireZeroPad(u8, off + 36, off + 40, off, exttype, 'lifetime reserved bytes');
    }
    return lt;
  },
  encodingLength: (v) => (v.packets === undefined ? 32 : 40),
  encode(v, dv, _u8, off, exttype) {
    header(dv, off, v.packets === undefined ? 32 : 40, exttype);
    dv.setUint32(off + 4, v.allocations >>> 0, LE);
    dv.setBigUint64(off + 8, v.bytes, LE);
    dv.setBigUint64(off + 16, v.addtime, LE);
    dv.setBigUint64(off + 24, v.usetime, LE);
    if (v.packets !== undefined) {
      dv.setUint32(off + 32, v.packets >>> 0, LE);
      dv.setUint32(off + 36, 0, LE);
    }
  },
};

// ---------- address (sadb_address + sockaddr_in / sockaddr_in6) ----------

const addressCodec: ExtCodec<Address> = {
  decode(dv, u8, off, len, exttype) {
    if (len < 24) bad(ERRNO.EINVAL, off, exttype, `address extension is ${len} bytes, too short for a sockaddr`);
    if (dv.getUint16(off + 6, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, 'address reserved field must be zero');
    const family = dv.getUint16(off + 8, LE);
    if (family !== AF_INET && family !== AF_INET6) {
      bad(ERRNO.EPFNOSUPPORT, off, exttype, `address family ${family} not supported`);
    }
    const slen = sockaddrLength(family);
    if (len !== pad8(8 + slen)) bad(ERRNO.EINVAL, off, exttype, `address extension is ${len} bytes, must be ${pad8(8 + slen)}`);
    const prefixlen = u8[off + 5];
    if (prefixlen !== 0) bad(ERRNO.EAFNOSUPPORT, off, exttype, `address prefix length ${prefixlen} must be 0 (KLIPS uses mask extensions)`);
    const s = off + 8;
    const a: Address = {
      proto: u8[off + 4],
      prefixlen,
      family,
      port: dv.getUint16(s + 2, false),
      addr: '',
    };
    if (family === AF_INET) {
      a.addr = formatAddress(family, u8, s + 4);
      requireZeroPad(u8, s + 8, s + 16, off, exttype, 'sin_zero');
    } else {
      a.flowinfo = dv.getUint32(s + 4, false);
      a.addr = formatAddress(family, u8, s + 8);
      a.scopeId = dv.getUint32(s + 24, LE);
      requireZeroPad(u8, s + 28, off + len, off, exttype, 'address padding');
    }
    return a;
  },
  encodingLength: (v) => pad8(8 + sockaddrLength(v.family)),
  encode(v, dv, u8, off, exttype) {
    const slen = sockaddrLength(v.family);
    if (slen === 0) throw new RangeError(`address family ${v.family} cannot be encoded`);
    const len = pad8(8 + slen);
    header(dv, off, len, exttype);
    u8[off + 4] = v.proto;
    u8[off + 5] = v.prefixlen;
    dv.setUint16(off + 6, 0, LE);
    const s = off + 8;
    u8.fill(0, s, off + len);
    dv.setUint16(s, v.family, LE);
    dv.setUint16(s + 2, v.port, false);
    const b = addressBytes(v.family, v.addr);
    if (v.family === AF_INET) {
      u8.set(b, s + 4);
    } else {
      dv.setUint32(s + 4, (v.flowinfo ?? 0) >>> 0, false);
      u8.set(b, s + 8);
      dv.setUint32(s + 24, (v.scopeId ?? 0) >>> 0, LE);
    }
  },
};

// ---------- key ----------

const keyCodec: ExtCodec<Key> = {
  decode(dv, u8, off, len, exttype) {
    const bits = dv.getUint16(off + 4, LE);
    if (bits === 0) bad(ERRNO.EINVAL, off, exttype, 'key length is zero');
    const want = pad8(8 + Math.ceil(bits / 8));
    if (len !== want) bad(ERRNO.EINVAL, off, exttype, `key of ${bits} bits needs a ${want}-byte extension, got ${len}`);
    if (dv.getUint16(off + 6, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, 'key reserved field must be zero');
    const nbytes = Math.ceil(bits / 8);
    requireZeroPad(u8, off + 8 + nbytes, off + len, off, exttype, 'key padding');
    return { bits, key: copyBytes(u8, off + 8, off + 8 + nbytes) };
  },
  encodingLength: (v) => pad8(8 + Math.ceil(v.bits / 8)),
  encode(v, dv, u8, off, exttype) {
    const nbytes = Math.ceil(v.bits / 8);
    if (v.key.length !== nbytes) throw new RangeError(`key has ${v.key.length} bytes, ${v.bits} bits need ${nbytes}`);
    const len = pad8(8 + nbytes);
    header(dv, off, len, exttype);
    dv.setUint16(off + 4, v.bits, LE);
    dv.setUint16(off + 6, 0, LE);
    u8.set(v.key, off + 8);
    u8.fill(0, off + 8 + nbytes, off + len);
  },
};

// ---------- identity ----------

/** Identity strings are C strings: kept byte for byte as latin1 text. */
const identBytes = (s: string): Uint8Array => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c > 0xff) throw new RangeError('identity text must be bytes 1..255 (latin1), without NUL');
  }
  return Buffer.from(s, 'latin1');
};

const identCodec: ExtCodec<Ident> = {
  decode(dv, u8, off, len, exttype) {
    if (len < 16) bad(ERRNO.EINVAL, off, exttype, `identity extension is ${len} bytes, must be at least 16`);
    const type = dv.getUint16(off + 4, LE);
    if (type > SADB_IDENTTYPE_MAX) bad(ERRNO.EINVAL, off, exttype, `identity type ${type} out of range`);
    if (dv.getUint16(off + 6, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, 'identity reserved field must be zero');
    let end = off + 16;
    while (end < off + len && u8[end] !== 0) end++;
    if (len > 16 && end === off + len) bad(ERRNO.EINVAL, off, exttype, 'identity string is not NUL-terminated');
    const strlen = end - (off + 16);
    const want = strlen === 0 ? 16 : pad8(16 + strlen + 1);
    if (len !== want) bad(ERRNO.EINVAL, off, exttype, `identity of ${strlen} bytes must be padded to ${want}, got ${len}`);
    requireZeroPad(u8, end, off + len, off, exttype, 'identity padding');
    return { type, id: dv.getBigUint64(off + 8, LE), data: Buffer.from(u8.buffer, u8.byteOffset + off + 16, strlen).toString('latin1') };
  },
  encodingLength: (v) => (v.data.length === 0 ? 16 : pad8(16 + v.data.length + 1)),
  encode(v, dv, u8, off, exttype) {
    const s = identBytes(v.data);
    const len = s.length === 0 ? 16 : pad8(16 + s.length + 1);
    header(dv, off, len, exttype);
    dv.setUint16(off + 4, v.type, LE);
    dv.setUint16(off + 6, 0, LE);
    dv.setBigUint64(off + 8, v.id, LE);
    u8.set(s, off + 16);
    u8.fill(0, off + 16 + s.length, off + len);
  },
};

// ---------- sensitivity ----------

const sensCodec: ExtCodec<Sens> = {
  decode(dv, u8, off, len, exttype) {
    if (len < 16) bad(ERRNO.EINVAL, off, exttype, `sensitivity extension is ${len} bytes, must be at least 16`);
    const sensLen = u8[off + 9];
    const integLen = u8[off + 11];
    if (len !== 16 + 8 * (sensLen + integLen)) {
      bad(ERRNO.EINVAL, off, exttype, `sensitivity bitmaps (${sensLen}+${integLen} words) do not fill the extension`);
    }
    if (dv.getUint32(off + 12, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, 'sensitivity reserved field must be zero');
    const b = off + 16;
    return {
      dpd: dv.getUint32(off + 4, LE),
      sensLevel: u8[off + 8],
      integLevel: u8[off + 10],
      sensBitmap: copyBytes(u8, b, b + 8 * sensLen),
      integBitmap: copyBytes(u8, b + 8 * sensLen, b + 8 * (sensLen + integLen)),
    };
  },
  encodingLength: (v) => 16 + v.sensBitmap.length + v.integBitmap.length,
  encode(v, dv, u8, off, exttype) {
    if (v.sensBitmap.length % 8 || v.integBitmap.length % 8) throw new RangeError('sensitivity bitmaps must be whole 8-byte words');
    header(dv, off, 16 + v.sensBitmap.length + v.integBitmap.length, exttype);
    dv.setUint32(off + 4, v.dpd >>> 0, LE);
    u8[off + 8] = v.sensLevel;
    u8[off + 9] = v.sensBitmap.length / 8;
    u8[off + 10] = v.integLevel;
    u8[off + 11] = v.integBitmap.length / 8;
    dv.setUint32(off + 12, 0, LE);
    u8.set(v.sensBitmap, off + 16);
    u8.set(v.integBitmap, off + 16 + v.sensBitmap.length);
  },
};

// ---------- proposal (sadb_prop + sadb_comb[], 72 bytes each) ----------

const COMB_LEN = 72;

function checkComb(c: Comb, i: number, off: number, exttype: number): void {
  const pair = (alg: number, min: number, max: number, what: string) => {
    if (alg) {
      if (!min || !max) bad(ERRNO.EINVAL, off, exttype, `comb ${i}: ${what} key bits must be non-zero`);
      if (min > max) bad(ERRNO.EINVAL, off, exttype, `comb ${i}: ${what} minbits > maxbits`);
    } else if (min || max) bad(ERRNO.EINVAL, off, exttype, `comb ${i}: ${what} bits set without an algorithm`);
  };
  pair(c.auth, c.authMinbits, c.authMaxbits, 'auth');
  pair(c.encrypt, c.encryptMinbits, c.encryptMaxbits, 'encrypt');
  const soft = (s: number | bigint, h: number | bigint, what: string) => {
    if (h && s > h) bad(ERRNO.EINVAL, off, exttype, `comb ${i}: soft ${what} above hard`);
  };
  soft(c.softAllocations, c.hardAllocations, 'allocations');
  soft(c.softBytes, c.hardBytes, 'bytes');
  soft(c.softAddtime, c.hardAddtime, 'addtime');
  soft(c.softUsetime, c.hardUsetime, 'usetime');
}

const propCodec: ExtCodec<Prop> = {
  decode(dv, u8, off, len, exttype) {
    if (len < 8 || (len - 8) % COMB_LEN) bad(ERRNO.EINVAL, off, exttype, `proposal extension is ${len} bytes, not 8 + n*72`);
    const replay = u8[off + 4];
    if (replay > 64) bad(ERRNO.EINVAL, off, exttype, `proposal replay ${replay} > 64`);
    requireZeroPad(u8, off + 5, off + 8, off, exttype, 'proposal reserved bytes');
    const combs: Comb[] = [];
    for (let c = off + 8, i = 0; c < off + len; c += COMB_LEN, i++) {
      if (dv.getUint32(c + 12, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, `comb ${i}: reserved field must be zero`);
      const comb: Comb = {
        auth: u8[c],
        encrypt: u8[c + 1],
        flags: dv.getUint16(c + 2, LE),
        authMinbits: dv.getUint16(c + 4, LE),
        authMaxbits: dv.getUint16(c + 6, LE),
        encryptMinbits: dv.getUint16(c + 8, LE),
        encryptMaxbits: dv.getUint16(c + 10, LE),
        softAllocations: dv.getUint32(c + 16, LE),
        hardAllocations: dv.getUint32(c + 20, LE),
        softBytes: dv.getBigUint64(c + 24, LE),
        hardBytes: dv.getBigUint64(c + 32, LE),
        softAddtime: dv.getBigUint64(c + 40, LE),
        hardAddtime: dv.getBigUint64(c + 48, LE),
        softUsetime: dv.getBigUint64(c + 56, LE),
        hardUsetime: dv.getBigUint64(c + 64, LE),
      };
      checkComb(comb, i, off, exttype);
      combs.push(comb);
    }
    return { replay, combs };
  },
  encodingLength: (v) => 8 + COMB_LEN * v.combs.length,
  encode(v, dv, u8, off, exttype) {
    header(dv, off, 8 + COMB_LEN * v.combs.length, exttype);
    u8[off + 4] = v.replay;
    u8.fill(0, off + 5, off + 8);
    let c = off + 8;
    for (const comb of v.combs) {
      u8[c] = comb.auth;
      u8[c + 1] = comb.encrypt;
      dv.setUint16(c + 2, comb.flags, LE);
      dv.setUint16(c + 4, comb.authMinbits, LE);
      dv.setUint16(c + 6, comb.authMaxbits, LE);
      dv.setUint16(c + 8, comb.encryptMinbits, LE);
      dv.setUint16(c + 10, comb.encryptMaxbits, LE);
      dv.setUint32(c + 12, 0, LE);
      dv.setUint32(c + 16, comb.softAllocations >>> 0, LE);
      dv.setUint32(c + 20, comb.hardAllocations >>> 0, LE);
      dv.setBigUint64(c + 24, comb.softBytes, LE);
      dv.setBigUint64(c + 32, comb.hardBytes, LE);
      dv.setBigUint64(c + 40, comb.softAddtime, LE);
      dv.setBigUint64(c + 48, comb.hardAddtime, LE);
      dv.setBigUint64(c + 56, comb.softUsetime, LE);
      dv.setBigUint64(c + 64, comb.hardUsetime, LE);
      c += COMB_LEN;
    }
  },
};

// ---------- supported (sadb_supported + sadb_alg[], 8 bytes each) ----------

const supportedCodec: ExtCodec<Supported> = {
  decode(dv, u8, off, len, exttype) {
    if (len < 8 || len % 8) bad(ERRNO.EINVAL, off, exttype, `supported extension is ${len} bytes`);
    if (dv.getUint32(off + 4, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, 'supported reserved field must be zero');
    const algs: Alg[] = [];
    for (let a = off + 8; a < off + len; a += 8) {
      if (dv.getUint16(a + 6, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, `algorithm ${u8[a]}: reserved field must be zero`);
      algs.push({ id: u8[a], ivlen: u8[a + 1], minbits: dv.getUint16(a + 2, LE), maxbits: dv.getUint16(a + 4, LE) });
    }
    return { algs };
  },
  encodingLength: (v) => 8 + 8 * v.algs.length,
  encode(v, dv, u8, off, exttype) {
    header(dv, off, 8 + 8 * v.algs.length, exttype);
    dv.setUint32(off + 4, 0, LE);
    let a = off + 8;
    for (const alg of v.algs) {
      u8[a] = alg.id;
      u8[a + 1] = alg.ivlen;
      dv.setUint16(a + 2, alg.minbits, LE);
      dv.setUint16(a + 4, alg.maxbits, LE);
      dv.setUint16(a + 6, 0, LE);
      a += 8;
    }
  },
};

// ---------- SPI range (bounds in network order, as KLIPS reads them) ----------

const spirangeCodec: ExtCodec<SpiRange> = {
  decode(dv, _u8, off, len, exttype) {
    exactLength(len, 16, off, exttype, 'SPI range');
    if (dv.getUint32(off + 12, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, 'SPI range reserved field must be zero');
    const min = dv.getUint32(off + 4, false);
    const max = dv.getUint32(off + 8, false);
    if (max < min) bad(ERRNO.EINVAL, off, exttype, `SPI range min 0x${min.toString(16)} > max 0x${max.toString(16)}`);
    if (min <= 255) bad(ERRNO.EEXIST, off, exttype, `SPI range min ${min} must be above 255 (KLIPS answers EEXIST)`);
    return { min, max };
  },
  encodingLength: () => 16,
  encode(v, dv, _u8, off, exttype) {
    header(dv, off, 16, exttype);
    dv.setUint32(off + 4, v.min >>> 0, false);
    dv.setUint32(off + 8, v.max >>> 0, false);
    dv.setUint32(off + 12, 0, LE);
  },
};

// ---------- X_KMPRIVATE (opaque to the kernel) ----------

const kmprivateCodec: ExtCodec<KmPrivate> = {
  decode(dv, u8, off, len, exttype) {
    if (dv.getUint32(off + 4, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, 'kmprivate reserved field must be zero');
    return { data: copyBytes(u8, off + 8, off + len) };
  },
  encodingLength: (v) => 8 + pad8(v.data.length),
  encode(v, dv, u8, off, exttype) {
    if (v.data.length % 8) throw new RangeError('kmprivate data must be whole 8-byte words');
    header(dv, off, 8 + v.data.length, exttype);
    dv.setUint32(off + 4, 0, LE);
    u8.set(v.data, off + 8);
  },
};

// ---------- X_SATYPE2 ----------

const satypeCodec: ExtCodec<XSatype> = {
  decode(_dv, u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'X_SATYPE2');
    const satype = u8[off + 4];
    if (satype === 0 || satype > SADB_SATYPE_MAX || !SATYPE_TO_PROTO[satype]) {
      bad(ERRNO.EINVAL, off, exttype, `second SA type ${satype} has no protocol`);
    }
    requireZeroPad(u8, off + 5, off + 8, off, exttype, 'X_SATYPE2 reserved bytes');
    return { satype };
  },
  encodingLength: () => 8,
  encode(v, dv, u8, off, exttype) {
    header(dv, off, 8, exttype);
    u8[off + 4] = v.satype;
    u8.fill(0, off + 5, off + 8);
  },
};

// ---------- X_DEBUG (twelve 32-bit subsystem words) ----------

const debugCodec: ExtCodec<XDebug> = {
  decode(dv, u8, off, len, exttype) {
    exactLength(len, 56, off, exttype, 'X_DEBUG');
    requireZeroPad(u8, off + 52, off + 56, off, exttype, 'X_DEBUG reserved bytes');
    const d = {} as XDebug;
    DEBUG_SUBSYSTEMS.forEach((name, i) => { d[name] = dv.getUint32(off + 4 + 4 * i, LE); });
    return d;
  },
  encodingLength: () => 56,
  encode(v, dv, _u8, off, exttype) {
    header(dv, off, 56, exttype);
    DEBUG_SUBSYSTEMS.forEach((name, i) => dv.setUint32(off + 4 + 4 * i, v[name] >>> 0, LE));
    dv.setUint32(off + 52, 0, LE);
  },
};

// ---------- X_PROTOCOL ----------

const protocolCodec: ExtCodec<Protocol> = {
  decode(_dv, u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'X_PROTOCOL');
    if (u8[off + 7] !== 0) bad(ERRNO.EINVAL, off, exttype, 'X_PROTOCOL reserved field must be zero');
    return { proto: u8[off + 4], direction: u8[off + 5], flags: u8[off + 6] };
  },
  encodingLength: () => 8,
  encode(v, dv, u8, off, exttype) {
    header(dv, off, 8, exttype);
    u8[off + 4] = v.proto;
    u8[off + 5] = v.direction;
    u8[off + 6] = v.flags;
    u8[off + 7] = 0;
  },
};

// ---------- NAT-T type and ports ----------

const natTTypeCodec: ExtCodec<NatTType> = {
  decode(_dv, u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'X_NAT_T_TYPE');
    requireZeroPad(u8, off + 5, off + 8, off, exttype, 'X_NAT_T_TYPE reserved bytes');
    return { type: u8[off + 4] };
  },
  encodingLength: () => 8,
  encode(v, dv, u8, off, exttype) {
    header(dv, off, 8, exttype);
    u8[off + 4] = v.type;
    u8.fill(0, off + 5, off + 8);
  },
};

const natTPortCodec: ExtCodec<NatTPort> = {
  decode(dv, _u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'NAT-T port');
    if (dv.getUint16(off + 6, LE) !== 0) bad(ERRNO.EINVAL, off, exttype, 'NAT-T port reserved field must be zero');
    return { port: dv.getUint16(off + 4, LE) };
  },
  encodingLength: () => 8,
  encode(v, dv, _u8, off, exttype) {
    header(dv, off, 8, exttype);
    dv.setUint16(off + 4, v.port, LE);
    dv.setUint16(off + 6, 0, LE);
  },
};

// ---------- X_PLUMBIF, X_SAREF ----------

const plumbifCodec: ExtCodec<Plumbif> = {
  decode(dv, u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'X_PLUMBIF');
    requireZeroPad(u8, off + 6, off + 8, off, exttype, 'X_PLUMBIF padding');
    return { ifnum: dv.getUint16(off + 4, LE) };
  },
  encodingLength: () => 8,
  encode(v, dv, _u8, off, exttype) {
    header(dv, off, 8, exttype);
    dv.setUint16(off + 4, v.ifnum, LE);
    dv.setUint16(off + 6, 0, LE);
  },
};

const sarefCodec: ExtCodec<Saref> = {
  decode(dv, u8, off, len, exttype) {
    exactLength(len, 16, off, exttype, 'X_SAREF');
    requireZeroPad(u8, off + 12, off + 16, off, exttype, 'X_SAREF padding');
    return { me: dv.getUint32(off + 4, LE), him: dv.getUint32(off + 8, LE) };
  },
  encodingLength: () => 16,
  encode(v, dv, _u8, off, exttype) {
    header(dv, off, 16, exttype);
    dv.setUint32(off + 4, v.me >>> 0, LE);
    dv.setUint32(off + 8, v.him >>> 0, LE);
    dv.setUint32(off + 12, 0, LE);
  },
};

// ---------- the table ----------

export interface ExtEntry {
  type: number;
  field: ExtField;
  codec: ExtCodec<any>;
}

const FIELDS: ReadonlyArray<readonly [ExtField, ExtCodec<any>]> = [
  /* 1 */ ['sa', saCodec],
  /* 2 */ ['lifetimeCurrent', lifetimeCodec],
  /* 3 */ ['lifetimeHard', lifetimeCodec],
  /* 4 */ ['lifetimeSoft', lifetimeCodec],
  /* 5 */ ['addressSrc', addressCodec],
  /* 6 */ ['addressDst', addressCodec],
  /* 7 */ ['addressProxy', addressCodec],
  /* 8 */ ['keyAuth', keyCodec],
  /* 9 */ ['keyEncrypt', keyCodec],
  /* 10 */ ['identitySrc', identCodec],
  /* 11 */ ['identityDst', identCodec],
  /* 12 */ ['sensitivity', sensCodec],
  /* 13 */ ['proposal', propCodec],
  /* 14 */ ['supportedAuth', supportedCodec],
  /* 15 */ ['supportedEncrypt', supportedCodec],
  /* 16 */ ['spirange', spirangeCodec],
  /* 17 */ ['kmprivate', kmprivateCodec],
  /* 18 */ ['satype2', satypeCodec],
  /* 19 */ ['sa2', saCodec],
  /* 20 */ ['addressDst2', addressCodec],
  /* 21 */ ['addressSrcFlow', addressCodec],
  /* 22 */ ['addressDstFlow', addressCodec],
  /* 23 */ ['addressSrcMask', addressCodec],
  /* 24 */ ['addressDstMask', addressCodec],
  /* 25 */ ['debug', debugCodec],
  /* 26 */ ['protocol', protocolCodec],
  /* 27 */ ['natTType', natTTypeCodec],
  /* 28 */ ['natTSport', natTPortCodec],
  /* 29 */ ['natTDport', natTPortCodec],
  /* 30 */ ['natTOa', addressCodec],
  /* 31 */ ['plumbif', plumbifCodec],
  /* 32 */ ['saref', sarefCodec],
];

/** EXT_TABLE[exttype] for exttype 1..32; index 0 (the message header) is undefined. */
export const EXT_TABLE: ReadonlyArray<ExtEntry | undefined> = [
  undefined,
  ...FIELDS.map(([field, codec], i) => ({ type: i + 1, field, codec })),
];

export const EXT_TYPE_BY_FIELD: Readonly<Record<ExtField, number>> = Object.fromEntries(
  FIELDS.map(([field], i) => [field, i + 1]),
) as Record<ExtField, number>;
