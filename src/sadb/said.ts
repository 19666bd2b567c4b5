/**
 * The SAID, an SA's identity in KLIPS: (protocol, SPI, destination address). Its text
 * forms are openswan's: `esp.12345678@192.0.2.2` (hex SPI after a dot), the older
 * `esp0x12345678@192.0.2.2`, and for shunts on protocol 61 the names `%pass`, `%drop`, ….
 */

import {
  AF_INET, AF_INET6, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_INT, IPPROTO_IPIP,
  PROTO_SAID_NAMES, SHUNT_NAMES, familyOf,
} from '../wire/index.js';

export interface Said {
  /** IP protocol: 50 ESP, 51 AH, 4 IPIP (tun), 108 COMP, 61 INT (shunts). */
  proto: number;
  spi: number;
  /** Destination address as canonical text. */
  dst: string;
}

/** A compact Map key for an SAID. */
export function saidKey(s: Said): string {
  return `${s.proto}/${s.spi}/${s.dst}`;
}

export function saidEquals(a: Said, b: Said): boolean {
  return a.proto === b.proto && a.spi === b.spi && a.dst === b.dst;
}

/** openswan's text: esp.12345678@192.0.2.2, or %pass for a shunt. */
export function formatSaid(s: Said): string {
  if (s.proto === IPPROTO_INT && SHUNT_NAMES[s.spi]) return SHUNT_NAMES[s.spi];
  const p = PROTO_SAID_NAMES[s.proto] ?? `unk${s.proto}`;
  return `${p}.${s.spi.toString(16)}@${s.dst}`;
}

/** The older KLIPS text used in messages and /proc: esp0x12345678@192.0.2.2. */
export function formatSaidOld(s: Said): string {
  if (s.proto === IPPROTO_INT && SHUNT_NAMES[s.spi]) return SHUNT_NAMES[s.spi];
  const p = PROTO_SAID_NAMES[s.proto] ?? `unk${s.proto}`;
  return `${p}0x${s.spi.toString(16)}@${s.dst}`;
}

const PROTO_BY_NAME: Record<string, number> = {
  ah: IPPROTO_AH, esp: IPPROTO_ESP, tun: IPPROTO_IPIP, comp: IPPROTO_COMP, int: IPPROTO_INT,
};
const SHUNT_BY_NAME: Record<string, number> = Object.fromEntries(
  Object.entries(SHUNT_NAMES).map(([spi, name]) => [name, Number(spi)]),
);

/** Parse any SAID text form; shunts take `family`'s zero address. Undefined if malformed. */
export function parseSaid(text: string, family = AF_INET): Said | undefined {
  const shunt = SHUNT_BY_NAME[text];
  if (shunt !== undefined) return { proto: IPPROTO_INT, spi: shunt, dst: family === AF_INET6 ? '::' : '0.0.0.0' };
  const m = /^([a-z]+)(?:\.([0-9a-fA-F]+)|0x([0-9a-fA-F]+)|:([0-9]+))@(.+)$/.exec(text);
  if (!m) return undefined;
  const proto = PROTO_BY_NAME[m[1]];
  if (proto === undefined) return undefined;
  const spi = m[4] !== undefined ? Number(m[4]) : parseInt(m[2] ?? m[3], 16);
  if (!Number.isInteger(spi) || spi < 0 || spi > 0xffffffff) return undefined;
  if (familyOf(m[5]) === 0) return undefined;
  return { proto, spi, dst: m[5] };
}
