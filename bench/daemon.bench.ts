/**
 * The klipsd suite: PF_KEY over klipsd's Unix stream socket, next to the floor any framed
 * Unix-socket server in Node has to pay, paired round by round.
 *
 *  - floor: an echo server (its own process) that reads as klipsd reads (one buffer for
 *    every read), frames the stream by sadb_msg_len and returns every complete frame,
 *    pipelined, with one copy per read and nothing allocated per message; one client
 *    writes the same 136-byte ADDs klipsd gets, with a bounded window in flight, and
 *    counts the echoes by walking frame lengths (no parsing);
 *  - pipelined ADDs through klipsd (its own process, the real binary) on one connection:
 *    N ADDs of distinct SPIs written back to back with the same window and the same
 *    counting client, so klipsd and the echo server are measured by identical clients;
 *    also from 16 clients at once (every ADD reply is broadcast to all 16, as KLIPS
 *    does), and klipsd's batch path in process (the same reads, framing, batches and
 *    reply runs, no socket) for what the socket I/O adds;
 *  - GET round trip idle, closed loop (one outstanding): p50/p99/max, next to the echo's,
 *    from a client in its own process (one read buffer, so nothing allocated per read)
 *    that alternates blocks of 1000 GETs between klipsd and the echo;
 *  - GET latency idle, open loop: GETs due on a fixed schedule (one per ms) from a client
 *    in its own process; each latency runs from the GET's due time to its answer;
 *  - GET latency during a DUMP of 10^6 SAs (10^5 with --quick), the same open-loop client.
 *
 * Pairing: each round runs the echo floor, then the ADD runs; "vs floor" is the median
 * of the per-round ratios, and a row's rate is its median round. Goals: pipelined ADDs
 * >= 25% of the echo floor (issue 4) and >= 1M/s (issue 10); GET p99 <= 50 µs idle and
 * < 10 ms during the DUMP. All PASS/BELOW, informational.
 *
 * Every load loop is bounded by a message count and a time limit.
 * Standalone: node dist/bench/daemon.bench.js [--quick]
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  AF_INET, SADB_DUMP, SADB_FLUSH, SADB_GET, SADB_SATYPE_ESP, SADB_SASTATE_MATURE,
  FrameDecoder, MAX_MESSAGE_BYTES, buildMessage, type Address,
} from '../src/wire/index.js';
import { Engine } from '../src/engine/engine.js';
import { PfkeySocket } from '../src/socket/pfkey-socket.js';
import { READ_BUFFER_BYTES, ReadBuffer } from '../src/daemon/read-buffer.js';
import { DEFAULT_CONFIG } from '../src/daemon/config.js';
import {
  fmtMs, latencyRow, median, paired, pairedExtra, percent, runAloneIfMain, summarize,
  type LatencySummary, type ResultRow, type Suite, type SuiteOptions, type SuiteResult,
} from './harness.js';
import { SMALL_ADD, SMALL_ADD_BYTES } from './wire.bench.js';

/** Issue 4: pipelined ADDs at >= 25% of the echo floor's message rate. */
const GOAL_OF_FLOOR = 0.25;
/** Issue 10: pipelined ADDs on one connection. */
const GOAL_ADDS_PER_S = 1e6;
/** Issue 10: GET round trip p99, idle. */
const GOAL_GET_IDLE_P99_MS = 0.05;
/** GET p99 during the DUMP. */
const GOAL_GET_DUMP_P99_MS = 10;
/** What klipsd's flush takes at once (its write high-water mark). */
const WRITE_HIGH_WATER = DEFAULT_CONFIG.writeHighWater;
/** Messages in flight per pipelining client. */
const WINDOW = 2048;
/** Open-loop GETs: one due every this many ms. */
const GET_PERIOD_MS = 1;
const RUN_LIMIT_MS = 60_000;
const DUMP_LIMIT_MS = 120_000;

const here = path.dirname(fileURLToPath(import.meta.url));
const DAEMON = path.resolve(here, '../src/daemon/main.js');
const SELF = fileURLToPath(import.meta.url);

const v4 = (addr: string): Address => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });

/** The typical ADD (bench/wire.bench.ts SMALL_ADD): 136 bytes. SPI at 20 (network order), seq at 8, pid at 12. */
const ADD_TEMPLATE = buildMessage(SMALL_ADD);
if (ADD_TEMPLATE.length !== SMALL_ADD_BYTES) throw new Error(`the ADD is ${ADD_TEMPLATE.length} bytes, not ${SMALL_ADD_BYTES}`);
const ADD_LEN = ADD_TEMPLATE.length;

function putAdd(buf: Buffer, at: number, spi: number, seq: number, pid: number): void {
  buf.set(ADD_TEMPLATE, at);
  buf.writeUInt32BE(spi >>> 0, at + 20);
  buf.writeUInt32LE(seq >>> 0, at + 8);
  buf.writeUInt32LE(pid >>> 0, at + 12);
}

/** ADDs number [from, to) of a run: SPI firstSpi + i, seq i + 1. */
export function addChunk(from: number, to: number, firstSpi: number, pid: number): Buffer {
  const buf = Buffer.allocUnsafe((to - from) * ADD_LEN);
  for (let i = from; i < to; i++) putAdd(buf, (i - from) * ADD_LEN, firstSpi + i, i + 1, pid);
  return buf;
}

function getMessage(spi: number, seq: number, pid: number): Buffer {
  return Buffer.from(buildMessage({
    header: { type: SADB_GET, satype: SADB_SATYPE_ESP, seq, pid },
    sa: { spi, replay: 0, state: SADB_SASTATE_MATURE, auth: 0, encrypt: 0, flags: 0 },
    addressSrc: v4('192.0.2.1'),
    addressDst: v4('198.51.100.7'),
  }));
}

/** Bytes of the GETs here (SA extension, IPv4 source and destination). */
const GET_BYTES = getMessage(0x100, 1, 1).length;

// ---------- framing by length, for every client here ----------

/**
 * Walks a PF_KEY byte stream frame by frame using only sadb_msg_len: for each frame it
 * reads type, errno, seq and pid from the header and calls onFrame when the frame's last
 * byte has arrived. No message is parsed, copied or allocated (a header split across
 * chunks is gathered in a 16-byte scratch buffer).
 */
export class FrameWalker {
  private readonly hdr = Buffer.alloc(16);
  private have = 0;
  private rest = 0;
  private type = 0;
  private errno = 0;
  private seq = 0;
  private pid = 0;
  private len = 0;

  constructor(private readonly onFrame: (type: number, errno: number, seq: number, pid: number) => void) {}

  /** The stream's next bytes: [0, n) of `b`. */
  push(b: Uint8Array, n = b.length): void {
    let off = 0;
    while (off < n) {
      if (this.rest > 0) {
        const t = Math.min(this.rest, n - off);
        this.rest -= t;
        off += t;
        if (this.rest === 0) this.onFrame(this.type, this.errno, this.seq, this.pid);
        continue;
      }
      if (this.have === 0 && n - off >= 16) {
        this.head(b, off);
        if (n - off >= this.len) {
          off += this.len;
          this.onFrame(this.type, this.errno, this.seq, this.pid);
        } else {
          this.rest = this.len - (n - off);
          off = n;
        }
        continue;
      }
      const t = Math.min(16 - this.have, n - off);
      this.hdr.set(b.subarray(off, off + t), this.have);
      this.have += t;
      off += t;
      if (this.have === 16) {
        this.have = 0;
        this.head(this.hdr, 0);
        this.rest = this.len - 16;
        if (this.rest === 0) this.onFrame(this.type, this.errno, this.seq, this.pid);
      }
    }
  }

  private head(b: Uint8Array, off: number): void {
    this.type = b[off + 1];
    this.errno = b[off + 2];
    this.len = (b[off + 4] | (b[off + 5] << 8)) * 8;
    this.seq = (b[off + 8] | (b[off + 9] << 8) | (b[off + 10] << 16)) + b[off + 11] * 16777216;
    this.pid = (b[off + 12] | (b[off + 13] << 8) | (b[off + 14] << 16)) + b[off + 15] * 16777216;
    if (this.len < 16) throw new Error(`unframeable reply: sadb_msg_len ${this.len / 8}`);
  }
}

// ---------- the echo server (a child: daemon.bench.js --echo-server PATH) ----------

/**
 * Frames by sadb_msg_len and writes back each run of complete frames as it completes.
 * It reads as klipsd does (src/daemon/read-buffer.ts: every read into one buffer, so
 * nothing is allocated per read), and so copies what it writes: the complete frames of
 * a read, with the start of one split across reads held in a buffer of its own, go out
 * as one write. One allocation per read, nothing per message.
 */
function echoServer(p: string): void {
  try { fs.unlinkSync(p); } catch { /* absent */ }
  const reads = new ReadBuffer();
  const server = net.createServer({ pauseOnConnect: true }, (accepted) => {
    /** The start of a frame split across reads (never a whole frame). */
    const held = Buffer.allocUnsafe(MAX_MESSAGE_BYTES);
    let heldLen = 0;
    const c: net.Socket = reads.adopt(accepted, (chunk, n) => {
      // The stream from the held bytes on: held[0, heldLen) then chunk[0, n).
      const total = heldLen + n;
      const byteAt = (i: number): number => (i < heldLen ? held[i] : chunk[i - heldLen]);
      let end = 0;
      while (total - end >= 6) {
        const len = (byteAt(end + 4) | (byteAt(end + 5) << 8)) * 8;
        if (len < 16 || len > MAX_MESSAGE_BYTES) { c.destroy(); return; }
        if (total - end < len) break;
        end += len;
      }
      if (end === 0) {
        held.set(chunk.subarray(0, n), heldLen);
        heldLen = total;
        return;
      }
      // A whole frame ends in this read, so the held start is all in it: end >= heldLen.
      const out = Buffer.allocUnsafe(end);
      held.copy(out, 0, 0, heldLen);
      out.set(chunk.subarray(0, end - heldLen), heldLen);
      c.write(out);
      held.set(chunk.subarray(end - heldLen, n), 0);
      heldLen = total - end;
    });
    c.on('error', () => c.destroy());
  });
  server.listen(p, () => process.stdout.write('ready\n'));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

// ---------- the open-loop GET client (a child: --open-loop-client SOCKET PERIOD MAX FIRST_SPI SPIS) ----------

interface OpenLoopResult {
  sent: number;
  answered: number;
  errors: number;
  /** Latency from each GET's due time to its answer, ms. */
  latency: LatencySummary;
  /** How late each GET was written after its due time, ms (the client's own lateness, included in latency). */
  lag: LatencySummary;
  /** From each GET's write to its answer, ms (what the latency would be without the lag). */
  fromWrite: LatencySummary;
  spanMs: number;
}

/**
 * Connects, warms up (closed loop), prints "ready"; on "go" (stdin) sends GET number k
 * at t0 + k * period until `max` or "stop", then waits for the outstanding answers and
 * prints an OpenLoopResult as one JSON line. While nothing is outstanding it sleeps
 * with Atomics.wait until SPIN_MS before the next due time and spins the rest, so it
 * writes on time to a few µs; while answers are outstanding it stays in the event loop
 * and a timer wakes it (up to ~1 ms late: the lag is reported, and counted in the
 * latency).
 */
const SPIN_MS = 0.2;

async function openLoopClient(sockPath: string, period: number, max: number, firstSpi: number, spis: number): Promise<void> {
  const pid = 30000 + (process.pid & 0xffff);
  const RING = 4096;
  const ring = Array.from({ length: RING }, (_, i) => getMessage(firstSpi + ((i * 7919) % spis), i, pid));
  const c = await connect(sockPath);
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const lat = new Float64Array(max);
  const lag = new Float64Array(max);
  const fromWrite = new Float64Array(max);
  let t0 = 0;
  let k = 0;
  let answered = 0;
  let errors = 0;
  let phase: 'warm' | 'idle' | 'run' | 'stopping' | 'done' = 'warm';
  let timer: NodeJS.Timeout | undefined;
  let onWarm: (() => void) | undefined;

  const finish = (): void => {
    if (phase === 'done') return;
    phase = 'done';
    if (timer) clearTimeout(timer);
    const result: OpenLoopResult = {
      sent: k, answered, errors,
      latency: summarize(Array.from(lat.subarray(0, answered))),
      lag: summarize(Array.from(lag.subarray(0, k))),
      fromWrite: summarize(Array.from(fromWrite.subarray(0, answered))),
      spanMs: performance.now() - t0,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
  };

  const pump = (): void => {
    timer = undefined;
    for (;;) {
      if (phase !== 'run') break;
      let now = performance.now();
      while (k < max && t0 + k * period <= now) {
        lag[k] = now - (t0 + k * period);
        c.write(ring[k % RING]);
        k++;
        now = performance.now();
      }
      if (k >= max) { phase = 'stopping'; break; }
      const wait = t0 + k * period - now;
      if (answered === k && wait <= 2) {
        // Nothing outstanding, so nothing to read: sleep until just before the next GET is
        // due (a timed futex wait oversleeps by tens of µs), then spin the rest.
        if (wait > SPIN_MS) Atomics.wait(sleeper, 0, 0, wait - SPIN_MS);
        else while (performance.now() < t0 + k * period);
        continue;
      }
      timer = setTimeout(pump, answered === k ? wait - 1.5 : Math.max(0, wait));
      return;
    }
    if (phase === 'stopping' && answered >= k) finish();
  };

  let warmDone = 0;
  const walker = new FrameWalker((type, errno, seq, fromPid) => {
    if (fromPid !== pid || type !== SADB_GET) return;
    if (phase === 'warm') {
      if (++warmDone < 500) c.write(ring[warmDone % RING]);
      else onWarm?.();
      return;
    }
    const now = performance.now();
    if (errno !== 0 || seq !== answered % RING) errors++;
    const due = t0 + answered * period;
    lat[answered] = now - due;
    fromWrite[answered] = now - due - lag[answered];
    answered++;
  });
  c.on('data', (chunk: Buffer) => {
    walker.push(chunk);
    if (phase === 'run' && answered === k) {
      // All answered: take over from the timer, to sleep precisely until the next one is due.
      if (timer) clearTimeout(timer);
      pump();
    } else if (phase === 'stopping' && answered >= k) finish();
  });
  c.on('error', (e) => { process.stderr.write(`open-loop client: ${e.message}\n`); process.exit(1); });

  await new Promise<void>((resolve) => { onWarm = resolve; c.write(ring[0]); });
  phase = 'idle';
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line === 'go' && phase === 'idle') {
      phase = 'run';
      t0 = performance.now();
      pump();
    } else if (line === 'stop' && (phase === 'run' || phase === 'idle')) {
      phase = 'stopping';
      if (timer) clearTimeout(timer);
      if (answered >= k) finish();
      // Answers still outstanding: give them a bounded time.
      else setTimeout(finish, 10_000).unref();
    }
  });
  process.stdout.write('ready\n');
}

// ---------- the closed-loop GET client (a child: --closed-loop-client KLIPSD_SOCKET ECHO_SOCKET N FIRST_SPI SPIS) ----------

/** Closed-loop GETs alternate between klipsd and the echo in blocks of this many. */
const CLOSED_BLOCK = 1000;
/**
 * GETs to each before the measured ones. The ADDs before compile only the ADD path;
 * klipsd's GET path reaches V8's optimizing tier after some 500-2000 GETs, and is
 * re-optimized until ~5000 (node --trace-opt). Measured after 500, klipsd's p99 carried
 * the compiler's work on two cores. A daemon that has served its key manager for a
 * while is past that.
 */
const CLOSED_WARM = 5000;

/** GET round trips on one connection, one outstanding; reads go into one buffer of its own (nothing allocated per read). */
class RoundTripper {
  private readonly walker: FrameWalker;
  private msgs: Uint8Array[] = [];
  private lat: Float64Array | undefined;
  private i = 0;
  private to = 0;
  private t0 = 0;
  private done: (() => void) | undefined;
  private fail: ((e: Error) => void) | undefined;
  private c: net.Socket | undefined;

  constructor() {
    this.walker = new FrameWalker((_type, errno) => {
      const now = performance.now();
      if (errno !== 0) { this.fail?.(new Error(`errno ${errno}`)); return; }
      if (this.lat) this.lat[this.i] = now - this.t0;
      if (++this.i === this.to) { this.done?.(); return; }
      this.t0 = performance.now();
      this.c!.write(this.msgs[this.i]);
    });
  }

  async connect(p: string): Promise<void> {
    this.c = await connectReading(p, (buf, n) => this.walker.push(buf, n));
  }

  /** Round trips of msgs[from, to), one at a time; each latency (ms) into lat[k] when given. */
  run(msgs: Uint8Array[], from: number, to: number, lat?: Float64Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.msgs = msgs;
      this.lat = lat;
      this.i = from;
      this.to = to;
      this.done = resolve;
      this.fail = reject;
      this.t0 = performance.now();
      this.c!.write(msgs[from]);
    });
  }

  close(): void { this.c?.destroy(); }
}

/**
 * Warms up both, then runs N GETs (SPIs spread over the SAs) against klipsd and the same
 * N against the echo, one outstanding, in alternating blocks, so both see the machine in
 * the same state; prints {klipsd, echo} latency summaries (ms) as one JSON line.
 */
async function closedLoopClient(klipsPath: string, echoPath: string, n: number, firstSpi: number, spis: number): Promise<void> {
  const pid = 40000 + (process.pid & 0xffff);
  const gets = Array.from({ length: n }, (_, i) => getMessage(firstSpi + ((i * 7919) % spis), i + 1, pid));
  const targets = [new RoundTripper(), new RoundTripper()];
  await targets[0].connect(klipsPath);
  await targets[1].connect(echoPath);
  const lat = [new Float64Array(n), new Float64Array(n)];
  for (const t of targets) await withLimit(t.run(gets, 0, Math.min(n, CLOSED_WARM)), RUN_LIMIT_MS, 'closed-loop warm-up');
  for (let from = 0; from < n; from += CLOSED_BLOCK) {
    for (let j = 0; j < 2; j++) await withLimit(targets[j].run(gets, from, Math.min(n, from + CLOSED_BLOCK), lat[j]), RUN_LIMIT_MS, 'closed-loop GETs');
  }
  for (const t of targets) t.close();
  process.stdout.write(`${JSON.stringify({ klipsd: summarize(Array.from(lat[0])), echo: summarize(Array.from(lat[1])) })}\n`, () => process.exit(0));
}

/** Runs the closed-loop client child to the end; its two summaries. */
async function closedLoop(klipsPath: string, echoPath: string, n: number, firstSpi: number, spis: number): Promise<{ klipsd: LatencySummary; echo: LatencySummary }> {
  const ch = spawn(process.execPath, [SELF, '--closed-loop-client', klipsPath, echoPath, String(n), String(firstSpi), String(spis)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const lines = createInterface({ input: ch.stdout! })[Symbol.asyncIterator]();
    const r = await withLimit(lines.next(), RUN_LIMIT_MS, 'closed-loop client');
    if (r.done) throw new Error('the closed-loop client exited without a result');
    return JSON.parse(r.value) as { klipsd: LatencySummary; echo: LatencySummary };
  } finally {
    await stopChild(ch);
  }
}

/** A running open-loop client child. */
class OpenLoop {
  private readonly lines: AsyncIterator<string>;
  private constructor(private readonly ch: ChildProcess) {
    this.lines = createInterface({ input: ch.stdout! })[Symbol.asyncIterator]();
  }

  static async start(sockPath: string, max: number, firstSpi: number, spis: number): Promise<OpenLoop> {
    const ch = spawn(process.execPath, [SELF, '--open-loop-client', sockPath, String(GET_PERIOD_MS), String(max), String(firstSpi), String(spis)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const o = new OpenLoop(ch);
    const first = await withLimit(o.lines.next(), 30_000, 'open-loop client start');
    if (first.value !== 'ready') throw new Error(`open-loop client said ${String(first.value)}`);
    return o;
  }

  go(): void { this.ch.stdin!.write('go\n'); }
  stop(): void { this.ch.stdin!.write('stop\n'); }
  /** Ends the child without waiting for its result (on an error elsewhere). */
  abort(): Promise<void> { return stopChild(this.ch); }

  async result(limitMs: number): Promise<OpenLoopResult> {
    try {
      const r = await withLimit(this.lines.next(), limitMs, 'open-loop client result');
      if (r.done) throw new Error('open-loop client exited without a result');
      return JSON.parse(r.value) as OpenLoopResult;
    } finally {
      await stopChild(this.ch);
    }
  }
}

// ---------- clients in this process ----------

function connect(p: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect(p, () => resolve(c));
    c.once('error', reject);
  });
}

/** connect() for a client that reads into one buffer of its own (nothing allocated per read): each read, bytes [0, n) of `buf`, goes to onRead. */
function connectReading(p: string, onRead: (buf: Uint8Array, n: number) => void): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ path: p, onread: { buffer: Buffer.allocUnsafe(65536), callback: (n, buf) => { onRead(buf, n); return true; } } }, () => {
      c.off('error', reject);
      resolve(c);
    });
    c.once('error', reject);
  });
}

async function waitConnectable(p: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      (await connect(p)).destroy();
      return;
    } catch {
      if (Date.now() > end) throw new Error(`nothing listening on ${p}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function withLimit<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`${what} did not finish within ${ms} ms`)), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Pipelining clients whose replies reach every one of them (klipsd broadcasts each ADD
 * reply to every socket): each keeps its own window, and together they write only while
 * every socket has read all but `window` of the replies to what they have written. A
 * reader that falls behind otherwise falls behind without bound (the others go on
 * getting their own replies and writing more), until klipsd drops replies for it, as
 * KLIPS does for a full socket, including the reader's own, and that client waits
 * forever; with the shared window the row measures the fan-out at the pace of its
 * slowest reader.
 */
export class Fanout {
  readonly members: Pipeliner[] = [];
  /** Messages written by all members. */
  sent = 0;

  constructor(private readonly window: number) {}

  /** How many more messages the members may write now. */
  room(): number {
    let min = Infinity;
    for (const m of this.members) if (m.received < min) min = m.received;
    return this.window - (this.sent - min);
  }

  /** Some socket read replies: let every member write what its window and the shared one allow. */
  kick(): void {
    for (const m of this.members) m.pump();
  }
}

/**
 * A pipelining client: writes messages [0, total) as `chunk(from, to)` slices with at
 * most `window` of its own messages unanswered, and counts replies with a FrameWalker
 * (lengths only). With `pid`, only replies carrying that pid count as its own (ADD
 * replies are broadcast to every socket); without, every frame counts. In a Fanout, it
 * also writes only while the group's shared window is open. Its socket reads into one
 * buffer of its own (Pipeliner.connect), so the client allocates nothing per read: at
 * a million replies a second a fresh buffer per read kept this process's collector busy.
 */
export class Pipeliner {
  private sent = 0;
  private got = 0;
  /** Every frame received, its own or not. */
  received = 0;
  private done!: () => void;
  private fail!: (e: Error) => void;
  readonly finished: Promise<void>;
  private readonly walker: FrameWalker;

  constructor(
    readonly c: net.Socket,
    private readonly total: number,
    private readonly chunk: (from: number, to: number) => Uint8Array,
    private readonly window: number,
    private readonly pid?: number,
    private readonly fanout?: Fanout,
  ) {
    fanout?.members.push(this);
    this.finished = new Promise((res, rej) => { this.done = res; this.fail = rej; });
    this.walker = new FrameWalker((_type, errno, _seq, fromPid) => {
      this.received++;
      if (this.pid !== undefined && fromPid !== this.pid) return;
      if (errno !== 0) this.fail(new Error(`errno ${errno} in a reply`));
      this.got++;
    });
    c.on('error', (e) => this.fail(e));
  }

  /** A Pipeliner (made by `make`) on a new connection to `p` whose reads go to it. */
  static async connect(p: string, make: (c: net.Socket) => Pipeliner): Promise<Pipeliner> {
    let pl: Pipeliner | undefined;
    // Nothing arrives before the Pipeliner exists: it writes first (start()).
    const c = await connectReading(p, (buf, n) => pl!.onRead(buf, n));
    pl = make(c);
    return pl;
  }

  start(): void {
    this.pump();
  }

  pump(): void {
    let target = Math.min(this.total, this.got + this.window);
    if (this.fanout !== undefined) target = Math.min(target, this.sent + this.fanout.room());
    if (target > this.sent) {
      this.c.write(this.chunk(this.sent, target));
      if (this.fanout !== undefined) this.fanout.sent += target - this.sent;
      this.sent = target;
    }
  }

  /** Bytes [0, n) of `b` arrived. */
  onRead(b: Uint8Array, n: number): void {
    try {
      this.walker.push(b, n);
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    if (this.got >= this.total) this.done();
    else if (this.fanout !== undefined) this.fanout.kick();
    else if (this.sent - this.got <= this.window / 2) this.pump();
  }
}

/** One pipelined run on a fresh connection; returns its duration in ms. */
export async function pipelined(sockPath: string, total: number, chunk: (from: number, to: number) => Uint8Array, what: string, pid?: number, limitMs = RUN_LIMIT_MS): Promise<number> {
  const p = await Pipeliner.connect(sockPath, (c) => new Pipeliner(c, total, chunk, WINDOW, pid));
  try {
    const t0 = performance.now();
    p.start();
    await withLimit(p.finished, limitMs, what);
    return performance.now() - t0;
  } finally {
    p.c.destroy();
  }
}

function startChild(args: string[]): ChildProcess {
  return spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function stopChild(ch: ChildProcess): Promise<void> {
  if (ch.exitCode !== null || ch.signalCode !== null) return;
  const exited = new Promise((r) => ch.once('exit', r));
  ch.kill('SIGTERM');
  const t = setTimeout(() => ch.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

async function flush(p: string): Promise<void> {
  const t = new RoundTripper();
  await t.connect(p);
  try {
    await withLimit(t.run([buildMessage({ header: { type: SADB_FLUSH, satype: 0, seq: 1, pid: 1 } })], 0, 1), RUN_LIMIT_MS, 'FLUSH');
  } finally {
    t.close();
  }
}

/** Fills klipsd with `n` SAs (SPIs firstSpi..) through pipelined ADDs, untimed. */
async function fill(p: string, n: number, firstSpi: number): Promise<void> {
  // Bounded: a minute, plus 0.1 ms per SA (a loaded machine fills 10^6 SAs well within 160 s).
  await pipelined(p, n, (from, to) => addChunk(from, to, firstSpi, 999), 'fill', 999, RUN_LIMIT_MS + n * 0.1);
}

// ---------- klipsd's batch path in process, for comparison ----------

/**
 * klipsd's handling of the ADD stream without its socket: the stream copied read by read
 * into one buffer of klipsd's read size (as the kernel fills klipsd's), each read framed
 * and handled as one batch (beginBatch .. endBatch), its replies taken in runs as
 * klipsd's flush takes them and let go as a finished write lets them go. The ceiling
 * that klipsd's socket I/O leaves room under.
 */
function engineCeiling(stream: Buffer, n: number): number {
  const engine = new Engine();
  const sock = new PfkeySocket(engine, { rcvbuf: 1 << 30 });
  const decoder = new FrameDecoder();
  const read = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  const onFrame = (buf: Uint8Array, off: number, len: number): void => { sock.submitAt(buf, off, len); };
  const total = n * ADD_LEN;
  const t0 = performance.now();
  for (let at = 0; at < total; at += READ_BUFFER_BYTES) {
    const k = stream.copy(read, 0, at, Math.min(total, at + READ_BUFFER_BYTES));
    const chunk = k === read.length ? read : read.subarray(0, k);
    engine.beginBatch(chunk, decoder.nextStart);
    const err = decoder.pushAt(chunk, onFrame);
    engine.endBatch();
    if (err) throw new Error(`the ADD stream cannot be framed: ${err.reason}`);
    for (let m = sock.takeRun(WRITE_HIGH_WATER); m !== undefined; m = sock.takeRun(WRITE_HIGH_WATER)) sock.release(m.length);
  }
  const ms = performance.now() - t0;
  if (engine.sadb.size !== n) throw new Error(`the in-process run stored ${engine.sadb.size} of ${n} SAs`);
  sock.close();
  return ms;
}

// ---------- rows ----------

/** A row from per-round durations of `n` operations: the median round's rate; p99 column = the slowest round. */
function roundsRow(name: string, n: number, ms: number[], extra: Record<string, number | string> = {}): ResultRow {
  const hz = median(ms.map((m) => (n / m) * 1000));
  return { name, hz, mean: 1e9 / hz, p99: (Math.max(...ms) * 1e6) / n, samples: ms.length, extra };
}

const rates = (n: number, ms: number[]) => ms.map((m) => (n / m) * 1000);

function openLoopRow(name: string, r: OpenLoopResult, goalMs: number): ResultRow {
  return latencyRow(name, r.latency, {
    'lag p50': fmtMs(r.lag.p50),
    'lag p99': fmtMs(r.lag.p99),
    'lag max': fmtMs(r.lag.max),
    'p99 from write': fmtMs(r.fromWrite.p99),
    unanswered: r.sent - r.answered,
    errors: r.errors,
    goal: r.latency.p99 <= goalMs ? `PASS (p99 <= ${fmtMs(goalMs)})` : `ABOVE (p99 > ${fmtMs(goalMs)})`,
  }, r.spanMs);
}

// ---------- the suite ----------

export const suite: Suite = {
  name: 'daemon',
  description: 'klipsd over its Unix socket: pipelined 136-byte ADDs (1 and 16 clients) paired with a framed echo floor per round, GET latency idle (closed and open loop) and during a DUMP (open loop)',
  async run(opts: SuiteOptions): Promise<SuiteResult> {
    const N = opts.quick ? 20_000 : 100_000;
    const ECHO_N = opts.quick ? 100_000 : 500_000;
    const GETS = opts.quick ? 2_000 : 10_000;
    const OPEN_IDLE = opts.quick ? 1_000 : 5_000;
    const DUMP_N = opts.quick ? 100_000 : 1_000_000;
    const ROUNDS = opts.rounds ?? (opts.quick ? 2 : 5);
    const CLIENTS = 16;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klips-bench-'));
    const echoPath = path.join(dir, 'echo.sock');
    const klipsPath = path.join(dir, 'pfkey.sock');
    const echo = startChild([SELF, '--echo-server', echoPath]);
    const klipsd = startChild([DAEMON, '--socket', klipsPath, '--log-level', 'warn']);
    const rows: ResultRow[] = [];
    const notes: string[] = [];
    try {
      await waitConnectable(echoPath);
      await waitConnectable(klipsPath);

      // Streams, built once. The echo floor writes the same ADD bytes from one window-sized block.
      const echoBlock = addChunk(0, WINDOW, 0x10000, 1000);
      const echoChunk = (from: number, to: number) => echoBlock.subarray(0, (to - from) * ADD_LEN);
      const addStream = addChunk(0, N, 0x10000, 1000);
      const addSlice = (from: number, to: number) => addStream.subarray(from * ADD_LEN, to * ADD_LEN);
      const per = Math.floor(N / CLIENTS);
      const manyStreams = Array.from({ length: CLIENTS }, (_, k) => addChunk(0, per, 0x1000000 * (k + 1), 2000 + k));

      // Rounds: echo floor, ADD x1, ADD x16, in process; every ratio is taken within a round.
      const ms = { echo: [] as number[], one: [] as number[], many: [] as number[], eng: [] as number[] };
      const deliveredPerS: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        ms.echo.push(await pipelined(echoPath, ECHO_N, echoChunk, 'echo'));
        ms.one.push(await pipelined(klipsPath, N, addSlice, 'ADD x1', 1000));
        await flush(klipsPath);
        {
          const fanout = new Fanout(WINDOW);
          const ps = await Promise.all(Array.from({ length: CLIENTS }, (_, k) => Pipeliner.connect(klipsPath,
            (c) => new Pipeliner(c, per, (from, to) => manyStreams[k].subarray(from * ADD_LEN, to * ADD_LEN), WINDOW / CLIENTS, 2000 + k, fanout))));
          try {
            const t0 = performance.now();
            for (const p of ps) p.start();
            await withLimit(Promise.all(ps.map((p) => p.finished)), RUN_LIMIT_MS, 'ADD x16');
            const t = performance.now() - t0;
            ms.many.push(t);
            deliveredPerS.push(ps.reduce((a, p) => a + p.received, 0) / (t / 1000));
          } finally {
            for (const p of ps) p.c.destroy();
          }
        }
        await flush(klipsPath);
        ms.eng.push(engineCeiling(addStream, N));
      }
      const echoHz = rates(ECHO_N, ms.echo);
      const floor = roundsRow(`echo floor (framed ${ADD_LEN}-byte ADDs echoed, 1 client pipelining)`, ECHO_N, ms.echo, { bytes: ADD_LEN, 'vs floor': '100%' });
      rows.push(floor);
      const onePair = paired(rates(N, ms.one), echoHz);
      const one = roundsRow('ADD through klipsd, 1 client pipelining', N, ms.one, { bytes: ADD_LEN, ...pairedExtra(onePair) });
      one.extra.goal = `${onePair.median >= GOAL_OF_FLOOR ? 'PASS' : 'BELOW'} (>= ${percent(GOAL_OF_FLOOR)} of floor); ${one.hz >= GOAL_ADDS_PER_S ? 'PASS' : 'BELOW'} (>= 1M/s)`;
      rows.push(one);
      const manyPair = paired(rates(per * CLIENTS, ms.many), echoHz);
      rows.push(roundsRow(`ADD through klipsd, ${CLIENTS} clients pipelining`, per * CLIENTS, ms.many, {
        bytes: ADD_LEN, ...pairedExtra(manyPair), 'replies delivered/s': Math.round(median(deliveredPerS)),
      }));
      const engPair = paired(rates(N, ms.eng), echoHz);
      const klipsdOverEngine = paired(rates(N, ms.one), rates(N, ms.eng));
      rows.push(roundsRow('ADD in process (klipsd\'s batch path, no socket)', N, ms.eng, {
        bytes: ADD_LEN, ...pairedExtra(engPair), 'klipsd x1 / this': percent(klipsdOverEngine.median),
      }));

      // Latency, idle: closed loop (one outstanding), then open loop on a schedule.
      const LAT_SAS = 10_000;
      await fill(klipsPath, LAT_SAS, 0x20000);
      {
        const r = await closedLoop(klipsPath, echoPath, GETS, 0x20000, LAT_SAS);
        rows.push(latencyRow('GET round trip through klipsd, idle, closed loop (one outstanding)', r.klipsd, {
          goal: r.klipsd.p99 <= GOAL_GET_IDLE_P99_MS ? `PASS (p99 <= ${fmtMs(GOAL_GET_IDLE_P99_MS)})` : `ABOVE (p99 > ${fmtMs(GOAL_GET_IDLE_P99_MS)})`,
        }, undefined, true));
        rows.push(latencyRow(`echo round trip (${GET_BYTES}-byte GET, one outstanding)`, r.echo, {}, undefined, true));
      }
      {
        const ol = await OpenLoop.start(klipsPath, OPEN_IDLE, 0x20000, LAT_SAS);
        ol.go();
        const r = await ol.result(OPEN_IDLE * GET_PERIOD_MS + 30_000);
        if (r.sent !== OPEN_IDLE) throw new Error(`the open-loop client sent ${r.sent} of ${OPEN_IDLE} GETs`);
        rows.push(openLoopRow(`GET through klipsd, idle, open loop 1 per ${GET_PERIOD_MS} ms`, r, GOAL_GET_IDLE_P99_MS));
      }
      await flush(klipsPath);

      // Open-loop GETs during a DUMP of DUMP_N SAs.
      await fill(klipsPath, DUMP_N, 0x100000);
      {
        const ol = await OpenLoop.start(klipsPath, Math.ceil(DUMP_LIMIT_MS / GET_PERIOD_MS), 0x100000, DUMP_N);
        const d = await connect(klipsPath);
        let frames = 0;
        let bad = 0;
        let last = false;
        const dumpMs = await (async () => {
          let ok = false;
          try {
            const finished = new Promise<void>((resolve, reject) => {
              const walker = new FrameWalker((type, errno, seq) => {
                if (type !== SADB_DUMP) return;
                frames++;
                if (errno !== 0) bad++;
                if (seq === 0) { last = true; resolve(); }
              });
              d.on('data', (b: Buffer) => { try { walker.push(b); } catch (e) { reject(e as Error); } });
              d.on('error', reject);
            });
            ol.go();
            const t0 = performance.now();
            d.write(buildMessage({ header: { type: SADB_DUMP, satype: 0, seq: 9, pid: 1002 } }));
            await withLimit(finished, DUMP_LIMIT_MS, 'DUMP');
            ok = true;
            return performance.now() - t0;
          } finally {
            ol.stop();
            d.destroy();
            if (!ok) await ol.abort();
          }
        })();
        const r = await ol.result(30_000);
        const label = DUMP_N.toExponential(0).replace('+', '');
        rows.push({
          name: `DUMP @${label} through klipsd (SAs/s)`, hz: (frames / dumpMs) * 1000, mean: (dumpMs * 1e6) / Math.max(1, frames), p99: 0, samples: 1,
          extra: { received: frames, errors: bad, complete: last && frames === DUMP_N && bad === 0 ? 'yes' : 'NO' },
        });
        rows.push(openLoopRow(`GET through klipsd during the DUMP @${label}, open loop 1 per ${GET_PERIOD_MS} ms`, r, GOAL_GET_DUMP_P99_MS));
        notes.push(`DUMP @${label}: ${frames} replies in ${(dumpMs / 1000).toFixed(2)} s; ${r.answered} GETs due every ${GET_PERIOD_MS} ms from the DUMP's start: p50 ${fmtMs(r.latency.p50)}, p90 ${fmtMs(r.latency.p90)}, p99 ${fmtMs(r.latency.p99)}, p99.9 ${fmtMs(r.latency.p999)}, max ${fmtMs(r.latency.max)}`);
      }
      await flush(klipsPath);

      notes.push(`rates: ${ROUNDS} rounds, each running the echo floor (${ECHO_N} messages), ADD x1 (${N}), ADD x${CLIENTS} (${per} each) and the in-process engine (${N}); a row is its median round; "vs floor" = median of per-round ratios to that round's echo floor, listed in "per round"; p99 column = the slowest round`);
      notes.push(`pipelining: window ${WINDOW} messages in flight per client (${WINDOW / CLIENTS} each for ${CLIENTS} clients, who also write only while every socket has read all but ${WINDOW} of the replies broadcast to it: a shared window, so the slowest reader sets the pace instead of overflowing); replies are counted by walking sadb_msg_len, the same client code for the echo and klipsd`);
      notes.push(`goals: pipelined ADDs >= ${percent(GOAL_OF_FLOOR)} of the echo floor (issue 4) and >= 1M/s (issue 10); GET p99 <= ${fmtMs(GOAL_GET_IDLE_P99_MS)} idle, < ${fmtMs(GOAL_GET_DUMP_P99_MS)} during the DUMP`);
      notes.push(`open loop: a client in its own process; GET k is due at t0 + k x ${GET_PERIOD_MS} ms and its latency runs from that due time to its answer, so a stall counts for every GET due during it; "lag" is how late the client itself wrote a GET (included in the latency); "p99 from write" leaves the lag out`);
      notes.push(`closed loop: a client in its own process (it reads into one buffer: nothing allocated per read) runs ${GETS} GETs against klipsd and the same ${GETS} against the echo, in alternating blocks of ${CLOSED_BLOCK} after ${CLOSED_WARM} to each to warm up (klipsd's GET path reaches V8's optimizing tier only after 500-2000 GETs), so the pair shares the machine's state`);
      notes.push(`klipsd, the echo server and the closed- and open-loop clients each run in their own process; the pipelining clients and the DUMP reader share this one (${os.cpus().length} cores in all)`);
      notes.push(`${CLIENTS} clients: every ADD reply is broadcast to all ${CLIENTS} sockets (KLIPS semantics), so ${CLIENTS}x the replies are delivered`);
    } finally {
      await stopChild(klipsd);
      await stopChild(echo);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    return { rows, notes };
  },
};

// Run alone: node dist/bench/daemon.bench.js [--quick]; the suite also re-runs this file as
// its echo server and its closed- and open-loop GET clients.
const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
const echoArg = process.argv.indexOf('--echo-server');
const openArg = process.argv.indexOf('--open-loop-client');
const closedArg = process.argv.indexOf('--closed-loop-client');
if (isMain && echoArg >= 0) echoServer(process.argv[echoArg + 1]);
else if (isMain && closedArg >= 0) {
  const [k, e, n, first, spis] = process.argv.slice(closedArg + 1);
  closedLoopClient(k, e, Number(n), Number(first), Number(spis)).catch((err: unknown) => {
    process.stderr.write(`closed-loop client: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
else if (isMain && openArg >= 0) {
  const [p, period, max, first, spis] = process.argv.slice(openArg + 1);
  openLoopClient(p, Number(period), Number(max), Number(first), Number(spis)).catch((e: unknown) => {
    process.stderr.write(`open-loop client: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
} else runAloneIfMain(suite, import.meta.url);
