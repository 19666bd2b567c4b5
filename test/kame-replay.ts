/**
 * Replaying the captured Linux af_key exchanges (test/vectors/linux-af_key) through
 * klipsd's KAME socket: one Unix-stream connection per socket of the capture, each
 * request sent as Linux got it, and what every connection then received compared with
 * what every socket of the capture received, message by message and field by field.
 *
 * What Linux leaves free is masked or mapped, never compared: the times in
 * LIFETIME_CURRENT; an SPI that GETSPI chose (klipsd's must lie in the asked range; the
 * capture's later requests naming Linux's SPI are rewritten to klipsd's, and replies are
 * compared through that map); a policy index (mapped the same way); the seq of an
 * ACQUIRE; the reference count Linux leaks into sadb_msg_reserved of policy messages.
 * What klipsd answers differently on purpose is listed in KNOWN (docs/semantics.md says
 * why). Steps a byte stream cannot carry (a datagram whose length disagrees with
 * sadb_msg_len) are skipped and counted; the header check refuses them in wire-kame.test.
 *
 * A barrier orders things: after each step, a klipsd reasons request (answered by klipsd
 * to its sender alone, never by the engine) goes out on every connection; a connection's
 * messages up to its echo are the step's. Time is the engine's fake clock, moved to each
 * step's capture time with the engine ticking every quarter second; the capture's UDP
 * datagram (07_acquire) goes through the data plane's outbound path.
 */

import net from 'node:net';
import {
  FrameDecoder, parseMessage, buildMessage, reasonsRequest, KLIPSD_X_REASON, SADB_GETSPI, SADB_ACQUIRE,
  SADB_REGISTER, SADB_X_SPDUPDATE, SADB_X_SPDDELETE2, KAME_MSG_TYPE_NAMES, KAME_EXT_TABLE,
  type KameMessage,
} from '../src/wire/index.js';
import type { Engine } from '../src/engine/engine.js';
import { xmit } from '../src/dataplane/xmit.js';
import { buildIPv4Header } from '../src/dataplane/packet.js';
import { hex, unhex } from './wire-helpers.js';
import { readVector } from './vectors.js';

// ---------- the capture as steps ----------

export interface ReplayStep {
  where: string;
  /**
   * open / close a socket, send a request, let time pass, send a UDP datagram inside the
   * host, or set up state the captured kernel held before the capture began (sent on a
   * socket of its own, before the others open; nothing compared).
   */
  kind: 'open' | 'close' | 'send' | 'sleep' | 'udp' | 'setup';
  sock: string;
  request?: string;
  /** send()'s errno in the capture (0: it succeeded). */
  sendErrno: number;
  /** The capture's time of the step, in seconds. */
  t: number;
  udp?: { dst: string; port: number; payload: string };
  /** Every datagram each socket got during the step, as hex. */
  received: Record<string, string[]>;
}

export interface Scenario {
  name: string;
  steps: ReplayStep[];
}

/**
 * basic-exchanges.json: three sockets 0, 1, 2 open throughout. The captured kernel already
 * held two ESP SAs (0x103, 0x104: its DUMP lists them, older than anything the exchanges
 * made); they are added first, from what that DUMP shows of them.
 */
export function basicScenario(): Scenario {
  const j = readVector<Array<{ name: string; sock: number; request: string; send_rc: [number, number]; received: Record<string, string[]> }>>('linux-af_key/basic-exchanges.json');
  const steps: ReplayStep[] = [];
  const seen = new Set<number>();
  for (const x of j) {
    for (const h of x.received[String(x.sock)] ?? []) {
      const m = safeParse(unhex(h), 'out');
      if (!m?.sa) continue;
      if (m.header.type === 10 && !seen.has(m.sa.spi)) {
        // A DUMP entry no earlier reply made: the kernel had it before. Newest first in a DUMP, so set up in reverse.
        const add: KameMessage = {
          dialect: 'kame', header: { ...m.header, type: 3, seq: 0, pid: 0, len: 0 },
          sa: m.sa, addressSrc: m.addressSrc, addressDst: m.addressDst, keyAuth: m.keyAuth, keyEncrypt: m.keyEncrypt, xSa2: m.xSa2,
        };
        steps.unshift({ where: `setup: the kernel's SA 0x${m.sa.spi.toString(16)}`, kind: 'setup', sock: 'setup', request: hex(buildMessage(add)), sendErrno: 0, t: 0, received: {} });
      }
      seen.add(m.sa.spi);
    }
  }
  for (const s of ['0', '1', '2']) steps.push({ where: `open ${s}`, kind: 'open', sock: s, sendErrno: 0, t: 0, received: {} });
  j.forEach((x, i) => steps.push({
    where: `basic[${i}] ${x.name}`, kind: 'send', sock: String(x.sock), request: x.request,
    sendErrno: x.send_rc[0] < 0 ? x.send_rc[1] : 0, t: (i + 1) * 0.01, received: x.received,
  }));
  return { name: 'basic-exchanges', steps };
}

export const NUMBERED = ['01_register', '02_sa_lifecycle', '03_expire', '04_flush_promisc', '05_bad_inputs', '06_spd', '07_acquire'];

/** One of 01..07_*.json. */
export function numberedScenario(file: string): Scenario {
  const j = readVector<{ steps: Array<Record<string, any>> }>(`linux-af_key/${file}.json`);
  const steps = j.steps.map((s): ReplayStep => {
    const received: Record<string, string[]> = {};
    for (const [k, v] of Object.entries<Array<{ hex: string }>>(s.received ?? {})) received[k] = v.map((d) => d.hex);
    const base = { where: `${file}[${s.step}] ${s.note ?? ''}`.trim(), sendErrno: 0, t: s.t_host as number, received };
    if (s.open) return { ...base, kind: 'open', sock: s.open };
    if (s.close) return { ...base, kind: 'close', sock: s.close };
    if (s.send) return { ...base, kind: 'send', sock: s.send, request: s.request, sendErrno: s.send_errno ?? 0 };
    if (s.udp) return { ...base, kind: 'udp', sock: '', udp: { dst: s.udp, port: s.port, payload: s.payload } };
    if (s.sleep !== undefined) return { ...base, kind: 'sleep', sock: '' };
    throw new Error(`${file}[${s.step}]: unknown step ${JSON.stringify(Object.keys(s))}`);
  });
  return { name: file, steps };
}

// ---------- a connection to klipsd ----------

class Conn {
  private readonly decoder = new FrameDecoder();
  private readonly got: Uint8Array[] = [];
  private waiters: Array<() => void> = [];
  closed = false;

  constructor(readonly name: string, private readonly c: net.Socket) {
    c.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk, (f) => this.got.push(f.slice()));
      for (const w of this.waiters.splice(0)) w();
    });
    c.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static open(name: string, path: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const c = net.connect(path);
      c.once('connect', () => resolve(new Conn(name, c)));
      c.once('error', reject);
    });
  }

  send(b: Uint8Array): void {
    this.c.write(b);
  }

  /** Send a barrier and return every message before its echo. */
  async drain(seq: number): Promise<Uint8Array[]> {
    this.send(reasonsRequest(false, seq, 0x7eed));
    const isEcho = (m: Uint8Array) => m[1] === KLIPSD_X_REASON && (m[8] | (m[9] << 8) | (m[10] << 16) | (m[11] << 24)) >>> 0 === seq;
    const deadline = Date.now() + 5000;
    for (;;) {
      const i = this.got.findIndex(isEcho);
      if (i >= 0) return this.got.splice(0, i + 1).slice(0, i);
      if (this.closed || Date.now() > deadline) throw new Error(`${this.name}: no barrier echo ${seq} (closed: ${this.closed})`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  close(): Promise<void> {
    return new Promise((r) => {
      if (this.closed) return r();
      this.c.once('close', () => r());
      this.c.end();
    });
  }
}

// ---------- comparing ----------

/** A message as a tree of fields to compare (bigints as strings, bytes as hex). */
function fields(m: KameMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { header: { ...m.header } };
  for (let t = 1; t < KAME_EXT_TABLE.length; t++) {
    const e = KAME_EXT_TABLE[t]!;
    const v = (m as unknown as Record<string, unknown>)[e.field];
    if (v !== undefined) out[e.field] = JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x instanceof Uint8Array ? hex(x) : x)));
  }
  if (m.unknown) out.unknown = m.unknown.map((u) => ({ type: u.type, data: hex(u.data) }));
  return out;
}

/** Paths where two field trees differ (dotted). */
function diff(a: unknown, b: unknown, at = ''): string[] {
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    return a === b ? [] : [`${at}: linux ${JSON.stringify(a)}, klipsd ${JSON.stringify(b)}`];
  }
  const out: string[] = [];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) out.push(...diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], at ? `${at}.${k}` : k));
  return out;
}

/** What Linux leaves free, and the maps from Linux's free choices to klipsd's. */
export class Masks {
  readonly spi = new Map<number, number>();
  readonly policyId = new Map<number, number>();
  /** GETSPI ranges asked for, by the request's seq. */
  readonly ranges = new Map<number, { min: number; max: number }>();
  /** Counted differences that KNOWN accounts for, by name. */
  readonly known = new Map<string, number>();

  /** A field tree with what Linux leaves free masked and Linux's choices mapped onto klipsd's. */
  normalize(f: Record<string, any>, linux: boolean): Record<string, any> {
    const h = f.header;
    const type = h.type as number;
    if (f.lifetimeCurrent) f.lifetimeCurrent.addtime = f.lifetimeCurrent.usetime = '(time)';
    if (type >= SADB_X_SPDUPDATE && type <= SADB_X_SPDDELETE2) h.reserved = '(refcount)';
    if (type === SADB_ACQUIRE && h.errno === 0) h.seq = '(kernel seq)';
    if (linux && f.sa && this.spi.has(f.sa.spi)) f.sa.spi = this.spi.get(f.sa.spi);
    if (linux && f.policy && this.policyId.has(f.policy.id)) f.policy.id = this.policyId.get(f.policy.id);
    return f;
  }
}

/**
 * Differences klipsd has on purpose, each with the field(s) it touches: the comparison
 * removes them and counts how often each was seen (docs/semantics.md lists them).
 */
export const KNOWN: ReadonlyArray<{ name: string; applies: (l: Record<string, any>, k: Record<string, any>) => boolean; strip: (f: Record<string, any>) => void }> = [
  {
    // klipsd lists the algorithms its data plane runs (AES-GCM, no DES/CAST/Blowfish/...), with RFC 2367's ivlen in bits.
    name: 'REGISTER: the supported algorithm lists are klipsd\'s',
    applies: (l) => l.header.type === SADB_REGISTER && l.header.errno === 0,
    strip: (f) => {
      delete f.supportedAuth;
      delete f.supportedEncrypt;
      f.header.len = '(lists)';
    },
  },
];

export interface ReplayResult {
  /** Messages compared (kernel messages and request copies). */
  compared: number;
  /** Steps skipped because a byte stream cannot carry their datagram. */
  skipped: string[];
  /** Differences not masked or known: each one a failure. */
  differences: string[];
  masks: Masks;
}

/** Can a Unix stream framed by sadb_msg_len carry this datagram as Linux saw it? */
function streamable(request: string): boolean {
  const b = unhex(request);
  return b.length >= 16 && (b[4] | (b[5] << 8)) * 8 === b.length;
}

/** Rewrite a request's SPI and policy index from Linux's choices to klipsd's. */
function rewrite(request: string, masks: Masks): Uint8Array {
  const b = unhex(request);
  let m: KameMessage;
  try {
    m = parseMessage(b, { dialect: 'kame', direction: 'in' });
  } catch {
    return b;
  }
  let changed = false;
  if (m.sa && masks.spi.has(m.sa.spi)) {
    m.sa = { ...m.sa, spi: masks.spi.get(m.sa.spi)! };
    changed = true;
  }
  if (m.policy && masks.policyId.has(m.policy.id)) {
    m.policy = { ...m.policy, id: masks.policyId.get(m.policy.id)! };
    changed = true;
  }
  return changed ? buildMessage(m) : b;
}

export interface ReplayTarget {
  /** klipsd's KAME socket. */
  kamePath: string;
  engine: Engine;
  /** Set the engine's fake clock (seconds). */
  setClock(t: number): void;
  now(): number;
}

/** Replay scenarios one after the other on one klipsd (state carries over, as it did in the captured kernel). */
export async function replay(target: ReplayTarget, scenarios: Scenario[], masks = new Masks()): Promise<ReplayResult> {
  const result: ReplayResult = { compared: 0, skipped: [], differences: [], masks };
  const conns = new Map<string, Conn>();
  /** What the sender's connection received before its step's barrier (taken early, so time moves after the request is in). */
  const pending = new Map<string, Uint8Array[]>();
  let barrier = 1;
  for (const sc of scenarios) {
    let last = sc.steps.find((s) => s.t > 0)?.t ?? 0;
    for (const step of sc.steps) {
      if (step.kind === 'send' && !streamable(step.request!)) {
        result.skipped.push(step.where);
        continue;
      }
      let sent: Uint8Array | undefined;
      if (step.kind === 'setup') {
        const c = await Conn.open('setup', target.kamePath);
        c.send(unhex(step.request!));
        await c.drain(barrier++);
        await c.close();
        continue;
      } else if (step.kind === 'open') {
        conns.set(step.sock, await Conn.open(step.sock, target.kamePath));
        continue;
      } else if (step.kind === 'close') {
        await conns.get(step.sock)!.close();
        conns.delete(step.sock);
        continue;
      } else if (step.kind === 'send') {
        sent = rewrite(step.request!, masks);
        conns.get(step.sock)!.send(sent);
        const q = unhex(step.request!);
        if (q[1] === SADB_GETSPI) {
          const m = safeParse(q, 'in');
          if (m) masks.ranges.set(m.header.seq, m.spirange ?? { min: 0x100, max: 0x0fffffff });
        }
        // Let the request reach klipsd before time moves on.
        await conns.get(step.sock)!.drain(barrier++).then((early) => { pending.set(step.sock, early); });
      } else if (step.kind === 'udp') {
        const u = step.udp!;
        xmit(target.engine, udpPacket('127.0.0.1', u.dst, 40000, u.port, unhex(u.payload)));
      }
      // Time passes as it did in the capture; the engine ticks as klipsd's timer would.
      for (let t = last; t < step.t; t = Math.min(step.t, t + 0.25)) {
        target.setClock(target.now() + Math.min(0.25, step.t - t));
        target.engine.tick();
      }
      last = Math.max(last, step.t);
      for (const [name, c] of conns) {
        const early = pending.get(name) ?? [];
        pending.delete(name);
        const ours = [...early, ...(await c.drain(barrier++))];
        compareSocket(result, masks, step, name, ours, sent);
      }
    }
  }
  for (const c of conns.values()) await c.close();
  return result;
}

function safeParse(b: Uint8Array, direction: 'in' | 'out'): KameMessage | undefined {
  try {
    return parseMessage(b, { dialect: 'kame', direction });
  } catch {
    return undefined;
  }
}

function compareSocket(result: ReplayResult, masks: Masks, step: ReplayStep, sock: string, ours: Uint8Array[], sent?: Uint8Array): void {
  const theirs = (step.received[sock] ?? []).map(unhex);
  const at = `${step.where}, socket ${sock}`;
  let mine = ours;
  if (step.kind === 'send' && step.sendErrno && sock === step.sock) {
    // Linux's send() failed and no message existed; over a stream klipsd answers the sender alone with the errno.
    const e = mine[0];
    if (!e || e.length !== 16 || e[2] !== step.sendErrno) {
      result.differences.push(`${at}: expected the stream's stand-in for send() failing with errno ${step.sendErrno}, got ${e ? hex(e) : 'nothing'}`);
    }
    mine = mine.slice(1);
  }
  if (theirs.length !== mine.length) {
    result.differences.push(`${at}: linux delivered ${theirs.length} message(s) [${theirs.map(describe).join(', ')}], klipsd ${mine.length} [${mine.map(describe).join(', ')}]`);
    return;
  }
  theirs.forEach((l, i) => {
    const k = mine[i];
    result.compared++;
    const where = `${at} #${i}`;
    if (step.request !== undefined && hex(l) === step.request) {
      // A promiscuous socket's copy of the request: klipsd's must be the request klipsd got.
      if (!sent || hex(k) !== hex(sent)) result.differences.push(`${where}: a copy of the request expected, got ${hex(k)}`);
      return;
    }
    const lm = safeParse(l, 'out');
    const km = safeParse(k, 'out');
    if (!lm || !km) {
      if (hex(l) !== hex(k)) result.differences.push(`${where}: unparsable, and the bytes differ: linux ${hex(l)}, klipsd ${hex(k)}`);
      return;
    }
    const lf = fields(lm);
    const kf = fields(km);
    learn(masks, lm, km, where, result);
    masks.normalize(lf, true);
    masks.normalize(kf, false);
    for (const known of KNOWN) {
      if (known.applies(lf, kf)) {
        known.strip(lf);
        known.strip(kf);
        masks.known.set(known.name, (masks.known.get(known.name) ?? 0) + 1);
      }
    }
    for (const d of diff(lf, kf)) result.differences.push(`${where} ${KAME_MSG_TYPE_NAMES[lm.header.type]}: ${d}`);
  });
}

/** Learn Linux's free choices from a pair of replies: a GETSPI's SPI (klipsd's in the range asked), a new policy's index. */
function learn(masks: Masks, l: KameMessage, k: KameMessage, where: string, result: ReplayResult): void {
  if (l.header.type === SADB_GETSPI && l.header.errno === 0 && l.sa && k.sa && !masks.spi.has(l.sa.spi)) {
    const range = masks.ranges.get(l.header.seq);
    if (range && (k.sa.spi < range.min || k.sa.spi > range.max)) result.differences.push(`${where}: klipsd's SPI 0x${k.sa.spi.toString(16)} outside 0x${range.min.toString(16)}-0x${range.max.toString(16)}`);
    masks.spi.set(l.sa.spi, k.sa.spi);
  }
  if (l.policy && k.policy && l.header.type !== SADB_X_SPDDELETE2 && !masks.policyId.has(l.policy.id) && l.policy.id !== 0) {
    masks.policyId.set(l.policy.id, k.policy.id);
  }
}

function describe(b: Uint8Array): string {
  return `${KAME_MSG_TYPE_NAMES[b[1]] ?? b[1]}${b[2] ? `/errno ${b[2]}` : ''}`;
}

/** An IPv4 UDP datagram (checksum 0: none). */
function udpPacket(src: string, dst: string, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const udp = Buffer.alloc(8 + payload.length);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  udp.writeUInt16BE(udp.length, 4);
  Buffer.from(payload).copy(udp, 8);
  const v4 = (s: string) => Uint8Array.from(s.split('.').map(Number));
  const h = buildIPv4Header({ tos: 0, id: 1, flags: 0, ttl: 64, protocol: 17, src: v4(src), dst: v4(dst), payloadLength: udp.length });
  return Buffer.concat([h, udp]);
}
