/**
 * The SA table (KLIPS's ipsec_sadb): SAs keyed by SAID, their states LARVAL → MATURE →
 * DYING, SPI allocation for GETSPI, SA groups (KLIPS's ips_next/ips_prev chains built by
 * X_GRPSA), the SAref table (saref.ts: an SA's ref is interned when it is inserted and
 * freed when it is removed), and lifetimes: current counters, soft and hard limits, and a
 * deadline heap so that time-based expiry costs nothing per SA per tick.
 *
 * The table decides nothing about messages; the engine calls it and builds replies.
 */

import type { Address, Key } from '../wire/index.js';
import { SADB_SASTATE_DYING, SADB_SASTATE_LARVAL, SADB_SASTATE_MATURE } from '../wire/index.js';
import type { Said } from './said.js';
import { SarefTable } from './saref.js';

export interface Limits {
  allocations: number;
  bytes: number;
  addtime: number;
  usetime: number;
  packets: number;
}

export interface Ident {
  type: number;
  id: bigint;
  data: string;
}

/** An inbound policy flow stored on an IPIP SA by X_ADDFLOW with INFLOW (KLIPS ips_flow_*). */
export interface InboundPolicy {
  srcFlow: Address;
  srcMask: Address;
  dstFlow: Address;
  dstMask: Address;
  proto: number;
}

export interface SA {
  said: Said;
  satype: number;
  state: number;
  replay: number;
  auth: number;
  encrypt: number;
  flags: number;
  /** Once inserted, shared with other SAs that have the same peer, and frozen: replace it, never change it. */
  src: Address;
  dst: Address;
  proxy?: Address;
  keyAuth?: StoredKey;
  keyEncrypt?: StoredKey;
  identSrc?: Ident;
  identDst?: Ident;
  natT?: { type: number; sport: number; dport: number; oa?: Address };
  plumbif?: number;
  /** The SAref (KLIPS ips_ref): its number in the SAref table, IPSEC_SAREF_NULL (0) for none. */
  ref: number;
  /** The SAref of the paired SA, as the key manager gave it in X_SAREF (KLIPS ips_refhim). */
  refhim: number;
  /**
   * The SA's direction (KLIPS's EMT_INBOUND flag): 'in' when its destination is one of the
   * host's own addresses at GETSPI/ADD/UPDATE, else 'out'.
   */
  dir: 'in' | 'out';
  inbound?: InboundPolicy;
  soft: Readonly<Limits>;
  hard: Readonly<Limits>;
  /** Current counters; addtime is when the SA was added, usetime when first used. */
  current: Limits;
  /** Whether traffic has used the SA yet (usetime is meaningful only then). */
  used: boolean;
  softSent: boolean;
  /** Group chain (KLIPS ips_next / ips_prev): next is applied after this one. */
  next?: SA;
  prev?: SA;
  /** pid of the creating request, and the ACQUIRE seq it answered (if any). */
  pid: number;
  seq: number;
  /** Bumped on each replacement, so stale heap deadlines are ignored. */
  gen: number;
  /**
   * What a KAME-dialect SA says beyond KLIPS's (Linux's sadb_x_sa2): its mode (IPSEC_MODE_*;
   * tunnel mode wraps in IPIP itself) and reqid. Absent on SAs made in the KLIPS dialect,
   * which are transport-mode transforms grouped behind IPIP SAs.
   */
  kame?: KameAttrs;
}

export interface KameAttrs {
  mode: number;
  reqid: number;
  /** The prefix length of a KAME client's ADDRESS_PROXY (the SA's `proxy` keeps 0, as KLIPS's messages need). */
  proxyPrefix?: number;
}

export const NO_LIMITS = (): Limits => ({ allocations: 0, bytes: 0, addtime: 0, usetime: 0, packets: 0 });

/**
 * Soft and hard limits are never changed once an SA holds them, and most SAs share a
 * handful of settings: one frozen object per distinct setting keeps them off each SA.
 */
const limitsPool = new Map<string, Readonly<Limits>>();
let lastShared: Readonly<Limits> = Object.freeze(NO_LIMITS());
const sameLimits = (a: Limits, b: Limits) =>
  a.allocations === b.allocations && a.bytes === b.bytes && a.addtime === b.addtime && a.usetime === b.usetime && a.packets === b.packets;
export function sharedLimits(l: Limits): Readonly<Limits> {
  if (sameLimits(l, lastShared)) return lastShared;
  const k = `${l.allocations}/${l.bytes}/${l.addtime}/${l.usetime}/${l.packets}`;
  let shared = limitsPool.get(k);
  if (!shared) {
    if (limitsPool.size >= 1024) limitsPool.clear();
    shared = Object.freeze({ ...l });
    limitsPool.set(k, shared);
  }
  lastShared = shared;
  return shared;
}

/**
 * Bytes as a one-byte (latin1) string. Node's Buffer.prototype.latin1Slice accepts any
 * Uint8Array (a view included) and is several times faster than String.fromCharCode.apply
 * for key-sized inputs; the latter stays as the fallback.
 */
type Latin1Slice = (this: Uint8Array, start: number, end: number) => string;
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: Latin1Slice }).latin1Slice;
const latin1 = typeof latin1Slice === 'function'
  ? (b: Uint8Array): string => latin1Slice.call(b, 0, b.length)
  : (b: Uint8Array): string => String.fromCharCode.apply(null, b as unknown as number[]);

/**
 * Key material held by an SA: the bits, and the bytes as a one-byte string, which costs a
 * fraction of a typed array per SA (about 0.4 KiB less for an ESP SA's two keys).
 * `key()` gives the bytes back as a fresh copy. The constructor copies: `bytes` may be a
 * view of a message.
 */
export class StoredKey {
  private readonly data: string;
  /** `bytes` as an array, or already as a one-byte string (one character per byte). */
  constructor(readonly bits: number, bytes: Uint8Array | string) {
    this.data = typeof bytes === 'string' ? bytes : latin1(bytes);
  }
  /** The bytes as a one-byte string. */
  text(): string {
    return this.data;
  }
  key(): Uint8Array {
    const out = new Uint8Array(this.data.length);
    for (let i = 0; i < out.length; i++) out[i] = this.data.charCodeAt(i);
    return out;
  }
  /** The PF_KEY key extension value. */
  toKey(): Key {
    return { bits: this.bits, key: this.key() };
  }
}

/** What newSA makes an SA from: the SA's fields, with keys as parsed and the counters' start. */
export type SaInit = Pick<SA,
  'said' | 'satype' | 'state' | 'replay' | 'auth' | 'encrypt' | 'flags' | 'src' | 'dst' | 'proxy' |
  'identSrc' | 'identDst' | 'natT' | 'plumbif' | 'ref' | 'refhim' | 'dir' | 'soft' | 'hard' | 'used' | 'pid' | 'seq' | 'kame'
> & {
  /** Copied: the bytes may be a view of a message. */
  keyAuth?: Key;
  keyEncrypt?: Key;
  /** Counters carried over (UPDATE); without them the SA starts from zero, added at `addtime`. */
  current?: Limits;
  addtime: number;
};

/** Scratch for joining an SA's two keys before one latin1 conversion. */
let keyScratch = new Uint8Array(256);

/**
 * An SA in fewer objects than the plain-object form, with the same fields to its users:
 *
 * - both keys in one one-byte string; `keyAuth` / `keyEncrypt` give a StoredKey made on
 *   each read (StoredKeys are immutable; only identity differs between reads);
 * - no counters object until something reads `current` (GET, DUMP, views, traffic, an
 *   eroute binding): until then the counters are zero but for addtime, kept inline, and
 *   the table's lifetime checks read them without creating the object (currentOf).
 *
 * So an ESP SA is this object, its SAID and one string, where the plain form also holds a
 * counters object, two StoredKeys and two strings.
 */
class SaRecord implements SA {
  said: Said;
  satype: number;
  state: number;
  replay: number;
  auth: number;
  encrypt: number;
  flags: number;
  src: Address;
  dst: Address;
  proxy: Address | undefined;
  identSrc: Ident | undefined;
  identDst: Ident | undefined;
  natT: SA['natT'];
  plumbif: number | undefined;
  ref: number;
  refhim: number;
  dir: 'in' | 'out';
  inbound: InboundPolicy | undefined;
  soft: Readonly<Limits>;
  hard: Readonly<Limits>;
  used: boolean;
  softSent: boolean;
  next: SA | undefined;
  prev: SA | undefined;
  pid: number;
  seq: number;
  gen: number;
  kame: KameAttrs | undefined;
  /** The auth key's bytes then the encryption key's, one character per byte. */
  private keyText: string;
  /** Bit counts, -1 for an absent key, and where the encryption key starts in keyText. */
  private authBits: number;
  private encryptBits: number;
  private split: number;
  /** The counters once created; until then all zero but addtime. */
  private counters: Limits | undefined;
  private readonly addtime: number;

  constructor(i: SaInit) {
    this.said = i.said;
    this.satype = i.satype;
    this.state = i.state;
    this.replay = i.replay;
    this.auth = i.auth;
    this.encrypt = i.encrypt;
    this.flags = i.flags;
    this.src = i.src;
    this.dst = i.dst;
    this.proxy = i.proxy;
    this.identSrc = i.identSrc;
    this.identDst = i.identDst;
    this.natT = i.natT;
    this.plumbif = i.plumbif;
    this.ref = i.ref;
    this.refhim = i.refhim;
    this.dir = i.dir;
    this.inbound = undefined;
    this.soft = i.soft;
    this.hard = i.hard;
    this.used = i.used;
    this.softSent = false;
    this.next = undefined;
    this.prev = undefined;
    this.pid = i.pid;
    this.seq = i.seq;
    this.gen = 0;
    this.kame = i.kame;
    const ka = i.keyAuth;
    const ke = i.keyEncrypt;
    this.authBits = ka ? ka.bits : -1;
    this.encryptBits = ke ? ke.bits : -1;
    this.split = ka ? ka.key.length : 0;
    this.keyText = ka || ke ? joinKeys(ka?.key, ke?.key) : '';
    this.counters = i.current;
    this.addtime = i.current ? i.current.addtime : i.addtime;
  }

  get keyAuth(): StoredKey | undefined {
    return this.authBits < 0 ? undefined : new StoredKey(this.authBits, this.keyText.substring(0, this.split));
  }

  set keyAuth(k: StoredKey | undefined) {
    const auth = k ? k.text() : '';
    this.keyText = auth + this.keyText.substring(this.split);
    this.split = auth.length;
    this.authBits = k ? k.bits : -1;
  }

  get keyEncrypt(): StoredKey | undefined {
    return this.encryptBits < 0 ? undefined : new StoredKey(this.encryptBits, this.keyText.substring(this.split));
  }

  set keyEncrypt(k: StoredKey | undefined) {
    this.keyText = this.keyText.substring(0, this.split) + (k ? k.text() : '');
    this.encryptBits = k ? k.bits : -1;
  }

  get current(): Limits {
    return (this.counters ??= { allocations: 0, bytes: 0, addtime: this.addtime, usetime: 0, packets: 0 });
  }

  set current(c: Limits) {
    this.counters = c;
  }

  /** The counters without creating them: the live object, or a fresh all-but-addtime-zero one. */
  peekCurrent(): Limits {
    return this.counters ?? { allocations: 0, bytes: 0, addtime: this.addtime, usetime: 0, packets: 0 };
  }
}

/** Both keys' bytes (either may be absent) as one one-byte string, with one conversion. */
function joinKeys(a: Uint8Array | undefined, b: Uint8Array | undefined): string {
  const na = a ? a.length : 0;
  const n = na + (b ? b.length : 0);
  if (n > keyScratch.length) keyScratch = new Uint8Array(Math.max(n, 2 * keyScratch.length));
  const k = keyScratch;
  if (a) for (let i = 0; i < na; i++) k[i] = a[i];
  if (b) for (let i = 0; i < b.length; i++) k[na + i] = b[i];
  return latin1Slice !== undefined ? latin1Slice.call(k, 0, n) : latin1(k.subarray(0, n));
}

/**
 * An SA in its compact form (see SaRecord): it holds the same fields as a plain SA object,
 * in fewer objects. The keys are copied.
 */
export function newSA(init: SaInit): SA {
  return new SaRecord(init);
}

/**
 * An SA's counters for reading, without making a compact SA create its counters object:
 * the returned object is the SA's own only if it already has one, so change counters
 * through `sa.current`, never through this.
 */
export function currentOf(sa: SA): Readonly<Limits> {
  return sa instanceof SaRecord ? sa.peekCurrent() : sa.current;
}

/**
 * A binary min-heap of (time, SA, generation) deadlines, kept in three parallel arrays
 * so a deadline costs no object of its own. Entries are invalidated lazily: one whose
 * generation no longer matches its SA's (the SA was replaced or removed) is stale. An
 * SA still stored as its request (SaTable) is named by its key, a number, which
 * `resolve` turns into the SA (making it) and `isCurrent` checks without making it.
 */
class DeadlineHeap {
  private when: number[] = [];
  private sas: Array<SA | number> = [];
  private gens: number[] = [];
  constructor(
    private readonly resolve: (key: number) => SA | undefined,
    private readonly isCurrent: (key: number, gen: number) => boolean,
  ) {}
  get size(): number { return this.when.length; }
  push(when: number, sa: SA | number, gen: number): void {
    this.when.push(when);
    this.sas.push(sa);
    this.gens.push(gen);
    this.up(this.when.length - 1);
  }
  /** The earliest deadline, or Infinity when there is none. */
  nextWhen(): number {
    return this.when.length ? this.when[0] : Infinity;
  }
  /** Remove the earliest deadline; its SA if the entry is still current, else undefined. */
  pop(): SA | undefined {
    const top = this.sas[0];
    const gen = this.gens[0];
    const last = this.when.length - 1;
    this.move(last, 0);
    this.when.pop();
    this.sas.pop();
    this.gens.pop();
    if (this.when.length) this.down(0);
    const sa = typeof top === 'number' ? this.resolve(top) : top;
    return sa !== undefined && sa.gen === gen ? sa : undefined;
  }
  private current(i: number): boolean {
    const s = this.sas[i];
    return typeof s === 'number' ? this.isCurrent(s, this.gens[i]) : s.gen === this.gens[i];
  }
  /** Drop stale entries and restore the heap order (O(n)). */
  compact(): void {
    let j = 0;
    for (let i = 0; i < this.when.length; i++) if (this.current(i)) this.move(i, j++);
    this.when.length = this.sas.length = this.gens.length = j;
    for (let i = (j >> 1) - 1; i >= 0; i--) this.down(i);
  }
  clear(): void {
    this.when = [];
    this.sas = [];
    this.gens = [];
  }
  private move(from: number, to: number): void {
    this.when[to] = this.when[from];
    this.sas[to] = this.sas[from];
    this.gens[to] = this.gens[from];
  }
  private swap(i: number, j: number): void {
    const w = this.when[i]; this.when[i] = this.when[j]; this.when[j] = w;
    const s = this.sas[i]; this.sas[i] = this.sas[j]; this.sas[j] = s;
    const g = this.gens[i]; this.gens[i] = this.gens[j]; this.gens[j] = g;
  }
  private up(i: number): void {
    const w = this.when;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (w[p] <= w[i]) break;
      this.swap(p, i);
      i = p;
    }
  }
  private down(i: number): void {
    const w = this.when;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < w.length && w[l] < w[m]) m = l;
      if (r < w.length && w[r] < w[m]) m = r;
      if (m === i) return;
      this.swap(m, i);
      i = m;
    }
  }
}

/**
 * Equal addresses shared between SAs: an SA's source and destination are the peers', and
 * many SAs have the same peers, so one frozen copy per distinct address (by its text, the
 * latest variant of port/protocol kept) saves two objects per SA. Frozen because several
 * SAs hold each one: an address is replaced, never changed in place.
 */
const POOL_MAX = 16384;
class AddressPool {
  private readonly byText = new Map<string, Address>();
  /** The last two results: an SA's source and destination usually match the previous SA's. */
  private last0: Address | undefined;
  private last1: Address | undefined;
  intern(a: Address): Address {
    const l0 = this.last0;
    if (l0 !== undefined && l0.addr === a.addr && AddressPool.same(l0, a)) return l0;
    const l1 = this.last1;
    if (l1 !== undefined && l1.addr === a.addr && AddressPool.same(l1, a)) {
      this.last1 = l0;
      this.last0 = l1;
      return l1;
    }
    const shared = this.lookup(a);
    this.last1 = l0;
    this.last0 = shared;
    return shared;
  }
  private static same(x: Address, a: Address): boolean {
    return x.port === a.port && x.family === a.family && x.proto === a.proto && x.prefixlen === a.prefixlen &&
      x.flowinfo === a.flowinfo && x.scopeId === a.scopeId;
  }
  private lookup(a: Address): Address {
    const hit = this.byText.get(a.addr);
    if (hit !== undefined) {
      if (hit === a || AddressPool.same(hit, a)) return hit;
    } else if (this.byText.size >= POOL_MAX) this.byText.clear();
    const shared = Object.freeze({ ...a });
    this.byText.set(a.addr, shared);
    return shared;
  }
}

export type ExpiryKind = 'soft' | 'hard';

/** Whether counters `c` have reached any of the limits `l` at `now`. */
function over(l: Readonly<Limits>, c: Readonly<Limits>, used: boolean, now: number): boolean {
  return (l.allocations > 0 && c.allocations >= l.allocations) ||
    (l.bytes > 0 && c.bytes >= l.bytes) ||
    (l.packets > 0 && c.packets >= l.packets) ||
    (l.addtime > 0 && now >= c.addtime + l.addtime) ||
    (l.usetime > 0 && used && now >= c.usetime + l.usetime);
}

const EMPTY = -1;

/**
 * Request bytes of stored SAs (see SaTable), off the JS heap: appended to 256 KiB chunks,
 * each record named by its location (chunk × CHUNK + offset). A chunk whose records are
 * all gone (made into SAs, or removed) is dropped, and the table rewrites the records
 * into fresh chunks when dead bytes outweigh live ones, so the arena stays within about
 * twice what its live records need. Nothing outside the table ever holds a view of it.
 *
 * Records that lie back to back in their source (klipsd's ADDs in one read chunk) are
 * copied in one go: put() notes the run, and it is copied when a record that does not
 * continue it comes, when anything reads the arena, or at flush() (the engine calls it
 * before its caller may reuse the source: at once for a lone message, at the end of a
 * batch for klipsd's reads).
 */
const CHUNK = 256 * 1024;
class ByteArena {
  private chunks: Array<Uint8Array | undefined> = [];
  /** A DataView over each chunk's memory (wire's dataViewOf convention), made with it: readers of records (the fast path's replies) need no view of their own. */
  private views: Array<DataView | undefined> = [];
  /** Live bytes per chunk. */
  private live: number[] = [];
  private free: number[] = [];
  private cur = -1;
  private used = CHUNK;
  /** Bytes of live records, and bytes of chunks still held. */
  liveBytes = 0;
  heldBytes = 0;
  /** The run of records not yet copied: bytes [pendingFrom, + pendingLen) of pendingSrc, going to pendingAt of the current chunk. */
  private pendingSrc: Uint8Array | undefined;
  private pendingFrom = 0;
  private pendingAt = 0;
  private pendingLen = 0;

  /** Take bytes [off, off + len) of `src` in (copied now, or with the run they continue); returns the record's location. */
  put(src: Uint8Array, off: number, len: number): number {
    if (this.used + len > CHUNK) this.next();
    const c = this.cur;
    const o = this.used;
    if (src === this.pendingSrc && off === this.pendingFrom + this.pendingLen && o === this.pendingAt + this.pendingLen) {
      this.pendingLen += len;
    } else {
      this.flush();
      this.pendingSrc = src;
      this.pendingFrom = off;
      this.pendingAt = o;
      this.pendingLen = len;
    }
    this.used = o + len;
    this.live[c] += len;
    this.liveBytes += len;
    return c * CHUNK + o;
  }

  /** Copy the records put() has noted and not copied yet. */
  flush(): void {
    const src = this.pendingSrc;
    if (src === undefined) return;
    this.chunks[this.cur]!.set(new Uint8Array(src.buffer, src.byteOffset + this.pendingFrom, this.pendingLen), this.pendingAt);
    this.pendingSrc = undefined;
    this.pendingLen = 0;
  }

  private next(): void {
    this.flush();
    const c = this.free.length ? this.free.pop()! : this.chunks.length;
    // Not zeroed: a record's bytes are all copied in before anything reads them.
    const chunk = Buffer.allocUnsafeSlow(CHUNK);
    this.chunks[c] = chunk;
    this.views[c] = new DataView(chunk.buffer);
    this.live[c] = 0;
    this.heldBytes += CHUNK;
    this.cur = c;
    this.used = 0;
  }

  /** The record at `loc` as a view (for reading it at once; never kept). */
  view(loc: number, len: number): Uint8Array {
    this.flush();
    const c = this.chunks[Math.floor(loc / CHUNK)]!;
    return new Uint8Array(c.buffer, c.byteOffset + (loc % CHUNK), len);
  }

  /** The chunk holding the record at `loc` (the record starts at loc % CHUNK). */
  chunkOf(loc: number): Uint8Array {
    this.flush();
    return this.chunks[Math.floor(loc / CHUNK)]!;
  }

  /** A DataView over the memory of chunkOf(loc) (index it with the chunk's byteOffset). */
  viewOf(loc: number): DataView {
    this.flush();
    return this.views[Math.floor(loc / CHUNK)]!;
  }

  /** The record at `loc` is no longer needed. */
  release(loc: number, len: number): void {
    const c = Math.floor(loc / CHUNK);
    this.liveBytes -= len;
    if ((this.live[c] -= len) === 0 && c !== this.cur) {
      this.chunks[c] = undefined;
      this.views[c] = undefined;
      this.heldBytes -= CHUNK;
      this.free.push(c);
    }
  }

  /** Whether rewriting the live records would free much (dead bytes over the live ones and over 4 MiB). */
  get wasteful(): boolean {
    const dead = this.heldBytes - this.liveBytes;
    return dead > this.liveBytes && dead > 16 * CHUNK;
  }
}

/** A stored SA's length: its request's sadb_msg_len. */
const recordLength = (arena: ByteArena, loc: number): number => {
  const c = arena.chunkOf(loc);
  const at = loc % CHUNK;
  return (c[at + 4] | (c[at + 5] << 8)) * 8;
};

/**
 * What makes an SA out of a stored one: its request bytes (an ADD the engine accepted)
 * and what the request does not say: when it was added, its SAref, whether it is inbound.
 */
export type SaBuilder = (request: Uint8Array, addtime: number, ref: number, inbound: boolean) => SA;

/** A stored SA as Sadb.readStored gives it: its request is bytes [at, at + len) of `bytes`; `view` is a DataView over bytes' memory (index it with bytes.byteOffset + at). */
export interface StoredRequest {
  bytes: Uint8Array;
  view: DataView;
  at: number;
  len: number;
  satype: number;
  addtime: number;
  ref: number;
  inbound: boolean;
}

/**
 * The SAs by SAID, in insertion order. Two parts, neither with an object per SA:
 *
 * - `list`: the SAs in the order they were inserted (a removed SA leaves a hole, holes are
 *   squeezed out once they outnumber the SAs), with each one's insertion number in `seqs`;
 * - an open-addressing index (linear probing, at most half full) from the SPI to list
 *   positions, as (SPI, position) pairs in one Int32Array; protocol and destination are compared on a hit, as
 *   Linux's byspi hash does. SPIs are hashed as int32 (Fibonacci hashing), so no key is
 *   ever a heap number, and SAs sharing an SPI simply take neighbouring slots.
 *
 * An SA may also be *stored*: the engine's ADD fast path keeps the request it accepted
 * (in a ByteArena) with a few columns (protocol, SA type, add time, SAref, direction)
 * instead of making an SA, and `list` holds the SA's destination (a string) at its
 * position. The SA is made from the request (by `builder`, the engine's own code) the
 * first time anything asks for it (find, values), and takes its place in `list`; its
 * insertion number is its key until then (the SAref table and the deadline heap name it
 * so). Asking whether an SAID exists (contains) does not make it.
 *
 * Iteration follows `list`, so SAs come out in insertion order, and an iterator survives
 * anything done to the table between two steps: it resumes after the insertion number it
 * last yielded, wherever compaction moved the SAs.
 */
class SaTable {
  /** An SA, a stored SA's destination, or a hole. */
  private list: Array<SA | string | undefined> = [];
  private seqs = new Float64Array(1024);
  /** Columns of stored SAs, by list position (meaningless elsewhere). */
  private sProto = new Uint8Array(1024);
  private sSpi = new Int32Array(1024);
  private sSatype = new Uint8Array(1024);
  private sInbound = new Uint8Array(1024);
  private sRef = new Int32Array(1024);
  private sAddtime = new Float64Array(1024);
  private sLoc = new Float64Array(1024);
  private arena = new ByteArena();
  /** Used length of list/seqs (holes included). */
  private len = 0;
  private live = 0;
  /** Stored SAs among the live ones. */
  stored = 0;
  private nextSeq = 0;
  /** Bumped whenever list positions move (compaction). */
  private epoch = 0;
  /** The list position positionOf or positionOfSaid found last: a hint, checked against seqs before use. */
  private lastPosition = 0;
  /** Index slots: slot i is [2i] the SPI as int32, [2i+1] the list position or EMPTY (one cache line per probe). */
  private slots = SaTable.emptySlots(1024);
  private capacity = 1024;
  private shift = 32 - 10;
  private mask = 1023;

  constructor(
    private readonly builder: () => SaBuilder | undefined,
    /** Called when a stored SA became `sa` (its key was `key`). */
    private readonly onMade: (sa: SA, key: number) => void,
  ) {}

  private static emptySlots(capacity: number): Int32Array {
    const slots = new Int32Array(2 * capacity);
    for (let i = 1; i < slots.length; i += 2) slots[i] = EMPTY;
    return slots;
  }

  get size(): number {
    return this.live;
  }

  private slotOf(spi: number): number {
    return Math.imul(spi, 0x9e3779b1) >>> this.shift;
  }

  /** The list position of the SA (made or stored) with this SAID, or -1. */
  private positionOfSaid(proto: number, spi: number, dst: string): number {
    const k = spi | 0;
    const slots = this.slots;
    const mask = this.mask;
    for (let i = this.slotOf(k); ; i = (i + 1) & mask) {
      const p = slots[2 * i + 1];
      if (p === EMPTY) return -1;
      if (slots[2 * i] === k) {
        const e = this.list[p]!;
        if (typeof e === 'string' ? e === dst && this.sProto[p] === proto : e.said.proto === proto && e.said.dst === dst) return (this.lastPosition = p);
      }
    }
  }

  /** The SA with this SAID (made now if it was stored), or undefined. */
  find(proto: number, spi: number, dst: string): SA | undefined {
    const p = this.positionOfSaid(proto, spi, dst);
    if (p < 0) return undefined;
    const e = this.list[p]!;
    return typeof e === 'string' ? this.make(p, e) : e;
  }

  /** Whether an SA with this SAID exists (a stored one is not made). */
  contains(proto: number, spi: number, dst: string): boolean {
    return this.positionOfSaid(proto, spi, dst) >= 0;
  }

  /** The index slot `spi` hashes to, read (Sadb.touchSpi). */
  touch(spi: number): number {
    return this.slots[2 * this.slotOf(spi | 0) + 1];
  }

  /** The key of the stored SA with this SAID, or -1 when there is none (or the SA was made). */
  storedKey(proto: number, spi: number, dst: string): number {
    const p = this.positionOfSaid(proto, spi, dst);
    return p >= 0 && typeof this.list[p] === 'string' ? this.seqs[p] : -1;
  }

  /** The SA stored at position p, made from its request; it takes the stored entry's place. */
  private make(p: number, dst: string): SA {
    const build = this.builder();
    if (build === undefined) throw new Error(`SA table: no builder for the stored SA to ${dst}`);
    const loc = this.sLoc[p];
    const len = recordLength(this.arena, loc);
    const sa = build(this.arena.view(loc, len), this.sAddtime[p], this.sRef[p], this.sInbound[p] === 1);
    this.list[p] = sa;
    this.stored--;
    this.arena.release(loc, len);
    this.onMade(sa, this.seqs[p]);
    if (this.arena.wasteful) this.rewriteArena();
    return sa;
  }

  /** Copy the stored records into a fresh arena (the old one's chunks are mostly dead). */
  private rewriteArena(): void {
    const old = this.arena;
    const next = new ByteArena();
    for (let p = 0; p < this.len; p++) {
      if (typeof this.list[p] !== 'string') continue;
      const len = recordLength(old, this.sLoc[p]);
      this.sLoc[p] = next.put(old.view(this.sLoc[p], len), 0, len);
    }
    next.flush();
    this.arena = next;
  }

  /** The list position of insertion number `key`, or -1. */
  private positionOf(key: number): number {
    // The position last found, or the one after it (a GET or DELETE after its SAID's
    // probe, a DUMP's walk): insertion numbers are unique, so a match there is the answer.
    const q = this.lastPosition;
    if (q < this.len && this.seqs[q] === key) return q;
    if (q + 1 < this.len && this.seqs[q + 1] === key) return (this.lastPosition = q + 1);
    const p = this.after(key - 1);
    if (p < this.len && this.seqs[p] === key) return (this.lastPosition = p);
    return -1;
  }

  /** The SA a key names (made now if still stored), or undefined once it is gone. */
  byKey(key: number): SA | undefined {
    const p = this.positionOf(key);
    if (p < 0) return undefined;
    const e = this.list[p];
    return typeof e === 'string' ? this.make(p, e) : e;
  }

  /** Whether a deadline (key, gen) still stands: a stored SA is generation 0. */
  isCurrentKey(key: number, gen: number): boolean {
    const p = this.positionOf(key);
    if (p < 0) return false;
    const e = this.list[p];
    return e === undefined ? false : typeof e === 'string' ? gen === 0 : e.gen === gen;
  }

  /** The index slot holding `sa`'s list position, or -1. */
  private slotHolding(sa: SA): number {
    const k = sa.said.spi | 0;
    const slots = this.slots;
    const mask = this.mask;
    for (let i = this.slotOf(k); ; i = (i + 1) & mask) {
      const p = slots[2 * i + 1];
      if (p === EMPTY) return -1;
      if (slots[2 * i] === k && this.list[p] === sa) return i;
    }
  }

  /** The index slot holding list position p (whose SPI is spi), or -1. */
  private slotOfPosition(spi: number, p: number): number {
    const k = spi | 0;
    const slots = this.slots;
    const mask = this.mask;
    for (let i = this.slotOf(k); ; i = (i + 1) & mask) {
      const q = slots[2 * i + 1];
      if (q === EMPTY) return -1;
      if (q === p) return i;
    }
  }

  private index(spi: number, p: number): void {
    const k = spi | 0;
    const slots = this.slots;
    const mask = this.mask;
    let i = this.slotOf(k);
    while (slots[2 * i + 1] !== EMPTY) i = (i + 1) & mask;
    slots[2 * i] = k;
    slots[2 * i + 1] = p;
  }

  /** Empty slot i, shifting later entries of its probe run back (no tombstones). */
  private unindex(i: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (slots[2 * j + 1] === EMPTY) break;
      const home = this.slotOf(slots[2 * j]);
      // Move j into the hole at i unless its home lies cyclically in (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        slots[2 * i] = slots[2 * j];
        slots[2 * i + 1] = slots[2 * j + 1];
        i = j;
      }
    }
    slots[2 * i + 1] = EMPTY;
  }

  /**
   * Index for `capacity` slots (a power of two), rebuilt from the old slots: positions
   * mapped through `moved` when given (compaction), else kept (growth).
   */
  private reindex(capacity: number, moved?: Int32Array): void {
    const old = this.slots;
    this.capacity = capacity;
    this.shift = 32 - Math.log2(capacity);
    this.mask = capacity - 1;
    this.slots = SaTable.emptySlots(capacity);
    for (let i = 1; i < old.length; i += 2) {
      const p = old[i];
      if (p !== EMPTY) this.index(old[i - 1], moved ? moved[p] : p);
    }
  }

  add(sa: SA): void {
    if (2 * (this.live + 1) > this.capacity) this.reindex(this.capacity * 2);
    this.live++;
    this.index(sa.said.spi, this.append(sa));
  }

  /**
   * Add a stored SA: request bytes [off, off + len) of `u8` (copied), the SAID's parts and
   * the columns. Returns its key.
   */
  addStored(
    proto: number, spi: number, dst: string, satype: number,
    u8: Uint8Array, off: number, len: number, addtime: number, ref: number, inbound: boolean,
  ): number {
    if (2 * (this.live + 1) > this.capacity) this.reindex(this.capacity * 2);
    this.live++;
    this.stored++;
    const p = this.append(dst);
    this.sProto[p] = proto;
    this.sSpi[p] = spi | 0;
    this.sSatype[p] = satype;
    this.sInbound[p] = inbound ? 1 : 0;
    this.sRef[p] = ref;
    this.sAddtime[p] = addtime;
    this.sLoc[p] = this.arena.put(u8, off, len);
    this.index(spi, p);
    return this.seqs[p];
  }

  private append(e: SA | string): number {
    const p = this.len++;
    if (p === this.seqs.length) this.grow(2 * p);
    this.list[p] = e;
    this.seqs[p] = this.nextSeq++;
    return p;
  }

  /** Room for n positions in the typed columns. */
  private grow(n: number): void {
    const wider = <A extends Float64Array | Int32Array | Uint8Array>(a: A, make: new (n: number) => A): A => {
      const b = new make(n);
      b.set(a.subarray(0, Math.min(a.length, n)));
      return b;
    };
    this.seqs = wider(this.seqs, Float64Array);
    this.sProto = wider(this.sProto, Uint8Array);
    this.sSpi = wider(this.sSpi, Int32Array);
    this.sSatype = wider(this.sSatype, Uint8Array);
    this.sInbound = wider(this.sInbound, Uint8Array);
    this.sRef = wider(this.sRef, Int32Array);
    this.sAddtime = wider(this.sAddtime, Float64Array);
    this.sLoc = wider(this.sLoc, Float64Array);
  }

  /** Put `sa` where `old` (same SAID) is, keeping its place in the order; false if old is absent. */
  swap(old: SA, sa: SA): boolean {
    const i = this.slotHolding(old);
    if (i < 0) return false;
    const p = this.slots[2 * i + 1];
    this.list[p] = sa;
    if ((sa.said.spi | 0) !== this.slots[2 * i]) {
      this.unindex(i);
      this.index(sa.said.spi, p);
    }
    return true;
  }

  remove(sa: SA): boolean {
    const i = this.slotHolding(sa);
    if (i < 0) return false;
    this.removeAt(i, this.slots[2 * i + 1]);
    return true;
  }

  /**
   * Remove a stored SA by its key without making it; returns its SA type and SAref
   * ([satype, ref]), or undefined if it is not stored (made, or gone).
   */
  removeStored(key: number): { satype: number; ref: number } | undefined {
    const p = this.positionOf(key);
    if (p < 0 || typeof this.list[p] !== 'string') return undefined;
    const loc = this.sLoc[p];
    const i = this.slotOfPosition(this.sSpi[p], p);
    if (i < 0) return undefined;
    const gone = { satype: this.sSatype[p], ref: this.sRef[p] };
    this.stored--;
    this.arena.release(loc, recordLength(this.arena, loc));
    this.removeAt(i, p);
    if (this.arena.wasteful) this.rewriteArena();
    return gone;
  }

  private removeAt(i: number, p: number): void {
    this.list[p] = undefined;
    this.unindex(i);
    this.live--;
    const holes = this.len - this.live;
    if (holes > 1024 && holes > this.live) this.compact();
  }

  /**
   * Every entry in order, without making stored SAs: `fn(sa)` for an SA, `fn(undefined,
   * key, satype, ref)` for a stored one.
   */
  forEachEntry(fn: (sa: SA | undefined, key: number, satype: number, ref: number) => void): void {
    for (let p = 0; p < this.len; p++) {
      const e = this.list[p];
      if (e === undefined) continue;
      if (typeof e === 'string') fn(undefined, this.seqs[p], this.sSatype[p], this.sRef[p]);
      else fn(e, this.seqs[p], e.satype, e.ref);
    }
  }

  clear(): void {
    this.list = [];
    this.seqs = new Float64Array(1024);
    this.sProto = new Uint8Array(1024);
    this.sSpi = new Int32Array(1024);
    this.sSatype = new Uint8Array(1024);
    this.sInbound = new Uint8Array(1024);
    this.sRef = new Int32Array(1024);
    this.sAddtime = new Float64Array(1024);
    this.sLoc = new Float64Array(1024);
    this.arena = new ByteArena();
    this.len = this.live = this.stored = 0;
    this.epoch++;
    this.slots = SaTable.emptySlots(1024);
    this.capacity = 1024;
    this.shift = 32 - 10;
    this.mask = 1023;
  }

  /** Squeeze out the holes (order kept) and shrink the index to fit. */
  private compact(): void {
    const moved = new Int32Array(this.len);
    let j = 0;
    for (let p = 0; p < this.len; p++) {
      const e = this.list[p];
      if (e === undefined) continue;
      this.list[j] = e;
      this.seqs[j] = this.seqs[p];
      if (typeof e === 'string') {
        this.sProto[j] = this.sProto[p];
        this.sSpi[j] = this.sSpi[p];
        this.sSatype[j] = this.sSatype[p];
        this.sInbound[j] = this.sInbound[p];
        this.sRef[j] = this.sRef[p];
        this.sAddtime[j] = this.sAddtime[p];
        this.sLoc[j] = this.sLoc[p];
      }
      moved[p] = j++;
    }
    this.list.length = j;
    this.len = j;
    this.epoch++;
    let capacity = 1024;
    while (capacity < 2 * j) capacity *= 2;
    this.reindex(capacity, moved);
  }

  /** The first list position whose insertion number is above `seq`. */
  private after(seq: number): number {
    let lo = 0;
    let hi = this.len;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.seqs[mid] <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Every entry of SA type `satype` (0: all) in insertion order, as values() walks them,
   * without making stored SAs: an SA, or a stored SA's key.
   */
  *entries(satype: number): IterableIterator<SA | number> {
    let epoch = this.epoch;
    let p = 0;
    let last = -1;
    for (;;) {
      if (epoch !== this.epoch) {
        epoch = this.epoch;
        p = this.after(last);
      }
      if (p >= this.len) return;
      const e = this.list[p];
      const seq = this.seqs[p];
      p++;
      if (e === undefined) continue;
      last = seq;
      if (typeof e === 'string') {
        if (satype === 0 || this.sSatype[p - 1] === satype) yield seq;
      } else if (satype === 0 || e.satype === satype) yield e;
    }
  }

  /** Copy the stored requests not copied yet (ByteArena.put): their source may change after this. */
  flushStored(): void {
    this.arena.flush();
  }

  /** What a stored SA (key) holds, into `out`; false if the key names no stored SA. */
  readStored(key: number, out: StoredRequest): boolean {
    const p = this.positionOf(key);
    if (p < 0 || typeof this.list[p] !== 'string') return false;
    const loc = this.sLoc[p];
    out.bytes = this.arena.chunkOf(loc);
    out.view = this.arena.viewOf(loc);
    out.at = loc % CHUNK;
    out.len = recordLength(this.arena, loc);
    out.satype = this.sSatype[p];
    out.addtime = this.sAddtime[p];
    out.ref = this.sRef[p];
    out.inbound = this.sInbound[p] === 1;
    return true;
  }

  /** Every SA in insertion order, stored ones made as they come. */
  *values(): IterableIterator<SA> {
    for (const e of this.entries(0)) {
      if (typeof e !== 'number') {
        yield e;
        continue;
      }
      const p = this.positionOf(e);
      yield this.make(p, this.list[p] as string);
    }
  }
}

export class Sadb {
  /**
   * Makes a stored SA (insertStored) from its request: the engine's code, set by the engine
   * that owns this table (a table that stores nothing needs none).
   */
  builder: SaBuilder | undefined;
  private readonly table = new SaTable(() => this.builder, (sa, key) => this.made(sa, key));
  private readonly deadlines = new DeadlineHeap((key) => this.table.byKey(key), (key, gen) => this.table.isCurrentKey(key, gen));
  /** SAs per SA type (a byte on the wire). */
  private perType: number[] = new Array<number>(256).fill(0);
  private readonly addresses = new AddressPool();
  /** SA reference numbers (KLIPS's refTable). */
  readonly sarefs = new SarefTable<SA>((key) => this.table.byKey(key));
  /** Bumped by every change of the table or of an SA's state, so a cache over it knows when it is stale. */
  version = 0;
  private pins = 0;
  private readonly madeWhilePinned = new Map<number, SA>();

  /** How many SAs of one SA type (0: all) the table holds. */
  count(satype = 0): number {
    return satype === 0 ? this.table.size : this.perType[satype] ?? 0;
  }

  get size(): number {
    return this.table.size;
  }

  /**
   * Read the SPI index where a lookup of `spi` will start, and return what is there
   * (meaningless). For a run of lookups that will come in sequence (a read's worth of
   * ADDs), touching their slots first lets the processor wait for their cache misses
   * together, where the lookups would wait for one miss each.
   */
  touchSpi(spi: number): number {
    return this.table.touch(spi);
  }

  /** How many SAs are still stored as the request that added them (not yet made; SaTable). */
  get storedCount(): number {
    return this.table.stored;
  }

  /** Deadlines queued, stale ones included (bounded by compaction). */
  get deadlineCount(): number {
    return this.deadlines.size;
  }

  get(said: Said): SA | undefined {
    return this.table.find(said.proto, said.spi, said.dst);
  }

  has(said: Said): boolean {
    return this.table.contains(said.proto, said.spi, said.dst);
  }

  /** The key of the SA with this SAID while it is still stored as its ADD (readStored), or -1. */
  storedKey(proto: number, spi: number, dst: string): number {
    return this.table.storedKey(proto, spi, dst);
  }

  /** has() from the SAID's parts. */
  contains(proto: number, spi: number, dst: string): boolean {
    return this.table.contains(proto, spi, dst);
  }

  /** Every SA, in the order they were inserted (an UPDATE keeps its SA's place). */
  values(): IterableIterator<SA> {
    return this.table.values();
  }

  /** Insert a new SA (the caller checked it is absent), intern its ref and schedule its time limits. */
  insert(sa: SA): void {
    this.version++;
    this.share(sa);
    this.table.add(sa);
    this.sarefs.intern(sa);
    this.perType[sa.satype] = this.count(sa.satype) + 1;
    this.schedule(sa);
  }

  /**
   * Insert a new SA as the request an ADD carried (the caller checked it is absent and
   * that `builder` makes an SA of these bytes): bytes [off, off + len) of `u8` are copied
   * (by flushStored() at the latest), and the SA is made only when something asks for it
   * (SaTable). Its ref takes its SAref
   * slot, and its add-time limits (soft and hard, seconds, 0 for none) are scheduled as an
   * SA's are; the SA starts unused, so it has no use-time deadline yet.
   */
  insertStored(
    proto: number, spi: number, dst: string, satype: number, u8: Uint8Array, off: number, len: number,
    addtime: number, ref: number, inbound: boolean, softAddtime: number, hardAddtime: number,
  ): void {
    this.version++;
    const key = this.table.addStored(proto, spi, dst, satype, u8, off, len, addtime, ref, inbound);
    this.sarefs.internKey(ref, key);
    this.perType[satype] = this.count(satype) + 1;
    if (softAddtime > 0) this.deadline(addtime + softAddtime, key, 0);
    if (hardAddtime > 0) this.deadline(addtime + hardAddtime, key, 0);
  }

  /**
   * insertStored() may copy the request later, with the requests that follow it in the
   * same buffer: its caller calls this before the buffer may change.
   */
  flushStored(): void {
    this.table.flushStored();
  }

  /**
   * Remove the stored SA `key` without making it (it has no group: X_GRPSA makes SAs),
   * freeing its SAref; false, having done nothing, while the table is pinned (a DUMP
   * that listed it must find what it became: make it and remove() it then) or when the
   * key names no stored SA.
   */
  removeStored(key: number): boolean {
    if (this.pins > 0) return false;
    const gone = this.table.removeStored(key);
    if (gone === undefined) return false;
    this.version++;
    this.perType[gone.satype] = this.count(gone.satype) - 1;
    this.sarefs.unternKey(gone.ref, key);
    return true;
  }

  /** A stored SA (key) was made into `sa`: it shares addresses as inserted SAs do, and holds its SAref slot itself. */
  private made(sa: SA, key: number): void {
    this.share(sa);
    this.sarefs.settle(key, sa);
    if (this.pins > 0) this.madeWhilePinned.set(key, sa);
  }

  /**
   * Every entry of SA type `satype` (0: all) in insertion order, as values() gives them,
   * but a stored SA as its key, not made (DUMP writes its reply from the stored request;
   * readStored). A walk that keeps keys should pin() the table meanwhile.
   */
  entries(satype: number): IterableIterator<SA | number> {
    return this.table.entries(satype);
  }

  /** What the stored SA `key` holds (its request, add time, SAref, direction), into `out`; false once it is made or gone. */
  readStored(key: number, out: StoredRequest): boolean {
    return this.table.readStored(key, out);
  }

  /**
   * While pinned (a DUMP holds keys from entries()), the SA each stored SA becomes is
   * remembered (madeFrom), and removing stored SAs makes them first: so a key listed
   * goes on standing for its SA, as a listed SA object would, whatever happens to the
   * table before the DUMP reaches it.
   */
  pin(): void {
    this.pins++;
  }

  unpin(): void {
    if (--this.pins === 0) this.madeWhilePinned.clear();
  }

  /** The SA the stored SA `key` became while the table was pinned, if it was made. */
  madeFrom(key: number): SA | undefined {
    return this.madeWhilePinned.get(key);
  }

  /**
   * Put `sa` in place of the SA with the same SAID (UPDATE), keeping its group links and
   * its SAref slot, and its place in the order unless `newest` (Linux's UPDATE of a larval
   * SA inserts the new one, so it lists first in a KAME DUMP).
   */
  replace(old: SA, sa: SA, newest = false): void {
    this.version++;
    this.sarefs.move(old, sa);
    sa.next = old.next;
    sa.prev = old.prev;
    if (old.next) old.next.prev = sa;
    if (old.prev) old.prev.next = sa;
    sa.gen = old.gen + 1;
    old.gen = -1;
    this.share(sa);
    if (newest) {
      if (this.table.remove(old)) this.perType[old.satype] = this.count(old.satype) - 1;
      this.table.add(sa);
      this.perType[sa.satype] = this.count(sa.satype) + 1;
    } else if (!this.table.swap(old, sa)) {
      this.table.add(sa);
      this.perType[sa.satype] = this.count(sa.satype) + 1;
    }
    this.schedule(sa);
  }

  /** Hold the SA's source and destination as the shared copies (equal values, frozen). */
  private share(sa: SA): void {
    sa.src = this.addresses.intern(sa.src);
    sa.dst = this.addresses.intern(sa.dst);
  }

  /** Remove one SA, unlinking it from its group and freeing its SAref. */
  remove(sa: SA): boolean {
    if (!this.table.remove(sa)) return false;
    this.version++;
    this.perType[sa.satype] = this.count(sa.satype) - 1;
    this.sarefs.untern(sa);
    if (sa.prev) sa.prev.next = sa.next;
    if (sa.next) sa.next.prev = sa.prev;
    sa.next = sa.prev = undefined;
    sa.gen = -1;
    return true;
  }

  /** Remove the SAs of one SA type (0: all). Returns what was removed (stored SAs made first; drop() does without). */
  flush(satype: number): SA[] {
    const gone: SA[] = [];
    for (const sa of this.values()) if (satype === 0 || sa.satype === satype) gone.push(sa);
    this.removeType(satype);
    return gone;
  }

  /** Remove the SAs of one SA type (0: all), stored ones without making them (unless pinned). Returns how many went. */
  drop(satype: number): number {
    return this.pins > 0 ? this.flush(satype).length : this.removeType(satype);
  }

  private removeType(satype: number): number {
    this.version++;
    const gone: Array<SA | number> = [];
    this.table.forEachEntry((sa, key, t) => {
      if (satype === 0 || t === satype) gone.push(sa ?? key);
    });
    if (gone.length === this.size) {
      const drop = (sa: SA | undefined, key: number, _t: number, ref: number): void => {
        if (sa === undefined) this.sarefs.unternKey(ref, key);
        else { sa.next = sa.prev = undefined; sa.gen = -1; this.sarefs.untern(sa); }
      };
      this.table.forEachEntry(drop);
      this.table.clear();
      this.perType = new Array<number>(256).fill(0);
      this.deadlines.clear();
    } else {
      for (const g of gone) {
        if (typeof g !== 'number') { this.remove(g); continue; }
        const stored = this.table.removeStored(g);
        if (stored === undefined) continue;
        this.perType[stored.satype] = this.count(stored.satype) - 1;
        this.sarefs.unternKey(stored.ref, g);
      }
    }
    return gone.length;
  }

  /**
   * A free SPI in [min, max] for (proto, dst): random probes first, then a scan from a
   * random start, so exhaustion is detected exactly. Undefined when every SPI is taken.
   */
  allocateSpi(proto: number, dst: string, min: number, max: number, random: (n: number) => number): number | undefined {
    const span = max - min + 1;
    const free = (spi: number) => this.table.find(proto, spi, dst) === undefined;
    for (let i = 0; i < Math.min(16, span); i++) {
      const spi = min + random(span);
      if (free(spi)) return spi;
    }
    const start = random(span);
    const limit = Math.min(span, this.size + 1);
    // At most size+1 SPIs can be taken-or-checked before a free one appears.
    for (let i = 0; i < limit; i++) {
      const spi = min + ((start + i) % span);
      if (free(spi)) return spi;
    }
    return undefined;
  }

  // ---------- groups ----------

  /** The head of the group `sa` belongs to (KLIPS walks ips_prev). */
  head(sa: SA): SA {
    let h = sa;
    while (h.prev) h = h.prev;
    return h;
  }

  /** Every SA of `sa`'s group, head first. */
  group(sa: SA): SA[] {
    const out: SA[] = [];
    for (let s: SA | undefined = this.head(sa); s; s = s.next) out.push(s);
    return out;
  }

  /**
   * Link a → b, as KLIPS's X_GRPSA does; false (nothing changed) if a already has a next or b's chain
   * holds a (b already having a predecessor is no obstacle). b leaves its former
   * predecessor's chain, so every SA stays in exactly one chain (KLIPS left the former
   * predecessor pointing at b too).
   */
  link(a: SA, b: SA): boolean {
    if (a.next) return false;
    for (let s: SA | undefined = b; s; s = s.next) if (s === a) return false;
    if (b.prev) b.prev.next = undefined;
    a.next = b;
    b.prev = a;
    return true;
  }

  /** Unlink the whole chain that starts at `sa`. */
  unlinkChain(sa: SA): void {
    if (sa.prev) { sa.prev.next = undefined; sa.prev = undefined; }
    let s: SA | undefined = sa;
    while (s) {
      const n: SA | undefined = s.next;
      s.next = undefined;
      if (n) n.prev = undefined;
      s = n;
    }
  }

  // ---------- lifetimes ----------

  /**
   * Queue a deadline. Deleted or replaced SAs leave theirs behind (checked lazily), so
   * when stale entries dominate, the heap is compacted: memory stays proportional to the
   * live SAs however fast they churn, at O(1) amortised cost.
   */
  private deadline(when: number, sa: SA | number, gen: number): void {
    this.deadlines.push(when, sa, gen);
    if (this.deadlines.size > 4 * this.size + 1024) this.deadlines.compact();
  }

  private schedule(sa: SA): void {
    const add = currentOf(sa).addtime;
    if (sa.soft.addtime > 0) this.deadline(add + sa.soft.addtime, sa, sa.gen);
    if (sa.hard.addtime > 0) this.deadline(add + sa.hard.addtime, sa, sa.gen);
    if (sa.used) this.scheduleUse(sa);
  }

  private scheduleUse(sa: SA): void {
    const use = currentOf(sa).usetime;
    if (sa.soft.usetime > 0) this.deadline(use + sa.soft.usetime, sa, sa.gen);
    if (sa.hard.usetime > 0) this.deadline(use + sa.hard.usetime, sa, sa.gen);
  }

  /** Which limit (if any) the SA has reached now: hard wins over soft; soft reported once. */
  reached(sa: SA, now: number): ExpiryKind | undefined {
    const c = currentOf(sa);
    if (over(sa.hard, c, sa.used, now)) return 'hard';
    if (!sa.softSent && over(sa.soft, c, sa.used, now)) return 'soft';
    return undefined;
  }

  /** Count traffic on an SA; returns the expiry it reaches, if any. */
  countTraffic(sa: SA, bytes: number, packets: number, now: number): ExpiryKind | undefined {
    const c = sa.current;
    if (!sa.used && packets > 0) {
      sa.used = true;
      c.usetime = now;
      this.scheduleUse(sa);
    }
    c.bytes += bytes;
    c.packets += packets;
    return this.reached(sa, now);
  }

  /** SAs whose time limits have passed by `now`, each with the limit it reached. */
  due(now: number): Array<{ sa: SA; kind: ExpiryKind }> {
    const out: Array<{ sa: SA; kind: ExpiryKind }> = [];
    const seen = new Set<SA>();
    while (this.deadlines.nextWhen() <= now) {
      const sa = this.deadlines.pop();
      if (!sa || seen.has(sa)) continue;
      const kind = this.reached(sa, now);
      if (kind) { out.push({ sa, kind }); seen.add(sa); }
    }
    return out;
  }

  /**
   * New limits for an SA in place (the KAME dialect's UPDATE of a mature SA, which keeps
   * its keys, counters and data-plane state): its old deadlines lapse, the new ones are
   * queued, and it is no longer dying.
   */
  relimit(sa: SA, soft: Readonly<Limits>, hard: Readonly<Limits>): void {
    this.version++;
    sa.soft = soft;
    sa.hard = hard;
    sa.gen++;
    sa.softSent = false;
    if (sa.state === SADB_SASTATE_DYING) sa.state = SADB_SASTATE_MATURE;
    this.schedule(sa);
  }

  /** Mark soft expiry sent: the SA is DYING from now on (larval SAs stay larval). */
  markSoft(sa: SA): void {
    this.version++;
    sa.softSent = true;
    if (sa.state !== SADB_SASTATE_LARVAL) sa.state = SADB_SASTATE_DYING;
  }
}
