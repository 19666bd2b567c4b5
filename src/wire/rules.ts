/**
 * Which extensions each message type permits and requires, per direction: KLIPS's
 * `extensions_bitmaps[in/out][permitted/required][type]` (pfkey_v2_ext_bits.c) kept as a
 * table (RULES). Where klips deliberately departs from KLIPS the row says so;
 * docs/semantics.md gives the reasons. KAME_RULES is the same table for the KAME dialect
 * as Linux's af_key applies it: every extension is permitted everywhere (Linux keeps what
 * a handler reads and skips the rest), and a type requires what its handler refuses with
 * EINVAL when absent.
 *
 * A set is a 32-bit mask where extension type t (1..32) is bit t-1.
 */

import { SADB_MAX, SADB_EXT_MAX, KAME_SADB_MAX, KAME_SADB_EXT_MAX } from './constants.js';
import { EXT_TYPE_OF, type ExtField } from './extensions.js';
import { KAME_EXT_TYPE_OF, type KameExtField } from './kame.js';

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


// ---------- the KAME dialect (Linux's af_key) ----------

/** One direction's rule in the KAME dialect (fields by their KAME names). */
export interface KameRule<R extends readonly KameExtField[] = readonly KameExtField[]> {
  permitted: number;
  required: number;
  requiredFields: R;
}
interface KameMsgRules {
  in: KameRule;
  out: KameRule;
}

/** Linux reads what it uses of a message and skips the rest: every type 1..26 is permitted. */
const KAME_ANY = (2 ** KAME_SADB_EXT_MAX - 1) >>> 0;
const kmask = (fields: readonly KameExtField[]): number => extSet(...fields.map((f) => KAME_EXT_TYPE_OF[f]));
function k<const R extends readonly KameExtField[]>(required: R): KameRule<R> {
  return { required: kmask(required), permitted: KAME_ANY, requiredFields: required };
}
const K_NONE = k([]);
/** What Linux's SA messages always carry (__pfkey_xfrm_state2msg). */
const SA_OUT = k(['sa', 'lifetimeCurrent', 'addressSrc', 'addressDst', 'xSa2']);
/** What Linux's policy messages always carry (pfkey_xfrm_policy2msg). */
const POLICY_OUT = k(['addressSrc', 'addressDst', 'lifetimeHard', 'lifetimeSoft', 'lifetimeCurrent', 'policy']);
/** present_and_same_family(SRC, DST) and a policy: the SPD handlers' first test. */
const SELECTOR_IN = k(['addressSrc', 'addressDst', 'policy']);
/** An SA and its SRC and DST: ADD, UPDATE, DELETE and GET's first test. */
const SAID_IN = k(['sa', 'addressSrc', 'addressDst']);

/**
 * KAME_RULES[sadb_msg_type] (Linux numbering, 0..24). "in": what the handler refuses with
 * EINVAL when it is absent (pfkey_getspi, pfkey_add, pfkey_spdadd, ...); "out": what
 * Linux's builders always put in (an errno reply has none of it).
 */
export const KAME_RULES = [
  /* RESERVED */ { in: K_NONE, out: K_NONE },
  /* GETSPI */ { in: k(['addressSrc', 'addressDst']), out: SA_OUT },
  /* UPDATE */ { in: SAID_IN, out: SA_OUT },
  /* ADD */ { in: SAID_IN, out: SA_OUT },
  /* DELETE */ { in: SAID_IN, out: SA_OUT },
  /* GET */ { in: SAID_IN, out: SA_OUT },
  /* ACQUIRE: a client's is an errno report (header only); the kernel's carries the policy */ {
    in: K_NONE,
    out: k(['addressSrc', 'addressDst', 'policy']),
  },
  /* REGISTER */ { in: K_NONE, out: K_NONE },
  /* EXPIRE */ { in: K_NONE, out: SA_OUT },
  /* FLUSH */ { in: K_NONE, out: K_NONE },
  /* DUMP: an optional X_FILTER in */ { in: K_NONE, out: SA_OUT },
  /* X_PROMISC: relayed as sent */ { in: K_NONE, out: K_NONE },
  /* X_PCHANGE (no handler in Linux) */ { in: K_NONE, out: K_NONE },
  /* X_SPDUPDATE */ { in: SELECTOR_IN, out: POLICY_OUT },
  /* X_SPDADD */ { in: SELECTOR_IN, out: POLICY_OUT },
  /* X_SPDDELETE */ { in: SELECTOR_IN, out: POLICY_OUT },
  /* X_SPDGET: by id */ { in: k(['policy']), out: POLICY_OUT },
  /* X_SPDACQUIRE (no handler) */ { in: K_NONE, out: K_NONE },
  /* X_SPDDUMP */ { in: K_NONE, out: POLICY_OUT },
  /* X_SPDFLUSH */ { in: K_NONE, out: K_NONE },
  /* X_SPDSETIDX */ { in: SELECTOR_IN, out: POLICY_OUT },
  /* X_SPDEXPIRE (no handler) */ { in: K_NONE, out: K_NONE },
  /* X_SPDDELETE2: by id */ { in: k(['policy']), out: POLICY_OUT },
  /* X_NAT_T_NEW_MAPPING (no handler; the kernel's) */ {
    in: K_NONE,
    out: k(['sa', 'addressSrc', 'addressDst', 'natTSport', 'natTDport']),
  },
  /* X_MIGRATE */ { in: SELECTOR_IN, out: SELECTOR_IN },
] as const satisfies readonly KameMsgRules[];

if (KAME_RULES.length !== KAME_SADB_MAX + 1) throw new Error('KAME_RULES must cover every message type');
