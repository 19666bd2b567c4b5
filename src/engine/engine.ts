/**
 * The key engine: what KLIPS's kernel does when a PF_KEY message arrives. It owns the SA
 * table (with its SAref table), the eroute table, the virtual-interface table, the
 * supported-algorithm registry, the host's addresses (which make an SA inbound), debug
 * flags and a clock; it checks a message's header, parses it, dispatches it through
 * `HANDLERS[sadb_msg_type]` (the seed's msg_parsers[], in handlers.ts) and delivers the
 * replies: to the sender, to every open socket, to the sockets registered for an SA
 * type, and copies to promiscuous sockets. It also originates messages for the data
 * plane: ACQUIRE when traffic hits a %trap eroute, EXPIRE when a lifetime runs out,
 * NAT_T_NEW_MAPPING when a peer's port changes.
 *
 * A socket speaks KLIPS's numbering or the KAME dialect's (Linux's af_key): its messages
 * go to HANDLERS or to KAME_HANDLERS (kame.ts) over the same SA and eroute tables, and
 * its deliveries follow its own kernel's rules. What the engine originates (ACQUIRE,
 * EXPIRE, NAT_T_NEW_MAPPING) and every change to the tables reach the sockets of both
 * dialects, each in its own numbering. Template eroutes (a KAME policy's) are resolved
 * to SAs at packet time (routeTemplates, policy.ts).
 *
 * The common ADD, and a GET or DELETE of an SA it added, take a fast path (Engine.fast, with
 * wire/scan.ts and fast-path.ts): read in place, the SA stored as its request until
 * something asks for it, the reply written from the request, with the effects and bytes
 * of the general path (docs/semantics.md, "The fast path for ADD, GET and DELETE").
 *
 * The engine never sees a socket, only Endpoints (socket/ implements them).
 */

import {
  buildMessage, headerFault, readHeader, errnoName, parseMessage, headerOnly, allocMessage, PfkeyError, ERRNO,
  SADB_ACQUIRE, SADB_EXPIRE, SADB_X_NAT_T_NEW_MAPPING, SADB_X_PCHANGE, SADB_SATYPE_ESP, KAME_MSG_TYPE_NAMES,
  SADB_SASTATE_LARVAL, SADB_SASTATE_DEAD, AF_INET6, IPSEC_MANUAL_REQID_MAX, IPPROTO_ESP,
  SADB_X_SAFLAGS_REPLACEFLOW, SADB_X_SATYPE_INT, SPI_HOLD, SPI_TRAP,
  SPI_TRAPSUBNET, SADB_AALG_MD5HMAC, SADB_AALG_SHA1HMAC, SADB_EALG_3DESCBC, SADB_X_EALG_AESCBC,
  SADB_SAFLAGS_PFS, PROTO_TO_SATYPE, DEBUG_SUBSYSTEMS, MSG_TYPE_NAMES, prefixToMask,
  SADB_ADD, SADB_GET, SADB_DELETE, IPPROTO_AH, IPSEC_SAREF_NULL, formatIPv4Word, newSaScan, scanSa, frameAt, SADB_EXT_SA,
  type DebugSubsystem, type MessageInput, type Comb, type Address,
} from '../wire/index.js';
import { NO_LIMITS, Sadb, newSA, sharedLimits, type SA, type ExpiryKind, type StoredRequest } from '../sadb/sadb.js';
import { rd32be } from '../wire/bytes.js';
import { formatSaid, type Said } from '../sadb/said.js';
import { ErouteTable, type Eroute, type PacketSelector } from '../spd/eroute-table.js';
import { defaultSupported, type SupportedLists } from './algorithms.js';
import { HANDLERS, saOfStoredAdd } from './handlers.js';
import {
  ADDTIME, DELETE_REPLY_LENGTH, HARD, SOFT, addReplyLength, keysFit, readLimits, scratchFor, storedSaReply, writeAddReply, writeDeleteReply,
} from './fast-path.js';
import { isTableRef } from '../sadb/saref.js';
import { ACCEPTED, APPEND_DROPPED, SenderRefusal, type Endpoint, type EngineOps, type Verdict, type VirtualInterface } from './endpoint.js';
import { initialInterfaces } from './interfaces.js';
import { LocalAddresses, type AddressSource } from './local-addresses.js';
import {
  ACQ_EXPIRES, KAME_HANDLERS, kameAcquireMessage, kameNewMappingMessage, kameSaMessage, kameSatypeOf,
  kameSpdNotice, klipsAfter, klipsBefore,
} from './kame.js';
import { resolveTemplates, type Unresolved } from './policy.js';

export type { Endpoint, VirtualInterface, Request, EngineOps, Verdict } from './endpoint.js';
export { ACCEPTED, APPEND_DROPPED, APPEND_PUSH, sendErrno } from './endpoint.js';
import { lifetimeOf, saExtOf, saMessage } from './sa-extensions.js';

export interface EngineOptions {
  /** Seconds (may be fractional). Default: wall clock. */
  clock?: () => number;
  /** Uniform random integer in [0, n). Default: crypto-quality Math.random fallback. */
  random?: (n: number) => number;
  supported?: Map<number, SupportedLists>;
  /** Larval (GETSPI) SAs expire after this many seconds; 0 = never, as KLIPS. */
  larvalLifetime?: number;
  /** An ACQUIRE nobody answered is forgotten after this many seconds (default 60). */
  acquireLifetime?: number;
  /** The host's addresses, for marking SAs inbound. Default: os.networkInterfaces(). */
  localAddresses?: AddressSource;
  /** tick() reads the host's addresses again when this many seconds have passed (default 5). */
  localAddressRefresh?: number;
  /** Where debug lines go when a subsystem's flag is set. */
  log?: (subsystem: DebugSubsystem, text: string) => void;
  /** Held packets (from %hold/%trap eroutes) released when an eroute is replaced. */
  onRelease?: (eroute: Eroute, packets: Uint8Array[]) => void;
  /** KAME larval SAs (GETSPI, an ACQUIRE's) live this many seconds (Linux's xfrm_acq_expires; default 30). */
  kameAcquireExpires?: number;
  /**
   * Take the ADD, GET and DELETE fast paths for the messages they can (default true); false sends
   * every message through the parser and the handlers (the fast path's tests compare the
   * two).
   */
  fastPath?: boolean;
}

/** How a message reaches KAME sockets (Linux's pfkey_broadcast modes). */
export type KameDelivery = 'all' | 'one' | 'registered' | 'promisc';

/** Where an unresolved template eroute leaves a packet. */
export type TemplateRoute =
  | { ok: true; sas: SA[] }
  | { ok: false; reason: 'trap' | 'no-listener'; acquireSeq?: number; listeners: number };

/** The fast path's scratch (it never re-enters itself). */
const SCAN = newSaScan();
const STORED: StoredRequest = { bytes: new Uint8Array(0), view: new DataView(new ArrayBuffer(0)), at: 0, len: 0, satype: 0, addtime: 0, ref: 0, inbound: false };

export interface PendingAcquire {
  seq: number;
  selector: { family: number; src: string; dst: string; proto: number; sport: number; dport: number };
  sent: number;
}

/** KLIPS's ACQUIRE proposal, led by AES (KLIPS itself offered 3DES with MD5 or SHA1 only). */
function acquireProposal(): Comb[] {
  const comb = (auth: number, abits: number, enc: number, emin: number, emax: number): Comb => ({
    auth, encrypt: enc, flags: SADB_SAFLAGS_PFS,
    authMinbits: abits, authMaxbits: abits, encryptMinbits: emin, encryptMaxbits: emax,
    softAllocations: 0, hardAllocations: 0, softBytes: 0n, hardBytes: 0n,
    softAddtime: 57600n, hardAddtime: 86400n, softUsetime: 57600n, hardUsetime: 86400n,
  });
  return [
    comb(SADB_AALG_SHA1HMAC, 160, SADB_X_EALG_AESCBC, 128, 256),
    comb(SADB_AALG_MD5HMAC, 128, SADB_EALG_3DESCBC, 192, 192),
    comb(SADB_AALG_SHA1HMAC, 160, SADB_EALG_3DESCBC, 192, 192),
  ];
}

export class Engine implements EngineOps {
  readonly sadb = new Sadb();
  readonly spd: ErouteTable;
  /** Sockets of the KAME dialect (`endpoints` holds KLIPS's). */
  readonly kameEndpoints = new Set<Endpoint>();
  /** KAME sockets with a DUMP or X_SPDDUMP still being sent (a second one is EBUSY). */
  readonly kameDumping = new Set<Endpoint>();
  readonly kameAcquireExpires: number;
  /** Linux's gen_reqid counter: kernel-chosen reqids start above IPSEC_MANUAL_REQID_MAX. */
  kameReqidGen = IPSEC_MANUAL_REQID_MAX;
  /** KAME larval SAs by the ACQUIRE seq they stand for (Linux's byseq index); stale entries are skipped. */
  private readonly larvals = new Map<number, SA>();
  /** Every KAME larval SA (GETSPI's, an ACQUIRE's), so finding one by its endpoints never walks the SA table. */
  private readonly larvalSet = new Set<SA>();
  /**
   * ACQUIREs under way with no larval SA of their own (the SAID with SPI 0 to that
   * destination was taken by another source's): when each may be sent again.
   */
  private readonly acquireUntil = new Map<string, number>();
  readonly interfaces: Map<number, VirtualInterface>;
  readonly supported: Map<number, SupportedLists>;
  readonly debug: Record<DebugSubsystem, number>;
  readonly endpoints = new Set<Endpoint>();
  /** `endpoints` as an array, in the same order, for the loops every reply takes (no iterator per message). */
  private endpointList: Endpoint[] = [];
  readonly pendingAcquires = new Map<number, PendingAcquire>();
  readonly larvalLifetime: number;
  readonly acquireLifetime: number;
  readonly localAddresses: LocalAddresses;
  private readonly localAddressRefresh: number;
  private localAddressesRead: number;
  /**
   * Counters for /proc-style views and the daemon's stats. `traps`: calls of acquire()
   * (KLIPS's trap_count); `acquires`: ACQUIREs sent (trap_sendcount).
   */
  readonly stats = { requests: 0, errors: 0, traps: 0, acquires: 0, expires: 0, dropped: 0 };
  private msgSeq = 0;
  readonly now: () => number;
  private readonly ownClock: boolean;
  /** The wall-clock time of the message being handled, or -1 between messages. */
  private msgNow = -1;
  /** The wall-clock time read for the batch of messages being handled (beginBatch), or -1. */
  private batchNow = -1;
  /** Between beginBatch() and endBatch(). */
  private inBatch = false;
  readonly random: (n: number) => number;
  private readonly logFn?: (subsystem: DebugSubsystem, text: string) => void;
  /** Where held packets go when their eroute is replaced (the data plane's runtime sets it). */
  onRelease?: (eroute: Eroute, packets: Uint8Array[]) => void;
  private readonly fastPath: boolean;

  constructor(opts: EngineOptions = {}) {
    this.fastPath = opts.fastPath ?? true;
    // ADDs the fast path stored become SAs through the ADD handler's own code.
    this.sadb.builder = saOfStoredAdd;
    this.ownClock = opts.clock === undefined;
    // The wall clock is read once per message (handle sets msgNow), or once per batch, not once per use.
    this.now = opts.clock ?? (() => (this.msgNow >= 0 ? this.msgNow : this.wallClock()));
    this.random = opts.random ?? ((n) => Math.floor(Math.random() * n));
    this.supported = opts.supported ?? defaultSupported();
    this.larvalLifetime = opts.larvalLifetime ?? 0;
    this.acquireLifetime = opts.acquireLifetime ?? 60;
    this.kameAcquireExpires = opts.kameAcquireExpires ?? ACQ_EXPIRES;
    this.logFn = opts.log;
    this.onRelease = opts.onRelease;
    this.spd = new ErouteTable(() => Math.floor(this.now()));
    this.localAddresses = new LocalAddresses(opts.localAddresses);
    this.localAddressRefresh = opts.localAddressRefresh ?? 5;
    this.localAddressesRead = this.now();
    this.interfaces = new Map(initialInterfaces(this.now()).map((i) => [i.ifnum, i]));
    this.debug = Object.fromEntries(DEBUG_SUBSYSTEMS.map((n) => [n, 0])) as Record<DebugSubsystem, number>;
  }

  // ---------- endpoints ----------

  attach(ep: Endpoint): void {
    if (ep.dialect === 'kame') this.kameEndpoints.add(ep);
    else if (!this.endpoints.has(ep)) {
      this.endpoints.add(ep);
      this.endpointList.push(ep);
    }
  }

  /** A closed socket is unregistered and leaves promiscuous mode (KLIPS pfkey_release). */
  detach(ep: Endpoint): void {
    if (this.endpoints.delete(ep)) this.endpointList = this.endpointList.filter((e) => e !== ep);
    this.kameEndpoints.delete(ep);
    this.kameDumping.delete(ep);
    ep.registered.clear();
    ep.promisc = false;
    ep.pchange = false;
  }

  log(subsystem: DebugSubsystem, text: string): void {
    if (this.debug[subsystem] && this.logFn) this.logFn(subsystem, text);
  }

  nextSeq(): number {
    this.msgSeq = (this.msgSeq + 1) >>> 0 || 1;
    return this.msgSeq;
  }

  // ---------- the way in ----------

  /**
   * Messages that arrived together (klipsd: one read from a connection) are handled as
   * a batch, from beginBatch() to endBatch(): on one reading of the wall clock (each
   * message takes the time read when one of the batch first needed it, where it would
   * otherwise read the clock itself, which costs about as much as the rest of an ADD's
   * bookkeeping; a batch that needs no time reads none; an injected clock is asked as
   * always), and with the requests the ADD fast path stores copied in
   * one go at the end (the caller must not change their buffers before endBatch()).
   * The data plane's packets of one drain (a part of a runtime turn, at most 1 ms) are a
   * batch too: their traffic is counted against the SAs' lifetimes at that one time.
   * Given the read (`u8`, its whole messages back to back from byte `from`; -1: not
   * known), the SA index is read ahead for them (touchSpis).
   */
  beginBatch(u8?: Uint8Array, from = 0): void {
    this.inBatch = true;
    this.batchNow = -1;
    if (u8 !== undefined && from >= 0 && this.fastPath) this.touchSpis(u8, from);
  }

  /** The wall clock for a message: outside a batch read now; in a batch read by its first message and shared (beginBatch). */
  private wallClock(): number {
    if (!this.inBatch) return Date.now() / 1000;
    if (this.batchNow < 0) this.batchNow = Date.now() / 1000;
    return this.batchNow;
  }

  /** What touchSpis read, kept so that its reads are not optimized away. */
  private touched = 0;

  /**
   * The batch's messages lie back to back in `u8` from `from`: read the SA index slots of
   * the SPIs their SA extensions name (ADD, GET, DELETE with the SA extension first, as
   * every KLIPS tool writes them) before handling them one by one, so that their cache
   * misses overlap (Sadb.touchSpi). A hint only: what it reads decides nothing. A lone
   * message (a GET's read) has no misses to overlap.
   */
  private touchSpis(u8: Uint8Array, from: number): void {
    if (from + 6 > u8.length || from + (u8[from + 4] | (u8[from + 5] << 8)) * 8 >= u8.length) return;
    let t = 0;
    for (let o = from; o + 24 <= u8.length;) {
      const n = (u8[o + 4] | (u8[o + 5] << 8)) * 8;
      if (n === 0) break;
      const type = u8[o + 1];
      if ((type === SADB_ADD || type === SADB_GET || type === SADB_DELETE) && u8[o + 18] === SADB_EXT_SA && u8[o + 19] === 0) {
        t ^= this.sadb.touchSpi(rd32be(u8, o + 20));
      }
      o += n;
    }
    this.touched = t;
  }

  endBatch(): void {
    this.inBatch = false;
    this.batchNow = -1;
    this.sadb.flushStored();
  }

  /**
   * Handle one message a client sent on `ep` (KLIPS's pfkey_sendmsg) and return the
   * verdict: errno 0 (ACCEPTED), or the errno with where and why it was refused. This is
   * the one place a request is checked; callers read the verdict instead of checking
   * again. A header-level fault (stage 'header') produces no message, as KLIPS's sendmsg;
   * any later refusal (stage 'message') is also answered with a header-only errno message
   * to every open socket (or, for X_PLUMBIF, the request to its sender alone).
   */
  handle(ep: Endpoint, request: Uint8Array): Verdict {
    if (ep.dialect === 'kame') return this.handleKame(ep, request);
    if (this.fastPath && this.fast(ep, request, 0, request.length)) return ACCEPTED;
    return this.handleKlips(ep, request);
  }

  /** handle() of a KLIPS-dialect message, through the parser and HANDLERS. */
  private handleKlips(ep: Endpoint, request: Uint8Array): Verdict {
    this.stats.requests++;
    const fault = headerFault(request);
    if (fault) {
      this.stats.errors++;
      this.log('pfkey', `refused before dispatch: ${errnoName(fault.errno)}: ${fault.why}`);
      return { errno: fault.errno, stage: 'header', offset: fault.offset, why: fault.why };
    }
    const header = readHeader(request);
    // Our own copy: nothing queued anywhere may share memory with the caller's buffer.
    const bytes = allocMessage(request.length);
    bytes.set(request);
    this.copyToPromisc(bytes, ep);
    if (this.ownClock) this.msgNow = this.wallClock();
    try {
      const msg = parseMessage(bytes, { direction: 'in', keyViews: true, header });
      if (this.debug.pfkey) this.log('pfkey', `${MSG_TYPE_NAMES[header.type]} seq=${header.seq} pid=${header.pid} from socket ${ep.id}`);
      // The KAME sockets hear of the SAs this changes (eroute changes reach them through pchangeNotice).
      const before = this.kameEndpoints.size ? klipsBefore(this, msg) : undefined;
      HANDLERS[header.type]({ engine: this, ep, msg, bytes });
      if (before) klipsAfter(this, msg, before);
      return ACCEPTED;
    } catch (e) {
      if (!(e instanceof PfkeyError)) throw e;
      this.stats.errors++;
      this.log('pfkey', `${MSG_TYPE_NAMES[header.type]} seq=${header.seq} refused: ${e.message}`);
      if (e instanceof SenderRefusal) {
        this.toSender(ep, e.reply);
      } else {
        this.toAll(headerOnly({ type: header.type, satype: header.satype, errno: e.errno, seq: header.seq, pid: header.pid }));
      }
      return { errno: e.errno, stage: 'message', offset: e.offset, exttype: e.exttype, why: e.reason };
    } finally {
      this.msgNow = -1;
    }
  }

  /**
   * handle() for the message at bytes [off, off + len) of `buf` (klipsd's frames, in the
   * chunk they arrived in): the fast path reads it in place; any other message is handled
   * as a view.
   */
  handleAt(ep: Endpoint, buf: Uint8Array, off: number, len: number): Verdict {
    if (ep.dialect === 'kame') return this.handleKame(ep, frameAt(buf, off, len));
    if (this.fastPath && this.fast(ep, buf, off, len)) return ACCEPTED;
    return this.handleKlips(ep, frameAt(buf, off, len));
  }

  /**
   * The fast paths, for an ADD, GET or DELETE of the shapes wire's scanSa reads in place (only
   * while no KAME socket is open, which would hear of SAs, and pfkey debugging is off):
   * true when one handled the message, false (nothing done) for the general path.
   */
  private fast(ep: Endpoint, u8: Uint8Array, off: number, len: number): boolean {
    const type = u8[off + 1];
    if ((type !== SADB_ADD && type !== SADB_GET && type !== SADB_DELETE) || this.kameEndpoints.size !== 0 || this.debug.pfkey !== 0) return false;
    if (!scanSa(u8, off, len, SCAN)) return false;
    return type === SADB_ADD ? this.addFast(ep, u8, off, len) : type === SADB_GET ? this.getFast(ep, u8, off, len) : this.deleteFast(ep, u8, off, len);
  }

  /**
   * The DELETE fast path: a DELETE of an SA the table still stores as its ADD removes it
   * without making it (a stored SA is in no group), with what handle() and the DELETE
   * handler do: a copy of the request to promiscuous sockets, the SA and its SAref gone,
   * the reply to every socket. A DELETE of any other SA, or for none, or while a DUMP
   * pins the table, takes the general path.
   */
  private deleteFast(ep: Endpoint, u8: Uint8Array, off: number, len: number): boolean {
    const s = SCAN;
    const proto = s.satype === SADB_SATYPE_ESP ? IPPROTO_ESP : IPPROTO_AH;
    const key = this.sadb.storedKey(proto, s.spi, formatIPv4Word(s.view.getUint32(s.dst + 12)));
    if (key < 0 || !this.sadb.readStored(key, STORED)) return false;
    const ref = isTableRef(STORED.ref) ? STORED.ref : IPSEC_SAREF_NULL;
    if (!this.sadb.removeStored(key)) return false;
    this.stats.requests++;
    this.promiscCopy(ep, u8, off, len);
    const reply = scratchFor(DELETE_REPLY_LENGTH);
    writeDeleteReply(reply.view, 0, s, ref);
    const eps = this.endpointList;
    for (let i = 0; i < eps.length; i++) this.pushCopy(eps[i], reply.bytes, DELETE_REPLY_LENGTH);
    return true;
  }

  /**
   * The GET fast path: a GET for an SA the table still stores as its ADD is answered from
   * the stored request (fast-path.ts, as DUMP answers it) without making the SA, with what
   * handle() and the GET handler do: a copy of the request to promiscuous sockets, the
   * reply to the sender (and promiscuous sockets). A GET for any other SA, or for none,
   * takes the general path.
   */
  private getFast(ep: Endpoint, u8: Uint8Array, off: number, len: number): boolean {
    const s = SCAN;
    const proto = s.satype === SADB_SATYPE_ESP ? IPPROTO_ESP : IPPROTO_AH;
    const key = this.sadb.storedKey(proto, s.spi, formatIPv4Word(s.view.getUint32(s.dst + 12)));
    if (key < 0) return false;
    this.stats.requests++;
    this.promiscCopy(ep, u8, off, len);
    const reply = storedSaReply(this.sadb, key, SADB_GET, s.seq, s.pid);
    if (reply !== undefined) this.toSenderCopy(ep, reply);
    return true;
  }

  /** Copies of a request read in place for promiscuous sockets (the general path's copyToPromisc). */
  private promiscCopy(ep: Endpoint, u8: Uint8Array, off: number, len: number): void {
    const eps = this.endpointList;
    for (let i = 0; i < eps.length; i++) {
      if (eps[i].promisc && eps[i] !== ep) {
        const copy = allocMessage(len);
        copy.set(u8.subarray(off, off + len));
        this.copyToPromisc(copy, ep);
        return;
      }
    }
  }

  /**
   * The ADD fast path: an ADD of the shape wire's scanSa reads in place that the ADD
   * handler would accept (its algorithms and keys fit, its SAID is free) is handled
   * here with the same effects, in the same order, as through handle(): promiscuous
   * sockets get a copy of the request, the SA goes into the table (stored as its request
   * and made into an SA when first asked for, by the handler's own code), its ACQUIRE is
   * settled, and every socket gets the reply (fast-path.ts writes it from the request's
   * bytes). Returns false, having done nothing, for anything else, which then takes the
   * general path: another shape, any refusal, KAME sockets to notify, pfkey debugging on.
   */
  private addFast(ep: Endpoint, u8: Uint8Array, off: number, len: number): boolean {
    const s = SCAN;
    const proto = s.satype === SADB_SATYPE_ESP ? IPPROTO_ESP : IPPROTO_AH;
    const dst = formatIPv4Word(s.view.getUint32(s.dst + 12));
    if (this.sadb.contains(proto, s.spi, dst) || !keysFit(this.supported.get(s.satype), s)) return false;
    this.stats.requests++;
    this.promiscCopy(ep, u8, off, len);
    // wallClock()'s common case written out: called only for a batch's first ADD, V8 keeps it
    // out of line and keeps its inlining budget for the rest (with the call, ADDs ran 1-4% slower).
    if (this.ownClock) this.msgNow = this.batchNow >= 0 ? this.batchNow : this.wallClock();
    try {
      const now = this.now();
      const inbound = this.localAddresses.has(dst);
      const ref = s.ref !== IPSEC_SAREF_NULL ? s.ref : this.sadb.sarefs.alloc();
      readLimits(s);
      this.sadb.insertStored(proto, s.spi, dst, s.satype, u8, off, len, now, ref, inbound, SOFT[ADDTIME], HARD[ADDTIME]);
      // A lone message's buffer is its sender's again once handle() returns.
      if (!this.inBatch) this.sadb.flushStored();
      if (this.pendingAcquires.size !== 0) this.settleAcquire(s.seq);
      const n = addReplyLength(s);
      const eps = this.endpointList;
      // One socket (a key manager's alone): the reply is written straight into its queue.
      const one = eps.length === 1 && !eps[0].closed && eps[0].append !== undefined ? eps[0] : undefined;
      const at = one !== undefined ? one.append!(n) : APPEND_DROPPED;
      if (at >= 0) writeAddReply(one!.appendView!, at, s, ref, inbound);
      else if (one !== undefined && at === APPEND_DROPPED) this.stats.dropped++;
      else {
        const reply = scratchFor(n);
        writeAddReply(reply.view, 0, s, ref, inbound);
        for (let i = 0; i < eps.length; i++) this.pushCopy(eps[i], reply.bytes, n);
      }
    } finally {
      this.msgNow = -1;
    }
    return true;
  }

  /**
   * Handle one message on a KAME socket, as Linux's pfkey_sendmsg: a header Linux cannot
   * take (pfkey_get_base_msg) is a 'header' verdict and no message at all, as send()
   * fails; otherwise promiscuous sockets get a copy of the request, and a refusal by the
   * parser or a handler is answered to the sender alone (and promiscuous sockets) with the
   * request's header and the errno, send() having succeeded.
   */
  private handleKame(ep: Endpoint, request: Uint8Array): Verdict {
    this.stats.requests++;
    const fault = headerFault(request, 'kame');
    if (fault) {
      this.stats.errors++;
      this.log('pfkey', `refused before dispatch (KAME): ${errnoName(fault.errno)}: ${fault.why}`);
      return { errno: fault.errno, stage: 'header', offset: fault.offset, why: fault.why };
    }
    const header = readHeader(request);
    const bytes = allocMessage(request.length);
    bytes.set(request);
    this.kameBroadcast(bytes, 'promisc');
    if (this.ownClock) this.msgNow = this.wallClock();
    try {
      const msg = parseMessage(bytes, { dialect: 'kame', direction: 'in', keyViews: true, header });
      if (this.debug.pfkey) this.log('pfkey', `KAME ${KAME_MSG_TYPE_NAMES[header.type]} seq=${header.seq} pid=${header.pid} from socket ${ep.id}`);
      KAME_HANDLERS[header.type]({ engine: this, ep, msg, bytes });
      return ACCEPTED;
    } catch (e) {
      if (!(e instanceof PfkeyError)) throw e;
      this.stats.errors++;
      this.log('pfkey', `KAME ${KAME_MSG_TYPE_NAMES[header.type]} seq=${header.seq} refused: ${e.message}`);
      this.kameBroadcast(headerOnly({ type: header.type, satype: header.satype, errno: e.errno, seq: header.seq, pid: header.pid }), 'one', ep);
      return { errno: e.errno, stage: 'message', offset: e.offset, exttype: e.exttype, why: e.reason };
    } finally {
      this.msgNow = -1;
    }
  }

  // ---------- delivery ----------

  /**
   * Deliver to KAME sockets as Linux's pfkey_broadcast: every promiscuous socket gets a
   * copy; then 'all' every socket, 'registered' every socket registered for any SA type,
   * 'one' and 'promisc' nobody else; and `one` (the sender) its own copy last. Returns how
   * many sockets got it besides promiscuous copies.
   */
  kameBroadcast(bytes: Uint8Array, how: KameDelivery, one?: Endpoint): number {
    let n = 0;
    for (const ep of this.kameEndpoints) {
      if (ep.promisc) this.push(ep, bytes);
      if (ep === one || how === 'one' || how === 'promisc') continue;
      if (how === 'registered' && ep.registered.size === 0) continue;
      this.push(ep, bytes);
      n++;
    }
    if (one) {
      this.push(one, bytes);
      n++;
    }
    return n;
  }

  /** KAME sockets registered for any SA type: Linux sends ACQUIRE and EXPIRE to them. */
  kameRegistered(): number {
    let n = 0;
    for (const ep of this.kameEndpoints) if (ep.registered.size) n++;
    return n;
  }

  /** The KAME larval SA standing for an ACQUIRE (or a GETSPI that answered one) with this seq. */
  larvalBySeq(seq: number): SA | undefined {
    const sa = this.larvals.get(seq);
    if (sa && this.sadb.get(sa.said) === sa && sa.state === SADB_SASTATE_LARVAL) return sa;
    this.larvals.delete(seq);
    return undefined;
  }

  noteLarval(sa: SA): void {
    if (sa.seq) this.larvals.set(sa.seq, sa);
    this.larvalSet.add(sa);
  }

  /** The KAME larval SAs still in the table and still larval (others are forgotten on the way). */
  *kameLarvals(): IterableIterator<SA> {
    for (const sa of this.larvalSet) {
      if (this.sadb.get(sa.said) === sa && sa.state === SADB_SASTATE_LARVAL) yield sa;
      else this.larvalSet.delete(sa);
    }
  }

  private push(ep: Endpoint, bytes: Uint8Array): void {
    if (ep.closed) return;
    if (!ep.deliver(bytes)) this.stats.dropped++;
  }

  /** push() of the first `len` bytes of a scratch the engine reuses. */
  private pushCopy(ep: Endpoint, scratch: Uint8Array, len: number): void {
    if (ep.closed) return;
    if (!(ep.deliverCopy ? ep.deliverCopy(scratch, len) : ep.deliver(scratch.slice(0, len)))) this.stats.dropped++;
  }

  /** Copies of a message for promiscuous sockets that are not among its recipients. */
  private copyToPromisc(bytes: Uint8Array, except: Endpoint): void {
    const eps = this.endpointList;
    for (let i = 0; i < eps.length; i++) if (eps[i].promisc && eps[i] !== except) this.push(eps[i], bytes);
  }

  private toSet(bytes: Uint8Array, recipients: Iterable<Endpoint>): void {
    const got: Endpoint[] = [];
    for (const ep of recipients) { this.push(ep, bytes); got.push(ep); }
    for (const ep of this.endpoints) if (ep.promisc && !got.includes(ep)) this.push(ep, bytes);
  }

  toAll(bytes: Uint8Array): void {
    const eps = this.endpointList;
    for (let i = 0; i < eps.length; i++) this.push(eps[i], bytes);
  }

  toSender(ep: Endpoint, bytes: Uint8Array): void {
    this.push(ep, bytes);
    this.copyToPromisc(bytes, ep);
  }

  /** toSender() of a scratch the caller reuses (each recipient gets a copy). */
  toSenderCopy(ep: Endpoint, scratch: Uint8Array): void {
    this.pushCopy(ep, scratch, scratch.length);
    const eps = this.endpointList;
    for (let i = 0; i < eps.length; i++) if (eps[i].promisc && eps[i] !== ep) this.pushCopy(eps[i], scratch, scratch.length);
  }

  registeredFor(satype: number): Endpoint[] {
    return [...this.endpoints].filter((e) => e.registered.has(satype));
  }

  toRegistered(satype: number, bytes: Uint8Array): number {
    const r = this.registeredFor(satype);
    this.toSet(bytes, r);
    return r.length;
  }

  // ---------- data-plane hooks ----------

  /** Find the eroute a packet matches (counting it), as the data plane's outbound path does. */
  route(pkt: PacketSelector): Eroute | undefined {
    return this.spd.match(pkt);
  }

  /**
   * "A packet from A to B needs an SA": send SADB_ACQUIRE to the sockets registered for
   * ESP and, as KLIPS does, turn the trap into a hold that caches the packet (%trap: a new
   * host-to-host %hold eroute; %trapsubnet: the trap eroute itself becomes %hold).
   * Returns the ACQUIRE's seq, or throws PfkeyError(EPROTONOSUPPORT) when nobody listens.
   */
  acquire(
    sel: { family: number; src: string; dst: string; proto: number; sport: number; dport: number },
    trap?: Eroute,
    packet?: Uint8Array,
  ): number {
    this.stats.traps++;
    if (this.registeredFor(SADB_SATYPE_ESP).length === 0 && this.kameRegistered() === 0) {
      throw new PfkeyError(ERRNO.EPROTONOSUPPORT, 'no socket registered for ESP');
    }
    const portSpecific = trap ? trap.flow.proto !== 0 || trap.flow.sport !== 0 || trap.flow.dport !== 0 : true;
    const seq = this.nextSeq();
    this.klipsAcquire(seq, SADB_SATYPE_ESP, sel, portSpecific, trap);
    // The KAME sockets get Linux's ACQUIRE for an ESP transport template between the packet's addresses.
    if (trap) this.kameBroadcast(buildMessage(kameAcquireMessage(seq, IPPROTO_ESP, { family: sel.family, addr: sel.src }, { family: sel.family, addr: sel.dst }, trap, 0)), 'registered');
    this.stats.acquires++;
    this.pendingAcquires.set(seq, { seq, selector: { ...sel }, sent: this.now() });
    this.log('pfkey', `ACQUIRE seq=${seq} ${sel.src} -> ${sel.dst}`);
    if (trap) this.holdAfterTrap(trap, sel, packet);
    return seq;
  }

  /** KLIPS's ACQUIRE (pfkey_acquire) to the KLIPS sockets registered for `satype`: the packet's addresses, the eroute's identities, KLIPS's proposal. */
  private klipsAcquire(seq: number, satype: number, sel: PendingAcquire['selector'], portSpecific: boolean, trap?: Eroute): void {
    const addr = (a: string, port: number): Address => ({
      proto: portSpecific ? sel.proto : 0, prefixlen: 0, family: sel.family,
      port: portSpecific ? port : 0, addr: a, ...(sel.family === 10 ? { flowinfo: 0, scopeId: 0 } : {}),
    });
    const m: MessageInput = {
      header: { type: SADB_ACQUIRE, satype, seq, pid: 0 },
      addressSrc: addr(sel.src, sel.sport),
      addressDst: addr(sel.dst, sel.dport),
      proposal: { replay: 64, combs: acquireProposal() },
    };
    if (trap?.identSrc) m.identitySrc = { type: trap.identSrc.type, id: 0n, data: trap.identSrc.data };
    if (trap?.identDst) m.identityDst = { type: trap.identDst.type, id: 0n, data: trap.identDst.data };
    if (this.registeredFor(satype).length) this.toRegistered(satype, buildMessage(m));
  }

  /**
   * The SAs a packet takes under a template eroute (a KAME IPSEC policy), in the order
   * they apply, or why it stops: a required template with no SA sends ACQUIRE (Linux's
   * xfrm_state_find: to the KAME sockets registered for anything, with the policy; to the
   * KLIPS sockets registered for its SA type, as KLIPS's) and leaves a larval SA (SPI 0)
   * for kameAcquireExpires seconds, during which further packets are dropped without
   * another ACQUIRE; an optional template's ACQUIRE is sent likewise while the packet goes
   * on without it. A dry run (klips trace) sends and changes nothing.
   */
  routeTemplates(e: Eroute, sel: PendingAcquire['selector'], dryRun = false): TemplateRoute {
    const r = resolveTemplates(this.sadb, e, sel.src, sel.dst);
    const listeners = (u: Unresolved) => this.kameRegistered() + this.registeredFor(PROTO_TO_SATYPE[u.template.proto] ?? 0).length;
    if (!dryRun) for (const u of r.optionalMissing) if (!u.larval && listeners(u)) this.acquireTemplate(e, u, sel);
    if (r.ok) return { ok: true, sas: r.sas };
    const u = r.missing;
    const n = listeners(u);
    if (u.larval || (this.acquireUntil.get(this.acquireKey(u)) ?? 0) > this.now()) return { ok: false, reason: 'trap', listeners: n };
    if (n === 0) return { ok: false, reason: 'no-listener', listeners: 0 };
    if (dryRun) return { ok: false, reason: 'trap', listeners: n };
    return { ok: false, reason: 'trap', acquireSeq: this.acquireTemplate(e, u, sel), listeners: n };
  }

  private acquireKey(u: Unresolved): string {
    const t = u.template;
    return `${t.proto}|${t.mode}|${t.reqid}|${u.src}|${u.dst}`;
  }

  private acquireTemplate(e: Eroute, u: Unresolved, sel: PendingAcquire['selector']): number {
    this.stats.traps++;
    const t = u.template;
    const seq = this.nextSeq();
    const satype = PROTO_TO_SATYPE[t.proto];
    const now = this.now();
    const addr = (a: string): Address => (t.family === AF_INET6
      ? { proto: 0, prefixlen: 0, family: t.family, port: 0, addr: a, flowinfo: 0, scopeId: 0 }
      : { proto: 0, prefixlen: 0, family: t.family, port: 0, addr: a });
    const said: Said = { proto: t.proto, spi: 0, dst: u.dst };
    if (this.sadb.has(said)) {
      this.acquireUntil.set(this.acquireKey(u), now + this.kameAcquireExpires);
    } else {
      const larval = newSA({
        said, satype, state: SADB_SASTATE_LARVAL, replay: 0, auth: 0, encrypt: 0, flags: 0,
        src: addr(u.src), dst: addr(u.dst), proxy: undefined, identSrc: undefined, identDst: undefined,
        natT: undefined, plumbif: undefined, ref: 0, refhim: 0, dir: this.localAddresses.has(u.dst) ? 'in' : 'out',
        soft: sharedLimits(NO_LIMITS()), hard: sharedLimits({ ...NO_LIMITS(), addtime: this.kameAcquireExpires }),
        used: false, pid: 0, seq, kame: { mode: t.mode, reqid: t.reqid }, addtime: now,
      });
      this.sadb.insert(larval);
      this.noteLarval(larval);
    }
    this.klipsAcquire(seq, satype, sel, e.flow.proto !== 0 || e.flow.sport !== 0 || e.flow.dport !== 0);
    this.kameBroadcast(buildMessage(kameAcquireMessage(seq, t.proto, { family: t.family, addr: u.src }, { family: t.family, addr: u.dst }, e, e.policy?.priority ?? 0)), 'registered');
    this.stats.acquires++;
    this.pendingAcquires.set(seq, { seq, selector: { ...sel }, sent: now });
    this.log('pfkey', `ACQUIRE seq=${seq} ${u.src} -> ${u.dst} (template of policy ${e.id})`);
    return seq;
  }

  private holdAfterTrap(trap: Eroute, sel: PendingAcquire['selector'], packet?: Uint8Array): void {
    const hold: Said = { proto: trap.said.proto, spi: SPI_HOLD, dst: trap.said.dst };
    if (trap.said.spi === SPI_TRAPSUBNET) {
      const { now } = this.spd.replace(trap.flow, hold, { pid: 0 });
      if (packet) now.held = packet;
      this.pchangeNotice(now, SADB_X_SAFLAGS_REPLACEFLOW, 0);
    } else if (trap.said.spi === SPI_TRAP) {
      const host = sel.family === 10 ? 128 : 32;
      const flow = ErouteTable.makeFlow(sel.family, sel.src, host, sel.dst, host,
        trap.flow.proto ? sel.proto : 0, trap.flow.sport ? sel.sport : 0, trap.flow.dport ? sel.dport : 0);
      const existing = this.spd.get(flow);
      const e = existing ?? this.spd.add(flow, hold, { pid: 0 });
      if (packet) e.held = packet;
      if (!existing) this.pchangeNotice(e, 0, 0);
    }
  }

  /** Resolve a pending ACQUIRE when an UPDATE/ADD (or an errno ACQUIRE) carries its seq. */
  settleAcquire(seq: number): boolean {
    return this.pendingAcquires.delete(seq);
  }

  /** Count traffic on an SA (bytes and packets); fires soft/hard EXPIRE as limits are reached. */
  countTraffic(said: Said, bytes: number, packets = 1): ExpiryKind | undefined {
    const sa = this.sadb.get(said);
    return sa ? this.countOn(sa, bytes, packets) : undefined;
  }

  /**
   * countTraffic for an SA a path found in the table itself: `asOf` is the table's
   * version when it did. While nothing has changed since, `sa` is the table's own and is
   * counted without a second lookup; otherwise it is found again by its SAID.
   */
  countTrafficOn(sa: SA, asOf: number, bytes: number, packets = 1): ExpiryKind | undefined {
    return asOf === this.sadb.version ? this.countOn(sa, bytes, packets) : this.countTraffic(sa.said, bytes, packets);
  }

  /** Count traffic on `sa`, the table's own, and apply the expiry it reaches. */
  private countOn(sa: SA, bytes: number, packets: number): ExpiryKind | undefined {
    const kind = this.sadb.countTraffic(sa, bytes, packets, this.now());
    if (kind) this.expire(sa, kind);
    return kind;
  }

  /** Check allocation limits after an eroute was bound to an SA. */
  checkLimits(sa: SA): void {
    const kind = this.sadb.reached(sa, this.now());
    if (kind) this.expire(sa, kind);
  }

  /**
   * Fire time-based expiries that are due, and read the host's addresses again when
   * `localAddressRefresh` seconds have passed. Call it periodically (klipsd: every second).
   */
  tick(): number {
    const now = this.now();
    if (now - this.localAddressesRead >= this.localAddressRefresh) {
      this.localAddresses.refresh();
      this.localAddressesRead = now;
    }
    for (const [seq, p] of this.pendingAcquires) if (now - p.sent >= this.acquireLifetime) this.pendingAcquires.delete(seq);
    for (const [k, until] of this.acquireUntil) if (until <= now) this.acquireUntil.delete(k);
    const due = this.sadb.due(now);
    for (const { sa, kind } of due) this.expire(sa, kind);
    return due.length;
  }

  /**
   * Send EXPIRE and apply it: soft → DYING, hard → deleted. KLIPS's to every open KLIPS
   * socket (as KLIPS); Linux's (no keys, seq 0, pid 0) to the KAME sockets registered for
   * any SA type, for an SA the KAME dialect can name. The larval SA an ACQUIRE left
   * (SPI 0) is KAME's alone.
   */
  expire(sa: SA, kind: ExpiryKind): void {
    if (kind === 'soft') this.sadb.markSoft(sa);
    if (sa.said.spi !== 0 || sa.state !== SADB_SASTATE_LARVAL || !sa.kame) {
      const m = saMessage({ type: SADB_EXPIRE, satype: sa.satype, seq: this.nextSeq(), pid: 0 }, sa, { current: true, noIdentities: true });
      if (kind === 'hard') m.lifetimeHard = lifetimeOf(sa.hard);
      else m.lifetimeSoft = lifetimeOf(sa.soft);
      this.toAll(buildMessage(m));
    }
    const kameSatype = kameSatypeOf(sa);
    if (kameSatype !== undefined && this.kameEndpoints.size) {
      const k = kind === 'hard'
        ? kameSaMessage({ type: SADB_EXPIRE, satype: kameSatype, seq: 0, pid: 0 }, sa, { keys: false, hsc: 2, state: SADB_SASTATE_DEAD })
        : kameSaMessage({ type: SADB_EXPIRE, satype: kameSatype, seq: 0, pid: 0 }, sa, { keys: false, hsc: 1 });
      this.kameBroadcast(buildMessage(k), 'registered');
    }
    this.stats.expires++;
    this.log('spi', `${kind} EXPIRE ${formatSaid(sa.said)}`);
    if (kind === 'hard') this.sadb.remove(sa);
  }

  /**
   * The data plane saw an SA's peer at a new address/port (NAT-T): update the SA and send
   * SADB_X_NAT_T_NEW_MAPPING to the sockets registered for its SA type.
   */
  natTNewMapping(said: Said, newSrc: string, newSport: number): boolean {
    const sa = this.sadb.get(said);
    if (!sa || !sa.natT) return false;
    if (sa.src.addr === newSrc && sa.natT.sport === newSport) return false;
    if (sa.said.proto === IPPROTO_ESP && this.kameEndpoints.size) {
      // Linux's (pfkey_send_new_mapping): the old address and port, then the new ones, to the registered KAME sockets.
      const k = kameNewMappingMessage(this.nextSeq(), sa, { addr: sa.src.addr, port: sa.natT.sport }, { addr: newSrc, port: newSport });
      this.kameBroadcast(buildMessage(k), 'registered');
    }
    sa.src = { ...sa.src, addr: newSrc };
    sa.natT = { ...sa.natT, sport: newSport };
    const m: MessageInput = {
      header: { type: SADB_X_NAT_T_NEW_MAPPING, satype: sa.satype, seq: this.nextSeq(), pid: 0 },
      sa: saExtOf(sa),
      addressSrc: sa.src,
      addressDst: sa.dst,
      natTSport: { port: newSport },
      natTDport: { port: sa.natT.dport },
    };
    this.toRegistered(sa.satype, buildMessage(m));
    return true;
  }

  // ---------- eroute notices ----------

  /**
   * An eroute changed: X_PCHANGE to subscribed KLIPS sockets (flags 0 added, REPLACEFLOW
   * replaced, CLEARFLOW deleted); and, unless a KAME client made the change (it tells its
   * own dialect), the KAME sockets hear of it as Linux's X_SPDADD/X_SPDUPDATE/X_SPDDELETE.
   */
  pchangeNotice(e: Eroute, flags: number, seq: number, fromKame = false): void {
    if (!fromKame && this.kameEndpoints.size) kameSpdNotice(this, e, flags, seq, e.pid);
    const subs = [...this.endpoints].filter((x) => x.pchange);
    if (subs.length === 0) return;
    const fam = e.flow.family;
    const v6 = fam === 10 ? { flowinfo: 0, scopeId: 0 } : {};
    const a = (addr: string, port = 0): Address => ({ proto: 0, prefixlen: 0, family: fam, port, addr, ...v6 });
    const mask = (prefix: number) => a(prefixToMask(fam, prefix));
    const satype = PROTO_TO_SATYPE[e.said.proto] ?? SADB_X_SATYPE_INT;
    const m: MessageInput = {
      header: { type: SADB_X_PCHANGE, satype, seq, pid: 0 },
      sa: { spi: e.said.spi, replay: 0, state: 0, auth: 0, encrypt: 0, flags },
      addressDst: a(e.said.dst),
      addressSrcFlow: a(e.flow.src, e.flow.sport),
      addressDstFlow: a(e.flow.dst, e.flow.dport),
      addressSrcMask: mask(e.flow.srcPrefix),
      addressDstMask: mask(e.flow.dstPrefix),
    };
    if (e.flow.proto) m.protocol = { proto: e.flow.proto, direction: 0, flags: 0 };
    this.toSet(buildMessage(m), subs);
  }

  /** Release the packets an eroute was holding (after REPLACEFLOW or DELFLOW). */
  release(e: Eroute | undefined): void {
    if (!e?.held) return;
    const packets = [e.held];
    e.held = undefined;
    this.onRelease?.(e, packets);
  }
}
