/**
 * Tests for src/dataplane/replay.ts: the window's start, duplicates, its left edge for
 * several sizes, windows of 0 and 1, long jumps, check() never changing anything, and
 * ESN: the high-bit inference of RFC 4303 appendix A2.2 on both sides of the 2^32 wrap.
 * Random runs are compared with a plain model (a set of seen 64-bit numbers).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_REPLAY_WINDOW, ReplayWindow } from '../src/dataplane/index.js';

const TWO32 = 2n ** 32n;

/** check() then, if it passed, update(): what espInput does with a good ICV. */
function accept(w: ReplayWindow, seqLo: number): string {
  const c = w.check(seqLo);
  if (!c.ok) return c.reason;
  assert.equal(w.update(c.seqHi, seqLo), true);
  return 'ok';
}

/**
 * Bring a fresh window to a 64-bit top the way a sender would get there: in steps no
 * longer than 2^30, each accepted (a fresh ESN window reads the top of the 2^32 space
 * as the epoch before 0, so it cannot start high).
 */
function advanceTo(w: ReplayWindow, target: bigint): bigint[] {
  const accepted: bigint[] = [];
  for (let s = 1n; ; s += 2n ** 30n) {
    const seq = s < target ? s : target;
    const c = w.check(Number(seq % TWO32));
    assert.ok(c.ok && BigInt(c.seqHi) === seq / TWO32, `advancing to ${seq}`);
    w.update(c.seqHi, Number(seq % TWO32));
    accepted.push(seq);
    if (seq === target) return accepted;
  }
}

test('sizes outside [0, 65536] are refused when the window is made', () => {
  for (const bad of [-1, 1.5, MAX_REPLAY_WINDOW + 1, NaN]) assert.throws(() => new ReplayWindow(bad), RangeError);
  assert.equal(new ReplayWindow(4096).size, 4096);
  assert.equal(new ReplayWindow(MAX_REPLAY_WINDOW, true).size, 65536);
});

test('the start of the window: 0 is never valid, 1 is, and check() alone changes nothing', () => {
  const w = new ReplayWindow(64);
  assert.deepEqual(w.check(0), { ok: false, reason: 'replay' });
  assert.deepEqual(w.check(1), { ok: true, seqHi: 0 });
  assert.deepEqual(w.check(1), { ok: true, seqHi: 0 });
  assert.equal(w.top, 0n);
  assert.equal(accept(w, 1), 'ok');
  assert.equal(w.top, 1n);
  assert.equal(accept(w, 1), 'replay');
  assert.equal(w.update(0, 1), false, 'a second update of the same number is refused');
});

test('the left edge: top - size + 1 is accepted once, top - size is stale, for several sizes', () => {
  for (const size of [1, 2, 31, 32, 33, 64, 100, 1024, 4096, 65536]) {
    const w = new ReplayWindow(size);
    const top = size + 1000;
    assert.equal(accept(w, top), 'ok');
    if (size > 1) {
      assert.equal(accept(w, top - size + 1), 'ok', `size ${size}`);
      assert.equal(accept(w, top - size + 1), 'replay', `size ${size}`);
    }
    assert.equal(accept(w, top - size), 'replay-stale', `size ${size}`);
    assert.equal(accept(w, top), 'replay');
    assert.equal(accept(w, top + 1), 'ok');
    assert.equal(accept(w, top - size + 1), 'replay-stale', `size ${size}: the edge moved on`);
  }
});

test('out-of-order arrivals inside the window are accepted once each', () => {
  const w = new ReplayWindow(64);
  const order = [5, 1, 3, 2, 4, 64, 10, 9, 63, 6, 7, 8];
  for (const s of order) assert.equal(accept(w, s), 'ok', `seq ${s}`);
  for (const s of order) assert.equal(accept(w, s), 'replay', `seq ${s} again`);
  assert.equal(accept(w, 11), 'ok');
  assert.equal(w.top, 64n);
});

test('a long jump forgets everything behind the new window; bits of the old ring do not leak', () => {
  const w = new ReplayWindow(64);
  for (let s = 1; s <= 64; s++) accept(w, s);
  assert.equal(accept(w, 64 + 64 * 10 + 7), 'ok');
  for (let s = 64 * 10 + 8; s < 64 * 11 + 7; s++) assert.equal(accept(w, s), 'ok', `seq ${s} never seen`);
  // One word past the ring's size: the cleared words must not be the ones still in use.
  const v = new ReplayWindow(96);
  for (let s = 1; s <= 200; s++) assert.equal(accept(v, s * 3), 'ok');
  for (let s = 600 - 95; s <= 600; s++) assert.equal(accept(v, s), s % 3 === 0 ? 'replay' : 'ok', `seq ${s}`);
});

test('window 0 turns replay checking off (but not the ban on 0)', () => {
  const w = new ReplayWindow(0);
  assert.equal(accept(w, 5), 'ok');
  assert.equal(accept(w, 5), 'ok');
  assert.equal(accept(w, 1), 'ok');
  assert.equal(accept(w, 0), 'replay');
  assert.equal(w.top, 5n);
});

test('agrees with a model (a set of seen numbers) on random arrivals, for several window sizes', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(1, 5, 32, 33, 64, 100, 1024, 4096),
      fc.array(fc.integer({ min: -80, max: 40 }), { minLength: 1, maxLength: 400 }),
      (size, steps) => {
        const w = new ReplayWindow(size);
        const seen = new Set<number>();
        let top = 0;
        let next = 1;
        for (const step of steps) {
          // Mostly forwards, sometimes back into (or past) the window, sometimes a repeat.
          const seq = Math.max(0, step >= 0 ? next + step : top + step);
          next = Math.max(next, seq + 1);
          const want = seq === 0 ? 'replay'
            : seq <= top && top - seq >= size ? 'replay-stale' : seen.has(seq) ? 'replay' : 'ok';
          assert.equal(accept(w, seq), want, `size ${size} top ${top} seq ${seq}`);
          if (want === 'ok') {
            seen.add(seq);
            top = Math.max(top, seq);
          }
        }
        assert.equal(w.top, BigInt(top));
      },
    ),
    { numRuns: 200, seed: 11 },
  );
});

test('ESN, RFC 4303 A2.2 case A (top low bits ≥ W - 1): below the window means the next epoch', () => {
  const w = new ReplayWindow(64, true);
  advanceTo(w, 0xfffffff0n);
  assert.deepEqual(w.check(0xffffffb1), { ok: true, seqHi: 0 }, 'inside the window: same epoch');
  assert.deepEqual(w.check(0xffffffb0), { ok: true, seqHi: 1 }, 'left of the window: taken as the next epoch');
  assert.deepEqual(w.check(5), { ok: true, seqHi: 1 });
  assert.equal(accept(w, 5), 'ok');
  assert.equal(w.top, TWO32 + 5n);
});

test('ESN, case B (top low bits < W - 1, just after the wrap): the high end belongs to the previous epoch', () => {
  const w = new ReplayWindow(64, true);
  advanceTo(w, 0xfffffff0n);
  assert.equal(accept(w, 3), 'ok');
  assert.equal(w.top, TWO32 + 3n);
  assert.deepEqual(w.check(0xfffffff1), { ok: true, seqHi: 0 }, 'late packet from before the wrap');
  assert.equal(accept(w, 0xfffffff0), 'replay');
  // Bottom of the window: 1:3 - 63 = 0:ffffffc4; case B reads lows from there up as epoch 0.
  assert.deepEqual(w.check(0xffffffc4), { ok: true, seqHi: 0 }, 'the window\'s last slot');
  assert.deepEqual(w.check(0xffffffc3), { ok: true, seqHi: 1 }, 'below it: read as far ahead in epoch 1');
  assert.deepEqual(w.check(2), { ok: true, seqHi: 1 });
  assert.equal(accept(w, 2), 'ok');
  // Before any packet the top is 0:0, so the last W - 1 numbers of "epoch -1" are stale.
  const fresh = new ReplayWindow(64, true);
  assert.deepEqual(fresh.check(0xffffffff), { ok: false, reason: 'replay-stale' });
  assert.deepEqual(fresh.check(1), { ok: true, seqHi: 0 });
});

test('ESN: a sender crossing 2^32 with reordering inside the window is understood exactly', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(32, 64, 1024),
      fc.bigInt({ min: 1n, max: 3n * TWO32 }),
      fc.array(fc.nat(), { minLength: 10, maxLength: 300 }),
      (size, start, jitter) => {
        const w = new ReplayWindow(size, true);
        const seen = new Set<bigint>(advanceTo(w, start));
        let top = start;
        jitter.forEach((j, i) => {
          // Sequence numbers climb by one; each arrives displaced by less than the window.
          const seq = start + BigInt(i) - BigInt(j % size);
          if (seq <= 0n) return;
          const lo = Number(seq % TWO32);
          const c = w.check(lo);
          const stale = top > 0n && top - seq >= BigInt(size);
          if (seen.has(seq)) assert.ok(!c.ok && c.reason === 'replay');
          else if (stale) assert.ok(!c.ok);
          else {
            assert.ok(c.ok, `seq ${seq} top ${top}`);
            assert.equal(BigInt(c.seqHi), seq / TWO32, `high bits of ${seq}`);
            assert.ok(w.update(c.seqHi, lo));
            seen.add(seq);
            if (seq > top) top = seq;
          }
        });
        assert.equal(w.top, top);
      },
    ),
    { numRuns: 150, seed: 5 },
  );
});
