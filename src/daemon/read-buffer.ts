/**
 * Where klipsd's PF_KEY connections read into: one buffer the server owns, reused by every
 * read of every connection, instead of a new 64 KiB buffer per read (Node's default).
 *
 * A read is handled to its end before the next read of any connection starts (one
 * thread, one read at a time), so one buffer serves them all. What this asks of the code
 * behind it: nothing may keep a view of a read's bytes once its handling returns. The
 * frame decoder copies a message split across reads; the engine copies what it stores
 * and builds the replies it queues. `poison` (tests) fills the buffer with POISON_BYTE
 * after each read, so a view kept too long reads garbage at once instead of the next
 * read's bytes some time later.
 *
 * Node reads into a caller's buffer only for sockets it creates with `onread`; a server's
 * accepted sockets have no such option. So the listener pauses each accepted socket
 * before it reads (`pauseOnConnect`), and adopt() moves its handle into a socket made
 * with `onread` (the handle takes the new socket as its owner; the old one is left
 * without a handle and never used). Node's own `handle` option of net.Socket is how its
 * cluster and child_process modules wrap handles they receive.
 */

import net from 'node:net';

/** Bytes per read: libuv's own default read size. */
export const READ_BUFFER_BYTES = 64 * 1024;

/** What `poison` fills the buffer with after each read. */
export const POISON_BYTE = 0xa5;

/** A read: bytes [0, n) of `buf`, valid only until the handler returns. */
export type ReadHandler = (buf: Uint8Array, n: number) => void;

type HandleSocket = net.Socket & { _handle?: object | null; _server?: net.Server | null; server?: net.Server | null };

export class ReadBuffer {
  private readonly buf = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);

  constructor(private readonly poison = false) {}

  /**
   * A socket for the accepted (and paused) `accepted` that reads into this buffer and
   * hands each read to `onRead`; it reads from now on. Where Node gives no handle to
   * move, `accepted` itself, reading through its 'data' events.
   */
  adopt(accepted: net.Socket, onRead: ReadHandler): net.Socket {
    const old = accepted as HandleSocket;
    const handle = old._handle;
    if (handle === undefined || handle === null) {
      accepted.on('data', (chunk: Buffer) => onRead(chunk, chunk.length));
      accepted.resume();
      return accepted;
    }
    const buf = this.buf;
    const poison = this.poison;
    const callback = poison
      ? (n: number): void => {
        try {
          onRead(buf, n);
        } finally {
          buf.fill(POISON_BYTE);
        }
      }
      : (n: number): void => onRead(buf, n);
    old._handle = null;
    const s = new net.Socket({
      handle,
      allowHalfOpen: accepted.allowHalfOpen,
      readable: true,
      writable: true,
      onread: { buffer: buf, callback },
    } as net.SocketConstructorOpts) as HandleSocket;
    // The server counts the connection on its accepting socket and uncounts it when the
    // socket it holds is destroyed; that is now this one.
    s.server = old.server ?? null;
    s._server = old._server ?? null;
    return s;
  }
}
