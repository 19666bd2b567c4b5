/**
 * `klips spi --esp/--ah/--comp` algorithm strings to PF_KEY algorithm numbers.
 *
 * The man page's names come first: `3des`, `3des-md5-96`, `3des-sha1-96` (ESP) and
 * `hmac-md5-96`, `hmac-sha1-96` (AH). Then openswan 2.6's ESP strings
 * `ENC[KEYBITS][-AUTH]`: `aes128-sha1`, `aes-md5`, `aes256-sha2_256`, `null-sha1`,
 * `aes_gcm128`, `aes_ctr256-sha1`, … As openswan's spi, the key length sent is the
 * length of the key given; KEYBITS, when present, must agree with it (for AES-GCM, CCM
 * and CTR the key carries a 32-bit salt or nonce after it, so aes_gcm128 takes 160 bits).
 */

import {
  SADB_AALG_MD5HMAC, SADB_AALG_SHA1HMAC, SADB_AALG_NONE, SADB_EALG_3DESCBC, SADB_EALG_NONE,
  SADB_EALG_NULL, SADB_X_EALG_AESCTR, SADB_X_EALG_AES_CCM_ICV8, SADB_X_EALG_AES_CCM_ICV12,
  SADB_X_EALG_AES_CCM_ICV16, SADB_X_EALG_AES_GCM_ICV8, SADB_X_EALG_AES_GCM_ICV12,
  SADB_X_EALG_AES_GCM_ICV16, SADB_X_AALG_NULL,
} from '../wire/index.js';
import { AUTH_NAMES, COMP_NAMES, ENCRYPT_NAMES } from '../engine/algorithm-names.js';
import { UsageError } from './common.js';

export interface AlgChoice {
  auth: number;
  encrypt: number;
  /** Encryption key bits the string demands (KEYBITS, salt included), if any. */
  encryptKeyBits?: number;
  /** Authentication key bits the string demands, if any. */
  authKeyBits?: number;
  /** Combined-mode cipher: integrity without a separate authentication algorithm. */
  aead: boolean;
  /** The encryption algorithm takes a key (not NULL). */
  needsEncryptKey: boolean;
}

/** Ciphers whose key carries a salt/nonce after the AES key, and its size in bits. */
const SALT_BITS: Readonly<Record<number, number>> = {
  [SADB_X_EALG_AESCTR]: 32,
  [SADB_X_EALG_AES_GCM_ICV8]: 32, [SADB_X_EALG_AES_GCM_ICV12]: 32, [SADB_X_EALG_AES_GCM_ICV16]: 32,
  [SADB_X_EALG_AES_CCM_ICV8]: 24, [SADB_X_EALG_AES_CCM_ICV12]: 24, [SADB_X_EALG_AES_CCM_ICV16]: 24,
};
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

/** --esp ALGO */
export function parseEspAlgorithm(s: string): AlgChoice {
  const lower = s.toLowerCase();
  const man = MAN_PAGE_ESP[lower];
  if (man) return { encrypt: man[0], auth: man[1], aead: false, needsEncryptKey: true };
  const dash = lower.indexOf('-');
  const encText = dash < 0 ? lower : lower.slice(0, dash);
  const authText = dash < 0 ? '' : lower.slice(dash + 1).replace(/-96$/, '');
  const enc = nameAndBits(encText, ENCRYPT_NAMES.byName);
  if (!enc) {
    throw new UsageError(`invalid encryption algorithm "${s}" after --esp (e.g. 3des, 3des-md5-96, 3des-sha1-96, aes128-sha1, aes256-sha2_256, aes_gcm128, null-sha1; ciphers: ${Object.values(ENCRYPT_NAMES.byId).join(', ')})`);
  }
  const aead = AEAD.has(enc.id);
  let encryptKeyBits: number | undefined;
  if (enc.bits !== undefined) {
    if (aead && ![128, 192, 256].includes(enc.bits)) throw new UsageError(`invalid key length ${enc.bits} in "${s}" (AES-GCM/CCM take 128, 192 or 256)`);
    encryptKeyBits = enc.bits + (SALT_BITS[enc.id] ?? 0);
  }
  let auth = SADB_AALG_NONE;
  let authKeyBits: number | undefined;
  if (authText) {
    const a = authPart(authText, s);
    auth = a.id === SADB_X_AALG_NULL ? SADB_AALG_NONE : a.id;
    authKeyBits = a.bits;
    if (aead && auth !== SADB_AALG_NONE) throw new UsageError(`"${s}": ${encText} is a combined-mode cipher and takes no authentication algorithm`);
  }
  if (enc.id === SADB_EALG_NULL && auth === SADB_AALG_NONE) throw new UsageError(`"${s}": ESP with null encryption needs an authentication algorithm (e.g. null-sha1)`);
  return { encrypt: enc.id, auth, encryptKeyBits, authKeyBits, aead, needsEncryptKey: enc.id !== SADB_EALG_NULL && enc.id !== SADB_EALG_NONE };
}

/** --ah ALGO */
export function parseAhAlgorithm(s: string): AlgChoice {
  const lower = s.toLowerCase();
  const man = MAN_PAGE_AH[lower];
  if (man) return { auth: man, encrypt: SADB_EALG_NONE, aead: false, needsEncryptKey: false };
  const a = nameAndBits(lower.replace(/-96$/, ''), AUTH_NAMES.byName);
  if (!a || a.id === SADB_X_AALG_NULL) {
    throw new UsageError(`unknown authentication algorithm "${s}" after --ah (hmac-md5-96, hmac-sha1-96, md5, sha1, sha2_256, sha2_384, sha2_512)`);
  }
  return { auth: a.id, encrypt: SADB_EALG_NONE, authKeyBits: a.bits, aead: false, needsEncryptKey: false };
}

/** --comp ALGO */
export function parseCompAlgorithm(s: string): number {
  const id = COMP_NAMES.byName[s.toLowerCase()];
  if (id === undefined) throw new UsageError(`unknown compression algorithm "${s}" after --comp (deflate, lzs)`);
  return id;
}
