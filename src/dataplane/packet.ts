/**
 * The IPv4/IPv6 packet codec the transforms share: parse and check a header (version,
 * lengths, IPv4 checksum and fragment bits), build one, walk the IPv6 next-header chain
 * as far as a task needs (the transport-mode insertion point, an IPsec header on input,
 * the upper-layer header for eroute selectors), reassemble a packet around a new payload
 * with its length and checksum fields right, and the internet checksum itself; also the
 * buffers the transforms build packets in (packetBuffer: slabs) and cheap views. Packets
 * are plain Buffers (or Uint8Arrays on input); nothing here knows about SAs.
 */

import type { PacketSelector } from '../spd/eroute-table.js';
import { AF_INET, AF_INET6 } from '../wire/constants.js';
import { formatIPv4Cached, formatIPv6 } from '../wire/sockaddr.js';
import { drop, type Result } from './drop.js';
import { rd16be, wr16be, wr32be } from '../wire/bytes.js';

// IP protocol numbers used here beside the IPsec ones of src/wire/constants.ts (Linux names).
export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_NONE = 59;
export const IPPROTO_DSTOPTS = 60;
const IPPROTO_AH = 51;

export const IPV4_HEADER_BYTES = 20;
export const IPV6_HEADER_BYTES = 40;
export const IP_MAXPACKET = 65535;
/** IPv4 flag bits in the 16-bit flags/fragment-offset word. */
export const IP_DF = 0x4000;
export const IP_MF = 0x2000;
export const IP_OFFMASK = 0x1fff;

/** A checked IP packet: views into the input, trimmed to the length the header states. */
export interface IpPacket {
  readonly version: 4 | 6;
  readonly bytes: Buffer;
  /** IPv4: ihl × 4 (options included); IPv6: 40. */
  readonly headerLength: number;
  /** IPv4 protocol or the IPv6 header's next header. */
  readonly protocol: number;
  readonly src: Buffer;
  readonly dst: Buffer;
  /** IPv4 TTL or IPv6 hop limit. */
  readonly ttl: number;
  /** IPv4 only (IPv6 fragmentation lives in an extension header, see HeaderPosition). */
  readonly fragmentOffset: number;
  readonly moreFragments: boolean;
  readonly dontFragment: boolean;
}

/** Where a header sits in a packet, and which byte names it (so a transform can relabel it). */
export interface HeaderPosition {
  readonly offset: number;
  readonly protocol: number;
  /** IPv4: 9; IPv6: 6, or the first byte of the extension header before it. */
  readonly protocolField: number;
  /** Fragment offset in bytes and the more-fragments flag seen on the way. */
  readonly fragmentOffset: number;
  readonly moreFragments: boolean;
}

const SLAB_BYTES = 64 * 1024;
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES).buffer;
let slabUsed = 0;

/**
 * An uninitialised buffer of n bytes for a packet the data plane builds (the caller
 * writes every byte). Packets up to 8 KiB are carved from 64 KiB slabs: cheaper than
 * Node's pool, whose 8 KiB blocks hold only five 1,500-byte packets. As with Node's pool,
 * a packet that is kept keeps its slab alive.
 */
export function packetBuffer(n: number): Buffer {
  if (n > SLAB_BYTES / 8) return Buffer.allocUnsafe(n);
  if (slabUsed + n > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES).buffer;
    slabUsed = 0;
  }
  const b = Buffer.from(slab, slabUsed, n);
  slabUsed = (slabUsed + n + 7) & ~7;
  return b;
}

/**
 * b[off, off + len) as a plain Uint8Array over the same memory: what crypto calls take,
 * made for one call (cheaper than a Buffer slice, which goes through the species lookup).
 */
export function region(b: Uint8Array, off: number, len: number): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset + off, len);
}

/** b[start, end) as a Buffer over the same memory (what subarray gives, without its species lookup). */
export function slice(b: Uint8Array, start: number, end: number): Buffer {
  return Buffer.from(b.buffer, b.byteOffset + start, end - start);
}

export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Ones'-complement sum of bytes [start, end) folded to 16 bits, plus `seed` (unfolded). */
export function onesSum(b: Uint8Array, start: number, end: number, seed = 0): number {
  let sum = seed;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (b[i] << 8) | b[i + 1];
  if (i < end) sum += b[i] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * onesSum over b[start, end) where `words` views b's bytes from b[0] as 32-bit words (b
 * 4-byte aligned; see wordsOf): the aligned middle is read a word at a time, in the host's
 * (little-endian) order, since a one's-complement sum is the same in either byte order
 * once swapped at the end. The words are added whole into four float64 sums (exact up to
 * 2^53, far past 64 KB of words; four, so the additions do not wait on each other) and
 * folded once, since 2^16 = 1 modulo 2^16 - 1: 5-7x the byte loop over a full-size packet.
 */
export function onesSumWords(words: Uint32Array, b: Uint8Array, start: number, end: number, seed = 0): number {
  const first = (start + 3) >> 2;
  const last = end >> 2;
  if (last - first < 8 || ((start & 1) !== 0)) return onesSum(b, start, end, seed);
  let sum = onesSum(b, start, first * 4, seed);
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let k = first;
  for (; k + 3 < last; k += 4) {
    s0 += words[k];
    s1 += words[k + 1];
    s2 += words[k + 2];
    s3 += words[k + 3];
  }
  for (; k < last; k++) s0 += words[k];
  let le = s0 + s1 + (s2 + s3);
  while (le > 0xffff) {
    const high = Math.floor(le / 65536);
    le = le - high * 65536 + high;
  }
  sum += ((le & 0xff) << 8) | (le >> 8);
  sum += onesSum(b, last * 4, end);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The 32-bit word view onesSumWords takes for a buffer that starts 4-byte aligned (allocUnsafeSlow, a native arena). */
export function wordsOf(b: Uint8Array): Uint32Array {
  if ((b.byteOffset & 3) !== 0) throw new RangeError('wordsOf: the buffer is not 4-byte aligned');
  return new Uint32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
}

/** The internet checksum (RFC 1071) of bytes [start, end), with an optional seed sum. */
export function internetChecksum(b: Uint8Array, start: number, end: number, seed = 0): number {
  return ~onesSum(b, start, end, seed) & 0xffff;
}

/** Recompute an IPv4 header checksum in place. */
export function refreshIPv4Checksum(b: Buffer): void {
  wr16be(b, 10, 0);
  wr16be(b, 10, internetChecksum(b, 0, (b[0] & 0x0f) * 4));
}

/**
 * A parsed packet. src and dst are made (as views into bytes) only when asked for: most
 * packets on the data plane's paths never need them as buffers.
 */
class ParsedIp implements IpPacket {
  private srcView: Buffer | undefined;
  private dstView: Buffer | undefined;

  constructor(
    readonly version: 4 | 6,
    readonly bytes: Buffer,
    readonly headerLength: number,
    readonly protocol: number,
    readonly ttl: number,
    readonly fragmentOffset: number,
    readonly moreFragments: boolean,
    readonly dontFragment: boolean,
  ) {}

  get src(): Buffer {
    return (this.srcView ??= this.version === 4 ? this.bytes.subarray(12, 16) : this.bytes.subarray(8, 24));
  }

  get dst(): Buffer {
    return (this.dstView ??= this.version === 4 ? this.bytes.subarray(16, 20) : this.bytes.subarray(24, 40));
  }
}

/**
 * Parse and check the IP header of `input` (a whole packet, possibly with trailing bytes),
 * of which only the first `length` bytes are looked at.
 */
export function parseIp(input: Uint8Array, length = input.length): Result<{ ip: IpPacket }> {
  return parseIpBuffer(asBuffer(input), length);
}

/** parseIp of a Buffer. */
export function parseIpBuffer(b: Buffer, length: number): Result<{ ip: IpPacket }> {
  if (length < 1) return drop('too-short');
  const version = b[0] >> 4;
  if (version === 4) {
    if (length < IPV4_HEADER_BYTES) return drop('too-short');
    const hl = (b[0] & 0x0f) * 4;
    const total = rd16be(b, 2);
    if (hl < IPV4_HEADER_BYTES || total < hl) return drop('bad-ip-header');
    if (total > length) return drop('too-short');
    if (internetChecksum(b, 0, hl) !== 0) return drop('bad-ip-checksum');
    const frag = rd16be(b, 6);
    const bytes = total === b.length ? b : slice(b, 0, total);
    const ip = new ParsedIp(4, bytes, hl, b[9], b[8], (frag & IP_OFFMASK) * 8, (frag & IP_MF) !== 0, (frag & IP_DF) !== 0);
    return { ok: true, ip };
  }
  if (version === 6) {
    if (length < IPV6_HEADER_BYTES) return drop('too-short');
    const total = IPV6_HEADER_BYTES + rd16be(b, 4);
    if (total > length) return drop('too-short');
    const bytes = total === b.length ? b : slice(b, 0, total);
    return { ok: true, ip: new ParsedIp(6, bytes, IPV6_HEADER_BYTES, b[6], b[7], 0, false, false) };
  }
  return drop('bad-ip-header');
}

/**
 * parseIp of `bytes`, a whole packet whose IP header is `ip`'s own, moved to its start by
 * the caller with the protocol byte, lengths and IPv4 checksum set again (NAT-T's and
 * ESP's in-place steps): the same answer, without reading the header again.
 */
export function movedIp(ip: IpPacket, bytes: Buffer): IpPacket {
  return new ParsedIp(ip.version, bytes, ip.headerLength, bytes[ip.version === 4 ? 9 : 6], ip.ttl, ip.fragmentOffset, ip.moreFragments, ip.dontFragment);
}

/** The destination address of a packet this host built (its header known good) as text, through the cache as dstText. */
export function builtDstText(b: Uint8Array): string {
  return b[0] >> 4 === 4 ? formatIPv4Cached(b, 16) : formatIPv6(b, 24);
}

/** The packet's source address as text (IPv4 through the formatting cache: a path asks once per packet, mostly about a few peers). */
export function srcText(ip: IpPacket): string {
  return ip.version === 4 ? formatIPv4Cached(ip.bytes, 12) : formatIPv6(ip.bytes, 8);
}

/** The packet's destination address as text (see srcText). */
export function dstText(ip: IpPacket): string {
  return builtDstText(ip.bytes);
}

/** Is the packet's source address `addr` (4 or 16 bytes)? Compares in place. */
export function sourceIs(ip: IpPacket, addr: Uint8Array): boolean {
  const at = ip.version === 4 ? 12 : 8;
  const n = ip.version === 4 ? 4 : 16;
  if (addr.length !== n) return false;
  const b = ip.bytes;
  for (let i = 0; i < n; i++) if (b[at + i] !== addr[i]) return false;
  return true;
}

/** Length of the IPv6 extension header of type `nh` at `off`, or -1 when it overruns. */
function extLength(b: Buffer, off: number, nh: number): number {
  if (off + 8 > b.length) return -1;
  const len = nh === IPPROTO_FRAGMENT ? 8 : nh === IPPROTO_AH ? (b[off + 1] + 2) * 4 : (b[off + 1] + 1) * 8;
  return off + len > b.length ? -1 : len;
}

/**
 * Walk IPv6 extension headers from the base header while `more(nh, seenRouting)` holds;
 * returns where the walk stopped. IPv4 has no chain: its position is after the header.
 */
function walk(ip: IpPacket, more: (nh: number, seenRouting: boolean) => boolean): Result<{ at: HeaderPosition }> {
  if (ip.version === 4) {
    return {
      ok: true,
      at: { offset: ip.headerLength, protocol: ip.protocol, protocolField: 9, fragmentOffset: ip.fragmentOffset, moreFragments: ip.moreFragments },
    };
  }
  const b = ip.bytes;
  let off = IPV6_HEADER_BYTES;
  let field = 6;
  let nh = b[6];
  let fragmentOffset = 0;
  let moreFragments = false;
  let seenRouting = false;
  while (more(nh, seenRouting)) {
    const len = extLength(b, off, nh);
    if (len < 0) return drop('bad-ip-header');
    if (nh === IPPROTO_FRAGMENT) {
      const f = rd16be(b, off + 2);
      fragmentOffset = f & 0xfff8;
      moreFragments = (f & 1) !== 0;
    }
    if (nh === IPPROTO_ROUTING) seenRouting = true;
    field = off;
    nh = b[off];
    off += len;
  }
  return { ok: true, at: { offset: off, protocol: nh, protocolField: field, fragmentOffset, moreFragments } };
}

const isExt = (nh: number) =>
  nh === IPPROTO_HOPOPTS || nh === IPPROTO_ROUTING || nh === IPPROTO_FRAGMENT || nh === IPPROTO_DSTOPTS;

/**
 * Where a transport-mode ESP/AH/IPCOMP header goes: after the IPv4 header, or after the
 * IPv6 headers that routers along the path read (hop-by-hop, routing, and destination
 * options that precede a routing header), as Linux and scapy place it (RFC 4302 §3.1.1).
 */
export function insertionPoint(ip: IpPacket): Result<{ at: HeaderPosition }> {
  return walk(ip, beforeTransform);
}

/** insertionPoint's walk: the headers routers read come before an inserted IPsec header. */
const beforeTransform = (nh: number, seenRouting: boolean): boolean =>
  nh === IPPROTO_HOPOPTS || nh === IPPROTO_ROUTING || (nh === IPPROTO_DSTOPTS && !seenRouting);

/**
 * An inbound packet's IPsec (or UDP) header of protocol `proto`: the packet parsed, the
 * header found through any IPv6 extension headers, and a fragment refused (the inbound
 * transforms take whole packets only).
 */
export function locateInbound(packet: Uint8Array, proto: number): Result<{ ip: IpPacket; at: HeaderPosition }> {
  const parsed = parseIp(packet);
  if (!parsed.ok) return parsed;
  const at = findHeader(parsed.ip, proto);
  if (!at.ok) return at;
  if (at.at.fragmentOffset || at.at.moreFragments) return drop('fragment');
  return { ok: true, ip: parsed.ip, at: at.at };
}

/**
 * The first header past the IP header and its IPv6 extension headers (AH not skipped),
 * whatever its protocol: what findHeader reaches for any protocol that is not an
 * extension header, in one walk.
 */
export function firstHeader(ip: IpPacket): Result<{ at: HeaderPosition }> {
  return walk(ip, isExt);
}

/** The header of protocol `proto` reached through IPv6 extension headers (or IPv4's one), if any. */
export function findHeader(ip: IpPacket, proto: number): Result<{ at: HeaderPosition }> {
  if (ip.version === 4) return ip.protocol === proto ? walk(ip, isExt) : drop('no-sa');
  const r = walk(ip, (nh) => nh !== proto && isExt(nh));
  if (!r.ok) return r;
  return r.at.protocol === proto ? r : drop('no-sa');
}

/**
 * The first header after the IP header and its IPv6 extension headers (hop-by-hop,
 * routing, fragment, destination options; AH is not skipped), and the types of the
 * extension headers passed, in order.
 */
export function payloadHeader(ip: IpPacket): Result<{ at: HeaderPosition; headers: number[] }> {
  const headers: number[] = [];
  const r = walk(ip, (nh) => isExt(nh) && headers.push(nh) > 0);
  return r.ok ? { ok: true, at: r.at, headers } : r;
}

/** The upper-layer header: every extension header (and AH) skipped, as KLIPS's ipsec_ipv6_skip_exthdr. */
export function upperLayer(ip: IpPacket): Result<{ at: HeaderPosition }> {
  return walk(ip, isExtOrAh);
}

const isExtOrAh = (nh: number): boolean => isExt(nh) || nh === IPPROTO_AH;

/** An eroute lookup key: src/spd's PacketSelector (ports are those of a first fragment or whole TCP/UDP packet, else 0, as KLIPS's ipsec_extract_ports). */
export type Selector = PacketSelector;

/** The eroute selector of a packet (src and dst are views into it), and the packet parsed. */
export function selectorOf(packet: Uint8Array): Result<{ selector: Selector; ip: IpPacket }> {
  const p = parseIp(packet);
  if (!p.ok) return p;
  const u = upperLayer(p.ip);
  if (!u.ok) return u;
  const { offset, protocol, fragmentOffset } = u.at;
  const b = p.ip.bytes;
  const ports = (protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) && fragmentOffset === 0 && offset + 4 <= b.length;
  return {
    ok: true,
    selector: {
      family: p.ip.version === 4 ? AF_INET : AF_INET6,
      src: p.ip.src, dst: p.ip.dst, proto: protocol,
      sport: ports ? rd16be(b, offset) : 0,
      dport: ports ? rd16be(b, offset + 2) : 0,
    },
    ip: p.ip,
  };
}

export interface IPv4Fields {
  tos: number;
  id: number;
  /** The 16-bit flags/fragment-offset word (IP_DF, IP_MF, offset in 8-byte units). */
  flags: number;
  ttl: number;
  protocol: number;
  src: Uint8Array;
  dst: Uint8Array;
  payloadLength: number;
  options?: Uint8Array;
}

/** An IPv4 header (checksum filled in). Options must be a multiple of 4 bytes. */
export function buildIPv4Header(f: IPv4Fields): Buffer {
  const h = Buffer.alloc(IPV4_HEADER_BYTES + (f.options?.length ?? 0));
  writeIPv4Header(h, f);
  return h;
}

/** Write an IPv4 header (checksum filled in) at out[0, …); returns its length. */
export function writeIPv4Header(out: Buffer, f: IPv4Fields): number {
  const optLen = f.options?.length ?? 0;
  const hl = IPV4_HEADER_BYTES + optLen;
  const total = hl + f.payloadLength;
  if (total > IP_MAXPACKET) throw new RangeError(`IPv4 total length ${total} exceeds ${IP_MAXPACKET}`);
  out[0] = 0x40 | (hl >> 2);
  out[1] = f.tos;
  out[2] = total >>> 8;
  out[3] = total;
  out[4] = f.id >>> 8;
  out[5] = f.id;
  out[6] = f.flags >>> 8;
  out[7] = f.flags;
  out[8] = f.ttl;
  out[9] = f.protocol;
  out[10] = out[11] = 0;
  const { src, dst } = f;
  for (let i = 0; i < 4; i++) {
    out[12 + i] = src[i];
    out[16 + i] = dst[i];
  }
  if (optLen) out.set(f.options!, IPV4_HEADER_BYTES);
  const sum = internetChecksum(out, 0, hl);
  out[10] = sum >>> 8;
  out[11] = sum;
  return hl;
}

export interface IPv6Fields {
  trafficClass: number;
  flowLabel: number;
  hopLimit: number;
  nextHeader: number;
  src: Uint8Array;
  dst: Uint8Array;
  payloadLength: number;
}

export function buildIPv6Header(f: IPv6Fields): Buffer {
  const h = Buffer.alloc(IPV6_HEADER_BYTES);
  writeIPv6Header(h, f);
  return h;
}

/** Write an IPv6 header at out[0, 40). */
export function writeIPv6Header(out: Buffer, f: IPv6Fields): number {
  wr32be(out, 0, ((6 << 28) | ((f.trafficClass & 0xff) << 20) | (f.flowLabel & 0xfffff)) >>> 0);
  wr16be(out, 4, f.payloadLength);
  out[6] = f.nextHeader;
  out[7] = f.hopLimit;
  out.set(f.src, 8);
  out.set(f.dst, 24);
  return IPV6_HEADER_BYTES;
}

/** IPv4 TOS or IPv6 traffic class. */
export function trafficClassOf(b: Uint8Array): number {
  return b[0] >> 4 === 4 ? b[1] : ((b[0] & 0x0f) << 4) | (b[1] >> 4);
}

/**
 * A new packet: `head` (the IP header and any extension headers kept in place) with the
 * byte at `protocolField` set to `protocol`, followed by `parts`; the IPv4 total length and
 * checksum or the IPv6 payload length are set for the result.
 */
export function assemble(head: Uint8Array, protocolField: number, protocol: number, ...parts: Uint8Array[]): Result<{ packet: Buffer }> {
  let total = head.length;
  for (const p of parts) total += p.length;
  if (total - (head[0] >> 4 === 6 ? IPV6_HEADER_BYTES : 0) > IP_MAXPACKET) return drop('too-big');
  const out = Buffer.allocUnsafe(total);
  let off = head.length;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return finishPacket(out, head, protocolField, protocol);
}

/**
 * Complete a packet whose payload already sits in `out` after room for `head`: copy the
 * head in, set the protocol byte, then the length fields and IPv4 checksum.
 */
export function finishPacket(out: Buffer, head: Uint8Array, protocolField: number, protocol: number): Result<{ packet: Buffer }> {
  const v6 = head[0] >> 4 === 6;
  if (out.length - (v6 ? IPV6_HEADER_BYTES : 0) > IP_MAXPACKET) return drop('too-big');
  out.set(head, 0);
  return finishHeader(out, protocolField, protocol);
}

/** finishPacket for a packet whose head is in place already (moved there by the caller). */
export function finishInPlace(out: Buffer, protocolField: number, protocol: number): Result<{ packet: Buffer }> {
  if (out.length - (out[0] >> 4 === 6 ? IPV6_HEADER_BYTES : 0) > IP_MAXPACKET) return drop('too-big');
  return finishHeader(out, protocolField, protocol);
}

function finishHeader(out: Buffer, protocolField: number, protocol: number): Result<{ packet: Buffer }> {
  const v6 = out[0] >> 4 === 6;
  out[protocolField] = protocol;
  if (v6) wr16be(out, 4, out.length - IPV6_HEADER_BYTES);
  else {
    wr16be(out, 2, out.length);
    refreshIPv4Checksum(out);
  }
  return { ok: true, packet: out };
}

/** The pseudo-header sum (RFC 768/793/8200) for an upper-layer segment of `length` bytes. */
export function pseudoHeaderSum(ip: IpPacket, proto: number, length: number): number {
  let s = onesSum(ip.src, 0, ip.src.length) + onesSum(ip.dst, 0, ip.dst.length) + proto;
  s += ip.version === 4 ? length : (length >>> 16) + (length & 0xffff);
  return s;
}

/**
 * Recompute the TCP or UDP checksum of a whole (unfragmented) packet in place, for the
 * addresses it now carries. An IPv4 UDP checksum of zero (none) stays zero. Returns false
 * when the packet has no TCP/UDP header to fix.
 */
export function refreshTransportChecksum(packet: Buffer): boolean {
  const p = parseIp(packet);
  if (!p.ok) return false;
  const u = upperLayer(p.ip);
  if (!u.ok || u.at.fragmentOffset !== 0 || u.at.moreFragments) return false;
  const { offset, protocol } = u.at;
  const b = p.ip.bytes;
  const field = protocol === IPPROTO_TCP ? offset + 16 : protocol === IPPROTO_UDP ? offset + 6 : -1;
  if (field < 0 || field + 2 > b.length) return false;
  if (protocol === IPPROTO_UDP && p.ip.version === 4 && rd16be(b, field) === 0) return true;
  wr16be(b, field, 0);
  let sum = internetChecksum(b, offset, b.length, pseudoHeaderSum(p.ip, protocol, b.length - offset));
  if (sum === 0 && protocol === IPPROTO_UDP) sum = 0xffff;
  wr16be(b, field, sum);
  return true;
}
