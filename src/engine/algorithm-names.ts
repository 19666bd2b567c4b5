/**
 * Names for PF_KEY algorithm numbers, as openswan's configuration and tools spell them
 * (`3des`, `aes`, `aes_gcm_16`, `sha1`, `sha2_256`, `deflate`, …). klipsd's configuration
 * file names its supported algorithms with them, `/proc`-style views print them, and the
 * `klips spi` algorithm strings (`aes128-sha1`) are parsed against them.
 */

import {
  SADB_AALG_MD5HMAC, SADB_AALG_SHA1HMAC, SADB_X_AALG_SHA2_256HMAC, SADB_X_AALG_SHA2_384HMAC,
  SADB_X_AALG_SHA2_512HMAC, SADB_X_AALG_RIPEMD160HMAC, SADB_X_AALG_NULL,
  SADB_EALG_DESCBC, SADB_EALG_3DESCBC, SADB_X_EALG_CASTCBC, SADB_X_EALG_BLOWFISHCBC,
  SADB_EALG_NULL, SADB_X_EALG_AESCBC, SADB_X_EALG_AESCTR, SADB_X_EALG_AES_CCM_ICV8,
  SADB_X_EALG_AES_CCM_ICV12, SADB_X_EALG_AES_CCM_ICV16, SADB_X_EALG_AES_GCM_ICV8,
  SADB_X_EALG_AES_GCM_ICV12, SADB_X_EALG_AES_GCM_ICV16, SADB_X_EALG_CAMELLIACBC,
  SADB_X_CALG_OUI, SADB_X_CALG_DEFLATE, SADB_X_CALG_LZS, SADB_X_CALG_LZJH,
  SADB_X_TALG_IPv4_in_IPv4, SADB_X_TALG_IPv6_in_IPv4, SADB_X_TALG_IPv4_in_IPv6,
  SADB_X_TALG_IPv6_in_IPv6, SADB_SATYPE_AH, SADB_SATYPE_ESP, SADB_X_SATYPE_IPIP,
  SADB_X_SATYPE_COMP,
} from '../wire/index.js';

export interface NameTable {
  /** Canonical name per id (what views print). */
  readonly byId: Readonly<Record<number, string>>;
  /** Every accepted spelling (lower case) to its id. */
  readonly byName: Readonly<Record<string, number>>;
}

function table(canonical: Record<number, string>, aliases: Record<string, number> = {}): NameTable {
  const byName: Record<string, number> = {};
  for (const [id, name] of Object.entries(canonical)) byName[name] = Number(id);
  Object.assign(byName, aliases);
  return { byId: canonical, byName };
}

/** Authentication algorithms (sadb_sa_auth). */
export const AUTH_NAMES = table(
  {
    [SADB_AALG_MD5HMAC]: 'md5',
    [SADB_AALG_SHA1HMAC]: 'sha1',
    [SADB_X_AALG_SHA2_256HMAC]: 'sha2_256',
    [SADB_X_AALG_SHA2_384HMAC]: 'sha2_384',
    [SADB_X_AALG_SHA2_512HMAC]: 'sha2_512',
    [SADB_X_AALG_RIPEMD160HMAC]: 'ripemd160',
    [SADB_X_AALG_NULL]: 'null',
  },
  {
    hmac_md5: SADB_AALG_MD5HMAC, 'hmac-md5': SADB_AALG_MD5HMAC, hmac_md5_96: SADB_AALG_MD5HMAC,
    sha: SADB_AALG_SHA1HMAC, hmac_sha1: SADB_AALG_SHA1HMAC, 'hmac-sha1': SADB_AALG_SHA1HMAC, hmac_sha1_96: SADB_AALG_SHA1HMAC,
    sha2: SADB_X_AALG_SHA2_256HMAC, sha256: SADB_X_AALG_SHA2_256HMAC, hmac_sha2_256_128: SADB_X_AALG_SHA2_256HMAC,
    sha384: SADB_X_AALG_SHA2_384HMAC, hmac_sha2_384_192: SADB_X_AALG_SHA2_384HMAC,
    sha512: SADB_X_AALG_SHA2_512HMAC, hmac_sha2_512_256: SADB_X_AALG_SHA2_512HMAC,
    ripemd: SADB_X_AALG_RIPEMD160HMAC,
  },
);

/** ESP encryption algorithms (sadb_sa_encrypt of an ESP SA). */
export const ENCRYPT_NAMES = table(
  {
    [SADB_EALG_DESCBC]: 'des',
    [SADB_EALG_3DESCBC]: '3des',
    [SADB_X_EALG_CASTCBC]: 'cast',
    [SADB_X_EALG_BLOWFISHCBC]: 'blowfish',
    [SADB_EALG_NULL]: 'null',
    [SADB_X_EALG_AESCBC]: 'aes',
    [SADB_X_EALG_AESCTR]: 'aes_ctr',
    [SADB_X_EALG_AES_CCM_ICV8]: 'aes_ccm_8',
    [SADB_X_EALG_AES_CCM_ICV12]: 'aes_ccm_12',
    [SADB_X_EALG_AES_CCM_ICV16]: 'aes_ccm_16',
    [SADB_X_EALG_AES_GCM_ICV8]: 'aes_gcm_8',
    [SADB_X_EALG_AES_GCM_ICV12]: 'aes_gcm_12',
    [SADB_X_EALG_AES_GCM_ICV16]: 'aes_gcm_16',
    [SADB_X_EALG_CAMELLIACBC]: 'camellia',
  },
  {
    '3des_cbc': SADB_EALG_3DESCBC, aes_cbc: SADB_X_EALG_AESCBC,
    aes_ccm_a: SADB_X_EALG_AES_CCM_ICV8, aes_ccm_b: SADB_X_EALG_AES_CCM_ICV12,
    aes_ccm_c: SADB_X_EALG_AES_CCM_ICV16, aes_ccm: SADB_X_EALG_AES_CCM_ICV16,
    aes_gcm_a: SADB_X_EALG_AES_GCM_ICV8, aes_gcm_b: SADB_X_EALG_AES_GCM_ICV12,
    aes_gcm_c: SADB_X_EALG_AES_GCM_ICV16, aes_gcm: SADB_X_EALG_AES_GCM_ICV16,
  },
);

/** Compression algorithms (sadb_sa_encrypt of an X_COMP SA). */
export const COMP_NAMES = table({
  [SADB_X_CALG_OUI]: 'oui',
  [SADB_X_CALG_DEFLATE]: 'deflate',
  [SADB_X_CALG_LZS]: 'lzs',
  [SADB_X_CALG_LZJH]: 'lzjh',
});

/** Tunnel modes KLIPS reports for X_IPIP in SUPPORTED_ENCRYPT. */
export const TUNNEL_NAMES = table({
  [SADB_X_TALG_IPv4_in_IPv4]: 'ipv4_in_ipv4',
  [SADB_X_TALG_IPv6_in_IPv4]: 'ipv6_in_ipv4',
  [SADB_X_TALG_IPv4_in_IPv6]: 'ipv4_in_ipv6',
  [SADB_X_TALG_IPv6_in_IPv6]: 'ipv6_in_ipv6',
});

/** The SA types a configuration's `supported` object may name. */
export const SATYPE_BY_CONFIG_NAME: Readonly<Record<string, number>> = {
  ah: SADB_SATYPE_AH,
  esp: SADB_SATYPE_ESP,
  ipip: SADB_X_SATYPE_IPIP,
  tun: SADB_X_SATYPE_IPIP,
  comp: SADB_X_SATYPE_COMP,
  ipcomp: SADB_X_SATYPE_COMP,
};

/** The name table for what sadb_sa_encrypt means under an SA type. */
export function encryptNamesFor(satype: number): NameTable {
  if (satype === SADB_X_SATYPE_COMP) return COMP_NAMES;
  if (satype === SADB_X_SATYPE_IPIP) return TUNNEL_NAMES;
  return ENCRYPT_NAMES;
}

export function authName(id: number): string {
  return AUTH_NAMES.byId[id] ?? `auth${id}`;
}

export function encryptName(satype: number, id: number): string {
  return encryptNamesFor(satype).byId[id] ?? `alg${id}`;
}
