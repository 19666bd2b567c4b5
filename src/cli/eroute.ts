/**
 * `klips eroute`: openswan's `ipsec eroute` (programs/eroute/eroute.8): add, replace
 * and delete extended routes (X_ADDFLOW / X_DELFLOW), inbound policy on IPIP SAs
 * (--addin, --replacein), clear the table; with no arguments, list it as
 * /proc/net/ipsec_eroute did. The SAID may be a real SA or a shunt: %pass %drop
 * %reject %hold %trap %trapsubnet.
 */

import {
  SADB_X_ADDFLOW, SADB_X_DELFLOW, SADB_X_SAFLAGS_CLEARFLOW, SADB_X_SAFLAGS_INFLOW,
  SADB_X_SAFLAGS_REPLACEFLOW, prefixToMask, type Address, type MessageInput,
} from '../wire/index.js';
import { formatSaidOld } from '../sadb/said.js';
import { resolveSocketPath } from '../daemon/paths.js';
import { queryViews } from './client.js';
import {
  addCommonOptions, newCommand, out, parseUlong, requireUlong, UsageError, type CommonOptions, type ErrnoWords,
} from './common.js';
import {
  anyAddr, familyByName, parseAddr, parseSaidArg, parseSubnet, protoByName, satypeOf,
  type SaidArg, type Subnet,
} from './args.js';
import { dryRun, expectOk, showMessage, withClient } from './session.js';
import { jsonLines } from './json.js';

export interface ErouteOptions extends CommonOptions {
  add?: boolean;
  addin?: boolean;
  replace?: boolean;
  replacein?: boolean;
  del?: boolean;
  clear?: boolean;
  eraf?: string;
  src?: string;
  dst?: string;
  transportProto?: string;
  srcPort?: string;
  dstPort?: string;
  af?: string;
  edst?: string;
  spi?: string;
  proto?: string;
  said?: string;
}

const TOOL = 'eroute';
const WORDS: ErrnoWords = {
  EEXIST: 'eroute already exists',
  EFAULT: 'no such eroute',
  ENOENT: 'no such SA (an inbound policy needs an IPIP SA in the group)',
  EINVAL: 'invalid argument',
};

const ACTIONS = ['add', 'addin', 'replace', 'replacein', 'del', 'clear'] as const;
type Action = (typeof ACTIONS)[number];
const FLAGS: Record<Action, number> = {
  add: 0,
  addin: SADB_X_SAFLAGS_INFLOW,
  replace: SADB_X_SAFLAGS_REPLACEFLOW,
  replacein: SADB_X_SAFLAGS_REPLACEFLOW | SADB_X_SAFLAGS_INFLOW,
  del: 0,
  clear: SADB_X_SAFLAGS_CLEARFLOW,
};
const OP_NAME: Record<Action, string> = { add: 'ADD', addin: 'ADDIN', replace: 'REPLACE', replacein: 'REPLACEIN', del: 'DELETE', clear: 'CLEAR' };

/** getprotobyname for the protocols an eroute is usually about. */
const PROTOCOLS: Record<string, number> = {
  icmp: 1, igmp: 2, tcp: 6, udp: 17, gre: 47, esp: 50, ah: 51, 'ipv6-icmp': 58, icmpv6: 58, sctp: 132,
};
/** getservbyname for the ports an eroute is usually about. */
const SERVICES: Record<string, number> = {
  ftp: 21, ssh: 22, telnet: 23, smtp: 25, domain: 53, http: 80, pop3: 110, ntp: 123, imap: 143,
  snmp: 161, ldap: 389, https: 443, isakmp: 500, 'ipsec-nat-t': 4500,
};

export interface Flow {
  src: Subnet;
  dst: Subnet;
  proto: number;
  sport: number;
  dport: number;
}

function flowExtensions(f: Flow): Pick<MessageInput, 'addressSrcFlow' | 'addressDstFlow' | 'addressSrcMask' | 'addressDstMask' | 'protocol'> {
  const a = (addr: string, port: number): Address => ({ proto: 0, prefixlen: 0, family: f.src.family, port, addr });
  const ext: ReturnType<typeof flowExtensions> = {
    addressSrcFlow: a(f.src.addr, f.sport),
    addressDstFlow: a(f.dst.addr, f.dport),
    addressSrcMask: a(prefixToMask(f.src.family, f.src.prefix), f.sport ? 0xffff : 0),
    addressDstMask: a(prefixToMask(f.dst.family, f.dst.prefix), f.dport ? 0xffff : 0),
  };
  if (f.proto) ext.protocol = { proto: f.proto, direction: 0, flags: 0 };
  return ext;
}

/** X_ADDFLOW as eroute --add/--replace/--addin/--replacein sends it. */
export function buildAddflow(said: SaidArg, flow: Flow, flags: number): MessageInput {
  return {
    header: { type: SADB_X_ADDFLOW, satype: satypeOf(said.proto) },
    sa: { spi: said.spi, replay: 0, state: 0, auth: 0, encrypt: 0, flags, ref: 0 },
    addressSrc: { proto: 0, prefixlen: 0, family: said.family, port: 0, addr: anyAddr(said.family).addr },
    addressDst: { proto: 0, prefixlen: 0, family: said.family, port: 0, addr: said.dst },
    ...flowExtensions(flow),
  };
}

/** X_DELFLOW for one flow (no SA extension; the SA type of a --said if one was given). */
export function buildDelflow(flow: Flow, said?: SaidArg): MessageInput {
  return { header: { type: SADB_X_DELFLOW, satype: said ? satypeOf(said.proto) : 0 }, ...flowExtensions(flow) };
}

/** X_DELFLOW with CLEARFLOW: every eroute goes. */
export function buildClear(): MessageInput {
  return {
    header: { type: SADB_X_DELFLOW, satype: 0 },
    sa: { spi: 0, replay: 0, state: 0, auth: 0, encrypt: 0, flags: SADB_X_SAFLAGS_CLEARFLOW, ref: 0 },
  };
}

function number(table: Record<string, number>, what: string, v: string, max: number): number {
  const named = table[v.toLowerCase()];
  if (named !== undefined) return named;
  const n = parseUlong(v, max);
  if (n === undefined) throw new UsageError(`invalid ${what} "${v}" (a name or a number up to ${max})`);
  return n;
}

function saidOf(o: ErouteOptions): SaidArg | undefined {
  if (o.said) {
    if (o.edst || o.spi || o.proto || o.af) throw new UsageError('--said cannot be combined with --af, --edst, --spi or --proto');
    const s = parseSaidArg(o.said, '--said');
    if (s.spi < 0x100) throw new UsageError(`illegal reserved SPI 0x${s.spi.toString(16)} in --said ${o.said} (must be 0x100 or more)`);
    return s;
  }
  if (!o.edst && !o.spi && !o.proto && !o.af) return undefined;
  if (!(o.af && o.edst && o.spi && o.proto)) throw new UsageError('an SA is --af, --edst, --spi and --proto together (or --said)');
  const dst = parseAddr(o.edst, familyByName(o.af), '--edst');
  const spi = requireUlong('--spi', o.spi);
  if (spi < 0x100) throw new UsageError(`illegal reserved SPI ${o.spi} (must be 0x100 or more)`);
  return { proto: protoByName(o.proto), spi, dst: dst.addr, family: dst.family };
}

function flowOf(o: ErouteOptions, action: Action): Flow {
  if (!o.src) throw new UsageError(`--${action} needs --src`);
  if (!o.dst) throw new UsageError(`--${action} needs --dst`);
  const family = o.eraf ? familyByName(o.eraf, '--eraf') : 0;
  const src = parseSubnet(o.src, family, '--src');
  const dst = parseSubnet(o.dst, src.family, '--dst');
  const proto = o.transportProto !== undefined ? number(PROTOCOLS, '--transport-proto', o.transportProto, 255) : 0;
  if ((o.srcPort !== undefined || o.dstPort !== undefined) && proto !== 6 && proto !== 17) {
    throw new UsageError('--src-port/--dst-port need --transport-proto tcp or udp');
  }
  const sport = o.srcPort !== undefined ? number(SERVICES, '--src-port', o.srcPort, 65535) : 0;
  const dport = o.dstPort !== undefined ? number(SERVICES, '--dst-port', o.dstPort, 65535) : 0;
  return { src, dst, proto, sport, dport };
}

export function flowText(f: Flow): string {
  const side = (s: Subnet, port: number) => `${s.addr}/${s.prefix}${port ? `:${port}` : ''}`;
  return `${side(f.src, f.sport)} -> ${side(f.dst, f.dport)}${f.proto ? ` proto ${f.proto}` : ''}`;
}

/** Turn the options into the request (everything checked before anything is sent). */
export function erouteRequest(o: ErouteOptions): { action: Action; m: MessageInput; subject: string } | undefined {
  const chosen = ACTIONS.filter((a) => o[a]);
  if (chosen.length > 1) throw new UsageError(`only one of --add, --addin, --replace, --replacein, --del, --clear (got ${chosen.map((a) => `--${a}`).join(', ')})`);
  const action = chosen[0];
  if (!action) {
    const given = ['eraf', 'src', 'dst', 'transportProto', 'srcPort', 'dstPort', 'af', 'edst', 'spi', 'proto', 'said'].filter((k) => (o as unknown as Record<string, unknown>)[k] !== undefined);
    if (given.length) throw new UsageError('exactly one of --add, --addin, --replace, --replacein, --del or --clear must be given');
    return undefined;
  }
  if (action === 'clear') return { action, m: buildClear(), subject: '' };
  const flow = flowOf(o, action);
  const said = saidOf(o);
  if (action === 'del') return { action, m: buildDelflow(flow, said), subject: flowText(flow) };
  if (!said) throw new UsageError(`--${action} needs the SA: --said, or --af, --edst, --spi and --proto`);
  return { action, m: buildAddflow(said, flow, FLAGS[action]), subject: `${flowText(flow)} => ${formatSaidOld(said)}` };
}

export async function runEroute(o: ErouteOptions): Promise<void> {
  const r = erouteRequest(o);
  if (!r) {
    if (o.dryRun) return;
    const v = await queryViews(TOOL, resolveSocketPath(o.socket), ['eroute'], o.timeout);
    await out(o.json ? jsonLines(v.eroute.data as unknown[]) : v.eroute.text);
    return;
  }
  if (await dryRun(o, [r.m])) return;
  await withClient(TOOL, o, async (c) => {
    const reply = await expectOk(c, r.m, o, { tool: TOOL, op: OP_NAME[r.action], subject: r.subject, words: WORDS });
    if (o.json) await out(showMessage(reply.msg!, o));
  });
}

export function erouteCommand() {
  const cmd = newCommand('eroute')
    .description('manipulate the IPsec extended routing table (openswan ipsec eroute)')
    .usage('--add|--replace|--addin|--replacein --eraf <inet|inet6> --src <subnet> --dst <subnet> [--transport-proto P] [--src-port P] [--dst-port P] <SAID> | --del … | --clear')
    .option('--add', 'add an eroute')
    .option('--addin', 'add an inbound policy check to the IPIP SA of a group')
    .option('--replace', 'replace an eroute')
    .option('--replacein', 'replace an inbound policy check')
    .option('--del', 'delete an eroute')
    .option('--clear', 'delete every eroute')
    .option('--eraf <inet|inet6>', 'address family of the eroute')
    .option('--src <subnet>', 'source subnet: addr/bits or addr/mask')
    .option('--dst <subnet>', 'destination subnet')
    .option('--transport-proto <proto>', 'transport protocol: a name (tcp, udp, …) or a number')
    .option('--src-port <port>', 'source port (needs tcp or udp)')
    .option('--dst-port <port>', 'destination port (needs tcp or udp)')
    .option('--af <inet|inet6>', 'address family of the SA')
    .option('--edst <addr>', 'effective destination of the SA')
    .option('--spi <spi>', 'SPI of the SA')
    .option('--proto <ah|esp|tun|comp>', 'protocol of the SA')
    .option('--said <said>', 'the SA (esp.12345678@192.0.2.2) or a shunt: %pass %drop %reject %hold %trap %trapsubnet');
  addCommonOptions(cmd, { dryRun: true });
  cmd.action(async (opts: ErouteOptions) => runEroute(opts));
  return cmd;
}
