/**
 * The fast paths' engine half: for an ADD that wire's scanSa read in place, the
 * checks the ADD handler makes beyond the parser's (the SA type's algorithms and key
 * sizes, an SAID not yet taken: Engine.addFast asks the table), the SA's soft and hard
 * limits as the handler derives them, and the reply KLIPS's pfkey_add_parse builds,
 * written straight from the request's bytes: the header, the SA extension (24 bytes,
 * EMT_INBOUND for an inbound SA, sadb_x_sa_ref NULL), the limits as openswan's 40-byte
 * lifetimes when the request had them, the addresses with protocol 0, and X_SAREF (the
 * SA's ref, no pairing). Byte for byte what handlers.ts's `add` builds through
 * saMessage and buildMessage (test/fast-path.test.ts compares them); the SA itself is
 * made later from the stored request by the handler's own code (saOfStoredAdd). Until
 * then, what GET and DUMP answer about it is written from the stored request too
 * (storedSaReply), and a DELETE of it has its reply written from the DELETE's bytes
 * (writeDeleteReply).
 */

import {
  PF_KEY_V2, SADB_ADD, SADB_SASTATE_MATURE, SADB_SATYPE_ESP, SADB_EXT_SA, SADB_EXT_LIFETIME_CURRENT, SADB_EXT_LIFETIME_HARD,
  SADB_EXT_LIFETIME_SOFT, SADB_X_EXT_SAREF, newSaScan, scanSaWith, type SaScan,
} from '../wire/index.js';
import type { Sadb, StoredRequest } from '../sadb/sadb.js';
import { keyFits, type SupportedLists } from './algorithms.js';
import { EMT_INBOUND } from './sa-extensions.js';

/** Whether the SA type's supported list takes the request's algorithms and keys (saFromRequest's checkKey calls, for AH and ESP). */
export function keysFit(lists: SupportedLists | undefined, s: SaScan): boolean {
  // A key manager adds SA after SA with the same algorithms: the last answer is kept.
  const what = s.satype | (s.auth << 8) | (s.encrypt << 16) | (s.keyEncrypt < 0 ? 0 : 1 << 24);
  const bits = s.authBits + s.encryptBits * 65536;
  if (lists === lastLists && what === lastWhat && bits === lastBits) return lastFit;
  lastLists = lists;
  lastWhat = what;
  lastBits = bits;
  lastFit = fitsNow(lists, s);
  return lastFit;
}

/** The last answer of keysFit: the supported lists (never changed in place), the algorithms and key sizes asked about, and the answer. */
let lastLists: SupportedLists | undefined;
let lastWhat = -1;
let lastBits = -1;
let lastFit = false;

function fitsNow(lists: SupportedLists | undefined, s: SaScan): boolean {
  if (!keyFits(lists, 'auth', s.auth, s.authBits || undefined)) return false;
  if (s.satype === SADB_SATYPE_ESP) return keyFits(lists, 'encrypt', s.encrypt, s.encryptBits || undefined);
  return s.keyEncrypt < 0;
}

const TWO32 = 4294967296;

/** A u64 as sa-extensions' limitsFrom reads it: a number, capped at Number.MAX_SAFE_INTEGER. */
function u64(v: DataView, o: number): number {
  const hi = v.getUint32(o + 4, true);
  return hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * TWO32 + v.getUint32(o, true);
}

/**
 * The SA's hard and soft limits as the handler computes them (limitsFrom, soft clamped
 * to hard), each as [allocations, bytes, addtime, usetime, packets]; filled by readLimits.
 */
export const HARD = new Float64Array(5);
export const SOFT = new Float64Array(5);
/** Index of addtime in HARD and SOFT. */
export const ADDTIME = 2;

function readLifetime(v: DataView, o: number, out: Float64Array): void {
  out[0] = v.getUint32(o + 4, true);
  out[1] = u64(v, o + 8);
  out[2] = u64(v, o + 16);
  out[3] = u64(v, o + 24);
  out[4] = v.getUint16(o, true) === 5 ? v.getUint32(o + 32, true) : 0;
}

/** Fill HARD and SOFT from the request's lifetimes (absent: no limits). */
export function readLimits(s: SaScan): void {
  if (s.hard < 0 && s.soft < 0) {
    for (let i = 0; i < 5; i++) HARD[i] = SOFT[i] = 0;
    return;
  }
  if (s.hard >= 0) readLifetime(s.view, s.hard, HARD);
  else for (let i = 0; i < 5; i++) HARD[i] = 0;
  if (s.soft >= 0) readLifetime(s.view, s.soft, SOFT);
  else for (let i = 0; i < 5; i++) SOFT[i] = 0;
  for (let i = 0; i < 5; i++) if (HARD[i] > 0 && SOFT[i] > HARD[i]) SOFT[i] = HARD[i];
}

/** Bytes of the reply to a scanned ADD. */
export function addReplyLength(s: SaScan): number {
  return 16 + 24 + (s.hard >= 0 ? 40 : 0) + (s.soft >= 0 ? 40 : 0) + 24 + 24 + 16;
}

/** openswan's 40-byte lifetime of limits `l` (lifetimeOf). */
function writeLifetime(w: DataView, o: number, type: number, l: Float64Array): void {
  w.setUint32(o, 5 | (type << 16), true);
  w.setUint32(o + 4, l[0], true);
  for (let i = 1; i <= 3; i++) {
    // Split without %, which on doubles is a call to fmod.
    const hi = Math.floor(l[i] / TWO32);
    w.setUint32(o + 8 * i, l[i] - hi * TWO32, true);
    w.setUint32(o + 8 * i + 4, hi, true);
  }
  w.setUint32(o + 32, l[4], true);
  w.setUint32(o + 36, 0, true);
}

/** An IPv4 address extension (24 bytes) copied with its protocol set to 0 (addressOut). */
function copyAddress(w: DataView, o: number, v: DataView, from: number): void {
  w.setUint32(o, v.getUint32(from, true), true);
  w.setUint32(o + 4, v.getUint32(from + 4, true) & 0xffffff00, true);
  for (let i = 8; i < 24; i += 4) w.setUint32(o + i, v.getUint32(from + i, true), true);
}

/** The SA extension KLIPS writes for the SA (saExtOf): 24 bytes, MATURE, EMT_INBOUND for an inbound SA, sadb_x_sa_ref NULL. */
function writeSaExt(w: DataView, o: number, s: SaScan, inbound: boolean): void {
  w.setUint32(o, 3 | (SADB_EXT_SA << 16), true);
  w.setUint32(o + 4, s.view.getUint32(s.sa + 4, true), true);
  w.setUint32(o + 8, s.replay | (SADB_SASTATE_MATURE << 8) | (s.auth << 16) | (s.encrypt << 24), true);
  w.setUint32(o + 12, inbound ? (s.flags | EMT_INBOUND) >>> 0 : s.flags, true);
  w.setUint32(o + 16, 0, true);
  w.setUint32(o + 20, 0, true);
}

/** Exact-length scratches for the messages written here, so a socket copies a whole one natively. */
const SCRATCH: Array<{ bytes: Uint8Array; view: DataView }> = [];
export function scratchFor(n: number): { bytes: Uint8Array; view: DataView } {
  let r = SCRATCH[n >>> 3];
  if (r === undefined) {
    const bytes = new Uint8Array(n);
    r = SCRATCH[n >>> 3] = { bytes, view: new DataView(bytes.buffer) };
  }
  return r;
}

/**
 * Write the reply to the ADD scanned into `s` (its limits read by readLimits) at byte
 * `o` of `w`, for an SA with SAref `ref`; returns its length.
 */
export function writeAddReply(w: DataView, o: number, s: SaScan, ref: number, inbound: boolean): number {
  const len = addReplyLength(s);
  const v = s.view;
  // The header: version, type, errno 0, satype; length, reserved 0; the request's seq and pid.
  w.setUint32(o, PF_KEY_V2 | (SADB_ADD << 8) | (s.satype << 24), true);
  w.setUint32(o + 4, len / 8, true);
  w.setUint32(o + 8, s.seq, true);
  w.setUint32(o + 12, s.pid, true);
  o += 16;
  writeSaExt(w, o, s, inbound);
  o += 24;
  if (s.hard >= 0) { writeLifetime(w, o, SADB_EXT_LIFETIME_HARD, HARD); o += 40; }
  if (s.soft >= 0) { writeLifetime(w, o, SADB_EXT_LIFETIME_SOFT, SOFT); o += 40; }
  copyAddress(w, o, v, s.src);
  copyAddress(w, o + 24, v, s.dst);
  o += 48;
  // X_SAREF: the SA's ref, no paired SA.
  w.setUint32(o, 2 | (SADB_X_EXT_SAREF << 16), true);
  w.setUint32(o + 4, ref, true);
  w.setUint32(o + 8, 0, true);
  w.setUint32(o + 12, 0, true);
  return len;
}

/** Bytes of the reply to a DELETE. */
export const DELETE_REPLY_LENGTH = 16 + 24 + 24 + 24;

/**
 * Write the reply to the DELETE scanned into `s` at byte `o` of `w` (pfkey_delete_parse's,
 * as handlers.ts's del builds it): the request's header, an SA extension with the SPI and
 * the deleted SA's SAref (`ref`, NULL when outside the SAref table) and all else zero,
 * the request's addresses with protocol 0.
 */
export function writeDeleteReply(w: DataView, o: number, s: SaScan, ref: number): number {
  const v = s.view;
  w.setUint32(o, PF_KEY_V2 | (s.type << 8) | (s.satype << 24), true);
  w.setUint32(o + 4, DELETE_REPLY_LENGTH / 8, true);
  w.setUint32(o + 8, s.seq, true);
  w.setUint32(o + 12, s.pid, true);
  w.setUint32(o + 16, 3 | (SADB_EXT_SA << 16), true);
  w.setUint32(o + 20, v.getUint32(s.sa + 4, true), true);
  w.setUint32(o + 24, 0, true);
  w.setUint32(o + 28, 0, true);
  w.setUint32(o + 32, ref, true);
  w.setUint32(o + 36, 0, true);
  copyAddress(w, o + 40, v, s.src);
  copyAddress(w, o + 64, v, s.dst);
  return DELETE_REPLY_LENGTH;
}

const STORED: StoredRequest = { bytes: new Uint8Array(0), view: new DataView(new ArrayBuffer(0)), at: 0, len: 0, satype: 0, addtime: 0, ref: 0, inbound: false };
const STORED_SCAN = newSaScan();

const hasLimit = (l: Float64Array): boolean => l[0] > 0 || l[1] > 0 || l[2] > 0 || l[3] > 0 || l[4] > 0;
const extLength = (v: DataView, o: number): number => (o < 0 ? 0 : v.getUint16(o, true) * 8);

/**
 * The GET or DUMP reply (header type `type`) for the SA the table still stores as its
 * ADD under `key`: what handlers.ts's get and dump build through saMessage with keys,
 * current, limits, proxy and NAT-T, for an SA nothing has touched since its ADD (MATURE,
 * counters zero but the add time), written from the request into a scratch that the
 * caller copies out before the next call; undefined when the key no longer names a
 * stored SA.
 */
export function storedSaReply(sadb: Sadb, key: number, type: number, seq: number, pid: number): Uint8Array | undefined {
  if (!sadb.readStored(key, STORED)) return undefined;
  const s = STORED_SCAN;
  if (!scanSaWith(STORED.bytes, STORED.view, STORED.at, STORED.len, s)) throw new Error(`SA table: stored ADD ${key} is not one the fast path takes`);
  readLimits(s);
  const v = s.view;
  const hard = hasLimit(HARD);
  const soft = hasLimit(SOFT);
  const keys = extLength(v, s.keyAuth) + extLength(v, s.keyEncrypt);
  const len = 16 + 24 + 40 + (hard ? 40 : 0) + (soft ? 40 : 0) + 48 + keys;
  const r = scratchFor(len);
  const w = r.view;
  w.setUint32(0, PF_KEY_V2 | (type << 8) | (STORED.satype << 24), true);
  w.setUint32(4, len / 8, true);
  w.setUint32(8, seq, true);
  w.setUint32(12, pid, true);
  writeSaExt(w, 16, s, STORED.inbound);
  let o = 40;
  // LIFETIME_CURRENT of an SA never used: nothing counted, added at its add time.
  CURRENT[2] = Math.floor(STORED.addtime);
  writeLifetime(w, o, SADB_EXT_LIFETIME_CURRENT, CURRENT);
  o += 40;
  if (hard) { writeLifetime(w, o, SADB_EXT_LIFETIME_HARD, HARD); o += 40; }
  if (soft) { writeLifetime(w, o, SADB_EXT_LIFETIME_SOFT, SOFT); o += 40; }
  copyAddress(w, o, v, s.src);
  copyAddress(w, o + 24, v, s.dst);
  o += 48;
  o = copyExt(w, o, v, s.keyAuth);
  copyExt(w, o, v, s.keyEncrypt);
  return r.bytes;
}

/** The extension at `from` of `v` (none when -1) copied to byte `o` of `w`; returns the offset after it. */
function copyExt(w: DataView, o: number, v: DataView, from: number): number {
  const n = extLength(v, from);
  for (let i = 0; i < n; i += 4) w.setUint32(o + i, v.getUint32(from + i, true), true);
  return o + n;
}

/** [allocations, bytes, addtime, usetime, packets] of an unused SA's counters (addtime set per message). */
const CURRENT = new Float64Array(5);
