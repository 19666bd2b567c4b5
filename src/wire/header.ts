/**
 * The 16-byte `sadb_msg` header on its own, without throwing: `readHeader` reads its
 * fields and `headerFault` says whether the kernel's sendmsg would refuse it before its
 * parser runs (with which errno, where and why): KLIPS's pfkey_sendmsg, or for the KAME
 * dialect Linux's pfkey_get_base_msg. The header's rules live here alone:
 * `checkHeader` (message.ts) is a throwing wrapper over them, which the engine uses, and
 * klipsd checks each frame with `headerFault` at its boundary (answering a fault with
 * framing.ts's `errnoReplyTo`).
 */

import { KAME_SADB_MAX, PF_KEY_V2, SADB_MAX, SADB_MSG_HDR_LEN, type Dialect } from './constants.js';
import { ERRNO } from './errno.js';
import { rd16, rd32 } from './bytes.js';
import type { SadbMsg } from './message.js';

/** Why a header is refused: the errno sendmsg fails with, the offending byte, and a reason. */
export interface HeaderFault {
  errno: number;
  offset: number;
  why: string;
}

/** The header's fields as they are (bytes past the end of a short buffer read as 0). */
export function readHeader(u8: Uint8Array): SadbMsg {
  return {
    version: u8[0] | 0,
    type: u8[1] | 0,
    errno: u8[2] | 0,
    satype: u8[3] | 0,
    len: rd16(u8, 4),
    reserved: rd16(u8, 6),
    seq: rd32(u8, 8),
    pid: rd32(u8, 12),
  };
}

/**
 * The header-level checks of KLIPS's sendmsg, in its order, for one whole message `u8`:
 * undefined if they pass, else the fault. Never throws. With dialect 'kame', Linux's
 * checks in Linux's order (kameHeaderFault).
 */
export function headerFault(u8: Uint8Array, dialect?: Dialect, direction?: 'in' | 'out'): HeaderFault | undefined {
  if (dialect === 'kame') return kameHeaderFault(u8, direction === 'out');
  if (u8.length < SADB_MSG_HDR_LEN) {
    return { errno: ERRNO.EMSGSIZE, offset: 0, why: `message of ${u8.length} bytes is shorter than the 16-byte header` };
  }
  const len = rd16(u8, 4) * 8;
  if (len !== u8.length) return { errno: ERRNO.EMSGSIZE, offset: 4, why: `sadb_msg_len says ${len} bytes, ${u8.length} given` };
  if (u8[0] !== PF_KEY_V2) return { errno: ERRNO.EINVAL, offset: 0, why: `version ${u8[0]}, must be 2` };
  if (rd16(u8, 6) !== 0) return { errno: ERRNO.EINVAL, offset: 6, why: 'sadb_msg_reserved must be zero' };
  const type = u8[1];
  if (type === 0 || type > SADB_MAX) return { errno: ERRNO.EINVAL, offset: 1, why: `message type ${type} out of range 1..${SADB_MAX}` };
  return undefined;
}

/**
 * Linux's pfkey_get_base_msg: shorter than the header EMSGSIZE; then version, reserved
 * field and type (1..24) EINVAL; then sadb_msg_len against the datagram (Linux compares
 * it with the datagram's length in whole 8-byte units) or under 2 units EMSGSIZE. A
 * message the kernel sent (`fromKernel`) may carry anything in sadb_msg_reserved: Linux
 * writes a policy's reference count there.
 */
function kameHeaderFault(u8: Uint8Array, fromKernel: boolean): HeaderFault | undefined {
  if (u8.length < SADB_MSG_HDR_LEN) {
    return { errno: ERRNO.EMSGSIZE, offset: 0, why: `message of ${u8.length} bytes is shorter than the 16-byte header` };
  }
  if (u8[0] !== PF_KEY_V2) return { errno: ERRNO.EINVAL, offset: 0, why: `version ${u8[0]}, must be 2` };
  if (!fromKernel && rd16(u8, 6) !== 0) return { errno: ERRNO.EINVAL, offset: 6, why: 'sadb_msg_reserved must be zero' };
  const type = u8[1];
  if (type === 0 || type > KAME_SADB_MAX) return { errno: ERRNO.EINVAL, offset: 1, why: `message type ${type} out of range 1..${KAME_SADB_MAX}` };
  const units = rd16(u8, 4);
  if (units !== Math.floor(u8.length / 8) || units < 2) {
    return { errno: ERRNO.EMSGSIZE, offset: 4, why: `sadb_msg_len says ${units * 8} bytes, ${u8.length} given` };
  }
  return undefined;
}
