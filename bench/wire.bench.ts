/**
 * The wire codec suite (issue 2): parse+validate and build rates for a typical ADD and a
 * REGISTER reply, next to the floor any codec has to pay for the same bytes: a plain
 * DataView walk that reads the header and every extension header. The goal is parse and
 * build each at >= 30% of the floor's rate; the suite reports PASS/BELOW but never fails.
 */

import {
  AF_INET, SADB_ADD, SADB_REGISTER, SADB_SATYPE_ESP, SADB_SASTATE_MATURE,
  SADB_AALG_MD5HMAC, SADB_AALG_SHA1HMAC, SADB_X_AALG_SHA2_256HMAC, SADB_X_AALG_SHA2_384HMAC,
  SADB_X_AALG_SHA2_512HMAC, SADB_EALG_3DESCBC, SADB_X_EALG_AESCBC, SADB_X_EALG_AESCTR,
  SADB_X_EALG_AES_GCM_ICV16, SADB_EALG_NULL, SADB_X_EALG_CAMELLIACBC,
  buildMessage, parseMessage, type MessageInput, type PfkeyMessage,
} from '../src/wire/index.js';
import { batch, measure, percent, type Suite, type ResultRow } from './harness.js';

/** The goal from the issue: codec rate / floor rate. */
const GOAL = 0.3;
/** Operations per timed batch (each sample is the mean over one batch). */
const N = 1000;

const seq = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + 7 * i) & 0xff);

/** ESP, 24-byte KLIPS SA, hard and soft lifetimes, IPv4 src/dst, HMAC-SHA1 and AES-128 keys. */
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
 * The floor: what any codec must do with the bytes. A DataView over the message (parse
 * must make one too), the header fields, then each extension's length and type.
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
  return acc;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** The fixtures' bytes, checked to round-trip so the suite measures valid messages. */
function fixtures() {
  const addBytes = buildMessage(TYPICAL_ADD);
  const regBytes = buildMessage(REGISTER_REPLY);
  const add = parseMessage(addBytes, { direction: 'in' });
  const reg = parseMessage(regBytes, { direction: 'out' });
  if (!sameBytes(buildMessage(add), addBytes)) throw new Error('ADD fixture does not round-trip');
  if (!sameBytes(buildMessage(reg), regBytes)) throw new Error('REGISTER fixture does not round-trip');
  return { addBytes, regBytes, add, reg };
}

// Results land here so no loop body is dead code.
let sinkN = 0;
let sinkM: PfkeyMessage | undefined;
let sinkB: Uint8Array | undefined;

export const suite: Suite = {
  name: 'wire',
  description: 'PF_KEY codec: parse+validate / build of ADD and REGISTER reply vs a DataView walk',
  async run(opts) {
    const { addBytes, regBytes, add, reg } = fixtures();
    const T = {
      addFloor: 'ADD floor (DataView walk)',
      addParse: 'ADD parse+validate',
      addBuild: 'ADD build',
      regFloor: 'REGISTER reply floor (DataView walk)',
      regParse: 'REGISTER reply parse+validate',
      regBuild: 'REGISTER reply build',
    };
    const measured = await measure(opts, (bench) => {
      bench
        .add(T.addFloor, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkN += dataViewWalk(addBytes);
          return batch(bench.now() - t0, N);
        })
        .add(T.addParse, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkM = parseMessage(addBytes, { direction: 'in' });
          return batch(bench.now() - t0, N);
        })
        .add(T.addBuild, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkB = buildMessage(add);
          return batch(bench.now() - t0, N);
        })
        .add(T.regFloor, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkN += dataViewWalk(regBytes);
          return batch(bench.now() - t0, N);
        })
        .add(T.regParse, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkM = parseMessage(regBytes, { direction: 'out' });
          return batch(bench.now() - t0, N);
        })
        .add(T.regBuild, () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sinkB = buildMessage(reg);
          return batch(bench.now() - t0, N);
        });
    });
    if (sinkN === 0 || !sinkM || !sinkB) throw new Error('benchmark loops produced nothing');

    const task = (name: string) => measured.get(name)!;
    const rows: ResultRow[] = [];
    for (const [floorName, parseName, buildName, bytes] of [
      [T.addFloor, T.addParse, T.addBuild, addBytes],
      [T.regFloor, T.regParse, T.regBuild, regBytes],
    ] as const) {
      const floor = { ...task(floorName), extra: { bytes: bytes.length, 'vs floor': '100%', ratio: 1 } };
      rows.push(floor);
      for (const name of [parseName, buildName]) {
        const row = task(name);
        const ratio = row.hz / floor.hz;
        row.extra = { bytes: bytes.length, 'vs floor': percent(ratio), ratio, goal: ratio >= GOAL ? 'PASS' : 'BELOW' };
        rows.push(row);
      }
    }
    return {
      rows,
      notes: [
        `goal: parse and build each >= ${percent(GOAL)} of the floor's rate (PASS/BELOW, informational)`,
        `each sample is the per-message mean over a batch of ${N}; p99 is over those batch means;`,
        `each task's row is its fastest of ${opts.rounds ?? 1} interleaved rounds`,
      ],
    };
  },
};
