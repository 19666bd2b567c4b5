/**
 * spd/eroute-table.ts owns KLIPS's eroute table: the (source subnet, destination subnet,
 * protocol, ports) selectors that send an outbound packet to an SA or to a shunt (%pass,
 * %drop, %reject, %hold, %trap, %trapsubnet: protocol 61 INT with SPI 256..261). It also
 * owns the packet-to-eroute match and the /proc/net/ipsec_eroute line format.
 *
 * Match semantics. An eroute matches a packet when the packet's source address lies
 * inside flow.src/srcPrefix, its destination inside flow.dst/dstPrefix, and proto, sport
 * and dport are equal wherever the eroute's value is non-zero (0 means any). When several
 * eroutes match, the most specific wins, compared lexicographically on
 *   (srcPrefix, dstPrefix, proto != 0, sport != 0, dport != 0),
 * larger first. This is the answer KLIPS's radix tree (radij.c, keyed on the concatenated
 * sockaddr_encap src|dst|proto|sport|dport with a mask of the same shape) gives when every
 * mask is contiguous. Two different eroutes can never tie: equal prefix lengths and equal
 * "which fields are set" plus both matching the same packet means the same flow.
 * IPv4 and IPv6 eroutes live in separate trees; a packet only meets eroutes of its family.
 * With no matching eroute the caller applies KLIPS's default, %drop.
 *
 * Data structure. Per family, a path-compressed binary trie (Patricia) on the source
 * prefix. A source node that holds eroutes owns a second trie on the destination prefix;
 * a destination node holds the few eroutes that differ only in proto/ports, most specific
 * first. A lookup walks the source path once, collecting the nodes that hold eroutes, and
 * for each of them (deepest first) walks its destination trie, collecting likewise and
 * trying the deepest first; the first eroute whose proto/ports fit is the answer. Addresses
 * are kept as 32-bit words (one for IPv4, four for IPv6), so a lookup does no string work
 * and its cost is bounded by the address width, never by the number of eroutes. An exact
 * Map keyed on the normalised flow answers get/add/delete/replace; add walks one source
 * and one destination path (at most 33 nodes each for IPv4, 129 for IPv6), delete goes
 * straight to its nodes and prunes those it leaves empty (at most two per trie), so
 * memory returns and the cost of both stays flat as the table grows.
 *
 * Errors (as KLIPS's radij answers PF_KEY): EEXIST for a duplicate flow, EFAULT for
 * deleting or replacing a flow that is not there, EINVAL for a malformed flow.
 *
 * The same table is the KAME dialect's security policy database (one policy table for
 * both dialects): every eroute is an outbound policy with an index (`id`, numbered as
 * Linux's xfrm_gen_index numbers them: a counter in steps of 8 with the direction in the
 * low bits) and a place in the SPD's listing order (`stamp`, newest first, as Linux's
 * policy_all list). An eroute made by X_SPDADD also carries the policy's own attributes
 * (`policy`: action, templates, priority, lifetimes). Inbound and forward policies, which
 * KLIPS's eroutes cannot express, are kept beside the tries (never matched by a packet
 * lookup) and listed with the rest by policies(). Mapping policies to eroutes and back is
 * the engine's (engine/policy.ts).
 */

import {
  AF_INET, AF_INET6, ERRNO, IPPROTO_INT, IPPROTO_IPIP, SHUNT_NAMES,
  formatAddress, maskToPrefix, parseIPv4, parseIPv6,
} from '../wire/index.js';
import { formatSaidOld, type Said } from '../sadb/said.js';

/** An eroute's selector, normalised: host bits cleared under each prefix, canonical text. */
export interface Flow {
  /** AF_INET (2) or AF_INET6 (10). */
  family: number;
  src: string;
  srcPrefix: number;
  dst: string;
  dstPrefix: number;
  /** Transport protocol, 0 = any. */
  proto: number;
  /** 0 = any. */
  sport: number;
  /** 0 = any. */
  dport: number;
}

/**
 * A flow that `ErouteTable.makeFlow` validated and normalised: the only way to make one,
 * so the table's methods trust it and never validate again. (A type-level mark; the
 * object is a plain Flow.)
 */
declare const VALID_FLOW: unique symbol;
export type ValidFlow = Readonly<Flow> & { readonly [VALID_FLOW]: true };

export interface Ident {
  type: number;
  data: string;
}

/** A policy's direction: KLIPS's eroutes are all 'out'. */
export type PolicyDir = 'in' | 'out' | 'fwd';
/** Linux's XFRM_POLICY_IN/OUT/FWD, the low bits of a policy index. */
export const XFRM_DIR: Readonly<Record<PolicyDir, number>> = { in: 0, out: 1, fwd: 2 };

/** One template of an IPsec policy (Linux's xfrm_tmpl as PF_KEY's sadb_x_ipsecrequest gives it). */
export interface Template {
  /** IPPROTO_ESP, IPPROTO_AH or IPPROTO_COMP. */
  proto: number;
  /** IPSEC_MODE_TRANSPORT, _TUNNEL or _BEET. */
  mode: number;
  /** IPSEC_LEVEL_REQUIRE, _USE (optional) or _UNIQUE (a reqid of its own). */
  level: number;
  reqid: number;
  /** The address family of the SA (the tunnel's, in tunnel mode). */
  family: number;
  /** Tunnel mode: the SA's endpoints. */
  src?: string;
  dst?: string;
}

export interface PolicyLimits {
  allocations: number;
  bytes: number;
  addtime: number;
  usetime: number;
}

/** What a KAME X_SPDADD says beyond the selector (Linux's xfrm_policy). */
export interface PolicyAttrs {
  /** IPSEC_POLICY_IPSEC (templates), _NONE (pass) or _DISCARD. */
  type: number;
  templates: Template[];
  priority: number;
  hard: PolicyLimits;
  soft: PolicyLimits;
}

export interface Eroute {
  flow: ValidFlow;
  /** The SA (or shunt: proto 61 INT, SPI 256..261) packets matching the flow go to. */
  said: Said;
  /** Pid of the client that made it (KLIPS er_pid). */
  pid: number;
  /** Packets that matched (KLIPS er_count). */
  packets: number;
  /** Clock seconds of the last match (KLIPS er_lasttime); 0 = never matched. */
  lastUsed: number;
  /** Clock seconds when it was made. */
  created: number;
  identSrc?: Ident;
  identDst?: Ident;
  /** %hold / %trap: the last packet held (KLIPS er_last); the dataplane sets it. */
  held?: Uint8Array;
  /** The policy index (Linux's xp->index): direction in the low 3 bits. */
  id: number;
  /** When it was linked, in the table's own order (an SPD listing is newest first). */
  stamp: number;
  /** 'out' for every eroute; 'in'/'fwd' only for KAME policies kept beside the eroutes. */
  dir: PolicyDir;
  /** The KAME policy's attributes, when X_SPDADD/X_SPDUPDATE made it. */
  policy?: PolicyAttrs;
}

/** What a lookup needs from a packet: addresses as 4 or 16 bytes, proto and ports. */
export interface PacketSelector {
  family: number;
  src: Uint8Array;
  dst: Uint8Array;
  proto: number;
  sport: number;
  dport: number;
}

export interface ErouteOptions {
  pid?: number;
  identSrc?: Ident;
  identDst?: Ident;
  policy?: PolicyAttrs;
}

export type ErouteErrorCode = 'EEXIST' | 'EFAULT' | 'EINVAL';

export class ErouteError extends Error {
  readonly code: ErouteErrorCode;
  /** The Linux errno for `code`, as it goes into sadb_msg_errno. */
  readonly errno: number;
  constructor(code: ErouteErrorCode, message: string) {
    super(message);
    this.name = 'ErouteError';
    this.code = code;
    this.errno = ERRNO[code];
  }
}

/* ------------------------------------------------------------------------------------ */
/* Addresses as words                                                                   */
/* ------------------------------------------------------------------------------------ */

/** The top `bits` bits of a 32-bit word set (as int32); bits is clamped to 0..32. */
function maskWord(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? -1 : -1 << (32 - bits);
}

function familyBits(family: number): number {
  return family === AF_INET ? 32 : family === AF_INET6 ? 128 : 0;
}

function familyName(family: number): string {
  return family === AF_INET ? 'IPv4' : family === AF_INET6 ? 'IPv6' : `family ${family}`;
}

/** The first `n` words (1 or 4) of address bytes into `out`; the rest are zeroed. */
function bytesToWords(b: Uint8Array, n: number, out: Int32Array): void {
  for (let j = 0; j < 4; j++) {
    out[j] = j < n ? (b[4 * j] << 24) | (b[4 * j + 1] << 16) | (b[4 * j + 2] << 8) | b[4 * j + 3] : 0;
  }
}

/** Clear every bit past `len`. */
function clearHostBits(w: Int32Array, len: number): void {
  for (let j = 0; j < 4; j++) w[j] &= maskWord(len - 32 * j);
}

function wordsToText(family: number, w: Int32Array): string {
  const n = family === AF_INET ? 4 : 16;
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (w[i >>> 2] >>> (24 - 8 * (i & 3))) & 0xff;
  return formatAddress(family, b);
}

/** An address as text or as bytes. */
export type Address = string | Uint8Array;

/** An address's bytes if it belongs to `family`, else undefined. */
function addressOf(family: number, a: Address): Uint8Array | undefined {
  if (a instanceof Uint8Array) return a.length === (family === AF_INET ? 4 : 16) ? a : undefined;
  if (typeof a !== 'string') return undefined;
  return family === AF_INET ? parseIPv4(a) : family === AF_INET6 ? parseIPv6(a) : undefined;
}

const show = (a: Address): string => (typeof a === 'string' ? JSON.stringify(a) : `bytes ${Buffer.from(a).toString('hex')}`);

/** Bit `i` (0 = most significant) of a key. */
function keyBit(k: Int32Array, i: number): number {
  return (k[i >>> 5] >>> (31 - (i & 31))) & 1;
}

/* ------------------------------------------------------------------------------------ */
/* A path-compressed binary prefix trie                                                 */
/* ------------------------------------------------------------------------------------ */

/**
 * One prefix (w0..w3 with bits past `len` clear). A node either carries a value or is a
 * glue node with exactly two children; release() keeps it so.
 */
class TrieNode<V> {
  /* The fields a lookup reads come first, so they tend to share a cache line. */
  readonly len: number;
  w0: number;
  c0: TrieNode<V> | null = null;
  c1: TrieNode<V> | null = null;
  value: V | null = null;
  w1: number;
  w2: number;
  w3: number;
  parent: TrieNode<V> | null = null;

  constructor(k: Int32Array, len: number) {
    this.len = len;
    this.w0 = k[0] & maskWord(len);
    this.w1 = k[1] & maskWord(len - 32);
    this.w2 = k[2] & maskWord(len - 64);
    this.w3 = k[3] & maskWord(len - 96);
  }

  word(j: number): number {
    return j === 0 ? this.w0 : j === 1 ? this.w1 : j === 2 ? this.w2 : this.w3;
  }

  bit(i: number): number {
    return (this.word(i >>> 5) >>> (31 - (i & 31))) & 1;
  }
}

/** Does node `n`'s prefix contain address `a`? */
function covers<V>(n: TrieNode<V>, a: Int32Array): boolean {
  const len = n.len;
  if (len <= 32) return ((a[0] ^ n.w0) & maskWord(len)) === 0;
  if (a[0] !== n.w0) return false;
  if (len <= 64) return ((a[1] ^ n.w1) & maskWord(len - 32)) === 0;
  if (a[1] !== n.w1) return false;
  if (len <= 96) return ((a[2] ^ n.w2) & maskWord(len - 64)) === 0;
  if (a[2] !== n.w2) return false;
  return ((a[3] ^ n.w3) & maskWord(len - 96)) === 0;
}

/** Length of the common prefix of key `k` and node `n`, at most `limit`. */
function commonLength<V>(k: Int32Array, n: TrieNode<V>, limit: number): number {
  for (let j = 0; j < 4 && 32 * j < limit; j++) {
    const x = k[j] ^ n.word(j);
    if (x !== 0) {
      const l = 32 * j + Math.clz32(x);
      return l < limit ? l : limit;
    }
  }
  return limit;
}

/** Nodes are counted in a counter shared by every trie of a table (see nodeCount()). */
interface NodeCounter {
  nodes: number;
}

class PrefixTrie<V> {
  root: TrieNode<V> | null = null;

  constructor(private readonly counter: NodeCounter) {}

  private make(k: Int32Array, len: number): TrieNode<V> {
    this.counter.nodes++;
    return new TrieNode<V>(k, len);
  }

  /** Put `neu` (possibly null) where `old` hangs under `parent` (or at the root). */
  private link(parent: TrieNode<V> | null, old: TrieNode<V>, neu: TrieNode<V> | null): void {
    if (neu !== null) neu.parent = parent;
    if (parent === null) this.root = neu;
    else if (parent.c0 === old) parent.c0 = neu;
    else parent.c1 = neu;
  }

  private attach(parent: TrieNode<V>, child: TrieNode<V>, side: number): void {
    child.parent = parent;
    if (side === 0) parent.c0 = child;
    else parent.c1 = child;
  }

  /** The node for exactly (k, len), created (with a glue node if needed) when absent. */
  ensure(k: Int32Array, len: number): TrieNode<V> {
    let parent: TrieNode<V> | null = null;
    let n = this.root;
    while (n !== null) {
      const cpl = commonLength(k, n, len < n.len ? len : n.len);
      if (cpl === n.len) {
        if (len === n.len) return n;
        parent = n;
        n = keyBit(k, n.len) === 0 ? n.c0 : n.c1;
        continue;
      }
      // n's prefix is not a prefix of k: the new node goes above n.
      const fresh = this.make(k, len);
      if (cpl === len) {
        // k/len contains n: fresh becomes n's parent.
        this.link(parent, n, fresh);
        this.attach(fresh, n, n.bit(len));
        return fresh;
      }
      // They diverge at bit cpl: a glue node at cpl takes both.
      const glue = this.make(k, cpl);
      this.link(parent, n, glue);
      this.attach(glue, n, n.bit(cpl));
      this.attach(glue, fresh, keyBit(k, cpl));
      return fresh;
    }
    const fresh = this.make(k, len);
    if (parent === null) this.root = fresh;
    else this.attach(parent, fresh, keyBit(k, parent.len));
    return fresh;
  }

  /** Drop `n`'s value and remove every node that is left without a purpose. */
  release(n: TrieNode<V>): void {
    n.value = null;
    let cur: TrieNode<V> | null = n;
    while (cur !== null && cur.value === null) {
      if (cur.c0 !== null && cur.c1 !== null) return; // still a needed glue node
      const parent: TrieNode<V> | null = cur.parent;
      this.link(parent, cur, cur.c0 ?? cur.c1);
      cur.parent = cur.c0 = cur.c1 = null;
      this.counter.nodes--;
      cur = parent;
    }
  }

  /** Forget everything (the caller resets the shared counter). */
  reset(): void {
    this.root = null;
  }
}

/* ------------------------------------------------------------------------------------ */
/* The table                                                                            */
/* ------------------------------------------------------------------------------------ */

/** Bits of an eroute's "which of proto/sport/dport are set" rank (higher = more specific). */
function rankOf(proto: number, sport: number, dport: number): number {
  return (proto !== 0 ? 4 : 0) | (sport !== 0 ? 2 : 0) | (dport !== 0 ? 1 : 0);
}

/** A flow taken apart for the tries. */
interface Parsed {
  family: number;
  src: Int32Array;
  srcPrefix: number;
  dst: Int32Array;
  dstPrefix: number;
  proto: number;
  sport: number;
  dport: number;
  key: string;
  /** The validated flow itself (its text is canonical). */
  flow: ValidFlow;
}

/**
 * An eroute in place. The eroutes of one destination node form a chain (`next`), most
 * specific first; the slot knows where it hangs, so delete needs no search.
 */
interface Slot {
  proto: number;
  sport: number;
  dport: number;
  e: Eroute;
  next: Slot | null;
  rank: number;
  key: string;
  srcNode: TrieNode<DstTrie>;
  dstTrie: DstTrie;
  dstNode: TrieNode<Slot>;
}

type DstTrie = PrefixTrie<Slot>;

/** Order of a chain: most specific first, then by proto, sport, dport. */
function slotBefore(a: Slot, b: Slot): boolean {
  if (a.rank !== b.rank) return a.rank > b.rank;
  if (a.proto !== b.proto) return a.proto < b.proto;
  if (a.sport !== b.sport) return a.sport < b.sport;
  return a.dport < b.dport;
}

/** Unsigned comparison of two nodes' words. */
function compareWords<A, B>(a: TrieNode<A>, b: TrieNode<B>): number {
  for (let j = 0; j < 4; j++) {
    const x = a.word(j) >>> 0;
    const y = b.word(j) >>> 0;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** The /proc/net/ipsec_eroute order; see ErouteTable.entries(). */
function procOrder(a: Slot, b: Slot): number {
  const fa = a.e.flow;
  const fb = b.e.flow;
  return (fa.family === fb.family ? 0 : fa.family === AF_INET ? -1 : 1)
    || compareWords(a.srcNode, b.srcNode)
    || compareWords(a.dstNode, b.dstNode)
    || a.proto - b.proto || a.sport - b.sport || a.dport - b.dport
    || fb.srcPrefix - fa.srcPrefix || fb.dstPrefix - fa.dstPrefix;
}

function isPort(n: unknown): n is number {
  return Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffff;
}

function isProto(n: unknown): n is number {
  return Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xff;
}

function badFlow(why: string): never {
  throw new ErouteError('EINVAL', `invalid eroute flow: ${why}`);
}

const defaultClock = (): number => (Date.now() / 1000) | 0;

export class ErouteTable {
  private readonly clock: () => number;
  private readonly counter: NodeCounter = { nodes: 0 };
  private readonly src4: PrefixTrie<DstTrie>;
  private readonly src6: PrefixTrie<DstTrie>;
  private readonly byKey = new Map<string, Slot>();
  /* Scratch words for parse() and lookups (both synchronous, never re-entered). */
  private readonly pktSrc = new Int32Array(4);
  private readonly pktDst = new Int32Array(4);
  private readonly keySrc = new Int32Array(4);
  private readonly keyDst = new Int32Array(4);
  private readonly srcPath: (TrieNode<DstTrie> | undefined)[] = new Array(129);
  private readonly dstPath: (TrieNode<Slot> | undefined)[] = new Array(129);
  /** Every policy (eroutes and the in/fwd ones) by index. */
  private readonly ids = new Map<number, Eroute>();
  /** KAME inbound and forward policies, by direction and flow key. */
  private readonly others = new Map<string, Eroute>();
  /** Linux's idx_generator: indexes go up in steps of 8, the direction in the low bits. */
  private indexGen = 0;
  private nextStamp = 1;

  constructor(clock: () => number = defaultClock) {
    this.clock = clock;
    this.src4 = new PrefixTrie<DstTrie>(this.counter);
    this.src6 = new PrefixTrie<DstTrie>(this.counter);
  }

  /**
   * The one place a flow is validated: a normalised flow from addresses and masks, the
   * way X_ADDFLOW carries them (SRC_FLOW/DST_FLOW plus SRC_MASK/DST_MASK sockaddrs), as
   * text or as 4/16 bytes. A mask may also be given as a prefix length. Host bits under
   * the mask are cleared. ErouteError EINVAL for an unknown family, an address or mask
   * of the wrong family, a non-contiguous mask, or a protocol/port out of range.
   */
  static makeFlow(
    family: number, src: Address, srcMask: Address | number, dst: Address, dstMask: Address | number,
    proto = 0, sport = 0, dport = 0,
  ): ValidFlow {
    const bits = familyBits(family);
    if (bits === 0) badFlow(`unsupported address family ${family} (want AF_INET ${AF_INET} or AF_INET6 ${AF_INET6})`);
    const w = new Int32Array(4);
    const side = (what: string, addr: Address, mask: Address | number): [string, number] => {
      const b = addressOf(family, addr);
      if (!b) badFlow(`${what} address ${show(addr)} is not ${familyName(family)}`);
      let prefix: number;
      if (typeof mask === 'number') {
        if (!Number.isInteger(mask) || mask < 0 || mask > bits) badFlow(`${what} prefix length ${mask} is outside 0..${bits}`);
        prefix = mask;
      } else {
        const m = addressOf(family, mask);
        if (!m) badFlow(`${what} mask ${show(mask)} is not ${familyName(family)}`);
        prefix = maskToPrefix(family, formatAddress(family, m));
        if (prefix < 0) badFlow(`${what} mask ${show(mask)} is not contiguous (only prefix masks are supported)`);
      }
      bytesToWords(b, b.length >>> 2, w);
      const w0 = w[0];
      clearHostBits(w, prefix);
      // parseIPv4 takes only canonical dotted quads, so IPv4 text without host bits is kept.
      const keep = typeof addr === 'string' && family === AF_INET && w[0] === w0;
      return [keep ? addr : wordsToText(family, w), prefix];
    };
    const [s, sp] = side('source', src, srcMask);
    const [d, dp] = side('destination', dst, dstMask);
    if (!isProto(proto)) badFlow(`protocol ${proto} is outside 0..255`);
    if (!isPort(sport)) badFlow(`source port ${sport} is outside 0..65535`);
    if (!isPort(dport)) badFlow(`destination port ${dport} is outside 0..65535`);
    return { family, src: s, srcPrefix: sp, dst: d, dstPrefix: dp, proto, sport, dport } as Flow as ValidFlow;
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Trie nodes held (source and destination tries, both families); 0 when empty. */
  nodeCount(): number {
    return this.counter.nodes;
  }

  /** Install an eroute; ErouteError EEXIST if an eroute with the same flow exists. */
  add(flow: ValidFlow, said: Said, opts: ErouteOptions = {}): Eroute {
    const p = this.parse(flow);
    if (this.byKey.has(p.key)) {
      throw new ErouteError('EEXIST', `eroute ${describe(flow)} already exists`);
    }
    const e = this.makeEroute(p, said, opts, 'out');
    this.insert(p, e);
    return e;
  }

  /**
   * KLIPS REPLACEFLOW: the eroute with this flow is broken and made anew pointing to
   * `said` (fresh counters, no held packet). ErouteError EFAULT if there is none. The old
   * eroute is returned with whatever packet it held, for the caller to re-inject.
   */
  replace(flow: ValidFlow, said: Said, opts: ErouteOptions = {}): { old: Eroute; now: Eroute } {
    const p = this.parse(flow);
    const slot = this.byKey.get(p.key);
    if (slot === undefined) throw new ErouteError('EFAULT', `no eroute ${describe(flow)} to replace`);
    const old = slot.e;
    const now = this.makeEroute(p, said, opts, 'out', old.id);
    slot.e = now;
    return { old, now };
  }

  /** Remove the eroute with this flow and return it; ErouteError EFAULT if there is none. */
  delete(flow: ValidFlow): Eroute {
    const p = this.parse(flow);
    const slot = this.byKey.get(p.key);
    if (slot === undefined) throw new ErouteError('EFAULT', `no eroute ${describe(flow)} to delete`);
    this.byKey.delete(p.key);
    const node = slot.dstNode;
    if (node.value === slot) {
      node.value = slot.next;
    } else {
      let prev = node.value!;
      while (prev.next !== slot) prev = prev.next!;
      prev.next = slot.next;
    }
    slot.next = null;
    if (node.value === null) {
      slot.dstTrie.release(slot.dstNode);
      if (slot.dstTrie.root === null) {
        (p.family === AF_INET ? this.src4 : this.src6).release(slot.srcNode);
      }
    }
    this.ids.delete(slot.e.id);
    return slot.e;
  }

  /** The eroute with exactly this flow (after normalisation), if any. */
  get(flow: ValidFlow): Eroute | undefined {
    return this.byKey.get(this.parse(flow).key)?.e;
  }

  /** Remove every eroute (KLIPS CLEARFLOW) and return them, in entries() order. KAME's in/fwd policies stay. */
  clear(): Eroute[] {
    const all = [...this.entries()];
    this.byKey.clear();
    this.src4.reset();
    this.src6.reset();
    this.counter.nodes = 0;
    for (const e of all) this.ids.delete(e.id);
    return all;
  }

  // ---------- the KAME dialect's view: the table as a security policy database ----------

  /** The policy of direction `dir` with exactly this selector: the eroute for 'out'. */
  getPolicy(dir: PolicyDir, flow: ValidFlow): Eroute | undefined {
    return dir === 'out' ? this.get(flow) : this.others.get(`${dir}|${this.parse(flow).key}`);
  }

  /**
   * Install a KAME policy: an eroute for 'out' (as add()), else an in/fwd policy beside
   * the eroutes. ErouteError EEXIST if the direction already has one with this selector.
   */
  addPolicy(dir: PolicyDir, flow: ValidFlow, said: Said, opts: ErouteOptions = {}): Eroute {
    if (dir === 'out') return this.add(flow, said, opts);
    const key = `${dir}|${this.parse(flow).key}`;
    if (this.others.has(key)) throw new ErouteError('EEXIST', `${dir} policy ${describe(flow)} already exists`);
    const e = this.makeEroute(this.parse(flow), said, opts, dir);
    this.others.set(key, e);
    return e;
  }

  /**
   * Linux's X_SPDUPDATE: the policy with this selector is replaced, keeping its index (and
   * for 'out' its eroute's place), or added when there is none. Returns the one replaced.
   */
  updatePolicy(dir: PolicyDir, flow: ValidFlow, said: Said, opts: ErouteOptions = {}): { old?: Eroute; now: Eroute } {
    if (dir === 'out') {
      if (!this.get(flow)) return { now: this.add(flow, said, opts) };
      return this.replace(flow, said, opts);
    }
    const key = `${dir}|${this.parse(flow).key}`;
    const old = this.others.get(key);
    const now = this.makeEroute(this.parse(flow), said, opts, dir, old?.id);
    this.others.set(key, now);
    return { old, now };
  }

  /** Remove the policy of direction `dir` with this selector; ErouteError EFAULT if there is none. */
  deletePolicy(dir: PolicyDir, flow: ValidFlow): Eroute {
    if (dir === 'out') return this.delete(flow);
    const key = `${dir}|${this.parse(flow).key}`;
    const e = this.others.get(key);
    if (!e) throw new ErouteError('EFAULT', `no ${dir} policy ${describe(flow)} to delete`);
    this.others.delete(key);
    this.ids.delete(e.id);
    return e;
  }

  /** The policy with this index (Linux's xfrm_policy_byid), eroute or not. */
  byId(id: number): Eroute | undefined {
    return this.ids.get(id);
  }

  /** Every policy, eroutes and in/fwd alike, newest first (Linux's policy_all walk). */
  policies(): Eroute[] {
    return [...this.ids.values()].sort((a, b) => b.stamp - a.stamp);
  }

  /** How many policies there are, eroutes and in/fwd alike. */
  get policyCount(): number {
    return this.ids.size;
  }

  /** Remove every policy (Linux's X_SPDFLUSH): the eroutes, then the in/fwd policies. Returns them. */
  flushPolicies(): Eroute[] {
    const gone = [...this.clear(), ...this.others.values()];
    for (const e of this.others.values()) this.ids.delete(e.id);
    this.others.clear();
    return gone;
  }

  /** Linux's xfrm_gen_index: the next free index of a direction. */
  private newIndex(dir: PolicyDir): number {
    for (;;) {
      let idx = (this.indexGen | XFRM_DIR[dir]) >>> 0;
      this.indexGen = (this.indexGen + 8) >>> 0;
      if (idx === 0) idx = 8;
      if (!this.ids.has(idx)) return idx;
    }
  }

  /** The most specific eroute matching the packet (see the header), without counting. */
  lookup(pkt: PacketSelector): Eroute | undefined {
    return this.find(pkt)?.e;
  }

  /** lookup(), and count the match: packets + 1, lastUsed = now. */
  match(pkt: PacketSelector): Eroute | undefined {
    const slot = this.find(pkt);
    if (slot === undefined) return undefined;
    this.used(slot.e);
    return slot.e;
  }

  /** Count a packet routed by `e` (what match() does for the eroute it finds): for a caller that found `e` for the same flow just before. */
  used(e: Eroute): void {
    e.packets++;
    e.lastUsed = this.clock();
  }

  /**
   * Every eroute in the order a walk of KLIPS's radix tree visits them, which is the order
   * of /proc/net/ipsec_eroute: the tree is keyed on sockaddr_encap bytes from sen_type on,
   * so IPv4 comes before IPv6, then by source address, destination address, proto, sport,
   * dport (as unsigned numbers); eroutes whose key bytes are equal and differ only in
   * their masks sit on one dupedkey chain, the more specific mask first (we order those
   * by source prefix, then destination prefix, longer first). A snapshot: changing the
   * table while iterating is safe. Costs a sort, O(n log n).
   */
  entries(): IterableIterator<Eroute> {
    const slots = [...this.byKey.values()];
    slots.sort(procOrder);
    return slots.map((s) => s.e).values();
  }

  [Symbol.iterator](): IterableIterator<Eroute> {
    return this.entries();
  }

  /* ---------------------------------------------------------------------------------- */

  /** A new eroute (or in/fwd policy), registered under its index: `id` kept when replacing, else a new one. */
  private makeEroute(p: Parsed, said: Said, opts: ErouteOptions, dir: PolicyDir, id?: number): Eroute {
    const f = p.flow;
    const flow = { family: f.family, src: f.src, srcPrefix: f.srcPrefix, dst: f.dst, dstPrefix: f.dstPrefix, proto: f.proto, sport: f.sport, dport: f.dport };
    const e: Eroute = {
      flow: Object.freeze(flow) as ValidFlow,
      said: { proto: said.proto, spi: said.spi, dst: said.dst },
      pid: opts.pid ?? 0,
      packets: 0,
      lastUsed: 0,
      created: this.clock(),
      id: id ?? this.newIndex(dir),
      stamp: this.nextStamp++,
      dir,
    };
    if (opts.identSrc) e.identSrc = { type: opts.identSrc.type, data: opts.identSrc.data };
    if (opts.identDst) e.identDst = { type: opts.identDst.type, data: opts.identDst.data };
    if (opts.policy) e.policy = opts.policy;
    this.ids.set(e.id, e);
    return e;
  }

  private insert(p: Parsed, e: Eroute): void {
    const srcTrie = p.family === AF_INET ? this.src4 : this.src6;
    const srcNode = srcTrie.ensure(p.src, p.srcPrefix);
    if (srcNode.value === null) srcNode.value = new PrefixTrie<Slot>(this.counter);
    const dstTrie = srcNode.value;
    const dstNode = dstTrie.ensure(p.dst, p.dstPrefix);
    const slot: Slot = {
      proto: p.proto, sport: p.sport, dport: p.dport, e, next: null,
      rank: rankOf(p.proto, p.sport, p.dport), key: p.key, srcNode, dstTrie, dstNode,
    };
    if (dstNode.value === null || slotBefore(slot, dstNode.value)) {
      slot.next = dstNode.value;
      dstNode.value = slot;
    } else {
      let prev = dstNode.value;
      while (prev.next !== null && slotBefore(prev.next, slot)) prev = prev.next;
      slot.next = prev.next;
      prev.next = slot;
    }
    this.byKey.set(p.key, slot);
  }

  /**
   * A flow's table key and address words (in this table's scratch arrays: use the result
   * before the next call). No validation: makeFlow did it, and only it makes a ValidFlow.
   */
  private parse(flow: ValidFlow): Parsed {
    const { family, proto, sport, dport } = flow;
    const src = this.keySrc;
    const dst = this.keyDst;
    const n = family === AF_INET ? 1 : 4;
    bytesToWords(addressOf(family, flow.src)!, n, src);
    bytesToWords(addressOf(family, flow.dst)!, n, dst);
    clearHostBits(src, flow.srcPrefix);
    clearHostBits(dst, flow.dstPrefix);
    const key = family === AF_INET
      ? `4|${src[0]}/${flow.srcPrefix}|${dst[0]}/${flow.dstPrefix}|${proto}|${sport}|${dport}`
      : `6|${src[0]},${src[1]},${src[2]},${src[3]}/${flow.srcPrefix}|${dst[0]},${dst[1]},${dst[2]},${dst[3]}/${flow.dstPrefix}|${proto}|${sport}|${dport}`;
    return { family, src, srcPrefix: flow.srcPrefix, dst, dstPrefix: flow.dstPrefix, proto, sport, dport, key, flow };
  }

  /** The lookup proper: source path deepest first, then each destination trie likewise. */
  private find(pkt: PacketSelector): Slot | undefined {
    let trie: PrefixTrie<DstTrie>;
    let bits: number;
    if (pkt.family === AF_INET) {
      if (pkt.src.length < 4 || pkt.dst.length < 4) return undefined;
      trie = this.src4;
      bits = 32;
    } else if (pkt.family === AF_INET6) {
      if (pkt.src.length < 16 || pkt.dst.length < 16) return undefined;
      trie = this.src6;
      bits = 128;
    } else return undefined;
    const a = this.pktSrc;
    const b = this.pktDst;
    bytesToWords(pkt.src, bits >>> 5, a);
    bytesToWords(pkt.dst, bits >>> 5, b);

    const path = this.srcPath;
    let depth = 0;
    let n = trie.root;
    while (n !== null && covers(n, a)) {
      if (n.value !== null) path[depth++] = n;
      if (n.len >= bits) break;
      n = keyBit(a, n.len) === 0 ? n.c0 : n.c1;
    }
    let hit: Slot | undefined;
    for (let i = depth - 1; i >= 0 && hit === undefined; i--) {
      hit = this.findDst(path[i]!.value!, b, bits, pkt.proto, pkt.sport, pkt.dport);
    }
    for (let i = 0; i < depth; i++) path[i] = undefined; // hold no pruned node alive
    return hit;
  }

  private findDst(trie: DstTrie, b: Int32Array, bits: number, proto: number, sport: number, dport: number): Slot | undefined {
    const path = this.dstPath;
    let depth = 0;
    let n = trie.root;
    while (n !== null && covers(n, b)) {
      if (n.value !== null) path[depth++] = n;
      if (n.len >= bits) break;
      n = keyBit(b, n.len) === 0 ? n.c0 : n.c1;
    }
    let hit: Slot | undefined;
    for (let i = depth - 1; i >= 0 && hit === undefined; i--) {
      for (let s = path[i]!.value; s !== null; s = s.next) {
        if ((s.proto === 0 || s.proto === proto) && (s.sport === 0 || s.sport === sport) && (s.dport === 0 || s.dport === dport)) {
          hit = s;
          break;
        }
      }
    }
    for (let i = 0; i < depth; i++) path[i] = undefined;
    return hit;
  }
}

function describe(f: Flow): string {
  const ports = f.proto || f.sport || f.dport ? ` proto ${f.proto} ports ${f.sport}->${f.dport}` : '';
  return `${f.src}/${f.srcPrefix} -> ${f.dst}/${f.dstPrefix}${ports}`;
}

/* ------------------------------------------------------------------------------------ */
/* /proc/net/ipsec_eroute                                                               */
/* ------------------------------------------------------------------------------------ */

/** The SAID as KLIPS's satot(said, 'x') prints it in /proc. */
function procSaid(s: Said): string {
  if (s.proto === IPPROTO_INT && SHUNT_NAMES[s.spi] === undefined) return `%unk-${s.spi}`;
  if (s.proto === IPPROTO_IPIP && s.spi === 0 && (s.dst === '0.0.0.0' || s.dst === '::')) {
    return s.dst === '::' ? '%passthrough6' : '%passthrough4';
  }
  return formatSaidOld(s);
}

/**
 * One line of /proc/net/ipsec_eroute for an eroute, without the trailing newline.
 * KLIPS (ipsec_rj_walker_procprint in ipsec_radij.c) prints
 *   printf("%-10d %-18s -> %-18s => %s%s\n", er_count, src, dst, said, proto)
 * where
 *   - src and dst are subnettoa() text "addr/prefix"; a non-zero port is appended as
 *     ":port" ("10.0.0.0/8:53"). For IPv6 the intent is "[addr/prefix]:port" — the
 *     KLIPS code overwrites the last prefix digit with ']' and writes the destination's
 *     '[' into the source buffer; we print the intended form;
 *   - said is satot(said, 'x'): "esp0x12345678@192.0.2.2", "tun0x105@…", shunts as
 *     "%pass", "%trap", …, an unknown INT SPI as "%unk-N", tun SPI 0 to the unspecified
 *     address as "%passthrough4"/"%passthrough6";
 *   - proto is ":N" when the eroute's transport protocol is not 0, else empty.
 * The count is printed as a whole number (KLIPS's 32-bit er_count would wrap).
 * Example: "42         10.1.2.0/24        -> 172.16.0.0/16      => esp0x1234@192.0.2.2"
 */
export function formatErouteProc(e: Eroute): string {
  const x = erouteEnds(e);
  return `${String(e.packets).padEnd(10)} ${x.src.padEnd(18)} -> ${x.dst.padEnd(18)} => ${x.said}`;
}

/** An eroute as /proc writes it but without the count and padding: "10.1.0.0/16 -> 10.2.0.0/16 => tun0x200@192.0.2.2". */
export function formatEroute(e: Eroute): string {
  const x = erouteEnds(e);
  return `${x.src} -> ${x.dst} => ${x.said}`;
}

/** The source, destination and SAID texts of an eroute's /proc line (see formatErouteProc). */
function erouteEnds(e: Eroute): { src: string; dst: string; said: string } {
  const f = e.flow;
  let src = `${f.src}/${f.srcPrefix}`;
  let dst = `${f.dst}/${f.dstPrefix}`;
  const v6 = f.family === AF_INET6;
  if (f.sport !== 0) src = v6 ? `[${src}]:${f.sport}` : `${src}:${f.sport}`;
  if (f.dport !== 0) dst = v6 ? `[${dst}]:${f.dport}` : `${dst}:${f.dport}`;
  const proto = f.proto !== 0 ? `:${f.proto}` : '';
  return { src, dst, said: `${procSaid(e.said)}${proto}` };
}
