/**
 * What the TUN device's offloads leave to us (IFF_VNET_HDR with TUN_F_CSUM | TUN_F_TSO4 |
 * TUN_F_TSO6): each packet read comes after a 10-byte virtio_net_hdr that may say "the
 * transport checksum is not done" (NEEDS_CSUM: the one's-complement sum from csum_start
 * to the end goes at csum_start + csum_offset; the field already holds the pseudo-header
 * sum) or "this is a TCP super-segment" (GSO TCPV4/TCPV6: up to 64 KB of payload behind one
 * header, to be cut into gso_size pieces). Offloading lets the host's TCP hand over 64 KB
 * per read instead of one MSS, which is most of what a sending host spends per packet.
 *
 * `offloadedPackets` turns one read into the whole packets the paths take: checksums
 * completed, super-segments cut with each piece's IP length, IPv4 id and header checksum,
 * TCP sequence number, flags (FIN and PSH on the last piece only, CWR on the first) and
 * TCP checksum made as the host would have.
 *
 * The other way, `TunCoalescer` does what a NIC's GRO does before the host sees packets:
 * consecutive inner TCP segments of one flow that the inbound path delivers in one batch
 * (same addresses, ports, ACK, window, options and IP fields; each sequence number where
 * the last ended; equal sizes, a shorter or PSH one last) are written as one super-segment
 * (GSO TCPV4/TCPV6, NEEDS_CSUM with the pseudo-header sum in place). The host's TCP then
 * takes up to 64 KB in one skb, and answers with one ACK where it would have sent one per
 * two segments, which the tunnel would have carried back. A segment whose own checksum is
 * wrong is never merged (the host drops it alone, as it would without us). Everything else
 * is written whole, behind an all-zero header.
 */

import { sameBytes } from './algorithms.js';
import { internetChecksum, onesSum, onesSumWords, wordsOf } from './packet.js';
import { rd16, rd16be, rd32be, wr16, wr16be, wr32be } from '../wire/bytes.js';

export const VNET_HDR_BYTES = 10;
const F_NEEDS_CSUM = 1;
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const GSO_ECN = 0x80;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;
const TCP_ACK = 0x10;
const IPPROTO_TCP = 6;
/** The largest IPv4 total length, and the largest IPv6 payload length. */
const MAX_IP_BYTES = 0xffff;

/** Why a read could not be made into packets (counted by the runtime, never thrown). */
export type OffloadFault = 'bad-vnet-header';

/** The word view of the scratch buffer offloadedPackets cuts into (one per scratch, made once). */
const scratchViews = new WeakMap<Buffer, Uint32Array>();
function scratchWords(scratch: Buffer): Uint32Array {
  let w = scratchViews.get(scratch);
  if (!w) scratchViews.set(scratch, (w = wordsOf(scratch)));
  return w;
}

/**
 * The packets in one read from an offloading TUN device (`buf[0, n)`, the virtio_net_hdr
 * first), each handed to `emit` (a view into `buf` or into `scratch`, valid only during
 * the call) with its number in the read: piece 1, 2, … of a super-segment has the
 * addresses, protocol and ports of piece 0 (its header is piece 0's, copied). Returns
 * undefined, or the fault when the header makes no sense.
 */
export function offloadedPackets(buf: Buffer, n: number, scratch: Buffer, emit: (packet: Buffer, piece: number) => void): OffloadFault | undefined {
  if (n <= VNET_HDR_BYTES) return 'bad-vnet-header';
  const flags = buf[0];
  const gso = buf[1] & ~GSO_ECN;
  const hdrLen = rd16(buf, 2);
  const gsoSize = rd16(buf, 4);
  const csumStart = rd16(buf, 6);
  const csumOffset = rd16(buf, 8);
  const pkt = buf.subarray(VNET_HDR_BYTES, n);
  if (gso === GSO_NONE) {
    // (A packet too short for the paths is theirs to drop, with its reason.)
    if (flags & F_NEEDS_CSUM) {
      const at = csumStart + csumOffset;
      if (at + 2 > pkt.length || csumStart >= pkt.length) return 'bad-vnet-header';
      const c = internetChecksum(pkt, csumStart, pkt.length);
      pkt[at] = c >> 8;
      pkt[at + 1] = c & 0xff;
    }
    emit(pkt, 0);
    return undefined;
  }
  if (gso !== GSO_TCPV4 && gso !== GSO_TCPV6) return 'bad-vnet-header';
  const v4 = gso === GSO_TCPV4;
  if (pkt.length < 20 || (pkt[0] >> 4) !== (v4 ? 4 : 6)) return 'bad-vnet-header';
  const ipLen = v4 ? (pkt[0] & 0x0f) * 4 : 40;
  // The TCP header starts at csum_start (IPv6 extension headers included before it).
  const tcpAt = csumStart;
  if (tcpAt < ipLen || tcpAt + 20 > pkt.length) return 'bad-vnet-header';
  const tcpLen = (pkt[tcpAt + 12] >> 4) * 4;
  const head = tcpAt + tcpLen;
  if (head > pkt.length || gsoSize === 0 || (hdrLen !== 0 && hdrLen > pkt.length)) return 'bad-vnet-header';
  const payload = pkt.length - head;
  const seq0 = rd32be(pkt, tcpAt + 4);
  const flags0 = pkt[tcpAt + 13];
  const id0 = v4 ? rd16be(pkt, 4) : 0;
  const pieces = Math.max(1, Math.ceil(payload / gsoSize));
  const words = scratchWords(scratch);
  for (let i = 0; i < pieces; i++) {
    const off = i * gsoSize;
    const take = Math.min(gsoSize, payload - off);
    const last = i === pieces - 1;
    const seg = scratch.subarray(0, head + take);
    // (The headers once: every field that differs between pieces is written below for each.)
    if (i === 0) pkt.copy(seg, 0, 0, head);
    pkt.copy(seg, head, head + off, head + off + take);
    if (v4) {
      wr16be(seg, 2, head + take);
      wr16be(seg, 4, (id0 + i) & 0xffff);
      seg[10] = 0;
      seg[11] = 0;
      wr16be(seg, 10, internetChecksum(seg, 0, ipLen));
    } else {
      wr16be(seg, 4, head + take - 40);
    }
    wr32be(seg, tcpAt + 4, (seq0 + off) >>> 0);
    let f = flags0;
    if (!last) f &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) f &= ~TCP_CWR;
    seg[tcpAt + 13] = f;
    seg[tcpAt + 16] = 0;
    seg[tcpAt + 17] = 0;
    const l4 = head + take - tcpAt;
    const pseudo = v4
      ? onesSum(seg, 12, 20) + 6 + l4
      : onesSum(seg, 8, 40) + 6 + l4;
    const c = ~onesSumWords(words, seg, tcpAt, head + take, pseudo) & 0xffff;
    seg[tcpAt + 16] = c >> 8;
    seg[tcpAt + 17] = c & 0xff;
    emit(seg, i);
  }
  return undefined;
}

/**
 * Merges the inbound path's consecutive TCP segments into super-segments for the TUN
 * device (see the header). `add` takes each inner packet (copied before it returns),
 * `flush` writes what is held; the runtime flushes after each received batch.
 * `writeWhole` writes one packet with an all-zero header, `writeHeld` the coalescer's
 * own buffer (header included) of the given length.
 */
export class TunCoalescer {
  /** The virtio_net_hdr, then the held super-segment; a segment is checked once it is copied in, a word at a time. */
  private readonly held = Buffer.allocUnsafeSlow(VNET_HDR_BYTES + MAX_IP_BYTES + 40);
  private readonly heldWords = wordsOf(this.held);
  /** The last segment segmentAt took: the sum of its pseudo-header and TCP header (its payload's is added from held). */
  private headSum = 0;
  /** Bytes of IP packet held (0: none), segments in it, and the first one's geometry. */
  private len = 0;
  private count = 0;
  private v4 = true;
  private ipLen = 0;
  private tcpLen = 0;
  private gsoSize = 0;
  private nextSeq = 0;
  /** Segments merged into others since start (they reached the host inside one write). */
  merged = 0;

  constructor(
    private readonly writeWhole: (packet: Uint8Array) => void,
    private readonly writeHeld: (buf: Buffer, len: number) => void,
  ) {}

  add(p: Buffer): void {
    const at = this.segmentAt(p);
    if (at < 0) {
      this.flush();
      this.writeWhole(p);
      return;
    }
    const tcpLen = (p[at + 12] >> 4) * 4;
    const payload = p.length - at - tcpLen;
    const psh = (p[at + 13] & TCP_PSH) !== 0;
    if (this.count > 0 && this.follows(p, at, tcpLen, payload)) {
      // The payload goes behind the run, and counts only if its checksum holds there.
      const tail = VNET_HDR_BYTES + this.len;
      p.copy(this.held, tail, at + tcpLen);
      if (!this.checksumHolds(tail, tail + payload)) {
        this.flush();
        this.writeWhole(p);
        return;
      }
      this.len += payload;
      this.count++;
      this.merged++;
      this.nextSeq = (this.nextSeq + payload) >>> 0;
      if (psh) this.held[VNET_HDR_BYTES + this.ipLen + 13] |= TCP_PSH;
      if (psh || payload < this.gsoSize) this.flush();
      return;
    }
    this.flush();
    if (psh) {
      this.writeWhole(p);
      return;
    }
    p.copy(this.held, VNET_HDR_BYTES);
    if (!this.checksumHolds(VNET_HDR_BYTES + at + tcpLen, VNET_HDR_BYTES + p.length)) {
      this.writeWhole(p);
      return;
    }
    this.len = p.length;
    this.count = 1;
    this.v4 = p[0] >> 4 === 4;
    this.ipLen = at;
    this.tcpLen = tcpLen;
    this.gsoSize = payload;
    this.nextSeq = (rd32be(p, at + 4) + payload) >>> 0;
  }

  /** Write what is held: one segment as it came, several as one GSO super-segment. */
  flush(): void {
    if (this.count === 0) return;
    const h = this.held;
    const pkt = VNET_HDR_BYTES;
    if (this.count === 1) {
      h.fill(0, 0, VNET_HDR_BYTES);
    } else {
      const l4 = this.len - this.ipLen;
      let pseudo: number;
      if (this.v4) {
        wr16be(h, pkt + 2, this.len);
        h[pkt + 10] = 0;
        h[pkt + 11] = 0;
        wr16be(h, pkt + 10, internetChecksum(h, pkt, pkt + this.ipLen));
        pseudo = onesSum(h, pkt + 12, pkt + 20) + IPPROTO_TCP + l4;
      } else {
        wr16be(h, pkt + 4, this.len - 40);
        pseudo = onesSum(h, pkt + 8, pkt + 40) + IPPROTO_TCP + l4;
      }
      while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >>> 16);
      // NEEDS_CSUM: the field holds the pseudo-header sum, the host adds the rest.
      wr16be(h, pkt + this.ipLen + 16, pseudo);
      h[0] = F_NEEDS_CSUM;
      h[1] = this.v4 ? GSO_TCPV4 : GSO_TCPV6;
      wr16(h, 2, this.ipLen + this.tcpLen);
      wr16(h, 4, this.gsoSize);
      wr16(h, 6, this.ipLen);
      wr16(h, 8, 16);
    }
    this.writeHeld(h, VNET_HDR_BYTES + this.len);
    this.len = 0;
    this.count = 0;
  }

  /** Whether the payload copied to held[start, end) and the last segment's headers (headSum) make a correct TCP checksum. */
  private checksumHolds(start: number, end: number): boolean {
    return onesSumWords(this.heldWords, this.held, start, end, this.headSum) === 0xffff;
  }

  /**
   * Where the TCP header of a segment that may be merged starts, or -1: IPv4 without
   * options or fragments, or IPv6 with TCP next; ACK set and only PSH beside it; some
   * payload (its checksum is checked as it is copied in: checksumHolds).
   */
  private segmentAt(p: Buffer): number {
    if (p.length < 41) return -1;
    let at: number;
    let pseudo: number;
    if (p[0] === 0x45) {
      if (p[9] !== IPPROTO_TCP || (rd16be(p, 6) & 0x3fff) !== 0 || rd16be(p, 2) !== p.length) return -1;
      at = 20;
      pseudo = onesSum(p, 12, 20, IPPROTO_TCP + p.length - 20);
    } else if (p[0] >> 4 === 6) {
      if (p[6] !== IPPROTO_TCP || rd16be(p, 4) !== p.length - 40) return -1;
      at = 40;
      pseudo = onesSum(p, 8, 40, IPPROTO_TCP + p.length - 40);
    } else {
      return -1;
    }
    if (p.length < at + 20) return -1;
    const tcpLen = (p[at + 12] >> 4) * 4;
    if (tcpLen < 20 || p.length <= at + tcpLen) return -1;
    if ((p[at + 13] & ~TCP_PSH) !== TCP_ACK) return -1;
    this.headSum = onesSum(p, at, at + tcpLen, pseudo);
    return at;
  }

  /** Whether segment p (TCP at `at`) continues the held one. */
  private follows(p: Buffer, at: number, tcpLen: number, payload: number): boolean {
    const h = this.held;
    const o = VNET_HDR_BYTES;
    if (at !== this.ipLen || tcpLen !== this.tcpLen || payload > this.gsoSize) return false;
    if (this.len + payload > (this.v4 ? MAX_IP_BYTES : MAX_IP_BYTES + 40)) return false;
    if (rd32be(p, at + 4) !== this.nextSeq) return false;
    if (this.v4) {
      // TOS, flags (DF), TTL, protocol, addresses.
      if (p[1] !== h[o + 1] || p[6] !== h[o + 6] || p[8] !== h[o + 8] || !sameBytes(p, 12, h, o + 12, 8)) return false;
    } else if (!sameBytes(p, 0, h, o, 4) || p[7] !== h[o + 7] || !sameBytes(p, 8, h, o + 8, 32)) {
      return false;
    }
    // Ports; then ACK, data offset, window and options (flags other than PSH are ACK in both).
    const t = o + at;
    return sameBytes(p, at, h, t, 4) && sameBytes(p, at + 8, h, t + 8, 5) && sameBytes(p, at + 14, h, t + 14, 2) &&
      sameBytes(p, at + 20, h, t + 20, tcpLen - 20);
  }
}
