/**
 * IPIP, KLIPS's tunnel SA (satype X_IPIP; ipsec_xmit_ipip, ipsec_rcv_decap_ipip): wrap a
 * packet in an outer IPv4 or IPv6 header addressed from the SA's source to its
 * destination (IPv4-in-IPv4, IPv6-in-IPv6 and both mixes), and unwrap it on the way in.
 * As KLIPS does: outer TTL/hop limit 64, DF cleared (frag_off = 0), IPv4 TOS copied from
 * the inner packet (sysctl ipsec_tos = 0) and IPv6 traffic class and flow label zero.
 * Inbound, the outer source must be the SA's source (KLIPS's inbound policy check).
 * ESP and AH tunnel mode are this followed by the transport-mode transform, KLIPS's
 * SA chain tun → esp.
 */

import { randomInt } from 'node:crypto';
import { IPPROTO_IPIP } from '../wire/constants.js';
import { drop, type Result } from './drop.js';
import {
  IP_DF, IP_MAXPACKET, IPPROTO_IPV6, IPV4_HEADER_BYTES, IPV6_HEADER_BYTES, findHeader, parseIp, sourceIs,
  trafficClassOf, writeIPv4Header, writeIPv6Header, type HeaderPosition, type IpPacket,
} from './packet.js';
import { familyOf } from './sa.js';

/** The last IPv4 identification an outer header was given (ids are counted, as KLIPS's were: no random draw per packet). */
let outerId = randomInt(0x10000);

/** KLIPS's SYSCTL_IPSEC_DEFAULT_TTL. */
export const IPSEC_DEFAULT_TTL = 64;

export interface TunnelEndpoints {
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
}

export interface IpipOptions {
  /** IPv4 identification of the outer header (when omitted, the next of a counter that starts at a random value, as KLIPS counted its ids). */
  id?: number;
  /** Outer TTL / hop limit (64). */
  ttl?: number;
  /** Outer TOS/traffic class: copy the inner one, or zero (KLIPS: copy for IPv4, zero for IPv6). */
  tos?: 'copy' | 'clear';
  /** Outer DF: cleared as KLIPS does, copied from an inner IPv4 packet, or set. */
  df?: 'clear' | 'copy' | 'set';
}

/**
 * The length of the outer header a tunnel from sa.src to sa.dst puts in front of `ip`
 * (20 or 40 bytes), or why it cannot: endpoints of no or mixed families, or an outer
 * packet that would pass the 65,535-byte limit.
 */
export function ipipHeaderLength(sa: TunnelEndpoints, ip: IpPacket): Result<{ headerLength: number }> {
  const family = familyOf(sa.src);
  if (!family || familyOf(sa.dst) !== family) return drop('bad-sa');
  if (family === 4) {
    if (IPV4_HEADER_BYTES + ip.bytes.length > IP_MAXPACKET) return drop('too-big');
    return { ok: true, headerLength: IPV4_HEADER_BYTES };
  }
  if (ip.bytes.length > IP_MAXPACKET) return drop('too-big');
  return { ok: true, headerLength: IPV6_HEADER_BYTES };
}

/**
 * Write at out[0, …) the outer header for `ip` (already parsed and checked with
 * ipipHeaderLength), carrying `payloadLength` bytes of protocol `protocol`: the inner
 * packet itself (IPIP or IPv6, ipipEncap), or the ESP around it when ESP tunnel mode
 * builds its packet in one buffer.
 */
export function writeIpipHeader(out: Buffer, sa: TunnelEndpoints, ip: IpPacket, opts: IpipOptions, protocol: number, payloadLength: number): void {
  const v4 = sa.src.length === 4;
  const tos = (opts.tos ?? (v4 ? 'copy' : 'clear')) === 'copy' ? trafficClassOf(ip.bytes) : 0;
  const ttl = opts.ttl ?? IPSEC_DEFAULT_TTL;
  if (v4) {
    const df = opts.df === 'set' || (opts.df === 'copy' && ip.dontFragment);
    writeIPv4Header(out, {
      tos, id: opts.id ?? (outerId = (outerId + 1) & 0xffff), flags: df ? IP_DF : 0, ttl, protocol,
      src: sa.src, dst: sa.dst, payloadLength,
    });
    return;
  }
  writeIPv6Header(out, {
    trafficClass: tos, flowLabel: 0, hopLimit: ttl, nextHeader: protocol,
    src: sa.src, dst: sa.dst, payloadLength,
  });
}

/** The protocol number an outer header gives `ip`: IPIP for IPv4, IPv6 for IPv6. */
export function ipipProtocol(ip: IpPacket): number {
  return ip.version === 4 ? IPPROTO_IPIP : IPPROTO_IPV6;
}

/**
 * The outer header for `inner` (already parsed), and the byte in it that names the next
 * protocol: what ipipEncap puts in front.
 */
export function ipipHeader(sa: TunnelEndpoints, ip: IpPacket, opts: IpipOptions = {}): Result<{ header: Buffer; protocol: number; protocolField: number }> {
  const n = ipipHeaderLength(sa, ip);
  if (!n.ok) return n;
  const header = Buffer.alloc(n.headerLength);
  const protocol = ipipProtocol(ip);
  writeIpipHeader(header, sa, ip, opts, protocol, ip.bytes.length);
  return { ok: true, header, protocol, protocolField: n.headerLength === IPV4_HEADER_BYTES ? 9 : 6 };
}

/** Encapsulate `inner` (a whole IPv4 or IPv6 packet) in an outer header from sa.src to sa.dst. */
export function ipipEncap(sa: TunnelEndpoints, inner: Uint8Array, opts: IpipOptions = {}): Result<{ packet: Buffer }> {
  const p = parseIp(inner);
  if (!p.ok) return p;
  const h = ipipHeader(sa, p.ip, opts);
  if (!h.ok) return h;
  return { ok: true, packet: Buffer.concat([h.header, p.ip.bytes]) };
}

export interface IpipDecapOptions {
  /** Check that the outer source is the SA's source (true, as KLIPS's inbound policy check). */
  policyCheck?: boolean;
}

/** Remove the outer header of an IPIP packet; the inner packet is checked and returned. */
export function ipipDecap(sa: TunnelEndpoints | undefined, outer: Uint8Array, opts: IpipDecapOptions = {}): Result<{ packet: Buffer }> {
  const p = parseIp(outer);
  if (!p.ok) return p;
  let at = findHeader(p.ip, IPPROTO_IPIP);
  if (!at.ok) at = findHeader(p.ip, IPPROTO_IPV6);
  if (!at.ok) return drop('bad-next-header');
  const inner = ipipDecapAt(sa, p.ip, at.at, opts);
  return inner.ok ? { ok: true, packet: inner.ip.bytes } : inner;
}

/**
 * ipipDecap of a packet already parsed (`outer`), its inner header (IPIP or IPv6) at
 * `at`: the inner packet, parsed.
 */
export function ipipDecapAt(sa: TunnelEndpoints | undefined, outer: IpPacket, at: HeaderPosition, opts: IpipDecapOptions = {}): Result<{ ip: IpPacket }> {
  if (at.fragmentOffset || at.moreFragments) return drop('fragment');
  if (sa && opts.policyCheck !== false && !sourceIs(outer, sa.src)) return drop('policy');
  const inner = parseIp(outer.bytes.subarray(at.offset));
  if (!inner.ok) return inner;
  if ((inner.ip.version === 4) !== (at.protocol === IPPROTO_IPIP)) return drop('bad-next-header');
  return inner;
}
