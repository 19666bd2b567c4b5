/**
 * What the tools print under --json. Every command prints JSON Lines: one JSON object per
 * line on stdout and nothing else (a listing prints one object per row; an empty table
 * prints nothing). The objects:
 *
 *  - SA records: `klips spi` (listing, --get, --dump) and look's `spi`. The same fields
 *    and types whichever way the SA was read (the view channel or a PF_KEY reply), so
 *    only what a GET reply carries (KLIPS's GET has no outif, group or SAref).
 *  - eroute rows, spigrp rows (`{"said", "group"}`), tncfg rows, debug flags: the
 *    listings of `klips eroute`, `spigrp`, `tncfg`, `debug`.
 *  - message records: a PF_KEY message (monitor, decode, and klipsd's reply to a change:
 *    add, delete, flush, getspi, eroute, group, plumb, debug).
 *
 * An SAID is written one way everywhere: esp0x12345678@192.0.2.2, or %trap etc. for a
 * shunt (as /proc/net/ipsec_* and the tools' one-line reports). Numbers are JSON numbers;
 * the only strings standing for numbers are 64-bit lifetime fields of a message record
 * above 2^53-1, which JSON readers that use doubles would otherwise round.
 */

import {
  ESPINUDP_WITH_NON_ESP, ESPINUDP_WITH_NON_IKE, SASTATE_NAMES, SATYPE_NAMES, SATYPE_TO_PROTO, hex,
  messageToJSON, nameOf, type Lifetime, type PfkeyMessage,
} from '../wire/index.js';
import { formatSaidOld } from '../sadb/said.js';
import { authName, encryptName } from '../engine/algorithm-names.js';
import { parseSaidArg } from './args.js';

/** Objects as JSON Lines. */
export const jsonLines = (records: readonly unknown[]): string => records.map((r) => `${JSON.stringify(r)}\n`).join('');

/** A PF_KEY message as an object: names for type and satype, errno's name or null, each extension by name. */
export function messageRecord(m: PfkeyMessage, o: { showKeys?: boolean } = {}): Record<string, unknown> {
  const j = messageToJSON(m, o);
  return { ...j, errno: m.header.errno ? j.errno : null };
}

export interface Lifetimes {
  allocations: number;
  bytes: number;
  /** In `current`: seconds since the SA was added; in soft/hard: the limit in seconds. */
  addtime: number;
  /** In `current`: seconds since the SA was first used (0 if never); in soft/hard: the limit. */
  usetime: number;
  packets: number;
}

export interface SaRecord {
  said: string;
  satype: string;
  spi: number;
  src: string;
  dst: string;
  state: string;
  replay: number;
  auth: string;
  encrypt: string;
  flags: number;
  authKeyBits: number;
  encryptKeyBits: number;
  current: Lifetimes;
  soft: Lifetimes;
  hard: Lifetimes;
  natT: { type: string; sport: number; dport: number } | null;
  /** Key bytes in hex, only when asked for (--show-keys) and only from a PF_KEY reply. */
  authKey?: string;
  encryptKey?: string;
}

function natName(type: number): string {
  if (type === 0) return 'none';
  if (type === ESPINUDP_WITH_NON_IKE) return 'nonike';
  if (type === ESPINUDP_WITH_NON_ESP) return 'nonesp';
  return 'unknown';
}

/** Seconds from an absolute time (engine clock, seconds since the epoch) to now; 0 for "never". */
const since = (t: number, now: number): number => (t > 0 ? Math.max(0, Math.floor(now - t)) : 0);
const nowSeconds = (): number => Date.now() / 1000;

const NO_LIFETIMES: Lifetimes = { allocations: 0, bytes: 0, addtime: 0, usetime: 0, packets: 0 };

function lifetimesOf(l: Lifetime | undefined): Lifetimes {
  if (!l) return { ...NO_LIFETIMES };
  return { allocations: l.allocations, bytes: Number(l.bytes), addtime: Number(l.addtime), usetime: Number(l.usetime), packets: l.packets ?? 0 };
}

/**
 * An SA record from a PF_KEY message carrying an SA (GET and DUMP replies). Current
 * addtime/usetime arrive as absolute times and are turned into ages, as the listing has them.
 */
export function saRecordFromMessage(m: PfkeyMessage, o: { showKeys?: boolean } = {}, now = nowSeconds()): SaRecord {
  const satype = m.header.satype;
  const sa = m.sa!;
  const cur = lifetimesOf(m.lifetimeCurrent);
  const r: SaRecord = {
    said: formatSaidOld({ proto: SATYPE_TO_PROTO[satype] ?? 0, spi: sa.spi, dst: m.addressDst?.addr ?? '' }),
    satype: nameOf(SATYPE_NAMES, satype),
    spi: sa.spi,
    src: m.addressSrc?.addr ?? '',
    dst: m.addressDst?.addr ?? '',
    state: nameOf(SASTATE_NAMES, sa.state),
    replay: sa.replay,
    auth: sa.auth ? authName(sa.auth) : 'none',
    encrypt: sa.encrypt ? encryptName(satype, sa.encrypt) : 'none',
    flags: sa.flags,
    authKeyBits: m.keyAuth?.bits ?? 0,
    encryptKeyBits: m.keyEncrypt?.bits ?? 0,
    current: { ...cur, addtime: since(cur.addtime, now), usetime: since(cur.usetime, now) },
    soft: lifetimesOf(m.lifetimeSoft),
    hard: lifetimesOf(m.lifetimeHard),
    natT: m.natTType ? { type: natName(m.natTType.type), sport: m.natTSport?.port ?? 0, dport: m.natTDport?.port ?? 0 } : null,
  };
  if (o.showKeys && m.keyAuth) r.authKey = hex(m.keyAuth.key);
  if (o.showKeys && m.keyEncrypt) r.encryptKey = hex(m.keyEncrypt.key);
  return r;
}

/** A row of klipsd's `spi` view, as far as an SA record needs it (current.addtime already an age, usetime an absolute time). */
type SpiViewRow = Omit<SaRecord, 'spi' | 'natT' | 'authKey' | 'encryptKey'> & {
  natT?: { type: string; sport: number; dport: number };
};

/** An SA record from a row of klipsd's `spi` view. */
export function saRecordFromView(row: SpiViewRow, now = nowSeconds()): SaRecord {
  const said = parseSaidArg(row.said);
  const l = (x: Lifetimes): Lifetimes => ({ allocations: x.allocations, bytes: x.bytes, addtime: x.addtime, usetime: x.usetime, packets: x.packets });
  return {
    said: formatSaidOld(said),
    satype: row.satype,
    spi: said.spi,
    src: row.src,
    dst: row.dst,
    state: row.state,
    replay: row.replay,
    auth: row.auth,
    encrypt: row.encrypt,
    flags: row.flags,
    authKeyBits: row.authKeyBits,
    encryptKeyBits: row.encryptKeyBits,
    current: { ...l(row.current), usetime: since(row.current.usetime, now) },
    soft: l(row.soft),
    hard: l(row.hard),
    natT: row.natT ? { type: row.natT.type, sport: row.natT.sport, dport: row.natT.dport } : null,
  };
}

/** The SA records of klipsd's `spi` view. */
export const saRecordsFromView = (data: unknown): SaRecord[] => (data as SpiViewRow[]).map((row) => saRecordFromView(row));

/** spigrp rows: each SA with its group from it outward, `{"said", "group"}`. */
export const spigrpRecords = (data: unknown): Array<{ said: string; group: string[] }> =>
  (data as string[][]).map((chain) => ({ said: chain[0], group: chain }));
