/**
 * The wire codec suite (issue 2, issue 10 §1): parse+validate and build rates for a
 * 208-byte ADD, a typical 136-byte ADD and a REGISTER reply, next to the floor any codec
 * has to pay for the same bytes: a walk that reads the header and every extension's
 * length and type straight from the Uint8Array, with nothing allocated per message. The
 * old floor (a DataView per message, whose allocation was most of its time) is kept as a
 * reference row. Every "vs floor" is the median of per-round ratios (task and floor from
 * the same round). The goal is parse and build each at >= 30% of the floor's rate; the
 * suite reports PASS/BELOW but never fails. "B/op" is the heap allocated per message,
 * estimated after the timing (needs --expose-gc); the floor's must be 0.
 */

import {
  AF_INET, SADB_ADD, SADB_REGISTER, SADB_SATYPE_ESP, SADB_SASTATE_MATURE,
  SADB_AALG_MD5HMAC, SADB_AALG_SHA1HMAC, SADB_X_AALG_SHA2_256HMAC, SADB_X_AALG_SHA2_384HMAC,
  SADB_X_AALG_SHA2_512HMAC, SADB_EALG_3DESCBC, SADB_X_EALG_AESCBC, SADB_X_EALG_AESCTR,
  SADB_X_EALG_AES_GCM_ICV16, SADB_EALG_NULL, SADB_X_EALG_CAMELLIACBC,
  buildMessage, parseMessage, type MessageInput, type PfkeyMessage,
} from '../src/wire/index.js';
import { allocationPerOp, batch, measure, pairedExtra, percent, runAloneIfMain, type Suite, type ResultRow } from './harness.js';

/** The goal from the issue: codec rate / floor rate. */
const GOAL = 0.3;
/** Operations per timed batch (each sample is the mean over one batch). */
const N = 1000;

const seq = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + 7 * i) & 0xff);

/** ESP, 24-byte KLIPS SA, hard and soft lifetimes, IPv4 src/dst, HMAC-SHA1 and AES-128 keys (208 bytes). */
export const TYPICAL_ADD: MessageInput = {
  header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq: 42, pid: 4242 },
  sa: { spi: 0x12345678, replay: 32, state: SADB_SASTATE_MATURE, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_X_EALG_AESCBC, flags: 0, ref: 0 },
  lifetimeHard: { allocations: 0, bytes: 0n, addtime: 28800n, usetime: 0n },
  lifetimeSoft: { allocations: 0, bytes: 0n, addtime: 27000n, usetime: 0n },
  addressSrc: { proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr: '192.0.2.1' },
  addressDst: { proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr: '198.51.100.7' },
  keyAuth: { bits: 160, key: seq(20, 0x11) },
  keyEncrypt: { bits: 128, key: seq(16, 0x5a) },
};

/**
 * The typical ADD of issue 10: ESP, the 16-byte RFC 2367 SA (no KLIPS ref), IPv4 source
 * and destination, a 20-byte HMAC-SHA1 and a 16-byte AES key, no lifetimes:
 * 16 header + 16 SA + 2 x 24 address + 32 auth key (20 padded to 24) + 24 encrypt key
 * = 136 bytes (checked when the suite builds it).
 */
export const SMALL_ADD: MessageInput = {
  header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq: 42, pid: 4242 },
  sa: { spi: 0x12345678, replay: 32, state: SADB_SASTATE_MATURE, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_X_EALG_AESCBC, flags: 0 },
  addressSrc: { proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr: '192.0.2.1' },
  addressDst: { proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr: '198.51.100.7' },
  keyAuth: { bits: 160, key: seq(20, 0x11) },
  keyEncrypt: { bits: 128, key: seq(16, 0x5a) },
};
export const SMALL_ADD_BYTES = 136;

const alg = (id: number, ivlen: number, minbits: number, maxbits: number) => ({ id, ivlen, minbits, maxbits });

/** The kernel's answer to an ESP REGISTER: 5 auth and 6 encryption algorithms. */
export const REGISTER_REPLY: MessageInput = {
  header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 4242 },
  supportedAuth: {
    algs: [
      alg(SADB_AALG_MD5HMAC, 0, 128, 128),
      alg(SADB_AALG_SHA1HMAC, 0, 160, 160),
      alg(SADB_X_AALG_SHA2_256HMAC, 0, 256, 256),
      alg(SADB_X_AALG_SHA2_384HMAC, 0, 384, 384),
      alg(SADB_X_AALG_SHA2_512HMAC, 0, 512, 512),
    ],
  },
  supportedEncrypt: {
    algs: [
      alg(SADB_EALG_3DESCBC, 64, 192, 192),
      alg(SADB_X_EALG_AESCBC, 128, 128, 256),
      alg(SADB_X_EALG_AESCTR, 64, 160, 288),
      alg(SADB_X_EALG_AES_GCM_ICV16, 64, 160, 288),
      alg(SADB_EALG_NULL, 0, 0, 0),
      alg(SADB_X_EALG_CAMELLIACBC, 128, 128, 256),
    ],
  },
};

/**
 * The floor: what any codec must do with the bytes, and nothing more. The header's
 * fields and each extension's length and type, read straight from the Uint8Array
 * (little-endian, as the codec reads them); no object is created per message.
 * Returns a small integer so the caller's accumulator stays a Smi.
 */
export function byteWalk(u8: Uint8Array): number {
  const n = u8.length;
  let acc = u8[0] + u8[1] + u8[2] + u8[3] + (u8[4] | (u8[5] << 8)) + (u8[6] | (u8[7] << 8))
    + (u8[8] | (u8[9] << 8) | (u8[10] << 16)) + u8[11] + (u8[12] | (u8[13] << 8) | (u8[14] << 16)) + u8[15];
  for (let off = 16; off + 4 <= n;) {
    const len = (u8[off] | (u8[off + 1] << 8)) * 8;
    acc += len + (u8[off + 2] | (u8[off + 3] << 8));
    if (len === 0) break;
    off += len;
  }
  return acc & 0x3fffffff;
}

/**
 * The old floor, kept as a reference row: the same walk through a DataView made per
 * message (the allocation was about 90% of its time).
 */
export function dataViewWalk(u8: Uint8Array): number {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  let acc = u8[0] + u8[1] + u8[2] + u8[3] + dv.getUint16(4, true) + dv.getUint16(6, true)
    + dv.getUint32(8, true) + dv.getUint32(12, true);
  for (let off = 16; off + 4 <= u8.length;) {
    const len = dv.getUint16(off, true) * 8;
    acc += len + dv.getUint16(off + 2, true);
    if (len === 0) break;
    off += len;
  }
  return acc & 0x3fffffff;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Copies of a message's bytes that differ in seq, so no loop reads the same bytes twice in a row. */
const RING = 8;
function ring(bytes: Uint8Array): Uint8Array[] {
  return Array.from({ length: RING }, (_, i) => {
    const b = bytes.slice();
    b[8] = (b[8] + i) & 0xff;
    return b;
  });
}

/** The fixtures' bytes, checked to round-trip so the suite measures valid messages. */
function fixture(input: MessageInput, direction: 'in' | 'out') {
  const bytes = buildMessage(input);
  const msg = parseMessage(bytes, { direction });
  if (!sameBytes(buildMessage(msg), bytes)) throw new Error(`fixture of ${bytes.length} bytes does not round-trip`);
  return { bytes, ring: ring(bytes), msg };
}

// Results land here so no loop body is dead code.
let sinkN = 0;
let sinkM: PfkeyMessage | undefined;
let sinkB: Uint8Array | undefined;

export const suite: Suite = {
  name: 'wire',
  description: 'PF_KEY codec: parse+validate / build of ADD (208 B and 136 B) and REGISTER reply vs a byte walk with no allocation',
  async run(opts) {
    const big = fixture(TYPICAL_ADD, 'in');
    const small = fixture(SMALL_ADD, 'in');
    const reg = fixture(REGISTER_REPLY, 'out');
    if (small.bytes.length !== SMALL_ADD_BYTES) throw new Error(`the small ADD is ${small.bytes.length} bytes, not ${SMALL_ADD_BYTES}`);
    const M = RING - 1;
    const groups = [
      { label: `ADD ${big.bytes.length} B (KLIPS SA, lifetimes)`, f: big, dir: 'in' as const, dataView: true },
      { label: `ADD ${small.bytes.length} B (SA, addresses, 2 keys)`, f: small, dir: 'in' as const, dataView: false },
      { label: `REGISTER reply ${reg.bytes.length} B`, f: reg, dir: 'out' as const, dataView: false },
    ];
    const names = groups.map((g) => ({
      floor: `${g.label}: floor (byte walk)`,
      dv: `${g.label}: DataView walk (old floor)`,
      parse: `${g.label}: parse+validate`,
      build: `${g.label}: build`,
    }));
    // Every task's loop is written out (no shared helper or loop over fixtures), so each
    // task has its own function literal and so its own, monomorphic call sites.
    const [tBig, tSmall, tReg] = names;
    const rBig = big.ring;
    const rSmall = small.ring;
    const rReg = reg.ring;
    const mBig = big.msg;
    const mSmall = small.msg;
    const mReg = reg.msg;
    const measured = await measure(opts, (bench) => {
      bench
        .add(tBig.floor, () => {
          let acc = 0;
          const t0 = bench.now();
          for (let i = 0; i < N; i++) acc = (acc + byteWalk(rBig[i & M])) | 0;
          const t = bench.now() - t0;
          sinkN ^= acc;
          return batch(t, N);
        })
        .add(tBig.dv, () => {
          let acc = 0;
          const t0 = bench.now();
          for (let i = 0; i < N; i++) acc = (acc + dataViewWalk(rBig[i & M])) | 0;
          const t = bench.now() - t0;
          sinkN ^= acc;
          return batch(t, N);
        })
        .add(tBig.parse, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkM = parseMessage(rBig[i & M], { direction: 'in' });
          return batch(bench.now() - t0, N);
        })
        .add(tBig.build, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkB = buildMessage(mBig);
          return batch(bench.now() - t0, N);
        })
        .add(tSmall.floor, () => {
          let acc = 0;
          const t0 = bench.now();
          for (let i = 0; i < N; i++) acc = (acc + byteWalk(rSmall[i & M])) | 0;
          const t = bench.now() - t0;
          sinkN ^= acc;
          return batch(t, N);
        })
        .add(tSmall.parse, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkM = parseMessage(rSmall[i & M], { direction: 'in' });
          return batch(bench.now() - t0, N);
        })
        .add(tSmall.build, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkB = buildMessage(mSmall);
          return batch(bench.now() - t0, N);
        })
        .add(tReg.floor, () => {
          let acc = 0;
          const t0 = bench.now();
          for (let i = 0; i < N; i++) acc = (acc + byteWalk(rReg[i & M])) | 0;
          const t = bench.now() - t0;
          sinkN ^= acc;
          return batch(t, N);
        })
        .add(tReg.parse, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkM = parseMessage(rReg[i & M], { direction: 'out' });
          return batch(bench.now() - t0, N);
        })
        .add(tReg.build, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkB = buildMessage(mReg);
          return batch(bench.now() - t0, N);
        });
    });
    if (!sinkM || !sinkB) throw new Error('benchmark loops produced nothing');

    // Heap bytes per message (after the timing, on warm code).
    const alloc = (name: string, fn: (n: number) => void) => {
      const b = allocationPerOp(fn);
      return b === undefined ? 'n/a' : Math.round(b);
    };

    const rows: ResultRow[] = [];
    const floorAlloc: number[] = [];
    for (let k = 0; k < groups.length; k++) {
      const { f, dir, dataView } = groups[k];
      const T = names[k];
      const r = f.ring;
      const bytes = f.bytes.length;
      const floorB = alloc(T.floor, (n) => { let acc = 0; for (let i = 0; i < n; i++) acc = (acc + byteWalk(r[i & M])) | 0; sinkN ^= acc; });
      if (typeof floorB === 'number') floorAlloc.push(floorB);
      rows.push({ ...measured.row(T.floor), extra: { bytes, 'B/op': floorB, 'vs floor': '100%' } });
      const tasks: Array<[string, (n: number) => void, boolean]> = [];
      if (dataView) tasks.push([T.dv, (n) => { let acc = 0; for (let i = 0; i < n; i++) acc = (acc + dataViewWalk(r[i & M])) | 0; sinkN ^= acc; }, false]);
      tasks.push([T.parse, (n) => { for (let i = 0; i < n; i++) sinkM = parseMessage(r[i & M], { direction: dir }); }, true]);
      tasks.push([T.build, (n) => { for (let i = 0; i < n; i++) sinkB = buildMessage(f.msg); }, true]);
      for (const [name, fn, withGoal] of tasks) {
        const p = measured.ratio(name, T.floor);
        const row = measured.row(name);
        row.extra = { bytes, 'B/op': alloc(name, fn), ...pairedExtra(p) };
        if (withGoal) row.extra.goal = p.median >= GOAL ? 'PASS' : 'BELOW';
        rows.push(row);
      }
    }
    if (floorAlloc.some((b) => b > 0)) throw new Error(`the floor allocates (${floorAlloc.join(', ')} B per message): it is not a floor`);
    return {
      rows,
      notes: [
        `floor: header fields and each extension's length and type read straight from the Uint8Array, nothing allocated per message (B/op 0 is checked)`,
        `goal: parse and build each >= ${percent(GOAL)} of the floor's rate (PASS/BELOW, informational)`,
        `each sample is the per-message mean over a batch of ${N} (reading ${RING} copies of the bytes in turn); p99 is over those batch means`,
        `each row is its task's median of ${opts.rounds ?? 1} interleaved rounds; "vs floor" is the median of the per-round ratios (task / floor in the same round), listed in "per round"`,
        'B/op: V8 heap growth over 256 messages after a full GC (rough; n/a without --expose-gc); ArrayBuffer backing stores (the 64 KiB slabs built messages are carved from) are outside the V8 heap and not counted',
      ],
    };
  },
};

// Run alone: node --expose-gc dist/bench/wire.bench.js [--quick]
runAloneIfMain(suite, import.meta.url);
