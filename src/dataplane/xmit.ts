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
 *
 * An eroute made by the KAME dialect's X_SPDADD (an IPSEC policy) names no SA but
 * templates: engine.routeTemplates finds, at packet time, the SA each template takes,
 * and the packet goes through them in template order; a required template with no SA is
 * a %trap (ACQUIRE to both dialects, the packet dropped; no %hold eroute: a larval SA
 * stands for the ACQUIRE under way, as in Linux). A KAME SA in tunnel mode wraps the
 * packet in its own IPIP header (KLIPS's tun → esp chain in one SA).
 *
 * With opts.dryRun (klips trace without --count) nothing changes: the eroute is looked up
 * without counting, each ESP/AH SA uses its next sequence number without storing it, no
 * traffic or path counter moves, no packet is held and no ACQUIRE is sent (the trace says
 * whether one would be). opts.trace, when given, receives each stage as a TraceStep;
 * without it the path builds no step objects.
 */

import type { Engine } from '../engine/engine.js';
import { xformName } from '../engine/views.js';
import { formatEroute, type Eroute } from '../spd/eroute-table.js';
import type { SA } from '../sadb/sadb.js';
import { formatSaidOld, type Said } from '../sadb/said.js';
import {
  AF_INET, AF_INET6, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_INT, IPPROTO_IPIP, PfkeyError,
  SADB_SASTATE_LARVAL, SADB_SATYPE_ESP, SPI_DROP, SPI_HOLD, SPI_PASS, SPI_REJECT, SPI_TRAP, SPI_TRAPSUBNET,
  IPSEC_MODE_TUNNEL, IPSEC_MODE_BEET,
} from '../wire/index.js';
import { hasTemplates } from '../engine/policy.js';
import { formatAddress } from '../wire/sockaddr.js';
import { countDrop, countersOf, type PathDropReason } from './counters.js';
import { espOutput, espOutputParsed } from './esp.js';
import { ahOutput } from './ah.js';
import { sameBytes } from './algorithms.js';
import { ipipEncap, ipipHeaderLength } from './ipip.js';
import { ipcompCompress } from './ipcomp.js';
import { nattEncap } from './natt.js';
import {
  asBuffer, builtDstText, dstText, IPPROTO_ICMP, IPPROTO_ICMPV6, IPV6_HEADER_BYTES, buildIPv4Header, buildIPv6Header, internetChecksum,
  parseIp, pseudoHeaderSum, selectorOf, upperLayer, type IpPacket, type Selector,
} from './packet.js';
import { runtimeOf } from './sa-adapter.js';
import { sendableSeq } from './sa.js';
import type { Result } from './drop.js';
import type { PathOptions, TraceStep } from './trace.js';
import { wr16be } from '../wire/bytes.js';

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
    /** The SA whose transform failed. */
    said?: Said;
    /** %reject: the ICMP unreachable to deliver back to the sender. */
    icmp?: Buffer;
    /** %trap: the ACQUIRE's seq. */
    acquireSeq?: number;
  };

export interface XmitOptions extends PathOptions {
  /** %reject: the ICMP's source address (default: the packet's destination). */
  icmpSource?: Uint8Array;
  /**
   * The packet is the next piece of the one xmit took just before, cut from the same
   * offloaded read (the same addresses, protocol and ports: gso.ts's offloadedPackets):
   * the eroute and SA found for that one are taken again unless the SA table changed
   * since, as a packet's route is found once per super-segment before it is cut (Linux
   * looks its policy up once per GSO skb). The eroute still counts each packet.
   */
  sameFlow?: boolean;
}

/** xmit's options for a packet read whole or the first piece of an offloaded read, and for the pieces after it (the runtime's, and its warm-up's: one shape). */
const FIRST_PIECE: XmitOptions = { sameFlow: false };
const NEXT_PIECE: XmitOptions = { sameFlow: true };

/** xmit's options for piece `piece` of an offloaded read (gso.ts's offloadedPackets numbers them; a packet read whole is piece 0). */
export function pieceOptions(piece: number): XmitOptions {
  return piece === 0 ? FIRST_PIECE : NEXT_PIECE;
}

/**
 * The eroute and first SA the last packet routed to an SA took, while the SA table is
 * at `version` (see XmitOptions.sameFlow): set by each packet that is not sameFlow,
 * emptied first, so a piece never takes another flow's route.
 */
const lastRoute = { engine: undefined as Engine | undefined, version: -1, eroute: undefined as Eroute | undefined, sa: undefined as SA | undefined };

type Fail = Extract<XmitResult, { ok: false }>;

/** Send `packet` (a whole IPv4/IPv6 packet from the host or a protected subnet) out through `engine`'s tables. */
export function xmit(engine: Engine, packet: Uint8Array, opts: XmitOptions = {}): XmitResult {
  if (opts.dryRun || opts.trace) return traced(engine, packet, opts);
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

/** xmit for klips trace: the same path, the outcome reported as a last step, counted only when not a dry run. */
function traced(engine: Engine, packet: Uint8Array, opts: XmitOptions): XmitResult {
  const c = opts.dryRun ? undefined : countersOf(engine);
  if (c) c.xmit.packets++;
  const r = route(engine, packet, opts);
  if (r.ok) {
    opts.trace?.({ step: 'send', dst: r.out.dst, bytes: r.out.packet.length, ...(r.out.natTPort !== undefined ? { natTPort: r.out.natTPort } : {}) });
    if (c) c.xmit[r.action === 'pass' ? 'passed' : 'ipsec']++;
  } else {
    opts.trace?.({ step: 'drop', reason: r.reason, ...(r.said ? { said: formatSaidOld(r.said) } : {}) });
    if (c) {
      countDrop(c.xmit, r.reason);
      if (r.icmp) c.icmpSent++;
    }
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
  const last = lastRoute;
  let eroute: Eroute;
  let sa: SA;
  // (The packet as selectorOf parsed it, until a step changes it.)
  let parsed: IpPacket | undefined;
  if (opts.sameFlow === true && last.engine === engine && last.version === engine.sadb.version && !opts.dryRun && !opts.trace) {
    eroute = last.eroute!;
    sa = last.sa!;
    engine.spd.used(eroute);
  } else {
    last.engine = undefined;
    const s = selectorOf(packet);
    if (!s.ok) return fail(s.reason);
    const e = opts.dryRun ? engine.spd.lookup(s.selector) : engine.route(s.selector);
    opts.trace?.({ step: 'eroute', eroute: e ? formatEroute(e) : null });
    if (!e) return fail('no-eroute');
    eroute = e;
    if (eroute.policy !== undefined && hasTemplates(eroute)) return templated(engine, eroute, s.selector, packet, opts);
    if (eroute.said.proto === IPPROTO_INT) return shunt(engine, eroute, s.selector, packet, opts);
    const found = engine.sadb.get(eroute.said);
    if (!found || found.state === SADB_SASTATE_LARVAL) return fail('no-eroute-sa', { eroute });
    if (!protectedChainIntact(eroute, found, opts.dryRun === true)) return fail('no-eroute-sa', { eroute });
    sa = found;
    parsed = s.ip;
    if (!opts.dryRun && !opts.trace) {
      last.engine = engine;
      last.version = engine.sadb.version;
      last.eroute = eroute;
      last.sa = sa;
    }
  }
  const sas: Said[] = [];
  let pkt: Buffer = asBuffer(packet);
  let natTPort: number | undefined;
  // (Whether pkt is what the tun + esp step built, its header known good.)
  let built = false;
  // route() found these SAs in the table as it stands now: counted as they are while it stands.
  const asOf = engine.sadb.version;
  for (let x: SA | undefined = sa; x; x = x.next) {
    const esp: SA | undefined = opts.trace ? undefined : fusableEsp(x);
    if (esp) {
      // KLIPS's tun → esp group in one step (the same bytes and counts as the two).
      let ip = parsed;
      if (ip === undefined) {
        const p = parseIp(pkt);
        if (!p.ok) return fail(p.reason, { eroute, said: x.said });
        ip = p.ip;
      }
      const h = ipipHeaderLength(runtimeOf(x).tsa, ip);
      if (!h.ok) return fail(h.reason, { eroute, said: x.said });
      const r = applyEsp(esp, pkt, ip, 'tunnel', opts.dryRun === true);
      if (!r.ok) return fail(r.reason, { eroute, said: esp.said });
      sas.push(x.said, esp.said);
      if (!opts.dryRun) {
        engine.countTrafficOn(x, asOf, pkt.length + h.headerLength, 1);
        engine.countTrafficOn(esp, asOf, r.packet.length, 1);
      }
      pkt = r.packet;
      parsed = undefined;
      built = true;
      if (r.natTPort !== undefined) natTPort = r.natTPort;
      x = esp;
      continue;
    }
    parsed = undefined;
    built = false;
    const r = apply(x, pkt, opts.dryRun === true);
    if (!r.ok) return fail(r.reason, { eroute, said: x.said });
    if (opts.trace) opts.trace(saStep(x, pkt.length, r, opts.dryRun === true));
    pkt = r.packet;
    if (r.natTPort !== undefined) natTPort = r.natTPort;
    sas.push(x.said);
    if (!opts.dryRun) engine.countTrafficOn(x, asOf, pkt.length, 1);
  }
  let dst: string;
  if (built) dst = builtDstText(pkt);
  else {
    const p = parseIp(pkt);
    if (!p.ok) return fail(p.reason, { eroute });
    dst = dstText(p.ip);
  }
  const out: OutPacket = { packet: pkt, dst };
  if (natTPort !== undefined) out.natTPort = natTPort;
  return { ok: true, action: 'ipsec', out, eroute, sas };
}

/** A template eroute: through the SAs its templates find now, or ACQUIRE (engine.routeTemplates). */
function templated(engine: Engine, eroute: Eroute, sel: Selector, packet: Uint8Array, opts: XmitOptions): XmitResult {
  const r = engine.routeTemplates(eroute, selectorText(sel), opts.dryRun === true);
  if (!r.ok) {
    opts.trace?.({ step: 'acquire', sent: r.acquireSeq !== undefined, listeners: r.listeners, ...(r.acquireSeq !== undefined ? { seq: r.acquireSeq } : {}) });
    return fail(r.reason, r.acquireSeq !== undefined ? { eroute, acquireSeq: r.acquireSeq } : { eroute });
  }
  const sas: Said[] = [];
  let pkt: Buffer = asBuffer(packet);
  let natTPort: number | undefined;
  for (const x of r.sas) {
    const a = apply(x, pkt, opts.dryRun === true);
    if (!a.ok) return fail(a.reason, { eroute, said: x.said });
    if (opts.trace) opts.trace(saStep(x, pkt.length, a, opts.dryRun === true));
    pkt = a.packet;
    if (a.natTPort !== undefined) natTPort = a.natTPort;
    sas.push(x.said);
    if (!opts.dryRun) engine.countTraffic(x.said, pkt.length, 1);
  }
  if (sas.length === 0) {
    // Every template was optional and none found an SA: the packet goes as it is.
    return { ok: true, action: 'pass', out: { packet: pkt, dst: formatAddress(sel.family, sel.dst) }, eroute, sas };
  }
  const p = parseIp(pkt);
  if (!p.ok) return fail(p.reason, { eroute });
  const out: OutPacket = { packet: pkt, dst: dstText(p.ip) };
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

function protectedChainIntact(eroute: Eroute, sa: SA, dryRun: boolean): boolean {
  let prot = false;
  for (let x: SA | undefined = sa; x; x = x.next) if (x.said.proto === IPPROTO_ESP || x.said.proto === IPPROTO_AH) prot = true;
  if (prot && !dryRun) protectedEroutes.add(eroute);
  return prot || !protectedEroutes.has(eroute);
}

type Applied = { packet: Buffer; natTPort?: number; compressed?: boolean };

/** The trace step of one SA applied: sizes, and the sequence number an ESP/AH SA used. */
function saStep(sa: SA, before: number, r: Applied, dryRun: boolean): TraceStep {
  const step: TraceStep & { step: 'sa' } = { step: 'sa', said: formatSaidOld(sa.said), xform: xformName(sa), before, after: r.packet.length };
  if (sa.said.proto === IPPROTO_ESP || sa.said.proto === IPPROTO_AH) step.seq = runtimeOf(sa).seq + (dryRun ? 1 : 0);
  if (r.compressed !== undefined) step.compressed = r.compressed;
  if (r.natTPort !== undefined) step.natTPort = r.natTPort;
  return step;
}

/** One SA's transform on the way out; a dry run uses the next sequence number without storing it. */
function apply(sa: SA, pkt: Buffer, dryRun: boolean): Result<Applied> {
  if (sa.state === SADB_SASTATE_LARVAL) return { ok: false, reason: 'no-sa' };
  const rt = runtimeOf(sa);
  const tsa = rt.tsa;
  // A KAME SA in tunnel mode carries its own IPIP header; BEET mode is not carried.
  const mode = sa.kame?.mode === IPSEC_MODE_TUNNEL ? 'tunnel' : 'transport';
  if (sa.kame !== undefined && sa.kame.mode === IPSEC_MODE_BEET) return { ok: false, reason: 'unsupported' };
  switch (sa.said.proto) {
    case IPPROTO_IPIP:
      return ipipEncap(tsa, pkt);
    case IPPROTO_COMP: {
      if (mode === 'transport') return ipcompCompress(tsa, pkt);
      const t = ipipEncap(tsa, pkt);
      return t.ok ? ipcompCompress(tsa, t.packet) : t;
    }
    case IPPROTO_ESP:
      return applyEsp(sa, pkt, undefined, mode, dryRun);
    case IPPROTO_AH: {
      const seq = rt.seq + 1;
      if (!sendableSeq(tsa, seq, 0)) return { ok: false, reason: 'seq-overflow' };
      const r = ahOutput(tsa, pkt, { mode, seq });
      if (!r.ok) return r;
      if (!dryRun) rt.seq = seq;
      return r;
    }
    default:
      return { ok: false, reason: 'bad-sa' };
  }
}

/** An ESP SA's transform on the way out (tunnel: with the outer header), then NAT-T's UDP header if the SA has one. */
/** ESP on `pkt` (`ip`: the packet already parsed, when the caller has it). */
function applyEsp(sa: SA, pkt: Buffer, ip: IpPacket | undefined, mode: 'tunnel' | 'transport', dryRun: boolean): Result<Applied> {
  const rt = runtimeOf(sa);
  const tsa = rt.tsa;
  const seq = rt.seq + 1;
  if (!sendableSeq(tsa, seq, 0)) return { ok: false, reason: 'seq-overflow' };
  const r = ip ? espOutputParsed(tsa, ip, { mode, seq }) : espOutput(tsa, pkt, { mode, seq });
  if (!r.ok) return r;
  if (!dryRun) rt.seq = seq;
  if (tsa.natT) {
    const u = nattEncap(tsa, r.packet);
    return u.ok ? { ok: true, packet: u.packet, natTPort: tsa.natT.dport } : u;
  }
  return r;
}

/**
 * The ESP SA that `x` (a KLIPS IPIP SA) hands its packet to when the two can be one step:
 * the group ends there, both are KLIPS SAs in use, and the tunnel's endpoints are the
 * ESP SA's (whose tunnel mode writes the outer header from its own).
 */
function fusableEsp(x: SA): SA | undefined {
  const esp = x.next;
  if (x.said.proto !== IPPROTO_IPIP || !esp || esp.next || esp.said.proto !== IPPROTO_ESP) return undefined;
  if (x.kame !== undefined || esp.kame !== undefined || x.state === SADB_SASTATE_LARVAL || esp.state === SADB_SASTATE_LARVAL) return undefined;
  const t = runtimeOf(x).tsa;
  const e = runtimeOf(esp).tsa;
  return sameAddress(t.src, e.src) && sameAddress(t.dst, e.dst) ? esp : undefined;
}

function sameAddress(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && sameBytes(a, 0, b, 0, a.length);
}

function shunt(engine: Engine, eroute: Eroute, sel: Selector, packet: Uint8Array, opts: XmitOptions): XmitResult {
  switch (eroute.said.spi) {
    case SPI_PASS:
      return { ok: true, action: 'pass', out: { packet: Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength), dst: formatAddress(sel.family, sel.dst) }, eroute, sas: [] };
    case SPI_REJECT: {
      const icmp = rejectIcmp(packet, opts.icmpSource);
      if (icmp && opts.trace) opts.trace({ step: 'icmp', dst: formatAddress(sel.family, sel.src), ...REJECT_ICMP[sel.family === AF_INET ? 4 : 6], bytes: icmp.length });
      return fail('shunt-reject', icmp ? { eroute, icmp } : { eroute });
    }
    case SPI_HOLD:
      // KLIPS keeps the last packet on a %hold eroute (er_last) and frees the one before.
      if (!opts.dryRun) eroute.held = Uint8Array.from(packet);
      opts.trace?.({ step: 'hold', kept: !opts.dryRun });
      return fail('hold', { eroute });
    case SPI_TRAP:
    case SPI_TRAPSUBNET:
      if (opts.dryRun) {
        const listeners = engine.registeredFor(SADB_SATYPE_ESP).length;
        opts.trace?.({ step: 'acquire', sent: false, listeners });
        return fail(listeners ? 'trap' : 'no-listener', { eroute });
      }
      try {
        const acquireSeq = engine.acquire(selectorText(sel), eroute, Uint8Array.from(packet));
        if (opts.trace) opts.trace({ step: 'acquire', sent: true, listeners: engine.registeredFor(SADB_SATYPE_ESP).length, seq: acquireSeq });
        return fail('trap', { eroute, acquireSeq });
      } catch (e) {
        if (!(e instanceof PfkeyError)) throw e;
        opts.trace?.({ step: 'acquire', sent: false, listeners: 0 });
        return fail('no-listener', { eroute });
      }
    case SPI_DROP:
    default:
      return fail('shunt-drop', { eroute });
  }
}

/** What %reject answers, by IP version: ICMP 3/13 (KLIPS), ICMPv6 1/1 (RFC 4443). */
export const REJECT_ICMP = { 4: { type: 3, code: 13 }, 6: { type: 1, code: 1 } } as const;

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
    icmp[0] = REJECT_ICMP[4].type;
    icmp[1] = REJECT_ICMP[4].code;
    quoted.copy(icmp, 8);
    wr16be(icmp, 2, internetChecksum(icmp, 0, icmp.length));
    const h = buildIPv4Header({ tos: 0, id: 0, flags: 0, ttl: 64, protocol: IPPROTO_ICMP, src, dst: ip.src, payloadLength: icmp.length });
    return Buffer.concat([h, icmp]);
  }
  if (u.at.protocol === IPPROTO_ICMPV6 && (u.at.offset >= b.length || b[u.at.offset] < 128)) return undefined;
  const quoted = b.subarray(0, Math.min(b.length, IPV6_MIN_MTU - IPV6_HEADER_BYTES - 8));
  const icmp = Buffer.alloc(8 + quoted.length);
  icmp[0] = REJECT_ICMP[6].type;
  icmp[1] = REJECT_ICMP[6].code;
  quoted.copy(icmp, 8);
  const h = buildIPv6Header({ trafficClass: 0, flowLabel: 0, hopLimit: 64, nextHeader: IPPROTO_ICMPV6, src, dst: ip.src, payloadLength: icmp.length });
  const out = Buffer.concat([h, icmp]);
  const po = parseIp(out);
  if (!po.ok) return undefined;
  wr16be(out, IPV6_HEADER_BYTES + 2, internetChecksum(out, IPV6_HEADER_BYTES, out.length, pseudoHeaderSum(po.ip, IPPROTO_ICMPV6, icmp.length)));
  return out;
}
