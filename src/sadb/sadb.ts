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
import { SADB_SASTATE_DYING, SADB_SASTATE_LARVAL } from '../wire/index.js';
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
 * Key material held by an SA: the bits, and the bytes as a one-byte string, which costs a
 * fraction of a typed array per SA (about 0.4 KiB less for an ESP SA's two keys).
 * `key()` gives the bytes back as a fresh copy.
 */
export class StoredKey {
  private readonly data: string;
  constructor(readonly bits: number, bytes: Uint8Array) {
    this.data = String.fromCharCode.apply(null, bytes as unknown as number[]);
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

/**
 * A binary min-heap of (time, SA, generation) deadlines, kept in three parallel arrays
 * so a deadline costs no object of its own. Entries are invalidated lazily: one whose
 * generation no longer matches its SA's (the SA was replaced or removed) is stale.
 */
class DeadlineHeap {
  private when: number[] = [];
  private sas: SA[] = [];
  private gens: number[] = [];
  get size(): number { return this.when.length; }
  push(when: number, sa: SA, gen: number): void {
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
    const sa = this.sas[0];
    const current = sa.gen === this.gens[0];
    const last = this.when.length - 1;
    this.move(last, 0);
    this.when.pop();
    this.sas.pop();
    this.gens.pop();
    if (this.when.length) this.down(0);
    return current ? sa : undefined;
  }
  /** Drop stale entries and restore the heap order (O(n)). */
  compact(): void {
    let j = 0;
    for (let i = 0; i < this.when.length; i++) if (this.sas[i].gen === this.gens[i]) this.move(i, j++);
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

export type ExpiryKind = 'soft' | 'hard';

/** The numeric half of an SAID: protocol and SPI in one exact integer (< 2^40). */
const spiKey = (proto: number, spi: number): number => proto * 4294967296 + spi;

export class Sadb {
  /**
   * SAs by (protocol, SPI), the destination compared on a hit, as Linux's byspi hash does:
   * a numeric key needs no string per lookup, and SPIs rarely repeat across destinations
   * (those that do share a small array).
   */
  private readonly bySpi = new Map<number, SA | SA[]>();
  private n = 0;
  private readonly deadlines = new DeadlineHeap();
  private readonly perType = new Map<number, number>();
  /** SA reference numbers (KLIPS's refTable). */
  readonly sarefs = new SarefTable<SA>();

  /** How many SAs of one SA type (0: all) the table holds. */
  count(satype = 0): number {
    return satype === 0 ? this.n : this.perType.get(satype) ?? 0;
  }

  get size(): number {
    return this.n;
  }

  /** Deadlines queued, stale ones included (bounded by compaction). */
  get deadlineCount(): number {
    return this.deadlines.size;
  }

  get(said: Said): SA | undefined {
    return this.find(said.proto, said.spi, said.dst);
  }

  has(said: Said): boolean {
    return this.find(said.proto, said.spi, said.dst) !== undefined;
  }

  private find(proto: number, spi: number, dst: string): SA | undefined {
    const v = this.bySpi.get(spiKey(proto, spi));
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return v.said.dst === dst ? v : undefined;
    for (const sa of v) if (sa.said.dst === dst) return sa;
    return undefined;
  }

  /** Every SA, in no particular order. */
  *values(): IterableIterator<SA> {
    for (const v of this.bySpi.values()) {
      if (Array.isArray(v)) yield* v.slice();
      else yield v;
    }
  }

  /** Store `sa` under its SAID, replacing `old` (same SAID) when given. */
  private put(sa: SA, old?: SA): void {
    const k = spiKey(sa.said.proto, sa.said.spi);
    const v = this.bySpi.get(k);
    if (v === undefined || v === old) this.bySpi.set(k, sa);
    else if (Array.isArray(v)) {
      const i = old ? v.indexOf(old) : -1;
      if (i >= 0) v[i] = sa;
      else v.push(sa);
    } else this.bySpi.set(k, [v, sa]);
  }

  /** Insert a new SA (the caller checked it is absent), intern its ref and schedule its time limits. */
  insert(sa: SA): void {
    this.put(sa);
    this.sarefs.intern(sa);
    this.n++;
    this.perType.set(sa.satype, this.count(sa.satype) + 1);
    this.schedule(sa);
  }

  /** Put `sa` in place of the SA with the same SAID (UPDATE), keeping its group links and its SAref slot. */
  replace(old: SA, sa: SA): void {
    this.sarefs.move(old, sa);
    sa.next = old.next;
    sa.prev = old.prev;
    if (old.next) old.next.prev = sa;
    if (old.prev) old.prev.next = sa;
    sa.gen = old.gen + 1;
    old.gen = -1;
    this.put(sa, old);
    this.schedule(sa);
  }

  /** Remove one SA, unlinking it from its group and freeing its SAref. */
  remove(sa: SA): boolean {
    const k = spiKey(sa.said.proto, sa.said.spi);
    const v = this.bySpi.get(k);
    if (v === sa) this.bySpi.delete(k);
    else if (Array.isArray(v) && v.includes(sa)) {
      const rest = v.filter((x) => x !== sa);
      this.bySpi.set(k, rest.length === 1 ? rest[0] : rest);
    } else return false;
    this.n--;
    this.perType.set(sa.satype, this.count(sa.satype) - 1);
    this.sarefs.untern(sa);
    if (sa.prev) sa.prev.next = sa.next;
    if (sa.next) sa.next.prev = sa.prev;
    sa.next = sa.prev = undefined;
    sa.gen = -1;
    return true;
  }

  /** Remove the SAs of one SA type (0: all). Returns what was removed. */
  flush(satype: number): SA[] {
    const gone: SA[] = [];
    for (const sa of this.values()) if (satype === 0 || sa.satype === satype) gone.push(sa);
    if (gone.length === this.n) {
      this.bySpi.clear();
      this.n = 0;
      this.perType.clear();
      this.deadlines.clear();
      for (const sa of gone) { sa.next = sa.prev = undefined; sa.gen = -1; this.sarefs.untern(sa); }
    } else {
      for (const sa of gone) this.remove(sa);
    }
    return gone;
  }

  /**
   * A free SPI in [min, max] for (proto, dst): random probes first, then a scan from a
   * random start, so exhaustion is detected exactly. Undefined when every SPI is taken.
   */
  allocateSpi(proto: number, dst: string, min: number, max: number, random: (n: number) => number): number | undefined {
    const span = max - min + 1;
    const free = (spi: number) => this.find(proto, spi, dst) === undefined;
    for (let i = 0; i < Math.min(16, span); i++) {
      const spi = min + random(span);
      if (free(spi)) return spi;
    }
    const start = random(span);
    const limit = Math.min(span, this.n + 1);
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
   * Link a → b, as KLIPS's X_GRPSA does: 'EEXIST' if a already has a next or b's chain
   * holds a (b already having a predecessor is no obstacle). b leaves its former
   * predecessor's chain, so every SA stays in exactly one chain (KLIPS left the former
   * predecessor pointing at b too).
   */
  link(a: SA, b: SA): 'EEXIST' | undefined {
    if (a.next) return 'EEXIST';
    for (let s: SA | undefined = b; s; s = s.next) if (s === a) return 'EEXIST';
    if (b.prev) b.prev.next = undefined;
    a.next = b;
    b.prev = a;
    return undefined;
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
  private deadline(when: number, sa: SA): void {
    this.deadlines.push(when, sa, sa.gen);
    if (this.deadlines.size > 4 * this.n + 1024) this.deadlines.compact();
  }

  private schedule(sa: SA): void {
    const add = sa.current.addtime;
    if (sa.soft.addtime > 0) this.deadline(add + sa.soft.addtime, sa);
    if (sa.hard.addtime > 0) this.deadline(add + sa.hard.addtime, sa);
    if (sa.used) this.scheduleUse(sa);
  }

  private scheduleUse(sa: SA): void {
    const use = sa.current.usetime;
    if (sa.soft.usetime > 0) this.deadline(use + sa.soft.usetime, sa);
    if (sa.hard.usetime > 0) this.deadline(use + sa.hard.usetime, sa);
  }

  /** Which limit (if any) the SA has reached now: hard wins over soft; soft reported once. */
  reached(sa: SA, now: number): ExpiryKind | undefined {
    const c = sa.current;
    const over = (l: Limits) =>
      (l.allocations > 0 && c.allocations >= l.allocations) ||
      (l.bytes > 0 && c.bytes >= l.bytes) ||
      (l.packets > 0 && c.packets >= l.packets) ||
      (l.addtime > 0 && now >= c.addtime + l.addtime) ||
      (l.usetime > 0 && sa.used && now >= c.usetime + l.usetime);
    if (over(sa.hard)) return 'hard';
    if (!sa.softSent && over(sa.soft)) return 'soft';
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

  /** Mark soft expiry sent: the SA is DYING from now on (larval SAs stay larval). */
  markSoft(sa: SA): void {
    sa.softSent = true;
    if (sa.state !== SADB_SASTATE_LARVAL) sa.state = SADB_SASTATE_DYING;
  }
}
