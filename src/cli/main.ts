#!/usr/bin/env node
/**
 * `klips`: the KLIPS tools as subcommands of one binary, with openswan's flags and
 * output (programs/{spi,eroute,spigrp,look,pf_key,klipsdebug,tncfg}), talking PF_KEY to
 * klipsd over its Unix socket, plus `decode` for PF_KEY bytes in hex.
 *
 * Exit status: 0 success; 1 an errno reply ("spi: ADD esp0x1234@192.0.2.2 failed: EEXIST
 * (SA already exists)"), klipsd unreachable or silent; 2 bad arguments (with usage).
 */

import { Command, CommanderError } from 'commander';
import { CliFailure, UsageError } from './common.js';
import { spiCommand } from './spi.js';
import { erouteCommand } from './eroute.js';
import { spigrpCommand } from './spigrp.js';
import { lookCommand } from './look.js';
import { monitorCommand } from './monitor.js';
import { debugCommand } from './debug.js';
import { tncfgCommand } from './tncfg.js';
import { decodeCommand } from './decode.js';

export function buildProgram(): Command {
  const program = new Command('klips')
    .description("openswan's KLIPS tools for klipsd: spi, eroute, spigrp, look, monitor (pf_key), debug (klipsdebug), tncfg, decode")
    .usage('<command> [options]')
    .exitOverride()
    .showHelpAfterError();
  for (const cmd of [spiCommand(), erouteCommand(), spigrpCommand(), lookCommand(), monitorCommand(), debugCommand(), tncfgCommand(), decodeCommand()]) {
    program.addCommand(cmd);
  }
  program.addHelpCommand('help [command]', 'show help for a command');
  return program;
}

function subcommandOf(program: Command, argv: string[]): Command | undefined {
  const name = argv.find((a) => !a.startsWith('-'));
  return program.commands.find((c) => c.name() === name || c.aliases().includes(name ?? ''));
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help' ? 0 : 2;
    }
    if (e instanceof UsageError) {
      const sub = subcommandOf(program, argv);
      process.stderr.write(`klips ${sub?.name() ?? ''}: ${e.message}\n\n${(sub ?? program).helpInformation()}`);
      return 2;
    }
    if (e instanceof CliFailure) {
      process.stderr.write(`${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`klips: internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // Leave once output is flushed even if something still holds the event loop.
  setTimeout(() => process.exit(code), 200).unref();
});
