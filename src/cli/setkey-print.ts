/**
 * What `klips setkey` prints, shaped as ipsec-tools' setkey prints it so that scripts
 * written against setkey's output read klips's the same way:
 *
 *  - `printSa`: an SA as libipsec's pfkey_sadump prints it (-D, get): the address line,
 *    `esp mode=tunnel spi=... reqid=...`, the `E:`/`A:`/`C:` lines with the keys, `seq=...
 *    replay=... flags=... state=...`, the lifetime lines, `sadb_seq=... pid=... refcnt=...`;
 *  - `printSp`: a policy as pfkey_spdump prints it (-DP): the selector line, the policy
 *    (`policyText`, ipsec_dump_policy) one template per line, created/lastused,
 *    lifetime/validtime, `spid=... seq=... pid=...`, `refcnt=...`;
 *  - `kdebug`: any message, field by field, as key_debug.c's kdebug_sadb prints it (the
 *    monitor -x, and -v), read from the raw bytes so that nothing is lost to a parser;
 *  - the monitor's time stamp and -H hexdump;
 *  - under --json, one record per SA, per policy or per message instead.
 *
 * Times are the local time zone's, as ctime(3) writes them. Differences from setkey's
 * text are few and listed in docs/semantics.md (names for algorithms setkey prints as
 * numbers, `any` for upper-layer protocol 255).
 */

import {
  AF_INET, AF_INET6, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPSEC_MANUAL_REQID_MAX, IPSEC_POLICY_IPSEC,
  IPSEC_PORT_ANY, IPSEC_ULPROTO_ANY, SADB_SATYPE_ESP, SADB_X_SATYPE_IPCOMP,
  type Address, type KameMessage, type Lifetime, type Policy, type Sockaddr,
} from '../wire/index.js';
import {
  ENCRYPT_ALGORITHMS, AUTH_ALGORITHMS, COMP_ALGORITHMS, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6,
  IPPROTO_MH, PRIORITY_DEFAULT, PRIORITY_HIGH, PRIORITY_LOW, PROTOCOLS,
} from './setkey-parse.js';

// ---------- reading raw fields (host order is little-endian, as on the wire to klipsd) ----------

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const rd16 = (b: Uint8Array, o: number) => view(b).getUint16(o, true);
const rd16be = (b: Uint8Array, o: number) => view(b).getUint16(o, false);
const rd32 = (b: Uint8Array, o: number) => view(b).getUint32(o, true);
const rd32be = (b: Uint8Array, o: number) => view(b).getUint32(o, false);
const rd64 = (b: Uint8Array, o: number) => view(b).getBigUint64(o, true);

// ---------- names (pfkey_dump.c's tables) ----------

const SATYPE_WORDS = ['unspec', 'unknown', 'ah', 'esp', 'unknown', 'rsvp', 'ospfv2', 'ripv2', 'mip', 'ipcomp', 'policy', 'tcp'];
const MODE_WORDS = ['any', 'transport', 'tunnel'];
const STATE_WORDS = ['larval', 'mature', 'dying', 'dead'];

/** Number to name, the first name setkey reads for it (pfkey_dump.c names keyed-md5 `md5`, keyed-sha1 `sha`). */
function namesOf(table: Readonly<Record<string, { id: number } | number>>, extra: Record<number, string>): Record<number, string> {
  const out: Record<number, string> = { 0: 'none', ...extra };
  for (const [name, v] of Object.entries(table)) {
    const id = typeof v === 'number' ? v : v.id;
    if (!(id in out)) out[id] = name;
  }
  return out;
}
const ENCRYPT_WORDS = namesOf(ENCRYPT_ALGORITHMS, {});
const AUTH_WORDS = namesOf(AUTH_ALGORITHMS, { 249: 'md5', 250: 'sha', 5: 'hmac-sha256', 6: 'hmac-sha384', 7: 'hmac-sha512' });
const COMP_WORDS = namesOf(COMP_ALGORITHMS, {});
const PROTOCOL_WORDS: Record<number, string> = Object.fromEntries(PROTOCOLS.map(([n, name]) => [n, name]));

/** GETMSGSTR: the word, or the number when there is none; followed by a space. */
const word = (table: readonly string[] | Record<number, string>, n: number): string =>
  `${(table as Record<number, string>)[n] ?? n} `;

/** The name of an upper-layer protocol (getprotobynumber), `any` for 255. */
export function protocolName(n: number): string {
  return n === IPSEC_ULPROTO_ANY ? 'any' : PROTOCOL_WORDS[n] ?? String(n);
}

// ---------- small formats ----------

/** ipsec_hexdump: a space before every 4 bytes, a newline every 32. */
export function hexdump(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) {
    if (i !== 0 && i % 32 === 0) s += '\n';
    if (i % 4 === 0) s += ' ';
    s += b[i].toString(16).padStart(2, '0');
  }
  return s;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const p2 = (n: number) => String(n).padStart(2, '0');

/** str_time: ctime's "Mmm dd hh:mm:ss yyyy" in local time, or 20 spaces for 0. */
export function ctimeText(t: bigint | number): string {
  const s = BigInt(t);
  if (s === 0n) return ' '.repeat(20);
  const d = new Date(Number(s) * 1000);
  if (Number.isNaN(d.getTime())) return '?'.repeat(20);
  const text = `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${d.getFullYear()}`;
  return text.slice(0, 20).padEnd(20, ' ');
}

/** %lu of a 64-bit value. */
const u64 = (v: bigint) => BigInt.asUintN(64, v).toString();

/** getnameinfo(NI_NUMERICHOST): the address, with its scope for a scoped IPv6 address. */
function hostText(a: { family: number; addr: string; scopeId?: number }): string {
  return a.family === AF_INET6 && a.scopeId ? `${a.addr}%${a.scopeId}` : a.addr;
}

// ---------- SAs (pfkey_sadump) ----------

export interface PrintOptions {
  /** Now, in seconds since the epoch (the "current:" line and "diff:"). */
  now: number;
  /** setkey -p: addresses with their ports. */
  withPorts?: boolean;
}

function lifetimeBytes(l: Lifetime | undefined, label: string): string {
  // %.0f of the byte count as a double.
  const v = l ? BigInt(Math.round(Number(l.bytes))).toString() : '0';
  return `\t${label}: ${v}(bytes)`;
}

/** An SA (a GET or DUMP answer) as setkey -D prints it. */
export function printSa(m: KameMessage, o: PrintOptions): string {
  const src = m.addressSrc;
  const dst = m.addressDst;
  const natt = m.natTType !== undefined && m.natTType.type !== 0;
  let s = '';
  if (!src) return 'no ADDRESS_SRC extension.\n';
  s += o.withPorts ? `${hostText(src)}[${src.port}]` : hostText(src);
  if (natt && m.natTSport) s += `[${m.natTSport.port}]`;
  s += ' ';
  if (!dst) return `${s} no ADDRESS_DST extension.\n`;
  s += o.withPorts ? `${hostText(dst)}[${dst.port}]` : hostText(dst);
  if (natt && m.natTDport) s += `[${m.natTDport.port}]`;
  s += ' ';
  const sa = m.sa;
  const sa2 = m.xSa2;
  if (!sa) return `${s}no SA extension.\n`;
  if (!sa2) return `${s}no SA2 extension.\n`;
  s += '\n\t';
  const satype = m.header.satype;
  if (natt && satype === SADB_SATYPE_ESP) s += 'esp-udp ';
  else if (natt) s += 'natt+';
  if (!natt || satype !== SADB_SATYPE_ESP) s += word(SATYPE_WORDS, satype);
  s += `mode=${word(MODE_WORDS, sa2.mode)}`;
  const spi = sa.spi >>> 0;
  const hex8 = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
  s += `spi=${spi}(0x${hex8(spi)}) reqid=${sa2.reqid >>> 0}(0x${hex8(sa2.reqid)})\n`;
  if (natt && m.natTOa) s += `\tNAT OA=${hostText(m.natTOa)}\n`;
  if (satype === SADB_X_SATYPE_IPCOMP) {
    // setkey ends the C: line without a newline; the next line runs on after it.
    s += `\tC: ${word(COMP_WORDS, sa.encrypt)}`;
  } else if (satype === SADB_SATYPE_ESP && m.keyEncrypt) {
    s += `\tE: ${word(ENCRYPT_WORDS, sa.encrypt)}${hexdump(m.keyEncrypt.key.subarray(0, m.keyEncrypt.bits >> 3))}\n`;
  }
  if (m.keyAuth) s += `\tA: ${word(AUTH_WORDS, sa.auth)}${hexdump(m.keyAuth.key.subarray(0, m.keyAuth.bits >> 3))}\n`;
  s += `\tseq=0x${hex8(sa2.sequence)} replay=${sa.replay} flags=0x${hex8(sa.flags)} state=${word(STATE_WORDS, sa.state)}\n`;
  const c = m.lifetimeCurrent;
  const h = m.lifetimeHard;
  const so = m.lifetimeSoft;
  if (c) {
    const now = BigInt(Math.floor(o.now));
    s += `\tcreated: ${ctimeText(c.addtime)}\tcurrent: ${ctimeText(now)}\n`;
    s += `\tdiff: ${c.addtime === 0n ? '0' : u64(now - c.addtime)}(s)\thard: ${u64(h?.addtime ?? 0n)}(s)\tsoft: ${u64(so?.addtime ?? 0n)}(s)\n`;
    s += `\tlast: ${ctimeText(c.usetime)}\thard: ${u64(h?.usetime ?? 0n)}(s)\tsoft: ${u64(so?.usetime ?? 0n)}(s)\n`;
    s += `${lifetimeBytes(c, 'current')}${lifetimeBytes(h, 'hard')}${lifetimeBytes(so, 'soft')}\n`;
    s += `\tallocated: ${c.allocations >>> 0}\thard: ${(h?.allocations ?? 0) >>> 0}\tsoft: ${(so?.allocations ?? 0) >>> 0}\n`;
  }
  if (m.secCtx) s += secCtxText(m.secCtx);
  s += `\tsadb_seq=${m.header.seq >>> 0} pid=${m.header.pid >>> 0} refcnt=${m.header.reserved}\n`;
  return s;
}

function secCtxText(c: NonNullable<KameMessage['secCtx']>): string {
  const nul = c.ctx.indexOf(0);
  const text = Buffer.from(nul < 0 ? c.ctx : c.ctx.subarray(0, nul)).toString('latin1');
  return `\tsecurity context doi: ${c.doi}\n\tsecurity context algorithm: ${c.alg}\n\tsecurity context length: ${c.ctx.length}\n\tsecurity context: ${text}\n`;
}

// ---------- policies (ipsec_dump_policy, pfkey_spdump) ----------

const DIR_WORDS = ['any', 'in', 'out', 'fwd', 'in(socket)', 'out(socket)'];
const POLICY_WORDS = ['discard', 'none', 'ipsec', 'entrust', 'bypass'];
const REQUEST_PROTOS: Record<number, string> = { [IPPROTO_ESP]: 'esp', [IPPROTO_AH]: 'ah', [IPPROTO_COMP]: 'ipcomp' };
const LEVEL_WORDS = ['default', 'use', 'require', 'unique'];

/** A policy that ipsec_dump_policy refuses: the error it sets (ipsec_strerror's text). */
export class PolicyDumpError extends Error {}

/** "out prio def + 100 ipsec": the direction, the priority as setkey reads it back, the action. */
function policyHead(p: Policy): string {
  const dir = DIR_WORDS[p.dir];
  const action = POLICY_WORDS[p.type];
  if (dir === undefined) throw new PolicyDumpError('Invalid direction');
  if (action === undefined) throw new PolicyDumpError('Invalid security policy');
  const prio = p.priority >>> 0;
  if (prio === 0) return `${dir} ${action}`;
  let base: string;
  let offset: number;
  if (prio < (PRIORITY_DEFAULT / 4) * 3) { base = 'prio high'; offset = (prio - PRIORITY_HIGH) | 0; }
  else if (prio < (PRIORITY_DEFAULT / 4) * 5) { base = 'prio def'; offset = (prio - PRIORITY_DEFAULT) | 0; }
  else { base = 'prio low'; offset = (prio - PRIORITY_LOW) | 0; }
  // Written the way it is read: a higher priority is a smaller number.
  offset = Math.imul(offset, -1);
  const op = offset < 0 ? '-' : '+';
  if (offset < 0) offset = Math.imul(offset, -1);
  if (offset === 0) return `${dir} ${base} ${action}`;
  return `${dir} ${base} ${op} ${offset >>> 0} ${action}`;
}

function sockaddrText(a: Sockaddr, withPorts: boolean): string {
  const host = hostText(a);
  return withPorts ? `${host}[${a.port}]` : host;
}

/** ipsec_dump_policy: the policy's head, then each template after `delimiter`. */
export function policyText(p: Policy, delimiter: string, withPorts = false): string {
  let s = policyHead(p);
  if (p.type !== IPSEC_POLICY_IPSEC) return s;
  for (const r of p.requests) {
    const proto = REQUEST_PROTOS[r.proto];
    if (!proto) throw new PolicyDumpError('Invalid ipsec protocol');
    const mode = MODE_WORDS[r.mode];
    if (mode === undefined) throw new PolicyDumpError('Invalid ipsec mode');
    if (r.extra) throw new PolicyDumpError('Invalid address specification');
    const addrs = r.src && r.dst ? `${sockaddrText(r.src, withPorts)}-${sockaddrText(r.dst, withPorts)}` : '';
    const level = LEVEL_WORDS[r.level];
    if (level === undefined) throw new PolicyDumpError('Invalid ipsec level');
    const reqid = r.reqid >>> 0;
    const id = reqid === 0 ? '' : `${reqid > IPSEC_MANUAL_REQID_MAX ? '#' : ':'}${reqid}`;
    s += `${delimiter}${proto}/${mode}/${addrs}/${level}${id}`;
  }
  return s;
}

const PORTLESS = new Set([IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_MH, IPPROTO_GRE]);

/** str_prefport: "/prefix" unless a host, then "[port]" or "[any]" (none for ICMP, MH, GRE). */
function prefixAndPort(a: Address, proto: number): string {
  const full = a.family === AF_INET ? 32 : 128;
  const pref = a.prefixlen === full ? '' : `/${a.prefixlen}`;
  if (PORTLESS.has(proto)) return pref;
  return `${pref}[${a.port === IPSEC_PORT_ANY ? 'any' : a.port}]`;
}

/** str_upperspec: the protocol, then ICMP's type,code or GRE's key. */
function upperSpec(proto: number, sport: number, dport: number): string {
  let s = protocolName(proto);
  if (sport === IPSEC_PORT_ANY && dport === IPSEC_PORT_ANY) return s;
  if (proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6 || proto === IPPROTO_MH) s += ` ${sport},${dport}`;
  else if (proto === IPPROTO_GRE) s += ` ${((sport << 16) + dport) >>> 0}`;
  return s;
}

/** A policy (an X_SPDDUMP or X_SPDGET answer) as setkey -DP prints it. */
export function printSp(m: KameMessage, o: PrintOptions): string {
  const src = m.addressSrc;
  const dst = m.addressDst;
  const pol = m.policy;
  let s = '';
  // Linux marks a socket's own policy by its id; the selector is not printed then.
  if (pol && pol.id % 8 >= 3) s += '(per-socket policy) ';
  else if (src && dst) {
    const family = (a: Address) => a.family === AF_INET || a.family === AF_INET6;
    s += family(src) ? `${hostText(src)}${prefixAndPort(src, src.proto)} ` : 'unknown-af ';
    s += family(dst) ? `${hostText(dst)}${prefixAndPort(dst, src.proto)} ` : 'unknown-af ';
    if (src.proto !== dst.proto) return `${s}upper layer protocol mismatched.\n`;
    s += upperSpec(src.proto, src.port, dst.port);
  } else s += '(per-socket policy) ';
  if (!pol) return `${s}no X_POLICY extension.\n`;
  try {
    s += `\n\t${policyText(pol, '\n\t', o.withPorts)}\n`;
  } catch (e) {
    if (!(e instanceof PolicyDumpError)) throw e;
    s += `\n\tPolicy:[${e.message}]\n`;
  }
  if (m.lifetimeCurrent) s += `\tcreated: ${ctimeText(m.lifetimeCurrent.addtime)}  lastused: ${ctimeText(m.lifetimeCurrent.usetime)}\n`;
  if (m.lifetimeHard) s += `\tlifetime: ${u64(m.lifetimeHard.addtime)}(s) validtime: ${u64(m.lifetimeHard.usetime)}(s)\n`;
  if (m.secCtx) s += secCtxText(m.secCtx);
  s += `\tspid=${pol.id >>> 0} seq=${m.header.seq >>> 0} pid=${m.header.pid >>> 0}\n`;
  s += `\trefcnt=${m.header.reserved}\n`;
  return s;
}

// ---------- the monitor (key_debug.c's kdebug_sadb, on the raw bytes) ----------

/** kdebug_sockaddr: the sockaddr at `o` and its length (sysdep_sa_len). */
function kdebugSockaddr(b: Uint8Array, o: number): { text: string; len: number } {
  const family = o + 2 <= b.length ? rd16(b, o) : 0;
  const len = family === AF_INET6 ? 28 : 16;
  let s = `sockaddr{ len=${len} family=${family}`;
  if (family === AF_INET && o + 8 <= b.length) {
    s += ` port=${rd16be(b, o + 2)}\n${hexdump(b.subarray(o + 4, o + 8))}`;
  } else if (family === AF_INET6 && o + 28 <= b.length) {
    const hex8 = (n: number) => n.toString(16).padStart(8, '0');
    s += ` port=${rd16be(b, o + 2)}\n  flowinfo=0x${hex8(rd32(b, o + 4))}, scope_id=0x${hex8(rd32(b, o + 24))}\n${hexdump(b.subarray(o + 8, o + 24))}`;
  }
  return { text: `${s}  }\n`, len };
}

const n32 = (b: Uint8Array, o: number) => (o + 4 <= b.length ? rd32(b, o) : 0);
const n16 = (b: Uint8Array, o: number) => (o + 2 <= b.length ? rd16(b, o) : 0);
const n8 = (b: Uint8Array, o: number) => b[o] ?? 0;
const n64 = (b: Uint8Array, o: number) => (o + 8 <= b.length ? rd64(b, o) : 0n);
const lo32 = (v: bigint) => BigInt.asUintN(32, v).toString();

/** One extension's body as kdebug prints it; `stop` when kdebug gives up on the message. */
type ExtPrinter = (b: Uint8Array, o: number, len: number, type: number) => { text: string; stop?: boolean };

const kdebugSa: ExtPrinter = (b, o) => ({
  text: `sadb_sa{ spi=${o + 8 <= b.length ? rd32be(b, o + 4) : 0} replay=${n8(b, o + 8)} state=${n8(b, o + 9)}\n`
    + `  auth=${n8(b, o + 10)} encrypt=${n8(b, o + 11)} flags=0x${n32(b, o + 12).toString(16).padStart(8, '0')} }\n`,
});

const kdebugLifetime: ExtPrinter = (b, o) => ({
  text: `sadb_lifetime{ alloc=${n32(b, o + 4)}, bytes=${lo32(n64(b, o + 8))}\n  addtime=${lo32(n64(b, o + 16))}, usetime=${lo32(n64(b, o + 24))} }\n`,
});

const kdebugAddress: ExtPrinter = (b, o) => {
  const h2 = (n: number) => n.toString(16).padStart(2, '0');
  return {
    text: `sadb_address{ proto=${n8(b, o + 4)} prefixlen=${n8(b, o + 5)} reserved=0x${h2(n8(b, o + 6))}${h2(n8(b, o + 7))} }\n${kdebugSockaddr(b, o + 8).text}`,
  };
};

const kdebugKey: ExtPrinter = (b, o, len) => {
  const bits = n16(b, o + 4);
  let s = `sadb_key{ bits=${bits} reserved=${n16(b, o + 6)}\n  key=`;
  const nbytes = bits >> 3;
  if (nbytes > len - 8) s += `kdebug_sadb_key: key length mismatch, bit:${nbytes} len:${len - 8}.\n`;
  return { text: `${s}${hexdump(b.subarray(o + 8, o + 8 + nbytes))} }\n` };
};

const kdebugIdentity: ExtPrinter = (b, o, len, type) => {
  let s = `sadb_ident_${type === 10 ? 'src' : 'dst'}{ type=${n16(b, o + 4)} id=${n64(b, o + 8)}`;
  if (len > 16) {
    s += '\n  str="';
    for (let i = o + 16; i < o + len && b[i] !== 0; i++) {
      const c = b[i];
      s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\${c.toString(8).padStart(3, '0')}`;
    }
    s += '"';
  }
  return { text: `${s} }\n` };
};

const kdebugProposal: ExtPrinter = (b, o, len) => {
  let s = `sadb_prop{ replay=${n8(b, o + 4)}\n`;
  for (let c = o + 8; c + 72 <= o + len; c += 72) {
    const h = (n: number, w: number) => n.toString(16).padStart(w, '0');
    s += `sadb_comb{ auth=${n8(b, c)} encrypt=${n8(b, c + 1)} flags=0x${h(n16(b, c + 2), 4)} reserved=0x${h(n32(b, c + 12), 8)}\n`;
    s += `  auth_minbits=${n16(b, c + 4)} auth_maxbits=${n16(b, c + 6)} encrypt_minbits=${n16(b, c + 8)} encrypt_maxbits=${n16(b, c + 10)}\n`;
    s += `  soft_alloc=${n32(b, c + 16)} hard_alloc=${n32(b, c + 20)} soft_bytes=${n64(b, c + 24)} hard_bytes=${n64(b, c + 32)}\n`;
    // key_debug.c labels the four time limits with the names above.
    s += `  soft_alloc=${n64(b, c + 40)} hard_alloc=${n64(b, c + 48)} soft_bytes=${n64(b, c + 56)} hard_bytes=${n64(b, c + 64)} }\n`;
  }
  return { text: `${s}}\n` };
};

const kdebugSupported: ExtPrinter = (b, o, len) => {
  let s = 'sadb_sup{\n';
  for (let a = o + 8; a + 8 <= o + len; a += 8) {
    s += `  { id=${n8(b, a)} ivlen=${n8(b, a + 1)} min=${n16(b, a + 2)} max=${n16(b, a + 4)} }\n`;
  }
  return { text: `${s}}\n` };
};

const kdebugPolicy: ExtPrinter = (b, o, len) => {
  const type = n16(b, o + 4);
  let s = `sadb_x_policy{ type=${type} dir=${n8(b, o + 6)} id=${n32(b, o + 8).toString(16)} priority=${n32(b, o + 12)} }\n`;
  if (type !== IPSEC_POLICY_IPSEC) return { text: s };
  let tlen = len - 16;
  let r = o + 16;
  while (tlen > 0) {
    const rl = n16(b, r);
    s += ` { len=${rl} proto=${n16(b, r + 2)} mode=${n8(b, r + 4)} level=${n8(b, r + 5)} reqid=${n32(b, r + 8)}\n`;
    if (rl > 16) {
      const a1 = kdebugSockaddr(b, r + 16);
      s += a1.text + kdebugSockaddr(b, r + 16 + a1.len).text;
    }
    s += ' }\n';
    if (rl === 0) return { text: `${s}kdebug_sadb_x_policy: wrong policy struct.\n`, stop: true };
    if (rl > tlen) return { text: `${s}invalid ipsec policy length\n`, stop: true };
    tlen -= rl;
    r += rl;
  }
  return { text: s };
};

const kdebugSa2: ExtPrinter = (b, o) => ({
  text: `sadb_x_sa2{ mode=${n8(b, o + 4)} reqid=${n32(b, o + 12)}\n  reserved1=${n8(b, o + 5)} reserved2=${n16(b, o + 6)} sequence=${n32(b, o + 8)} }\n`,
});

const kdebugNatTType: ExtPrinter = (b, o) => ({ text: `sadb_x_nat_t_type{ type=${n8(b, o + 4)} }\n` });
const kdebugNatTPort: ExtPrinter = (b, o) => ({ text: `sadb_x_nat_t_port{ port=${o + 6 <= b.length ? rd16be(b, o + 4) : 0} }\n` });

const kdebugKmAddress: ExtPrinter = (b, o) => {
  const h2 = (n: number) => n.toString(16).padStart(2, '0');
  let s = `sadb_x_kmaddress{ reserved=0x${[4, 5, 6, 7].map((i) => h2(n8(b, o + i))).join('')} }\n`;
  const a1 = kdebugSockaddr(b, o + 8);
  const a2 = kdebugSockaddr(b, o + 8 + a1.len);
  s += a1.text + a2.text;
  if (n16(b, o + 8) !== n16(b, o + 8 + a1.len)) s += 'kdebug_sadb_x_kmaddress:  !!!! Please, note the unexpected mismatch in address family.\n';
  return { text: s };
};

const nothing: ExtPrinter = () => ({ text: '' });

/** kdebug_sadb's switch on the extension type (Linux numbering, as setkey is built on Linux). */
const KDEBUG: Readonly<Record<number, ExtPrinter>> = {
  1: kdebugSa, 2: kdebugLifetime, 3: kdebugLifetime, 4: kdebugLifetime,
  5: kdebugAddress, 6: kdebugAddress, 7: kdebugAddress, 8: kdebugKey, 9: kdebugKey,
  10: kdebugIdentity, 11: kdebugIdentity, 12: nothing, 13: kdebugProposal,
  14: kdebugSupported, 15: kdebugSupported, 16: nothing, 17: nothing, 18: kdebugPolicy,
  19: kdebugSa2, 20: kdebugNatTType, 21: kdebugNatTPort, 22: kdebugNatTPort, 23: kdebugAddress,
  25: kdebugKmAddress,
};

/** A message as setkey's monitor (kdebug_sadb) prints it, from its bytes. */
export function kdebug(b: Uint8Array): string {
  if (b.length < 16) return `(a ${b.length}-byte message, shorter than the sadb_msg header)\n`;
  let s = `sadb_msg{ version=${b[0]} type=${b[1]} errno=${b[2]} satype=${b[3]}\n`;
  s += `  len=${rd16(b, 4)} reserved=${rd16(b, 6)} seq=${rd32(b, 8)} pid=${rd32(b, 12)}\n`;
  let tlen = Math.min(rd16(b, 4) * 8, b.length) - 16;
  let o = 16;
  while (tlen > 0) {
    const units = n16(b, o);
    const type = n16(b, o + 2);
    s += `sadb_ext{ len=${units} type=${type} }\n`;
    if (units === 0) return `${s}kdebug_sadb: invalid ext_len=0 was passed.\n`;
    // key_debug.c compares the extension's 8-byte units with the bytes left.
    if (units > tlen) return `${s}kdebug_sadb: ext_len exceeds end of buffer.\n`;
    const printer = KDEBUG[type];
    if (!printer) return `${s}kdebug_sadb: invalid ext_type ${type} was passed.\n`;
    const len = Math.min(units * 8, b.length - o);
    const r = printer(b, o, len, type);
    s += r.text;
    if (r.stop) return s;
    tlen -= units * 8;
    o += units * 8;
  }
  return s;
}

/** setkey -H: the bytes 16 a line, each line led by its offset. */
export function hexLines(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) {
    if (i % 16 === 0) s += `${i.toString(16).padStart(8, '0')}: `;
    s += `${b[i].toString(16).padStart(2, '0')} `;
    if (i % 16 === 15) s += '\n';
  }
  if (b.length % 16) s += '\n';
  return s;
}

/** printdate: the time of day (-x) or seconds.microseconds (-xx), then a newline. */
export function timeStamp(nowMs: number, unix: boolean): string {
  const sec = Math.floor(nowMs / 1000);
  const usec = String(Math.floor((nowMs % 1000) * 1000)).padStart(6, '0');
  if (unix) return `${sec}.${usec} \n`;
  const d = new Date(nowMs);
  return `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}.${usec} \n`;
}

// ---------- JSON records (--json) ----------

/** A 64-bit count as a JSON number, or a decimal string above 2^53-1. */
const num64 = (v: bigint): number | string => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString());
const hexOf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function lifetimeRecord(l: Lifetime | undefined) {
  return l ? { allocations: l.allocations, bytes: num64(l.bytes), addtime: num64(l.addtime), usetime: num64(l.usetime) } : null;
}

const nameOr = (table: Record<number, string> | readonly string[], n: number): string | number =>
  (table as Record<number, string>)[n] ?? n;

/** An SA as one JSON object: the fields setkey prints, by name. */
export function saRecord(m: KameMessage): Record<string, unknown> {
  const satype = m.header.satype;
  const natt = m.natTType !== undefined && m.natTType.type !== 0;
  const r: Record<string, unknown> = {
    src: m.addressSrc ? hostText(m.addressSrc) : null,
    dst: m.addressDst ? hostText(m.addressDst) : null,
    satype: natt && satype === SADB_SATYPE_ESP ? 'esp-udp' : nameOr(SATYPE_WORDS, satype),
    mode: m.xSa2 ? nameOr(MODE_WORDS, m.xSa2.mode) : null,
    spi: m.sa ? m.sa.spi >>> 0 : null,
    reqid: m.xSa2?.reqid ?? null,
  };
  if (natt) r.natT = { type: m.natTType!.type, sport: m.natTSport?.port ?? null, dport: m.natTDport?.port ?? null, oa: m.natTOa ? hostText(m.natTOa) : null };
  if (m.sa && satype === SADB_X_SATYPE_IPCOMP) r.comp = nameOr(COMP_WORDS, m.sa.encrypt);
  else if (m.sa && m.keyEncrypt) r.encrypt = { alg: nameOr(ENCRYPT_WORDS, m.sa.encrypt), key: hexOf(m.keyEncrypt.key) };
  if (m.sa && m.keyAuth) r.auth = { alg: nameOr(AUTH_WORDS, m.sa.auth), key: hexOf(m.keyAuth.key) };
  Object.assign(r, {
    seq: m.xSa2?.sequence ?? null,
    replay: m.sa?.replay ?? null,
    flags: m.sa ? m.sa.flags >>> 0 : null,
    state: m.sa ? nameOr(STATE_WORDS, m.sa.state) : null,
    current: lifetimeRecord(m.lifetimeCurrent),
    hard: lifetimeRecord(m.lifetimeHard),
    soft: lifetimeRecord(m.lifetimeSoft),
    sadbSeq: m.header.seq,
    pid: m.header.pid,
    refcnt: m.header.reserved,
  });
  return r;
}

/** A policy as one JSON object. */
export function spRecord(m: KameMessage): Record<string, unknown> {
  const sel = (a: Address | undefined) => (a ? { addr: hostText(a), prefixlen: a.prefixlen, port: a.port } : null);
  const p = m.policy;
  let text: string | null = null;
  try {
    text = p ? policyText(p, ' ') : null;
  } catch (e) {
    if (!(e instanceof PolicyDumpError)) throw e;
  }
  return {
    src: sel(m.addressSrc),
    dst: sel(m.addressDst),
    proto: m.addressSrc ? protocolName(m.addressSrc.proto) : null,
    dir: p ? nameOr(DIR_WORDS, p.dir) : null,
    priority: p ? p.priority >>> 0 : null,
    action: p ? nameOr(POLICY_WORDS, p.type) : null,
    requests: p ? p.requests.map((r) => ({
      proto: nameOr(REQUEST_PROTOS, r.proto),
      mode: nameOr(MODE_WORDS, r.mode),
      src: r.src ? hostText(r.src) : null,
      dst: r.dst ? hostText(r.dst) : null,
      level: nameOr(LEVEL_WORDS, r.level),
      reqid: r.reqid >>> 0,
    })) : [],
    policy: text,
    created: m.lifetimeCurrent ? num64(m.lifetimeCurrent.addtime) : null,
    lastused: m.lifetimeCurrent ? num64(m.lifetimeCurrent.usetime) : null,
    lifetime: m.lifetimeHard ? num64(m.lifetimeHard.addtime) : null,
    validtime: m.lifetimeHard ? num64(m.lifetimeHard.usetime) : null,
    spid: p ? p.id >>> 0 : null,
    seq: m.header.seq,
    pid: m.header.pid,
    refcnt: m.header.reserved,
  };
}

/** Any value of a parsed message as JSON: bytes as hex, 64-bit numbers as numbers (strings above 2^53-1). */
function jsonValue(v: unknown): unknown {
  if (typeof v === 'bigint') return num64(v);
  if (v instanceof Uint8Array) return hexOf(v);
  if (Array.isArray(v)) return v.map(jsonValue);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonValue(x)]));
  return v;
}

/** A message (the monitor under --json): its header and each extension by field name; the raw bytes in hex. */
export function messageRecord(m: KameMessage | undefined, bytes: Uint8Array): Record<string, unknown> {
  if (!m) return { header: null, extensions: null, hex: hexOf(bytes) };
  const exts = Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'header' && k !== 'dialect' && k !== 'extOrder'));
  return { header: m.header, extensions: jsonValue(exts), hex: hexOf(bytes) };
}

