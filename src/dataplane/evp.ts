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
 */

import { createRequire } from 'node:module';
import os from 'node:os';
import { sameBytes, type AuthAlgorithm, type EncryptAlgorithm } from './algorithms.js';
import type { CryptoBackend, SaCipher, SaMac } from './cipher.js';
import { packetBuffer, region } from './packet.js';

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
type Fn = (...args: unknown[]) => number;

interface Koffi {
  load(path: string | null, options?: { deep?: boolean }): { func(decl: string): Fn };
  opaque(name: string): unknown;
  address(value: unknown): bigint;
}

/** The libcrypto calls used, bound once. */
interface Evp {
  library: string;
  cipherFetch(libctx: null, name: string, props: null): Ptr;
  cipherCtxNew(): Ptr;
  cipherCtxFree(ctx: Ptr): void;
  cipherInit(ctx: Ptr, cipher: Ptr, impl: null, key: Uint8Array | null, iv: Uint8Array | null, enc: number): number;
  cipherUpdate(ctx: Ptr, out: Uint8Array | null, outl: Int32Array, input: Uint8Array, inl: number): number;
  cipherFinal(ctx: Ptr, out: Uint8Array, outl: Int32Array): number;
  cipherCtrl(ctx: Ptr, type: number, arg: number, ptr: Uint8Array): number;
  setPadding(ctx: Ptr, pad: number): number;
  macFetch(libctx: null, name: string, props: null): Ptr;
  macCtxNew(mac: Ptr): Ptr;
  macCtxFree(ctx: Ptr): void;
  macInit(ctx: Ptr, key: Uint8Array | null, keylen: number, params: Uint8Array | null): number;
  macUpdate(ctx: Ptr, data: Uint8Array, len: number): number;
  macFinal(ctx: Ptr, out: Uint8Array, outl: Uint8Array, outsize: number): number;
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
      const version = f('const char *OpenSSL_version(int type)') as unknown as (t: number) => string;
      const evp: Evp = {
        library: `${label} (${version(0)})`,
        cipherFetch: f('EVP_CIPHER *EVP_CIPHER_fetch(void *libctx, const char *name, const char *props)') as Evp['cipherFetch'],
        cipherCtxNew: f('EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void)') as Evp['cipherCtxNew'],
        cipherCtxFree: f('void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx)') as Evp['cipherCtxFree'],
        cipherInit: f('int EVP_CipherInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, void *impl, const uint8_t *key, const uint8_t *iv, int enc)') as Evp['cipherInit'],
        cipherUpdate: f('int EVP_CipherUpdate(EVP_CIPHER_CTX *ctx, uint8_t *out, int *outl, const uint8_t *in, int inl)') as Evp['cipherUpdate'],
        cipherFinal: f('int EVP_CipherFinal_ex(EVP_CIPHER_CTX *ctx, uint8_t *out, int *outl)') as Evp['cipherFinal'],
        cipherCtrl: f('int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, uint8_t *ptr)') as Evp['cipherCtrl'],
        setPadding: f('int EVP_CIPHER_CTX_set_padding(EVP_CIPHER_CTX *ctx, int pad)') as Evp['setPadding'],
        macFetch: f('EVP_MAC *EVP_MAC_fetch(void *libctx, const char *name, const char *props)') as Evp['macFetch'],
        macCtxNew: f('EVP_MAC_CTX *EVP_MAC_CTX_new(EVP_MAC *mac)') as Evp['macCtxNew'],
        macCtxFree: f('void EVP_MAC_CTX_free(EVP_MAC_CTX *ctx)') as Evp['macCtxFree'],
        macInit: f('int EVP_MAC_init(EVP_MAC_CTX *ctx, const uint8_t *key, size_t keylen, const uint8_t *params)') as Evp['macInit'],
        macUpdate: f('int EVP_MAC_update(EVP_MAC_CTX *ctx, const uint8_t *data, size_t len)') as Evp['macUpdate'],
        macFinal: f('int EVP_MAC_final(EVP_MAC_CTX *ctx, uint8_t *out, uint8_t *outl, size_t outsize)') as Evp['macFinal'],
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
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (e) {
    return (bound = `the koffi FFI library could not be loaded (${(e as Error).message.split('\n')[0]})`);
  }
  try {
    for (const t of ['EVP_CIPHER', 'EVP_CIPHER_CTX', 'EVP_MAC', 'EVP_MAC_CTX']) koffi.opaque(t);
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

// Scratch the calls write to and read from; every call uses them synchronously.
const outl = new Int32Array(1);
const sink = Buffer.alloc(32);

class EvpCipher implements SaCipher {
  readonly #e: Evp;
  readonly #gcm: boolean;
  readonly #tagBytes: number;
  /** The tag GCM reads (decrypt) or writes (encrypt) during the call. */
  readonly #tag: Buffer;
  readonly #encCtx: Ptr;
  readonly #decCtx: Ptr;

  constructor(e: Evp, cipher: Ptr, alg: EncryptAlgorithm, key: Uint8Array) {
    this.#e = e;
    this.#gcm = alg.mode === 'gcm';
    this.#tagBytes = alg.icvBytes;
    this.#tag = Buffer.alloc(alg.icvBytes);
    // One context per direction, keyed now, so that no key bytes stay in this object.
    const ctxs: Ptr[] = [];
    for (const enc of [1, 0]) {
      const ctx = e.cipherCtxNew();
      if (!ctx) failed('EVP_CIPHER_CTX_new');
      ctxs.push(ctx);
      if (e.cipherInit(ctx, cipher, null, key, null, enc) !== 1) {
        for (const c of ctxs) e.cipherCtxFree(c);
        failed('EVP_CipherInit_ex');
      }
      e.setPadding(ctx, 0);
    }
    [this.#encCtx, this.#decCtx] = ctxs;
    cipherContexts.register(this, ctxs);
  }

  encrypt(buf: Buffer, off: number, len: number, iv: Buffer, aad: Buffer | undefined, tagOff: number): void {
    const e = this.#e;
    const ctx = this.#encCtx;
    if (e.cipherInit(ctx, null, null, null, iv, 1) !== 1) failed('EVP_CipherInit_ex');
    if (this.#gcm && e.cipherUpdate(ctx, null, outl, aad!, aad!.length) !== 1) failed('EVP_CipherUpdate (AAD)');
    const p = region(buf, off, len);
    if (e.cipherUpdate(ctx, p, outl, p, len) !== 1 || outl[0] !== len) failed('EVP_CipherUpdate');
    if (!this.#gcm) return;
    if (e.cipherFinal(ctx, sink, outl) !== 1) failed('EVP_CipherFinal_ex');
    const tag = this.#tag;
    if (e.cipherCtrl(ctx, EVP_CTRL_AEAD_GET_TAG, this.#tagBytes, tag) !== 1) failed('EVP_CIPHER_CTX_ctrl (tag)');
    for (let i = 0; i < tag.length; i++) buf[tagOff + i] = tag[i];
  }

  decrypt(src: Buffer, off: number, len: number, iv: Buffer, aad: Buffer | undefined, tagOff: number): Buffer | undefined {
    const e = this.#e;
    const ctx = this.#decCtx;
    if (e.cipherInit(ctx, null, null, null, iv, 0) !== 1) failed('EVP_CipherInit_ex');
    if (this.#gcm) {
      const tag = this.#tag;
      for (let i = 0; i < tag.length; i++) tag[i] = src[tagOff + i];
      if (e.cipherCtrl(ctx, EVP_CTRL_AEAD_SET_TAG, this.#tagBytes, tag) !== 1) failed('EVP_CIPHER_CTX_ctrl (tag)');
      if (e.cipherUpdate(ctx, null, outl, aad!, aad!.length) !== 1) failed('EVP_CipherUpdate (AAD)');
    }
    const plain = packetBuffer(len);
    if (e.cipherUpdate(ctx, plain, outl, region(src, off, len), len) !== 1 || outl[0] !== len) failed('EVP_CipherUpdate');
    // GCM's final checks the tag: anything but 1 is a forgery or corruption.
    if (this.#gcm && e.cipherFinal(ctx, sink, outl) !== 1) return undefined;
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
    params.writeUInt32LE(OSSL_PARAM_UTF8_STRING, 8);
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
  readonly #ctx: Ptr;
  readonly #out = Buffer.alloc(64);
  readonly #outLen = Buffer.alloc(8);
  readonly #hi = Buffer.alloc(4);

  constructor(e: Evp, koffi: Koffi, mac: Ptr, alg: AuthAlgorithm, key: Uint8Array) {
    this.#e = e;
    this.#icvBytes = alg.icvBytes;
    const ctx = e.macCtxNew(mac);
    if (!ctx) failed('EVP_MAC_CTX_new');
    if (e.macInit(ctx, key, key.length, paramsFor(koffi, alg.hash)) !== 1) {
      e.macCtxFree(ctx);
      failed('EVP_MAC_init');
    }
    this.#ctx = ctx;
    macContexts.register(this, ctx);
  }

  /** The full HMAC into this.#out. */
  #run(data: Buffer, off: number, end: number, esnHi: number | undefined): void {
    const e = this.#e;
    const ctx = this.#ctx;
    // A NULL key re-initialises the context with the key it was made with.
    if (e.macInit(ctx, null, 0, null) !== 1) failed('EVP_MAC_init');
    const d = off === 0 && end === data.length ? data : region(data, off, end - off);
    if (e.macUpdate(ctx, d, end - off) !== 1) failed('EVP_MAC_update');
    if (esnHi !== undefined) {
      this.#hi.writeUInt32BE(esnHi >>> 0, 0);
      if (e.macUpdate(ctx, this.#hi, 4) !== 1) failed('EVP_MAC_update');
    }
    if (e.macFinal(ctx, this.#out, this.#outLen, this.#out.length) !== 1) failed('EVP_MAC_final');
  }

  sign(data: Buffer, off: number, end: number, esnHi: number | undefined, out: Buffer, outOff: number): void {
    this.#run(data, off, end, esnHi);
    const o = this.#out;
    for (let i = 0; i < this.#icvBytes; i++) out[outOff + i] = o[i];
  }

  verify(data: Buffer, off: number, end: number, esnHi: number | undefined): boolean {
    this.#run(data, off, end, esnHi);
    return sameBytes(this.#out, data, end, this.#icvBytes);
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
