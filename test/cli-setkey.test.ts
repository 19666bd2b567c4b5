/**
 * `klips setkey` (issue 13) against what ipsec-tools' setkey does:
 *
 *  - every command captured from the real setkey (test/vectors/clients/ipsec-tools-setkey.json,
 *    copied from shared/vectors; see test/vectors/README.md) run through `klips setkey`
 *    against a mock answering as the capture's mock did: the same requests, byte for byte
 *    (sadb_msg_pid aside), and the same output;
 *  - 108 more statements captured from the real setkey (test/fixtures/
 *    ipsec-tools-setkey-statements.json; see test/fixtures/README.md): the same requests,
 *    and for each statement setkey refuses, setkey's own error line;
 *  - the command's behaviour (errors, exit status, what is sent when) against the mock;
 *  - the printer on messages built by our codec, exact text;
 *  - with the real setkey installed (scripts/build-setkey.sh) and a C compiler, the same
 *    inputs through both tools side by side (skipped with the reason otherwise);
 *  - end to end against klipsd's KAME socket (skipped while klipsd has none).
 */

import assert from 'node:assert/strict';
import { describe, test, before, after } from 'node:test';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  FrameDecoder, buildMessage, parseMessage, SADB_ADD, SADB_DUMP, SADB_REGISTER, SADB_X_PROMISC,
  SADB_X_SPDDUMP, type KameMessage, type KameMessageInput,
} from '../src/wire/index.js';
import { kameSocketPathFor } from '../src/daemon/paths.js';
import { parsePolicy, parseSetkey, SetkeyError, type Statement } from '../src/cli/setkey-parse.js';
import { keyCheckError } from '../src/cli/setkey.js';
import { ctimeText, kdebug, policyText, printSa, printSp, saRecord, spRecord } from '../src/cli/setkey-print.js';
import { FIXTURES_DIR, readVector } from './vectors.js';
import { klips, klipsBackground, startDaemon, tempDir, waitUntil, within } from './cli-harness.js';

process.env.TZ = 'UTC';

const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** A request's hex with sadb_msg_pid (bytes 12-15) zeroed. */
const masked = (h: string) => `${h.slice(0, 24)}00000000${h.slice(32)}`;
const pidOf = (b: Uint8Array) => Buffer.from(b).readUInt32LE(12);

// ---------- a mock of klipsd's KAME socket, answering as the captures' mock did ----------

interface MockOptions {
  /** REGISTER's answer after the header: the supported-algorithm extensions. */
  supported: Buffer;
  /** Answer these message types with this errno (header only). */
  errnoFor?: Record<number, number>;
  /** Answer DUMP / X_SPDDUMP with these messages (their pid set to the asker's); else ENOENT. */
  dumps?: Record<number, Uint8Array[]>;
  /** Sent after echoing X_PROMISC. */
  afterPromisc?: Uint8Array[];
}

class MockKame {
  readonly requests: Buffer[] = [];
  connections = 0;
  private constructor(private readonly server: net.Server, public opts: MockOptions) {}

  static async listen(p: string, opts: MockOptions): Promise<MockKame> {
    let mock: MockKame;
    const server = net.createServer((c) => {
      mock.connections++;
      const dec = new FrameDecoder();
      c.on('data', (chunk) => dec.push(chunk, (f) => mock.answer(c, Buffer.from(f))));
      c.on('error', () => {});
    });
    mock = new MockKame(server, opts);
    await new Promise<void>((resolve) => server.listen(p, resolve));
    return mock;
  }

  private answer(c: net.Socket, m: Buffer): void {
    this.requests.push(m);
    const type = m[1];
    const head = (len: number, errno = 0) => {
      const h = Buffer.from(m.subarray(0, 16));
      h[2] = errno;
      h.writeUInt16LE(len / 8, 4);
      return h;
    };
    const errno = this.opts.errnoFor?.[type];
    if (type === SADB_REGISTER) c.write(Buffer.concat([head(16 + this.opts.supported.length), this.opts.supported]));
    else if (errno) c.write(head(16, errno));
    else if (type === SADB_DUMP || type === SADB_X_SPDDUMP) {
      const msgs = this.opts.dumps?.[type];
      if (!msgs) c.write(head(16, 2));
      for (const d of msgs ?? []) {
        const b = Buffer.from(d);
        b.writeUInt32LE(m.readUInt32LE(12), 12);
        c.write(b);
      }
    } else {
      c.write(m);
      if (type === SADB_X_PROMISC) for (const b of this.opts.afterPromisc ?? []) c.write(b);
    }
  }

  reset(opts?: Partial<MockOptions>): void {
    this.requests.length = 0;
    this.connections = 0;
    if (opts) this.opts = { ...this.opts, ...opts };
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ---------- the captures ----------

interface VectorCase {
  name: string;
  command: string;
  exit: number | string;
  stdout: string;
  stderr: string;
  stdin?: string;
  script_file?: string;
  requests: Array<{ hex: string; pid: number }>;
  mock_replies?: Array<{ hex: string }>;
}
const VECTORS = readVector<{ cases: VectorCase[] }>('clients/ipsec-tools-setkey.json');

interface StatementCase {
  statement: string;
  supported: 'vector' | 'wide';
  exit: number;
  requests: string[];
  error?: string;
}
const STATEMENTS = JSON.parse(fs.readFileSync(path.join(FIXTURES_DIR, 'ipsec-tools-setkey-statements.json'), 'utf8')) as {
  supported: Record<'vector' | 'wide', string>;
  cases: StatementCase[];
};
const SUPPORTED = {
  vector: Buffer.from(STATEMENTS.supported.vector, 'hex'),
  wide: Buffer.from(STATEMENTS.supported.wide, 'hex'),
};

/** The supported algorithms a REGISTER answer with these extensions gives. */
function supportedOf(exts: Buffer) {
  const h = Buffer.alloc(16);
  h[0] = 2;
  h[1] = SADB_REGISTER;
  h.writeUInt16LE((16 + exts.length) / 8, 4);
  const m = parseMessage(Buffer.concat([h, exts]), { dialect: 'kame', direction: 'out' });
  return { auth: m.supportedAuth?.algs, encrypt: m.supportedEncrypt?.algs };
}

/** What klips sends for statements (pid 0), deleteall's DUMP included. */
function requestsHex(sts: Statement[]): string[] {
  return sts.flatMap((st) => (st.kind === 'send' ? st.requests : st.kind === 'deleteall' ? [st.dump] : [])).map((m) => hexOf(buildMessage(m)));
}

/**
 * klips's error line for a statement: the parser's, else the first key refused against
 * the supported list (as `klips setkey -f FILE` prints it), else undefined.
 */
function errorLine(text: string, supported: Buffer): string | undefined {
  let sts: Statement[];
  try {
    sts = parseSetkey(`${text}\n`, 0);
  } catch (e) {
    if (e instanceof SetkeyError) return `setkey: FILE,${e.line}: ${e.message}`;
    throw e;
  }
  const sup = supportedOf(supported);
  for (const st of sts) {
    for (const k of st.kind === 'send' ? st.keyChecks : []) {
      const why = keyCheckError(k, sup);
      if (why) return `setkey: FILE,${k.line}: ${why} at \`${k.token}'`;
    }
  }
  return undefined;
}

/**
 * Where klips's error line is not setkey's exactly: klips adds what libipsec printed on a
 * line of its own in parentheses (checked by prefix below); and one statement whose
 * quoted policy setkey's scanner reads differently.
 */
const OWN_ERRORS: Record<string, string> = {
  'spdadd 10.0.1.0/24 10.0.2.0/24 any -P out "x";': 'setkey: FILE,1: Syntax error at `"\'',
};

/** klips's line equals setkey's, or is setkey's followed by " (detail)". */
function sameError(ours: string | undefined, theirs: string, statement: string): boolean {
  if (OWN_ERRORS[statement]) return ours === OWN_ERRORS[statement];
  return ours === theirs || (ours !== undefined && ours.startsWith(`${theirs} (`) && ours.endsWith(')'));
}

// ======================================================================================

describe('klips setkey sends what setkey sent for every captured command, and prints what it printed', () => {
  let dir: string;
  let base: string;
  let mock: MockKame;
  const register = VECTORS.cases.find((c) => c.name === 'setkey-add-esp-aes-sha1')!.mock_replies![0].hex;
  before(async () => {
    dir = tempDir('klips-setkey-');
    base = path.join(dir, 'pfkey.sock');
    mock = await MockKame.listen(kameSocketPathFor(base), { supported: Buffer.from(register.slice(32), 'hex') });
  });
  after(async () => {
    await mock.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const c of VECTORS.cases) {
    test(`${c.name}: ${c.command}`, async () => {
      mock.reset();
      const words = c.command.split(' ').slice(1);
      let args: string[];
      if (words[0] === '-f') {
        const file = path.join(dir, words[1]);
        fs.writeFileSync(file, c.script_file!);
        args = ['-f', file];
      } else if (words[0] === '-x') {
        args = ['-x', '--count', '1'];
      } else args = words;
      const r = await klips(['setkey', '--socket', base, ...args], { input: c.stdin ?? '' });
      assert.equal(r.code, 0, r.stderr);
      const want = c.requests.map((q) => masked(q.hex));
      assert.deepEqual(mock.requests.map((b) => masked(hexOf(b))), want);
      const ourPid = pidOf(mock.requests[0]);
      if (c.name === 'setkey-x-promisc') {
        // setkey was killed before its buffered output reached the capture; klips prints
        // the time line for the echoed X_PROMISC (a header alone, so no kdebug lines).
        assert.match(r.stdout, /^\d\d:\d\d:\d\d\.\d{6} \n$/);
      } else {
        assert.equal(r.stdout, c.stdout.replaceAll(`pid=${c.requests[0].pid} `, `pid=${ourPid} `));
      }
      // setkey's deleteall says "error encountered" when the DUMP finds nothing; klips
      // deletes nothing and says nothing (docs/semantics.md).
      assert.equal(r.stderr, c.name === 'setkey-deleteall' ? '' : c.stderr);
    });
  }
});

describe('108 more statements captured from setkey', () => {
  for (const c of STATEMENTS.cases) {
    test(c.statement.replace(/\s+/g, ' '), () => {
      const ours = errorLine(c.statement, SUPPORTED[c.supported]);
      if (c.exit !== 0) {
        assert.ok(c.error, 'setkey refused it with a line');
        assert.ok(sameError(ours, c.error!, c.statement), `setkey: ${c.error}\nklips:  ${ours}`);
        return;
      }
      assert.equal(ours, undefined);
      const sts = parseSetkey(`${c.statement}\n`, 0);
      assert.deepEqual(requestsHex(sts), c.requests);
      // setkey's one warning, as klips -f prints it.
      const warnings = sts.flatMap((st) => st.warnings.map((w) => `setkey: FILE,${st.line}: ${w}`));
      if (c.error?.includes('WARNING')) assert.deepEqual(warnings, [c.error]);
      else assert.deepEqual(warnings, []);
    });
  }
});

describe('the parser', () => {
  const bytes = (text: string, o = {}) => requestsHex(parseSetkey(text, 0, o));

  test('a file: statements over several lines, comments, several on a line; errors name the line of the token', () => {
    const sts = parseSetkey('# keys\nflush; spdflush;\n\nadd 192.0.2.1\n  192.0.2.2 esp 0x1000 # the SPI\n  -E null;\n', 0);
    assert.deepEqual(sts.map((s) => [s.command, s.line]), [['flush', 2], ['spdflush', 2], ['add', 4]]);
    assert.throws(() => parseSetkey('flush;\n\nadd 192.0.2.1\n 192.0.2.2 esp 0x1000 -E aes-cbc zz;\n', 0),
      (e: unknown) => e instanceof SetkeyError && e.line === 4 && e.message === "syntax error at `zz'");
    assert.throws(() => parseSetkey('spdadd 10.0.0.0/8 10.1.0.0/16 any -P out\n ipsec esp/tunnel/1.2.3.4/require;', 0),
      (e: unknown) => e instanceof SetkeyError && e.line === 1 && e.message === "Invalid argument at ` out  ipsec esp/tunnel/1.2.3.4/require' (syntax error at `/')");
  });

  test('-P in sends the fwd twin (level unique made require, reqid 0) unless -k', () => {
    const text = 'spdadd 10.0.2.0/24 10.0.1.0/24 any -P in ipsec esp/tunnel/192.0.2.2-192.0.2.1/unique:7;';
    const [st] = parseSetkey(text, 0) as [Extract<Statement, { kind: 'send' }>];
    assert.deepEqual(st.requests.map((m) => [m.policy!.dir, m.policy!.requests[0].level, m.policy!.requests[0].reqid]), [[1, 3, 7], [3, 2, 0]]);
    assert.equal(bytes(text, { rfcMode: false }).length, 1);
  });

  test('where setkey lets a mistake through, klips refuses it', () => {
    const refused: Array<[string, string]> = [
      // setkey truncates to 32 bits (its check masks with a 32-bit ~0xffffffff).
      ['add 192.0.2.1 192.0.2.2 esp 0x100000000 -E null;', "SPI too big. at `0x100000000'"],
      // setkey sends nothing and says only "parse failed".
      ['add 192.0.2.1 2001:db8::1 esp 0x1000 -E null;', "Family mismatch at `2001:db8::1'"],
      ['spdadd 10.0.0.0/8 2001:db8::/32 any -P out none;', "Family mismatch at `2001:db8::'"],
      ['add -4 2001:db8::1 2001:db8::2 esp 0x1000 -E null;', "Address family for hostname not supported at `2001:db8::1'"],
      ['spdadd 10.0.0.0/33 10.1.0.0/16 any -P out none;', "Invalid prefix length at `33'"],
      ['add 192.0.2.1 192.0.2.2 esp 0x1000 -r 256 -E null;', "replay window too big at `256'"],
      ['add host.example 192.0.2.2 esp 0x1000 -E null;', "Name or service not known at `host.example' (klips setkey takes numeric addresses only)"],
      ['add 192.0.2.1 192.0.2.2 tcp 0x1000 -A hmac-md5 "k";', "TCP-MD5 SAs are not supported on Linux at `tcp'"],
      ['spdadd 10.0.0.0/8 10.1.0.0/16 udp 1,2 -P out none;', "invalid an upper layer protocol spec at `1,2'"],
    ];
    for (const [text, why] of refused) {
      assert.throws(() => parseSetkey(text, 0), (e: unknown) => e instanceof SetkeyError && e.message === why, text);
    }
  });

  test('aes-gcm-16 (klips names it; setkey 0.9.1 does not): SADB_X_EALG_AES_GCM_ICV16 with the key and salt', () => {
    const [st] = parseSetkey('add 192.0.2.1 192.0.2.2 esp 0x1000 -E aes-gcm-16 0x000102030405060708090a0b0c0d0e0f10111213;', 0) as [Extract<Statement, { kind: 'send' }>];
    assert.equal(st.requests[0].sa!.encrypt, 20);
    assert.equal(st.requests[0].keyEncrypt!.bits, 160);
    assert.deepEqual(st.keyChecks.map((k) => [k.supported, k.alg, k.bits]), [['encrypt', 20, 160]]);
  });

  test('the key checks name libipsec\'s three refusals', () => {
    const sup = supportedOf(SUPPORTED.vector);
    const k = (supported: 'auth' | 'encrypt', alg: number, bits: number) => keyCheckError({ supported, alg, bits, line: 1, token: 't' }, sup);
    assert.equal(k('encrypt', 12, 128), undefined);
    assert.equal(k('encrypt', 12, 120), 'Invalid key length');
    assert.equal(k('encrypt', 12, 264), 'Invalid key length');
    assert.equal(k('encrypt', 2, 64), 'Not supported');
    assert.equal(k('auth', 3, 160), undefined);
    assert.equal(keyCheckError({ supported: 'auth', alg: 3, bits: 160, line: 1, token: 't' }, {}), 'Must get supported algorithms list first');
  });

  test('a policy prints back as it was written (without prio, setkey gives the default one)', () => {
    assert.equal(policyText(parsePolicy(' out ipsec esp/tunnel/192.0.2.1-192.0.2.2/require'), ' '), 'out prio def ipsec esp/tunnel/192.0.2.1-192.0.2.2/require');
    assert.equal(policyText(parsePolicy(' out'), ' '), 'out discard');
    for (const text of [
      'out prio def ipsec esp/tunnel/192.0.2.1-192.0.2.2/require',
      'in prio def + 100 ipsec esp/transport//unique:5 ah/transport//use',
      'fwd prio low - 5 none',
      'out prio high ipsec ipcomp/tunnel/2001:db8::1-2001:db8::2/default esp/tunnel/2001:db8::1-2001:db8::2/unique',
      'out prio def discard',
      'in prio def - 7 bypass',
    ]) {
      assert.equal(policyText(parsePolicy(text), ' '), text);
    }
  });
});

// ---------- messages as klipsd would send them ----------

const A = (addr: string, o: Record<string, number> = {}) => ({
  proto: 255, prefixlen: addr.includes(':') ? 128 : 32, family: addr.includes(':') ? 10 : 2, port: 0, addr,
  ...(addr.includes(':') ? { flowinfo: 0, scopeId: 0 } : {}), ...o,
});
const L = (allocations = 0, bytes = 0n, addtime = 0n, usetime = 0n) => ({ allocations, bytes, addtime, usetime });
const KEY = (n: number) => ({ bits: n * 8, key: Uint8Array.from({ length: n }, (_, i) => i) });
const T0 = 1795540314n; // Tue Nov 24 17:11:54 2026 UTC

function saDump(over: Partial<KameMessageInput> = {}): KameMessageInput {
  return {
    header: { type: SADB_DUMP, satype: 3, seq: 0, pid: 77, reserved: 1 },
    dialect: 'kame',
    sa: { spi: 0x1000, replay: 32, state: 1, auth: 3, encrypt: 12, flags: 0x40 },
    lifetimeCurrent: L(3, 1500n, T0, T0 + 5n),
    lifetimeHard: L(10, 1000000n, 3600n, 1800n),
    lifetimeSoft: L(8, 900000n, 3000n, 1500n),
    addressSrc: A('192.0.2.1'),
    addressDst: A('192.0.2.2'),
    keyAuth: KEY(20),
    keyEncrypt: KEY(16),
    xSa2: { mode: 2, sequence: 7, reqid: 100 },
    ...over,
  };
}

function spDump(over: Partial<KameMessageInput> = {}): KameMessageInput {
  return {
    header: { type: SADB_X_SPDDUMP, satype: 0, seq: 0, pid: 77, reserved: 2 },
    dialect: 'kame',
    addressSrc: A('10.0.1.0', { prefixlen: 24 }),
    addressDst: A('10.0.2.0', { prefixlen: 24 }),
    lifetimeHard: L(0, 0n, 30n, 40n),
    lifetimeSoft: L(),
    lifetimeCurrent: L(0, 0n, T0, 0n),
    policy: {
      type: 2, dir: 2, id: 1, priority: 0x80000000,
      requests: [{ proto: 50, mode: 2, level: 2, reqid: 0, src: { family: 2, port: 0, addr: '192.0.2.1' }, dst: { family: 2, port: 0, addr: '192.0.2.2' } }],
    },
    ...over,
  };
}

const parsed = (m: KameMessageInput): KameMessage => parseMessage(buildMessage(m), { dialect: 'kame', direction: 'out' });

describe('the printer', () => {
  const now = Number(T0) + 100;

  test('an ESP tunnel SA as pfkey_sadump prints it', () => {
    assert.equal(printSa(parsed(saDump()), { now }), [
      '192.0.2.1 192.0.2.2 ',
      '\tesp mode=tunnel spi=4096(0x00001000) reqid=100(0x00000064)',
      '\tE: aes-cbc  00010203 04050607 08090a0b 0c0d0e0f',
      '\tA: hmac-sha1  00010203 04050607 08090a0b 0c0d0e0f 10111213',
      '\tseq=0x00000007 replay=32 flags=0x00000040 state=mature ',
      '\tcreated: Nov 24 17:11:54 2026\tcurrent: Nov 24 17:13:34 2026',
      '\tdiff: 100(s)\thard: 3600(s)\tsoft: 3000(s)',
      '\tlast: Nov 24 17:11:59 2026\thard: 1800(s)\tsoft: 1500(s)',
      '\tcurrent: 1500(bytes)\thard: 1000000(bytes)\tsoft: 900000(bytes)',
      '\tallocated: 3\thard: 10\tsoft: 8',
      '\tsadb_seq=0 pid=77 refcnt=1',
      '',
    ].join('\n'));
  });

  test('NAT-T, a 64-byte key over two lines, IPCOMP\'s unterminated C: line, BEET as a number', () => {
    const natt = printSa(parsed(saDump({
      addressSrc: A('192.0.2.1', { port: 4500 }), addressDst: A('192.0.2.2', { port: 4500 }),
      natTType: { type: 2 }, natTSport: { port: 4500 }, natTDport: { port: 4501 }, natTOa: A('10.0.0.1'),
      keyAuth: KEY(64), sa: { spi: 0x1003, replay: 4, state: 0, auth: 7, encrypt: 3, flags: 0 }, keyEncrypt: KEY(24),
    })), { now });
    assert.match(natt, /^192\.0\.2\.1\[4500\] 192\.0\.2\.2\[4501\] \n\tesp-udp mode=tunnel spi=4099\(0x00001003\) reqid=100\(0x00000064\)\n\tNAT OA=10\.0\.0\.1\n\tE: 3des-cbc  00010203 04050607 08090a0b 0c0d0e0f 10111213 14151617\n/);
    assert.ok(natt.includes('\tA: hmac-sha512  00010203 04050607 08090a0b 0c0d0e0f 10111213 14151617 18191a1b 1c1d1e1f\n 20212223 24252627 28292a2b 2c2d2e2f 30313233 34353637 38393a3b 3c3d3e3f\n'));
    const comp = printSa(parsed(saDump({
      header: { type: SADB_DUMP, satype: 9, seq: 0, pid: 77 }, keyAuth: undefined, keyEncrypt: undefined,
      sa: { spi: 0x3000, replay: 0, state: 1, auth: 0, encrypt: 2, flags: 0x80 }, xSa2: { mode: 3, sequence: 0, reqid: 0 },
    })), { now });
    assert.ok(comp.startsWith('192.0.2.1 192.0.2.2 \n\tipcomp mode=3 spi=12288(0x00003000) reqid=0(0x00000000)\n\tC: deflate \tseq=0x00000000 replay=0 flags=0x00000080 state=mature \n'), comp);
  });

  test('a policy as pfkey_spdump prints it; the priority read back as written', () => {
    assert.equal(printSp(parsed(spDump()), { now }), [
      '10.0.1.0/24[any] 10.0.2.0/24[any] any',
      '\tout prio def ipsec',
      '\tesp/tunnel/192.0.2.1-192.0.2.2/require',
      '\tcreated: Nov 24 17:11:54 2026  lastused:                     ',
      '\tlifetime: 30(s) validtime: 40(s)',
      '\tspid=1 seq=0 pid=77',
      '\trefcnt=2',
      '',
    ].join('\n'));
    const head = (priority: number) => printSp(parsed(spDump({ policy: { type: 1, dir: 2, id: 1, priority, requests: [] } })), { now }).split('\n')[1];
    assert.deepEqual([0, 0x80000000, 0x7fffff9c, 0x80000064, 0xc0000005, 0x40000010, 0x3fffffff].map(head), [
      '\tout none', '\tout prio def none', '\tout prio def + 100 none', '\tout prio def - 100 none',
      '\tout prio low - 5 none', '\tout prio high - 16 none', '\tout prio high + 1 none',
    ]);
  });

  test('ports, ICMP type and code, a socket\'s own policy, a template ipsec_dump_policy refuses', () => {
    const tcp = printSp(parsed(spDump({ addressSrc: A('10.1.0.5', { proto: 6, port: 80 }), addressDst: A('10.2.0.0', { prefixlen: 24, proto: 6 }) })), { now });
    assert.ok(tcp.startsWith('10.1.0.5[80] 10.2.0.0/24[any] tcp\n'), tcp);
    const icmp = printSp(parsed(spDump({ addressSrc: A('10.1.0.0', { prefixlen: 24, proto: 1, port: 8 }), addressDst: A('10.2.0.0', { prefixlen: 24, proto: 1 }) })), { now });
    assert.ok(icmp.startsWith('10.1.0.0/24 10.2.0.0/24 icmp 8,0\n'), icmp);
    const sock = printSp(parsed(spDump({ policy: { type: 1, dir: 2, id: 11, priority: 0, requests: [] } })), { now });
    assert.ok(sock.startsWith('(per-socket policy) \n\tout none\n'), sock);
    const beet = printSp(parsed(spDump({ policy: { type: 2, dir: 2, id: 1, priority: 0, requests: [{ proto: 50, mode: 3, level: 2, reqid: 0 }] } })), { now });
    assert.ok(beet.includes('\n\tPolicy:[Invalid ipsec mode]\n'), beet);
  });

  test('ctime\'s 20 characters, blank for 0', () => {
    assert.equal(ctimeText(T0), 'Nov 24 17:11:54 2026');
    assert.equal(ctimeText(1772000000n), 'Feb 25 06:13:20 2026');
    assert.equal(ctimeText(0n), ' '.repeat(20));
  });

  test('kdebug: setkey -v / -x\'s field-by-field form, from the bytes', () => {
    const [st] = parseSetkey('add 192.0.2.1 192.0.2.2 esp 0x1000 -E aes-cbc 0x000102030405060708090a0b0c0d0e0f -A hmac-sha1 0x0102030405060708090a0b0c0d0e0f1011121314;', 42) as [Extract<Statement, { kind: 'send' }>];
    assert.equal(kdebug(buildMessage(st.requests[0])), [
      'sadb_msg{ version=2 type=3 errno=0 satype=3',
      '  len=19 reserved=0 seq=0 pid=42',
      'sadb_ext{ len=3 type=9 }',
      'sadb_key{ bits=128 reserved=0',
      '  key= 00010203 04050607 08090a0b 0c0d0e0f }',
      'sadb_ext{ len=4 type=8 }',
      'sadb_key{ bits=160 reserved=0',
      '  key= 01020304 05060708 090a0b0c 0d0e0f10 11121314 }',
      'sadb_ext{ len=2 type=1 }',
      'sadb_sa{ spi=4096 replay=0 state=0',
      '  auth=3 encrypt=12 flags=0x00000040 }',
      'sadb_ext{ len=2 type=19 }',
      'sadb_x_sa2{ mode=0 reqid=0',
      '  reserved1=0 reserved2=0 sequence=0 }',
      'sadb_ext{ len=3 type=5 }',
      'sadb_address{ proto=255 prefixlen=32 reserved=0x0000 }',
      'sockaddr{ len=16 family=2 port=0',
      ' c0000201  }',
      'sadb_ext{ len=3 type=6 }',
      'sadb_address{ proto=255 prefixlen=32 reserved=0x0000 }',
      'sockaddr{ len=16 family=2 port=0',
      ' c0000202  }',
      '',
    ].join('\n'));
    // A truncated extension stops the walk as key_debug.c does.
    const b = Buffer.from(buildMessage(st.requests[0]));
    b.writeUInt16LE(0, 16);
    assert.ok(kdebug(b).endsWith('sadb_ext{ len=0 type=9 }\nkdebug_sadb: invalid ext_len=0 was passed.\n'));
  });

  test('JSON records carry what the text shows', () => {
    const sa = saRecord(parsed(saDump()));
    assert.deepEqual([sa.src, sa.dst, sa.satype, sa.mode, sa.spi, sa.reqid, sa.state], ['192.0.2.1', '192.0.2.2', 'esp', 'tunnel', 4096, 100, 'mature']);
    assert.deepEqual(sa.encrypt, { alg: 'aes-cbc', key: '000102030405060708090a0b0c0d0e0f' });
    assert.deepEqual(sa.hard, { allocations: 10, bytes: 1000000, addtime: 3600, usetime: 1800 });
    const sp = spRecord(parsed(spDump()));
    assert.deepEqual([sp.dir, sp.priority, sp.action, sp.policy, sp.proto], ['out', 0x80000000, 'ipsec', 'out prio def ipsec esp/tunnel/192.0.2.1-192.0.2.2/require', 'any']);
    assert.deepEqual(sp.requests, [{ proto: 'esp', mode: 'tunnel', src: '192.0.2.1', dst: '192.0.2.2', level: 'require', reqid: 0 }]);
  });
});

describe('klips setkey against a mock KAME socket', () => {
  let dir: string;
  let base: string;
  let mock: MockKame;
  before(async () => {
    dir = tempDir('klips-setkey-');
    base = path.join(dir, 'pfkey.sock');
    mock = await MockKame.listen(kameSocketPathFor(base), { supported: SUPPORTED.vector });
  });
  after(async () => {
    await mock.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const run = (args: string[], input = '') => klips(['setkey', '--socket', base, ...args], { input });
  const ADD = 'add 192.0.2.1 192.0.2.2 esp 0x1000 -E aes-cbc 0x000102030405060708090a0b0c0d0e0f;';

  test('-f: a syntax error on line 3 is one line, exit 1, and nothing is sent (setkey sends the lines before it)', async () => {
    mock.reset();
    const file = path.join(dir, 'bad.conf');
    fs.writeFileSync(file, `flush;\n${ADD}\nspdadd 10.0.0.0/8 10.1.0.0/16 any -P out ipsec esp/transport//require junk;\n`);
    const r = await run(['-f', file]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `setkey: ${file},3: Invalid argument at \` out ipsec esp/transport//require junk' (syntax error at \`junk')\n`);
    assert.equal(mock.connections, 0);
  });

  test('-f: a key the REGISTER answer refuses is one line and only REGISTER is sent', async () => {
    mock.reset();
    const file = path.join(dir, 'key.conf');
    fs.writeFileSync(file, `flush;\n${ADD}\nadd 192.0.2.1 192.0.2.2 ah 0x2000\n -A hmac-sha1 0x0102;\n`);
    const r = await run(['-f', file]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `setkey: ${file},4: Invalid key length at \`0x0102'\n`);
    assert.deepEqual(mock.requests.map((b) => b[1]), [SADB_REGISTER]);
  });

  test('-c: a bad statement is reported with its line and skipped; the rest run; exit 1', async () => {
    mock.reset();
    const r = await run(['-c'], `flush;\nfoo;\n${ADD}\n# done\n`);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "setkey: <stdin>,2: syntax error at `foo'\n");
    assert.deepEqual(mock.requests.map((b) => b[1]), [SADB_REGISTER, 9, SADB_ADD]);
  });

  test('-c: a statement cut short at the end of input is an error; exit stops reading', async () => {
    mock.reset();
    let r = await run(['-c'], `${ADD}\nflush`);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "setkey: <stdin>,2: syntax error at `'\n");
    mock.reset();
    r = await run(['-c'], `flush;\nexit;\n${ADD}\n`);
    assert.equal(r.code, 0);
    assert.deepEqual(mock.requests.map((b) => b[1]), [SADB_REGISTER, 9]);
  });

  test('an errno answer: setkey\'s words for it, the file and line, exit 1', async () => {
    mock.reset({ errnoFor: { [SADB_ADD]: 17, 4: 2 } });
    try {
      const r = await run(['-c'], `${ADD}\ndelete 192.0.2.1 192.0.2.2 esp 0x1000;\nflush;\n`);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, 'setkey: <stdin>,1: File exists\nsetkey: <stdin>,2: No entry\n');
      const j = await run(['-c', '--json'], `${ADD}\n`);
      assert.deepEqual(JSON.parse(j.stderr), { error: { errno: 'EEXIST', code: 17, message: 'setkey: <stdin>,1: File exists' } });
    } finally {
      mock.reset({ errnoFor: {} });
    }
  });

  test('-D and -DP print each SA and policy of the dump, dead SAs only with -a; empty dumps say so', async () => {
    mock.reset();
    let r = await run(['-D']);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, 'No SAD entries.\n', '']);
    // A --socket path that names the KAME socket itself (klipsd --kame-socket) is used as it is.
    r = await klips(['setkey', '--socket', kameSocketPathFor(base), '-D']);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, 'No SAD entries.\n', '']);
    r = await run(['-DP', '--json']);
    assert.deepEqual([r.code, r.stdout], [0, '']);
    const live = saDump({ header: { type: SADB_DUMP, satype: 3, seq: 1, pid: 0 } });
    const dead = saDump({ header: { type: SADB_DUMP, satype: 3, seq: 0, pid: 0 }, sa: { spi: 0x2000, replay: 0, state: 3, auth: 3, encrypt: 12, flags: 0 } });
    mock.reset({ dumps: { [SADB_DUMP]: [buildMessage(live), buildMessage(dead)], [SADB_X_SPDDUMP]: [buildMessage(spDump())] } });
    try {
      r = await run(['-D']);
      assert.equal(r.code, 0);
      assert.equal(r.stdout.match(/^\tesp mode=/gm)?.length, 1);
      assert.match(r.stdout, /spi=4096\(0x00001000\)/);
      r = await run(['-Da']);
      assert.match(r.stdout, /spi=8192\(0x00002000\)[^]*state=dead /);
      r = await run(['-DP']);
      assert.ok(r.stdout.startsWith('10.0.1.0/24[any] 10.0.2.0/24[any] any\n\tout prio def ipsec\n\tesp/tunnel/192.0.2.1-192.0.2.2/require\n'), r.stdout);
      r = await run(['-D', '--json']);
      assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l).spi), [4096]);
      assert.deepEqual(mock.requests.map((b) => [b[1], b[3], b.readUInt32LE(8)]), [[10, 0, 0], [10, 0, 0], [18, 0, 0], [10, 0, 0]]);
    } finally {
      mock.reset({ dumps: {} });
    }
  });

  test('-x prints every message the socket gets: a time line, then kdebug\'s fields', async () => {
    const [st] = parseSetkey(ADD, 4242) as [Extract<Statement, { kind: 'send' }>];
    mock.reset({ afterPromisc: [buildMessage(st.requests[0])] });
    try {
      const r = await run(['-x', '--count', '2']);
      assert.equal(r.code, 0, r.stderr);
      const [t1, t2, ...rest] = r.stdout.split('\n');
      assert.match(t1, /^\d\d:\d\d:\d\d\.\d{6} $/);
      assert.match(t2, /^\d\d:\d\d:\d\d\.\d{6} $/);
      assert.equal(rest.join('\n'), `${kdebug(buildMessage(st.requests[0]))}\n`);
      const j = await run(['-x', '--count', '2', '--json']);
      const recs = j.stdout.trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(recs.map((x) => [x.header.type, x.extensions?.sa?.spi]), [[SADB_X_PROMISC, undefined], [SADB_ADD, 0x1000]]);
    } finally {
      mock.reset({ afterPromisc: [] });
    }
  });

  test('--dry-run prints each request setkey would send (seq 0) and connects to nothing', async () => {
    mock.reset();
    const r = await run(['-c', '--dry-run'], `${ADD}\nspdadd 10.0.2.0/24 10.0.1.0/24 any -P in none;\n`);
    assert.equal(r.code, 0);
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(lines.map((h) => [h.slice(2, 4), h.slice(16, 24)]), [['03', '00000000'], ['0e', '00000000'], ['0e', '00000000']]);
    assert.equal(mock.connections, 0);
  });

  test('FILE...: stored messages printed as answers are', async () => {
    const file = path.join(dir, 'msgs.bin');
    fs.writeFileSync(file, Buffer.concat([buildMessage(saDump()), buildMessage(spDump())]));
    const r = await run([file]);
    assert.equal(r.code, 0, r.stderr);
    const now = (s: string) => s.replace(/current: [^\t\n]+\n/, 'current: X\n').replace(/diff: \d+/, 'diff: X');
    assert.equal(now(r.stdout), now(printSa(parsed(saDump()), { now: 0 }) + printSp(parsed(spDump()), { now: 0 })));
  });

  test('bad arguments exit 2; no klipsd is exit 1 with one line', async () => {
    let r = await run([]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^klips setkey: say what to do/);
    r = await run(['-c', '-D']);
    assert.equal(r.code, 2);
    r = await klips(['setkey', '--socket', path.join(dir, 'none.sock'), '-D']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `setkey: cannot connect to klipsd's KAME socket at ${path.join(dir, 'none.sock')}.kame: ENOENT (is klipsd running?)\n`);
  });
});

// ---------- side by side with the real setkey ----------

const SETKEY = '/opt/klips-clients/bin/setkey';
function realSetkeyUnavailable(): string | undefined {
  if (!fs.existsSync(SETKEY)) return `${SETKEY} is missing (scripts/build-setkey.sh builds it)`;
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'no C compiler (cc) for test/setkey-shim.c';
  }
  return undefined;
}
const unavailable = realSetkeyUnavailable();
if (unavailable) console.log(`# cli-setkey: side-by-side tests skipped: ${unavailable}`);

describe('side by side with the real setkey', { skip: unavailable ?? false }, () => {
  const run = promisify(execFile);
  let dir: string;
  let base: string;
  let shim: string;
  let mock: MockKame;
  before(async () => {
    dir = tempDir('klips-setkey-real-');
    base = path.join(dir, 'pfkey.sock');
    shim = path.join(dir, 'setkey-shim.so');
    const src = path.join(FIXTURES_DIR, '..', 'setkey-shim.c');
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', shim, src, '-ldl']);
    mock = await MockKame.listen(kameSocketPathFor(base), { supported: SUPPORTED.wide });
  });
  after(async () => {
    await mock.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const real = async (args: string[], input?: string) => {
    const env = { ...process.env, TZ: 'UTC', PFKEY_SHIM_SOCKET: kameSocketPathFor(base), LD_PRELOAD: shim };
    const p = run(SETKEY, args, { env, cwd: dir });
    // setkey may exit before reading stdin (-f, FILE...): a closed pipe is no failure.
    p.child.stdin!.on('error', () => {});
    if (input !== undefined) p.child.stdin!.end(input);
    else p.child.stdin!.end();
    try {
      const r = await p;
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, stdout: x.stdout, stderr: x.stderr };
    }
  };

  test('the captured statements still match the binary (requests and error lines)', async () => {
    const file = path.join(dir, 'setkey.conf');
    for (const c of STATEMENTS.cases) {
      mock.reset({ supported: SUPPORTED[c.supported] });
      fs.writeFileSync(file, `${c.statement}\n`);
      const r = await real(['-f', file]);
      assert.equal(r.code, c.exit, c.statement);
      assert.deepEqual(mock.requests.slice(1).map((b) => masked(hexOf(b))), c.requests, c.statement);
      const first = r.stderr.split('\n').filter((l) => l.startsWith('setkey: ') && !l.endsWith(': parse failed'))[0];
      assert.equal(first?.replace(file, 'FILE'), c.error, c.statement);
    }
  });

  test('one -c session through both: the same requests and the same output', async () => {
    const input = [
      'flush; spdflush;',
      'add 192.0.2.1 192.0.2.2 esp 0x1000 -m tunnel -u 5 -E aes-cbc 0x000102030405060708090a0b0c0d0e0f -A hmac-sha256 0x1111111111111111111111111111111111111111111111111111111111111111;',
      'add 2001:db8::1 2001:db8::2 ah 0x2000 -A hmac-sha1 0x0102030405060708090a0b0c0d0e0f1011121314;',
      'spdadd 10.0.1.0/24[any] 10.0.2.0/24[80] tcp -P in prio 10 ipsec esp/tunnel/192.0.2.2-192.0.2.1/unique:5;',
      'get 192.0.2.1 192.0.2.2 esp 0x1000;',
      'dump; spddump;',
      '',
    ].join('\n');
    mock.reset({ supported: SUPPORTED.wide });
    const theirs = await real(['-c'], input);
    const theirRequests = mock.requests.map((b) => masked(hexOf(b)));
    const theirPid = pidOf(mock.requests[0]);
    mock.reset();
    assert.match(theirs.stdout, /\tesp mode=any spi=4096\(0x00001000\) reqid=0\(0x00000000\)\n[^]*No SAD entries\.\nNo SPD entries\.\n$/);
    const ours = await klips(['setkey', '--socket', base, '-c'], { input });
    assert.equal(ours.code, 0, ours.stderr);
    assert.deepEqual(mock.requests.map((b) => masked(hexOf(b))), theirRequests);
    assert.equal(ours.stdout, theirs.stdout.replaceAll(`pid=${theirPid} `, `pid=${pidOf(mock.requests[0])} `));
  });

  test('-v and -H through both print the same', async () => {
    const file = path.join(dir, 'v.conf');
    fs.writeFileSync(file, 'add 192.0.2.1[4500] 192.0.2.2[4500] esp-udp 0x1003 -m tunnel -E null;\nspdadd 2001:db8::/32 2001:db9::/32 any -P out ipsec esp/tunnel/2001:db8::1-2001:db9::1/require;\n');
    mock.reset();
    const theirs = await real(['-v', '-H', '-f', file]);
    const theirPid = pidOf(mock.requests[0]);
    mock.reset();
    assert.match(theirs.stdout, /^sadb_x_nat_t_port\{ port=4500 \}$[^]*^sadb_x_policy\{ type=2 dir=2 id=0 priority=2147483648 \}$/m);
    const ours = await klips(['setkey', '--socket', base, '-v', '-H', '-f', file]);
    const ourPid = pidOf(mock.requests[0]);
    const norm = (s: string, pid: number) => s.replaceAll(`pid=${pid}\n`, 'pid=X\n').replace(/^00000000: (.. ){12}.. .. .. .. $/gm, '00000000: (header)');
    assert.equal(norm(ours.stdout, ourPid), norm(theirs.stdout, theirPid));
  });

  test('stored messages: setkey FILE and klips setkey FILE print the same', async () => {
    const msgs = [
      saDump(),
      saDump({ header: { type: SADB_DUMP, satype: 2, seq: 1, pid: 9 }, keyEncrypt: undefined, keyAuth: KEY(64), addressSrc: A('2001:db8::1'), addressDst: A('2001:db8::2'), sa: { spi: 0xdeadbeef, replay: 0, state: 2, auth: 7, encrypt: 0, flags: 0 } }),
      saDump({ addressSrc: A('192.0.2.1', { port: 4500 }), addressDst: A('192.0.2.2', { port: 4500 }), natTType: { type: 2 }, natTSport: { port: 4500 }, natTDport: { port: 4501 }, natTOa: A('10.0.0.1') }),
      saDump({ header: { type: SADB_DUMP, satype: 9, seq: 0, pid: 77 }, keyAuth: undefined, keyEncrypt: undefined, sa: { spi: 0x3000, replay: 0, state: 1, auth: 0, encrypt: 2, flags: 0x80 }, xSa2: { mode: 3, sequence: 0, reqid: 0 } }),
      spDump(),
      spDump({ addressSrc: A('10.1.0.5', { proto: 6, port: 80 }), addressDst: A('10.2.0.0', { prefixlen: 24, proto: 6 }), policy: { type: 2, dir: 1, id: 8, priority: 0x7fffff9c, requests: [{ proto: 50, mode: 1, level: 3, reqid: 5 }, { proto: 51, mode: 1, level: 1, reqid: 0 }, { proto: 108, mode: 2, level: 3, reqid: 0x4001, src: { family: 2, port: 500, addr: '1.1.1.1' }, dst: { family: 2, port: 4500, addr: '2.2.2.2' } }] } }),
      spDump({ addressSrc: A('2001:db8::', { prefixlen: 32, proto: 47, port: 0x0102 }), addressDst: A('2001:db9::1', { proto: 47, port: 0x0304 }), policy: { type: 0, dir: 2, id: 25, priority: 0x40000010, requests: [] } }),
      spDump({ policy: { type: 4, dir: 1, id: 11, priority: 0, requests: [] } }),
    ];
    const file = path.join(dir, 'msgs.bin');
    fs.writeFileSync(file, Buffer.concat(msgs.map((m) => buildMessage(m))));
    const theirs = await real([file]);
    assert.equal(theirs.stdout.match(/^\tsadb_seq=|^\trefcnt=/gm)?.length, msgs.length);
    const ours = await klips(['setkey', file]);
    const norm = (s: string) => s.replace(/current: [A-Z][a-z]{2} [ \d]\d [\d:]{8} \d{4}/g, 'current: X').replace(/diff: \d+/g, 'diff: X');
    // The one deliberate difference: upper-layer protocol 255 is "any" (setkey prints 255
    // when /etc/protocols has no name for it, as Debian's has not).
    assert.equal(norm(ours.stdout), norm(theirs.stdout).replaceAll('[any] 255\n', '[any] any\n'));
  });
});

// ---------- end to end against klipsd ----------

describe('end to end against klipsd\'s KAME socket', () => {
  test('add, dump, get, delete, flush and the monitor, as setkey users run them', async (t) => {
    const d = await startDaemon();
    try {
      if (!fs.existsSync(kameSocketPathFor(d.socket))) {
        console.log('# cli-setkey: end-to-end test skipped: klipsd has no KAME socket');
        t.skip('klipsd has no KAME socket');
        return;
      }
      const S = ['setkey', '--socket', d.socket];
      const ok = async (args: string[], input?: string) => {
        const r = await klips([...S, ...args], { input });
        assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
        return r.stdout;
      };
      const mon = klipsBackground([...S, '-x']);
      try {
        // Linux echoes X_PROMISC to every socket, the monitor's own included: its first time line.
        await waitUntil('the monitor\'s X_PROMISC echo', () => /^\d\d:\d\d:\d\d\.\d{6} $/m.test(mon.stdout()));
        await ok(['-c'], [
          'flush; spdflush;',
          'add 192.0.2.1 192.0.2.2 esp 0x1000 -m tunnel -u 100 -E aes-cbc 0x000102030405060708090a0b0c0d0e0f -A hmac-sha1 0x0102030405060708090a0b0c0d0e0f1011121314;',
          'add 192.0.2.2 192.0.2.1 esp 0x1001 -m tunnel -u 101 -E aes-cbc 0x000102030405060708090a0b0c0d0e0f -A hmac-sha1 0x0102030405060708090a0b0c0d0e0f1011121314;',
          'spdadd 10.0.1.0/24 10.0.2.0/24 any -P out ipsec esp/tunnel/192.0.2.1-192.0.2.2/require;',
          '',
        ].join('\n'));
        await within(10000, 'the monitor sees the ADD', waitUntil('ADD in the monitor', () => mon.stdout().includes('sadb_msg{ version=2 type=3 ')));
      } finally {
        await mon.stop();
      }
      const sad = await ok(['-D']);
      assert.match(sad, /^192\.0\.2\.1 192\.0\.2\.2 \n\tesp mode=tunnel spi=4096\(0x00001000\) reqid=100\(0x00000064\)\n\tE: aes-cbc  00010203 04050607 08090a0b 0c0d0e0f\n\tA: hmac-sha1  01020304 05060708 090a0b0c 0d0e0f10 11121314\n\tseq=0x[0-9a-f]{8} replay=\d+ flags=0x[0-9a-f]{8} state=mature \n\tcreated: .{20}\tcurrent: .{20}\n\tdiff: \d+\(s\)\thard: \d+\(s\)\tsoft: \d+\(s\)\n/m);
      assert.match(sad, /^\tsadb_seq=\d+ pid=\d+ refcnt=\d+$/m);
      assert.equal(sad.match(/^\tesp mode=tunnel /gm)?.length, 2);
      const spd = await ok(['-DP']);
      assert.match(spd, /^10\.0\.1\.0\/24\[any\] 10\.0\.2\.0\/24\[any\] any\n\tout prio def ipsec\n\tesp\/tunnel\/192\.0\.2\.1-192\.0\.2\.2\/require\n\tcreated: .{20}  lastused: .{20}\n\tlifetime: \d+\(s\) validtime: \d+\(s\)\n\tspid=\d+ seq=\d+ pid=\d+\n\trefcnt=\d+\n/m);
      assert.match(await ok(['-c'], 'get 192.0.2.2 192.0.2.1 esp 0x1001;\n'), /spi=4097\(0x00001001\) reqid=101/);
      // Linux's errnos, in setkey's words: EEXIST; ESRCH for a missing SA; ENOENT (setkey's
      // "No entry") for a missing policy.
      let r = await klips([...S, '-c'], { input: 'add 192.0.2.1 192.0.2.2 esp 0x1000 -E aes-cbc 0x000102030405060708090a0b0c0d0e0f;\ndelete 192.0.2.1 192.0.2.2 esp 0x7777;\nspddelete 10.9.0.0/16 10.8.0.0/16 any -P out;\n' });
      assert.deepEqual([r.code, r.stderr], [1, 'setkey: <stdin>,1: File exists\nsetkey: <stdin>,2: No such process\nsetkey: <stdin>,3: No entry\n']);
      await ok(['-c'], 'deleteall 192.0.2.1 192.0.2.2 esp;\n');
      assert.doesNotMatch(await ok(['-D']), /spi=4096/);
      await ok(['-F']);
      await ok(['-FP']);
      assert.equal(await ok(['-D']), 'No SAD entries.\n');
      assert.equal(await ok(['-DP']), 'No SPD entries.\n');
      r = await klips([...S, '-f', '-'], { input: 'add 192.0.2.1 192.0.2.2 esp 0x1000 -E aes-cbc 0x00;\n' });
      assert.deepEqual([r.code, r.stderr], [1, "setkey: <stdin>,1: Invalid key length at `0x00'\n"]);
    } finally {
      await d.stop();
    }
  });
});
