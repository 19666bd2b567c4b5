/**
 * The supported-algorithm registry: what a SADB_REGISTER reply reports per SA type
 * (KLIPS's pfkey_supported_list, filled by pfkey_init), and the key-length checks ADD and
 * UPDATE make against it. The default list is what klips's data plane can run with
 * node:crypto; a configuration may narrow it.
 */

import {
  SADB_SATYPE_AH, SADB_SATYPE_ESP, SADB_X_SATYPE_IPIP, SADB_X_SATYPE_COMP,
  SADB_AALG_MD5HMAC, SADB_AALG_SHA1HMAC, SADB_X_AALG_SHA2_256HMAC, SADB_X_AALG_SHA2_384HMAC,
  SADB_X_AALG_SHA2_512HMAC, SADB_EALG_3DESCBC, SADB_EALG_NULL, SADB_X_EALG_AESCBC,
  SADB_X_EALG_AESCTR, SADB_X_EALG_AES_GCM_ICV8, SADB_X_EALG_AES_GCM_ICV12,
  SADB_X_EALG_AES_GCM_ICV16, SADB_X_TALG_IPv4_in_IPv4, SADB_X_TALG_IPv6_in_IPv4,
  SADB_X_TALG_IPv4_in_IPv6, SADB_X_TALG_IPv6_in_IPv6, SADB_X_CALG_DEFLATE, SADB_AALG_NONE,
  SADB_EALG_NONE, type Alg,
} from '../wire/index.js';

export interface AlgSpec extends Alg {
  /** Allowed key sizes in bits when not every size in [minbits, maxbits] is valid. */
  sizes?: number[];
}

export interface SupportedLists {
  auth: AlgSpec[];
  encrypt: AlgSpec[];
}

const AUTH: AlgSpec[] = [
  { id: SADB_AALG_MD5HMAC, ivlen: 0, minbits: 128, maxbits: 128 },
  { id: SADB_AALG_SHA1HMAC, ivlen: 0, minbits: 160, maxbits: 160 },
  { id: SADB_X_AALG_SHA2_256HMAC, ivlen: 0, minbits: 256, maxbits: 256 },
  { id: SADB_X_AALG_SHA2_384HMAC, ivlen: 0, minbits: 384, maxbits: 384 },
  { id: SADB_X_AALG_SHA2_512HMAC, ivlen: 0, minbits: 512, maxbits: 512 },
];

/** AES keys carry a 32-bit nonce/salt after the key for CTR and GCM (RFC 3686, RFC 4106). */
const ENCRYPT: AlgSpec[] = [
  { id: SADB_EALG_3DESCBC, ivlen: 64, minbits: 192, maxbits: 192 },
  { id: SADB_X_EALG_AESCBC, ivlen: 128, minbits: 128, maxbits: 256, sizes: [128, 192, 256] },
  { id: SADB_X_EALG_AESCTR, ivlen: 64, minbits: 160, maxbits: 288, sizes: [160, 224, 288] },
  { id: SADB_X_EALG_AES_GCM_ICV8, ivlen: 64, minbits: 160, maxbits: 288, sizes: [160, 224, 288] },
  { id: SADB_X_EALG_AES_GCM_ICV12, ivlen: 64, minbits: 160, maxbits: 288, sizes: [160, 224, 288] },
  { id: SADB_X_EALG_AES_GCM_ICV16, ivlen: 64, minbits: 160, maxbits: 288, sizes: [160, 224, 288] },
  { id: SADB_EALG_NULL, ivlen: 0, minbits: 0, maxbits: 0 },
];

const TUNNEL: AlgSpec[] = [
  { id: SADB_X_TALG_IPv4_in_IPv4, ivlen: 0, minbits: 32, maxbits: 32 },
  { id: SADB_X_TALG_IPv6_in_IPv4, ivlen: 0, minbits: 32, maxbits: 128 },
  { id: SADB_X_TALG_IPv4_in_IPv6, ivlen: 0, minbits: 32, maxbits: 128 },
  { id: SADB_X_TALG_IPv6_in_IPv6, ivlen: 0, minbits: 128, maxbits: 128 },
];

const COMP: AlgSpec[] = [{ id: SADB_X_CALG_DEFLATE, ivlen: 0, minbits: 1, maxbits: 1 }];

/** The default per-SA-type lists (KLIPS: AH, ESP, IPIP, COMP). */
export function defaultSupported(): Map<number, SupportedLists> {
  return new Map([
    [SADB_SATYPE_AH, { auth: AUTH, encrypt: [] }],
    [SADB_SATYPE_ESP, { auth: AUTH, encrypt: ENCRYPT }],
    [SADB_X_SATYPE_IPIP, { auth: [], encrypt: TUNNEL }],
    [SADB_X_SATYPE_COMP, { auth: [], encrypt: COMP }],
  ]);
}

/** The algorithm `id` in a list (a loop: this runs for every ADD). */
function findAlg(list: AlgSpec[], id: number): AlgSpec | undefined {
  for (let i = 0; i < list.length; i++) if (list[i].id === id) return list[i];
  return undefined;
}

/**
 * Whether an algorithm/key pair is acceptable: an algorithm whose maxbits is 0 (NULL
 * encryption) takes no key; neither does any algorithm of a `keyless` SA type (IPCOMP,
 * whose bit counts describe no key). keyProblem says why not.
 */
export function keyFits(
  lists: SupportedLists | undefined, kind: 'auth' | 'encrypt', id: number, bits: number | undefined, keyless = false,
): boolean {
  if (id === (kind === 'auth' ? SADB_AALG_NONE : SADB_EALG_NONE)) return !bits;
  const spec = lists === undefined ? undefined : findAlg(lists[kind], id);
  if (spec === undefined) return false;
  if (keyless || spec.maxbits === 0) return !bits;
  if (bits === undefined) return false;
  return spec.sizes ? spec.sizes.includes(bits) : bits >= spec.minbits && bits <= spec.maxbits;
}

/** Why an algorithm/key pair is unacceptable (keyFits), or undefined when it is fine. */
export function keyProblem(
  lists: SupportedLists | undefined, kind: 'auth' | 'encrypt', id: number, bits: number | undefined, keyless = false,
): string | undefined {
  if (keyFits(lists, kind, id, bits, keyless)) return undefined;
  if (id === (kind === 'auth' ? SADB_AALG_NONE : SADB_EALG_NONE)) return `${kind} key given without an ${kind} algorithm`;
  const spec = lists === undefined ? undefined : findAlg(lists[kind], id);
  if (!spec) return `${kind} algorithm ${id} not supported`;
  if (keyless || spec.maxbits === 0) return `${kind} algorithm ${id} takes no key`;
  if (bits === undefined) return `${kind} algorithm ${id} needs a key`;
  return `${kind} key of ${bits} bits does not fit algorithm ${id} (${spec.sizes?.join('/') ?? `${spec.minbits}-${spec.maxbits}`})`;
}
