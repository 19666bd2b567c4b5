/**
 * openswan's argument syntax for addresses, subnets, SAIDs and keys, as its tools parse
 * them (ttoaddr, ttosubnet, ttosa, atodata), limited to numeric addresses (no DNS):
 *
 *   SAID   esp.12345678@192.0.2.2   '.' = IPv4, SPI in hex
 *          esp:12345678@2001:db8::2 ':' = IPv6, SPI in hex
 *          esp0x12345678@192.0.2.2  no separator: C number syntax (0x hex, 0 octal, decimal)
 *          %pass %drop %reject %hold %trap %trapsubnet  (int256..int261 at the zero address)
 *          %passthrough %passthrough4 %passthrough6     (tun0x0 at the zero address)
 *   subnet 10.0.0.0/24, 10.0.0.0/255.255.255.0, 2001:db8::/48 (host bits must be clear)
 *   key    0x0102…  hex (a '_' allowed between byte pairs), 0s… base64, 0t… text
 */

import {
  AF_INET, AF_INET6, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_INT, IPPROTO_IPIP,
  SPI_PASS, SPI_DROP, SPI_REJECT, SPI_HOLD, SPI_TRAP, SPI_TRAPSUBNET, formatAddress,
  maskToPrefix, parseIPv4, parseIPv6, prefixToMask, SADB_SATYPE_AH, SADB_SATYPE_ESP,
  SADB_X_SATYPE_COMP, SADB_X_SATYPE_INT, SADB_X_SATYPE_IPIP,
} from '../wire/index.js';
import type { Said } from '../sadb/said.js';
import { UsageError, parseUlong } from './common.js';

export interface Addr {
  family: number;
  /** Canonical text. */
  addr: string;
}

export interface Subnet extends Addr {
  prefix: number;
}

export interface SaidArg extends Said {
  family: number;
}

export function familyByName(name: string, what = '--af'): number {
  if (name === 'inet') return AF_INET;
  if (name === 'inet6') return AF_INET6;
  throw new UsageError(`invalid ${what} "${name}" (inet or inet6)`);
}

export function familyName(f: number): string {
  return f === AF_INET6 ? 'inet6' : 'inet';
}

/** A numeric address; with `family` given, it must be of that family. */
export function parseAddr(text: string, family = 0, what = 'address'): Addr {
  const v4 = family !== AF_INET6 ? parseIPv4(text) : undefined;
  if (v4) return { family: AF_INET, addr: formatAddress(AF_INET, v4) };
  const v6 = family !== AF_INET ? parseIPv6(text) : undefined;
  if (v6) return { family: AF_INET6, addr: formatAddress(AF_INET6, v6) };
  const want = family === AF_INET ? 'an IPv4' : family === AF_INET6 ? 'an IPv6' : 'a numeric IPv4 or IPv6';
  throw new UsageError(`invalid ${what} "${text}" (${want} address)`);
}

export function anyAddr(family: number): Addr {
  return { family, addr: family === AF_INET6 ? '::' : '0.0.0.0' };
}

/** ttosubnet: "addr/bits" or "addr/mask"; a bare address is a host. Host bits must be clear. */
export function parseSubnet(text: string, family = 0, what = 'subnet'): Subnet {
  const slash = text.indexOf('/');
  let a: Addr;
  try {
    a = parseAddr(slash < 0 ? text : text.slice(0, slash), family, what);
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(e.message.replace(/"[^"]*"/, JSON.stringify(text)));
    throw e;
  }
  const bits = a.family === AF_INET ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const m = text.slice(slash + 1);
    if (/^\d+$/.test(m)) {
      prefix = Number(m);
      if (prefix > bits) throw new UsageError(`invalid ${what} "${text}" (prefix length over ${bits})`);
    } else {
      const mask = parseAddr(m, a.family, `${what} mask`);
      prefix = maskToPrefix(a.family, mask.addr);
      if (prefix < 0) throw new UsageError(`invalid ${what} "${text}" (mask is not contiguous)`);
    }
  }
  const net = a.family === AF_INET ? parseIPv4(a.addr)! : parseIPv6(a.addr)!;
  const mask = a.family === AF_INET ? parseIPv4(prefixToMask(a.family, prefix))! : parseIPv6(prefixToMask(a.family, prefix))!;
  for (let i = 0; i < net.length; i++) {
    if ((net[i] & ~mask[i]) !== 0) throw new UsageError(`invalid ${what} "${text}" (improper subnet, host-part bits on)`);
  }
  return { ...a, prefix };
}

const PROTO_PREFIXES: Array<[string, number]> = [
  ['comp', IPPROTO_COMP], ['esp', IPPROTO_ESP], ['tun', IPPROTO_IPIP], ['int', IPPROTO_INT], ['ah', IPPROTO_AH],
];

const MAGIC: Record<string, string> = {
  '%passthrough': 'tun0x0@0.0.0.0',
  '%passthrough4': 'tun0x0@0.0.0.0',
  '%passthrough6': 'tun0x0@::',
  '%pass': `int${SPI_PASS}@0.0.0.0`,
  '%drop': `int${SPI_DROP}@0.0.0.0`,
  '%reject': `int${SPI_REJECT}@0.0.0.0`,
  '%hold': `int${SPI_HOLD}@0.0.0.0`,
  '%trap': `int${SPI_TRAP}@0.0.0.0`,
  '%trapsubnet': `int${SPI_TRAPSUBNET}@0.0.0.0`,
};

export const SHUNT_WORDS = Object.keys(MAGIC);

/** ttosa: an SAID in any of openswan's text forms. */
export function parseSaidArg(text: string, what = 'SAID'): SaidArg {
  const bad = (why: string): never => {
    throw new UsageError(`invalid ${what} "${text}" (${why})`);
  };
  let src = text;
  if (src.startsWith('%')) {
    const real = MAGIC[src];
    if (!real) bad(`unknown % keyword; known: ${SHUNT_WORDS.join(' ')}`);
    src = real;
  }
  const at = src.indexOf('@');
  if (at < 0) bad('no @');
  const pre = PROTO_PREFIXES.find(([p]) => src.startsWith(p));
  if (!pre) bad('it must start with ah, esp, tun, comp or int');
  let spiText = src.slice(pre![0].length, at);
  let family = 0;
  let spi: number | undefined;
  if (spiText.startsWith('.') || spiText.startsWith(':')) {
    family = spiText[0] === '.' ? AF_INET : AF_INET6;
    spiText = spiText.slice(1);
    spi = /^[0-9a-fA-F]{1,8}$/.test(spiText) ? parseInt(spiText, 16) : undefined;
  } else {
    spi = parseUlong(spiText);
  }
  if (spi === undefined) bad(`bad SPI "${spiText}"`);
  const addrText = src.slice(at + 1);
  if (family === 0) family = addrText.includes(':') ? AF_INET6 : AF_INET;
  let a: Addr;
  try {
    a = parseAddr(addrText, family, 'address');
  } catch {
    return bad(`bad ${family === AF_INET6 ? 'IPv6' : 'IPv4'} address "${addrText}"`);
  }
  return { proto: pre![1], spi: spi!, dst: a.addr, family: a.family };
}

/** The SA type that carries an IP protocol (KLIPS's proto2satype). */
export function satypeOf(proto: number): number {
  switch (proto) {
    case IPPROTO_AH: return SADB_SATYPE_AH;
    case IPPROTO_ESP: return SADB_SATYPE_ESP;
    case IPPROTO_IPIP: return SADB_X_SATYPE_IPIP;
    case IPPROTO_COMP: return SADB_X_SATYPE_COMP;
    case IPPROTO_INT: return SADB_X_SATYPE_INT;
    default: return 0;
  }
}

export function protoByName(name: string): number {
  const p = { ah: IPPROTO_AH, esp: IPPROTO_ESP, tun: IPPROTO_IPIP, comp: IPPROTO_COMP }[name];
  if (p === undefined) throw new UsageError(`invalid --proto "${name}" (ah, esp, tun or comp)`);
  return p;
}

/**
 * A key as openswan's spi takes it (atodata with base 0, after spi's own prefix check):
 * `0x` hex in byte pairs, a single `_` allowed between pairs; `0s` base64 in groups of
 * four with `=` padding; `0t` the text's own bytes. The prefix letter is lower case; no
 * prefix, or any other, is refused.
 */
export function parseKey(text: string, what: string): Uint8Array {
  const prefix = text.slice(0, 2);
  const body = text.slice(2);
  if (prefix !== '0x' && prefix !== '0s' && prefix !== '0t') throw new UsageError(`${what} needs 0x, 0s or 0t prefix`);
  if (body === '') throw new UsageError(`${what}: no key bytes after ${prefix}`);
  if (prefix === '0t') return new Uint8Array(Buffer.from(body, 'utf8'));
  if (prefix === '0s') {
    const canonical = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(body);
    const b = canonical ? Buffer.from(body, 'base64') : undefined;
    // Base64 whose padding bits are not zero does not re-encode to itself (ttodata: "bad padding").
    if (!b || b.toString('base64') !== body) throw new UsageError(`${what}: malformed base64 after 0s`);
    return new Uint8Array(b);
  }
  if (!/^[0-9a-fA-F_]+$/.test(body)) throw new UsageError(`${what}: not hexadecimal after 0x`);
  const digits = body.replace(/_/g, '');
  if (digits.length % 2) throw new UsageError(`${what}: odd number of hex digits`);
  if (!/^[0-9a-fA-F]{2}(?:_?[0-9a-fA-F]{2})*$/.test(body)) throw new UsageError(`${what}: '_' may only stand alone between byte pairs`);
  return new Uint8Array(Buffer.from(digits, 'hex'));
}
