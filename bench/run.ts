/**
 * The benchmark runner: the registry of suites, the command line, the per-suite tables
 * and the JSON report. A suite is a module in bench/ exporting `suite` (see harness.ts);
 * to add one, import it here and append it to SUITES.
 *
 *   node dist/bench/run.js [suite ...] [--quick] [--rounds N] [--json FILE] [--list]
 *
 * With no suite names every suite runs. Each task gets 1 s (200 ms with --quick), split
 * into N interleaved rounds (5; 2 with --quick); a task reports its median round, and a
 * "% of floor" is the median of per-round ratios (task and floor from the same round).
 * Suites that time their own loops (engine, daemon) pair the same way: floor and task
 * in the same round, one ratio per round.
 * --json writes machine info and every row to FILE (directories are created).
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatTable, machineInfo, type Suite, type SuiteOptions, type SuiteResult } from './harness.js';
import { suite as wire } from './wire.bench.js';
import { suite as spd } from './spd.bench.js';
import { suite as engine } from './engine.bench.js';
import { suite as daemon } from './daemon.bench.js';
import { suite as dataplane } from './dataplane.bench.js';
import { suite as route } from './route.bench.js';
import { suite as abuse } from './abuse.js';

/** Every suite, in the order they run. Add engine.bench.js, daemon.bench.js, … here. */
export const SUITES: readonly Suite[] = [wire, spd, engine, daemon, dataplane, route, abuse];

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
  console.log(`${opts.time} ms per task in ${opts.rounds} rounds${opts.quick ? ' (--quick)' : ''}; ratios to a floor are medians of per-round pairs\n`);

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
