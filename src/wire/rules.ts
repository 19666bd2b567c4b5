/**
 * Which extensions each message type permits and requires, per direction: KLIPS's
 * `extensions_bitmaps[in/out][permitted/required][type]` (pfkey_v2_ext_bits.c) kept as a
 * table. Where klips deliberately departs from KLIPS the row says so; docs/semantics.md
 * gives the reasons.
 *
 * A set is a 32-bit mask where extension type t (1..32) is bit t-1.
 */

import { SADB_MAX, SADB_EXT_MAX } from './constants.js';
import { EXT_TYPE_OF, type ExtField } from './extensions.js';

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

/** One direction's rule: the sets as masks, and the required fields by name (for the types). */
export interface Rule<R extends readonly ExtField[] = readonly ExtField[]> {
  permitted: number;
  required: number;
  requiredFields: R;
}
interface MsgRules {
  in: Rule;
  out: Rule;
}

const mask = (fields: readonly ExtField[]): number => extSet(...fields.map((f) => EXT_TYPE_OF[f]));
function r<const R extends readonly ExtField[]>(required: R, alsoPermitted: readonly ExtField[] = []): Rule<R> {
  return { required: mask(required), permitted: mask([...required, ...alsoPermitted]), requiredFields: required };
}
const NONE = r([]);

/** RULES[sadb_msg_type]; index 0 (RESERVED) permits nothing and is refused earlier. */
export const RULES = [
  /* RESERVED */ { in: NONE, out: NONE },
  /* GETSPI */ {
    in: r(['addressSrc', 'addressDst', 'spirange'], ['addressProxy']),
    out: r(['sa', 'addressSrc', 'addressDst']),
  },
  /* UPDATE */ {
    in: r(['sa', 'addressSrc', 'addressDst'], ['lifetimeCurrent', 'lifetimeHard', 'lifetimeSoft', 'addressProxy', 'keyAuth', 'keyEncrypt', 'identitySrc', 'identityDst', 'sensitivity', 'natTSport', 'natTDport']),
    out: r(['sa', 'addressSrc', 'addressDst'], ['lifetimeCurrent', 'lifetimeHard', 'lifetimeSoft', 'addressProxy', 'identitySrc', 'identityDst', 'sensitivity', 'natTSport', 'natTDport']),
  },
  /* ADD */ {
    in: r(['sa', 'addressSrc', 'addressDst'], ['lifetimeHard', 'lifetimeSoft', 'addressProxy', 'keyAuth', 'keyEncrypt', 'identitySrc', 'identityDst', 'sensitivity', 'natTType', 'natTSport', 'natTDport', 'natTOa', 'plumbif', 'saref']),
    out: r(['sa', 'addressSrc', 'addressDst'], ['lifetimeHard', 'lifetimeSoft', 'identitySrc', 'identityDst', 'sensitivity', 'natTType', 'natTSport', 'natTDport', 'natTOa', 'plumbif', 'saref']),
  },
  /* DELETE */ { in: r(['sa', 'addressSrc', 'addressDst']), out: r(['sa', 'addressSrc', 'addressDst']) },
  /* GET */ {
    in: r(['sa', 'addressSrc', 'addressDst']),
    out: r(['sa', 'addressSrc', 'addressDst'], ['lifetimeCurrent', 'lifetimeHard', 'lifetimeSoft', 'addressProxy', 'keyAuth', 'keyEncrypt', 'identitySrc', 'identityDst', 'sensitivity', 'natTType', 'natTSport', 'natTDport', 'natTOa']),
  },
  /* ACQUIRE */ {
    in: r(['addressSrc', 'addressDst', 'proposal'], ['addressProxy', 'identitySrc', 'identityDst', 'sensitivity']),
    out: r(['addressSrc', 'addressDst', 'proposal'], ['addressProxy', 'identitySrc', 'identityDst', 'sensitivity']),
  },
  /* REGISTER */ { in: NONE, out: r([], ['supportedAuth', 'supportedEncrypt']) },
  /*
   * EXPIRE: KLIPS permits nothing inbound, and echoes that header-only message to every
   * socket; so the outbound rule cannot require what the kernel's own EXPIRE carries
   * (SA, LIFETIME_CURRENT, SRC, DST: the engine always sends those).
   */ {
    in: NONE,
    out: r([], ['sa', 'lifetimeCurrent', 'lifetimeHard', 'lifetimeSoft', 'addressSrc', 'addressDst']),
  },
  /* FLUSH */ { in: NONE, out: NONE },
  /* DUMP: klips departs: KLIPS requires both keys out, which an AH or IPIP SA cannot carry. */ {
    in: NONE,
    out: r(['sa', 'addressSrc', 'addressDst'], ['lifetimeCurrent', 'lifetimeHard', 'lifetimeSoft', 'addressProxy', 'keyAuth', 'keyEncrypt', 'identitySrc', 'identityDst', 'sensitivity', 'natTType', 'natTSport', 'natTDport', 'natTOa']),
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
    out: r([], ['sa', 'addressDst', 'addressSrcFlow', 'addressDstFlow', 'addressSrcMask', 'addressDstMask', 'protocol']),
  },
  /* X_GRPSA */ {
    in: r(['sa', 'addressDst'], ['satype2', 'sa2', 'addressDst2']),
    out: r(['sa', 'addressDst'], ['satype2', 'sa2', 'addressDst2']),
  },
  /* X_ADDFLOW */ {
    in: r(['sa', 'addressDst', 'addressSrcFlow', 'addressDstFlow', 'addressSrcMask', 'addressDstMask'], ['addressSrc', 'identitySrc', 'identityDst', 'protocol']),
    out: r(['sa', 'addressDst', 'addressSrcFlow', 'addressDstFlow', 'addressSrcMask', 'addressDstMask'], ['addressSrc', 'protocol']),
  },
  /* X_DELFLOW: the four flow extensions, or SA with CLEARFLOW (checked in message.ts). */ {
    in: r([], ['sa', 'addressSrcFlow', 'addressDstFlow', 'addressSrcMask', 'addressDstMask', 'identitySrc', 'identityDst', 'protocol']),
    out: r([], ['sa', 'addressSrcFlow', 'addressDstFlow', 'addressSrcMask', 'addressDstMask', 'protocol']),
  },
  /* X_DEBUG */ { in: r(['debug']), out: r(['debug']) },
  /* X_NAT_T_NEW_MAPPING */ {
    in: r(['sa', 'addressSrc', 'addressDst', 'natTSport', 'natTDport']),
    out: r(['sa', 'addressSrc', 'addressDst', 'natTSport', 'natTDport']),
  },
  /* X_PLUMBIF */ { in: r(['plumbif']), out: r(['plumbif']) },
  /* X_UNPLUMBIF */ { in: r(['plumbif']), out: r(['plumbif']) },
] as const satisfies readonly MsgRules[];

if (RULES.length !== SADB_MAX + 1) throw new Error('RULES must cover every message type');

/** X_DELFLOW needs these four unless it carries an SA with CLEARFLOW. */
export const DELFLOW_FLOW_FIELDS = ['addressSrcFlow', 'addressDstFlow', 'addressSrcMask', 'addressDstMask'] as const;
export const DELFLOW_FLOW_EXTS = mask(DELFLOW_FLOW_FIELDS);

