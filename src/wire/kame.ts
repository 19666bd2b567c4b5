/**
 * The KAME/Linux dialect's extensions, as Linux's af_key reads them (linux/pfkeyv2.h):
 * the value types of what KLIPS numbers otherwise or lacks (X_POLICY with its
 * ipsecrequests, X_SA2, NAT-T at 20..23 with ports in network order, SEC_CTX,
 * KMADDRESS, FILTER), one codec per extension family, and KAME_EXT_TABLE, the table from
 * extension type (1..26, Linux numbering) to codec and message field that parseMessage and
 * buildMessage use for a message of the 'kame' dialect. Types 1..17 mean what they mean
 * in KLIPS; where Linux lays them out differently (a 16-byte SA only, 32-byte lifetimes
 * only, prefix lengths in addresses, SPIRANGE in host order, keys of 0 bits) the KAME
 * codec says so.
 *
 * Acceptance follows Linux's parse_exthdrs and its verify_* functions where they decide
 * (address and prefix lengths, key lengths, SEC_CTX lengths: EINVAL each); bytes Linux
 * ignores (reserved fields, sin_zero, padding, a fixed extension longer than its struct)
 * must be zero or absent, as in the KLIPS dialect, so an accepted extension has one
 * encoding. The exceptions are bytes Linux skips inside X_POLICY (after an ipsecrequest's
 * sockaddrs, after the last ipsecrequest), which real requests carry: they are kept, so
 * build(parse(b)) = b. docs/semantics.md lists these choices.
 */

import {
  AF_INET, AF_INET6, IPSEC_POLICY_IPSEC,
  SADB_EXT_SA, SADB_EXT_LIFETIME_CURRENT, SADB_EXT_LIFETIME_HARD, SADB_EXT_LIFETIME_SOFT,
  SADB_EXT_ADDRESS_SRC, SADB_EXT_ADDRESS_DST, SADB_EXT_ADDRESS_PROXY, SADB_EXT_KEY_AUTH,
  SADB_EXT_KEY_ENCRYPT, SADB_EXT_IDENTITY_SRC, SADB_EXT_IDENTITY_DST, SADB_EXT_SENSITIVITY,
  SADB_EXT_PROPOSAL, SADB_EXT_SUPPORTED_AUTH, SADB_EXT_SUPPORTED_ENCRYPT, SADB_EXT_SPIRANGE,
  SADB_X_EXT_KMPRIVATE, SADB_X_EXT_POLICY, KAME_SADB_X_EXT_SA2, KAME_SADB_X_EXT_NAT_T_TYPE,
  KAME_SADB_X_EXT_NAT_T_SPORT, KAME_SADB_X_EXT_NAT_T_DPORT, KAME_SADB_X_EXT_NAT_T_OA,
  SADB_X_EXT_SEC_CTX, SADB_X_EXT_KMADDRESS, SADB_X_EXT_FILTER,
} from './constants.js';
import { ERRNO } from './errno.js';
import {
  COMB_LEN, exactLength, identCodec, kmprivateCodec, lifetimeCodec, natTTypeCodec, pad8,
  refuseExtension as bad, requireZeroPad, sensCodec, supportedCodec, writeExtensionHeader as header,
  type Address, type Comb, type ExtCodec, type Extensions, type Key, type Prop, type Sa, type SpiRange,
} from './extensions.js';
import { addressBytes, formatIPv4Cached, formatIPv6, ipv4Number, sockaddrLength } from './sockaddr.js';
import { allZero, copyBytes, rd16, rd16be, rd32, rd32be, rd64, wr16, wr16be, wr32, wr32be, wr64 } from './bytes.js';

// ---------- value types ----------

/** A bare sockaddr_in / sockaddr_in6 (inside X_POLICY's ipsecrequests and X_KMADDRESS). */
export interface Sockaddr {
  family: number;
  port: number;
  addr: string;
  /** sockaddr_in6 only. */
  flowinfo?: number;
  scopeId?: number;
}

/** One sadb_x_ipsecrequest: a template of the policy (what SA a packet needs). */
export interface IpsecRequest {
  /** IPPROTO_ESP, IPPROTO_AH or IPPROTO_COMP. */
  proto: number;
  /** IPSEC_MODE_*. */
  mode: number;
  /** IPSEC_LEVEL_*. */
  level: number;
  reqid: number;
  /** The tunnel's endpoints (tunnel mode), when the request carries a pair of sockaddrs. */
  src?: Sockaddr;
  dst?: Sockaddr;
  /** Bytes between the sockaddrs (or the fixed part) and sadb_x_ipsecrequest_len, which Linux skips. */
  extra?: Uint8Array;
}

/** sadb_x_policy and the ipsecrequests after it. */
export interface Policy {
  /** IPSEC_POLICY_*. */
  type: number;
  /** IPSEC_DIR_*. */
  dir: number;
  id: number;
  priority: number;
  requests: IpsecRequest[];
  /** Bytes after the last ipsecrequest that make no request (Linux skips them). */
  tail?: Uint8Array;
}

/** Linux's sadb_x_sa2: the SA's mode and reqid. */
export interface XSa2 {
  mode: number;
  sequence: number;
  reqid: number;
}

/** sadb_x_sec_ctx: a security label. */
export interface SecCtx {
  alg: number;
  doi: number;
  ctx: Uint8Array;
}

/** sadb_x_kmaddress: the key managers' own addresses (X_MIGRATE). */
export interface KmAddress {
  reserved: number;
  local: Sockaddr;
  remote: Sockaddr;
}

/** sadb_x_filter: a DUMP restricted to addresses (xfrm_address_t bytes, as given). */
export interface Filter {
  saddr: Uint8Array;
  daddr: Uint8Array;
  family: number;
  splen: number;
  dplen: number;
}

/** An extension of a type above SADB_EXT_MAX (26): Linux skips it; kept whole for the round trip. */
export interface UnknownExtension {
  type: number;
  /** The whole extension, its sadb_ext header included. */
  data: Uint8Array;
}

/** Every extension a KAME-dialect message may carry, by field name (types 1..17 as in KLIPS). */
export interface KameExtensions extends Pick<Extensions,
  'sa' | 'lifetimeCurrent' | 'lifetimeHard' | 'lifetimeSoft' | 'addressSrc' | 'addressDst' |
  'addressProxy' | 'keyAuth' | 'keyEncrypt' | 'identitySrc' | 'identityDst' | 'sensitivity' |
  'proposal' | 'supportedAuth' | 'supportedEncrypt' | 'spirange' | 'kmprivate' |
  'natTType' | 'natTSport' | 'natTDport' | 'natTOa'> {
  policy?: Policy;
  xSa2?: XSa2;
  secCtx?: SecCtx;
  kmaddress?: KmAddress;
  filter?: Filter;
}
export type KameExtField = keyof KameExtensions;

// ---------- sockaddrs ----------

/** The sockaddr at `s`, or undefined unless a whole sockaddr_in/in6 fits in `avail` bytes with zero sin_zero. */
function sockaddrAt(u8: Uint8Array, s: number, avail: number): Sockaddr | undefined {
  if (avail < 2) return undefined;
  const family = rd16(u8, s);
  const slen = sockaddrLength(family);
  if (slen === 0 || avail < slen) return undefined;
  if (family === AF_INET) {
    if (!allZero(u8, s + 8, s + 16)) return undefined;
    return { family, port: rd16be(u8, s + 2), addr: formatIPv4Cached(u8, s + 4) };
  }
  return { family, port: rd16be(u8, s + 2), flowinfo: rd32be(u8, s + 4), addr: formatIPv6(u8, s + 8), scopeId: rd32(u8, s + 24) };
}

function writeSockaddr(u8: Uint8Array, s: number, v: Sockaddr): void {
  wr16(u8, s, v.family);
  wr16be(u8, s + 2, v.port);
  if (v.family === AF_INET) {
    wr32be(u8, s + 4, ipv4Number(v.addr));
  } else if (v.family === AF_INET6) {
    wr32be(u8, s + 4, (v.flowinfo ?? 0) >>> 0);
    u8.set(addressBytes(v.family, v.addr), s + 8);
    wr32(u8, s + 24, (v.scopeId ?? 0) >>> 0);
  } else {
    throw new RangeError(`address family ${v.family} cannot be encoded`);
  }
}

/** A sockaddr pair (src then dst) of one family at `s`, or undefined (Linux's parse_sockaddr_pair). */
function pairAt(u8: Uint8Array, s: number, avail: number): { src: Sockaddr; dst: Sockaddr; len: number } | undefined {
  const src = sockaddrAt(u8, s, avail);
  if (!src) return undefined;
  const slen = sockaddrLength(src.family);
  const dst = sockaddrAt(u8, s + slen, avail - slen);
  if (!dst || dst.family !== src.family) return undefined;
  return { src, dst, len: 2 * slen };
}

// ---------- SA (16 bytes; the state is Linux's to ignore) ----------

const saCodec: ExtCodec<Sa> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 16, off, exttype, 'SA');
    return {
      spi: rd32be(u8, off + 4),
      replay: u8[off + 8],
      state: u8[off + 9],
      auth: u8[off + 10],
      encrypt: u8[off + 11],
      flags: rd32(u8, off + 12),
    };
  },
  encodingLength: () => 16,
  encode(v, u8, off, exttype) {
    if (v.ref !== undefined) throw new RangeError('the KAME dialect has no 24-byte SA extension (sadb_x_sa_ref)');
    header(u8, off, 16, exttype);
    wr32be(u8, off + 4, v.spi >>> 0);
    u8[off + 8] = v.replay;
    u8[off + 9] = v.state;
    u8[off + 10] = v.auth;
    u8[off + 11] = v.encrypt;
    wr32(u8, off + 12, v.flags >>> 0);
  },
};

/** Lifetimes are RFC 2367's 32 bytes (no openswan x_packets). */
const lifetime32Codec: ExtCodec<Extensions['lifetimeCurrent'] & object> = {
  decode(u8, off, len, exttype, views) {
    exactLength(len, 32, off, exttype, 'lifetime');
    return lifetimeCodec.decode(u8, off, len, exttype, views);
  },
  encodingLength: () => 32,
  encode(v, u8, off, exttype) {
    if (v.packets !== undefined) throw new RangeError('the KAME dialect has no 40-byte lifetime (sadb_x_lifetime_packets)');
    lifetimeCodec.encode(v, u8, off, exttype);
  },
};

// ---------- address (Linux's verify_address_len: exact length, prefix length in range) ----------

const addressCodec: ExtCodec<Address> = {
  decode(u8, off, len, exttype) {
    if (len < 16) bad(ERRNO.EINVAL, off, exttype, `address extension is ${len} bytes, too short for a sockaddr`);
    const family = rd16(u8, off + 8);
    const slen = sockaddrLength(family);
    if (slen === 0) bad(ERRNO.EINVAL, off, exttype, `address family ${family} not supported`);
    if (len !== pad8(8 + slen)) bad(ERRNO.EINVAL, off, exttype, `address extension is ${len} bytes, must be ${pad8(8 + slen)}`);
    const prefixlen = u8[off + 5];
    const bits = family === AF_INET ? 32 : 128;
    if (prefixlen > bits) bad(ERRNO.EINVAL, off, exttype, `prefix length ${prefixlen} > ${bits}`);
    if (rd16(u8, off + 6) !== 0) bad(ERRNO.EINVAL, off, exttype, 'address reserved field must be zero');
    const s = off + 8;
    const a: Address = { proto: u8[off + 4], prefixlen, family, port: rd16be(u8, s + 2), addr: '' };
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
    header(u8, off, pad8(8 + slen), exttype);
    u8[off + 4] = v.proto;
    u8[off + 5] = v.prefixlen;
    writeSockaddr(u8, off + 8, v);
  },
};

// ---------- key (0 bits allowed: Linux's handlers, not its parser, refuse them) ----------

const keyCodec: ExtCodec<Key> = {
  decode(u8, off, len, exttype, views) {
    const bits = rd16(u8, off + 4);
    const nbytes = Math.ceil(bits / 8);
    const want = pad8(8 + nbytes);
    if (len !== want) bad(ERRNO.EINVAL, off, exttype, `key of ${bits} bits needs a ${want}-byte extension, got ${len}`);
    if (rd16(u8, off + 6) !== 0) bad(ERRNO.EINVAL, off, exttype, 'key reserved field must be zero');
    requireZeroPad(u8, off + 8 + nbytes, off + len, off, exttype, 'key padding');
    const from = off + 8;
    return { bits, key: views ? new Uint8Array(u8.buffer, u8.byteOffset + from, nbytes) : copyBytes(u8, from, from + nbytes) };
  },
  encodingLength: (v) => pad8(8 + Math.ceil(v.bits / 8)),
  encode(v, u8, off, exttype) {
    const nbytes = Math.ceil(v.bits / 8);
    if (v.key.length !== nbytes) throw new RangeError(`key has ${v.key.length} bytes, ${v.bits} bits need ${nbytes}`);
    header(u8, off, pad8(8 + nbytes), exttype);
    wr16(u8, off + 4, v.bits);
    u8.set(v.key, off + 8);
  },
};

// ---------- proposal (Linux reads no comb; none is judged here) ----------

const propCodec: ExtCodec<Prop> = {
  decode(u8, off, len, exttype) {
    if (len < 8 || (len - 8) % COMB_LEN) bad(ERRNO.EINVAL, off, exttype, `proposal extension is ${len} bytes, not 8 + n*72`);
    requireZeroPad(u8, off + 5, off + 8, off, exttype, 'proposal reserved bytes');
    const combs: Comb[] = [];
    for (let c = off + 8; c < off + len; c += COMB_LEN) {
      requireZeroPad(u8, c + 12, c + 16, off, exttype, 'comb reserved field');
      combs.push({
        auth: u8[c], encrypt: u8[c + 1], flags: rd16(u8, c + 2),
        authMinbits: rd16(u8, c + 4), authMaxbits: rd16(u8, c + 6),
        encryptMinbits: rd16(u8, c + 8), encryptMaxbits: rd16(u8, c + 10),
        softAllocations: rd32(u8, c + 16), hardAllocations: rd32(u8, c + 20),
        softBytes: rd64(u8, c + 24), hardBytes: rd64(u8, c + 32),
        softAddtime: rd64(u8, c + 40), hardAddtime: rd64(u8, c + 48),
        softUsetime: rd64(u8, c + 56), hardUsetime: rd64(u8, c + 64),
      });
    }
    return { replay: u8[off + 4], combs };
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

// ---------- SPI range (host order, as Linux and libipsec; the handler judges the bounds) ----------

const spirangeCodec: ExtCodec<SpiRange> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 16, off, exttype, 'SPI range');
    if (rd32(u8, off + 12) !== 0) bad(ERRNO.EINVAL, off, exttype, 'SPI range reserved field must be zero');
    return { min: rd32(u8, off + 4), max: rd32(u8, off + 8) };
  },
  encodingLength: () => 16,
  encode(v, u8, off, exttype) {
    header(u8, off, 16, exttype);
    wr32(u8, off + 4, v.min >>> 0);
    wr32(u8, off + 8, v.max >>> 0);
  },
};

// ---------- X_POLICY ----------

const IPSECREQUEST_LEN = 16;

/**
 * One ipsecrequest of `rl` bytes at `o`, or undefined when its fixed part has non-zero
 * reserved fields. After the fixed part, a pair of sockaddrs of one family is read as the
 * tunnel's endpoints when one fits; whatever follows is kept as `extra`.
 */
function requestAt(u8: Uint8Array, o: number, rl: number): IpsecRequest | undefined {
  if (rd16(u8, o + 6) !== 0 || rd32(u8, o + 12) !== 0) return undefined;
  const r: IpsecRequest = { proto: rd16(u8, o + 2), mode: u8[o + 4], level: u8[o + 5], reqid: rd32(u8, o + 8) };
  let at = o + IPSECREQUEST_LEN;
  const end = o + rl;
  const pair = pairAt(u8, at, end - at);
  if (pair) {
    r.src = pair.src;
    r.dst = pair.dst;
    at += pair.len;
  }
  if (at < end) r.extra = copyBytes(u8, at, end);
  return r;
}

function requestLength(r: IpsecRequest): number {
  const pair = r.src && r.dst ? sockaddrLength(r.src.family) + sockaddrLength(r.dst.family) : 0;
  return IPSECREQUEST_LEN + pair + (r.extra?.length ?? 0);
}

const policyCodec: ExtCodec<Policy> = {
  decode(u8, off, len, exttype) {
    if (len < 16) bad(ERRNO.EINVAL, off, exttype, `X_POLICY extension is ${len} bytes, must be at least 16`);
    if (u8[off + 7] !== 0) bad(ERRNO.EINVAL, off, exttype, 'X_POLICY reserved field must be zero');
    const p: Policy = { type: rd16(u8, off + 4), dir: u8[off + 6], id: rd32(u8, off + 8), priority: rd32(u8, off + 12), requests: [] };
    const end = off + len;
    let o = off + 16;
    // Linux's parse_ipsecrequests, which it runs for IPSEC policies only: any other type's
    // bytes after the header are skipped, so they are kept as they are.
    while (end - o >= IPSECREQUEST_LEN) {
      const rl = rd16(u8, o);
      const r = rl >= IPSECREQUEST_LEN && rl <= end - o ? requestAt(u8, o, rl) : undefined;
      if (!r) {
        if (p.type !== IPSEC_POLICY_IPSEC) break;
        bad(ERRNO.EINVAL, off, exttype, rl < IPSECREQUEST_LEN || rl > end - o
          ? `ipsecrequest length ${rl} at byte ${o - off} does not fit the ${end - o} bytes left`
          : `ipsecrequest at byte ${o - off}: reserved fields must be zero`);
      }
      p.requests.push(r);
      o += rl;
    }
    if (o < end) p.tail = copyBytes(u8, o, end);
    return p;
  },
  encodingLength: (v) => 16 + v.requests.reduce((n, r) => n + requestLength(r), 0) + (v.tail?.length ?? 0),
  encode(v, u8, off, exttype) {
    const len = policyCodec.encodingLength(v);
    if (len % 8) throw new RangeError(`X_POLICY of ${len} bytes is not a whole number of 8-byte units`);
    header(u8, off, len, exttype);
    wr16(u8, off + 4, v.type);
    u8[off + 6] = v.dir;
    wr32(u8, off + 8, v.id >>> 0);
    wr32(u8, off + 12, v.priority >>> 0);
    let o = off + 16;
    for (const r of v.requests) {
      const rl = requestLength(r);
      wr16(u8, o, rl);
      wr16(u8, o + 2, r.proto);
      u8[o + 4] = r.mode;
      u8[o + 5] = r.level;
      wr32(u8, o + 8, r.reqid >>> 0);
      let at = o + IPSECREQUEST_LEN;
      if (r.src && r.dst) {
        writeSockaddr(u8, at, r.src);
        at += sockaddrLength(r.src.family);
        writeSockaddr(u8, at, r.dst);
        at += sockaddrLength(r.dst.family);
      }
      if (r.extra) u8.set(r.extra, at);
      o += rl;
    }
    if (v.tail) u8.set(v.tail, o);
  },
};

// ---------- X_SA2 ----------

const xSa2Codec: ExtCodec<XSa2> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 16, off, exttype, 'X_SA2');
    requireZeroPad(u8, off + 5, off + 8, off, exttype, 'X_SA2 reserved fields');
    return { mode: u8[off + 4], sequence: rd32(u8, off + 8), reqid: rd32(u8, off + 12) };
  },
  encodingLength: () => 16,
  encode(v, u8, off, exttype) {
    header(u8, off, 16, exttype);
    u8[off + 4] = v.mode;
    wr32(u8, off + 8, v.sequence >>> 0);
    wr32(u8, off + 12, v.reqid >>> 0);
  },
};

// ---------- NAT-T ports (network order in Linux, where KLIPS keeps host order) ----------

const natTPortCodec: ExtCodec<{ port: number }> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 8, off, exttype, 'NAT-T port');
    if (rd16(u8, off + 6) !== 0) bad(ERRNO.EINVAL, off, exttype, 'NAT-T port reserved field must be zero');
    return { port: rd16be(u8, off + 4) };
  },
  encodingLength: () => 8,
  encode(v, u8, off, exttype) {
    header(u8, off, 8, exttype);
    wr16be(u8, off + 4, v.port);
  },
};

// ---------- X_SEC_CTX (Linux's verify_sec_ctx_len) ----------

/** Linux refuses a context longer than a page. */
const MAX_SEC_CTX = 4096;

const secCtxCodec: ExtCodec<SecCtx> = {
  decode(u8, off, len, exttype) {
    const ctxLen = rd16(u8, off + 6);
    if (ctxLen > MAX_SEC_CTX) bad(ERRNO.EINVAL, off, exttype, `security context of ${ctxLen} bytes > ${MAX_SEC_CTX}`);
    if (len !== pad8(8 + ctxLen)) bad(ERRNO.EINVAL, off, exttype, `security context of ${ctxLen} bytes needs a ${pad8(8 + ctxLen)}-byte extension, got ${len}`);
    requireZeroPad(u8, off + 8 + ctxLen, off + len, off, exttype, 'security context padding');
    return { alg: u8[off + 4], doi: u8[off + 5], ctx: copyBytes(u8, off + 8, off + 8 + ctxLen) };
  },
  encodingLength: (v) => pad8(8 + v.ctx.length),
  encode(v, u8, off, exttype) {
    header(u8, off, pad8(8 + v.ctx.length), exttype);
    u8[off + 4] = v.alg;
    u8[off + 5] = v.doi;
    wr16(u8, off + 6, v.ctx.length);
    u8.set(v.ctx, off + 8);
  },
};

// ---------- X_KMADDRESS ----------

const kmaddressCodec: ExtCodec<KmAddress> = {
  decode(u8, off, len, exttype) {
    const pair = pairAt(u8, off + 8, len - 8);
    if (!pair) bad(ERRNO.EINVAL, off, exttype, 'X_KMADDRESS needs two sockaddrs of one family');
    if (len !== 8 + pad8(pair.len)) bad(ERRNO.EINVAL, off, exttype, `X_KMADDRESS is ${len} bytes, must be ${8 + pad8(pair.len)}`);
    return { reserved: rd32(u8, off + 4), local: pair.src, remote: pair.dst };
  },
  encodingLength: (v) => 8 + pad8(sockaddrLength(v.local.family) + sockaddrLength(v.remote.family)),
  encode(v, u8, off, exttype) {
    header(u8, off, kmaddressCodec.encodingLength(v), exttype);
    wr32(u8, off + 4, v.reserved >>> 0);
    writeSockaddr(u8, off + 8, v.local);
    writeSockaddr(u8, off + 8 + sockaddrLength(v.local.family), v.remote);
  },
};

// ---------- X_FILTER ----------

const filterCodec: ExtCodec<Filter> = {
  decode(u8, off, len, exttype) {
    exactLength(len, 40, off, exttype, 'X_FILTER');
    return {
      saddr: copyBytes(u8, off + 4, off + 20),
      daddr: copyBytes(u8, off + 20, off + 36),
      family: rd16(u8, off + 36),
      splen: u8[off + 38],
      dplen: u8[off + 39],
    };
  },
  encodingLength: () => 40,
  encode(v, u8, off, exttype) {
    if (v.saddr.length !== 16 || v.daddr.length !== 16) throw new RangeError('X_FILTER addresses are 16 bytes each');
    header(u8, off, 40, exttype);
    u8.set(v.saddr, off + 4);
    u8.set(v.daddr, off + 20);
    wr16(u8, off + 36, v.family);
    u8[off + 38] = v.splen;
    u8[off + 39] = v.dplen;
  },
};

// ---------- the table ----------

export interface KameExtEntry {
  type: number;
  field: KameExtField;
  codec: ExtCodec<any>;
  set: (m: KameExtensions, v: any) => void;
}

const ROWS: ReadonlyArray<KameExtEntry> = [
  { type: SADB_EXT_SA, field: 'sa', codec: saCodec, set: (m, v) => { m.sa = v; } },
  { type: SADB_EXT_LIFETIME_CURRENT, field: 'lifetimeCurrent', codec: lifetime32Codec, set: (m, v) => { m.lifetimeCurrent = v; } },
  { type: SADB_EXT_LIFETIME_HARD, field: 'lifetimeHard', codec: lifetime32Codec, set: (m, v) => { m.lifetimeHard = v; } },
  { type: SADB_EXT_LIFETIME_SOFT, field: 'lifetimeSoft', codec: lifetime32Codec, set: (m, v) => { m.lifetimeSoft = v; } },
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
  { type: SADB_X_EXT_POLICY, field: 'policy', codec: policyCodec, set: (m, v) => { m.policy = v; } },
  { type: KAME_SADB_X_EXT_SA2, field: 'xSa2', codec: xSa2Codec, set: (m, v) => { m.xSa2 = v; } },
  { type: KAME_SADB_X_EXT_NAT_T_TYPE, field: 'natTType', codec: natTTypeCodec, set: (m, v) => { m.natTType = v; } },
  { type: KAME_SADB_X_EXT_NAT_T_SPORT, field: 'natTSport', codec: natTPortCodec, set: (m, v) => { m.natTSport = v; } },
  { type: KAME_SADB_X_EXT_NAT_T_DPORT, field: 'natTDport', codec: natTPortCodec, set: (m, v) => { m.natTDport = v; } },
  { type: KAME_SADB_X_EXT_NAT_T_OA, field: 'natTOa', codec: addressCodec, set: (m, v) => { m.natTOa = v; } },
  { type: SADB_X_EXT_SEC_CTX, field: 'secCtx', codec: secCtxCodec, set: (m, v) => { m.secCtx = v; } },
  { type: SADB_X_EXT_KMADDRESS, field: 'kmaddress', codec: kmaddressCodec, set: (m, v) => { m.kmaddress = v; } },
  { type: SADB_X_EXT_FILTER, field: 'filter', codec: filterCodec, set: (m, v) => { m.filter = v; } },
];
ROWS.forEach((e, i) => {
  if (e.type !== i + 1) throw new Error(`KAME extension table row ${i} holds type ${e.type}`);
});

/** KAME_EXT_TABLE[exttype] for exttype 1..26 (Linux numbering); index 0 is undefined. */
export const KAME_EXT_TABLE: ReadonlyArray<KameExtEntry | undefined> = [undefined, ...ROWS];

/** The KAME extension type of each message field. */
export const KAME_EXT_TYPE_OF: Readonly<Record<KameExtField, number>> = Object.fromEntries(ROWS.map((e) => [e.field, e.type])) as Record<KameExtField, number>;

/** The sockaddr fields of an Address (what an ipsecrequest or X_KMADDRESS carries). */
export function sockaddrOf(a: Address): Sockaddr {
  return a.family === AF_INET6
    ? { family: a.family, port: a.port, addr: a.addr, flowinfo: a.flowinfo ?? 0, scopeId: a.scopeId ?? 0 }
    : { family: a.family, port: a.port, addr: a.addr };
}
