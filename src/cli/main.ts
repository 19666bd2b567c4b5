#!/usr/bin/env node
/**
 * `klips`: the KLIPS tools as subcommands of one binary, with openswan's flags and
 * output (programs/{spi,eroute,spigrp,look,pf_key,klipsdebug,tncfg}), talking PF_KEY to
 * klipsd over its Unix socket, plus `decode` for PF_KEY bytes in hex, `trace` for one
 * packet through klipsd's eroutes and SAs, `setkey` (ipsec-tools' setkey, speaking
 * the KAME dialect on klipsd's `<socket>.kame`) and `run` for unmodified programs (the
 * bridge, run.ts; it exits with its program's status).
 *
 * Exit status: 0 success; 1 an errno reply ("spi: ADD esp0x1234@192.0.2.2 failed: EEXIST
 * (SA already exists)"), klipsd unreachable or silent; 2 bad arguments. Every failure is
 * one line on stderr (bad arguments add "Try 'klips spi --help'."); with --json it is one
 * JSON object instead: {"error":{"errno":"EEXIST","code":17,"message":"…"}}, errno and
 * code null when the failure has no errno.
 */

import fs from 'node:fs';
import { Command, CommanderError } from 'commander';
import { CliFailure, ExitStatus, ReportedFailure, UsageError, type Errno } from './common.js';
import { spiCommand } from './spi.js';
import { erouteCommand } from './eroute.js';
import { spigrpCommand } from './spigrp.js';
import { lookCommand } from './look.js';
import { monitorCommand } from './monitor.js';
import { debugCommand } from './debug.js';
import { tncfgCommand } from './tncfg.js';
import { decodeCommand } from './decode.js';
import { traceCommand } from './trace.js';
import { setkeyCommand } from './setkey.js';
import { runCommand } from './run.js';

/** The package's version (package.json sits three levels above dist/src/cli/). */
function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command('klips')
    .description("openswan's KLIPS tools for klipsd: spi, eroute, spigrp, look, monitor (pf_key), debug (klipsdebug), tncfg, decode, trace; ipsec-tools' setkey; and run, for unmodified programs")
    .usage('<command> [options]')
    .version(packageVersion(), '-V, --version', 'print the version')
    .exitOverride()
    .enablePositionalOptions()
    .configureOutput({ outputError: () => {} });
  for (const cmd of [spiCommand(), erouteCommand(), spigrpCommand(), lookCommand(), monitorCommand(), debugCommand(), tncfgCommand(), decodeCommand(), traceCommand(), setkeyCommand(), runCommand()]) {
    program.addCommand(cmd);
  }
  program.addHelpCommand('help [command]', 'show help for a command');
  return program;
}

function subcommandOf(program: Command, argv: string[]): Command | undefined {
  const name = argv.find((a) => !a.startsWith('-'));
  return program.commands.find((c) => c.name() === name || c.aliases().includes(name ?? ''));
}

/** The one report of a failure: a line (and a --help pointer for bad arguments), or JSON. */
function report(json: boolean, message: string, errno: Errno | undefined, hint?: string): void {
  if (json) {
    process.stderr.write(`${JSON.stringify({ error: { errno: errno?.name ?? null, code: errno?.code ?? null, message } })}\n`);
  } else {
    process.stderr.write(`${message}\n${hint ? `${hint}\n` : ''}`);
  }
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return 2;
  }
  const json = argv.includes('--json');
  const usage = (why: string): number => {
    const sub = subcommandOf(program, argv);
    const name = sub ? `klips ${sub.name()}` : 'klips';
    report(json, `${name}: ${why}`, undefined, `Try '${name} --help'.`);
    return 2;
  };
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return usage(e.message.replace(/^error: /, ''));
    }
    if (e instanceof UsageError) return usage(e.message);
    if (e instanceof ReportedFailure) return 1;
    if (e instanceof ExitStatus) return e.code;
    if (e instanceof CliFailure) {
      report(json, e.message, e.errno);
      return 1;
    }
    report(json, `klips: internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`, undefined);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // Leave once output is flushed even if something still holds the event loop.
  setTimeout(() => process.exit(code), 200).unref();
});
