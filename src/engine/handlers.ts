/**
 * HANDLERS[sadb_msg_type]: one handler per PF_KEY message type, the seed's msg_parsers[]
 * (pfkey_getspi_parse … pfkey_x_unplumbif), each wrapped in interp() for what KLIPS's
 * pfkey_msg_interp checks around them. Each handler validates everything before it
 * changes a table, so a refusal (a thrown PfkeyError, or a SenderRefusal answered to the
 * sender alone) leaves the tables as they were; then it applies the change and delivers
 * the replies KLIPS delivers, built as pfkey_v2_parser.c builds them.
 * docs/semantics.md lists delivery and errno per type and every departure from KLIPS.
 */

import {
  ERRNO, buildMessage, headerOnly, parseMessage, SATYPE_TO_PROTO, AF_INET, IPSEC_SAREF_NULL,
  SADB_SASTATE_LARVAL, SADB_SASTATE_MATURE, SADB_SATYPE_AH, SADB_SATYPE_ESP,
  SADB_X_SATYPE_IPIP, SADB_X_SATYPE_COMP, SADB_SATYPE_MAX, ESPINUDP_WITH_NON_IKE, ESPINUDP_WITH_NON_ESP,
  SADB_X_SAFLAGS_REPLACEFLOW, SADB_X_SAFLAGS_CLEARFLOW, SADB_X_SAFLAGS_INFLOW,
  SADB_X_SAFLAGS_POLICYONLY, SADB_MAX, IPPROTO_IPIP, DEBUG_SUBSYSTEMS, SADB_X_DEBUG, SADB_UPDATE,
  SADB_ADD, PfkeyError, SADB_GETSPI, SADB_DELETE, SADB_GET, SADB_ACQUIRE, SADB_REGISTER, SADB_EXPIRE,
  SADB_FLUSH, SADB_DUMP, SADB_X_PROMISC, SADB_X_PCHANGE, SADB_X_GRPSA, SADB_X_ADDFLOW, SADB_X_DELFLOW,
  SADB_X_NAT_T_NEW_MAPPING, SADB_X_PLUMBIF, SADB_X_UNPLUMBIF,
  type Address, type InboundMessage, type MessageInput, type PfkeyMessage, type Sa,
} from '../wire/index.js';
import { NO_LIMITS, newSA, sharedLimits, type Limits, type SA } from '../sadb/sadb.js';
import { formatSaid, type Said } from '../sadb/said.js';
import { isTableRef } from '../sadb/saref.js';
import { ErouteTable, ErouteError, type ValidFlow } from '../spd/eroute-table.js';
import { keyProblem, type SupportedLists } from './algorithms.js';
import {
  addressOut, flowAddressOut, lifetimeOf, limitsFrom, requestSaExt, saMessage, saidOf,
} from './sa-extensions.js';
import { plumbTarget } from './interfaces.js';
import { storedSaReply } from './fast-path.js';
import { DUMP_SLICE_MS, SenderRefusal, nextDumpSlice, type EngineOps, type Request } from './endpoint.js';

/** A handler of message type T: its message has every extension RULES[T].in requires. */
type Handler<T extends MsgType> = (r: Request<InboundMessage<T>>) => void;
/** The message types 1..SADB_MAX, each with its own handler. */
type MsgType = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12 | 13 | 14 | 15 | 16 | 17 | 18 | 19;
/** A message that names an SA: its header, SA extension and destination. */
type SaidMessage = Pick<PfkeyMessage, 'header'> & { sa: Sa; addressDst: Address };
/** ADD and UPDATE carry the same required extensions. */
type SaRequest = Request<InboundMessage<typeof SADB_ADD> | InboundMessage<typeof SADB_UPDATE>>;
/** X_PLUMBIF / X_UNPLUMBIF. */
type PlumbMessage = InboundMessage<typeof SADB_X_PLUMBIF>;
/** A message with the four flow and mask addresses. */
type FlowMessage = PfkeyMessage & { addressSrcFlow: Address; addressDstFlow: Address; addressSrcMask: Address; addressDstMask: Address };

/** Refuse the message: the verdict's errno and reason (the tables are untouched so far). */
function refuse(errno: number, why: string): never {
  throw new PfkeyError(errno, why);
}

/** The reply header: same type, satype, seq and pid as the request. */
function replyHeader(msg: PfkeyMessage, errno = 0) {
  const h = msg.header;
  return { type: h.type, satype: h.satype, seq: h.seq, pid: h.pid, errno };
}

function saidOfRequest(msg: SaidMessage): Said {
  return saidOf(msg.header.satype, msg.sa.spi, msg.addressDst.addr);
}

// ---------- what pfkey_msg_interp does before every handler ----------

/** The NAT-T encapsulations KLIPS accepts (pfkey_x_nat_t_type_process). */
const NAT_T_TYPES: ReadonlySet<number> = new Set([ESPINUDP_WITH_NON_IKE, ESPINUDP_WITH_NON_ESP]);

/**
 * KLIPS's pfkey_msg_interp around each message parser: an SA type above SADB_SATYPE_MAX
 * is refused whatever the message, then its extension processors (pfkey_v2_ext_process.c)
 * refuse a LIFETIME_CURRENT, any SENSITIVITY, and a NAT-T type other than ESPINUDP
 * (non-IKE or non-ESP marker), before the handler looks at any table. (KLIPS's PROPOSAL
 * processor also refused every proposal; klips relays a client's ACQUIRE that has one:
 * docs/semantics.md.)
 */
const interp = <T extends MsgType>(handler: Handler<T>): Handler<T> => (r) => {
  const { msg } = r;
  if (msg.header.satype > SADB_SATYPE_MAX) refuse(ERRNO.EINVAL, `SA type ${msg.header.satype} > ${SADB_SATYPE_MAX}`);
  if (msg.lifetimeCurrent) refuse(ERRNO.EINVAL, 'LIFETIME_CURRENT cannot be set by a client');
  if (msg.sensitivity) refuse(ERRNO.EINVAL, 'sensitivity labels are not supported (KLIPS refuses them too)');
  if (msg.natTType && !NAT_T_TYPES.has(msg.natTType.type)) refuse(ERRNO.EINVAL, `NAT-T type ${msg.natTType.type} is neither ESPINUDP_WITH_NON_IKE (1) nor ESPINUDP_WITH_NON_ESP (2)`);
  handler(r);
};

// ---------- SA construction (GETSPI / ADD / UPDATE) ----------

/** Soft limits never exceed hard ones (KLIPS clamps soft to hard). */
function clampSoft(soft: Limits, hard: Limits): Limits {
  const clamp = (s: number, h: number) => (h > 0 && s > h ? h : s);
  return {
    allocations: clamp(soft.allocations, hard.allocations),
    bytes: clamp(soft.bytes, hard.bytes),
    addtime: clamp(soft.addtime, hard.addtime),
    usetime: clamp(soft.usetime, hard.usetime),
    packets: clamp(soft.packets, hard.packets),
  };
}

/** KLIPS marks an SA inbound when its destination is one of the host's addresses (EMT_INBOUND). */
function dirOf(engine: EngineOps, dst: Address): 'in' | 'out' {
  return engine.localAddresses.has(dst.addr) ? 'in' : 'out';
}

/** `sadb_x_sa_ref` 0xFFFFFFFF is the older IPSEC_SAREF_NULL; KLIPS's parser reads it as none. */
const OLD_SAREF_NULL = 0xffffffff;
const givenRef = (ref: number | undefined): number => (ref === undefined || ref === OLD_SAREF_NULL ? IPSEC_SAREF_NULL : ref);

/**
 * The SAref an ADD asks for (pfkey_sa_process, then pfkey_add_parse): the SA extension's
 * sadb_x_sa_ref, else X_SAREF's `me`, else none (the ADD then allocates one).
 */
function requestedRef(msg: PfkeyMessage & { sa: Sa }): number {
  return givenRef(msg.sa.ref) || givenRef(msg.saref?.me);
}

/** Refuse an algorithm or key size the SA type's supported list does not allow. */
function checkKey(lists: SupportedLists | undefined, kind: 'auth' | 'encrypt', id: number, bits: number | undefined, keyless = false): void {
  const p = keyProblem(lists, kind, id, bits, keyless);
  if (p) refuse(ERRNO.EINVAL, p);
}

/** Build an SA (compact form, sadb's newSA) from ADD/UPDATE extensions, refusing what KLIPS's ipsec_sa_init refuses. */
function saFromRequest(r: SaRequest, old: SA | undefined, said: Said): SA {
  const { msg, engine } = r;
  const satype = msg.header.satype;
  const sa = msg.sa;
  if (msg.addressSrc.family !== msg.addressDst.family) refuse(ERRNO.EINVAL, 'source and destination address families differ');
  const lists = engine.supported.get(satype);
  switch (satype) {
    case SADB_SATYPE_AH:
    case SADB_SATYPE_ESP:
      checkKey(lists, 'auth', sa.auth, msg.keyAuth?.bits);
      if (satype === SADB_SATYPE_ESP) checkKey(lists, 'encrypt', sa.encrypt, msg.keyEncrypt?.bits);
      else if (msg.keyEncrypt) refuse(ERRNO.EINVAL, 'AH SA with an encryption key');
      break;
    case SADB_X_SATYPE_COMP:
      checkKey(lists, 'encrypt', sa.encrypt, undefined, true);
      if (msg.keyAuth || msg.keyEncrypt) refuse(ERRNO.EINVAL, 'IPCOMP SA takes no keys');
      break;
    case SADB_X_SATYPE_IPIP:
      if (msg.keyAuth || msg.keyEncrypt || sa.auth || sa.encrypt) refuse(ERRNO.EINVAL, 'IPIP SA takes no algorithms or keys');
      break;
    default:
      refuse(ERRNO.EINVAL, `SA type ${satype} cannot hold an SA`);
  }
  // UPDATE keeps the SA's place in the SAref table and its pairing.
  const ref = old ? old.ref : requestedRef(msg);
  const refhim = old ? old.refhim : msg.saref?.him ?? IPSEC_SAREF_NULL;
  return saOfRequest(msg, said, old, engine.now(), ref, refhim, dirOf(engine, msg.addressDst));
}

/**
 * The SA an ADD/UPDATE that passed every check makes, added at `now` with SAref `ref`
 * (UPDATE: replacing `old`). Also what makes an SA that the ADD fast path stored as its
 * request (saOfStoredAdd), so both paths make the same SA.
 */
function saOfRequest(
  msg: InboundMessage<typeof SADB_ADD> | InboundMessage<typeof SADB_UPDATE>, said: Said, old: SA | undefined,
  now: number, ref: number, refhim: number, dir: 'in' | 'out',
): SA {
  const sa = msg.sa;
  const hard = limitsFrom(msg.lifetimeHard);
  return newSA({
    said,
    satype: msg.header.satype,
    state: SADB_SASTATE_MATURE,
    replay: sa.replay,
    auth: sa.auth,
    encrypt: sa.encrypt,
    flags: sa.flags,
    src: addressOut(msg.addressSrc),
    dst: addressOut(msg.addressDst),
    proxy: msg.addressProxy,
    keyAuth: msg.keyAuth,
    keyEncrypt: msg.keyEncrypt,
    identSrc: msg.identitySrc,
    identDst: msg.identityDst,
    natT: msg.natTType || msg.natTSport || msg.natTDport
      ? { type: msg.natTType?.type ?? 0, sport: msg.natTSport?.port ?? 0, dport: msg.natTDport?.port ?? 0, oa: msg.natTOa }
      : undefined,
    plumbif: msg.plumbif?.ifnum,
    ref,
    refhim,
    dir,
    soft: sharedLimits(clampSoft(limitsFrom(msg.lifetimeSoft), hard)),
    hard: sharedLimits(hard),
    // UPDATE keeps the counters and first use of the SA it replaces; a larval SA's life starts now.
    current: old ? { ...old.current, addtime: old.state === SADB_SASTATE_LARVAL ? now : old.current.addtime } : undefined,
    addtime: now,
    used: old?.used ?? false,
    pid: msg.header.pid,
    seq: msg.header.seq,
  });
}

/**
 * The SA of an ADD the engine accepted and stored as its request (sadb's SaBuilder):
 * the request parsed again and made into an SA by the general path's own code, with the
 * add time, SAref (the final one, allocated if the request named none) and direction
 * the ADD had.
 */
export function saOfStoredAdd(request: Uint8Array, addtime: number, ref: number, inbound: boolean): SA {
  const msg = parseMessage(request, { direction: 'in', keyViews: true }) as InboundMessage<typeof SADB_ADD>;
  const said = saidOf(msg.header.satype, msg.sa.spi, msg.addressDst.addr);
  return saOfRequest(msg, said, undefined, addtime, ref, msg.saref?.him ?? IPSEC_SAREF_NULL, inbound ? 'in' : 'out');
}

/**
 * KLIPS's NAT-T UPDATE (pfkey_update_parse): when the request carries a non-zero NAT-T
 * port, only the SA's NAT-T ports change (and the port of its IPv4 source/destination
 * address with them); keys, algorithms, lifetimes and state stay.
 */
function patchNatTPorts(sa: SA, sport: number, dport: number): void {
  const natT = sa.natT ?? { type: 0, sport: 0, dport: 0 };
  sa.natT = { ...natT, sport: sport || natT.sport, dport: dport || natT.dport };
  if (sport && sa.src.family === AF_INET) sa.src = { ...sa.src, port: sport };
  if (dport && sa.dst.family === AF_INET) sa.dst = { ...sa.dst, port: dport };
}

/**
 * Reply to ADD/UPDATE, as pfkey_add_parse / pfkey_update_parse build it (it goes to every
 * socket, so never keys): SA, LIFETIME_HARD and _SOFT when the request had them, SRC,
 * DST, the identities; UPDATE adds LIFETIME_CURRENT, ADD the SAREF (me, him).
 */
function saReply(msg: PfkeyMessage, sa: SA): MessageInput {
  const m = saMessage(replyHeader(msg), sa, { current: msg.header.type === SADB_UPDATE });
  if (msg.lifetimeHard) m.lifetimeHard = lifetimeOf(sa.hard);
  if (msg.lifetimeSoft) m.lifetimeSoft = lifetimeOf(sa.soft);
  if (msg.header.type === SADB_ADD) m.saref = { me: sa.ref, him: sa.refhim };
  return m;
}

// ---------- the handlers ----------

const getspi: Handler<typeof SADB_GETSPI> = ({ engine, msg }) => {
  const proto = SATYPE_TO_PROTO[msg.header.satype];
  const dst = msg.addressDst.addr;
  const { min, max } = msg.spirange;
  if (min === max && engine.sadb.has({ proto, spi: min, dst })) refuse(ERRNO.EEXIST, `SPI 0x${min.toString(16)} is taken`);
  const spi = engine.sadb.allocateSpi(proto, dst, min, max, engine.random);
  if (spi === undefined) refuse(ERRNO.EEXIST, `no free SPI in 0x${min.toString(16)}-0x${max.toString(16)}`);
  const now = engine.now();
  const sa: SA = {
    said: { proto, spi: spi, dst },
    satype: msg.header.satype,
    state: SADB_SASTATE_LARVAL,
    replay: 0, auth: 0, encrypt: 0, flags: 0,
    src: addressOut(msg.addressSrc), dst: addressOut(msg.addressDst), proxy: msg.addressProxy,
    ref: IPSEC_SAREF_NULL, refhim: IPSEC_SAREF_NULL, dir: dirOf(engine, msg.addressDst),
    soft: sharedLimits(NO_LIMITS()),
    hard: sharedLimits({ ...NO_LIMITS(), addtime: engine.larvalLifetime }),
    current: { ...NO_LIMITS(), addtime: now },
    used: false, softSent: false, pid: msg.header.pid, seq: msg.header.seq, gen: 0,
  };
  engine.sadb.insert(sa);
  // KLIPS's reply: the SPI, LARVAL and nothing else in the SA extension.
  const saExt: Sa = { spi: spi, replay: 0, state: SADB_SASTATE_LARVAL, auth: 0, encrypt: 0, flags: 0, ref: IPSEC_SAREF_NULL };
  engine.toAll(buildMessage({ header: replyHeader(msg), sa: saExt, addressSrc: sa.src, addressDst: sa.dst }));
};

/** UPDATE: a NAT-T port change (KLIPS's NAT-T path), or a new SA in place of the old one. */
const update: Handler<typeof SADB_UPDATE> = (r) => {
  const { engine, msg } = r;
  const said = saidOfRequest(msg);
  const old = engine.sadb.get(said);
  if (!old) refuse(ERRNO.ENOENT, `no SA ${formatSaid(said)} to update`);
  const sport = msg.natTSport?.port ?? 0;
  const dport = msg.natTDport?.port ?? 0;
  let sa = old;
  if (sport || dport) {
    patchNatTPorts(sa, sport, dport);
  } else {
    sa = saFromRequest(r, old, said);
    engine.sadb.replace(old, sa);
  }
  engine.settleAcquire(msg.header.seq);
  engine.toAll(buildMessage(saReply(msg, sa)));
  engine.checkLimits(sa);
};

/** ADD: a new MATURE SA, with an SAref from the request or from the SAref table (none once it is full). */
const add: Handler<typeof SADB_ADD> = (r) => {
  const { engine, msg } = r;
  const said = saidOfRequest(msg);
  if (engine.sadb.has(said)) refuse(ERRNO.EEXIST, `SA ${formatSaid(said)} already exists`);
  const sa = saFromRequest(r, undefined, said);
  if (sa.ref === IPSEC_SAREF_NULL) sa.ref = engine.sadb.sarefs.alloc();
  engine.sadb.insert(sa);
  engine.settleAcquire(msg.header.seq);
  engine.toAll(buildMessage(saReply(msg, sa)));
  engine.checkLimits(sa);
};

/**
 * DELETE removes the whole group the SA belongs to (KLIPS walks to the head). The reply
 * (pfkey_delete_parse): an SA extension with the SPI and the deleted SA's SAref and all
 * else zero, and the request's SRC and DST.
 */
const del: Handler<typeof SADB_DELETE> = ({ engine, msg }) => {
  const said = saidOfRequest(msg);
  const sa = engine.sadb.get(said);
  if (!sa) refuse(ERRNO.ESRCH, `no SA ${formatSaid(said)}`);
  // A ref outside the table (e.g. pluto's IPSEC_SAREF_NA) cannot be written: KLIPS's reply build failed on it.
  const ref = isTableRef(sa.ref) ? sa.ref : IPSEC_SAREF_NULL;
  for (const member of engine.sadb.group(sa)) engine.sadb.remove(member);
  engine.toAll(buildMessage({
    header: replyHeader(msg),
    sa: { spi: said.spi, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0, ref },
    addressSrc: addressOut(msg.addressSrc),
    addressDst: addressOut(msg.addressDst),
  }));
};

/** GET answers the sender only, so it may carry keys (RFC 2367; KLIPS never sent them). */
const get: Handler<typeof SADB_GET> = ({ engine, ep, msg }) => {
  const said = saidOfRequest(msg);
  const sa = engine.sadb.get(said);
  if (!sa) refuse(ERRNO.ESRCH, `no SA ${formatSaid(said)}`);
  engine.toSender(ep, buildMessage(saMessage(replyHeader(msg), sa, { keys: true, current: true, limits: true, proxy: true, natT: true })));
};

/**
 * A client ACQUIRE (an IKE daemon's failure report, or a request) goes to the sockets
 * registered for its SA type; with none, EPROTONOSUPPORT (pfkey_acquire_parse).
 */
const acquire: Handler<typeof SADB_ACQUIRE> = ({ engine, bytes, msg }) => {
  const satype = msg.header.satype;
  if (engine.registeredFor(satype).length === 0) refuse(ERRNO.EPROTONOSUPPORT, `no socket registered for SA type ${satype}`);
  engine.settleAcquire(msg.header.seq);
  engine.toRegistered(satype, bytes);
};

const register: Handler<typeof SADB_REGISTER> = ({ engine, ep, msg }) => {
  const satype = msg.header.satype;
  ep.registered.add(satype);
  const lists = engine.supported.get(satype);
  const m: MessageInput = { header: replyHeader(msg) };
  const strip = (a: { id: number; ivlen: number; minbits: number; maxbits: number }) => ({ id: a.id, ivlen: a.ivlen, minbits: a.minbits, maxbits: a.maxbits });
  if (lists?.auth.length) m.supportedAuth = { algs: lists.auth.map(strip) };
  if (lists?.encrypt.length) m.supportedEncrypt = { algs: lists.encrypt.map(strip) };
  engine.toRegistered(satype, buildMessage(m));
};

/** A client EXPIRE changes nothing; KLIPS echoes it to every open socket. */
const expire: Handler<typeof SADB_EXPIRE> = ({ engine, bytes }) => engine.toAll(bytes);

/**
 * FLUSH of one SA type, 0 for all (KLIPS flushed everything whatever the type); a type
 * that names no protocol is EINVAL, as KLIPS (its satype2proto). Eroutes stay.
 */
const flush: Handler<typeof SADB_FLUSH> = ({ engine, msg }) => {
  const satype = msg.header.satype;
  if (satype !== 0 && !SATYPE_TO_PROTO[satype]) refuse(ERRNO.EINVAL, `SA type ${satype} names no protocol`);
  engine.sadb.drop(satype);
  engine.toAll(headerOnly(replyHeader(msg)));
};

/**
 * DUMP (KLIPS: ENOSYS): one reply per SA to the sender, seq counting down to 0 on the
 * last. It runs in slices of at most DUMP_SLICE_MS: first it lists the SAs (an SA deleted
 * before the listing reaches it is left out), then it sends them,
 * waiting whenever the sender's receive queue is full, so nothing is dropped; each
 * slice after the first from a timer (nextDumpSlice).
 */
const dump: Handler<typeof SADB_DUMP> = ({ engine, ep, msg }) => {
  const satype = msg.header.satype;
  if (engine.sadb.count(satype) === 0) refuse(ERRNO.ENOENT, 'no SAs to dump');
  // The keys of SAs the table still stores as their ADD (their replies are written from
  // the request: fast-path.ts; pinned, a key stands for its SA until sent), and SAs, as
  // -(their index in `sas` + 1): a typed list, so a DUMP of 10^6 SAs puts no array of 10^6
  // values on the heap for the collector to mark again and again while it runs.
  let list = new Float64Array(Math.max(16, engine.sadb.count(satype)));
  let listed = 0;
  const sas: SA[] = [];
  const it = engine.sadb.entries(satype);
  engine.sadb.pin();
  let pinned = true;
  const unpin = (): void => {
    if (pinned) engine.sadb.unpin();
    pinned = false;
  };
  let listing = true;
  let i = 0;
  const step = (): void => {
    const until = performance.now() + DUMP_SLICE_MS;
    for (let n = 0; ; n++) {
      if (ep.closed) return unpin();
      if ((n & 63) === 63 && performance.now() > until) { nextDumpSlice(ep, step); return; }
      if (listing) {
        const r = it.next();
        if (r.done) {
          listing = false;
          continue;
        }
        if (listed === list.length) {
          const wider = new Float64Array(2 * listed);
          wider.set(list);
          list = wider;
        }
        list[listed++] = typeof r.value === 'number' ? r.value : -sas.push(r.value);
        continue;
      }
      if (i >= listed) return unpin();
      const e = list[i];
      const seq = listed - 1 - i;
      const sa = e < 0 ? sas[-e - 1] : engine.sadb.madeFrom(e);
      const stored = sa === undefined ? storedSaReply(engine.sadb, e, msg.header.type, seq, msg.header.pid) : undefined;
      if (sa === undefined && stored === undefined) { i++; continue; } // (cannot happen while pinned)
      const bytes = stored ?? buildMessage(saMessage({ type: msg.header.type, satype: sa!.satype, seq, pid: msg.header.pid }, sa!,
        { keys: true, current: true, limits: true, proxy: true, natT: true }));
      // Wait for the reader unless the message could never fit (then it is dropped and counted).
      if (ep.room() < bytes.length && bytes.length <= ep.rcvbuf) { ep.onDrain(() => nextDumpSlice(ep, step)); return; }
      i++;
      if (stored) engine.toSenderCopy(ep, stored);
      else engine.toSender(ep, bytes);
    }
  };
  step();
};

/** X_PROMISC (KLIPS: unusable): satype 1 on, 0 off, as Linux. */
const promisc: Handler<typeof SADB_X_PROMISC> = ({ engine, ep, msg }) => {
  if (msg.header.satype > 1) refuse(ERRNO.EINVAL, 'X_PROMISC takes satype 0 (off) or 1 (on)');
  ep.promisc = msg.header.satype === 1;
  engine.toSender(ep, headerOnly(replyHeader(msg)));
};

/** X_PCHANGE (defined by klips): satype 1 subscribes to eroute change notices, 0 stops. */
const pchange: Handler<typeof SADB_X_PCHANGE> = ({ engine, ep, msg }) => {
  if (msg.header.satype > 1) refuse(ERRNO.EINVAL, 'X_PCHANGE takes satype 0 (unsubscribe) or 1 (subscribe)');
  ep.pchange = msg.header.satype === 1;
  engine.toSender(ep, headerOnly(replyHeader(msg)));
};

/**
 * X_GRPSA links SA → SA2 (userspace lists them inner to outer), or with no SA2 unlinks
 * SA's chain. When SA2 is inbound the pair is linked the other way (SA2 → SA), as KLIPS
 * does, so an inbound chain runs in the order packets are unwrapped. Only the first SA of
 * the link may not have a successor yet; a cycle is EEXIST. The reply (pfkey_x_grpsa_parse)
 * echoes the request's SAs, DSTs and SATYPE2.
 */
const grpsa: Handler<typeof SADB_X_GRPSA> = ({ engine, msg }) => {
  const first = engine.sadb.get(saidOfRequest(msg));
  if (!first) refuse(ERRNO.ENOENT, `no SA ${formatSaid(saidOfRequest(msg))}`);
  const m: MessageInput = {
    header: replyHeader(msg),
    sa: requestSaExt(msg.sa, first.said.proto),
    addressDst: addressOut(msg.addressDst),
  };
  if (!msg.sa2 && !msg.satype2 && !msg.addressDst2) {
    engine.sadb.unlinkChain(first);
  } else {
    // Part of a second SAID names no SA (KLIPS looks up what it has, and finds nothing).
    const { sa2, satype2, addressDst2 } = msg;
    if (!sa2 || !satype2 || !addressDst2) return refuse(ERRNO.ENOENT, 'X_SATYPE2, X_SA2 and X_ADDRESS_DST2 name no SA unless all three are given');
    const said2 = saidOf(satype2.satype, sa2.spi, addressDst2.addr);
    const second = engine.sadb.get(said2);
    if (!second) return refuse(ERRNO.ENOENT, `no SA ${formatSaid(said2)}`);
    const [a, b] = second.dir === 'in' ? [second, first] : [first, second];
    if (!engine.sadb.link(a, b)) refuse(ERRNO.EEXIST, `${formatSaid(a.said)} is already linked, or ${formatSaid(b.said)} leads to it`);
    m.satype2 = satype2;
    m.sa2 = requestSaExt(sa2, second.said.proto);
    m.addressDst2 = addressOut(addressDst2);
  }
  engine.toAll(buildMessage(m));
};

/** The request's flow, validated once by the eroute table (ErouteError EINVAL if malformed). */
function flowOfRequest(msg: FlowMessage): ValidFlow {
  const sf = msg.addressSrcFlow;
  const df = msg.addressDstFlow;
  const sm = msg.addressSrcMask;
  const dm = msg.addressDstMask;
  if (sf.family !== df.family || sm.family !== sf.family || dm.family !== sf.family) refuse(ERRNO.EINVAL, 'flow and mask address families differ');
  try {
    return ErouteTable.makeFlow(sf.family, sf.addr, sm.addr, df.addr, dm.addr, msg.protocol?.proto ?? 0, sf.port, df.port);
  } catch (e) {
    return erouteErrno(e);
  }
}

function erouteErrno(e: unknown): never {
  if (e instanceof ErouteError) refuse(ERRNO[e.code], e.message);
  throw e;
}

/**
 * The reply to X_ADDFLOW / X_DELFLOW (pfkey_x_addflow_parse / _delflow_parse): the
 * request's SA extension as KLIPS echoes it (the algorithms of `proto`: X_DELFLOW's has
 * none; all zero if the request had none), SRC and DST when given, and the four flow and
 * mask addresses alone (no ports, no X_PROTOCOL) unless `flows` is false.
 */
function flowReply(msg: PfkeyMessage, proto: number, flows?: FlowMessage): MessageInput {
  const m: MessageInput = { header: replyHeader(msg), sa: requestSaExt(msg.sa ?? NO_SA, proto) };
  if (msg.addressSrc) m.addressSrc = addressOut(msg.addressSrc);
  if (msg.addressDst) m.addressDst = addressOut(msg.addressDst);
  if (flows) {
    m.addressSrcFlow = flowAddressOut(flows.addressSrcFlow);
    m.addressDstFlow = flowAddressOut(flows.addressDstFlow);
    m.addressSrcMask = flowAddressOut(flows.addressSrcMask);
    m.addressDstMask = flowAddressOut(flows.addressDstMask);
  }
  return m;
}

/** X_DELFLOW carries the four flow extensions unless its SA has CLEARFLOW (parseMessage's rule). */
function withFlows(msg: PfkeyMessage): FlowMessage {
  if (msg.addressSrcFlow && msg.addressDstFlow && msg.addressSrcMask && msg.addressDstMask) return msg as FlowMessage;
  return refuse(ERRNO.EINVAL, 'X_DELFLOW needs the four flow/mask extensions, or an SA with CLEARFLOW');
}
const NO_SA: Sa = { spi: 0, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 };

const addflow: Handler<typeof SADB_X_ADDFLOW> = ({ engine, msg }) => {
  const flags = msg.sa.flags;
  const said = saidOfRequest(msg);
  const flow = flowOfRequest(msg);
  if (flags & (SADB_X_SAFLAGS_INFLOW | SADB_X_SAFLAGS_POLICYONLY)) {
    // Inbound policy: stored on the IPIP SA of the group, no eroute (KLIPS).
    const sa = engine.sadb.get(said);
    if (!sa) refuse(ERRNO.ENOENT, `no SA ${formatSaid(said)}`);
    let tun: SA | undefined = sa;
    while (tun && tun.said.proto !== IPPROTO_IPIP) tun = tun.next;
    if (!tun) refuse(ERRNO.ENOENT, `no IPIP SA in the group of ${formatSaid(said)}`);
    tun.inbound = { srcFlow: msg.addressSrcFlow, srcMask: msg.addressSrcMask, dstFlow: msg.addressDstFlow, dstMask: msg.addressDstMask, proto: flow.proto };
    tun.flags |= flags & (SADB_X_SAFLAGS_INFLOW | SADB_X_SAFLAGS_POLICYONLY);
  } else {
    const ids = { pid: msg.header.pid, identSrc: msg.identitySrc, identDst: msg.identityDst };
    let e;
    try {
      if (flags & SADB_X_SAFLAGS_REPLACEFLOW) {
        const { old, now } = engine.spd.replace(flow, said, ids);
        e = now;
        if (old.held) { now.held = old.held; engine.release(now); }
      } else {
        e = engine.spd.add(flow, said, ids);
      }
    } catch (err) {
      erouteErrno(err);
    }
    engine.pchangeNotice(e, flags & SADB_X_SAFLAGS_REPLACEFLOW, msg.header.seq);
    const sa = engine.sadb.get(said);
    if (sa) { sa.current.allocations++; engine.checkLimits(sa); }
  }
  engine.toAll(buildMessage(flowReply(msg, said.proto, msg)));
};

/** X_DELFLOW, in KLIPS's order: POLICYONLY does nothing, CLEARFLOW deletes every eroute, else the one flow. */
const delflow: Handler<typeof SADB_X_DELFLOW> = ({ engine, msg }) => {
  const flags = msg.sa?.flags ?? 0;
  const oneFlow = flags & (SADB_X_SAFLAGS_POLICYONLY | SADB_X_SAFLAGS_CLEARFLOW) ? undefined : withFlows(msg);
  if (oneFlow) {
    let e;
    try {
      e = engine.spd.delete(flowOfRequest(oneFlow));
    } catch (err) {
      erouteErrno(err);
    }
    engine.pchangeNotice(e, SADB_X_SAFLAGS_CLEARFLOW, msg.header.seq);
  } else if (!(flags & SADB_X_SAFLAGS_POLICYONLY)) {
    for (const e of engine.spd.clear()) engine.pchangeNotice(e, SADB_X_SAFLAGS_CLEARFLOW, msg.header.seq);
  }
  engine.toAll(buildMessage(flowReply(msg, 0, oneFlow)));
};

/** X_DEBUG: the top bit of the netlink word selects OR (set) or AND (clear), as klipsdebug sends it. */
const debug: Handler<typeof SADB_X_DEBUG> = ({ engine, ep, msg }) => {
  const d = msg.debug;
  const set = (d.netlink >>> 31) === 1;
  for (const name of DEBUG_SUBSYSTEMS) {
    const v = name === 'netlink' ? d.netlink & 0x7fffffff : d[name];
    engine.debug[name] = (set ? engine.debug[name] | v : engine.debug[name] & v) >>> 0;
  }
  // KLIPS sends no reply; klips answers the sender with the flags now in force.
  engine.toSender(ep, buildMessage({ header: { ...replyHeader(msg), type: SADB_X_DEBUG }, debug: { ...engine.debug } }));
};

/** KLIPS's inbound NAT_T_NEW_MAPPING handler refuses with EINVAL: only the engine sends it. */
const natTNewMapping: Handler<typeof SADB_X_NAT_T_NEW_MAPPING> = () => refuse(ERRNO.EINVAL, 'X_NAT_T_NEW_MAPPING is sent by the kernel, not to it');

/** The answer to X_PLUMBIF / X_UNPLUMBIF (pfkey_x_simple_reply): the request's header and X_PLUMBIF, with the errno. */
function plumbReply(msg: PlumbMessage, errno = 0): Uint8Array {
  return buildMessage({ header: replyHeader(msg, errno), plumbif: msg.plumbif });
}

/** KLIPS answers a failed X_PLUMBIF / X_UNPLUMBIF to the sender alone, with the extension. */
const refuseToSender = (msg: PlumbMessage, errno: number, why: string): never => {
  throw new SenderRefusal(errno, why, plumbReply(msg, errno));
};

/** The interface an X_PLUMBIF / X_UNPLUMBIF names; ENOENT (to the sender) beyond IPSEC_NUM_IFMAX units. */
function targetOf(msg: PlumbMessage) {
  const ifnum = msg.plumbif.ifnum;
  return plumbTarget(ifnum) ?? refuseToSender(msg, ERRNO.ENOENT, `interface number ${ifnum} names no possible ipsecN or mastN`);
}

const plumbif: Handler<typeof SADB_X_PLUMBIF> = ({ engine, ep, msg }) => {
  const t = targetOf(msg);
  if (engine.interfaces.has(t.key)) refuseToSender(msg, ERRNO.EEXIST, `interface ${t.name} exists`);
  engine.interfaces.set(t.key, { ifnum: t.key, name: t.name, created: engine.now(), pid: msg.header.pid });
  engine.toSender(ep, plumbReply(msg));
};

const unplumbif: Handler<typeof SADB_X_UNPLUMBIF> = ({ engine, ep, msg }) => {
  const t = targetOf(msg);
  if (!engine.interfaces.delete(t.key)) refuseToSender(msg, ERRNO.ENOENT, `no interface ${t.name}`);
  engine.toSender(ep, plumbReply(msg));
};

/**
 * The dispatch table (the seed's msg_parsers[]), keyed by sadb_msg_type: the type checks
 * that each slot holds the handler for its own type, whose message type guarantees the
 * extensions the rules require. Every handler runs behind interp (pfkey_msg_interp).
 */
const TABLE: { readonly [T in MsgType]: Handler<T> } = {
  [SADB_GETSPI]: getspi, [SADB_UPDATE]: update, [SADB_ADD]: add, [SADB_DELETE]: del, [SADB_GET]: get,
  [SADB_ACQUIRE]: acquire, [SADB_REGISTER]: register, [SADB_EXPIRE]: expire, [SADB_FLUSH]: flush,
  [SADB_DUMP]: dump, [SADB_X_PROMISC]: promisc, [SADB_X_PCHANGE]: pchange, [SADB_X_GRPSA]: grpsa,
  [SADB_X_ADDFLOW]: addflow, [SADB_X_DELFLOW]: delflow, [SADB_X_DEBUG]: debug,
  [SADB_X_NAT_T_NEW_MAPPING]: natTNewMapping, [SADB_X_PLUMBIF]: plumbif, [SADB_X_UNPLUMBIF]: unplumbif,
};

/**
 * HANDLERS[sadb_msg_type] for a message parseMessage accepted (so its required
 * extensions are there); index 0 (RESERVED) is refused by the header check first.
 */
export const HANDLERS: ReadonlyArray<(r: Request) => void> = Array.from({ length: SADB_MAX + 1 }, (_, t) =>
  t === 0 ? () => refuse(ERRNO.EINVAL, 'message type 0') : (interp(TABLE[t as MsgType] as Handler<MsgType>) as (r: Request) => void));

if (HANDLERS.length !== SADB_MAX + 1) throw new Error('HANDLERS must cover every message type');
