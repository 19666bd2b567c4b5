/**
 * Read-only views of the engine's tables in the text formats of KLIPS's /proc files
 * (linux/net/ipsec/ipsec_proc.c, ipsec_alg.c and pfkey_v2.c), each with a JSON twin:
 * ipsec_eroute, ipsec_spi, ipsec_spigrp, ipsec_tncfg, ipsec_klipsdebug, ipsec/version,
 * ipsec/saref, ipsec/natt, ipsec/xforms, ipsec/stats/trap_count and trap_sendcount,
 * pf_key, pf_key_registered and pf_key_supported, plus a server's counters when given.
 * They need no daemon (usable in process); klipsd serves them on its view channel
 * (`<socket>.info`); `klips look`, `klips eroute`, `klips spigrp`, `klips spi`,
 * `klips tncfg` and `klips debug` print some of them.
 *
 * Where KLIPS printed something klips does not have, the choice is stated at the field
 * (no IVs: the data plane owns them; no kernel pointers: socket numbers instead).
 */

import {
  DEBUG_SUBSYSTEMS, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_IPIP, IPSEC_SA_REF_TABLE_NUM_ENTRIES,
  SADB_EXT_SUPPORTED_AUTH, SADB_EXT_SUPPORTED_ENCRYPT, SADB_SATYPE_AH, SADB_SATYPE_ESP, SASTATE_NAMES,
  SATYPE_NAMES, ESPINUDP_WITH_NON_ESP, ESPINUDP_WITH_NON_IKE, maskToPrefix, nameOf,
  IPSEC_POLICY_NAMES, IPSEC_MODE_NAMES, IPSEC_LEVEL_NAMES, PROTO_SAID_NAMES,
  type Address,
} from '../wire/index.js';
import type { Engine, Endpoint } from './engine.js';
import { outifOf } from './interfaces.js';
import { currentOf, type Limits, type SA } from '../sadb/sadb.js';
import { formatSaidOld, formatSaid } from '../sadb/said.js';
import { formatErouteProc, type Eroute, type Template } from '../spd/eroute-table.js';
import { authName, encryptName } from './algorithm-names.js';
import { hasTemplates, resolveTemplates } from './policy.js';

export const VIEW_NAMES = [
  'eroute', 'spi', 'spigrp', 'tncfg', 'klipsdebug', 'registered', 'supported', 'stats',
  'pf_key', 'version', 'saref', 'natt', 'xforms', 'trap_count', 'trap_sendcount',
] as const;
export type ViewName = (typeof VIEW_NAMES)[number];

export interface View<N extends string = ViewName> {
  view: N;
  /** The /proc-style text, newline-terminated lines (empty string for an empty table). */
  text: string;
  data: unknown;
}

/** What a view may need beyond the engine: who is behind each PF_KEY socket, server counters. */
export interface ViewContext {
  /** The pid last seen in a message from this socket's client (0 if none yet). */
  pidOf?: (ep: Endpoint) => number;
  /** klipsd's counters for the stats view. */
  serverStats?: () => Record<string, unknown>;
}

const padStart = (v: string | number, w: number) => String(v).padStart(w);
const hex8 = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
/** C's %d of a 32-bit value. */
const int32 = (n: number) => n | 0;

// ---------- ipsec_eroute ----------

/** A template as setkey writes it: esp/tunnel/192.0.2.1-192.0.2.2/require. */
function templateText(t: Template): string {
  const ends = t.src !== undefined && t.dst !== undefined ? `${t.src}-${t.dst}` : '';
  const level = IPSEC_LEVEL_NAMES[t.level] ?? String(t.level);
  return `${PROTO_SAID_NAMES[t.proto] ?? t.proto}/${IPSEC_MODE_NAMES[t.mode] ?? t.mode}/${ends}/${level}${t.reqid && level === 'unique' ? `:${t.reqid}` : ''}`;
}

function erouteData(e: Eroute) {
  const f = e.flow;
  const row: Record<string, unknown> = {
    count: e.packets,
    src: `${f.src}/${f.srcPrefix}`,
    dst: `${f.dst}/${f.dstPrefix}`,
    proto: f.proto,
    sport: f.sport,
    dport: f.dport,
    said: formatSaidOld(e.said),
    pid: e.pid,
    created: e.created,
    lastUsed: e.lastUsed,
  };
  // An eroute a KAME client made (X_SPDADD) also says what its policy is.
  if (e.policy) {
    row.policy = {
      id: e.id, type: IPSEC_POLICY_NAMES[e.policy.type], priority: e.policy.priority,
      templates: e.policy.templates.map(templateText),
    };
  }
  return row;
}

/**
 * An eroute as the views show it: a template eroute (a KAME IPSEC policy) points at the
 * first SA its templates find now (between the flow's own addresses for transport
 * templates), and at %trap while they find none, which is how it behaves.
 */
function shown(engine: Engine, e: Eroute): Eroute {
  if (!hasTemplates(e)) return e;
  const r = resolveTemplates(engine.sadb, e, e.flow.src, e.flow.dst);
  return r.ok && r.sas.length ? { ...e, said: r.sas[0].said } : e;
}

export function erouteView(engine: Engine): View {
  const list = [...engine.spd.entries()].map((e) => shown(engine, e));
  return {
    view: 'eroute',
    text: list.map((e) => `${formatErouteProc(e)}\n`).join(''),
    data: list.map(erouteData),
  };
}

// ---------- ipsec_spi ----------

const ENC_SUFFIX: Readonly<Record<number, string>> = {
  0: '', 2: '_DES', 3: '_3DES', 6: '_CAST', 7: '_BLOWFISH', 11: '_NULL', 12: '_AES', 13: '_AES_CTR',
  14: '_AES_CCM_8', 15: '_AES_CCM_12', 16: '_AES_CCM_16', 18: '_AES_GCM_8', 19: '_AES_GCM_12',
  20: '_AES_GCM_16', 22: '_CAMELLIA',
};
const COMP_SUFFIX: Readonly<Record<number, string>> = { 0: '_NONE', 2: '_DEFLATE', 3: '_LZS' };
const AUTH_SUFFIX: Readonly<Record<number, string>> = {
  0: '', 2: '_HMAC_MD5', 3: '_HMAC_SHA1', 5: '_HMAC_SHA2_256', 6: '_HMAC_SHA2_384', 7: '_HMAC_SHA2_512',
  8: '_HMAC_RIPEMD', 251: '_NULL',
};
const PROTO_TXT: Readonly<Record<number, string>> = {
  [IPPROTO_AH]: 'AH', [IPPROTO_ESP]: 'ESP', [IPPROTO_IPIP]: 'IPIP', [IPPROTO_COMP]: 'COMP',
};

/** KLIPS's IPS_XFORM_NAME: protocol, then encryption (or compression), then authentication. */
export function xformName(sa: SA): string {
  const proto = PROTO_TXT[sa.said.proto] ?? 'UNKNOWN_proto';
  if (sa.said.proto === IPPROTO_COMP) return proto + (COMP_SUFFIX[sa.encrypt] ?? '_UNKNOWN_comp');
  return proto + (ENC_SUFFIX[sa.encrypt] ?? `_ID${sa.encrypt}`) + (AUTH_SUFFIX[sa.auth] ?? `_ID${sa.auth}`);
}

function subnetText(flow: Address, mask: Address): string {
  return `${flow.addr}/${maskToPrefix(mask.family, mask.addr)}`;
}

/** ipsec_lifetime_format: "name(current,soft,hard)" when anything is worth showing. */
function lifeText(name: string, current: number, raw: number, soft: number, hard: number): string {
  if (raw > 1 || soft || hard) return `${name}(${current},${soft},${hard})`;
  return '';
}

function lifetimes(sa: SA, now: number): string {
  const c: Readonly<Limits> = currentOf(sa);
  const elapsed = (t: number) => (t > 0 ? Math.max(0, Math.floor(now - t)) : 0);
  return [
    lifeText('alloc', c.allocations, c.allocations, sa.soft.allocations, sa.hard.allocations),
    lifeText('bytes', c.bytes, c.bytes, sa.soft.bytes, sa.hard.bytes),
    lifeText('addtime', elapsed(c.addtime), c.addtime, sa.soft.addtime, sa.hard.addtime),
    lifeText('usetime', sa.used ? elapsed(c.usetime) : 0, sa.used ? c.usetime : 0, sa.soft.usetime, sa.hard.usetime),
    lifeText('packets', c.packets, c.packets, sa.soft.packets, sa.hard.packets),
  ].join('');
}

function natName(type: number): string {
  if (type === 0) return 'none';
  if (type === ESPINUDP_WITH_NON_IKE) return 'nonike';
  if (type === ESPINUDP_WITH_NON_ESP) return 'nonesp';
  return 'unknown';
}

/** Eroutes pointing at an SA: KLIPS counted them in the SA's reference count. */
function referencingEroutes(engine: Engine): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of engine.spd.entries()) {
    const k = `${e.said.proto}/${e.said.spi}/${e.said.dst}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/** The output interface KLIPS shows for an SA: one named by a non-zero X_PLUMBIF that exists. */
function outifText(engine: Engine, sa: SA): string | undefined {
  if (!sa.plumbif) return undefined;
  const o = outifOf(sa.plumbif);
  return engine.interfaces.has(o.key) ? `${o.name}:${o.transport ? 1 : 0}` : undefined;
}

export function spiLine(engine: Engine, sa: SA, now: number, refs = 0): string {
  let s = `${formatSaidOld(sa.said)} ${xformName(sa)}: dir=${sa.dir === 'in' ? 'in ' : 'out'}`;
  s += ` src=${sa.src.addr}`;
  if (sa.said.proto === IPPROTO_IPIP && sa.inbound) {
    s += ` policy=${subnetText(sa.inbound.srcFlow, sa.inbound.srcMask)}->${subnetText(sa.inbound.dstFlow, sa.inbound.dstMask)}`;
  }
  if ((sa.encrypt || sa.auth) && sa.replay) s += ` ooowin=${sa.replay}`;
  if (sa.flags) s += ` flags=0x${sa.flags.toString(16)}<>`;
  if (sa.keyAuth) s += ` alen=${sa.keyAuth.bits} aklen=${sa.keyAuth.bits}`;
  if (sa.keyEncrypt) s += ` eklen=${sa.keyEncrypt.bits}`;
  s += ` life(c,s,h)=${lifetimes(sa, now)}`;
  s += ` natencap=${natName(sa.natT?.type ?? 0)} natsport=${sa.natT?.sport ?? 0} natdport=${sa.natT?.dport ?? 0}`;
  s += ` refcount=${refs + 1} ref=${int32(sa.ref)} refhim=${int32(sa.refhim)}`;
  const outif = outifText(engine, sa);
  if (outif) s += ` outif=${outif}`;
  return s;
}

function spiData(engine: Engine, sa: SA, now: number) {
  return {
    said: formatSaid(sa.said),
    xform: xformName(sa),
    dir: sa.dir,
    satype: nameOf(SATYPE_NAMES, sa.satype),
    state: nameOf(SASTATE_NAMES, sa.state),
    src: sa.src.addr,
    dst: sa.dst.addr,
    replay: sa.replay,
    auth: sa.auth ? authName(sa.auth) : 'none',
    encrypt: sa.encrypt ? encryptName(sa.satype, sa.encrypt) : 'none',
    flags: sa.flags,
    authKeyBits: sa.keyAuth?.bits ?? 0,
    encryptKeyBits: sa.keyEncrypt?.bits ?? 0,
    current: { ...sa.current, addtime: sa.current.addtime ? Math.floor(now - sa.current.addtime) : 0 },
    soft: { ...sa.soft },
    hard: { ...sa.hard },
    natT: sa.natT ? { type: natName(sa.natT.type), sport: sa.natT.sport, dport: sa.natT.dport } : undefined,
    ref: sa.ref,
    refhim: sa.refhim,
    next: sa.next ? formatSaid(sa.next.said) : undefined,
    outif: outifText(engine, sa),
  };
}

export function spiView(engine: Engine): View {
  const now = engine.now();
  const refs = referencingEroutes(engine);
  const list = [...engine.sadb.values()];
  const key = (sa: SA) => `${sa.said.proto}/${sa.said.spi}/${sa.said.dst}`;
  return {
    view: 'spi',
    text: list.map((sa) => `${spiLine(engine, sa, now, refs.get(key(sa)) ?? 0)}\n`).join(''),
    data: list.map((sa) => spiData(engine, sa, now)),
  };
}

// ---------- ipsec_spigrp ----------

/** One line per SA: the SA and every SA after it in its group, inner to outer. */
export function spigrpView(engine: Engine): View {
  const chains: string[][] = [];
  for (const sa of engine.sadb.values()) {
    const chain: string[] = [];
    for (let s: SA | undefined = sa; s; s = s.next) chain.push(formatSaidOld(s.said));
    chains.push(chain);
  }
  return {
    view: 'spigrp',
    text: chains.map((c) => `${c.map((x) => `${x} `).join('')}\n`).join(''),
    data: chains,
  };
}

// ---------- ipsec_tncfg ----------

/**
 * Every interface is listed, mastN too (KLIPS's file listed ipsecN only). An interface
 * is attached only while klipsd --dataplane carries it as a TUN device; where KLIPS named
 * the physical device, klips names how ESP leaves (udp:PORT or raw), as no one device
 * carries it (the host's routing picks the way to each peer).
 */
export function tncfgView(engine: Engine): View {
  const list = [...engine.interfaces.values()].sort((a, b) => a.ifnum - b.ifnum);
  return {
    view: 'tncfg',
    text: list.map((i) => (i.attached
      ? `${i.name} -> ${i.attached.via} mtu=${i.attached.mtu}(${i.attached.mtu}) -> ${i.attached.mtu}\n`
      : `${i.name} -> NULL mtu=0(0) -> 0\n`)).join(''),
    data: list.map((i) => ({ name: i.name, ifnum: i.ifnum, pid: i.pid, created: i.created, ...(i.attached ? { attached: { ...i.attached } } : {}) })),
  };
}

// ---------- ipsec_klipsdebug ----------

/**
 * The flags ipsec_proc.c's klipsdebug file prints, in its order: netlink, ipcomp and
 * verbose (which X_DEBUG carries and the JSON has) were never in the file.
 */
const KLIPSDEBUG_FILE_FLAGS = ['tunnel', 'xform', 'eroute', 'spi', 'radij', 'esp', 'ah', 'rcv', 'pfkey'] as const;

export function klipsdebugView(engine: Engine): View {
  return {
    view: 'klipsdebug',
    text: KLIPSDEBUG_FILE_FLAGS.map((n) => `debug_${n}=${hex8(engine.debug[n])}.\n`).join(''),
    data: { ...engine.debug },
  };
}

// ---------- pf_key_registered / pf_key_supported ----------

export function registeredView(engine: Engine, ctx: ViewContext = {}): View {
  const rows: Array<{ satype: number; socket: number; pid: number }> = [];
  const eps = [...engine.endpoints];
  for (let satype = 0; satype <= 11; satype++) {
    for (const ep of eps) if (ep.registered.has(satype)) rows.push({ satype, socket: ep.id, pid: ctx.pidOf?.(ep) ?? 0 });
  }
  return {
    view: 'registered',
    text: `satype   socket   pid       sk\n${rows.map((r) => `    ${padStart(r.satype, 2)} ${hex8(r.socket)} ${padStart(r.pid, 5)} ${hex8(r.socket)}\n`).join('')}`,
    data: rows,
  };
}

export function supportedView(engine: Engine): View {
  const rows: Array<{ satype: number; exttype: number; id: number; ivlen: number; minbits: number; maxbits: number; name: string }> = [];
  for (const satype of [...engine.supported.keys()].sort((a, b) => a - b)) {
    const lists = engine.supported.get(satype)!;
    for (const a of lists.auth) rows.push({ satype, exttype: SADB_EXT_SUPPORTED_AUTH, id: a.id, ivlen: a.ivlen, minbits: a.minbits, maxbits: a.maxbits, name: authName(a.id) });
    for (const a of lists.encrypt) rows.push({ satype, exttype: SADB_EXT_SUPPORTED_ENCRYPT, id: a.id, ivlen: a.ivlen, minbits: a.minbits, maxbits: a.maxbits, name: encryptName(satype, a.id) });
  }
  const line = (r: (typeof rows)[number]) =>
    `    ${padStart(r.satype, 2)}      ${padStart(r.exttype, 2)}     ${padStart(r.id, 2)}   ${padStart(r.ivlen, 3)}     ${padStart(r.minbits, 3)}     ${padStart(r.maxbits, 3)} ${padStart(r.name, 20)}\n`;
  return {
    view: 'supported',
    text: `satype exttype alg_id ivlen minbits maxbits name\n${rows.map(line).join('')}`,
    data: rows,
  };
}

// ---------- klipsd's counters ----------

export function statsView(engine: Engine, ctx: ViewContext = {}): View {
  const data = {
    engine: { ...engine.stats },
    sas: engine.sadb.size,
    eroutes: engine.spd.size,
    interfaces: engine.interfaces.size,
    sockets: engine.endpoints.size,
    server: ctx.serverStats?.() ?? {},
  };
  const flat: string[] = [];
  const walk = (prefix: string, v: unknown) => {
    if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
    else flat.push(`${prefix}=${v}\n`);
  };
  walk('', data);
  return { view: 'stats', text: flat.join(''), data };
}

// ---------- pf_key: the open PF_KEY sockets ----------

/** PF_KEY_V2, SOCK_RAW, SS_UNCONNECTED: what every KLIPS PF_KEY socket showed as protocol, type and state. */
const PF_KEY_PROTOCOL = 2;
const SOCK_RAW = 3;
const SS_UNCONNECTED = 1;

/**
 * /proc/net/pf_key: one line per open socket. Where KLIPS printed kernel pointers (sock,
 * socket) klips prints the socket number; the buffer size is the receive queue's (klips
 * has no send buffer); KLIPS's header names two columns (next, prev) its lines lack.
 */
export function pfKeyView(engine: Engine, ctx: ViewContext = {}): View {
  const rows = [...engine.endpoints, ...engine.kameEndpoints].map((ep) => ({
    socket: ep.id,
    pid: ctx.pidOf?.(ep) ?? 0,
    rcvbuf: ep.rcvbuf,
    queued: ep.rcvbuf - ep.room(),
    registered: [...ep.registered].sort((a, b) => a - b),
    promisc: ep.promisc,
    pchange: ep.pchange,
    // KAME-dialect sockets (klipsd's KAME socket) are listed after KLIPS's; their SA types are Linux's.
    ...(ep.dialect === 'kame' ? { dialect: 'kame' } : {}),
  }));
  const line = (r: (typeof rows)[number]) =>
    `${hex8(r.socket)} ${padStart(r.pid, 5)} ${hex8(r.socket)} 0 ${PF_KEY_PROTOCOL} ${padStart(r.rcvbuf, 5)} ${hex8(0).toUpperCase()} ${padStart(SOCK_RAW.toString(16).toUpperCase(), 8)} ${padStart(SS_UNCONNECTED.toString(16).toUpperCase(), 2)}\n`;
  return {
    view: 'pf_key',
    text: `    sock   pid   socket     next     prev e n p sndbf    Flags     Type St\n${rows.map(line).join('')}`,
    data: rows,
  };
}

// ---------- ipsec/version, ipsec/natt, ipsec/stats/trap_count, trap_sendcount ----------

/** klips's version, as /proc/net/ipsec/version reports it (kept equal to package.json's by a test). */
export const KLIPS_VERSION = '0.1.0';

export function versionView(): View {
  return { view: 'version', text: `Openswan version: klips-${KLIPS_VERSION}\n`, data: { version: KLIPS_VERSION } };
}

/** NAT-T encapsulation is built in (KLIPS's natt_available 1; pluto reads a '0' as "no NAT-T"). */
export function nattView(): View {
  return { view: 'natt', text: '1\n', data: { available: 1 } };
}

/** trap_count: packets that hit a %trap eroute (calls of engine.acquire). */
export function trapCountView(engine: Engine): View {
  return { view: 'trap_count', text: `${engine.stats.traps}\n`, data: { count: engine.stats.traps } };
}

/** trap_sendcount: the ACQUIREs those traps sent. */
export function trapSendcountView(engine: Engine): View {
  return { view: 'trap_sendcount', text: `${engine.stats.acquires}\n`, data: { count: engine.stats.acquires } };
}

// ---------- ipsec/saref ----------

/**
 * KLIPS's file says only "saref enabled"; klips follows that line with the SAref table,
 * one line per ref in use: `ref=N refhim=M said=SAID`.
 */
export function sarefView(engine: Engine): View {
  const entries = [...engine.sadb.sarefs.entries()];
  return {
    view: 'saref',
    text: `saref enabled\n${entries.map(([ref, sa]) => `ref=${ref} refhim=${int32(sa.refhim)} said=${formatSaidOld(sa.said)}\n`).join('')}`,
    data: {
      enabled: true,
      capacity: IPSEC_SA_REF_TABLE_NUM_ENTRIES - 1,
      used: engine.sadb.sarefs.size,
      entries: entries.map(([ref, sa]) => ({ ref, refhim: sa.refhim, said: formatSaid(sa.said) })),
    },
  };
}

// ---------- ipsec/xforms ----------

/** ipsec_alg's IPSEC_ALG_VERSION, ixt_state SUPP|REGISTERED, and its two algorithm types. */
const IPSEC_ALG_VERSION = 0x00080100;
const IPSEC_ALG_ST_SUPP_REGISTERED = 0x03;
const IPSEC_ALG_TYPE_AUTH = 14;
const IPSEC_ALG_TYPE_ENCRYPT = 15;

/** Block size in bytes (encryption: the cipher's; authentication: the hash's), and an auth algorithm's ICV length in bytes. */
const ALG_SHAPE: Readonly<Record<string, { blocksize: number; authlen?: number }>> = {
  [`${IPSEC_ALG_TYPE_ENCRYPT}/3`]: { blocksize: 8 }, // 3DES-CBC
  [`${IPSEC_ALG_TYPE_ENCRYPT}/11`]: { blocksize: 1 }, // NULL
  [`${IPSEC_ALG_TYPE_ENCRYPT}/12`]: { blocksize: 16 }, // AES-CBC
  [`${IPSEC_ALG_TYPE_ENCRYPT}/13`]: { blocksize: 1 }, // AES-CTR
  [`${IPSEC_ALG_TYPE_ENCRYPT}/18`]: { blocksize: 1 }, // AES-GCM, 8-byte ICV
  [`${IPSEC_ALG_TYPE_ENCRYPT}/19`]: { blocksize: 1 }, // AES-GCM, 12
  [`${IPSEC_ALG_TYPE_ENCRYPT}/20`]: { blocksize: 1 }, // AES-GCM, 16
  [`${IPSEC_ALG_TYPE_AUTH}/2`]: { blocksize: 64, authlen: 12 }, // HMAC-MD5-96
  [`${IPSEC_ALG_TYPE_AUTH}/3`]: { blocksize: 64, authlen: 12 }, // HMAC-SHA1-96
  [`${IPSEC_ALG_TYPE_AUTH}/5`]: { blocksize: 64, authlen: 16 }, // HMAC-SHA2-256-128
  [`${IPSEC_ALG_TYPE_AUTH}/6`]: { blocksize: 128, authlen: 24 }, // HMAC-SHA2-384-192
  [`${IPSEC_ALG_TYPE_AUTH}/7`]: { blocksize: 128, authlen: 32 }, // HMAC-SHA2-512-256
};

/**
 * /proc/net/ipsec/xforms: one line per ESP/AH algorithm the engine supports (KLIPS: per
 * ipsec_alg module loaded), REFCNT the SAs using it. klips keeps no kernel context (CTXSIZE=0).
 */
export function xformsView(engine: Engine): View {
  const inUse = new Map<string, number>();
  for (const sa of engine.sadb.values()) {
    if (sa.auth) inUse.set(`${IPSEC_ALG_TYPE_AUTH}/${sa.auth}`, (inUse.get(`${IPSEC_ALG_TYPE_AUTH}/${sa.auth}`) ?? 0) + 1);
    if (sa.encrypt && sa.said.proto === IPPROTO_ESP) inUse.set(`${IPSEC_ALG_TYPE_ENCRYPT}/${sa.encrypt}`, (inUse.get(`${IPSEC_ALG_TYPE_ENCRYPT}/${sa.encrypt}`) ?? 0) + 1);
  }
  const rows: Array<{ type: number; id: number; name: string; refcnt: number; blocksize: number; ivlen: number; minbits: number; maxbits: number; keylen: number; authlen?: number }> = [];
  const seen = new Set<string>();
  const add = (type: number, satype: number, a: { id: number; ivlen: number; minbits: number; maxbits: number }) => {
    const k = `${type}/${a.id}`;
    if (seen.has(k)) return;
    seen.add(k);
    const shape = ALG_SHAPE[k] ?? { blocksize: 1 };
    rows.push({
      type, id: a.id, name: type === IPSEC_ALG_TYPE_AUTH ? authName(a.id) : encryptName(satype, a.id), refcnt: inUse.get(k) ?? 0,
      blocksize: shape.blocksize, ivlen: a.ivlen, minbits: a.minbits, maxbits: a.maxbits, keylen: Math.ceil(a.maxbits / 8),
      ...(shape.authlen !== undefined ? { authlen: shape.authlen } : {}),
    });
  };
  for (const satype of [SADB_SATYPE_ESP, SADB_SATYPE_AH]) {
    const lists = engine.supported.get(satype);
    for (const a of lists?.encrypt ?? []) if (satype === SADB_SATYPE_ESP) add(IPSEC_ALG_TYPE_ENCRYPT, satype, a);
    for (const a of lists?.auth ?? []) add(IPSEC_ALG_TYPE_AUTH, satype, a);
  }
  const line = (r: (typeof rows)[number]) =>
    `VERSION=${IPSEC_ALG_VERSION} TYPE=${r.type} ID=${r.id} NAME=${r.name} REFCNT=${r.refcnt} ` +
    `STATE=${hex8(IPSEC_ALG_ST_SUPP_REGISTERED)} BLOCKSIZE=${r.blocksize} IVLEN=${r.ivlen} KEYMINBITS=${r.minbits} KEYMAXBITS=${r.maxbits} ` +
    `IVLEN=${r.ivlen} KEYMINBITS=${r.minbits} KEYMAXBITS=${r.maxbits} ` +
    (r.authlen !== undefined ? `KEYLEN=${r.keylen} CTXSIZE=0 AUTHLEN=${r.authlen} ` : `KEYLEN=${r.keylen} CTXSIZE=0 `) + '\n';
  return { view: 'xforms', text: rows.map(line).join(''), data: rows };
}

// ---------- by name ----------

const RENDERERS: Readonly<Record<ViewName, (engine: Engine, ctx: ViewContext) => View>> = {
  eroute: erouteView,
  spi: spiView,
  spigrp: spigrpView,
  tncfg: tncfgView,
  klipsdebug: klipsdebugView,
  registered: registeredView,
  supported: supportedView,
  stats: statsView,
  pf_key: pfKeyView,
  version: versionView,
  saref: sarefView,
  natt: nattView,
  xforms: xformsView,
  trap_count: trapCountView,
  trap_sendcount: trapSendcountView,
};

/** A view by name, or undefined for an unknown name. */
export function renderView(name: string, engine: Engine, ctx: ViewContext = {}): View | undefined {
  const render = Object.hasOwn(RENDERERS, name) ? RENDERERS[name as ViewName] : undefined;
  return render?.(engine, ctx);
}
