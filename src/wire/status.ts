/**
 * klipsd's status mode, for clients that need send()'s result (the bridge behind
 * `klips run`, bridge/klips-preload.c). Not part of PF_KEY: a message type no KLIPS or
 * RFC 2367 message uses, sent only on a connection that turned status mode on.
 *
 *   on/off:  header only, type KLIPSD_X_STATUS, satype 1 (on) or 0 (off); klipsd answers
 *            with the same header (errno 0), and nothing else.
 *   status:  after klipsd has handled a request and queued every reply it causes for
 *            this connection: header only, type KLIPSD_X_STATUS, errno = what the
 *            client's write() must fail with (0: it succeeds), satype = the request's
 *            type, seq and pid = the request's, and sadb_msg_reserved = the request's
 *            number on this connection since status mode was turned on (1 for the first),
 *            modulo 2^16. A request refused at the header gets the status alone (no
 *            header-only errno copy: on the kernel, send() failed and nothing was queued).
 *
 * The number lets a client that shares the connection between processes (the bridge
 * after fork) recognise a status it has already counted.
 *
 * Over a stream there is no send() result; the status is that result, ordered after
 * the request's replies, so a client that reads up to it has every reply in hand.
 */

import { PF_KEY_V2, SADB_MSG_HDR_LEN } from './constants.js';
import { rd16, rd32, wr16, wr32 } from './bytes.js';

/** klipsd's private message type for status mode (outside KLIPS's 1..19 and Linux's 1..24; 255 is reasons). */
export const KLIPSD_X_STATUS = 254;

/** The request that turns status mode on (or off) for this connection. */
export function statusRequest(on: boolean, seq: number, pid: number): Uint8Array {
  return statusHeader(on ? 1 : 0, 0, seq, pid);
}

/**
 * Whether `u8` is exactly a status on/off request: version 2, type KLIPSD_X_STATUS,
 * errno 0, satype 0 or 1, header only, reserved 0. Anything else of that type is no
 * request of ours, and PF_KEY refuses it as it refuses any unknown type.
 */
export function isStatusRequest(u8: Uint8Array): boolean {
  return u8.length === SADB_MSG_HDR_LEN && u8[0] === PF_KEY_V2 && u8[1] === KLIPSD_X_STATUS && u8[2] === 0 &&
    (u8[3] === 0 || u8[3] === 1) && rd16(u8, 4) === 2 && rd16(u8, 6) === 0;
}

/** The status of `request` (a message or a bare header), the `number`-th on its connection: its type in satype, its seq and pid, and `errno`. */
export function statusMessage(request: Uint8Array, errno: number, number: number): Uint8Array {
  const u8 = statusHeader(request[1] ?? 0, errno, request.length >= 12 ? rd32(request, 8) : 0, request.length >= 16 ? rd32(request, 12) : 0);
  wr16(u8, 6, number & 0xffff);
  return u8;
}

export interface Status {
  /** The request's message type. */
  type: number;
  /** What write() fails with; 0 when it succeeds. */
  errno: number;
  seq: number;
  pid: number;
  /** The request's number on the connection, modulo 2^16. */
  number: number;
}

/** A status message's contents, or undefined if `u8` is not one. */
export function readStatus(u8: Uint8Array): Status | undefined {
  if (u8.length !== SADB_MSG_HDR_LEN || u8[0] !== PF_KEY_V2 || u8[1] !== KLIPSD_X_STATUS || rd16(u8, 4) !== 2) return undefined;
  return { type: u8[3], errno: u8[2], seq: rd32(u8, 8), pid: rd32(u8, 12), number: rd16(u8, 6) };
}

function statusHeader(satype: number, errno: number, seq: number, pid: number): Uint8Array {
  const u8 = new Uint8Array(SADB_MSG_HDR_LEN);
  u8[0] = PF_KEY_V2;
  u8[1] = KLIPSD_X_STATUS;
  u8[2] = errno & 0xff;
  u8[3] = satype & 0xff;
  wr16(u8, 4, 2);
  wr32(u8, 8, seq);
  wr32(u8, 12, pid);
  return u8;
}
