/**
 * What a bench suite is and the few helpers suites share: the Suite/SuiteResult shapes
 * the runner (run.ts) consumes, measuring tasks with tinybench in interleaved rounds (or,
 * for tasks compared on a noisy machine, batch by batch in turn: interleave()),
 * the batching that makes sub-microsecond work measurable, the conversion of tinybench
 * results into plain rows (ops/s, mean and p99 in ns, samples, extra metrics), paired
 * ratios (a task against its floor, round by round), latency summaries and a rough
 * allocation-per-operation check.
 *
 * Pairing rule: every "% of floor" is a median of per-round ratios, where the task and
 * its floor were measured in the same round. A task's own row is its median round. No
 * figure is a best-of-N set against another best-of-N.
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

/** One measured task (its median round). Latencies are per operation, in nanoseconds. */
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

/** What measure() returns: every task's row in every round. */
export class Measured {
  constructor(
    /** Task name -> its row in each round, in round order. */
    readonly rounds: ReadonlyMap<string, readonly ResultRow[]>,
  ) {}

  private of(name: string): readonly ResultRow[] {
    const rs = this.rounds.get(name);
    if (!rs || rs.length === 0) throw new Error(`no task named "${name}"`);
    return rs;
  }

  /** The task's row from its median round (by mean; the lower middle for an even count). */
  row(name: string): ResultRow {
    const rs = [...this.of(name)].sort((a, b) => a.mean - b.mean);
    const r = rs[(rs.length - 1) >> 1];
    return { ...r, extra: { ...r.extra } };
  }

  /** rate(task) / rate(floor) in each round, paired by round. */
  ratio(name: string, floorName: string): Paired {
    const t = this.of(name);
    const f = this.of(floorName);
    return paired(t.map((r) => r.hz), f.map((r) => r.hz));
  }
}

/**
 * Runs a suite's tasks in `opts.rounds` rounds (a fresh Bench each, warm-up only in the
 * first), each task getting `opts.time / opts.rounds` ms per round, and keeps every
 * task's row of every round. Interleaving keeps a floor and the code measured against it
 * close in time; a ratio is taken within each round (Measured.ratio) and the median of
 * those is reported, so a burst on a shared machine moves one round's pair, not one side
 * of a best-against-best comparison. `define` adds the tasks; it runs once per round.
 * `beforeRound`, if given, runs at the start of each round (before `define`): work timed
 * outside tinybench (a child process's figures, say) that is to be paired by round too.
 */
export async function measure(
  opts: SuiteOptions,
  define: (bench: Bench) => void,
  beforeRound?: (round: number) => void | Promise<void>,
): Promise<Measured> {
  const all = new Map<string, ResultRow[]>();
  const rounds = opts.rounds ?? 1;
  for (let round = 0; round < rounds; round++) {
    await beforeRound?.(round);
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
      const list = all.get(task.name) ?? [];
      list.push(rowOf(task));
      all.set(task.name, list);
    }
  }
  return new Measured(all);
}

/** A task for interleave(): one call runs `n` operations. */
export interface BatchTask {
  name: string;
  n: number;
  batch: () => void;
}

/**
 * Times tasks that are compared with each other batch by batch in turn: within each group
 * the tasks take turns (A B C, B C A, C A B, …) for the group's share of the round, so a
 * burst of load on a shared machine lands on all of them alike instead of on whichever
 * tinybench task happened to be running. A round gives each task `opts.time / rounds` ms
 * (the same budget as measure()); the first round starts with a warm-up of each task.
 * A task's row in a round: its rate over all its batches in that round, p99 over the
 * per-operation means of its batches. Returns the same Measured as measure(), so rows
 * and per-round ratios are read the same way.
 */
export async function interleave(
  opts: SuiteOptions,
  groups: readonly (readonly BatchTask[])[],
  beforeRound?: (round: number) => void | Promise<void>,
): Promise<Measured> {
  const all = new Map<string, ResultRow[]>();
  const rounds = opts.rounds ?? 1;
  const share = opts.time / rounds;
  for (let round = 0; round < rounds; round++) {
    await beforeRound?.(round);
    for (const group of groups) {
      if (round === 0) {
        for (const t of group) {
          const until = performance.now() + opts.warmupTime / group.length;
          while (performance.now() < until) t.batch();
        }
      }
      const spent = group.map(() => 0);
      const perOp: number[][] = group.map(() => []);
      const until = performance.now() + share * group.length;
      for (let turn = 0; performance.now() < until || turn < group.length; turn++) {
        for (let k = 0; k < group.length; k++) {
          const i = (turn + k) % group.length;
          const t0 = performance.now();
          group[i].batch();
          const dt = performance.now() - t0;
          spent[i] += dt;
          perOp[i].push(dt / group[i].n);
        }
      }
      group.forEach((t, i) => {
        const ops = perOp[i].length * t.n;
        const meanNs = (spent[i] / ops) * 1e6;
        const row: ResultRow = {
          name: t.name, hz: 1e9 / meanNs, mean: meanNs, p99: quantile(perOp[i], 0.99) * 1e6, samples: perOp[i].length, extra: {},
        };
        all.set(t.name, [...(all.get(t.name) ?? []), row]);
      });
      await new Promise((r) => setImmediate(r));
    }
  }
  return new Measured(all);
}

// ---------- pairing ----------

/** A task's rate over its floor's, round by round (same index = same round). */
export interface Paired {
  /** The ratio in each round. */
  each: number[];
  /** The median of `each` (mean of the two middle ones for an even count). */
  median: number;
  min: number;
  max: number;
}

/** Pairs `task[i]` with `floor[i]` (rates measured in the same round) and summarises the ratios. */
export function paired(task: readonly number[], floor: readonly number[]): Paired {
  if (task.length !== floor.length || task.length === 0) throw new Error(`cannot pair ${task.length} rounds with ${floor.length}`);
  const each = task.map((t, i) => t / floor[i]);
  return { each, median: median(each), min: Math.min(...each), max: Math.max(...each) };
}

/**
 * The extra columns for a paired ratio: `vs floor` (median of the per-round ratios),
 * `ratio` (the same as a number, for the JSON) and `per round` (each round's ratio in %).
 */
export function pairedExtra(p: Paired, label = 'vs floor'): Record<string, number | string> {
  return {
    [label]: percent(p.median),
    ratio: Number(p.median.toFixed(4)),
    'per round': p.each.map((x) => (x * 100).toFixed(1)).join(' '),
  };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The q-quantile (0..1) of `xs` by the nearest-rank method (q = 0.99: the value 99% of samples are at or below). */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  return nearestRank(Float64Array.from(xs).sort(), q);
}

function nearestRank(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

// ---------- latency ----------

/** A latency distribution in milliseconds. */
export interface LatencySummary {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export function summarize(ms: readonly number[]): LatencySummary {
  if (ms.length === 0) return { n: 0, mean: NaN, p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN };
  const s = Float64Array.from(ms).sort();
  const at = (q: number) => nearestRank(s, q);
  let sum = 0;
  for (const x of s) sum += x;
  return { n: s.length, mean: sum / s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: s[s.length - 1] };
}

const fmtAuto = (ms: number): string => fmtMs(ms);

/** Milliseconds as text in a readable unit: "42.1 µs", "3.20 ms". */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  return ms < 1 ? `${(ms * 1000).toFixed(1)} µs` : `${ms.toFixed(2)} ms`;
}

/** Milliseconds as microseconds text: "42.1 µs", "3204.0 µs". */
export function fmtUs(ms: number): string {
  return Number.isFinite(ms) ? `${(ms * 1000).toFixed(1)} µs` : String(ms);
}

/**
 * A ResultRow for a latency distribution: hz is the completed requests per second over
 * `spanMs` when given (else 1/mean), mean and p99 in ns, and p50/p99/max as text
 * (in µs with `micro`, else in the unit that reads best).
 */
export function latencyRow(name: string, s: LatencySummary, extra: Record<string, number | string> = {}, spanMs?: number, micro = false): ResultRow {
  const fmtMs = micro ? fmtUs : fmtAuto;
  return {
    name,
    hz: spanMs ? (s.n / spanMs) * 1000 : s.mean > 0 ? 1000 / s.mean : 0,
    mean: s.mean * 1e6,
    p99: s.p99 * 1e6,
    samples: s.n,
    extra: { p50: fmtMs(s.p50), p99: fmtMs(s.p99), max: fmtMs(s.max), ...extra },
  };
}

// ---------- allocation ----------

const gcFn = (globalThis as { gc?: () => void }).gc;

/**
 * Rough heap bytes allocated per operation: `run(n)` performs n operations; the heap's
 * growth over one call, after a full GC, minus that of `run(0)`, divided by n (the
 * smallest of 5, and of two attempts, so a one-off such as a tier-up compile does not
 * count). n must keep the
 * total well under the young generation (~512 KiB) so that no scavenge runs in between.
 * Needs --expose-gc (undefined without it). `run` is warmed up first.
 */
export function allocationPerOp(run: (n: number) => void, n = 256): number | undefined {
  if (!gcFn) return undefined;
  const grow = (k: number): number => {
    gcFn();
    const h0 = process.memoryUsage().heapUsed;
    run(k);
    return process.memoryUsage().heapUsed - h0;
  };
  const least = (k: number) => Math.min(grow(k), grow(k), grow(k), grow(k), grow(k));
  let best = Infinity;
  // Two attempts after a warm-up each: tier-up compiles land in the first, not the second.
  for (let attempt = 0; attempt < 2 && best > 0; attempt++) {
    for (let i = 0; i < 200; i++) run(n);
    best = Math.min(best, Math.max(0, (least(n) - least(0)) / n));
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
  const opts: SuiteOptions = quick ? { time: 200, warmupTime: 100, rounds: 2, quick } : { time: 1000, warmupTime: 250, rounds: 5, quick };
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
