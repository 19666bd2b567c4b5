/**
 * The transforms' algorithm tables, keyed by the PF_KEY ids an SA carries (sadb_sa_encrypt,
 * sadb_sa_auth; src/wire/constants.ts): for each cipher its node:crypto name per key size,
 * block and IV sizes, the salt/nonce it takes from the key's tail, and its ICV if it is a
 * combined mode; for each HMAC its hash, key size and truncated ICV length. ESP, AH and
 * IPCOMP look algorithms up here instead of branching on ids.
 */

import { createHmac, type KeyObject } from 'node:crypto';
import {
  SADB_AALG_MD5HMAC, SADB_AALG_SHA1HMAC, SADB_X_AALG_SHA2_256HMAC, SADB_X_AALG_SHA2_384HMAC,
  SADB_X_AALG_SHA2_512HMAC, SADB_EALG_3DESCBC, SADB_EALG_NULL, SADB_X_EALG_AESCBC,
  SADB_X_EALG_AESCTR, SADB_X_EALG_AES_GCM_ICV8, SADB_X_EALG_AES_GCM_ICV12,
  SADB_X_EALG_AES_GCM_ICV16, SADB_X_CALG_DEFLATE,
} from '../wire/constants.js';
import { wr32be } from '../wire/bytes.js';

/** How a cipher runs: CBC with an explicit IV, counter mode (RFC 3686), GCM (RFC 4106), or none. */
export type CipherMode = 'cbc' | 'ctr' | 'gcm' | 'null';

export interface EncryptAlgorithm {
  readonly id: number;
  readonly name: string;
  readonly mode: CipherMode;
  /** Cipher key sizes in bytes, not counting the salt/nonce. */
  readonly keyBytes: readonly number[];
  /** Bytes taken from the end of the SA's key as RFC 3686 nonce or RFC 4106 salt. */
  readonly saltBytes: number;
  /** The cipher's block size (1 for stream-like modes). */
  readonly blockSize: number;
  /** ESP payload alignment: the block size, and at least 4 (RFC 4303 §2.4). */
  readonly align: number;
  /** Explicit IV carried in each packet. */
  readonly ivBytes: number;
  /** The ICV a combined mode produces (0 when a separate HMAC is needed). */
  readonly icvBytes: number;
  /** The node:crypto cipher name for a key of `keyBytes` bytes. */
  readonly cipher: (keyBytes: number) => string;
}

export interface AuthAlgorithm {
  readonly id: number;
  readonly name: string;
  /** node:crypto hash name for the HMAC. */
  readonly hash: string;
  /** Key size in bytes (KLIPS accepts exactly this, see src/engine/algorithms.ts). */
  readonly keyBytes: number;
  /** Truncated ICV length in bytes (RFC 2403/2404: 96 bits; RFC 4868: half the hash). */
  readonly icvBytes: number;
}

const aes = (mode: string) => (keyBytes: number) => `aes-${keyBytes * 8}-${mode}`;
const gcm = (id: number, name: string, icvBytes: number): EncryptAlgorithm => ({
  id, name, mode: 'gcm', keyBytes: [16, 24, 32], saltBytes: 4, blockSize: 1, align: 4, ivBytes: 8,
  icvBytes, cipher: aes('gcm'),
});

const ENCRYPT: readonly EncryptAlgorithm[] = [
  { id: SADB_EALG_NULL, name: 'NULL', mode: 'null', keyBytes: [0], saltBytes: 0, blockSize: 1, align: 4, ivBytes: 0, icvBytes: 0, cipher: () => '' },
  { id: SADB_EALG_3DESCBC, name: '3DES-CBC', mode: 'cbc', keyBytes: [24], saltBytes: 0, blockSize: 8, align: 8, ivBytes: 8, icvBytes: 0, cipher: () => 'des-ede3-cbc' },
  { id: SADB_X_EALG_AESCBC, name: 'AES-CBC', mode: 'cbc', keyBytes: [16, 24, 32], saltBytes: 0, blockSize: 16, align: 16, ivBytes: 16, icvBytes: 0, cipher: aes('cbc') },
  { id: SADB_X_EALG_AESCTR, name: 'AES-CTR', mode: 'ctr', keyBytes: [16, 24, 32], saltBytes: 4, blockSize: 1, align: 4, ivBytes: 8, icvBytes: 0, cipher: aes('ctr') },
  gcm(SADB_X_EALG_AES_GCM_ICV8, 'AES-GCM-8', 8),
  gcm(SADB_X_EALG_AES_GCM_ICV12, 'AES-GCM-12', 12),
  gcm(SADB_X_EALG_AES_GCM_ICV16, 'AES-GCM-16', 16),
];

const AUTH: readonly AuthAlgorithm[] = [
  { id: SADB_AALG_MD5HMAC, name: 'HMAC-MD5-96', hash: 'md5', keyBytes: 16, icvBytes: 12 },
  { id: SADB_AALG_SHA1HMAC, name: 'HMAC-SHA1-96', hash: 'sha1', keyBytes: 20, icvBytes: 12 },
  { id: SADB_X_AALG_SHA2_256HMAC, name: 'HMAC-SHA2-256-128', hash: 'sha256', keyBytes: 32, icvBytes: 16 },
  { id: SADB_X_AALG_SHA2_384HMAC, name: 'HMAC-SHA2-384-192', hash: 'sha384', keyBytes: 48, icvBytes: 24 },
  { id: SADB_X_AALG_SHA2_512HMAC, name: 'HMAC-SHA2-512-256', hash: 'sha512', keyBytes: 64, icvBytes: 32 },
];

/** sadb_sa_encrypt id → cipher (ESP). */
export const ENCRYPT_ALGORITHMS: ReadonlyMap<number, EncryptAlgorithm> = new Map(ENCRYPT.map((a) => [a.id, a]));
/** sadb_sa_auth id → HMAC (ESP and AH); SADB_AALG_NONE is absent on purpose. */
export const AUTH_ALGORITHMS: ReadonlyMap<number, AuthAlgorithm> = new Map(AUTH.map((a) => [a.id, a]));

/**
 * The truncated HMAC of `data` (an ESP packet up to its trailer, or AH's zeroed packet),
 * followed by the ESN high bits when given (RFC 4303 §2.2.1, RFC 4302 §2.5.1).
 */
export function hmacIcv(auth: AuthAlgorithm, key: KeyObject | Uint8Array, data: Uint8Array, esnHi?: number): Buffer {
  const h = createHmac(auth.hash, key).update(data);
  if (esnHi !== undefined) {
    const hi = Buffer.allocUnsafe(4);
    wr32be(hi, 0, esnHi >>> 0);
    h.update(hi);
  }
  return h.digest().subarray(0, auth.icvBytes);
}

/** Constant-time comparison of a[aOff, aOff + n) with b[bOff, bOff + n) (ICVs): no branch on the bytes. */
export function sameBytes(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, n: number): boolean {
  let d = 0;
  for (let i = 0; i < n; i++) d |= a[aOff + i] ^ b[bOff + i];
  return d === 0;
}

export interface CompressAlgorithm {
  readonly id: number;
  readonly name: string;
}
/** sadb_sa_encrypt id of an X_COMP SA → compressor (RFC 3173 with RFC 2394 deflate). */
export const COMPRESS_ALGORITHMS: ReadonlyMap<number, CompressAlgorithm> = new Map([
  [SADB_X_CALG_DEFLATE, { id: SADB_X_CALG_DEFLATE, name: 'DEFLATE' }],
]);
