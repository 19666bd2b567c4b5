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
 * minimal, so every accepted extension has exactly one encoding (see docs/semantics.md, "Wire-level choices").
 */

import {
  AF_INET, AF_INET6, SADB_SASTATE_DEAD, SADB_SASTATE_MAX, SADB_IDENTTYPE_MAX,
  SADB_SATYPE_MAX, SATYPE_TO_PROTO, DEBUG_SUBSYSTEMS, type DebugSubsystem,
  SADB_EXT_SA, SADB_EXT_LIFETIME_CURRENT, SADB_EXT_LIFETIME_HARD, SADB_EXT_LIFETIME_SOFT, SADB_EXT_ADDRESS_SRC, SADB_EXT_ADDRESS_DST, SADB_EXT_ADDRESS_PROXY, SADB_EXT_KEY_AUTH,
  SADB_EXT_KEY_ENCRYPT, SADB_EXT_IDENTITY_SRC, SADB_EXT_IDENTITY_DST, SADB_EXT_SENSITIVITY, SADB_EXT_PROPOSAL, SADB_EXT_SUPPORTED_AUTH, SADB_EXT_SUPPORTED_ENCRYPT, SADB_EXT_SPIRANGE,
  SADB_X_EXT_KMPRIVATE, SADB_X_EXT_SATYPE2, SADB_X_EXT_SA2, SADB_X_EXT_ADDRESS_DST2, SADB_X_EXT_ADDRESS_SRC_FLOW, SADB_X_EXT_ADDRESS_DST_FLOW, SADB_X_EXT_ADDRESS_SRC_MASK, SADB_X_EXT_ADDRESS_DST_MASK,
  SADB_X_EXT_DEBUG, SADB_X_EXT_PROTOCOL, SADB_X_EXT_NAT_T_TYPE, SADB_X_EXT_NAT_T_SPORT, SADB_X_EXT_NAT_T_DPORT, SADB_X_EXT_NAT_T_OA, SADB_X_EXT_PLUMBIF, SADB_X_EXT_SAREF,
} from './constants.js';
import { ERRNO, fail } from './errno.js';
import { addressBytes, formatIPv4Cached, formatIPv6, ipv4Number, sockaddrLength } from './sockaddr.js';
import {
  rd16, rd16be, rd32, rd32be, rd64, wr16, wr16be, wr32, wr32be, wr64, copyBytes, allZero,
} from './bytes.js';

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
 * A codec sees the whole message's bytes, the extension's byte offset and its total
 * length in bytes (header included, from sadb_ext_len). `encode` writes into zeroed
 * bytes (buildMessage's buffers always are), so it never writes padding. `views` lets the
 * key codec return a view of `u8` instead of a copy (ParseOptions.keyViews).
 */
export interface ExtCodec<T> {
  decode(u8: Uint8Array, off: number, len: number, exttype: number, views?: boolean): T;
  encodingLength(v: T): number;
  encode(v: T, u8: Uint8Array, off: number, exttype: number): void;
}

/** Rounded up to a multiple of 8 (PF_KEY's alignment). */
export const pad8 = (n: number) => (n + 7) & ~7;

function bad(errno: number, off: number, exttype: number, reason: string): never {
  fail(errno, reason, { offset: off, exttype });
}

function header(u8: Uint8Array, off: number, len: number, exttype: number): void {
  if (len / 8 > 0xffff) throw new RangeError(`extension of ${len} bytes is too long for sadb_ext_len`);
  wr16(u8, off, len / 8);
  wr16(u8, off + 2, exttype);
}

export function requireZeroPad(u8: Uint8Array, from: number, to: number, off: number, exttype: number, what: string): void {
  if (!allZero(u8, from, to)) bad(ERRNO.EINVAL, off, exttype, `${what} must be zero`);
}

export function exactLength(len: number, want: number, off: number, exttype: number, what: string): void {
  if (len !== want) bad(ERRNO.EINVAL, off, exttype, `${what} extension is ${len} bytes, must be ${want}`);
}

// ---------- SA (sadb_sa, 16 bytes; k_sadb_sa, 24 bytes) ----------

/** KLIPS's SAref table index width: refs are below 2^15, or the NULL ref 0. */
export const IPSEC_SA_REF_TABLE_NUM_ENTRIES = 1 << 15;
export const IPSEC_SAREF_NULL = 0;

const saCodec: ExtCodec<Sa> = {
  decode(u8, off, len, exttype) {
    if (len !== 16 && len !== 24) bad(ERRNO.EINVAL, off, exttype, `SA extension is ${len} bytes, must be 16 or 24`);
    const sa: Sa = {
      spi: rd32be(u8, off + 4),
      replay: u8[off + 8],
      state: u8[off + 9],
      auth: u8[off + 10],
      encrypt: u8[off + 11],
      flags: rd32(u8, off + 12),
    };
    if (sa.state > SADB_SASTATE_MAX) bad(ERRNO.EINVAL, off, exttype, `SA state ${sa.state} out of range`);
    if (sa.state === SADB_SASTATE_DEAD) bad(ERRNO.EINVAL, off, exttype, 'SA state DEAD is not accepted');
    if (sa.replay > 64) bad(ERRNO.EINVAL, off, exttype, `replay window ${sa.replay} > 64`);
    if (len === 24) {
      const ref = rd32(u8, off + 16);
      if (ref !== IPSEC_SAREF_NULL && ref !== 0xffffffff && ref >= IPSEC_SA_REF_TABLE_NUM_ENTRIES) {
        bad(ERRNO.EINVAL, off, exttype, `SAref ${ref} out of range`);
      }
      requireZeroPad(u8, off + 20, off + 24, off, exttype, 'SA reserved bytes');
      sa.ref = ref;
    }
    return sa;
  },
  encodingLength: (v) => (v.ref === undefined ? 16 : 24),
  encode(v, u8, off, exttype) {
    const len = v.ref === undefined ? 16 : 24;
    header(u8, off, len, exttype);
    wr32be(u8, off + 4, v.spi >>> 0);
    u8[off + 8] = v.replay;
    u8[off + 9] = v.state;
    u8[off + 10] = v.auth;
    u8[off + 11] = v.encrypt;
    wr32(u8, off + 12, v.flags >>> 0);
    if (v.ref !== undefined) {
      wr32(u8, off + 16, v.ref >>> 0);
      wr32(u8, off + 20, 0);
    }
  },
};

// ---------- lifetime (32 bytes RFC 2367; 40 bytes openswan with x_packets) ----------

export const lifetimeCodec: ExtCodec<Lifetime> = {
  decode(u8, off, len, exttype) {
    if (len !== 32 && len !== 40) bad(ERRNO.EINVAL, off, exttype, `lifetime extension is ${len} bytes, must be 32 or 40`);
    const lt: Lifetime = {
      allocations: rd32(u8, off + 4),
      bytes: rd64(u8, off + 8),
      addtime: rd64(u8, off + 16),
      usetime: rd64(u8, off + 24),
    };
    if (len === 40) {
      lt.packets = rd32(u8, off + 32);
      requireZeroPad(u8, off + 36, off + 40, off, exttype, 'lifetime reserved bytes');
    }
    return lt;
  },
  encodingLength: (v) => (v.packets === undefined ? 32 : 40),
  encode(v, u8, off, exttype) {
    header(u8, off, v.packets === undefined ? 32 : 40, exttype);
    wr32(u8, off + 4, v.allocations >>> 0);
    wr64(u8, off + 8, v.bytes);
    wr64(u8, off + 16, v.addtime);
    wr64(u8, off + 24, v.usetime);
    if (v.packets !== undefined) {
      wr32(u8, off + 32, v.packets >>> 0);
      wr32(u8, off + 36, 0);
    }
  },
};

// ---------- address (sadb_address + sockaddr_in / sockaddr_in6) ----------

const addressCodec: ExtCodec<Address> = {
  decode(u8, off, len, exttype) {
    if (len < 24) bad(ERRNO.EINVAL, off, exttype, `address extension is ${len} bytes, too short for a sockaddr`);
    if (rd16(u8, off + 6) !== 0) bad(ERRNO.EINVAL, off, exttype, 'address reserved field must be zero');
    const family = rd16(u8, off + 8);
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
      port: rd16be(u8, s + 2),
      addr: '',
    };
    if (family === AF_INET) {
      a.addr = formatIPv4Cached(u8, s + 4);
      requireZeroPad(u8, s + 8, s + 16, off, exttype, 'sin_zero');
    } else {
      a.flowinfo = rd32be(u8, s + 4);
      a.addr = formatIPv6(u8, s + 8);
      a.scopeId = rd32(u8, s + 24);
      requireZeroPad(u8, s + 28, off + len, off, exttype, 'address padding');
    }
    return a;
  },
  encodingLength: (v) => pad8(8 + sockaddrLength(v.family)),
  encode(v, u8, off, exttype) {
    const slen = sockaddrLength(v.family);
    if (slen === 0) throw new RangeError(`address family ${v.family} cannot be encoded`);
    const len = pad8(8 + slen);
    header(u8, off, len, exttype);
    u8[off + 4] = v.proto;
    u8[off + 5] = v.prefixlen;
    wr16(u8, off + 6, 0);
    const s = off + 8;
    wr16(u8, s, v.family);
    wr16be(u8, s + 2, v.port);
    if (v.family === AF_INET) {
      wr32be(u8, s + 4, ipv4Number(v.addr));
    } else {
      wr32be(u8, s + 4, (v.flowinfo ?? 0) >>> 0);
      u8.set(addressBytes(v.family, v.addr), s + 8);
      wr32(u8, s + 24, (v.scopeId ?? 0) >>> 0);
    }
  },
};

// ---------- key ----------

const keyCodec: ExtCodec<Key> = {
  decode(u8, off, len, exttype, views) {
    const bits = rd16(u8, off + 4);
    if (bits === 0) bad(ERRNO.EINVAL, off, exttype, 'key length is zero');
    const want = pad8(8 + Math.ceil(bits / 8));
    if (len !== want) bad(ERRNO.EINVAL, off, exttype, `key of ${bits} bits needs a ${want}-byte extension, got ${len}`);
    if (rd16(u8, off + 6) !== 0) bad(ERRNO.EINVAL, off, exttype, 'key reserved field must be zero');
    const nbytes = Math.ceil(bits / 8);
    requireZeroPad(u8, off + 8 + nbytes, off + len, off, exttype, 'key padding');
    const from = off + 8;
    return { bits, key: views ? new Uint8Array(u8.buffer, u8.byteOffset + from, nbytes) : copyBytes(u8, from, from + nbytes) };
  },
  encodingLength: (v) => pad8(8 + Math.ceil(v.bits / 8)),
  encode(v, u8, off, exttype) {
    const nbytes = Math.ceil(v.bits / 8);
    if (v.key.length !== nbytes) throw new RangeError(`key has ${v.key.length} bytes, ${v.bits} bits need ${nbytes}`);
    const len = pad8(8 + nbytes);
    header(u8, off, len, exttype);
    wr16(u8, off + 4, v.bits);
    wr16(u8, off + 6, 0);
    const k = v.key;
    for (let i = 0; i < k.length; i++) u8[off + 8 + i] = k[i];
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

export const identCodec: ExtCodec<Ident> = {
  decode(u8, off, len, exttype) {
    if (len < 16) bad(ERRNO.EINVAL, off, exttype, `identity extension is ${len} bytes, must be at least 16`);
    const type = rd16(u8, off + 4);
    if (type > SADB_IDENTTYPE_MAX) bad(ERRNO.EINVAL, off, exttype, `identity type ${type} out of range`);
    if (rd16(u8, off + 6) !== 0) bad(ERRNO.EINVAL, off, exttype, 'identity reserved field must be zero');
    let end = off + 16;
    while (end < off + len && u8[end] !== 0) end++;
    if (len > 16 && end === off + len) bad(ERRNO.EINVAL, off, exttype, 'identity string is not NUL-terminated');
    const strlen = end - (off + 16);
    const want = strlen === 0 ? 16 : pad8(16 + strlen + 1);
    if (len !== want) bad(ERRNO.EINVAL, off, exttype, `identity of ${strlen} bytes must be padded to ${want}, got ${len}`);
    requireZeroPad(u8, end, off + len, off, exttype, 'identity padding');
    return { type, id: rd64(u8, off + 8), data: Buffer.from(u8.buffer, u8.byteOffset + off + 16, strlen).toString('latin1') };
  },
  encodingLength: (v) => (v.data.length === 0 ? 16 : pad8(16 + v.data.length + 1)),
  encode(v, u8, off, exttype) {
    const s = identBytes(v.data);
    const len = s.length === 0 ? 16 : pad8(16 + s.length + 1);
    header(u8, off, len, exttype);
    wr16(u8, off + 4, v.type);
    wr16(u8, off + 6, 0);
    wr64(u8, off + 8, v.id);
    u8.set(s, off + 16);
  },
};

// ---------- sensitivity ----------

export const sensCodec: ExtCodec<Sens> = {
  decode(u8, off, len, exttype) {
    if (len < 16) bad(ERRNO.EINVAL, off, exttype, `sensitivity extension is ${len} bytes, must be at least 16`);
    const sensLen = u8[off + 9];
    const integLen = u8[off + 11];
    if (len !== 16 + 8 * (sensLen + integLen)) {
      bad(ERRNO.EINVAL, off, exttype, `sensitivity bitmaps (${sensLen}+${integLen} words) do not fill the extension`);
    }
    if (rd32(u8, off + 12) !== 0) bad(ERRNO.EINVAL, off, exttype, 'sensitivity reserved field must be zero');
    const b = off + 16;
    return {
      dpd: rd32(u8, off + 4),
      sensLevel: u8[off + 8],
      integLevel: u8[off + 10],
      sensBitmap: copyBytes(u8, b, b + 8 * sensLen),
      integBitmap: copyBytes(u8, b + 8 * sensLen, b + 8 * (sensLen + integLen)),
    };
  },
  encodingLength: (v) => 16 + v.sensBitmap.length + v.integBitmap.length,
  encode(v, u8, off, exttype) {
    if (v.sensBitmap.length % 8 || v.integBitmap.length % 8) throw new RangeError('sensitivity bitmaps must be whole 8-byte words');
    header(u8, off, 16 + v.sensBitmap.length + v.integBitmap.length, exttype);
    wr32(u8, off + 4, v.dpd >>> 0);
    u8[off + 8] = v.sensLevel;
    u8[off + 9] = v.sensBitmap.length / 8;
    u8[off + 10] = v.integLevel;
    u8[off + 11] = v.integBitmap.length / 8;
    wr32(u8, off + 12, 0);
    u8.set(v.sensBitmap, off + 16);
    u8.set(v.integBitmap, off + 16 + v.sensBitmap.length);
  },
};

// ---------- proposal (sadb_prop + sadb_comb[], 72 bytes each) ----------

export const COMB_LEN = 72;

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
  decode(u8, off, len, exttype) {
    if (len < 8 || (len - 8) % COMB_LEN) bad(ERRNO.EINVAL, off, exttype, `proposal extension is ${len} bytes, not 8 + n*72`);
    const replay = u8[off + 4];
    if (replay > 64) bad(ERRNO.EINVAL, off, exttype, `proposal replay ${replay} > 64`);
    requireZeroPad(u8, off + 5, off + 8, off, exttype, 'proposal reserved bytes');
    const combs: Comb[] = [];
    for (let c = off + 8, i = 0; c < off + len; c += COMB_LEN, i++) {
      if (rd32(u8, c + 12) !== 0) bad(ERRNO.EINVAL, off, exttype, `comb ${i}: reserved field must be zero`);
      const comb: Comb = {
        auth: u8[c],
        encrypt: u8[c + 1],
        flags: rd16(u8, c + 2),
        authMinbits: rd16(u8, c + 4),
        authMaxbits: rd16(u8, c + 6),
        encryptMinbits: rd16(u8, c + 8),
        encryptMaxbits: rd16(u8, c + 10),
        softAllocations: rd32(u8, c + 16),
        hardAllocations: rd32(u8, c + 20),
        softBytes: rd64(u8, c + 24),
        hardBytes: rd64(u8, c + 32),
        softAddtime: rd64(u8, c + 40),
        hardAddtime: rd64(u8, c + 48),
        softUsetime: rd64(u8, c + 56),
        hardUsetime: rd64(u8, c + 64),
      };
      checkComb(comb, i, off, exttype);
      combs.push(comb);
    }
    return { replay, combs };
  },
  encodingLength: (v) => 8 + COMB_LEN * v.combs.length,
  encode(v, u8, off, exttype) {
    header(u8, off, 8 + COMB_LEN * v.combs.length, exttype);
    u8[off + 4] = v.replay;
    let c = off + 8;
    for (const comb of v.combs) {
      u8[c] = comb.auth;
      u8[c + 1] = comb.encrypt;
      wr16(u8, c + 2, comb.flags);
      wr16(u8, c + 4, comb.authMinbits);
      wr16(u8, c + 6, comb.authMaxbits);
      wr16(u8, c + 8, comb.encryptMinbits);
      wr16(u8, c + 10, comb.encryptMaxbits);
      wr32(u8, c + 12, 0);
      wr32(u8, c + 16, comb.softAllocations >>> 0);
      wr32(u8, c + 20, comb.hardAllocations >>> 0);
      wr64(u8, c + 24, comb.softBytes);
      wr64(u8, c + 32, comb.hardBytes);
      wr64(u8, c + 40, comb.softAddtime);
      wr64(u8, c + 48, comb.hardAddtime);
      wr64(u8, c + 56, comb.softUsetime);
      wr64(u8, c + 64, comb.hardUsetime);
      c += COMB_LEN;
    }
  },
};

// ---------- supported (sadb_supported + sadb_alg[], 8 bytes each) ----------

export const supportedCodec: ExtCodec<Supported> = {
  decode(u8, off, len, exttype) {
    if (len < 8 || len % 8) bad(ERRNO.EINVAL, off, exttype, `supported extension is ${len} bytes`);
    if (rd32(u8, off + 4) !== 0) bad(ERRNO.EINVAL, off, exttype, 'supported reserved field must be zero');
    const algs: Alg[] = [];
    for (let a = off + 8; a < off + len; a += 8) {
      if (rd16(u8, a + 6) !== 0) bad(ERRNO.EINVAL, off, exttype, `algorithm ${u8[a]}: reserved field must be zero`);
      algs.push({ id: u8[a], ivlen: u8[a + 1], minbits: rd16(u8, a + 2), maxbits: rd16(u8, a + 4) });
    }
    return { algs };
  },
  encodingLength: (v) => 8 + 8 * v.algs.length,
  encode(v, u8, off, exttype) {
    header(u8, off, 8 + 8 * v.algs.length, exttype);
    wr32(u8, off + 4, 0);
    let a = off + 8;
    for (const alg of v.algs) {
      u8[a] = alg.id;
      u8[a + 1] = alg.ivlen;
      wr16(u8, a + 2, alg.minbits);
      wr16(u8, a + 4, alg.maxbits);
      wr16(u8, a + 6, 0);
      a += 8;
    }
  },
};

// ---------- SPI range (bounds in network order, as KLIPS reads them) ----------

const spirangeCodec: ExtCodec<SpiRange> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 16, off, exttype, 'SPI range');
    if (rd32(u8, off + 12) !== 0) bad(ERRNO.EINVAL, off, exttype, 'SPI range reserved field must be zero');
    const min = rd32be(u8, off + 4);
    const max = rd32be(u8, off + 8);
    if (max < min) bad(ERRNO.EINVAL, off, exttype, `SPI range min 0x${min.toString(16)} > max 0x${max.toString(16)}`);
    if (min <= 255) bad(ERRNO.EEXIST, off, exttype, `SPI range min ${min} must be above 255 (KLIPS answers EEXIST)`);
    return { min, max };
  },
  encodingLength: () => 16,
  encode(v, u8, off, exttype) {
    header(u8, off, 16, exttype);
    wr32be(u8, off + 4, v.min >>> 0);
    wr32be(u8, off + 8, v.max >>> 0);
    wr32(u8, off + 12, 0);
  },
};

// ---------- X_KMPRIVATE (opaque to the kernel) ----------

export const kmprivateCodec: ExtCodec<KmPrivate> = {
  decode(u8, off, len, exttype) {
    if (rd32(u8, off + 4) !== 0) bad(ERRNO.EINVAL, off, exttype, 'kmprivate reserved field must be zero');
    return { data: copyBytes(u8, off + 8, off + len) };
  },
  encodingLength: (v) => 8 + pad8(v.data.length),
  encode(v, u8, off, exttype) {
    if (v.data.length % 8) throw new RangeError('kmprivate data must be whole 8-byte words');
    header(u8, off, 8 + v.data.length, exttype);
    wr32(u8, off + 4, 0);
    u8.set(v.data, off + 8);
  },
};

// ---------- X_SATYPE2 ----------

const satypeCodec: ExtCodec<XSatype> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'X_SATYPE2');
    const satype = u8[off + 4];
    if (satype === 0 || satype > SADB_SATYPE_MAX || !SATYPE_TO_PROTO[satype]) {
      bad(ERRNO.EINVAL, off, exttype, `second SA type ${satype} has no protocol`);
    }
    requireZeroPad(u8, off + 5, off + 8, off, exttype, 'X_SATYPE2 reserved bytes');
    return { satype };
  },
  encodingLength: () => 8,
  encode(v, u8, off, exttype) {
    header(u8, off, 8, exttype);
    u8[off + 4] = v.satype;
  },
};

// ---------- X_DEBUG (twelve 32-bit subsystem words) ----------

const debugCodec: ExtCodec<XDebug> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 56, off, exttype, 'X_DEBUG');
    requireZeroPad(u8, off + 52, off + 56, off, exttype, 'X_DEBUG reserved bytes');
    const d = {} as XDebug;
    for (let i = 0; i < DEBUG_SUBSYSTEMS.length; i++) d[DEBUG_SUBSYSTEMS[i]] = rd32(u8, off + 4 + 4 * i);
    return d;
  },
  encodingLength: () => 56,
  encode(v, u8, off, exttype) {
    header(u8, off, 56, exttype);
    for (let i = 0; i < DEBUG_SUBSYSTEMS.length; i++) wr32(u8, off + 4 + 4 * i, v[DEBUG_SUBSYSTEMS[i]] >>> 0);
    wr32(u8, off + 52, 0);
  },
};

// ---------- X_PROTOCOL ----------

const protocolCodec: ExtCodec<Protocol> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'X_PROTOCOL');
    if (u8[off + 7] !== 0) bad(ERRNO.EINVAL, off, exttype, 'X_PROTOCOL reserved field must be zero');
    return { proto: u8[off + 4], direction: u8[off + 5], flags: u8[off + 6] };
  },
  encodingLength: () => 8,
  encode(v, u8, off, exttype) {
    header(u8, off, 8, exttype);
    u8[off + 4] = v.proto;
    u8[off + 5] = v.direction;
    u8[off + 6] = v.flags;
    u8[off + 7] = 0;
  },
};

// ---------- NAT-T type and ports ----------

export const natTTypeCodec: ExtCodec<NatTType> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'X_NAT_T_TYPE');
    requireZeroPad(u8, off + 5, off + 8, off, exttype, 'X_NAT_T_TYPE reserved bytes');
    return { type: u8[off + 4] };
  },
  encodingLength: () => 8,
  encode(v, u8, off, exttype) {
    header(u8, off, 8, exttype);
    u8[off + 4] = v.type;
  },
};

const natTPortCodec: ExtCodec<NatTPort> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'NAT-T port');
    if (rd16(u8, off + 6) !== 0) bad(ERRNO.EINVAL, off, exttype, 'NAT-T port reserved field must be zero');
    return { port: rd16(u8, off + 4) };
  },
  encodingLength: () => 8,
  encode(v, u8, off, exttype) {
    header(u8, off, 8, exttype);
    wr16(u8, off + 4, v.port);
    wr16(u8, off + 6, 0);
  },
};

// ---------- X_PLUMBIF, X_SAREF ----------

const plumbifCodec: ExtCodec<Plumbif> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'X_PLUMBIF');
    requireZeroPad(u8, off + 6, off + 8, off, exttype, 'X_PLUMBIF padding');
    return { ifnum: rd16(u8, off + 4) };
  },
  encodingLength: () => 8,
  encode(v, u8, off, exttype) {
    header(u8, off, 8, exttype);
    wr16(u8, off + 4, v.ifnum);
    wr16(u8, off + 6, 0);
  },
};

const sarefCodec: ExtCodec<Saref> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 16, off, exttype, 'X_SAREF');
    requireZeroPad(u8, off + 12, off + 16, off, exttype, 'X_SAREF padding');
    return { me: rd32(u8, off + 4), him: rd32(u8, off + 8) };
  },
  encodingLength: () => 16,
  encode(v, u8, off, exttype) {
    header(u8, off, 16, exttype);
    wr32(u8, off + 4, v.me >>> 0);
    wr32(u8, off + 8, v.him >>> 0);
    wr32(u8, off + 12, 0);
  },
};

// ---------- the table ----------

export interface ExtEntry {
  type: number;
  field: ExtField;
  codec: ExtCodec<any>;
  /** Store a decoded value in its message field (a fixed property store per field). */
  set: (m: Extensions, v: any) => void;
}

/**
 * One row per extension type, in type order: its message field, its codec, and a fixed
 * property store for that field (one store shape per field keeps parsing monomorphic).
 * A row's position must equal its type (checked below), so the table cannot drift.
 */
const ROWS: ReadonlyArray<ExtEntry> = [
  { type: SADB_EXT_SA, field: 'sa', codec: saCodec, set: (m, v) => { m.sa = v; } },
  { type: SADB_EXT_LIFETIME_CURRENT, field: 'lifetimeCurrent', codec: lifetimeCodec, set: (m, v) => { m.lifetimeCurrent = v; } },
  { type: SADB_EXT_LIFETIME_HARD, field: 'lifetimeHard', codec: lifetimeCodec, set: (m, v) => { m.lifetimeHard = v; } },
  { type: SADB_EXT_LIFETIME_SOFT, field: 'lifetimeSoft', codec: lifetimeCodec, set: (m, v) => { m.lifetimeSoft = v; } },
  { type: SADB_EXT_ADDRESS_SRC, field: 'addressSrc', codec: addressCodec, set: (m, v) => { m.addressSrc = v; } },
  { type: SADB_EXT_ADDRESS_DST, field: 'addressDst', codec: addressCodec, set: (m, v) => { m.addressDst = v; } },
  { type: SADB_EXT_ADDRESS_PROXY, field: 'addressProxy', codec: addressCodec, set: (m, v) => { m.addressProxy = v; } },
  { type: SADB_EXT_KEY_AUTH, field: 'keyAuth', codec: keyCodec, set: (m, v) => { m.keyAuth = v; } },
  { type: SADB_EXT_KEY_ENCRYPT, field: 'keyEncrypt', codec: keyCodec, set: (m, v) => { m.keyEncrypt = v; } },
  { type: SADB_EXT_IDENTITY_SRC, field: 'identitySrc', codec: identCodec, set: (m, v) => { m.identitySrc = v; } },
  { type: SADB_EXT_IDENTITY_DST, field: 'identityDst', codec: identCodec, set: (m, v) => { m.identityDst = v; } },
  { type: SADB_EXT_SENSITIVITY, field: 'sensitivity', codec: sensCodec, set: (m, v) => { m.sensitivity = v; } },
  { type: SADB_EXT_PROPOSAL, field: 'proposal', codec: propCodec, set: (m, v) => { m.proposal = v; } },
  { type: SADB_EXT_SUPPORTED_AUTH, field: 'supportedAuth', codec: supportedCodec, set: (m, v) => { m.supportedAuth = v; } },
  { type: SADB_EXT_SUPPORTED_ENCRYPT, field: 'supportedEncrypt', codec: supportedCodec, set: (m, v) => { m.supportedEncrypt = v; } },
  { type: SADB_EXT_SPIRANGE, field: 'spirange', codec: spirangeCodec, set: (m, v) => { m.spirange = v; } },
  { type: SADB_X_EXT_KMPRIVATE, field: 'kmprivate', codec: kmprivateCodec, set: (m, v) => { m.kmprivate = v; } },
  { type: SADB_X_EXT_SATYPE2, field: 'satype2', codec: satypeCodec, set: (m, v) => { m.satype2 = v; } },
  { type: SADB_X_EXT_SA2, field: 'sa2', codec: saCodec, set: (m, v) => { m.sa2 = v; } },
  { type: SADB_X_EXT_ADDRESS_DST2, field: 'addressDst2', codec: addressCodec, set: (m, v) => { m.addressDst2 = v; } },
  { type: SADB_X_EXT_ADDRESS_SRC_FLOW, field: 'addressSrcFlow', codec: addressCodec, set: (m, v) => { m.addressSrcFlow = v; } },
  { type: SADB_X_EXT_ADDRESS_DST_FLOW, field: 'addressDstFlow', codec: addressCodec, set: (m, v) => { m.addressDstFlow = v; } },
  { type: SADB_X_EXT_ADDRESS_SRC_MASK, field: 'addressSrcMask', codec: addressCodec, set: (m, v) => { m.addressSrcMask = v; } },
  { type: SADB_X_EXT_ADDRESS_DST_MASK, field: 'addressDstMask', codec: addressCodec, set: (m, v) => { m.addressDstMask = v; } },
  { type: SADB_X_EXT_DEBUG, field: 'debug', codec: debugCodec, set: (m, v) => { m.debug = v; } },
  { type: SADB_X_EXT_PROTOCOL, field: 'protocol', codec: protocolCodec, set: (m, v) => { m.protocol = v; } },
  { type: SADB_X_EXT_NAT_T_TYPE, field: 'natTType', codec: natTTypeCodec, set: (m, v) => { m.natTType = v; } },
  { type: SADB_X_EXT_NAT_T_SPORT, field: 'natTSport', codec: natTPortCodec, set: (m, v) => { m.natTSport = v; } },
  { type: SADB_X_EXT_NAT_T_DPORT, field: 'natTDport', codec: natTPortCodec, set: (m, v) => { m.natTDport = v; } },
  { type: SADB_X_EXT_NAT_T_OA, field: 'natTOa', codec: addressCodec, set: (m, v) => { m.natTOa = v; } },
  { type: SADB_X_EXT_PLUMBIF, field: 'plumbif', codec: plumbifCodec, set: (m, v) => { m.plumbif = v; } },
  { type: SADB_X_EXT_SAREF, field: 'saref', codec: sarefCodec, set: (m, v) => { m.saref = v; } },
];
ROWS.forEach((e, i) => {
  if (e.type !== i + 1) throw new Error(`extension table row ${i} holds type ${e.type}`);
});

/** EXT_TABLE[exttype] for exttype 1..32; index 0 (the message header) is undefined. */
export const EXT_TABLE: ReadonlyArray<ExtEntry | undefined> = [undefined, ...ROWS];

/** The extension type of each message field. */
export const EXT_TYPE_OF: Readonly<Record<ExtField, number>> = Object.fromEntries(ROWS.map((e) => [e.field, e.type])) as Record<ExtField, number>;

/** For the other dialect's codecs (kame.ts): refuse an extension at its offset and type, and write an sadb_ext header. */
export { bad as refuseExtension, header as writeExtensionHeader };
