/**
 * Framing PF_KEY messages on a byte stream, and the header-only errno replies sent on
 * one. A PF_KEY message states its own length (`sadb_msg_len`, 8-byte units, bytes 4-5
 * of the header, host order), so a client writes whole messages back to back and klipsd
 * answers with whole messages; there is no extra envelope. A header that cannot be
 * framed (length under 2 units, i.e. shorter than the header itself, or over
 * MAX_MESSAGE_BYTES) ends the connection: the stream has lost its message boundaries.
 * klipsd frames its connections with this, and `klips` its replies.
 *
 * The decoder hands out views into the chunks it is given (no copy) for every message
 * that lies inside one chunk; only a message split across chunks is assembled in a
 * buffer of exactly its size, so a message trickling in byte by byte costs O(size).
 */

import { SADB_MSG_HDR_LEN } from './constants.js';
import { ERRNO } from './errno.js';
import { readHeader } from './header.js';
import { headerOnly } from './message.js';

/** The largest message klipsd frames: 64 KiB (KLIPS's own limit is lower still). */
export const MAX_MESSAGE_BYTES = 64 * 1024;

export interface FrameError {
  /** Why the stream cannot be framed. */
  reason: string;
  /** The 16 offending header bytes (a copy). */
  header: Uint8Array;
  /** The length the header claimed, in bytes. */
  claimed: number;
}

/** Length in bytes a header claims, or a FrameError reason if it cannot be framed. */
function frameLength(units: number): number {
  return units * 8;
}

function badLength(units: number): string | undefined {
  if (units < 2) return `sadb_msg_len ${units} is less than the 2 units of a header`;
  if (units * 8 > MAX_MESSAGE_BYTES) return `sadb_msg_len ${units} (${units * 8} bytes) exceeds the ${MAX_MESSAGE_BYTES}-byte maximum`;
  return undefined;
}

/** Bytes [off, off + len) of `buf` as a message of their own: `buf` itself when it is exactly that, else a view. */
export function frameAt(buf: Uint8Array, off: number, len: number): Uint8Array {
  return off === 0 && len === buf.length ? buf : buf.subarray(off, off + len);
}

export class FrameDecoder {
  /** A message (or, until its header is complete, a header) being assembled. */
  private part: Uint8Array | null = null;
  private filled = 0;
  private failed: FrameError | null = null;

  /** Bytes of an incomplete message held (0 when the stream is at a message boundary). */
  get buffered(): number {
    return this.part ? this.filled : 0;
  }

  /**
   * Where in the next chunk the first message to start there starts: the bytes still
   * missing from the message held (0 at a message boundary), or -1 while its length is
   * not known (fewer than 6 of its bytes are here).
   */
  get nextStart(): number {
    const part = this.part;
    if (part === null) return 0;
    if (part.length > SADB_MSG_HDR_LEN) return part.length - this.filled;
    if (this.filled < 6) return -1;
    const rest = (part[4] | (part[5] << 8)) * 8 - this.filled;
    return rest > 0 ? rest : -1;
  }

  /** The bytes of the incomplete message held so far (a view; empty at a message boundary). */
  get partial(): Uint8Array {
    return this.part ? this.part.subarray(0, this.filled) : new Uint8Array(0);
  }

  /** The error that stopped this decoder, if any. */
  get error(): FrameError | null {
    return this.failed;
  }

  /**
   * Feed a chunk; `onFrame` is called for each complete message, in order. Returns a
   * FrameError when the stream cannot be framed (the decoder then refuses everything).
   */
  push(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): FrameError | undefined {
    return this.pushAt(chunk, (buf, off, len) => onFrame(frameAt(buf, off, len)));
  }

  /**
   * push() that names each message by where it lies instead of making a view of it:
   * bytes [off, off + len) of `buf`, which is the chunk itself, or a buffer of exactly
   * the message when it was assembled from several chunks.
   */
  pushAt(chunk: Uint8Array, onFrame: (buf: Uint8Array, off: number, len: number) => void): FrameError | undefined {
    if (this.failed) return this.failed;
    let off = 0;
    const n = chunk.length;
    if (this.part !== null) {
      for (;;) {
        const part: Uint8Array = this.part;
        const take = Math.min(part.length - this.filled, n - off);
        part.set(chunk.subarray(off, off + take), this.filled);
        this.filled += take;
        off += take;
        if (this.filled < part.length) return undefined;
        if (part.length === SADB_MSG_HDR_LEN && this.filled === SADB_MSG_HDR_LEN) {
          // The header is complete: now the real length is known.
          const units = part[4] | (part[5] << 8);
          const why = badLength(units);
          if (why) return this.fail(why, part, 0, units);
          const len = frameLength(units);
          if (len > SADB_MSG_HDR_LEN) {
            const whole = new Uint8Array(len);
            whole.set(part);
            this.part = whole;
            continue;
          }
        }
        this.part = null;
        this.filled = 0;
        onFrame(part, 0, part.length);
        if (this.failed) return this.failed;
        break;
      }
    }
    while (n - off >= SADB_MSG_HDR_LEN) {
      const units = chunk[off + 4] | (chunk[off + 5] << 8);
      const len = units * 8;
      if (units < 2 || len > MAX_MESSAGE_BYTES) return this.fail(badLength(units)!, chunk, off, units);
      if (n - off < len) break;
      onFrame(chunk, off, len);
      if (this.failed) return this.failed;
      off += len;
    }
    const rest = n - off;
    if (rest > 0) {
      let size = SADB_MSG_HDR_LEN;
      if (rest >= SADB_MSG_HDR_LEN) size = frameLength(chunk[off + 4] | (chunk[off + 5] << 8));
      const part = new Uint8Array(size);
      part.set(chunk.subarray(off));
      this.part = part;
      this.filled = rest;
    }
    return undefined;
  }

  /** Stop decoding (e.g. when the connection goes away). */
  reset(): void {
    this.part = null;
    this.filled = 0;
  }

  private fail(reason: string, buf: Uint8Array, off: number, units: number): FrameError {
    this.failed = { reason, header: buf.slice(off, off + SADB_MSG_HDR_LEN), claimed: units * 8 };
    this.part = null;
    this.filled = 0;
    return this.failed;
  }
}

/** A header-only message carrying `errno` in answer to `bytes` (a message or a bare header): type, SA type, seq and pid copied. */
export function errnoReplyTo(bytes: Uint8Array, errno: number): Uint8Array {
  const h = readHeader(bytes);
  return headerOnly({ type: h.type, satype: h.satype, errno, seq: h.seq, pid: h.pid });
}

/** The answer to a header that cannot be framed: errno EMSGSIZE, the header's type, SA type, seq and pid copied. */
export function framingErrorReply(header: Uint8Array): Uint8Array {
  return errnoReplyTo(header, ERRNO.EMSGSIZE);
}
