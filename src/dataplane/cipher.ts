/**
 * The keyed work an ESP SA does per packet, behind one small interface with two
 * implementations: node:crypto (here; always available) and libcrypto's EVP called
 * through koffi (evp.ts; a cipher context made once per SA and direction, and only a new
 * IV per packet). Both give the same bytes and the same verdicts; which one new SAs use
 * is a process-wide choice: $KLIPS_ESP_CRYPTO (`node` or `evp`) at start, else EVP where
 * it loads and node:crypto where it does not, and setEspCrypto() at run time.
 *
 * The calls work on offsets into the caller's buffers so that a packet is encrypted in
 * place in the one buffer it is built in, with no slices per call where avoidable. IVs,
 * nonces and AAD are passed in buffers the caller owns; both implementations copy them
 * during the call.
 */

import { createCipheriv, createDecipheriv, createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { sameBytes, type AuthAlgorithm, type EncryptAlgorithm } from './algorithms.js';
import { evpBackend, evpUnavailable } from './evp.js';
import { region } from './packet.js';
import { wr32be } from '../wire/bytes.js';

/** One SA's cipher, both directions. */
export interface SaCipher {
  /**
   * Encrypt buf[off, off + len) in place. `iv`: the CBC IV, the RFC 3686 counter block, or
   * the RFC 4106 nonce (salt ‖ IV). GCM also takes `aad` and writes its tag at
   * buf[tagOff, tagOff + tag length).
   */
  encrypt(buf: Buffer, off: number, len: number, iv: Buffer, aad: Buffer | undefined, tagOff: number): void;
  /**
   * Decrypt src[off, off + len) into a new Buffer (src is left as it was), or with
   * `inPlace` over the ciphertext itself where the backend can (the answer is then a view
   * of src; where it cannot, a new Buffer as before). GCM checks the tag at src[tagOff, …)
   * against `aad` and the ciphertext: undefined when it fails.
   */
  decrypt(src: Buffer, off: number, len: number, iv: Buffer, aad: Buffer | undefined, tagOff: number, inPlace?: boolean): Buffer | undefined;
  /** Whether decrypt with `inPlace` gives the plaintext over the ciphertext (src[off, off + len)). */
  readonly decryptsInPlace: boolean;
}

/** One SA's HMAC, truncated to the algorithm's ICV length. */
export interface SaMac {
  /** Write the ICV of data[off, end) (then the ESN high bits, when given) at out[outOff]. */
  sign(data: Buffer, off: number, end: number, esnHi: number | undefined, out: Buffer, outOff: number): void;
  /** Does data[end, end + ICV length) hold the ICV of data[off, end)? Compared in constant time. */
  verify(data: Buffer, off: number, end: number, esnHi: number | undefined): boolean;
}

/** Makes an SA's keyed objects; undefined when this backend cannot run the algorithm. */
export interface CryptoBackend {
  readonly name: EspCryptoName;
  cipher(alg: EncryptAlgorithm, cipherName: string, key: Uint8Array): SaCipher | undefined;
  mac(alg: AuthAlgorithm, key: Uint8Array): SaMac | undefined;
}

export type EspCryptoName = 'node' | 'evp';

// ---------- node:crypto ----------

class NodeCipher implements SaCipher {
  readonly decryptsInPlace = false;
  readonly #name: string;
  readonly #key: KeyObject;
  readonly #gcm: boolean;
  readonly #opts: { authTagLength: number } | undefined;
  /** The received tag, copied here for setAuthTag (it reads it during the call). */
  readonly #tag: Buffer;

  constructor(name: string, key: KeyObject, alg: EncryptAlgorithm) {
    this.#name = name;
    this.#key = key;
    this.#gcm = alg.mode === 'gcm';
    this.#opts = this.#gcm ? { authTagLength: alg.icvBytes } : undefined;
    this.#tag = Buffer.alloc(alg.icvBytes);
  }

  encrypt(buf: Buffer, off: number, len: number, iv: Buffer, aad: Buffer | undefined, tagOff: number): void {
    const plain = region(buf, off, len);
    if (this.#gcm) {
      const c = createCipheriv(this.#name as 'aes-128-gcm', this.#key, iv, this.#opts);
      c.setAAD(aad!);
      buf.set(c.update(plain), off);
      c.final();
      buf.set(c.getAuthTag(), tagOff);
      return;
    }
    // CBC on whole blocks and CTR give all their output from update(), so neither final()
    // nor setAutoPadding(false) is called (padding would only be added by final()).
    buf.set(createCipheriv(this.#name, this.#key, iv).update(plain), off);
  }

  decrypt(src: Buffer, off: number, len: number, iv: Buffer, aad: Buffer | undefined, tagOff: number): Buffer | undefined {
    const ct = region(src, off, len);
    if (this.#gcm) {
      const d = createDecipheriv(this.#name as 'aes-128-gcm', this.#key, iv, this.#opts);
      d.setAAD(aad!);
      const tag = this.#tag;
      for (let i = 0; i < tag.length; i++) tag[i] = src[tagOff + i];
      d.setAuthTag(tag);
      const plain = d.update(ct);
      try {
        d.final();
      } catch {
        return undefined;
      }
      return plain;
    }
    // Without padding, update() gives every block (with it, it would hold the last one back
    // for final()); whole blocks were checked by the caller.
    const d = createDecipheriv(this.#name, this.#key, iv);
    d.setAutoPadding(false);
    return d.update(ct);
  }
}

class NodeMac implements SaMac {
  readonly #alg: AuthAlgorithm;
  readonly #key: KeyObject;
  readonly #hi = Buffer.alloc(4);

  constructor(alg: AuthAlgorithm, key: KeyObject) {
    this.#alg = alg;
    this.#key = key;
  }

  #digest(data: Buffer, off: number, end: number, esnHi: number | undefined): Buffer {
    const h = createHmac(this.#alg.hash, this.#key).update(off === 0 && end === data.length ? data : region(data, off, end - off));
    if (esnHi !== undefined) {
      wr32be(this.#hi, 0, esnHi >>> 0);
      h.update(this.#hi);
    }
    return h.digest();
  }

  sign(data: Buffer, off: number, end: number, esnHi: number | undefined, out: Buffer, outOff: number): void {
    const d = this.#digest(data, off, end, esnHi);
    for (let i = 0; i < this.#alg.icvBytes; i++) out[outOff + i] = d[i];
  }

  verify(data: Buffer, off: number, end: number, esnHi: number | undefined): boolean {
    return sameBytes(this.#digest(data, off, end, esnHi), 0, data, end, this.#alg.icvBytes);
  }
}

export const nodeBackend: CryptoBackend = {
  name: 'node',
  cipher: (alg, cipherName, key) => new NodeCipher(cipherName, createSecretKey(key), alg),
  mac: (alg, key) => new NodeMac(alg, createSecretKey(key)),
};

// ---------- the choice ----------

let current: CryptoBackend | undefined;

function initial(): CryptoBackend {
  const want = process.env.KLIPS_ESP_CRYPTO;
  if (want === 'node') return nodeBackend;
  // 'evp', or no preference: EVP where libcrypto can be reached through koffi.
  return evpUnavailable() ? nodeBackend : evpBackend();
}

/** The backend SAs are prepared with now. */
export function espCryptoBackend(): CryptoBackend {
  return (current ??= initial());
}

/** Which backend SAs are prepared with now: 'evp' (libcrypto through koffi) or 'node' (node:crypto). */
export function espCrypto(): EspCryptoName {
  return espCryptoBackend().name;
}

/**
 * Use `name` for every SA from now on (an SA prepared with the other keeps its objects
 * and they are used again when it is switched back). Throws if 'evp' cannot be loaded.
 */
export function setEspCrypto(name: EspCryptoName): void {
  if (name === 'node') {
    current = nodeBackend;
    return;
  }
  const why = evpUnavailable();
  if (why) throw new Error(`libcrypto EVP unavailable: ${why}`);
  current = evpBackend();
}

export { evpUnavailable };
