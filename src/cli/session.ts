/**
 * Running requests for a tool: --dry-run (print the requests as hex, send nothing),
 * opening the connection, sending a request and turning an errno reply into the
 * one-line report, and printing messages as text or message records.
 */

import { renderMessage, type MessageInput, type PfkeyMessage } from '../wire/index.js';
import { resolveSocketPath } from '../daemon/paths.js';
import { PfkeyClient, requestBytes, type Received } from './client.js';
import { CliFailure, errnoLine, hexOf, out, pfkeyErrno, type CommonOptions, type ErrnoWords } from './common.js';
import { jsonLines, messageRecord } from './json.js';

/** Print requests as the tool would send them (seq 1, 2, …; our pid) and return true if --dry-run. */
export async function dryRun(o: CommonOptions, msgs: MessageInput[]): Promise<boolean> {
  if (!o.dryRun) return false;
  await out(msgs.map((m, i) => `${hexOf(requestBytes(m, i + 1))}\n`).join(''));
  return true;
}

export async function withClient<T>(tool: string, o: CommonOptions, fn: (c: PfkeyClient) => Promise<T>): Promise<T> {
  const c = await PfkeyClient.open(tool, resolveSocketPath(o.socket), o.timeout);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

export interface Op {
  tool: string;
  /** e.g. "ADD" */
  op: string;
  /** e.g. "esp0x1234@192.0.2.2" */
  subject: string;
  words?: ErrnoWords;
}

/** Send one request; its reply, or a CliFailure naming the operation, subject and errno. */
export async function expectOk(c: PfkeyClient, m: MessageInput, o: CommonOptions, op: Op): Promise<Received> {
  const r = await c.request(m, o.timeout, `${op.op}${op.subject ? ` ${op.subject}` : ''}`);
  if (r.header.errno !== 0) {
    const why = await c.reasonFor(r.header.seq);
    throw new CliFailure(errnoLine(op.tool, op.op, op.subject, r.header.errno, op.words) + (why ? `: ${why}` : ''), pfkeyErrno(r.header.errno));
  }
  if (!r.msg) throw new CliFailure(`${op.tool}: ${op.op} ${op.subject}: unreadable reply from klipsd (${r.error?.message ?? 'unknown'})`);
  return r;
}

/** A message as text (several lines) or as a message record (one JSON line). */
export function showMessage(m: PfkeyMessage, o: { json?: boolean; showKeys?: boolean }): string {
  return o.json ? jsonLines([messageRecord(m, o)]) : `${renderMessage(m, { showKeys: o.showKeys })}\n`;
}
