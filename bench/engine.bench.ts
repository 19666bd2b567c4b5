/**
 * The key engine suite, in process: requests go through PfkeySocket.send as prebuilt
 * bytes and replies are read back with recv(), so each operation is a full round trip
 * (header check, parse and validate, handler, reply build, queueing, dequeueing).
 *
 *  - ADD, GET, DELETE per second with the SA table pre-filled to 10^4, 10^5 and 10^6 SAs
 *    (bounded batches: ADD new SPIs, GET random existing ones, DELETE the ones just added,
 *    so the table stays at its size), each batch paired with the same batch on the floor;
 *  - the floor: a bare Map of the same size keyed as the SA table keys its SAs
 *    (src/sadb/sadb.ts: protocol * 2^32 + SPI as one number, the destination compared on
 *    a hit), with keys and values made before the clock starts, so the floor allocates
 *    nothing per operation (checked: B/op); "vs Map" is the median of per-batch ratios;
 *  - heap bytes per SA at 10^6 (global.gc via node --expose-gc; goal <= 1 KiB);
 *  - eroute lookups per second (engine.route) with 10^5 eroutes and random packets that
 *    hit them;
 *  - DUMP of 10^6 SAs in SAs/s while GETs arrive on another socket on a fixed schedule
 *    (open loop, one every 1 ms): each GET's latency runs from its scheduled time, so a
 *    stall delays every GET that falls due during it; p50/p99/max; goal p99 < 10 ms.
 *
 * Everything is bounded by operation counts and time limits; --quick shrinks the batches
 * (the table sizes stay). Run it alone with
 *   node --expose-gc dist/bench/engine.bench.js [--quick]
 * or `node --expose-gc dist/bench/run.js engine`.
 */

import { performance, PerformanceObserver } from 'node:perf_hooks';
import { Engine } from '../src/engine/engine.js';
import { PfkeySocket } from '../src/socket/pfkey-socket.js';
import {
  AF_INET, SADB_ADD, SADB_GET, SADB_DELETE, SADB_DUMP, SADB_X_ADDFLOW, SADB_SATYPE_ESP,
  SADB_SASTATE_MATURE, SADB_AALG_SHA1HMAC, SADB_X_EALG_AESCBC, IPPROTO_ESP,
  buildMessage, prefixToMask, type Address, type MessageInput,
} from '../src/wire/index.js';
import type { PacketSelector } from '../src/spd/eroute-table.js';
import {
  allocationPerOp, fmtMs, latencyRow, paired, pairedExtra, quantile, runAloneIfMain, summarize,
  type ResultRow, type Suite, type SuiteOptions, type SuiteResult,
} from './harness.js';

const SIZES = [10_000, 100_000, 1_000_000] as const;
const EROUTES = 100_000;
const HEAP_GOAL = 1024;
const GET_LATENCY_GOAL_MS = 10;
/** Open-loop GETs during the DUMP: one scheduled every this many ms. */
const GET_PERIOD_MS = 1;

const SRC = '192.0.2.1';
const DST = '198.51.100.7';
const v4 = (addr: string): Address => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });
const seqBytes = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + 7 * i) & 0xff);

/** A typical ESP ADD: HMAC-SHA1 and AES-128 keys, soft/hard addtime lifetimes. */
const ADD_TEMPLATE: MessageInput = {
  header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq: 1, pid: 4242 },
  sa: { spi: 0x1000, replay: 32, state: SADB_SASTATE_MATURE, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_X_EALG_AESCBC, flags: 0 },
  lifetimeHard: { allocations: 0, bytes: 0n, addtime: 28800n, usetime: 0n },
  lifetimeSoft: { allocations: 0, bytes: 0n, addtime: 27000n, usetime: 0n },
  addressSrc: v4(SRC),
  addressDst: v4(DST),
  keyAuth: { bits: 160, key: seqBytes(20, 0x11) },
  keyEncrypt: { bits: 128, key: seqBytes(16, 0x5a) },
};

/** SA extension's SPI sits right after the 16-byte header and the 4-byte ext header (network order). */
const SPI_OFFSET = 16 + 4;

function withSpi(template: Uint8Array, spi: number, copy: boolean): Uint8Array {
  const b = copy ? template.slice() : template;
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(SPI_OFFSET, spi >>> 0, false);
  return b;
}

const addBytes = buildMessage(ADD_TEMPLATE);
const getBytes = buildMessage({
  header: { type: SADB_GET, satype: SADB_SATYPE_ESP, seq: 2, pid: 4242 },
  sa: { spi: 0x1000, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 },
  addressSrc: v4(SRC), addressDst: v4(DST),
});
const delBytes = buildMessage({
  header: { type: SADB_DELETE, satype: SADB_SATYPE_ESP, seq: 3, pid: 4242 },
  sa: { spi: 0x1000, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 },
  addressSrc: v4(SRC), addressDst: v4(DST),
});

/** SPIs used by the pre-fill: 0x10000 + i. Batches use SPIs above every pre-filled one. */
const FILL_BASE = 0x10000;
const BATCH_BASE = 0x40000000;

/** A seeded PRNG (mulberry32). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rowFrom(name: string, nsPerOp: number[], extra: Record<string, number | string> = {}): ResultRow {
  const mean = nsPerOp.reduce((x, y) => x + y, 0) / nsPerOp.length;
  return { name, hz: mean > 0 ? 1e9 / mean : 0, mean, p99: quantile(nsPerOp, 0.99), samples: nsPerOp.length, extra };
}

/** One timed batch of `per` operations as ns per operation. */
const nsPer = (t0: number, per: number) => ((performance.now() - t0) * 1e6) / per;

/** How src/sadb/sadb.ts keys its SA table: protocol and SPI as one exact number. */
const spiKey = (proto: number, spi: number): number => proto * 4294967296 + spi;

/**
 * The SA-table keys of `spis`, made once and kept in an array of generic elements (not
 * a double array), so each key stays the same boxed number and reading one allocates
 * nothing.
 */
function boxedKeys(spis: readonly number[]): number[] {
  const keys = new Array<unknown>(spis.length).fill(null) as number[];
  for (let i = 0; i < spis.length; i++) keys[i] = spiKey(IPPROTO_ESP, spis[i]);
  return keys;
}

/** The floor's value: what a hit has to look at (the destination). */
interface FloorSa { spi: number; dst: string }

// The timed loops, one function each so that each is optimised once (warmed before any
// timing) and keeps its own monomorphic call sites whichever table size it runs on.

function floorSet(m: Map<number, FloorSa>, keys: number[], vals: FloorSa[], from: number, end: number): void {
  for (let i = from; i < end; i++) m.set(keys[i], vals[i]);
}

function floorGet(m: Map<number, FloorSa>, keys: number[], dst: string, from: number, end: number): number {
  let hits = 0;
  for (let i = from; i < end; i++) {
    const v = m.get(keys[i]);
    if (v !== undefined && v.dst === dst) hits++;
  }
  return hits;
}

function floorDelete(m: Map<number, FloorSa>, keys: number[], from: number, end: number): number {
  let hits = 0;
  for (let i = from; i < end; i++) if (m.delete(keys[i])) hits++;
  return hits;
}

/** Sends reqs[from..end) one at a time, each followed by the recv() of its reply. */
function roundTrips(sock: PfkeySocket, reqs: Uint8Array[], from: number, end: number, what: string): void {
  for (let i = from; i < end; i++) {
    if (sock.send(reqs[i]) !== 0) throw new Error(`${what} failed`);
    if (sock.recv() === undefined) throw new Error(`${what} unanswered`);
  }
}

const gc: (() => void) | undefined = (globalThis as { gc?: () => void }).gc;
function heapUsed(): number {
  return memory().heapUsed;
}
function memory(): NodeJS.MemoryUsage {
  if (gc) { gc(); gc(); }
  return process.memoryUsage();
}

const tick = () => new Promise<void>((r) => setImmediate(r));

/** GC pauses as the runtime reports them (delivered asynchronously: read after a tick). */
const gcPauses: Array<{ start: number; duration: number }> = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcPauses.push({ start: e.startTime, duration: e.duration });
});

function expectOk(rc: number, what: string): void {
  if (rc !== 0) throw new Error(`${what} failed with errno ${rc}`);
}

// ---------------------------------------------------------------- SA operations, paired with the floor

interface SaPhase { rows: ResultRow[]; notes: string[] }

async function saOperations(opts: SuiteOptions): Promise<SaPhase & { engine: Engine }> {
  const rows: ResultRow[] = [];
  const notes: string[] = [];
  const engine = new Engine({ clock: () => 1_000_000 });
  const sock = new PfkeySocket(engine, { rcvbuf: 1 << 30 });
  const per = opts.quick ? 500 : 2000;
  const batches = opts.quick ? 4 : 10;
  const rand = rng(42);

  const mem0 = memory();
  let filled = 0;
  const fillScratch = addBytes.slice();
  for (const size of SIZES) {
    // Pre-fill to `size` (one reused buffer with the SPI patched in: the engine keeps no reference to request bytes).
    for (; filled < size; filled++) {
      expectOk(sock.send(withSpi(fillScratch, FILL_BASE + filled, false)), 'pre-fill ADD');
      sock.recv();
    }
    if (engine.sadb.size !== size) throw new Error(`table holds ${engine.sadb.size}, wanted ${size}`);
    if (size === 1_000_000) {
      const mem1 = memory();
      const perSa = (mem1.heapUsed - mem0.heapUsed) / size;
      const abPerSa = (mem1.arrayBuffers - mem0.arrayBuffers) / size;
      rows.push({
        name: `heap per SA @1e6${gc ? '' : ' (no gc: approximate)'}`,
        hz: 0, mean: 0, p99: 0, samples: 1,
        extra: { 'bytes/SA': Math.round(perSa), 'arrayBuffers/SA': Math.round(abPerSa), goal: perSa + abPerSa <= HEAP_GOAL ? `PASS (<= ${HEAP_GOAL})` : `ABOVE (> ${HEAP_GOAL})` },
      });
      if (!gc) notes.push('global.gc is unavailable (run node with --expose-gc): heap per SA is measured without a forced collection and is approximate.');
      notes.push(`heap per SA @1e6: ${Math.round(perSa)} bytes of V8 heap + ${Math.round(abPerSa)} bytes of ArrayBuffer backing store (after gc, minus the empty engine's, over 10^6 ESP SAs with two keys and two lifetimes)`);
    }

    // The floor at this size: the same keys, values made now (after the heap measurement).
    const floor = new Map<number, FloorSa>();
    {
      const fillKeys = boxedKeys(Array.from({ length: size }, (_, i) => FILL_BASE + i));
      for (let i = 0; i < size; i++) floor.set(fillKeys[i], { spi: FILL_BASE + i, dst: DST });
    }

    // Prebuilt, distinct requests for the timed batches, and the floor's keys for the same SPIs.
    const total = per * batches;
    const addSpis = Array.from({ length: total }, (_, i) => BATCH_BASE + i);
    const getSpis = Array.from({ length: total }, () => FILL_BASE + Math.floor(rand() * size));
    const adds = addSpis.map((spi) => withSpi(addBytes, spi, true));
    const gets = getSpis.map((spi) => withSpi(getBytes, spi, true));
    const dels = addSpis.map((spi) => withSpi(delBytes, spi, true));
    const addKeys = boxedKeys(addSpis);
    const getKeys = boxedKeys(getSpis);
    const vals: FloorSa[] = addSpis.map((spi) => ({ spi, dst: DST }));

    // Untimed warm-up (the forced gc above leaves the heap cold): a few hundred of each, net zero.
    const warmSpis = Array.from({ length: 500 }, (_, i) => BATCH_BASE - 1 - i);
    const warmAdds = warmSpis.map((spi) => withSpi(addBytes, spi, true));
    const warmGets = warmSpis.map((_, i) => withSpi(getBytes, FILL_BASE + i, true));
    const warmDels = warmSpis.map((spi) => withSpi(delBytes, spi, true));
    for (let r = 0; r < (size === SIZES[0] ? 4 : 1); r++) {
      roundTrips(sock, warmAdds, 0, 500, 'warm ADD');
      roundTrips(sock, warmGets, 0, 500, 'warm GET');
      roundTrips(sock, warmDels, 0, 500, 'warm DELETE');
    }
    // The floor's loops are warmed until optimised (the first size only; they stay warm).
    const warmKeys = boxedKeys(warmSpis);
    const warmVals = warmSpis.map((spi) => ({ spi, dst: DST }));
    let hits = 0;
    for (let r = 0; r < (size === SIZES[0] ? 200 : 4); r++) {
      floorSet(floor, warmKeys, warmVals, 0, 500);
      hits += floorGet(floor, getKeys, DST, 0, 500);
      hits -= floorDelete(floor, warmKeys, 0, 500);
    }
    if (hits !== 0) throw new Error('the floor warm-up is not net zero');
    await tick();

    // Batch b: the floor's set, then ADD; get, then GET; delete, then DELETE (same SPIs).
    const ns = { set: [] as number[], add: [] as number[], mget: [] as number[], get: [] as number[], mdel: [] as number[], del: [] as number[] };
    for (let b = 0; b < batches; b++) {
      const from = b * per;
      const end = from + per;
      let t0 = performance.now();
      floorSet(floor, addKeys, vals, from, end);
      ns.set.push(nsPer(t0, per));
      t0 = performance.now();
      roundTrips(sock, adds, from, end, 'ADD');
      ns.add.push(nsPer(t0, per));
      t0 = performance.now();
      hits += floorGet(floor, getKeys, DST, from, end);
      ns.mget.push(nsPer(t0, per));
      t0 = performance.now();
      roundTrips(sock, gets, from, end, 'GET');
      ns.get.push(nsPer(t0, per));
      t0 = performance.now();
      hits += floorDelete(floor, addKeys, from, end);
      ns.mdel.push(nsPer(t0, per));
      t0 = performance.now();
      roundTrips(sock, dels, from, end, 'DELETE');
      ns.del.push(nsPer(t0, per));
    }
    if (hits !== 2 * total) throw new Error(`the floor found ${hits} of ${2 * total}`);
    if (engine.sadb.size !== size) throw new Error(`after the batches the table holds ${engine.sadb.size}, wanted ${size}`);
    if (floor.size !== size) throw new Error(`after the batches the floor holds ${floor.size}, wanted ${size}`);
    if (sock.dropped) throw new Error(`${sock.dropped} replies dropped`);

    // Heap allocated per operation, on the small table only (each check runs full GCs).
    let allocFloor: number | string = '';
    let allocGet: number | string = '';
    let allocAddDel: number | string = '';
    if (size === SIZES[0]) {
      const b = allocationPerOp((n) => { floorSet(floor, warmKeys, warmVals, 0, n); floorGet(floor, getKeys, DST, 0, n); floorDelete(floor, warmKeys, 0, n); });
      if (b !== undefined) {
        if (b > 0) throw new Error(`the Map floor allocates ${b} B per set+get+delete: it is not a floor`);
        allocFloor = Math.round(b);
        allocGet = Math.round(allocationPerOp((n) => roundTrips(sock, warmGets, 0, n, 'GET'), 64)!);
        allocAddDel = Math.round(allocationPerOp((n) => { roundTrips(sock, warmAdds, 0, n, 'ADD'); roundTrips(sock, warmDels, 0, n, 'DELETE'); }, 32)!);
      }
    }

    const label = size.toExponential(0).replace('+', '');
    const pair = (task: number[], fl: number[]) => pairedExtra(paired(task.map((x) => 1 / x), fl.map((x) => 1 / x)), 'vs Map');
    rows.push(rowFrom(`ADD @${label}`, ns.add, { ...pair(ns.add, ns.set), ...(allocAddDel !== '' ? { 'B/op': `${allocAddDel} (ADD+DELETE)` } : {}) }));
    rows.push(rowFrom(`GET @${label}`, ns.get, { ...pair(ns.get, ns.mget), ...(allocGet !== '' ? { 'B/op': allocGet } : {}) }));
    rows.push(rowFrom(`DELETE @${label}`, ns.del, pair(ns.del, ns.mdel)));
    rows.push(rowFrom(`floor Map.set @${label}`, ns.set, allocFloor !== '' ? { 'B/op': `${allocFloor} (set+get+delete)` } : {}));
    rows.push(rowFrom(`floor Map.get + dst check @${label}`, ns.mget));
    rows.push(rowFrom(`floor Map.delete @${label}`, ns.mdel));
  }
  sock.close();
  notes.push(`ADD/GET/DELETE: per-op mean over ${batches} batches of ${per} prebuilt distinct requests, each a send() plus the recv() of its reply; p99 is over batch means; each batch runs right after the same batch on the floor`);
  notes.push('floor: Map<number, {spi, dst}> of the same size keyed protocol*2^32+SPI (as src/sadb/sadb.ts), keys boxed once in a generic array and values made before timing; get compares the destination; B/op 0 is checked at 1e4');
  notes.push('"vs Map": the median over batches of (engine rate / floor rate in the same batch); "per round" lists each batch');
  return { rows, notes, engine };
}

// ---------------------------------------------------------------- eroute lookups

function flowBytes(i: number, r: () => number): { msg: Uint8Array; pick: () => PacketSelector } {
  const sp = 16 + Math.floor(r() * 17); // 16..32
  const dp = 8 + Math.floor(r() * 25); // 8..32
  const s = (10 << 24) | Math.floor(r() * 0xffffff);
  const d = (172 << 24) | Math.floor(r() * 0xffffff);
  const mask = (p: number) => (p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0);
  const txt = (x: number) => `${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
  const msg = buildMessage({
    header: { type: SADB_X_ADDFLOW, satype: SADB_SATYPE_ESP, seq: i, pid: 1 },
    sa: { spi: FILL_BASE + (i % 1000), replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 },
    addressDst: v4(DST),
    addressSrcFlow: v4(txt((s & mask(sp)) >>> 0)),
    addressDstFlow: v4(txt((d & mask(dp)) >>> 0)),
    addressSrcMask: v4(prefixToMask(AF_INET, sp)),
    addressDstMask: v4(prefixToMask(AF_INET, dp)),
  });
  const pick = (): PacketSelector => {
    const ps = ((s & mask(sp)) | (Math.floor(r() * 0x100000000) & ~mask(sp))) >>> 0;
    const pd = ((d & mask(dp)) | (Math.floor(r() * 0x100000000) & ~mask(dp))) >>> 0;
    const b = (x: number) => Uint8Array.from([x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255]);
    return { family: AF_INET, src: b(ps), dst: b(pd), proto: 6, sport: 1024 + Math.floor(r() * 60000), dport: 443 };
  };
  return { msg, pick };
}

function eroutes(opts: SuiteOptions): { rows: ResultRow[]; notes: string[] } {
  const engine = new Engine({ clock: () => 1_000_000 });
  const sock = new PfkeySocket(engine, { rcvbuf: 1 << 30 });
  const r = rng(99);
  const pickers: Array<() => PacketSelector> = [];
  let dup = 0;
  const t0 = performance.now();
  for (let i = 0; engine.spd.size < EROUTES; i++) {
    if (i >= 2 * EROUTES) throw new Error(`only ${engine.spd.size} eroutes after ${i} X_ADDFLOWs`);
    const { msg, pick } = flowBytes(i, r);
    const rc = sock.send(msg);
    sock.recv();
    if (rc === 0) pickers.push(pick);
    else dup++;
  }
  const fillMs = performance.now() - t0;
  const packets = Array.from({ length: 1 << 14 }, () => pickers[Math.floor(r() * pickers.length)]());
  const per = 10_000;
  const batches = opts.quick ? 10 : 50;
  let hits = 0;
  const lookupNs: number[] = [];
  for (let b = 0; b < batches; b++) {
    const t1 = performance.now();
    for (let i = 0; i < per; i++) if (engine.route(packets[(b * per + i) & (packets.length - 1)])) hits++;
    lookupNs.push(nsPer(t1, per));
  }
  const row = rowFrom('eroute lookup @1e5 (engine.route)', lookupNs);
  if (hits !== per * batches) throw new Error(`only ${hits} of ${per * batches} packets matched an eroute`);
  const addflow = rowFrom('X_ADDFLOW (fill to 1e5)', [(fillMs * 1e6) / (EROUTES + dup)]);
  sock.close();
  return {
    rows: [addflow, row],
    notes: [`eroutes: 10^5 random IPv4 flows (source /16../32 in 10/8, destination /8../32 in 172/8), ${dup} duplicate flows refused while filling; packets drawn inside random eroutes' flows, every one matched`],
  };
}

// ---------------------------------------------------------------- DUMP under open-loop GET load

async function dumpUnderLoad(engine: Engine, opts: SuiteOptions): Promise<{ rows: ResultRow[]; notes: string[] }> {
  const n = engine.sadb.size;
  const dumper = new PfkeySocket(engine, { rcvbuf: 4 << 20 });
  const getter = new PfkeySocket(engine, { rcvbuf: 1 << 20 });
  const rand = rng(5);
  const gets = Array.from({ length: 4096 }, () => withSpi(getBytes, FILL_BASE + Math.floor(rand() * n), true));
  const dumpReq = buildMessage({ header: { type: SADB_DUMP, satype: 0, seq: 9, pid: 1 } });
  const limitMs = opts.quick ? 60_000 : 120_000;
  const maxGets = Math.ceil(limitMs / GET_PERIOD_MS);
  const lat = new Float64Array(maxGets);

  let received = 0;
  let done = false;
  let k = 0;

  await tick();
  gcPauses.length = 0;
  const t0 = performance.now();
  expectOk(dumper.send(dumpReq), 'DUMP');
  // The DUMP's reader: drains its queue every turn of the event loop; the last reply has seq 0.
  const reader = (async () => {
    while (!done) {
      for (let m = dumper.recv(); m; m = dumper.recv()) {
        received++;
        if ((m[8] | m[9] | m[10] | m[11]) === 0) { done = true; break; }
      }
      if (performance.now() - t0 > limitMs) break;
      if (!done) await tick();
    }
  })();
  // The GETs, open loop: GET number k is due at t0 + k * period. Every turn of the event
  // loop sends (and answers) every GET that has fallen due; each one's latency runs from
  // its due time, so a GET that could not be sent on time because the thread was busy
  // (the DUMP's slice, a GC pause) is charged the wait.
  const getterLoop = new Promise<void>((resolve, reject) => {
    const poll = (): void => {
      try {
        let now = performance.now();
        while (!done && k < maxGets && t0 + k * GET_PERIOD_MS <= now) {
          expectOk(getter.send(gets[k & 4095]), 'GET during DUMP');
          if (!getter.recv()) throw new Error('GET unanswered');
          now = performance.now();
          lat[k] = now - (t0 + k * GET_PERIOD_MS);
          k++;
        }
        if (done || k >= maxGets || now - t0 > limitMs) resolve();
        else setImmediate(poll);
      } catch (e) {
        reject(e);
      }
    };
    poll();
  });
  await Promise.all([reader, getterLoop]);
  const dumpMs = performance.now() - t0;
  await tick();
  // GC pauses that started during the DUMP (entries arrive late and include the forced gc() calls before it).
  const during = gcPauses.filter((g) => g.start >= t0 && g.start <= t0 + dumpMs);
  const gcDuring = { count: during.length, total: during.reduce((a, g) => a + g.duration, 0), max: Math.max(0, ...during.map((g) => g.duration)) };
  const s = summarize(Array.from(lat.subarray(0, k)));
  const ok = done && received === n && dumper.dropped === 0;
  const rows: ResultRow[] = [
    {
      name: 'DUMP @1e6 (SAs/s)',
      hz: (received / dumpMs) * 1000,
      mean: (dumpMs * 1e6) / Math.max(1, received),
      p99: 0,
      samples: 1,
      extra: { received, dropped: dumper.dropped, complete: ok ? 'yes' : 'NO' },
    },
    latencyRow(`GET during DUMP, open loop 1 per ${GET_PERIOD_MS} ms`, s, {
      'gc max': fmtMs(gcDuring.max),
      goal: s.p99 < GET_LATENCY_GOAL_MS ? `PASS (p99 < ${GET_LATENCY_GOAL_MS} ms)` : `ABOVE (p99 >= ${GET_LATENCY_GOAL_MS} ms)`,
    }, dumpMs),
  ];
  dumper.close();
  getter.close();
  return {
    rows,
    notes: [
      `DUMP @1e6: ${received} of ${n} replies in ${(dumpMs / 1000).toFixed(2)} s, ${dumper.dropped} dropped (rcvbuf 4 MiB, reader drains every event-loop turn)`,
      `GET during the DUMP, open loop: ${s.n} GETs due every ${GET_PERIOD_MS} ms from the DUMP's start, latency from each GET's due time to its answer: p50 ${fmtMs(s.p50)}, p90 ${fmtMs(s.p90)}, p99 ${fmtMs(s.p99)}, p99.9 ${fmtMs(s.p999)}, max ${fmtMs(s.max)}`,
      `GC during the DUMP: ${gcDuring.count} pauses, ${gcDuring.total.toFixed(0)} ms in all, longest ${gcDuring.max.toFixed(1)} ms`,
    ],
  };
}

// ---------------------------------------------------------------- the suite

export const suite: Suite = {
  name: 'engine',
  description: 'key engine through PfkeySocket: ADD/GET/DELETE at 1e4..1e6 SAs vs a same-keyed Map (paired per batch), heap/SA, eroute lookups at 1e5, DUMP 1e6 under open-loop GETs',
  async run(opts: SuiteOptions): Promise<SuiteResult> {
    const rows: ResultRow[] = [];
    const notes: string[] = [];
    const t0 = performance.now();
    gcObserver.observe({ entryTypes: ['gc'] });
    const sa = await saOperations(opts);
    rows.push(...sa.rows);
    notes.push(...sa.notes);
    heapUsed();
    const dump = await dumpUnderLoad(sa.engine, opts);
    rows.push(...dump.rows);
    notes.push(...dump.notes);
    (sa as { engine?: Engine }).engine = undefined;
    heapUsed();
    const er = eroutes(opts);
    rows.push(...er.rows);
    notes.push(...er.notes);
    notes.push(`total suite time ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    gcObserver.disconnect();
    return { rows, notes };
  },
};

// Run alone: node --expose-gc dist/bench/engine.bench.js [--quick]
runAloneIfMain(suite, import.meta.url);
