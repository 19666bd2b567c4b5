/**
 * A PF_KEY socket on an engine, in process: send() is the kernel's pfkey_sendmsg (it
 * returns 0 or the errno sendmsg would fail with), recv() is pfkey_recvmsg. A socket
 * speaks one dialect, KLIPS's numbering (the default) or the KAME dialect's (Linux's),
 * chosen when it is made: the engine reads and answers it in that numbering, and send()
 * fails as that kernel's does (sendErrno: KLIPS with every refusal's errno, Linux only
 * when the header cannot be taken). Each socket
 * has a bounded receive queue, like a socket's receive buffer: a message that does not
 * fit is dropped for this socket alone, counted, and the next read reports ENOBUFS once.
 * Registration (SADB_REGISTER), promiscuous mode and X_PCHANGE subscription live here
 * and end when the socket closes.
 *
 * What counts against `rcvbuf` is everything held for the client: the queue, plus bytes
 * its owner took out with take() (or added with hold()) and still holds, until it
 * release()s them: klipsd's connection write buffer. Sockets may also share a ReceiveBudget, a bound on the sum over all of
 * them, so that many clients that never read cannot add up to unbounded memory.
 *
 * The queue holds messages as the engine delivered them (deliver), and runs of messages
 * the engine had copied in (deliverCopy, for the replies it writes into a scratch of its
 * own): consecutive copies go back to back into a chunk of this socket's, so a burst of
 * replies costs no object per message, and klipsd takes a whole run out as one buffer
 * for one write (takeRun). A message read out of a chunk (recv) stays as it was: that
 * socket's chunks are only ever appended to. Where every byte goes out through take and
 * comes back through release (klipsd: once written), an emptied chunk is filled again
 * from its start.
 */

import { ERRNO, PfkeyError, type Dialect } from '../wire/index.js';
import { APPEND_DROPPED, APPEND_PUSH, sendErrno, type Endpoint, type Engine, type Verdict } from '../engine/engine.js';


const CLOSED: Verdict = Object.freeze({ errno: ERRNO.EBADF, stage: 'header', why: 'the socket is closed' });
const SHUT_DOWN: Verdict = Object.freeze({ errno: ERRNO.EPIPE, stage: 'header', why: 'the socket is shut down for sending' });

/**
 * A byte bound shared by many sockets: what they all hold together stays under `limit`,
 * except that a socket holding less than `reserve` may still take a message, so a
 * client that reads keeps being served while others that never read exhaust the total.
 * The sum is therefore at most limit + sockets x reserve.
 */
export class ReceiveBudget {
  /** Bytes held now, over every socket sharing this budget. */
  used = 0;
  /** Messages dropped because the total was reached. */
  dropped = 0;

  constructor(public limit: number, public reserve: number) {}
}

export interface SocketOptions {
  /** Receive buffer in bytes: queue plus held (Linux's default rmem is 212992). */
  rcvbuf?: number;
  /** A total shared with other sockets. */
  budget?: ReceiveBudget;
  /** The numbering this socket speaks (default 'klips'). */
  dialect?: Dialect;
}

let nextId = 1;

/** Messages copied back to back into a chunk: bytes [start, end) of buf, `count` messages. */
interface Run {
  buf: Uint8Array;
  start: number;
  end: number;
  count: number;
}

/** What a read slot of the queue holds, so that it keeps no message (or chunk) alive. */
const EMPTY_RUN: Run = Object.freeze({ buf: new Uint8Array(0), start: 0, end: 0, count: 0 }) as Run;

/** Chunk sizes for copied messages: a socket starts small and doubles up to the largest. */
const MIN_CHUNK = 4096;
const MAX_CHUNK = 64 * 1024;
/** Retired chunks a socket tracks for recycle() at most. */
const RETIRED_CHUNKS = 8;
/**
 * Full-size chunks no socket's queue or owner uses any more, for any socket's next chunk
 * (recycle()); at most FREE_CHUNKS of them (1 MiB), whatever the number of sockets.
 */
const freeChunks: Uint8Array[] = [];
const FREE_CHUNKS = 16;
/** The last freed is the next taken (warm in cache); past FREE_CHUNKS the oldest goes. */
const toFree = (c: Uint8Array): void => {
  if (freeChunks.length === FREE_CHUNKS) freeChunks.shift();
  freeChunks.push(c);
};

export class PfkeySocket implements Endpoint {
  readonly id = nextId++;
  readonly dialect: Dialect;
  readonly registered = new Set<number>();
  promisc = false;
  pchange = false;
  readonly rcvbuf: number;
  /** Messages dropped because the receive queue was full. */
  dropped = 0;
  private queue: Array<Uint8Array | Run> = [];
  private head = 0;
  private queued = 0;
  /** Messages in the queue (a run holds several). */
  private count = 0;
  /** The chunk copies go into, how much of it is used, and the run at the queue's tail that is growing in it. */
  private chunk: Uint8Array | undefined;
  private chunkUsed = 0;
  private tailRun: Run | undefined;
  /** A view of the chunk copies go into (append()). */
  appendView: DataView = new DataView(new ArrayBuffer(0));
  /**
   * Whether a view of a chunk ever went to someone who does not give it back (recv()):
   * until then, a chunk whose every byte was taken and released holds nothing anyone
   * still reads, and copies start again at its beginning.
   */
  private viewsOut = false;
  /**
   * Full-size chunks copies went into before the current one, oldest first, until
   * recycle() finds their messages all taken (or the queue runs dry) and frees them.
   */
  private retired: Uint8Array[] = [];
  /** Bytes the owner took (take/hold) and still holds, until release(). */
  private held = 0;
  private budget: ReceiveBudget | undefined;
  private overflow = false;
  private isShutdown = false;
  private isClosed = false;
  private drainWaiters: Array<() => void> = [];
  private readableWaiters: Array<() => void> = [];
  /** Called, synchronously, each time a message is queued (onQueued). */
  private queuedHook: (() => void) | undefined;
  private listeners: Array<(msg: Uint8Array) => void> = [];

  constructor(private readonly engine: Engine, opts: SocketOptions = {}) {
    this.rcvbuf = opts.rcvbuf ?? 212992;
    this.budget = opts.budget;
    this.dialect = opts.dialect ?? 'klips';
    engine.attach(this);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** A message was dropped since the last read: the next recv() throws ENOBUFS. */
  get overflowed(): boolean {
    return this.overflow;
  }

  /** Messages waiting to be read. */
  get pending(): number {
    return this.count;
  }

  // ---------- Endpoint (called by the engine) ----------

  deliver(msg: Uint8Array): boolean {
    if (this.isClosed) return false;
    if (this.listeners.length && this.pending === 0) {
      for (const l of this.listeners) l(msg);
      return true;
    }
    if (!this.admit(msg.length)) return false;
    this.enqueue(msg);
    return true;
  }

  /**
   * deliver() for the first `len` bytes of `src`, a buffer the caller reuses: they are
   * copied into this socket's chunk, after the run of copies queued before them.
   */
  deliverCopy(src: Uint8Array, len: number): boolean {
    const at = this.append(len);
    if (at === APPEND_PUSH) return this.deliver(src.slice(0, len));
    if (at < 0) return false;
    this.chunk!.set(src.length === len ? src : src.subarray(0, len), at);
    return true;
  }

  /**
   * Room for a message of `len` bytes that the caller writes in place, at the returned
   * offset of `appendView` (the engine's fast path writes its replies there), after the
   * run of copies queued before it: the message counts as queued from now on, and the
   * caller must write all of it before anything reads this socket. APPEND_DROPPED when
   * it does not fit (dropped and counted, as deliver() drops); APPEND_PUSH when a push
   * listener is waiting for it (onMessage), which needs a message of its own: deliver().
   */
  append(len: number): number {
    if (this.isClosed) return APPEND_DROPPED;
    if (this.listeners.length && this.pending === 0) return APPEND_PUSH;
    if (!this.admit(len)) return APPEND_DROPPED;
    let c = this.chunk;
    if (this.count === 0 && this.held === 0 && !this.viewsOut) {
      this.chunkUsed = 0;
      this.tailRun = undefined;
      // Nothing queued, nothing held: every chunk but the current one is free.
      if (this.retired.length !== 0) {
        for (const r of this.retired) toFree(r);
        this.retired = [];
      }
    }
    if (c === undefined || this.chunkUsed + len > c.length) {
      let size = c === undefined ? MIN_CHUNK : Math.min(2 * c.length, MAX_CHUNK);
      while (size < len) size *= 2;
      if (c !== undefined && c.length === MAX_CHUNK && !this.viewsOut) {
        if (this.retired.length === RETIRED_CHUNKS) this.retired.shift();
        this.retired.push(c);
      }
      c = this.chunk = (size === MAX_CHUNK ? freeChunks.pop() : undefined) ?? new Uint8Array(size);
      this.appendView = new DataView(c.buffer);
      this.chunkUsed = 0;
      this.tailRun = undefined;
    }
    const at = this.chunkUsed;
    this.chunkUsed = at + len;
    const run = this.tailRun;
    if (run !== undefined && run.end === at && this.queue.length > this.head && this.queue[this.queue.length - 1] === run) {
      run.end += len;
      run.count++;
    } else {
      this.tailRun = { buf: c, start: at, end: at + len, count: 1 };
      this.queue.push(this.tailRun);
    }
    this.added(len, 1);
    return at;
  }

  /** Whether a message of n bytes fits this socket's rcvbuf and the shared budget; if not, it is dropped (counted). */
  private admit(n: number): boolean {
    const mine = this.queued + this.held;
    const b = this.budget;
    let full = mine + n > this.rcvbuf;
    if (!full && b !== undefined && b.used + n > b.limit && mine + n > b.reserve) {
      b.dropped++;
      full = true;
    }
    if (full) {
      this.dropped++;
      this.overflow = true;
      return false;
    }
    return true;
  }

  /**
   * Queue `msg` whatever the bounds say (it still counts against them, so later
   * messages may drop): for an answer its owner must never lose, such as klipsd's status
   * for a request (wire/status.ts), which a client waits for. The owner bounds how many
   * it queues (klipsd stops reading a connection that is over its rcvbuf).
   */
  deliverAlways(msg: Uint8Array): void {
    if (this.isClosed) return;
    if (this.listeners.length && this.pending === 0) {
      for (const l of this.listeners) l(msg);
      return;
    }
    this.enqueue(msg);
  }

  private enqueue(msg: Uint8Array): void {
    this.queue.push(msg);
    this.added(msg.length, 1);
  }

  private added(bytes: number, messages: number): void {
    this.queued += bytes;
    this.count += messages;
    if (this.budget) this.budget.used += bytes;
    if (this.queuedHook !== undefined) this.queuedHook();
    if (this.readableWaiters.length === 0) return;
    const w = this.readableWaiters;
    this.readableWaiters = [];
    for (const f of w) f();
  }

  /** The largest message deliver() would take now (per socket, and within the shared budget). */
  room(): number {
    const mine = this.queued + this.held;
    const b = this.budget;
    const own = this.rcvbuf - mine;
    return b === undefined ? own : Math.min(own, Math.max(b.limit - b.used, b.reserve - mine));
  }

  onDrain(cb: () => void): void {
    this.drainWaiters.push(cb);
  }

  // ---------- the client's side ----------

  /** Send one message; 0 on success, else the errno this socket's kernel's send() fails with (sendErrno). */
  send(bytes: Uint8Array): number {
    return sendErrno(this.dialect, this.submit(bytes));
  }

  /** send(), with the engine's whole verdict: errno, and where and why it was refused. */
  submit(bytes: Uint8Array): Verdict {
    if (this.isClosed) return CLOSED;
    if (this.isShutdown) return SHUT_DOWN;
    return this.engine.handle(this, bytes);
  }

  /** submit() for the message at bytes [off, off + len) of `buf`, read in place when the engine can (Engine.handleAt). */
  submitAt(buf: Uint8Array, off: number, len: number): Verdict {
    if (this.isClosed) return CLOSED;
    if (this.isShutdown) return SHUT_DOWN;
    return this.engine.handleAt(this, buf, off, len);
  }

  /** The next queued message, or undefined. After an overflow, throws ENOBUFS once. */
  recv(): Uint8Array | undefined {
    if (this.overflow) {
      this.overflow = false;
      throw new PfkeyError(ERRNO.ENOBUFS, `receive queue overflowed: ${this.dropped} message(s) dropped so far`);
    }
    if (this.head >= this.queue.length) return undefined;
    this.viewsOut = true;
    const m = this.shift();
    this.queued -= m.length;
    if (this.budget) this.budget.used -= m.length;
    this.drained();
    return m;
  }

  /**
   * take() for whole messages up to `max` bytes (at least one) that lie back to back:
   * a run of copies (as one view), or one delivered message. Throws ENOBUFS as recv() does.
   */
  takeRun(max: number): Uint8Array | undefined {
    if (this.overflow) return this.recv();
    if (this.head >= this.queue.length) return undefined;
    const e = this.queue[this.head];
    if (e instanceof Uint8Array) return this.take();
    let end = e.end;
    let n = e.count;
    if (end - e.start > max) {
      // Only part of the run: whole messages, walked by their lengths.
      end = e.start;
      n = 0;
      do {
        end += (e.buf[end + 4] | (e.buf[end + 5] << 8)) * 8;
        n++;
      } while (end < e.end && end - e.start < max);
    }
    const out = new Uint8Array(e.buf.buffer, e.buf.byteOffset + e.start, end - e.start);
    this.taken(e, end, n);
    this.queued -= out.length;
    this.held += out.length;
    return out;
  }

  /**
   * recv() for an owner that keeps the message (klipsd's connection write buffer): its
   * bytes move from the queue to held, so what the socket holds does not change (and no
   * drain waiter wakes) until the owner release()s them. Throws ENOBUFS as recv() does.
   */
  take(): Uint8Array | undefined {
    if (this.overflow) return this.recv();
    if (this.head >= this.queue.length) return undefined;
    const m = this.shift();
    this.queued -= m.length;
    this.held += m.length;
    return m;
  }

  /** The next queued message, out of the queue (a run gives up its first message, as a view). */
  private shift(): Uint8Array {
    const e = this.queue[this.head];
    if (e instanceof Uint8Array) {
      this.queue[this.head++] = EMPTY_RUN;
      this.count--;
      this.compactQueue();
      return e;
    }
    const end = e.start + (e.buf[e.start + 4] | (e.buf[e.start + 5] << 8)) * 8;
    const m = new Uint8Array(e.buf.buffer, e.buf.byteOffset + e.start, end - e.start);
    this.taken(e, end, 1);
    return m;
  }

  /** Messages [run.start, end) of the run at the head are out of the queue (the caller accounts for their bytes). */
  private taken(run: Run, end: number, messages: number): void {
    this.count -= messages;
    run.start = end;
    run.count -= messages;
    if (run.count === 0) {
      this.queue[this.head++] = EMPTY_RUN;
      if (run === this.tailRun) this.tailRun = undefined;
      this.compactQueue();
    }
  }

  private compactQueue(): void {
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * The owner (klipsd's connection, whose write has completed) holds no view it took
   * (take, takeRun): the retired chunks before the oldest one a queued message still
   * lies in are free, and go to the chunks any socket takes before making a new one.
   * Under a DUMP or pipelined ADDs this saves a fresh 64 KiB chunk per write, which V8
   * counts as external memory and answers with collections (Node 24 ran a mark-compact
   * every ~130 ms of a 10^6 DUMP for it). Not after recv(), whose views may be kept.
   */
  recycle(): void {
    if (this.viewsOut || this.retired.length === 0) return;
    // The oldest chunk still in use: the first queued run's (runs lie in their chunks in queue order).
    // (Messages of their own lie between runs: klipsd's answers and statuses; a long row of them defers this.)
    let inUse = this.chunk;
    for (let i = this.head; i < this.queue.length; i++) {
      const e = this.queue[i];
      if (!(e instanceof Uint8Array)) {
        inUse = e.buf;
        break;
      }
      if (i - this.head === 64) return;
    }
    // Retired chunks older than that one are free: all of them if it is the current chunk,
    // none if it is older than every chunk tracked (one of the first, smaller chunks).
    const upTo = inUse === this.chunk ? this.retired.length : this.retired.indexOf(inUse!);
    for (let i = 0; i < upTo; i++) toFree(this.retired[i]);
    if (upTo > 0) this.retired.splice(0, upTo);
  }

  /** The owner holds `bytes` more for this client (e.g. a reply of its own): they count until release(). */
  hold(bytes: number): void {
    this.held += bytes;
    if (this.budget) this.budget.used += bytes;
  }

  /** `bytes` taken or held are gone (written out); DUMP and other waiters may go on. */
  release(bytes: number): void {
    this.held -= bytes;
    if (this.budget) this.budget.used -= bytes;
    this.drained();
  }

  /** Bytes held for the client: queued plus held by the owner. */
  get holding(): number {
    return this.queued + this.held;
  }

  private drained(): void {
    if (this.drainWaiters.length && this.queued + this.held <= this.rcvbuf / 2) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
    }
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

  /**
   * `fn` is called, synchronously, each time a message is queued for this socket: for an
   * owner that reads from its own event loop and schedules its read itself (klipsd's
   * connection), with no promise per wake-up as readable() has.
   */
  onQueued(fn: () => void): void {
    this.queuedHook = fn;
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
    // What this socket held no longer counts against the shared total.
    if (this.budget) this.budget.used -= this.queued + this.held;
    this.budget = undefined;
    this.engine.detach(this);
    this.listeners = [];
    const w = this.readableWaiters;
    this.readableWaiters = [];
    for (const f of w) f();
    // A waiter for room (a DUMP) learns that the socket is gone, and ends.
    const d = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of d) f();
  }
}
