/**
 * setkey's language (ipsec-tools 0.9.1, setkey(8)) read into the PF_KEY requests of the
 * KAME dialect that setkey would send for it, byte for byte: the statements `add`,
 * `get`, `getspi`, `delete`, `deleteall`, `flush`, `dump`, `spdadd`, `spdupdate`,
 * `spddelete`, `spddump`, `spdflush`, `exit`; the policy language of ipsec_set_policy(3)
 * after `-P`; and the ordering, defaults and quirks of setkey's message builders (an
 * encryption key of 0 bits for `-E null`, SADB_X_EXT_CYCSEQ in every SA's flags, the
 * `fwd` twin of an `in` policy, NAT-T ports defaulting to 4500, ...).
 *
 * A whole text is read before anything is built: `parseSetkey` returns every statement
 * or throws a SetkeyError naming the line and the token at fault, so a file with an
 * error sends nothing. What needs klipsd's answer is left to the caller: the key lengths
 * (`keyChecks`, judged against the REGISTER reply as libipsec's ipsec_check_keylen does)
 * and `deleteall` (a DUMP, then one DELETE per matching SA).
 *
 * Addresses are numeric IPv4 or IPv6 (no DNS, no service names). Where setkey's own
 * parser lets a mistake through (an SPI above 32 bits truncated, an address pair of two
 * families silently skipped), klips refuses it; docs/semantics.md lists these.
 */

import {
  AF_INET, AF_INET6, ESPINUDP_WITH_NON_ESP, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP,
  IPSEC_DIR_FWD, IPSEC_DIR_INBOUND, IPSEC_DIR_OUTBOUND, IPSEC_LEVEL_DEFAULT, IPSEC_LEVEL_REQUIRE,
  IPSEC_LEVEL_UNIQUE, IPSEC_LEVEL_USE, IPSEC_MODE_ANY, IPSEC_MODE_TRANSPORT, IPSEC_MODE_TUNNEL,
  IPSEC_POLICY_BYPASS, IPSEC_POLICY_DISCARD, IPSEC_POLICY_ENTRUST, IPSEC_POLICY_IPSEC,
  IPSEC_POLICY_NONE, IPSEC_ULPROTO_ANY,
  SADB_AALG_MD5HMAC, SADB_AALG_NONE, SADB_AALG_SHA1HMAC, SADB_ADD, SADB_DELETE, SADB_DUMP,
  SADB_EALG_3DESCBC, SADB_EALG_DESCBC, SADB_EALG_NONE, SADB_EALG_NULL, SADB_FLUSH, SADB_GET,
  SADB_GETSPI, SADB_SATYPE_AH, SADB_SATYPE_ESP, SADB_SATYPE_UNSPEC,
  SADB_EXT_ADDRESS_DST, SADB_EXT_ADDRESS_SRC, SADB_EXT_KEY_AUTH, SADB_EXT_KEY_ENCRYPT,
  SADB_EXT_LIFETIME_HARD, SADB_EXT_LIFETIME_SOFT, SADB_EXT_SA, SADB_EXT_SPIRANGE,
  SADB_X_AALG_AES_XCBC_MAC, SADB_X_AALG_NULL, SADB_X_AALG_RIPEMD160HMAC, SADB_X_AALG_SHA2_256HMAC,
  SADB_X_AALG_SHA2_384HMAC, SADB_X_AALG_SHA2_512HMAC, SADB_X_CALG_DEFLATE, SADB_X_CALG_LZS,
  SADB_X_CALG_OUI, SADB_X_EALG_AESCBC, SADB_X_EALG_AESCTR, SADB_X_EALG_AES_GCM_ICV16,
  SADB_X_EALG_BLOWFISHCBC, SADB_X_EALG_CAMELLIACBC, SADB_X_EALG_CASTCBC, SADB_X_EALG_TWOFISHCBC,
  SADB_X_EXT_POLICY, SADB_X_EXT_SEC_CTX, SADB_X_SATYPE_IPCOMP, SADB_X_SPDADD, SADB_X_SPDDELETE,
  SADB_X_SPDDUMP, SADB_X_SPDFLUSH, SADB_X_SPDUPDATE,
  KAME_SADB_X_EXT_NAT_T_DPORT, KAME_SADB_X_EXT_NAT_T_OA, KAME_SADB_X_EXT_NAT_T_SPORT,
  KAME_SADB_X_EXT_NAT_T_TYPE, KAME_SADB_X_EXT_SA2,
  formatAddress, parseIPv4, parseIPv6,
  type Address, type IpsecRequest, type KameMessageInput, type Lifetime, type Policy, type Sockaddr,
} from '../wire/index.js';

// ======================================================================================
// Facts: setkey's and libipsec's numbers that Linux's headers do not carry
// ======================================================================================

/** KAME's keyed-MD5 and keyed-SHA1 (ipsec-tools' include-glibc/net/pfkeyv2.h). */
export const SADB_X_AALG_MD5 = 249;
export const SADB_X_AALG_SHA = 250;

/** KAME's sadb_sa_flags (ipsec-tools' net/pfkeyv2.h); Linux keeps none of them. */
export const SADB_X_EXT_OLD = 0x0001;
export const SADB_X_EXT_IV4B = 0x0010;
export const SADB_X_EXT_DERIV = 0x0020;
export const SADB_X_EXT_CYCSEQ = 0x0040;
export const SADB_X_EXT_RAWCPI = 0x0080;
export const SADB_X_EXT_PSEQ = 0x0000;
export const SADB_X_EXT_PRAND = 0x0100;
export const SADB_X_EXT_PZERO = 0x0200;

/** libipsec's policy priorities (libpfkey.h). */
export const PRIORITY_LOW = 0xc0000000;
export const PRIORITY_DEFAULT = 0x80000000;
export const PRIORITY_HIGH = 0x40000000;
const PRIORITY_OFFSET_POSITIVE_MAX = 0x3fffffff;
const PRIORITY_OFFSET_NEGATIVE_MAX = 0x40000000;

/** setkey's NAT-T port (its only NAT-T type is UDP_ENCAP_ESPINUDP: wire's ESPINUDP_WITH_NON_ESP). */
const DEFAULT_NATT_PORT = 4500;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_GRE = 47;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_MH = 135;

/**
 * Protocol names as getprotobyname(3) finds them in Debian's /etc/protocols (netbase),
 * first name then aliases, plus the two setkey adds itself (icmp6, ip4).
 */
export const PROTOCOLS: ReadonlyArray<readonly [number, ...string[]]> = [
  [0, 'ip', 'IP'], [1, 'icmp', 'ICMP'], [2, 'igmp', 'IGMP'], [3, 'ggp', 'GGP'], [4, 'ipencap', 'IP-ENCAP'],
  [5, 'st', 'ST'], [6, 'tcp', 'TCP'], [8, 'egp', 'EGP'], [9, 'igp', 'IGP'], [12, 'pup', 'PUP'],
  [17, 'udp', 'UDP'], [20, 'hmp', 'HMP'], [22, 'xns-idp', 'XNS-IDP'], [27, 'rdp', 'RDP'],
  [29, 'iso-tp4', 'ISO-TP4'], [33, 'dccp', 'DCCP'], [36, 'xtp', 'XTP'], [37, 'ddp', 'DDP'],
  [38, 'idpr-cmtp', 'IDPR-CMTP'], [41, 'ipv6', 'IPv6'], [43, 'ipv6-route', 'IPv6-Route'],
  [44, 'ipv6-frag', 'IPv6-Frag'], [45, 'idrp', 'IDRP'], [46, 'rsvp', 'RSVP'], [47, 'gre', 'GRE'],
  [50, 'esp', 'IPSEC-ESP'], [51, 'ah', 'IPSEC-AH'], [57, 'skip', 'SKIP'], [58, 'ipv6-icmp', 'IPv6-ICMP'],
  [59, 'ipv6-nonxt', 'IPv6-NoNxt'], [60, 'ipv6-opts', 'IPv6-Opts'], [73, 'rspf', 'RSPF', 'CPHB'],
  [81, 'vmtp', 'VMTP'], [88, 'eigrp', 'EIGRP'], [89, 'ospf', 'OSPFIGP'], [93, 'ax.25', 'AX.25'],
  [94, 'ipip', 'IPIP'], [97, 'etherip', 'ETHERIP'], [98, 'encap', 'ENCAP'], [103, 'pim', 'PIM'],
  [108, 'ipcomp', 'IPCOMP'], [112, 'vrrp', 'VRRP'], [115, 'l2tp', 'L2TP'], [124, 'isis', 'ISIS'],
  [132, 'sctp', 'SCTP'], [133, 'fc', 'FC'], [135, 'mobility-header', 'Mobility-Header'],
  [136, 'udplite', 'UDPLite'], [137, 'mpls-in-ip', 'MPLS-in-IP'], [138, 'manet'], [139, 'hip', 'HIP'],
  [140, 'shim6', 'Shim6'], [141, 'wesp', 'WESP'], [142, 'rohc', 'ROHC'], [143, 'ethernet', 'Ethernet'],
];
const PROTOCOL_BY_NAME: ReadonlyMap<string, number> = new Map([
  ...PROTOCOLS.flatMap(([n, ...names]) => names.map((s) => [s, n] as [string, number])),
  ['icmp6', IPPROTO_ICMPV6], ['ip4', 4],
]);

/** How an algorithm name takes its key (token.l's ALG_ENC, ALG_ENC_NOKEY, ...). */
type KeyUse = 'key' | 'nokey' | 'old' | 'deriv' | '32iv';
interface AlgName { id: number; use: KeyUse }

/** `-E` names (token.l's S_ENCALG), with Linux's numbers; aes-gcm-16 is klips's addition. */
export const ENCRYPT_ALGORITHMS: Readonly<Record<string, AlgName>> = {
  'des-cbc': { id: SADB_EALG_DESCBC, use: 'key' },
  '3des-cbc': { id: SADB_EALG_3DESCBC, use: 'key' },
  null: { id: SADB_EALG_NULL, use: 'nokey' },
  simple: { id: SADB_EALG_NULL, use: 'old' },
  'blowfish-cbc': { id: SADB_X_EALG_BLOWFISHCBC, use: 'key' },
  'cast128-cbc': { id: SADB_X_EALG_CASTCBC, use: 'key' },
  'des-deriv': { id: SADB_EALG_DESCBC, use: 'deriv' },
  'des-32iv': { id: SADB_EALG_DESCBC, use: '32iv' },
  'twofish-cbc': { id: SADB_X_EALG_TWOFISHCBC, use: 'key' },
  'aes-cbc': { id: SADB_X_EALG_AESCBC, use: 'key' },
  'rijndael-cbc': { id: SADB_X_EALG_AESCBC, use: 'key' },
  'aes-ctr': { id: SADB_X_EALG_AESCTR, use: 'key' },
  'camellia-cbc': { id: SADB_X_EALG_CAMELLIACBC, use: 'key' },
  'aes-gcm-16': { id: SADB_X_EALG_AES_GCM_ICV16, use: 'key' },
};

/** `-A` names (token.l's S_AUTHALG). tcp-md5 is BSD's alone: Linux has no number for it. */
export const AUTH_ALGORITHMS: Readonly<Record<string, AlgName>> = {
  'hmac-md5': { id: SADB_AALG_MD5HMAC, use: 'key' },
  'hmac-sha1': { id: SADB_AALG_SHA1HMAC, use: 'key' },
  'keyed-md5': { id: SADB_X_AALG_MD5, use: 'key' },
  'keyed-sha1': { id: SADB_X_AALG_SHA, use: 'key' },
  'hmac-sha2-256': { id: SADB_X_AALG_SHA2_256HMAC, use: 'key' },
  'hmac-sha256': { id: SADB_X_AALG_SHA2_256HMAC, use: 'key' },
  'hmac-sha2-384': { id: SADB_X_AALG_SHA2_384HMAC, use: 'key' },
  'hmac-sha384': { id: SADB_X_AALG_SHA2_384HMAC, use: 'key' },
  'hmac-sha2-512': { id: SADB_X_AALG_SHA2_512HMAC, use: 'key' },
  'hmac-sha512': { id: SADB_X_AALG_SHA2_512HMAC, use: 'key' },
  'hmac-ripemd160': { id: SADB_X_AALG_RIPEMD160HMAC, use: 'key' },
  'aes-xcbc-mac': { id: SADB_X_AALG_AES_XCBC_MAC, use: 'key' },
  null: { id: SADB_X_AALG_NULL, use: 'nokey' },
};

/** `-C` names. */
export const COMP_ALGORITHMS: Readonly<Record<string, number>> = {
  oui: SADB_X_CALG_OUI, deflate: SADB_X_CALG_DEFLATE, lzs: SADB_X_CALG_LZS,
};

/** token.l's keywords in its INITIAL state: a word spelled so is never an address or a STRING. */
const KEYWORDS = new Set([
  'add', 'delete', 'deleteall', 'get', 'getspi', 'flush', 'dump', 'exit', 'quit', 'bye',
  'spdadd', 'spdupdate', 'spddelete', 'spddump', 'spdflush', 'tagged',
  'ah', 'esp', 'ah-old', 'esp-old', 'esp-udp', 'ipcomp', 'tcp', 'oui', 'deflate', 'lzs',
  'transport', 'tunnel', 'random-pad', 'seq-pad', 'zero-pad', 'nocyclic-seq', 'any',
]);

// ======================================================================================
// Errors
// ======================================================================================

/**
 * A statement setkey would refuse: the line, the problem and the token it was found at,
 * in setkey's words ("syntax error at `foo'"), then what klips can say beyond them.
 */
export class SetkeyError extends Error {
  constructor(readonly line: number, readonly why: string, readonly token?: string, readonly detail?: string) {
    super(`${why}${token === undefined ? '' : ` at \`${token}'`}${detail ? ` (${detail})` : ''}`);
    this.name = 'SetkeyError';
  }
}

// ======================================================================================
// Lexer (token.l's tokens; keywords and numbers are told apart by the parser)
// ======================================================================================

type TokKind = 'word' | 'quoted' | 'flag' | 'policy' | '/' | '[' | ']' | ';' | 'eof';
interface Tok { kind: TokKind; text: string; line: number }

const FLAGS = new Set(['-P', '-A', '-E', '-C', '-R', '-m', '-u', '-f', '-r', '-lh', '-ls', '-bh', '-bs', '-ctx']);
const WORD_START = /[A-Za-z0-9:]/;
const WORD_CHAR = /[A-Za-z0-9:%.-]/;
/** What may follow -P up to the `;` (token.l's S_PL pattern). */
const POLICY_CHAR = /[a-zA-Z0-9:.%\-+_/ \n\t\][]/;

function lex(text: string, firstLine: number): Tok[] {
  const toks: Tok[] = [];
  let line = firstLine;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') { line++; i++; continue; }
    if (c === ' ' || c === '\t' || c === '\r') { i++; continue; }
    if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++;
      continue;
    }
    if (c === ';' || c === '/' || c === '[' || c === ']') {
      toks.push({ kind: c, text: c, line });
      i++;
      continue;
    }
    if (c === '"') {
      const end = text.indexOf('"', i + 1);
      if (end < 0) throw new SetkeyError(line, 'Syntax error', '"');
      toks.push({ kind: 'quoted', text: text.slice(i + 1, end), line });
      for (let j = i; j < end; j++) if (text[j] === '\n') line++;
      i = end + 1;
      continue;
    }
    if (c === '-') {
      let j = i + 1;
      while (j < text.length && /[A-Za-z0-9]/.test(text[j])) j++;
      const flag = text.slice(i, j);
      // token.l has no rule for another hyphen: its catch-all refuses the `-` itself.
      if (!FLAGS.has(flag) && !/^-[n46]+$/.test(flag)) throw new SetkeyError(line, 'Syntax error', '-');
      toks.push({ kind: 'flag', text: flag, line });
      i = j;
      if (flag === '-P') {
        // Everything up to the `;` is the policy, for ipsec_set_policy.
        const at = line;
        let k = i;
        while (k < text.length && text[k] !== ';') {
          if (!POLICY_CHAR.test(text[k])) throw new SetkeyError(line, 'Syntax error', text[k]);
          if (text[k] === '\n') line++;
          k++;
        }
        if (k > i) toks.push({ kind: 'policy', text: text.slice(i, k), line: at });
        i = k;
      }
      continue;
    }
    if (WORD_START.test(c)) {
      let j = i + 1;
      while (j < text.length && WORD_CHAR.test(text[j])) j++;
      // token.l's [0-9,]+ (an ICMP type,code) wins when it is the longer match.
      let k = i;
      while (k < text.length && /[0-9,]/.test(text[k])) k++;
      const end = k > j ? k : j;
      toks.push({ kind: 'word', text: text.slice(i, end), line });
      i = end;
      continue;
    }
    if (c === ',') {
      let k = i;
      while (k < text.length && /[0-9,]/.test(text[k])) k++;
      toks.push({ kind: 'word', text: text.slice(i, k), line });
      i = k;
      continue;
    }
    throw new SetkeyError(line, 'Syntax error', c);
  }
  toks.push({ kind: 'eof', text: '', line });
  return toks;
}

const isDec = (s: string) => /^[0-9]+$/.test(s);
const isHex = (s: string) => /^0[xX][0-9a-fA-F]+$/.test(s);
/** A word the parser takes as STRING: no keyword, no number. */
const isString = (t: Tok) => t.kind === 'word' && !KEYWORDS.has(t.text) && !isDec(t.text) && !isHex(t.text);

// ======================================================================================
// Statements
// ======================================================================================

/** A key length to judge against klipsd's REGISTER reply (libipsec's ipsec_check_keylen). */
export interface KeyCheck {
  supported: 'auth' | 'encrypt';
  alg: number;
  bits: number;
  line: number;
  /** The token setkey names in the error (the key, or the algorithm when it takes none). */
  token: string;
}

interface StatementBase {
  /** The line the statement starts on. */
  line: number;
  /** The command word (add, spdadd, ...). */
  command: string;
  /** setkey's warnings (printed, not failures). */
  warnings: string[];
}

/** Requests to send in order, each answered before the next. */
export interface SendStatement extends StatementBase {
  kind: 'send';
  requests: KameMessageInput[];
  keyChecks: KeyCheck[];
  /** spdadd: the priority asked for, which klipsd's reply should repeat (setkey warns otherwise). */
  priority?: number;
}

/** deleteall: a DUMP of the SA type, then a DELETE of each SA between the two addresses. */
export interface DeleteAllStatement extends StatementBase {
  kind: 'deleteall';
  dump: KameMessageInput;
  satype: number;
  src: Address;
  dst: Address;
  /** The DELETE for one SPI found. */
  deleteFor(spi: number): KameMessageInput;
}

export interface ExitStatement extends StatementBase {
  kind: 'exit';
}

export type Statement = SendStatement | DeleteAllStatement | ExitStatement;

export interface ParseOptions {
  /** The line number of the text's first line (default 1). */
  firstLine?: number;
  /**
   * setkey's -r (the default on Linux) sends an `fwd` twin of each `in` policy; -k
   * (false) does not.
   */
  rfcMode?: boolean;
}

/** What an SA statement's options (extension_spec, algorithm_spec) set: parse.y's p_* variables. */
interface SaParams {
  spi: number;
  flags: number;
  auth: number;
  encrypt: number;
  replay: number;
  mode: number;
  reqid: number;
  keyEncrypt?: Uint8Array;
  keyAuth?: Uint8Array;
  ltHard: number;
  ltSoft: number;
  lbHard: bigint;
  lbSoft: bigint;
  secCtx?: { doi: number; alg: number; ctx: Uint8Array };
  natt?: { oa?: Address };
}

const newSaParams = (): SaParams => ({
  spi: 0, flags: SADB_X_EXT_CYCSEQ, auth: SADB_AALG_NONE, encrypt: SADB_EALG_NONE, replay: 0,
  mode: IPSEC_MODE_ANY, reqid: 0, ltHard: 0, ltSoft: 0, lbHard: 0n, lbSoft: 0n,
});

const fullPrefix = (family: number) => (family === AF_INET ? 32 : 128);

/** A header with setkey's fields: seq 0, our pid. */
const header = (type: number, satype: number, pid: number) => ({ type, satype, seq: 0, pid });

function lifetime(bytes: bigint, addtime: number): Lifetime {
  return { allocations: 0, bytes, addtime: BigInt(addtime), usetime: 0n };
}

/** The address extension of an SA message: any upper protocol, a host prefix. */
const saAddress = (a: Address): Address => ({ ...a, proto: IPSEC_ULPROTO_ANY, prefixlen: fullPrefix(a.family) });

/** setkeymsg_add: ADD and GETSPI, extensions in setkey's order. */
function addMessage(type: number, satype: number, p: SaParams, src: Address, dst: Address, pid: number): KameMessageInput {
  const m: KameMessageInput = { header: header(type, satype, pid), dialect: 'kame' };
  const order: number[] = [];
  if (satype !== SADB_X_SATYPE_IPCOMP && p.keyEncrypt) {
    m.keyEncrypt = { bits: p.keyEncrypt.length * 8, key: p.keyEncrypt };
    order.push(SADB_EXT_KEY_ENCRYPT);
  }
  if (p.keyAuth) {
    m.keyAuth = { bits: p.keyAuth.length * 8, key: p.keyAuth };
    order.push(SADB_EXT_KEY_AUTH);
  }
  if (p.ltHard !== 0 || p.lbHard !== 0n) {
    m.lifetimeHard = lifetime(p.lbHard, p.ltHard);
    order.push(SADB_EXT_LIFETIME_HARD);
  }
  if (p.ltSoft !== 0 || p.lbSoft !== 0n) {
    m.lifetimeSoft = lifetime(p.lbSoft, p.ltSoft);
    order.push(SADB_EXT_LIFETIME_SOFT);
  }
  if (p.secCtx) {
    m.secCtx = p.secCtx;
    order.push(SADB_X_EXT_SEC_CTX);
  }
  // SPI 0 lets the kernel choose: no range.
  if (type === SADB_GETSPI && p.spi !== 0) {
    m.spirange = { min: p.spi, max: p.spi };
    order.push(SADB_EXT_SPIRANGE);
  }
  m.sa = { spi: p.spi, replay: p.replay, state: 0, auth: p.auth, encrypt: p.encrypt, flags: p.flags };
  m.xSa2 = { mode: p.mode, sequence: 0, reqid: p.reqid };
  order.push(SADB_EXT_SA, KAME_SADB_X_EXT_SA2);
  if (p.natt) {
    m.natTType = { type: ESPINUDP_WITH_NON_ESP };
    order.push(KAME_SADB_X_EXT_NAT_T_TYPE);
    if (p.natt.oa) {
      m.natTOa = saAddress(p.natt.oa);
      order.push(KAME_SADB_X_EXT_NAT_T_OA);
    }
  }
  m.addressSrc = saAddress(src);
  m.addressDst = saAddress(dst);
  order.push(SADB_EXT_ADDRESS_SRC, SADB_EXT_ADDRESS_DST);
  if (p.natt) {
    m.natTSport = { port: src.port || DEFAULT_NATT_PORT };
    m.natTDport = { port: dst.port || DEFAULT_NATT_PORT };
    order.push(KAME_SADB_X_EXT_NAT_T_SPORT, KAME_SADB_X_EXT_NAT_T_DPORT);
  }
  m.extOrder = order;
  return m;
}

/** setkeymsg_addr: GET and DELETE (SA, X_SA2, the two addresses). */
function addrMessage(type: number, satype: number, p: SaParams, src: Address, dst: Address, pid: number): KameMessageInput {
  return {
    header: header(type, satype, pid),
    dialect: 'kame',
    sa: { spi: p.spi, replay: p.replay, state: 0, auth: p.auth, encrypt: p.encrypt, flags: p.flags },
    xSa2: { mode: p.mode, sequence: 0, reqid: p.reqid },
    addressSrc: saAddress(src),
    addressDst: saAddress(dst),
    extOrder: [SADB_EXT_SA, KAME_SADB_X_EXT_SA2, SADB_EXT_ADDRESS_SRC, SADB_EXT_ADDRESS_DST],
  };
}

/** setkeymsg_spdaddr: X_POLICY, the selector's addresses, a security context. */
function spdMessage(type: number, policy: Policy, src: Address, dst: Address, secCtx: SaParams['secCtx'], pid: number): KameMessageInput {
  const m: KameMessageInput = {
    header: header(type, SADB_SATYPE_UNSPEC, pid),
    dialect: 'kame',
    policy,
    addressSrc: src,
    addressDst: dst,
    extOrder: [SADB_X_EXT_POLICY, SADB_EXT_ADDRESS_SRC, SADB_EXT_ADDRESS_DST],
  };
  if (secCtx) {
    m.secCtx = secCtx;
    m.extOrder!.push(SADB_X_EXT_SEC_CTX);
  }
  return m;
}

/**
 * The `fwd` twin setkey sends after an `in` policy on Linux: the same message with
 * direction fwd, and a first template of level unique made require with reqid 0.
 */
function fwdTwin(m: KameMessageInput): KameMessageInput {
  const p = m.policy!;
  const requests = p.requests.map((r, i) => (i === 0 && r.level === IPSEC_LEVEL_UNIQUE ? { ...r, level: IPSEC_LEVEL_REQUIRE, reqid: 0 } : r));
  return { ...m, policy: { ...p, dir: IPSEC_DIR_FWD, requests } };
}

// ======================================================================================
// Parser (parse.y's grammar)
// ======================================================================================

class Parser {
  private i = 0;
  /** -4 / -6 of the statement being read (parse.y's p_aifamily). */
  private family = 0;

  constructor(private readonly toks: Tok[], private readonly pid: number, private readonly rfcMode: boolean) {}

  private peek(): Tok {
    return this.toks[this.i];
  }

  private next(): Tok {
    const t = this.toks[this.i];
    if (t.kind !== 'eof') this.i++;
    return t;
  }

  private syntax(t: Tok): never {
    throw new SetkeyError(t.line, 'syntax error', t.text);
  }

  private isWord(t: Tok, ...words: string[]): boolean {
    return t.kind === 'word' && words.includes(t.text);
  }

  private expectEnd(): void {
    const t = this.next();
    if (t.kind !== ';') this.syntax(t);
  }

  private dec(t: Tok): bigint {
    if (t.kind !== 'word' || !isDec(t.text)) this.syntax(t);
    return BigInt(t.text);
  }

  /** A DECSTRING of at most `max`. */
  private decUpTo(max: number, what: string): number {
    const t = this.next();
    const v = this.dec(t);
    if (v > BigInt(max)) throw new SetkeyError(t.line, `${what} too big`, t.text);
    return Number(v);
  }

  statements(): Statement[] {
    const out: Statement[] = [];
    while (this.peek().kind !== 'eof') out.push(this.statement());
    return out;
  }

  private statement(): Statement {
    const t = this.next();
    this.family = 0;
    const base = { line: t.line, command: t.text, warnings: [] as string[] };
    if (t.kind !== 'word') this.syntax(t);
    switch (t.text) {
      case 'add': case 'getspi': case 'get': case 'delete':
        return this.saCommand(t.text, base);
      case 'deleteall':
        return this.deleteAll(base);
      case 'flush': case 'dump': {
        const satype = this.protocolSpec(newSaParams());
        this.expectEnd();
        const type = t.text === 'flush' ? SADB_FLUSH : SADB_DUMP;
        return { kind: 'send', ...base, requests: [{ header: header(type, satype, this.pid), dialect: 'kame' }], keyChecks: [] };
      }
      case 'spddump': case 'spdflush':
        this.expectEnd();
        return {
          kind: 'send', ...base, keyChecks: [],
          requests: [{ header: header(t.text === 'spddump' ? SADB_X_SPDDUMP : SADB_X_SPDFLUSH, SADB_SATYPE_UNSPEC, this.pid), dialect: 'kame' }],
        };
      case 'spdadd': case 'spdupdate': case 'spddelete':
        return this.spdCommand(t.text, base);
      case 'exit': case 'quit': case 'bye':
        this.expectEnd();
        return { kind: 'exit', ...base };
      default:
        return this.syntax(t);
    }
  }

  /** ipaddropts: -4, -6, -n (numeric, which klips's addresses always are). */
  private addressOptions(): void {
    while (this.peek().kind === 'flag' && /^-[n46]+$/.test(this.peek().text)) {
      for (const c of this.next().text.slice(1)) {
        if (c === '4') this.family = AF_INET;
        else if (c === '6') this.family = AF_INET6;
      }
    }
  }

  /** A numeric address (with an optional %scope number for IPv6) and port, or setkey's getaddrinfo error. */
  private address(t: Tok, port: number): Address {
    if (!isString(t)) this.syntax(t);
    let text = t.text;
    let scopeId = 0;
    const pct = text.indexOf('%');
    if (pct >= 0) {
      const scope = text.slice(pct + 1);
      if (!/^[0-9]+$/.test(scope)) throw new SetkeyError(t.line, 'Name or service not known', t.text, 'interface names are not resolved: give the scope as a number');
      scopeId = Number(scope);
      text = text.slice(0, pct);
    }
    const v4 = pct < 0 ? parseIPv4(text) : undefined;
    const v6 = v4 ? undefined : parseIPv6(text);
    if (!v4 && !v6) throw new SetkeyError(t.line, 'Name or service not known', t.text, 'klips setkey takes numeric addresses only');
    const family = v4 ? AF_INET : AF_INET6;
    if (this.family !== 0 && this.family !== family) throw new SetkeyError(t.line, 'Address family for hostname not supported', t.text);
    const a: Address = { proto: IPSEC_ULPROTO_ANY, prefixlen: fullPrefix(family), family, port, addr: formatAddress(family, (v4 ?? v6)!) };
    if (family === AF_INET6) {
      a.flowinfo = 0;
      a.scopeId = scopeId;
    }
    return a;
  }

  /** portstr: [any], [N]; nothing is port 0. Service names are not looked up. */
  private port(): number {
    if (this.peek().kind !== '[') return 0;
    this.next();
    const t = this.next();
    let port = 0;
    if (this.isWord(t, 'any')) port = 0;
    else if (t.kind === 'word' && isDec(t.text)) {
      if (BigInt(t.text) > 65535n) throw new SetkeyError(t.line, 'Servname not supported for ai_socktype', t.text);
      port = Number(t.text);
    } else if (isString(t)) {
      throw new SetkeyError(t.line, 'Servname not supported for ai_socktype', t.text, 'klips setkey takes port numbers only');
    } else this.syntax(t);
    const close = this.next();
    if (close.kind !== ']') this.syntax(close);
    return port;
  }

  /** protocol_spec: the SA type (and what esp-old, ah-old, esp-udp set). */
  private protocolSpec(p: SaParams): number {
    const t = this.peek();
    if (t.kind !== 'word') return SADB_SATYPE_UNSPEC;
    switch (t.text) {
      case 'esp': case 'esp-old': case 'ah': case 'ah-old':
        this.next();
        if (t.text.endsWith('-old')) p.flags |= SADB_X_EXT_OLD;
        else p.flags &= ~SADB_X_EXT_OLD;
        return t.text.startsWith('esp') ? SADB_SATYPE_ESP : SADB_SATYPE_AH;
      case 'ipcomp':
        this.next();
        return SADB_X_SATYPE_IPCOMP;
      case 'esp-udp': {
        this.next();
        p.flags &= ~SADB_X_EXT_OLD;
        p.natt = {};
        if (isString(this.peek())) p.natt.oa = this.address(this.next(), 0);
        return SADB_SATYPE_ESP;
      }
      case 'tcp':
        throw new SetkeyError(t.line, 'TCP-MD5 SAs are not supported on Linux', t.text);
      default:
        return SADB_SATYPE_UNSPEC;
    }
  }

  private spi(p: SaParams): void {
    const t = this.next();
    let v: bigint;
    if (t.kind === 'word' && isDec(t.text)) v = BigInt(t.text);
    else if (t.kind === 'word' && isHex(t.text)) v = BigInt(t.text);
    else return this.syntax(t);
    if (v > 0xffffffffn) throw new SetkeyError(t.line, 'SPI too big.', t.text);
    p.spi = Number(v);
  }

  /** extension_spec: -f, -m, -u, -r, -lh, -ls, -bh, -bs, -ctx, in any number and order. */
  private extensions(p: SaParams): void {
    for (;;) {
      const t = this.peek();
      if (t.kind !== 'flag') return;
      switch (t.text) {
        case '-f': {
          this.next();
          const w = this.next();
          const pad: Record<string, number> = { 'random-pad': SADB_X_EXT_PRAND, 'seq-pad': SADB_X_EXT_PSEQ, 'zero-pad': SADB_X_EXT_PZERO };
          if (this.isWord(w, 'nocyclic-seq')) p.flags &= ~SADB_X_EXT_CYCSEQ;
          else if (w.kind === 'word' && w.text in pad) p.flags |= pad[w.text];
          else this.syntax(w);
          break;
        }
        case '-m': {
          this.next();
          const w = this.next();
          const modes: Record<string, number> = { transport: IPSEC_MODE_TRANSPORT, tunnel: IPSEC_MODE_TUNNEL, any: IPSEC_MODE_ANY };
          if (w.kind !== 'word' || !(w.text in modes)) this.syntax(w);
          p.mode = modes[w.text];
          break;
        }
        case '-u':
          this.next();
          p.reqid = this.decUpTo(0xffffffff, 'reqid');
          break;
        case '-r': {
          this.next();
          if (p.flags & SADB_X_EXT_OLD) throw new SetkeyError(t.line, 'replay prevention cannot be used with ah/esp-old', this.peek().text);
          p.replay = this.decUpTo(255, 'replay window');
          break;
        }
        case '-lh': this.next(); p.ltHard = this.decUpTo(Number.MAX_SAFE_INTEGER, 'lifetime'); break;
        case '-ls': this.next(); p.ltSoft = this.decUpTo(Number.MAX_SAFE_INTEGER, 'lifetime'); break;
        case '-bh': this.next(); p.lbHard = this.lifeBytes(); break;
        case '-bs': this.next(); p.lbSoft = this.lifeBytes(); break;
        case '-ctx': this.next(); p.secCtx = this.securityContext(); break;
        default: return;
      }
    }
  }

  private lifeBytes(): bigint {
    const t = this.next();
    const v = this.dec(t);
    if (v > 0xffffffffffffffffn) throw new SetkeyError(t.line, 'byte lifetime too big', t.text);
    return v;
  }

  /** -ctx DOI ALG "context": the context is sent with its NUL. */
  private securityContext(): SaParams['secCtx'] {
    const doi = this.decUpTo(255, 'security context doi');
    const alg = this.decUpTo(255, 'security context algorithm');
    const s = this.next();
    if (s.kind !== 'quoted') this.syntax(s);
    const ctx = new Uint8Array(s.text.length + 1);
    ctx.set(Buffer.from(s.text, 'latin1'));
    // setkey leaves the context out when its doi is 0.
    return doi === 0 ? undefined : { doi, alg, ctx };
  }

  /** key_string: "text" (its bytes) or 0x hex (an odd digit count gives a leading nibble). */
  private key(): { bytes: Uint8Array; token: string } {
    const t = this.next();
    if (t.kind === 'quoted') return { bytes: new Uint8Array(Buffer.from(t.text, 'latin1')), token: t.text };
    if (t.kind === 'word' && isHex(t.text)) {
      const digits = t.text.slice(2);
      return { bytes: new Uint8Array(Buffer.from(digits.length % 2 ? `0${digits}` : digits, 'hex')), token: t.text };
    }
    return this.syntax(t);
  }

  /** algorithm_spec of add: -E alg key [-A alg key] | -A alg key | -C alg [-R]. */
  private algorithms(p: SaParams, checks: KeyCheck[], warnings: string[]): void {
    const t = this.next();
    if (t.kind === 'flag' && t.text === '-E') {
      this.encryption(p, checks, warnings);
      if (this.peek().kind === 'flag' && this.peek().text === '-A') {
        this.next();
        this.authentication(p, checks);
      }
    } else if (t.kind === 'flag' && t.text === '-A') {
      this.authentication(p, checks);
    } else if (t.kind === 'flag' && t.text === '-C') {
      const w = this.next();
      if (w.kind !== 'word' || !(w.text in COMP_ALGORITHMS)) this.syntax(w);
      p.encrypt = COMP_ALGORITHMS[w.text];
      if (this.peek().kind === 'flag' && this.peek().text === '-R') {
        this.next();
        p.flags |= SADB_X_EXT_RAWCPI;
      }
    } else {
      this.syntax(t);
    }
  }

  private encryption(p: SaParams, checks: KeyCheck[], warnings: string[]): void {
    const w = this.next();
    const alg = w.kind === 'word' ? ENCRYPT_ALGORITHMS[w.text] : undefined;
    if (!alg) return this.syntax(w);
    p.encrypt = alg.id;
    let key: { bytes: Uint8Array; token: string } = { bytes: new Uint8Array(0), token: w.text };
    switch (alg.use) {
      case 'key':
        key = this.key();
        break;
      case 'nokey':
        break;
      case 'old':
        warnings.push(`WARNING: obsolete algorithm at \`${w.text}'`);
        break;
      case 'deriv':
        key = this.key();
        if (p.flags & SADB_X_EXT_OLD) throw new SetkeyError(w.line, 'algorithm mismatched', key.token);
        p.flags |= SADB_X_EXT_DERIV;
        break;
      case '32iv':
        key = this.key();
        if (!(p.flags & SADB_X_EXT_OLD)) throw new SetkeyError(w.line, 'algorithm mismatched', key.token);
        p.flags |= SADB_X_EXT_IV4B;
        break;
    }
    // The key extension goes out even with no key bytes (-E null: a 0-bit key).
    p.keyEncrypt = key.bytes;
    checks.push({ supported: 'encrypt', alg: alg.id, bits: key.bytes.length * 8, line: w.line, token: key.token });
  }

  private authentication(p: SaParams, checks: KeyCheck[]): void {
    const w = this.next();
    const alg = w.kind === 'word' ? AUTH_ALGORITHMS[w.text] : undefined;
    if (!alg) return this.syntax(w);
    p.auth = alg.id;
    if (alg.use === 'nokey') return;
    const key = this.key();
    p.keyAuth = key.bytes;
    checks.push({ supported: 'auth', alg: alg.id, bits: key.bytes.length * 8, line: w.line, token: key.token });
  }

  /** add, getspi, get, delete: addresses, SA type, SPI, options (and add's algorithms). */
  private saCommand(command: string, base: StatementBase): SendStatement {
    this.addressOptions();
    const srcTok = this.next();
    const src = this.address(srcTok, this.port());
    const dstTok = this.next();
    const dst = this.address(dstTok, this.port());
    const p = newSaParams();
    const satype = this.protocolSpec(p);
    this.spi(p);
    this.extensions(p);
    const keyChecks: KeyCheck[] = [];
    if (command === 'add') this.algorithms(p, keyChecks, base.warnings);
    this.expectEnd();
    if (src.family !== dst.family) throw new SetkeyError(dstTok.line, 'Family mismatch', dstTok.text);
    if ((command === 'get' || command === 'delete') && p.mode !== IPSEC_MODE_ANY) base.warnings.push('WARNING: mode is obsolete');
    const type = { add: SADB_ADD, getspi: SADB_GETSPI, get: SADB_GET, delete: SADB_DELETE }[command]!;
    const m = command === 'add' || command === 'getspi'
      ? addMessage(type, satype, p, src, dst, this.pid)
      : addrMessage(type, satype, p, src, dst, this.pid);
    return { kind: 'send', ...base, requests: [m], keyChecks };
  }

  private deleteAll(base: StatementBase): DeleteAllStatement {
    this.addressOptions();
    const src = this.address(this.next(), 0);
    const dstTok = this.next();
    const dst = this.address(dstTok, 0);
    const p = newSaParams();
    const satype = this.protocolSpec(p);
    this.expectEnd();
    if (src.family !== dst.family) throw new SetkeyError(dstTok.line, 'Family mismatch', dstTok.text);
    const pid = this.pid;
    return {
      kind: 'deleteall', ...base, satype, src, dst,
      dump: { header: header(SADB_DUMP, satype, pid), dialect: 'kame' },
      deleteFor: (spi: number) => addrMessage(SADB_DELETE, satype, { ...p, spi }, src, dst, pid),
    };
  }

  /** An SPD selector's address: ADDRESS [/PREFIX] [[PORT]]. */
  private selectorAddress(): { a: Address; tok: Tok; prefixTok?: Tok } {
    const tok = this.next();
    const a = this.address(tok, 0);
    let prefixTok: Tok | undefined;
    if (this.peek().kind === '/') {
      this.next();
      prefixTok = this.next();
      const v = this.dec(prefixTok);
      if (v > BigInt(fullPrefix(a.family))) throw new SetkeyError(prefixTok.line, 'Invalid prefix length', prefixTok.text);
      a.prefixlen = Number(v);
    }
    a.port = this.port();
    return { a, tok, prefixTok };
  }

  /** upper_spec: a number, any, tcp, or a protocol name. */
  private upperSpec(): number {
    const t = this.next();
    if (t.kind === 'word' && isDec(t.text)) {
      if (BigInt(t.text) > 255n) throw new SetkeyError(t.line, 'invalid upper layer protocol', t.text);
      return Number(t.text);
    }
    if (this.isWord(t, 'any')) return IPSEC_ULPROTO_ANY;
    if (this.isWord(t, 'tcp')) return IPPROTO_TCP;
    if (!isString(t)) return this.syntax(t);
    const n = PROTOCOL_BY_NAME.get(t.text);
    if (n === undefined) throw new SetkeyError(t.line, 'invalid upper layer protocol', t.text);
    return n;
  }

  /**
   * fix_portstr: ICMP/ICMPv6/MH take "type[,code]" after the protocol as the ports, GRE
   * "a.b.c.d" or a 32-bit key split in two. Other protocols take nothing there.
   */
  private upperMisc(proto: number, t: Tok): { sport: number; dport: number } {
    const bad = (): never => {
      throw new SetkeyError(t.line, 'invalid an upper layer protocol spec', t.text);
    };
    if (proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6 || proto === IPPROTO_MH) {
      const m = /^(\d+)(?:,(\d+))?/.exec(t.text);
      if (!m) return bad();
      const type = Number(m[1]);
      const code = m[2] === undefined ? 0 : Number(m[2]);
      if (type > 65535 || code > 65535) return bad();
      return { sport: type, dport: code };
    }
    if (proto === IPPROTO_GRE) {
      const q = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(t.text);
      if (q) {
        const [a, b, c, d] = q.slice(1).map(Number);
        if ([a, b, c, d].some((x) => x > 255)) return bad();
        return { sport: (a << 8) + b, dport: (c << 8) + d };
      }
      return bad();
    }
    return bad();
  }

  /** spdadd, spdupdate, spddelete: the selector, then -P and the policy. */
  private spdCommand(command: string, base: StatementBase): SendStatement {
    this.addressOptions();
    if (this.isWord(this.peek(), 'tagged')) {
      const t = this.peek();
      if (command === 'spddelete') this.syntax(t);
      throw new SetkeyError(t.line, 'tagged policies are not supported on Linux (it has no SADB_X_EXT_TAG)', t.text);
    }
    const src = this.selectorAddress();
    const dst = this.selectorAddress();
    const proto = this.upperSpec();
    let misc: Tok | undefined;
    if (isString(this.peek())) misc = this.next();
    let secCtx: SaParams['secCtx'];
    if (this.peek().kind === 'flag' && this.peek().text === '-ctx') {
      this.next();
      secCtx = this.securityContext();
    }
    const flag = this.next();
    if (flag.kind !== 'flag' || flag.text !== '-P') this.syntax(flag);
    const text = this.next();
    if (text.kind !== 'policy') this.syntax(text);
    this.expectEnd();

    if (misc) {
      const ports = this.upperMisc(proto, misc);
      src.a.port = ports.sport;
      dst.a.port = ports.dport;
    }
    if (src.a.family !== dst.a.family) throw new SetkeyError(dst.tok.line, 'Family mismatch', dst.tok.text);
    src.a.proto = proto;
    dst.a.proto = proto;
    const policy = parsePolicy(text.text, text.line);
    const type = { spdadd: SADB_X_SPDADD, spdupdate: SADB_X_SPDUPDATE, spddelete: SADB_X_SPDDELETE }[command]!;
    const m = spdMessage(type, policy, src.a, dst.a, secCtx, this.pid);
    const requests = [m];
    if (this.rfcMode && policy.dir === IPSEC_DIR_INBOUND) requests.push(fwdTwin(m));
    const st: SendStatement = { kind: 'send', ...base, requests, keyChecks: [] };
    if (command === 'spdadd') st.priority = policy.priority;
    return st;
  }
}

/**
 * Read setkey statements from `text` (a file, or statements from -c). Throws a
 * SetkeyError for the first statement setkey would refuse; nothing is built for any
 * statement then.
 */
export function parseSetkey(text: string, pid: number, o: ParseOptions = {}): Statement[] {
  return new Parser(lex(text, o.firstLine ?? 1), pid, o.rfcMode ?? true).statements();
}

/**
 * The complete statements at the start of `text` (up to and including the last `;` that
 * is outside quotes and comments) and what remains, for reading -c input as it comes.
 */
export function splitStatements(text: string): { complete: string; rest: string } {
  let end = -1;
  let quoted = false;
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (comment) {
      if (c === '\n') comment = false;
    } else if (quoted) {
      if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '#') comment = true;
    else if (c === ';') end = i;
  }
  return { complete: text.slice(0, end + 1), rest: text.slice(end + 1) };
}

// ======================================================================================
// The policy language (libipsec's policy_parse.y and policy_token.l)
// ======================================================================================

const POLICY_WORDS: Readonly<Record<string, string>> = {
  in: 'DIR', out: 'DIR', fwd: 'DIR', priority: 'PRIORITY', prio: 'PRIORITY',
  low: 'PRIO_BASE', def: 'PRIO_BASE', high: 'PRIO_BASE',
  discard: 'ACTION', none: 'ACTION', ipsec: 'ACTION', bypass: 'ACTION', entrust: 'ACTION',
  esp: 'PROTOCOL', ah: 'PROTOCOL', ipcomp: 'PROTOCOL', transport: 'MODE', tunnel: 'MODE',
  me: 'ME', any: 'ANY', default: 'LEVEL', use: 'LEVEL', require: 'LEVEL', unique: 'LEVEL',
};
const DIRS: Readonly<Record<string, number>> = { in: IPSEC_DIR_INBOUND, out: IPSEC_DIR_OUTBOUND, fwd: IPSEC_DIR_FWD };
const ACTIONS: Readonly<Record<string, number>> = {
  discard: IPSEC_POLICY_DISCARD, none: IPSEC_POLICY_NONE, ipsec: IPSEC_POLICY_IPSEC, bypass: IPSEC_POLICY_BYPASS, entrust: IPSEC_POLICY_ENTRUST,
};
const PRIO_BASES: Readonly<Record<string, number>> = { low: PRIORITY_LOW, def: PRIORITY_DEFAULT, high: PRIORITY_HIGH };
const PROTOS: Readonly<Record<string, number>> = { esp: IPPROTO_ESP, ah: IPPROTO_AH, ipcomp: IPPROTO_COMP };
const MODES: Readonly<Record<string, number>> = { transport: IPSEC_MODE_TRANSPORT, tunnel: IPSEC_MODE_TUNNEL };
const LEVELS: Readonly<Record<string, number>> = {
  default: IPSEC_LEVEL_DEFAULT, use: IPSEC_LEVEL_USE, require: IPSEC_LEVEL_REQUIRE, unique: IPSEC_LEVEL_UNIQUE,
};

interface PTok { kind: string; text: string }

function policyTokens(text: string): PTok[] | string {
  const out: PTok[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === '/' || c === '-' || c === '+') { out.push({ kind: c, text: c }); i++; continue; }
    const port = /^\[([0-9]+)\]/.exec(text.slice(i));
    if (port) { out.push({ kind: 'PORT', text: port[1] }); i += port[0].length; continue; }
    const word = /^[a-zA-Z0-9:._][a-zA-Z0-9:._]*(?:%[a-zA-Z0-9]+)?/.exec(text.slice(i));
    if (!word) return c;
    const w = word[0];
    const uniq = /^unique:([0-9]+)$/.exec(w);
    if (uniq) out.push({ kind: 'LEVEL_SPECIFY', text: w });
    else if (POLICY_WORDS[w]) out.push({ kind: POLICY_WORDS[w], text: w });
    else if (/^[0-9]+$/.test(w)) out.push({ kind: 'NUM', text: w });
    else out.push({ kind: 'IPADDRESS', text: w });
    i += w.length;
  }
  return out;
}

/** libipsec's getaddrinfo(AI_NUMERICHOST) of an address inside a policy. */
function policySockaddr(text: string, port: number): Sockaddr | undefined {
  let addr = text;
  let scopeId = 0;
  const pct = addr.indexOf('%');
  if (pct >= 0) {
    if (!/^[0-9]+$/.test(addr.slice(pct + 1))) return undefined;
    scopeId = Number(addr.slice(pct + 1));
    addr = addr.slice(0, pct);
  }
  const v4 = pct < 0 ? parseIPv4(addr) : undefined;
  if (v4) return { family: AF_INET, port, addr: formatAddress(AF_INET, v4) };
  const v6 = parseIPv6(addr);
  if (v6) return { family: AF_INET6, port, addr: formatAddress(AF_INET6, v6), flowinfo: 0, scopeId };
  return undefined;
}

/**
 * ipsec_set_policy: "DIR [prio ...] ACTION [proto/mode/src-dst/level ...]" to an
 * sadb_x_policy. A refusal names libipsec's ipsec_strerror() text and the policy.
 */
export function parsePolicy(text: string, line = 1): Policy {
  // setkey names the policy as it was written, its leading space included.
  const shown = text.replace(/[\n\t]/g, ' ');
  const fail = (why: string, detail?: string): never => {
    throw new SetkeyError(line, why, shown, detail);
  };
  const toks = policyTokens(text);
  if (typeof toks === 'string') return fail('Invalid argument', `syntax error at \`${toks}'`);
  let i = 0;
  const peek = () => toks[i];
  const take = () => toks[i++];
  const syntax = (): never => fail('Invalid argument', `syntax error at \`${peek()?.text ?? ''}'`);
  const is = (kind: string) => peek()?.kind === kind;

  if (!is('DIR')) syntax();
  const dir = DIRS[take().text];
  const policy: Policy = { type: IPSEC_POLICY_DISCARD, dir, id: 0, priority: 0, requests: [] };
  if (i === toks.length) return policy; // "DIR" alone: type ignored, priority 0
  if (is('PRIORITY')) {
    take();
    if (is('NUM')) {
      // prio N: N above the default (a smaller number).
      const n = BigInt(take().text);
      if (n > 2147483648n) fail('Priority offset not in valid range [-2147483647, 2147483648]');
      policy.priority = Number((BigInt(PRIORITY_DEFAULT) - n) & 0xffffffffn);
    } else if (is('-')) {
      take();
      if (!is('NUM')) syntax();
      const n = BigInt(take().text);
      if (n > 2147483647n) fail('Priority offset not in valid range [-2147483647, 2147483648]');
      policy.priority = Number((BigInt(PRIORITY_DEFAULT) + n) & 0xffffffffn);
    } else if (is('PRIO_BASE')) {
      const base = PRIO_BASES[take().text];
      policy.priority = base;
      if (is('+') || is('-')) {
        const sign = take().kind;
        if (!is('NUM')) syntax();
        const n = BigInt(take().text);
        const max = sign === '+' ? PRIORITY_OFFSET_NEGATIVE_MAX : PRIORITY_OFFSET_POSITIVE_MAX;
        if (n > BigInt(max)) {
          fail('Priority offset from base not in valid range [0, 1073741823] for negative offsets and [0, 1073741824] for positive offsets');
        }
        policy.priority = Number(sign === '+' ? BigInt(base) - n : BigInt(base) + n);
      }
    } else syntax();
  } else {
    policy.priority = PRIORITY_DEFAULT;
  }
  if (!is('ACTION')) syntax();
  policy.type = ACTIONS[take().text];

  // rules: protocol/mode[/[addresses][/[level]]] ...
  while (i < toks.length) {
    if (!is('PROTOCOL')) syntax();
    const r: IpsecRequest = { proto: PROTOS[take().text], mode: IPSEC_MODE_ANY, level: IPSEC_LEVEL_DEFAULT, reqid: 0 };
    if (!is('/')) fail('Too few arguments');
    take();
    if (!is('MODE')) fail('Too few arguments');
    r.mode = MODES[take().text];
    if (is('/')) {
      take();
      let addresses = false;
      if (is('IPADDRESS')) {
        addresses = true;
        const s = take();
        const sport = is('PORT') ? Number(take().text) : undefined;
        if (!is('-')) syntax();
        take();
        if (!is('IPADDRESS')) syntax();
        const d = take();
        const dport = sport !== undefined ? (is('PORT') ? Number(take().text) : syntax()) : undefined;
        if (sport !== undefined && (sport > 65535 || dport! > 65535)) fail('Servname not supported for ai_socktype');
        const src = policySockaddr(s.text, sport ?? 0);
        if (!src) fail('Name or service not known', `invalid IP address \`${s.text}'`);
        const dst = policySockaddr(d.text, dport ?? 0);
        if (!dst) fail('Name or service not known', `invalid IP address \`${d.text}'`);
        r.src = src;
        r.dst = dst;
      } else if (is('ME') || is('ANY')) {
        addresses = true;
        const first = take().kind;
        if (!is('-')) syntax();
        take();
        if (!is(first === 'ME' ? 'ANY' : 'ME')) syntax();
        take();
        if (dir !== (first === 'ME' ? IPSEC_DIR_OUTBOUND : IPSEC_DIR_INBOUND)) fail('Invalid direction');
      }
      if (is('/')) {
        take();
        if (is('LEVEL')) {
          r.level = LEVELS[take().text];
        } else if (is('LEVEL_SPECIFY')) {
          r.level = IPSEC_LEVEL_UNIQUE;
          r.reqid = Number(BigInt(take().text.slice(7)) & 0xffffffffn);
        } else if (!addresses) {
          // proto/mode//LEVEL: with no addresses the second slash needs its level.
          syntax();
        }
      }
    }
    // rule_check
    if (policy.type === IPSEC_POLICY_IPSEC) {
      if (r.mode !== IPSEC_MODE_TRANSPORT && r.mode !== IPSEC_MODE_TUNNEL) fail('Invalid ipsec mode');
      if (!r.src && r.mode !== IPSEC_MODE_TRANSPORT) fail('Invalid address specification');
      if (r.src && r.dst && r.src.family !== r.dst.family) fail('Family mismatch');
    }
    policy.requests.push(r);
  }
  return policy;
}
