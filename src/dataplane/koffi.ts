/**
 * koffi, the FFI library through which the data plane reaches libc (the runtime's TUN
 * device and sockets, libc.ts) and libcrypto (ESP's EVP backend, evp.ts): loaded once, on
 * first use, and typed as far as klips calls it. Where it cannot be loaded the answer is
 * an Error saying why, for each caller to turn into its own refusal or fallback.
 */

import { createRequire } from 'node:module';

export type KoffiFn = ((...args: unknown[]) => number) & { async: (...args: unknown[]) => void };

export interface KoffiLibrary {
  func(decl: string): KoffiFn;
  func(name: string, result: string, params: string[]): KoffiFn;
}

export interface Koffi {
  load(path: string | null, options?: { deep?: boolean }): KoffiLibrary;
  alloc(type: string, n: number): unknown;
  view(ptr: unknown, len: number): ArrayBuffer;
  address(value: unknown): bigint;
  errno(): number;
  /** A C function type, a pointer to it, and a JS function made callable from C as one. */
  proto(decl: string): unknown;
  pointer(type: unknown): unknown;
  register(fn: (...args: unknown[]) => void, type: unknown): unknown;
  unregister(cb: unknown): void;
}

let loaded: Koffi | Error | undefined;

/** koffi, or an Error saying why it could not be loaded (the same answer every call). */
export function loadKoffi(): Koffi | Error {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)('koffi') as Koffi;
    } catch (e) {
      loaded = new Error(`the koffi FFI library could not be loaded (${(e as Error).message.split('\n')[0]})`);
    }
  }
  return loaded;
}
