/**
 * The differential check's comparison (issue 13), shared by scripts/kame-compare.ts and
 * test/kame-suite.test.ts: the suite's and a run's data shapes, the KAME dialect's
 * numbers, filling a request's {{spi:STEP}} / {{policy:STEP}} placeholders, decoding a
 * message field by field, and comparing two runs of the suite step by step.
 *
 * Decoding: extensions RFC 2367 and KLIPS number alike (1-15, 17) go through klips's own
 * wire codec; where it refuses Linux's bytes (a selector's prefix length, a DEAD SA) and
 * for the KAME-only extensions (host-order SPIRANGE, X_POLICY and its ipsecrequests,
 * X_SA2, NAT-T) a layout table below reads them with the same field names; anything else
 * is compared as raw bytes. Two runs are then compared message by message, socket by
 * socket, with these masks, each a value RFC 2367 and Linux leave to the kernel:
 *
 *   - sadb_msg_seq and sadb_msg_pid of messages the kernel originates (ACQUIRE, EXPIRE,
 *     X_SPDEXPIRE, X_SPDACQUIRE, X_NAT_T_NEW_MAPPING);
 *   - LIFETIME_CURRENT's addtime and usetime (clock readings);
 *   - an SPI GETSPI chose inside the requested range: checked to lie in the range, then
 *     compared as the name of the step that chose it;
 *   - policy ids the kernel assigned: compared by order of first appearance (policy#1, …);
 *     both names are scoped to a group of steps (each group starts from flushed tables,
 *     and a captured group comes from another boot of the kernel);
 *   - sadb_msg_reserved of X_SPD* messages (Linux writes the policy's reference count);
 *   - the order of DUMP / X_SPDDUMP entries (matched as a set; the i-th message's seq must
 *     still be the same on both sides: Linux numbers them 1, 2, … and the last 0);
 *   - the order of extensions inside a message (RFC 2367 fixes none).
 *
 * A Linux send() that failed (no message) is compared with what a stream socket gives
 * instead: a header-only copy of the request's header carrying the errno, to the sender
 * alone; over a stream a framing error (EMSGSIZE) also ends the connection.
 */

import { EXT_TABLE, AF_INET, AF_INET6, formatAddress, errnoName } from '../src/wire/index.js';

// ---------- the KAME dialect's numbers (Linux's linux/pfkeyv2.h, ipsec.h) ----------

/** RFC 2367 and Linux numbers the suite builds requests with. */
export const K = {
  SADB_EXT_SPIRANGE: 16,
  SADB_SATYPE_AH: 2, SADB_SATYPE_ESP: 3, SADB_SATYPE_RSVP: 5, SADB_X_SATYPE_IPCOMP: 9,
  SADB_AALG_MD5HMAC: 2, SADB_AALG_SHA1HMAC: 3, SADB_X_AALG_SHA2_256HMAC: 5, SADB_X_AALG_SHA2_512HMAC: 7,
  SADB_EALG_3DESCBC: 3, SADB_X_EALG_AESCBC: 12, SADB_X_EALG_AES_GCM_ICV16: 20,
  IPPROTO_ESP: 50, IPPROTO_AH: 51,
} as const;

/** sadb_msg_type in the KAME dialect (Linux numbering, 0-24). */
export const KAME_MSG = {
  SADB_RESERVED: 0, SADB_GETSPI: 1, SADB_UPDATE: 2, SADB_ADD: 3, SADB_DELETE: 4, SADB_GET: 5,
  SADB_ACQUIRE: 6, SADB_REGISTER: 7, SADB_EXPIRE: 8, SADB_FLUSH: 9, SADB_DUMP: 10,
  SADB_X_PROMISC: 11, SADB_X_PCHANGE: 12, SADB_X_SPDUPDATE: 13, SADB_X_SPDADD: 14,
  SADB_X_SPDDELETE: 15, SADB_X_SPDGET: 16, SADB_X_SPDACQUIRE: 17, SADB_X_SPDDUMP: 18,
  SADB_X_SPDFLUSH: 19, SADB_X_SPDSETIDX: 20, SADB_X_SPDEXPIRE: 21, SADB_X_SPDDELETE2: 22,
  SADB_X_NAT_T_NEW_MAPPING: 23, SADB_X_MIGRATE: 24,
} as const;
export const KAME_MSG_NAMES: readonly string[] = Object.keys(KAME_MSG).map((k) => k.replace(/^SADB_/, ''));

/** Extension types in the KAME dialect (1-16 are RFC 2367's, 17 on Linux's). */
export const KAME_EXT = {
  X_KMPRIVATE: 17, X_POLICY: 18, X_SA2: 19, X_NAT_T_TYPE: 20, X_NAT_T_SPORT: 21,
  X_NAT_T_DPORT: 22, X_NAT_T_OA: 23, X_SEC_CTX: 24, X_KMADDRESS: 25, X_FILTER: 26,
} as const;
export const KAME_EXT_NAMES: readonly string[] = [
  'RESERVED', 'SA', 'LIFETIME_CURRENT', 'LIFETIME_HARD', 'LIFETIME_SOFT', 'ADDRESS_SRC', 'ADDRESS_DST',
  'ADDRESS_PROXY', 'KEY_AUTH', 'KEY_ENCRYPT', 'IDENTITY_SRC', 'IDENTITY_DST', 'SENSITIVITY', 'PROPOSAL',
  'SUPPORTED_AUTH', 'SUPPORTED_ENCRYPT', 'SPIRANGE', 'X_KMPRIVATE', 'X_POLICY', 'X_SA2', 'X_NAT_T_TYPE',
  'X_NAT_T_SPORT', 'X_NAT_T_DPORT', 'X_NAT_T_OA', 'X_SEC_CTX', 'X_KMADDRESS', 'X_FILTER',
];

/** sadb_x_policy_type, _dir; sadb_x_ipsecrequest_mode, _level (KAME's netinet6/ipsec.h). */
export const IPSEC_POLICY = { DISCARD: 0, NONE: 1, IPSEC: 2, ENTRUST: 3, BYPASS: 4 } as const;
export const IPSEC_DIR = { ANY: 0, INBOUND: 1, OUTBOUND: 2, FWD: 3 } as const;
export const IPSEC_MODE = { ANY: 0, TRANSPORT: 1, TUNNEL: 2 } as const;
export const IPSEC_LEVEL = { DEFAULT: 0, USE: 1, REQUIRE: 2, UNIQUE: 3 } as const;

const M = KAME_MSG;
/** Messages a kernel sends of its own accord: their seq and pid are its to choose. */
const ORIGINATED = new Set<number>([M.SADB_ACQUIRE, M.SADB_EXPIRE, M.SADB_X_SPDACQUIRE, M.SADB_X_SPDEXPIRE, M.SADB_X_NAT_T_NEW_MAPPING]);
/** Policy messages: Linux writes the policy's reference count into sadb_msg_reserved. */
const SPD_TYPES = new Set<number>([13, 14, 15, 16, 17, 18, 19, 20, 21, 22]);
/** Replies that come as a stream of entries, in an order nobody fixes. */
const DUMP_TYPES = new Set<number>([M.SADB_DUMP, M.SADB_X_SPDDUMP]);
const ERRNO_EMSGSIZE = 90;
/** Linux's GETSPI range when the request has no SPIRANGE. */
const DEFAULT_SPI_RANGE: [number, number] = [0x100, 0x0fffffff];

// ---------- data shapes ----------

export interface SuiteStep {
  name: string;
  group: string;
  comment: string;
  open?: number[];
  close?: number[];
  socket?: number;
  /** The request, hex, maybe with {{spi:STEP}} / {{policy:STEP}} placeholders. */
  request?: string;
  /** Seconds to wait (collecting what arrives). */
  wait?: number;
  /** An IPv4 packet the kernel's outbound path should see. */
  traffic?: { packet: string; what: string };
  /** Seconds to collect after this step, instead of the suite's default. */
  settle?: number;
  /** Not run on the VM: Linux's answers are this earlier capture's step (socket letters mapped to ids). */
  capture?: { file: string; step: number; sockets: Record<string, number> };
}

export interface Suite {
  title: string;
  about: string;
  pid: number;
  settle: number;
  steps: SuiteStep[];
}

/** What one step gave on one side. */
export interface StepResult {
  name: string;
  /** The request as sent (placeholders filled). */
  request?: string;
  /** send()'s result on a datagram socket: [return value, errno]. */
  send?: [number, number];
  /** Every message each socket received during the step, hex, by socket id. */
  received: Record<string, string[]>;
  /** Sockets the other end closed during the step (a stream side). */
  closed?: number[];
  /** Where the result came from, when not from this run. */
  source?: string;
}

export interface Run {
  /** 'datagram' (a PF_KEY socket: Linux) or 'stream' (klipsd's socket). */
  transport: 'datagram' | 'stream';
  /** What answered: "Linux 6.1.0-57-amd64", "klipsd 0.1.0". */
  kernel: string;
  steps: StepResult[];
  [more: string]: unknown;
}

// ---------- placeholders ----------

const PLACEHOLDER = /\{\{(spi|policy):([A-Za-z0-9_]+)\}\}/g;

/** The extension of `type` in a message (hex), as bytes, or undefined. */
function findExt(msg: Uint8Array, type: number): Uint8Array | undefined {
  for (let off = 16; off + 4 <= msg.length;) {
    const len = (msg[off] | (msg[off + 1] << 8)) * 8;
    if (len === 0) return undefined;
    if ((msg[off + 2] | (msg[off + 3] << 8)) === type) return msg.subarray(off, off + len);
    off += len;
  }
  return undefined;
}

/** The first message of STEP's request type to its sender, without errno. */
function replyOf(step: SuiteStep | undefined, result: StepResult | undefined): Uint8Array | undefined {
  if (!step || !result || step.socket === undefined || !result.request) return undefined;
  const type = Buffer.from(result.request.slice(2, 4), 'hex')[0];
  for (const h of result.received[String(step.socket)] ?? []) {
    const m = Buffer.from(h, 'hex');
    if (m[1] === type && m[2] === 0 && m.length > 16) return m;
  }
  return undefined;
}

/**
 * A request with its placeholders filled from earlier results: {{spi:S}} from the SA
 * extension of S's reply to its sender (bytes 4-7), {{policy:S}} from its X_POLICY
 * (bytes 8-11). An unresolvable one becomes zeros and is named in `unresolved`.
 */
export function fillRequest(request: string, steps: SuiteStep[], results: Map<string, StepResult>): { hex: string; unresolved: string[] } {
  const unresolved: string[] = [];
  const hex = request.replace(PLACEHOLDER, (token: string, kind: string, name: string) => {
    const reply = replyOf(steps.find((s) => s.name === name), results.get(name));
    const e = reply && findExt(reply, kind === 'spi' ? 1 : KAME_EXT.X_POLICY);
    const at = kind === 'spi' ? 4 : 8;
    if (!e || e.length < at + 4) {
      unresolved.push(token);
      return '00000000';
    }
    return Buffer.from(e.subarray(at, at + 4)).toString('hex');
  });
  return { hex, unresolved };
}

// ---------- decoding ----------

type Fields = Record<string, string>;

interface Decoded {
  header: Fields;
  type: number;
  errno: number;
  /** Extension fields by extension name (a repeated extension gets #2, #3 …). */
  exts: Map<string, Fields>;
}

const rd16 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
const rd32 = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
const rd32be = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const rd64 = (b: Uint8Array, o: number) => (BigInt(rd32(b, o + 4)) << 32n) | BigInt(rd32(b, o));
const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');
const spiText = (n: number) => `0x${n.toString(16)}`;

/** A value as the report shows it. */
function show(v: unknown): string {
  if (v instanceof Uint8Array) return hexOf(v);
  if (typeof v === 'bigint') return v.toString();
  return String(v);
}

/** Flatten a decoded object into path → text (arrays as name[i].field). */
function flatten(v: unknown, prefix: string, out: Fields): void {
  if (Array.isArray(v)) {
    out[`${prefix}.length`] = String(v.length);
    v.forEach((x, i) => flatten(x, `${prefix}[${i}]`, out));
  } else if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    for (const [k, x] of Object.entries(v)) if (x !== undefined) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else out[prefix] = show(v);
}

/** A Linux sockaddr (family host order, port network order) at b[o..]. */
function sockaddr(b: Uint8Array, o: number, end: number): Record<string, unknown> {
  const family = rd16(b, o);
  const port = (b[o + 2] << 8) | b[o + 3];
  if (family === AF_INET && o + 16 <= end) return { family, port, addr: formatAddress(AF_INET, b, o + 4), zero: hexOf(b.subarray(o + 8, o + 16)) };
  if (family === AF_INET6 && o + 28 <= end) {
    return { family, port, flowinfo: rd32be(b, o + 4), addr: formatAddress(AF_INET6, b, o + 8), scopeId: rd32(b, o + 24) };
  }
  return { family, raw: hexOf(b.subarray(o, end)) };
}

function sockaddrLen(family: number): number {
  return family === AF_INET ? 16 : family === AF_INET6 ? 28 : 0;
}

/** Layouts by KAME extension type: e is the whole extension (header included). */
const LAYOUT: Record<number, (e: Uint8Array) => unknown> = {
  1: (e) => ({ spi: rd32be(e, 4), replay: e[8], state: e[9], auth: e[10], encrypt: e[11], flags: rd32(e, 12) }),
  2: lifetime, 3: lifetime, 4: lifetime,
  5: address, 6: address, 7: address, 23: address,
  8: keyExt, 9: keyExt,
  14: supported, 15: supported,
  16: (e) => ({ min: rd32(e, 4), max: rd32(e, 8), reserved: rd32(e, 12) }),
  18: (e) => {
    const requests: unknown[] = [];
    for (let o = 16; o + 16 <= e.length;) {
      const len = rd16(e, o);
      const r: Record<string, unknown> = { len, proto: rd16(e, o + 2), mode: e[o + 4], level: e[o + 5], reserved: rd16(e, o + 6), reqid: rd32(e, o + 8), reserved2: rd32(e, o + 12) };
      const end = Math.min(o + Math.max(len, 16), e.length);
      let a = o + 16;
      for (const side of ['src', 'dst']) {
        const n = sockaddrLen(rd16(e, a));
        if (a + 2 > end || n === 0 || a + n > end) break;
        r[side] = sockaddr(e, a, a + n);
        a += n;
      }
      if (a < end) r.tail = hexOf(e.subarray(a, end));
      requests.push(r);
      if (len < 16) break;
      o += len;
    }
    return { type: rd16(e, 4), dir: e[6], reserved: e[7], id: rd32(e, 8), priority: rd32(e, 12), requests };
  },
  19: (e) => ({ mode: e[4], reserved1: e[5], reserved2: rd16(e, 6), sequence: rd32(e, 8), reqid: rd32(e, 12) }),
  20: (e) => ({ type: e[4], reserved: hexOf(e.subarray(5, 8)) }),
  21: natPort, 22: natPort,
};

function lifetime(e: Uint8Array) {
  return { allocations: rd32(e, 4), bytes: rd64(e, 8), addtime: rd64(e, 16), usetime: rd64(e, 24) };
}
function address(e: Uint8Array) {
  return { proto: e[4], prefixlen: e[5], reserved: rd16(e, 6), ...sockaddr(e, 8, e.length) };
}
function keyExt(e: Uint8Array) {
  const bits = rd16(e, 4);
  return { bits, reserved: rd16(e, 6), key: e.subarray(8, 8 + Math.ceil(bits / 8)), pad: hexOf(e.subarray(8 + Math.ceil(bits / 8))) };
}
function supported(e: Uint8Array) {
  const algs: unknown[] = [];
  for (let o = 8; o + 8 <= e.length; o += 8) algs.push({ id: e[o], ivlen: e[o + 1], minbits: rd16(e, o + 2), maxbits: rd16(e, o + 4) });
  return { algs };
}
function natPort(e: Uint8Array) {
  return { port: (e[4] << 8) | e[5], reserved: rd16(e, 6) };
}

/** Extension types klips's codec reads the same way in both dialects. */
const CODEC_TYPES = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17]);

/** One extension's fields: klips's codec if it accepts the bytes (and `codec` allows), else the layout, else raw. */
function decodeExt(msg: Uint8Array, off: number, len: number, type: number, codec: boolean): Fields {
  const out: Fields = {};
  const e = msg.subarray(off, off + len);
  if (codec && CODEC_TYPES.has(type)) {
    try {
      const v = EXT_TABLE[type]!.codec.decode(msg, off, len, type, false) as Record<string, unknown>;
      flatten(type === 1 ? { ...v, ref: undefined } : v, '', out);
      return out;
    } catch { /* the layout below reads it */ }
  }
  const layout = LAYOUT[type];
  if (layout) flatten(layout(e), '', out);
  else out.raw = hexOf(e.subarray(4));
  return out;
}

/** Whether klips's codec reads the message's (first) extension of `type` without refusing it. */
function codecAccepts(msg: Uint8Array, type: number): boolean {
  const e = findExt(msg, type);
  if (!e || !CODEC_TYPES.has(type)) return false;
  const off = e.byteOffset - msg.byteOffset;
  try {
    EXT_TABLE[type]!.codec.decode(msg, off, e.length, type, false);
    return true;
  } catch {
    return false;
  }
}

/** Decode a message; `useCodec(type)` says whether to try klips's codec for an extension type. */
function decode(hex: string, useCodec: (type: number) => boolean): Decoded {
  const b = Uint8Array.from(Buffer.from(hex, 'hex'));
  const header: Fields = {
    version: String(b[0]), type: String(b[1]), errno: String(b[2]), satype: String(b[3]),
    len: String(rd16(b, 4)), reserved: String(rd16(b, 6)), seq: String(rd32(b, 8)), pid: String(rd32(b, 12)),
  };
  const exts = new Map<string, Fields>();
  let off = 16;
  while (off + 4 <= b.length) {
    const len = rd16(b, off) * 8;
    const type = rd16(b, off + 2);
    if (len === 0 || off + len > b.length) {
      exts.set('(undecodable tail)', { raw: hexOf(b.subarray(off)) });
      break;
    }
    let name = KAME_EXT_NAMES[type] ?? `EXT_${type}`;
    for (let n = 2; exts.has(name); n++) name = `${KAME_EXT_NAMES[type] ?? `EXT_${type}`}#${n}`;
    exts.set(name, decodeExt(b, off, len, type, useCodec(type)));
    off += len;
  }
  if (off < b.length && !exts.has('(undecodable tail)')) exts.set('(trailing bytes)', { raw: hexOf(b.subarray(off)) });
  return { header, type: b[1], errno: b[2], exts };
}

/** Both sides of a pair decoded alike: klips's codec for a type only where it accepts both. */
function decodePair(a: string, b: string): [Decoded, Decoded] {
  const ua = Uint8Array.from(Buffer.from(a, 'hex'));
  const ub = Uint8Array.from(Buffer.from(b, 'hex'));
  const use = (t: number) => codecAccepts(ua, t) && codecAccepts(ub, t);
  return [decode(a, use), decode(b, use)];
}

/** A message's fields as the comparison reads them (no masks): header, then each extension by name. */
export function decodeMessage(hex: string): { header: Record<string, string>; exts: Record<string, Record<string, string>> } {
  const u8 = Uint8Array.from(Buffer.from(hex, 'hex'));
  const d = decode(hex, (t) => codecAccepts(u8, t));
  return { header: d.header, exts: Object.fromEntries(d.exts) };
}

/** A message's short name for reports: "UPDATE", "GET errno ESRCH". */
export function describe(hex: string): string {
  const b = Buffer.from(hex, 'hex');
  const t = KAME_MSG_NAMES[b[1]] ?? `type ${b[1]}`;
  return b[2] ? `${t} errno ${errnoName(b[2])}` : t;
}

// ---------- masks and aliases ----------

/** Per side: kernel-chosen values seen so far, under the names both sides share. */
class Aliases {
  readonly spis = new Map<string, string>();
  readonly policies = new Map<string, string>();

  policy(id: string): string {
    if (id === '0') return id;
    let a = this.policies.get(id);
    if (!a) {
      a = `policy#${this.policies.size + 1}`;
      this.policies.set(id, a);
    }
    return a;
  }
}

/** Apply the masks and aliases to a decoded message, in place (`echo`: it is a copy of the step's request). */
function mask(d: Decoded, echo: boolean, al: Aliases): void {
  if (ORIGINATED.has(d.type) && d.errno === 0 && !echo) {
    d.header.seq = '*';
    d.header.pid = '*';
  }
  if (SPD_TYPES.has(d.type)) d.header.reserved = '*';
  const cur = d.exts.get('LIFETIME_CURRENT');
  if (cur) {
    if ('addtime' in cur) cur.addtime = '*';
    if ('usetime' in cur) cur.usetime = '*';
  }
  for (const [name, f] of d.exts) {
    if ((name === 'SA' || name.startsWith('SA#')) && f.spi !== undefined) f.spi = al.spis.get(f.spi) ?? spiText(Number(f.spi));
    if (name.startsWith('X_POLICY') && f.id !== undefined) f.id = al.policy(f.id);
  }
}

// ---------- comparing ----------

export interface StepReport {
  name: string;
  group: string;
  comment: string;
  equal: boolean;
  differences: string[];
}

interface Side {
  label: string;
  run: Run;
  aliases: Aliases;
}

/** A header-only copy of a request's header with `errno`, as klipsd answers on a stream where send() would fail. */
export function streamRefusal(request: string, errno: number): string {
  const b = Buffer.alloc(16);
  const r = Buffer.from(request, 'hex');
  const h = Buffer.alloc(16);
  r.copy(h, 0, 0, Math.min(16, r.length));
  b[0] = 2; b[1] = h[1]; b[2] = errno; b[3] = h[3];
  b.writeUInt16LE(2, 4);
  h.copy(b, 8, 8, 16);
  return b.toString('hex');
}

/** What each socket saw, as a stream client sees it (a failed send() becomes its refusal message). */
function seen(step: SuiteStep, r: StepResult, run: Run): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const [k, v] of Object.entries(r.received)) if (v.length) out.set(Number(k), [...v]);
  if (run.transport === 'datagram' && r.send && r.send[1] !== 0 && step.socket !== undefined && r.request) {
    out.set(step.socket, [streamRefusal(r.request, r.send[1]), ...(out.get(step.socket) ?? [])]);
  }
  return out;
}

/** Differences between two decoded (masked) messages, as "where: a vs b" lines. */
function diffMessages(a: Decoded, b: Decoded, la: string, lb: string): string[] {
  const out: string[] = [];
  for (const k of Object.keys(a.header)) {
    if (a.header[k] !== b.header[k]) out.push(`sadb_msg_${k}: ${la} ${a.header[k]}, ${lb} ${b.header[k]}`);
  }
  const names = [...new Set([...a.exts.keys(), ...b.exts.keys()])];
  for (const n of names) {
    const fa = a.exts.get(n);
    const fb = b.exts.get(n);
    if (!fa || !fb) {
      out.push(`${n}: only ${fa ? la : lb} has it`);
      continue;
    }
    for (const k of [...new Set([...Object.keys(fa), ...Object.keys(fb)])]) {
      if (fa[k] !== fb[k]) out.push(`${n}.${k}: ${la} ${fa[k] ?? '(none)'}, ${lb} ${fb[k] ?? '(none)'}`);
    }
  }
  return out;
}

const identity = (d: Decoded): string => JSON.stringify([d.header, [...d.exts].sort(([x], [y]) => (x < y ? -1 : 1))]);

/** Compare one socket's messages in a step. */
function diffSocket(step: SuiteStep, id: number, xs: string[], ys: string[], A: Side, B: Side, req: [string | undefined, string | undefined]): string[] {
  const out: string[] = [];
  const isEcho = (h: string, r: string | undefined) => r !== undefined && h === r;
  /* Dump entries are matched before they are paired, so all of them are read by the layouts alone. */
  const dec = (h: string, s: Side, r: string | undefined): Decoded => {
    const d = decode(h, () => false);
    mask(d, isEcho(h, r), s.aliases);
    return d;
  };
  const reqType = step.request ? parseInt(step.request.slice(2, 4), 16) : -1;
  const dumpEntry = (h: string) => {
    const b = Buffer.from(h, 'hex');
    return id === step.socket && DUMP_TYPES.has(b[1]) && b[1] === reqType && b[2] === 0;
  };
  // DUMP entries to the sender: matched as a set; their seq must count down to 0.
  const dx = xs.filter(dumpEntry);
  const dy = ys.filter(dumpEntry);
  if (dx.length || dy.length) {
    const seqs = (hs: string[]) => hs.map((h) => Buffer.from(h, 'hex').readUInt32LE(8)).join(',');
    if (seqs(dx) !== seqs(dy)) out.push(`socket ${id}: DUMP seq numbering: ${A.label} [${seqs(dx)}], ${B.label} [${seqs(dy)}]`);
    const ex = dx.map((h) => dec(h, A, req[0]));
    const ey = dy.map((h) => dec(h, B, req[1]));
    for (const d of [...ex, ...ey]) d.header.seq = '(dump)';
    const left = ey.map((d) => identity(d));
    const unmatchedX: Decoded[] = [];
    for (const d of ex) {
      const i = left.indexOf(identity(d));
      if (i >= 0) left[i] = '';
      else unmatchedX.push(d);
    }
    const unmatchedY = ey.filter((d, i) => left[i] !== '');
    for (let i = 0; i < Math.max(unmatchedX.length, unmatchedY.length); i++) {
      const a = unmatchedX[i];
      const b = unmatchedY[i];
      if (!a || !b) out.push(`socket ${id}: DUMP entry only ${a ? A.label : B.label} sent: ${JSON.stringify((a ?? b)!.exts.get('SA') ?? (a ?? b)!.exts.get('X_POLICY') ?? {})}`);
      else for (const d of diffMessages(a, b, A.label, B.label)) out.push(`socket ${id}: DUMP entry: ${d}`);
    }
  }
  const rx = xs.filter((h) => !dumpEntry(h));
  const ry = ys.filter((h) => !dumpEntry(h));
  for (let i = 0; i < Math.max(rx.length, ry.length); i++) {
    const hx = rx[i];
    const hy = ry[i];
    if (hx === undefined || hy === undefined) {
      out.push(`socket ${id} message ${i + 1}: only ${hx ? A.label : B.label} sent ${describe((hx ?? hy)!)}`);
      continue;
    }
    const [a, b] = decodePair(hx, hy);
    mask(a, isEcho(hx, req[0]), A.aliases);
    mask(b, isEcho(hy, req[1]), B.aliases);
    for (const d of diffMessages(a, b, A.label, B.label)) out.push(`socket ${id} message ${i + 1} (${describe(hx)}): ${d}`);
  }
  return out;
}

/** The SPI range a GETSPI request asks for (host order), or Linux's default. */
function spiRange(request: string): [number, number] {
  const e = findExt(Uint8Array.from(Buffer.from(request, 'hex')), K.SADB_EXT_SPIRANGE);
  return e ? [rd32(e, 4), rd32(e, 8)] : DEFAULT_SPI_RANGE;
}

/** Note the SPI a GETSPI with a range chose (checking it lies in the range); a complaint or undefined. */
function noteSpi(step: SuiteStep, r: StepResult, s: Side): string | undefined {
  if (!r.request || Buffer.from(r.request, 'hex')[1] !== M.SADB_GETSPI) return undefined;
  const [min, max] = spiRange(r.request);
  if (min === max) return undefined;
  const reply = replyOf(step, r);
  const e = reply && findExt(reply, 1);
  if (!e) return undefined;
  const spi = rd32be(e, 4);
  s.aliases.spis.set(String(spi), `spi(${step.name})`);
  return spi < min || spi > max ? `${s.label} chose SPI ${spiText(spi)} outside ${spiText(min)}-${spiText(max)}` : undefined;
}

/**
 * Compare run B against run A (the reference) step by step: equal, or the field-level
 * differences. Both runs must follow `suite`'s steps in order.
 */
export function compareRuns(suite: Suite, A: { label: string; run: Run }, B: { label: string; run: Run }): StepReport[] {
  const a: Side = { ...A, aliases: new Aliases() };
  const b: Side = { ...B, aliases: new Aliases() };
  const byName = (run: Run) => new Map(run.steps.map((r) => [r.name, r]));
  const ra = byName(a.run);
  const rb = byName(b.run);
  let group = '';
  return suite.steps.map((step) => {
    if (step.group !== group) {
      group = step.group;
      a.aliases = new Aliases();
      b.aliases = new Aliases();
    }
    const x = ra.get(step.name);
    const y = rb.get(step.name);
    const differences: string[] = [];
    if (!x || !y) {
      differences.push(`no result from ${!x ? a.label : b.label}`);
      return { name: step.name, group: step.group, comment: step.comment, equal: false, differences };
    }
    for (const [r, s] of [[x, a], [y, b]] as const) {
      const complaint = noteSpi(step, r, s);
      if (complaint) differences.push(complaint);
    }
    if (a.run.transport === 'datagram' && b.run.transport === 'datagram' && x.send && y.send && x.send[1] !== y.send[1]) {
      differences.push(`send(): ${a.label} ${x.send[1] ? errnoName(x.send[1]) : 'ok'}, ${b.label} ${y.send[1] ? errnoName(y.send[1]) : 'ok'}`);
    }
    for (const [r, s, other] of [[x, a, x], [y, b, x]] as const) {
      const expected = new Set<number>();
      if (other.send && other.send[1] === ERRNO_EMSGSIZE && step.socket !== undefined) expected.add(step.socket);
      for (const id of r.closed ?? []) if (!expected.has(id)) differences.push(`${s.label} closed socket ${id}`);
    }
    const sx = seen(step, x, a.run);
    const sy = seen(step, y, b.run);
    const ids = [...new Set([...sx.keys(), ...sy.keys()])].sort((p, q) => p - q);
    const reqs: [string | undefined, string | undefined] = [x.request, y.request];
    for (const id of ids) differences.push(...diffSocket(step, id, sx.get(id) ?? [], sy.get(id) ?? [], a, b, reqs));
    return { name: step.name, group: step.group, comment: step.comment, equal: differences.length === 0, differences };
  });
}

/** The report as markdown: a summary line, then one row per step. */
export function renderReport(reports: StepReport[], title: string): string {
  const eq = reports.filter((r) => r.equal).length;
  const lines = [`## ${title}`, '', `${eq} of ${reports.length} steps equal.`, '', '| step | group | result |', '|---|---|---|'];
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  for (const r of reports) {
    lines.push(`| \`${r.name}\` | ${r.group} | ${r.equal ? 'equal' : r.differences.map(cell).join('<br>')} |`);
  }
  return `${lines.join('\n')}\n`;
}
