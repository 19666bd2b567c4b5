/**
 * The KAME/Linux dialect of the wire codec: every datagram Debian's Linux 6.1 sent in the
 * captured exchanges (test/vectors/linux-af_key) and every request the captures sent to it
 * parse in the KAME numbering and build back byte for byte, or, for a request Linux
 * refused while reading it, are refused with Linux's errno; every request ipsec-tools'
 * setkey sent (test/vectors/clients/ipsec-tools-setkey.json) parses and builds back; and
 * hand-checked decodes of what differs from KLIPS (X_POLICY and its ipsecrequests, X_SA2,
 * NAT-T ports in network order, SPIRANGE in host order, prefix lengths, types above 26).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseMessage, buildMessage, headerFault, presentExtensions, ERRNO, PfkeyError, AF_INET,
  SADB_X_SPDADD, SADB_GETSPI, SADB_SATYPE_ESP, SADB_SASTATE_LARVAL, IPSEC_MODE_TUNNEL,
  IPSEC_MODE_TRANSPORT, IPSEC_LEVEL_REQUIRE, IPSEC_LEVEL_UNIQUE, IPSEC_POLICY_IPSEC, IPSEC_DIR_OUTBOUND,
  IPPROTO_ESP, KAME_RULES, KAME_SADB_MAX, RULES, SADB_MAX,
  type KameMessage, type KameMessageInput,
} from '../src/wire/index.js';
import { hex, unhex, msg, loadClientFiles, linuxDatagrams, assertRefused } from './wire-helpers.js';
import { readVector } from './vectors.js';

/** One request a capture sent to Linux, with what Linux made of it. */
interface LinuxStep {
  where: string;
  request: string;
  /** send()'s errno (0: accepted). */
  sendErrno: number;
  /** The header-only errno reply the sender got for this request (same type and seq), if any. */
  replyErrno: number;
}

const STEP_FILES = ['01_register', '02_sa_lifecycle', '03_expire', '04_flush_promisc', '05_bad_inputs', '06_spd', '07_acquire'];

function linuxSteps(): LinuxStep[] {
  const out: LinuxStep[] = [];
  const errnoReplyIn = (request: string, got: string[]): number => {
    const q = unhex(request);
    for (const h of got) {
      const b = unhex(h);
      if (b.length === 16 && b[1] === q[1] && b[2] !== 0 && hex(b.subarray(8, 12)) === hex(q.subarray(8, 12))) return b[2];
    }
    return 0;
  };
  const basic = readVector<Array<{ name: string; sock: number; request: string; send_rc: [number, number]; received: Record<string, string[]> }>>('linux-af_key/basic-exchanges.json');
  for (const s of basic) {
    out.push({ where: `basic ${s.name}`, request: s.request, sendErrno: s.send_rc[0] < 0 ? s.send_rc[1] : 0, replyErrno: errnoReplyIn(s.request, s.received[String(s.sock)] ?? []) });
  }
  for (const f of STEP_FILES) {
    const j = readVector<{ steps: Array<{ step: number; send?: string; note?: string; request?: string; send_errno?: number; received?: Record<string, Array<{ hex: string }>> }> }>(`linux-af_key/${f}.json`);
    for (const s of j.steps) {
      if (!s.request || !s.send) continue;
      const got = (s.received?.[s.send] ?? []).map((d) => d.hex);
      out.push({ where: `${f}[${s.step}] ${s.note}`, request: s.request, sendErrno: s.send_errno ?? 0, replyErrno: errnoReplyIn(s.request, got) });
    }
  }
  return out;
}

test('KAME_RULES covers Linux message types 0..24; RULES (KLIPS, 0..19) is untouched', () => {
  assert.equal(KAME_RULES.length, KAME_SADB_MAX + 1);
  assert.equal(RULES.length, SADB_MAX + 1);
  // Linux permits every extension everywhere (its handlers skip what they do not read).
  for (const r of KAME_RULES) assert.equal(r.in.permitted, 0x3ffffff);
});

test('linux af_key: every datagram the kernel sent parses in the KAME numbering and builds back byte for byte', () => {
  const seen = new Set<string>();
  let replies = 0;
  let copies = 0;
  for (const d of linuxDatagrams()) {
    if (seen.has(d.hex)) continue;
    seen.add(d.hex);
    // A promiscuous socket's copy of a request is a request.
    const dir = d.request === d.hex ? 'in' : 'out';
    let m: KameMessage;
    try {
      m = parseMessage(unhex(d.hex), { dialect: 'kame', direction: dir });
    } catch (e) {
      assert.fail(`${d.where}: ${d.hex.slice(0, 32)}… refused: ${(e as Error).message}`);
    }
    assert.equal(m.dialect, 'kame');
    assert.equal(hex(buildMessage(m)), d.hex, `${d.where}: build(parse(bytes)) === bytes`);
    if (dir === 'in') copies++;
    else replies++;
  }
  assert.equal(replies, 110, 'distinct kernel messages covered');
  assert.ok(copies > 0, 'promiscuous copies of requests covered');
});

test('linux af_key: every request sent to the kernel round-trips, or is refused with the errno Linux gave while reading it', () => {
  let roundTrips = 0;
  let headerRefusals = 0;
  let parseRefusals = 0;
  for (const s of linuxSteps()) {
    const b = unhex(s.request);
    const fault = headerFault(b, 'kame');
    if (s.sendErrno) {
      // send() itself failed: no message existed, so the header check must refuse it with that errno.
      assert.ok(fault, `${s.where}: Linux's send() failed with ${s.sendErrno}, our header check passed it`);
      assert.equal(fault.errno, s.sendErrno, `${s.where}: header errno (${fault.why})`);
      headerRefusals++;
      continue;
    }
    assert.equal(fault, undefined, `${s.where}: Linux accepted the header`);
    let m: KameMessage | undefined;
    try {
      m = parseMessage(b, { dialect: 'kame', direction: 'in' });
    } catch (e) {
      assert.ok(e instanceof PfkeyError, String(e));
      assert.equal(e.errno, s.replyErrno, `${s.where}: refused with ${e.message}, Linux answered errno ${s.replyErrno}`);
      parseRefusals++;
      continue;
    }
    assert.equal(hex(buildMessage(m)), s.request, `${s.where}: round trip`);
    roundTrips++;
  }
  // Of the 22 basic exchanges and the numbered probes' 115 requests.
  assert.equal(roundTrips, 111, 'requests round-tripped');
  assert.equal(headerRefusals, 16, 'send() failures reproduced by the header check');
  assert.equal(parseRefusals, 12, 'requests Linux refused while reading them');
});

test('setkey (ipsec-tools 0.9.1): every request parses in the KAME numbering and builds back byte for byte', () => {
  const kame = loadClientFiles().filter((f) => f.dialect === 'kame');
  assert.equal(kame.length, 1);
  let n = 0;
  for (const c of kame[0].cases) {
    c.requests.forEach((r, i) => {
      const m = parseMessage(unhex(r.hex), { dialect: 'kame', direction: 'in' });
      assert.deepEqual(presentExtensions(m).map((x) => x.type), [...r.exts].sort((a, z) => a - z), `${c.name}#${i}: extensions`);
      assert.equal(hex(buildMessage(m)), r.hex, `${c.name}#${i}: round trip`);
      n++;
    });
  }
  assert.equal(n, 73, 'setkey requests');
});

test('setkey spdadd tunnel: X_POLICY with one ipsecrequest (esp/tunnel/192.0.2.1-192.0.2.2/require), priority 0x80000000', () => {
  const c = loadClientFiles().find((f) => f.dialect === 'kame')!.cases.find((x) => x.name === 'setkey-spdadd-tunnel-out')!;
  const b = unhex(c.requests[1].hex);
  const m = parseMessage(b, { dialect: 'kame' });
  assert.equal(m.header.type, SADB_X_SPDADD);
  // ADDRESS_SRC: 0300 0500 | proto ff (any) prefixlen 18 (24) | 0000 | sockaddr_in 10.1.0.0
  assert.deepEqual(m.addressSrc, { proto: 255, prefixlen: 24, family: AF_INET, port: 0, addr: '10.0.1.0' });
  assert.deepEqual(m.policy, {
    type: IPSEC_POLICY_IPSEC, dir: IPSEC_DIR_OUTBOUND, id: 0, priority: 0x80000000,
    requests: [{
      proto: IPPROTO_ESP, mode: IPSEC_MODE_TUNNEL, level: IPSEC_LEVEL_REQUIRE, reqid: 0,
      src: { family: AF_INET, port: 0, addr: '192.0.2.1' }, dst: { family: AF_INET, port: 0, addr: '192.0.2.2' },
    }],
  });
  // The ipsecrequest: 3000 (48 bytes) 3200 (ESP) 02 (tunnel) 02 (require) 0000 | reqid 0 | 0 | two sockaddr_in.
  const pol = b.indexOf(0x12, 16) - 2;
  assert.equal(hex(b.subarray(pol + 16, pol + 32)), '30003200020200000000000000000000');
});

test('setkey spdadd unique: level unique with reqid 100; transport requests carry no sockaddrs', () => {
  const cases = loadClientFiles().find((f) => f.dialect === 'kame')!.cases;
  const uniq = parseMessage(unhex(cases.find((x) => x.name === 'setkey-spdadd-unique-reqid')!.requests[1].hex), { dialect: 'kame' });
  assert.equal(uniq.policy!.requests[0].level, IPSEC_LEVEL_UNIQUE);
  assert.equal(uniq.policy!.requests[0].reqid, 100);
  const tp = parseMessage(unhex(cases.find((x) => x.name === 'setkey-spdadd-transport-ports')!.requests[1].hex), { dialect: 'kame' });
  assert.deepEqual(tp.policy!.requests.map((r) => [r.proto, r.mode, r.level, r.src]), [[50, IPSEC_MODE_TRANSPORT, 2, undefined], [51, IPSEC_MODE_TRANSPORT, 1, undefined]]);
  // The selector's ports live in the sockaddrs (dport 80) and the upper protocol in sadb_address_proto (6, TCP).
  assert.equal(tp.addressDst!.port, 80);
  assert.equal(tp.addressDst!.proto, 6);
});

test('setkey add with NAT-T: types 20-22 are NAT_T_TYPE/SPORT/DPORT, ports in network order (4500); X_SA2 mode tunnel', () => {
  const c = loadClientFiles().find((f) => f.dialect === 'kame')!.cases.find((x) => x.name === 'setkey-add-esp-udp-natt')!;
  const b = unhex(c.requests[1].hex);
  const m = parseMessage(b, { dialect: 'kame' });
  assert.deepEqual(m.natTType, { type: 2 });
  assert.deepEqual(m.natTSport, { port: 4500 });
  assert.deepEqual(m.natTDport, { port: 4500 });
  assert.deepEqual(m.xSa2, { mode: IPSEC_MODE_TUNNEL, sequence: 0, reqid: 0 });
  // The same bytes in the KLIPS numbering: 19 is a second sadb_sa, which is 16 bytes too, but 20 is X_ADDRESS_DST2.
  assert.throws(() => parseMessage(b, { direction: 'in' }), PfkeyError);
  // 0100 1500 | 1194 0000: the port's bytes are 0x11 0x94.
  assert.ok(hex(b).includes('0100150011940000'));
});

test('GETSPI: SPIRANGE in host order (Linux reads 0x1000-0x1fff from 00100000 ff1f0000); reply carries X_SA2', () => {
  const req = unhex('020100030a0000000a00000092100000030005000020000002000000c00002010000000000000000030006000020000002000000c000020200000000000000000200100000100000ff1f000000000000');
  const m = parseMessage(req, { dialect: 'kame' });
  assert.deepEqual(m.spirange, { min: 0x1000, max: 0x1fff });
  assert.equal(m.addressSrc!.prefixlen, 32);
  const reply = unhex('020100031800000' + '00a00000092100000' + '02000100000012d20000000000000000'
    + '040003000000000000000000000000001e000000000000000000000000000000'
    + '0400040000000000000000000000000000000000000000000000000000000000'
    + '0400020000000000000000000000000050c5056b000000000000000000000000'
    + '030005000020000002000000c00002010000000000000000'
    + '030006000020000002000000c00002020000000000000000'
    + '02001300010000000000000000000000');
  const r = parseMessage(reply, { dialect: 'kame', direction: 'out' });
  assert.equal(r.sa!.spi, 0x12d2);
  assert.equal(r.sa!.state, SADB_SASTATE_LARVAL);
  assert.equal(r.lifetimeHard!.addtime, 30n, "the ACQ state's 30 s (xfrm_acq_expires)");
  assert.deepEqual(r.xSa2, { mode: IPSEC_MODE_TRANSPORT, sequence: 0, reqid: 0 });
  // Linux writes the lifetimes hard, soft, current: not ascending, so the order is kept.
  assert.deepEqual(r.extOrder, [1, 3, 4, 2, 5, 6, 19]);
});

test('a KAME message built from values in Linux order gives the captured bytes', () => {
  const m: KameMessageInput = {
    dialect: 'kame',
    header: { type: SADB_GETSPI, satype: SADB_SATYPE_ESP, seq: 10, pid: 4242 },
    extOrder: [1, 3, 4, 2, 5, 6, 19],
    sa: { spi: 0x12d2, replay: 0, state: SADB_SASTATE_LARVAL, auth: 0, encrypt: 0, flags: 0 },
    lifetimeHard: { allocations: 0, bytes: 0n, addtime: 30n, usetime: 0n },
    lifetimeSoft: { allocations: 0, bytes: 0n, addtime: 0n, usetime: 0n },
    lifetimeCurrent: { allocations: 0, bytes: 0n, addtime: 0x6b05c550n, usetime: 0n },
    addressSrc: { proto: 0, prefixlen: 32, family: AF_INET, port: 0, addr: '192.0.2.1' },
    addressDst: { proto: 0, prefixlen: 32, family: AF_INET, port: 0, addr: '192.0.2.2' },
    xSa2: { mode: IPSEC_MODE_TRANSPORT, sequence: 0, reqid: 0 },
  };
  assert.equal(hex(buildMessage(m)), '02010003180000000a00000092100000'
    + '02000100000012d20000000000000000'
    + '040003000000000000000000000000001e000000000000000000000000000000'
    + '0400040000000000000000000000000000000000000000000000000000000000'
    + '0400020000000000000000000000000050c5056b000000000000000000000000'
    + '030005000020000002000000c00002010000000000000000'
    + '030006000020000002000000c00002020000000000000000'
    + '02001300010000000000000000000000');
});

test('what Linux skips is kept: an ipsecrequest longer than its sockaddrs, a policy tail, an extension of type 27', () => {
  // 06_spd's request: ipsecrequest length 50 (two sockaddr_in and 2 bytes), then 6 bytes of policy tail.
  const spd = unhex('020e000011000000020000009210000003000500ff100000020000000a010000000000000000000003000600ff100000020000000a0200000000000000000000090012000200020000000000000000003200320002020000000000000000000002000000c0000201000000000000000002000000c000020200000000000000000000000000000000');
  const m = parseMessage(spd, { dialect: 'kame' });
  assert.equal(m.policy!.requests.length, 1);
  assert.deepEqual(m.policy!.requests[0].extra, new Uint8Array(2));
  assert.deepEqual(m.policy!.tail, new Uint8Array(6));
  assert.equal(hex(buildMessage(m)), hex(spd));
  // GET with an extension of type 27 (> SADB_EXT_MAX): Linux skips it and answers ESRCH.
  const get = unhex('020500030b000000160000009210000002000100000012340001000000000000030005000020000002000000c00002010000000000000000030006000020000002000000c0000202000000000000000001001b0000000000');
  const g = parseMessage(get, { dialect: 'kame' });
  assert.deepEqual(g.unknown?.map((u) => u.type), [27]);
  assert.equal(hex(buildMessage(g)), hex(get));
});

test("Linux's header checks in Linux's order: version, reserved and type (EINVAL) before the length (EMSGSIZE)", () => {
  // Version 3 with a wrong length: KLIPS says EMSGSIZE (length first), Linux EINVAL.
  const v3 = unhex('03090000030000000400000092100000');
  assert.equal(headerFault(v3)!.errno, ERRNO.EMSGSIZE);
  assert.equal(headerFault(v3, 'kame')!.errno, ERRNO.EINVAL);
  // Types 20..24 are Linux's; 25 is nobody's.
  assert.equal(headerFault(unhex('02140000020000000100000000000000'), 'kame'), undefined);
  assert.equal(headerFault(unhex('02140000020000000100000000000000'))!.errno, ERRNO.EINVAL);
  assert.equal(headerFault(unhex('02190000020000000100000000000000'), 'kame')!.errno, ERRNO.EINVAL);
  // A reserved field is refused in a request and allowed in what the kernel sent (Linux puts a refcount there).
  const res = unhex('02130000020003000100000000000000');
  assert.equal(headerFault(res, 'kame')!.offset, 6);
  assert.equal(parseMessage(res, { dialect: 'kame', direction: 'out' }).header.reserved, 3);
});

test('KAME codecs refuse what Linux refuses, with EINVAL', () => {
  const sa = '02000100000012340000000000000000';
  const v4 = (t: number, pfx: number) => `0300${t.toString(16).padStart(2, '0')}00ff${pfx.toString(16).padStart(2, '0')}000002000000c00002010000000000000000`;
  const kame = { dialect: 'kame' } as const;
  // Prefix length 33 on an IPv4 address.
  assertRefused(() => parseMessage(msg(5, 3, [sa, v4(5, 33), v4(6, 32)]), kame), { errno: ERRNO.EINVAL, exttype: 5 }, 'prefixlen 33');
  // Address family 1 (KLIPS: EPFNOSUPPORT; Linux: EINVAL).
  const fam1 = '03000500002000000100000000000000' + '0000000000000000';
  assertRefused(() => parseMessage(msg(5, 3, [sa, fam1, v4(6, 32)]), kame), { errno: ERRNO.EINVAL, exttype: 5 }, 'family 1');
  assertRefused(() => parseMessage(msg(5, 3, [sa, fam1, v4(6, 32)])), { errno: ERRNO.EPFNOSUPPORT, exttype: 5 }, 'family 1, KLIPS');
  // An ipsecrequest whose length (64) runs past the policy.
  const pol = '04001200020002000000000000000000' + '40003200020200000000000000000000';
  assertRefused(() => parseMessage(msg(SADB_X_SPDADD, 0, [v4(5, 24), v4(6, 24), pol]), kame), { errno: ERRNO.EINVAL, exttype: 18 }, 'ipsecrequest overrun');
  // SEC_CTX whose ctx_len (9) does not fit its 16 bytes.
  assertRefused(() => parseMessage(msg(5, 3, [sa, v4(5, 32), v4(6, 32), '02001800010109000102030405060708']), kame), { errno: ERRNO.EINVAL, exttype: 24 }, 'sec ctx length');
});
