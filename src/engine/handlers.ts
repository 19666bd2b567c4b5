/**
 * HANDLERS[sadb_msg_type]: one handler per PF_KEY message type, the seed's msg_parsers[]
 * (pfkey_getspi_parse … pfkey_x_unplumbif). Each handler validates everything before it
 * changes a table, so a refusal (a thrown PfkeyError) leaves the tables as they were;
 * then it applies the change and delivers the replies KLIPS delivers.
 * docs/semantics.md lists delivery and errno per type and every departure from KLIPS.
 */

import {
  ERRNO, PfkeyError, buildMessage, headerOnly, SATYPE_TO_PROTO,
  SADB_SASTATE_LARVAL, SADB_SASTATE_MATURE, SADB_SATYPE_AH, SADB_SATYPE_ESP,
  SADB_X_SATYPE_IPIP, SADB_X_SATYPE_COMP, SADB_SATYPE_MAX,
  SADB_X_SAFLAGS_REPLACEFLOW, SADB_X_SAFLAGS_CLEARFLOW, SADB_X_SAFLAGS_INFLOW,
  SADB_X_SAFLAGS_POLICYONLY, SADB_MAX, IPPROTO_IPIP, IPSECDEV_OFFSET, MASTTRANSPORT_OFFSET,
  DEBUG_SUBSYSTEMS, SADB_X_DEBUG, SADB_UPDATE,
  type MessageInput, type PfkeyMessage,
} from '../wire/index.js';
import { NO_LIMITS, StoredKey, sharedLimits, type Limits, type SA } from '../sadb/sadb.js';
import { formatSaid, type Said } from '../sadb/said.js';
import { ErouteTable, ErouteError, type ValidFlow } from '../spd/eroute-table.js';
import { keyProblem } from './algorithms.js';
import { limitsFrom, saMessage, saidOf } from './sa-extensions.js';
import type { Request } from './endpoint.js';

type Handler = (r: Request) => void;

const refuse = (errno: number, why: string): never => {
  throw new PfkeyError(errno, why);
};

/** The reply header: same type, satype, seq and pid as the request. */
function replyHeader(msg: PfkeyMessage, errno = 0) {
  const h = msg.header;
  return { type: h.type, satype: h.satype, seq: h.seq, pid: h.pid, errno };
}

function saidOfRequest(msg: PfkeyMessage): Said {
  return saidOf(msg.header.satype, msg.sa!.spi, msg.addressDst!.addr);
}

// ---------- SA construction (ADD / UPDATE) ----------

/** Soft limits never exceed hard ones (KLIPS clamps soft to hard). */
function clampSoft(soft: Limits, hard: Limits): Limits {
  const out = { ...soft };
  for (const k of Object.keys(out) as Array<keyof Limits>) {
    if (hard[k] > 0 && (out[k] === 0 || out[k] > hard[k])) out[k] = out[k] === 0 ? 0 : hard[k];
  }
  return out;
}

/** Build an SA from ADD/UPDATE extensions, refusing what KLIPS's processors refuse. */
function saFromRequest(r: Request, old: SA | undefined): SA {
  const { msg, engine } = r;
  const satype = msg.header.satype;
  const sa = msg.sa!;
  if (msg.sensitivity) refuse(ERRNO.EINVAL, 'sensitivity labels are not supported (KLIPS refuses them too)');
  if (msg.lifetimeCurrent) refuse(ERRNO.EINVAL, 'LIFETIME_CURRENT cannot be set by a client');
  if (msg.addressSrc!.family !== msg.addressDst!.family) refuse(ERRNO.EINVAL, 'source and destination address families differ');
  const lists = engine.supported.get(satype);
  const check = (kind: 'auth' | 'encrypt', id: number, bits: number | undefined, keyless = false) => {
    const p = keyProblem(lists, kind, id, bits, keyless);
    if (p) refuse(ERRNO.EINVAL, p);
  };
  switch (satype) {
    case SADB_SATYPE_AH:
    case SADB_SATYPE_ESP:
      check('auth', sa.auth, msg.keyAuth?.bits);
      if (satype === SADB_SATYPE_ESP) check('encrypt', sa.encrypt, msg.keyEncrypt?.bits);
      else if (msg.keyEncrypt) refuse(ERRNO.EINVAL, 'AH SA with an encryption key');
      break;
    case SADB_X_SATYPE_COMP:
      check('encrypt', sa.encrypt, undefined, true);
      if (msg.keyAuth || msg.keyEncrypt) refuse(ERRNO.EINVAL, 'IPCOMP SA takes no keys');
      break;
    case SADB_X_SATYPE_IPIP:
      if (msg.keyAuth || msg.keyEncrypt || sa.auth || sa.encrypt) refuse(ERRNO.EINVAL, 'IPIP SA takes no algorithms or keys');
      break;
    default:
      refuse(ERRNO.EINVAL, `SA type ${satype} cannot hold an SA`);
  }
  const hard = limitsFrom(msg.lifetimeHard);
  const now = engine.now();
  const out: SA = {
    said: saidOfRequest(msg),
    satype,
    state: SADB_SASTATE_MATURE,
    replay: sa.replay,
    auth: sa.auth,
    encrypt: sa.encrypt,
    flags: sa.flags,
    src: msg.addressSrc!,
    dst: msg.addressDst!,
    proxy: msg.addressProxy,
    keyAuth: msg.keyAuth && new StoredKey(msg.keyAuth.bits, msg.keyAuth.key),
    keyEncrypt: msg.keyEncrypt && new StoredKey(msg.keyEncrypt.bits, msg.keyEncrypt.key),
    identSrc: msg.identitySrc,
    identDst: msg.identityDst,
    plumbif: msg.plumbif?.ifnum,
    saref: msg.saref,
    ref: sa.ref,
    soft: sharedLimits(clampSoft(limitsFrom(msg.lifetimeSoft), hard)),
    hard: sharedLimits(hard),
    // UPDATE keeps the counters and first use of the SA it replaces; a larval SA's life starts now.
    current: old ? { ...old.current, addtime: old.state === SADB_SASTATE_LARVAL ? now : old.current.addtime } : { ...NO_LIMITS(), addtime: now },
    used: old?.used ?? false,
    softSent: false,
    pid: msg.header.pid,
    seq: msg.header.seq,
    gen: 0,
  };
  if (msg.natTType || msg.natTSport || msg.natTDport) {
    out.natT = { type: msg.natTType?.type ?? 0, sport: msg.natTSport?.port ?? 0, dport: msg.natTDport?.port ?? 0, oa: msg.natTOa };
  }
  return out;
}

/** Reply for ADD/UPDATE: what was set, never keys (it goes to every socket), within KLIPS's permitted-out. */
function saReply(msg: PfkeyMessage, sa: SA): MessageInput {
  if (msg.header.type === SADB_UPDATE) {
    return saMessage(replyHeader(msg), sa, { limits: true, natT: true, natTPortsOnly: true });
  }
  const m = saMessage(replyHeader(msg), sa, { limits: true, natT: true, noProxy: true });
  if (msg.plumbif) m.plumbif = msg.plumbif;
  if (msg.saref) m.saref = msg.saref;
  return m;
}

// ---------- the handlers ----------

const getspi: Handler = ({ engine, msg }) => {
  const proto = SATYPE_TO_PROTO[msg.header.satype];
  const dst = msg.addressDst!.addr;
  const { min, max } = msg.spirange!;
  if (min === max && engine.sadb.has({ proto, spi: min, dst })) refuse(ERRNO.EEXIST, `SPI 0x${min.toString(16)} is taken`);
  const spi = engine.sadb.allocateSpi(proto, dst, min, max, engine.random);
  if (spi === undefined) refuse(ERRNO.EEXIST, `no free SPI in 0x${min.toString(16)}-0x${max.toString(16)}`);
  const now = engine.now();
  const sa: SA = {
    said: { proto, spi: spi!, dst },
    satype: msg.header.satype,
    state: SADB_SASTATE_LARVAL,
    replay: 0, auth: 0, encrypt: 0, flags: 0,
    src: msg.addressSrc!, dst: msg.addressDst!, proxy: msg.addressProxy,
    soft: sharedLimits(NO_LIMITS()),
    hard: sharedLimits({ ...NO_LIMITS(), addtime: engine.larvalLifetime }),
    current: { ...NO_LIMITS(), addtime: now },
    used: false, softSent: false, pid: msg.header.pid, seq: msg.header.seq, gen: 0,
  };
  engine.sadb.insert(sa);
  engine.toAll(buildMessage({ header: replyHeader(msg), sa: { spi: spi!, replay: 0, state: SADB_SASTATE_LARVAL, auth: 0, encrypt: 0, flags: 0 }, addressSrc: sa.src, addressDst: sa.dst }));
};

const update: Handler = (r) => {
  const { engine, msg } = r;
  const old = engine.sadb.get(saidOfRequest(msg));
  if (!old) refuse(ERRNO.ENOENT, `no SA ${formatSaid(saidOfRequest(msg))} to update`);
  const sa = saFromRequest(r, old);
  engine.sadb.replace(old!, sa);
  engine.settleAcquire(msg.header.seq);
  engine.toAll(buildMessage(saReply(msg, sa)));
  engine.checkLimits(sa);
};

const add: Handler = (r) => {
  const { engine, msg } = r;
  const said = saidOfRequest(msg);
  if (engine.sadb.has(said)) refuse(ERRNO.EEXIST, `SA ${formatSaid(said)} already exists`);
  const sa = saFromRequest(r, undefined);
  engine.sadb.insert(sa);
  engine.settleAcquire(msg.header.seq);
  engine.toAll(buildMessage(saReply(msg, sa)));
  engine.checkLimits(sa);
};

/** DELETE removes the whole group the SA belongs to (KLIPS walks to the head). */
const del: Handler = ({ engine, msg }) => {
  const said = saidOfRequest(msg);
  const sa = engine.sadb.get(said);
  if (!sa) refuse(ERRNO.ESRCH, `no SA ${formatSaid(said)}`);
  for (const member of engine.sadb.group(sa!)) engine.sadb.remove(member);
  engine.toAll(buildMessage({ header: replyHeader(msg), sa: msg.sa, addressSrc: msg.addressSrc, addressDst: msg.addressDst }));
};

/** GET answers the sender only, so it may carry keys (RFC 2367; KLIPS never sent them). */
const get: Handler = ({ engine, ep, msg }) => {
  const said = saidOfRequest(msg);
  const sa = engine.sadb.get(said);
  if (!sa) refuse(ERRNO.ESRCH, `no SA ${formatSaid(said)}`);
  engine.toSender(ep, buildMessage(saMessage(replyHeader(msg), sa!, { keys: true, current: true, limits: true, natT: true })));
};

/** A client ACQUIRE (an IKE daemon's failure report, or a request) goes to the registered sockets. */
const acquire: Handler = ({ engine, bytes, msg }) => {
  engine.settleAcquire(msg.header.seq);
  engine.toRegistered(msg.header.satype, bytes);
};

const register: Handler = ({ engine, ep, msg }) => {
  const satype = msg.header.satype;
  if (satype > SADB_SATYPE_MAX) refuse(ERRNO.EINVAL, `SA type ${satype} out of range`);
  ep.registered.add(satype);
  const lists = engine.supported.get(satype);
  const m: MessageInput = { header: replyHeader(msg) };
  const strip = (a: { id: number; ivlen: number; minbits: number; maxbits: number }) => ({ id: a.id, ivlen: a.ivlen, minbits: a.minbits, maxbits: a.maxbits });
  if (lists?.auth.length) m.supportedAuth = { algs: lists.auth.map(strip) };
  if (lists?.encrypt.length) m.supportedEncrypt = { algs: lists.encrypt.map(strip) };
  engine.toRegistered(satype, buildMessage(m));
};

/** A client EXPIRE changes nothing; KLIPS echoes it to every open socket. */
const expire: Handler = ({ engine, bytes }) => engine.toAll(bytes);

/** FLUSH of one SA type (KLIPS flushed everything whatever the type); eroutes stay. */
const flush: Handler = ({ engine, msg }) => {
  engine.sadb.flush(msg.header.satype);
  engine.toAll(headerOnly(replyHeader(msg)));
};

/** Work done per turn of the event loop by DUMP, so other sockets wait at most this long. */
const DUMP_SLICE_MS = 2;

/**
 * DUMP (KLIPS: ENOSYS): one reply per SA to the sender, seq counting down to 0 on the
 * last. It runs in slices of at most DUMP_SLICE_MS: first it lists the SAs (an SA deleted
 * before the listing reaches it is left out), then it sends them,
 * waiting whenever the sender's receive queue is full, so nothing is dropped.
 */
const dump: Handler = ({ engine, ep, msg }) => {
  const satype = msg.header.satype;
  if (engine.sadb.count(satype) === 0) refuse(ERRNO.ENOENT, 'no SAs to dump');
  const list: SA[] = [];
  const it = engine.sadb.values();
  let listing = true;
  let i = 0;
  const step = (): void => {
    const until = performance.now() + DUMP_SLICE_MS;
    for (let n = 0; !ep.closed; n++) {
      if ((n & 63) === 63 && performance.now() > until) { setImmediate(step); return; }
      if (listing) {
        const r = it.next();
        if (r.done) listing = false;
        else if (satype === 0 || r.value.satype === satype) list.push(r.value);
        continue;
      }
      if (i >= list.length) return;
      const sa = list[i];
      const header = { type: msg.header.type, satype: sa.satype, seq: list.length - 1 - i, pid: msg.header.pid };
      const bytes = buildMessage(saMessage(header, sa, { keys: true, current: true, limits: true, natT: true }));
      // Wait for the reader unless the message could never fit (then it is dropped and counted).
      if (ep.room() < bytes.length && bytes.length <= ep.rcvbuf) { ep.onDrain(step); return; }
      i++;
      engine.toSender(ep, bytes);
    }
  };
  step();
};

/** X_PROMISC (KLIPS: unusable): satype 1 on, 0 off, as Linux. */
const promisc: Handler = ({ engine, ep, msg }) => {
  if (msg.header.satype > 1) refuse(ERRNO.EINVAL, 'X_PROMISC takes satype 0 (off) or 1 (on)');
  ep.promisc = msg.header.satype === 1;
  engine.toSender(ep, headerOnly(replyHeader(msg)));
};

/** X_PCHANGE (defined by klips): satype 1 subscribes to eroute change notices, 0 stops. */
const pchange: Handler = ({ engine, ep, msg }) => {
  if (msg.header.satype > 1) refuse(ERRNO.EINVAL, 'X_PCHANGE takes satype 0 (unsubscribe) or 1 (subscribe)');
  ep.pchange = msg.header.satype === 1;
  engine.toSender(ep, headerOnly(replyHeader(msg)));
};

/** X_GRPSA links SA → SA2 (spigrp, inner to outer), or with no SA2 unlinks SA's chain. */
const grpsa: Handler = ({ engine, msg }) => {
  const first = engine.sadb.get(saidOfRequest(msg));
  if (!first) refuse(ERRNO.ENOENT, `no SA ${formatSaid(saidOfRequest(msg))}`);
  const has2 = [msg.sa2, msg.satype2, msg.addressDst2].filter(Boolean).length;
  if (has2 === 0) {
    engine.sadb.unlinkChain(first!);
  } else {
    if (has2 !== 3) refuse(ERRNO.EINVAL, 'grouping needs X_SATYPE2, X_SA2 and X_ADDRESS_DST2 together');
    const said2 = saidOf(msg.satype2!.satype, msg.sa2!.spi, msg.addressDst2!.addr);
    const second = engine.sadb.get(said2);
    if (!second) refuse(ERRNO.ENOENT, `no SA ${formatSaid(said2)}`);
    if (engine.sadb.link(first!, second!)) refuse(ERRNO.EEXIST, `${formatSaid(first!.said)} or ${formatSaid(said2)} is already grouped`);
  }
  engine.toAll(buildMessage({ header: replyHeader(msg), sa: msg.sa, addressDst: msg.addressDst, satype2: msg.satype2, sa2: msg.sa2, addressDst2: msg.addressDst2 }));
};

/** The request's flow, validated once by the eroute table (ErouteError EINVAL if malformed). */
function flowOfRequest(msg: PfkeyMessage): ValidFlow {
  const sf = msg.addressSrcFlow!;
  const df = msg.addressDstFlow!;
  const sm = msg.addressSrcMask!;
  const dm = msg.addressDstMask!;
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

const FLOW_REPLY = ['sa', 'addressSrc', 'addressDst', 'addressSrcFlow', 'addressDstFlow', 'addressSrcMask', 'addressDstMask', 'protocol'] as const;
function flowReply(msg: PfkeyMessage): MessageInput {
  const m: MessageInput = { header: replyHeader(msg) };
  for (const k of FLOW_REPLY) if (msg[k] !== undefined) (m as unknown as Record<string, unknown>)[k] = msg[k];
  return m;
}

const addflow: Handler = ({ engine, msg }) => {
  const flags = msg.sa!.flags;
  const said = saidOfRequest(msg);
  const flow = flowOfRequest(msg);
  if (flags & (SADB_X_SAFLAGS_INFLOW | SADB_X_SAFLAGS_POLICYONLY)) {
    // Inbound policy: stored on the IPIP SA of the group, no eroute (KLIPS).
    const sa = engine.sadb.get(said);
    if (!sa) refuse(ERRNO.ENOENT, `no SA ${formatSaid(said)}`);
    let tun: SA | undefined = sa;
    while (tun && tun.said.proto !== IPPROTO_IPIP) tun = tun.next;
    if (!tun) refuse(ERRNO.ENOENT, `no IPIP SA in the group of ${formatSaid(said)}`);
    tun!.inbound = { srcFlow: msg.addressSrcFlow!, srcMask: msg.addressSrcMask!, dstFlow: msg.addressDstFlow!, dstMask: msg.addressDstMask!, proto: flow.proto };
    tun!.flags |= flags & (SADB_X_SAFLAGS_INFLOW | SADB_X_SAFLAGS_POLICYONLY);
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
    engine.pchangeNotice(e!, flags & SADB_X_SAFLAGS_REPLACEFLOW, msg.header.seq);
    const sa = engine.sadb.get(said);
    if (sa) { sa.current.allocations++; engine.checkLimits(sa); }
  }
  engine.toAll(buildMessage(flowReply(msg)));
};

const delflow: Handler = ({ engine, msg }) => {
  const flags = msg.sa?.flags ?? 0;
  if (flags & SADB_X_SAFLAGS_CLEARFLOW) {
    for (const e of engine.spd.clear()) engine.pchangeNotice(e, SADB_X_SAFLAGS_CLEARFLOW, msg.header.seq);
  } else if (!(flags & SADB_X_SAFLAGS_POLICYONLY)) {
    let e;
    try {
      e = engine.spd.delete(flowOfRequest(msg));
    } catch (err) {
      erouteErrno(err);
    }
    engine.pchangeNotice(e!, SADB_X_SAFLAGS_CLEARFLOW, msg.header.seq);
  }
  engine.toAll(buildMessage(flowReply(msg)));
};

/** X_DEBUG: the top bit of the netlink word selects OR (set) or AND (clear), as klipsdebug sends it. */
const debug: Handler = ({ engine, ep, msg }) => {
  const d = msg.debug!;
  const set = (d.netlink >>> 31) === 1;
  for (const name of DEBUG_SUBSYSTEMS) {
    const v = name === 'netlink' ? d.netlink & 0x7fffffff : d[name];
    engine.debug[name] = (set ? engine.debug[name] | v : engine.debug[name] & v) >>> 0;
  }
  // KLIPS sends no reply; klips answers the sender with the flags now in force.
  engine.toSender(ep, buildMessage({ header: { ...replyHeader(msg), type: SADB_X_DEBUG }, debug: { ...engine.debug } }));
};

/** KLIPS's inbound NAT_T_NEW_MAPPING handler refuses with EINVAL: only the engine sends it. */
const natTNewMapping: Handler = () => refuse(ERRNO.EINVAL, 'X_NAT_T_NEW_MAPPING is sent by the kernel, not to it');

function ifName(ifnum: number): { name: string; transport: boolean } {
  if (ifnum >= IPSECDEV_OFFSET) return { name: `ipsec${ifnum - IPSECDEV_OFFSET}`, transport: false };
  if (ifnum >= MASTTRANSPORT_OFFSET) return { name: `mast${ifnum - MASTTRANSPORT_OFFSET}`, transport: true };
  return { name: `mast${ifnum}`, transport: false };
}

const plumbif: Handler = ({ engine, ep, msg }) => {
  const ifnum = msg.plumbif!.ifnum;
  if (engine.interfaces.has(ifnum)) refuse(ERRNO.EEXIST, `interface ${ifName(ifnum).name} exists`);
  engine.interfaces.set(ifnum, { ifnum, ...ifName(ifnum), created: engine.now(), pid: msg.header.pid });
  engine.toSender(ep, buildMessage({ header: replyHeader(msg), plumbif: msg.plumbif }));
};

const unplumbif: Handler = ({ engine, ep, msg }) => {
  const ifnum = msg.plumbif!.ifnum;
  if (!engine.interfaces.delete(ifnum)) refuse(ERRNO.ENODEV, `no interface ${ifName(ifnum).name}`);
  engine.toSender(ep, buildMessage({ header: replyHeader(msg), plumbif: msg.plumbif }));
};

/** The dispatch table, indexed by sadb_msg_type (0 is refused by the header check). */
export const HANDLERS: readonly Handler[] = [
  /* RESERVED */ () => refuse(ERRNO.EINVAL, 'message type 0'),
  getspi, update, add, del, get, acquire, register, expire, flush, dump,
  promisc, pchange, grpsa, addflow, delflow, debug, natTNewMapping, plumbif, unplumbif,
];

if (HANDLERS.length !== SADB_MAX + 1) throw new Error('HANDLERS must cover every message type');
export { ifName };
