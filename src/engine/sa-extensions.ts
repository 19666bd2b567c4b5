/**
 * Between SA records and PF_KEY extensions: turning the extensions of an ADD/UPDATE into
 * an SA (KLIPS's pfkey_*_process into struct ipsec_sa), and an SA back into the
 * extensions of a reply, EXPIRE or DUMP message. Lifetime counters are numbers inside
 * klips and bigints on the wire.
 */

import {
  SATYPE_TO_PROTO, type Lifetime, type MessageInput, type Sa,
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

export function saExtOf(sa: SA): Sa {
  const out: Sa = {
    spi: sa.said.spi, replay: sa.replay, state: sa.state, auth: sa.auth, encrypt: sa.encrypt, flags: sa.flags,
  };
  if (sa.ref !== undefined) out.ref = sa.ref;
  return out;
}

export interface SaExtOptions {
  keys?: boolean;
  current?: boolean;
  limits?: boolean;
  natT?: boolean;
  /** Leave out ADDRESS_PROXY (ADD's permitted-out has none). */
  noProxy?: boolean;
  /** Leave out NAT-T type and OA (UPDATE's permitted-out has only the ports). */
  natTPortsOnly?: boolean;
  /** Leave out the identities (EXPIRE carries none). */
  noIdentities?: boolean;
}

/**
 * A message describing an SA: `header` plus its extensions, added in ascending type so
 * every such message has the same shape. Keys only when asked (sender-only replies).
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
  if (sa.proxy && !o.noProxy) e.addressProxy = sa.proxy;
  if (o.keys) {
    if (sa.keyAuth) e.keyAuth = sa.keyAuth.toKey();
    if (sa.keyEncrypt) e.keyEncrypt = sa.keyEncrypt.toKey();
  }
  if (!o.noIdentities) {
    if (sa.identSrc) e.identitySrc = sa.identSrc;
    if (sa.identDst) e.identityDst = sa.identDst;
  }
  if (o.natT && sa.natT) {
    if (!o.natTPortsOnly) e.natTType = { type: sa.natT.type };
    e.natTSport = { port: sa.natT.sport };
    e.natTDport = { port: sa.natT.dport };
    if (sa.natT.oa && !o.natTPortsOnly) e.natTOa = sa.natT.oa;
  }
  return e;
}

export function hasLimit(l: Limits): boolean {
  return l.allocations > 0 || l.bytes > 0 || l.addtime > 0 || l.usetime > 0 || l.packets > 0;
}
