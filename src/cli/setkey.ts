/**
 * `klips setkey`: ipsec-tools' setkey(8) against klipsd's KAME-dialect PF_KEY socket
 * (`<socket>.kame`), with setkey's command line and language:
 *
 *   klips setkey -c            statements from stdin, each run when its `;` arrives
 *   klips setkey -f FILE       a file of statements (`-` is stdin), read whole first
 *   klips setkey -D [-P] [-a]  dump the SAs (with -P the policies; -a shows dead SAs)
 *   klips setkey -F [-P]       flush the SAs (the policies)
 *   klips setkey -x [-x] [-H]  print every message klipsd sends this socket until killed
 *   klips setkey FILE...       print the PF_KEY messages stored in files
 *
 * plus -v (each message sent and received, as kdebug prints it), -H (hex), -p (ports in
 * addresses), -n (send nothing but REGISTER), -k/-r (no `fwd` twin of an `in` policy /
 * the twin, the default), and klips's --socket (klipsd's socket, whose `.kame` twin is
 * used; a path ending in `.kame` is used as it is, for a klipsd told --kame-socket),
 * --json, --timeout, --dry-run.
 *
 * As setkey, -c and -f first send SADB_REGISTER (satype 0) and judge every key's length
 * against klipsd's answer; requests carry seq 0 and our pid, and each waits for its
 * answer (a dump for all of it) before the next goes. The bytes of every request are
 * setkey's (setkey-parse.ts), the output is setkey's (setkey-print.ts). Where klips
 * differs on purpose (a file with an error sends nothing; every error is one line on
 * stderr naming the file and line, and makes the exit status 1) docs/semantics.md says so.
 */

import fs from 'node:fs';
import type net from 'node:net';
import {
  ERRNO, FrameDecoder, KAME_MSG_TYPE_NAMES, PfkeyError, SADB_DELETE, SADB_DUMP, SADB_FLUSH, SADB_GET, SADB_REGISTER,
  SADB_SASTATE_DEAD, SADB_SATYPE_UNSPEC, SADB_X_PROMISC, SADB_X_SPDADD, SADB_X_SPDDELETE,
  SADB_X_SPDDUMP, SADB_X_SPDFLUSH, SADB_X_SPDGET, buildMessage, errnoName, parseMessage, readHeader,
  type Address, type Alg, type KameMessage, type KameMessageInput,
} from '../wire/index.js';
import { KAME_SUFFIX, kameSocketPathFor, resolveSocketPath } from '../daemon/paths.js';
import { connect } from './client.js';
import { CliFailure, ReportedFailure, UsageError, addCommonOptions, hexOf, newCommand, out, requireUlong, type CommonOptions } from './common.js';
import { jsonLines } from './json.js';
import { SetkeyError, parseSetkey, type KeyCheck, type Statement } from './setkey-parse.js';
import { hexLines, kdebug, messageRecord, printSa, printSp, saRecord, spRecord, timeStamp } from './setkey-print.js';

export interface SetkeyOptions extends CommonOptions {
  c?: boolean;
  f?: string;
  D?: boolean;
  F?: boolean;
  P?: boolean;
  x?: number;
  a?: boolean;
  v?: boolean;
  H?: boolean;
  p?: boolean;
  n?: boolean;
  k?: boolean;
  r?: boolean;
  count?: string;
}

const TOOL = 'setkey';

// ---------- errno words (glibc's strerror, which setkey prints) ----------

const STRERROR: Readonly<Record<number, string>> = {
  [ERRNO.EPERM]: 'Operation not permitted', [ERRNO.ENOENT]: 'No such file or directory', [ERRNO.ESRCH]: 'No such process',
  [ERRNO.EINTR]: 'Interrupted system call', [ERRNO.EIO]: 'Input/output error', [ERRNO.ENXIO]: 'No such device or address',
  [ERRNO.E2BIG]: 'Argument list too long', [ERRNO.EBADF]: 'Bad file descriptor', [ERRNO.EAGAIN]: 'Resource temporarily unavailable',
  [ERRNO.ENOMEM]: 'Cannot allocate memory', [ERRNO.EACCES]: 'Permission denied', [ERRNO.EFAULT]: 'Bad address',
  [ERRNO.EBUSY]: 'Device or resource busy', [ERRNO.EEXIST]: 'File exists', [ERRNO.ENODEV]: 'No such device',
  [ERRNO.EINVAL]: 'Invalid argument', [ERRNO.ENFILE]: 'Too many open files in system', [ERRNO.ENOSPC]: 'No space left on device',
  [ERRNO.EPIPE]: 'Broken pipe', [ERRNO.ENOSYS]: 'Function not implemented', [ERRNO.ELOOP]: 'Too many levels of symbolic links',
  [ERRNO.EMSGSIZE]: 'Message too long', [ERRNO.ENOPROTOOPT]: 'Protocol not available', [ERRNO.EPROTONOSUPPORT]: 'Protocol not supported',
  [ERRNO.ESOCKTNOSUPPORT]: 'Socket type not supported', [ERRNO.EOPNOTSUPP]: 'Operation not supported',
  [ERRNO.EPFNOSUPPORT]: 'Protocol family not supported', [ERRNO.EAFNOSUPPORT]: 'Address family not supported by protocol',
  [ERRNO.ENOBUFS]: 'No buffer space available',
};
export const strerror = (e: number): string => STRERROR[e] ?? `Unknown error ${e}`;

/** setkey's postproc: what an errno reply says (ENOENT has words of its own per message type). */
export function errnoMessage(type: number, errno: number): string {
  if (errno === ERRNO.ENOENT) {
    if (type === SADB_DUMP) return 'No SAD entries';
    if (type === SADB_X_SPDDUMP) return 'No SPD entries';
    if (type === SADB_DELETE || type === SADB_GET || type === SADB_X_SPDDELETE) return 'No entry';
  }
  return strerror(errno);
}

/** A message from klipsd in the KAME dialect: as the kernel's, else as a request (an echo), else undefined. */
export function decodeKame(b: Uint8Array): KameMessage | undefined {
  for (const direction of ['out', 'in'] as const) {
    try {
      return parseMessage(b, { dialect: 'kame', direction });
    } catch (e) {
      if (!(e instanceof PfkeyError)) throw e;
    }
  }
  return undefined;
}

// ---------- the connection ----------

/** klipsd's KAME socket: `<socket>.kame` of the --socket path, or that path itself when it names one. */
export function kamePathOf(socket: string | undefined): string {
  const p = resolveSocketPath(socket);
  return p.endsWith(KAME_SUFFIX) ? p : kameSocketPathFor(p);
}

/** klipsd's KAME socket: whole messages each way, read one at a time as setkey's recv() does. */
class KameConnection {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Uint8Array[] = [];
  private wake: (() => void) | undefined;
  private ended: CliFailure | undefined;

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => {
      const err = this.decoder.push(chunk, (f) => this.frames.push(f.slice()));
      if (err) this.end(`${TOOL}: klipsd sent an unframeable message (${err.reason})`);
      this.wake?.();
    });
    sock.on('error', (e: NodeJS.ErrnoException) => this.end(`${TOOL}: connection to klipsd failed: ${e.code ?? e.message}`));
    sock.on('close', () => this.end(`${TOOL}: klipsd closed the connection`));
  }

  static async open(path: string, timeoutMs: number): Promise<KameConnection> {
    return new KameConnection(await connect(TOOL, path, timeoutMs, "klipsd's KAME socket"));
  }

  private end(message: string): void {
    this.ended ??= new CliFailure(message);
    this.wake?.();
  }

  send(b: Uint8Array): void {
    this.sock.write(b);
  }

  /** The next message klipsd sends, or a CliFailure after `timeoutMs` (Infinity: wait for ever) or at the end. */
  async next(timeoutMs: number, what: string): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.shift();
      if (f) return f;
      if (this.ended) throw this.ended;
      const left = deadline - Date.now();
      if (left <= 0) throw new CliFailure(`${TOOL}: no answer from klipsd to ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = Number.isFinite(left) ? setTimeout(resolve, left) : undefined;
        this.wake = () => {
          if (timer) clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  close(): void {
    this.sock.destroy();
  }
}

// ---------- a run ----------

/** Supported algorithms from klipsd's REGISTER answer, by kind (libipsec's ipsec_supported[]). */
interface Supported {
  auth?: Alg[];
  encrypt?: Alg[];
}

/** ipsec_check_keylen: the error for a key the supported list refuses, or undefined. */
export function keyCheckError(k: KeyCheck, supported: Supported): string | undefined {
  const algs = k.supported === 'auth' ? supported.auth : supported.encrypt;
  if (!algs) return 'Must get supported algorithms list first';
  const alg = algs.find((a) => a.id === k.alg);
  if (!alg) return 'Not supported';
  if (k.bits < alg.minbits || k.bits > alg.maxbits) return 'Invalid key length';
  return undefined;
}

const addressEqual = (a: Address | undefined, b: Address) =>
  a !== undefined && a.family === b.family && a.addr === b.addr && a.port === b.port && (a.scopeId ?? 0) === (b.scopeId ?? 0);

class Run {
  failures = 0;
  private conn: KameConnection | undefined;
  private supported: Supported = {};
  private warnedPriority = false;

  constructor(
    private readonly o: SetkeyOptions,
    /** The file name errors give (`<stdin>` for -c), or undefined outside -c/-f. */
    private readonly file: string | undefined,
  ) {}

  private where(line?: number): string {
    return this.file !== undefined && line !== undefined ? `${this.file},${line}: ` : '';
  }

  /** One failure, one line (or one JSON object) on stderr. */
  error(line: number | undefined, message: string, errno?: number): void {
    this.failures++;
    const text = `${TOOL}: ${this.where(line)}${message}`;
    if (this.o.json) {
      process.stderr.write(`${JSON.stringify({ error: { errno: errno ? errnoName(errno) : null, code: errno ?? null, message: text } })}\n`);
    } else process.stderr.write(`${text}\n`);
  }

  warn(line: number | undefined, message: string): void {
    process.stderr.write(`${TOOL}: ${this.where(line)}${message}\n`);
  }

  async connect(): Promise<void> {
    this.conn = await KameConnection.open(kamePathOf(this.o.socket), this.o.timeout);
  }

  close(): void {
    this.conn?.close();
  }

  /**
   * Send one request (setkey's sendkeymsg) and collect klipsd's answer to it: messages of
   * its type and our pid, until one carries an errno or seq 0 (a dump's last). Other
   * messages (another client's, broadcast) are passed over.
   */
  async exchange(m: KameMessageInput): Promise<Uint8Array[]> {
    const bytes = buildMessage(m);
    // REGISTER goes through libipsec in setkey, which shows nothing under -v or -H.
    const shown = m.header.type !== SADB_REGISTER;
    if (this.o.n && shown) return [];
    if (this.o.v && shown) await out(`${kdebug(bytes)}\n`);
    if (this.o.H && shown) await out(hexLines(bytes));
    this.conn!.send(bytes);
    const replies: Uint8Array[] = [];
    for (;;) {
      const f = await this.conn!.next(this.o.timeout, `SADB_${KAME_MSG_TYPE_NAMES[m.header.type] ?? m.header.type}`);
      const h = readHeader(f);
      if (h.type !== m.header.type || h.pid !== m.header.pid) continue;
      if (this.o.v && shown) await out(`${kdebug(f)}\n`);
      replies.push(f);
      if (h.errno !== 0 || h.seq === 0) return replies;
    }
  }

  /** REGISTER (satype 0) and keep the supported algorithms (setkey's get_supported). */
  async register(): Promise<void> {
    const [r] = await this.exchange({ header: { type: SADB_REGISTER, satype: SADB_SATYPE_UNSPEC, seq: 0, pid: process.pid }, dialect: 'kame' });
    const h = readHeader(r);
    if (h.errno) throw new CliFailure(`${TOOL}: REGISTER failed: ${strerror(h.errno)}`);
    const m = decodeKame(r);
    if (!m) throw new CliFailure(`${TOOL}: klipsd's REGISTER answer could not be read`);
    this.supported = { auth: m.supportedAuth?.algs, encrypt: m.supportedEncrypt?.algs };
  }

  /** The statement's key lengths against the supported algorithms: the first refusal, reported. */
  keysRefused(st: Statement): boolean {
    if (st.kind !== 'send') return false;
    for (const k of st.keyChecks) {
      const why = keyCheckError(k, this.supported);
      if (why) {
        this.error(k.line, `${why} at \`${k.token}'`);
        return true;
      }
    }
    return false;
  }

  /** setkey's postproc: report an errno, print what a GET or dump brought. */
  async postproc(replies: Uint8Array[], line?: number, priority?: number): Promise<void> {
    let text = '';
    for (const f of replies) {
      const h = readHeader(f);
      if (h.errno) {
        const msg = errnoMessage(h.type, h.errno);
        const empty = h.errno === ERRNO.ENOENT && (h.type === SADB_DUMP || h.type === SADB_X_SPDDUMP);
        if (!empty) this.error(line, msg, h.errno);
        else if (this.o.json) { /* an empty table prints nothing */ }
        else if (this.o.f !== undefined) this.warn(line, msg);
        else text += `${msg}.\n`;
        break;
      }
      const type = h.type;
      if (type !== SADB_GET && type !== SADB_DUMP && type !== SADB_X_SPDGET && type !== SADB_X_SPDDUMP && type !== SADB_X_SPDADD) continue;
      const m = decodeKame(f);
      if (!m) {
        if (type !== SADB_X_SPDADD) this.error(line, 'Invalid sadb message');
        continue;
      }
      if (type === SADB_X_SPDADD) {
        // setkey's check that the kernel kept the priority it was given.
        if (priority && !this.warnedPriority && m.policy && m.policy.priority !== priority) {
          this.warnedPriority = true;
          text += 'WARNING: Kernel does not support policy priorities\n';
        }
        continue;
      }
      if (type === SADB_DUMP && !this.o.a && m.sa?.state === SADB_SASTATE_DEAD) continue;
      const sp = type === SADB_X_SPDGET || type === SADB_X_SPDDUMP;
      if (this.o.json) text += jsonLines([sp ? spRecord(m) : saRecord(m)]);
      else text += (sp ? printSp : printSa)(m, { now: Date.now() / 1000, withPorts: this.o.p });
    }
    await out(text);
  }

  /** Run one statement of -c or -f. Returns false at `exit`. */
  async statement(st: Statement): Promise<boolean> {
    for (const w of st.warnings) this.warn(st.line, w);
    if (st.kind === 'exit') return false;
    if (st.kind === 'send') {
      for (const m of st.requests) await this.postproc(await this.exchange(m), st.line, st.priority);
      return true;
    }
    // deleteall: the SAs of this type between the two addresses, then a DELETE for each.
    const replies = await this.exchange(st.dump);
    const spis: number[] = [];
    for (const f of replies) {
      const h = readHeader(f);
      if (h.errno) {
        if (h.errno !== ERRNO.ENOENT) this.error(st.line, strerror(h.errno), h.errno);
        break;
      }
      const m = decodeKame(f);
      if (m && h.satype === st.satype && m.sa && addressEqual(m.addressSrc, st.src) && addressEqual(m.addressDst, st.dst)) spis.push(m.sa.spi);
    }
    for (const spi of spis) await this.postproc(await this.exchange(st.deleteFor(spi)), st.line);
    return true;
  }
}

// ---------- the modes ----------

const header = (type: number) => ({ header: { type, satype: SADB_SATYPE_UNSPEC, seq: 0, pid: process.pid }, dialect: 'kame' as const });

/** The requests a statement sends before klipsd answers anything (--dry-run). */
function requestsOf(st: Statement): KameMessageInput[] {
  return st.kind === 'send' ? st.requests : st.kind === 'deleteall' ? [st.dump] : [];
}

async function dryRun(sts: Statement[]): Promise<void> {
  await out(sts.flatMap(requestsOf).map((m) => `${hexOf(buildMessage(m))}\n`).join(''));
}

/** -f: parse all, then REGISTER, check every key, and run the statements in order. */
async function runFile(o: SetkeyOptions): Promise<void> {
  const name = o.f!;
  const run = new Run(o, name === '-' ? '<stdin>' : name);
  let text: string;
  try {
    text = fs.readFileSync(name === '-' ? 0 : name, 'latin1');
  } catch (e) {
    throw new CliFailure(`${TOOL}: Can't open \`${name}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let sts: Statement[];
  try {
    sts = parseSetkey(text, process.pid, { rfcMode: !o.k });
  } catch (e) {
    if (!(e instanceof SetkeyError)) throw e;
    run.error(e.line, e.message);
    throw new ReportedFailure(run.failures);
  }
  if (o.dryRun) return dryRun(sts);
  await run.connect();
  try {
    await run.register();
    for (const st of sts) if (run.keysRefused(st)) throw new ReportedFailure(run.failures);
    for (const st of sts) if (!(await run.statement(st))) break;
  } finally {
    run.close();
  }
  if (run.failures) throw new ReportedFailure(run.failures);
}

/** The first whole statement of `text` (through its `;`, outside quotes and comments). */
function firstStatement(text: string): { statement: string; rest: string } | undefined {
  let quoted = false;
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (comment) comment = c !== '\n';
    else if (quoted) quoted = c !== '"';
    else if (c === '"') quoted = true;
    else if (c === '#') comment = true;
    else if (c === ';') return { statement: text.slice(0, i + 1), rest: text.slice(i + 1) };
  }
  return undefined;
}

/** -c: statements from stdin, each parsed and run when its `;` has come; a bad one is reported and skipped. */
async function runStdin(o: SetkeyOptions): Promise<void> {
  const run = new Run(o, '<stdin>');
  if (!o.dryRun) {
    await run.connect();
    await run.register();
  }
  let buffer = '';
  let line = 1;
  let exit = false;
  const take = async (text: string): Promise<void> => {
    let sts: Statement[] = [];
    try {
      sts = parseSetkey(text, process.pid, { rfcMode: !o.k, firstLine: line });
    } catch (e) {
      if (!(e instanceof SetkeyError)) throw e;
      run.error(e.line, e.message);
    }
    line += text.split('\n').length - 1;
    for (const st of sts) {
      if (o.dryRun) {
        await dryRun([st]);
        if (st.kind === 'exit') exit = true;
        continue;
      }
      if (run.keysRefused(st)) continue;
      if (!(await run.statement(st))) exit = true;
      if (exit) return;
    }
  };
  try {
    process.stdin.setEncoding('latin1');
    for await (const chunk of process.stdin) {
      buffer += chunk as string;
      for (let s = firstStatement(buffer); s && !exit; s = firstStatement(buffer)) {
        buffer = s.rest;
        await take(s.statement);
      }
      if (exit) break;
    }
    // What is left without its `;` is a statement cut short (or only comments).
    if (!exit && buffer.trim() !== '') await take(buffer);
  } finally {
    run.close();
  }
  if (run.failures) throw new ReportedFailure(run.failures);
}

/** -D / -DP and -F / -FP. */
async function runShort(o: SetkeyOptions, type: number): Promise<void> {
  const m = header(type);
  if (o.dryRun) return out(`${hexOf(buildMessage(m))}\n`);
  const run = new Run(o, undefined);
  await run.connect();
  try {
    await run.postproc(await run.exchange(m));
  } finally {
    run.close();
  }
  if (run.failures) throw new ReportedFailure(run.failures);
}

/** -x: X_PROMISC, then every message klipsd sends, as setkey's monitor prints it. */
async function runMonitor(o: SetkeyOptions): Promise<void> {
  const m = { header: { type: SADB_X_PROMISC, satype: 1, seq: 0, pid: process.pid }, dialect: 'kame' as const };
  if (o.dryRun) return out(`${hexOf(buildMessage(m))}\n`);
  const limit = o.count !== undefined ? requireUlong('--count', o.count) : Infinity;
  const conn = await KameConnection.open(kamePathOf(o.socket), o.timeout);
  let stopped = false;
  let wakeStop: (() => void) | undefined;
  const stop = () => {
    stopped = true;
    wakeStop?.();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const stopping = new Promise<null>((resolve) => { wakeStop = () => resolve(null); });
  try {
    conn.send(buildMessage(m));
    for (let seen = 0; seen < limit && !stopped; seen++) {
      const next = conn.next(Infinity, 'SADB_X_PROMISC');
      // Stopped while waiting, the connection's end rejects this read: nobody needs it then.
      next.catch(() => {});
      const f = await Promise.race([next, stopping]);
      if (f === null) break;
      if (o.json) {
        await out(jsonLines([{ time: Date.now() / 1000, ...messageRecord(decodeKame(f), f) }]));
        continue;
      }
      let text = timeStamp(Date.now(), (o.x ?? 1) > 1);
      if (o.H) text += hexLines(f);
      // A promiscuous copy wrapped in an X_PROMISC header (BSD's way) is printed unwrapped.
      const base = f[1] === SADB_X_PROMISC ? (f.length > 16 ? f.subarray(16) : undefined) : f;
      if (base) text += `${kdebug(base)}\n`;
      await out(text);
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    conn.close();
  }
}

/** setkey FILE...: the messages stored in each file, printed as answers are (setkey's fileproc). */
async function runFiles(o: SetkeyOptions, files: string[]): Promise<void> {
  const run = new Run(o, undefined);
  for (const name of files) {
    let b: Buffer;
    try {
      b = fs.readFileSync(name);
    } catch (e) {
      throw new CliFailure(`${TOOL}: ${name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (b.length < 16) throw new CliFailure(`${TOOL}: ${name}: ${strerror(ERRNO.EINVAL)}`);
    const frames: Uint8Array[] = [];
    for (let off = 0; off + 16 <= b.length;) {
      const len = b.readUInt16LE(off + 4) * 8;
      if (len === 0) break;
      frames.push(new Uint8Array(b.subarray(off, off + len)));
      off += len;
    }
    for (const f of frames) await run.postproc([f]);
  }
  if (run.failures) throw new ReportedFailure(run.failures);
}

export async function runSetkey(o: SetkeyOptions, files: string[]): Promise<void> {
  const modes = [o.c && '-c', o.f !== undefined && '-f', o.D && '-D', o.F && '-F', o.x && '-x', files.length > 0 && 'FILE'].filter(Boolean);
  if (modes.length === 0) throw new UsageError('say what to do: -c, -f FILE, -D, -F, -x, or message files to print');
  if (modes.length > 1) throw new UsageError(`${modes.join(' and ')} cannot be combined`);
  if (o.P && !o.D && !o.F) throw new UsageError('-P goes with -D or -F');
  if (o.count !== undefined && !o.x) throw new UsageError('--count goes with -x');
  if (files.length) return runFiles(o, files);
  if (o.c) return runStdin(o);
  if (o.f !== undefined) return runFile(o);
  if (o.D) return runShort(o, o.P ? SADB_X_SPDDUMP : SADB_DUMP);
  if (o.F) return runShort(o, o.P ? SADB_X_SPDFLUSH : SADB_FLUSH);
  return runMonitor(o);
}

export function setkeyCommand() {
  const cmd = newCommand('setkey')
    .description("ipsec-tools' setkey on klipsd's KAME-dialect socket (<socket>.kame; a --socket path ending in .kame is taken as it is)")
    .argument('[files...]', 'files of PF_KEY messages to print')
    .option('-c', 'read statements from stdin, running each when its ";" arrives')
    .option('-f <file>', 'read statements from a file ("-" for stdin); nothing is sent if one is wrong')
    .option('-D', 'dump the SAs (with -P: the policies)')
    .option('-F', 'flush the SAs (with -P: the policies)')
    .option('-P', 'with -D or -F: the policies')
    .option('-a', 'with -D: dead SAs too')
    .option('-x', 'print every message klipsd sends (-xx: times in seconds since the epoch)', (_v: string, n: number) => n + 1, 0)
    .option('-H', 'with -x (and -v): the messages in hex too')
    .option('-v', 'print each message sent and received, field by field')
    .option('-p', 'addresses in dumps with their ports')
    .option('-n', 'send nothing but REGISTER (statements are parsed and checked)')
    .option('-k', 'no fwd policy for an in policy (setkey -k)')
    .option('-r', 'a fwd policy for every in policy (the default, setkey -r)')
    .option('--count <n>', 'with -x: exit after n messages');
  addCommonOptions(cmd, { dryRun: true });
  cmd.action(async (files: string[], opts: SetkeyOptions) => runSetkey(opts, files));
  return cmd;
}
