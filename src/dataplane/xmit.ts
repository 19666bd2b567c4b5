/**
 * The outbound path (KLIPS's ipsec_tunnel_start_xmit / ipsec_xmit_encap_bundle) over the
 * engine's live tables: the packet's selector, the eroute it matches (engine.route counts
 * it), then either a shunt or the eroute's SA and the SAs grouped after it, applied in
 * chain order (KLIPS walks ips_next from the eroute's SA: eroute → tun → esp wraps in
 * IPIP first, then ESP). Each ESP/AH SA advances its own sequence counter; each SA counts
 * the packet's bytes after its transform (KLIPS's ipl_bytes += ixs->len) and one packet
 * through engine.countTraffic, so soft/hard EXPIRE fire from real traffic.
 *
 * Shunts, as KLIPS: no eroute → dropped (its default %drop); %pass → unchanged; %drop →
 * dropped; %reject → dropped, and an ICMP destination unreachable, code 13
 * "communication administratively prohibited" (KLIPS: ICMP_PKT_FILTERED), goes back to
 * the sender (for IPv6, type 1 code 1, RFC 4443's "administratively prohibited": KLIPS
 * passed the IPv4 numbers to icmpv6_send, which we do not copy); %hold → the packet is
 * kept on the eroute as its last packet (KLIPS er_last); %trap / %trapsubnet →
 * engine.acquire, which sends one ACQUIRE and turns the trap into a %hold keeping the packet.
 */

import type { Engine } from '../engine/engine.js';
import type { Eroute } from '../spd/eroute-table.js';
import type { SA } from '../sadb/sadb.js';
import type { Said } from '../sadb/said.js';
import {
  AF_INET, AF_INET6, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_INT, IPPROTO_IPIP, PfkeyError,
  SADB_SASTATE_LARVAL, SPI_DROP, SPI_HOLD, SPI_PASS, SPI_REJECT, SPI_TRAP, SPI_TRAPSUBNET,
} from '../wire/index.js';
import { formatAddress } from '../wire/sockaddr.js';
import { countDrop, countersOf, type PathDropReason } from './counters.js';
import { espOutput } from './esp.js';
import { ahOutput } from './ah.js';
import { ipipEncap } from './ipip.js';
import { ipcompCompress } from './ipcomp.js';
import { nattEncap } from './natt.js';
import {
  IPPROTO_ICMP, IPPROTO_ICMPV6, IPV6_HEADER_BYTES, buildIPv4Header, buildIPv6Header, internetChecksum,
  parseIp, pseudoHeaderSum, selectorOf, upperLayer, type Selector,
} from './packet.js';
import { runtimeOf } from './sa-adapter.js';
import { sendableSeq } from './sa.js';
import type { Result } from './drop.js';

/** A packet to put on the wire. */
export interface OutPacket {
  packet: Buffer;
  /** The outer destination, as text (the next hop for a router). */
  dst: string;
  /** NAT-T: the packet is ESP in UDP to this port (the UDP header is in `packet`). */
  natTPort?: number;
}

export type XmitResult =
  | { readonly ok: true; action: 'pass' | 'ipsec'; out: OutPacket; eroute: Eroute; sas: Said[] }
  | {
    readonly ok: false; reason: PathDropReason; eroute?: Eroute;
    /** %reject: the ICMP unreachable to deliver back to the sender. */
    icmp?: Buffer;
    /** %trap: the ACQUIRE's seq. */
    acquireSeq?: number;
  };

export interface XmitOptions {
  /** %reject: the ICMP's source address (default: the packet's destination). */
  icmpSource?: Uint8Array;
}

type Fail = Extract<XmitResult, { ok: false }>;

/** Send `packet` (a whole IPv4/IPv6 packet from the host or a protected subnet) out through `engine`'s tables. */
export function xmit(engine: Engine, packet: Uint8Array, opts: XmitOptions = {}): XmitResult {
  const c = countersOf(engine).xmit;
  c.packets++;
  const r = route(engine, packet, opts);
  if (r.ok) {
    if (r.action === 'pass') c.passed++;
    else c.ipsec++;
  } else {
    countDrop(c, r.reason);
    if (r.icmp) countersOf(engine).icmpSent++;
  }
  return r;
}

function fail(reason: PathDropReason, more: Omit<Fail, 'ok' | 'reason'> = {}): Fail {
  return { ok: false, reason, ...more };
}

/** The selector as engine.acquire takes it (addresses as text). */
export function selectorText(sel: Selector): { family: number; src: string; dst: string; proto: number; sport: number; dport: number } {
  return {
    family: sel.family, src: formatAddress(sel.family, sel.src), dst: formatAddress(sel.family, sel.dst),
    proto: sel.proto, sport: sel.sport, dport: sel.dport,
  };
}

function route(engine: Engine, packet: Uint8Array, opts: XmitOptions): XmitResult {
  const s = selectorOf(packet);
  if (!s.ok) return fail(s.reason);
  const eroute = engine.route(s.selector);
  if (!eroute) return fail('no-eroute');
  if (eroute.said.proto === IPPROTO_INT) return shunt(engine, eroute, s.selector, packet, opts);
  const sa = engine.sadb.get(eroute.said);
  if (!sa || sa.state === SADB_SASTATE_LARVAL) return fail('no-eroute-sa', { eroute });
  if (!protectedChainIntact(eroute, sa)) return fail('no-eroute-sa', { eroute });
  const sas: Said[] = [];
  let pkt: Buffer = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  let natTPort: number | undefined;
  for (let x: SA | undefined = sa; x; x = x.next) {
    const r = apply(x, pkt);
    if (!r.ok) return fail(r.reason, { eroute });
    pkt = r.packet;
    if (r.natTPort !== undefined) natTPort = r.natTPort;
    sas.push(x.said);
    engine.countTraffic(x.said, pkt.length, 1);
  }
  const p = parseIp(pkt);
  if (!p.ok) return fail(p.reason, { eroute });
  const out: OutPacket = { packet: pkt, dst: formatAddress(p.ip.version === 4 ? AF_INET : AF_INET6, p.ip.dst) };
  if (natTPort !== undefined) out.natTPort = natTPort;
  return { ok: true, action: 'ipsec', out, eroute, sas };
}

/**
 * Eroutes whose SA chain has carried ESP or AH. The SA table splices a removed SA out of
 * its group (a hard EXPIRE or DELETE of the ESP SA leaves eroute → tun alone), where
 * KLIPS kept the dead SA in the chain and dropped the packet; so an eroute once
 * protected by ESP/AH never sends without it: such packets are dropped as 'no-eroute-sa'.
 */
const protectedEroutes = new WeakSet<Eroute>();

function protectedChainIntact(eroute: Eroute, sa: SA): boolean {
  let prot = false;
  for (let x: SA | undefined = sa; x; x = x.next) if (x.said.proto === IPPROTO_ESP || x.said.proto === IPPROTO_AH) prot = true;
  if (prot) protectedEroutes.add(eroute);
  return prot || !protectedEroutes.has(eroute);
}

/** One SA's transform on the way out. */
function apply(sa: SA, pkt: Buffer): Result<{ packet: Buffer; natTPort?: number }> {
  if (sa.state === SADB_SASTATE_LARVAL) return { ok: false, reason: 'no-sa' };
  const rt = runtimeOf(sa);
  const tsa = rt.tsa;
  switch (sa.said.proto) {
    case IPPROTO_IPIP:
      return ipipEncap(tsa, pkt);
    case IPPROTO_COMP: {
      const r = ipcompCompress(tsa, pkt);
      return r.ok ? { ok: true, packet: r.packet } : r;
    }
    case IPPROTO_ESP:
    case IPPROTO_AH: {
      const seq = rt.seq + 1;
      if (!sendableSeq(tsa, seq, 0)) return { ok: false, reason: 'seq-overflow' };
      const r = sa.said.proto === IPPROTO_ESP
        ? espOutput(tsa, pkt, { mode: 'transport', seq })
        : ahOutput(tsa, pkt, { mode: 'transport', seq });
      if (!r.ok) return r;
      rt.seq = seq;
      if (sa.said.proto === IPPROTO_ESP && tsa.natT) {
        const u = nattEncap(tsa, r.packet);
        return u.ok ? { ok: true, packet: u.packet, natTPort: tsa.natT.dport } : u;
      }
      return r;
    }
    default:
      return { ok: false, reason: 'bad-sa' };
  }
}

function shunt(engine: Engine, eroute: Eroute, sel: Selector, packet: Uint8Array, opts: XmitOptions): XmitResult {
  switch (eroute.said.spi) {
    case SPI_PASS:
      return { ok: true, action: 'pass', out: { packet: Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength), dst: formatAddress(sel.family, sel.dst) }, eroute, sas: [] };
    case SPI_REJECT: {
      const icmp = rejectIcmp(packet, opts.icmpSource);
      return fail('shunt-reject', icmp ? { eroute, icmp } : { eroute });
    }
    case SPI_HOLD:
      // KLIPS keeps the last packet on a %hold eroute (er_last) and frees the one before.
      eroute.held = Uint8Array.from(packet);
      return fail('hold', { eroute });
    case SPI_TRAP:
    case SPI_TRAPSUBNET:
      try {
        const acquireSeq = engine.acquire(selectorText(sel), eroute, Uint8Array.from(packet));
        return fail('trap', { eroute, acquireSeq });
      } catch (e) {
        if (e instanceof PfkeyError) return fail('no-listener', { eroute });
        throw e;
      }
    case SPI_DROP:
    default:
      return fail('shunt-drop', { eroute });
  }
}

/** ICMPv4 types that are errors (RFC 1122 §3.2.2: never answer an error with an error). */
const ICMP_ERRORS = new Set([3, 4, 5, 11, 12]);
const IPV6_MIN_MTU = 1280;

/**
 * The ICMP destination unreachable a %reject eroute sends back: IPv4 type 3 code 13 with
 * the offending header and 8 bytes (RFC 792), IPv6 type 1 code 1 with as much of the
 * packet as fits 1280 bytes (RFC 4443). None for an ICMP error, a non-first fragment or
 * a packet whose header does not parse.
 */
export function rejectIcmp(packet: Uint8Array, source?: Uint8Array): Buffer | undefined {
  const p = parseIp(packet);
  if (!p.ok) return undefined;
  const ip = p.ip;
  const u = upperLayer(ip);
  if (!u.ok || u.at.fragmentOffset !== 0) return undefined;
  const b = ip.bytes;
  const src = source ?? ip.dst;
  if (ip.version === 4) {
    if (u.at.protocol === IPPROTO_ICMP && (u.at.offset >= b.length || ICMP_ERRORS.has(b[u.at.offset]))) return undefined;
    const quoted = b.subarray(0, Math.min(b.length, ip.headerLength + 8));
    const icmp = Buffer.alloc(8 + quoted.length);
    icmp[0] = 3;
    icmp[1] = 13;
    quoted.copy(icmp, 8);
    icmp.writeUInt16BE(internetChecksum(icmp, 0, icmp.length), 2);
    const h = buildIPv4Header({ tos: 0, id: 0, flags: 0, ttl: 64, protocol: IPPROTO_ICMP, src, dst: ip.src, payloadLength: icmp.length });
    return Buffer.concat([h, icmp]);
  }
  if (u.at.protocol === IPPROTO_ICMPV6 && (u.at.offset >= b.length || b[u.at.offset] < 128)) return undefined;
  const quoted = b.subarray(0, Math.min(b.length, IPV6_MIN_MTU - IPV6_HEADER_BYTES - 8));
  const icmp = Buffer.alloc(8 + quoted.length);
  icmp[0] = 1;
  icmp[1] = 1;
  quoted.copy(icmp, 8);
  const h = buildIPv6Header({ trafficClass: 0, flowLabel: 0, hopLimit: 64, nextHeader: IPPROTO_ICMPV6, src, dst: ip.src, payloadLength: icmp.length });
  const out = Buffer.concat([h, icmp]);
  const po = parseIp(out);
  if (!po.ok) return undefined;
  out.writeUInt16BE(internetChecksum(out, IPV6_HEADER_BYTES, out.length, pseudoHeaderSum(po.ip, IPPROTO_ICMPV6, icmp.length)), IPV6_HEADER_BYTES + 2);
  return out;
}
