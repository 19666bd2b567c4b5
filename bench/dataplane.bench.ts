/**
 * The data plane suite (src/dataplane): ESP encrypt and decrypt of whole IPv4 packets in
 * tunnel mode (espOutput: IPIP + ESP; espInput: replay check, ICV, decrypt, decap) at 64,
 * 512 and 1400 bytes, for AES-GCM-128 (16-byte ICV) and AES-CBC-128 + HMAC-SHA1-96, each
 * beside a floor: the bare per-packet node:crypto calls the same transform cannot avoid
 * (cipher and HMAC objects made, the payload run through them once), with no packet
 * handling around them. "vs floor" is the floor's time over ours: how much of the cost is
 * the crypto library's own.
 *
 * Not registered in run.ts yet; standalone: node dist/bench/dataplane.bench.js [--quick]
 */

import { createCipheriv, createDecipheriv, createHmac, randomFillSync } from 'node:crypto';
import {
  SADB_AALG_NONE, SADB_AALG_SHA1HMAC, SADB_SATYPE_ESP, SADB_X_EALG_AESCBC, SADB_X_EALG_AES_GCM_ICV16,
} from '../src/wire/index.js';
import {
  ReplayWindow, buildIPv4Header, espInput, espOutput, type TransformSA,
} from '../src/dataplane/index.js';
import { batch, measure, pairedExtra, runAloneIfMain, type ResultRow, type Suite } from './harness.js';

/** Packets per timed batch. */
const N = 50;
const SIZES = [64, 512, 1400];

const key = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + 13 * i) & 0xff);
const SRC = Uint8Array.of(192, 0, 2, 1);
const DST = Uint8Array.of(198, 51, 100, 2);

const SAS: { name: string; sa: TransformSA }[] = [
  {
    name: 'AES-GCM-128',
    sa: { satype: SADB_SATYPE_ESP, spi: 0x1001, encrypt: SADB_X_EALG_AES_GCM_ICV16, auth: SADB_AALG_NONE, encryptKey: key(20, 1), replayWindow: 64, src: SRC, dst: DST },
  },
  {
    name: 'AES-CBC-128+HMAC-SHA1',
    sa: {
      satype: SADB_SATYPE_ESP, spi: 0x1002, encrypt: SADB_X_EALG_AESCBC, auth: SADB_AALG_SHA1HMAC, encryptKey: key(16, 2), authKey: key(20, 3),
      replayWindow: 64, src: SRC, dst: DST,
    },
  },
];

/** An IPv4 packet of `size` bytes (UDP-like payload). */
function packet(size: number): Buffer {
  const h = buildIPv4Header({ tos: 0, id: 1, flags: 0, ttl: 64, protocol: 17, src: Uint8Array.of(10, 0, 0, 1), dst: Uint8Array.of(10, 0, 0, 2), payloadLength: size - 20 });
  const p = Buffer.alloc(size);
  h.copy(p);
  randomFillSync(p, 20);
  return p;
}

// The floors: what each transform's crypto costs per packet, and nothing else.
const GCM_KEY = Buffer.from(key(16, 1));
const GCM_NONCE = Buffer.alloc(12, 7);
const AAD = Buffer.alloc(8, 1);
const CBC_KEY = Buffer.from(key(16, 2));
const HMAC_KEY = Buffer.from(key(20, 3));
const IV = Buffer.alloc(16, 5);

function gcmSealFloor(plain: Buffer): Buffer {
  const c = createCipheriv('aes-128-gcm', GCM_KEY, GCM_NONCE, { authTagLength: 16 });
  c.setAAD(AAD);
  const ct = c.update(plain);
  c.final();
  return Buffer.concat([ct, c.getAuthTag()]);
}
function gcmOpenFloor(sealed: Buffer): Buffer {
  const d = createDecipheriv('aes-128-gcm', GCM_KEY, GCM_NONCE, { authTagLength: 16 });
  d.setAAD(AAD);
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  const pt = d.update(sealed.subarray(0, sealed.length - 16));
  d.final();
  return pt;
}
function cbcSealFloor(plain: Buffer): Buffer {
  const c = createCipheriv('aes-128-cbc', CBC_KEY, IV).setAutoPadding(false);
  const ct = c.update(plain);
  c.final();
  return createHmac('sha1', HMAC_KEY).update(ct).digest();
}
function cbcOpenFloor(sealed: Buffer): Buffer {
  createHmac('sha1', HMAC_KEY).update(sealed).digest();
  const d = createDecipheriv('aes-128-cbc', CBC_KEY, IV).setAutoPadding(false);
  const pt = d.update(sealed);
  d.final();
  return pt;
}

let sink = 0;

export const suite: Suite = {
  name: 'dataplane',
  description: 'ESP tunnel-mode encrypt/decrypt of IPv4 packets (GCM-128, CBC-128+SHA1) vs bare node:crypto',
  async run(opts) {
    // Inputs prepared outside the clock: the packets, their protected forms, and (for
    // decryption) enough distinct sequence numbers that the replay window accepts each.
    const cases = SAS.flatMap(({ name, sa }) => SIZES.map((size) => {
      const inner = packet(size);
      const padded = Buffer.alloc(Math.ceil((size + 20 + 2) / 16) * 16); // the plaintext ESP encrypts
      const sealed = name.startsWith('AES-GCM') ? gcmSealFloor(padded) : (() => {
        const c = createCipheriv('aes-128-cbc', CBC_KEY, IV).setAutoPadding(false);
        return Buffer.concat([c.update(padded), c.final()]);
      })();
      return { name, sa, size, inner, padded, sealed };
    }));
    let seq = 1;
    const protectedBatches = new Map<string, Buffer[]>();
    const T = (c: (typeof cases)[number], what: string) => `${c.name} ${what} ${c.size}B`;
    const measured = await measure(opts, (bench) => {
      for (const c of cases) {
        const gcm = c.name.startsWith('AES-GCM');
        bench.add(T(c, 'floor encrypt'), () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sink += (gcm ? gcmSealFloor(c.padded) : cbcSealFloor(c.padded)).length;
          return batch(bench.now() - t0, N);
        });
        bench.add(T(c, 'espOutput'), () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) {
            const r = espOutput(c.sa, c.inner, { mode: 'tunnel', seq: (seq = (seq % 0xfffffffe) + 1), tunnel: { id: 1 } });
            if (r.ok) sink += r.packet.length;
          }
          return batch(bench.now() - t0, N);
        });
        bench.add(T(c, 'floor decrypt'), () => {
          const t0 = bench.now();
          for (let i = 0; i < N; i++) sink += (gcm ? gcmOpenFloor(c.sealed) : cbcOpenFloor(c.sealed)).length;
          return batch(bench.now() - t0, N);
        });
        bench.add(T(c, 'espInput'), () => {
          // A fresh window per batch and packets protected beforehand, so only input is timed.
          let batchPkts = protectedBatches.get(T(c, ''));
          if (!batchPkts) {
            batchPkts = [];
            for (let i = 1; i <= N; i++) {
              const r = espOutput(c.sa, c.inner, { mode: 'tunnel', seq: i, tunnel: { id: 1 } });
              if (!r.ok) throw new Error(r.reason);
              batchPkts.push(r.packet);
            }
            protectedBatches.set(T(c, ''), batchPkts);
          }
          const rx = new ReplayWindow(64);
          const t0 = bench.now();
          for (let i = 0; i < N; i++) {
            const r = espInput(c.sa, batchPkts[i], { mode: 'tunnel', replay: rx });
            if (!r.ok) throw new Error(r.reason);
            sink += r.packet.length;
          }
          return batch(bench.now() - t0, N);
        });
      }
    });
    if (sink === 0) throw new Error('benchmark loops produced nothing');

    const rows: ResultRow[] = [];
    for (const c of cases) {
      for (const [floorName, oursName] of [[T(c, 'floor encrypt'), T(c, 'espOutput')], [T(c, 'floor decrypt'), T(c, 'espInput')]]) {
        const floor = measured.row(floorName);
        const ours = measured.row(oursName);
        const mbps = (row: ResultRow) => Number(((c.size * row.hz) / 1e6).toFixed(1));
        floor.extra = { 'MB/s': mbps(floor), 'vs floor': '100%' };
        ours.extra = { 'MB/s': mbps(ours), ...pairedExtra(measured.ratio(oursName, floorName)) };
        rows.push(floor, ours);
      }
    }
    return {
      rows,
      notes: [
        'espOutput/espInput: whole IPv4 packets in tunnel mode (outer header, ESP, padding, ICV; inbound also the replay window and decapsulation)',
        'floor: only the node:crypto calls per packet on a buffer of the same padded size',
        `each sample is the per-packet mean over a batch of ${N}; a row is its task's median round, and vs floor is the median of per-round ratios`,
        "MB/s counts the inner packet's bytes",
      ],
    };
  },
};

runAloneIfMain(suite, import.meta.url);
