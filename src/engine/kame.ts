/**
 * The KAME dialect in the engine: KAME_HANDLERS[sadb_msg_type], Linux's pfkey_funcs[]
 * (pfkey_getspi … pfkey_spdflush), beside KLIPS's HANDLERS and over the same SA table and
 * policy table, with Linux's af_key rules, errno and delivery (errors and GETSPI, GET,
 * DUMP and X_SPDGET answers to the sender; UPDATE, ADD, DELETE, FLUSH and every policy
 * change to all KAME sockets; REGISTER to the registered and the sender; a FLUSH's sender
 * hears it twice); the builders of Linux-shaped messages (an SA as __pfkey_xfrm_state2msg
 * lays it out, a policy as pfkey_xfrm_policy2msg, ACQUIRE as pfkey_send_acquire); and
 * the notices each dialect's sockets get when the other changes the tables (SAs added,
 * updated, deleted or flushed; policies added, replaced or deleted), each in its own
 * numbering. Every handler checks before it changes a table, so a refusal changes nothing.
 * docs/semantics.md ("The KAME dialect") lists delivery, errno and every departure.
 */

import {
  ERRNO, PfkeyError, buildMessage, headerOnly, allocMessage, prefixToMask,
  AF_INET6, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP,
  SADB_GETSPI, SADB_UPDATE, SADB_ADD, SADB_DELETE, SADB_GET, SADB_ACQUIRE, SADB_REGISTER, SADB_EXPIRE,
  SADB_FLUSH, SADB_DUMP, SADB_X_PROMISC, SADB_X_PCHANGE, SADB_X_SPDUPDATE, SADB_X_SPDADD,
  SADB_X_SPDDELETE, SADB_X_SPDGET, SADB_X_SPDACQUIRE, SADB_X_SPDDUMP, SADB_X_SPDFLUSH, SADB_X_SPDSETIDX,
  SADB_X_SPDEXPIRE, SADB_X_SPDDELETE2, KAME_SADB_X_NAT_T_NEW_MAPPING, SADB_X_MIGRATE, KAME_SADB_MAX,
  SADB_X_ADDFLOW, SADB_X_DELFLOW, SADB_X_SAFLAGS_CLEARFLOW, SADB_X_SAFLAGS_REPLACEFLOW,
  SADB_SATYPE_AH, SADB_SATYPE_ESP, SADB_X_SATYPE_IPCOMP, SADB_X_SATYPE_COMP, SADB_X_SATYPE_INT,
  KAME_SADB_SATYPE_MAX, SATYPE_TO_PROTO, PROTO_TO_SATYPE, PROTO_TO_KAME_SATYPE, KAME_SAFLAGS_KEPT,
  SADB_SASTATE_LARVAL, SADB_SASTATE_MATURE, SADB_SASTATE_DEAD, SADB_AALG_MAX, SADB_EALG_MAX, SADB_X_CALG_MAX,
  SADB_X_AALG_NULL, SADB_EALG_NULL,
  IPSEC_MODE_TRANSPORT, IPSEC_MODE_TUNNEL, IPSEC_MODE_BEET, IPSEC_MODE_ANY, IPSEC_POLICY_IPSEC,
  IPSEC_DIR_INBOUND, IPSEC_DIR_OUTBOUND, IPSEC_DIR_FWD, IPSEC_DIR_MAX, IPSEC_LEVEL_USE, IPSEC_LEVEL_UNIQUE,
  IPSEC_LEVEL_REQUIRE, IPSEC_MANUAL_REQID_MAX, IPSEC_ULPROTO_ANY, IPSEC_PROTO_ANY, IPSEC_REPLAYWSIZE,
  XFRM_MAX_DEPTH, ESPINUDP_WITH_NON_IKE, ESPINUDP_WITH_NON_ESP,
  type Address, type Alg, type KameInboundMessage, type KameMessage, type KameMessageInput,
  type Lifetime, type MessageInput, type Policy, type PfkeyMessage, type Sockaddr, type SadbMsg,
} from '../wire/index.js';
import { addressBytes as addressBytesOf } from '../wire/sockaddr.js';
import { NO_LIMITS, currentOf, newSA, sharedLimits, type Limits, type SA } from '../sadb/sadb.js';
import { formatSaid, type Said } from '../sadb/said.js';
import { isTableRef } from '../sadb/saref.js';
import {
  ErouteError, ErouteTable, XFRM_DIR, type Eroute, type PolicyAttrs, type PolicyDir, type PolicyLimits,
  type Template, type ValidFlow,
} from '../spd/eroute-table.js';
import { keyProblem } from './algorithms.js';
import { saMessage, saidOf } from './sa-extensions.js';
import {
  NO_POLICY_LIMITS, TEMPLATE_PROTOS, anyAddress, policyView, saMode, saidForPolicy, type PolicyView,
} from './policy.js';
import { DUMP_SLICE_MS, nextDumpSlice, type Endpoint } from './endpoint.js';
import type { Engine } from './engine.js';

// ---------- numbering between the dialects ----------

/** The SA table keeps KLIPS's SA types; a KAME SA type names one of them (IPCOMP is KLIPS's COMP). */
const KLIPS_OF_KAME: Readonly<Record<number, number>> = {
  [SADB_SATYPE_AH]: SADB_SATYPE_AH, [SADB_SATYPE_ESP]: SADB_SATYPE_ESP, [SADB_X_SATYPE_IPCOMP]: SADB_X_SATYPE_COMP,
};
/** KLIPS's SA types in KAME numbering: IPIP and INT SAs have none (the KAME dialect does not see them). */
const KAME_OF_KLIPS: Readonly<Record<number, number>> = {
  0: 0, [SADB_SATYPE_AH]: SADB_SATYPE_AH, [SADB_SATYPE_ESP]: SADB_SATYPE_ESP, [SADB_X_SATYPE_COMP]: SADB_X_SATYPE_IPCOMP,
};

/** An SA's KAME SA type, or undefined for IPIP and shunt SAs. */
export function kameSatypeOf(sa: SA): number | undefined {
  return PROTO_TO_KAME_SATYPE[sa.said.proto];
}

/** sadb_x_policy_dir ↔ the table's directions. */
const DIR_OF: Readonly<Record<number, PolicyDir>> = { [IPSEC_DIR_INBOUND]: 'in', [IPSEC_DIR_OUTBOUND]: 'out', [IPSEC_DIR_FWD]: 'fwd' };
const DIR_NUMBER: Readonly<Record<PolicyDir, number>> = { in: IPSEC_DIR_INBOUND, out: IPSEC_DIR_OUTBOUND, fwd: IPSEC_DIR_FWD };

/** Linux's pfkey_mode_to_xfrm then _from_xfrm: ANY is transport; 4 and up undefined. */
function modeOf(mode: number): number | undefined {
  if (mode === IPSEC_MODE_ANY) return IPSEC_MODE_TRANSPORT;
  return mode <= IPSEC_MODE_BEET ? mode : undefined;
}

/** An SA's mode and reqid from its X_SA2 (transport and 0 without one); a mode past BEET is EINVAL. */
function sa2Of(x: { mode: number; reqid: number } | undefined): { mode: number; reqid: number } {
  if (!x) return { mode: IPSEC_MODE_TRANSPORT, reqid: 0 };
  const mode = modeOf(x.mode);
  if (mode === undefined) refuse(ERRNO.EINVAL, `X_SA2 mode ${x.mode}`);
  return { mode, reqid: x.reqid };
}

/** The NAT-T encapsulations ESP takes (Linux 6.1's esp_init_state, as KLIPS's). */
const NAT_T_TYPES: ReadonlySet<number> = new Set([ESPINUDP_WITH_NON_IKE, ESPINUDP_WITH_NON_ESP]);

/** How long a larval SA (GETSPI, or an ACQUIRE's) lives: Linux's net.core.xfrm_acq_expires default. */
export const ACQ_EXPIRES = 30;

// ---------- Linux-shaped messages ----------

/** The order __pfkey_xfrm_state2msg writes an SA's extensions in (hard, soft, then current lifetime). */
const SA_ORDER = [1, 3, 4, 2, 5, 6, 7, 8, 9, 19, 20, 21, 22];
/** pfkey_xfrm_policy2msg's order: the selector, the lifetimes, the policy. */
const POLICY_ORDER = [5, 6, 3, 4, 2, 18];
/** pfkey_send_acquire's order. */
const ACQUIRE_ORDER = [5, 6, 18, 13];
/** pfkey_send_new_mapping's order: the old address and port, then the new ones. */
const NEW_MAPPING_ORDER = [1, 5, 21, 6, 22];

const big = (n: number): bigint => (n > 0 ? BigInt(Math.floor(n)) : 0n);
const lifetime = (allocations: number, bytes: number, addtime: number, usetime: number): Lifetime =>
  ({ allocations: allocations >>> 0, bytes: big(bytes), addtime: big(addtime), usetime: big(usetime) });

/** An address as Linux writes an SA's (pfkey_sockaddr_fill): protocol 0, the full prefix length, port 0. */
function kameAddress(family: number, addr: string): Address {
  return family === AF_INET6
    ? { proto: 0, prefixlen: 128, family, port: 0, addr, flowinfo: 0, scopeId: 0 }
    : { proto: 0, prefixlen: 32, family, port: 0, addr };
}

function sockaddr(family: number, addr: string): Sockaddr {
  return family === AF_INET6 ? { family, port: 0, addr, flowinfo: 0, scopeId: 0 } : { family, port: 0, addr };
}

export interface SaMessageOptions {
  /** The keys (every SA message but EXPIRE: Linux sends them to all sockets). */
  keys: boolean;
  /** Which limits: both (2|1), hard (2) or soft (1): pfkey_xfrm_state2msg's hsc. */
  hsc: 1 | 2 | 3;
  /** The state to report instead of the SA's: DEAD for an SA that is gone (DELETE, hard EXPIRE), as Linux reports it. */
  state?: number;
}
const FULL: SaMessageOptions = { keys: true, hsc: 3 };
/** An SA that was just deleted: Linux builds its notice after marking it dead. */
const GONE: SaMessageOptions = { keys: true, hsc: 3, state: SADB_SASTATE_DEAD };

/**
 * An SA as Linux's __pfkey_xfrm_state2msg lays it out: SA (16 bytes; only Linux's own
 * flags), LIFETIME_HARD and _SOFT as asked (allocations are packets, as Linux maps them),
 * LIFETIME_CURRENT, SRC and DST (full prefix length), PROXY (a mature SA whose selector
 * is not its source: the all-zero selector unless a PROXY was given), the keys, X_SA2
 * (mode, reqid), and the NAT-T encapsulation.
 */
export function kameSaMessage(header: KameMessageInput['header'], sa: SA, o: SaMessageOptions): KameMessageInput {
  const c = currentOf(sa);
  const family = sa.src.family;
  const m: KameMessageInput = {
    dialect: 'kame',
    header,
    extOrder: SA_ORDER,
    sa: { spi: sa.said.spi, replay: sa.replay, state: o.state ?? sa.state, auth: sa.auth, encrypt: sa.encrypt, flags: (sa.flags & KAME_SAFLAGS_KEPT) >>> 0 },
    lifetimeCurrent: lifetime(c.packets, c.bytes, c.addtime, sa.used ? c.usetime : 0),
    addressSrc: kameAddress(family, sa.src.addr),
    addressDst: kameAddress(sa.dst.family, sa.dst.addr),
    xSa2: { mode: saMode(sa), sequence: 0, reqid: sa.kame?.reqid ?? 0 },
  };
  if (o.hsc & 2) m.lifetimeHard = lifetime(sa.hard.packets, sa.hard.bytes, sa.hard.addtime, sa.hard.usetime);
  if (o.hsc & 1) m.lifetimeSoft = lifetime(sa.soft.packets, sa.soft.bytes, sa.soft.addtime, sa.soft.usetime);
  if (sa.state !== SADB_SASTATE_LARVAL && sa.proxy?.addr !== sa.src.addr) {
    const sel = sa.proxy ? { addr: sa.proxy.addr, prefixlen: sa.kame?.proxyPrefix ?? 0 } : { addr: anyAddress(family), prefixlen: 0 };
    m.addressProxy = { ...kameAddress(family, sel.addr), proto: IPSEC_PROTO_ANY, prefixlen: sel.prefixlen };
  }
  if (o.keys) {
    const ka = sa.keyAuth;
    const ke = sa.keyEncrypt;
    if (ka && ka.bits) m.keyAuth = ka.toKey();
    if (ke && ke.bits) m.keyEncrypt = ke.toKey();
  }
  if (sa.natT && sa.natT.type) {
    m.natTType = { type: sa.natT.type };
    m.natTSport = { port: sa.natT.sport };
    m.natTDport = { port: sa.natT.dport };
  }
  return m;
}

/** A template as an sadb_x_ipsecrequest (tunnel endpoints in tunnel mode only). */
function ipsecRequest(t: Template): Policy['requests'][number] {
  const r: Policy['requests'][number] = { proto: t.proto, mode: t.mode, level: t.level, reqid: t.reqid };
  if (t.mode === IPSEC_MODE_TUNNEL && t.src !== undefined && t.dst !== undefined) {
    r.src = sockaddr(t.family, t.src);
    r.dst = sockaddr(t.family, t.dst);
  }
  return r;
}

/**
 * A policy as pfkey_xfrm_policy2msg lays it out: SRC and DST (the selector: upper
 * protocol, 255 for any; prefix length; port), LIFETIME_HARD, _SOFT, _CURRENT (added and
 * last used), X_POLICY (type, direction, index, priority, templates).
 */
export function kamePolicyMessage(header: KameMessageInput['header'], e: Eroute, v: PolicyView): KameMessageInput {
  const f = e.flow;
  const proto = f.proto === 0 ? IPSEC_ULPROTO_ANY : f.proto;
  const addr = (a: string, prefixlen: number, port: number): Address => ({ ...kameAddress(f.family, a), proto, prefixlen, port });
  const lim = (l: PolicyLimits) => lifetime(l.allocations, l.bytes, l.addtime, l.usetime);
  return {
    dialect: 'kame',
    header,
    extOrder: POLICY_ORDER,
    addressSrc: addr(f.src, f.srcPrefix, f.sport),
    addressDst: addr(f.dst, f.dstPrefix, f.dport),
    lifetimeHard: lim(v.hard),
    lifetimeSoft: lim(v.soft),
    lifetimeCurrent: lifetime(0, 0, e.created, e.lastUsed),
    policy: { type: v.type, dir: DIR_NUMBER[v.dir], id: e.id, priority: v.priority, requests: v.templates.map(ipsecRequest) },
  };
}

/**
 * ACQUIRE as pfkey_send_acquire builds it: the SA's endpoints, the policy that asked
 * (direction out, its index and priority), and for AH and ESP a PROPOSAL with replay 32
 * and a combination per algorithm the template allows: a template from PF_KEY allows
 * none (Linux keeps no algorithms from an ipsecrequest), so the PROPOSAL is empty.
 */
export function kameAcquireMessage(seq: number, proto: number, src: { family: number; addr: string }, dst: { family: number; addr: string }, e: Eroute, priority: number): KameMessageInput {
  const m: KameMessageInput = {
    dialect: 'kame',
    header: { type: SADB_ACQUIRE, satype: PROTO_TO_KAME_SATYPE[proto] ?? 0, seq, pid: 0 },
    extOrder: ACQUIRE_ORDER,
    addressSrc: kameAddress(src.family, src.addr),
    addressDst: kameAddress(dst.family, dst.addr),
    policy: { type: IPSEC_POLICY_IPSEC, dir: IPSEC_DIR_OUTBOUND, id: e.id, priority, requests: [] },
  };
  if (proto === IPPROTO_ESP || proto === IPPROTO_AH) m.proposal = { replay: IPSEC_REPLAYWSIZE, combs: [] };
  return m;
}

/** X_NAT_T_NEW_MAPPING as pfkey_send_new_mapping: the SA's SPI, its old source and port, the new ones. */
export function kameNewMappingMessage(seq: number, sa: SA, old: { addr: string; port: number }, now: { addr: string; port: number }): KameMessageInput {
  return {
    dialect: 'kame',
    header: { type: KAME_SADB_X_NAT_T_NEW_MAPPING, satype: SADB_SATYPE_ESP, seq, pid: 0 },
    extOrder: NEW_MAPPING_ORDER,
    sa: { spi: sa.said.spi, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 },
    addressSrc: kameAddress(sa.src.family, old.addr),
    natTSport: { port: old.port },
    addressDst: kameAddress(sa.src.family, now.addr),
    natTDport: { port: now.port },
  };
}

// ---------- notices to the other dialect ----------

/** A KLIPS-dialect notice of an SA a KAME client added or updated: what KLIPS broadcasts for ADD/UPDATE (no keys). */
function klipsSaNotice(type: number, sa: SA, seq: number, pid: number): Uint8Array {
  return buildMessage(saMessage({ type, satype: sa.satype, seq, pid }, sa, { current: type === SADB_UPDATE, limits: true }));
}

/** KLIPS's DELETE reply shape: the SPI (and SAref), SRC, DST. */
function klipsDeleteNotice(sa: SA, seq: number, pid: number): Uint8Array {
  return buildMessage({
    header: { type: SADB_DELETE, satype: sa.satype, seq, pid },
    sa: { spi: sa.said.spi, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0, ref: isTableRef(sa.ref) ? sa.ref : 0 },
    addressSrc: sa.src,
    addressDst: sa.dst,
  });
}

/** KLIPS's X_ADDFLOW / X_DELFLOW reply shape for an eroute a KAME client changed. */
export function klipsFlowNotice(e: Eroute, type: typeof SADB_X_ADDFLOW | typeof SADB_X_DELFLOW, flags: number, seq: number, pid: number): Uint8Array {
  const f = e.flow;
  const v6 = f.family === AF_INET6 ? { flowinfo: 0, scopeId: 0 } : {};
  const a = (addr: string): Address => ({ proto: 0, prefixlen: 0, family: f.family, port: 0, addr, ...v6 });
  const m: MessageInput = {
    header: { type, satype: PROTO_TO_SATYPE[e.said.proto] ?? SADB_X_SATYPE_INT, seq, pid },
    sa: { spi: e.said.spi, replay: 0, state: 0, auth: 0, encrypt: 0, flags, ref: 0 },
    addressSrcFlow: a(f.src),
    addressDstFlow: a(f.dst),
    addressSrcMask: a(prefixToMask(f.family, f.srcPrefix)),
    addressDstMask: a(prefixToMask(f.family, f.dstPrefix)),
  };
  if (type === SADB_X_ADDFLOW) m.addressDst = a(e.said.dst);
  return buildMessage(m);
}

/** What the KAME side needs to know of a KLIPS message before its handler runs (the SAs a DELETE or FLUSH will take). */
export interface KlipsBefore {
  group?: SA[];
  count?: number;
}

/** Before a KLIPS handler: note what it is about to remove (only when KAME sockets are open). */
export function klipsBefore(engine: Engine, msg: PfkeyMessage): KlipsBefore {
  const h = msg.header;
  if (h.type === SADB_DELETE && msg.sa && msg.addressDst) {
    const sa = engine.sadb.get(saidOf(h.satype, msg.sa.spi, msg.addressDst.addr));
    return { group: sa ? engine.sadb.group(sa) : [] };
  }
  if (h.type === SADB_FLUSH) return { count: engine.sadb.count(h.satype) };
  return {};
}

/**
 * After a KLIPS handler succeeded: the KAME sockets hear of the SAs it added, updated,
 * deleted or flushed, as Linux tells PF_KEY of SAs made elsewhere (km_state_notify).
 * (Eroute changes reach them through Engine.pchangeNotice.)
 */
export function klipsAfter(engine: Engine, msg: PfkeyMessage, before: KlipsBefore): void {
  const h = msg.header;
  const note = (type: number, sa: SA) => {
    const satype = kameSatypeOf(sa);
    if (satype !== undefined) engine.kameBroadcast(buildMessage(kameSaMessage({ type, satype, seq: h.seq, pid: h.pid }, sa, FULL)), 'all');
  };
  if ((h.type === SADB_ADD || h.type === SADB_UPDATE) && msg.sa && msg.addressDst) {
    const sa = engine.sadb.get(saidOf(h.satype, msg.sa.spi, msg.addressDst.addr));
    if (sa) note(h.type, sa);
  } else if (h.type === SADB_DELETE) {
    for (const sa of before.group ?? []) {
      const satype = kameSatypeOf(sa);
      if (satype !== undefined) engine.kameBroadcast(buildMessage(kameSaMessage({ type: SADB_DELETE, satype, seq: h.seq, pid: h.pid }, sa, GONE)), 'all');
    }
  } else if (h.type === SADB_FLUSH && (before.count ?? 0) > 0 && KAME_OF_KLIPS[h.satype] !== undefined) {
    engine.kameBroadcast(headerOnly({ type: SADB_FLUSH, satype: KAME_OF_KLIPS[h.satype], seq: h.seq, pid: h.pid }), 'all');
  }
}

/** A KLIPS eroute change, told to the KAME sockets as Linux tells PF_KEY of policy changes (key_notify_policy). */
export function kameSpdNotice(engine: Engine, e: Eroute, flags: number, seq: number, pid: number): void {
  const type = flags & SADB_X_SAFLAGS_CLEARFLOW ? SADB_X_SPDDELETE : flags & SADB_X_SAFLAGS_REPLACEFLOW ? SADB_X_SPDUPDATE : SADB_X_SPDADD;
  engine.kameBroadcast(buildMessage(kamePolicyMessage({ type, satype: 0, seq, pid }, e, policyView(engine.sadb, e))), 'all');
}

// ---------- the handlers ----------

/** What a KAME handler is given: the engine, the sending socket, the parsed message and its bytes. */
export interface KameRequest<M extends KameMessage = KameMessage> {
  engine: Engine;
  ep: Endpoint;
  msg: M;
  bytes: Uint8Array;
}
type KameMsgType = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12 | 13 | 14 | 15 | 16 | 17 | 18 | 19 | 20 | 21 | 22 | 23 | 24;
type KameHandler<T extends KameMsgType> = (r: KameRequest<KameInboundMessage<T>>) => void;

function refuse(errno: number, why: string): never {
  throw new PfkeyError(errno, why);
}

/** A reply's header: the request's type, SA type, seq and pid (errno 0). */
const replyHeader = (h: SadbMsg) => ({ type: h.type, satype: h.satype, seq: h.seq, pid: h.pid });

/** Linux's present_and_same_family: SRC and DST of one family. */
function sameFamily(msg: { addressSrc: Address; addressDst: Address }): void {
  if (msg.addressSrc.family !== msg.addressDst.family) refuse(ERRNO.EINVAL, 'source and destination address families differ');
}

/** How an SA's address is kept: the sockaddr as given, without the prefix length or protocol a KAME client writes. */
function stored(a: Address): Address {
  return a.family === AF_INET6
    ? { proto: 0, prefixlen: 0, family: a.family, port: a.port, addr: a.addr, flowinfo: a.flowinfo ?? 0, scopeId: a.scopeId ?? 0 }
    : { proto: 0, prefixlen: 0, family: a.family, port: a.port, addr: a.addr };
}

/** Linux's limits from lifetimes: sadb_lifetime_allocations limits packets. */
function limitsOf(l: Lifetime | undefined): Limits {
  if (!l) return NO_LIMITS();
  const n = (b: bigint) => (b > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(b));
  return { allocations: 0, bytes: n(l.bytes), addtime: n(l.addtime), usetime: n(l.usetime), packets: l.allocations };
}

/** KLIPS marks an SA inbound when its destination is one of the host's addresses (the data plane reads it). */
const dirOf = (engine: Engine, dst: string): 'in' | 'out' => (engine.localAddresses.has(dst) ? 'in' : 'out');

/** The algorithm lists a KAME REGISTER reports and ADD accepts: ESP's, with NULL authentication first (Linux lists it). */
function kameAuthAlgs(engine: Engine): Alg[] {
  const strip = (a: Alg): Alg => ({ id: a.id, ivlen: a.ivlen, minbits: a.minbits, maxbits: a.maxbits });
  return [{ id: SADB_X_AALG_NULL, ivlen: 0, minbits: 0, maxbits: 0 }, ...(engine.supported.get(SADB_SATYPE_ESP)?.auth ?? []).map(strip)];
}
function kameEncryptAlgs(engine: Engine): Alg[] {
  return (engine.supported.get(SADB_SATYPE_ESP)?.encrypt ?? []).map((a) => ({ id: a.id, ivlen: a.ivlen, minbits: a.minbits, maxbits: a.maxbits }));
}

/** The internal SA type, protocol and SAID an SA-naming request names, or undefined (Linux finds no state). */
function saidOfKame(msg: { header: SadbMsg; sa: { spi: number }; addressDst: Address }): Said | undefined {
  const satype = KLIPS_OF_KAME[msg.header.satype];
  return satype === undefined ? undefined : saidOf(satype, msg.sa.spi, msg.addressDst.addr);
}

type SaRequest = KameRequest<KameInboundMessage<typeof SADB_ADD> | KameInboundMessage<typeof SADB_UPDATE>>;

/**
 * An SA from ADD/UPDATE extensions, refusing what Linux's pfkey_msg2xfrm_state and
 * xfrm_init_state refuse, in their order: ESP without KEY_ENCRYPT, AH without KEY_AUTH,
 * one lifetime without the other, an SA type with no protocol, algorithm numbers out of
 * range, a zero-bit key for a real algorithm (EINVAL); an algorithm klipsd cannot run
 * (ENOSYS); a bad X_SA2 mode (EINVAL); SA type UNSPEC (EPROTONOSUPPORT); then the
 * transform's own checks (an ESP with no cipher, an AH with none or with a cipher, a key
 * of the wrong size, NAT-T on anything but ESP: EINVAL). Linux ignores the SA state and
 * identities, clamps the replay window to 32 and keeps only its own SA flags.
 */
function saFromKame(r: SaRequest, said: Said): SA {
  const { engine, msg } = r;
  sameFamily(msg);
  const kameType = msg.header.satype;
  if (kameType === SADB_SATYPE_ESP && !msg.keyEncrypt) refuse(ERRNO.EINVAL, 'an ESP SA needs KEY_ENCRYPT');
  if (kameType === SADB_SATYPE_AH && !msg.keyAuth) refuse(ERRNO.EINVAL, 'an AH SA needs KEY_AUTH');
  if (!msg.lifetimeHard !== !msg.lifetimeSoft) refuse(ERRNO.EINVAL, 'LIFETIME_HARD and LIFETIME_SOFT go together');
  const satype = kameType === 0 ? 0 : KLIPS_OF_KAME[kameType];
  if (satype === undefined) refuse(ERRNO.EINVAL, `SA type ${kameType} names no protocol`);
  const sa = msg.sa;
  const comp = satype === SADB_X_SATYPE_COMP;
  if (sa.auth > SADB_AALG_MAX || (comp && sa.encrypt > SADB_X_CALG_MAX) || sa.encrypt > SADB_EALG_MAX) refuse(ERRNO.EINVAL, 'algorithm number out of range');
  if (msg.keyAuth && sa.auth !== SADB_X_AALG_NULL && msg.keyAuth.bits === 0) refuse(ERRNO.EINVAL, 'authentication key of 0 bits');
  if (msg.keyEncrypt && sa.encrypt !== SADB_EALG_NULL && msg.keyEncrypt.bits === 0) refuse(ERRNO.EINVAL, 'encryption key of 0 bits');
  const esp = engine.supported.get(SADB_SATYPE_ESP);
  if (sa.auth && !kameAuthAlgs(engine).some((a) => a.id === sa.auth)) refuse(ERRNO.ENOSYS, `authentication algorithm ${sa.auth} not supported`);
  if (sa.encrypt) {
    const known = comp
      ? (engine.supported.get(SADB_X_SATYPE_COMP)?.encrypt ?? []).some((a) => a.id === sa.encrypt)
      : (esp?.encrypt ?? []).some((a) => a.id === sa.encrypt);
    if (!known) refuse(ERRNO.ENOSYS, `${comp ? 'compression' : 'encryption'} algorithm ${sa.encrypt} not supported`);
  }
  const { mode, reqid } = sa2Of(msg.xSa2);
  if (satype === 0) refuse(ERRNO.EPROTONOSUPPORT, 'SA type UNSPEC names no transform');
  const authKey = msg.keyAuth && msg.keyAuth.bits && sa.auth !== SADB_X_AALG_NULL ? msg.keyAuth : undefined;
  const encKey = msg.keyEncrypt && msg.keyEncrypt.bits && !comp ? msg.keyEncrypt : undefined;
  const keyCheck = (kind: 'auth' | 'encrypt', id: number, bits: number) => {
    const p = keyProblem(esp, kind, id, bits);
    if (p) refuse(ERRNO.EINVAL, p);
  };
  if (satype === SADB_SATYPE_ESP) {
    if (!sa.encrypt) refuse(ERRNO.EINVAL, 'an ESP SA needs an encryption algorithm (NULL counts)');
    if (encKey && sa.encrypt !== SADB_EALG_NULL) keyCheck('encrypt', sa.encrypt, encKey.bits);
    if (sa.encrypt === SADB_EALG_NULL && encKey) refuse(ERRNO.EINVAL, 'NULL encryption takes no key');
    if (authKey) keyCheck('auth', sa.auth, authKey.bits);
  } else if (satype === SADB_SATYPE_AH) {
    if (!sa.auth) refuse(ERRNO.EINVAL, 'an AH SA needs an authentication algorithm');
    if (sa.encrypt) refuse(ERRNO.EINVAL, 'an AH SA cannot have an encryption algorithm');
    if (authKey) keyCheck('auth', sa.auth, authKey.bits);
  } else if (!sa.encrypt) {
    refuse(ERRNO.EINVAL, 'an IPCOMP SA needs a compression algorithm');
  }
  if (msg.natTType) {
    if (satype !== SADB_SATYPE_ESP) refuse(ERRNO.EINVAL, 'NAT-T encapsulation is for ESP SAs');
    if (!NAT_T_TYPES.has(msg.natTType.type)) refuse(ERRNO.EINVAL, `NAT-T type ${msg.natTType.type} is neither ESPINUDP_WITH_NON_IKE (1) nor ESPINUDP_WITH_NON_ESP (2)`);
  }
  return newSA({
    said,
    satype,
    state: SADB_SASTATE_MATURE,
    replay: Math.min(sa.replay, IPSEC_REPLAYWSIZE),
    auth: satype === SADB_X_SATYPE_COMP ? 0 : sa.auth,
    encrypt: sa.encrypt,
    flags: (sa.flags & KAME_SAFLAGS_KEPT) >>> 0,
    src: stored(msg.addressSrc),
    dst: stored(msg.addressDst),
    proxy: msg.addressProxy ? stored(msg.addressProxy) : undefined,
    keyAuth: authKey,
    keyEncrypt: encKey,
    identSrc: undefined,
    identDst: undefined,
    natT: msg.natTType ? { type: msg.natTType.type, sport: msg.natTSport?.port ?? 0, dport: msg.natTDport?.port ?? 0 } : undefined,
    plumbif: undefined,
    ref: 0,
    refhim: 0,
    dir: dirOf(engine, msg.addressDst.addr),
    soft: sharedLimits(limitsOf(msg.lifetimeSoft)),
    hard: sharedLimits(limitsOf(msg.lifetimeHard)),
    used: false,
    pid: msg.header.pid,
    seq: msg.header.seq,
    kame: msg.addressProxy ? { mode, reqid, proxyPrefix: msg.addressProxy.prefixlen } : { mode, reqid },
    addtime: engine.now(),
  });
}

/** The larval SA an ACQUIRE left (or a GETSPI made) for these parameters: Linux's __find_acq_core. */
function larvalFor(engine: Engine, proto: number, dst: string, src: string, mode: number, reqid: number, spiZeroOnly: boolean): SA | undefined {
  for (const sa of engine.kameLarvals()) {
    if (sa.said.proto !== proto || sa.said.dst !== dst || sa.src.addr !== src) continue;
    if (spiZeroOnly && sa.said.spi !== 0) continue;
    if (saMode(sa) === mode && (sa.kame?.reqid ?? 0) === reqid) return sa;
  }
  return undefined;
}

/**
 * GETSPI (pfkey_getspi): the larval SA of the ACQUIRE whose seq it carries (for that
 * destination), else one for the same endpoints, mode and reqid, else a new one, gets an
 * SPI from the range (default 0x100-0x0fffffff; host order; an IPCOMP CPI below 0x10000)
 * and lives ACQ_EXPIRES seconds unless UPDATE or ADD makes it mature. The reply goes to
 * the sender alone. A range with min > max is EINVAL; no free SPI, ENOENT.
 */
const getspi: KameHandler<typeof SADB_GETSPI> = ({ engine, ep, msg }) => {
  sameFamily(msg);
  const satype = KLIPS_OF_KAME[msg.header.satype];
  if (satype === undefined) refuse(ERRNO.EINVAL, `SA type ${msg.header.satype} names no SA protocol`);
  const proto = SATYPE_TO_PROTO[satype];
  const { mode, reqid } = sa2Of(msg.xSa2);
  const dst = msg.addressDst.addr;
  const src = msg.addressSrc.addr;
  let larval = msg.header.seq ? engine.larvalBySeq(msg.header.seq) : undefined;
  if (larval && larval.said.dst !== dst) larval = undefined;
  larval ??= larvalFor(engine, proto, dst, src, mode, reqid, true);
  const { min, max } = msg.spirange ?? { min: 0x100, max: 0x0fffffff };
  if (proto === IPPROTO_COMP && max >= 0x10000) refuse(ERRNO.EINVAL, `an IPCOMP CPI has 16 bits; range max 0x${max.toString(16)}`);
  if (min > max) refuse(ERRNO.EINVAL, `SPI range min 0x${min.toString(16)} > max 0x${max.toString(16)}`);
  const lo = Math.max(min, 1);
  const spi = lo > max ? undefined
    : lo === max ? (engine.sadb.has({ proto, spi: lo, dst }) ? undefined : lo)
      : engine.sadb.allocateSpi(proto, dst, lo, max, engine.random);
  if (spi === undefined) refuse(ERRNO.ENOENT, `no free SPI in 0x${min.toString(16)}-0x${max.toString(16)}`);
  const sa = newSA({
    said: { proto, spi, dst },
    satype,
    state: SADB_SASTATE_LARVAL,
    replay: 0, auth: 0, encrypt: 0, flags: 0,
    src: larval?.src ?? stored(msg.addressSrc),
    dst: larval?.dst ?? stored(msg.addressDst),
    proxy: undefined, identSrc: undefined, identDst: undefined, natT: undefined, plumbif: undefined,
    ref: 0, refhim: 0,
    dir: dirOf(engine, dst),
    soft: sharedLimits(NO_LIMITS()),
    hard: sharedLimits({ ...NO_LIMITS(), addtime: engine.kameAcquireExpires }),
    used: false,
    pid: larval?.pid ?? msg.header.pid,
    seq: larval?.seq ?? msg.header.seq,
    kame: larval?.kame ?? { mode, reqid },
    current: larval ? { ...currentOf(larval) } : undefined,
    addtime: engine.now(),
  });
  if (larval) engine.sadb.remove(larval);
  engine.sadb.insert(sa);
  engine.noteLarval(sa);
  engine.kameBroadcast(buildMessage(kameSaMessage({ type: SADB_GETSPI, satype: msg.header.satype, seq: msg.header.seq, pid: msg.header.pid }, sa, FULL)), 'one', ep);
};

/**
 * ADD (pfkey_add, xfrm_state_add): a new mature SA; its SAID taken (larval included)
 * EEXIST. The larval SA of the ACQUIRE it answers (by seq, else by endpoints, mode and
 * reqid, SPI 0) goes. To every KAME socket, keys included, as Linux; KLIPS sockets hear it
 * as KLIPS's ADD (no keys).
 */
const add: KameHandler<typeof SADB_ADD> = (r) => {
  const { engine, msg } = r;
  const said = saidOfKame(msg);
  // No SAID for this SA type: saFromKame refuses it, with Linux's errno for its first fault.
  if (!said) return void saFromKame(r, { proto: 0, spi: 0, dst: '' });
  const sa = saFromKame(r, said);
  if (engine.sadb.has(said)) refuse(ERRNO.EEXIST, `SA ${formatSaid(said)} already exists`);
  let acq = msg.header.seq ? engine.larvalBySeq(msg.header.seq) : undefined;
  if (acq && (acq.said.proto !== said.proto || acq.said.dst !== said.dst)) acq = undefined;
  acq ??= larvalFor(engine, said.proto, said.dst, sa.src.addr, saMode(sa), sa.kame?.reqid ?? 0, true);
  if (acq) engine.sadb.remove(acq);
  engine.sadb.insert(sa);
  engine.settleAcquire(msg.header.seq);
  notifySa(engine, SADB_ADD, sa, msg.header);
  engine.checkLimits(sa);
};

/**
 * UPDATE (xfrm_state_update): a larval SA is replaced by the request's (and lists first
 * from now on, as Linux inserts a new state); a mature or dying one keeps its keys and
 * algorithms and takes the request's lifetimes (and NAT-T ports, if the encapsulation is
 * the same; another one is EINVAL), and is no longer dying. No SA: ESRCH.
 */
const update: KameHandler<typeof SADB_UPDATE> = (r) => {
  const { engine, msg } = r;
  const said = saidOfKame(msg);
  if (!said) return void saFromKame(r, { proto: 0, spi: 0, dst: '' });
  const sa = saFromKame(r, said);
  const old = engine.sadb.get(said);
  if (!old) refuse(ERRNO.ESRCH, `no SA ${formatSaid(said)} to update`);
  let result = sa;
  if (old.state === SADB_SASTATE_LARVAL) {
    engine.sadb.replace(old, sa, true);
  } else {
    const natT = sa.natT && old.natT && sa.natT.type === old.natT.type ? sa.natT : undefined;
    if (!natT && (sa.natT || old.natT)) refuse(ERRNO.EINVAL, "a mature SA's NAT-T encapsulation cannot be added, removed or changed, only its ports");
    if (natT) old.natT = natT;
    engine.sadb.relimit(old, sa.soft, sa.hard);
    result = old;
  }
  engine.settleAcquire(msg.header.seq);
  notifySa(engine, SADB_UPDATE, result, msg.header);
  engine.checkLimits(result);
};

/** An SA added or updated by a KAME client: to every KAME socket (keys included), and to KLIPS's as KLIPS broadcasts it. */
function notifySa(engine: Engine, type: number, sa: SA, h: SadbMsg): void {
  engine.kameBroadcast(buildMessage(kameSaMessage({ type, satype: kameSatypeOf(sa) ?? h.satype, seq: h.seq, pid: h.pid }, sa, FULL)), 'all');
  engine.toAll(klipsSaNotice(type, sa, h.seq, h.pid));
}

/** The SA a DELETE or GET names: no protocol for its SA type, or no such SA, is ESRCH (pfkey_xfrm_state_lookup). */
function lookup(engine: Engine, msg: KameInboundMessage<typeof SADB_GET>): SA {
  sameFamily(msg);
  const said = saidOfKame(msg);
  const sa = said ? engine.sadb.get(said) : undefined;
  if (!sa) refuse(ERRNO.ESRCH, said ? `no SA ${formatSaid(said)}` : `SA type ${msg.header.satype} names no SA protocol`);
  return sa;
}

/** DELETE: that one SA (not its KLIPS group), to every socket of both dialects. */
const del: KameHandler<typeof SADB_DELETE> = ({ engine, msg }) => {
  const sa = lookup(engine, msg);
  engine.sadb.remove(sa);
  engine.kameBroadcast(buildMessage(kameSaMessage({ type: SADB_DELETE, satype: kameSatypeOf(sa) ?? msg.header.satype, seq: msg.header.seq, pid: msg.header.pid }, sa, GONE)), 'all');
  engine.toAll(klipsDeleteNotice(sa, msg.header.seq, msg.header.pid));
};

const get: KameHandler<typeof SADB_GET> = ({ engine, ep, msg }) => {
  const sa = lookup(engine, msg);
  engine.kameBroadcast(buildMessage(kameSaMessage({ type: SADB_GET, satype: kameSatypeOf(sa) ?? msg.header.satype, seq: msg.header.seq, pid: msg.header.pid }, sa, FULL)), 'one', ep);
};

/**
 * A client's ACQUIRE (pfkey_acquire): only the errno form, header alone, means anything:
 * the ACQUIRE with that seq failed (its larval SA stays until it expires, so no new
 * ACQUIRE is sent meanwhile). Any other form is EOPNOTSUPP. No reply.
 */
const acquire: KameHandler<typeof SADB_ACQUIRE> = ({ engine, msg }) => {
  if (msg.header.len !== 2) refuse(ERRNO.EOPNOTSUPP, 'an ACQUIRE to the kernel is a header with an errno');
  if (msg.header.seq === 0 || msg.header.errno === 0) return;
  engine.settleAcquire(msg.header.seq);
};

/**
 * REGISTER (pfkey_register): SA type above 9 EINVAL; registering a type twice EEXIST; 0
 * asks without registering. The reply, the supported algorithms (the same lists for
 * every SA type, as Linux), goes to every registered socket and to the sender.
 */
const register: KameHandler<typeof SADB_REGISTER> = ({ engine, ep, msg }) => {
  const satype = msg.header.satype;
  if (satype > KAME_SADB_SATYPE_MAX) refuse(ERRNO.EINVAL, `SA type ${satype} > ${KAME_SADB_SATYPE_MAX}`);
  if (satype !== 0) {
    if (ep.registered.has(satype)) refuse(ERRNO.EEXIST, `already registered for SA type ${satype}`);
    ep.registered.add(satype);
  }
  engine.kameBroadcast(buildMessage({
    dialect: 'kame',
    header: replyHeader(msg.header),
    supportedAuth: { algs: kameAuthAlgs(engine) },
    supportedEncrypt: { algs: kameEncryptAlgs(engine) },
  }), 'registered', ep);
};

/** Messages Linux has no handler for (EXPIRE, X_PCHANGE, X_SPDACQUIRE, X_SPDEXPIRE, X_NAT_T_NEW_MAPPING): EOPNOTSUPP. */
const unsupported = ({ msg }: KameRequest): never => refuse(ERRNO.EOPNOTSUPP, `message type ${msg.header.type} is the kernel's to send`);

/**
 * FLUSH (pfkey_flush): the SAs of one SA type, or with 0 every AH, ESP and IPCOMP SA
 * (Linux's IPSEC_PROTO_ANY: KLIPS's IPIP and shunt SAs, which the KAME dialect cannot
 * name, stay); an SA type with no protocol EINVAL. The sender gets a copy of its request;
 * when anything went, every socket then gets the FLUSH (the sender twice), KLIPS's in its
 * numbering.
 */
const flush: KameHandler<typeof SADB_FLUSH> = ({ engine, ep, msg }) => {
  const h = msg.header;
  const satype = h.satype === 0 ? 0 : KLIPS_OF_KAME[h.satype];
  if (satype === undefined) refuse(ERRNO.EINVAL, `SA type ${h.satype} names no SA protocol`);
  let gone = 0;
  for (const t of satype === 0 ? Object.values(KLIPS_OF_KAME) : [satype]) if (engine.sadb.count(t)) gone += engine.sadb.drop(t);
  engine.kameBroadcast(headerOnly(replyHeader(h)), 'one', ep);
  if (gone === 0) return;
  engine.kameBroadcast(headerOnly(replyHeader(h)), 'all');
  engine.toAll(headerOnly({ type: SADB_FLUSH, satype, seq: h.seq, pid: h.pid }));
};

/**
 * Send a dump's messages to its sender, numbered as Linux numbers them (1, 2, …, and 0 on
 * the last), in slices (nextDumpSlice), waiting whenever the sender's receive queue is full. A second
 * dump asked for on the same socket meanwhile is EBUSY.
 */
function streamDump<T>(engine: Engine, ep: Endpoint, items: readonly T[], build: (item: T, seq: number) => Uint8Array): void {
  engine.kameDumping.add(ep);
  let i = 0;
  const step = (): void => {
    const until = performance.now() + DUMP_SLICE_MS;
    while (i < items.length && !ep.closed) {
      if ((i & 63) === 63 && performance.now() > until) { nextDumpSlice(ep, step); return; }
      const bytes = build(items[i], i === items.length - 1 ? 0 : i + 1);
      if (ep.room() < bytes.length && bytes.length <= ep.rcvbuf) { ep.onDrain(() => nextDumpSlice(ep, step)); return; }
      i++;
      engine.kameBroadcast(bytes, 'one', ep);
    }
    engine.kameDumping.delete(ep);
  };
  step();
}

/** X_FILTER's test (xfrm_state_filter_match): the SA's family, and its addresses within the prefixes. */
function filterMatch(f: NonNullable<KameMessage['filter']>, sa: SA): boolean {
  if (sa.src.family !== f.family) return false;
  const within = (addr: string, net: Uint8Array, plen: number) => {
    const b = Buffer.from(addressBytesOf(sa.src.family, addr));
    for (let i = 0; i < plen; i++) {
      const bit = (x: Uint8Array) => (x[i >>> 3] >>> (7 - (i & 7))) & 1;
      if (bit(b) !== bit(net)) return false;
    }
    return true;
  };
  return within(sa.src.addr, f.saddr, f.splen) && within(sa.dst.addr, f.daddr, f.dplen);
}

/**
 * DUMP (pfkey_dump): the SAs of an SA type (0: all), newest first, each as GET shows it,
 * to the sender; none ENOENT; an SA type with no protocol, or an X_FILTER prefix of 128
 * bits or more, EINVAL; a dump already running on the socket EBUSY. KLIPS's IPIP and
 * shunt SAs have no KAME SA type and are not listed.
 */
const dump: KameHandler<typeof SADB_DUMP> = ({ engine, ep, msg }) => {
  const h = msg.header;
  if (engine.kameDumping.has(ep)) refuse(ERRNO.EBUSY, 'a dump is still running on this socket');
  const satype = h.satype === 0 ? 0 : KLIPS_OF_KAME[h.satype];
  if (satype === undefined) refuse(ERRNO.EINVAL, `SA type ${h.satype} names no SA protocol`);
  const f = msg.filter;
  if (f && (f.splen >= 128 || f.dplen >= 128)) refuse(ERRNO.EINVAL, 'X_FILTER prefix length of 128 bits or more');
  const list: SA[] = [];
  for (const sa of engine.sadb.values()) {
    if (kameSatypeOf(sa) === undefined || (satype !== 0 && sa.satype !== satype)) continue;
    if (f && !filterMatch(f, sa)) continue;
    list.push(sa);
  }
  if (list.length === 0) refuse(ERRNO.ENOENT, 'no SAs to dump');
  list.reverse();
  streamDump(engine, ep, list, (sa, seq) => buildMessage(kameSaMessage({ type: SADB_DUMP, satype: kameSatypeOf(sa)!, seq, pid: h.pid }, sa, FULL)));
};

/**
 * X_PROMISC (pfkey_promisc): header alone, satype 1 on, 0 off, else EINVAL; the request
 * (its errno cleared) then goes to every socket. With extensions it changes nothing and is
 * relayed to every socket as it came.
 */
const promisc: KameHandler<typeof SADB_X_PROMISC> = ({ engine, ep, msg, bytes }) => {
  const copy = allocMessage(bytes.length);
  copy.set(bytes);
  if (msg.header.len === 2) {
    if (msg.header.satype > 1) refuse(ERRNO.EINVAL, 'X_PROMISC takes satype 0 (off) or 1 (on)');
    ep.promisc = msg.header.satype === 1;
    copy[2] = 0;
  }
  engine.kameBroadcast(copy, 'all');
};

// ---------- the SPD ----------

/** Linux's gen_reqid: the next reqid above IPSEC_MANUAL_REQID_MAX that no policy's template uses. */
function genReqid(engine: Engine): number {
  const used = new Set<number>();
  for (const e of engine.spd.policies()) for (const t of e.policy?.templates ?? []) used.add(t.reqid);
  for (let n = 0; n < 0x100000; n++) {
    engine.kameReqidGen = engine.kameReqidGen >= 0xffffffff ? IPSEC_MANUAL_REQID_MAX + 1 : engine.kameReqidGen + 1;
    if (!used.has(engine.kameReqidGen)) return engine.kameReqidGen;
  }
  return refuse(ERRNO.ENOBUFS, 'no free reqid');
}

/** The selector of an SPD request (both addresses: prefix lengths, ports; the upper protocol from DST, 255 = any). */
function selectorOf(msg: { addressSrc: Address; addressDst: Address }): ValidFlow {
  sameFamily(msg);
  const s = msg.addressSrc;
  const d = msg.addressDst;
  const proto = d.proto === IPSEC_ULPROTO_ANY ? 0 : d.proto;
  try {
    return ErouteTable.makeFlow(s.family, s.addr, s.prefixlen, d.addr, d.prefixlen, proto, s.port, d.port);
  } catch (e) {
    if (e instanceof ErouteError) refuse(ERRNO.EINVAL, e.message);
    throw e;
  }
}

function policyDir(dir: number): PolicyDir {
  const d = DIR_OF[dir];
  if (!d) refuse(ERRNO.EINVAL, `policy direction ${dir} (must be 1 in, 2 out or 3 fwd)`);
  return d;
}

/** A policy's limits as given (Linux keeps allocations as a packet limit, and reports it back as allocations). */
function policyLimits(l: Lifetime | undefined): PolicyLimits {
  if (!l) return NO_POLICY_LIMITS;
  const { packets, ...rest } = limitsOf(l);
  return { ...rest, allocations: packets };
}

/**
 * A policy's templates (parse_ipsecrequests): more than six ELOOP; mode 0 or above 3, a
 * protocol other than ESP, AH or IPCOMP, a tunnel without its two endpoints, or an
 * optional tunnel/BEET template in an outbound policy EINVAL. Level use is optional,
 * unique keeps the reqid (one above IPSEC_MANUAL_REQID_MAX is the kernel's to pick, as is
 * 0), require (and default) gets none.
 */
function templatesOf(engine: Engine, policy: Policy, family: number, dir: PolicyDir): Template[] {
  if (policy.requests.length > XFRM_MAX_DEPTH) refuse(ERRNO.ELOOP, `${policy.requests.length} templates, at most ${XFRM_MAX_DEPTH}`);
  return policy.requests.map((rq, i) => {
    if (rq.mode === IPSEC_MODE_ANY) refuse(ERRNO.EINVAL, `template ${i}: mode 0`);
    if (!TEMPLATE_PROTOS.has(rq.proto)) refuse(ERRNO.EINVAL, `template ${i}: protocol ${rq.proto}`);
    if (rq.mode > IPSEC_MODE_BEET) refuse(ERRNO.EINVAL, `template ${i}: mode ${rq.mode}`);
    const optional = rq.level === IPSEC_LEVEL_USE;
    if (optional && dir === 'out' && rq.mode !== IPSEC_MODE_TRANSPORT) refuse(ERRNO.EINVAL, `template ${i}: an optional tunnel or BEET template in an outbound policy`);
    let reqid = 0;
    if (rq.level === IPSEC_LEVEL_UNIQUE) {
      reqid = rq.reqid > IPSEC_MANUAL_REQID_MAX ? 0 : rq.reqid;
      if (reqid === 0) reqid = genReqid(engine);
    }
    const level = optional ? IPSEC_LEVEL_USE : reqid ? IPSEC_LEVEL_UNIQUE : IPSEC_LEVEL_REQUIRE;
    if (rq.mode !== IPSEC_MODE_TUNNEL) return { proto: rq.proto, mode: rq.mode, level, reqid, family };
    if (!rq.src || !rq.dst) refuse(ERRNO.EINVAL, `template ${i}: a tunnel needs its two endpoints`);
    return { proto: rq.proto, mode: rq.mode, level, reqid, family: rq.src.family, src: rq.src.addr, dst: rq.dst.addr };
  });
}

/** A policy message to every KAME socket. */
function notifyPolicy(engine: Engine, type: number, e: Eroute, h: SadbMsg): void {
  engine.kameBroadcast(buildMessage(kamePolicyMessage({ type, satype: 0, seq: h.seq, pid: h.pid }, e, policyView(engine.sadb, e))), 'all');
}

/** An outbound policy (an eroute) changed by a KAME client: X_PCHANGE subscribers, and KLIPS sockets as KLIPS's flow replies. */
function notifyEroute(engine: Engine, e: Eroute, flags: number, h: SadbMsg): void {
  if (e.dir !== 'out') return;
  engine.pchangeNotice(e, flags, h.seq, true);
  engine.toAll(klipsFlowNotice(e, flags & SADB_X_SAFLAGS_CLEARFLOW ? SADB_X_DELFLOW : SADB_X_ADDFLOW, flags, h.seq, h.pid));
}

/**
 * X_SPDADD, X_SPDUPDATE and X_SPDSETIDX (pfkey_spdadd): type above IPSEC or direction
 * not 1-3 EINVAL; the templates as templatesOf. ADD and SETIDX refuse an existing
 * selector of that direction (EEXIST); UPDATE replaces it, keeping its index, or adds.
 * An outbound policy is an eroute (%trap until its templates find SAs, %pass, %drop);
 * in and fwd policies are kept beside. To every socket: X_SPDUPDATE for an update,
 * X_SPDADD otherwise (SETIDX too, as Linux), and KLIPS's X_ADDFLOW for an eroute.
 */
const spdadd: KameHandler<typeof SADB_X_SPDADD> = ({ engine, msg }) => {
  const h = msg.header;
  const flow = selectorOf(msg);
  const pol = msg.policy;
  if (pol.type > IPSEC_POLICY_IPSEC) refuse(ERRNO.EINVAL, `policy type ${pol.type} (must be discard, none or ipsec)`);
  const dir = policyDir(pol.dir);
  const templates = pol.type === IPSEC_POLICY_IPSEC ? templatesOf(engine, pol, flow.family, dir) : [];
  const attrs: PolicyAttrs = { type: pol.type, templates, priority: pol.priority, hard: policyLimits(msg.lifetimeHard), soft: policyLimits(msg.lifetimeSoft) };
  const said = saidForPolicy(pol.type, flow.family);
  const opts = { pid: h.pid, policy: attrs };
  let e: Eroute;
  let old: Eroute | undefined;
  if (h.type === SADB_X_SPDUPDATE) {
    ({ old, now: e } = engine.spd.updatePolicy(dir, flow, said, opts));
  } else {
    if (engine.spd.getPolicy(dir, flow)) refuse(ERRNO.EEXIST, `a ${dir} policy for this selector exists`);
    e = engine.spd.addPolicy(dir, flow, said, opts);
  }
  if (old?.held) {
    e.held = old.held;
    engine.release(e);
  }
  notifyPolicy(engine, h.type === SADB_X_SPDUPDATE ? SADB_X_SPDUPDATE : SADB_X_SPDADD, e, h);
  notifyEroute(engine, e, old ? SADB_X_SAFLAGS_REPLACEFLOW : 0, h);
};

/** Remove a policy and tell both dialects (X_SPDDELETE or X_SPDDELETE2; KLIPS's X_DELFLOW). */
function removePolicy(engine: Engine, e: Eroute, type: number, h: SadbMsg): void {
  const view = policyView(engine.sadb, e);
  engine.spd.deletePolicy(e.dir, e.flow);
  engine.release(e);
  engine.kameBroadcast(buildMessage(kamePolicyMessage({ type, satype: 0, seq: h.seq, pid: h.pid }, e, view)), 'all');
  notifyEroute(engine, e, SADB_X_SAFLAGS_CLEARFLOW, h);
}

/** X_SPDDELETE (pfkey_spddelete): by selector and direction; none ENOENT. KLIPS's eroutes are outbound policies too. */
const spddelete: KameHandler<typeof SADB_X_SPDDELETE> = ({ engine, msg }) => {
  const flow = selectorOf(msg);
  const dir = policyDir(msg.policy.dir);
  const e = engine.spd.getPolicy(dir, flow);
  if (!e) refuse(ERRNO.ENOENT, `no ${dir} policy for this selector`);
  removePolicy(engine, e, SADB_X_SPDDELETE, msg.header);
};

/** The policy an X_SPDGET / X_SPDDELETE2 names by index: a direction above fwd EINVAL; none ENOENT. */
function byId(engine: Engine, id: number): Eroute {
  const xdir = id & 7;
  if (xdir >= 3) refuse(ERRNO.EINVAL, `policy index ${id} names direction ${xdir}`);
  const e = engine.spd.byId(id);
  if (!e || XFRM_DIR[e.dir] !== xdir) refuse(ERRNO.ENOENT, `no policy with index ${id}`);
  return e;
}

const spdget: KameHandler<typeof SADB_X_SPDGET> = ({ engine, ep, msg }) => {
  const e = byId(engine, msg.policy.id);
  const h = msg.header;
  engine.kameBroadcast(buildMessage(kamePolicyMessage({ type: h.type, satype: 0, seq: h.seq, pid: h.pid }, e, policyView(engine.sadb, e))), 'one', ep);
};

const spddelete2: KameHandler<typeof SADB_X_SPDDELETE2> = ({ engine, msg }) => {
  removePolicy(engine, byId(engine, msg.policy.id), SADB_X_SPDDELETE2, msg.header);
};

/** X_SPDDUMP (pfkey_spddump): every policy, eroutes included, newest first; none ENOENT; a dump running EBUSY. */
const spddump: KameHandler<typeof SADB_X_SPDDUMP> = ({ engine, ep, msg }) => {
  if (engine.kameDumping.has(ep)) refuse(ERRNO.EBUSY, 'a dump is still running on this socket');
  const list = engine.spd.policies();
  if (list.length === 0) refuse(ERRNO.ENOENT, 'no policies to dump');
  const pid = msg.header.pid;
  streamDump(engine, ep, list, (e, seq) => buildMessage(kamePolicyMessage({ type: SADB_X_SPDDUMP, satype: 0, seq, pid }, e, policyView(engine.sadb, e))));
};

/**
 * X_SPDFLUSH (pfkey_spdflush): every policy, KLIPS's eroutes included. The sender gets a
 * copy of its request; when anything went, every socket gets the X_SPDFLUSH (the sender
 * twice), and KLIPS's sockets X_DELFLOW with CLEARFLOW.
 */
const spdflush: KameHandler<typeof SADB_X_SPDFLUSH> = ({ engine, ep, msg }) => {
  const h = msg.header;
  const gone = engine.spd.flushPolicies();
  engine.kameBroadcast(headerOnly(replyHeader(h)), 'one', ep);
  if (gone.length === 0) return;
  engine.kameBroadcast(headerOnly({ type: SADB_X_SPDFLUSH, satype: 0, seq: h.seq, pid: h.pid }), 'all');
  const eroutes = gone.filter((e) => e.dir === 'out');
  for (const e of eroutes) {
    engine.release(e);
    engine.pchangeNotice(e, SADB_X_SAFLAGS_CLEARFLOW, h.seq, true);
  }
  if (eroutes.length) {
    engine.toAll(buildMessage({
      header: { type: SADB_X_DELFLOW, satype: 0, seq: h.seq, pid: h.pid },
      sa: { spi: 0, replay: 0, state: 0, auth: 0, encrypt: 0, flags: SADB_X_SAFLAGS_CLEARFLOW, ref: 0 },
    }));
  }
};

/**
 * X_MIGRATE (pfkey_migrate): refused as Linux refuses a malformed one (SRC, DST, policy;
 * a direction above fwd: EINVAL); klips moves no SAs or policies, so a well-formed one is
 * ENOPROTOOPT, as Linux without CONFIG_NET_KEY_MIGRATE answers.
 */
const migrate: KameHandler<typeof SADB_X_MIGRATE> = ({ msg }) => {
  sameFamily(msg);
  if (msg.policy.dir >= IPSEC_DIR_MAX) refuse(ERRNO.EINVAL, `policy direction ${msg.policy.dir}`);
  refuse(ERRNO.ENOPROTOOPT, 'klips does not migrate SAs and policies');
};

/** KAME_HANDLERS[sadb_msg_type] (Linux numbering), Linux's pfkey_funcs[]. */
const TABLE: { readonly [T in KameMsgType]: KameHandler<T> } = {
  [SADB_GETSPI]: getspi, [SADB_UPDATE]: update, [SADB_ADD]: add, [SADB_DELETE]: del, [SADB_GET]: get,
  [SADB_ACQUIRE]: acquire, [SADB_REGISTER]: register, [SADB_EXPIRE]: unsupported, [SADB_FLUSH]: flush,
  [SADB_DUMP]: dump, [SADB_X_PROMISC]: promisc, [SADB_X_PCHANGE]: unsupported,
  [SADB_X_SPDUPDATE]: spdadd, [SADB_X_SPDADD]: spdadd, [SADB_X_SPDDELETE]: spddelete, [SADB_X_SPDGET]: spdget,
  [SADB_X_SPDACQUIRE]: unsupported, [SADB_X_SPDDUMP]: spddump, [SADB_X_SPDFLUSH]: spdflush,
  [SADB_X_SPDSETIDX]: spdadd, [SADB_X_SPDEXPIRE]: unsupported, [SADB_X_SPDDELETE2]: spddelete2,
  [KAME_SADB_X_NAT_T_NEW_MAPPING]: unsupported, [SADB_X_MIGRATE]: migrate,
};

/** KAME_HANDLERS[type] for a message parseMessage accepted in the KAME dialect; 0 is refused by the header check first. */
export const KAME_HANDLERS: ReadonlyArray<(r: KameRequest) => void> = Array.from({ length: KAME_SADB_MAX + 1 }, (_, t) =>
  t === 0 ? () => refuse(ERRNO.EINVAL, 'message type 0') : (TABLE[t as KameMsgType] as (r: KameRequest) => void));
