/**
 * Experiment (issue 11): does spreading ESP encryption over worker threads raise packets/s
 * on this machine? Not a suite of run.ts; run it by itself:
 *
 *   node dist/bench/esp-workers.js [seconds-per-figure]
 *
 * Configurations, measured in turn, round by round (3 rounds; a figure is its median):
 * - inline: the main thread runs espOutput on every packet (the suite's espOutput task);
 * - W workers (1 or 2): the main thread hands each worker a batch of B packets in a
 *   SharedArrayBuffer (B packet slots, sequence numbers from a control word), wakes it with
 *   Atomics.notify and waits for it; the worker runs espOutput on each and copies the
 *   result into its output slots. The main thread only hands out and collects;
 * - main + 1 worker: the main thread encrypts half of each batch while the worker does the
 *   other half.
 * The packets are written into the input slots once (a real reader would receive into
 * them); the copy of each result into shared memory is counted, as a runtime would need it.
 * AES-GCM-128 tunnel mode, 64 and 1400-byte packets, with each crypto backend.
 */

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import os from 'node:os';
import { SADB_AALG_NONE, SADB_SATYPE_ESP, SADB_X_EALG_AES_GCM_ICV16 } from '../src/wire/index.js';
import {
  buildIPv4Header, espCrypto, espOutput, evpUnavailable, setEspCrypto, type EspCryptoName, type TransformSA,
} from '../src/dataplane/index.js';

const SLOT = 2048;
const key = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + 13 * i) & 0xff);
const SA: TransformSA = {
  satype: SADB_SATYPE_ESP, spi: 0x1001, encrypt: SADB_X_EALG_AES_GCM_ICV16, auth: SADB_AALG_NONE, encryptKey: key(20, 1),
  replayWindow: 64, src: Uint8Array.of(192, 0, 2, 1), dst: Uint8Array.of(198, 51, 100, 2),
};

/** Control words: [0] state (0 idle, 1 work, 2 done, 3 exit), [1] first slot, [2] count, [3] first sequence number, [4] packet size. */
const STATE = 0;
const FIRST = 1;
const COUNT = 2;
const SEQ = 3;
const SIZE = 4;

interface Shared {
  control: SharedArrayBuffer;
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
  lengths: SharedArrayBuffer;
}

/** Encrypt slots [first, first + count) of `s` into its output slots. */
function encryptSlots(s: Shared, first: number, count: number, seq: number, size: number): number {
  const lengths = new Int32Array(s.lengths);
  const out = new Uint8Array(s.output);
  let bytes = 0;
  for (let i = first; i < first + count; i++) {
    const r = espOutput(SA, Buffer.from(s.input, i * SLOT, size), { mode: 'tunnel', seq: seq + i - first, tunnel: { id: 1 } });
    if (!r.ok) throw new Error(r.reason);
    out.set(r.packet, i * SLOT);
    lengths[i] = r.packet.length;
    bytes += r.packet.length;
  }
  return bytes;
}

function workerMain(): void {
  const { shared, backend } = workerData as { shared: Shared; backend: EspCryptoName };
  setEspCrypto(backend);
  const ctl = new Int32Array(shared.control);
  for (;;) {
    Atomics.wait(ctl, STATE, 0);
    const state = Atomics.load(ctl, STATE);
    if (state === 3) break;
    if (state !== 1) continue;
    encryptSlots(shared, ctl[FIRST], ctl[COUNT], ctl[SEQ], ctl[SIZE]);
    Atomics.store(ctl, STATE, 2);
    Atomics.notify(ctl, STATE);
    Atomics.wait(ctl, STATE, 2);
  }
  parentPort!.postMessage('bye');
}

function sharedFor(batch: number, inner: Buffer): Shared {
  const s: Shared = {
    control: new SharedArrayBuffer(64),
    input: new SharedArrayBuffer(batch * SLOT),
    output: new SharedArrayBuffer(batch * SLOT),
    lengths: new SharedArrayBuffer(batch * 4),
  };
  const input = new Uint8Array(s.input);
  for (let i = 0; i < batch; i++) input.set(inner, i * SLOT);
  return s;
}

interface Pool {
  shared: Shared[];
  workers: Worker[];
}

async function startPool(n: number, batch: number, inner: Buffer, backend: EspCryptoName): Promise<Pool> {
  const shared = Array.from({ length: n }, () => sharedFor(batch, inner));
  const workers = shared.map((s) => new Worker(new URL(import.meta.url), { workerData: { shared: s, backend } }));
  // Warm each worker up with a few batches.
  for (let k = 0; k < 50; k++) runBatch({ shared, workers }, batch, inner.length, false);
  return { shared, workers };
}

async function stopPool(p: Pool): Promise<void> {
  for (const s of p.shared) {
    const ctl = new Int32Array(s.control);
    Atomics.store(ctl, STATE, 3);
    Atomics.notify(ctl, STATE);
  }
  await Promise.all(p.workers.map((w) => new Promise((r) => w.once('exit', r))));
}

let seqNext = 1;
/** One batch through the pool (the main thread doing a share too with `mainShare`); returns packets done. */
function runBatch(p: Pool, batch: number, size: number, mainShare: boolean): number {
  const per = mainShare ? batch >> 1 : batch;
  for (const s of p.shared) {
    const ctl = new Int32Array(s.control);
    ctl[FIRST] = 0;
    ctl[COUNT] = per;
    ctl[SEQ] = seqNext;
    ctl[SIZE] = size;
    seqNext += per;
    Atomics.store(ctl, STATE, 1);
    Atomics.notify(ctl, STATE);
  }
  let done = p.shared.length * per;
  if (mainShare) {
    encryptSlots(p.shared[0], per, batch - per, seqNext, size);
    seqNext += batch - per;
    done += batch - per;
  }
  for (const s of p.shared) {
    const ctl = new Int32Array(s.control);
    while (Atomics.load(ctl, STATE) !== 2) Atomics.wait(ctl, STATE, 1);
    Atomics.store(ctl, STATE, 0);
    Atomics.notify(ctl, STATE);
  }
  return done;
}

function packet(size: number): Buffer {
  const h = buildIPv4Header({ tos: 0, id: 1, flags: 0, ttl: 64, protocol: 17, src: Uint8Array.of(10, 0, 0, 1), dst: Uint8Array.of(10, 0, 0, 2), payloadLength: size - 20 });
  const p = Buffer.alloc(size, 0x5a);
  h.copy(p);
  return p;
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 1);
  const backends: EspCryptoName[] = evpUnavailable() ? ['node'] : ['node', 'evp'];
  console.log(`${os.cpus()[0]?.model}, ${os.cpus().length} cores, node ${process.version}, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`${seconds} s per figure per round, 3 rounds, median shown; k packets/s (AES-GCM-128, tunnel mode, results copied to shared memory)`);
  for (const backend of backends) {
    setEspCrypto(backend);
    for (const size of [64, 1400]) {
      const inner = packet(size);
      for (const batch of [64, 256]) {
        const configs: { name: string; run: () => Promise<number> }[] = [];
        const inlineShared = sharedFor(batch, inner);
        configs.push({
          name: 'inline',
          run: async () => {
            let n = 0;
            const until = performance.now() + seconds * 1000;
            const t0 = performance.now();
            while (performance.now() < until) {
              encryptSlots(inlineShared, 0, batch, seqNext, size);
              seqNext += batch;
              n += batch;
            }
            return n / ((performance.now() - t0) / 1000);
          },
        });
        for (const [label, workers, mainShare] of [['1 worker', 1, false], ['2 workers', 2, false], ['main + 1 worker', 1, true]] as const) {
          configs.push({
            name: label,
            run: async () => {
              const pool = await startPool(workers, batch, inner, backend);
              let n = 0;
              const until = performance.now() + seconds * 1000;
              const t0 = performance.now();
              while (performance.now() < until) n += runBatch(pool, batch, size, mainShare);
              const rate = n / ((performance.now() - t0) / 1000);
              await stopPool(pool);
              return rate;
            },
          });
        }
        const rates = configs.map(() => [] as number[]);
        for (let round = 0; round < 3; round++) {
          for (const [i, c] of configs.entries()) rates[i].push(await c.run());
        }
        const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[1];
        const base = med(rates[0]);
        console.log(`${espCrypto().padEnd(4)} ${String(size).padStart(4)} B, batch ${String(batch).padStart(3)}: ${configs
          .map((c, i) => `${c.name} ${(med(rates[i]) / 1e3).toFixed(0)}k (${((med(rates[i]) / base) * 100).toFixed(0)}%)`).join(', ')}`);
      }
    }
  }
}

if (isMainThread) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.stack ?? e.message : e);
    process.exitCode = 1;
  });
} else workerMain();
