/**
 * Hostile input: random bytes, and valid protected packets with random bytes changed,
 * cut or appended, through every inbound function. None may throw; each returns a result
 * or a Drop whose reason is one of DROP_REASONS, and a changed protected packet never
 * opens as something else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SADB_X_CALG_DEFLATE, SADB_X_SATYPE_COMP } from '../src/wire/index.js';
import {
  DROP_REASONS, ReplayWindow, ahInput, ahOutput, espInput, espOutput, ipcompCompress, ipcompDecompress, ipipDecap,
  nattDecap, parseIp, selectorOf, type TransformSA,
} from '../src/dataplane/index.js';
import { AUTHS, addr, ahSA, algPairs, espSA, ipv4, samplePackets, tcp } from './dataplane-helpers.js';

const KNOWN = new Set<string>(DROP_REASONS);
const PAIRS = algPairs();
const COMP: TransformSA = { satype: SADB_X_SATYPE_COMP, spi: 0x4242, encrypt: SADB_X_CALG_DEFLATE, auth: 0, replayWindow: 0, src: addr('192.0.2.1'), dst: addr('198.51.100.2') };

function wellFormed(r: { ok: boolean; reason?: string }, what: string): void {
  if (!r.ok) assert.ok(KNOWN.has(r.reason!), `${what}: unknown drop reason ${r.reason}`);
}

/** Every inbound function on one input. */
function everything(b: Uint8Array): void {
  const esp = espSA(PAIRS[2]);
  const ah = ahSA(AUTHS[1]);
  wellFormed(parseIp(b), 'parseIp');
  wellFormed(selectorOf(b), 'selectorOf');
  for (const mode of ['tunnel', 'transport'] as const) {
    wellFormed(espInput(esp, b, { mode, replay: new ReplayWindow(32) }), 'espInput');
    wellFormed(ahInput(ah, b, { mode }), 'ahInput');
  }
  wellFormed(ipipDecap(esp, b), 'ipipDecap');
  wellFormed(ipcompDecompress(COMP, b), 'ipcompDecompress');
  wellFormed(nattDecap(b), 'nattDecap');
}

test('random bytes, and random bytes behind a plausible IPv4 or IPv6 first byte, never throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(-1, 0x45, 0x46, 0x60), (raw, first) => {
      const b = Uint8Array.from(raw);
      if (first >= 0 && b.length) b[0] = first;
      everything(b);
    }),
    { numRuns: 1500, seed: 21 },
  );
});

test('protected packets with bytes changed, cut or appended: never thrown, never opened as something else', () => {
  const pkts = samplePackets(4).map((p) => p.packet);
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: PAIRS.length - 1 }), fc.integer({ min: 0, max: pkts.length - 1 }), fc.constantFrom('tunnel', 'transport'),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }), fc.nat(), fc.uint8Array({ maxLength: 9 }),
      (pi, ki, mode, edits, cut, extra) => {
        const pair = PAIRS[pi];
        const inner = pkts[ki];
        const sa = espSA(pair, inner[0] >> 4 === 6 && mode === 'transport' ? { src: addr('2001:db8::1'), dst: addr('2001:db8::2') } : {});
        const out = espOutput(sa, inner, { mode: mode as 'tunnel', seq: 5 });
        assert.ok(out.ok);
        const bad = Buffer.from(out.packet);
        for (const [at, x] of edits) bad[at % bad.length] ^= x;
        for (const b of [bad, out.packet.subarray(0, cut % out.packet.length), Buffer.concat([out.packet, extra])]) {
          everything(b);
          const r = espInput(sa, b, { mode: mode as 'tunnel' });
          wellFormed(r, 'espInput');
          // Whatever opens is what was protected (unless the SA has no integrity): the whole
          // inner packet in tunnel mode; in transport mode what follows the (unprotected) IP header.
          if (r.ok && (pair.scapyAuth || pair.cicv)) {
            const hl = mode === 'tunnel' ? 0 : inner[0] >> 4 === 6 ? 40 : 20;
            assert.ok(r.packet.subarray(hl).equals(inner.subarray(hl)), `${pair.name} ${mode}: opened to something else`);
          }
        }
      },
    ),
    { numRuns: 600, seed: 8 },
  );
});

test('AH and IPCOMP packets with bytes changed never verify or inflate to something else, and never throw', () => {
  const inner = ipv4({ payload: tcp(1, 2, Buffer.from('compress me '.repeat(20))) });
  const ah = ahSA(AUTHS[4]);
  const a = ahOutput(ah, inner, { mode: 'transport', seq: 1 });
  const c = ipcompCompress(COMP, inner);
  assert.ok(a.ok && c.ok && c.compressed);
  fc.assert(
    fc.property(fc.nat(), fc.integer({ min: 1, max: 255 }), (at, x) => {
      const bad = Buffer.from(a.packet);
      const i = at % bad.length;
      bad[i] ^= x;
      const r = ahInput(ah, bad, { mode: 'transport' });
      wellFormed(r, 'ahInput');
      // Mutable fields (TOS, flags, TTL) may change; anything that verifies is the original payload.
      if (r.ok) assert.ok(r.packet.subarray(20).equals(inner.subarray(20)) && [1, 6, 7, 8, 10, 11].includes(i), `byte ${i}`);
      const z = Buffer.from(c.packet);
      z[at % z.length] ^= x;
      wellFormed(ipcompDecompress(COMP, z), 'ipcompDecompress');
    }),
    { numRuns: 800, seed: 9 },
  );
});
