/**
 * What every `klips` subcommand shares: the common options (--socket, --json, --timeout,
 * --dry-run), the three ways a command ends (success 0; an errno reply or an unreachable
 * klipsd 1; bad arguments 2, reported in one line with a pointer to --help), openswan's
 * number syntax (strtoul with base 0: 0x hex, leading-0 octal, decimal), and the
 * one-line errno report.
 */

import os from 'node:os';
import { Command, Option } from 'commander';
import { errnoName, errnoText, ERRNO } from '../wire/index.js';

/** Bad arguments: one line naming the problem, a pointer to --help, exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * A failure to report in one line with exit status 1: an errno reply (`errno` is its
 * sadb_msg_errno), klipsd unreachable (`errno` from the socket error, when it has one),
 * no answer in time.
 */
export class CliFailure extends Error {
  constructor(message: string, readonly errno?: Errno) {
    super(message);
    this.name = 'CliFailure';
  }
}

/**
 * Failures already reported one line each (klips setkey's statements): exit status 1 and
 * nothing more printed.
 */
export class ReportedFailure extends CliFailure {
  constructor(count: number) {
    super(`${count} failure${count === 1 ? '' : 's'} reported`);
    this.name = 'ReportedFailure';
  }
}

/** Not a failure: the command is done and klips exits with this status (`klips run` passes on its program's). */
export class ExitStatus extends Error {
  constructor(readonly code: number) {
    super(`exit status ${code}`);
    this.name = 'ExitStatus';
  }
}

/** An errno by name and number (Linux numbering, as sadb_msg_errno). */
export interface Errno {
  name: string;
  code: number;
}

/** The errno of a sadb_msg_errno value. */
export const pfkeyErrno = (code: number): Errno => ({ name: errnoName(code), code });

/** The errno of a Node system error (ENOENT, ECONNREFUSED, …), if it names one. */
export function systemErrno(e: NodeJS.ErrnoException): Errno | undefined {
  const code = e.code ? (os.constants.errno as Record<string, number>)[e.code] : undefined;
  return code === undefined ? undefined : { name: e.code!, code };
}

export interface CommonOptions {
  socket?: string;
  json?: boolean;
  timeout: number;
  dryRun?: boolean;
}

export const DEFAULT_TIMEOUT_MS = 5000;

/** Add the options every tool takes. */
export function addCommonOptions(cmd: Command, o: { json?: boolean; dryRun?: boolean } = {}): Command {
  cmd.option('--socket <path>', 'klipsd socket (default: $KLIPS_SOCKET, else the per-user default)');
  if (o.json !== false) cmd.option('--json', 'machine-readable output: JSON Lines (one object per line)');
  cmd.addOption(
    new Option('--timeout <ms>', 'how long to wait for klipsd to answer')
      .default(DEFAULT_TIMEOUT_MS)
      .argParser((v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--timeout must be a positive number of milliseconds, got "${v}"`);
        return n;
      }),
  );
  if (o.dryRun) cmd.option('--dry-run', 'print the PF_KEY request(s) as hex, one per line, and send nothing');
  return cmd;
}

/**
 * C's strtoul(text, &end, 0) accepting only a whole string: "0x1f" hex, "017" octal,
 * "15" decimal. Undefined when malformed or above `max`.
 */
export function parseUlong(text: string, max = 0xffffffff): number | undefined {
  let n: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) n = parseInt(text.slice(2), 16);
  else if (/^0[0-7]*$/.test(text)) n = text.length === 1 ? 0 : parseInt(text.slice(1), 8);
  else if (/^[1-9][0-9]*$/.test(text)) n = parseInt(text, 10);
  else return undefined;
  return Number.isSafeInteger(n) && n <= max ? n : undefined;
}

export function requireUlong(what: string, text: string, max = 0xffffffff): number {
  const n = parseUlong(text, max);
  if (n === undefined) throw new UsageError(`invalid ${what} "${text}" (a number: decimal, 0x hex or 0-prefixed octal, at most ${max})`);
  return n;
}

/** Per-tool wording for an errno, where the generic description would be vague. */
export type ErrnoWords = Partial<Record<keyof typeof ERRNO, string>>;

/** "spi: ADD esp0x1234@192.0.2.2 failed: EEXIST (SA already exists)". */
export function errnoLine(tool: string, op: string, subject: string, errno: number, words: ErrnoWords = {}): string {
  const name = errnoName(errno) as keyof typeof ERRNO;
  const own = words[name];
  const text = own ? `${name} (${own})` : errnoText(errno);
  return `${tool}: ${op}${subject ? ` ${subject}` : ''} failed: ${text}`;
}

export const hexOf = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Write to stdout, returning once it has been handed to the OS (so exit does not truncate). */
export function out(text: string): Promise<void> {
  if (text === '') return Promise.resolve();
  return new Promise((resolve) => {
    process.stdout.write(text, () => resolve());
  });
}

/**
 * A command configured as every klips command is: errors thrown, not printed or exited
 * (main.ts reports them in one line), excess arguments refused.
 */
export function newCommand(name: string): Command {
  return new Command(name).exitOverride().configureOutput({ outputError: () => {} }).allowExcessArguments(false);
}
