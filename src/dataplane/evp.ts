/**
 * ESP's ciphers and HMACs on libcrypto's EVP interface, called through koffi (a maintained
 * FFI library with prebuilt binaries: no native addon of our own). What it buys over
 * node:crypto: an SA's cipher context is made and keyed once per direction, and a packet
 * only sets a new IV and runs (4–5 calls into libcrypto, in place in the packet's buffer),
 * where node:crypto must build and key a new cipher object for every packet. HMACs keep
 * their keyed EVP_MAC context and are re-initialised from it per packet.
 *
 * Which libcrypto: $KLIPS_LIBCRYPTO (a file name for dlopen) if set; else the OpenSSL the
 * Node process already has (Node exports its bundled OpenSSL's symbols; a Node linked to
 * the system's libcrypto has it loaded), so node:crypto and this share one library; else
 * libcrypto.so.3, loaded with RTLD_DEEPBIND so that it keeps to its own symbols. Loaded
 * on first use only. Needs a 64-bit little-endian platform (the OSSL_PARAM layout below).
 * Contexts are freed when their SA's prepared state is collected.
 *
 * The per-packet calls pass every pointer as a number (declared uintptr_t): a buffer's
 * address is its ArrayBuffer's, taken once per ArrayBuffer (koffi.address, which also
 * moves a small on-heap array's bytes off the heap for good; backing stores never move
 * after that), plus its byte offset. That spares koffi converting a buffer argument
 * and us a view object per call: a call costs about a third less.
 */

import os from 'node:os';
import { sameBytes, type AuthAlgorithm, type EncryptAlgorithm } from './algorithms.js';
import type { CryptoBackend, SaCipher, SaMac } from './cipher.js';
import { loadKoffi, type Koffi } from './koffi.js';
import { packetBuffer } from './packet.js';
import { wr32 } from '../wire/bytes.js';

/** EVP_CIPHER_CTX_ctrl operations for AEAD ciphers (openssl/evp.h). */
const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;
/**
 * OSSL_PARAM (openssl/core.h) on LP64: key pointer, data type (UTF-8 string: 4), data
 * pointer, data size, return size (OSSL_PARAM_UNMODIFIED, all ones): 40 bytes.
 */
const OSSL_PARAM_UTF8_STRING = 4;
const OSSL_PARAM_BYTES = 40;
const OSSL_PARAM_UNMODIFIED = 0xffffffffffffffffn;

type Ptr = unknown;
/** A native address as a number (exact: user-space addresses are far below 2^53). */
type Addr = number;
/** The libcrypto calls used, bound once. */
interface Evp {
  library: string;
  address(b: ArrayBufferLike): Addr;
  // Setting up and tearing down (typed pointers).
  cipherFetch(libctx: null, name: string, props: null): Ptr;
  cipherCtxNew(): Ptr;
  cipherCtxFree(ctx: Ptr): void;
  cipherKey(ctx: Ptr, cipher: Ptr, impl: null, key: Uint8Array, iv: null, enc: number): number;
  setPadding(ctx: Ptr, pad: number): number;
  macFetch(libctx: null, name: string, props: null): Ptr;
  macCtxNew(mac: Ptr): Ptr;
  macCtxFree(ctx: Ptr): void;
  macKey(ctx: Ptr, key: Uint8Array, keylen: number, params: Uint8Array): number;
  // Per packet: every pointer an address.
  cipherInit(ctx: Addr, cipher: 0, impl: 0, key: 0, iv: Addr, enc: number): number;
  cipherUpdate(ctx: Addr, out: Addr, outl: Addr, input: Addr, inl: number): number;
  cipherFinal(ctx: Addr, out: Addr, outl: Addr): number;
  cipherCtrl(ctx: Addr, type: number, arg: number, ptr: Addr): number;
  macInit(ctx: Addr, key: 0, keylen: 0, params: 0): number;
  macUpdate(ctx: Addr, data: Addr, len: number): number;
  macFinal(ctx: Addr, out: Addr, outl: Addr, outsize: number): number;
}

let bound: { evp: Evp; koffi: Koffi } | string | undefined;

function bindLibrary(koffi: Koffi): Evp {
  const candidates: [string | null, string, boolean][] = process.env.KLIPS_LIBCRYPTO
    ? [[process.env.KLIPS_LIBCRYPTO, process.env.KLIPS_LIBCRYPTO, true]]
    : [[null, "the Node process's own OpenSSL", false], ['libcrypto.so.3', 'libcrypto.so.3', true]];
  const errors: string[] = [];
  for (const [file, label, deep] of candidates) {
    try {
      const lib = deep ? koffi.load(file, { deep: true }) : koffi.load(file);
      const f = (decl: string) => lib.func(decl);
      const n = (name: string, ...params: string[]) => lib.func(name, 'int', params);
      const version = f('const char *OpenSSL_version(int type)') as unknown as (t: number) => string;
      const evp: Evp = {
        library: `${label} (${version(0)})`,
        address: (b) => Number(koffi.address(b)),
        cipherFetch: f('void *EVP_CIPHER_fetch(void *libctx, const char *name, const char *props)') as Evp['cipherFetch'],
        cipherCtxNew: f('void *EVP_CIPHER_CTX_new(void)') as Evp['cipherCtxNew'],
        cipherCtxFree: f('void EVP_CIPHER_CTX_free(void *ctx)') as Evp['cipherCtxFree'],
        cipherKey: f('int EVP_CipherInit_ex(void *ctx, const void *cipher, void *impl, const uint8_t *key, const uint8_t *iv, int enc)') as Evp['cipherKey'],
        setPadding: f('int EVP_CIPHER_CTX_set_padding(void *ctx, int pad)') as Evp['setPadding'],
        macFetch: f('void *EVP_MAC_fetch(void *libctx, const char *name, const char *props)') as Evp['macFetch'],
        macCtxNew: f('void *EVP_MAC_CTX_new(void *mac)') as Evp['macCtxNew'],
        macCtxFree: f('void EVP_MAC_CTX_free(void *ctx)') as Evp['macCtxFree'],
        macKey: f('int EVP_MAC_init(void *ctx, const uint8_t *key, size_t keylen, const uint8_t *params)') as Evp['macKey'],
        cipherInit: n('EVP_CipherInit_ex', 'uintptr_t', 'uintptr_t', 'uintptr_t', 'uintptr_t', 'uintptr_t', 'int') as Evp['cipherInit'],
        cipherUpdate: n('EVP_CipherUpdate', 'uintptr_t', 'uintptr_t', 'uintptr_t', 'uintptr_t', 'int') as Evp['cipherUpdate'],
        cipherFinal: n('EVP_CipherFinal_ex', 'uintptr_t', 'uintptr_t', 'uintptr_t') as Evp['cipherFinal'],
        cipherCtrl: n('EVP_CIPHER_CTX_ctrl', 'uintptr_t', 'int', 'int', 'uintptr_t') as Evp['cipherCtrl'],
        macInit: n('EVP_MAC_init', 'uintptr_t', 'uintptr_t', 'size_t', 'uintptr_t') as Evp['macInit'],
        macUpdate: n('EVP_MAC_update', 'uintptr_t', 'uintptr_t', 'size_t') as Evp['macUpdate'],
        macFinal: n('EVP_MAC_final', 'uintptr_t', 'uintptr_t', 'uintptr_t', 'size_t') as Evp['macFinal'],
      };
      if (!evp.cipherFetch(null, 'AES-128-GCM', null)) throw new Error('EVP_CIPHER_fetch(AES-128-GCM) found nothing');
      return evp;
    } catch (e) {
      errors.push(`${label}: ${(e as Error).message}`);
    }
  }
  throw new Error(errors.join('; '));
}

function bind(): { evp: Evp; koffi: Koffi } | string {
  if (bound !== undefined) return bound;
  if (os.endianness() !== 'LE' || (process.arch !== 'x64' && process.arch !== 'arm64')) {
    return (bound = `needs a 64-bit little-endian platform (this is ${process.arch})`);
  }
  const koffi = loadKoffi();
  if (koffi instanceof Error) return (bound = koffi.message);
  try {
    return (bound = { evp: bindLibrary(koffi), koffi });
  } catch (e) {
    return (bound = `libcrypto could not be bound (${(e as Error).message})`);
  }
}

/** Why the EVP backend cannot be used here, or undefined when it can. Loads it on the first call. */
export function evpUnavailable(): string | undefined {
  const b = bind();
  return typeof b === 'string' ? b : undefined;
}

/** Which libcrypto the EVP backend uses, e.g. "the Node process's own OpenSSL (OpenSSL 3.0.19 …)". */
export function evpLibrary(): string | undefined {
  const b = bind();
  return typeof b === 'string' ? undefined : b.evp.library;
}

function evp(): Evp {
  const b = bind();
  if (typeof b === 'string') throw new Error(`libcrypto EVP unavailable: ${b}`);
  return b.evp;
}

function failed(call: string): never {
  throw new Error(`libcrypto ${call} failed`);
}

const fetched = new Map<string, Ptr>();
function fetchCipher(e: Evp, name: string): Ptr {
  if (!fetched.has(name)) fetched.set(name, e.cipherFetch(null, name, null) || undefined);
  return fetched.get(name);
}

// Contexts are freed with the object that owns them.
const cipherContexts = new FinalizationRegistry<Ptr[]>((ctxs) => {
  for (const c of ctxs) evp().cipherCtxFree(c);
});
const macContexts = new FinalizationRegistry<Ptr>((ctx) => evp().macCtxFree(ctx));

/** Each ArrayBuffer's address, taken once (it never moves once taken). */
const bases = new WeakMap<ArrayBufferLike, Addr>();
function addressOf(e: Evp, b: Uint8Array): Addr {
  const ab = b.buffer;
  let base = bases.get(ab);
  if (base === undefined) bases.set(ab, (base = e.address(ab)));
  return base + b.byteOffset;
}

/**
 * Scratch the calls write to and read from, every use synchronous: the output length
 * (int, and size_t for EVP_MAC_final), GCM's tag, the full HMAC, a sink for GCM's final
 * (which writes nothing), the ESN high bits.
 */
const SCRATCH = new ArrayBuffer(192);
const scratch = new Uint8Array(SCRATCH);
const outLen = new Int32Array(SCRATCH, 0, 1);
const OUTL = 0;
const OUTL_SIZE_T = 8;
const TAG = 16;
const MAC = 32;
const SINK = 96;
const ESN_HI = 128;
let scratchAt: Addr | undefined;
const scratchAddress = (e: Evp): Addr => (scratchAt ??= addressOf(e, scratch));

/**
 * The address of a buffer that is passed again and again (ESP hands over the same IV and
 * AAD scratch for every packet): remembered for the last one seen in this slot.
 */
class AddressMemo {
  #buf: Uint8Array | undefined;
  #at = 0;

  of(e: Evp, b: Uint8Array): Addr {
    if (b !== this.#buf) {
      this.#buf = b;
      this.#at = addressOf(e, b);
    }
    return this.#at;
  }
}

class EvpCipher implements SaCipher {
  readonly decryptsInPlace = true;
  readonly #e: Evp;
  readonly #gcm: boolean;
  readonly #tagBytes: number;
  readonly #encCtx: Addr;
  readonly #decCtx: Addr;
  readonly #iv = new AddressMemo();
  readonly #aad = new AddressMemo();

  constructor(e: Evp, cipher: Ptr, alg: EncryptAlgorithm, key: Uint8Array) {
    this.#e = e;
    this.#gcm = alg.mode === 'gcm';
    this.#tagBytes = alg.icvBytes;
    // One context per direction, keyed now, so that no key bytes stay in this object.
    const ctxs: Ptr[] = [];
    for (const enc of [1, 0]) {
      const ctx = e.cipherCtxNew();
      if (!ctx) failed('EVP_CIPHER_CTX_new');
      ctxs.push(ctx);
      if (e.cipherKey(ctx, cipher, null, key, null, enc) !== 1) {
        for (const c of ctxs) e.cipherCtxFree(c);
        failed('EVP_CipherInit_ex');
      }
      e.setPadding(ctx, 0);
    }
    this.#encCtx = Number(ctxs[0]);
    this.#decCtx = Number(ctxs[1]);
    cipherContexts.register(this, ctxs);
  }

  encrypt(buf: Buffer, off: number, len: number, iv: Buffer, aad: Buffer | undefined, tagOff: number): void {
    const e = this.#e;
    const ctx = this.#encCtx;
    const s = scratchAddress(e);
    const p = addressOf(e, buf) + off;
    if (e.cipherInit(ctx, 0, 0, 0, this.#iv.of(e, iv), 1) !== 1) failed('EVP_CipherInit_ex');
    if (this.#gcm && e.cipherUpdate(ctx, 0, s + OUTL, this.#aad.of(e, aad!), aad!.length) !== 1) failed('EVP_CipherUpdate (AAD)');
    if (e.cipherUpdate(ctx, p, s + OUTL, p, len) !== 1 || outLen[0] !== len) failed('EVP_CipherUpdate');
    if (!this.#gcm) return;
    if (e.cipherFinal(ctx, s + SINK, s + OUTL) !== 1) failed('EVP_CipherFinal_ex');
    if (e.cipherCtrl(ctx, EVP_CTRL_AEAD_GET_TAG, this.#tagBytes, s + TAG) !== 1) failed('EVP_CIPHER_CTX_ctrl (tag)');
    for (let i = 0; i < this.#tagBytes; i++) buf[tagOff + i] = scratch[TAG + i];
  }

  decrypt(src: Buffer, off: number, len: number, iv: Buffer, aad: Buffer | undefined, tagOff: number, inPlace = false): Buffer | undefined {
    const e = this.#e;
    const ctx = this.#decCtx;
    const s = scratchAddress(e);
    if (e.cipherInit(ctx, 0, 0, 0, this.#iv.of(e, iv), 0) !== 1) failed('EVP_CipherInit_ex');
    const from = addressOf(e, src);
    if (this.#gcm) {
      if (e.cipherCtrl(ctx, EVP_CTRL_AEAD_SET_TAG, this.#tagBytes, from + tagOff) !== 1) failed('EVP_CIPHER_CTX_ctrl (tag)');
      if (e.cipherUpdate(ctx, 0, s + OUTL, this.#aad.of(e, aad!), aad!.length) !== 1) failed('EVP_CipherUpdate (AAD)');
    }
    const plain = inPlace ? src.subarray(off, off + len) : packetBuffer(len);
    const to = inPlace ? from + off : addressOf(e, plain);
    if (e.cipherUpdate(ctx, to, s + OUTL, from + off, len) !== 1 || outLen[0] !== len) failed('EVP_CipherUpdate');
    // GCM's final checks the tag: anything but 1 is a forgery or corruption.
    if (this.#gcm && e.cipherFinal(ctx, s + SINK, s + OUTL) !== 1) return undefined;
    return plain;
  }
}

/**
 * OSSL_PARAM[] { "digest": name }, END, for EVP_MAC_init. Made once per digest and kept,
 * with the strings it points to, for the life of the process.
 */
const digestParams = new Map<string, { params: Buffer; strings: Buffer[] }>();
function paramsFor(koffi: Koffi, digest: string): Buffer {
  let p = digestParams.get(digest);
  if (!p) {
    const key = Buffer.from('digest\0', 'latin1');
    const value = Buffer.from(`${digest}\0`, 'latin1');
    const params = Buffer.alloc(2 * OSSL_PARAM_BYTES);
    params.writeBigUInt64LE(koffi.address(key), 0);
    wr32(params, 8, OSSL_PARAM_UTF8_STRING);
    params.writeBigUInt64LE(koffi.address(value), 16);
    params.writeBigUInt64LE(BigInt(value.length - 1), 24);
    params.writeBigUInt64LE(OSSL_PARAM_UNMODIFIED, 32);
    p = { params, strings: [key, value] };
    digestParams.set(digest, p);
  }
  return p.params;
}

class EvpMac implements SaMac {
  readonly #e: Evp;
  readonly #icvBytes: number;
  readonly #ctx: Addr;

  constructor(e: Evp, koffi: Koffi, mac: Ptr, alg: AuthAlgorithm, key: Uint8Array) {
    this.#e = e;
    this.#icvBytes = alg.icvBytes;
    const ctx = e.macCtxNew(mac);
    if (!ctx) failed('EVP_MAC_CTX_new');
    if (e.macKey(ctx, key, key.length, paramsFor(koffi, alg.hash)) !== 1) {
      e.macCtxFree(ctx);
      failed('EVP_MAC_init');
    }
    this.#ctx = Number(ctx);
    macContexts.register(this, ctx);
  }

  /** The full HMAC into scratch[MAC, …). */
  #run(data: Buffer, off: number, end: number, esnHi: number | undefined): void {
    const e = this.#e;
    const ctx = this.#ctx;
    const s = scratchAddress(e);
    // A NULL key re-initialises the context with the key it was made with.
    if (e.macInit(ctx, 0, 0, 0) !== 1) failed('EVP_MAC_init');
    if (e.macUpdate(ctx, addressOf(e, data) + off, end - off) !== 1) failed('EVP_MAC_update');
    if (esnHi !== undefined) {
      scratch[ESN_HI] = esnHi >>> 24;
      scratch[ESN_HI + 1] = esnHi >>> 16;
      scratch[ESN_HI + 2] = esnHi >>> 8;
      scratch[ESN_HI + 3] = esnHi;
      if (e.macUpdate(ctx, s + ESN_HI, 4) !== 1) failed('EVP_MAC_update');
    }
    if (e.macFinal(ctx, s + MAC, s + OUTL_SIZE_T, 64) !== 1) failed('EVP_MAC_final');
  }

  sign(data: Buffer, off: number, end: number, esnHi: number | undefined, out: Buffer, outOff: number): void {
    this.#run(data, off, end, esnHi);
    for (let i = 0; i < this.#icvBytes; i++) out[outOff + i] = scratch[MAC + i];
  }

  verify(data: Buffer, off: number, end: number, esnHi: number | undefined): boolean {
    this.#run(data, off, end, esnHi);
    return sameBytes(scratch, MAC, data, end, this.#icvBytes);
  }
}

let hmac: Ptr;
let backend: CryptoBackend | undefined;

/** The EVP backend (call evpUnavailable() first: this throws where it cannot load). */
export function evpBackend(): CryptoBackend {
  if (backend) return backend;
  const b = bind();
  if (typeof b === 'string') throw new Error(`libcrypto EVP unavailable: ${b}`);
  const { evp: e, koffi } = b;
  return (backend = {
    name: 'evp',
    cipher(alg, cipherName, key) {
      const cipher = fetchCipher(e, cipherName);
      return cipher ? new EvpCipher(e, cipher, alg, key) : undefined;
    },
    mac(alg, key) {
      hmac ??= e.macFetch(null, 'HMAC', null) || undefined;
      return hmac ? new EvpMac(e, koffi, hmac, alg, key) : undefined;
    },
  });
}
