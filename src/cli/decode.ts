/**
 * `klips decode [HEX]`: parse PF_KEY bytes given as hex (the argument, or stdin when
 * there is none) and print them decoded, or as message records (JSON Lines) with --json. Requests are parsed with
 * the user→kernel rules; --out parses with the kernel→user rules. Several whole messages
 * back to back are decoded one after the other. A refusal prints
 * "decode: <ERRNO> at byte <offset> (<reason>)" on stderr and exits 1.
 */

import { PfkeyError, parseMessage, renderMessage, type PfkeyMessage } from '../wire/index.js';
import { CliFailure, newCommand, out, pfkeyErrno, UsageError } from './common.js';
import { jsonLines, messageRecord } from './json.js';

export interface DecodeOptions {
  json?: boolean;
  out?: boolean;
  showKeys?: boolean;
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => { s += d; });
    process.stdin.on('end', () => resolve(s));
    process.stdin.on('error', reject);
  });
}

export function hexToBytes(text: string): Uint8Array {
  let clean = text.replace(/\s+/g, '');
  if (clean.startsWith('0x') || clean.startsWith('0X')) clean = clean.slice(2);
  if (clean.length === 0) throw new UsageError('no hex given (an argument, or on stdin)');
  if (!/^[0-9a-fA-F]*$/.test(clean)) throw new UsageError('the input is not hexadecimal');
  if (clean.length % 2) throw new UsageError('odd number of hex digits');
  return new Uint8Array(Buffer.from(clean, 'hex'));
}

/** Split back-to-back messages by their sadb_msg_len when that accounts for every byte exactly. */
function split(b: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let off = 0;
  while (off + 16 <= b.length) {
    const len = (b[off + 4] | (b[off + 5] << 8)) * 8;
    if (len < 16 || off + len > b.length) return [b];
    parts.push(b.subarray(off, off + len));
    off += len;
  }
  return off === b.length && parts.length > 1 ? parts : [b];
}

export function decodeText(bytes: Uint8Array, o: DecodeOptions): string {
  const msgs: PfkeyMessage[] = [];
  let base = 0;
  for (const part of split(bytes)) {
    try {
      msgs.push(parseMessage(part, { direction: o.out ? 'out' : 'in' }));
    } catch (e) {
      if (!(e instanceof PfkeyError)) throw e;
      const reason = e.message.startsWith(`${e.errnoName}: `) ? e.message.slice(e.errnoName.length + 2) : e.message;
      throw new CliFailure(`decode: ${e.errnoName} at byte ${base + (e.offset ?? 0)} (${reason})`, pfkeyErrno(e.errno));
    }
    base += part.length;
  }
  return msgs
    .map((m) => (o.json ? jsonLines([messageRecord(m, o)]) : `${renderMessage(m, { showKeys: o.showKeys })}\n`))
    .join('');
}

export async function runDecode(hex: string | undefined, o: DecodeOptions): Promise<void> {
  const text = hex ?? (await readStdin());
  await out(decodeText(hexToBytes(text), o));
}

export function decodeCommand() {
  const cmd = newCommand('decode')
    .description('decode PF_KEY v2 bytes given in hex (argument or stdin)')
    .argument('[hex]', 'the message bytes in hex; read from stdin when absent')
    .option('--out', 'parse with the kernel-to-user rules (replies) instead of the user-to-kernel rules')
    .option('--show-keys', 'show key bytes (hidden by default)')
    .option('--json', 'one JSON object per message');
  cmd.action(async (hex: string | undefined, opts: DecodeOptions) => runDecode(hex, opts));
  return cmd;
}
