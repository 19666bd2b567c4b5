/**
 * The eroute table suite (src/spd): add and delete rates for the two selector shapes of
 * the Linux XFRM SPD anchor (/work/shared/anchors/linux-xfrm-spd/run.sh), at 8,192 to
 * 65,536 eroutes, and the lookup rate with 10^5 eroutes installed.
 *
 *   host:   10.x.y.z/32 -> 172.16.y.z/32   (i = x<<16 | y<<8 | z)
 *   subnet: 10.y.z.0/24 -> 172.16.y.z/32   (i = y<<8 | z)
 *
 * Each size adds n eroutes to an empty table, then deletes them in the same order, as
 * the anchor does. Flows are built before the clock starts (the anchor's numbers include
 * iproute2's parsing and a netlink round trip per request; ours are in-process calls).
 * The goal is flatness: the rate at 65,536 should be close to the rate at 8,192 for both
 * shapes (Linux's subnet deletes fall by ~2x per doubling). Plain performance.now() loops
 * with a bounded count and a full GC before each measurement; each add/delete row is the
 * median of its repeats.
 *
 * The "via PF_KEY" rows do the same through the engine: prebuilt X_ADDFLOW / X_DELFLOW
 * requests sent on a PfkeySocket (parse, dispatch, table change, reply built and queued),
 * which is the like-for-like peer of `ip xfrm policy add/delete` over netlink.
 *
 * Standalone: node dist/bench/spd.bench.js [--quick]
 */

import v8 from 'node:v8';
import vm from 'node:vm';
import { ErouteTable, type ValidFlow as Flow, type PacketSelector } from '../src/spd/eroute-table.js';
import type { Said } from '../src/sadb/said.js';
import { AF_INET, IPPROTO_ESP, SADB_SATYPE_ESP, SADB_X_ADDFLOW, SADB_X_DELFLOW, buildMessage, type Address } from '../src/wire/index.js';
import { Engine } from '../src/engine/engine.js';
import { PfkeySocket } from '../src/socket/pfkey-socket.js';
import { runAloneIfMain, type ResultRow, type Suite, type SuiteOptions, type SuiteResult } from './harness.js';

const SIZES = [8192, 16384, 32768, 65536];
const LOOKUP_EROUTES = 100_000;
const SAID: Said = { proto: IPPROTO_ESP, spi: 0x1234, dst: '192.0.2.2' };

type Shape = 'host' | 'subnet';

function shapeFlows(shape: Shape, n: number): Flow[] {
  const flows: Flow[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const hi = (i >> 8) & 255;
    const lo = i & 255;
    flows[i] = shape === 'host'
      ? ErouteTable.makeFlow(AF_INET, `10.${i >> 16}.${hi}.${lo}`, 32, `172.16.${hi}.${lo}`, 32)
      : ErouteTable.makeFlow(AF_INET, `10.${hi}.${lo}.0`, 24, `172.16.${hi}.${lo}`, 32);
  }
  return flows;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function row(name: string, opsPerRepeat: number, msPerRepeat: number[], extra: Record<string, number | string>): ResultRow {
  const perOpNs = msPerRepeat.map((ms) => (ms * 1e6) / opsPerRepeat);
  const mean = median(perOpNs);
  return {
    name,
    hz: 1e9 / mean,
    mean,
    p99: Math.max(...perOpNs),
    samples: msPerRepeat.length,
    extra,
  };
}

/**
 * A full collection before each measurement, so that no measurement pays for the garbage
 * of the one before and none escapes paying for its own (a small run that fits in the
 * young generation would otherwise never be charged a scavenge). gc() is taken from a
 * fresh context after turning on --expose-gc, so the runner needs no node flag.
 */
let gcFn: (() => void) | undefined;
function collectGarbage(): void {
  if (gcFn === undefined) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
}

/** A deterministic PRNG so every run looks up the same packets. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function v4(x: number): string {
  return `${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
}

/** 10^5 eroutes of mixed prefix lengths and some proto/port selectors, plus packets inside them. */
function mixedTable(n: number, nPackets: number): { table: ErouteTable; packets: PacketSelector[] } {
  const rnd = mulberry32(0x5bd1e995);
  const table = new ErouteTable();
  const flows: Flow[] = [];
  const srcPrefixes = [8, 12, 16, 20, 24, 24, 28, 32, 32];
  const dstPrefixes = [0, 16, 24, 32, 32];
  while (table.size < n) {
    const sp = srcPrefixes[(rnd() * srcPrefixes.length) | 0];
    const dp = dstPrefixes[(rnd() * dstPrefixes.length) | 0];
    const src = (0x0a000000 | ((rnd() * 0x1000000) | 0)) >>> 0;
    const dst = (0xac100000 | ((rnd() * 0x100000) | 0)) >>> 0;
    const udp = rnd() < 0.1;
    const f = ErouteTable.makeFlow(AF_INET, v4(src), sp, v4(dst), dp, udp ? 17 : 0, 0, udp ? 500 : 0);
    if (table.get(f)) continue;
    table.add(f, SAID);
    flows.push(f);
  }
  const packets: PacketSelector[] = [];
  const bytes = (x: number) => Uint8Array.of(x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255);
  const parse = (s: string) => s.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
  for (let i = 0; i < nPackets; i++) {
    const f = flows[(rnd() * flows.length) | 0];
    const inside = (net: string, prefix: number) => {
      const host = prefix === 32 ? 0 : ((rnd() * 0x100000000) >>> 0) & (0xffffffff >>> prefix);
      return (parse(net) | host) >>> 0;
    };
    packets.push({
      family: AF_INET, src: bytes(inside(f.src, f.srcPrefix)), dst: bytes(inside(f.dst, f.dstPrefix)),
      proto: f.proto || (rnd() < 0.5 ? 6 : 17), sport: 500, dport: f.dport || 443,
    });
  }
  return { table, packets };
}

/** 10^5 host-to-host eroutes (the anchor's host shape) and packets hitting them. */
function hostTable(n: number, nPackets: number): { table: ErouteTable; packets: PacketSelector[] } {
  const rnd = mulberry32(42);
  const table = new ErouteTable();
  for (const f of shapeFlows('host', n)) table.add(f, SAID);
  const packets: PacketSelector[] = [];
  for (let k = 0; k < nPackets; k++) {
    const i = (rnd() * n) | 0;
    const hi = (i >> 8) & 255;
    const lo = i & 255;
    packets.push({
      family: AF_INET, src: Uint8Array.of(10, i >> 16, hi, lo), dst: Uint8Array.of(172, 16, hi, lo),
      proto: 6, sport: 40000, dport: 443,
    });
  }
  return { table, packets };
}

export const suite: Suite = {
  name: 'spd',
  description: 'eroute table: add/delete rates for host and subnet eroutes at 8k..64k (vs Linux XFRM SPD), lookups with 10^5 eroutes',
  async run(opts: SuiteOptions): Promise<SuiteResult> {
    const quick = opts.quick;
    const repeats = quick ? 1 : 5;
    const rows: ResultRow[] = [];

    // Warm the JIT on a small table of each shape so the first size is not penalised.
    for (const shape of ['host', 'subnet'] as const) {
      const t = new ErouteTable();
      const fl = shapeFlows(shape, 4096);
      for (const f of fl) t.add(f, SAID);
      for (const f of fl) t.delete(f);
    }

    // Repeats go round every shape and size in turn, so background noise spreads evenly.
    const shapes = ['host', 'subnet'] as const;
    const flowsOf = new Map<string, Flow[]>(shapes.flatMap((shape) => SIZES.map((n) => [`${shape} ${n}`, shapeFlows(shape, n)] as const)));
    const addMs = new Map<string, number[]>();
    const delMs = new Map<string, number[]>();
    for (let r = 0; r < repeats; r++) {
      for (const shape of shapes) {
        for (const n of SIZES) {
          const id = `${shape} ${n}`;
          const flows = flowsOf.get(id)!;
          collectGarbage();
          const t = new ErouteTable();
          const t0 = performance.now();
          for (let i = 0; i < n; i++) t.add(flows[i], SAID);
          const t1 = performance.now();
          if (t.size !== n) throw new Error(`spd bench: ${t.size} eroutes installed, want ${n}`);
          for (let i = 0; i < n; i++) t.delete(flows[i]);
          const t2 = performance.now();
          if (t.size !== 0 || t.nodeCount() !== 0) throw new Error('spd bench: table not empty after deleting');
          if (!addMs.has(id)) { addMs.set(id, []); delMs.set(id, []); }
          addMs.get(id)!.push(t1 - t0);
          delMs.get(id)!.push(t2 - t1);
        }
      }
    }
    for (const shape of shapes) {
      let baseAdd = 0;
      let baseDel = 0;
      for (const n of SIZES) {
        const id = `${shape} ${n}`;
        const a = addMs.get(id)!;
        const d = delMs.get(id)!;
        const add = row(`add ${shape} n=${n}`, n, a, { n, seconds: median(a) / 1000, 'best/s': Math.round(n / (Math.min(...a) / 1000)) });
        const del = row(`delete ${shape} n=${n}`, n, d, { n, seconds: median(d) / 1000, 'best/s': Math.round(n / (Math.min(...d) / 1000)) });
        if (n === SIZES[0]) { baseAdd = add.hz; baseDel = del.hz; }
        add.extra['rate vs 8192'] = add.hz / baseAdd;
        del.extra['rate vs 8192'] = del.hz / baseDel;
        rows.push(add, del);
      }
    }

    // The same shapes through PF_KEY: X_ADDFLOW then X_DELFLOW on a fresh engine.
    const v4a = (addr: string): Address => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });
    const mask = (prefix: number) => v4a(prefix === 32 ? '255.255.255.255' : '255.255.255.0');
    for (const shape of shapes) {
      let baseAdd = 0;
      let baseDel = 0;
      for (const n of SIZES) {
        const flows = flowsOf.get(`${shape} ${n}`)!;
        const exts = flows.map((f) => ({
          addressSrcFlow: v4a(f.src), addressDstFlow: v4a(f.dst), addressSrcMask: mask(f.srcPrefix), addressDstMask: mask(f.dstPrefix),
        }));
        const adds = exts.map((x, i) => buildMessage({
          header: { type: SADB_X_ADDFLOW, satype: SADB_SATYPE_ESP, seq: i, pid: 1 },
          sa: { spi: SAID.spi, replay: 0, state: 1, auth: 0, encrypt: 0, flags: 0 }, addressDst: v4a(SAID.dst), ...x,
        }));
        const dels = exts.map((x, i) => buildMessage({ header: { type: SADB_X_DELFLOW, seq: i, pid: 1 }, ...x }));
        const a: number[] = [];
        const d: number[] = [];
        // One untimed pass first, so the JIT has compiled the path before the first size.
        for (let r = -1; r < Math.max(1, repeats - 2); r++) {
          collectGarbage();
          const engine = new Engine();
          const sock = new PfkeySocket(engine, { rcvbuf: 1 << 30 });
          const t0 = performance.now();
          for (let i = 0; i < n; i++) {
            if (sock.send(adds[i]) !== 0) throw new Error(`spd bench: X_ADDFLOW ${i} refused`);
            if ((i & 255) === 255) sock.recvAll();
          }
          const t1 = performance.now();
          for (let i = 0; i < n; i++) {
            if (sock.send(dels[i]) !== 0) throw new Error(`spd bench: X_DELFLOW ${i} refused`);
            if ((i & 255) === 255) sock.recvAll();
          }
          const t2 = performance.now();
          if (engine.spd.size !== 0) throw new Error('spd bench: eroutes left after X_DELFLOW');
          sock.close();
          if (r < 0) continue;
          a.push(t1 - t0);
          d.push(t2 - t1);
        }
        const add = row(`X_ADDFLOW via PF_KEY ${shape} n=${n}`, n, a, { n, seconds: median(a) / 1000, 'best/s': Math.round(n / (Math.min(...a) / 1000)) });
        const del = row(`X_DELFLOW via PF_KEY ${shape} n=${n}`, n, d, { n, seconds: median(d) / 1000, 'best/s': Math.round(n / (Math.min(...d) / 1000)) });
        if (n === SIZES[0]) { baseAdd = add.hz; baseDel = del.hz; }
        add.extra['rate vs 8192'] = add.hz / baseAdd;
        del.extra['rate vs 8192'] = del.hz / baseDel;
        rows.push(add, del);
      }
    }

    const nPackets = 1 << 16;
    const batchSize = 10_000;
    const batches = quick ? 20 : 100;
    for (const [label, build] of [['mixed prefixes', mixedTable], ['host /32', hostTable]] as const) {
      collectGarbage();
      const { table, packets } = build(LOOKUP_EROUTES, nPackets);
      let hits = 0;
      for (let i = 0; i < nPackets; i++) if (table.lookup(packets[i]) !== undefined) hits++;
      if (hits !== nPackets) throw new Error(`spd bench: only ${hits} of ${nPackets} packets hit an eroute`);
      const ms: number[] = [];
      let k = 0;
      let sink = 0;
      for (let b = 0; b < batches; b++) {
        const t0 = performance.now();
        for (let i = 0; i < batchSize; i++) {
          const e = table.lookup(packets[k]);
          k = (k + 1) & (nPackets - 1);
          if (e !== undefined) sink++;
        }
        ms.push(performance.now() - t0);
      }
      if (sink !== batches * batchSize) throw new Error('spd bench: a lookup missed');
      const r = row(`lookup ${label}, ${LOOKUP_EROUTES} eroutes`, batchSize, ms, {
        n: LOOKUP_EROUTES, 'trie nodes': table.nodeCount(),
      });
      r.mean = (ms.reduce((a, b) => a + b, 0) * 1e6) / (batches * batchSize);
      r.hz = 1e9 / r.mean;
      rows.push(r);
    }

    return {
      rows,
      notes: [
        `add/delete: n eroutes added to an empty table then deleted in the same order; median of ${repeats} repeat(s) taken round-robin over all sizes; p99 column = slowest repeat; best/s = fastest repeat; "rate vs 8192" = rate / rate at n=8192 (1.0 = flat).`,
        `lookup: ${batches} batches of ${batchSize} lookups over ${nPackets} pre-built packets that all hit; mean over all batches, p99 = slowest batch.`,
        'Linux XFRM SPD anchor: bash /work/shared/anchors/linux-xfrm-spd/run.sh (iproute2 over netlink, includes parsing).',
      ],
    };
  },
};

// Run alone: node dist/bench/spd.bench.js [--quick]
runAloneIfMain(suite, import.meta.url);
