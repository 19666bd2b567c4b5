/**
 * `klips monitor`: openswan's `ipsec pf_key` (programs/pf_key/pf_key.8): register for
 * the chosen SA types (--ah --esp --ipip --ipcomp; all four by default, as pf_key) and
 * print every message klipsd delivers, decoded, until interrupted. --promisc also asks
 * for a copy of every message any socket sends or receives (X_PROMISC). --json prints
 * one message record per line; keys show as [hidden] unless --show-keys. A message that
 * cannot be parsed is shown as its header and its parts (extensions by their lengths),
 * with every part that may hold key material hidden unless --show-keys (and its raw hex
 * only then). --count N stops after N messages.
 */

import {
  ERRNO, EXT_TYPE_NAMES, MSG_TYPE_NAMES, SADB_EXT_KEY_AUTH, SADB_EXT_KEY_ENCRYPT, SADB_REGISTER,
  SADB_SATYPE_AH, SADB_SATYPE_ESP, SADB_X_PROMISC, SADB_X_SATYPE_COMP, SADB_X_SATYPE_IPIP,
  SATYPE_NAMES, errnoName, nameOf, type MessageInput,
} from '../wire/index.js';
import type { Received } from './client.js';
import { addCommonOptions, CliFailure, hexOf, newCommand, out, requireUlong, type CommonOptions } from './common.js';
import { dryRun, showMessage, withClient } from './session.js';
import { jsonLines } from './json.js';

export interface MonitorOptions extends CommonOptions {
  ah?: boolean;
  esp?: boolean;
  ipip?: boolean;
  ipcomp?: boolean;
  promisc?: boolean;
  showKeys?: boolean;
  count?: string;
}

const TOOL = 'monitor';

/** The requests monitor starts with: REGISTER per SA type (pf_key's order), then X_PROMISC. */
export function monitorRequests(o: MonitorOptions): MessageInput[] {
  const any = o.ah || o.esp || o.ipip || o.ipcomp;
  const types: number[] = [];
  if (!any || o.ah) types.push(SADB_SATYPE_AH);
  if (!any || o.esp) types.push(SADB_SATYPE_ESP);
  if (!any || o.ipip) types.push(SADB_X_SATYPE_IPIP);
  if (!any || o.ipcomp) types.push(SADB_X_SATYPE_COMP);
  const msgs: MessageInput[] = types.map((satype) => ({ header: { type: SADB_REGISTER, satype } }));
  if (o.promisc) msgs.push({ header: { type: SADB_X_PROMISC, satype: 1 } });
  return msgs;
}

/** A stretch of a message that could not be parsed: an extension by its header, or bytes no extension accounts for. */
interface Part {
  /** The extension's name (ext<N> for a type klips has no name for); null for unaccounted bytes. */
  ext: string | null;
  offset: number;
  len: number;
  /** The bytes in hex, or "[hidden]" where they may hold key material and keys were not asked for. */
  hex: string;
}

/**
 * The parts of an unparsable message, walked by the extensions' own lengths. Without
 * --show-keys, KEY_AUTH and KEY_ENCRYPT bodies, extensions of unknown type and bytes no
 * well-formed extension header accounts for are hidden: any of them may hold a key.
 */
function partsOf(b: Uint8Array, showKeys = false): Part[] {
  const parts: Part[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const part = (ext: string | null, offset: number, len: number, shown: boolean): void => {
    parts.push({ ext, offset, len, hex: shown || showKeys ? hexOf(b.subarray(offset, offset + len)) : '[hidden]' });
  };
  let off = 16;
  while (off + 4 <= b.length) {
    const len = dv.getUint16(off, true) * 8;
    const type = dv.getUint16(off + 2, true);
    if (len === 0 || off + len > b.length) break;
    const name = type > 0 ? EXT_TYPE_NAMES[type] : undefined;
    part(name ?? `ext${type}`, off, len, name !== undefined && type !== SADB_EXT_KEY_AUTH && type !== SADB_EXT_KEY_ENCRYPT);
    off += len;
  }
  if (off < b.length) part(null, off, b.length - off, false);
  return parts;
}

/** One received message as monitor prints it. */
export function formatReceived(r: Received, o: MonitorOptions): string {
  if (r.msg) return showMessage(r.msg, o) + (o.json ? '' : '\n');
  const h = r.header;
  const why = r.error ? `${r.error.errnoName} at byte ${r.error.offset ?? 0}: ${r.error.message.replace(/^[A-Z0-9]+: /, '')}` : 'unparsable';
  const type = `SADB_${nameOf(MSG_TYPE_NAMES, h.type)}`;
  const satype = nameOf(SATYPE_NAMES, h.satype);
  const parts = partsOf(r.bytes, o.showKeys);
  if (o.json) {
    const rec: Record<string, unknown> = { type, satype, errno: h.errno ? errnoName(h.errno) : null, header: h, unparsable: why, parts };
    if (o.showKeys) rec.hex = hexOf(r.bytes);
    return jsonLines([rec]);
  }
  const lines = [`${type} satype=${satype} seq=${h.seq} pid=${h.pid} len=${h.len}${h.errno ? ` errno=${errnoName(h.errno)}(${h.errno})` : ''}: unparsable (${why})`];
  for (const p of parts) lines.push(`  ${p.ext ?? '(no extension)'} at byte ${p.offset}, ${p.len} bytes: ${p.hex}`);
  return `${lines.join('\n')}\n\n`;
}

export async function runMonitor(o: MonitorOptions): Promise<void> {
  const limit = o.count !== undefined ? requireUlong('--count', o.count) : Infinity;
  const msgs = monitorRequests(o);
  if (await dryRun(o, msgs)) return;
  await withClient(TOOL, o, async (c) => {
    let seen = 0;
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => { finish = resolve; });
    let chain = Promise.resolve();
    c.onMessage((r) => {
      if (seen >= limit) return;
      if (r.header.type === 0 && r.header.errno === ERRNO.ENOBUFS) {
        process.stderr.write(`${TOOL}: ${errnoName(r.header.errno)}: messages lost (${r.header.seq} dropped so far; receive queue overflowed)\n`);
        return;
      }
      seen++;
      const text = formatReceived(r, o);
      chain = chain.then(() => out(text));
      if (seen >= limit) chain.then(finish);
    });
    const stop = () => { chain.then(finish); };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    for (const m of msgs) c.send(m);
    const ended = c.ended$().then((e: CliFailure) => { throw e; });
    try {
      await Promise.race([finished, ended]);
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  });
}

export function monitorCommand() {
  const cmd = newCommand('monitor')
    .alias('pf_key')
    .description('print every PF_KEY message klipsd delivers (openswan ipsec pf_key)')
    .option('--ah', 'register for AH')
    .option('--esp', 'register for ESP')
    .option('--ipip', 'register for IPIP')
    .option('--ipcomp', 'register for IPCOMP')
    .option('--promisc', 'see every message any socket sends or receives')
    .option('--show-keys', 'show key bytes (hidden by default)')
    .option('--count <n>', 'exit after printing n messages');
  addCommonOptions(cmd, { dryRun: true });
  cmd.action(async (opts: MonitorOptions) => runMonitor(opts));
  return cmd;
}
