/**
 * klipsd's reasons for a refusal, for clients that ask (klips's own tools do). Not part
 * of PF_KEY: a message type no KLIPS or RFC 2367 message uses, sent only on a connection
 * that turned reasons on, so an unmodified client never sees one.
 *
 *   on/off:  header only, type KLIPSD_X_REASON, satype 1 (on) or 0 (off); klipsd answers
 *            with the same header (errno 0).
 *   reason:  after the errno reply to a refused message, to its sender alone: type
 *            KLIPSD_X_REASON, errno and seq/pid of the refused message, satype = the
 *            refused message's type, then one SADB_X_EXT_KMPRIVATE extension whose data
 *            is the reason in UTF-8, NUL-padded to 8 bytes.
 */

import { PF_KEY_V2, SADB_MSG_HDR_LEN, SADB_X_EXT_KMPRIVATE } from './constants.js';
import { rd16, rd32, wr16, wr32 } from './bytes.js';

/** klipsd's private message type for reasons (outside KLIPS's 1..19 and Linux's 1..24). */
export const KLIPSD_X_REASON = 255;

/** The longest reason sent, in bytes (longer ones are cut at a character boundary). */
const MAX_REASON_BYTES = 1024;

/** The request that turns reasons on (or off) for this connection. */
export function reasonsRequest(on: boolean, seq: number, pid: number): Uint8Array {
  const u8 = new Uint8Array(SADB_MSG_HDR_LEN);
  u8[0] = PF_KEY_V2;
  u8[1] = KLIPSD_X_REASON;
  u8[3] = on ? 1 : 0;
  wr16(u8, 4, 2);
  wr32(u8, 8, seq);
  wr32(u8, 12, pid);
  return u8;
}

/**
 * Whether `u8` is exactly a reasons on/off request: version 2, type KLIPSD_X_REASON, errno
 * 0, satype 0 or 1, header only, reserved 0. Anything else of that type is no request of
 * ours, and PF_KEY refuses it as it refuses any unknown type.
 */
export function isReasonsRequest(u8: Uint8Array): boolean {
  return u8.length === SADB_MSG_HDR_LEN && u8[0] === PF_KEY_V2 && u8[1] === KLIPSD_X_REASON && u8[2] === 0 &&
    (u8[3] === 0 || u8[3] === 1) && rd16(u8, 4) === 2 && rd16(u8, 6) === 0;
}

/** The reason message for a refused request (`request`'s header fields are echoed). */
export function reasonMessage(request: Uint8Array, errno: number, why: string): Uint8Array {
  let text = Buffer.from(why, 'utf8');
  if (text.length > MAX_REASON_BYTES) text = Buffer.from(text.subarray(0, MAX_REASON_BYTES).toString('utf8').replace(/\uFFFD$/, ''), 'utf8');
  const dataLen = (text.length + 8) & ~7; // at least one NUL
  const extLen = 8 + dataLen;
  const u8 = new Uint8Array(SADB_MSG_HDR_LEN + extLen);
  u8[0] = PF_KEY_V2;
  u8[1] = KLIPSD_X_REASON;
  u8[2] = errno & 0xff;
  u8[3] = request[1] ?? 0;
  wr16(u8, 4, u8.length / 8);
  wr32(u8, 8, request.length >= 12 ? rd32(request, 8) : 0);
  wr32(u8, 12, request.length >= 16 ? rd32(request, 12) : 0);
  wr16(u8, 16, extLen / 8);
  wr16(u8, 18, SADB_X_EXT_KMPRIVATE);
  u8.set(text, 24);
  return u8;
}

export interface Reason {
  /** The refused message's type. */
  type: number;
  errno: number;
  seq: number;
  pid: number;
  why: string;
}

/** A reason message's contents, or undefined if `u8` is not one. */
export function readReason(u8: Uint8Array): Reason | undefined {
  if (u8.length < 24 || u8[0] !== PF_KEY_V2 || u8[1] !== KLIPSD_X_REASON) return undefined;
  if (rd16(u8, 4) * 8 !== u8.length || rd16(u8, 18) !== SADB_X_EXT_KMPRIVATE || 16 + rd16(u8, 16) * 8 !== u8.length) return undefined;
  let end = 24;
  while (end < u8.length && u8[end] !== 0) end++;
  return { type: u8[3], errno: u8[2], seq: rd32(u8, 8), pid: rd32(u8, 12), why: Buffer.from(u8.subarray(24, end)).toString('utf8') };
}
