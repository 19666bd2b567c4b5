/**
 * `klips run [--dialect klips|kame] [--socket PATH] -- COMMAND ARGS...`: an unmodified
 * program (openswan's spi, eroute, spigrp, pluto; setkey, racoon, charon) with its
 * PF_KEY sockets connected to klipsd. The bridge library (bridge/klips-preload.c, built
 * by `npm run build` into dist/bridge/libklips-preload.so) goes first in LD_PRELOAD;
 * KLIPS_SOCKET tells it where klipsd is and KLIPS_DIALECT which of klipsd's sockets to
 * use: the KLIPS one (`klips`) or the KAME one beside it (`<socket>.kame`). Without
 * --dialect the program's name chooses: the KAME dialect's own clients (setkey, racoon,
 * charon, ...: KAME_PROGRAMS) get `kame`, everything else (openswan's tools, pluto) `klips`.
 *
 * The command inherits stdin, stdout and stderr; SIGINT, SIGTERM and SIGHUP sent to
 * `klips run` are passed on to it; `klips run` exits with its status, or 128 + the signal
 * that killed it. A command that cannot be started exits 127 (not found) or 126 (not
 * executable), as env(1) does.
 */

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { resolveSocketPath } from '../daemon/paths.js';
import { CliFailure, ExitStatus, UsageError, newCommand } from './common.js';

/** The bridge library, beside the compiled sources (dist/bridge/). */
export const BRIDGE_LIBRARY = fileURLToPath(new URL('../../bridge/libklips-preload.so', import.meta.url));

export const DIALECTS = ['klips', 'kame'] as const;
export type Dialect = (typeof DIALECTS)[number];

export interface RunOptions {
  socket?: string;
  /** Unset: chosen by the program's name (dialectFor). */
  dialect?: string;
}

/** Programs that speak only the KAME/Linux dialect (ipsec-tools', strongSwan's, the BSDs' iked). */
export const KAME_PROGRAMS: ReadonlySet<string> = new Set(['setkey', 'racoon', 'racoonctl', 'charon', 'charon-systemd', 'charon-nm', 'iked']);

/** The dialect a program speaks when --dialect is not given, from its file name. */
export function dialectFor(program: string): Dialect {
  return KAME_PROGRAMS.has(program.slice(program.lastIndexOf('/') + 1)) ? 'kame' : 'klips';
}

/** The environment the command runs in: the bridge first in LD_PRELOAD, klipsd's socket, the dialect. */
export function bridgeEnv(env: NodeJS.ProcessEnv, socket: string, dialect: Dialect, library = BRIDGE_LIBRARY): NodeJS.ProcessEnv {
  const preload = env.LD_PRELOAD ? `${library} ${env.LD_PRELOAD}` : library;
  return { ...env, LD_PRELOAD: preload, KLIPS_SOCKET: socket, KLIPS_DIALECT: dialect };
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export async function runRun(argv: string[], o: RunOptions): Promise<void> {
  if (o.dialect !== undefined && !(DIALECTS as readonly string[]).includes(o.dialect)) throw new UsageError(`--dialect must be klips or kame, got "${o.dialect}"`);
  if (argv.length === 0) throw new UsageError('missing the command to run (klips run [options] -- COMMAND ARGS...)');
  const dialect = (o.dialect as Dialect | undefined) ?? dialectFor(argv[0]);
  if (!fs.existsSync(BRIDGE_LIBRARY)) {
    throw new CliFailure(`klips run: the bridge library ${BRIDGE_LIBRARY} was not built (it needs a C compiler: install gcc and libc6-dev, then npm run build)`);
  }
  const env = bridgeEnv(process.env, resolveSocketPath(o.socket), dialect);
  // The handlers go first: a signal that comes as soon as the command runs must reach it,
  // not end klips run by the default action and leave the command behind. (Node runs
  // them from the event loop, so `child` is set by the time one does.)
  let child: ReturnType<typeof spawn> | undefined;
  const forward = (signal: NodeJS.Signals) => () => { child?.kill(signal); };
  const handlers = FORWARDED.map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  const started = spawn(argv[0], argv.slice(1), { stdio: 'inherit', env });
  child = started;
  const status = await new Promise<number>((resolve) => {
    started.once('error', (e: NodeJS.ErrnoException) => {
      process.stderr.write(`klips run: cannot run ${argv[0]}: ${e.code ?? e.message}\n`);
      resolve(e.code === 'ENOENT' ? 127 : 126);
    });
    started.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0)));
  });
  for (const [s, h] of handlers) process.off(s, h);
  if (status !== 0) throw new ExitStatus(status);
}

export function runCommand() {
  const cmd = newCommand('run')
    .description("run an unmodified program with its PF_KEY sockets connected to klipsd (the bridge: LD_PRELOAD), and KLIPS's /proc files served from klipsd")
    .usage('[--dialect klips|kame] [--socket PATH] -- COMMAND [ARGS...]')
    .argument('<command...>', 'the program and its arguments')
    .option('--socket <path>', 'klipsd socket (default: $KLIPS_SOCKET, else the per-user default)')
    .option('--dialect <klips|kame>', "which of klipsd's PF_KEY sockets: klips (KLIPS, the socket itself) or kame (Linux af_key's dialect, <socket>.kame); default: kame for setkey, racoon and charon, klips for everything else")
    .passThroughOptions();
  cmd.action(async (argv: string[], opts: RunOptions) => runRun(argv, opts));
  return cmd;
}
