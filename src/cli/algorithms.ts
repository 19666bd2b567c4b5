/**
 * `klips spi --esp/--ah/--comp` algorithm strings to PF_KEY algorithm numbers, and the
 * key sizes each known algorithm takes, checked before anything is sent.
 *
 * The man page's names come first: `3des`, `3des-md5-96`, `3des-sha1-96` (ESP) and
 * `hmac-md5-96`, `hmac-sha1-96` (AH). Then openswan 2.6's ESP strings
 * `ENC[KEYBITS][-AUTH]`: `aes128-sha1`, `aes-md5`, `aes256-sha2_256`, `null-sha1`,
 * `aes_gcm128`, `aes_ctr256-sha1`, … As openswan's spi, the key length sent is the
 * length of the key given; KEYBITS, when present, must agree with it (for AES-GCM, CCM
 * and CTR the key carries a salt or nonce after it, so aes_gcm128 takes 160 bits).
 * Key sizes are the algorithms' own (RFC 2405, 2451, 3602, 3686, 4106, 4309, 4312,
 * 2403, 2404, 4868, 2857); whether klipsd runs an algorithm is klipsd's to say (EINVAL).
 */

import {
  SADB_AALG_MD5HMAC, SADB_AALG_SHA1HMAC, SADB_AALG_NONE, SADB_EALG_3DESCBC, SADB_EALG_NONE,
  SADB_EALG_NULL, SADB_X_EALG_AESCTR, SADB_X_EALG_AES_CCM_ICV8, SADB_X_EALG_AES_CCM_ICV12,
  SADB_X_EALG_AES_CCM_ICV16, SADB_X_EALG_AES_GCM_ICV8, SADB_X_EALG_AES_GCM_ICV12,
  SADB_X_EALG_AES_GCM_ICV16, SADB_X_AALG_NULL, SADB_EALG_DESCBC, SADB_X_EALG_CASTCBC,
  SADB_X_EALG_BLOWFISHCBC, SADB_X_EALG_AESCBC, SADB_X_EALG_CAMELLIACBC, SADB_X_AALG_SHA2_256HMAC,
  SADB_X_AALG_SHA2_384HMAC, SADB_X_AALG_SHA2_512HMAC, SADB_X_AALG_RIPEMD160HMAC,
} from '../wire/index.js';
import { AUTH_NAMES, COMP_NAMES, ENCRYPT_NAMES } from '../engine/algorithm-names.js';
import { UsageError } from './common.js';

export interface AlgChoice {
  auth: number;
  encrypt: number;
  /** Encryption key sizes in bits (salt included); empty when the algorithm takes no key. */
  encryptKeyBits: readonly number[];
  /** Authentication key sizes in bits; empty when there is no authentication algorithm. */
  authKeyBits: readonly number[];
}

/** Ciphers whose key carries a salt/nonce after the AES key, and its size in bits. */
const SALT_BITS: Readonly<Record<number, number>> = {
  [SADB_X_EALG_AESCTR]: 32,
  [SADB_X_EALG_AES_GCM_ICV8]: 32, [SADB_X_EALG_AES_GCM_ICV12]: 32, [SADB_X_EALG_AES_GCM_ICV16]: 32,
  [SADB_X_EALG_AES_CCM_ICV8]: 24, [SADB_X_EALG_AES_CCM_ICV12]: 24, [SADB_X_EALG_AES_CCM_ICV16]: 24,
};
const bitsFrom = (min: number, max: number): number[] => Array.from({ length: (max - min) / 8 + 1 }, (_, i) => min + 8 * i);
const AES_BITS = [128, 192, 256];

/** Key sizes of every ESP cipher klips can name (salt/nonce included where there is one). */
const ENCRYPT_KEY_BITS: Readonly<Record<number, readonly number[]>> = {
  [SADB_EALG_DESCBC]: [64],
  [SADB_EALG_3DESCBC]: [192],
  [SADB_X_EALG_CASTCBC]: bitsFrom(40, 128),
  [SADB_X_EALG_BLOWFISHCBC]: bitsFrom(40, 448),
  [SADB_EALG_NULL]: [],
  [SADB_X_EALG_AESCBC]: AES_BITS,
  [SADB_X_EALG_CAMELLIACBC]: AES_BITS,
  ...Object.fromEntries(Object.entries(SALT_BITS).map(([id, salt]) => [id, AES_BITS.map((b) => b + salt)])),
};

/** Key sizes of every authentication algorithm klips can name (an HMAC key is the hash's size). */
const AUTH_KEY_BITS: Readonly<Record<number, readonly number[]>> = {
  [SADB_AALG_MD5HMAC]: [128],
  [SADB_AALG_SHA1HMAC]: [160],
  [SADB_X_AALG_SHA2_256HMAC]: [256],
  [SADB_X_AALG_SHA2_384HMAC]: [384],
  [SADB_X_AALG_SHA2_512HMAC]: [512],
  [SADB_X_AALG_RIPEMD160HMAC]: [160],
};

/** "192", "128, 192 or 256", "40 to 448", "no key". */
export function sizesText(bits: readonly number[]): string {
  if (bits.length === 0) return 'no key';
  if (bits.length > 3) return `${bits[0]} to ${bits[bits.length - 1]}`;
  return bits.length > 1 ? `${bits.slice(0, -1).join(', ')} or ${bits[bits.length - 1]}` : String(bits[0]);
}

const AEAD = new Set([
  SADB_X_EALG_AES_GCM_ICV8, SADB_X_EALG_AES_GCM_ICV12, SADB_X_EALG_AES_GCM_ICV16,
  SADB_X_EALG_AES_CCM_ICV8, SADB_X_EALG_AES_CCM_ICV12, SADB_X_EALG_AES_CCM_ICV16,
]);

const MAN_PAGE_ESP: Record<string, [number, number]> = {
  '3des': [SADB_EALG_3DESCBC, SADB_AALG_NONE],
  '3des-md5-96': [SADB_EALG_3DESCBC, SADB_AALG_MD5HMAC],
  '3des-sha1-96': [SADB_EALG_3DESCBC, SADB_AALG_SHA1HMAC],
};
const MAN_PAGE_AH: Record<string, number> = {
  'hmac-md5-96': SADB_AALG_MD5HMAC,
  'hmac-sha1-96': SADB_AALG_SHA1HMAC,
};

/** A name, or a name followed by a bit count ("aes128", "aes_gcm128"). */
function nameAndBits(part: string, table: Readonly<Record<string, number>>): { id: number; bits?: number } | undefined {
  const exact = table[part];
  if (exact !== undefined) return { id: exact };
  const m = /^([a-z0-9_]*?[a-z_])(\d+)$/.exec(part);
  if (!m) return undefined;
  const id = table[m[1]] ?? table[m[1].replace(/_$/, '')];
  if (id === undefined) return undefined;
  return { id, bits: Number(m[2]) };
}

function authPart(text: string, s: string): { id: number; bits?: number } {
  const a = nameAndBits(text, AUTH_NAMES.byName);
  if (!a) throw new UsageError(`unknown authentication algorithm "${text}" in "${s}" (known: ${Object.values(AUTH_NAMES.byId).join(', ')})`);
  return a;
}

/** KEYBITS from an algorithm string, checked against the cipher's sizes: the sizes it leaves. */
function keyBitsOf(id: number, bits: number | undefined, s: string): readonly number[] {
  const all = ENCRYPT_KEY_BITS[id] ?? [];
  if (bits === undefined) return all;
  const salt = SALT_BITS[id] ?? 0;
  if (!all.includes(bits + salt)) {
    throw new UsageError(`invalid key length ${bits} in "${s}" (${ENCRYPT_NAMES.byId[id]} takes ${sizesText(all.map((b) => b - salt))})`);
  }
  return [bits + salt];
}

/** --esp ALGO */
export function parseEspAlgorithm(s: string): AlgChoice {
  const lower = s.toLowerCase();
  const man = MAN_PAGE_ESP[lower];
  if (man) return { encrypt: man[0], auth: man[1], encryptKeyBits: ENCRYPT_KEY_BITS[man[0]], authKeyBits: AUTH_KEY_BITS[man[1]] ?? [] };
  const dash = lower.indexOf('-');
  const encText = dash < 0 ? lower : lower.slice(0, dash);
  const authText = dash < 0 ? '' : lower.slice(dash + 1).replace(/-96$/, '');
  const enc = nameAndBits(encText, ENCRYPT_NAMES.byName);
  if (!enc) {
    throw new UsageError(`invalid encryption algorithm "${s}" after --esp (e.g. 3des, 3des-md5-96, 3des-sha1-96, aes128-sha1, aes256-sha2_256, aes_gcm128, null-sha1; ciphers: ${Object.values(ENCRYPT_NAMES.byId).join(', ')})`);
  }
  const encryptKeyBits = keyBitsOf(enc.id, enc.bits, s);
  let auth = SADB_AALG_NONE;
  let authKeyBits: readonly number[] = [];
  if (authText) {
    const a = authPart(authText, s);
    auth = a.id === SADB_X_AALG_NULL ? SADB_AALG_NONE : a.id;
    authKeyBits = authKeyBitsOf(a.id, a.bits, s);
    if (AEAD.has(enc.id) && auth !== SADB_AALG_NONE) throw new UsageError(`"${s}": ${encText} is a combined-mode cipher and takes no authentication algorithm`);
  }
  if (enc.id === SADB_EALG_NULL && auth === SADB_AALG_NONE) throw new UsageError(`"${s}": ESP with null encryption needs an authentication algorithm (e.g. null-sha1)`);
  return { encrypt: enc.id, auth, encryptKeyBits, authKeyBits };
}

/** An authentication algorithm's key sizes, narrowed by bits in its name ("md5128"), if any. */
function authKeyBitsOf(id: number, bits: number | undefined, s: string): readonly number[] {
  const all = AUTH_KEY_BITS[id] ?? [];
  if (bits === undefined) return all;
  if (!all.includes(bits)) throw new UsageError(`invalid key length ${bits} in "${s}" (${AUTH_NAMES.byId[id]} takes ${sizesText(all)})`);
  return [bits];
}

/** --ah ALGO */
export function parseAhAlgorithm(s: string): AlgChoice {
  const lower = s.toLowerCase();
  const man = MAN_PAGE_AH[lower];
  if (man) return { auth: man, encrypt: SADB_EALG_NONE, encryptKeyBits: [], authKeyBits: AUTH_KEY_BITS[man] };
  const a = nameAndBits(lower.replace(/-96$/, ''), AUTH_NAMES.byName);
  if (!a || a.id === SADB_X_AALG_NULL) {
    throw new UsageError(`unknown authentication algorithm "${s}" after --ah (hmac-md5-96, hmac-sha1-96, md5, sha1, sha2_256, sha2_384, sha2_512)`);
  }
  return { auth: a.id, encrypt: SADB_EALG_NONE, encryptKeyBits: [], authKeyBits: authKeyBitsOf(a.id, a.bits, s) };
}

/** --comp ALGO */
export function parseCompAlgorithm(s: string): number {
  const id = COMP_NAMES.byName[s.toLowerCase()];
  if (id === undefined) throw new UsageError(`unknown compression algorithm "${s}" after --comp (deflate, lzs)`);
  return id;
}
