/**
 * Shared by the daemon-*.test.ts and cli-*.test.ts files: a klipsd on a temporary socket
 * (in-process through startServer, so tests can look at the engine's tables, or as a
 * child process), the `klips` binary run as a child process, a raw PF_KEY stream client
 * for hand-made frames, and bounded waits. Everything started is stopped and every
 * temporary directory removed by the returned cleanup functions.
 */

import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type KlipsServer, type ServerOptions } from '../src/daemon/server.js';
import { Engine } from '../src/engine/engine.js';
import { FrameDecoder } from '../src/wire/framing.js';
import { parseMessage, type PfkeyMessage, buildMessage, type MessageInput } from '../src/wire/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/ (the compiled tree this file runs from). */
export const DIST = path.resolve(here, '..');
export const CLI = path.join(DIST, 'src/cli/main.js');
export const DAEMON = path.join(DIST, 'src/daemon/main.js');

export function tempDir(prefix = 'klips-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Resolve within `ms` or fail the test with `what`. */
export async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Poll `check` until it returns true (bounded). */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Daemon {
  server: KlipsServer;
  socket: string;
  dir: string;
  stop(): Promise<void>;
}

/**
 * klipsd in this process on a fresh temporary socket path. Its engine sees no host
 * addresses (every SA outbound) unless a test gives its own engine, so views do not
 * depend on the machine's interfaces.
 */
export async function startDaemon(opts: Partial<ServerOptions> = {}): Promise<Daemon> {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const engine = opts.engine ?? new Engine({
    supported: opts.config?.supported,
    larvalLifetime: opts.config?.larvalLifetime,
    localAddresses: () => [],
  });
  const server = await startServer({ socketPath: socket, ...opts, engine });
  return {
    server,
    socket,
    dir,
    async stop() {
      await within(5000, 'server close', server.close());
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `klips ARGS` (bounded); never rejects on a non-zero exit. */
export function klips(args: string[], o: { input?: string; timeout?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [CLI, ...args], { timeout: o.timeout ?? 15000, env: o.env ?? process.env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
      if (e.killed) return reject(new Error(`klips ${args.join(' ')} timed out\n${stderr}`));
      if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
      reject(err);
    });
    if (o.input !== undefined) child.stdin!.end(o.input);
    else child.stdin!.end();
  });
}

/** `klips ARGS` must succeed; its stdout. */
export async function klipsOk(args: string[], o: { input?: string } = {}): Promise<string> {
  const r = await klips(args, o);
  assert.equal(r.code, 0, `klips ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** A long-running `klips` (monitor): its process and accumulated output. */
export interface Background {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number>;
  stop(): Promise<number>;
}

export function klipsBackground(args: string[]): Background {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s; });
  const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** A raw stream client for hand-made frames: collects every whole message klipsd writes. */
export class RawClient {
  readonly messages: Uint8Array[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder();

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk, (f) => this.messages.push(f.slice()));
    });
    sock.on('close', () => { this.closed = true; });
    sock.on('error', () => { /* closed is what the tests look at */ });
  }

  static connect(p: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(p, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  write(b: Uint8Array): void {
    this.sock.write(b);
  }

  send(m: MessageInput): void {
    this.sock.write(buildMessage(m));
  }

  /** Wait for a message satisfying `pred` (bounded), returning it parsed. */
  async waitFor(what: string, pred: (m: PfkeyMessage, raw: Uint8Array) => boolean, ms = 5000): Promise<PfkeyMessage> {
    let found: PfkeyMessage | undefined;
    let from = 0;
    await waitUntil(what, () => {
      for (; from < this.messages.length; from++) {
        const raw = this.messages[from];
        let m: PfkeyMessage;
        try {
          m = parseMessage(raw, { direction: 'out' });
        } catch {
          continue;
        }
        if (pred(m, raw)) {
          found = m;
          from++;
          return true;
        }
      }
      return false;
    }, ms);
    return found!;
  }

  close(): void {
    this.sock.destroy();
  }
}

/** Header fields of raw bytes (for messages parseMessage refuses, e.g. type 0 notices). */
export function header(b: Uint8Array) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { version: b[0], type: b[1], errno: b[2], satype: b[3], len: dv.getUint16(4, true), seq: dv.getUint32(8, true), pid: dv.getUint32(12, true) };
}

export const KEY_3DES = '0x0102030405060708090a0b0c0d0e0f101112131415161718';
export const KEY_SHA1 = '0x0102030405060708090a0b0c0d0e0f1011121314';
export const KEY_MD5 = '0x0102030405060708090a0b0c0d0e0f10';

/**
 * A klipsd for a whole test file: started before its tests, stopped after them.
 * `.d` is the daemon, `.S` the `--socket PATH` arguments for the tools.
 */
export function useDaemon(
  opts: Partial<ServerOptions> = {},
  /** Runs once the daemon is up, with the `--socket` arguments (e.g. to add SAs every test uses). */
  then?: (S: string[]) => Promise<void>,
): { readonly d: Daemon; readonly S: string[] } {
  let d: Daemon | undefined;
  before(async () => {
    d = await startDaemon(opts);
    await then?.(['--socket', d.socket]);
  });
  after(async () => d?.stop());
  return {
    get d() { return d!; },
    get S() { return ['--socket', d!.socket]; },
  };
}

/** JSON Lines output: every line one JSON object (none for empty output). */
export function jsonRecords(stdout: string): Array<Record<string, any>> {
  if (stdout === '') return [];
  assert.ok(stdout.endsWith('\n'), 'JSON Lines end with a newline');
  return stdout.slice(0, -1).split('\n').map((line) => {
    const v = JSON.parse(line);
    assert.ok(v && typeof v === 'object' && !Array.isArray(v), `a JSON object per line: ${line}`);
    return v;
  });
}

/**
 * A bad-arguments exit as every tool reports it: status 2, nothing on stdout, and on
 * stderr exactly two lines, "klips TOOL: <why>" and "Try 'klips TOOL --help'.".
 */
export function assertUsageError(r: Run, tool: string, why: RegExp, what = ''): void {
  assert.equal(r.code, 2, `${what}: exit ${r.code}\n${r.stderr}`);
  assert.equal(r.stdout, '', what);
  const lines = r.stderr.split('\n');
  assert.equal(lines.length, 3, `${what}: two lines on stderr, got\n${r.stderr}`);
  assert.ok(lines[0].startsWith(`klips ${tool}: `), `${what}: ${lines[0]}`);
  assert.match(lines[0], why, what);
  assert.equal(lines[1], `Try 'klips ${tool} --help'.`, what);
  assert.equal(lines[2], '');
}
