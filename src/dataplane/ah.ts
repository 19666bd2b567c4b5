/**
 * AH (RFC 4302; KLIPS's ipsec_ah.c) for IPv4 and IPv6, transport and tunnel mode (tunnel
 * = IPIP then AH, KLIPS's tun → ah chain). The ICV covers the whole packet with the fields
 * routers may change zeroed (RFC 4302 §3.3.3.1): IPv4 TOS, flags and fragment offset, TTL,
 * header checksum and every option not listed immutable in appendix A; IPv6 traffic
 * class, flow label, hop limit, the data of hop-by-hop and destination options whose
 * type has the "may change" bit (0x20), and a type 0/2 routing header rewritten on output
 * to what the final destination will see. With ESN the high 32 bits follow the packet in
 * the ICV. ICV lengths come from the HMAC table (96-bit MD5/SHA1, RFC 4868 truncations),
 * padded to 4 bytes (IPv4) or 8 bytes (IPv6).
 */

import { timingSafeEqual } from 'node:crypto';
import { IPPROTO_AH, IPPROTO_IPIP } from '../wire/constants.js';
import { hmacIcv } from './algorithms.js';
import { drop, type Result } from './drop.js';
import { ipipEncap, type IpipOptions } from './ipip.js';
import {
  IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_IPV6, IPPROTO_ROUTING, IPV4_HEADER_BYTES, IPV6_HEADER_BYTES,
  assemble, locateInbound, insertionPoint, parseIp,
} from './packet.js';
import type { ReplayGuard } from './replay.js';
import { prepareSA, sendableSeq, type Mode, type TransformSA } from './sa.js';
import { rd32be, wr16be, wr32be } from '../wire/bytes.js';

export const AH_HEADER_BYTES = 12;

/** IPv4 options whose value is fixed end to end (RFC 4302 appendix A.1); all others are zeroed. */
const IMMUTABLE_IPV4_OPTIONS = new Set([0, 1, 130, 133, 134, 148, 149]);
const IPOPT_END = 0;
const IPOPT_NOP = 1;
/** IPv6 option type bit: the option's data may change en route (RFC 8200 §4.2). */
const IP6OPT_MUTABLE = 0x20;
const IP6OPT_PAD1 = 0;

/** Zero the mutable IPv4 options in [20, hl); false if they are malformed. */
function zeroIPv4Options(b: Buffer, hl: number): boolean {
  let i = IPV4_HEADER_BYTES;
  while (i < hl) {
    const type = b[i];
    if (type === IPOPT_END) break;
    if (type === IPOPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= hl) return false;
    const len = b[i + 1];
    if (len < 2 || i + len > hl) return false;
    if (!IMMUTABLE_IPV4_OPTIONS.has(type)) b.fill(0, i, i + len);
    i += len;
  }
  return true;
}

/** Zero the data of mutable options in a hop-by-hop/destination options header. */
function zeroIPv6Options(b: Buffer, start: number, end: number): boolean {
  let i = start + 2;
  while (i < end) {
    const type = b[i];
    if (type === IP6OPT_PAD1) {
      i++;
      continue;
    }
    if (i + 1 >= end) return false;
    const len = b[i + 1];
    if (i + 2 + len > end) return false;
    if (type & IP6OPT_MUTABLE) b.fill(0, i + 2, i + 2 + len);
    i += 2 + len;
  }
  return true;
}

/**
 * A sender's type 0/2 routing header as the final destination will see it: the remaining
 * hops swapped through the destination address in turn (RFC 8200 §4.4), segments left 0.
 */
function finalRouting(b: Buffer, off: number): void {
  const type = b[off + 2];
  const left = b[off + 3];
  if ((type !== 0 && type !== 2) || left === 0) return;
  const n = (b[off + 1] * 8) / 16;
  if (left > n) return;
  const tmp = Buffer.allocUnsafe(16);
  for (let k = n - left; k < n; k++) {
    const a = off + 8 + 16 * k;
    b.copy(tmp, 0, 24, 40);
    b.copy(b, 24, a, a + 16);
    tmp.copy(b, a);
  }
  b[off + 3] = 0;
}

/** A copy of `packet` with its mutable fields zeroed for the ICV (the ICV itself too). */
function icvInput(packet: Buffer, ahOff: number, icvBytes: number, sending: boolean): Buffer | undefined {
  const c = Buffer.from(packet);
  c.fill(0, ahOff + AH_HEADER_BYTES, ahOff + AH_HEADER_BYTES + icvBytes);
  if (c[0] >> 4 === 4) {
    c[1] = 0;
    wr16be(c, 6, 0);
    c[8] = 0;
    wr16be(c, 10, 0);
    return zeroIPv4Options(c, (c[0] & 0x0f) * 4) ? c : undefined;
  }
  c[0] = 0x60;
  c[1] = c[2] = c[3] = 0;
  c[7] = 0;
  let nh = c[6];
  let off = IPV6_HEADER_BYTES;
  while (off < ahOff) {
    const len = (c[off + 1] + 1) * 8;
    if (nh === IPPROTO_HOPOPTS || nh === IPPROTO_DSTOPTS) {
      if (!zeroIPv6Options(c, off, off + len)) return undefined;
    } else if (nh === IPPROTO_ROUTING && sending) finalRouting(c, off);
    nh = c[off];
    off += len;
  }
  return c;
}

export interface AhOutputOptions {
  mode: Mode;
  seq: number;
  seqHi?: number;
  tunnel?: IpipOptions;
}

/** Authenticate an outbound packet with AH. */
export function ahOutput(sa: TransformSA, packet: Uint8Array, opts: AhOutputOptions): Result<{ packet: Buffer }> {
  const pr = prepareSA(sa);
  if (!pr.ok) return pr;
  const p = pr.prepared;
  if (p.enc) return drop('bad-sa');
  const seqHi = opts.seqHi ?? 0;
  if (!sendableSeq(sa, opts.seq, seqHi)) return drop('seq-overflow');
  let pkt = packet;
  if (opts.mode === 'tunnel') {
    const t = ipipEncap(sa, packet, opts.tunnel);
    if (!t.ok) return t;
    pkt = t.packet;
  }
  const parsed = parseIp(pkt);
  if (!parsed.ok) return parsed;
  const ip = parsed.ip;
  if (ip.fragmentOffset || ip.moreFragments) return drop('fragment');
  const at = insertionPoint(ip);
  if (!at.ok) return at;
  const unit = ip.version === 4 ? 4 : 8;
  const ahLen = Math.ceil((AH_HEADER_BYTES + p.icvBytes) / unit) * unit;
  const ah = Buffer.alloc(ahLen);
  ah[0] = at.at.protocol;
  ah[1] = ahLen / 4 - 2;
  wr32be(ah, 4, sa.spi >>> 0);
  wr32be(ah, 8, opts.seq);
  const r = assemble(ip.bytes.subarray(0, at.at.offset), at.at.protocolField, IPPROTO_AH, ah, ip.bytes.subarray(at.at.offset));
  if (!r.ok) return r;
  const covered = icvInput(r.packet, at.at.offset, p.icvBytes, true);
  if (!covered) return drop('bad-ip-header');
  hmacIcv(p.auth!, p.authKey!, covered, sa.esn ? seqHi : undefined).copy(r.packet, at.at.offset + AH_HEADER_BYTES);
  return r;
}

export interface AhInputOptions {
  mode: Mode;
  replay?: ReplayGuard;
  seqHi?: number;
  policyCheck?: boolean;
}

export interface AhInputResult {
  /** Transport: the packet without AH; tunnel: the inner packet, a view into the input. */
  packet: Buffer;
  nextHeader: number;
  seq: number;
  seqHi: number;
}

/** Verify and remove AH from an inbound packet. */
export function ahInput(sa: TransformSA, packet: Uint8Array, opts: AhInputOptions): Result<AhInputResult> {
  const pr = prepareSA(sa);
  if (!pr.ok) return pr;
  const p = pr.prepared;
  if (p.enc) return drop('bad-sa');
  const at = locateInbound(packet, IPPROTO_AH);
  if (!at.ok) return at;
  const ip = at.ip;
  const off = at.at.offset;
  const b = ip.bytes;
  if (b.length < off + AH_HEADER_BYTES) return drop('too-short');
  const ahLen = (b[off + 1] + 2) * 4;
  if (ahLen < AH_HEADER_BYTES + p.icvBytes || (ip.version === 6 && ahLen % 8)) return drop('malformed');
  if (off + ahLen > b.length) return drop('too-short');
  if (rd32be(b, off + 4) !== sa.spi >>> 0) return drop('no-sa');
  const seq = rd32be(b, off + 8);
  let seqHi = opts.seqHi ?? 0;
  if (opts.replay) {
    const c = opts.replay.check(seq);
    if (!c.ok) return c;
    seqHi = c.seqHi;
  }
  const covered = icvInput(b, off, p.icvBytes, false);
  if (!covered) return drop('bad-ip-header');
  const icv = hmacIcv(p.auth!, p.authKey!, covered, sa.esn ? seqHi : undefined);
  if (!timingSafeEqual(icv, b.subarray(off + AH_HEADER_BYTES, off + AH_HEADER_BYTES + p.icvBytes))) return drop('icv');
  const nh = b[off];
  const tunnel = opts.mode === 'tunnel';
  if (tunnel && nh !== IPPROTO_IPIP && nh !== IPPROTO_IPV6) return drop('bad-next-header');
  if (opts.replay && !opts.replay.update(seqHi, seq)) return drop('replay');
  const rest = b.subarray(off + ahLen);
  if (tunnel) {
    if (opts.policyCheck !== false && !ip.src.equals(sa.src)) return drop('policy');
    const inner = parseIp(rest);
    if (!inner.ok) return inner;
    if ((inner.ip.version === 4) !== (nh === IPPROTO_IPIP)) return drop('bad-next-header');
    return { ok: true, packet: inner.ip.bytes, nextHeader: nh, seq, seqHi };
  }
  const r = assemble(b.subarray(0, off), at.at.protocolField, nh, rest);
  if (!r.ok) return r;
  return { ok: true, packet: r.packet, nextHeader: nh, seq, seqHi };
}
