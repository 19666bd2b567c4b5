/**
 * The two crypto backends of src/dataplane/cipher.ts agree: for every algorithm pair, both
 * IP families, tunnel and transport mode, with and without ESN, node:crypto and libcrypto's
 * EVP (through koffi) build the same bytes from the same IV and sequence number, each
 * opens what the other built, and both drop the same tampered packets for the same
 * reason. Then the ESP test files (RFC vectors, scapy cross-checks, paths) run again in a
 * child process with the backend this process did not use ($KLIPS_ESP_CRYPTO), so
 * `npm test` covers both. Skipped, with a message, where EVP cannot be loaded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SADB_AALG_NONE } from '../src/wire/index.js';
import {
  ENCRYPT_ALGORITHMS, ReplayWindow, espCrypto, espInput, espOutput, evpUnavailable, setEspCrypto,
  type EspCryptoName, type TransformSA,
} from '../src/dataplane/index.js';
import { addr, algPairs, bytes, espSA, samplePackets } from './dataplane-helpers.js';

const why = evpUnavailable();
if (why) console.log(`# SKIP dataplane crypto backends: EVP unavailable: ${why}`);
const skip = why ? `EVP unavailable: ${why}` : false;

const V6_SA = { src: addr('2001:db8:ffff::1'), dst: addr('2001:db8:eeee::2') };

/** Run `f` with `backend` in use, then put back the one that was. */
function using<T>(backend: EspCryptoName, f: () => T): T {
  const before = espCrypto();
  setEspCrypto(backend);
  try {
    return f();
  } finally {
    setEspCrypto(before);
  }
}

test('node:crypto and EVP build the same bytes, open each other\'s packets and drop the same tampering', { skip }, () => {
  const packets = samplePackets();
  let checked = 0;
  for (const [i, pair] of algPairs().entries()) {
    const enc = ENCRYPT_ALGORITHMS.get(pair.encrypt)!;
    for (const esn of [false, true]) {
      for (const { packet: inner } of packets) {
        const v6 = inner[0] >> 4 === 6;
        const sa: TransformSA = espSA(pair, { esn, ...(v6 ? V6_SA : {}) }, i);
        for (const mode of ['tunnel', 'transport'] as const) {
          const seq = 1000 + checked;
          const opts = { mode, seq, seqHi: esn ? 3 : 0, iv: bytes(enc.ivBytes, seq), tunnel: { id: 7 } };
          const a = using('node', () => espOutput(sa, inner, opts));
          const b = using('evp', () => espOutput(sa, inner, opts));
          assert.ok(a.ok && b.ok, `${pair.name} ${mode}`);
          assert.equal(b.packet.toString('hex'), a.packet.toString('hex'), `${pair.name} ${mode} esn=${esn}: same bytes`);
          const inOpts = { mode, seqHi: esn ? 3 : 0 };
          for (const [built, opener] of [[a.packet, 'evp'], [b.packet, 'node']] as const) {
            const r = using(opener, () => espInput(sa, built, inOpts));
            assert.ok(r.ok, `${pair.name} ${mode}: ${opener} opens the other's packet (${r.ok ? '' : r.reason})`);
          }
          // Tamper with the last byte (ICV, or the trailer without integrity): both say the same.
          const bad = Buffer.from(a.packet);
          bad[bad.length - 1] ^= 0x40;
          const verdicts = (['node', 'evp'] as const).map((k) => using(k, () => {
            const r = espInput(sa, bad, { ...inOpts, replay: new ReplayWindow(64, esn) });
            return r.ok ? 'ok' : r.reason;
          }));
          assert.equal(verdicts[1], verdicts[0], `${pair.name} ${mode}: same verdict on a tampered packet`);
          if (pair.auth !== SADB_AALG_NONE || pair.cicv) assert.equal(verdicts[0], 'icv');
          checked++;
        }
      }
    }
  }
  assert.ok(checked >= 50 * 2 * 2 * 2);
});

test('the ESP test files pass again with the other backend', { skip, timeout: 300_000 }, (t) => {
  const other: EspCryptoName = espCrypto() === 'evp' ? 'node' : 'evp';
  const dir = path.dirname(fileURLToPath(import.meta.url));
  const files = ['dataplane-esp', 'dataplane-vectors', 'dataplane-scapy', 'dataplane-natt', 'dataplane-paths', 'dataplane-fuzz']
    .map((f) => path.join(dir, `${f}.test.js`));
  // A fresh test runner (not a child of this one: without NODE_TEST_CONTEXT it reports as TAP).
  const env: NodeJS.ProcessEnv = { ...process.env, KLIPS_ESP_CRYPTO: other };
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=tap', ...files], { env, encoding: 'utf8', timeout: 280_000 });
  const summary = (r.stdout.match(/^# (tests|pass|fail|skipped) \d+$/gm) ?? []).join(', ');
  assert.equal(r.status, 0, `with KLIPS_ESP_CRYPTO=${other}: ${summary}\n${r.stdout.split('\n').filter((l) => l.startsWith('not ok')).join('\n')}`);
  assert.match(summary, /# fail 0/);
  const passed = Number(/# pass (\d+)/.exec(summary)?.[1] ?? 0);
  assert.ok(passed >= 40, `with KLIPS_ESP_CRYPTO=${other}: ${summary}`);
  t.diagnostic(`KLIPS_ESP_CRYPTO=${other}: ${summary.replace(/# /g, '')}`);
});
