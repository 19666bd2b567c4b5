/**
 * The key engine suite, in process: requests go through PfkeySocket.send as prebuilt
 * bytes and replies are read back with recv(), so each operation is a full round trip
 * (header check, parse and validate, handler, reply build, queueing, dequeueing).
 *
 *  - ADD, GET, DELETE per second with the SA table pre-filled to 10^4, 10^5 and 10^6 SAs
 *    (bounded batches: ADD new SPIs, GET random existing ones, DELETE the ones just added,
 *    so the table is back at its size afterwards);
 *  - heap bytes per SA at 10^6 (global.gc via node --expose-gc; goal <= 1 KiB);
 *  - eroute lookups per second (engine.route) with 10^5 eroutes and random packets that
 *    hit them;
 *  - DUMP of 10^6 SAs in SAs/s while another socket's GETs keep being answered: the max and
 *    p99 gap between consecutive GET answers of a closed-loop client (an upper bound on the
 *    latency a GET waits behind the DUMP); goal < 10 ms;
 *  - a bare Map<string, object> insert and lookup of the same SAID keys, for comparison.
 *
 * Everything is bounded by operation counts, not by time; --quick shrinks the batches
 * (the table sizes stay). Run it alone with
 *   node --expose-gc dist/bench/engine.bench.js [--quick]
 * or, once bench/run.ts lists it, `node --expose-gc dist/bench/run.js engine`.
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
import { percent, runAloneIfMain, type ResultRow, type Suite, type SuiteOptions, type SuiteResult } from './harness.js';

const SIZES = [10_000, 100_000, 1_000_000] as const;
const EROUTES = 100_000;
const HEAP_GOAL = 1024;
const GET_LATENCY_GOAL_MS = 10;

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

/** Per-op means of `batches` timed batches of `per` operations, as a ResultRow. */
function measure(name: string, batches: number, per: number, fn: (batch: number) => void, extra: Record<string, number | string> = {}): ResultRow {
  const samples: number[] = [];
  for (let b = 0; b < batches; b++) {
    const t0 = performance.now();
    fn(b);
    samples.push(((performance.now() - t0) * 1e6) / per);
  }
  return rowFrom(name, samples, extra);
}

function rowFrom(name: string, nsPerOp: number[], extra: Record<string, number | string> = {}): ResultRow {
  const mean = nsPerOp.reduce((a, b) => a + b, 0) / nsPerOp.length;
  return { name, hz: mean > 0 ? 1e9 / mean : 0, mean, p99: pct(nsPerOp, 0.99), samples: nsPerOp.length, extra };
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
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
const gcLog = { count: 0, total: 0, max: 0 };
function gcReset(): void { gcLog.count = 0; gcLog.total = 0; gcLog.max = 0; }
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) { gcLog.count++; gcLog.total += e.duration; gcLog.max = Math.max(gcLog.max, e.duration); }
});

function expectOk(rc: number, what: string): void {
  if (rc !== 0) throw new Error(`${what} failed with errno ${rc}`);
}

// ---------------------------------------------------------------- SA operations

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

    // Prebuilt, distinct request bytes for the timed batches.
    const total = per * batches;
    const adds = Array.from({ length: total }, (_, i) => withSpi(addBytes, BATCH_BASE + i, true));
    const gets = Array.from({ length: total }, () => withSpi(getBytes, FILL_BASE + Math.floor(rand() * size), true));
    const dels = Array.from({ length: total }, (_, i) => withSpi(delBytes, BATCH_BASE + i, true));
    // Untimed warm-up (the forced gc above leaves the heap cold): a few hundred of each, net zero.
    const warm = Array.from({ length: 500 }, (_, i) => [withSpi(addBytes, BATCH_BASE - 1 - i, true), withSpi(getBytes, FILL_BASE + i, true), withSpi(delBytes, BATCH_BASE - 1 - i, true)]);
    for (const [ad, ge, de] of warm) { expectOk(sock.send(ad), 'warm ADD'); sock.recv(); expectOk(sock.send(ge), 'warm GET'); sock.recv(); expectOk(sock.send(de), 'warm DELETE'); sock.recv(); }
    await tick();
    const label = size.toExponential(0).replace('+', '');
    rows.push(measure(`ADD @${label}`, batches, per, (b) => {
      for (let i = b * per, end = i + per; i < end; i++) { if (sock.send(adds[i]) !== 0) throw new Error('ADD failed'); sock.recv(); }
    }));
    rows.push(measure(`GET @${label}`, batches, per, (b) => {
      for (let i = b * per, end = i + per; i < end; i++) { if (sock.send(gets[i]) !== 0) throw new Error('GET failed'); sock.recv(); }
    }));
    rows.push(measure(`DELETE @${label}`, batches, per, (b) => {
      for (let i = b * per, end = i + per; i < end; i++) { if (sock.send(dels[i]) !== 0) throw new Error('DELETE failed'); sock.recv(); }
    }));
    if (engine.sadb.size !== size) throw new Error(`after the batches the table holds ${engine.sadb.size}, wanted ${size}`);
    if (sock.dropped) throw new Error(`${sock.dropped} replies dropped`);
  }
  sock.close();
  return { rows, notes, engine };
}

// ---------------------------------------------------------------- bare Map

function bareMap(opts: SuiteOptions): ResultRow[] {
  const n = 1_000_000;
  const per = opts.quick ? 500 : 2000;
  const batches = opts.quick ? 4 : 10;
  const m = new Map<string, { spi: number; dst: string }>();
  for (let i = 0; i < n; i++) m.set(`${IPPROTO_ESP}/${FILL_BASE + i}/${DST}`, { spi: FILL_BASE + i, dst: DST });
  const rand = rng(7);
  const look = Array.from({ length: per * batches }, () => FILL_BASE + Math.floor(rand() * n));
  let sink = 0;
  const ins = measure('Map.set same keys @1e6', batches, per, (b) => {
    for (let i = b * per, end = i + per; i < end; i++) m.set(`${IPPROTO_ESP}/${BATCH_BASE + i}/${DST}`, { spi: BATCH_BASE + i, dst: DST });
  });
  const get = measure('Map.get same keys @1e6', batches, per, (b) => {
    for (let i = b * per, end = i + per; i < end; i++) sink += m.get(`${IPPROTO_ESP}/${look[i]}/${DST}`)!.spi & 1;
  });
  const del = measure('Map.delete same keys @1e6', batches, per, (b) => {
    for (let i = b * per, end = i + per; i < end; i++) if (m.delete(`${IPPROTO_ESP}/${BATCH_BASE + i}/${DST}`)) sink++;
  });
  if (sink < 0) console.log(sink);
  return [ins, get, del];
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
  const row = measure('eroute lookup @1e5 (engine.route)', batches, per, (b) => {
    for (let i = 0; i < per; i++) if (engine.route(packets[(b * per + i) & (packets.length - 1)])) hits++;
  });
  if (hits !== per * batches) throw new Error(`only ${hits} of ${per * batches} packets matched an eroute`);
  const addflow = rowFrom('X_ADDFLOW (fill to 1e5)', [(fillMs * 1e6) / (EROUTES + dup)]);
  sock.close();
  return {
    rows: [addflow, row],
    notes: [`eroutes: 10^5 random IPv4 flows (source /16../32 in 10/8, destination /8../32 in 172/8), ${dup} duplicate flows refused while filling; packets drawn inside random eroutes' flows, every one matched`],
  };
}

// ---------------------------------------------------------------- DUMP under GET load

async function dumpUnderLoad(engine: Engine, opts: SuiteOptions): Promise<{ rows: ResultRow[]; notes: string[] }> {
  const n = engine.sadb.size;
  const dumper = new PfkeySocket(engine, { rcvbuf: 4 << 20 });
  const getter = new PfkeySocket(engine, { rcvbuf: 1 << 20 });
  const rand = rng(5);
  const gets = Array.from({ length: 4096 }, () => withSpi(getBytes, FILL_BASE + Math.floor(rand() * 1_000_000), true));
  const dumpReq = buildMessage({ header: { type: SADB_DUMP, satype: 0, seq: 9, pid: 1 } });

  let received = 0;
  let last = -1;
  let done = false;
  const gaps: number[] = [];
  let getsDone = 0;
  const limitMs = opts.quick ? 60_000 : 120_000;

  await tick();
  gcReset();
  const t0 = performance.now();
  expectOk(dumper.send(dumpReq), 'DUMP');
  // The DUMP's reader: drains its queue every turn of the event loop.
  const reader = (async () => {
    while (!done) {
      for (let m = dumper.recv(); m; m = dumper.recv()) {
        received++;
        last = new DataView(m.buffer, m.byteOffset).getUint32(8, true);
        if (last === 0) { done = true; break; }
      }
      if (performance.now() - t0 > limitMs) break;
      if (!done) await tick();
    }
  })();
  // A closed-loop GET client on another socket: one GET per turn; the gap between answers bounds its latency.
  const getterLoop = (async () => {
    // The first GET is taken to arrive together with the DUMP request: its wait includes the DUMP handler's synchronous part.
    let prev = t0;
    while (!done && performance.now() - t0 < limitMs) {
      expectOk(getter.send(gets[getsDone & 4095]), 'GET during DUMP');
      if (!getter.recv()) throw new Error('GET unanswered');
      getsDone++;
      const now = performance.now();
      gaps.push(now - prev);
      prev = now;
      await tick();
    }
  })();
  await Promise.all([reader, getterLoop]);
  const dumpMs = performance.now() - t0;
  await tick();
  const gcDuring = { ...gcLog };
  const firstGap = gaps[0] ?? 0;
  const later = gaps.slice(1);
  const maxGap = Math.max(...later);
  const p99Gap = pct(later, 0.99);
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
    {
      name: 'GET during DUMP (answer gap)',
      hz: (getsDone / dumpMs) * 1000,
      mean: (later.reduce((a, b) => a + b, 0) / Math.max(1, later.length)) * 1e6,
      p99: p99Gap * 1e6,
      samples: later.length,
      extra: { 'max ms': Number(maxGap.toFixed(2)), 'first ms': Number(firstGap.toFixed(2)), 'gc max ms': Number(gcDuring.max.toFixed(1)), goal: maxGap < GET_LATENCY_GOAL_MS ? `PASS (< ${GET_LATENCY_GOAL_MS} ms)` : `ABOVE (>= ${GET_LATENCY_GOAL_MS} ms)` },
    },
  ];
  dumper.close();
  getter.close();
  return {
    rows,
    notes: [
      `DUMP @1e6: ${received} of ${n} replies in ${(dumpMs / 1000).toFixed(2)} s, ${dumper.dropped} dropped (rcvbuf 4 MiB, reader drains every event-loop turn); GET answer gap p99 ${p99Gap.toFixed(3)} ms, max ${maxGap.toFixed(2)} ms over ${later.length} GETs after the first; the first GET waited ${firstGap.toFixed(2)} ms`,
      `GC during the DUMP: ${gcDuring.count} pauses, ${gcDuring.total.toFixed(0)} ms in all, longest ${gcDuring.max.toFixed(1)} ms`,
    ],
  };
}

// ---------------------------------------------------------------- the suite

export const suite: Suite = {
  name: 'engine',
  description: 'key engine through PfkeySocket: ADD/GET/DELETE at 1e4..1e6 SAs, heap/SA, eroute lookups at 1e5, DUMP 1e6 under GET load, vs a bare Map',
  async run(opts: SuiteOptions): Promise<SuiteResult> {
    const rows: ResultRow[] = [];
    const notes: string[] = [];
    const t0 = performance.now();
    gcObserver.observe({ entryTypes: ['gc'] });
    // The bare Map first, on a clean heap (it holds its own 10^6 entries), then freed.
    const map = bareMap(opts);
    heapUsed();
    const sa = await saOperations(opts);
    rows.push(...sa.rows);
    notes.push(...sa.notes);
    const dump = await dumpUnderLoad(sa.engine, opts);
    rows.push(...dump.rows);
    notes.push(...dump.notes);
    rows.push(...map);
    const engineGet = sa.rows.find((r) => r.name === 'GET @1e6');
    if (engineGet) engineGet.extra['vs Map.get'] = percent(engineGet.hz / map[1].hz);
    const engineAdd = sa.rows.find((r) => r.name === 'ADD @1e6');
    if (engineAdd) engineAdd.extra['vs Map.set'] = percent(engineAdd.hz / map[0].hz);
    const engineDel = sa.rows.find((r) => r.name === 'DELETE @1e6');
    if (engineDel) engineDel.extra['vs Map.delete'] = percent(engineDel.hz / map[2].hz);
    (sa as { engine?: Engine }).engine = undefined;
    heapUsed();
    const er = eroutes(opts);
    rows.push(...er.rows);
    notes.push(...er.notes);
    notes.push('ADD/GET/DELETE: per-op mean over batches of prebuilt distinct requests, each a send() plus the recv() of its reply; p99 is over batch means.');
    notes.push(`total suite time ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    gcObserver.disconnect();
    return { rows, notes };
  },
};

// Run alone: node --expose-gc dist/bench/engine.bench.js [--quick]
runAloneIfMain(suite, import.meta.url);
