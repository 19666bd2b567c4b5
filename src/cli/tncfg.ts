/**
 * `klips tncfg`: openswan's `ipsec tncfg` (programs/tncfg/tncfg.8) for virtual
 * interfaces: --create NAME (X_PLUMBIF) and --delete NAME (X_UNPLUMBIF), with NAME
 * mastN or ipsecN as openswan numbers them (ipsecN is 49152+N); with no arguments,
 * list them as /proc/net/ipsec_tncfg did. klips's interfaces are never attached to a
 * physical device, so --attach/--detach do not exist here.
 */

import { IPSECDEV_OFFSET, SADB_X_PLUMBIF, SADB_X_UNPLUMBIF, type MessageInput } from '../wire/index.js';
import { resolveSocketPath } from '../daemon/paths.js';
import { queryViews } from './client.js';
import { addCommonOptions, newCommand, out, UsageError, type CommonOptions } from './common.js';
import { dryRun, expectOk, showMessage, withClient } from './session.js';
import { jsonLines } from './json.js';

export interface TncfgOptions extends CommonOptions {
  create?: string;
  delete?: string;
}

const TOOL = 'tncfg';

/** tncfg's interface numbering: mastN is N, ipsecN is IPSECDEV_OFFSET + N. */
export function ifnumOfName(name: string): number {
  const m = /^(mast|ipsec)(\d{1,5})$/.exec(name);
  if (!m) throw new UsageError(`invalid virtual interface "${name}" (mastN or ipsecN)`);
  const n = Number(m[2]);
  const ifnum = m[1] === 'ipsec' ? IPSECDEV_OFFSET + n : n;
  if (ifnum > 0xffff || (m[1] === 'mast' && n >= IPSECDEV_OFFSET)) throw new UsageError(`interface number of "${name}" out of range`);
  return ifnum;
}

export function buildPlumb(type: number, ifnum: number): MessageInput {
  return { header: { type, satype: 0 }, plumbif: { ifnum } };
}

export async function runTncfg(o: TncfgOptions): Promise<void> {
  if (o.create !== undefined && o.delete !== undefined) throw new UsageError('only one of --create or --delete');
  const name = o.create ?? o.delete;
  if (name === undefined) {
    if (o.dryRun) return;
    const v = await queryViews(TOOL, resolveSocketPath(o.socket), ['tncfg'], o.timeout);
    await out(o.json ? jsonLines(v.tncfg.data as unknown[]) : v.tncfg.text);
    return;
  }
  const create = o.create !== undefined;
  const m = buildPlumb(create ? SADB_X_PLUMBIF : SADB_X_UNPLUMBIF, ifnumOfName(name));
  if (await dryRun(o, [m])) return;
  await withClient(TOOL, o, async (c) => {
    const r = await expectOk(c, m, o, {
      tool: TOOL,
      op: create ? 'PLUMBIF' : 'UNPLUMBIF',
      subject: name,
      words: { EEXIST: 'interface already exists', ENOENT: 'no such interface' },
    });
    if (o.json) await out(showMessage(r.msg!, o));
  });
}

export function tncfgCommand() {
  const cmd = newCommand('tncfg')
    .description('create, delete and list KLIPS virtual interfaces (openswan ipsec tncfg)')
    .usage('--create <mastN|ipsecN> | --delete <mastN|ipsecN>')
    .option('--create <virtual>', 'create (plumb) a virtual interface')
    .option('--delete <virtual>', 'delete (unplumb) a virtual interface')
    .option('--plumb <virtual>', 'same as --create')
    .option('--unplumb <virtual>', 'same as --delete');
  addCommonOptions(cmd, { dryRun: true });
  cmd.action(async (opts: TncfgOptions & { plumb?: string; unplumb?: string }) => {
    if (opts.plumb !== undefined) {
      if (opts.create !== undefined) throw new UsageError('--plumb and --create both given');
      opts.create = opts.plumb;
    }
    if (opts.unplumb !== undefined) {
      if (opts.delete !== undefined) throw new UsageError('--unplumb and --delete both given');
      opts.delete = opts.unplumb;
    }
    await runTncfg(opts);
  });
  return cmd;
}
