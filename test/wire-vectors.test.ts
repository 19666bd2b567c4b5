/**
 * Golden vectors: the exact bytes real PF_KEY v2 clients sent (openswan's KLIPS tools and
 * racoon's setkey, test/vectors/clients) and the exact bytes a real Linux kernel
 * answered (test/vectors/linux-af_key). KLIPS-dialect requests must parse, decode
 * to what the capture's own header summary says, and build back byte for byte; setkey's
 * KAME-dialect requests must be refused exactly as the KLIPS rules say.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseMessage, buildMessage, presentExtensions, PfkeyError, ERRNO, DEBUG_SUBSYSTEMS,
  SADB_X_SAFLAGS_CLEARFLOW, AF_INET, AF_INET6, type PfkeyMessage,
} from '../src/wire/index.js';
import {
  hex, unhex, extHeaders, loadClientFiles, klipsRequests,
  linuxDatagrams, type ClientRequest,
} from './wire-helpers.js';

/** The one request of a named klips case (first request unless an index is given). */
function klipsCase(name: string, i = 0): { req: ClientRequest; m: PfkeyMessage; b: Uint8Array } {
  const found = klipsRequests().find((r) => r.name === `${name}#${i}`);
  assert.ok(found, `no klips vector named ${name}#${i}`);
  const b = unhex(found.req.hex);
  return { req: found.req, m: parseMessage(b, { direction: 'in' }), b };
}

const key = (h: string) => unhex(h);

// ---------------------------------------------------------------- klips dialect, all cases

test('klips client vectors: every request parses, matches its header summary and rebuilds byte for byte', (t) => {
  const all = klipsRequests();
  // openswan-spi 21 + 2.6.52 5 + eroute 17 + spigrp 6 + klipsdebug 6 + pf_key 6 requests.
  assert.equal(all.length, 61, 'number of klips-dialect requests in the captures');
  for (const { name, req } of all) {
    const b = unhex(req.hex);
    let m: PfkeyMessage;
    try {
      m = parseMessage(b, { direction: 'in' });
    } catch (e) {
      assert.fail(`${name}: refused: ${(e as Error).message}`);
    }
    const h = m.header;
    assert.deepEqual(
      [h.version, h.type, h.satype, h.len, h.seq, h.pid, h.errno, h.reserved],
      [req.version, req.type, req.satype, req.len, req.seq, req.pid, req.errno, 0],
      `${name}: header`,
    );
    assert.equal(h.len * 8, b.length, `${name}: len counts 8-byte units`);
    const present = presentExtensions(m).map((x) => x.type);
    assert.deepEqual(present, [...req.exts].sort((a, z) => a - z), `${name}: extension types present`);
    // extOrder is kept exactly when the wire order was not ascending.
    const ascending = req.exts.every((x, i) => i === 0 || req.exts[i - 1] < x);
    if (ascending) assert.equal(m.extOrder, undefined, `${name}: no extOrder for ascending input`);
    else assert.deepEqual(m.extOrder, req.exts, `${name}: extOrder keeps the wire order`);
    assert.equal(hex(buildMessage(m)), req.hex, `${name}: build(parse(bytes)) === bytes`);
  }
});

// ---------------------------------------------------------------- hand-checked decodes

test('spi-esp-3des-sha1: 24-byte SA, IPv4 addresses, 160- and 192-bit keys', (t) => {
  const { m, b } = klipsCase('spi-esp-3des-sha1');
  // Header 02 03 00 03 | 1300 | 0000 | 01000000 | 927f0000: ADD, ESP, 19 units, seq 1, pid 0x7f92.
  assert.equal(hex(b.subarray(0, 16)), '020300031300000001000000927f0000');
  assert.deepEqual(m.header, { version: 2, type: 3, errno: 0, satype: 3, len: 19, reserved: 0, seq: 1, pid: 0x7f92 });
  // SA: 0300 0100 | 12345678 (network order) | replay 00 state 01 auth 03 encrypt 03 | flags 0 | ref 0 | 0.
  assert.equal(hex(b.subarray(16, 40)), '030001001234567800010303000000000000000000000000');
  assert.deepEqual(m.sa, { spi: 0x12345678, replay: 0, state: 1, auth: 3, encrypt: 3, flags: 0, ref: 0 });
  assert.deepEqual(m.addressSrc, { proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr: '192.0.2.1' });
  assert.deepEqual(m.addressDst, { proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr: '192.0.2.2' });
  // KEY_AUTH: 0400 0800 | a000 (160 bits) 0000 | 20 key bytes | 4 bytes padding.
  assert.deepEqual(m.keyAuth, { bits: 160, key: key('0102030405060708090a0b0c0d0e0f1011121314') });
  assert.deepEqual(m.keyEncrypt, { bits: 192, key: key('0102030405060708090a0b0c0d0e0f101112131415161718') });
});

test('spi-esp-natt: NAT-T type 2 (ESPINUDP_WITH_NON_ESP), sport 4501, dport 4500 (host order)', (t) => {
  const { m, b } = klipsCase('spi-esp-natt');
  // 01001b00 02000000 | 01001c00 9511 0000 | 01001d00 9411 0000
  assert.equal(hex(b.subarray(152)), '01001b000200000001001c009511000001001d0094110000');
  assert.deepEqual(m.natTType, { type: 2 });
  assert.deepEqual(m.natTSport, { port: 4501 });
  assert.deepEqual(m.natTDport, { port: 4500 });
});

test('spi-esp-saref: X_SAREF me 7 him 8', (t) => {
  const { m, b } = klipsCase('spi-esp-saref');
  assert.equal(hex(b.subarray(152)), '02002000070000000800000000000000');
  assert.deepEqual(m.saref, { me: 7, him: 8 });
});

test('spi-esp-outif: X_PLUMBIF ifnum 5', (t) => {
  const { m, b } = klipsCase('spi-esp-outif');
  assert.equal(hex(b.subarray(152)), '01001f0005000000');
  assert.deepEqual(m.plumbif, { ifnum: 5 });
});

test('klipsdebug-all: eleven subsystem words 0xffffffff; verbose (the twelfth) stays 0', (t) => {
  const { m, b } = klipsCase('klipsdebug-all');
  // 0700 1900 | 11 x ffffffff | 00000000 (verbose) | 00000000 (reserved): klipsdebug --all
  // leaves verbose alone, as the captured bytes show.
  assert.equal(hex(b.subarray(16)), '07001900' + 'ffffffff'.repeat(11) + '00000000' + '00000000');
  const want = Object.fromEntries(DEBUG_SUBSYSTEMS.map((s) => [s, s === 'verbose' ? 0 : 0xffffffff]));
  assert.deepEqual(m.debug, want);
});

test('klipsdebug-set-verbose: only verbose set (plus the netlink set-mode bit)', (t) => {
  const { m } = klipsCase('klipsdebug-set-verbose');
  const want = Object.fromEntries(DEBUG_SUBSYSTEMS.map((s) => [s, 0]));
  want.netlink = 0x80000000;
  want.verbose = 0xffffffff;
  assert.deepEqual(m.debug, want);
});

test('spi-ah-md5-life: 40-byte lifetimes, hard addtime 200, soft addtime 100, packets 0', (t) => {
  const { m, b } = klipsCase('spi-ah-md5-life');
  // SA: spi 0x1003, MATURE, auth MD5 (2), encrypt 0, 24-byte form with ref 0.
  assert.deepEqual(m.sa, { spi: 0x1003, replay: 0, state: 1, auth: 2, encrypt: 0, flags: 0, ref: 0 });
  // LIFETIME_HARD: 0500 0300 | allocations 0 | bytes 0 | addtime c8 (200) | usetime 0 | packets 0 | reserved 0
  assert.equal(hex(b.subarray(40, 80)), '05000300' + '00000000' + '0'.repeat(16) + 'c800000000000000' + '0'.repeat(16) + '00000000' + '00000000');
  assert.deepEqual(m.lifetimeHard, { allocations: 0, bytes: 0n, addtime: 200n, usetime: 0n, packets: 0 });
  assert.equal(hex(b.subarray(80, 120)), '05000400' + '00000000' + '0'.repeat(16) + '6400000000000000' + '0'.repeat(16) + '00000000' + '00000000');
  assert.deepEqual(m.lifetimeSoft, { allocations: 0, bytes: 0n, addtime: 100n, usetime: 0n, packets: 0 });
  assert.deepEqual(m.keyAuth, { bits: 128, key: key('0102030405060708090a0b0c0d0e0f10') });
  assert.equal(m.keyEncrypt, undefined);
});

test('spi-esp-life-replay: replay 32 and 40-byte lifetimes with allocations/bytes/addtime/usetime', (t) => {
  const { m } = klipsCase('spi-esp-life-replay');
  assert.equal(m.sa?.replay, 32);
  // hard: 14000000 | 40420f00.. (1000000) | 100e.. (3600) | b004.. (1200)
  assert.deepEqual(m.lifetimeHard, { allocations: 20, bytes: 1000000n, addtime: 3600n, usetime: 1200n, packets: 0 });
  // soft: 0a000000 | a0bb0d00.. (900000) | b80b.. (3000) | e803.. (1000)
  assert.deepEqual(m.lifetimeSoft, { allocations: 10, bytes: 900000n, addtime: 3000n, usetime: 1000n, packets: 0 });
});

test('eroute-clear: X_DELFLOW carrying only an SA with CLEARFLOW', (t) => {
  const { m, b } = klipsCase('eroute-clear');
  assert.equal(hex(b), '020f000005000000010000008b010000' + '030001000000000000000000040000000000000000000000');
  assert.equal(m.sa?.flags, SADB_X_SAFLAGS_CLEARFLOW);
  assert.deepEqual(m.sa, { spi: 0, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 4, ref: 0 });
  assert.equal(m.addressSrcFlow, undefined);
});

test('eroute-add-esp: flow and mask addresses 10.0.1.0/24 -> 10.0.2.0/24', (t) => {
  const { m } = klipsCase('eroute-add-esp');
  const v4 = (addr: string) => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });
  assert.deepEqual(m.addressSrc, v4('0.0.0.0'));
  assert.deepEqual(m.addressDst, v4('192.0.2.2'));
  assert.deepEqual(m.addressSrcFlow, v4('10.0.1.0'));
  assert.deepEqual(m.addressDstFlow, v4('10.0.2.0'));
  assert.deepEqual(m.addressSrcMask, v4('255.255.255.0'));
  assert.deepEqual(m.addressDstMask, v4('255.255.255.0'));
});

test('spi-esp-v6: 40-byte IPv6 addresses 2001:db8::1 and 2001:db8::2, SPI 0x200', (t) => {
  const { m, b } = klipsCase('spi-esp-v6');
  // 0500 0500 | proto 0 prefixlen 0 | 0000 | 0a00 port 0000 | flowinfo 0 | 2001:0db8::1 | scope 0 | pad
  assert.equal(hex(b.subarray(40, 80)), '05000500000000000a000000' + '00000000' + '20010db8000000000000000000000001' + '00000000' + '00000000');
  const v6 = (addr: string) => ({ proto: 0, prefixlen: 0, family: AF_INET6, port: 0, addr, flowinfo: 0, scopeId: 0 });
  assert.deepEqual(m.addressSrc, v6('2001:db8::1'));
  assert.deepEqual(m.addressDst, v6('2001:db8::2'));
  assert.deepEqual(m.sa, { spi: 0x200, replay: 0, state: 1, auth: 2, encrypt: 3, flags: 0, ref: 0 });
});

test('spigrp-ipip-esp: X_SATYPE2, X_SA2 and X_ADDRESS_DST2', (t) => {
  const { m } = klipsCase('spigrp-ipip-esp');
  assert.equal(m.header.satype, 9);
  assert.equal(m.satype2?.satype, 3);
  assert.ok(m.sa2 && m.addressDst2, 'second SA and destination present');
});

test('pf_key-default: four header-only REGISTERs for AH, ESP, IPIP, COMP', (t) => {
  const satypes = [0, 1, 2, 3].map((i) => klipsCase('pf_key-default', i).m.header.satype);
  assert.deepEqual(satypes, [2, 3, 9, 10]);
});

// ---------------------------------------------------------------- kame dialect (setkey)

/**
 * What the KLIPS rules make of one setkey request, derived by hand from message.ts and
 * rules.ts:
 * - header-only FLUSH (9) / DUMP (10) with any SA type, and X_PROMISC (11): valid KLIPS too;
 * - REGISTER with SA type 0: EINVAL at the satype byte (offset 3);
 * - KAME 13 X_SPDUPDATE / 14 X_SPDADD are KLIPS X_GRPSA / X_ADDFLOW, which need an SA type
 *   with a protocol: setkey sends 0, EINVAL at offset 3;
 * - KAME 18 X_SPDDUMP / 19 X_SPDFLUSH are KLIPS X_PLUMBIF / X_UNPLUMBIF, which require
 *   X_PLUMBIF: EINVAL at offset 0 (missing extension);
 * - KAME 15 X_SPDDELETE is KLIPS X_DELFLOW: its first extension 18 (X_POLICY to setkey,
 *   X_SATYPE2 to KLIPS) is not permitted: EINVAL at that extension;
 * - ADD / GET / DELETE carry KAME's X_SA2 (19), not permitted there: EINVAL at ext 19;
 *   except the ESP NULL add, whose KEY_ENCRYPT (first extension) has 0 bits: EINVAL there;
 * - GETSPI carries an SA extension (setkey's), not permitted in GETSPI: EINVAL at ext 1.
 */
function kameExpectation(name: string, r: ClientRequest): 'accept' | { errno: number; offset: number; exttype?: number } {
  const b = unhex(r.hex);
  const exts = extHeaders(b);
  const at = (type: number) => {
    const e = exts.find((x) => x.type === type);
    assert.ok(e, `${name}: expected extension ${type}`);
    return { errno: ERRNO.EINVAL, offset: e.off, exttype: type };
  };
  if (exts.length === 0) {
    if (r.type === 9 || r.type === 10 || r.type === 11) return 'accept';
    if (r.type === 7 && r.satype === 0) return { errno: ERRNO.EINVAL, offset: 3 };
    if (r.type === 18 || r.type === 19) return { errno: ERRNO.EINVAL, offset: 0 };
  }
  if ((r.type === 13 || r.type === 14) && r.satype === 0) return { errno: ERRNO.EINVAL, offset: 3 };
  if (r.type === 15) return at(18);
  if (name.startsWith('setkey-add-esp-null-auth')) {
    assert.equal(exts[0].type, 9);
    assert.equal(new DataView(b.buffer).getUint16(exts[0].off + 4, true), 0, 'setkey sends a 0-bit NULL key');
    return at(9);
  }
  if (r.type === 3 || r.type === 4 || r.type === 5) return at(19);
  if (r.type === 1) return at(1);
  throw new Error(`${name}: no expectation for type ${r.type}`);
}

test('kame (setkey) requests: refused with EINVAL except the header-only ones KLIPS shares', (t) => {
  const files = loadClientFiles().filter((f) => f.dialect === 'kame');
  assert.equal(files.length, 1, 'one kame capture file');
  let accepted = 0;
  let refused = 0;
  for (const c of files[0].cases) {
    c.requests.forEach((r, i) => {
      const name = `${c.name}#${i}`;
      const want = kameExpectation(name, r);
      const b = unhex(r.hex);
      if (want === 'accept') {
        const m = parseMessage(b, { direction: 'in' });
        assert.equal(m.header.type, r.type, name);
        assert.equal(hex(buildMessage(m)), r.hex, `${name}: round trip`);
        accepted++;
        return;
      }
      let err: unknown;
      try {
        parseMessage(b, { direction: 'in' });
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof PfkeyError, `${name}: expected a refusal`);
      assert.equal(err.errno, want.errno, `${name}: errno (${err.message})`);
      assert.equal(err.offset, want.offset, `${name}: offset (${err.message})`);
      assert.equal(err.exttype, want.exttype, `${name}: exttype (${err.message})`);
      refused++;
    });
  }
  // D, F, x-promisc, deleteall's DUMP, flush, flush-esp, dump, dump-ah, f-script's FLUSH.
  assert.equal(accepted, 9, 'header-only requests KLIPS accepts');
  assert.equal(refused, 64, 'requests refused');
});

// ---------------------------------------------------------------- Linux af_key replies

/** Message types 13+ and extension types 17+ mean other things in Linux's numbering. */
function linuxOnly(b: Uint8Array): string | undefined {
  if (b[1] >= 13) return `message type ${b[1]} (Linux SPD numbering)`;
  const e = extHeaders(b).find((x) => x.type >= 17);
  return e ? `extension ${e.type}` : undefined;
}

test('linux af_key: replies made of RFC 2367 parts parse (out) and rebuild byte for byte', (t) => {
  const seen = new Set<string>();
  let covered = 0;
  let copies = 0;
  let prefixlen = 0;
  let badSatype = 0;
  let skipped = 0;
  for (const d of linuxDatagrams()) {
    if (seen.has(d.hex)) continue;
    seen.add(d.hex);
    const b = unhex(d.hex);
    if (linuxOnly(b)) {
      skipped++;
      continue;
    }
    // Linux writes sadb_address_prefixlen 32/128; KLIPS refuses any prefix length with
    // EAFNOSUPPORT (it uses mask extensions instead).
    const dv = new DataView(b.buffer);
    const pfx = extHeaders(b).find((x) => [5, 6, 7].includes(x.type) && b[x.off + 5] !== 0);
    if (pfx) {
      assert.throws(() => parseMessage(b, { direction: 'out' }), (e: unknown) => e instanceof PfkeyError && e.errno === ERRNO.EAFNOSUPPORT && e.exttype === pfx.type, d.where);
      prefixlen++;
      continue;
    }
    // Linux echoes the request's SA type in error replies (99, 5, 0 for ADD), which an
    // error reply may (the SA type rules apply to errno 0 only); a successful reply with
    // an SA type KLIPS has no protocol for (REGISTER UNSPEC) is EINVAL at the satype byte.
    const satype = b[3];
    const ok = b[2] === 0;
    const needsProto = ok && [1, 2, 3, 4, 5].includes(b[1]) && ![2, 3, 9, 10, 11].includes(satype);
    const needsSatype = ok && [6, 7, 8].includes(b[1]) && satype === 0;
    if (needsProto || needsSatype) {
      assert.throws(() => parseMessage(b, { direction: 'out' }), (e: unknown) => e instanceof PfkeyError && e.errno === ERRNO.EINVAL && e.offset === 3, d.where);
      badSatype++;
      continue;
    }
    // A promiscuous socket's copy of a request is a request: parse it inbound.
    const dir = d.request === d.hex ? 'in' : 'out';
    if (dir === 'in') copies++;
    let m: PfkeyMessage;
    try {
      m = parseMessage(b, { direction: dir });
    } catch (e) {
      assert.fail(`${d.where}: ${d.hex.slice(0, 32)}… refused: ${(e as Error).message}`);
    }
    assert.equal(m.header.len * 8, dv.byteLength);
    assert.equal(hex(buildMessage(m)), d.hex, `${d.where}: build(parse(bytes)) === bytes`);
    covered++;
  }
  t.diagnostic(`linux af_key: ${covered} round-tripped (${copies} request copies), ${prefixlen} refused for prefixlen, ${badSatype} for SA type, ${skipped} Linux-only skipped`);
  assert.ok(covered > 0, 'some Linux replies were covered');
  assert.ok(prefixlen > 0 && badSatype > 0, 'the dialect differences were seen');
});

test('linux af_key: REGISTER reply for ESP decodes its supported algorithm lists', (t) => {
  const d = linuxDatagrams().find((x) => x.where.startsWith('01_register.json') && x.hex.startsWith('02070003'));
  assert.ok(d, 'an ESP REGISTER reply');
  const m = parseMessage(unhex(d.hex), { direction: 'out' });
  // SUPPORTED_AUTH: 0900 0e00 | 00000000 | fb 00 0000 0000 0000 (NULL) | 02 00 8000 8000 0000 (MD5) …
  assert.deepEqual(m.supportedAuth?.algs.slice(0, 3), [
    { id: 251, ivlen: 0, minbits: 0, maxbits: 0 },
    { id: 2, ivlen: 0, minbits: 128, maxbits: 128 },
    { id: 3, ivlen: 0, minbits: 160, maxbits: 160 },
  ]);
  assert.equal(m.supportedAuth?.algs.length, 8);
  assert.equal(m.supportedEncrypt?.algs[0].id, 11);
});
