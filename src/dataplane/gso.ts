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
 * TCP checksum made as the host would have. Packets written back carry an all-zero header
 * (no offload: checksums done).
 */

import { internetChecksum, onesSum } from './packet.js';

export const VNET_HDR_BYTES = 10;
const F_NEEDS_CSUM = 1;
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const GSO_ECN = 0x80;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

/** Why a read could not be made into packets (counted by the runtime, never thrown). */
export type OffloadFault = 'bad-vnet-header';

/**
 * The packets in one read from an offloading TUN device (`buf[0, n)`, the virtio_net_hdr
 * first), each handed to `emit` (a view into `buf` or into `scratch`, valid only during
 * the call). Returns undefined, or the fault when the header makes no sense.
 */
export function offloadedPackets(buf: Buffer, n: number, scratch: Buffer, emit: (packet: Buffer) => void): OffloadFault | undefined {
  if (n <= VNET_HDR_BYTES) return 'bad-vnet-header';
  const flags = buf[0];
  const gso = buf[1] & ~GSO_ECN;
  const hdrLen = buf.readUInt16LE(2);
  const gsoSize = buf.readUInt16LE(4);
  const csumStart = buf.readUInt16LE(6);
  const csumOffset = buf.readUInt16LE(8);
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
    emit(pkt);
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
  const seq0 = pkt.readUInt32BE(tcpAt + 4);
  const flags0 = pkt[tcpAt + 13];
  const id0 = v4 ? pkt.readUInt16BE(4) : 0;
  const pieces = Math.max(1, Math.ceil(payload / gsoSize));
  for (let i = 0; i < pieces; i++) {
    const off = i * gsoSize;
    const take = Math.min(gsoSize, payload - off);
    const last = i === pieces - 1;
    const seg = scratch.subarray(0, head + take);
    pkt.copy(seg, 0, 0, head);
    pkt.copy(seg, head, head + off, head + off + take);
    if (v4) {
      seg.writeUInt16BE(head + take, 2);
      seg.writeUInt16BE((id0 + i) & 0xffff, 4);
      seg[10] = 0;
      seg[11] = 0;
      seg.writeUInt16BE(internetChecksum(seg, 0, ipLen), 10);
    } else {
      seg.writeUInt16BE(head + take - 40, 4);
    }
    seg.writeUInt32BE((seq0 + off) >>> 0, tcpAt + 4);
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
    const c = internetChecksum(seg, tcpAt, head + take, pseudo);
    seg[tcpAt + 16] = c >> 8;
    seg[tcpAt + 17] = c & 0xff;
    emit(seg);
  }
  return undefined;
}
