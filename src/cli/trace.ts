/**
 * `klips trace`: one packet through klipsd's live eroutes and SAs, each step shown.
 * `--out` builds a probe (ICMP/ICMPv6 echo, TCP SYN or UDP from --src to --dst; the
 * family from the addresses) and runs it through the outbound path; `--in --packet HEX`
 * runs a packet through the inbound path. klipsd answers on its view channel
 * (dataplane/trace.ts); unless --count, nothing in klipsd changes (no sequence number,
 * lifetime, counter, %hold or ACQUIRE). Then the packet the path produced is decoded
 * layer by layer (ESP's payload is encrypted and says so). --json prints one record:
 * klipsd's answer (`steps`, `packet` in hex, …), the packet given (`input`) and the
 * decoded `layers`.
 */

import { Option } from 'commander';
import { resolveSocketPath } from '../daemon/paths.js';
import {
  IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_IPIP, addressBytes,
} from '../wire/index.js';
import {
  IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP, buildProbe, decodeLayers,
  type Layer, type PolicyCheck, type ProbeProto, type TraceAnswer, type TraceStep,
} from '../dataplane/index.js';
import { askInfo } from './client.js';
import { parseAddr } from './args.js';
import { addCommonOptions, CliFailure, newCommand, out, requireUlong, UsageError, type CommonOptions } from './common.js';
import { jsonLines } from './json.js';

export interface TraceOptions extends CommonOptions {
  out?: boolean;
  in?: boolean;
  src?: string;
  dst?: string;
  proto?: ProbeProto;
  sport?: string;
  dport?: string;
  payload?: string;
  packet?: string;
  count?: boolean;
}

/** Options that belong to one direction only. */
const OUT_ONLY = ['src', 'dst', 'proto', 'sport', 'dport', 'payload'] as const;
const IN_ONLY = ['packet'] as const;

/** Hex bytes as an option gives them: an optional 0x, whitespace ignored, an even number of digits. */
function hexArg(what: string, text: string): Buffer {
  const clean = text.replace(/\s+/g, '').replace(/^0[xX]/, '');
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(clean)) throw new UsageError(`invalid ${what} "${text}" (bytes in hex: an even number of hex digits, 0x allowed)`);
  return Buffer.from(clean, 'hex');
}

/** The packet to trace and its direction, from the options (usage errors thrown). */
export function tracedPacket(o: TraceOptions): { dir: 'out' | 'in'; packet: Buffer } {
  if (o.out === o.in) throw new UsageError(o.out ? '--out and --in exclude each other' : 'give --out (build a packet) or --in --packet HEX');
  const rec = o as unknown as Record<string, unknown>;
  const given = (names: readonly string[]) => names.filter((n) => rec[n] !== undefined).map((n) => `--${n}`);
  if (o.in) {
    const stray = given(OUT_ONLY);
    if (stray.length) throw new UsageError(`${stray.join(', ')} ${stray.length > 1 ? 'are' : 'is'} for --out`);
    if (o.packet === undefined) throw new UsageError('--in needs --packet HEX');
    const packet = hexArg('--packet', o.packet);
    if (packet.length === 0) throw new UsageError('--packet is empty');
    return { dir: 'in', packet };
  }
  const stray = given(IN_ONLY);
  if (stray.length) throw new UsageError(`${stray.join(', ')} is for --in`);
  const missing = ['src', 'dst', 'proto'].filter((n) => rec[n] === undefined).map((n) => `--${n}`);
  if (missing.length) throw new UsageError(`--out needs ${missing.join(', ')}`);
  const src = parseAddr(o.src!, 0, '--src');
  const dst = parseAddr(o.dst!, 0, '--dst');
  if (src.family !== dst.family) throw new UsageError('--src and --dst must both be IPv4 or both IPv6');
  const proto = o.proto!;
  if (proto === 'icmp' && (o.sport !== undefined || o.dport !== undefined)) throw new UsageError('--sport and --dport are for --proto tcp or udp');
  const payload = o.payload === undefined ? undefined : hexArg('--payload', o.payload);
  const sport = o.sport === undefined ? undefined : requireUlong('--sport', o.sport, 0xffff);
  const dport = o.dport === undefined ? undefined : requireUlong('--dport', o.dport, 0xffff);
  try {
    return { dir: 'out', packet: buildProbe({ src: addressBytes(src.family, src.addr), dst: addressBytes(dst.family, dst.addr), proto, payload, sport, dport }) };
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError('--payload is too long for one IP packet');
    throw e;
  }
}

// ---------- text ----------

const PROTO_NAMES: Readonly<Record<number, string>> = {
  [IPPROTO_ICMP]: 'ICMP', [IPPROTO_IPIP]: 'IPIP', [IPPROTO_TCP]: 'TCP', [IPPROTO_UDP]: 'UDP', [IPPROTO_IPV6]: 'IPv6',
  [IPPROTO_ESP]: 'ESP', [IPPROTO_AH]: 'AH', [IPPROTO_ICMPV6]: 'ICMPv6', [IPPROTO_COMP]: 'IPCOMP',
  0: 'hop-by-hop', 43: 'routing', 44: 'fragment', 59: 'none', 60: 'dest-options',
};
const proto = (n: number): string => (PROTO_NAMES[n] ? `${PROTO_NAMES[n]}(${n})` : String(n));
const hex0x = (n: number): string => `0x${n.toString(16)}`;

const POLICY_TEXT: Readonly<Record<PolicyCheck, string>> = {
  chain: 'is the next SA of the group',
  natt: 'has NAT-T (ESP arrived in UDP)',
  source: 'outer source is the tunnel SA\'s source',
  inflow: 'inner addresses inside the SA\'s inbound flows',
  complete: 'group used to its end',
};

const ICV_TEXT = { ok: 'ok', failed: 'FAILED', none: 'none (the SA has no integrity algorithm)' } as const;
const NATT_TEXT = { esp: 'ESP in UDP', ike: 'IKE (non-ESP marker)', keepalive: 'NAT-T keepalive' } as const;
const sockets = (n: number): string => `${n} registered socket${n === 1 ? '' : 's'}`;

type StepTexts = { [K in TraceStep['step']]: (s: Extract<TraceStep, { step: K }>) => string };

/** One line of text per step kind. */
const STEP_TEXT: StepTexts = {
  eroute: (s) => s.eroute ?? '(none matches)',
  sa: (s) => `${s.said} ${s.xform}: ${s.before} -> ${s.after} bytes`
    + (s.seq !== undefined ? `, seq ${s.seq}` : '')
    + (s.compressed === undefined ? '' : s.compressed ? ', compressed' : ', sent uncompressed')
    + (s.natTPort !== undefined ? `, ESP in UDP to port ${s.natTPort}` : ''),
  hold: (s) => (s.kept ? 'the packet is kept on the %hold eroute' : 'would keep the packet on the %hold eroute'),
  acquire: (s) => (s.sent ? `SADB_ACQUIRE seq ${s.seq} sent to ${sockets(s.listeners)}`
    : s.listeners ? `would send SADB_ACQUIRE to ${sockets(s.listeners)}` : 'no socket registered for ESP: no SADB_ACQUIRE'),
  icmp: (s) => `ICMP type ${s.type} code ${s.code} (${s.bytes} bytes) back to ${s.dst}`,
  send: (s) => `to ${s.dst}, ${s.bytes} bytes${s.natTPort !== undefined ? ` (UDP port ${s.natTPort})` : ''}`,
  natt: (s) => `UDP ${s.sport} -> ${s.dport}: ${NATT_TEXT[s.kind]}`,
  lookup: (s) => (s.found ? `${s.said}: found (${s.xform})` : `${s.said}: no such SA`),
  replay: (s) => `${s.said} seq ${s.seq}: ${s.verdict === 'ok' ? 'ok' : `REFUSED (${s.verdict})`} (window ${s.window})`,
  icv: (s) => `${s.said}: ${ICV_TEXT[s.verdict]}`,
  decap: (s) => `${s.said} ${s.xform}: ${s.before} -> ${s.after} bytes, next header ${proto(s.nextHeader)}`,
  policy: (s) => `${s.said} ${POLICY_TEXT[s.check]}: ${s.ok ? 'ok' : 'FAILED'}`,
  mapping: (s) => `${s.said}: peer now at ${s.addr} port ${s.port}: ${s.sent ? 'SADB_X_NAT_T_NEW_MAPPING sent' : 'would send SADB_X_NAT_T_NEW_MAPPING'}`,
  deliver: (s) => `${s.kind}, ${s.bytes} bytes to the host`,
  drop: (s) => `${s.reason}${s.said ? ` at ${s.said}` : ''}`,
};

export function stepText(s: TraceStep): string {
  return (STEP_TEXT[s.step] as (x: TraceStep) => string)(s);
}

type LayerTexts = { [K in Layer['layer']]: (l: Extract<Layer, { layer: K }>) => string };

const echo = (l: { id?: number; seq?: number }) => (l.id !== undefined ? ` id ${l.id} seq ${l.seq}` : '');

/** One line of text per layer kind: a label and what the header says. */
const LAYER_TEXT: LayerTexts = {
  ipv4: (l) => `IPv4    ${l.src} -> ${l.dst} ${proto(l.protocol)} ttl ${l.ttl} id ${l.id} len ${l.length}`
    + (l.df ? ' DF' : '') + (l.mf ? ' MF' : '') + (l.fragmentOffset ? ` offset ${l.fragmentOffset}` : ''),
  ipv6: (l) => `IPv6    ${l.src} -> ${l.dst} ${proto(l.nextHeader)} hlim ${l.hopLimit} len ${l.length} flow ${l.flowLabel}`,
  'ipv6-ext': (l) => `ext     ${l.headers.map(proto).join(', ')}`,
  udp: (l) => `UDP     ${l.sport} -> ${l.dport} len ${l.length} checksum ${l.checksum}`,
  natt: (l) => `NAT-T   ${NATT_TEXT[l.kind]}`,
  tcp: (l) => `TCP     ${l.sport} -> ${l.dport} [${l.flags}] seq ${l.seq} ack ${l.ack} win ${l.window} checksum ${l.checksum}`,
  icmp: (l) => `ICMP    type ${l.type} code ${l.code}${echo(l)} checksum ${l.checksum}`,
  icmpv6: (l) => `ICMPv6  type ${l.type} code ${l.code}${echo(l)} checksum ${l.checksum}`,
  esp: (l) => `ESP     spi ${hex0x(l.spi)} seq ${l.seq}; ${l.encrypted} bytes encrypted (the inner packet cannot be read without the SA's key)`,
  ah: (l) => `AH      spi ${hex0x(l.spi)} seq ${l.seq} ${proto(l.nextHeader)} icv ${l.icvBytes} bytes`,
  ipcomp: (l) => `IPCOMP  cpi ${hex0x(l.cpi)} ${proto(l.nextHeader)}; ${l.compressed} bytes` + (l.inflated !== undefined ? ` inflate to ${l.inflated}` : ''),
  data: (l) => `data    ${l.bytes} bytes${l.protocol !== undefined ? ` of ${proto(l.protocol)}` : ''}`,
  error: (l) => `error   ${l.reason}`,
};

export function layerText(l: Layer): string {
  return (LAYER_TEXT[l.layer] as (x: Layer) => string)(l);
}

const indent = (lines: string[]): string => lines.map((l) => `  ${l}\n`).join('');

/** What a trace prints without --json. */
export function traceText(a: TraceAnswer): string {
  const head = `trace ${a.dir}${a.count ? ' (counted: sent as a real packet)' : ' (dry run: nothing in klipsd changed)'}\n`;
  const steps = indent(a.steps.map((s) => `${s.step.padEnd(8)} ${stepText(s)}`));
  let tail: string;
  if (a.packet !== undefined) {
    const bytes = Buffer.from(a.packet, 'hex');
    const where = a.dir === 'out' ? `to ${a.dst}` : a.result === 'ipsec' ? 'delivered' : `handed on (${a.result})`;
    tail = `packet ${bytes.length} bytes ${where}:\n${indent([...decodeLayers(bytes, { natTPort: a.natTPort }).map(layerText), `hex     ${a.packet}`])}`;
  } else {
    tail = `dropped: ${a.reason}${a.said ? ` at ${a.said}` : ''}\n`;
    if (a.icmp !== undefined) {
      const icmp = Buffer.from(a.icmp, 'hex');
      tail += `ICMP ${icmp.length} bytes back to the sender:\n${indent([...decodeLayers(icmp).map(layerText), `hex     ${a.icmp}`])}`;
    }
  }
  return head + steps + tail;
}

/** What a trace prints with --json: one record. */
export function traceRecord(a: TraceAnswer, input: Buffer): Record<string, unknown> {
  const { dir, count, result, steps, ...rest } = a;
  const r: Record<string, unknown> = { dir, count, result, input: input.toString('hex'), steps, ...rest };
  if (a.packet !== undefined) r.layers = decodeLayers(Buffer.from(a.packet, 'hex'), { natTPort: a.natTPort });
  return r;
}

export async function runTrace(o: TraceOptions): Promise<void> {
  const { dir, packet } = tracedPacket(o);
  const ans = await askInfo('trace', resolveSocketPath(o.socket), { trace: { dir, packet: packet.toString('hex'), count: o.count === true } }, o.timeout);
  if (typeof ans.error === 'string') throw new CliFailure(ans.error.startsWith('trace: ') ? ans.error : `trace: ${ans.error}`);
  if (!Array.isArray(ans.steps)) throw new CliFailure('trace: klipsd answered without steps (an older klipsd?)');
  const a = ans as unknown as TraceAnswer;
  await out(o.json ? jsonLines([traceRecord(a, packet)]) : traceText(a));
}

export function traceCommand() {
  const cmd = newCommand('trace')
    .description("run one packet through klipsd's eroutes and SAs and show each step (a dry run unless --count)")
    .option('--out', 'outbound: build a packet from --src to --dst and run it through the eroutes and SA groups')
    .option('--in', 'inbound: run --packet through SA lookup, replay, ICV, decapsulation and the policy checks')
    .option('--src <addr>', '--out: source address (IPv4 or IPv6; both addresses of one family)')
    .option('--dst <addr>', '--out: destination address')
    .addOption(new Option('--proto <proto>', '--out: ICMP (or ICMPv6) echo request, TCP SYN, or UDP').choices(['icmp', 'tcp', 'udp']))
    .option('--sport <port>', '--out, tcp/udp: source port (default 49152)')
    .option('--dport <port>', '--out, tcp/udp: destination port (default 80 for tcp, 53 for udp)')
    .option('--payload <hex>', '--out: bytes after the ICMP/TCP/UDP header, in hex (default none)')
    .option('--packet <hex>', '--in: the whole IP packet, in hex (e.g. the packet a peer\'s trace printed)')
    .option('--count', 'really send/receive it: sequence numbers, lifetimes and counters advance, a %trap sends SADB_ACQUIRE');
  addCommonOptions(cmd);
  cmd.action(async (opts: TraceOptions) => runTrace(opts));
  return cmd;
}
