/**
 * Shared fixtures for the engine-*.test.ts and socket-*.test.ts files: an Engine on a fake
 * clock with a seeded SPI generator and no host addresses (unless a test gives some),
 * PF_KEY clients (a PfkeySocket plus readers that run every message through
 * parseMessage(direction 'out'), so each read is also a check of the engine's output
 * against KLIPS's outbound extension rules), request builders for every message type, a
 * table snapshot for "a refusal changes nothing", and refusal assertions (the errno
 * broadcast, and the sender-only answer of X_PLUMBIF / X_UNPLUMBIF).
 */

import assert from 'node:assert/strict';
import { Engine, type EngineOptions } from '../src/engine/engine.js';
import { PfkeySocket, type SocketOptions } from '../src/socket/pfkey-socket.js';
import { saidKey, type Said } from '../src/sadb/said.js';
import {
  AF_INET, AF_INET6, IPPROTO_ESP, IPPROTO_AH, IPPROTO_IPIP, IPPROTO_COMP, IPPROTO_INT,
  SADB_GETSPI, SADB_ADD, SADB_UPDATE, SADB_X_GRPSA, SADB_X_DEBUG, SADB_SATYPE_ESP,
  SADB_SASTATE_MATURE, SADB_AALG_SHA1HMAC, SADB_X_EALG_AESCBC, SADB_X_SATYPE_INT,
  SADB_MSG_HDR_LEN, DEBUG_SUBSYSTEMS, MSG_TYPE_NAMES, PfkeyError, buildMessage, parseMessage,
  parseIPv4, parseIPv6, errnoName,
  type Address, type Key, type Lifetime, type MessageInput, type PfkeyMessage, type Sa,
  type XDebug,
} from '../src/wire/index.js';

export { Engine, PfkeySocket };

// ---------- deterministic randomness ----------

/** A small seeded PRNG (mulberry32) giving uniform integers in [0, n). */
export function seededRandom(seed = 0x5eed): (n: number) => number {
  let s = seed >>> 0;
  return (n: number) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return Math.floor(u * n);
  };
}

// ---------- a world: engine + fake clock ----------

export interface World {
  engine: Engine;
  /** The fake clock, in seconds; move it with advance(). */
  clock: { t: number };
  advance(seconds: number): void;
  client(opts?: SocketOptions): Client;
}

export function world(opts: Omit<EngineOptions, 'clock'> & { start?: number } = {}): World {
  const clock = { t: opts.start ?? 1000 };
  const { start: _s, ...rest } = opts;
  // No host addresses unless a test gives some: every SA is outbound, whatever machine runs the tests.
  const engine = new Engine({ random: seededRandom(), localAddresses: () => [], ...rest, clock: () => clock.t });
  return {
    engine,
    clock,
    advance(seconds: number) { clock.t += seconds; },
    client(o?: SocketOptions) { return new Client(engine, o); },
  };
}

// ---------- clients ----------

/** Parse a message the engine sent, as outbound; fail the test with the reason if it is refused. */
export function parseOut(bytes: Uint8Array, what = ''): PfkeyMessage {
  try {
    return parseMessage(bytes, { direction: 'out' });
  } catch (e) {
    const h = bytes.length >= 16 ? `${MSG_TYPE_NAMES[bytes[1]] ?? bytes[1]} errno=${bytes[2]} satype=${bytes[3]}` : `${bytes.length} bytes`;
    assert.fail(`${what ? `${what}: ` : ''}engine sent a message its outbound rules refuse (${h}): ${(e as Error).message}`);
  }
}

export class Client {
  readonly sock: PfkeySocket;
  constructor(readonly engine: Engine, opts?: SocketOptions) {
    this.sock = new PfkeySocket(engine, opts);
  }

  /** Build and send; returns send()'s result (0 or an errno). */
  send(m: MessageInput | Uint8Array): number {
    return this.sock.send(m instanceof Uint8Array ? m : buildMessage(m));
  }

  /** Send, and assert it succeeded. */
  ok(m: MessageInput | Uint8Array, what = ''): void {
    const rc = this.send(m);
    assert.equal(rc, 0, `${what || 'send'} returned ${errnoName(rc)}`);
  }

  /** Everything queued, raw (no ENOBUFS expected). */
  raw(): Uint8Array[] {
    return this.sock.recvAll();
  }

  /** Everything queued, each parsed as an outbound message (which asserts the engine's output is valid). */
  read(what = ''): PfkeyMessage[] {
    return this.sock.recvAll().map((b) => parseOut(b, what));
  }

  /** Exactly one queued message, parsed as outbound. */
  one(what = ''): PfkeyMessage {
    const all = this.read(what);
    assert.equal(all.length, 1, `${what}: expected exactly one message, got ${all.length} (${all.map(describeMsg).join(', ')})`);
    return all[0];
  }

  /** Assert nothing is queued. */
  none(what = ''): void {
    const all = this.sock.recvAll();
    assert.equal(all.length, 0, `${what}: expected no message, got ${all.length} (${all.map((b) => MSG_TYPE_NAMES[b[1]]).join(', ')})`);
  }

  close(): void { this.sock.close(); }
}

export function describeMsg(m: PfkeyMessage): string {
  return `${MSG_TYPE_NAMES[m.header.type]}${m.header.errno ? `(errno ${errnoName(m.header.errno)})` : ''}`;
}

/** Empty every client's queue (parsing each message as outbound). */
export function drain(...cs: Client[]): void {
  for (const c of cs) if (!c.sock.closed) c.read('drain');
}

// ---------- building blocks ----------

export const isV6 = (addr: string) => addr.includes(':');

export function addr(a: string, port = 0, proto = 0): Address {
  return isV6(a)
    ? { proto, prefixlen: 0, family: AF_INET6, port, addr: a, flowinfo: 0, scopeId: 0 }
    : { proto, prefixlen: 0, family: AF_INET, port, addr: a };
}

/** A key of `bits` bits filled with a recognisable pattern. */
export function key(bits: number, fill = 0x5a): Key {
  return { bits, key: Uint8Array.from({ length: Math.ceil(bits / 8) }, (_, i) => (fill + i) & 0xff) };
}

export function lifetime(f: Partial<{ allocations: number; bytes: number; addtime: number; usetime: number; packets: number }>): Lifetime {
  const l: Lifetime = {
    allocations: f.allocations ?? 0,
    bytes: BigInt(f.bytes ?? 0),
    addtime: BigInt(f.addtime ?? 0),
    usetime: BigInt(f.usetime ?? 0),
  };
  if (f.packets !== undefined) l.packets = f.packets;
  return l;
}

export function saExt(spi: number, f: Partial<Sa> = {}): Sa {
  return { spi, replay: f.replay ?? 0, state: f.state ?? SADB_SASTATE_MATURE, auth: f.auth ?? 0, encrypt: f.encrypt ?? 0, flags: f.flags ?? 0, ...(f.ref !== undefined ? { ref: f.ref } : {}) };
}

export const SRC = '192.0.2.1';
export const DST = '192.0.2.2';

export interface Hdr { seq?: number; pid?: number }

export function getspiReq(o: { satype?: number; src?: string; dst?: string; min: number; max: number } & Hdr): MessageInput {
  return {
    header: { type: SADB_GETSPI, satype: o.satype ?? SADB_SATYPE_ESP, seq: o.seq ?? 1, pid: o.pid ?? 100 },
    addressSrc: addr(o.src ?? SRC),
    addressDst: addr(o.dst ?? DST),
    spirange: { min: o.min, max: o.max },
  };
}

export interface SaReqOpts extends Hdr {
  satype?: number;
  spi: number;
  src?: string;
  dst?: string;
  auth?: number;
  encrypt?: number;
  /** Key bits; 0 means no key extension. Defaults suit the algorithms' defaults. */
  authBits?: number;
  encBits?: number;
  flags?: number;
  state?: number;
  replay?: number;
  extra?: Partial<MessageInput>;
}

/** ADD or UPDATE. Defaults: ESP, HMAC-SHA1 (160-bit key), AES-CBC (128-bit key). */
export function saReq(type: typeof SADB_ADD | typeof SADB_UPDATE, o: SaReqOpts): MessageInput {
  const satype = o.satype ?? SADB_SATYPE_ESP;
  const esp = satype === SADB_SATYPE_ESP;
  const auth = o.auth ?? (esp || satype === 2 ? SADB_AALG_SHA1HMAC : 0);
  const encrypt = o.encrypt ?? (esp ? SADB_X_EALG_AESCBC : 0);
  const authBits = o.authBits ?? (auth === SADB_AALG_SHA1HMAC ? 160 : 0);
  const encBits = o.encBits ?? (encrypt === SADB_X_EALG_AESCBC && esp ? 128 : 0);
  const m: MessageInput = {
    header: { type, satype, seq: o.seq ?? 2, pid: o.pid ?? 100 },
    sa: saExt(o.spi, { auth, encrypt, flags: o.flags ?? 0, state: o.state ?? SADB_SASTATE_MATURE, replay: o.replay ?? 32 }),
    addressSrc: addr(o.src ?? SRC),
    addressDst: addr(o.dst ?? DST),
  };
  if (authBits) m.keyAuth = key(authBits, 0x11);
  if (encBits) m.keyEncrypt = key(encBits, 0x77);
  return { ...m, ...(o.extra ?? {}) } as MessageInput;
}

export const addReq = (o: SaReqOpts) => saReq(SADB_ADD, o);
export const updateReq = (o: SaReqOpts) => saReq(SADB_UPDATE, o);

/** DELETE or GET (SA, SRC, DST). */
export function saidReq(type: number, o: { satype?: number; spi: number; src?: string; dst?: string } & Hdr): MessageInput {
  return {
    header: { type, satype: o.satype ?? SADB_SATYPE_ESP, seq: o.seq ?? 3, pid: o.pid ?? 100 },
    sa: saExt(o.spi, { state: 0, replay: 0 }),
    addressSrc: addr(o.src ?? SRC),
    addressDst: addr(o.dst ?? DST),
  };
}

/** A header-only request (REGISTER, FLUSH, DUMP, EXPIRE, X_PROMISC, X_PCHANGE). */
export function hdrReq(type: number, satype = 0, h: Hdr = {}): MessageInput {
  return { header: { type, satype, seq: h.seq ?? 4, pid: h.pid ?? 100 } };
}

export interface SaRef { satype: number; spi: number; dst?: string }

export function grpsaReq(a: SaRef, b?: SaRef, h: Hdr = {}): MessageInput {
  const m: MessageInput = {
    header: { type: SADB_X_GRPSA, satype: a.satype, seq: h.seq ?? 5, pid: h.pid ?? 100 },
    sa: saExt(a.spi, { state: 0, replay: 0 }),
    addressDst: addr(a.dst ?? DST),
  };
  if (b) {
    m.satype2 = { satype: b.satype };
    m.sa2 = saExt(b.spi, { state: 0, replay: 0 });
    m.addressDst2 = addr(b.dst ?? DST);
  }
  return m;
}

export interface FlowOpts extends Hdr {
  /** The SA (or shunt) the eroute points to. Default: ESP 0x1000@DST. */
  satype?: number;
  spi?: number;
  said_dst?: string;
  src: string;
  srcMask: string;
  dst: string;
  dstMask: string;
  proto?: number;
  sport?: number;
  dport?: number;
  flags?: number;
  /** Put an SA extension in an X_DELFLOW (ADDFLOW always has one). */
  withSa?: boolean;
}

export function flowExts(o: FlowOpts): Partial<MessageInput> {
  const m: Partial<MessageInput> = {
    addressSrcFlow: addr(o.src, o.sport ?? 0),
    addressDstFlow: addr(o.dst, o.dport ?? 0),
    addressSrcMask: addr(o.srcMask),
    addressDstMask: addr(o.dstMask),
  };
  if (o.proto) m.protocol = { proto: o.proto, direction: 0, flags: 0 };
  return m;
}

export function addflowReq(o: FlowOpts): MessageInput {
  return {
    header: { type: 14, satype: o.satype ?? SADB_SATYPE_ESP, seq: o.seq ?? 6, pid: o.pid ?? 100 },
    sa: saExt(o.spi ?? 0x1000, { flags: o.flags ?? 0, state: 0, replay: 0 }),
    addressDst: addr(o.said_dst ?? (o.satype === SADB_X_SATYPE_INT ? (isV6(o.src) ? '::' : '0.0.0.0') : DST)),
    ...flowExts(o),
  } as MessageInput;
}

export function delflowReq(o: FlowOpts): MessageInput {
  const m = { header: { type: 15, satype: o.satype ?? SADB_SATYPE_ESP, seq: o.seq ?? 7, pid: o.pid ?? 100 }, ...flowExts(o) } as MessageInput;
  if (o.withSa || o.flags) m.sa = saExt(o.spi ?? 0x1000, { flags: o.flags ?? 0, state: 0, replay: 0 });
  return m;
}

export function clearflowReq(h: Hdr = {}): MessageInput {
  return { header: { type: 15, satype: SADB_SATYPE_ESP, seq: h.seq ?? 8, pid: h.pid ?? 100 }, sa: saExt(0, { flags: 4, state: 0, replay: 0 }) };
}

export function debugReq(words: Partial<XDebug>, h: Hdr = {}): MessageInput {
  const d = Object.fromEntries(DEBUG_SUBSYSTEMS.map((n) => [n, words[n] ?? 0])) as XDebug;
  return { header: { type: SADB_X_DEBUG, satype: 0, seq: h.seq ?? 9, pid: h.pid ?? 100 }, debug: d };
}

export function plumbReq(type: 18 | 19, ifnum: number, h: Hdr = {}): MessageInput {
  return { header: { type, satype: 0, seq: h.seq ?? 10, pid: h.pid ?? 100 }, plumbif: { ifnum } };
}

/** A packet selector for engine.route(). */
export function pkt(src: string, dst: string, proto = 6, sport = 1234, dport = 80) {
  const v6 = isV6(src);
  return { family: v6 ? AF_INET6 : AF_INET, src: (v6 ? parseIPv6(src) : parseIPv4(src))!, dst: (v6 ? parseIPv6(dst) : parseIPv4(dst))!, proto, sport, dport };
}

export const said = (proto: number, spi: number, dst = DST): Said => ({ proto, spi, dst });
export const espSaid = (spi: number, dst = DST) => said(IPPROTO_ESP, spi, dst);
export const ahSaid = (spi: number, dst = DST) => said(IPPROTO_AH, spi, dst);
export const ipipSaid = (spi: number, dst = DST) => said(IPPROTO_IPIP, spi, dst);
export const compSaid = (spi: number, dst = DST) => said(IPPROTO_COMP, spi, dst);
export const shuntSaid = (spi: number, dst = '0.0.0.0') => said(IPPROTO_INT, spi, dst);

/** Install a MATURE ESP SA directly with ADD through `c`, draining every client. */
export function addEsp(c: Client, spi: number, o: Partial<SaReqOpts> = {}): void {
  c.ok(addReq({ spi, ...o }), `ADD esp ${spi.toString(16)}`);
}

// ---------- snapshots ----------

const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : undefined);

/** Everything a refusal must leave as it was: SAs (state, links, counters, keys), eroutes, interfaces, debug flags, pending ACQUIREs. */
export function snapshot(engine: Engine): string {
  const sas = [...engine.sadb.values()].map((sa) => ({
    k: saidKey(sa.said), state: sa.state, satype: sa.satype, flags: sa.flags, auth: sa.auth, encrypt: sa.encrypt,
    replay: sa.replay, src: sa.src.addr, next: sa.next && saidKey(sa.next.said), prev: sa.prev && saidKey(sa.prev.said),
    ka: hex(sa.keyAuth?.key()), ke: hex(sa.keyEncrypt?.key()), cur: sa.current, soft: sa.soft, hard: sa.hard,
    softSent: sa.softSent, inbound: sa.inbound ? JSON.stringify(sa.inbound) : undefined, natT: sa.natT ? JSON.stringify(sa.natT) : undefined,
    ref: sa.ref, refhim: sa.refhim, dir: sa.dir, sport: sa.src.port, dport: sa.dst.port,
  })).sort((a, b) => (a.k < b.k ? -1 : 1));
  const eroutes = [...engine.spd.entries()].map((e) => ({ flow: e.flow, said: saidKey(e.said), packets: e.packets, pid: e.pid, held: hex(e.held) }));
  return JSON.stringify({
    size: engine.sadb.size,
    sas,
    eroutes,
    ifs: [...engine.interfaces.values()].map((i) => `${i.ifnum}:${i.name}`).sort(),
    debug: engine.debug,
    pending: [...engine.pendingAcquires.keys()].sort(),
    sarefs: [...engine.sadb.sarefs.entries()].map(([ref, sa]) => `${ref}:${saidKey(sa.said)}`),
  }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
}

/**
 * Send a request that must be refused with `errno` after the header check: send() returns
 * it, the tables are unchanged, and every open client (sender included) receives exactly
 * one header-only message with sadb_msg_errno = errno and the request's type, satype,
 * seq and pid. Returns the errno replies.
 */
export function expectRefusal(w: World, sender: Client, all: Client[], m: MessageInput | Uint8Array, errno: number, what: string): PfkeyMessage[] {
  drain(...all);
  const bytes = m instanceof Uint8Array ? m : buildMessage(m);
  const before = snapshot(w.engine);
  const size = w.engine.sadb.size;
  const rc = sender.send(bytes);
  assert.equal(errnoName(rc), errnoName(errno), `${what}: send() result`);
  assert.equal(w.engine.sadb.size, size, `${what}: SA count changed`);
  assert.equal(snapshot(w.engine), before, `${what}: tables changed by a refused request`);
  const out: PfkeyMessage[] = [];
  for (const c of all) {
    if (c.sock.closed) continue;
    const msgs = c.sock.recvAll();
    assert.equal(msgs.length, 1, `${what}: socket ${c.sock.id} should get one errno message, got ${msgs.length}`);
    assert.equal(msgs[0].length, SADB_MSG_HDR_LEN, `${what}: the errno reply must be header-only`);
    const r = parseOut(msgs[0], what);
    assert.equal(errnoName(r.header.errno), errnoName(errno), `${what}: sadb_msg_errno`);
    assert.equal(r.header.type, bytes[1], `${what}: reply type`);
    assert.equal(r.header.satype, bytes[3], `${what}: reply satype`);
    assert.equal(r.header.seq, new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true), `${what}: reply seq`);
    assert.equal(r.header.pid, new DataView(bytes.buffer, bytes.byteOffset).getUint32(12, true), `${what}: reply pid`);
    out.push(r);
  }
  return out;
}

/**
 * Send a request that must be refused to the sender alone (KLIPS's pfkey_x_simple_reply,
 * X_PLUMBIF / X_UNPLUMBIF): send() returns `errno`, the tables are unchanged, the sender
 * receives exactly the request's bytes with sadb_msg_errno set, and nobody else anything.
 */
export function expectSenderRefusal(w: World, sender: Client, all: Client[], m: MessageInput | Uint8Array, errno: number, what: string): void {
  drain(...all);
  const bytes = m instanceof Uint8Array ? m : buildMessage(m);
  const before = snapshot(w.engine);
  const rc = sender.send(bytes);
  assert.equal(errnoName(rc), errnoName(errno), `${what}: send() result`);
  assert.equal(snapshot(w.engine), before, `${what}: tables changed by a refused request`);
  const want = Uint8Array.from(bytes);
  want[2] = errno;
  const got = sender.raw();
  assert.equal(got.length, 1, `${what}: the sender should get one reply, got ${got.length}`);
  assert.equal(Buffer.from(got[0]).toString('hex'), Buffer.from(want).toString('hex'), `${what}: the reply is the request with the errno`);
  parseOut(got[0], what);
  for (const c of all) if (c !== sender && !c.sock.closed) c.none(`${what}: only the sender hears of it`);
}

/** Assert fn throws a PfkeyError with this errno. */
export function assertPfkeyError(fn: () => unknown, errno: number, what = ''): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PfkeyError, `${what}: expected PfkeyError, got ${String(e)}`);
    assert.equal(errnoName(e.errno), errnoName(errno), `${what}: errno`);
    return true;
  });
}

/** Await until cond() holds, stepping the event loop with setImmediate; fails after maxSteps. */
export async function until(cond: () => boolean, maxSteps = 10_000, what = 'condition'): Promise<void> {
  for (let i = 0; i < maxSteps; i++) {
    if (cond()) return;
    await new Promise<void>((r) => setImmediate(r));
  }
  assert.fail(`${what} not reached after ${maxSteps} event-loop turns`);
}
