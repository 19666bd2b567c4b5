/**
 * The benchmark runner: the registry of suites, the command line, the per-suite tables
 * and the JSON report. A suite is a module in bench/ exporting `suite` (see harness.ts);
 * to add one, import it here and append it to SUITES.
 *
 *   node dist/bench/run.js [suite ...] [--quick] [--rounds N] [--json FILE] [--list]
 *
 * With no suite names every suite runs. Each task gets 1 s (200 ms with --quick), split
 * into N interleaved rounds (5; 2 with --quick); a task reports its fastest round.
 * --json writes machine info and every row to FILE (directories are created).
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ResultRow, Suite, SuiteOptions, SuiteResult } from './harness.js';
import { suite as wire } from './wire.bench.js';
import { suite as spd } from './spd.bench.js';
import { suite as engine } from './engine.bench.js';
import { suite as daemon } from './daemon.bench.js';

/** Every suite, in the order they run. Add engine.bench.js, daemon.bench.js, … here. */
export const SUITES: readonly Suite[] = [wire, spd, engine, daemon];

interface Args {
  names: string[];
  quick: boolean;
  json?: string;
  rounds?: number;
  list: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { names: [], quick: false, list: false };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s === '--quick') a.quick = true;
    else if (s === '--list') a.list = true;
    else if (s === '--json') {
      a.json = argv[++i];
      if (!a.json) throw new Error('--json needs a file name');
    } else if (s.startsWith('--json=')) a.json = s.slice('--json='.length);
    else if (s === '--rounds') {
      a.rounds = Number(argv[++i]);
      if (!Number.isInteger(a.rounds) || a.rounds < 1) throw new Error('--rounds needs a positive integer');
    }
    else if (s.startsWith('-')) throw new Error(`unknown option ${s}`);
    else a.names.push(s);
  }
  return a;
}

export function machineInfo() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    node: process.version,
    v8: process.versions.v8,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
  };
}

function fmtHz(hz: number): string {
  if (hz >= 1e6) return `${(hz / 1e6).toFixed(2)}M`;
  if (hz >= 1e3) return `${(hz / 1e3).toFixed(1)}k`;
  return hz.toFixed(0);
}

function fmtNs(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(1)} ns`;
}

function fmtExtra(v: number | string | undefined): string {
  if (v === undefined) return '';
  return typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : String(v);
}

/** The table for one suite: fixed columns, then the union of the rows' extra keys. */
export function formatTable(rows: ResultRow[]): string {
  const extraKeys = [...new Set(rows.flatMap((r) => Object.keys(r.extra)))];
  const head = ['task', 'ops/s', 'mean', 'p99', 'samples', ...extraKeys];
  const body = rows.map((r) => [
    r.name, fmtHz(r.hz), fmtNs(r.mean), fmtNs(r.p99), String(r.samples),
    ...extraKeys.map((k) => fmtExtra(r.extra[k])),
  ]);
  const width = head.map((h, c) => Math.max(h.length, ...body.map((b) => b[c].length)));
  const line = (cells: string[]) => cells.map((x, c) => (c === 0 ? x.padEnd(width[c]) : x.padStart(width[c]))).join('  ');
  return [line(head), width.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.list) {
    for (const s of SUITES) console.log(`${s.name.padEnd(12)} ${s.description}`);
    return 0;
  }
  const unknown = args.names.filter((n) => !SUITES.some((s) => s.name === n));
  if (unknown.length) {
    console.error(`unknown suite ${unknown.join(', ')}; known: ${SUITES.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const chosen = args.names.length ? SUITES.filter((s) => args.names.includes(s.name)) : SUITES;
  const opts: SuiteOptions = args.quick
    ? { time: 200, warmupTime: 100, rounds: args.rounds ?? 2, quick: true }
    : { time: 1000, warmupTime: 250, rounds: args.rounds ?? 5, quick: false };
  const machine = machineInfo();
  console.log(`${machine.cpu}, ${machine.cores} cores, node ${machine.node}, ${machine.os}`);
  console.log(`${opts.time} ms per task in ${opts.rounds} rounds${opts.quick ? ' (--quick)' : ''}\n`);

  const report: Array<{ suite: string; result: SuiteResult }> = [];
  for (const s of chosen) {
    console.log(`== ${s.name}: ${s.description}`);
    const result = await s.run(opts);
    console.log(formatTable(result.rows));
    for (const n of result.notes ?? []) console.log(`   ${n}`);
    console.log('');
    report.push({ suite: s.name, result });
  }

  if (args.json) {
    const out = {
      machine,
      options: opts,
      latencyUnit: 'ns',
      results: report.flatMap(({ suite, result }) => result.rows.map((r) => ({ suite, ...r }))),
      notes: Object.fromEntries(report.map(({ suite, result }) => [suite, result.notes ?? []])),
    };
    mkdirSync(dirname(args.json), { recursive: true });
    writeFileSync(args.json, `${JSON.stringify(out, null, 2)}\n`);
    console.log(`wrote ${args.json}`);
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => {
      console.error(err instanceof Error ? err.stack ?? err.message : err);
      process.exitCode = 1;
    },
  );
}
