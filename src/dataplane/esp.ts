/**
 * ESP (RFC 4303; KLIPS's ipsec_esp.c): espSeal/espOpen turn a payload and next header into
 * the ESP bytes (SPI, sequence number, IV, ciphertext with self-describing padding, ICV)
 * and back; espOutput/espInput do it to whole IPv4/IPv6 packets in transport mode, or in
 * tunnel mode by way of IPIP (KLIPS's tun → esp chain). Ciphers: AES-CBC, 3DES-CBC,
 * AES-CTR (RFC 3686, nonce from the key's tail), AES-GCM with 8/12/16-byte ICV (RFC 4106,
 * salt from the key's tail, 8-byte explicit IV) and NULL; integrity: the HMACs of
 * algorithms.ts. With ESN the high 32 bits of the sequence number enter the ICV (after
 * the trailer for an HMAC, in the AAD for GCM) but never the wire. The sequence number
 * comes from the caller (the SA holds it); inbound, an optional ReplayWindow is checked
 * before and updated only after the ICV verifies.
 */

import { createCipheriv, createDecipheriv, randomFillSync, timingSafeEqual } from 'node:crypto';
import { IPPROTO_ESP, IPPROTO_IPIP } from '../wire/constants.js';
import { hmacIcv } from './algorithms.js';
import { drop, type Result } from './drop.js';
import { ipipHeader, type IpipOptions } from './ipip.js';
import {
  IPPROTO_HOPOPTS, IPPROTO_IPV6, IPPROTO_NONE, asBuffer, assemble, locateInbound, finishPacket, insertionPoint,
  parseIp,
} from './packet.js';
import type { ReplayGuard } from './replay.js';
import { prepareSA, sendableSeq, type Mode, type TransformSA } from './sa.js';

export const ESP_HEADER_BYTES = 8;

export interface EspSealInput {
  payload: Uint8Array;
  nextHeader: number;
  /** Sequence number (its low 32 bits with ESN). */
  seq: number;
  /** ESN high 32 bits (0 without ESN). */
  seqHi?: number;
  /** Explicit IV to use (test vectors); otherwise random for CBC, the 64-bit sequence number for CTR/GCM. */
  iv?: Uint8Array;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** The 16-byte initial counter block of RFC 3686 §4: nonce ‖ IV ‖ 1. */
function ctrBlock(salt: Buffer, iv: Uint8Array): Buffer {
  const b = Buffer.alloc(16);
  salt.copy(b, 0);
  b.set(iv, 4);
  b[15] = 1;
  return b;
}

/** The GCM AAD of RFC 4106 §5: SPI ‖ sequence number, or SPI ‖ high ‖ low bits with ESN. */
function gcmAad(esp: Buffer, esn: boolean, seqHi: number): Buffer {
  return esn ? Buffer.concat([esp.subarray(0, 4), u32(seqHi), esp.subarray(4, 8)]) : esp.subarray(0, 8);
}


/**
 * Random CBC IVs come from a pool refilled 4 KiB at a time: one CSPRNG call per 256
 * packets instead of one per packet (a call costs more than the AES of a small packet).
 * Each pooled byte is used once.
 */
const ivPool = Buffer.allocUnsafe(4096);
let ivPoolOff = ivPool.length;
function randomIv(out: Buffer, off: number, n: number): void {
  if (ivPoolOff + n > ivPool.length) {
    randomFillSync(ivPool);
    ivPoolOff = 0;
  }
  ivPool.copy(out, off, ivPoolOff, ivPoolOff + n);
  ivPoolOff += n;
}

/** Build the ESP bytes for one payload. */
export function espSeal(sa: TransformSA, input: EspSealInput): Result<{ esp: Buffer }> {
  const r = seal(sa, input, 0);
  return r.ok ? { ok: true, esp: r.buf } : r;
}

/** espSeal into a buffer with `headroom` bytes free in front (for the IP header). */
function seal(sa: TransformSA, input: EspSealInput, headroom: number): Result<{ buf: Buffer }> {
  const pr = prepareSA(sa);
  if (!pr.ok) return pr;
  const p = pr.prepared;
  const enc = p.enc;
  if (!enc) return drop('bad-sa');
  const seqHi = input.seqHi ?? 0;
  if (!sendableSeq(sa, input.seq, seqHi)) return drop('seq-overflow');
  if (input.iv && input.iv.length !== enc.ivBytes) return drop('bad-sa');

  const plen = input.payload.length;
  const padLen = (enc.align - ((plen + 2) % enc.align)) % enc.align;
  const espOff = headroom;
  const ivOff = espOff + ESP_HEADER_BYTES;
  const ctOff = ivOff + enc.ivBytes;
  const icvOff = ctOff + plen + padLen + 2;
  const buf = Buffer.allocUnsafe(icvOff + p.icvBytes);
  buf.writeUInt32BE(sa.spi >>> 0, espOff);
  buf.writeUInt32BE(input.seq, espOff + 4);
  if (input.iv) buf.set(input.iv, ivOff);
  else if (enc.mode === 'cbc') randomIv(buf, ivOff, enc.ivBytes);
  else if (enc.ivBytes) {
    buf.writeUInt32BE(seqHi, ivOff);
    buf.writeUInt32BE(input.seq, ivOff + 4);
  }
  const iv = buf.subarray(ivOff, ctOff);

  // Plaintext in place: payload, padding 1, 2, 3, …, pad length, next header.
  buf.set(input.payload, ctOff);
  for (let i = 0; i < padLen; i++) buf[ctOff + plen + i] = i + 1;
  buf[icvOff - 2] = padLen;
  buf[icvOff - 1] = input.nextHeader;
  const plain = buf.subarray(ctOff, icvOff);

  if (enc.mode === 'cbc' || enc.mode === 'ctr') {
    const c = createCipheriv(p.cipherName!, p.encKey!, enc.mode === 'cbc' ? iv : ctrBlock(p.salt, iv));
    c.setAutoPadding(false);
    buf.set(c.update(plain), ctOff);
    c.final();
  } else if (enc.mode === 'gcm') {
    const c = createCipheriv(p.cipherName as 'aes-128-gcm', p.encKey!, Buffer.concat([p.salt, iv]), { authTagLength: enc.icvBytes });
    c.setAAD(gcmAad(buf.subarray(espOff), sa.esn === true, seqHi));
    buf.set(c.update(plain), ctOff);
    c.final();
    buf.set(c.getAuthTag(), icvOff);
  }
  if (p.auth) hmacIcv(p.auth, p.authKey!, buf.subarray(espOff, icvOff), sa.esn ? seqHi : undefined).copy(buf, icvOff);
  return { ok: true, buf };
}

/**
 * Verify and decrypt ESP bytes. seqHi is the ESN high half to authenticate with (from the
 * replay window). The payload may be a view into `esp` (NULL encryption).
 */
export function espOpen(sa: TransformSA, esp: Uint8Array, seqHi = 0): Result<{ payload: Buffer; nextHeader: number; seq: number }> {
  const pr = prepareSA(sa);
  if (!pr.ok) return pr;
  const p = pr.prepared;
  const enc = p.enc;
  if (!enc) return drop('bad-sa');
  const b = asBuffer(esp);
  const ctOff = ESP_HEADER_BYTES + enc.ivBytes;
  const icvOff = b.length - p.icvBytes;
  const ctLen = icvOff - ctOff;
  if (ctLen < Math.max(2, enc.blockSize)) return drop('too-short');
  if (ctLen % enc.blockSize) return drop('bad-length');
  if (b.readUInt32BE(0) !== sa.spi >>> 0) return drop('no-sa');

  if (p.auth) {
    const mac = hmacIcv(p.auth, p.authKey!, b.subarray(0, icvOff), sa.esn ? seqHi : undefined);
    if (!timingSafeEqual(mac, b.subarray(icvOff))) return drop('icv');
  }
  const iv = b.subarray(ESP_HEADER_BYTES, ctOff);
  const ct = b.subarray(ctOff, icvOff);
  let plain: Buffer;
  if (enc.mode === 'cbc' || enc.mode === 'ctr') {
    const d = createDecipheriv(p.cipherName!, p.encKey!, enc.mode === 'cbc' ? iv : ctrBlock(p.salt, iv));
    d.setAutoPadding(false);
    plain = d.update(ct);
    d.final();
  } else if (enc.mode === 'gcm') {
    const d = createDecipheriv(p.cipherName as 'aes-128-gcm', p.encKey!, Buffer.concat([p.salt, iv]), { authTagLength: enc.icvBytes });
    d.setAAD(gcmAad(b, sa.esn === true, seqHi));
    d.setAuthTag(b.subarray(icvOff));
    plain = d.update(ct);
    try {
      d.final();
    } catch {
      return drop('icv');
    }
  } else plain = ct;

  const padLen = plain[plain.length - 2];
  const nextHeader = plain[plain.length - 1];
  const end = plain.length - 2 - padLen;
  if (end < 0) return drop('bad-padding');
  for (let i = 0; i < padLen; i++) if (plain[end + i] !== i + 1) return drop('bad-padding');
  if (nextHeader === IPPROTO_NONE) return drop('dummy');
  return { ok: true, payload: plain.subarray(0, end), nextHeader, seq: b.readUInt32BE(4) };
}

export interface EspOutputOptions {
  mode: Mode;
  seq: number;
  seqHi?: number;
  iv?: Uint8Array;
  /** Outer header options in tunnel mode. */
  tunnel?: IpipOptions;
}

/** Protect an outbound IP packet: ESP after its header (transport) or around it (tunnel). */
export function espOutput(sa: TransformSA, packet: Uint8Array, opts: EspOutputOptions): Result<{ packet: Buffer }> {
  const parsed = parseIp(packet);
  if (!parsed.ok) return parsed;
  const ip = parsed.ip;
  let head: Uint8Array;
  let protocolField: number;
  let payload: Buffer;
  let nextHeader: number;
  if (opts.mode === 'tunnel') {
    // KLIPS's tun → esp chain, without building the IPIP packet in between.
    const h = ipipHeader(sa, ip, opts.tunnel);
    if (!h.ok) return h;
    ({ header: head, protocolField, protocol: nextHeader } = h);
    payload = ip.bytes;
  } else {
    if (ip.fragmentOffset || ip.moreFragments) return drop('fragment');
    const at = insertionPoint(ip);
    if (!at.ok) return at;
    head = ip.bytes.subarray(0, at.at.offset);
    ({ protocolField, protocol: nextHeader } = at.at);
    payload = ip.bytes.subarray(at.at.offset);
  }
  const s = seal(sa, { payload, nextHeader, seq: opts.seq, seqHi: opts.seqHi, iv: opts.iv }, head.length);
  if (!s.ok) return s;
  return finishPacket(s.buf, head, protocolField, IPPROTO_ESP);
}

export interface EspInputOptions {
  mode: Mode;
  /** The SA's anti-replay window; checked before the ICV, updated after it verifies. */
  replay?: ReplayGuard;
  /** ESN high bits to use when no replay window is given. */
  seqHi?: number;
  /** Tunnel mode: require the outer source to be the SA's source (default true). */
  policyCheck?: boolean;
}

export interface EspInputResult {
  /** Transport: the packet without ESP; tunnel: the inner packet (with NULL encryption, a view into the input). */
  packet: Buffer;
  nextHeader: number;
  seq: number;
  seqHi: number;
}

/** Verify, decrypt and remove ESP from an inbound packet. */
export function espInput(sa: TransformSA, packet: Uint8Array, opts: EspInputOptions): Result<EspInputResult> {
  const at = locateInbound(packet, IPPROTO_ESP);
  if (!at.ok) return at;
  const ip = at.ip;
  const esp = ip.bytes.subarray(at.at.offset);
  if (esp.length < ESP_HEADER_BYTES) return drop('too-short');
  if (esp.readUInt32BE(0) !== sa.spi >>> 0) return drop('no-sa');
  const seq = esp.readUInt32BE(4);
  let seqHi = opts.seqHi ?? 0;
  if (opts.replay) {
    const c = opts.replay.check(seq);
    if (!c.ok) return c;
    seqHi = c.seqHi;
  }
  const o = espOpen(sa, esp, seqHi);
  if (!o.ok) return o;
  const nh = o.nextHeader;
  const tunnel = opts.mode === 'tunnel';
  if (tunnel ? nh !== IPPROTO_IPIP && nh !== IPPROTO_IPV6 : nh === IPPROTO_HOPOPTS || nh === 255) return drop('bad-next-header');
  if (opts.replay && !opts.replay.update(seqHi, seq)) return drop('replay');
  if (tunnel) {
    if (opts.policyCheck !== false && !ip.src.equals(sa.src)) return drop('policy');
    const inner = parseIp(o.payload);
    if (!inner.ok) return inner;
    if ((inner.ip.version === 4) !== (nh === IPPROTO_IPIP)) return drop('bad-next-header');
    return { ok: true, packet: inner.ip.bytes, nextHeader: nh, seq, seqHi };
  }
  const r = assemble(ip.bytes.subarray(0, at.at.offset), at.at.protocolField, nh, o.payload);
  if (!r.ok) return r;
  return { ok: true, packet: r.packet, nextHeader: nh, seq, seqHi };
}
