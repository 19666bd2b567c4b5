#!/usr/bin/env node
/**
 * The live side of the differential check (issue 13): replay the suite against a running
 * klipsd's KAME socket, one stream connection per suite socket, and compare what each
 * connection received with Linux's answers (scripts/kame-diff.ts). Prints a markdown
 * report, one row per step; exits 0 when every step is equal, 1 when any differs, 2 on
 * bad arguments or when klipsd cannot be reached.
 *
 *   node dist/scripts/kame-compare.js --socket /run/klips/pfkey.sock.kame
 *   node dist/scripts/kame-compare.js --socket S --live        # Linux answers now, from the VM
 *   node dist/scripts/kame-compare.js --reference A.json --against B.json   # two saved runs
 *   node dist/scripts/kame-compare.js --show STEP [--socket S | --against B.json]  # one step, decoded
 *
 * Traffic steps (the ACQUIRE scenario) go to klipsd's view channel as `klips trace` does
 * ({"trace": {"dir": "out", "packet": HEX, "count": true}}). A framing error must reach
 * its answer within a step's settle time: start klipsd with a partialFrameTimeoutMs of at
 * most 1000 (docs/kame-differential.md).
 */

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FrameDecoder } from '../src/wire/index.js';
import { compareRuns, decodeMessage, describe, fillRequest, renderReport, type Run, type StepResult, type Suite } from './kame-diff.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root, from scripts/ or dist/scripts/. */
export const ROOT = path.basename(path.dirname(here)) === 'dist' ? path.resolve(here, '../..') : path.resolve(here, '..');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'linux-af_key-suite');

export function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

/** The view channel beside a KAME socket: `<socket>.kame` → `<socket>.info`. */
export function infoPathOf(kameSocket: string): string {
  return kameSocket.endsWith('.kame') ? `${kameSocket.slice(0, -'.kame'.length)}.info` : `${kameSocket}.info`;
}

interface Conn {
  sock: net.Socket;
  got: string[];
  closed: boolean;
  /** When something last arrived or the connection closed (ms). */
  last: number;
}

function connect(p: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(p, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One request on klipsd's view channel, its one-line JSON answer. */
async function viewRequest(infoPath: string, req: unknown): Promise<string> {
  const s = await connect(infoPath);
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error('no answer on the view channel')); }, 5000);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) {
        clearTimeout(t);
        s.destroy();
        resolve(buf.slice(0, i));
      }
    });
    s.on('error', (e) => { clearTimeout(t); reject(e); });
    s.write(`${JSON.stringify(req)}\n`);
  });
}

export interface ReplayOptions {
  /** klipsd's view channel (for traffic steps); default from the socket path. */
  infoPath?: string;
  /** Quiet time that ends a step's collection once the sender has its answer (ms). */
  quietMs?: number;
  /** Called after each step (progress). */
  onStep?: (r: StepResult) => void;
}

/**
 * Run the suite against a stream socket speaking the KAME dialect (klipsd's `<socket>.kame`):
 * each suite socket is a connection. A step's collection ends after `settle` seconds when
 * the step names one, else once the sender has a message and nothing arrived for quietMs
 * (at most the suite's settle).
 */
export async function replayStream(suite: Suite, socketPath: string, o: ReplayOptions = {}): Promise<Run> {
  const infoPath = o.infoPath ?? infoPathOf(socketPath);
  const quiet = o.quietMs ?? 60;
  const conns = new Map<number, Conn>();
  const results = new Map<string, StepResult>();
  const steps: StepResult[] = [];

  async function open(id: number): Promise<void> {
    const sock = await connect(socketPath);
    const c: Conn = { sock, got: [], closed: false, last: Date.now() };
    const dec = new FrameDecoder();
    sock.on('data', (chunk: Buffer) => {
      c.last = Date.now();
      dec.push(chunk, (f) => c.got.push(Buffer.from(f).toString('hex')));
    });
    sock.on('close', () => { c.closed = true; c.last = Date.now(); });
    sock.on('error', () => { /* `closed` says it */ });
    conns.set(id, c);
  }

  async function collect(step: Suite['steps'][number], started: number): Promise<Pick<StepResult, 'received' | 'closed'>> {
    const fixed = step.settle ?? step.wait;
    const cap = (fixed ?? suite.settle) * 1000;
    const sender = step.socket !== undefined ? conns.get(step.socket) : undefined;
    for (;;) {
      const now = Date.now();
      if (now - started >= cap) break;
      if (fixed === undefined) {
        const last = Math.max(started, ...[...conns.values()].map((c) => c.last));
        const answered = !sender || sender.got.length > 0 || sender.closed;
        if (answered && now - last >= quiet) break;
      }
      await sleep(10);
    }
    const received: Record<string, string[]> = {};
    const closed: number[] = [];
    for (const [id, c] of conns) {
      if (c.got.length) received[String(id)] = c.got.splice(0);
      if (c.closed) {
        closed.push(id);
        conns.delete(id);
      }
    }
    return closed.length ? { received, closed } : { received };
  }

  try {
    for (const step of suite.steps) {
      const started = Date.now();
      const r: StepResult = { name: step.name, received: {} };
      if (step.open) for (const id of step.open) await open(id);
      if (step.close) {
        for (const id of step.close) {
          const c = conns.get(id);
          if (!c) continue;
          c.sock.destroy();
          conns.delete(id);
        }
      }
      if (step.request !== undefined && step.socket !== undefined) {
        const { hex, unresolved } = fillRequest(step.request, suite.steps, results);
        r.request = hex;
        if (unresolved.length) r.source = `unresolved ${unresolved.join(', ')}`;
        const c = conns.get(step.socket);
        if (c) c.sock.write(Buffer.from(hex, 'hex'));
        else r.source = `socket ${step.socket} was closed`;
      }
      if (step.traffic) {
        try {
          r.source = `trace: ${(await viewRequest(infoPath, { trace: { dir: 'out', packet: step.traffic.packet, count: true } })).slice(0, 200)}`;
        } catch (e) {
          r.source = `trace failed: ${(e as Error).message}`;
        }
      }
      Object.assign(r, await collect(step, started));
      results.set(step.name, r);
      steps.push(r);
      o.onStep?.(r);
    }
  } finally {
    for (const c of conns.values()) c.sock.destroy();
  }
  let version = '';
  try {
    version = ` ${readJson<{ version: string }>(path.join(ROOT, 'package.json')).version}`;
  } catch { /* no version then */ }
  return { transport: 'stream', kernel: `klipsd${version} (KAME socket ${socketPath})`, steps };
}

/** Linux's answers now: the capture script against the running VM, into a temporary file. */
export function captureLive(suiteFile: string): Run {
  const relay = path.join(process.env.OUT ?? '/tmp/refkernel', 'relay.sock');
  if (!fs.existsSync(relay)) throw new Error(`--live: no relay socket at ${relay} (boot the VM: ../shared/refkernel/boot.sh)`);
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kame-live-')), 'linux.json');
  execFileSync('/usr/bin/python3', [path.join(ROOT, 'scripts', 'refkernel-capture.py'), '--suite', suiteFile, '--out', out], { stdio: ['ignore', 'ignore', 'inherit'] });
  return readJson<Run>(out);
}

/** One step of a run, every message decoded field by field (--show). */
export function showStep(run: Run, label: string, name: string): string {
  const r = run.steps.find((x) => x.name === name);
  if (!r) return `${label}: no step ${name}\n`;
  const fields = (h: string) => {
    const d = decodeMessage(h);
    const lines = [`    header: ${Object.entries(d.header).map(([k, v]) => `${k}=${v}`).join(' ')}`];
    for (const [ext, f] of Object.entries(d.exts)) lines.push(`    ${ext}: ${Object.entries(f).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    return lines.join('\n');
  };
  const out = [`${label} (${run.kernel}), step ${name}${r.source ? ` [${r.source}]` : ''}${r.send ? `, send() ${r.send.join(' ')}` : ''}${r.closed ? `, closed ${r.closed.join(' ')}` : ''}`];
  if (r.request) out.push(`  request: ${describe(r.request)}`, fields(r.request));
  for (const [k, list] of Object.entries(r.received)) for (const h of list) out.push(`  socket ${k} <- ${describe(h)}`, fields(h));
  return `${out.join('\n')}\n`;
}

function usage(msg: string): never {
  process.stderr.write(`kame-compare: ${msg}\nusage: kame-compare (--socket KAME_SOCKET [--info PATH] | --against RUN.json) [--live | --reference linux.json] [--suite suite.json] [--save RUN.json] [--show STEP]\n`);
  process.exit(2);
}

async function main(argv: string[]): Promise<number> {
  const opt: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--live' || a === '--help') opt[a.slice(2)] = true;
    else if (['--socket', '--info', '--reference', '--suite', '--against', '--save', '--show'].includes(a)) {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      opt[a.slice(2)] = argv[++i];
    } else usage(`unknown argument ${a}`);
  }
  if (opt.help) usage('compare klipsd\'s KAME socket with Linux af_key');
  const suiteFile = (opt.suite as string | undefined) ?? path.join(FIXTURES, 'suite.json');
  const suite = readJson<Suite>(suiteFile);
  let reference: Run;
  try {
    reference = opt.live ? captureLive(suiteFile) : readJson<Run>((opt.reference as string | undefined) ?? path.join(FIXTURES, 'linux.json'));
  } catch (e) {
    usage((e as Error).message);
  }
  if (opt.show && !opt.socket && !opt.against) {
    process.stdout.write(showStep(reference, 'linux', opt.show as string));
    return 0;
  }
  let other: Run;
  if (opt.against) other = readJson<Run>(opt.against as string);
  else if (opt.socket) {
    const sock = opt.socket as string;
    if (!fs.existsSync(sock)) usage(`no socket at ${sock} (klipsd's KAME socket is <socket>.kame)`);
    try {
      other = await replayStream(suite, sock, { infoPath: opt.info as string | undefined });
    } catch (e) {
      usage(`cannot replay against ${sock}: ${(e as Error).message}`);
    }
  } else usage('give --socket or --against');
  if (opt.save) fs.writeFileSync(opt.save as string, `${JSON.stringify(other, null, 1)}\n`);
  const label = other.transport === 'stream' ? 'klipsd' : 'other';
  if (opt.show) {
    process.stdout.write(`${showStep(reference, 'linux', opt.show as string)}\n${showStep(other, label, opt.show as string)}`);
    return 0;
  }
  const reports = compareRuns(suite, { label: 'linux', run: reference }, { label, run: other });
  const title = `${other.kernel} against ${reference.kernel}${typeof reference.captured === 'string' ? ` (captured ${reference.captured})` : ''}`;
  process.stdout.write(renderReport(reports, title));
  return reports.every((r) => r.equal) ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
    process.stderr.write(`kame-compare: ${(e as Error).stack ?? e}\n`);
    process.exit(2);
  });
}
