/**
 * klipsd's server: one PF_KEY socket (socket/PfkeySocket) per Unix-stream connection,
 * and a view channel beside it: the engine's read-only views, the data plane's counters,
 * and `klips trace` (dataplane/trace.ts; answered only while the view channel grants
 * no more than the PF_KEY socket, see trace()).
 *
 * The dialect is a property of the connection, chosen by the socket it arrives on: the
 * PF_KEY socket speaks KLIPS's numbering, the KAME socket (`<socket>.kame` unless
 * configured otherwise, none when configured as "") Linux's. Both are framed and served
 * alike, on one engine; the engine reads and answers each in its own numbering.
 *
 * The way a message travels here:
 *
 *   connection bytes ─► one read buffer for every connection (read-buffer.ts)
 *                    ─► FrameDecoder (wire/: sadb_msg_len frames, zero-copy views)
 *                    ─► PfkeySocket.submit() = the engine's pfkey_sendmsg, which checks
 *                       the message once and returns its verdict (errno, where, why)
 *   engine replies  ─► the PfkeySocket's bounded receive queue
 *                    ─► Connection.flush(): take() until the connection's write buffer
 *                       reaches writeHighWater, one write per burst
 *
 * Replies are taken out of the PfkeySocket rather than pushed through onMessage(): a
 * push listener cannot be paused, and a client that does not read must fill its own
 * PF_KEY receive queue (messages dropped and counted for that socket only, ENOBUFS
 * reported once) instead of growing klipsd's memory. What a connection holds, its queue
 * and its write buffer together, is bounded by rcvbuf; what all of them hold by
 * rcvbufTotal (a ReceiveBudget shared by every socket). Other clients never wait on a
 * slow one.
 *
 * Over a stream there is no send() result, so where KLIPS's sendmsg fails without
 * sending a message (a header with a bad version, reserved field or type: the verdict's
 * stage 'header'), klipsd queues a header-only copy of the request's header carrying the
 * errno for that connection alone. Later refusals are answered by the engine (to every
 * open socket, as KLIPS). A connection that asked for reasons (wire/reason.ts) then gets
 * the verdict's reason in words. A connection in status mode (wire/status.ts; the bridge
 * behind `klips run`) gets, after every reply a request causes, a status carrying what
 * its write() must fail with (engine's sendErrno decides, per dialect: KLIPS every refusal, Linux the header's; a header refusal then gets the status
 * alone). Closing answers, each a
 * header-only message and each counted: a header that cannot be framed (length under 2
 * units or over 64 KiB) gets EMSGSIZE; a message stalled half-way for
 * partialFrameTimeoutMs gets EMSGSIZE; a connection over maxConnections gets type 0,
 * errno ENFILE. When a connection's PF_KEY queue overflowed, the next message it
 * receives is a header-only notice: type 0, errno ENOBUFS, seq = messages dropped so
 * far, pid 0. docs/klipsd.md has the table.
 */

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import {
  DEBUG_SUBSYSTEMS, ERRNO, MAX_MESSAGE_BYTES, PfkeyError, FrameDecoder, frameAt, errnoReplyTo, framingErrorReply, headerOnly, errnoName, KLIPSD_X_REASON, isReasonsRequest, reasonMessage,
  KLIPSD_X_STATUS, isStatusRequest, statusMessage,
  MSG_TYPE_NAMES, nameOf, type FrameError,
} from '../wire/index.js';
import { Engine, sendErrno, type Endpoint, type Verdict } from '../engine/engine.js';
import { PfkeySocket, ReceiveBudget } from '../socket/pfkey-socket.js';
import { DEFAULT_CONFIG, RELOAD, type DaemonConfig } from './config.js';
import type { LogSink } from './log-sink.js';
import { Throttle } from './throttle.js';
import { ReadBuffer } from './read-buffer.js';
import { infoPathFor, kameSocketPathFor, MAX_UNIX_PATH } from './paths.js';
import type { Dialect } from '../wire/index.js';
import { renderView, VIEW_NAMES, type View } from '../engine/views.js';
import { dataplaneView } from '../dataplane/counters.js';
import { IP_MAXPACKET, IPV6_HEADER_BYTES } from '../dataplane/packet.js';

export interface ServerOptions {
  /** Where to listen (already resolved; see paths.ts). */
  socketPath: string;
  config?: DaemonConfig;
  logger?: Logger;
  /** Open the sockets to this group (name or gid): mode 0660 instead of 0600. */
  group?: string;
  /** Refuse a socket directory that is not ours alone (used for the default path). */
  privateDir?: boolean;
  /** An engine to serve (tests); default: a new one from the configuration. */
  engine?: Engine;
  /** Engine tick period in ms (lifetime expiry); default 1000. */
  tickMs?: number;
  /** Where `logger` writes, for the stats view's log counters (klipsd's main passes it). */
  logSink?: LogSink;
  /**
   * The KAME-dialect PF_KEY socket: undefined = the configuration's `kameSocket`, else
   * `<socketPath>.kame`; '' = none.
   */
  kameSocketPath?: string;
  /** Tests: fill the read buffer after each read is handled, so a view of a read kept past its handling shows (read-buffer.ts). */
  poisonReads?: boolean;
}

export interface ServerStats {
  accepted: number;
  active: number;
  framesIn: number;
  bytesIn: number;
  bytesOut: number;
  framingErrors: number;
  headerRefusals: number;
  enobufsNotices: number;
  /** Replies klipsd made itself (header refusals, engine faults) that did not fit a client's queue. */
  repliesDropped: number;
  /** Connections closed after partialFrameTimeoutMs without progress in the middle of a message. */
  partialFrameTimeouts: number;
  /** Connections over maxConnections, answered with ENFILE and closed. */
  refusedConnections: number;
  /** Accepts that failed (e.g. EMFILE when klipsd is out of file descriptors). */
  acceptErrors: number;
  midMessageDisconnects: number;
  internalErrors: number;
  infoRequests: number;
}

export interface KlipsServer {
  readonly socketPath: string;
  readonly infoPath: string;
  /** Where the KAME-dialect PF_KEY socket listens, or undefined when there is none. */
  readonly kamePath: string | undefined;
  readonly engine: Engine;
  readonly logger: Logger;
  readonly stats: ServerStats;
  /** What every connection holds together (PF_KEY queues and write buffers), bounded by rcvbufTotal. */
  readonly budget: ReceiveBudget;
  /** Open PF_KEY connections. */
  connectionCount(): number;
  /** Apply a new configuration (SIGHUP) as config.ts's RELOAD table says; logs what changed. */
  reconfigure(next: DaemonConfig): Reconfigured;
  /** Serve `name` on the view channel from `render` (klipsd --dataplane's "runtime"). */
  addView(name: string, render: () => { text: string; data: unknown }): void;
  /** Stop accepting, close every connection, remove the socket files. */
  close(): Promise<void>;
}

/** The keys a reload changed, by how they took effect. */
export interface Reconfigured {
  applied: string[];
  newConnections: string[];
  needRestart: string[];
}

/** A start-up refusal with a message meant for the operator. */
export class ServerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServerError';
  }
}

function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

// ---------- socket files ----------

function isErrno(e: unknown, ...codes: string[]): boolean {
  return e instanceof Error && codes.includes((e as NodeJS.ErrnoException).code ?? '');
}

/** 'live' if something accepts connections at `p`, 'stale' if nothing does. */
function probe(p: string): Promise<'live' | 'stale'> {
  return new Promise((resolve, reject) => {
    const c = net.connect(p);
    const timer = setTimeout(() => { c.destroy(); resolve('live'); }, 1000);
    c.once('connect', () => { clearTimeout(timer); c.destroy(); resolve('live'); });
    c.once('error', (e) => {
      clearTimeout(timer);
      if (isErrno(e, 'ECONNREFUSED', 'ENOENT')) resolve('stale');
      else reject(new ServerError(`cannot probe ${p}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    });
  });
}

/** Make `p` free to bind: replace a stale socket file, refuse a live one or a non-socket. */
async function claimPath(p: string, log: Logger): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return;
    throw new ServerError(`cannot examine ${p}: ${(e as NodeJS.ErrnoException).code}`);
  }
  if (!st.isSocket()) throw new ServerError(`${p} exists and is not a socket; refusing to replace it`);
  if ((await probe(p)) === 'live') {
    throw new ServerError(`${p} is in use: another klipsd is serving it (stop that one first, or choose another --socket)`);
  }
  fs.unlinkSync(p);
  log.info({ path: p }, 'replaced a stale socket file');
}

function resolveGroup(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  let text = '';
  try {
    text = fs.readFileSync('/etc/group', 'utf8');
  } catch {
    throw new ServerError(`cannot read /etc/group to find group "${group}"; give a numeric gid`);
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new ServerError(`no such group "${group}"`);
}

/**
 * mkdir -p, one component at a time, so a failure names the directory and its own errno:
 * Node's recursive mkdir reports ENOENT where the filesystem said EROFS, and under /proc
 * it never returns.
 */
function makeDirectories(dir: string, mode: number, gid: number | undefined): void {
  const missing: string[] = [];
  for (let d = dir; !fs.existsSync(d); d = path.dirname(d)) {
    missing.unshift(d);
    if (path.dirname(d) === d) break;
  }
  for (const d of missing) {
    try {
      fs.mkdirSync(d, { mode });
    } catch (e) {
      if (isErrno(e, 'EEXIST')) continue;
      throw new ServerError(`cannot create ${d}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (gid !== undefined) fs.chownSync(d, -1, gid);
  }
}

function prepareDirectory(dir: string, opts: { privateDir: boolean; gid?: number }): void {
  makeDirectories(dir, opts.gid === undefined ? 0o700 : 0o710, opts.gid);
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new ServerError(`${dir} is not a directory`);
  if (opts.privateDir && typeof process.getuid === 'function') {
    if (st.uid !== process.getuid() || (st.mode & 0o022) !== 0) {
      throw new ServerError(`${dir} is not a private directory of this user (owner ${st.uid}, mode ${(st.mode & 0o777).toString(8)}); use --socket`);
    }
  }
}

/** Listen on `p` with the socket file created 0600 (0660 with a group) from the start. */
async function listenPrivately(server: net.Server, p: string, gid: number | undefined): Promise<fs.Stats> {
  const old = process.umask(gid === undefined ? 0o177 : 0o117);
  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(new ServerError(`cannot listen on ${p}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      server.once('error', onError);
      server.listen(p, () => { server.off('error', onError); resolve(); });
    });
  } finally {
    process.umask(old);
  }
  if (gid !== undefined) {
    fs.chownSync(p, -1, gid);
    fs.chmodSync(p, 0o660);
  } else {
    fs.chmodSync(p, 0o600);
  }
  return fs.statSync(p);
}

function removeIfOurs(p: string, ino: number | undefined): void {
  try {
    const st = fs.lstatSync(p);
    if (st.isSocket() && (ino === undefined || st.ino === ino)) fs.unlinkSync(p);
  } catch {
    /* already gone */
  }
}

// ---------- one client connection ----------

const le32 = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;

class Connection {
  readonly sock: PfkeySocket;
  private readonly decoder = new FrameDecoder();
  private readonly halfQueue: number;
  /** The sadb_msg_pid of the last message the engine accepted from this client (for the registered view). */
  lastPid = 0;
  /** Whether this client asked for reasons with its refusals (wire/reason.ts; klips's tools do). */
  private reasons = false;
  /** Whether this client asked for a status after each request (wire/status.ts; the bridge does). */
  private status = false;
  /** Requests handled since status mode was turned on (each status carries its number). */
  private statusCount = 0;
  /** Reading stopped until the queue drains (status mode over rcvbuf; see pauseIfOver). */
  private paused = false;
  /** Bytes charged to the PF_KEY socket as held by this connection (taken, or in its write buffer). */
  private charged = 0;
  /** An ENOBUFS notice is in the write buffer, not yet taken by the kernel. */
  private noticeInFlight = false;
  /** Running while the decoder holds part of a message (see watchPartial). */
  private partialTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Inside onData: what the engine queues now is flushed at its end. */
  private handling = false;
  /** A flush for messages queued from elsewhere is scheduled (onQueued). */
  private wakePending = false;
  /** A write is in flight and more is queued behind it: its completion (written) flushes again. */
  private draining = false;

  private readonly c: net.Socket;

  /** `accepted`: the listener's socket, paused before its first read (read-buffer.ts). */
  constructor(
    readonly id: number,
    accepted: net.Socket,
    private readonly srv: Server,
    dialect: Dialect,
  ) {
    this.sock = new PfkeySocket(srv.engine, { rcvbuf: srv.config.rcvbuf, budget: srv.budget, dialect });
    this.halfQueue = srv.config.rcvbuf >> 1;
    const c = this.c = srv.readBuffer.adopt(accepted, this.onData);
    c.on('end', this.onEnd);
    c.on('error', this.onError);
    c.on('close', this.onClose);
    this.sock.onQueued(this.onQueued);
  }

  /** A read: bytes [0, n) of the server's read buffer, reused once this returns (nothing here keeps a view of it). */
  private readonly onData = (buf: Uint8Array, n: number): void => {
    if (this.closed) return;
    const chunk = n === buf.length ? buf : buf.subarray(0, n);
    this.srv.stats.bytesIn += n;
    // What the kernel took of the write in flight since it was last counted is no longer this client's to hold.
    if (this.charged !== 0) this.settle();
    // The messages of one read are handled on one reading of the clock.
    const engine = this.srv.engine;
    // The read's whole messages start where the one the decoder holds ends.
    engine.beginBatch(chunk, this.decoder.nextStart);
    let err;
    // What this read's messages queue for this client is written by the flush() below.
    this.handling = true;
    try {
      err = this.decoder.pushAt(chunk, this.onFrameAt);
    } finally {
      this.handling = false;
      engine.endBatch();
    }
    if (err) {
      this.framingFailure(err);
      return;
    }
    this.watchPartial();
    this.flush();
    this.pauseIfOver();
  };

  /**
   * A connection that stops in the middle of a message is closed after
   * partialFrameTimeoutMs without progress; one idle at a message boundary is never
   * (pluto keeps its PF_KEY socket idle for hours).
   */
  private watchPartial(): void {
    const ms = this.srv.config.partialFrameTimeoutMs;
    if (this.decoder.buffered === 0 || ms === 0) {
      if (this.partialTimer) {
        clearTimeout(this.partialTimer);
        this.partialTimer = undefined;
      }
    } else if (this.partialTimer) {
      this.partialTimer.refresh();
    } else {
      this.partialTimer = setTimeout(this.onPartialTimeout, ms);
    }
  }

  /** The partial message gets EMSGSIZE (it is shorter than its header says), its header's fields copied, and the connection ends. */
  private readonly onPartialTimeout = (): void => {
    this.partialTimer = undefined;
    if (this.closed) return;
    const stats = this.srv.stats;
    stats.partialFrameTimeouts++;
    const n = this.srv.partialTimeouts.hit();
    if (n) {
      this.srv.logger.warn({ conn: this.id, held: this.decoder.buffered, since: n, total: stats.partialFrameTimeouts }, 'closing a connection stalled in the middle of a message');
    }
    this.writeLast(errnoReplyTo(this.decoder.partial, ERRNO.EMSGSIZE));
    this.shut();
  };

  /**
   * One message, bytes [off, off + len) of `buf` (the chunk it came in, or the buffer it
   * was assembled in): handled in place (the engine's fast path reads it there), with a
   * view of it made only when something must quote it (a refusal, a status).
   */
  private readonly onFrameAt = (buf: Uint8Array, off: number, len: number): void => {
    if (this.closed) return;
    const stats = this.srv.stats;
    stats.framesIn++;
    const type = buf[off + 1];
    if ((type === KLIPSD_X_REASON || type === KLIPSD_X_STATUS) && this.optIn(frameAt(buf, off, len))) return;
    let verdict: Verdict;
    try {
      verdict = this.sock.submitAt(buf, off, len);
    } catch (e) {
      // A fault inside the engine: report it to this client only and carry on.
      const frame = frameAt(buf, off, len);
      stats.internalErrors++;
      this.srv.logger.error({ conn: this.id, err: e, type: nameOf(MSG_TYPE_NAMES, frame[1]) }, 'engine fault while handling a message');
      this.answer(errnoReplyTo(frame, ERRNO.EINVAL));
      verdict = ENGINE_FAULT;
    }
    if (verdict.errno === 0) {
      this.lastPid = le32(buf, off + 12);
    } else if (verdict !== ENGINE_FAULT) {
      const frame = frameAt(buf, off, len);
      if (verdict.stage === 'header') {
        // Refused before dispatch: KLIPS's sendmsg fails and no message exists, so this
        // connection alone gets a header-only errno reply (in status mode, the status alone).
        stats.headerRefusals++;
        if (this.srv.logger.isLevelEnabled('debug')) {
          this.srv.logger.debug({ conn: this.id, errno: errnoName(verdict.errno), offset: verdict.offset, why: verdict.why }, 'message refused at the header');
        }
        if (!this.status) this.answer(errnoReplyTo(frame, verdict.errno));
      }
      // A later refusal was answered by the engine already (to every socket, as KLIPS).
      if (this.reasons) this.answer(reasonMessage(frame, verdict.errno, verdict.why));
    }
    // Every reply this request causes now is queued: the status goes after them.
    if (this.status) this.sock.deliverAlways(statusMessage(frameAt(buf, off, len), sendErrno(this.sock.dialect, verdict), ++this.statusCount));
    // A burst of requests can produce more replies than the PF_KEY queue holds; move
    // them to the connection as we go (up to its high-water mark), as a reading client would.
    if (this.sock.room() < this.halfQueue) this.flush();
  };

  /** klipsd's own opt-ins (wire/reason.ts, wire/status.ts): true when `frame` was one, and is answered. */
  private optIn(frame: Uint8Array): boolean {
    if (frame[1] === KLIPSD_X_REASON && isReasonsRequest(frame)) {
      // Reasons for refusals, this connection only.
      this.reasons = frame[3] === 1;
      this.answer(frame.slice());
      return true;
    }
    if (frame[1] === KLIPSD_X_STATUS && isStatusRequest(frame)) {
      // A status after each request. Its answer is never dropped: the bridge waits for it
      // before socket() returns.
      this.status = frame[3] === 1;
      this.statusCount = 0;
      this.sock.deliverAlways(frame.slice());
      this.flush();
      return true;
    }
    return false;
  }

  /**
   * In status mode every request queues a status that is never dropped; a client that
   * sends without reading would grow what klipsd holds by one per request. So once the
   * connection holds more than its rcvbuf, klipsd stops reading it until it has drained
   * (the client's writes then block, as on a full socket).
   */
  private pauseIfOver(): void {
    if (!this.status || this.paused || this.sock.holding <= this.srv.config.rcvbuf) return;
    this.paused = true;
    this.c.pause();
    this.sock.onDrain(this.onQueueDrained);
  }

  private readonly onQueueDrained = (): void => {
    this.paused = false;
    if (!this.closed) this.c.resume();
  };

  private framingFailure(err: FrameError): void {
    this.srv.stats.framingErrors++;
    this.srv.logger.warn({ conn: this.id, reason: err.reason }, 'unframeable message, closing the connection');
    this.writeLast(framingErrorReply(err.header));
    this.shut();
  }

  /**
   * A reply klipsd makes itself, to this client alone: through the PF_KEY socket's
   * bounded queue like any other, so a client that never reads cannot grow it (a reply
   * that does not fit is dropped, counted, and reported by the ENOBUFS notice).
   */
  private answer(bytes: Uint8Array): void {
    if (!this.sock.deliver(bytes)) this.srv.stats.repliesDropped++;
    if (this.sock.room() < this.halfQueue) this.flush();
  }

  /** Write `bytes` after everything already queued for this client, then nothing more (the connection ends). */
  private writeLast(bytes: Uint8Array): void {
    if (this.closed) return;
    this.flush(true);
    this.write(bytes);
  }

  private write(data: Uint8Array, done: () => void = this.written): void {
    this.srv.stats.bytesOut += data.length;
    this.c.write(data, done);
    this.settle();
  }

  /** write() for messages that do not lie back to back: one writev, no copy into one buffer (which would be a fresh one per write). */
  private writeParts(parts: Uint8Array[], bytes: number, done: () => void): void {
    this.srv.stats.bytesOut += bytes;
    const c = this.c;
    c.cork();
    const last = parts.length - 1;
    for (let i = 0; i < last; i++) c.write(parts[i]);
    c.write(parts[last], done);
    c.uncork();
    this.settle();
  }

  /**
   * Charge the PF_KEY socket with what the connection's write buffer holds that the
   * kernel has not taken yet: it counts against this client's rcvbuf and klipsd's total.
   * Runs after each write, when each write completes, and before each read is handled.
   */
  private readonly settle = (): void => {
    const now = this.closed ? 0 : this.untaken();
    if (now > this.charged) this.sock.hold(now - this.charged);
    else if (now < this.charged) this.sock.release(this.charged - now);
    this.charged = now;
  };

  /**
   * Bytes of the write buffer the kernel has not taken. A write the kernel took only in
   * part stays in the buffer, whole, until its last byte goes; the part it took may
   * already be read by the client, who then sends more. flush() keeps one write in
   * flight at a time (but for flush(true) as the connection ends), so libuv's count of
   * that write's bytes still to go (Node's handle shows it live) is all that is left.
   * Counting the whole write instead dropped replies to a client whose outstanding
   * replies fitted its rcvbuf (docs/klipsd.md).
   */
  private untaken(): number {
    const n = this.c.writableLength;
    if (n === 0) return 0;
    const q = (this.c as unknown as { _handle?: { writeQueueSize?: unknown } })._handle?.writeQueueSize;
    return typeof q === 'number' && q >= 0 && q < n ? q : n;
  }

  /**
   * A write is done: charge what is left, and write what was queued meanwhile, at once (a
   * client that is behind is waiting for it). What is queued is at most the rcvbuf, so
   * this chains a few writes at most; a DUMP refills the queue only from a timer
   * (engine/endpoint.ts, nextDumpSlice).
   */
  private readonly written = (): void => {
    this.settle();
    // Nothing taken from the PF_KEY queue is in a write any more: its chunks may take replies again.
    if (this.c.writableLength === 0) this.sock.recycle();
    if (this.draining) {
      this.draining = false;
      this.flush();
    }
  };

  /** The write carrying an ENOBUFS notice is done: the next notice may go (see flush), and written() flushes whatever is queued. */
  private readonly noticeWritten = (): void => {
    this.noticeInFlight = false;
    this.draining = true;
    this.written();
  };

  /**
   * Move queued PF_KEY messages to the connection, up to the high-water mark. After a
   * drop, an ENOBUFS notice goes first; while one is still in the write buffer (the
   * client has not read it), later drops wait and fold into the next notice (its seq is
   * the count so far), so a client that never reads cannot pile notices up.
   */
  flush(force = false): void {
    if (this.closed) return;
    if (!force && this.noticeInFlight && this.sock.overflowed) return; // noticeWritten() calls again
    // One write in flight at a time (see untaken): the rest waits in the PF_KEY queue,
    // charged there, until written() calls again.
    if (!force && this.c.writableLength > 0) {
      this.draining = true;
      return;
    }
    const room = force ? Infinity : this.srv.config.writeHighWater;
    let first: Uint8Array | undefined;
    let parts: Uint8Array[] | undefined;
    let bytes = 0;
    let notice = false;
    while (bytes < room) {
      let m: Uint8Array | undefined;
      try {
        m = this.sock.takeRun(room - bytes);
      } catch (e) {
        if (!(e instanceof PfkeyError) || e.errno !== ERRNO.ENOBUFS) throw e;
        this.srv.stats.enobufsNotices++;
        notice = true;
        m = headerOnly({ type: 0, errno: ERRNO.ENOBUFS, seq: this.sock.dropped, pid: 0 });
        this.sock.hold(m.length);
      }
      if (m === undefined) break;
      this.charged += m.length;
      if (first === undefined) first = m;
      else (parts ??= [first]).push(m);
      bytes += m.length;
      if (notice && this.sock.overflowed && !force) break; // another drop meanwhile: its notice waits for this one's write
    }
    if (notice) this.noticeInFlight = true;
    if (first !== undefined) {
      const done = notice ? this.noticeWritten : this.written;
      if (parts === undefined) this.write(first, done);
      else this.writeParts(parts, bytes, done);
    }
    if (force) return;
    // More than one write's worth: the write's completion (written) comes back for it.
    if (first !== undefined && (this.sock.pending > 0 || bytes >= room)) this.draining = true;
  }

  /**
   * The engine queued a message for this socket: while this connection's own read is
   * being handled, its flush() writes it; otherwise (another client's request, a timer)
   * one flush runs after the current task, for however many are queued by then.
   */
  private readonly onQueued = (): void => {
    if (this.handling || this.wakePending || this.closed) return;
    this.wakePending = true;
    queueMicrotask(this.onWake);
  };

  private readonly onWake = (): void => {
    this.wakePending = false;
    if (!this.draining) this.flush();
  };

  private readonly onEnd = (): void => {
    // The client will send no more (it exited, or shut its side down): answer what it
    // sent, then close. Keeping a half-open connection would keep a PF_KEY socket (and
    // its registrations) alive for a client that is usually gone.
    if (this.decoder.buffered > 0) this.midMessage('end');
    if (this.closed) return;
    this.flush(true);
    this.shut();
  };

  private readonly onError = (e: Error): void => {
    this.srv.logger.debug({ conn: this.id, code: (e as NodeJS.ErrnoException).code ?? e.message }, 'connection error');
    this.c.destroy();
  };

  private readonly onClose = (): void => {
    if (this.decoder.buffered > 0) this.midMessage('close');
    this.release();
    this.srv.forget(this);
  };

  private midMessage(how: string): void {
    this.srv.stats.midMessageDisconnects++;
    this.srv.logger.debug({ conn: this.id, held: this.decoder.buffered, how }, 'client left in the middle of a message');
    this.decoder.reset();
  }

  private release(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.partialTimer) clearTimeout(this.partialTimer);
    this.decoder.reset();
    this.sock.close();
  }

  /** End the connection after what was written; stop reading from it. */
  shut(): void {
    this.release();
    this.c.end(() => this.c.destroy());
    setTimeout(() => this.c.destroy(), 2000).unref();
  }

  destroy(): void {
    this.release();
    this.c.destroy();
  }
}

// ---------- the server ----------

/** The longest request line the view channel reads: a trace of the largest packet (dataplane/trace.ts's MAX_TRACE_PACKET) in hex, with room to spare. */
const MAX_INFO_LINE = 2 * (IP_MAXPACKET + IPV6_HEADER_BYTES) + 4096;

type Tracer = typeof import('../dataplane/trace.js');

/** Permission bits for the owner, the group and others. */
const OWNER_BITS = 0o700;
const GROUP_BITS = 0o070;
const OTHER_BITS = 0o007;

const REFUSED_NOTICE = headerOnly({ type: 0, errno: ERRNO.ENFILE, seq: 0, pid: 0 });

/** The verdict on a message the engine faulted on (answered EINVAL to its sender alone). */
const ENGINE_FAULT: Verdict = Object.freeze({ errno: ERRNO.EINVAL, stage: 'message', why: 'klipsd could not handle this message (an internal error, logged)' });

/** Descriptors klipsd uses besides its PF_KEY connections: Node's own, the listeners, view-channel clients. */
const FDS_BESIDES_CONNECTIONS = 64;

/** The soft RLIMIT_NOFILE from /proc/self/limits (Linux), or undefined where it cannot be read. */
function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What a connection may still hold once klipsd's total is reached: its share of the
 * total (rcvbufTotal / maxConnections), at least the largest message (so a client that
 * reads, holding nothing, always has room for the next one) and at most its rcvbuf. A
 * client that reads is thus still served while clients that never read have used up the
 * total, and klipsd holds at most rcvbufTotal + connections x reserve.
 */
function reserveOf(config: DaemonConfig): number {
  return Math.min(config.rcvbuf, Math.max(Math.floor(config.rcvbufTotal / config.maxConnections), MAX_MESSAGE_BYTES));
}

class Server implements KlipsServer {
  readonly infoPath: string;
  readonly kamePath: string | undefined;
  readonly engine: Engine;
  readonly stats: ServerStats = {
    accepted: 0, active: 0, framesIn: 0, bytesIn: 0, bytesOut: 0, framingErrors: 0,
    headerRefusals: 0, enobufsNotices: 0, repliesDropped: 0, refusedConnections: 0, acceptErrors: 0, partialFrameTimeouts: 0,
    midMessageDisconnects: 0, internalErrors: 0, infoRequests: 0,
  };
  /** What every connection holds together (PF_KEY queues and write buffers), bounded by rcvbufTotal. */
  readonly budget: ReceiveBudget;
  /** Where every PF_KEY connection reads into. */
  readonly readBuffer: ReadBuffer;
  private readonly conns = new Set<Connection>();
  private readonly byEndpoint = new Map<number, Connection>();
  private readonly infoConns = new Set<net.Socket>();
  private readonly pfkeyServer: net.Server;
  private readonly infoServer: net.Server;
  private readonly kameServer: net.Server;
  private nextConnId = 1;
  private tick: NodeJS.Timeout | undefined;
  private inodes: { main?: number; info?: number; kame?: number } = {};
  private closing: Promise<void> | undefined;

  constructor(
    readonly socketPath: string,
    public config: DaemonConfig,
    readonly logger: Logger,
    engine: Engine | undefined,
    private readonly logSink: LogSink | undefined,
    kameSocketPath: string | undefined,
    poisonReads: boolean,
  ) {
    this.infoPath = infoPathFor(socketPath);
    const kame = kameSocketPath ?? config.kameSocket ?? kameSocketPathFor(socketPath);
    // (A relative path is taken from klipsd's working directory, as --socket is.)
    this.kamePath = kame === '' ? undefined : path.resolve(kame);
    this.budget = new ReceiveBudget(config.rcvbufTotal, reserveOf(config));
    this.engine = engine ?? new Engine({
      supported: config.supported,
      larvalLifetime: config.larvalLifetime,
      log: (subsystem, text) => logger.info({ klipsdebug: subsystem }, text),
    });
    for (const name of config.debug) this.engine.debug[name] = 0xffffffff;
    this.readBuffer = new ReadBuffer(poisonReads);
    // Paused until a Connection adopts the socket into the read buffer (read-buffer.ts).
    this.pfkeyServer = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) => this.accept(c, 'klips'));
    this.kameServer = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) => this.accept(c, 'kame'));
    this.infoServer = net.createServer((c) => this.acceptInfo(c));
  }

  async start(opts: ServerOptions): Promise<void> {
    const p = this.socketPath;
    if (Buffer.byteLength(this.infoPath) > MAX_UNIX_PATH) {
      throw new ServerError(`socket path ${p} is too long for a Unix socket (the .info path must fit in ${MAX_UNIX_PATH} bytes)`);
    }
    const kame = this.kamePath;
    if (kame !== undefined && Buffer.byteLength(kame) > MAX_UNIX_PATH) {
      throw new ServerError(`KAME socket path ${kame} is too long for a Unix socket (at most ${MAX_UNIX_PATH} bytes)`);
    }
    const gid = opts.group !== undefined ? resolveGroup(opts.group) : undefined;
    prepareDirectory(path.dirname(p), { privateDir: opts.privateDir ?? false, gid });
    if (kame !== undefined && path.dirname(kame) !== path.dirname(p)) prepareDirectory(path.dirname(kame), { privateDir: false, gid });
    await claimPath(p, this.logger);
    await claimPath(this.infoPath, this.logger);
    if (kame !== undefined) await claimPath(kame, this.logger);
    this.inodes.main = (await listenPrivately(this.pfkeyServer, p, gid)).ino;
    try {
      this.inodes.info = (await listenPrivately(this.infoServer, this.infoPath, gid)).ino;
      if (kame !== undefined) this.inodes.kame = (await listenPrivately(this.kameServer, kame, gid)).ino;
    } catch (e) {
      this.pfkeyServer.close();
      removeIfOurs(p, this.inodes.main);
      if (this.inodes.info !== undefined) {
        this.infoServer.close();
        removeIfOurs(this.infoPath, this.inodes.info);
      }
      throw e;
    }
    // From now on a server error is a failed accept (EMFILE: out of descriptors): never fatal.
    for (const srv of [this.pfkeyServer, this.infoServer, this.kameServer]) srv.on('error', this.onAcceptError);
    this.tick = setInterval(() => {
      try {
        this.engine.tick();
      } catch (e) {
        this.logger.error({ err: e }, 'engine tick failed');
      }
    }, opts.tickMs ?? 1000);
    this.tick.unref();
    this.logger.info({ socket: p, info: this.infoPath, kame: kame ?? null, rcvbuf: this.config.rcvbuf, group: opts.group }, 'klipsd listening');
    this.checkFileLimit();
  }

  /**
   * Past the process's descriptor limit the OS refuses connections before klipsd sees
   * them (libuv accepts and closes them: no errno reply, no count), so say at start when
   * maxConnections cannot be reached.
   */
  private checkFileLimit(): void {
    const limit = openFileLimit();
    const needed = this.config.maxConnections + FDS_BESIDES_CONNECTIONS;
    if (limit !== undefined && limit < needed) {
      this.logger.warn({ openFileLimit: limit, maxConnections: this.config.maxConnections, needed },
        'the open-file limit is below maxConnections: connections beyond it are closed by the OS without an errno reply (raise ulimit -n, or lower maxConnections)');
    }
  }

  private readonly refusals = new Throttle(10_000);
  readonly partialTimeouts = new Throttle(10_000);
  private readonly acceptErrors = new Throttle(10_000);

  private readonly onAcceptError = (e: NodeJS.ErrnoException): void => {
    this.stats.acceptErrors++;
    const n = this.acceptErrors.hit();
    if (n) this.logger.warn({ code: e.code ?? e.message, since: n, total: this.stats.acceptErrors }, 'cannot accept a connection');
  };

  private accept(c: net.Socket, dialect: Dialect): void {
    if (this.closing) {
      c.destroy();
      return;
    }
    if (this.conns.size >= this.config.maxConnections) {
      this.refuse(c);
      return;
    }
    const conn = new Connection(this.nextConnId++, c, this, dialect);
    this.conns.add(conn);
    this.byEndpoint.set(conn.sock.id, conn);
    this.stats.accepted++;
    this.stats.active = this.conns.size;
    this.logger.debug({ conn: conn.id, socket: conn.sock.id, dialect }, 'connection opened');
  }

  /**
   * Over maxConnections: the client gets a header-only message (type 0, errno ENFILE,
   * seq 0, pid 0), as socket() fails when the system's file table is full, and the
   * connection is closed. Counted, and logged at most once per 10 s.
   */
  private refuse(c: net.Socket): void {
    this.stats.refusedConnections++;
    const n = this.refusals.hit();
    if (n) {
      this.logger.warn({ maxConnections: this.config.maxConnections, since: n, total: this.stats.refusedConnections }, 'connection refused: too many connections (ENFILE)');
    }
    c.on('error', () => c.destroy());
    c.resume(); // whatever it sends is discarded, so closing cannot reset the reply away
    c.end(REFUSED_NOTICE);
    setTimeout(() => c.destroy(), 2000).unref();
  }

  forget(conn: Connection): void {
    if (!this.conns.delete(conn)) return;
    this.byEndpoint.delete(conn.sock.id);
    this.stats.active = this.conns.size;
    this.logger.debug({ conn: conn.id, dropped: conn.sock.dropped }, 'connection closed');
  }

  connectionCount(): number {
    return this.conns.size;
  }

  reconfigure(next: DaemonConfig): Reconfigured {
    const done: Reconfigured = { applied: [], newConnections: [], needRestart: [] };
    const config = { ...this.config };
    const same = (a: unknown, b: unknown) => JSON.stringify(a instanceof Map ? [...a] : a) === JSON.stringify(b instanceof Map ? [...b] : b);
    for (const key of Object.keys(RELOAD) as Array<keyof DaemonConfig>) {
      if (same(this.config[key], next[key])) continue;
      const how = RELOAD[key];
      if (how === 'restart') {
        done.needRestart.push(key);
        continue;
      }
      (config as Record<string, unknown>)[key] = next[key];
      (how === 'live' ? done.applied : done.newConnections).push(key);
    }
    this.config = config;
    this.logger.level = config.logLevel;
    // A changed debug list sets the klipsdebug flags to exactly that list (as at start, from zero).
    if (done.applied.includes('debug')) for (const name of DEBUG_SUBSYSTEMS) this.engine.debug[name] = config.debug.includes(name) ? 0xffffffff : 0;
    this.budget.limit = config.rcvbufTotal;
    this.budget.reserve = reserveOf(config);
    this.logger.info(done, 'configuration reloaded');
    if (done.needRestart.length) this.logger.warn({ keys: done.needRestart }, 'configuration keys that take effect only after a restart were left as they are');
    return done;
  }

  private pidOf = (ep: Endpoint): number => this.byEndpoint.get(ep.id)?.lastPid ?? 0;

  /**
   * Views klipsd serves beside the engine's (the engine knows nothing of the data plane):
   * the paths' counters from the start, the runtime's once klipsd --dataplane adds them.
   */
  private readonly serverViews = new Map<string, () => { text: string; data: unknown }>([
    ['dataplane', () => dataplaneView(this.engine)],
  ]);

  /** Serve `name` on the view channel from `render` (e.g. klipsd --dataplane's "runtime"). */
  addView(name: string, render: () => { text: string; data: unknown }): void {
    this.serverViews.set(name, render);
  }

  private viewNames(): string {
    return [...VIEW_NAMES, ...this.serverViews.keys()].join(', ');
  }

  view(name: string): View<string> | undefined {
    const own = this.serverViews.get(name);
    if (own) return { view: name, ...own() };
    return renderView(name, this.engine, {
      pidOf: this.pidOf,
      serverStats: () => ({
        ...this.stats,
        dropped: this.engine.stats.dropped,
        heldBytes: this.budget.used,
        totalLimitDrops: this.budget.dropped,
        logDropped: this.logSink?.dropped ?? 0,
        logLastError: this.logSink?.lastError ?? '',
      }),
    });
  }

  // ---------- the view channel: one JSON request per line, one JSON answer per line ----------

  private acceptInfo(c: net.Socket): void {
    if (this.closing) {
      c.destroy();
      return;
    }
    this.infoConns.add(c);
    c.setEncoding('utf8');
    let buf = '';
    // Answers go out in request order; a trace's may wait for dataplane/trace.ts to load.
    let queue: Promise<void> = Promise.resolve();
    c.on('data', (s: string) => {
      buf += s;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const answer = this.answerInfo(line);
        queue = queue.then(async () => {
          const a = await answer;
          if (!c.destroyed) c.write(`${JSON.stringify(a)}\n`);
        });
      }
      if (buf.length > MAX_INFO_LINE) {
        c.end(`${JSON.stringify({ error: 'request line too long' })}\n`);
        buf = '';
      }
    });
    c.on('error', () => c.destroy());
    c.on('close', () => this.infoConns.delete(c));
  }

  answerInfo(line: string): unknown | Promise<unknown> {
    this.stats.infoRequests++;
    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      return { error: 'request is not JSON' };
    }
    const r = req as { view?: unknown; views?: unknown; trace?: unknown };
    const one = (name: unknown) => (typeof name === 'string' ? this.view(name) : undefined);
    if (typeof r?.view === 'string') {
      return one(r.view) ?? { error: `unknown view "${r.view}" (known: ${this.viewNames()})` };
    }
    if (Array.isArray(r?.views)) {
      const out: Record<string, View<string>> = {};
      for (const name of r.views) {
        const v = one(name);
        if (!v) return { error: `unknown view ${JSON.stringify(name)} (known: ${this.viewNames()})` };
        out[name as string] = v;
      }
      return { views: out };
    }
    if (r && typeof r === 'object' && 'trace' in r) return this.trace(r.trace);
    return { error: 'expected {"view": NAME}, {"views": [NAME, ...]} or {"trace": {"dir", "packet", "count"}}' };
  }

  /**
   * `klips trace`: one packet through the live tables (dataplane/trace.ts). A trace
   * encrypts and decrypts with the SAs' keys, and with count it changes state as a real
   * packet does (sequence numbers, lifetimes, ACQUIRE), so it needs the rights of a
   * PF_KEY connection. klipsd makes both socket files alike (owner, group, mode); a
   * trace is answered only while the view channel's file grants nobody more than the
   * PF_KEY socket's does, so opening the views to others (as KLIPS's /proc files were
   * world-readable) does not open traces to them.
   */
  private async trace(request: unknown): Promise<unknown> {
    const refused = this.traceRefusal();
    if (refused) return { error: refused };
    let tracer: Tracer;
    try {
      tracer = await (this.tracer ??= import('../dataplane/trace.js'));
    } catch (e) {
      this.tracer = undefined;
      this.logger.error({ err: e }, 'cannot load the data plane for a trace');
      return { error: `trace: klipsd cannot load its data plane (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
    }
    const answer = tracer.traceAnswer(this.engine, request);
    if (this.logger.isLevelEnabled('debug') && !('error' in answer)) {
      this.logger.debug({ dir: answer.dir, count: answer.count, result: answer.result, reason: answer.reason }, 'trace');
    }
    return answer;
  }

  /**
   * dataplane/trace.ts (with the transforms and paths behind it), loaded at the first
   * trace: klipsd starts with the modules its PF_KEY service needs, as before the data
   * plane existed (under a low open-file limit, Node opens a module graph's files at once).
   */
  private tracer: Promise<Tracer> | undefined;

  /** Why a trace may not run now: the view channel grants more than the PF_KEY socket, or a socket file is gone. */
  private traceRefusal(): string | undefined {
    let main: fs.Stats;
    let info: fs.Stats;
    try {
      main = fs.statSync(this.socketPath);
      info = fs.statSync(this.infoPath);
    } catch (e) {
      return `trace: refused, cannot compare the rights of ${this.socketPath} and ${this.infoPath} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
    }
    const bits = info.mode & ~main.mode;
    const wider = (info.uid !== main.uid && (info.mode & OWNER_BITS) !== 0)
      || (info.gid !== main.gid && (info.mode & GROUP_BITS) !== 0)
      || (bits & (OWNER_BITS | GROUP_BITS | OTHER_BITS)) !== 0;
    return wider ? `trace: refused, ${this.infoPath} grants more than ${this.socketPath} does (a trace needs the rights of a PF_KEY connection)` : undefined;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      if (this.tick) clearInterval(this.tick);
      const closed = [
        new Promise<void>((r) => this.pfkeyServer.close(() => r())),
        new Promise<void>((r) => this.infoServer.close(() => r())),
      ];
      if (this.inodes.kame !== undefined) closed.push(new Promise<void>((r) => this.kameServer.close(() => r())));
      for (const conn of [...this.conns]) conn.destroy();
      for (const c of this.infoConns) c.destroy();
      removeIfOurs(this.socketPath, this.inodes.main);
      removeIfOurs(this.infoPath, this.inodes.info);
      if (this.kamePath !== undefined) removeIfOurs(this.kamePath, this.inodes.kame);
      await Promise.all(closed);
      this.logger.info({ socket: this.socketPath }, 'klipsd stopped');
    })();
    return this.closing;
  }
}

/** Start klipsd's listeners; resolves once both sockets accept connections. */
export async function startServer(opts: ServerOptions): Promise<KlipsServer> {
  const config = opts.config ?? { ...DEFAULT_CONFIG };
  const logger = opts.logger ?? silentLogger();
  const server = new Server(path.resolve(opts.socketPath), config, logger, opts.engine, opts.logSink, opts.kameSocketPath, opts.poisonReads ?? false);
  await server.start(opts);
  return server;
}
