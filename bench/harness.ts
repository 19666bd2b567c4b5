/**
 * What a bench suite is and the few helpers suites share: the Suite/SuiteResult shapes
 * the runner (run.ts) consumes, measuring tasks with tinybench in interleaved rounds,
 * the batching that makes sub-microsecond work measurable, and the conversion of
 * tinybench results into plain rows (ops/s, mean and p99 in ns, samples, extra metrics).
 */

import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { Bench, type FnReturnedObject, type Task } from 'tinybench';

/** What the runner passes to every suite. */
export interface SuiteOptions {
  /** Time budget per task in milliseconds (1000 by default, 200 with --quick). */
  time: number;
  /** Warm-up budget per task in milliseconds (first round only). */
  warmupTime: number;
  /** Rounds the time budget is split into, for measure(); 1 if omitted. */
  rounds?: number;
  quick: boolean;
}

/** One measured task (its fastest round). Latencies are per operation, in nanoseconds. */
export interface ResultRow {
  name: string;
  /** Operations per second, 1e9 / mean. */
  hz: number;
  mean: number;
  p99: number;
  /** Samples in the reported round. */
  samples: number;
  /** Suite-specific numbers or verdicts, e.g. { 'vs floor': '41.2%', goal: 'PASS' }. */
  extra: Record<string, number | string>;
}

export interface SuiteResult {
  rows: ResultRow[];
  /** Free-text lines printed under the suite's table (what was measured, caveats). */
  notes?: string[];
}

export interface Suite {
  name: string;
  description: string;
  run(opts: SuiteOptions): Promise<SuiteResult>;
}

/**
 * Runs a suite's tasks in `opts.rounds` rounds (a fresh Bench each, warm-up only in the
 * first), each task getting `opts.time / opts.rounds` ms per round, and keeps for every
 * task its fastest round (lowest mean). Interleaving keeps a floor and the code measured
 * against it close in time, and the fastest round filters out the bursts a shared machine
 * adds. `define` adds the tasks; it runs once per round.
 */
export async function measure(opts: SuiteOptions, define: (bench: Bench) => void): Promise<Map<string, ResultRow>> {
  const best = new Map<string, ResultRow>();
  const rounds = opts.rounds ?? 1;
  for (let round = 0; round < rounds; round++) {
    const bench = new Bench({
      time: opts.time / rounds,
      warmup: round === 0,
      warmupTime: opts.warmupTime,
      iterations: 8,
      throws: true,
    });
    define(bench);
    await bench.run();
    for (const task of bench.tasks) {
      const row = rowOf(task);
      const prev = best.get(task.name);
      if (!prev || row.mean < prev.mean) best.set(task.name, row);
    }
  }
  return best;
}

/**
 * Sub-microsecond work is below the timer's grain, so a task runs `n` operations per
 * call, times them itself with `bench.now()`, and reports the per-operation mean as the
 * sample (tinybench's overriddenDuration). Samples, mean and p99 are therefore per-op
 * means over batches of `n`. Write the loop inside each task (not in a shared helper) so
 * every task gets its own, monomorphic call site:
 *
 *   bench.add('parse', () => {
 *     const t0 = bench.now();
 *     for (let i = 0; i < N; i++) sink = parseMessage(bytes);
 *     return batch(bench.now() - t0, N);
 *   });
 */
export function batch(elapsedMs: number, n: number): FnReturnedObject {
  return { overriddenDuration: elapsedMs / n, overriddenIterationCost: elapsedMs };
}

/** The row for a finished task; throws if it did not complete. */
export function rowOf(task: Task, extra: Record<string, number | string> = {}): ResultRow {
  const r = task.result;
  if (r.state !== 'completed') {
    throw new Error(`task "${task.name}" ${r.state}${r.state === 'errored' ? `: ${r.error.message}` : ''}`);
  }
  const meanNs = r.latency.mean * 1e6;
  return {
    name: task.name,
    hz: meanNs > 0 ? 1e9 / meanNs : 0,
    mean: meanNs,
    p99: r.latency.p99 * 1e6,
    samples: r.latency.samplesCount,
    extra,
  };
}

/** A ratio as a percentage with one decimal, e.g. 0.4123 -> "41.2%". */
export function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(1)}%`;
}

// ---------- output, shared by the runner and suites run on their own ----------

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

/**
 * When the module at `moduleUrl` is the program being run (`node dist/bench/x.bench.js
 * [--quick]`), run `suite` alone and print its table. Returns whether it did.
 */
export function runAloneIfMain(suite: Suite, moduleUrl: string): boolean {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return false;
  const quick = process.argv.includes('--quick');
  const opts: SuiteOptions = quick ? { time: 200, warmupTime: 100, quick } : { time: 1000, warmupTime: 250, quick };
  (async () => {
    const m = machineInfo();
    const gcNote = (globalThis as { gc?: unknown }).gc ? '' : ' (no --expose-gc)';
    console.log(`${m.cpu}, ${m.cores} cores, node ${m.node}, ${m.os}${gcNote}`);
    console.log(`== ${suite.name}: ${suite.description}`);
    const r = await suite.run(opts);
    console.log(formatTable(r.rows));
    for (const n of r.notes ?? []) console.log(`   ${n}`);
  })().catch((e: unknown) => {
    console.error(e instanceof Error ? e.stack ?? e.message : e);
    process.exitCode = 1;
  });
  return true;
}
