/**
 * What a transform needs to know about an SA (TransformSA), independent of how the SA
 * table stores it: a later adapter fills one from an SA in src/sadb. Also the one place
 * an SA's keys are checked against the algorithm tables and turned into keyed objects
 * (ESP's cipher and HMAC from the crypto backend of cipher.ts, AH's node:crypto
 * KeyObject), cached per TransformSA object and backend so a packet pays nothing for it.
 * Key bytes are never logged, formatted or put in a Drop.
 */

import { createSecretKey, type KeyObject } from 'node:crypto';
import {
  SADB_AALG_NONE, SADB_SATYPE_AH, SADB_SATYPE_ESP, ESPINUDP_WITH_NON_ESP,
} from '../wire/constants.js';
import {
  AUTH_ALGORITHMS, ENCRYPT_ALGORITHMS, type AuthAlgorithm, type EncryptAlgorithm,
} from './algorithms.js';
import {
  espCryptoBackend, nodeBackend, type CryptoBackend, type EspCryptoName, type SaCipher, type SaMac,
} from './cipher.js';
import { drop, type Result } from './drop.js';

/** NAT-T encapsulation of an ESP SA (SADB_X_EXT_NAT_T_TYPE/SPORT/DPORT). */
export interface NatT {
  /** ESPINUDP_WITH_NON_ESP (RFC 3948) or ESPINUDP_WITH_NON_IKE (8-byte zero marker). */
  readonly type: number;
  readonly sport: number;
  readonly dport: number;
}

/**
 * The SA as the transforms see it; an adapter fills this from an SA of src/sadb. Treat it
 * as immutable: prepared keys are cached per object, so a changed SA is a new object.
 */
export interface TransformSA {
  /** sadb_msg_satype: SADB_SATYPE_ESP, SADB_SATYPE_AH, SADB_X_SATYPE_IPIP, SADB_X_SATYPE_COMP. */
  readonly satype: number;
  /** SPI in host byte order (an IPCOMP SA's CPI is its low 16 bits, as in KLIPS). */
  readonly spi: number;
  /** sadb_sa_encrypt: SADB_EALG_* / SADB_X_EALG_* for ESP, SADB_X_CALG_* for IPCOMP. */
  readonly encrypt: number;
  /** sadb_sa_auth: SADB_AALG_* / SADB_X_AALG_* (SADB_AALG_NONE for GCM or no integrity). */
  readonly auth: number;
  /** Encryption key; for AES-CTR and AES-GCM its last 4 bytes are the nonce/salt. */
  readonly encryptKey?: Uint8Array;
  readonly authKey?: Uint8Array;
  /** sadb_sa_replay: anti-replay window in packets, 0 for none. */
  readonly replayWindow: number;
  /** Extended (64-bit) sequence numbers, RFC 4303 §2.2.1. */
  readonly esn?: boolean;
  readonly natT?: NatT;
  /** Tunnel endpoints (SADB_EXT_ADDRESS_SRC/DST) as 4 or 16 bytes. */
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
}

/**
 * An ESP or AH SA's algorithms with their keys ready to use. Keys live only inside keyed
 * objects (KeyObjects, libcrypto contexts) and the salt/nonce is not enumerable, so
 * printing or serialising this shows no key material.
 */
export interface PreparedSA {
  /** ESP only. */
  readonly enc?: EncryptAlgorithm;
  /** ESP: the keyed cipher (absent for NULL encryption). */
  readonly cipher?: SaCipher;
  /** The RFC 3686 nonce / RFC 4106 salt (empty for other ciphers). */
  readonly salt: Buffer;
  readonly auth?: AuthAlgorithm;
  /** AH: the HMAC key for hmacIcv. */
  readonly authKey?: KeyObject;
  /** ESP: the keyed HMAC (absent without integrity or with a combined mode). */
  readonly mac?: SaMac;
  /** ICV bytes on the wire: the combined mode's, else the HMAC's, else 0. */
  readonly icvBytes: number;
}

type Prepared = Result<{ prepared: PreparedSA }>;
/** Per SA object, what each backend prepared (so switching backends back and forth re-keys nothing). */
const prepared = new WeakMap<TransformSA, Partial<Record<EspCryptoName, Prepared>>>();

function prepareAuth(sa: TransformSA): Result<{ auth?: AuthAlgorithm; authKey?: KeyObject }> {
  if (sa.auth === SADB_AALG_NONE) return sa.authKey?.length ? drop('bad-sa') : { ok: true };
  const auth = AUTH_ALGORITHMS.get(sa.auth);
  if (!auth) return drop('unsupported');
  if (sa.authKey?.length !== auth.keyBytes) return drop('bad-sa');
  return { ok: true, auth, authKey: createSecretKey(sa.authKey) };
}

function prepareEsp(sa: TransformSA, backend: CryptoBackend): Prepared {
  const enc = ENCRYPT_ALGORITHMS.get(sa.encrypt);
  if (!enc) return drop('unsupported');
  const key = sa.encryptKey ?? new Uint8Array(0);
  const cipherBytes = key.length - enc.saltBytes;
  if (!enc.keyBytes.includes(cipherBytes)) return drop('bad-sa');
  const a = prepareAuth(sa);
  if (!a.ok) return a;
  // A combined mode carries its own ICV; ESP with neither encryption nor integrity is refused.
  if (enc.icvBytes && a.auth) return drop('bad-sa');
  if (enc.mode === 'null' && !a.auth) return drop('bad-sa');
  // A backend that cannot run an algorithm (say, a libcrypto without it) leaves it to node:crypto.
  const cipherKey = key.subarray(0, cipherBytes);
  const cipherName = enc.cipher(cipherBytes);
  const prepared = {
    enc,
    cipher: cipherBytes ? backend.cipher(enc, cipherName, cipherKey) ?? nodeBackend.cipher(enc, cipherName, cipherKey) : undefined,
    auth: a.auth,
    mac: a.auth ? backend.mac(a.auth, sa.authKey!) ?? nodeBackend.mac(a.auth, sa.authKey!) : undefined,
    icvBytes: enc.icvBytes || (a.auth?.icvBytes ?? 0),
  };
  Object.defineProperty(prepared, 'salt', { value: Buffer.from(key.subarray(cipherBytes)), enumerable: false });
  return { ok: true, prepared: prepared as PreparedSA };
}

function prepareAh(sa: TransformSA): Prepared {
  if (sa.auth === SADB_AALG_NONE) return drop('bad-sa');
  const a = prepareAuth(sa);
  if (!a.ok) return a;
  const prepared = { auth: a.auth, authKey: a.authKey, icvBytes: a.auth!.icvBytes };
  Object.defineProperty(prepared, 'salt', { value: Buffer.alloc(0), enumerable: false });
  return { ok: true, prepared: prepared as PreparedSA };
}

/**
 * The SA's algorithms and keys, checked once and cached for this TransformSA object and
 * the crypto backend in use (cipher.ts).
 */
export function prepareSA(sa: TransformSA): Prepared {
  const backend = espCryptoBackend();
  let byBackend = prepared.get(sa);
  if (!byBackend) prepared.set(sa, (byBackend = {}));
  let p = byBackend[backend.name];
  if (!p) {
    p = sa.satype === SADB_SATYPE_ESP ? prepareEsp(sa, backend)
      : sa.satype === SADB_SATYPE_AH ? prepareAh(sa)
        : drop('bad-sa');
    byBackend[backend.name] = p;
  }
  return p;
}

/** IPsec modes: transport (after the IP header) or tunnel (KLIPS: IPIP, then the transform). */
export type Mode = 'transport' | 'tunnel';

const UINT32 = 0xffffffff;

/**
 * May this SA send sequence number (seqHi, seq)? Never 0:0 (the counter starts at 1), never
 * with high bits without ESN, so a non-ESN counter never cycles (RFC 4303 §3.3.3).
 */
export function sendableSeq(sa: TransformSA, seq: number, seqHi: number): boolean {
  if (!Number.isInteger(seq) || seq < 0 || seq > UINT32 || !Number.isInteger(seqHi) || seqHi < 0 || seqHi > UINT32) return false;
  if (!sa.esn && seqHi !== 0) return false;
  return seq !== 0 || seqHi !== 0;
}

/** 4 or 16 bytes → 4 or 6; anything else → 0. */
export function familyOf(addr: Uint8Array): 0 | 4 | 6 {
  return addr.length === 4 ? 4 : addr.length === 16 ? 6 : 0;
}

export const DEFAULT_NATT: NatT = Object.freeze({ type: ESPINUDP_WITH_NON_ESP, sport: 4500, dport: 4500 });
