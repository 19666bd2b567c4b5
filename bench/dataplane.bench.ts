/**
 * The data plane suite (src/dataplane): ESP encrypt and decrypt of whole IPv4 packets in
 * tunnel mode (espOutput: IPIP + ESP; espInput: replay check, ICV, decrypt, decap) at 64,
 * 512 and 1400 bytes, for AES-GCM-128 (16-byte ICV) and AES-CBC-128 + HMAC-SHA1-96, with
 * each crypto backend of src/dataplane/cipher.ts (node:crypto, and libcrypto's EVP through
 * koffi where it loads), each beside two floors from the same run:
 *
 * - the bare per-packet node:crypto loop: the calls a transform built on node:crypto
 *   cannot avoid (a cipher object per packet, since node:crypto cannot give an existing
 *   one a new IV; for GCM AAD, update, final and tag, for CBC update alone; an HMAC object
 *   per packet), on buffers of the sizes ESP encrypts and authenticates, made once and
 *   reused, keys as KeyObjects as the SA holds them. Nothing else is allocated; what node:crypto allocates per call (the
 *   cipher object, update's and digest's output) is its own cost.
 * - `openssl speed` on the same cipher and byte count (bench/openssl.ts), one second per
 *   figure, run at the start of every round: `-evp` (one context, no per-packet IV or tag:
 *   the library's streaming rate), and for GCM also `-aead` (new IV, AAD, update, final
 *   and tag per packet, TLS-like). For CBC + HMAC-SHA1, openssl has no such pair in one
 *   run, so its floor is the sum of the per-packet times of `-evp aes-128-cbc` and
 *   `-hmac sha1` over the bytes ESP's HMAC covers.
 *
 * The floor and ours take turns batch by batch (harness interleave()), so load from other
 * work on the machine falls on all of them alike. Rates are packets/s; Gbit/s counts the
 * inner packet's bytes for every column alike, so ratios of Gbit/s are ratios of
 * packets/s. Ratios are medians of per-round ratios. The suite also times one koffi call
 * into libcrypto by itself (what each of the EVP backend's 4–5 calls per packet costs).
 *
 * Standalone: node --expose-gc dist/bench/dataplane.bench.js [--quick]
 */

import { createCipheriv, createDecipheriv, createHmac, createSecretKey, randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  SADB_AALG_NONE, SADB_AALG_SHA1HMAC, SADB_SATYPE_ESP, SADB_X_EALG_AESCBC, SADB_X_EALG_AES_GCM_ICV16,
} from '../src/wire/index.js';
import {
  ReplayWindow, buildIPv4Header, espInput, espOutput, type TransformSA,
} from '../src/dataplane/index.js';
import { espCrypto, setEspCrypto, type EspCryptoName } from '../src/dataplane/cipher.js';
import { evpLibrary, evpUnavailable } from '../src/dataplane/evp.js';
import {
  allocationPerOp, interleave, paired, pairedExtra, percent, runAloneIfMain, type BatchTask, type ResultRow, type Suite,
} from './harness.js';
import { opensslSpeed, opensslUnavailable, opensslVersion, type SpeedArgs } from './openssl.js';

/** Packets per timed batch. */
const N = 50;
const SIZES = [64, 512, 1400];

const key = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + 13 * i) & 0xff);
const SRC = Uint8Array.of(192, 0, 2, 1);
const DST = Uint8Array.of(198, 51, 100, 2);

type SuiteName = 'AES-GCM-128' | 'AES-CBC-128+HMAC-SHA1';
const SAS: { name: SuiteName; sa: TransformSA }[] = [
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

// The node:crypto floor's keys and parameters, made once (the SA's are KeyObjects too).
const GCM_KEY = createSecretKey(key(16, 1));
const GCM_NONCE = Buffer.alloc(12, 7);
const AAD = Buffer.alloc(8, 1);
const CBC_KEY = createSecretKey(key(16, 2));
const HMAC_KEY = createSecretKey(key(20, 3));
const IV = Buffer.alloc(16, 5);
const GCM_OPTS = { authTagLength: 16 } as const;

/** What one case's floor works on: ESP's plaintext (or ciphertext) and, for CBC, the bytes its HMAC covers. */
interface FloorBufs {
  /** ESP's plaintext: the inner packet, padding, pad length and next header. */
  plain: Buffer;
  /** Its ciphertext (GCM: without the tag). */
  sealed: Buffer;
  /** GCM: the tag of `sealed`. */
  tag: Buffer;
  /** CBC: SPI, sequence number, IV and ciphertext: what the HMAC covers. */
  macInput: Buffer;
}

function floorBufs(gcm: boolean, size: number): FloorBufs {
  const align = gcm ? 4 : 16;
  const plain = Buffer.alloc(Math.ceil((size + 2) / align) * align, 9);
  let sealed: Buffer;
  let tag = Buffer.alloc(0);
  if (gcm) {
    const c = createCipheriv('aes-128-gcm', GCM_KEY, GCM_NONCE, GCM_OPTS);
    c.setAAD(AAD);
    sealed = Buffer.concat([c.update(plain), c.final()]);
    tag = c.getAuthTag();
  } else {
    const c = createCipheriv('aes-128-cbc', CBC_KEY, IV).setAutoPadding(false);
    sealed = Buffer.concat([c.update(plain), c.final()]);
  }
  return { plain, sealed, tag, macInput: Buffer.alloc(8 + 16 + plain.length, 3) };
}

let sink = 0;

// The floors' loop bodies: one packet each.
function gcmSealFloor(f: FloorBufs): void {
  const c = createCipheriv('aes-128-gcm', GCM_KEY, GCM_NONCE, GCM_OPTS);
  c.setAAD(AAD);
  sink += c.update(f.plain).length;
  sink += c.final().length;
  sink += c.getAuthTag().length;
}
function gcmOpenFloor(f: FloorBufs): void {
  const d = createDecipheriv('aes-128-gcm', GCM_KEY, GCM_NONCE, GCM_OPTS);
  d.setAAD(AAD);
  d.setAuthTag(f.tag);
  sink += d.update(f.sealed).length;
  sink += d.final().length;
}
// CBC on whole blocks: update() gives every block, so final() adds nothing and is not
// called; decryption turns padding off so that update() does not hold the last block back.
function cbcSealFloor(f: FloorBufs): void {
  sink += createCipheriv('aes-128-cbc', CBC_KEY, IV).update(f.plain).length;
  sink += createHmac('sha1', HMAC_KEY).update(f.macInput).digest().length;
}
function cbcOpenFloor(f: FloorBufs): void {
  sink += createHmac('sha1', HMAC_KEY).update(f.macInput).digest().length;
  sink += createDecipheriv('aes-128-cbc', CBC_KEY, IV).setAutoPadding(false).update(f.sealed).length;
}

/** The openssl figures of one case and direction: each a list of runs whose per-packet times add up. */
function opensslPlan(gcm: boolean, encrypt: boolean, f: FloorBufs): Record<string, SpeedArgs[]> {
  const decrypt = !encrypt;
  if (gcm) {
    return {
      'openssl -evp': [{ evp: 'aes-128-gcm', decrypt, bytes: f.plain.length }],
      'openssl -aead': [{ evp: 'aes-128-gcm', aead: true, decrypt, bytes: f.plain.length }],
    };
  }
  return {
    'openssl -evp': [{ evp: 'aes-128-cbc', decrypt, bytes: f.plain.length }, { hmac: 'sha1', bytes: f.macInput.length }],
  };
}

const gbit = (pps: number, size: number) => (pps * size * 8) / 1e9;

/**
 * What one call into libcrypto through koffi costs by itself: a call with no arguments
 * (OpenSSL_version_num) and one with two buffers (CRYPTO_memcmp of 16 bytes). Undefined
 * where koffi or libcrypto cannot be loaded.
 */
function ffiCallTasks(): BatchTask[] | undefined {
  if (evpUnavailable()) return undefined;
  type Koffi = { load(p: string | null): { func(decl: string): (...a: unknown[]) => number } };
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = koffi.load(process.env.KLIPS_LIBCRYPTO ?? null);
  const version = lib.func('unsigned long OpenSSL_version_num(void)');
  const memcmp = lib.func('int CRYPTO_memcmp(const uint8_t *a, const uint8_t *b, size_t len)');
  const a = Buffer.alloc(16, 1);
  const b2 = Buffer.alloc(16, 1);
  const n = 1000;
  return [
    { name: 'koffi call: OpenSSL_version_num()', n, batch: () => { for (let i = 0; i < n; i++) sink += version(); } },
    { name: 'koffi call: CRYPTO_memcmp(buf, buf, 16)', n, batch: () => { for (let i = 0; i < n; i++) sink += memcmp(a, b2, 16) + 1; } },
  ];
}

export const suite: Suite = {
  name: 'dataplane',
  description: "ESP tunnel-mode encrypt/decrypt of IPv4 packets (GCM-128, CBC-128+SHA1; node:crypto and EVP) vs the bare node:crypto loop and openssl speed",
  async run(opts) {
    const cases = SAS.flatMap(({ name, sa }) => SIZES.map((size) => {
      const gcm = name === 'AES-GCM-128';
      return { name, gcm, sa, size, inner: packet(size), floor: floorBufs(gcm, size) };
    }));
    type Case = (typeof cases)[number];
    const T = (c: Case, what: string) => `${c.name} ${c.size}B ${what}`;

    // Inputs for espInput, protected beforehand: N distinct sequence numbers per case.
    const inbound = new Map<Case, Buffer[]>();
    for (const c of cases) {
      const pkts: Buffer[] = [];
      for (let i = 1; i <= N; i++) {
        const r = espOutput(c.sa, c.inner, { mode: 'tunnel', seq: i, tunnel: { id: 1 } });
        if (!r.ok) throw new Error(r.reason);
        pkts.push(r.packet);
      }
      inbound.set(c, pkts);
    }

    // openssl speed, once per figure per round (paired with that round's tasks).
    const noOpenssl = opensslUnavailable();
    const sslRounds = new Map<string, number[]>();
    const beforeRound = () => {
      if (noOpenssl) return;
      for (const c of cases) {
        for (const encrypt of [true, false]) {
          for (const [label, runs] of Object.entries(opensslPlan(c.gcm, encrypt, c.floor))) {
            let perPacket = 0;
            for (const a of runs) {
              const r = opensslSpeed(a);
              perPacket = r && Number.isFinite(perPacket) ? perPacket + 1 / r.ops : NaN;
            }
            const k = T(c, `${encrypt ? 'encrypt' : 'decrypt'} ${label}`);
            sslRounds.set(k, [...(sslRounds.get(k) ?? []), 1 / perPacket]);
          }
        }
      }
    };

    // Ours with each crypto backend there is (cipher.ts); the floor is node:crypto's.
    const backends: EspCryptoName[] = evpUnavailable() ? ['node'] : ['node', 'evp'];
    const initialBackend = espCrypto();
    const label = (b: EspCryptoName) => (b === 'evp' ? 'EVP' : 'node:crypto');
    let seq = 1;
    const groups: BatchTask[][] = [];
    for (const c of cases) {
      const f = c.floor;
      const seal = c.gcm ? gcmSealFloor : cbcSealFloor;
      const open = c.gcm ? gcmOpenFloor : cbcOpenFloor;
      groups.push([
        { name: T(c, 'encrypt floor'), n: N, batch: () => { for (let i = 0; i < N; i++) seal(f); } },
        ...backends.map((b) => ({
          name: T(c, `espOutput ${label(b)}`),
          n: N,
          batch: () => {
            setEspCrypto(b);
            for (let i = 0; i < N; i++) {
              const r = espOutput(c.sa, c.inner, { mode: 'tunnel', seq: (seq = (seq % 0xfffffffe) + 1), tunnel: { id: 1 } });
              if (r.ok) sink += r.packet.length;
            }
          },
        })),
      ]);
      const pkts = inbound.get(c)!;
      groups.push([
        { name: T(c, 'decrypt floor'), n: N, batch: () => { for (let i = 0; i < N; i++) open(f); } },
        ...backends.map((b) => ({
          name: T(c, `espInput ${label(b)}`),
          n: N,
          batch: () => {
            setEspCrypto(b);
            // A fresh window per batch, so the same N packets are new to it.
            const rx = new ReplayWindow(64);
            for (let i = 0; i < N; i++) {
              const r = espInput(c.sa, pkts[i], { mode: 'tunnel', replay: rx });
              if (!r.ok) throw new Error(r.reason);
              sink += r.packet.length;
            }
          },
        })),
      ]);
    }
    const ffi = ffiCallTasks();
    if (ffi) groups.push(ffi);
    const measured = await interleave(opts, groups, beforeRound);
    if (sink === 0) throw new Error('benchmark loops produced nothing');

    // Heap bytes allocated per packet (V8 heap only: Buffer contents live outside it).
    const bPerOp = new Map<string, number | undefined>();
    for (const c of cases) {
      if (c.size !== 1400) continue;
      const f = c.floor;
      const pkts = inbound.get(c)!;
      bPerOp.set(T(c, 'encrypt floor'), allocationPerOp((n) => { for (let i = 0; i < n; i++) (c.gcm ? gcmSealFloor : cbcSealFloor)(f); }, 64));
      bPerOp.set(T(c, 'decrypt floor'), allocationPerOp((n) => { for (let i = 0; i < n; i++) (c.gcm ? gcmOpenFloor : cbcOpenFloor)(f); }, 64));
      for (const b of backends) {
        setEspCrypto(b);
        bPerOp.set(T(c, `espOutput ${label(b)}`), allocationPerOp((n) => {
          for (let i = 0; i < n; i++) espOutput(c.sa, c.inner, { mode: 'tunnel', seq: (seq = (seq % 0xfffffffe) + 1), tunnel: { id: 1 } });
        }, 64));
        bPerOp.set(T(c, `espInput ${label(b)}`), allocationPerOp((n) => {
          const rx = new ReplayWindow(0);
          for (let i = 0; i < n; i++) espInput(c.sa, pkts[i % N], { mode: 'tunnel', replay: rx });
        }, 64));
      }
    }
    setEspCrypto(initialBackend);

    const rows: ResultRow[] = [];
    for (const c of cases) {
      for (const dir of ['encrypt', 'decrypt'] as const) {
        const floorName = T(c, `${dir} floor`);
        const oursNames = backends.map((b) => T(c, `${dir === 'encrypt' ? 'espOutput' : 'espInput'} ${label(b)}`));
        const g = (hz: number) => Number(gbit(hz, c.size).toFixed(3));
        const b = (name: string): Record<string, number> => (bPerOp.has(name) ? { 'B/op': Math.round(bPerOp.get(name) ?? NaN) } : {});
        const floor = measured.row(floorName);
        floor.extra = { 'Gbit/s': g(floor.hz), 'vs floor': '100%' };
        const ours = oursNames.map((name) => {
          const r = measured.row(name);
          r.extra = { 'Gbit/s': g(r.hz), ...pairedExtra(measured.ratio(name, floorName)) };
          return r;
        });
        const ssl: ResultRow[] = [];
        for (const sslLabel of Object.keys(opensslPlan(c.gcm, dir === 'encrypt', c.floor))) {
          const rates = sslRounds.get(T(c, `${dir} ${sslLabel}`));
          if (!rates || rates.some((x) => !Number.isFinite(x))) continue;
          const med = [...rates].sort((x, y) => x - y)[(rates.length - 1) >> 1];
          const name = T(c, `${dir} ${sslLabel}${c.gcm ? '' : ' + -hmac sha1'}`);
          ssl.push({ name, hz: med, mean: 1e9 / med, p99: NaN, samples: rates.length, extra: { 'Gbit/s': g(med) } });
          for (const [row, name2] of [[floor, floorName], ...ours.map((r, i) => [r, oursNames[i]] as const)] as const) {
            const hz = measured.rounds.get(name2)!.map((r) => r.hz);
            row.extra[`vs ${sslLabel}`] = percent(paired(hz, rates).median);
          }
        }
        for (const [row, name] of [[floor, floorName], ...ours.map((r, i) => [r, oursNames[i]] as const)] as const) Object.assign(row.extra, b(name));
        rows.push(floor, ...ours, ...ssl);
      }
    }
    if (ffi) for (const t of ffi) rows.push(measured.row(t.name));
    return {
      rows,
      notes: [
        'espOutput/espInput: whole IPv4 packets in tunnel mode (outer header, ESP, padding, ICV; inbound also the replay window and decapsulation)',
        'floor: the bare node:crypto calls per packet on reused buffers of the sizes ESP encrypts and authenticates (KeyObject keys, a cipher object per packet)',
        `the floor and ours (with each crypto backend) take turns batch by batch (${N} packets a batch) within each round, so load from elsewhere falls on all of them alike; a row is its task's median round; vs floor and vs openssl are medians of per-round ratios`,
        evpUnavailable() ? `EVP backend not measured: ${evpUnavailable()}` : `EVP: ${evpLibrary()} through koffi`,
        'Gbit/s counts the inner packet\'s bytes (packets/s x size x 8) in every row',
        'B/op: V8 heap bytes allocated per packet at 1400 B (Buffer contents live outside the heap and are not counted)',
        noOpenssl
          ? `openssl speed not run (${noOpenssl}); its rows and columns are left out`
          : `openssl: ${opensslVersion()}; each figure one \`openssl speed ... -bytes N -seconds 1 -elapsed -mr\` per round, N = the bytes ESP encrypts (and for CBC + HMAC-SHA1 also HMACs: the sum of the two per-packet times)`,
      ],
    };
  },
};

runAloneIfMain(suite, import.meta.url);
