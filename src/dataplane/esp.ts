/**
 * ESP (RFC 4303; KLIPS's ipsec_esp.c): espSeal/espOpen turn a payload and next header into
 * the ESP bytes (SPI, sequence number, IV, ciphertext with self-describing padding, ICV)
 * and back; espOutput/espInput do it to whole IPv4/IPv6 packets in transport mode, or in
 * tunnel mode by way of IPIP (KLIPS's tun → esp chain). Ciphers: AES-CBC, 3DES-CBC,
 * AES-CTR (RFC 3686, nonce from the key's tail), AES-GCM with 8/12/16-byte ICV (RFC 4106,
 * salt from the key's tail, 8-byte explicit IV) and NULL; integrity: the HMACs of
 * algorithms.ts. The keyed work is the SA's cipher and HMAC from the crypto backend
 * (cipher.ts: node:crypto or libcrypto's EVP). An outbound packet is laid out in one
 * buffer (header, ESP header, IV, payload, padding, trailer, ICV) and encrypted there in
 * place. With ESN the high 32 bits of the sequence number enter the ICV (after the
 * trailer for an HMAC, in the AAD for GCM) but never the wire. The sequence number comes
 * from the caller (the SA holds it); inbound, an optional ReplayWindow is checked before
 * and updated only after the ICV verifies.
 */

import { randomFillSync } from 'node:crypto';
import { IPPROTO_ESP, IPPROTO_IPIP } from '../wire/constants.js';
import { drop, type Result } from './drop.js';
import { ipipHeaderLength, ipipProtocol, writeIpipHeader, type IpipOptions } from './ipip.js';
import {
  IP_MAXPACKET, IPPROTO_HOPOPTS, IPPROTO_IPV6, IPPROTO_NONE, IPV6_HEADER_BYTES, asBuffer, assemble, finishInPlace,
  finishPacket, insertionPoint, locateInbound, movedIp, packetBuffer, parseIp, parseIpBuffer, slice, sourceIs,
  type HeaderPosition, type IpPacket,
} from './packet.js';
import type { ReplayGuard } from './replay.js';
import { prepareSA, sendableSeq, type Mode, type PreparedSA, type TransformSA } from './sa.js';
import { rd32be } from '../wire/bytes.js';

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

/** v as 4 bytes, most significant first, at b[off] (v is a 32-bit value: checked by the caller). */
function put32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = v >>> 16;
  b[off + 2] = v >>> 8;
  b[off + 3] = v;
}

// What the cipher is handed per packet, filled in here and copied by it during the call:
// the CBC IV (8 or 16 bytes), the RFC 3686 counter block, the RFC 4106 nonce, the GCM AAD.
const CBC_IV8 = Buffer.alloc(8);
const CBC_IV16 = Buffer.alloc(16);
const CTR_BLOCK = Buffer.alloc(16);
const GCM_NONCE = Buffer.alloc(12);
const GCM_AAD = Buffer.alloc(8);
const GCM_AAD_ESN = Buffer.alloc(12);

/**
 * The cipher's IV for the packet whose explicit IV is at b[ivOff]: that IV for CBC, the
 * 16-byte initial counter block of RFC 3686 §4 (nonce ‖ IV ‖ 1) for CTR, the 12-byte
 * nonce of RFC 4106 §4 (salt ‖ IV) for GCM.
 */
function cipherIv(p: PreparedSA, b: Buffer, ivOff: number): Buffer {
  const enc = p.enc!;
  if (enc.mode === 'cbc') {
    const iv = enc.ivBytes === 16 ? CBC_IV16 : CBC_IV8;
    for (let i = 0; i < iv.length; i++) iv[i] = b[ivOff + i];
    return iv;
  }
  const salt = p.salt;
  const iv = enc.mode === 'gcm' ? GCM_NONCE : CTR_BLOCK;
  for (let i = 0; i < 4; i++) iv[i] = salt[i];
  for (let i = 0; i < 8; i++) iv[4 + i] = b[ivOff + i];
  if (iv === CTR_BLOCK) put32(iv, 12, 1);
  return iv;
}

/** The GCM AAD of RFC 4106 §5 for the ESP header at b[espOff]: SPI ‖ sequence number, or SPI ‖ high ‖ low bits with ESN. */
function gcmAad(b: Buffer, espOff: number, esn: boolean, seqHi: number): Buffer {
  if (!esn) {
    for (let i = 0; i < 8; i++) GCM_AAD[i] = b[espOff + i];
    return GCM_AAD;
  }
  for (let i = 0; i < 4; i++) GCM_AAD_ESN[i] = b[espOff + i];
  put32(GCM_AAD_ESN, 4, seqHi);
  for (let i = 4; i < 8; i++) GCM_AAD_ESN[4 + i] = b[espOff + i];
  return GCM_AAD_ESN;
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
  for (let i = 0; i < n; i++) out[off + i] = ivPool[ivPoolOff + i];
  ivPoolOff += n;
}

/** The SA prepared for ESP output with sequence number (seqHi, seq) and optional IV, or why not. */
function sealable(sa: TransformSA, seq: number, seqHi: number, iv: Uint8Array | undefined): Result<{ prepared: PreparedSA }> {
  const pr = prepareSA(sa);
  if (!pr.ok) return pr;
  const enc = pr.prepared.enc;
  if (!enc) return drop('bad-sa');
  if (!sendableSeq(sa, seq, seqHi)) return drop('seq-overflow');
  if (iv && iv.length !== enc.ivBytes) return drop('bad-sa');
  return pr;
}

/** Padding bytes after a payload of n bytes (RFC 4303 §2.4: payload, padding, pad length and next header align). */
function padBytes(p: PreparedSA, n: number): number {
  const align = p.enc!.align;
  return (align - ((n + 2) % align)) % align;
}

/** ESP's length around a payload of n bytes: header, IV, payload, padding, trailer, ICV. */
function espLength(p: PreparedSA, n: number): number {
  return ESP_HEADER_BYTES + p.enc!.ivBytes + n + padBytes(p, n) + 2 + p.icvBytes;
}

/**
 * Build ESP around `payload` at buf[espOff, espOff + espLength) in place: header, IV,
 * payload, padding 1, 2, 3, …, pad length, next header, encrypted, then the ICV.
 */
function sealInto(
  sa: TransformSA, p: PreparedSA, buf: Buffer, espOff: number, payload: Uint8Array, nextHeader: number,
  seq: number, seqHi: number, explicitIv: Uint8Array | undefined,
): void {
  const enc = p.enc!;
  const plen = payload.length;
  const padLen = padBytes(p, plen);
  const ivOff = espOff + ESP_HEADER_BYTES;
  const ctOff = ivOff + enc.ivBytes;
  const icvOff = ctOff + plen + padLen + 2;
  put32(buf, espOff, sa.spi);
  put32(buf, espOff + 4, seq);
  if (explicitIv) buf.set(explicitIv, ivOff);
  else if (enc.mode === 'cbc') randomIv(buf, ivOff, enc.ivBytes);
  else if (enc.ivBytes) {
    put32(buf, ivOff, seqHi);
    put32(buf, ivOff + 4, seq);
  }
  buf.set(payload, ctOff);
  for (let i = 0; i < padLen; i++) buf[ctOff + plen + i] = i + 1;
  buf[icvOff - 2] = padLen;
  buf[icvOff - 1] = nextHeader;
  if (p.cipher) {
    const aad = enc.mode === 'gcm' ? gcmAad(buf, espOff, sa.esn === true, seqHi) : undefined;
    p.cipher.encrypt(buf, ctOff, icvOff - ctOff, cipherIv(p, buf, ivOff), aad, icvOff);
  }
  if (p.mac) p.mac.sign(buf, espOff, icvOff, sa.esn ? seqHi : undefined, buf, icvOff);
}

/** Build the ESP bytes for one payload. */
export function espSeal(sa: TransformSA, input: EspSealInput): Result<{ esp: Buffer }> {
  const seqHi = input.seqHi ?? 0;
  const pr = sealable(sa, input.seq, seqHi, input.iv);
  if (!pr.ok) return pr;
  const p = pr.prepared;
  const esp = packetBuffer(espLength(p, input.payload.length));
  sealInto(sa, p, esp, 0, input.payload, input.nextHeader, input.seq, seqHi, input.iv);
  return { ok: true, esp };
}

/**
 * Verify and decrypt the ESP at b[espOff, b.length): the plaintext (a new buffer; with
 * NULL encryption, or decrypted in place, a view into b, starting at b[at]; at is -1
 * otherwise) with the payload in plain[0, end).
 */
function open(sa: TransformSA, b: Buffer, espOff: number, seqHi: number, inPlace = false): Result<{ plain: Buffer; at: number; end: number; nextHeader: number }> {
  const pr = prepareSA(sa);
  if (!pr.ok) return pr;
  const p = pr.prepared;
  const enc = p.enc;
  if (!enc) return drop('bad-sa');
  const ivOff = espOff + ESP_HEADER_BYTES;
  const ctOff = ivOff + enc.ivBytes;
  const icvOff = b.length - p.icvBytes;
  const ctLen = icvOff - ctOff;
  if (ctLen < Math.max(2, enc.blockSize)) return drop('too-short');
  if (ctLen % enc.blockSize) return drop('bad-length');
  if (rd32be(b, espOff) !== sa.spi >>> 0) return drop('no-sa');

  if (p.mac && !p.mac.verify(b, espOff, icvOff, sa.esn ? seqHi : undefined)) return drop('icv');
  let plain: Buffer;
  let at = ctOff;
  if (p.cipher) {
    const aad = enc.mode === 'gcm' ? gcmAad(b, espOff, sa.esn === true, seqHi) : undefined;
    const d = p.cipher.decrypt(b, ctOff, ctLen, cipherIv(p, b, ivOff), aad, icvOff, inPlace);
    if (!d) return drop('icv');
    plain = d;
    if (!inPlace || !p.cipher.decryptsInPlace) at = -1;
  } else plain = slice(b, ctOff, icvOff);

  const padLen = plain[ctLen - 2];
  const nextHeader = plain[ctLen - 1];
  const end = ctLen - 2 - padLen;
  if (end < 0) return drop('bad-padding');
  for (let i = 0; i < padLen; i++) if (plain[end + i] !== i + 1) return drop('bad-padding');
  if (nextHeader === IPPROTO_NONE) return drop('dummy');
  return { ok: true, plain, at, end, nextHeader };
}

/**
 * Verify and decrypt ESP bytes. seqHi is the ESN high half to authenticate with (from the
 * replay window). The payload may be a view into `esp` (NULL encryption).
 */
export function espOpen(sa: TransformSA, esp: Uint8Array, seqHi = 0): Result<{ payload: Buffer; nextHeader: number; seq: number }> {
  const b = asBuffer(esp);
  const o = open(sa, b, 0, seqHi);
  if (!o.ok) return o;
  return { ok: true, payload: o.plain.subarray(0, o.end), nextHeader: o.nextHeader, seq: rd32be(b, 4) };
}

export interface EspOutputOptions {
  mode: Mode;
  seq: number;
  seqHi?: number;
  iv?: Uint8Array;
  /** Outer header options in tunnel mode. */
  tunnel?: IpipOptions;
}

/**
 * Protect an outbound IP packet: ESP after its header (transport) or around it (tunnel).
 * The result is built in one buffer: the header (kept, or the tunnel's outer one), then
 * the ESP, encrypted in place.
 */
export function espOutput(sa: TransformSA, packet: Uint8Array, opts: EspOutputOptions): Result<{ packet: Buffer }> {
  const parsed = parseIp(packet);
  if (!parsed.ok) return parsed;
  return espOutputParsed(sa, parsed.ip, opts);
}

/** espOutput of a packet already parsed. */
export function espOutputParsed(sa: TransformSA, ip: IpPacket, opts: EspOutputOptions): Result<{ packet: Buffer }> {
  const seqHi = opts.seqHi ?? 0;
  if (opts.mode === 'tunnel') {
    // KLIPS's tun → esp chain, without building the IPIP packet in between.
    const h = ipipHeaderLength(sa, ip);
    if (!h.ok) return h;
    const pr = sealable(sa, opts.seq, seqHi, opts.iv);
    if (!pr.ok) return pr;
    const p = pr.prepared;
    const headLength = h.headerLength;
    const espBytes = espLength(p, ip.bytes.length);
    if (espBytes + (headLength === IPV6_HEADER_BYTES ? 0 : headLength) > IP_MAXPACKET) return drop('too-big');
    const out = packetBuffer(headLength + espBytes);
    writeIpipHeader(out, sa, ip, opts.tunnel ?? {}, IPPROTO_ESP, espBytes);
    sealInto(sa, p, out, headLength, ip.bytes, ipipProtocol(ip), opts.seq, seqHi, opts.iv);
    return { ok: true, packet: out };
  }
  if (ip.fragmentOffset || ip.moreFragments) return drop('fragment');
  const at = insertionPoint(ip);
  if (!at.ok) return at;
  const pr = sealable(sa, opts.seq, seqHi, opts.iv);
  if (!pr.ok) return pr;
  const p = pr.prepared;
  const headLength = at.at.offset;
  const payload = ip.bytes.subarray(headLength);
  const total = headLength + espLength(p, payload.length);
  if (total - (ip.version === 6 ? IPV6_HEADER_BYTES : 0) > IP_MAXPACKET) return drop('too-big');
  const out = packetBuffer(total);
  sealInto(sa, p, out, headLength, payload, at.at.protocol, opts.seq, seqHi, opts.iv);
  return finishPacket(out, ip.bytes.subarray(0, headLength), at.at.protocolField, IPPROTO_ESP);
}

export interface EspInputOptions {
  mode: Mode;
  /** The SA's anti-replay window; checked before the ICV, updated after it verifies. */
  replay?: ReplayGuard;
  /** ESN high bits to use when no replay window is given. */
  seqHi?: number;
  /** Tunnel mode: require the outer source to be the SA's source (default true). */
  policyCheck?: boolean;
  /** Decrypt over the packet's own bytes (the caller gives up the input; the runtime's receive slots). */
  inPlace?: boolean;
}

export interface EspInputResult {
  /** Transport: the packet without ESP; tunnel: the inner packet (with NULL encryption, a view into the input). */
  packet: Buffer;
  /** The packet parsed, when the transport step worked in place. */
  ip?: IpPacket;
  nextHeader: number;
  seq: number;
  seqHi: number;
}

/** Verify, decrypt and remove ESP from an inbound packet. */
export function espInput(sa: TransformSA, packet: Uint8Array, opts: EspInputOptions): Result<EspInputResult> {
  const at = locateInbound(packet, IPPROTO_ESP);
  if (!at.ok) return at;
  return espInputAt(sa, at.ip, at.at, opts);
}

/** espInput of a packet already parsed (`ip`), its ESP header at `at` (a whole packet: not a fragment). */
export function espInputAt(sa: TransformSA, ip: IpPacket, at: HeaderPosition, opts: EspInputOptions): Result<EspInputResult> {
  const b = ip.bytes;
  const espOff = at.offset;
  if (b.length - espOff < ESP_HEADER_BYTES) return drop('too-short');
  if (rd32be(b, espOff) !== sa.spi >>> 0) return drop('no-sa');
  const seq = rd32be(b, espOff + 4);
  let seqHi = opts.seqHi ?? 0;
  if (opts.replay) {
    const c = opts.replay.check(seq);
    if (!c.ok) return c;
    seqHi = c.seqHi;
  }
  const o = open(sa, b, espOff, seqHi, opts.inPlace === true);
  if (!o.ok) return o;
  const nh = o.nextHeader;
  const tunnel = opts.mode === 'tunnel';
  if (tunnel ? nh !== IPPROTO_IPIP && nh !== IPPROTO_IPV6 : nh === IPPROTO_HOPOPTS || nh === 255) return drop('bad-next-header');
  if (opts.replay && !opts.replay.update(seqHi, seq)) return drop('replay');
  if (tunnel) {
    if (opts.policyCheck !== false && !sourceIs(ip, sa.src)) return drop('policy');
    const inner = parseIpBuffer(o.plain, o.end);
    if (!inner.ok) return inner;
    if ((inner.ip.version === 4) !== (nh === IPPROTO_IPIP)) return drop('bad-next-header');
    return { ok: true, packet: inner.ip.bytes, nextHeader: nh, seq, seqHi };
  }
  const plainAt = o.at;
  if (opts.inPlace === true && plainAt >= espOff) {
    // The payload was decrypted where it lies: the headers move up to just before it (no copy of the payload).
    b.copyWithin(plainAt - espOff, 0, espOff);
    const moved = finishInPlace(slice(b, plainAt - espOff, plainAt + o.end), at.protocolField, nh);
    if (!moved.ok) return moved;
    return { ok: true, packet: moved.packet, ip: movedIp(ip, moved.packet), nextHeader: nh, seq, seqHi };
  }
  const r = assemble(b.subarray(0, espOff), at.protocolField, nh, o.plain.subarray(0, o.end));
  if (!r.ok) return r;
  return { ok: true, packet: r.packet, nextHeader: nh, seq, seqHi };
}
