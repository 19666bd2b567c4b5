/**
 * Which extensions each message type permits and requires, per direction: KLIPS's
 * `extensions_bitmaps[in/out][permitted/required][type]` (pfkey_v2_ext_bits.c) kept as a
 * table. Where klips deliberately departs from KLIPS the row says so; docs/semantics.md
 * gives the reasons.
 *
 * A set is a 32-bit mask where extension type t (1..32) is bit t-1.
 */

import {
  SADB_EXT_SA as SA, SADB_EXT_LIFETIME_CURRENT as LC, SADB_EXT_LIFETIME_HARD as LH,
  SADB_EXT_LIFETIME_SOFT as LS, SADB_EXT_ADDRESS_SRC as SRC, SADB_EXT_ADDRESS_DST as DST,
  SADB_EXT_ADDRESS_PROXY as PRX, SADB_EXT_KEY_AUTH as KA, SADB_EXT_KEY_ENCRYPT as KE,
  SADB_EXT_IDENTITY_SRC as IDS, SADB_EXT_IDENTITY_DST as IDD, SADB_EXT_SENSITIVITY as SENS,
  SADB_EXT_PROPOSAL as PROP, SADB_EXT_SUPPORTED_AUTH as SUPA,
  SADB_EXT_SUPPORTED_ENCRYPT as SUPE, SADB_EXT_SPIRANGE as SPIR,
  SADB_X_EXT_SATYPE2 as SAT2, SADB_X_EXT_SA2 as SA2, SADB_X_EXT_ADDRESS_DST2 as DST2,
  SADB_X_EXT_ADDRESS_SRC_FLOW as SFL, SADB_X_EXT_ADDRESS_DST_FLOW as DFL,
  SADB_X_EXT_ADDRESS_SRC_MASK as SMK, SADB_X_EXT_ADDRESS_DST_MASK as DMK,
  SADB_X_EXT_DEBUG as DBG, SADB_X_EXT_PROTOCOL as PROTO, SADB_X_EXT_NAT_T_TYPE as NTY,
  SADB_X_EXT_NAT_T_SPORT as NSP, SADB_X_EXT_NAT_T_DPORT as NDP, SADB_X_EXT_NAT_T_OA as NOA,
  SADB_X_EXT_PLUMBIF as PLB, SADB_X_EXT_SAREF as SRF, SADB_MAX, SADB_EXT_MAX,
} from './constants.js';

export type Direction = 'in' | 'out';

/** The mask of a list of extension types. */
export function extSet(...types: number[]): number {
  let m = 0;
  for (const t of types) m |= 1 << (t - 1);
  return m >>> 0;
}

export function hasExt(set: number, type: number): boolean {
  return ((set >>> (type - 1)) & 1) === 1;
}

/** The extension types in a set, ascending. */
export function extTypes(set: number): number[] {
  const out: number[] = [];
  for (let t = 1; t <= SADB_EXT_MAX; t++) if (hasExt(set, t)) out.push(t);
  return out;
}

interface Rule {
  permitted: number;
  required: number;
}
interface MsgRules {
  in: Rule;
  out: Rule;
}

const r = (required: number[], alsoPermitted: number[] = []): Rule => ({
  required: extSet(...required),
  permitted: extSet(...required, ...alsoPermitted),
});
const NONE: Rule = { permitted: 0, required: 0 };

/** RULES[sadb_msg_type]; index 0 (RESERVED) permits nothing and is refused earlier. */
export const RULES: readonly MsgRules[] = [
  /* RESERVED */ { in: NONE, out: NONE },
  /* GETSPI */ {
    in: r([SRC, DST, SPIR], [PRX]),
    out: r([SA, SRC, DST]),
  },
  /* UPDATE */ {
    in: r([SA, SRC, DST], [LC, LH, LS, PRX, KA, KE, IDS, IDD, SENS, NSP, NDP]),
    out: r([SA, SRC, DST], [LC, LH, LS, PRX, IDS, IDD, SENS, NSP, NDP]),
  },
  /* ADD */ {
    in: r([SA, SRC, DST], [LH, LS, PRX, KA, KE, IDS, IDD, SENS, NTY, NSP, NDP, NOA, PLB, SRF]),
    out: r([SA, SRC, DST], [LH, LS, IDS, IDD, SENS, NTY, NSP, NDP, NOA, PLB, SRF]),
  },
  /* DELETE */ { in: r([SA, SRC, DST]), out: r([SA, SRC, DST]) },
  /* GET */ {
    in: r([SA, SRC, DST]),
    out: r([SA, SRC, DST], [LC, LH, LS, PRX, KA, KE, IDS, IDD, SENS, NTY, NSP, NDP, NOA]),
  },
  /* ACQUIRE */ {
    in: r([SRC, DST, PROP], [PRX, IDS, IDD, SENS]),
    out: r([SRC, DST, PROP], [PRX, IDS, IDD, SENS]),
  },
  /* REGISTER */ { in: NONE, out: r([], [SUPA, SUPE]) },
  /*
   * EXPIRE: KLIPS permits nothing inbound, and echoes that header-only message to every
   * socket; so the outbound rule cannot require what the kernel's own EXPIRE carries
   * (SA, LIFETIME_CURRENT, SRC, DST: the engine always sends those).
   */ {
    in: NONE,
    out: r([], [SA, LC, LH, LS, SRC, DST]),
  },
  /* FLUSH */ { in: NONE, out: NONE },
  /* DUMP: klips departs: KLIPS requires both keys out, which an AH or IPIP SA cannot carry. */ {
    in: NONE,
    out: r([SA, SRC, DST], [LC, LH, LS, PRX, KA, KE, IDS, IDD, SENS, NTY, NSP, NDP, NOA]),
  },
  /* X_PROMISC: klips departs (Linux semantics, header only; KLIPS's table makes it unusable). */ {
    in: NONE,
    out: NONE,
  },
  /*
   * X_PCHANGE, defined by klips: header-only subscription in; out, the header-only
   * answer to it, or an eroute change notice (SA, DST and the four flow extensions).
   */ {
    in: NONE,
    out: r([], [SA, DST, SFL, DFL, SMK, DMK, PROTO]),
  },
  /* X_GRPSA */ {
    in: r([SA, DST], [SAT2, SA2, DST2]),
    out: r([SA, DST], [SAT2, SA2, DST2]),
  },
  /* X_ADDFLOW */ {
    in: r([SA, DST, SFL, DFL, SMK, DMK], [SRC, IDS, IDD, PROTO]),
    out: r([SA, DST, SFL, DFL, SMK, DMK], [SRC, PROTO]),
  },
  /* X_DELFLOW: the four flow extensions, or SA with CLEARFLOW (checked in message.ts). */ {
    in: r([], [SA, SFL, DFL, SMK, DMK, IDS, IDD, PROTO]),
    out: r([], [SA, SFL, DFL, SMK, DMK, PROTO]),
  },
  /* X_DEBUG */ { in: r([DBG]), out: r([DBG]) },
  /* X_NAT_T_NEW_MAPPING */ {
    in: r([SA, SRC, DST, NSP, NDP]),
    out: r([SA, SRC, DST, NSP, NDP]),
  },
  /* X_PLUMBIF */ { in: r([PLB]), out: r([PLB]) },
  /* X_UNPLUMBIF */ { in: r([PLB]), out: r([PLB]) },
];

if (RULES.length !== SADB_MAX + 1) throw new Error('RULES must cover every message type');

/** X_DELFLOW needs these four unless it carries an SA with CLEARFLOW. */
export const DELFLOW_FLOW_EXTS = extSet(SFL, DFL, SMK, DMK);

export function permitted(dir: Direction, msgType: number, extType: number): boolean {
  return hasExt(RULES[msgType][dir].permitted, extType);
}

export function required(dir: Direction, msgType: number): number {
  return RULES[msgType][dir].required;
}
