/**
 * `klips spi`: openswan's `ipsec spi` (programs/spi/spi.8): add (--ah, --esp, --comp,
 * --ip4, --ip6), delete (--del) and flush (--clear) SAs, plus what a PF_KEY client can
 * also ask: --get, --dump (all SAs, klips's DUMP), --getspi (a larval SA with an SPI
 * from a range). With no arguments it lists the SA table as /proc/net/ipsec_spi did.
 *
 * The messages sent are byte for byte those of openswan's spi for the same arguments
 * (seq and pid aside): SA extension in KLIPS's 24-byte form, lifetimes in the 40-byte
 * form, the source address 0.0.0.0 (or ::) when --src is not given.
 */

import {
  SADB_ADD, SADB_DELETE, SADB_DUMP, SADB_FLUSH, SADB_GET, SADB_GETSPI, SADB_SASTATE_MATURE,
  SADB_AALG_NONE, SADB_EALG_NONE, IPPROTO_AH, IPPROTO_ESP, IPPROTO_COMP, IPPROTO_IPIP, AF_INET, AF_INET6,
  ESPINUDP_WITH_NON_ESP, ESPINUDP_WITH_NON_IKE, IPSECDEV_OFFSET, SATYPE_NAMES, nameOf,
  type Address, type Lifetime, type MessageInput,
} from '../wire/index.js';
import { formatSaid, formatSaidOld } from '../sadb/said.js';
import { resolveSocketPath } from '../daemon/paths.js';
import { queryViews, type Received } from './client.js';
import {
  addCommonOptions, CliFailure, errnoLine, newCommand, out, parseUlong, pfkeyErrno, requireUlong, UsageError,
  type CommonOptions, type ErrnoWords,
} from './common.js';
import {
  anyAddr, familyByName, parseAddr, parseKey, parseSaidArg, protoByName, satypeOf,
  type Addr, type SaidArg,
} from './args.js';
import { parseAhAlgorithm, parseCompAlgorithm, parseEspAlgorithm, sizesText, type AlgChoice } from './algorithms.js';
import { dryRun, expectOk, showMessage, withClient } from './session.js';
import { jsonLines, saRecordFromMessage, saRecordsFromView } from './json.js';

export interface SpiOptions extends CommonOptions {
  af?: string;
  edst?: string;
  spi?: string;
  proto?: string;
  said?: string;
  src?: string;
  dst?: string;
  ah?: string;
  esp?: string;
  comp?: string;
  ip4?: boolean;
  ip6?: boolean;
  del?: boolean;
  clear?: boolean;
  get?: boolean;
  dump?: boolean;
  getspi?: string | boolean;
  enckey?: string;
  authkey?: string;
  replay_window?: string;
  life?: string[];
  natt?: string;
  sport?: string;
  dport?: string;
  outif?: string;
  saref?: string;
  sarefhim?: string;
  dumpsaref?: boolean;
  listenreply?: boolean;
  showKeys?: boolean;
}

const TOOL = 'spi';
const WORDS: ErrnoWords = {
  EEXIST: 'SA already exists',
  ESRCH: 'no such SA',
  ENOENT: 'no such SA',
  EINVAL: 'invalid argument or unsupported algorithm/key',
};

const ACTIONS = ['ah', 'esp', 'comp', 'ip4', 'ip6', 'del', 'clear', 'get', 'dump', 'getspi'] as const;
const COMMON_KEYS = new Set(['socket', 'json', 'timeout', 'dryRun', 'showKeys', 'listenreply']);

const address = (a: Addr): Address => ({ proto: 0, prefixlen: 0, family: a.family, port: 0, addr: a.addr });

// ---------- --life ----------

type Severity = 'soft' | 'hard';
const LIFE_TYPES = ['allocations', 'bytes', 'addtime', 'usetime', 'packets'] as const;
type LifeType = (typeof LIFE_TYPES)[number];
export type Lives = Record<Severity, Partial<Record<LifeType, number>>>;

/** "soft-bytes=1000,hard-addtime=3600" (several --life options accumulate). */
export function parseLife(specs: string[]): Lives {
  const lives: Lives = { soft: {}, hard: {} };
  for (const spec of specs) {
    for (const item of spec.split(',')) {
      const m = /^(soft|hard)-([a-z]+)=(.+)$/.exec(item.trim());
      if (!m) throw new UsageError(`invalid --life "${item}" (<soft|hard>-<allocations|bytes|addtime|usetime|packets>=<value>)`);
      const sev = m[1] as Severity;
      const type = m[2] as LifeType;
      if (!LIFE_TYPES.includes(type)) throw new UsageError(`invalid --life type "${m[2]}" (allocations, bytes, addtime, usetime or packets)`);
      if (lives[sev][type] !== undefined) throw new UsageError(`lifetime parameter ${sev}-${type} given twice`);
      const max = type === 'allocations' || type === 'packets' ? 0xffffffff : Number.MAX_SAFE_INTEGER;
      const v = parseUlong(m[3], max);
      if (v === undefined) throw new UsageError(`invalid --life value "${m[3]}" in "${item}"`);
      lives[sev][type] = v;
    }
  }
  return lives;
}

/**
 * The 40-byte lifetime extension as openswan's pfkey_lifetime_build writes it: its
 * packets field is left 0 whatever --life said (openswan never filled it in), so the
 * same command gives the same SA as under KLIPS. runSpi warns when packets are asked for.
 */
function lifetimeExt(l: Partial<Record<LifeType, number>>): Lifetime | undefined {
  if (Object.keys(l).length === 0) return undefined;
  return {
    allocations: l.allocations ?? 0,
    bytes: BigInt(l.bytes ?? 0),
    addtime: BigInt(l.addtime ?? 0),
    usetime: BigInt(l.usetime ?? 0),
    packets: 0,
  };
}

// ---------- building the requests ----------

export interface AddRequest {
  satype: number;
  spi: number;
  src: Addr;
  dst: Addr;
  auth: number;
  encrypt: number;
  replay: number;
  authKey?: Uint8Array;
  encryptKey?: Uint8Array;
  lives?: Lives;
  natt?: { type: number; sport: number; dport: number };
  outif?: number;
  saref?: { me: number; him: number };
}

export function buildAdd(r: AddRequest): MessageInput {
  const m: MessageInput = {
    header: { type: SADB_ADD, satype: r.satype },
    sa: { spi: r.spi, replay: r.replay, state: SADB_SASTATE_MATURE, auth: r.auth, encrypt: r.encrypt, flags: 0, ref: 0 },
    addressSrc: address(r.src),
    addressDst: address(r.dst),
  };
  if (r.lives) {
    const hard = lifetimeExt(r.lives.hard);
    const soft = lifetimeExt(r.lives.soft);
    if (hard) m.lifetimeHard = hard;
    if (soft) m.lifetimeSoft = soft;
  }
  if (r.authKey) m.keyAuth = { bits: r.authKey.length * 8, key: r.authKey };
  if (r.encryptKey) m.keyEncrypt = { bits: r.encryptKey.length * 8, key: r.encryptKey };
  if (r.natt && r.natt.type !== 0) {
    m.natTType = { type: r.natt.type };
    if (r.natt.sport) m.natTSport = { port: r.natt.sport };
    if (r.natt.dport) m.natTDport = { port: r.natt.dport };
  }
  if (r.outif) m.plumbif = { ifnum: r.outif };
  if (r.saref) m.saref = r.saref;
  return m;
}

/** DELETE and GET name the SA the way spi --del does: SA (MATURE), SRC (any unless given), DST. */
export function buildSaidRequest(type: number, said: SaidArg, src?: Addr): MessageInput {
  return {
    header: { type, satype: satypeOf(said.proto) },
    sa: { spi: said.spi, replay: 0, state: SADB_SASTATE_MATURE, auth: 0, encrypt: 0, flags: 0, ref: 0 },
    addressSrc: address(src ?? anyAddr(said.family)),
    addressDst: address({ family: said.family, addr: said.dst }),
  };
}

export function buildGetspi(said: SaidArg, src: Addr | undefined, min: number, max: number): MessageInput {
  return {
    header: { type: SADB_GETSPI, satype: satypeOf(said.proto) },
    addressSrc: address(src ?? anyAddr(said.family)),
    addressDst: address({ family: said.family, addr: said.dst }),
    spirange: { min, max },
  };
}

// ---------- arguments ----------

/** A key option, parsed and checked against the sizes the algorithm takes (none: no key). */
function keyFor(option: string, text: string | undefined, sizes: readonly number[], what: string): Uint8Array | undefined {
  const kind = option === '--authkey' ? 'an authentication' : 'an encryption';
  if (sizes.length === 0) {
    if (text !== undefined) throw new UsageError(`"${what}" takes no ${kind.slice(kind.indexOf(' ') + 1)} key; ${option} does not apply`);
    return undefined;
  }
  if (text === undefined) throw new UsageError(`"${what}" needs ${kind} key (${option}) of ${sizesText(sizes)} bits`);
  const key = parseKey(text, option);
  if (!sizes.includes(key.length * 8)) throw new UsageError(`${option} has ${key.length * 8} bits; "${what}" takes ${sizesText(sizes)}`);
  return key;
}

function pick(o: SpiOptions): (typeof ACTIONS)[number] | undefined {
  const chosen = ACTIONS.filter((a) => o[a] !== undefined && o[a] !== false);
  if (chosen.length > 1) {
    throw new UsageError(`only one of --ah, --esp, --comp, --ip4, --ip6, --del, --clear, --get, --dump, --getspi (got ${chosen.map((a) => `--${a}`).join(', ')})`);
  }
  return chosen[0];
}

/** The SA named by --said, or by --af/--edst/--spi/--proto. */
function saOf(o: SpiOptions, family: number, needSpi = true): SaidArg {
  if (o.said) {
    if (o.edst || o.spi || o.proto) throw new UsageError('--said cannot be combined with --edst, --spi or --proto');
    const s = parseSaidArg(o.said, '--said');
    if (family && family !== s.family) throw new UsageError(`address family of --said ${o.said} differs from --af/--ip4/--ip6`);
    if (needSpi && s.spi < 0x100) throw new UsageError(`illegal reserved SPI 0x${s.spi.toString(16)} in --said (must be 0x100 or more)`);
    return s;
  }
  if (!o.edst) throw new UsageError('SA destination not specified (--edst, or --said)');
  if (needSpi && !o.spi) throw new UsageError('SA SPI not specified (--spi, or --said)');
  if (!o.proto) throw new UsageError('SA protocol not specified (--proto, or --said)');
  const dst = parseAddr(o.edst, family, '--edst');
  const spi = o.spi ? requireUlong('--spi', o.spi) : 0;
  if (o.spi && spi < 0x100) throw new UsageError(`illegal reserved SPI ${o.spi} (must be 0x100 or more)`);
  return { proto: protoByName(o.proto), spi, dst: dst.addr, family: dst.family };
}

function natTypeOf(v: string): number {
  const l = v.toLowerCase();
  if (l === 'nonesp') return ESPINUDP_WITH_NON_ESP;
  if (l === 'nonike') return ESPINUDP_WITH_NON_IKE;
  if (l === 'none') return 0;
  return requireUlong('--natt', v, 255);
}

function ifnumOf(v: string): number {
  const m = /^(ipsec|mast)(\d+)$/.exec(v);
  if (m) return (m[1] === 'ipsec' ? IPSECDEV_OFFSET : 0) + Number(m[2]);
  return requireUlong('--outif', v, 0xffff);
}

const EXPECTED_PROTO: Record<string, number> = { ah: IPPROTO_AH, esp: IPPROTO_ESP, comp: IPPROTO_COMP, ip4: IPPROTO_IPIP, ip6: IPPROTO_IPIP };
const PROTO_WORD: Record<number, string> = { [IPPROTO_AH]: 'ah', [IPPROTO_ESP]: 'esp', [IPPROTO_COMP]: 'comp', [IPPROTO_IPIP]: 'tun' };

/** Turn add options into the ADD request (everything checked before anything is sent). */
export function addRequestOf(o: SpiOptions, action: 'ah' | 'esp' | 'comp' | 'ip4' | 'ip6'): { req: AddRequest; said: SaidArg } {
  let family = o.af ? familyByName(o.af) : 0;
  if (action === 'ip4' || action === 'ip6') {
    const f = action === 'ip4' ? AF_INET : AF_INET6;
    if (family && family !== f) throw new UsageError(`--${action} with --af ${o.af}`);
    family = f;
  }
  const said = saOf(o, family);
  if (said.proto !== EXPECTED_PROTO[action]) {
    throw new UsageError(`--${action} makes an SA of protocol ${PROTO_WORD[EXPECTED_PROTO[action]]}, but the SA given is ${PROTO_WORD[said.proto] ?? 'int'}`);
  }
  const src = o.src ? parseAddr(o.src, said.family, '--src') : anyAddr(said.family);
  if (o.dst) parseAddr(o.dst, said.family, '--dst');
  let alg: AlgChoice = { auth: SADB_AALG_NONE, encrypt: SADB_EALG_NONE, encryptKeyBits: [], authKeyBits: [] };
  if (action === 'esp') alg = parseEspAlgorithm(o.esp!);
  else if (action === 'ah') alg = parseAhAlgorithm(o.ah!);
  else if (action === 'comp') alg = { ...alg, encrypt: parseCompAlgorithm(o.comp!) };
  const what = o.esp ?? o.ah ?? o.comp ?? action;
  const authKey = keyFor('--authkey', o.authkey, alg.authKeyBits, what);
  const encryptKey = keyFor('--enckey', o.enckey, alg.encryptKeyBits, what);
  let replay = 0;
  if (o.replay_window !== undefined) {
    replay = requireUlong('--replay_window', o.replay_window, 0xffffffff);
    if (replay < 1 || replay > 64) throw new UsageError(`illegal replay window ${o.replay_window} (1 to 64)`);
  }
  const req: AddRequest = {
    satype: satypeOf(said.proto), spi: said.spi, src, dst: { family: said.family, addr: said.dst },
    auth: alg.auth, encrypt: alg.encrypt, replay, authKey, encryptKey,
  };
  if (o.life?.length) req.lives = parseLife(o.life);
  if (o.natt !== undefined) {
    // openswan's spi reads --dport into its sport variable and --sport into dport (its
    // getopt table maps "dport" to the source-port case), so X_NAT_T_SPORT carries the
    // --dport value. Kept, so that a command written for KLIPS makes the same SA.
    req.natt = {
      type: natTypeOf(o.natt),
      sport: o.dport !== undefined ? requireUlong('--dport', o.dport, 0xffff) : 0,
      dport: o.sport !== undefined ? requireUlong('--sport', o.sport, 0xffff) : 0,
    };
  } else if (o.sport !== undefined || o.dport !== undefined) {
    throw new UsageError('--sport/--dport need --natt');
  }
  if (o.outif !== undefined) req.outif = ifnumOf(o.outif);
  if (o.saref !== undefined || o.sarefhim !== undefined) {
    req.saref = {
      me: o.saref !== undefined ? requireUlong('--saref', o.saref) : 0,
      him: o.sarefhim !== undefined ? requireUlong('--sarefhim', o.sarefhim) : 0,
    };
  }
  return { req, said };
}

function parseRange(v: string | boolean, said: SaidArg): [number, number] {
  if (v === true) return said.spi ? [said.spi, said.spi] : [0x100, 0xffffffff];
  const m = /^([^-]+)-([^-]+)$/.exec(String(v));
  const one = m ? undefined : parseUlong(String(v));
  if (!m && one === undefined) throw new UsageError(`invalid --getspi range "${v}" (MIN-MAX, e.g. 0x1000-0x1fff)`);
  const min = m ? requireUlong('--getspi minimum', m[1]) : one!;
  const max = m ? requireUlong('--getspi maximum', m[2]) : one!;
  if (min < 0x100) throw new UsageError(`--getspi range must start at 0x100 or above, got 0x${min.toString(16)}`);
  if (min > max) throw new UsageError(`--getspi range 0x${min.toString(16)}-0x${max.toString(16)} is empty`);
  return [min, max];
}

// ---------- the command ----------

export async function runSpi(o: SpiOptions): Promise<void> {
  const action = pick(o);
  if (!action) {
    const others = Object.keys(o).filter((k) => !COMMON_KEYS.has(k) && (o as unknown as Record<string, unknown>)[k] !== undefined);
    if (others.length) throw new UsageError(`no action chosen (one of --ah, --esp, --comp, --ip4, --ip6, --del, --clear, --get, --dump, --getspi)`);
    if (o.dryRun) return;
    const v = await queryViews(TOOL, resolveSocketPath(o.socket), ['spi'], o.timeout);
    await out(o.json ? jsonLines(saRecordsFromView(v.spi.data)) : v.spi.text);
    return;
  }
  const family = o.af ? familyByName(o.af) : 0;
  switch (action) {
    case 'clear': {
      const satype = o.proto ? satypeOf(protoByName(o.proto)) : 0;
      const m: MessageInput = { header: { type: SADB_FLUSH, satype } };
      if (await dryRun(o, [m])) return;
      await withClient(TOOL, o, async (c) => {
        const r = await expectOk(c, m, o, { tool: TOOL, op: 'FLUSH', subject: satype ? nameOf(SATYPE_NAMES, satype) : '', words: WORDS });
        if (o.json) await out(showMessage(r.msg!, o));
      });
      return;
    }
    case 'dump': {
      const satype = o.proto ? satypeOf(protoByName(o.proto)) : 0;
      const m: MessageInput = { header: { type: SADB_DUMP, satype } };
      if (await dryRun(o, [m])) return;
      await withClient(TOOL, o, async (c) => {
        const got: Received[] = [];
        const done = new Promise<void>((resolve, reject) => {
          let timer = setTimeout(() => reject(new CliFailure(`${TOOL}: DUMP: klipsd stopped answering within ${o.timeout} ms`)), o.timeout);
          c.onMessage((r) => {
            if (r.header.type !== SADB_DUMP || r.header.pid !== c.pid) return;
            if (r.header.errno !== 0) {
              clearTimeout(timer);
              if (r.header.errno === 2 /* ENOENT: nothing to dump */) resolve();
              else reject(new CliFailure(errnoLine(TOOL, 'DUMP', '', r.header.errno, WORDS), pfkeyErrno(r.header.errno)));
              return;
            }
            got.push(r);
            clearTimeout(timer);
            if (r.header.seq === 0) resolve();
            else timer = setTimeout(() => reject(new CliFailure(`${TOOL}: DUMP: klipsd stopped answering within ${o.timeout} ms`)), o.timeout);
          });
          c.ended$().then(reject);
        });
        c.send(m);
        await done;
        const msgs = got.flatMap((r) => (r.msg ? [r.msg] : []));
        await out(o.json ? jsonLines(msgs.map((m) => saRecordFromMessage(m, o))) : msgs.map((m) => showMessage(m, o)).join('\n'));
      });
      return;
    }
    case 'del':
    case 'get': {
      const said = saOf(o, family);
      const src = o.src ? parseAddr(o.src, said.family, '--src') : undefined;
      const type = action === 'del' ? SADB_DELETE : SADB_GET;
      const m = buildSaidRequest(type, said, src);
      if (await dryRun(o, [m])) return;
      await withClient(TOOL, o, async (c) => {
        const r = await expectOk(c, m, o, { tool: TOOL, op: action === 'del' ? 'DELETE' : 'GET', subject: formatSaidOld(said), words: WORDS });
        if (action === 'get' && o.json) await out(jsonLines([saRecordFromMessage(r.msg!, o)]));
        else if (action === 'get' || o.json) await out(showMessage(r.msg!, o));
      });
      return;
    }
    case 'getspi': {
      const said = saOf(o, family, false);
      const src = o.src ? parseAddr(o.src, said.family, '--src') : undefined;
      const [min, max] = parseRange(o.getspi!, said);
      const m = buildGetspi(said, src, min, max);
      if (await dryRun(o, [m])) return;
      await withClient(TOOL, o, async (c) => {
        const subject = `${PROTO_WORD[said.proto] ?? 'int'}@${said.dst} 0x${min.toString(16)}-0x${max.toString(16)}`;
        const r = await expectOk(c, m, o, { tool: TOOL, op: 'GETSPI', subject, words: { ...WORDS, EEXIST: 'no free SPI in the range' } });
        const spi = r.msg!.sa?.spi ?? 0;
        await out(o.json ? showMessage(r.msg!, o) : `${formatSaid({ proto: said.proto, spi, dst: said.dst })}\n`);
      });
      return;
    }
    default: {
      const { req, said } = addRequestOf(o, action);
      if (req.lives && (req.lives.soft.packets !== undefined || req.lives.hard.packets !== undefined)) {
        process.stderr.write(`${TOOL}: warning: packets lifetimes are not sent (openswan's spi never sent them either)\n`);
      }
      const m = buildAdd(req);
      if (await dryRun(o, [m])) return;
      await withClient(TOOL, o, async (c) => {
        const r = await expectOk(c, m, o, { tool: TOOL, op: 'ADD', subject: formatSaidOld(said), words: WORDS });
        if (o.json) await out(showMessage(r.msg!, o));
        else if ((req.saref || o.dumpsaref) && r.msg!.saref) await out(`${TOOL}: saref=${r.msg!.saref.me}/${r.msg!.saref.him}\n`);
      });
    }
  }
}

export function spiCommand() {
  const cmd = newCommand('spi')
    .description('manage IPsec Security Associations (openswan ipsec spi)')
    .usage('[<SA> --ah|--esp|--comp <algo> | --ip4|--ip6 | --del | --get | --getspi [MIN-MAX]] [options] | --clear | --dump')
    .option('--af <inet|inet6>', 'address family of the SA')
    .option('--edst <addr>', 'effective destination of the SA')
    .option('--spi <spi>', 'SPI (0x100 to 0xffffffff)')
    .option('--proto <ah|esp|tun|comp>', 'IP protocol of the SA')
    .option('--said <said>', 'the SA as one word: esp.12345678@192.0.2.2, esp0x12345678@…, tun:101@2001:db8::1')
    .option('--src <addr>', 'source address of the SA (encap-src for --ip4/--ip6)')
    .option('--dst <addr>', 'encap-dst for --ip4/--ip6 (checked, not sent)')
    .option('--ah <algo>', 'add an AH SA: hmac-md5-96, hmac-sha1-96, md5, sha1, sha2_256, …')
    .option('--esp <algo>', 'add an ESP SA: 3des, 3des-md5-96, 3des-sha1-96, aes128-sha1, aes256-sha2_256, aes_gcm128, null-sha1, …')
    .option('--comp <algo>', 'add an IPCOMP SA: deflate, lzs')
    .option('--ip4', 'add an IPv4-in-IPv4 tunnel SA')
    .option('--ip6', 'add an IPv6-in-IPv6 tunnel SA')
    .option('--del', 'delete the SA (and its group)')
    .option('--clear', 'delete every SA (with --proto: those of one protocol)')
    .option('--get', 'show one SA')
    .option('--dump', 'show every SA (with --proto: of one protocol)')
    .option('--getspi [range]', 'allocate a larval SA with an SPI from MIN-MAX (default 0x100-0xffffffff)')
    .option('--enckey <key>', 'encryption key: 0x hex, 0s base64 or 0t text')
    .option('--authkey <key>', 'authentication key: 0x hex, 0s base64 or 0t text')
    .option('--replay_window <n>', 'replay window, 1 to 64')
    .option('--life <spec>', 'lifetime: <soft|hard>-<allocations|bytes|addtime|usetime|packets>=<value>[,…]', (v: string, prev: string[] = []) => [...prev, v])
    .option('--natt <type>', 'UDP encapsulation: nonesp, nonike, none or a number')
    .option('--sport <port>', "NAT-T port; as openswan's spi, sent as X_NAT_T_DPORT")
    .option('--dport <port>', "NAT-T port; as openswan's spi, sent as X_NAT_T_SPORT")
    .option('--listenreply', 'accepted for compatibility: klips spi always waits for the reply')
    .option('--outif <if>', 'outgoing interface: a number, ipsecN or mastN')
    .option('--saref <n>', 'SAref to use for this SA (alias --sarefme, --saref_me)')
    .option('--sarefme <n>', '', undefined)
    .option('--saref_me <n>', '', undefined)
    .option('--sarefhim <n>', 'SAref of the paired SA (alias --saref_him)')
    .option('--saref_him <n>', '', undefined)
    .option('--dumpsaref', 'print the SAref of the new SA')
    .option('--show-keys', 'show key bytes in --get/--dump output (hidden by default)');
  addCommonOptions(cmd, { dryRun: true });
  for (const o of cmd.options) if (['--sarefme', '--saref_me', '--saref_him'].includes(o.long ?? '')) o.hideHelp();
  cmd.action(async (opts: SpiOptions & { sarefme?: string; saref_me?: string; saref_him?: string }) => {
    const aliasMe = opts.sarefme ?? opts.saref_me;
    if (aliasMe !== undefined) {
      if (opts.saref !== undefined) throw new UsageError('the SAref is given twice');
      opts.saref = aliasMe;
    }
    if (opts.saref_him !== undefined) {
      if (opts.sarefhim !== undefined) throw new UsageError('the paired SAref is given twice');
      opts.sarefhim = opts.saref_him;
    }
    delete opts.sarefme;
    delete opts.saref_me;
    delete opts.saref_him;
    await runSpi(opts);
  });
  return cmd;
}

