/**
 * The abuse suite: klipsd (the real binary, in its own process, a fresh one per
 * scenario) under clients that misbehave, while one well-behaved client times
 * sequential GET round trips (the row's mean and p99). Scenarios, each bounded in count
 * and time:
 *
 *  - non-reading clients (100 and 500; 50 and 100 with --quick): each asks for a DUMP of
 *    every SA (~1.7 MB) and never reads; klipsd's RSS (/proc/PID/status VmRSS) before and
 *    after they connect, per client, and what klipsd counts as held for them;
 *  - connections beyond maxConnections (64): how many of 500 got the ENFILE notice;
 *  - connections stalled mid-message (200, partialFrameTimeoutMs 1000) next to 50 idle
 *    at a message boundary: how many were closed, how long it took, the idle ones kept;
 *  - stderr on /dev/full (a full disk): 1,000 logged framing errors; does klipsd survive,
 *    how many lines it counted as lost.
 *
 * KLIPSD_BIN=path/to/main.js runs the same scenarios against another build (the figures
 * before a change): configuration keys that build does not know are left out, and a
 * scenario it cannot pass reports what happened instead.
 *
 * Standalone: node dist/bench/abuse.js [--quick]
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import {
  AF_INET, ERRNO, FrameDecoder, SADB_AALG_SHA1HMAC, SADB_ADD, SADB_DUMP, SADB_GET, SADB_SASTATE_MATURE,
  SADB_SATYPE_ESP, SADB_X_EALG_AESCBC, buildMessage, readHeader, type Address, type SadbMsg,
} from '../src/wire/index.js';
import { runAloneIfMain, type ResultRow, type Suite, type SuiteOptions, type SuiteResult } from './harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const DAEMON = process.env.KLIPSD_BIN ? path.resolve(process.env.KLIPSD_BIN) : path.resolve(here, '../src/daemon/main.js');
/** Keys a build before rcvbufTotal and partialFrameTimeoutMs knows. */
const LEGACY_KEYS = ['rcvbuf', 'writeHighWater', 'maxConnections', 'larvalLifetime', 'logLevel', 'debug', 'supported'];
const SETTLE_LIMIT_MS = 120_000;

const v4 = (addr: string): Address => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });
const keyBytes = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + 7 * i) & 0xff);

function add(spi: number, seq: number): Uint8Array {
  return buildMessage({
    header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq, pid: 1 },
    sa: { spi, replay: 32, state: SADB_SASTATE_MATURE, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_X_EALG_AESCBC, flags: 0 },
    lifetimeHard: { allocations: 0, bytes: 0n, addtime: 28800n, usetime: 0n },
    lifetimeSoft: { allocations: 0, bytes: 0n, addtime: 27000n, usetime: 0n },
    addressSrc: v4('192.0.2.1'),
    addressDst: v4('198.51.100.7'),
    keyAuth: { bits: 160, key: keyBytes(20, 0x11) },
    keyEncrypt: { bits: 128, key: keyBytes(16, 0x5a) },
  });
}

function get(spi: number, seq: number, pid: number): Uint8Array {
  return buildMessage({
    header: { type: SADB_GET, satype: SADB_SATYPE_ESP, seq, pid },
    sa: { spi, replay: 0, state: SADB_SASTATE_MATURE, auth: 0, encrypt: 0, flags: 0 },
    addressSrc: v4('192.0.2.1'),
    addressDst: v4('198.51.100.7'),
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------- a client ----------

/** A PF_KEY stream client that frames what it receives and can wait for a message. */
class Client {
  readonly got: SadbMsg[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder();
  private waiters: Array<() => void> = [];

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk, (f) => this.got.push(readHeader(f)));
      this.wake();
    });
    sock.on('close', () => { this.closed = true; this.wake(); });
    sock.on('error', () => { /* closed says it */ });
  }

  static connect(p: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect(p, () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves when `done()` holds (checked on every arrival and on close), bounded. */
  until(what: string, done: () => boolean, ms = 30_000): Promise<void> {
    return within(ms, what, new Promise<void>((resolve) => {
      const look = () => (done() ? resolve() : this.waiters.push(look));
      look();
    }));
  }

  close(): void {
    this.sock.destroy();
  }
}

/** Sequential GET round trips of one SA (ms each): the well-behaved client. */
async function getLatencies(c: Client, spi: number, n: number): Promise<number[]> {
  const out: number[] = [];
  const pid = 4242;
  for (let i = 0; i < n; i++) {
    const seq = 1_000_000 + i;
    const from = c.got.length;
    const t0 = performance.now();
    c.sock.write(get(spi, seq, pid));
    await c.until('a GET reply', () => c.got.slice(from).some((h) => h.type === SADB_GET && h.seq === seq && h.pid === pid));
    out.push(performance.now() - t0);
  }
  return out;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

/** A scenario's row: the GET round trips timed during it, and its own figures. */
function row(name: string, lat: number[], extra: Record<string, number | string>): ResultRow {
  const mean = (lat.reduce((a, b) => a + b, 0) / lat.length) * 1e6;
  return {
    name, hz: 1e9 / mean, mean, p99: quantile(lat, 0.99) * 1e6, samples: lat.length,
    extra: { 'GET p99': `${(quantile(lat, 0.99) * 1000).toFixed(0)} µs`, 'GET max': `${(Math.max(...lat)).toFixed(1)} ms`, ...extra },
  };
}

// ---------- klipsd ----------

interface Klipsd {
  child: ChildProcess;
  socket: string;
  exited: Promise<number | string>;
  stop(): Promise<void>;
}

let legacyBuild: boolean | undefined;

/** Whether DAEMON predates the hardening (it has no --version and knows fewer keys). */
function isLegacy(): Promise<boolean> {
  if (legacyBuild !== undefined) return Promise.resolve(legacyBuild);
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [DAEMON, '--version'], { stdio: 'ignore' });
    c.on('exit', (code) => resolve((legacyBuild = code !== 0)));
  });
}

async function startKlipsd(config: Record<string, unknown>, stderr: 'ignore' | number = 'ignore'): Promise<Klipsd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klips-abuse-'));
  const socket = path.join(dir, 'pfkey.sock');
  const legacy = await isLegacy();
  const cfg = Object.fromEntries(Object.entries(config).filter(([k]) => !legacy || LEGACY_KEYS.includes(k)));
  fs.writeFileSync(path.join(dir, 'klipsd.json'), JSON.stringify(cfg));
  const child = spawn(process.execPath, [DAEMON, '--socket', socket, '--config', path.join(dir, 'klipsd.json')], { stdio: ['ignore', 'ignore', stderr] });
  const exited = new Promise<number | string>((r) => child.on('exit', (code, sig) => r(code ?? sig ?? -1)));
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      (await Client.connect(socket)).close();
      break;
    } catch {
      if (Date.now() > end || child.exitCode !== null) {
        child.kill('SIGKILL');
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error(`klipsd did not listen on ${socket} (exit ${await exited})`);
      }
      await sleep(20);
    }
  }
  return {
    child, socket, exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** klipsd's resident set size in bytes. */
function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** klipsd's counters from its view channel. */
function stats(socket: string): Promise<Record<string, number | string>> {
  return within(10_000, 'the stats view', new Promise((resolve, reject) => {
    const c = net.connect(`${socket}.info`, () => c.write('{"view":"stats"}\n'));
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (s: string) => {
      buf += s;
      if (!buf.includes('\n')) return;
      c.destroy();
      resolve((JSON.parse(buf) as { data: { server: Record<string, number | string> } }).data.server);
    });
    c.on('error', reject);
  }));
}

/** Poll until klipsd's bytesOut stops moving for a second (the DUMPs have stalled), bounded. */
async function settle(socket: string): Promise<void> {
  const end = Date.now() + SETTLE_LIMIT_MS;
  let last = -1;
  let still = 0;
  while (still < 4 && Date.now() < end) {
    await sleep(250);
    const out = Number((await stats(socket)).bytesOut);
    still = out === last ? still + 1 : 0;
    last = out;
  }
}

async function connectMany(socket: string, n: number): Promise<Client[]> {
  const out: Client[] = [];
  for (let i = 0; i < n; i += 100) out.push(...await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => Client.connect(socket))));
  return out;
}

const MB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
const KB = (b: number) => `${(b / 1024).toFixed(0)} KB`;

// ---------- scenarios ----------

async function nonReaders(n: number, sas: number, gets: number): Promise<ResultRow> {
  const k = await startKlipsd({ maxConnections: n + 16 });
  try {
    const good = await Client.connect(k.socket);
    const burst = Buffer.concat(Array.from({ length: sas }, (_, i) => add(0x10000 + i, i + 1)));
    good.sock.write(burst);
    await good.until('the last ADD reply', () => good.got.some((h) => h.type === SADB_ADD && h.seq === sas), 60_000);
    await settle(k.socket);
    const before = rss(k.child.pid!);
    const idle = await connectMany(k.socket, n);
    for (const c of idle) {
      c.sock.pause();
      c.sock.write(buildMessage({ header: { type: SADB_DUMP, satype: SADB_SATYPE_ESP, seq: 1, pid: 7 } }));
    }
    await settle(k.socket);
    const after = rss(k.child.pid!);
    const lat = await getLatencies(good, 0x10000, gets);
    const s = await stats(k.socket);
    for (const c of [...idle, good]) c.close();
    return row(`${n} clients that never read`, lat, {
      'RSS before': MB(before), 'RSS after': MB(after), 'per client': KB((after - before) / n),
      held: s.heldBytes === undefined ? 'not counted' : MB(Number(s.heldBytes)),
    });
  } finally {
    await k.stop();
  }
}

async function overTheLimit(extra: number, gets: number): Promise<ResultRow> {
  const LIMIT = 64;
  const k = await startKlipsd({ maxConnections: LIMIT });
  try {
    const good = await Client.connect(k.socket);
    good.sock.write(add(0x20000, 1));
    await good.until('the ADD reply', () => good.got.some((h) => h.type === SADB_ADD));
    const held = await connectMany(k.socket, LIMIT - 1);
    let enfile = 0;
    const storm = (async () => {
      for (let i = 0; i < extra; i += 100) {
        const batch = await connectMany(k.socket, Math.min(100, extra - i));
        await Promise.all(batch.map((c) => c.until('the refusal', () => c.closed)));
        enfile += batch.filter((c) => c.got.length === 1 && c.got[0].type === 0 && c.got[0].errno === ERRNO.ENFILE).length;
      }
    })();
    const lat = await getLatencies(good, 0x20000, gets);
    await within(60_000, 'the connection storm', storm);
    const s = await stats(k.socket);
    for (const c of [...held, good]) c.close();
    return row(`${extra} connections beyond maxConnections ${LIMIT}`, lat, {
      'got ENFILE': `${enfile}/${extra}`, counted: s.refusedConnections ?? 'not counted',
    });
  } finally {
    await k.stop();
  }
}

async function stalled(count: number, gets: number): Promise<ResultRow> {
  const TIMEOUT = 1000;
  const k = await startKlipsd({ maxConnections: count + 100, partialFrameTimeoutMs: TIMEOUT });
  try {
    const good = await Client.connect(k.socket);
    good.sock.write(add(0x30000, 1));
    await good.until('the ADD reply', () => good.got.some((h) => h.type === SADB_ADD));
    const idle = await connectMany(k.socket, 50);
    for (const c of idle) c.sock.write(get(0x30000, 1, 9));
    await Promise.all(idle.map((c) => c.until('a GET reply', () => c.got.length > 0)));
    const stuck = await connectMany(k.socket, count);
    const t0 = performance.now();
    for (const c of stuck) c.sock.write(add(0x30001, 2).subarray(0, 10));
    const lat = await getLatencies(good, 0x30000, gets);
    const closing = Promise.all(stuck.map((c) => c.until('the close', () => c.closed, TIMEOUT * 5)));
    let closedAfter = 'not within 5 s';
    try {
      await closing;
      closedAfter = `${((performance.now() - t0) / 1000).toFixed(2)} s`;
    } catch { /* reported */ }
    const s = await stats(k.socket);
    const result = row(`${count} connections stalled mid-message`, lat, {
      closed: `${stuck.filter((c) => c.closed).length}/${count}`, 'all closed after': closedAfter,
      'idle kept': `${idle.filter((c) => !c.closed).length}/${idle.length}`, counted: s.partialFrameTimeouts ?? 'not counted',
    });
    for (const c of [...stuck, ...idle, good]) c.close();
    return result;
  } finally {
    await k.stop();
  }
}

async function fullDisk(messages: number, gets: number): Promise<ResultRow> {
  const full = fs.openSync('/dev/full', 'w');
  let k: Klipsd;
  try {
    k = await startKlipsd({}, full);
  } catch (e) {
    return row(`stderr on /dev/full: ${messages} logged errors`, [NaN], { survived: `no: ${(e as Error).message}` });
  } finally {
    fs.closeSync(full);
  }
  let died: number | string | undefined;
  void k.exited.then((how) => { died = how; });
  try {
    const good = await Client.connect(k.socket);
    good.sock.write(add(0x40000, 1));
    await good.until('the ADD reply', () => good.got.some((h) => h.type === SADB_ADD));
    const bad = Buffer.from('02090000000000000000000000000000', 'hex');
    let answered = 0;
    const storm = (async () => {
      for (let i = 0; i < messages && died === undefined; i += 100) {
        const batch = await connectMany(k.socket, Math.min(100, messages - i)).catch(() => [] as Client[]);
        for (const c of batch) c.sock.write(bad);
        await Promise.all(batch.map((c) => c.until('the EMSGSIZE and close', () => c.closed).catch(() => undefined)));
        answered += batch.filter((c) => c.got.some((h) => h.errno === ERRNO.EMSGSIZE)).length;
      }
    })();
    let lat: number[] = [];
    try {
      lat = await getLatencies(good, 0x40000, gets);
    } catch { /* klipsd went away */ }
    await within(60_000, 'the framing-error storm', storm);
    if (died !== undefined) {
      return row(`stderr on /dev/full: ${messages} logged errors`, lat.length ? lat : [NaN], { survived: `no: exit ${died} after ${answered} answered` });
    }
    const s = await stats(k.socket);
    good.close();
    return row(`stderr on /dev/full: ${messages} logged errors`, lat, {
      survived: 'yes', answered: `${answered}/${messages}`, 'log lines lost (counted)': s.logDropped ?? 'not counted',
    });
  } finally {
    await k.stop();
  }
}

export const suite: Suite = {
  name: 'abuse',
  description: 'klipsd under abusive clients: memory with non-readers, the connection limit, stalled frames, a full log disk; a GET client meanwhile',
  async run(opts: SuiteOptions): Promise<SuiteResult> {
    const GETS = opts.quick ? 300 : 2000;
    const SAS = opts.quick ? 3000 : 6000;
    const rows: ResultRow[] = [];
    const step = async (what: string, run: () => Promise<ResultRow>) => {
      process.stderr.write(`   abuse: ${what}\n`);
      rows.push(await run());
    };
    for (const n of opts.quick ? [50, 100] : [100, 500]) await step(`${n} non-readers`, () => nonReaders(n, SAS, GETS));
    await step('beyond maxConnections', () => overTheLimit(500, GETS));
    await step('stalled frames', () => stalled(200, GETS));
    await step('stderr on /dev/full', () => fullDisk(1000, GETS));
    return {
      rows,
      notes: [
        `klipsd: ${DAEMON}${(await isLegacy()) ? ' (a build without the hardening: keys it does not know were left out)' : ''}`,
        `non-readers: ${SAS} SAs (~${KB(SAS * 280)} per DUMP); RSS is VmRSS once klipsd's output stopped moving for 1 s`,
        'mean and p99 (and GET p99/max) are the well-behaved client\'s sequential GET round trips during each scenario',
      ],
    };
  },
};

runAloneIfMain(suite, import.meta.url);
