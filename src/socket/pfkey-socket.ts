/**
 * A PF_KEY socket on an engine, in process: send() is the kernel's pfkey_sendmsg (it
 * returns 0 or the errno sendmsg would fail with), recv() is pfkey_recvmsg. Each socket
 * has a bounded receive queue, like a socket's receive buffer: a message that does not
 * fit is dropped for this socket alone, counted, and the next read reports ENOBUFS once.
 * Registration (SADB_REGISTER), promiscuous mode and X_PCHANGE subscription live here
 * and end when the socket closes.
 */

import { ERRNO, PfkeyError } from '../wire/index.js';
import type { Endpoint, Engine } from '../engine/engine.js';

export interface SocketOptions {
  /** Receive queue size in bytes (Linux's default rmem is 212992). */
  rcvbuf?: number;
}

let nextId = 1;

export class PfkeySocket implements Endpoint {
  readonly id = nextId++;
  readonly registered = new Set<number>();
  promisc = false;
  pchange = false;
  readonly rcvbuf: number;
  /** Messages dropped because the receive queue was full. */
  dropped = 0;
  private queue: Uint8Array[] = [];
  private head = 0;
  private queued = 0;
  private overflow = false;
  private isShutdown = false;
  private isClosed = false;
  private drainWaiters: Array<() => void> = [];
  private readableWaiters: Array<() => void> = [];
  private listeners: Array<(msg: Uint8Array) => void> = [];

  constructor(private readonly engine: Engine, opts: SocketOptions = {}) {
    this.rcvbuf = opts.rcvbuf ?? 212992;
    engine.attach(this);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Messages waiting to be read. */
  get pending(): number {
    return this.queue.length - this.head;
  }

  // ---------- Endpoint (called by the engine) ----------

  deliver(msg: Uint8Array): boolean {
    if (this.isClosed) return false;
    if (this.listeners.length && this.pending === 0) {
      for (const l of this.listeners) l(msg);
      return true;
    }
    if (this.queued + msg.length > this.rcvbuf) {
      this.dropped++;
      this.overflow = true;
      return false;
    }
    this.queue.push(msg);
    this.queued += msg.length;
    const w = this.readableWaiters;
    this.readableWaiters = [];
    for (const f of w) f();
    return true;
  }

  room(): number {
    return this.rcvbuf - this.queued;
  }

  onDrain(cb: () => void): void {
    this.drainWaiters.push(cb);
  }

  // ---------- the client's side ----------

  /** Send one message; 0 on success, else the errno (also seen as an errno reply where KLIPS sends one). */
  send(bytes: Uint8Array): number {
    if (this.isClosed) return ERRNO.EBADF;
    if (this.isShutdown) return ERRNO.EPIPE;
    return this.engine.handle(this, bytes);
  }

  /** The next queued message, or undefined. After an overflow, throws ENOBUFS once. */
  recv(): Uint8Array | undefined {
    if (this.overflow) {
      this.overflow = false;
      throw new PfkeyError(ERRNO.ENOBUFS, `receive queue overflowed: ${this.dropped} message(s) dropped so far`);
    }
    if (this.head >= this.queue.length) return undefined;
    const m = this.queue[this.head++];
    this.queued -= m.length;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (this.drainWaiters.length && this.queued <= this.rcvbuf / 2) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
    }
    return m;
  }

  /** Everything queued now (stops before an ENOBUFS report, which the next recv() throws). */
  recvAll(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.overflow) break;
      const m = this.recv();
      if (!m) break;
      out.push(m);
    }
    return out;
  }

  /** Resolves when a message is queued (or the socket closes). */
  readable(): Promise<void> {
    if (this.pending > 0 || this.overflow || this.isClosed) return Promise.resolve();
    return new Promise((res) => this.readableWaiters.push(res));
  }

  /** Messages as they arrive, until the socket is closed. ENOBUFS is thrown into the loop. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    while (!this.isClosed || this.pending > 0) {
      const m = this.recv();
      if (m) yield m;
      else if (this.isClosed) return;
      else await this.readable();
    }
  }

  /**
   * Push delivery: `fn` receives each message as soon as it is delivered while the queue
   * is empty (the daemon uses this to write straight to its connection). Queued
   * messages still have to be read with recv().
   */
  onMessage(fn: (msg: Uint8Array) => void): void {
    this.listeners.push(fn);
  }

  /** No more sends (EPIPE afterwards); messages can still be read. */
  shutdown(): void {
    this.isShutdown = true;
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.engine.detach(this);
    this.listeners = [];
    const w = this.readableWaiters;
    this.readableWaiters = [];
    for (const f of w) f();
  }
}
