/**
 * Renderings of a parsed message: human-readable lines in the spirit of openswan's
 * `pfkey_print` / `ipsec pf_key`, and a JSON-safe object (bigints as numbers when exact,
 * else strings; byte strings as hex). Keys are shown as "[hidden]" unless asked for.
 */

import {
  AALG_NAMES, CALG_NAMES, EALG_NAMES, EXT_TYPE_NAMES, IDENTTYPE_NAMES, MSG_TYPE_NAMES,
  SAFLAG_NAMES, SASTATE_NAMES, SATYPE_NAMES, SADB_X_SATYPE_COMP, SHUNT_NAMES, nameOf,
  SADB_X_SATYPE_INT, SADB_X_SATYPE_IPIP, TALG_NAMES, DEBUG_SUBSYSTEMS,
} from './constants.js';
import { errnoName } from './errno.js';
import type { Address, Comb, Key, Lifetime, Sa, Supported } from './extensions.js';
import { presentExtensions, type PfkeyMessage } from './message.js';

export interface RenderOptions {
  showKeys?: boolean;
}

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

export function flagsText(flags: number): string {
  const names = SAFLAG_NAMES.filter(([bit]) => flags & bit).map(([, n]) => n);
  const rest = flags & ~SAFLAG_NAMES.reduce((m, [bit]) => m | bit, 0);
  if (rest) names.push(`0x${rest.toString(16)}`);
  return names.length ? names.join('|') : '0';
}

function encName(satype: number, id: number): string {
  return nameOf(satype === SADB_X_SATYPE_COMP ? CALG_NAMES : EALG_NAMES, id);
}

function saText(sa: Sa, satype: number): string {
  const spi = satype === SADB_X_SATYPE_INT && SHUNT_NAMES[sa.spi] ? SHUNT_NAMES[sa.spi] : `0x${sa.spi.toString(16).padStart(8, '0')}`;
  let s = `spi=${spi} replay=${sa.replay} state=${nameOf(SASTATE_NAMES, sa.state)} auth=${nameOf(AALG_NAMES, sa.auth)} encrypt=${encName(satype, sa.encrypt)} flags=${flagsText(sa.flags)}`;
  if (sa.ref !== undefined) s += ` ref=${sa.ref}`;
  return s;
}

function lifetimeText(l: Lifetime): string {
  let s = `allocations=${l.allocations} bytes=${l.bytes} addtime=${l.addtime} usetime=${l.usetime}`;
  if (l.packets !== undefined) s += ` packets=${l.packets}`;
  return s;
}

export function addressText(a: Address): string {
  const host = a.family === 10 ? `[${a.addr}]` : a.addr;
  let s = a.port ? `${host}:${a.port}` : a.addr;
  if (a.proto) s += ` proto=${a.proto}`;
  if (a.prefixlen) s += ` prefixlen=${a.prefixlen}`;
  if (a.flowinfo) s += ` flowinfo=${a.flowinfo}`;
  if (a.scopeId) s += ` scope=${a.scopeId}`;
  return s;
}

function keyText(k: Key, o: RenderOptions): string {
  return `bits=${k.bits} ${o.showKeys ? hex(k.key) : '[hidden]'}`;
}

function supportedText(s: Supported, names: Readonly<Record<number, string>>): string {
  return s.algs.map((a) => `${nameOf(names, a.id)}(iv=${a.ivlen} bits=${a.minbits}-${a.maxbits})`).join(' ') || '(none)';
}

function combText(c: Comb): string {
  return `auth=${nameOf(AALG_NAMES, c.auth)}(${c.authMinbits}-${c.authMaxbits}) encrypt=${nameOf(EALG_NAMES, c.encrypt)}(${c.encryptMinbits}-${c.encryptMaxbits}) flags=${flagsText(c.flags)} addtime=${c.softAddtime}/${c.hardAddtime} usetime=${c.softUsetime}/${c.hardUsetime} bytes=${c.softBytes}/${c.hardBytes} allocations=${c.softAllocations}/${c.hardAllocations}`;
}

/** One line per extension: "  NAME: details". */
function extText(type: number, value: any, satype: number, o: RenderOptions): string {
  switch (type) {
    case 1: case 19: return saText(value, satype);
    case 2: case 3: case 4: return lifetimeText(value);
    case 5: case 6: case 7: case 20: case 21: case 22: case 23: case 24: case 30: return addressText(value);
    case 8: case 9: return keyText(value, o);
    case 10: case 11: return `type=${nameOf(IDENTTYPE_NAMES, value.type)} id=${value.id} "${value.data}"`;
    case 12: return `dpd=${value.dpd} sens=${value.sensLevel}/${hex(value.sensBitmap)} integ=${value.integLevel}/${hex(value.integBitmap)}`;
    case 13: return `replay=${value.replay}` + value.combs.map((c: Comb, i: number) => `\n    comb ${i}: ${combText(c)}`).join('');
    case 14: return supportedText(value, AALG_NAMES);
    case 15: return supportedText(value, satype === SADB_X_SATYPE_COMP ? CALG_NAMES : satype === SADB_X_SATYPE_IPIP ? TALG_NAMES : EALG_NAMES);
    case 16: return `min=0x${value.min.toString(16)} max=0x${value.max.toString(16)}`;
    case 17: return hex(value.data);
    case 18: return nameOf(SATYPE_NAMES, value.satype);
    case 25: return DEBUG_SUBSYSTEMS.map((n) => `${n}=${value[n] >>> 0 === 0xffffffff ? 'all' : `0x${(value[n] >>> 0).toString(16)}`}`).join(' ');
    case 26: return `proto=${value.proto} direction=${value.direction} flags=${value.flags}`;
    case 27: return `type=${value.type}`;
    case 28: case 29: return `port=${value.port}`;
    case 31: return `ifnum=${value.ifnum}`;
    case 32: return `me=${value.me} him=${value.him}`;
    default: return JSON.stringify(toJSONValue(value, o));
  }
}

/** Human-readable text, several lines. */
export function renderMessage(m: PfkeyMessage, o: RenderOptions = {}): string {
  const h = m.header;
  const lines = [
    `SADB_${nameOf(MSG_TYPE_NAMES, h.type)} satype=${nameOf(SATYPE_NAMES, h.satype)} seq=${h.seq} pid=${h.pid} len=${h.len}${h.errno ? ` errno=${errnoName(h.errno)}(${h.errno})` : ''}${h.version !== 2 ? ` version=${h.version}` : ''}`,
  ];
  for (const { type, value } of presentExtensions(m)) {
    lines.push(`  ${EXT_TYPE_NAMES[type]}: ${extText(type, value, h.satype, o)}`);
  }
  return lines.join('\n');
}

function toJSONValue(v: unknown, o: RenderOptions, isKey = false): unknown {
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return isKey && !o.showKeys ? '[hidden]' : hex(v);
  if (Array.isArray(v)) return v.map((x) => toJSONValue(x, o));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toJSONValue(x, o, k === 'key');
    return out;
  }
  return v;
}

/** A JSON-safe object: header with names, then each extension by its RFC/KLIPS name. */
export function messageToJSON(m: PfkeyMessage, o: RenderOptions = {}): Record<string, unknown> {
  const h = m.header;
  const out: Record<string, unknown> = {
    type: `SADB_${nameOf(MSG_TYPE_NAMES, h.type)}`,
    satype: nameOf(SATYPE_NAMES, h.satype),
    errno: h.errno ? errnoName(h.errno) : 0,
    header: { ...h },
    extensions: {} as Record<string, unknown>,
  };
  const exts = out.extensions as Record<string, unknown>;
  for (const { type, value } of presentExtensions(m)) exts[EXT_TYPE_NAMES[type]] = toJSONValue(value, o);
  if (m.extOrder) out.extOrder = m.extOrder.map((t) => EXT_TYPE_NAMES[t]);
  return out;
}
