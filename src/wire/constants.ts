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
