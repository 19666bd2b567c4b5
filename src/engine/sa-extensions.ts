/**
 * Between SA records and PF_KEY extensions: turning the extensions of an ADD/UPDATE into
 * an SA (KLIPS's pfkey_*_process into struct ipsec_sa), and an SA back into the
 * extensions of a reply, EXPIRE or DUMP message, in the shapes KLIPS's pfkey_*_build
 * calls give them: the 24-byte SA extension (sadb_x_sa_ref), addresses with protocol 0.
 * Lifetime counters are numbers inside klips and bigints on the wire.
 */

import {
  AF_INET6, SATYPE_TO_PROTO, IPPROTO_AH, IPPROTO_ESP, IPPROTO_COMP, IPSEC_SAREF_NULL,
  type Address, type Lifetime, type MessageInput, type Sa,
} from '../wire/index.js';
import { NO_LIMITS, currentOf, type Limits, type SA } from '../sadb/sadb.js';
import type { Said } from '../sadb/said.js';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const toNum = (b: bigint): number => (b === 0n ? 0 : b > MAX_SAFE ? Number.MAX_SAFE_INTEGER : Number(b));

export function limitsFrom(l: Lifetime | undefined): Limits {
  if (!l) return NO_LIMITS();
  return {
    allocations: l.allocations,
    bytes: toNum(l.bytes),
    addtime: toNum(l.addtime),
    usetime: toNum(l.usetime),
    packets: l.packets ?? 0,
  };
}

/** openswan's 40-byte lifetime (with x_packets), the form KLIPS tools parse. */
export function lifetimeOf(l: Limits): Lifetime {
  return {
    allocations: l.allocations,
    bytes: BigInt(Math.floor(l.bytes)),
    addtime: BigInt(Math.floor(l.addtime)),
    usetime: BigInt(Math.floor(l.usetime)),
    packets: l.packets,
  };
}

/** The SAID an SA extension + destination address + satype name. */
export function saidOf(satype: number, spi: number, dst: string): Said {
  return { proto: SATYPE_TO_PROTO[satype] ?? 0, spi, dst };
}

/** KLIPS's SA direction flag (ipsec_sa.h), which it keeps in ips_flags and so reports in sadb_sa_flags. */
export const EMT_INBOUND = 0x01;

/** The SA extension KLIPS writes for an SA (pfkey_sa_build): 24 bytes, sadb_x_sa_ref NULL, EMT_INBOUND set for an inbound SA. */
export function saExtOf(sa: SA): Sa {
  return {
    spi: sa.said.spi, replay: sa.replay, state: sa.state, auth: sa.auth, encrypt: sa.encrypt,
    flags: sa.dir === 'in' ? (sa.flags | EMT_INBOUND) >>> 0 : sa.flags, ref: IPSEC_SAREF_NULL,
  };
}

/**
 * The SA extension KLIPS echoes from a request (pfkey_sa_process, then pfkey_sa_build):
 * the request's values, with only the algorithms the SA's protocol carries (AH: auth;
 * ESP: both; IPCOMP: encrypt; anything else, or no protocol: none), sadb_x_sa_ref NULL.
 */
export function requestSaExt(sa: Sa, proto: number): Sa {
  return {
    spi: sa.spi, replay: sa.replay, state: sa.state,
    auth: proto === IPPROTO_AH || proto === IPPROTO_ESP ? sa.auth : 0,
    encrypt: proto === IPPROTO_ESP || proto === IPPROTO_COMP ? sa.encrypt : 0,
    flags: sa.flags, ref: IPSEC_SAREF_NULL,
  };
}

/** An address as KLIPS's replies carry it (pfkey_address_build with protocol 0): the sockaddr as given. */
export function addressOut(a: Address): Address {
  return a.proto === 0 ? a : { ...a, proto: 0 };
}

/** A flow or mask in an X_ADDFLOW/X_DELFLOW reply: the address alone, without port or protocol (KLIPS's eroute). */
export function flowAddressOut(a: Address): Address {
  return a.family === AF_INET6
    ? { proto: 0, prefixlen: 0, family: a.family, port: 0, addr: a.addr, flowinfo: 0, scopeId: 0 }
    : { proto: 0, prefixlen: 0, family: a.family, port: 0, addr: a.addr };
}

export interface SaExtOptions {
  keys?: boolean;
  current?: boolean;
  /** LIFETIME_HARD and _SOFT, each when it sets a limit. */
  limits?: boolean;
  natT?: boolean;
  proxy?: boolean;
  /** Leave out the identities (EXPIRE carries none). */
  noIdentities?: boolean;
}

/**
 * A message describing an SA: `header`, SA, SRC, DST, the identities, and what the options
 * ask for (buildMessage writes them in ascending type). Keys only when asked (sender-only
 * replies).
 */
export function saMessage(header: MessageInput['header'], sa: SA, o: SaExtOptions = {}): MessageInput {
  const e: MessageInput = { header, sa: saExtOf(sa) };
  if (o.current) e.lifetimeCurrent = lifetimeOf(currentOf(sa));
  if (o.limits) {
    if (hasLimit(sa.hard)) e.lifetimeHard = lifetimeOf(sa.hard);
    if (hasLimit(sa.soft)) e.lifetimeSoft = lifetimeOf(sa.soft);
  }
  e.addressSrc = sa.src;
  e.addressDst = sa.dst;
  if (sa.proxy && o.proxy) e.addressProxy = sa.proxy;
  if (o.keys) {
    if (sa.keyAuth) e.keyAuth = sa.keyAuth.toKey();
    if (sa.keyEncrypt) e.keyEncrypt = sa.keyEncrypt.toKey();
  }
  if (!o.noIdentities) {
    if (sa.identSrc) e.identitySrc = sa.identSrc;
    if (sa.identDst) e.identityDst = sa.identDst;
  }
  if (o.natT && sa.natT) {
    e.natTType = { type: sa.natT.type };
    e.natTSport = { port: sa.natT.sport };
    e.natTDport = { port: sa.natT.dport };
    if (sa.natT.oa) e.natTOa = sa.natT.oa;
  }
  return e;
}

export function hasLimit(l: Limits): boolean {
  return l.allocations > 0 || l.bytes > 0 || l.addtime > 0 || l.usetime > 0 || l.packets > 0;
}
