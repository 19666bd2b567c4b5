/**
 * SADB_ADD, SADB_GET and SADB_DELETE read in place, for the engine's fast path. For the
 * common shape of a KLIPS-dialect ADD (AH or ESP; the SA extension, optional hard and
 * soft lifetimes, IPv4 source and destination, optional keys, in ascending order, no
 * other extension) and of a GET or DELETE (AH or ESP; SA, IPv4 source and destination), `scanSa` checks in place
 * everything parseMessage checks of such a message (header, extension lengths, order,
 * each codec's rules, the ADD rules of checkMessageRules) and notes where each extension
 * lies, without making an object. Every other message, valid or not, is simply not of
 * this shape (false), and its sender parses it in full; for a message scanSa accepts,
 * parseMessage accepts it too and reads the same values (test/fast-path.test.ts feeds
 * both random and mutated messages).
 */

import {
  PF_KEY_V2, SADB_ADD, SADB_GET, SADB_DELETE, SADB_MSG_HDR_LEN, SADB_SASTATE_DEAD, SADB_SATYPE_AH, SADB_SATYPE_ESP, SADB_SASTATE_MATURE,
  SADB_AALG_NONE, SADB_EALG_NONE, SADB_EALG_NULL, AF_INET,
  SADB_EXT_SA, SADB_EXT_LIFETIME_HARD, SADB_EXT_LIFETIME_SOFT, SADB_EXT_ADDRESS_SRC, SADB_EXT_ADDRESS_DST,
  SADB_EXT_KEY_AUTH, SADB_EXT_KEY_ENCRYPT,
} from './constants.js';
import { dataViewOf } from './bytes.js';
import { IPSEC_SAREF_NULL, IPSEC_SA_REF_TABLE_NUM_ENTRIES } from './extensions.js';

/**
 * Where scanSa found a message's parts: a DataView over the scanned buffer's memory, byte
 * offsets into that view (-1: absent), and the SA extension's fields.
 */
export interface SaScan {
  view: DataView;
  /** The message's first byte, in `view`. */
  at: number;
  /** SADB_ADD, SADB_GET or SADB_DELETE. */
  type: number;
  satype: number;
  seq: number;
  pid: number;
  spi: number;
  replay: number;
  auth: number;
  encrypt: number;
  flags: number;
  /** The SAref the SA extension names (IPSEC_SAREF_NULL for none, the older 0xFFFFFFFF included). */
  ref: number;
  sa: number;
  hard: number;
  soft: number;
  src: number;
  dst: number;
  keyAuth: number;
  keyEncrypt: number;
  /** Key sizes in bits (0 when the key is absent). */
  authBits: number;
  encryptBits: number;
}

export function newSaScan(): SaScan {
  return {
    view: new DataView(new ArrayBuffer(0)), at: 0, type: 0, satype: 0, seq: 0, pid: 0, spi: 0, replay: 0, auth: 0, encrypt: 0, flags: 0, ref: 0,
    sa: -1, hard: -1, soft: -1, src: -1, dst: -1, keyAuth: -1, keyEncrypt: -1, authBits: 0, encryptBits: 0,
  };
}

const bit = (t: number) => 1 << (t - 1);
/** The extension types each shape may carry (a subset of what RULES permits), and those both must. */
const REQUIRED = bit(SADB_EXT_SA) | bit(SADB_EXT_ADDRESS_SRC) | bit(SADB_EXT_ADDRESS_DST);
const ADD_SHAPE = REQUIRED | bit(SADB_EXT_LIFETIME_HARD) | bit(SADB_EXT_LIFETIME_SOFT) | bit(SADB_EXT_KEY_AUTH) | bit(SADB_EXT_KEY_ENCRYPT);
/** GET and DELETE: the SA they name, and nothing else. */
const SAID_SHAPE = REQUIRED;

/** An IPv4 sadb_address of 24 bytes as the codec accepts it: prefix length and reserved 0, sin_zero 0. */
const v4Address = (v: DataView, o: number, len: number): boolean =>
  len === 24 && (v.getUint32(o + 4, true) & 0xffffff00) === 0 && v.getUint16(o + 8, true) === AF_INET &&
  v.getInt32(o + 16) === 0 && v.getInt32(o + 20) === 0;

/** A key extension as the codec accepts it: non-zero bits, exactly padded, reserved and padding 0. Returns its bits, or 0. */
function keyBits(v: DataView, o: number, len: number): number {
  const bits = v.getUint16(o + 4, true);
  const nbytes = (bits + 7) >>> 3;
  if (bits === 0 || len !== ((8 + nbytes + 7) & ~7) || v.getUint16(o + 6, true) !== 0) return 0;
  for (let i = o + 8 + nbytes; i < o + len; i++) if (v.getUint8(i) !== 0) return 0;
  return bits;
}

/**
 * The array scanned last, its view (over all of its memory, as dataViewOf makes one),
 * offset and length: the messages of one read chunk share them, looked up once.
 */
let lastBuffer: Uint8Array | undefined;
let lastView: DataView = new DataView(new ArrayBuffer(0));
let lastOffset = 0;
let lastLength = 0;

/** Make `u8` the array scanned (with `view` over its memory when the caller has one). */
function scanning(u8: Uint8Array, view: DataView | undefined): void {
  lastBuffer = u8;
  lastView = view ?? dataViewOf(u8);
  lastOffset = u8.byteOffset;
  lastLength = u8.length;
}

/**
 * scanSa for a message in `u8` whose reader keeps a DataView over all of u8's memory
 * (`view`, as dataViewOf makes one: the SA table keeps one per chunk of stored requests).
 */
export function scanSaWith(u8: Uint8Array, view: DataView, off: number, len: number, s: SaScan): boolean {
  if (u8 !== lastBuffer) scanning(u8, view);
  return scanSa(u8, off, len, s);
}

/**
 * Whether bytes [off, off + len) of `u8` are an ADD, GET or DELETE of the shapes above that
 * parseMessage (inbound, KLIPS dialect) accepts; if so, `s` says where its parts are.
 * Reads go through a DataView, a word at a time.
 */
export function scanSa(u8: Uint8Array, off: number, len: number, s: SaScan): boolean {
  if (u8 !== lastBuffer) scanning(u8, undefined);
  if (len < SADB_MSG_HDR_LEN || off + len > lastLength) return false;
  const v = lastView;
  const m = lastOffset + off;
  const end = m + len;
  // version, type, errno and satype in one word; then sadb_msg_len and sadb_msg_reserved.
  const w0 = v.getUint32(m, true);
  const satype = w0 >>> 24;
  const type = (w0 >>> 8) & 0xff;
  if ((w0 & 0xff00ff) !== PF_KEY_V2 || v.getUint32(m + 4, true) !== len / 8) return false;
  if (satype !== SADB_SATYPE_AH && satype !== SADB_SATYPE_ESP) return false;
  const shape = type === SADB_ADD ? ADD_SHAPE : type === SADB_GET || type === SADB_DELETE ? SAID_SHAPE : 0;
  if (shape === 0) return false;
  s.view = v;
  s.at = m;
  s.type = type;
  s.satype = satype;
  s.seq = v.getUint32(m + 8, true);
  s.pid = v.getUint32(m + 12, true);
  s.hard = s.soft = s.keyAuth = s.keyEncrypt = -1;
  s.authBits = s.encryptBits = 0;
  let seen = 0;
  let last = 0;
  for (let o = m + SADB_MSG_HDR_LEN; o < end;) {
    const h = v.getUint32(o, true);
    const n = (h & 0xffff) * 8;
    const t = h >>> 16;
    if (n === 0 || o + n > end || t <= last || t > 32 || !(shape & bit(t))) return false;
    switch (t) {
      case SADB_EXT_SA: {
        if (n !== 16 && n !== 24) return false;
        // sadb_sa_replay, _state, _auth, _encrypt.
        const w2 = v.getUint32(o + 8, true);
        const replay = w2 & 0xff;
        const state = (w2 >>> 8) & 0xff;
        // The codec takes any state but DEAD and above; an ADD must be MATURE (checkMessageRules).
        if (replay > 64 || (type === SADB_ADD ? state !== SADB_SASTATE_MATURE : state >= SADB_SASTATE_DEAD)) return false;
        let ref = IPSEC_SAREF_NULL;
        if (n === 24) {
          ref = v.getUint32(o + 16, true);
          if (v.getInt32(o + 20) !== 0) return false;
          if (ref === 0xffffffff) ref = IPSEC_SAREF_NULL;
          else if (ref >= IPSEC_SA_REF_TABLE_NUM_ENTRIES) return false;
        }
        s.sa = o;
        s.spi = v.getUint32(o + 4);
        s.replay = replay;
        s.auth = (w2 >>> 16) & 0xff;
        s.encrypt = w2 >>> 24;
        s.flags = v.getUint32(o + 12, true);
        s.ref = ref;
        break;
      }
      case SADB_EXT_LIFETIME_HARD:
      case SADB_EXT_LIFETIME_SOFT:
        if (n !== 32 && (n !== 40 || v.getInt32(o + 36) !== 0)) return false;
        if (t === SADB_EXT_LIFETIME_HARD) s.hard = o;
        else s.soft = o;
        break;
      case SADB_EXT_ADDRESS_SRC:
      case SADB_EXT_ADDRESS_DST:
        if (!v4Address(v, o, n)) return false;
        if (t === SADB_EXT_ADDRESS_SRC) s.src = o;
        else s.dst = o;
        break;
      default: {
        const bits = keyBits(v, o, n);
        if (bits === 0) return false;
        if (t === SADB_EXT_KEY_AUTH) { s.keyAuth = o; s.authBits = bits; } else { s.keyEncrypt = o; s.encryptBits = bits; }
      }
    }
    seen |= bit(t);
    last = t;
    o += n;
  }
  if ((seen & REQUIRED) !== REQUIRED) return false;
  if (type !== SADB_ADD) return true;
  // checkMessageRules for an ADD: the algorithms its SA type needs, and an SPI above 255.
  if (satype === SADB_SATYPE_AH ? s.auth === SADB_AALG_NONE || s.encrypt !== SADB_EALG_NONE
    : s.encrypt === SADB_EALG_NONE || (s.encrypt === SADB_EALG_NULL && s.auth === SADB_AALG_NONE)) return false;
  return s.spi > 255;
}
