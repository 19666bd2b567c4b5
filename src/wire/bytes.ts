/**
 * Field access on message bytes and the buffers built messages live in. Reads and writes
 * go straight to the Uint8Array (a DataView per message costs more than the whole walk
 * over a typical message), little-endian for host-order fields and big-endian for
 * network-order ones. Built messages are carved from zeroed 64 KiB slabs, each region
 * handed out once, so building does not pay for an off-heap allocation per message.
 */

export function rd16(u8: Uint8Array, o: number): number {
  return u8[o] | (u8[o + 1] << 8);
}

export function rd32(u8: Uint8Array, o: number): number {
  return (u8[o] | (u8[o + 1] << 8) | (u8[o + 2] << 16) | (u8[o + 3] << 24)) >>> 0;
}

export function rd16be(u8: Uint8Array, o: number): number {
  return (u8[o] << 8) | u8[o + 1];
}

export function rd32be(u8: Uint8Array, o: number): number {
  return ((u8[o] << 24) | (u8[o + 1] << 16) | (u8[o + 2] << 8) | u8[o + 3]) >>> 0;
}

const TWO32 = 4294967296;

/** A little-endian u64 as a bigint (the common all-zero case costs no allocation). */
export function rd64(u8: Uint8Array, o: number): bigint {
  const lo = rd32(u8, o);
  const hi = rd32(u8, o + 4);
  if (hi === 0) return lo === 0 ? 0n : BigInt(lo);
  if (hi < 0x200000) return BigInt(hi * TWO32 + lo);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export function wr16(u8: Uint8Array, o: number, v: number): void {
  u8[o] = v;
  u8[o + 1] = v >>> 8;
}

export function wr32(u8: Uint8Array, o: number, v: number): void {
  u8[o] = v;
  u8[o + 1] = v >>> 8;
  u8[o + 2] = v >>> 16;
  u8[o + 3] = v >>> 24;
}

export function wr16be(u8: Uint8Array, o: number, v: number): void {
  u8[o] = v >>> 8;
  u8[o + 1] = v;
}

export function wr32be(u8: Uint8Array, o: number, v: number): void {
  u8[o] = v >>> 24;
  u8[o + 1] = v >>> 16;
  u8[o + 2] = v >>> 8;
  u8[o + 3] = v;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A u64 from a bigint; lifetimes are mostly 0 or small, which need no bigint arithmetic. */
export function wr64(u8: Uint8Array, o: number, v: bigint): void {
  if (v === 0n) {
    wr32(u8, o, 0);
    wr32(u8, o + 4, 0);
  } else if (v > 0n && v <= MAX_SAFE) {
    const n = Number(v);
    wr32(u8, o, n >>> 0);
    wr32(u8, o + 4, Math.floor(n / TWO32));
  } else {
    const m = BigInt.asUintN(64, v);
    wr32(u8, o, Number(m & 0xffffffffn));
    wr32(u8, o + 4, Number(m >> 32n));
  }
}

/** A copy of bytes [from, to) that never shares memory with the input (even a Buffer). */
export function copyBytes(u8: Uint8Array, from: number, to: number): Uint8Array {
  const out = new Uint8Array(to - from);
  for (let i = from, j = 0; i < to; i++, j++) out[j] = u8[i];
  return out;
}

export function allZero(u8: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (u8[i] !== 0) return false;
  return true;
}

const SLAB = 64 * 1024;
let slab = new ArrayBuffer(SLAB);
let used = 0;

/**
 * A zeroed buffer of n bytes for one built message. Small messages share a slab (a kept
 * message keeps its slab alive, as Node's Buffer pool does); large ones get their own.
 * (A view made with the constructor costs about half of subarray's, which looks up a
 * species constructor.)
 */
export function allocMessage(n: number): Uint8Array {
  if (n > SLAB / 8) return new Uint8Array(n);
  if (used + n > SLAB) {
    slab = new ArrayBuffer(SLAB);
    used = 0;
  }
  const out = new Uint8Array(slab, used, n);
  used += n;
  return out;
}

let buffer0: ArrayBufferLike | undefined;
let view0: DataView | undefined;
let buffer1: ArrayBufferLike | undefined;
let view1: DataView | undefined;

/**
 * A DataView over the whole buffer `u8` lies in (index it with u8.byteOffset + offset):
 * word-wide reads and writes at any alignment, for code that touches every field of
 * many messages (the ADD fast path). The views of the last two buffers asked for are
 * kept (one a request comes in, one its reply goes out to), so the messages of one read
 * chunk or one slab share one.
 */
export function dataViewOf(u8: Uint8Array): DataView {
  const b = u8.buffer;
  if (b === buffer0) return view0!;
  if (b !== buffer1) {
    buffer1 = b;
    view1 = new DataView(b);
  }
  const v = view1!;
  buffer1 = buffer0;
  view1 = view0;
  buffer0 = b;
  view0 = v;
  return v;
}
