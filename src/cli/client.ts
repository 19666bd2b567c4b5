/**
 * The tools' side of klipsd: a PF_KEY connection (whole messages each way, framed by
 * sadb_msg_len) with openswan's request numbering (sadb_msg_pid = our pid, seq counting
 * from 1), reply matching, and the view channel (`<socket>.info`: one JSON request
 * line, one JSON answer line; views, and klips trace's requests).
 *
 * KLIPS broadcasts most replies (ADD, DELETE, FLUSH, X_ADDFLOW, errors, …) to every open
 * PF_KEY socket, so a tool recognises its own reply by type, seq and pid; GET, DUMP,
 * REGISTER, X_DEBUG and X_PLUMBIF answers come to the sender alone.
 */

import net from 'node:net';
import {
  buildMessage, parseMessage, PfkeyError, type MessageInput, type PfkeyMessage,
  type SadbMsg,
} from '../wire/index.js';
import { FrameDecoder, KLIPSD_X_REASON, readHeader, readReason, reasonsRequest } from '../wire/index.js';
import { infoPathFor } from '../daemon/paths.js';
import { CliFailure, systemErrno } from './common.js';

/** One message read from klipsd: its bytes, header, and the parse (or why it failed). */
export interface Received {
  bytes: Uint8Array;
  header: SadbMsg;
  msg?: PfkeyMessage;
  error?: PfkeyError;
}

/** Parse a message from klipsd: as kernel output first, then as a request (promiscuous copies). */
export function decodeReceived(bytes: Uint8Array): Received {
  const header = readHeader(bytes);
  try {
    return { bytes, header, msg: parseMessage(bytes, { direction: 'out' }) };
  } catch (e) {
    if (!(e instanceof PfkeyError)) throw e;
    try {
      return { bytes, header, msg: parseMessage(bytes, { direction: 'in' }) };
    } catch {
      return { bytes, header, error: e };
    }
  }
}

function connectError(tool: string, path: string, e: NodeJS.ErrnoException, what = 'klipsd'): CliFailure {
  const why = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? `${e.code} (is klipsd running?)` : e.code ?? e.message;
  return new CliFailure(`${tool}: cannot connect to ${what} at ${path}: ${why}`, systemErrno(e));
}

/** A connection to one of klipsd's Unix sockets, or a CliFailure saying why there is none. */
export function connect(tool: string, path: string, timeoutMs: number, what = 'klipsd'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect(path);
    const timer = setTimeout(() => {
      c.destroy();
      reject(new CliFailure(`${tool}: timed out connecting to ${what} at ${path}`));
    }, timeoutMs);
    c.once('connect', () => {
      clearTimeout(timer);
      c.removeAllListeners('error');
      resolve(c);
    });
    c.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connectError(tool, path, e, what));
    });
  });
}

type Waiter = { match: (r: Received) => boolean; resolve: (r: Received) => void };

export class PfkeyClient {
  readonly pid = process.pid;
  private seq = 0;
  private readonly decoder = new FrameDecoder();
  private readonly waiters: Waiter[] = [];
  private listener: ((r: Received) => void) | undefined;
  private ended = false;
  private endWaiters: Array<(e: CliFailure) => void> = [];

  private constructor(
    readonly tool: string,
    readonly path: string,
    private readonly c: net.Socket,
  ) {
    c.on('data', (chunk: Buffer) => {
      const err = this.decoder.push(chunk, (frame) => {
        if (frame[1] === KLIPSD_X_REASON) this.noteReason(frame);
        else this.dispatch(decodeReceived(frame.slice()));
      });
      if (err) this.fail(`${tool}: klipsd sent an unframeable message (${err.reason})`);
    });
    c.on('error', (e: NodeJS.ErrnoException) => this.fail(`${tool}: connection to klipsd failed: ${e.code ?? e.message}`));
    c.on('close', () => this.fail(`${tool}: klipsd closed the connection`));
  }

  /** Connect, and ask klipsd for the reason behind each refusal (wire/reason.ts). */
  static async open(tool: string, path: string, timeoutMs: number): Promise<PfkeyClient> {
    const client = new PfkeyClient(tool, path, await connect(tool, path, timeoutMs));
    client.c.write(reasonsRequest(true, 0, client.pid));
    return client;
  }

  /** Reasons klipsd gave, by the refused request's seq (taken by reasonFor). */
  private readonly reasons = new Map<number, string>();
  private reasonWaiters = new Map<number, (why: string) => void>();

  /** A reason message (or klipsd's answer to the opt-in): kept for reasonFor, never shown as a message. */
  private noteReason(frame: Uint8Array): void {
    const r = readReason(frame);
    if (!r || r.pid !== this.pid) return;
    const w = this.reasonWaiters.get(r.seq);
    if (w) {
      this.reasonWaiters.delete(r.seq);
      w(r.why);
    } else if (this.reasons.size < 64) this.reasons.set(r.seq, r.why);
  }

  /**
   * klipsd's reason for refusing our request `seq`, if it gives one: it follows the errno
   * reply at once, so wait briefly (a klipsd without reasons never sends one).
   */
  reasonFor(seq: number, waitMs = 250): Promise<string | undefined> {
    const known = this.reasons.get(seq);
    if (known !== undefined) {
      this.reasons.delete(seq);
      return Promise.resolve(known);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.reasonWaiters.delete(seq);
        resolve(undefined);
      }, waitMs);
      this.reasonWaiters.set(seq, (why) => {
        clearTimeout(timer);
        resolve(why);
      });
    });
  }

  /** The seq the next request will carry. */
  nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0 || 1;
    return this.seq;
  }

  /** Every message as it arrives (monitor); requests still see their replies. */
  onMessage(fn: (r: Received) => void): void {
    this.listener = fn;
  }

  private dispatch(r: Received): void {
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i];
      if (w.match(r)) {
        this.waiters.splice(i, 1);
        w.resolve(r);
        break;
      }
    }
    this.listener?.(r);
  }

  private fail(message: string): void {
    if (this.ended) return;
    this.ended = true;
    const err = new CliFailure(message);
    for (const f of this.endWaiters) f(err);
    this.endWaiters = [];
  }

  /** Resolves with an error when the connection ends (for long-running readers). */
  ended$(): Promise<CliFailure> {
    return new Promise((resolve) => {
      if (this.ended) resolve(new CliFailure(`${this.tool}: klipsd closed the connection`));
      else this.endWaiters.push(resolve);
    });
  }

  /** Write raw bytes. */
  write(bytes: Uint8Array): void {
    this.c.write(bytes);
  }

  /** Build and send a message with our pid and the next seq; returns the header used. */
  send(m: MessageInput): { seq: number; bytes: Uint8Array } {
    const seq = this.nextSeq();
    const bytes = buildMessage({ ...m, header: { ...m.header, seq, pid: this.pid } });
    this.c.write(bytes);
    return { seq, bytes };
  }

  /** Wait for the first message matching `match` (registered before anything is sent). */
  waitFor(match: (r: Received) => boolean, timeoutMs: number, what: string): Promise<Received> {
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new CliFailure(`${this.tool}: no answer from klipsd to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const w: Waiter = {
        match,
        resolve: (r) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(r);
        },
      };
      this.waiters.push(w);
      this.ended$().then((e) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /**
   * Send a request and wait for its reply: same type, our pid, the request's seq. The
   * reply may carry an errno (the caller reports it).
   */
  async request(m: MessageInput, timeoutMs: number, what: string): Promise<Received> {
    const seq = this.nextSeq();
    const header = { ...m.header, seq, pid: this.pid };
    const bytes = buildMessage({ ...m, header });
    const p = this.waitFor((r) => r.header.seq === seq && r.header.pid === this.pid && r.header.type === m.header.type, timeoutMs, what);
    this.c.write(bytes);
    return p;
  }

  close(): void {
    this.ended = true;
    this.c.end();
    this.c.destroy();
  }
}

/** Build a request as the tool would send it first (seq 1, our pid): for --dry-run. */
export function requestBytes(m: MessageInput, seq = 1): Uint8Array {
  return buildMessage({ ...m, header: { ...m.header, seq, pid: process.pid } });
}

/** One request on klipsd's view channel (`<socket>.info`), and its answer (any JSON object; `error` is the caller's to report). */
export async function askInfo(tool: string, socketPath: string, request: unknown, timeoutMs: number): Promise<Record<string, unknown>> {
  const p = infoPathFor(socketPath);
  const c = await connect(tool, p, timeoutMs, "klipsd's view channel");
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new CliFailure(`${tool}: no answer from klipsd's view channel ${p} within ${timeoutMs} ms`));
    }, timeoutMs);
    c.setEncoding('utf8');
    c.on('data', (s: string) => {
      buf += s;
      const i = buf.indexOf('\n');
      if (i < 0) return;
      clearTimeout(timer);
      c.destroy();
      let ans: unknown;
      try {
        ans = JSON.parse(buf.slice(0, i));
      } catch {
        reject(new CliFailure(`${tool}: unreadable answer from ${p}`));
        return;
      }
      if (ans && typeof ans === 'object' && !Array.isArray(ans)) resolve(ans as Record<string, unknown>);
      else reject(new CliFailure(`${tool}: unreadable answer from ${p}`));
    });
    c.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connectError(tool, p, e, "klipsd's view channel"));
    });
    c.on('close', () => {
      clearTimeout(timer);
      reject(new CliFailure(`${tool}: klipsd's view channel closed without answering`));
    });
    c.write(`${JSON.stringify(request)}\n`);
  });
}

/** Ask klipsd's view channel for views by name. */
export async function queryViews(
  tool: string, socketPath: string, names: string[], timeoutMs: number,
): Promise<Record<string, { text: string; data: unknown }>> {
  const ans = await askInfo(tool, socketPath, { views: names }, timeoutMs) as { views?: Record<string, { text: string; data: unknown }>; error?: string };
  if (ans.error || !ans.views) throw new CliFailure(`${tool}: ${ans.error ?? 'no views in answer'}`);
  return ans.views;
}
