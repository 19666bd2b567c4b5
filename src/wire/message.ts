/**
 * A whole PF_KEY v2 message: the 16-byte `sadb_msg` header followed by extensions.
 * `parseMessage` checks what KLIPS's pfkey_sendmsg and pfkey_msg_parse check, in their
 * order, and refuses with the same errno; `buildMessage` writes canonical bytes
 * (extensions in ascending type unless a parsed message's own order is kept).
 *
 * Both take the dialect: a message of the KAME dialect (`dialect: 'kame'`, Linux
 * numbering) is read with KAME_EXT_TABLE and KAME_RULES the way Linux's
 * pfkey_get_base_msg and parse_exthdrs read it (types above 26 skipped, and kept in
 * `unknown`), and built in the order its `extOrder` gives, which is how Linux's builders
 * lay their messages out. The KLIPS path is the default and does not look at KAME's.
 */

import {
  PF_KEY_V2, SADB_MSG_HDR_LEN, SADB_MAX, SADB_EXT_MAX, SATYPE_TO_PROTO,
  SADB_GETSPI, SADB_UPDATE, SADB_ADD, SADB_DELETE, SADB_GET, SADB_X_GRPSA, SADB_X_ADDFLOW,
  SADB_ACQUIRE, SADB_REGISTER, SADB_EXPIRE, SADB_X_DELFLOW, SADB_X_SAFLAGS_CLEARFLOW,
  SADB_SASTATE_MATURE, SADB_SATYPE_AH, SADB_SATYPE_ESP, SADB_X_SATYPE_COMP,
  SADB_AALG_NONE, SADB_EALG_NONE, SADB_EALG_NULL, SADB_EXT_SA, EXT_TYPE_NAMES, MSG_TYPE_NAMES,
  KAME_SADB_EXT_MAX, KAME_EXT_TYPE_NAMES, KAME_MSG_TYPE_NAMES, type Dialect,
} from './constants.js';
import { ERRNO, fail } from './errno.js';
import { EXT_TABLE, type ExtEntry, type Extensions, type ExtField } from './extensions.js';
import { KAME_EXT_TABLE, type KameExtEntry, type KameExtensions, type KameExtField, type UnknownExtension } from './kame.js';
import { allocMessage, copyBytes, rd16, wr16, wr32 } from './bytes.js';
import { RULES, KAME_RULES, DELFLOW_FLOW_EXTS, extTypes, type Direction } from './rules.js';
import { headerFault, readHeader } from './header.js';

/** The base header, struct sadb_msg. `len` counts 8-byte units of the whole message. */
export interface SadbMsg {
  version: number;
  type: number;
  errno: number;
  satype: number;
  len: number;
  reserved: number;
  seq: number;
  pid: number;
}

export interface PfkeyMessage extends Extensions {
  header: SadbMsg;
  /**
   * Extension types in the order they were received, kept only when it was not
   * ascending, so that building a parsed message gives back the same bytes.
   */
  extOrder?: number[];
}

/**
 * The message a handler of type T receives: a parsed inbound message in which every
 * extension RULES[T].in requires is present (parseMessage checked it), so those fields
 * are not optional. Derived from the rules table itself, so the two cannot disagree.
 */
export type InboundMessage<T extends number> = PfkeyMessage & {
  [K in (typeof RULES)[T]['in']['requiredFields'][number]]-?: NonNullable<Extensions[K]>;
};

/** What buildMessage needs: a header whose omitted fields default to 0 (version to 2). */
export type MessageInput = Extensions & {
  header: Partial<SadbMsg> & { type: number };
  extOrder?: number[];
};

/** A parsed message of the KAME dialect (Linux numbering). */
export interface KameMessage extends KameExtensions {
  header: SadbMsg;
  dialect: 'kame';
  /** Extension types in the order they came (or are to be written), unknown types included. */
  extOrder?: number[];
  /** Extensions of types above 26, which Linux skips, in the order they came. */
  unknown?: UnknownExtension[];
}

/** A KAME message whose extensions KAME_RULES[T].in requires are present (the KAME handlers' input). */
export type KameInboundMessage<T extends number> = KameMessage & {
  [K in (typeof KAME_RULES)[T]['in']['requiredFields'][number]]-?: NonNullable<KameExtensions[K]>;
};

/** What buildMessage needs for a KAME-dialect message: `extOrder` is the order to write the extensions in. */
export type KameMessageInput = KameExtensions & {
  header: Partial<SadbMsg> & { type: number };
  dialect: 'kame';
  extOrder?: number[];
  unknown?: UnknownExtension[];
};

export interface ParseOptions {
  /** 'in': a message a client sends to the kernel (default); 'out': one the kernel sends. */
  direction?: Direction;
  /**
   * Give key bytes (KEY_AUTH, KEY_ENCRYPT) as views of `u8` rather than copies: for a
   * caller that owns `u8`, never changes it, and copies what it keeps (the engine parses
   * its own private copy of each request, and StoredKey copies). Default false: a parsed
   * key never shares memory with the caller's buffer.
   */
  keyViews?: boolean;
  /**
   * The header of `u8` when the caller has already checked it with headerFault (the
   * engine does, to answer a header fault without a message): it is not checked again.
   */
  header?: SadbMsg;
  /** The numbering to read with (default 'klips'). */
  dialect?: Dialect;
}

/** Header-level checks that the kernel's sendmsg makes before its parser runs (header.ts), throwing. */
export function checkHeader(u8: Uint8Array, dialect?: Dialect, direction?: Direction): SadbMsg {
  const fault = headerFault(u8, dialect, direction);
  if (fault) fail(fault.errno, fault.why, { offset: fault.offset });
  return readHeader(u8);
}

const byType = (types: number[]): boolean[] => Array.from({ length: SADB_MAX + 1 }, (_, t) => types.includes(t));
/** Message types whose satype must name a protocol KLIPS carries (its satype2proto). */
const PROTO_TYPES = [SADB_GETSPI, SADB_UPDATE, SADB_ADD, SADB_DELETE, SADB_GET, SADB_X_GRPSA, SADB_X_ADDFLOW];
const NEEDS_PROTO = byType(PROTO_TYPES);
/** Message types whose satype must be non-zero. */
const NEEDS_SATYPE = byType([...PROTO_TYPES, SADB_ACQUIRE, SADB_REGISTER, SADB_EXPIRE]);

/** Parse and validate one whole message. Throws PfkeyError (with errno and offset) on refusal. */
export function parseMessage(u8: Uint8Array, opts: ParseOptions & { dialect: 'kame' }): KameMessage;
export function parseMessage(u8: Uint8Array, opts?: ParseOptions & { dialect?: 'klips' }): PfkeyMessage;
export function parseMessage(u8: Uint8Array, opts?: ParseOptions): PfkeyMessage | KameMessage;
export function parseMessage(u8: Uint8Array, opts: ParseOptions = {}): PfkeyMessage | KameMessage {
  if (opts.dialect === 'kame') return parseKame(u8, opts);
  const dir: Direction = opts.direction ?? 'in';
  const keyViews = opts.keyViews === true;
  const header = opts.header ?? checkHeader(u8);
  const type = header.type;
  // An error reply echoes whatever satype the refused request had.
  const errorReply = dir === 'out' && header.errno !== 0;
  if (!errorReply && NEEDS_PROTO[type] && !SATYPE_TO_PROTO[header.satype]) {
    fail(ERRNO.EINVAL, `SA type ${header.satype} has no protocol for ${MSG_TYPE_NAMES[type]}`, { offset: 3 });
  }
  if (!errorReply && NEEDS_SATYPE[type] && header.satype === 0) {
    fail(ERRNO.EINVAL, `SA type must be non-zero for ${MSG_TYPE_NAMES[type]}`, { offset: 3 });
  }
  if (dir === 'in' && type !== SADB_ACQUIRE && header.errno !== 0) {
    fail(ERRNO.EINVAL, 'sadb_msg_errno must be zero in a request', { offset: 2 });
  }

  const msg: PfkeyMessage = { header };
  const rule = RULES[type][dir];
  let seen = 0;
  let lastType = 0;
  let ascending = true;
  let off = SADB_MSG_HDR_LEN;
  while (off < u8.length) {
    const extLen = rd16(u8, off) * 8;
    const extType = rd16(u8, off + 2);
    if (extLen === 0) fail(ERRNO.EINVAL, 'zero-length extension', { offset: off, exttype: extType });
    if (off + extLen > u8.length) {
      fail(ERRNO.EINVAL, `extension of ${extLen} bytes overruns the message (${u8.length - off} left)`, { offset: off, exttype: extType });
    }
    if (extType === 0 || extType > SADB_EXT_MAX) fail(ERRNO.EINVAL, `unknown extension type ${extType}`, { offset: off, exttype: extType });
    const bit = (1 << (extType - 1)) >>> 0;
    if (seen & bit) fail(ERRNO.EINVAL, `extension ${EXT_TYPE_NAMES[extType]} repeated`, { offset: off, exttype: extType });
    if (!(rule.permitted & bit)) {
      fail(ERRNO.EINVAL, `extension ${EXT_TYPE_NAMES[extType]} not permitted in ${MSG_TYPE_NAMES[type]} (${dir})`, { offset: off, exttype: extType });
    }
    const entry = EXT_TABLE[extType]!;
    entry.set(msg, entry.codec.decode(u8, off, extLen, extType, keyViews));
    seen = (seen | bit) >>> 0;
    if (extType < lastType) ascending = false;
    lastType = extType;
    off += extLen;
  }
  if (!ascending) msg.extOrder = extTypesInOrder(u8);

  // A message that carries an errno may have no body (KLIPS stops checking here).
  if (header.errno !== 0) return msg;
  const missing = (rule.required & ~seen) >>> 0;
  if (missing) {
    fail(ERRNO.EINVAL, `${MSG_TYPE_NAMES[type]} (${dir}) lacks ${extTypes(missing).map((t) => EXT_TYPE_NAMES[t]).join(', ')}`, { offset: 0 });
  }
  if (dir === 'in') checkMessageRules(msg, seen);
  return msg;
}

/**
 * A KAME-dialect message as Linux reads it: pfkey_get_base_msg's header checks, then
 * parse_exthdrs (an extension shorter than 8 bytes or past the end, type 0, a repeated
 * type: EINVAL; types above 26 skipped), each extension by its KAME codec, then what the
 * type's handler requires (KAME_RULES). No permitted-set check: Linux has none.
 */
function parseKame(u8: Uint8Array, opts: ParseOptions): KameMessage {
  const dir: Direction = opts.direction ?? 'in';
  const keyViews = opts.keyViews === true;
  const header = opts.header ?? checkHeader(u8, 'kame', dir);
  const msg: KameMessage = { header, dialect: 'kame' };
  const rule = KAME_RULES[header.type][dir];
  let seen = 0;
  let lastType = 0;
  let ascending = true;
  let off = SADB_MSG_HDR_LEN;
  while (off < u8.length) {
    if (u8.length - off < 4) fail(ERRNO.EINVAL, `${u8.length - off} bytes left, too few for an extension header`, { offset: off });
    const extLen = rd16(u8, off) * 8;
    const extType = rd16(u8, off + 2);
    if (extLen === 0) fail(ERRNO.EINVAL, 'zero-length extension', { offset: off, exttype: extType });
    if (off + extLen > u8.length) {
      fail(ERRNO.EINVAL, `extension of ${extLen} bytes overruns the message (${u8.length - off} left)`, { offset: off, exttype: extType });
    }
    if (extType === 0) fail(ERRNO.EINVAL, 'extension type 0', { offset: off, exttype: extType });
    if (extType > KAME_SADB_EXT_MAX) {
      (msg.unknown ??= []).push({ type: extType, data: copyBytes(u8, off, off + extLen) });
      ascending = false;
    } else {
      const bit = (1 << (extType - 1)) >>> 0;
      if (seen & bit) fail(ERRNO.EINVAL, `extension ${KAME_EXT_TYPE_NAMES[extType]} repeated`, { offset: off, exttype: extType });
      const entry = KAME_EXT_TABLE[extType]!;
      entry.set(msg, entry.codec.decode(u8, off, extLen, extType, keyViews));
      seen = (seen | bit) >>> 0;
      if (extType < lastType) ascending = false;
      lastType = extType;
    }
    off += extLen;
  }
  if (!ascending) msg.extOrder = extTypesInOrder(u8);
  // A kernel's errno reply has no body; a client's request is judged whatever its errno.
  if (dir === 'out' && header.errno !== 0) return msg;
  const missing = (rule.required & ~seen) >>> 0;
  if (missing) {
    fail(ERRNO.EINVAL, `${KAME_MSG_TYPE_NAMES[header.type]} (${dir}) lacks ${extTypes(missing).map((t) => KAME_EXT_TYPE_NAMES[t]).join(', ')}`, { offset: 0 });
  }
  return msg;
}

function extTypesInOrder(u8: Uint8Array): number[] {
  const out: number[] = [];
  for (let off = SADB_MSG_HDR_LEN; off < u8.length; off += rd16(u8, off) * 8) out.push(rd16(u8, off + 2));
  return out;
}

/** The per-type semantic checks at the end of pfkey_msg_parse (inbound only). */
function checkMessageRules(msg: PfkeyMessage, seen: number): void {
  const { type, satype } = msg.header;
  if (type === SADB_X_DELFLOW && (seen & DELFLOW_FLOW_EXTS) !== DELFLOW_FLOW_EXTS) {
    if (!msg.sa || !(msg.sa.flags & SADB_X_SAFLAGS_CLEARFLOW)) {
      fail(ERRNO.EINVAL, 'X_DELFLOW needs the four flow/mask extensions, or an SA with CLEARFLOW', { offset: 0 });
    }
  }
  if (type === SADB_ADD || type === SADB_UPDATE) {
    const sa = msg.sa!;
    const at = { offset: SADB_MSG_HDR_LEN, exttype: SADB_EXT_SA };
    if (sa.state !== SADB_SASTATE_MATURE) fail(ERRNO.EINVAL, `SA state ${sa.state} in ${MSG_TYPE_NAMES[type]}, must be MATURE`, at);
    if (satype === SADB_SATYPE_AH) {
      if (sa.auth === SADB_AALG_NONE) fail(ERRNO.EINVAL, 'AH SA needs an authentication algorithm', at);
      if (sa.encrypt !== SADB_EALG_NONE) fail(ERRNO.EINVAL, 'AH SA cannot have an encryption algorithm', at);
    } else if (satype === SADB_SATYPE_ESP) {
      if (sa.encrypt === SADB_EALG_NONE) fail(ERRNO.EINVAL, 'ESP SA needs an encryption algorithm (NULL counts)', at);
      if (sa.encrypt === SADB_EALG_NULL && sa.auth === SADB_AALG_NONE) fail(ERRNO.EINVAL, 'ESP with NULL encryption and no authentication', at);
    } else if (satype === SADB_X_SATYPE_COMP) {
      if (sa.encrypt === SADB_EALG_NONE) fail(ERRNO.EINVAL, 'COMP SA needs a compression algorithm', at);
      if (sa.auth !== SADB_AALG_NONE) fail(ERRNO.EINVAL, 'COMP SA cannot have an authentication algorithm', at);
    }
    if (sa.spi <= 255) fail(ERRNO.EINVAL, `SPI ${sa.spi} must be above 255`, at);
  }
}

/** Message field name → its row of the extension table. */
const ENTRY_OF = new Map<string, ExtEntry>(EXT_TABLE.filter((e): e is ExtEntry => e !== undefined).map((e) => [e.field, e]));

/*
 * Scratch space for one build (buildMessage never re-enters itself): the value and encoded
 * length of each present extension, by type. Cleared after each build so that nothing
 * stays reachable from here.
 */
const VALS: unknown[] = new Array<unknown>(SADB_EXT_MAX + 1).fill(undefined);
const LENS = new Int32Array(SADB_EXT_MAX + 1);

/** The lowest extension type in a non-empty set (bit t-1 for type t). */
const lowestType = (set: number): number => 32 - Math.clz32(set & -set);

/**
 * Note each extension present in `m` (VALS) and return their set. A for-in walk reads the
 * message's own fields in place, where probing all 32 field names would make a
 * megamorphic keyed load per name.
 */
function collect(m: MessageInput): number {
  let set = 0;
  for (const k in m) {
    const v = (m as unknown as Record<string, unknown>)[k];
    if (v === undefined) continue;
    const e = ENTRY_OF.get(k);
    if (e === undefined) continue;
    VALS[e.type] = v;
    set |= 1 << (e.type - 1);
  }
  return set;
}

function release(set: number): void {
  for (let b = set; b !== 0; b &= b - 1) VALS[lowestType(b)] = undefined;
}

/** The extensions present in a message with their values, in a parsed message's own order (unlisted ones last, ascending). */
function orderedEntries(m: MessageInput, order: number[]): { entries: ExtEntry[]; values: unknown[] } {
  const entries: ExtEntry[] = [];
  const values: unknown[] = [];
  const rec = m as unknown as Record<string, unknown>;
  for (let t = 1; t <= SADB_EXT_MAX; t++) {
    const e = EXT_TABLE[t]!;
    const v = rec[e.field];
    if (v === undefined) continue;
    entries.push(e);
    values.push(v);
  }
  const rank = (t: number) => {
    const i = order.indexOf(t);
    return i === -1 ? 1000 + t : i;
  };
  const idx = entries.map((_, i) => i).sort((x, y) => rank(entries[x].type) - rank(entries[y].type));
  return { entries: idx.map((i) => entries[i]), values: idx.map((i) => values[i]) };
}

/** A KAME message's extensions to write, in order: `extOrder` first (an unlisted type or a type above 26 takes the next unknown extension), then the rest ascending, then unknown ones left. */
type KamePart = { e: KameExtEntry; v: unknown } | { raw: Uint8Array };
function kameParts(m: KameMessageInput): KamePart[] {
  const rec = m as unknown as Record<string, unknown>;
  const parts: KamePart[] = [];
  const unknown = m.unknown ?? [];
  let u = 0;
  let done = 0;
  for (const t of m.extOrder ?? []) {
    const e = t >= 1 && t <= KAME_SADB_EXT_MAX ? KAME_EXT_TABLE[t] : undefined;
    if (e === undefined) {
      if (u < unknown.length) parts.push({ raw: unknown[u++].data });
      continue;
    }
    const bit = 1 << (t - 1);
    const v = rec[e.field];
    if (v === undefined || done & bit) continue;
    parts.push({ e, v });
    done |= bit;
  }
  for (let t = 1; t <= KAME_SADB_EXT_MAX; t++) {
    const e = KAME_EXT_TABLE[t]!;
    const v = rec[e.field];
    if (v !== undefined && !(done & (1 << (t - 1)))) parts.push({ e, v });
  }
  while (u < unknown.length) parts.push({ raw: unknown[u++].data });
  return parts;
}

const partLength = (p: KamePart): number => ('raw' in p ? p.raw.length : p.e.codec.encodingLength(p.v));

function buildKame(m: KameMessageInput): Uint8Array {
  const parts = kameParts(m);
  const lens = parts.map(partLength);
  const total = lens.reduce((a, b) => a + b, SADB_MSG_HDR_LEN);
  if (total % 8 || total / 8 > 0xffff) throw new RangeError(`message of ${total} bytes cannot be framed by sadb_msg_len`);
  const u8 = allocMessage(total);
  writeHeader(u8, m.header, total);
  let off = SADB_MSG_HDR_LEN;
  parts.forEach((p, i) => {
    if ('raw' in p) u8.set(p.raw, off);
    else p.e.codec.encode(p.v, u8, off, p.e.type);
    off += lens[i];
  });
  return u8;
}

const isKame = (m: MessageInput | KameMessageInput): m is KameMessageInput => (m as KameMessageInput).dialect === 'kame';

/** Encoded length in bytes of a message. */
export function messageLength(m: MessageInput | KameMessageInput): number {
  if (isKame(m)) return kameParts(m).reduce((n, p) => n + partLength(p), SADB_MSG_HDR_LEN);
  let n = SADB_MSG_HDR_LEN;
  if (m.extOrder) {
    const { entries, values } = orderedEntries(m, m.extOrder);
    for (let i = 0; i < entries.length; i++) n += entries[i].codec.encodingLength(values[i]);
    return n;
  }
  const set = collect(m);
  try {
    for (let b = set; b !== 0; b &= b - 1) {
      const t = lowestType(b);
      n += EXT_TABLE[t]!.codec.encodingLength(VALS[t]);
    }
  } finally {
    release(set);
  }
  return n;
}

/** The header, for a total length already checked to fit sadb_msg_len. */
function writeHeader(u8: Uint8Array, h: MessageInput['header'], total: number): void {
  u8[0] = h.version ?? PF_KEY_V2;
  u8[1] = h.type;
  u8[2] = h.errno ?? 0;
  u8[3] = h.satype ?? 0;
  wr16(u8, 4, total / 8);
  wr16(u8, 6, h.reserved ?? 0);
  wr32(u8, 8, h.seq ?? 0);
  wr32(u8, 12, h.pid ?? 0);
}

/** Write a message's canonical bytes. The header's len is computed; other fields default to 0. */
export function buildMessage(m: MessageInput | KameMessageInput): Uint8Array {
  if (isKame(m)) return buildKame(m);
  if (m.extOrder) return buildOrdered(m, m.extOrder);
  const set = collect(m);
  try {
    let total = SADB_MSG_HDR_LEN;
    for (let b = set; b !== 0; b &= b - 1) {
      const t = lowestType(b);
      const n = EXT_TABLE[t]!.codec.encodingLength(VALS[t]);
      LENS[t] = n;
      total += n;
    }
    if (total / 8 > 0xffff) throw new RangeError(`message of ${total} bytes is too long for sadb_msg_len`);
    const u8 = allocMessage(total);
    writeHeader(u8, m.header, total);
    let off = SADB_MSG_HDR_LEN;
    for (let b = set; b !== 0; b &= b - 1) {
      const t = lowestType(b);
      EXT_TABLE[t]!.codec.encode(VALS[t], u8, off, t);
      off += LENS[t];
    }
    return u8;
  } finally {
    release(set);
  }
}

/** buildMessage for a parsed message whose extensions were not in ascending order. */
function buildOrdered(m: MessageInput, order: number[]): Uint8Array {
  const { entries, values } = orderedEntries(m, order);
  const lens: number[] = [];
  let total = SADB_MSG_HDR_LEN;
  for (let i = 0; i < entries.length; i++) {
    const n = entries[i].codec.encodingLength(values[i]);
    lens.push(n);
    total += n;
  }
  if (total / 8 > 0xffff) throw new RangeError(`message of ${total} bytes is too long for sadb_msg_len`);
  const u8 = allocMessage(total);
  writeHeader(u8, m.header, total);
  let off = SADB_MSG_HDR_LEN;
  for (let i = 0; i < entries.length; i++) {
    entries[i].codec.encode(values[i], u8, off, entries[i].type);
    off += lens[i];
  }
  return u8;
}

/** A header-only message, e.g. an errno reply or a FLUSH. */
export function headerOnly(h: Partial<SadbMsg> & { type: number }): Uint8Array {
  return buildMessage({ header: h });
}

/** The extension fields present in a message, ascending by type (a KAME message's by KAME type). */
export function presentExtensions(m: Extensions): Array<{ type: number; field: ExtField; value: unknown }>;
export function presentExtensions(m: KameMessage | KameMessageInput): Array<{ type: number; field: KameExtField; value: unknown }>;
export function presentExtensions(m: Extensions | KameMessage | KameMessageInput): Array<{ type: number; field: ExtField | KameExtField; value: unknown }> {
  const out: Array<{ type: number; field: ExtField | KameExtField; value: unknown }> = [];
  const rec = m as unknown as Record<string, unknown>;
  const kame = rec.dialect === 'kame';
  const max = kame ? KAME_SADB_EXT_MAX : SADB_EXT_MAX;
  for (let t = 1; t <= max; t++) {
    const e = kame ? KAME_EXT_TABLE[t]! : EXT_TABLE[t]!;
    if (rec[e.field] !== undefined) out.push({ type: t, field: e.field, value: rec[e.field] });
  }
  return out;
}
