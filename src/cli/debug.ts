/**
 * `klips debug`: openswan's `ipsec klipsdebug` (programs/klipsdebug/klipsdebug.8): set or
 * clear one subsystem's debug flags (--set NAME, --clear NAME), all of them but verbose
 * (--all) or none (--none); with no arguments, list the flags as
 * /proc/net/ipsec_klipsdebug did. The X_DEBUG message is klipsdebug's: twelve words, the
 * top bit of the netlink word saying OR (set) or AND (clear).
 */

import { DEBUG_SUBSYSTEMS, SADB_X_DEBUG, type DebugSubsystem, type MessageInput, type XDebug } from '../wire/index.js';
import { resolveSocketPath } from '../daemon/paths.js';
import { queryViews } from './client.js';
import { addCommonOptions, newCommand, out, UsageError, type CommonOptions } from './common.js';
import { dryRun, expectOk, showMessage, withClient } from './session.js';
import { jsonLines } from './json.js';

export interface DebugOptions extends CommonOptions {
  set?: string;
  clear?: string;
  all?: boolean;
  none?: boolean;
}

const TOOL = 'debug';
const ALL = 0xffffffff;
const TOP = 0x80000000;
/** KLIPS's tunnel sub-flags that klipsdebug can name. */
const DB_TN_XMIT = 0x0010;
const DB_TN_REVEC = 0x0100;

/** klipsdebug's flag names → (subsystem, bits). */
const FLAG_NAMES: Record<string, [DebugSubsystem, number]> = {
  tunnel: ['tunnel', ALL],
  'tunnel-xmit': ['tunnel', DB_TN_XMIT],
  xmit: ['tunnel', DB_TN_XMIT],
  tncfg: ['tunnel', DB_TN_REVEC],
  netlink: ['netlink', ALL],
  xform: ['xform', ALL],
  eroute: ['eroute', ALL],
  spi: ['spi', ALL],
  radij: ['radij', ALL],
  esp: ['esp', ALL],
  ah: ['ah', ALL],
  rcv: ['rcv', ALL],
  pfkey: ['pfkey', ALL],
  comp: ['ipcomp', ALL],
  ipcomp: ['ipcomp', ALL],
  verbose: ['verbose', ALL],
};

const words = (v: number): XDebug => Object.fromEntries(DEBUG_SUBSYSTEMS.map((n) => [n, v])) as XDebug;

/** The X_DEBUG word set klipsdebug sends for an action. */
export function debugWords(action: 'set' | 'clear' | 'all' | 'none', name?: string): XDebug {
  switch (action) {
    case 'all': return { ...words(ALL), verbose: 0 };
    case 'none': return words(0);
    case 'set': {
      let d: XDebug;
      if (name === 'all') d = { ...words(ALL), verbose: 0 };
      else {
        const f = FLAG_NAMES[name!];
        if (!f) throw new UsageError(`unknown debug flag "${name}" (${Object.keys(FLAG_NAMES).join(', ')}, all)`);
        d = words(0);
        d[f[0]] = f[1];
      }
      d.netlink = (d.netlink | TOP) >>> 0;
      return d;
    }
    case 'clear': {
      let d: XDebug;
      if (name === 'all') d = words(0);
      else {
        const f = FLAG_NAMES[name!];
        if (!f) throw new UsageError(`unknown debug flag "${name}" (${Object.keys(FLAG_NAMES).join(', ')}, all)`);
        d = words(ALL);
        d[f[0]] = (~f[1]) >>> 0;
      }
      d.netlink = (d.netlink & ~TOP) >>> 0;
      return d;
    }
  }
}

export function buildDebug(d: XDebug): MessageInput {
  return { header: { type: SADB_X_DEBUG, satype: 0 }, debug: d };
}

export async function runDebug(o: DebugOptions): Promise<void> {
  const chosen = (['set', 'clear', 'all', 'none'] as const).filter((a) => o[a] !== undefined && o[a] !== false);
  if (chosen.length > 1) throw new UsageError("only one of '--set', '--clear', '--all' or '--none'");
  const action = chosen[0];
  if (!action) {
    if (o.dryRun) return;
    const v = await queryViews(TOOL, resolveSocketPath(o.socket), ['klipsdebug'], o.timeout);
    await out(o.json ? jsonLines([v.klipsdebug.data]) : v.klipsdebug.text);
    return;
  }
  const name = action === 'set' ? o.set : action === 'clear' ? o.clear : undefined;
  const m = buildDebug(debugWords(action, name));
  if (await dryRun(o, [m])) return;
  await withClient(TOOL, o, async (c) => {
    const r = await expectOk(c, m, o, { tool: TOOL, op: 'X_DEBUG', subject: name ? `${action} ${name}` : action });
    if (o.json) await out(showMessage(r.msg!, o));
  });
}

export function debugCommand() {
  const cmd = newCommand('debug')
    .alias('klipsdebug')
    .description('set or clear KLIPS debug flags (openswan ipsec klipsdebug)')
    .usage('--set <flag> | --clear <flag> | --all | --none')
    .option('--set <flag>', `turn a flag on: ${Object.keys(FLAG_NAMES).join(', ')}, all`)
    .option('--clear <flag>', 'turn a flag off')
    .option('--all', 'turn every flag on except verbose')
    .option('--none', 'turn every flag off');
  addCommonOptions(cmd, { dryRun: true });
  cmd.action(async (opts: DebugOptions) => runDebug(opts));
  return cmd;
}
