/**
 * ESP in UDP for NAT traversal (RFC 3948, and the older ESPINUDP_WITH_NON_IKE draft KLIPS
 * also spoke): put a UDP header (the SA's NAT-T ports, usually 4500) between the IP header
 * and ESP on the way out, and sort what arrives on the NAT-T port: a NAT keepalive (one
 * 0xFF byte), an IKE message (the 4-byte zero non-ESP marker) or ESP, which comes back as
 * a plain ESP packet for espInput. The UDP checksum is sent as zero over IPv4 (RFC 3948
 * §2.1) and computed over IPv6, where zero is not allowed; inbound it is not relied on,
 * ESP's ICV protects the payload. After transport-mode decryption, the TCP/UDP checksum of
 * the inner packet no longer matches the NATed addresses: nattTransportFixup recomputes
 * it (RFC 3948 §3.1.2).
 */

import { ESPINUDP_WITH_NON_IKE, IPPROTO_ESP } from '../wire/constants.js';
import { drop, type Result } from './drop.js';
import {
  IPPROTO_UDP, IPV6_HEADER_BYTES, assemble, findHeader, internetChecksum, locateInbound, movedIp, parseIp, pseudoHeaderSum,
  refreshIPv4Checksum, refreshTransportChecksum, type HeaderPosition, type IpPacket,
} from './packet.js';
import { DEFAULT_NATT, type TransformSA } from './sa.js';
import { rd16be, wr16be } from '../wire/bytes.js';

export const UDP_HEADER_BYTES = 8;
/** RFC 3948 §2.2: what precedes an IKE message on the NAT-T port. */
export const NON_ESP_MARKER_BYTES = 4;
/** ESPINUDP_WITH_NON_IKE: what precedes ESP in the older encapsulation. */
export const NON_IKE_MARKER_BYTES = 8;
export const NATT_KEEPALIVE = 0xff;

/** Encapsulate the ESP of an outbound packet (after espOutput) in UDP. */
export function nattEncap(sa: TransformSA, packet: Uint8Array): Result<{ packet: Buffer }> {
  const natT = sa.natT;
  if (!natT) return drop('bad-sa');
  const parsed = parseIp(packet);
  if (!parsed.ok) return parsed;
  const ip = parsed.ip;
  const at = findHeader(ip, IPPROTO_ESP);
  if (!at.ok) return at;
  const esp = ip.bytes.subarray(at.at.offset);
  const udp = Buffer.alloc(UDP_HEADER_BYTES + (natT.type === ESPINUDP_WITH_NON_IKE ? NON_IKE_MARKER_BYTES : 0));
  wr16be(udp, 0, natT.sport);
  wr16be(udp, 2, natT.dport);
  wr16be(udp, 4, udp.length + esp.length);
  if (udp.length + esp.length > 0xffff) return drop('too-big');
  const r = assemble(ip.bytes.subarray(0, at.at.offset), at.at.protocolField, IPPROTO_UDP, udp, esp);
  if (!r.ok) return r;
  if (ip.version === 6) {
    const p = parseIp(r.packet);
    if (!p.ok) return p;
    const off = at.at.offset;
    const len = r.packet.length - off;
    let sum = internetChecksum(r.packet, off, r.packet.length, pseudoHeaderSum(p.ip, IPPROTO_UDP, len));
    if (sum === 0) sum = 0xffff;
    wr16be(r.packet, off + 6, sum);
  }
  return r;
}

/** What arrived on a NAT-T port, with the UDP ports it came from and to. */
export type NattInbound =
  | { kind: 'esp'; packet: Buffer; sport: number; dport: number; /** The packet parsed, when the step worked in place. */ ip?: IpPacket }
  | { kind: 'ike'; message: Buffer; sport: number; dport: number }
  | { kind: 'keepalive'; sport: number; dport: number };

/**
 * Classify and unwrap a UDP packet received on the NAT-T port. `type` is the SA's (or
 * socket's) encapsulation: ESPINUDP_WITH_NON_ESP (RFC 3948, default) or _NON_IKE.
 */
export function nattDecap(packet: Uint8Array, type = DEFAULT_NATT.type, inPlace = false): Result<NattInbound> {
  const at = locateInbound(packet, IPPROTO_UDP);
  if (!at.ok) return at;
  return nattDecapAt(at.ip, at.at, type, inPlace);
}

/** nattDecap of a packet already parsed (`ip`), its UDP header at `at` (a whole packet: not a fragment). */
export function nattDecapAt(ip: IpPacket, at: HeaderPosition, type: number, inPlace: boolean): Result<NattInbound> {
  const off = at.offset;
  const b = ip.bytes;
  if (b.length < off + UDP_HEADER_BYTES) return drop('too-short');
  const udpLen = rd16be(b, off + 4);
  if (udpLen < UDP_HEADER_BYTES || off + udpLen !== b.length) return drop('malformed');
  const sport = rd16be(b, off);
  const dport = rd16be(b, off + 2);
  const data = b.subarray(off + UDP_HEADER_BYTES);
  if (data.length === 1 && data[0] === NATT_KEEPALIVE) return { ok: true, kind: 'keepalive', sport, dport };
  let esp: Buffer;
  if (type === ESPINUDP_WITH_NON_IKE) {
    if (!zeros(data, NON_IKE_MARKER_BYTES)) return { ok: true, kind: 'ike', message: data, sport, dport };
    esp = data.subarray(NON_IKE_MARKER_BYTES);
  } else {
    if (data.length < NON_ESP_MARKER_BYTES) return drop('too-short');
    if (zeros(data, NON_ESP_MARKER_BYTES)) return { ok: true, kind: 'ike', message: data.subarray(NON_ESP_MARKER_BYTES), sport, dport };
    esp = data;
  }
  if (esp.length < 8) return drop('too-short');
  if (inPlace && esp.byteOffset - b.byteOffset === off + UDP_HEADER_BYTES) {
    // The IP header moves up over the UDP header: no copy of the ESP.
    const gap = UDP_HEADER_BYTES;
    b.copyWithin(gap, 0, off);
    const q = b.subarray(gap);
    q[at.protocolField] = IPPROTO_ESP;
    if (ip.version === 4) {
      wr16be(q, 2, q.length);
      refreshIPv4Checksum(q);
    } else {
      wr16be(q, 4, q.length - IPV6_HEADER_BYTES);
    }
    return { ok: true, kind: 'esp', packet: q, sport, dport, ip: movedIp(ip, q) };
  }
  const r = assemble(b.subarray(0, off), at.protocolField, IPPROTO_ESP, esp);
  if (!r.ok) return r;
  return { ok: true, kind: 'esp', packet: r.packet, sport, dport };
}

/** Whether the first n bytes of `data` are there and all zero (a non-ESP or non-IKE marker). */
function zeros(data: Uint8Array, n: number): boolean {
  if (data.length < n) return false;
  for (let i = 0; i < n; i++) if (data[i] !== 0) return false;
  return true;
}

/**
 * Fix the TCP/UDP checksum of a transport-mode packet decrypted from a NATed peer, whose
 * checksum was computed over the addresses before translation (RFC 3948 §3.1.2, the
 * "recompute" choice). Changes the packet in place; false if it has no TCP/UDP header.
 */
export function nattTransportFixup(packet: Buffer): boolean {
  return refreshTransportChecksum(packet);
}
