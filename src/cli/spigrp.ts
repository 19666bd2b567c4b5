/**
 * `klips spigrp`: openswan's `ipsec spigrp` (programs/spigrp/spigrp.8): group 2 to 4 SAs,
 * inner to outer, or ungroup the group an SA belongs to when one SA is given. The SAs
 * are `--said SA1 SA2 …` or quads `af dst spi proto …`; SAIDs are also recognised without
 * --said (an SAID has an '@', a quad's first word is inet or inet6). One X_GRPSA per
 * adjacent pair, in order. With no arguments, list the groups as /proc/net/ipsec_spigrp did.
 */

import { SADB_X_GRPSA, type MessageInput } from '../wire/index.js';
import { formatSaidOld } from '../sadb/said.js';
import { resolveSocketPath } from '../daemon/paths.js';
import { queryViews } from './client.js';
import { addCommonOptions, newCommand, out, requireUlong, UsageError, type CommonOptions, type ErrnoWords } from './common.js';
import { familyByName, parseAddr, parseSaidArg, protoByName, satypeOf, type SaidArg } from './args.js';
import { dryRun, expectOk, showMessage, withClient } from './session.js';
import { jsonLines, spigrpRecords } from './json.js';

export interface SpigrpOptions extends CommonOptions {
  said?: boolean;
}

const TOOL = 'spigrp';
const WORDS: ErrnoWords = {
  ENOENT: 'no such SA',
  EEXIST: 'an SA is already in a group',
  EINVAL: 'invalid argument',
};

const saExt = (s: SaidArg) => ({ spi: s.spi, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0, ref: 0 });
const dstExt = (s: SaidArg) => ({ proto: 0, prefixlen: 0, family: s.family, port: 0, addr: s.dst });

/** X_GRPSA linking `a` to `b`, or (no `b`) unlinking `a`'s group. */
export function buildGrpsa(a: SaidArg, b?: SaidArg): MessageInput {
  const m: MessageInput = { header: { type: SADB_X_GRPSA, satype: satypeOf(a.proto) }, sa: saExt(a), addressDst: dstExt(a) };
  if (b) {
    m.satype2 = { satype: satypeOf(b.proto) };
    m.sa2 = saExt(b);
    m.addressDst2 = dstExt(b);
  }
  return m;
}

export function parseSpigrpArgs(args: string[], saidForm: boolean): SaidArg[] {
  let list: SaidArg[];
  if (saidForm) {
    if (args.length < 1 || args.length > 4) throw new UsageError(`expecting 1 to 4 SAs after --said, got ${args.length}`);
    list = args.map((a, i) => parseSaidArg(a, `SA ${i + 1}`));
  } else {
    if (args.length < 4 || args.length > 16 || args.length % 4 !== 0) {
      throw new UsageError(`expecting 1 to 4 groups of "af dst spi proto", got ${args.length} argument(s)`);
    }
    list = [];
    for (let i = 0; i < args.length; i += 4) {
      const family = familyByName(args[i], `address family of SA ${i / 4 + 1}`);
      const dst = parseAddr(args[i + 1], family, `destination of SA ${i / 4 + 1}`);
      const spi = requireUlong(`SPI of SA ${i / 4 + 1}`, args[i + 2]);
      list.push({ proto: protoByName(args[i + 3]), spi, dst: dst.addr, family: dst.family });
    }
  }
  for (const s of list) if (s.spi < 0x100) throw new UsageError(`illegal reserved SPI 0x${s.spi.toString(16)} (must be 0x100 or more)`);
  return list;
}

/** The messages spigrp sends: one per adjacent pair, or one ungroup. */
export function spigrpRequests(list: SaidArg[]): MessageInput[] {
  if (list.length === 1) return [buildGrpsa(list[0])];
  const out: MessageInput[] = [];
  for (let i = 0; i + 1 < list.length; i++) out.push(buildGrpsa(list[i], list[i + 1]));
  return out;
}

export async function runSpigrp(args: string[], o: SpigrpOptions): Promise<void> {
  if (args.length === 0) {
    if (o.said) throw new UsageError('--said needs the SAs to group');
    if (o.dryRun) return;
    const v = await queryViews(TOOL, resolveSocketPath(o.socket), ['spigrp'], o.timeout);
    await out(o.json ? jsonLines(spigrpRecords(v.spigrp.data)) : v.spigrp.text);
    return;
  }
  const list = parseSpigrpArgs(args, Boolean(o.said) || args[0].includes('@'));
  const msgs = spigrpRequests(list);
  if (await dryRun(o, msgs)) return;
  await withClient(TOOL, o, async (c) => {
    for (let i = 0; i < msgs.length; i++) {
      const subject = list.length === 1 ? formatSaidOld(list[0]) : `${formatSaidOld(list[i])} -> ${formatSaidOld(list[i + 1])}`;
      const r = await expectOk(c, msgs[i], o, { tool: TOOL, op: list.length === 1 ? 'UNGROUP' : 'GROUP', subject, words: WORDS });
      if (o.json) await out(showMessage(r.msg!, o));
    }
  });
}

export function spigrpCommand() {
  const cmd = newCommand('spigrp')
    .description('group or ungroup IPsec SAs (openswan ipsec spigrp)')
    .usage('[--said] SA1 [SA2 [SA3 [SA4]]] | af1 dst1 spi1 proto1 [af2 dst2 spi2 proto2 …]')
    .argument('[sa...]', 'SAIDs (with --said) or "af dst spi proto" quads, inner to outer; one SA ungroups')
    .option('--said', 'the SAs are given as SAIDs (esp.12345678@192.0.2.2); implied when the first has an @');
  addCommonOptions(cmd, { dryRun: true });
  cmd.action(async (args: string[], opts: SpigrpOptions) => runSpigrp(args, opts));
  return cmd;
}
