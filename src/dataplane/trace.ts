/**
 * `klips trace`'s side of the data plane: one packet through xmit or rcv over the live
 * tables, reported stage by stage. Owns the step vocabulary the paths emit (TraceStep),
 * the trace request klipsd's view channel takes and the answer it gives (runTrace,
 * traceAnswer), the probe packets the tool builds (buildProbe: ICMP/ICMPv6 echo, a TCP
 * SYN, UDP, checksums right), and the layer-by-layer decoding of a packet
 * (decodeLayers: IP, IPv6 extension headers, UDP and NAT-T, ESP, AH, IPCOMP inflated,
 * inner IP, TCP/UDP/ICMP). A trace is a dry run unless the request says count: then the
 * packet is sent or received for real (sequence numbers, lifetimes, counters, %hold,
 * ACQUIRE, NAT-T mapping). Everything here is JSON-safe values; no key bytes appear.
 */

import { inflateRawSync } from 'node:zlib';
import type { Engine } from '../engine/engine.js';
import { AF_INET, AF_INET6, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_IPIP } from '../wire/constants.js';
import { formatAddress } from '../wire/sockaddr.js';
import { formatSaidOld } from '../sadb/said.js';
import type { PathDropReason } from './counters.js';
import {
  IP_MAXPACKET, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP, buildIPv4Header,
  buildIPv6Header, internetChecksum, parseIp, payloadHeader, pseudoHeaderSum, type IpPacket,
} from './packet.js';
import { DEFAULT_NATT } from './sa.js';
import { NATT_KEEPALIVE, NON_ESP_MARKER_BYTES, UDP_HEADER_BYTES } from './natt.js';
import { xmit } from './xmit.js';
import { rcv } from './rcv.js';
import { rd16be, rd32be, wr16be, wr32be } from '../wire/bytes.js';

// ---------- the steps the paths report ----------

/** The inbound policy checks (KLIPS's ipsec_rcv policy): which one a policy step reports. */
export type PolicyCheck =
  /** The SA is the one the previous SA's group expects next (IPCOMP may be skipped). */
  | 'chain'
  /** ESP in UDP arrived for an SA that has NAT-T. */
  | 'natt'
  /** The IPIP packet's outer source is the tunnel SA's source. */
  | 'source'
  /** The inner source and destination lie inside the flows X_ADDFLOW INFLOW put on the tunnel SA. */
  | 'inflow'
  /** The SA group was used to its end. */
  | 'complete';

/** One stage of a packet's way through xmit or rcv. SAIDs are written as /proc writes them (esp0x100@192.0.2.2). */
export type TraceStep =
  /** Outbound: the eroute that matched, as /proc's line without the count; null when none did. */
  | { step: 'eroute'; eroute: string | null }
  /** Outbound: one SA of the group applied, in order; seq is the ESP/AH sequence number the packet carries. */
  | { step: 'sa'; said: string; xform: string; before: number; after: number; seq?: number; compressed?: boolean; natTPort?: number }
  /** Outbound %hold: the packet is (or, in a dry run, would be) kept on the eroute. */
  | { step: 'hold'; kept: boolean }
  /** Outbound %trap: SADB_ACQUIRE sent (with its seq), or, in a dry run or with nobody registered, not. */
  | { step: 'acquire'; sent: boolean; listeners: number; seq?: number }
  /** Outbound %reject: the ICMP unreachable that goes back to the sender. */
  | { step: 'icmp'; dst: string; type: number; code: number; bytes: number }
  /** Outbound: the packet leaves for `dst`. */
  | { step: 'send'; dst: string; bytes: number; natTPort?: number }
  /** Inbound: what arrived on the NAT-T port. */
  | { step: 'natt'; kind: 'esp' | 'ike' | 'keepalive'; sport: number; dport: number }
  /** Inbound: the SA looked up by (protocol, SPI, destination). */
  | { step: 'lookup'; said: string; found: boolean; xform?: string }
  /** Inbound: the anti-replay check of the packet's sequence number. */
  | { step: 'replay'; said: string; seq: number; window: number; verdict: 'ok' | 'replay' | 'replay-stale' }
  /** Inbound: the integrity check ('none': the SA has no integrity algorithm). */
  | { step: 'icv'; said: string; verdict: 'ok' | 'failed' | 'none' }
  /** Inbound: one header removed (ESP, AH, IPCOMP or the tunnel's outer IP); nextHeader is what followed it. */
  | { step: 'decap'; said: string; xform: string; before: number; after: number; nextHeader: number }
  /** Inbound: one policy check and its outcome. */
  | { step: 'policy'; said: string; check: PolicyCheck; ok: boolean }
  /** Inbound NAT-T: the peer's new address and port, reported to the key manager (or, in a dry run, not). */
  | { step: 'mapping'; said: string; addr: string; port: number; sent: boolean }
  /** Inbound: the packet handed to the host. */
  | { step: 'deliver'; kind: 'ipsec' | 'not-ipsec' | 'ike' | 'keepalive'; bytes: number }
  /** Either way: the packet was dropped, and why. */
  | { step: 'drop'; reason: PathDropReason; said?: string };

export type TraceSink = (step: TraceStep) => void;

/** What xmit and rcv take besides the packet, for klips trace. */
export interface PathOptions {
  /** Change nothing: no sequence number stored, no window moved, nothing counted, held or sent. */
  dryRun?: boolean;
  /** Called at each stage; the paths build no step when it is absent. */
  trace?: TraceSink;
}

// ---------- a trace request and its answer ----------

/** The largest packet a trace takes: an IPv6 header and a full payload. */
export const MAX_TRACE_PACKET = IP_MAXPACKET + 40;

export interface TraceRequest {
  dir: 'out' | 'in';
  packet: Buffer;
  /** Send/receive for real instead of a dry run. */
  count: boolean;
}

/** What klipsd answers (JSON-safe: packets as hex). */
export interface TraceAnswer {
  dir: 'out' | 'in';
  count: boolean;
  /** out: 'ipsec' or 'pass'; in: 'ipsec', 'not-ipsec', 'ike' or 'keepalive'; or 'drop'. */
  result: 'ipsec' | 'pass' | 'not-ipsec' | 'ike' | 'keepalive' | 'drop';
  steps: TraceStep[];
  /** The packet the path hands on (out: to the wire; in: to the host), hex. */
  packet?: string;
  /** out: the outer destination. */
  dst?: string;
  /** out: ESP in UDP to this port. */
  natTPort?: number;
  /** A drop's reason and, when an SA's transform refused the packet, that SA. */
  reason?: PathDropReason;
  said?: string;
  /** %reject: the ICMP unreachable for the sender, hex. */
  icmp?: string;
  /** %trap with count: the ACQUIRE's seq. */
  acquireSeq?: number;
}

/** A trace request from JSON (the view channel's `{"trace": {...}}`), or why it is refused. */
export function parseTraceRequest(x: unknown): TraceRequest | { error: string } {
  const r = x as { dir?: unknown; packet?: unknown; count?: unknown } | null;
  if (!r || typeof r !== 'object') return { error: 'trace: expected {"dir": "out"|"in", "packet": HEX, "count": BOOLEAN}' };
  if (r.dir !== 'out' && r.dir !== 'in') return { error: 'trace: "dir" must be "out" or "in"' };
  if (r.count !== undefined && typeof r.count !== 'boolean') return { error: 'trace: "count" must be true or false' };
  if (typeof r.packet !== 'string' || !/^(?:[0-9a-fA-F]{2})+$/.test(r.packet)) return { error: 'trace: "packet" must be the packet in hex (an even number of hex digits)' };
  if (r.packet.length > 2 * MAX_TRACE_PACKET) return { error: `trace: the packet is longer than ${MAX_TRACE_PACKET} bytes` };
  return { dir: r.dir, packet: Buffer.from(r.packet, 'hex'), count: r.count === true };
}

const hexOf = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Run one packet through `engine`'s paths, collecting the steps. */
export function runTrace(engine: Engine, req: TraceRequest): TraceAnswer {
  const steps: TraceStep[] = [];
  const opts = { dryRun: !req.count, trace: (s: TraceStep) => { steps.push(s); } };
  const base = { dir: req.dir, count: req.count, steps };
  if (req.dir === 'out') {
    const r = xmit(engine, req.packet, opts);
    if (r.ok) {
      const a: TraceAnswer = { ...base, result: r.action, packet: hexOf(r.out.packet), dst: r.out.dst };
      if (r.out.natTPort !== undefined) a.natTPort = r.out.natTPort;
      return a;
    }
    const a: TraceAnswer = { ...base, result: 'drop', reason: r.reason };
    if (r.said) a.said = formatSaidOld(r.said);
    if (r.icmp) a.icmp = hexOf(r.icmp);
    if (r.acquireSeq !== undefined) a.acquireSeq = r.acquireSeq;
    return a;
  }
  const r = rcv(engine, req.packet, undefined, opts);
  if (r.ok) return { ...base, result: r.kind, packet: hexOf(r.packet) };
  const a: TraceAnswer = { ...base, result: 'drop', reason: r.reason };
  if (r.said) a.said = formatSaidOld(r.said);
  return a;
}

/** The view channel's answer to `{"trace": ...}`: the trace, or `{"error"}` for a bad request. */
export function traceAnswer(engine: Engine, x: unknown): TraceAnswer | { error: string } {
  const req = parseTraceRequest(x);
  return 'error' in req ? req : runTrace(engine, req);
}

// ---------- probe packets ----------

export type ProbeProto = 'icmp' | 'tcp' | 'udp';

export interface ProbeSpec {
  /** 4 bytes (IPv4) or 16 (IPv6), both of one family. */
  src: Uint8Array;
  dst: Uint8Array;
  proto: ProbeProto;
  /** TCP/UDP ports. */
  sport?: number;
  dport?: number;
  payload?: Uint8Array;
}

/** The probe's fixed header fields, so a probe's bytes are the same every time. */
export const PROBE = { ttl: 64, id: 1, icmpId: 1, icmpSeq: 1, tcpSeq: 1, tcpWindow: 65535, sport: 49152 } as const;
/** A TCP/UDP probe's destination port when none is given. */
export const PROBE_DPORT: Readonly<Record<'tcp' | 'udp', number>> = { tcp: 80, udp: 53 };

const TCP_SYN = 0x02;
const ICMP_ECHO = 8;
const ICMPV6_ECHO_REQUEST = 128;

/** The transport header of a probe, checksum left zero, and where its checksum goes. */
const PROBE_HEADERS: Readonly<Record<ProbeProto, (s: ProbeSpec, v6: boolean) => { proto: number; header: Buffer; checksumAt: number }>> = {
  icmp: (_s, v6) => {
    const h = Buffer.alloc(8);
    h[0] = v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO;
    wr16be(h, 4, PROBE.icmpId);
    wr16be(h, 6, PROBE.icmpSeq);
    return { proto: v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP, header: h, checksumAt: 2 };
  },
  tcp: (s) => {
    const h = Buffer.alloc(20);
    wr16be(h, 0, s.sport ?? PROBE.sport);
    wr16be(h, 2, s.dport ?? PROBE_DPORT.tcp);
    wr32be(h, 4, PROBE.tcpSeq);
    h[12] = 5 << 4;
    h[13] = TCP_SYN;
    wr16be(h, 14, PROBE.tcpWindow);
    return { proto: IPPROTO_TCP, header: h, checksumAt: 16 };
  },
  udp: (s) => {
    const h = Buffer.alloc(UDP_HEADER_BYTES);
    wr16be(h, 0, s.sport ?? PROBE.sport);
    wr16be(h, 2, s.dport ?? PROBE_DPORT.udp);
    wr16be(h, 4, UDP_HEADER_BYTES + (s.payload?.length ?? 0));
    return { proto: IPPROTO_UDP, header: h, checksumAt: 6 };
  },
};

/**
 * A probe packet: IPv4 (TTL 64, id 1, no flags) or IPv6 (hop limit 64) carrying an ICMP
 * or ICMPv6 echo request (id 1, seq 1), a TCP SYN (seq 1, window 65535) or a UDP
 * datagram, with `payload` after it and every checksum right.
 */
export function buildProbe(s: ProbeSpec): Buffer {
  const v6 = s.src.length === 16;
  if (s.src.length !== s.dst.length || (s.src.length !== 4 && !v6)) throw new RangeError('probe addresses must be both IPv4 or both IPv6');
  const t = PROBE_HEADERS[s.proto](s, v6);
  const payload = s.payload ?? new Uint8Array(0);
  const segment = Buffer.concat([t.header, payload]);
  if (segment.length > IP_MAXPACKET - (v6 ? 0 : 20)) throw new RangeError('probe payload too long');
  const head = v6
    ? buildIPv6Header({ trafficClass: 0, flowLabel: 0, hopLimit: PROBE.ttl, nextHeader: t.proto, src: s.src, dst: s.dst, payloadLength: segment.length })
    : buildIPv4Header({ tos: 0, id: PROBE.id, flags: 0, ttl: PROBE.ttl, protocol: t.proto, src: s.src, dst: s.dst, payloadLength: segment.length });
  const packet = Buffer.concat([head, segment]);
  const p = parseIp(packet);
  if (!p.ok) throw new Error(`probe does not parse: ${p.reason}`);
  // ICMPv4 alone sums no pseudo-header.
  const seed = t.proto === IPPROTO_ICMP ? 0 : pseudoHeaderSum(p.ip, t.proto, segment.length);
  let sum = internetChecksum(packet, head.length, packet.length, seed);
  if (sum === 0 && t.proto === IPPROTO_UDP) sum = 0xffff;
  wr16be(packet, head.length + t.checksumAt, sum);
  return packet;
}

// ---------- a packet layer by layer ----------

export type Checksum = 'ok' | 'bad' | 'none';

/** An ICMP or ICMPv6 header; an echo request or reply adds its id and sequence number. */
export interface IcmpFields {
  type: number;
  code: number;
  checksum: Checksum;
  id?: number;
  seq?: number;
}

/** One layer of a decoded packet, outermost first. */
export type Layer =
  | { layer: 'ipv4'; src: string; dst: string; protocol: number; ttl: number; id: number; length: number; df: boolean; mf: boolean; fragmentOffset: number }
  | { layer: 'ipv6'; src: string; dst: string; nextHeader: number; hopLimit: number; length: number; flowLabel: number }
  /** IPv6 extension headers between the base header and the first header decoded next. */
  | { layer: 'ipv6-ext'; headers: number[] }
  | { layer: 'udp'; sport: number; dport: number; length: number; checksum: Checksum }
  /** After UDP on the NAT-T port: ESP follows, an IKE message (non-ESP marker), or a keepalive. */
  | { layer: 'natt'; kind: 'esp' | 'ike' | 'keepalive' }
  | { layer: 'tcp'; sport: number; dport: number; seq: number; ack: number; flags: string; window: number; checksum: Checksum }
  | ({ layer: 'icmp' } & IcmpFields)
  | ({ layer: 'icmpv6' } & IcmpFields)
  /** ESP: what follows the header is encrypted; `encrypted` counts it (IV, ciphertext, ICV). */
  | { layer: 'esp'; spi: number; seq: number; encrypted: number }
  | { layer: 'ah'; spi: number; seq: number; nextHeader: number; icvBytes: number }
  /** IPCOMP: the compressed payload's size, and what it inflated to (the layers after it come from that). */
  | { layer: 'ipcomp'; cpi: number; nextHeader: number; compressed: number; inflated?: number }
  /** Bytes after the last header decoded (the transport payload, or a protocol not decoded here). */
  | { layer: 'data'; protocol?: number; bytes: number }
  /** Decoding stopped: the bytes do not hold what the previous layer announced. */
  | { layer: 'error'; reason: string };

export interface DecodeOptions {
  /** UDP to or from this port is NAT-T (default 4500). */
  natTPort?: number;
}

const TCP_FLAG_LETTERS = ['F', 'S', 'R', 'P', 'A', 'U', 'E', 'C'] as const;
const ECHO_TYPES: ReadonlySet<number> = new Set([0, 8, 128, 129]);
const MAX_NESTING = 8;

interface Base {
  out: Layer[];
  natTPort: number;
  /** IP headers decoded so far (an IPIP bomb stops at MAX_NESTING). */
  depth: number;
}

interface Ctx extends Base {
  /** The IP header the current layers are inside (for transport checksums). */
  ip: IpPacket;
}

/** A transport checksum over [off, end) of `b` for `ip`'s addresses. */
function checksumOf(ctx: Ctx, proto: number, b: Buffer, off: number, field: number): Checksum {
  if (proto === IPPROTO_UDP && ctx.ip.version === 4 && rd16be(b, field) === 0) return 'none';
  const seed = proto === IPPROTO_ICMP ? 0 : pseudoHeaderSum(ctx.ip, proto, b.length - off);
  return internetChecksum(b, off, b.length, seed) === 0 ? 'ok' : 'bad';
}

/** Decoders of the header at `off` in `b` (a packet, or an inflated IPCOMP payload), by protocol. */
const DECODERS: Readonly<Record<number, (ctx: Ctx, b: Buffer, off: number) => void>> = {
  [IPPROTO_ESP]: (ctx, b, off) => {
    if (b.length < off + 8) return void ctx.out.push({ layer: 'error', reason: 'ESP header cut short' });
    ctx.out.push({ layer: 'esp', spi: rd32be(b, off), seq: rd32be(b, off + 4), encrypted: b.length - off - 8 });
  },
  [IPPROTO_AH]: (ctx, b, off) => {
    if (b.length < off + 12) return void ctx.out.push({ layer: 'error', reason: 'AH header cut short' });
    const len = (b[off + 1] + 2) * 4;
    if (b.length < off + len || len < 12) return void ctx.out.push({ layer: 'error', reason: 'AH length beyond the packet' });
    ctx.out.push({ layer: 'ah', spi: rd32be(b, off + 4), seq: rd32be(b, off + 8), nextHeader: b[off], icvBytes: len - 12 });
    decodeNext(ctx, b[off], b, off + len);
  },
  [IPPROTO_COMP]: (ctx, b, off) => {
    if (b.length < off + 4) return void ctx.out.push({ layer: 'error', reason: 'IPCOMP header cut short' });
    const nextHeader = b[off];
    const body = b.subarray(off + 4);
    const layer: Layer & { layer: 'ipcomp' } = { layer: 'ipcomp', cpi: rd16be(b, off + 2), nextHeader, compressed: body.length };
    ctx.out.push(layer);
    let inflated: Buffer;
    try {
      inflated = inflateRawSync(body, { maxOutputLength: IP_MAXPACKET });
    } catch {
      return void ctx.out.push({ layer: 'error', reason: 'the deflate stream does not inflate' });
    }
    layer.inflated = inflated.length;
    // The inflated bytes are the payload after the IP header: check transport checksums over them.
    decodeNext(ctx, nextHeader, inflated, 0);
  },
  [IPPROTO_IPIP]: (ctx, b, off) => decodeIp(ctx, b.subarray(off)),
  [IPPROTO_IPV6]: (ctx, b, off) => decodeIp(ctx, b.subarray(off)),
  [IPPROTO_UDP]: (ctx, b, off) => {
    if (b.length < off + UDP_HEADER_BYTES) return void ctx.out.push({ layer: 'error', reason: 'UDP header cut short' });
    const sport = rd16be(b, off);
    const dport = rd16be(b, off + 2);
    ctx.out.push({ layer: 'udp', sport, dport, length: rd16be(b, off + 4), checksum: checksumOf(ctx, IPPROTO_UDP, b, off, off + 6) });
    const data = b.subarray(off + UDP_HEADER_BYTES);
    if (sport !== ctx.natTPort && dport !== ctx.natTPort) return void ctx.out.push({ layer: 'data', bytes: data.length });
    if (data.length === 1 && data[0] === NATT_KEEPALIVE) return void ctx.out.push({ layer: 'natt', kind: 'keepalive' });
    if (data.length >= NON_ESP_MARKER_BYTES && rd32be(data, 0) === 0) {
      ctx.out.push({ layer: 'natt', kind: 'ike' });
      return void ctx.out.push({ layer: 'data', bytes: data.length - NON_ESP_MARKER_BYTES });
    }
    ctx.out.push({ layer: 'natt', kind: 'esp' });
    DECODERS[IPPROTO_ESP](ctx, b, off + UDP_HEADER_BYTES);
  },
  [IPPROTO_TCP]: (ctx, b, off) => {
    if (b.length < off + 20) return void ctx.out.push({ layer: 'error', reason: 'TCP header cut short' });
    const hl = (b[off + 12] >> 4) * 4;
    const flags = TCP_FLAG_LETTERS.filter((_, i) => b[off + 13] & (1 << i)).join('');
    ctx.out.push({
      layer: 'tcp', sport: rd16be(b, off), dport: rd16be(b, off + 2), seq: rd32be(b, off + 4),
      ack: rd32be(b, off + 8), flags, window: rd16be(b, off + 14), checksum: checksumOf(ctx, IPPROTO_TCP, b, off, off + 16),
    });
    ctx.out.push({ layer: 'data', bytes: Math.max(0, b.length - off - hl) });
  },
  [IPPROTO_ICMP]: (ctx, b, off) => decodeIcmp(ctx, b, off, IPPROTO_ICMP),
  [IPPROTO_ICMPV6]: (ctx, b, off) => decodeIcmp(ctx, b, off, IPPROTO_ICMPV6),
};

function decodeIcmp(ctx: Ctx, b: Buffer, off: number, proto: number): void {
  if (b.length < off + 8) return void ctx.out.push({ layer: 'error', reason: 'ICMP header cut short' });
  const type = b[off];
  const f: IcmpFields = { type, code: b[off + 1], checksum: checksumOf(ctx, proto, b, off, off + 2) };
  if (ECHO_TYPES.has(type)) {
    f.id = rd16be(b, off + 4);
    f.seq = rd16be(b, off + 6);
  }
  ctx.out.push(proto === IPPROTO_ICMP ? { layer: 'icmp', ...f } : { layer: 'icmpv6', ...f });
  ctx.out.push({ layer: 'data', bytes: b.length - off - 8 });
}

function decodeNext(ctx: Ctx, proto: number, b: Buffer, off: number): void {
  const d = DECODERS[proto];
  if (d) d(ctx, b, off);
  else ctx.out.push({ layer: 'data', protocol: proto, bytes: b.length - off });
}

function decodeIp(outer: Base, b: Uint8Array): void {
  const p = parseIp(b);
  if (!p.ok) return void outer.out.push({ layer: 'error', reason: `IP header: ${p.reason}` });
  if (outer.depth >= MAX_NESTING) return void outer.out.push({ layer: 'error', reason: 'nested too deep' });
  const ip = p.ip;
  const bytes = ip.bytes;
  const family = ip.version === 4 ? AF_INET : AF_INET6;
  const src = formatAddress(family, ip.src);
  const dst = formatAddress(family, ip.dst);
  const ctx: Ctx = { out: outer.out, natTPort: outer.natTPort, ip, depth: outer.depth + 1 };
  if (ip.version === 4) {
    ctx.out.push({
      layer: 'ipv4', src, dst, protocol: ip.protocol, ttl: ip.ttl, id: rd16be(bytes, 4), length: bytes.length,
      df: ip.dontFragment, mf: ip.moreFragments, fragmentOffset: ip.fragmentOffset,
    });
  } else {
    ctx.out.push({ layer: 'ipv6', src, dst, nextHeader: ip.protocol, hopLimit: ip.ttl, length: bytes.length, flowLabel: rd32be(bytes, 0) & 0xfffff });
  }
  const at = payloadHeader(ip);
  if (!at.ok) return void ctx.out.push({ layer: 'error', reason: 'IPv6 extension headers overrun the packet' });
  if (at.headers.length) ctx.out.push({ layer: 'ipv6-ext', headers: at.headers });
  if (at.at.fragmentOffset) return void ctx.out.push({ layer: 'data', protocol: at.at.protocol, bytes: bytes.length - at.at.offset });
  decodeNext(ctx, at.at.protocol, bytes, at.at.offset);
}

/** `packet` layer by layer, outermost first. */
export function decodeLayers(packet: Uint8Array, o: DecodeOptions = {}): Layer[] {
  const out: Layer[] = [];
  decodeIp({ out, natTPort: o.natTPort ?? DEFAULT_NATT.dport, depth: 0 }, packet);
  return out;
}
