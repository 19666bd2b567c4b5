/**
 * The anti-replay window of an inbound SA (RFC 4303 §3.4.3 and appendix A; KLIPS's
 * ipsec_checkreplaywindow/ipsec_updatereplaywindow): a bitmap of the last `size`
 * sequence numbers below the highest one authenticated. The check and the update are
 * separate calls so that a packet whose ICV fails never moves the window: check() before
 * verifying, update() only after.
 *
 * The bitmap is a ring of 32-bit words (as RFC 6479 describes): advancing the window
 * clears only the words it passes, so a packet costs O(1) in the number of packets, and
 * at most size/32 word writes on a jump. With ESN the high 32 bits, which are never sent,
 * are inferred from the window as RFC 4303 appendix A2.2 says; before the first packet the
 * top is 0:0, so the highest W - 1 low values read as the epoch before 0 and are stale.
 */

import { drop, type Drop } from './drop.js';

/** Largest window accepted (KLIPS allowed 64; PF_KEY's sadb_sa_replay is 8 bits). */
export const MAX_REPLAY_WINDOW = 65536;

const TWO32 = 2 ** 32;

export type ReplayCheck = { readonly ok: true; readonly seqHi: number } | Drop;

/**
 * What the ESP/AH input transforms ask of a replay window: check before the ICV, update
 * after it. A ReplayWindow is one; the paths' trace wraps one to record the check and,
 * in a dry run, to leave the window as it was.
 */
export interface ReplayGuard {
  check(seqLo: number): ReplayCheck;
  update(seqHi: number, seqLo: number): boolean;
}

export class ReplayWindow implements ReplayGuard {
  readonly size: number;
  readonly esn: boolean;
  /** Highest sequence number authenticated so far (0:0 before the first packet). */
  private topHi = 0;
  private topLo = 0;
  private readonly bits: Uint32Array;
  private readonly mask: number;

  /** size: packets the window covers (0 disables replay checks); esn: 64-bit sequence numbers. */
  constructor(size: number, esn = false) {
    if (!Number.isInteger(size) || size < 0 || size > MAX_REPLAY_WINDOW) {
      throw new RangeError(`replay window must be an integer in [0, ${MAX_REPLAY_WINDOW}]`);
    }
    this.size = size;
    this.esn = esn;
    // One spare word, rounded up to a power of two, so the ring index is (seq >>> 5) & mask.
    let words = 1;
    while (words < Math.ceil(size / 32) + 1) words *= 2;
    this.bits = new Uint32Array(words);
    this.mask = words - 1;
  }

  /** The highest authenticated sequence number, as a 64-bit value. */
  get top(): bigint {
    return (BigInt(this.topHi) << 32n) | BigInt(this.topLo);
  }

  /**
   * May a packet carrying `seqLo` (the 32 bits on the wire) be processed? Gives the high 32
   * bits to use for its ICV (always 0 without ESN). Changes nothing.
   */
  check(seqLo: number): ReplayCheck {
    const seqHi = this.esn ? this.inferHi(seqLo) : 0;
    if (seqHi < 0) return drop('replay-stale');
    if (seqHi === 0 && seqLo === 0) return drop('replay');
    if (this.size === 0) return { ok: true, seqHi };
    if (seqHi > this.topHi || (seqHi === this.topHi && seqLo > this.topLo)) return { ok: true, seqHi };
    const behind = (this.topHi - seqHi) * TWO32 + (this.topLo - seqLo);
    if (behind >= this.size) return drop('replay-stale');
    return this.isSet(seqLo) ? drop('replay') : { ok: true, seqHi };
  }

  /**
   * Record an authenticated packet (after check() and a good ICV). Returns false, changing
   * nothing, if the number was already recorded or has fallen out of the window meanwhile.
   */
  update(seqHi: number, seqLo: number): boolean {
    if (seqHi > this.topHi || (seqHi === this.topHi && seqLo > this.topLo)) {
      this.advance(seqHi, seqLo);
      this.topHi = seqHi;
      this.topLo = seqLo;
      if (this.size) this.set(seqLo);
      return true;
    }
    if (this.size === 0) return true;
    const behind = (this.topHi - seqHi) * TWO32 + (this.topLo - seqLo);
    if (behind >= this.size || this.isSet(seqLo)) return false;
    this.set(seqLo);
    return true;
  }

  /** RFC 4303 A2.2: which 2^32 epoch does seqLo belong to, judged from the window's top? */
  private inferHi(seqLo: number): number {
    // Without a window, take the epoch that puts seqLo nearest the top (half the space each way).
    const w = this.size || 2 ** 31;
    const tl = this.topLo;
    const th = this.topHi;
    if (tl >= w - 1) return seqLo >= tl - w + 1 ? th : th + 1;
    return seqLo >= tl - w + 1 + TWO32 ? th - 1 : th;
  }

  /** Clear the words between the old top and the new one (all of them on a long jump). */
  private advance(seqHi: number, seqLo: number): void {
    if (!this.size) return;
    const n = (seqHi - this.topHi) * (TWO32 / 32) + ((seqLo >>> 5) - (this.topLo >>> 5));
    if (n > this.mask) {
      this.bits.fill(0);
      return;
    }
    for (let i = 1; i <= n; i++) this.bits[((this.topLo >>> 5) + i) & this.mask] = 0;
  }

  private isSet(seqLo: number): boolean {
    return (this.bits[(seqLo >>> 5) & this.mask] & (1 << (seqLo & 31))) !== 0;
  }

  private set(seqLo: number): void {
    this.bits[(seqLo >>> 5) & this.mask] |= 1 << (seqLo & 31);
  }
}
