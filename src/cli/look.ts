/**
 * `klips look`: openswan's `ipsec look` (programs/look/look.in) on one screen: a label
 * line (host and date), each eroute as "src -> dst => SA group (packets)" with the SA
 * replaced by its whole group as ipsec_spigrp lists it, the virtual interfaces on one
 * line, then the SAs sorted. The tables come from klipsd's view channel; look's routing
 * and iptables sections have no klips counterpart and are left out. KLIPS's look hid
 * interfaces not attached to a device; every klips interface is such, so all are shown.
 * Once the data plane has seen a packet, three lines of its counters end the screen
 * (packets, protected, passed and dropped each way, drops by reason); before that the
 * screen is ipsec look's alone. --json always has them (`dataplane`, numbers).
 * `--view NAME` prints one of KLIPS's /proc files instead (e.g. saref, pf_key, xforms),
 * or klipsd's own (`dataplane`, `stats`).
 */

import os from 'node:os';
import { resolveSocketPath } from '../daemon/paths.js';
import { queryViews } from './client.js';
import { addCommonOptions, newCommand, out, type CommonOptions } from './common.js';
import { jsonLines, saRecordsFromView, spigrpRecords } from './json.js';
import type { DataplaneCounters, DirectionCounters } from '../dataplane/index.js';

export interface LookOptions extends CommonOptions {
  label?: boolean;
  /** Print one of KLIPS's /proc files instead (klipsd's view of that name). */
  view?: string;
}

/** The screen, from the /proc-style texts (the same awk-like steps look took). */
export function lookText(views: Record<string, { text: string; data?: unknown }>, label: string | undefined): string {
  const lines: string[] = [];
  if (label !== undefined) lines.push(label);
  const tun = new Map<string, string>();
  for (const line of views.spigrp.text.split('\n')) {
    const first = line.split(/\s+/)[0];
    if (first) tun.set(first, line);
  }
  for (const line of views.eroute.text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[2] !== '->') continue;
    lines.push(`${f[1].padEnd(18)} -> ${f[3].padEnd(18)} => ${tun.get(f[5]) ?? f[5]} (${f[0]})`);
  }
  const ifs = views.tncfg.text.split('\n').filter(Boolean).map((l) => l.replace(/ -> /g, '->'));
  if (ifs.length) lines.push(ifs.join('   '));
  lines.push(...views.spi.text.split('\n').filter(Boolean).sort());
  if (views.dataplane) lines.push(...countersText(views.dataplane.data as DataplaneCounters));
  return lines.map((l) => `${l}\n`).join('');
}

const direction = (name: string, d: DirectionCounters): string => {
  const drops = Object.entries(d.drops).map(([reason, n]) => `${reason}=${n}`).join(' ');
  return `dataplane ${name}: packets=${d.packets} ipsec=${d.ipsec} passed=${d.passed} dropped=${d.dropped}${drops ? ` (${drops})` : ''}`;
};

/** The counters section: nothing until the data plane has seen a packet. */
export function countersText(c: DataplaneCounters): string[] {
  if (c.xmit.packets + c.rcv.packets === 0) return [];
  return [direction('xmit', c.xmit), direction('rcv', c.rcv), `dataplane icmpSent=${c.icmpSent} natTMappings=${c.natTMappings}`];
}

export async function runLook(o: LookOptions): Promise<void> {
  if (o.view !== undefined) {
    const one = await queryViews('look', resolveSocketPath(o.socket), [o.view], o.timeout);
    const v = one[o.view];
    await out(o.json ? jsonLines([{ view: o.view, data: v.data }]) : v.text);
    return;
  }
  const views = await queryViews('look', resolveSocketPath(o.socket), ['eroute', 'spigrp', 'tncfg', 'spi', 'dataplane'], o.timeout);
  const date = new Date();
  if (o.json) {
    await out(jsonLines([{
      host: os.hostname(), date: date.toISOString(),
      eroute: views.eroute.data, spigrp: spigrpRecords(views.spigrp.data), tncfg: views.tncfg.data, spi: saRecordsFromView(views.spi.data),
      dataplane: views.dataplane.data,
    }]));
    return;
  }
  await out(lookText(views, o.label === false ? undefined : `${os.hostname()} ${date.toString()}`));
}

export function lookCommand() {
  const cmd = newCommand('look')
    .description('eroutes, SA groups, interfaces and SAs on one screen (openswan ipsec look)')
    .option('--no-label', 'leave out the first line (host name and date)')
    .option('--view <name>', "print one of KLIPS's /proc files as klipsd keeps it: eroute, spi, spigrp, tncfg, klipsdebug, registered, supported, pf_key, version, saref, natt, xforms, trap_count, trap_sendcount; or klipsd's own: stats, dataplane (the data plane's counters)");
  addCommonOptions(cmd);
  cmd.action(async (opts: LookOptions) => runLook(opts));
  return cmd;
}
