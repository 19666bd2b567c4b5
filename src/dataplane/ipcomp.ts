/**
 * IPCOMP (RFC 3173 with deflate, RFC 2394; KLIPS's ipcomp.c): compress the payload of an
 * outbound packet behind a 4-byte header (next header, flags 0, CPI = the SA's SPI's low
 * 16 bits), and inflate it again inbound. KLIPS's outbound rules: never compress ESP, AH
 * or IPCOMP payloads, IPv4 fragments, or payloads under 90 bytes, and send the packet
 * uncompressed unless deflate saves the header plus 32 bytes (payloads up to 512 bytes)
 * or plus 1/16 of the payload; raw deflate with an 11-bit window as KLIPS uses. Inbound,
 * inflation stops at what still fits a 65,535-byte IP packet, so no deflate bomb gets
 * further than that.
 */

import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, SADB_X_SATYPE_COMP } from '../wire/constants.js';
import { COMPRESS_ALGORITHMS } from './algorithms.js';
import { drop, type Result } from './drop.js';
import { IP_MAXPACKET, IPV6_HEADER_BYTES, assemble, locateInbound, insertionPoint, parseIp } from './packet.js';
import type { TransformSA } from './sa.js';
import { rd16be, wr16be } from '../wire/bytes.js';

export const IPCOMP_HEADER_BYTES = 4;
/** KLIPS skips payloads smaller than this (RFC 2394's advice). */
export const IPCOMP_MIN_PAYLOAD = 90;
/** KLIPS's deflateInit2 window (-11: raw deflate, 2 KiB window). */
export const IPCOMP_WINDOW_BITS = 11;

/** The most compressed bytes worth sending for a payload of `n` bytes (KLIPS's cpyldsz). */
export function ipcompLimit(n: number): number {
  return n - IPCOMP_HEADER_BYTES - (n <= 512 ? 32 : n >> 4);
}

function checkSA(sa: TransformSA): Result<object> {
  if (sa.satype !== SADB_X_SATYPE_COMP) return drop('bad-sa');
  if (!COMPRESS_ALGORITHMS.has(sa.encrypt)) return drop('unsupported');
  return { ok: true };
}

/** Compress an outbound packet if KLIPS would; `compressed` says whether it did. */
export function ipcompCompress(sa: TransformSA, packet: Uint8Array): Result<{ packet: Buffer; compressed: boolean }> {
  const s = checkSA(sa);
  if (!s.ok) return s;
  const parsed = parseIp(packet);
  if (!parsed.ok) return parsed;
  const ip = parsed.ip;
  const at = insertionPoint(ip);
  if (!at.ok) return at;
  const nh = at.at.protocol;
  const payload = ip.bytes.subarray(at.at.offset);
  const as = { ok: true as const, packet: ip.bytes, compressed: false };
  if (nh === IPPROTO_COMP || nh === IPPROTO_AH || nh === IPPROTO_ESP) return as;
  if (ip.fragmentOffset || ip.moreFragments || payload.length < IPCOMP_MIN_PAYLOAD) return as;
  const z = deflateRawSync(payload, { windowBits: IPCOMP_WINDOW_BITS });
  if (z.length > ipcompLimit(payload.length)) return as;
  const h = Buffer.alloc(IPCOMP_HEADER_BYTES);
  h[0] = nh;
  wr16be(h, 2, sa.spi & 0xffff);
  const r = assemble(ip.bytes.subarray(0, at.at.offset), at.at.protocolField, IPPROTO_COMP, h, z);
  if (!r.ok) return r;
  return { ok: true, packet: r.packet, compressed: true };
}

/** Inflate an inbound IPCOMP packet. */
export function ipcompDecompress(sa: TransformSA, packet: Uint8Array): Result<{ packet: Buffer; nextHeader: number }> {
  const s = checkSA(sa);
  if (!s.ok) return s;
  const at = locateInbound(packet, IPPROTO_COMP);
  if (!at.ok) return at;
  const ip = at.ip;
  const off = at.at.offset;
  const b = ip.bytes;
  if (b.length < off + IPCOMP_HEADER_BYTES) return drop('too-short');
  if (b[off + 1] !== 0) return drop('malformed');
  const cpi = rd16be(b, off + 2);
  // The SA's own CPI, or the algorithm's well-known CPI (RFC 3173 §3.3), as KLIPS accepts.
  if (cpi !== (sa.spi & 0xffff) && cpi !== sa.encrypt) return drop('no-sa');
  const nh = b[off];
  if (nh === IPPROTO_COMP) return drop('bad-next-header');
  const room = IP_MAXPACKET - (ip.version === 4 ? off : off - IPV6_HEADER_BYTES);
  let out: Buffer;
  try {
    out = inflateRawSync(b.subarray(off + IPCOMP_HEADER_BYTES), { maxOutputLength: Math.max(1, room) });
  } catch (e) {
    return drop((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? 'too-big' : 'decompress-failed');
  }
  const r = assemble(b.subarray(0, off), at.at.protocolField, nh, out);
  if (!r.ok) return r;
  return { ok: true, packet: r.packet, nextHeader: nh };
}
