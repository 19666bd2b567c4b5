/**
 * PF_KEY v2 numbers as KLIPS (openswan 2.6/3.0) defines them: message types, SA types,
 * SA states and flags, algorithm identifiers, extension types and the magic shunt SPIs.
 * Each constant keeps its RFC 2367 / KLIPS name so it can be searched for; the name
 * tables beside them serve rendering and the command-line tools.
 */

export const PF_KEY_V2 = 2;
/** Extensions and messages are counted in 8-byte units. */
export const PFKEYV2_ALIGN = 8;
export const SADB_MSG_HDR_LEN = 16;

// --- sadb_msg_type (KLIPS numbering: 13..19 differ from Linux/KAME) ---
export const SADB_RESERVED = 0;
export const SADB_GETSPI = 1;
export const SADB_UPDATE = 2;
export const SADB_ADD = 3;
export const SADB_DELETE = 4;
export const SADB_GET = 5;
export const SADB_ACQUIRE = 6;
export const SADB_REGISTER = 7;
export const SADB_EXPIRE = 8;
export const SADB_FLUSH = 9;
export const SADB_DUMP = 10;
export const SADB_X_PROMISC = 11;
export const SADB_X_PCHANGE = 12;
export const SADB_X_GRPSA = 13;
export const SADB_X_ADDFLOW = 14;
export const SADB_X_DELFLOW = 15;
export const SADB_X_DEBUG = 16;
export const SADB_X_NAT_T_NEW_MAPPING = 17;
export const SADB_X_PLUMBIF = 18;
export const SADB_X_UNPLUMBIF = 19;
export const SADB_MAX = 19;

export const MSG_TYPE_NAMES: readonly string[] = [
  'RESERVED', 'GETSPI', 'UPDATE', 'ADD', 'DELETE', 'GET', 'ACQUIRE', 'REGISTER', 'EXPIRE',
  'FLUSH', 'DUMP', 'X_PROMISC', 'X_PCHANGE', 'X_GRPSA', 'X_ADDFLOW', 'X_DELFLOW', 'X_DEBUG',
  'X_NAT_T_NEW_MAPPING', 'X_PLUMBIF', 'X_UNPLUMBIF',
];

// --- sadb_msg_satype ---
export const SADB_SATYPE_UNSPEC = 0;
export const SADB_SATYPE_AH = 2;
export const SADB_SATYPE_ESP = 3;
export const SADB_SATYPE_RSVP = 5;
export const SADB_SATYPE_OSPFV2 = 6;
export const SADB_SATYPE_RIPV2 = 7;
export const SADB_SATYPE_MIP = 8;
export const SADB_X_SATYPE_IPIP = 9;
export const SADB_X_SATYPE_COMP = 10;
export const SADB_X_SATYPE_INT = 11;
export const SADB_SATYPE_MAX = 11;

export const SATYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'UNSPEC', 2: 'AH', 3: 'ESP', 5: 'RSVP', 6: 'OSPFV2', 7: 'RIPV2', 8: 'MIP',
  9: 'X_IPIP', 10: 'X_COMP', 11: 'X_INT',
};

/** IP protocol numbers behind the SA types KLIPS can carry (its satype2proto table). */
export const IPPROTO_IPIP = 4;
export const IPPROTO_ESP = 50;
export const IPPROTO_AH = 51;
export const IPPROTO_INT = 61;
export const IPPROTO_COMP = 108;
export const SATYPE_TO_PROTO: Readonly<Record<number, number>> = {
  [SADB_SATYPE_AH]: IPPROTO_AH,
  [SADB_SATYPE_ESP]: IPPROTO_ESP,
  [SADB_X_SATYPE_IPIP]: IPPROTO_IPIP,
  [SADB_X_SATYPE_COMP]: IPPROTO_COMP,
  [SADB_X_SATYPE_INT]: IPPROTO_INT,
};
export const PROTO_TO_SATYPE: Readonly<Record<number, number>> = Object.fromEntries(
  Object.entries(SATYPE_TO_PROTO).map(([s, p]) => [p, Number(s)]),
);
/** The short protocol names an SAID is written with (esp0x1234@192.0.2.1). */
export const PROTO_SAID_NAMES: Readonly<Record<number, string>> = {
  [IPPROTO_AH]: 'ah', [IPPROTO_ESP]: 'esp', [IPPROTO_IPIP]: 'tun', [IPPROTO_COMP]: 'comp',
  [IPPROTO_INT]: 'int',
};

// --- sadb_sa_state ---
export const SADB_SASTATE_LARVAL = 0;
export const SADB_SASTATE_MATURE = 1;
export const SADB_SASTATE_DYING = 2;
export const SADB_SASTATE_DEAD = 3;
export const SADB_SASTATE_MAX = 3;
export const SASTATE_NAMES: readonly string[] = ['LARVAL', 'MATURE', 'DYING', 'DEAD'];

// --- sadb_sa_flags ---
export const SADB_SAFLAGS_PFS = 1;
export const SADB_X_SAFLAGS_REPLACEFLOW = 2;
export const SADB_X_SAFLAGS_CLEARFLOW = 4;
export const SADB_X_SAFLAGS_INFLOW = 8;
export const SADB_X_SAFLAGS_POLICYONLY = 16;
export const SAFLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [SADB_SAFLAGS_PFS, 'PFS'],
  [SADB_X_SAFLAGS_REPLACEFLOW, 'REPLACEFLOW'],
  [SADB_X_SAFLAGS_CLEARFLOW, 'CLEARFLOW'],
  [SADB_X_SAFLAGS_INFLOW, 'INFLOW'],
  [SADB_X_SAFLAGS_POLICYONLY, 'POLICYONLY'],
];

// --- authentication algorithms (sadb_sa_auth) ---
export const SADB_AALG_NONE = 0;
export const SADB_AALG_MD5HMAC = 2;
export const SADB_AALG_SHA1HMAC = 3;
export const SADB_X_AALG_SHA2_256HMAC = 5;
export const SADB_X_AALG_SHA2_384HMAC = 6;
export const SADB_X_AALG_SHA2_512HMAC = 7;
export const SADB_X_AALG_RIPEMD160HMAC = 8;
export const SADB_X_AALG_NULL = 251;
export const SADB_X_AALG_SHA2_256HMAC_TRUNCBUG = 252;
export const AALG_NAMES: Readonly<Record<number, string>> = {
  0: 'NONE', 2: 'MD5HMAC', 3: 'SHA1HMAC', 5: 'SHA2_256HMAC', 6: 'SHA2_384HMAC',
  7: 'SHA2_512HMAC', 8: 'RIPEMD160HMAC', 251: 'NULL', 252: 'SHA2_256HMAC_TRUNCBUG',
};

// --- encryption algorithms (sadb_sa_encrypt) ---
export const SADB_EALG_NONE = 0;
export const SADB_EALG_DESCBC = 2;
export const SADB_EALG_3DESCBC = 3;
export const SADB_X_EALG_CASTCBC = 6;
export const SADB_X_EALG_BLOWFISHCBC = 7;
export const SADB_EALG_NULL = 11;
export const SADB_X_EALG_AESCBC = 12;
export const SADB_X_EALG_AESCTR = 13;
export const SADB_X_EALG_AES_CCM_ICV8 = 14;
export const SADB_X_EALG_AES_CCM_ICV12 = 15;
export const SADB_X_EALG_AES_CCM_ICV16 = 16;
export const SADB_X_EALG_AES_GCM_ICV8 = 18;
export const SADB_X_EALG_AES_GCM_ICV12 = 19;
export const SADB_X_EALG_AES_GCM_ICV16 = 20;
export const SADB_X_EALG_CAMELLIACBC = 22;
export const EALG_NAMES: Readonly<Record<number, string>> = {
  0: 'NONE', 2: 'DESCBC', 3: '3DESCBC', 6: 'CASTCBC', 7: 'BLOWFISHCBC', 11: 'NULL',
  12: 'AESCBC', 13: 'AESCTR', 14: 'AES_CCM_ICV8', 15: 'AES_CCM_ICV12', 16: 'AES_CCM_ICV16',
  18: 'AES_GCM_ICV8', 19: 'AES_GCM_ICV12', 20: 'AES_GCM_ICV16', 22: 'CAMELLIACBC',
};

// --- compression algorithms (carried in sadb_sa_encrypt for X_COMP SAs) ---
export const SADB_X_CALG_NONE = 0;
export const SADB_X_CALG_OUI = 1;
export const SADB_X_CALG_DEFLATE = 2;
export const SADB_X_CALG_LZS = 3;
export const SADB_X_CALG_LZJH = 4;
export const CALG_NAMES: Readonly<Record<number, string>> = {
  0: 'NONE', 1: 'OUI', 2: 'DEFLATE', 3: 'LZS', 4: 'LZJH',
};

// --- tunnel "algorithms" reported for X_IPIP in SUPPORTED_ENCRYPT ---
export const SADB_X_TALG_IPv4_in_IPv4 = 1;
export const SADB_X_TALG_IPv6_in_IPv4 = 2;
export const SADB_X_TALG_IPv4_in_IPv6 = 3;
export const SADB_X_TALG_IPv6_in_IPv6 = 4;
export const TALG_NAMES: Readonly<Record<number, string>> = {
  0: 'NONE', 1: 'IPv4_in_IPv4', 2: 'IPv6_in_IPv4', 3: 'IPv4_in_IPv6', 4: 'IPv6_in_IPv6',
};

// --- identity types ---
export const SADB_IDENTTYPE_RESERVED = 0;
export const SADB_IDENTTYPE_PREFIX = 1;
export const SADB_IDENTTYPE_FQDN = 2;
export const SADB_IDENTTYPE_USERFQDN = 3;
export const SADB_X_IDENTTYPE_CONNECTION = 4;
export const SADB_IDENTTYPE_MAX = 4;
export const IDENTTYPE_NAMES: readonly string[] = ['RESERVED', 'PREFIX', 'FQDN', 'USERFQDN', 'X_CONNECTION'];

// --- extension types (openswan 2.6 numbering, 1..32) ---
export const SADB_EXT_RESERVED = 0;
export const SADB_EXT_SA = 1;
export const SADB_EXT_LIFETIME_CURRENT = 2;
export const SADB_EXT_LIFETIME_HARD = 3;
export const SADB_EXT_LIFETIME_SOFT = 4;
export const SADB_EXT_ADDRESS_SRC = 5;
export const SADB_EXT_ADDRESS_DST = 6;
export const SADB_EXT_ADDRESS_PROXY = 7;
export const SADB_EXT_KEY_AUTH = 8;
export const SADB_EXT_KEY_ENCRYPT = 9;
export const SADB_EXT_IDENTITY_SRC = 10;
export const SADB_EXT_IDENTITY_DST = 11;
export const SADB_EXT_SENSITIVITY = 12;
export const SADB_EXT_PROPOSAL = 13;
export const SADB_EXT_SUPPORTED_AUTH = 14;
export const SADB_EXT_SUPPORTED_ENCRYPT = 15;
export const SADB_EXT_SPIRANGE = 16;
export const SADB_X_EXT_KMPRIVATE = 17;
export const SADB_X_EXT_SATYPE2 = 18;
export const SADB_X_EXT_SA2 = 19;
export const SADB_X_EXT_ADDRESS_DST2 = 20;
export const SADB_X_EXT_ADDRESS_SRC_FLOW = 21;
export const SADB_X_EXT_ADDRESS_DST_FLOW = 22;
export const SADB_X_EXT_ADDRESS_SRC_MASK = 23;
export const SADB_X_EXT_ADDRESS_DST_MASK = 24;
export const SADB_X_EXT_DEBUG = 25;
export const SADB_X_EXT_PROTOCOL = 26;
export const SADB_X_EXT_NAT_T_TYPE = 27;
export const SADB_X_EXT_NAT_T_SPORT = 28;
export const SADB_X_EXT_NAT_T_DPORT = 29;
export const SADB_X_EXT_NAT_T_OA = 30;
export const SADB_X_EXT_PLUMBIF = 31;
export const SADB_X_EXT_SAREF = 32;
export const SADB_EXT_MAX = 32;

export const EXT_TYPE_NAMES: readonly string[] = [
  'RESERVED', 'SA', 'LIFETIME_CURRENT', 'LIFETIME_HARD', 'LIFETIME_SOFT', 'ADDRESS_SRC',
  'ADDRESS_DST', 'ADDRESS_PROXY', 'KEY_AUTH', 'KEY_ENCRYPT', 'IDENTITY_SRC', 'IDENTITY_DST',
  'SENSITIVITY', 'PROPOSAL', 'SUPPORTED_AUTH', 'SUPPORTED_ENCRYPT', 'SPIRANGE', 'X_KMPRIVATE',
  'X_SATYPE2', 'X_SA2', 'X_ADDRESS_DST2', 'X_ADDRESS_SRC_FLOW', 'X_ADDRESS_DST_FLOW',
  'X_ADDRESS_SRC_MASK', 'X_ADDRESS_DST_MASK', 'X_DEBUG', 'X_PROTOCOL', 'X_NAT_T_TYPE',
  'X_NAT_T_SPORT', 'X_NAT_T_DPORT', 'X_NAT_T_OA', 'X_PLUMBIF', 'X_SAREF',
];

// --- NAT-T encapsulation types ---
export const ESPINUDP_WITH_NON_IKE = 1;
export const ESPINUDP_WITH_NON_ESP = 2;

// --- magic SPIs for shunt eroutes (SA type X_INT, protocol 61, destination 0.0.0.0 or ::) ---
export const SPI_PASS = 256;
export const SPI_DROP = 257;
export const SPI_REJECT = 258;
export const SPI_HOLD = 259;
export const SPI_TRAP = 260;
export const SPI_TRAPSUBNET = 261;
export const SHUNT_NAMES: Readonly<Record<number, string>> = {
  [SPI_PASS]: '%pass', [SPI_DROP]: '%drop', [SPI_REJECT]: '%reject', [SPI_HOLD]: '%hold',
  [SPI_TRAP]: '%trap', [SPI_TRAPSUBNET]: '%trapsubnet',
};

// --- virtual interface numbering (sadb_x_plumbif ifnum) ---
export const IPSECDEV_OFFSET = 48 * 1024;
export const MASTTRANSPORT_OFFSET = 40 * 1024;

/** Socket address families as Linux numbers them in sockaddr. */
export const AF_INET = 2;
export const AF_INET6 = 10;

/** Debug subsystems of SADB_X_DEBUG, in the order of struct sadb_x_debug. */
export const DEBUG_SUBSYSTEMS = [
  'tunnel', 'netlink', 'xform', 'eroute', 'spi', 'radij', 'esp', 'ah', 'rcv', 'pfkey',
  'ipcomp', 'verbose',
] as const;
export type DebugSubsystem = (typeof DEBUG_SUBSYSTEMS)[number];

/** A name for any number in one of the tables above, or the number itself. */
export function nameOf(table: Readonly<Record<number, string>> | readonly string[], n: number): string {
  const s = (table as Record<number, string>)[n];
  return s ?? String(n);
}

// ======================================================================================
// The KAME/Linux dialect (linux/pfkeyv2.h, linux/ipsec.h): the numbers that differ from
// KLIPS's. Where Linux's name is free in this file it is used as is (SADB_X_SPDADD,
// SADB_X_EXT_POLICY, SADB_X_SATYPE_IPCOMP, IPSEC_MODE_TUNNEL, ...); where KLIPS already
// uses the name for another number, the Linux constant carries a KAME_ prefix
// (KAME_SADB_X_NAT_T_NEW_MAPPING is 23 where KLIPS's SADB_X_NAT_T_NEW_MAPPING is 17).
// ======================================================================================

/** Which numbering a PF_KEY connection speaks: KLIPS's (openswan) or KAME's (Linux, BSD, ipsec-tools). */
export type Dialect = 'klips' | 'kame';

// --- sadb_msg_type 13..24 (KAME/Linux) ---
export const SADB_X_SPDUPDATE = 13;
export const SADB_X_SPDADD = 14;
export const SADB_X_SPDDELETE = 15;
export const SADB_X_SPDGET = 16;
export const SADB_X_SPDACQUIRE = 17;
export const SADB_X_SPDDUMP = 18;
export const SADB_X_SPDFLUSH = 19;
export const SADB_X_SPDSETIDX = 20;
export const SADB_X_SPDEXPIRE = 21;
export const SADB_X_SPDDELETE2 = 22;
export const KAME_SADB_X_NAT_T_NEW_MAPPING = 23;
export const SADB_X_MIGRATE = 24;
export const KAME_SADB_MAX = 24;

export const KAME_MSG_TYPE_NAMES: readonly string[] = [
  ...MSG_TYPE_NAMES.slice(0, 13),
  'X_SPDUPDATE', 'X_SPDADD', 'X_SPDDELETE', 'X_SPDGET', 'X_SPDACQUIRE', 'X_SPDDUMP', 'X_SPDFLUSH',
  'X_SPDSETIDX', 'X_SPDEXPIRE', 'X_SPDDELETE2', 'X_NAT_T_NEW_MAPPING', 'X_MIGRATE',
];

// --- sadb_msg_satype (KAME/Linux: 9 is IPCOMP, where KLIPS's 9 is IPIP and 10 COMP) ---
export const SADB_X_SATYPE_IPCOMP = 9;
export const KAME_SADB_SATYPE_MAX = 9;
export const KAME_SATYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'UNSPEC', 2: 'AH', 3: 'ESP', 5: 'RSVP', 6: 'OSPFV2', 7: 'RIPV2', 8: 'MIP', 9: 'X_IPCOMP',
};
/** The IP protocol of a KAME SA type (Linux's pfkey_satype2proto; UNSPEC is IPSEC_PROTO_ANY). */
export const KAME_SATYPE_TO_PROTO: Readonly<Record<number, number>> = {
  [SADB_SATYPE_AH]: IPPROTO_AH, [SADB_SATYPE_ESP]: IPPROTO_ESP, [SADB_X_SATYPE_IPCOMP]: IPPROTO_COMP,
};
/** The KAME SA type of an IP protocol (Linux's pfkey_proto2satype); IPIP and INT have none. */
export const PROTO_TO_KAME_SATYPE: Readonly<Record<number, number>> = {
  [IPPROTO_AH]: SADB_SATYPE_AH, [IPPROTO_ESP]: SADB_SATYPE_ESP, [IPPROTO_COMP]: SADB_X_SATYPE_IPCOMP,
};

// --- sadb_sa_flags Linux adds (high bits, clear of KLIPS's 1..16) ---
export const SADB_SAFLAGS_NOPMTUDISC = 0x20000000;
export const SADB_SAFLAGS_DECAP_DSCP = 0x40000000;
export const SADB_SAFLAGS_NOECN = 0x80000000;
/** The SA flags Linux keeps on an SA (the rest of a request's flags are dropped). */
export const KAME_SAFLAGS_KEPT = (SADB_SAFLAGS_NOPMTUDISC | SADB_SAFLAGS_DECAP_DSCP | SADB_SAFLAGS_NOECN) >>> 0;

// --- algorithms Linux numbers beyond KLIPS's tables ---
export const SADB_X_AALG_AES_XCBC_MAC = 9;
export const SADB_X_AALG_SM3_256HMAC = 10;
export const SADB_AALG_MAX = 251;
export const SADB_X_EALG_NULL_AES_GMAC = 23;
export const SADB_X_EALG_SM4CBC = 24;
export const SADB_X_EALG_SERPENTCBC = 252;
export const SADB_X_EALG_TWOFISHCBC = 253;
export const SADB_EALG_MAX = 253;
export const SADB_X_CALG_MAX = 4;

// --- extension types 18..26 (KAME/Linux; 1..17 are KLIPS's too) ---
export const SADB_X_EXT_POLICY = 18;
/** Linux's sadb_x_sa2 (mode, sequence, reqid): the same number as KLIPS's second sadb_sa. */
export const KAME_SADB_X_EXT_SA2 = 19;
export const KAME_SADB_X_EXT_NAT_T_TYPE = 20;
export const KAME_SADB_X_EXT_NAT_T_SPORT = 21;
export const KAME_SADB_X_EXT_NAT_T_DPORT = 22;
export const KAME_SADB_X_EXT_NAT_T_OA = 23;
export const SADB_X_EXT_SEC_CTX = 24;
export const SADB_X_EXT_KMADDRESS = 25;
export const SADB_X_EXT_FILTER = 26;
export const KAME_SADB_EXT_MAX = 26;

export const KAME_EXT_TYPE_NAMES: readonly string[] = [
  ...EXT_TYPE_NAMES.slice(0, 18),
  'X_POLICY', 'X_SA2', 'X_NAT_T_TYPE', 'X_NAT_T_SPORT', 'X_NAT_T_DPORT', 'X_NAT_T_OA', 'X_SEC_CTX',
  'X_KMADDRESS', 'X_FILTER',
];

// --- linux/ipsec.h ---
export const IPSEC_PORT_ANY = 0;
export const IPSEC_ULPROTO_ANY = 255;
export const IPSEC_PROTO_ANY = 255;

export const IPSEC_MODE_ANY = 0;
export const IPSEC_MODE_TRANSPORT = 1;
export const IPSEC_MODE_TUNNEL = 2;
export const IPSEC_MODE_BEET = 3;
export const IPSEC_MODE_NAMES: readonly string[] = ['any', 'transport', 'tunnel', 'beet'];

export const IPSEC_DIR_ANY = 0;
export const IPSEC_DIR_INBOUND = 1;
export const IPSEC_DIR_OUTBOUND = 2;
export const IPSEC_DIR_FWD = 3;
export const IPSEC_DIR_MAX = 4;
export const IPSEC_DIR_INVALID = 5;
export const IPSEC_DIR_NAMES: readonly string[] = ['any', 'in', 'out', 'fwd'];

export const IPSEC_POLICY_DISCARD = 0;
export const IPSEC_POLICY_NONE = 1;
export const IPSEC_POLICY_IPSEC = 2;
export const IPSEC_POLICY_ENTRUST = 3;
export const IPSEC_POLICY_BYPASS = 4;
export const IPSEC_POLICY_NAMES: readonly string[] = ['discard', 'none', 'ipsec', 'entrust', 'bypass'];

export const IPSEC_LEVEL_DEFAULT = 0;
export const IPSEC_LEVEL_USE = 1;
export const IPSEC_LEVEL_REQUIRE = 2;
export const IPSEC_LEVEL_UNIQUE = 3;
export const IPSEC_LEVEL_NAMES: readonly string[] = ['default', 'use', 'require', 'unique'];

/** reqids up to this are the key manager's to choose ("unique:N"); above, the kernel's. */
export const IPSEC_MANUAL_REQID_MAX = 0x3fff;
export const IPSEC_REPLAYWSIZE = 32;

/** Linux's templates per policy (XFRM_MAX_DEPTH): a seventh is ELOOP. */
export const XFRM_MAX_DEPTH = 6;

/** The identity types Linux defines (it has no X_CONNECTION). */
export const KAME_SADB_IDENTTYPE_MAX = 3;
