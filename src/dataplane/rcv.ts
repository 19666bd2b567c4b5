/**
 * The inbound path (KLIPS's ipsec_rcv / ipsec_rcv_decap_once / ipsec_rcv_decap_ipip) over
 * the engine's live tables. The outer header names ESP, AH, IPCOMP, or UDP to the NAT-T
 * port (ESP in UDP, natt.ts); the SA is found by (protocol, SPI, outer destination), its
 * replay window checked, the packet verified and decrypted, the window updated, and the
 * header removed; then the next header is taken in turn while it is IPsec for an SA of
 * ours or the IPIP the SA chain expects. An inbound chain runs in unwrap order (X_GRPSA
 * links an inbound pair outer → inner: esp → tun), and as KLIPS's inbound policy check
 * each SA after the first must be the previous one's next, and a chain must be used to
 * its end (IPCOMP may be skipped: a sender leaves small or incompressible packets
 * uncompressed), else the packet is dropped as 'policy'. The IPIP SA's decapsulation
 * requires the outer source to be the SA's source, and, when X_ADDFLOW INFLOW stored
 * flows on it, the inner source and destination to lie inside them (KLIPS's ips_flow_s/d
 * check). Each SA used counts the packet's bytes as it arrived at that SA, and one
 * packet. A NAT-T SA whose packets arrive, authenticated, from a new address or port
 * tells the engine (engine.natTNewMapping: SADB_X_NAT_T_NEW_MAPPING), as KLIPS does.
 *
 * A bare IPIP packet (no IPsec header in front) is not KLIPS's: the host's IPIP handles
 * it, so it is handed on as 'not-ipsec', like any other protocol.
 *
 * A KAME-dialect SA in tunnel mode removes its own outer header (the outer source must be
 * the SA's source, as KLIPS's IPIP check); KAME's inbound policies are not checked here
 * (docs/semantics.md, "One policy table for both dialects").
 *
 * With opts.dryRun (klips trace without --count) nothing changes: the replay window is
 * checked but not moved, no traffic or path counter moves, and a new NAT-T mapping is
 * reported in the trace instead of sent. opts.trace, when given, receives each stage (SA
 * found by SPI, replay and ICV verdicts, each decapsulation, each policy check, the
 * packet delivered, or the drop); without it the path builds no step objects.
 */

import type { Engine } from '../engine/engine.js';
import { xformName } from '../engine/views.js';
import type { SA, InboundPolicy } from '../sadb/sadb.js';
import { formatSaidOld, type Said } from '../sadb/said.js';
import {
  AF_INET, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_IPIP, SADB_SASTATE_LARVAL,
  IPSEC_MODE_TUNNEL, IPSEC_MODE_BEET,
} from '../wire/index.js';
import { addressBytes } from '../wire/sockaddr.js';
import { countDrop, countersOf, type PathDropReason } from './counters.js';
import { drop, type Drop } from './drop.js';
import { espInputAt } from './esp.js';
import { ahInput } from './ah.js';
import { ipipDecap, ipipDecapAt } from './ipip.js';
import { ipcompDecompress } from './ipcomp.js';
import { nattDecapAt, nattTransportFixup } from './natt.js';
import { IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP, dstText, firstHeader, parseIp, srcText, type HeaderPosition, type IpPacket } from './packet.js';
import { runtimeOf } from './sa-adapter.js';
import { DEFAULT_NATT, prepareSA } from './sa.js';
import type { ReplayCheck, ReplayGuard, ReplayWindow } from './replay.js';
import type { PathDropReason as Reason } from './counters.js';
import type { PathOptions, PolicyCheck, TraceSink } from './trace.js';
import { rd16be, rd32be } from '../wire/bytes.js';

/** Where a packet came from, as the runtime's socket saw it (NAT-T: after any NAT). */
export interface From {
  addr: string;
  port: number;
}

export type RcvResult =
  /** Decapsulated: the inner packet, and the SAs used outer to inner. */
  | { readonly ok: true; kind: 'ipsec'; packet: Buffer; sas: Said[] }
  /** Not for the IPsec path (no IPsec header), or IKE / a keepalive on the NAT-T port: handed on as is. */
  | { readonly ok: true; kind: 'not-ipsec' | 'ike' | 'keepalive'; packet: Buffer }
  | { readonly ok: false; reason: PathDropReason; said?: Said };

export interface RcvOptions extends PathOptions {
  /** The UDP port ESP in UDP arrives on (default 4500). */
  natTPort?: number;
  /**
   * The runtime carries all ESP in UDP (`klipsd --encap udp`): an SA without NAT-T
   * accepts ESP in UDP too. Otherwise ESP in UDP is only for NAT-T SAs.
   */
  udpCarrier?: boolean;
  /**
   * The packet's bytes are the path's to reuse (the runtime's receive slots): NAT-T's UDP
   * header is taken out and ESP decrypted where they lie, with no copy. The input is
   * overwritten, so a caller that keeps it (a test, a replay) leaves this off.
   */
  inPlace?: boolean;
}

/** The protocols this path looks at (none of them an IPv6 extension header). */
const isIpsecProto = (p: number): boolean =>
  p === IPPROTO_ESP || p === IPPROTO_AH || p === IPPROTO_COMP || p === IPPROTO_IPIP || p === IPPROTO_IPV6 || p === IPPROTO_UDP;

/** The first header after the IP header (and IPv6 extension headers), when it is one this path cares about. */
function nextHeader(ip: IpPacket): HeaderPosition | undefined {
  const r = firstHeader(ip);
  return r.ok && isIpsecProto(r.at.protocol) ? r.at : undefined;
}

/** The packet a step handed on, parsed: as the step parsed it (an in-place step that wrote the header), or now; or why it does not parse. */
function handedOn(step: { packet: Buffer; ip?: IpPacket }): IpPacket | Drop {
  if (step.ip) return step.ip;
  const p = parseIp(step.packet);
  return p.ok ? p.ip : p;
}

/** A fragment (the inbound transforms take whole packets only, as locateInbound refuses them). */
const isFragment = (at: HeaderPosition): boolean => at.fragmentOffset !== 0 || at.moreFragments;

/** Receive `packet` (a whole IPv4/IPv6 packet addressed to this host). */
export function rcv(engine: Engine, packet: Uint8Array, from?: From, opts: RcvOptions = {}): RcvResult {
  const c = opts.dryRun ? undefined : countersOf(engine).rcv;
  if (c) c.packets++;
  const r = receive(engine, packet, from, opts);
  if (opts.trace) {
    opts.trace(r.ok
      ? { step: 'deliver', kind: r.kind, bytes: r.packet.length }
      : { step: 'drop', reason: r.reason, ...(r.said ? { said: formatSaidOld(r.said) } : {}) });
  }
  if (!c) return r;
  if (!r.ok) countDrop(c, r.reason);
  else if (r.kind === 'ipsec') c.ipsec++;
  else c.passed++;
  return r;
}

/**
 * The replay window as a trace uses it: the check is recorded for the trace's replay
 * step, and the update (made only after the ICV verified, so it also tells the ICV
 * verdict) reaches the window unless this is a dry run.
 */
class TracedReplay implements ReplayGuard {
  seq = 0;
  checked: ReplayCheck | undefined;
  updated = false;
  constructor(readonly window: ReplayWindow, private readonly dryRun: boolean) {}
  check(seqLo: number): ReplayCheck {
    this.seq = seqLo;
    this.checked = this.window.check(seqLo);
    return this.checked;
  }
  update(seqHi: number, seqLo: number): boolean {
    this.updated = true;
    return this.dryRun || this.window.update(seqHi, seqLo);
  }
}

/** Drops an ESP/AH input can only reach after the ICV verified (the payload was read). */
const AFTER_ICV: ReadonlySet<Reason> = new Set<Reason>(['bad-padding', 'dummy', 'bad-next-header', 'too-big']);

/** The trace's replay and ICV steps for an ESP/AH decapsulation that used `guard`. */
function traceVerdicts(trace: TraceSink, sa: SA, guard: TracedReplay, r: { ok: boolean; reason?: Reason }): void {
  const said = formatSaidOld(sa.said);
  const c = guard.checked;
  if (!c) return; // refused before the replay check (too short, fragment)
  trace({ step: 'replay', said, seq: guard.seq, window: guard.window.size, verdict: c.ok ? 'ok' : c.reason as 'replay' | 'replay-stale' });
  if (!c.ok) return;
  const p = prepareSA(runtimeOf(sa).tsa);
  if (p.ok && p.prepared.icvBytes === 0) trace({ step: 'icv', said, verdict: 'none' });
  else if (r.reason === 'icv') trace({ step: 'icv', said, verdict: 'failed' });
  else if (guard.updated || r.ok || AFTER_ICV.has(r.reason!)) trace({ step: 'icv', said, verdict: 'ok' });
}

function receive(engine: Engine, packet: Uint8Array, from: From | undefined, opts: RcvOptions): RcvResult {
  const trace = opts.trace;
  const first = parseIp(packet);
  if (!first.ok) return first;
  let pkt: Buffer = first.ip.bytes;
  let ip = first.ip;
  let nh = nextHeader(ip);
  const natTPort = opts.natTPort ?? DEFAULT_NATT.dport;
  // ESP in UDP: where the packet came from (after NAT), for the new-mapping check.
  let natt: { addr: string; port: number } | undefined;
  if (nh?.protocol === IPPROTO_UDP) {
    if (nh.offset + 4 > pkt.length || rd16be(pkt, nh.offset + 2) !== natTPort) return { ok: true, kind: 'not-ipsec', packet: pkt };
    if (isFragment(nh)) return drop('fragment');
    const d = nattDecapAt(ip, nh, DEFAULT_NATT.type, opts.inPlace === true);
    if (!d.ok) return d;
    trace?.({ step: 'natt', kind: d.kind, sport: d.sport, dport: d.dport });
    if (d.kind !== 'esp') return { ok: true, kind: d.kind, packet: pkt };
    natt = from ?? { addr: srcText(ip), port: d.sport };
    const q = handedOn(d);
    if ('reason' in q) return q;
    ip = q;
    pkt = ip.bytes;
    nh = nextHeader(ip);
  }
  if (!nh || nh.protocol === IPPROTO_UDP || nh.protocol === IPPROTO_IPIP || nh.protocol === IPPROTO_IPV6) {
    return { ok: true, kind: 'not-ipsec', packet: pkt };
  }
  const sas: Said[] = [];
  let prev: SA | undefined;
  let asOf = -1;
  for (;;) {
    if (nh && (nh.protocol === IPPROTO_ESP || nh.protocol === IPPROTO_AH || nh.protocol === IPPROTO_COMP)) {
      const spi = spiAt(pkt, nh.protocol, nh.offset);
      if (spi === undefined) return { ok: false, reason: 'too-short' };
      const said: Said = { proto: nh.protocol, spi, dst: dstText(ip) };
      const sa = engine.sadb.get(said);
      // The table as this lookup saw it: the SAs below are counted as they are while it stands.
      asOf = engine.sadb.version;
      const usable = sa !== undefined && sa.state !== SADB_SASTATE_LARVAL;
      if (trace) trace(usable ? { step: 'lookup', said: formatSaidOld(said), found: true, xform: xformName(sa) } : { step: 'lookup', said: formatSaidOld(said), found: false });
      if (!usable) {
        // After an IPIP decapsulation, IPsec for someone else is forwarded, not ours to drop.
        if (prev && !prev.next) return { ok: true, kind: 'ipsec', packet: pkt, sas };
        return { ok: false, reason: 'no-sa', said };
      }
      if (prev) {
        const expect = skipComp(prev.next, nh.protocol);
        const ok = expect === sa || !prev.next;
        trace?.({ step: 'policy', said: formatSaidOld(said), check: 'chain', ok });
        if (!ok) return { ok: false, reason: 'policy', said };
      }
      if (natt && !prev && !opts.udpCarrier) {
        trace?.({ step: 'policy', said: formatSaidOld(said), check: 'natt', ok: sa.natT !== undefined });
        if (!sa.natT) return { ok: false, reason: 'policy', said };
      }
      const arrived = pkt.length;
      const guard = trace || opts.dryRun ? new TracedReplay(runtimeOf(sa).replay, opts.dryRun === true) : undefined;
      const r = decap(sa, ip, nh, guard, opts.inPlace === true);
      if (trace && guard && sa.said.proto !== IPPROTO_COMP) traceVerdicts(trace, sa, guard, r);
      if (!r.ok) return { ok: false, reason: r.reason, said };
      if (natt && !prev && sa.natT && (natt.addr !== sa.src.addr || natt.port !== sa.natT.sport)) {
        trace?.({ step: 'mapping', said: formatSaidOld(said), addr: natt.addr, port: natt.port, sent: !opts.dryRun });
        if (!opts.dryRun && engine.natTNewMapping(sa.said, natt.addr, natt.port)) countersOf(engine).natTMappings++;
      }
      if (!opts.dryRun) engine.countTrafficOn(sa, asOf, arrived, 1);
      sas.push(sa.said);
      prev = sa;
      const q = handedOn(r);
      if ('reason' in q) return q;
      ip = q;
      pkt = ip.bytes;
      if (natt && r.nextHeader !== undefined && (r.nextHeader === IPPROTO_TCP || r.nextHeader === IPPROTO_UDP)) nattTransportFixup(pkt);
      trace?.({ step: 'decap', said: formatSaidOld(said), xform: xformName(sa), before: arrived, after: pkt.length, nextHeader: r.nextHeader ?? ip.protocol });
      nh = nextHeader(ip);
      continue;
    }
    // Not (or no longer) an IPsec header: IPIP the chain expects, or the end.
    const tun = skipComp(prev?.next, nh?.protocol ?? -1);
    if (nh && (nh.protocol === IPPROTO_IPIP || nh.protocol === IPPROTO_IPV6) && tun && tun.said.proto === IPPROTO_IPIP) {
      const arrived = pkt.length;
      const inner = ipipDecapAt(runtimeOf(tun).tsa, ip, nh);
      if (trace && (inner.ok || inner.reason === 'policy')) trace({ step: 'policy', said: formatSaidOld(tun.said), check: 'source', ok: inner.ok });
      if (!inner.ok) return { ok: false, reason: inner.reason, said: tun.said };
      if (tun.inbound) {
        const ok = insidePolicy(tun.inbound, inner.ip);
        trace?.({ step: 'policy', said: formatSaidOld(tun.said), check: 'inflow', ok });
        if (!ok) return { ok: false, reason: 'policy', said: tun.said };
      }
      if (!opts.dryRun) engine.countTrafficOn(tun, asOf, arrived, 1);
      trace?.({ step: 'decap', said: formatSaidOld(tun.said), xform: xformName(tun), before: arrived, after: inner.ip.bytes.length, nextHeader: nh.protocol });
      sas.push(tun.said);
      prev = tun;
      pkt = inner.ip.bytes;
      ip = inner.ip;
      nh = nextHeader(ip);
      // Loop again only for IPsec addressed to an SA of ours (checked at the lookup).
      if (nh && (nh.protocol === IPPROTO_ESP || nh.protocol === IPPROTO_AH || nh.protocol === IPPROTO_COMP)) continue;
      trace?.({ step: 'policy', said: formatSaidOld(tun.said), check: 'complete', ok: !tun.next });
      if (tun.next) return { ok: false, reason: 'policy', said: tun.said };
      return { ok: true, kind: 'ipsec', packet: pkt, sas };
    }
    // KLIPS: a chain not used to its end is "incomplete policy" (IPCOMP alone may be left over).
    if (prev) trace?.({ step: 'policy', said: formatSaidOld(prev.said), check: 'complete', ok: !tun });
    if (tun) return { ok: false, reason: 'policy', said: prev!.said };
    return { ok: true, kind: 'ipsec', packet: pkt, sas };
  }
}

/** The SA expected next, passing over an IPCOMP SA when the packet has no IPCOMP header. */
function skipComp(next: SA | undefined, proto: number): SA | undefined {
  if (next && next.said.proto === IPPROTO_COMP && proto !== IPPROTO_COMP) return next.next;
  return next;
}

function spiAt(b: Buffer, proto: number, off: number): number | undefined {
  if (proto === IPPROTO_ESP) return off + 4 <= b.length ? rd32be(b, off) : undefined;
  if (proto === IPPROTO_AH) return off + 8 <= b.length ? rd32be(b, off + 4) : undefined;
  return off + 4 <= b.length ? rd16be(b, off + 2) : undefined;
}

/** One SA's decapsulation of `ip`, its header at `at`; `guard` stands in for the SA's replay window when tracing. */
function decap(sa: SA, ip: IpPacket, at: HeaderPosition, guard: ReplayGuard | undefined, inPlace: boolean): { ok: true; packet: Buffer; nextHeader?: number; ip?: IpPacket } | { ok: false; reason: PathDropReason } {
  const rt = runtimeOf(sa);
  const mode = sa.kame?.mode === IPSEC_MODE_TUNNEL ? 'tunnel' : 'transport';
  if (sa.kame !== undefined && sa.kame.mode === IPSEC_MODE_BEET) return { ok: false, reason: 'unsupported' };
  const pkt = ip.bytes;
  switch (sa.said.proto) {
    case IPPROTO_ESP:
      return isFragment(at) ? drop('fragment') : espInputAt(rt.tsa, ip, at, { mode, replay: guard ?? rt.replay, inPlace });
    case IPPROTO_AH:
      return ahInput(rt.tsa, pkt, { mode, replay: guard ?? rt.replay });
    case IPPROTO_COMP: {
      const r = ipcompDecompress(rt.tsa, pkt);
      if (!r.ok || mode === 'transport') return r;
      const d = ipipDecap(rt.tsa, r.packet);
      return d.ok ? { ok: true, packet: d.packet } : d;
    }
    default:
      return { ok: false, reason: 'bad-chain' };
  }
}

/** An inbound policy's flows and masks as bytes, each flow already masked: [srcFlow, srcMask, dstFlow, dstMask]. */
const policyBytes = new WeakMap<InboundPolicy, Uint8Array[]>();

function bytesOfPolicy(p: InboundPolicy): Uint8Array[] {
  let b = policyBytes.get(p);
  if (b === undefined) {
    const family = p.srcFlow.family;
    const masked = (flow: string, mask: string) => {
      const f = addressBytes(family, flow);
      const m = addressBytes(family, mask);
      for (let i = 0; i < f.length; i++) f[i] &= m[i];
      return [f, m];
    };
    b = [...masked(p.srcFlow.addr, p.srcMask.addr), ...masked(p.dstFlow.addr, p.dstMask.addr)];
    policyBytes.set(p, b);
  }
  return b;
}

/** Whether the address at bytes[at, at + flow.length) is inside flow/mask (flow already masked). */
function within(bytes: Uint8Array, at: number, flow: Uint8Array, mask: Uint8Array): boolean {
  for (let i = 0; i < flow.length; i++) if ((bytes[at + i] & mask[i]) !== flow[i]) return false;
  return true;
}

/** KLIPS's INFLOW check: the inner source and destination inside the IPIP SA's flows. */
function insidePolicy(p: InboundPolicy, ip: IpPacket): boolean {
  const family = p.srcFlow.family;
  if ((family === AF_INET) !== (ip.version === 4)) return false;
  const [sf, sm, df, dm] = bytesOfPolicy(p);
  const v4 = ip.version === 4;
  if (sf.length !== (v4 ? 4 : 16) || df.length !== sf.length) return false;
  return within(ip.bytes, v4 ? 12 : 8, sf, sm) && within(ip.bytes, v4 ? 16 : 24, df, dm);
}
