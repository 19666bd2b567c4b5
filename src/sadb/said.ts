/**
 * The SAID, an SA's identity in KLIPS: (protocol, SPI, destination address), and its text
 * forms as openswan writes them: `esp.12345678@192.0.2.2` (hex SPI after a dot; a colon
 * for IPv6), the older `esp0x12345678@192.0.2.2`, and for shunts on protocol 61 the
 * names `%pass`, `%drop`, …. (The tools' parser of every text form is in cli/args.ts.)
 */

import { IPPROTO_INT, PROTO_SAID_NAMES, SHUNT_NAMES } from '../wire/index.js';

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

/** openswan's text: esp.12345678@192.0.2.2, or %pass for a shunt. */
export function formatSaid(s: Said): string {
  if (s.proto === IPPROTO_INT && SHUNT_NAMES[s.spi]) return SHUNT_NAMES[s.spi];
  const p = PROTO_SAID_NAMES[s.proto] ?? `unk${s.proto}`;
  return `${p}${s.dst.includes(':') ? ':' : '.'}${s.spi.toString(16)}@${s.dst}`;
}

/** The older KLIPS text used in messages and /proc: esp0x12345678@192.0.2.2. */
export function formatSaidOld(s: Said): string {
  if (s.proto === IPPROTO_INT && SHUNT_NAMES[s.spi]) return SHUNT_NAMES[s.spi];
  const p = PROTO_SAID_NAMES[s.proto] ?? `unk${s.proto}`;
  return `${p}0x${s.spi.toString(16)}@${s.dst}`;
}
