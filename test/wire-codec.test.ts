/**
 * Hand-derived vectors for the PF_KEY v2 codec: for each extension family, a whole message
 * written out in hex from the struct layouts (little-endian host order for lengths and
 * counters; network order for SPIs, sockaddr ports, flowinfo and SPI-range bounds), the
 * object it must decode to, and the check that building that object gives the same bytes.
 * Then every refusal with its exact errno (and offset / extension type), the sockaddr
 * helpers, and the renderings.
 */

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseMessage, buildMessage, messageLength, headerOnly, EXT_TABLE, ERRNO, PfkeyError,
  errnoName, errnoText, parseIPv4, parseIPv6, formatIPv4, formatIPv6, maskToPrefix,
  prefixToMask, familyOf, AF_INET, AF_INET6, renderMessage, messageToJSON,
  type PfkeyMessage, type SadbMsg, type Direction, type KmPrivate,
} from '../src/wire/index.js';
import { hex, unhex, msg, msgHex, hdrHex, assertRefused } from './wire-helpers.js';

const { EINVAL, EMSGSIZE, EEXIST, EPFNOSUPPORT, EAFNOSUPPORT } = ERRNO;

/** Remove the spaces used to lay the hex out field by field. */
const c = (s: string) => s.replace(/\s+/g, '');
const bytes = (s: string) => unhex(s);

const H = (type: number, satype: number, len: number, seq = 0, pid = 0, errno = 0): SadbMsg => ({
  version: 2, type, errno, satype, len, reserved: 0, seq, pid,
});

/**
 * The core check: the hex parses (in the given direction) to exactly `want`, and building
 * `want` gives exactly the hex back.
 */
function vector(hexStr: string, want: PfkeyMessage, dir: Direction = 'in'): PfkeyMessage {
  const b = unhex(hexStr);
  const m = parseMessage(b, { direction: dir });
  assert.deepStrictEqual(m, want);
  assert.equal(hex(buildMessage(want)), c(hexStr), 'buildMessage(expected) === hand-written bytes');
  assert.equal(messageLength(want), b.length);
  return m;
}

// ---------- building blocks (each annotated field by field) ----------

// sadb_address (len 3 = 24 bytes, exttype, proto, prefixlen, reserved u16) + sockaddr_in
// (family 0200 LE, port BE, addr, sin_zero[8]).
const SRC4 = '0300 0500 00 00 0000  0200 0000 c0000201 0000000000000000';
const DST4 = '0300 0600 00 00 0000  0200 0000 c0000202 0000000000000000';
const v4 = (addr: string, port = 0, proto = 0) => ({ proto, prefixlen: 0, family: AF_INET, port, addr });

// sadb_sa, 16 bytes: len 2, exttype 1 | spi 12345678 (BE) | replay 32, state MATURE,
// auth SHA1 (3), encrypt 3DES (3) | flags PFS|CLEARFLOW = 5 (LE).
const SA16 = '0200 0100 12345678 20 01 03 03 05000000';
const SA16_V = { spi: 0x12345678, replay: 32, state: 1, auth: 3, encrypt: 3, flags: 5 };
/** An ESP SA extension with the given fields (spi, replay, state, auth, encrypt as hex). */
const sa16 = (spi: string, replay: string, state: string, auth: string, encrypt: string, flags = '00000000') =>
  `0200 0100 ${spi} ${replay} ${state} ${auth} ${encrypt} ${flags}`;
const GOOD_ESP_SA = sa16('12345678', '00', '01', '03', '03');

// Flow and mask addresses for X_ADDFLOW / X_DELFLOW: 10.0.1.0/24 -> 10.0.2.0/24, port 80 on the dst.
const SFL = '0300 1500 00 00 0000  0200 0000 0a000100 0000000000000000';
const DFL = '0300 1600 00 00 0000  0200 0050 0a000200 0000000000000000';
const SMK = '0300 1700 00 00 0000  0200 0000 ffffff00 0000000000000000';
const DMK = '0300 1800 00 00 0000  0200 ffff ffffff00 0000000000000000';

describe('hand-derived vectors, one or more per extension family', () => {
  test('SA, 16-byte sadb_sa form (no ref) in ADD', () => {
    // Header: version 2, ADD (3), errno 0, ESP (3) | len 10 units (80 bytes) | reserved 0 |
    // seq 7 | pid 0x1234.
    const h = '02 03 00 03 0a00 0000 07000000 34120000';
    assert.equal(c(h), hdrHex(3, 3, 64, { seq: 7, pid: 0x1234 }));
    vector(h + SA16 + SRC4 + DST4, {
      header: H(3, 3, 10, 7, 0x1234),
      sa: SA16_V,
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
    });
  });

  test('SA, 24-byte k_sadb_sa form with sadb_x_sa_ref in an AH ADD', () => {
    // spi deadbeef | replay 64, MATURE, MD5 (2), encrypt 0 | flags 0 | ref 0x1234 (LE) | 0
    const SA24 = '0300 0100 deadbeef 40 01 02 00 00000000 34120000 00000000';
    vector(msgHex(3, 2, [SA24, SRC4, DST4], { seq: 1 }), {
      header: H(3, 2, 11, 1),
      sa: { spi: 0xdeadbeef, replay: 64, state: 1, auth: 2, encrypt: 0, flags: 0, ref: 0x1234 },
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
    });
    // ref 32767 (largest table index) and 0xffffffff are accepted too.
    for (const [refHex, ref] of [['ff7f0000', 32767], ['ffffffff', 0xffffffff]] as const) {
      const m = parseMessage(msg(3, 2, [`0300 0100 deadbeef 00 01 02 00 00000000 ${refHex} 00000000`, SRC4, DST4]));
      assert.equal(m.sa?.ref, ref);
    }
  });

  test('lifetimes: 32-byte RFC form and 40-byte openswan form, u64 above 2^53 as bigint', () => {
    // HARD: len 4 | allocations 10 | bytes 2^53+1 | addtime 3600 | usetime 2^64-1
    const LH = '0400 0300 0a000000 0100000000002000 100e000000000000 ffffffffffffffff';
    // SOFT: len 5 | allocations 5 | bytes 2^63 | addtime 1800 | usetime 0 | packets 1000 | 0
    const LS = '0500 0400 05000000 0000000000000080 0807000000000000 0000000000000000 e8030000 00000000';
    const m = vector(msgHex(3, 3, [SA16, LH, LS, SRC4, DST4]), {
      header: H(3, 3, 19),
      sa: SA16_V,
      lifetimeHard: { allocations: 10, bytes: 9007199254740993n, addtime: 3600n, usetime: 18446744073709551615n },
      lifetimeSoft: { allocations: 5, bytes: 2n ** 63n, addtime: 1800n, usetime: 0n, packets: 1000 },
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
    });
    assert.equal(typeof m.lifetimeHard?.bytes, 'bigint');
    assert.notEqual(BigInt(Number(m.lifetimeHard!.bytes)), m.lifetimeHard!.bytes, 'a number would lose the low bit');
  });

  test('LIFETIME_CURRENT in an outbound EXPIRE', () => {
    // CURRENT: allocations 1 | bytes 1000 | addtime 100000000 (0x05f5e100) | usetime 0
    const LC = '0400 0200 01000000 e803000000000000 00e1f50500000000 0000000000000000';
    const SA_DYING = sa16('12345678', '00', '02', '03', '03');
    vector(msgHex(8, 3, [SA_DYING, LC, SRC4, DST4]), {
      header: H(8, 3, 14),
      sa: { spi: 0x12345678, replay: 0, state: 2, auth: 3, encrypt: 3, flags: 0 },
      lifetimeCurrent: { allocations: 1, bytes: 1000n, addtime: 100000000n, usetime: 0n },
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
    }, 'out');
  });

  test('IPv4 address with proto and port (port in network order)', () => {
    // proto TCP (6) | family 2 | port 8080 = 1f90 (BE) | 192.0.2.1
    const SRC = '0300 0500 06 00 0000  0200 1f90 c0000201 0000000000000000';
    vector(msgHex(4, 3, [SA16, SRC, DST4]), {
      header: H(4, 3, 10),
      sa: SA16_V,
      addressSrc: v4('192.0.2.1', 8080, 6),
      addressDst: v4('192.0.2.2'),
    });
  });

  test('IPv6 addresses with flowinfo (network order) and scope id (host order)', () => {
    // len 5 (40 bytes) | proto UDP 17 | family 0a00 | port 500 = 01f4 | flowinfo 0x12345 (BE)
    // | 2001:db8::1 | scope id 3 (LE) | 4 bytes padding
    const SRC6 = '0500 0500 11 00 0000  0a00 01f4 00012345 20010db8000000000000000000000001 03000000 00000000';
    const DST6 = '0500 0600 00 00 0000  0a00 1194 00000000 20010db8000000000000000000000002 00000000 00000000';
    vector(msgHex(5, 3, [SA16, SRC6, DST6]), {
      header: H(5, 3, 14),
      sa: SA16_V,
      addressSrc: { proto: 17, prefixlen: 0, family: AF_INET6, port: 500, addr: '2001:db8::1', flowinfo: 0x12345, scopeId: 3 },
      addressDst: { proto: 0, prefixlen: 0, family: AF_INET6, port: 4500, addr: '2001:db8::2', flowinfo: 0, scopeId: 0 },
    });
  });

  test('keys: 160 bits (20 bytes + 4 padding) and 12 bits (2 bytes, last byte kept as-is)', () => {
    // KEY_AUTH: len 4 | bits 160 = a000 | reserved | 20 bytes | 4 zero bytes
    const KA = '0400 0800 a000 0000 0102030405060708090a0b0c0d0e0f1011121314 00000000';
    // KEY_ENCRYPT: len 2 | bits 12 = 0c00 | reserved | ab cd | 6 zero bytes
    const KE = '0200 0900 0c00 0000 abcd 000000000000';
    vector(msgHex(3, 3, [SA16, SRC4, DST4, KA, KE]), {
      header: H(3, 3, 16),
      sa: SA16_V,
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
      keyAuth: { bits: 160, key: bytes('0102030405060708090a0b0c0d0e0f1011121314') },
      keyEncrypt: { bits: 12, key: bytes('abcd') },
    });
  });

  test('identities: FQDN "vpn.example.com" and USERFQDN "a@b" with a 64-bit id', () => {
    // IDENTITY_SRC: len 4 | type FQDN (2) | reserved | id 0 | 15 chars + NUL
    const IDS = '0400 0a00 0200 0000 0000000000000000 76706e2e6578616d706c652e636f6d 00';
    // IDENTITY_DST: len 3 | type USERFQDN (3) | reserved | id 0x0102030405060708 (LE) | "a@b" NUL | 4 pad
    const IDD = '0300 0b00 0300 0000 0807060504030201 614062 00 00000000';
    vector(msgHex(3, 3, [SA16, SRC4, DST4, IDS, IDD]), {
      header: H(3, 3, 17),
      sa: SA16_V,
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
      identitySrc: { type: 2, id: 0n, data: 'vpn.example.com' },
      identityDst: { type: 3, id: 0x0102030405060708n, data: 'a@b' },
    });
  });

  test('identity with an empty string is the bare 16-byte header', () => {
    // len 2 | type X_CONNECTION (4) | reserved | id 42
    const IDS = '0200 0a00 0400 0000 2a00000000000000';
    vector(msgHex(3, 3, [SA16, SRC4, DST4, IDS]), {
      header: H(3, 3, 12),
      sa: SA16_V,
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
      identitySrc: { type: 4, id: 42n, data: '' },
    });
  });

  test('sensitivity with one sensitivity word and two integrity words', () => {
    // len 5 | dpd 1 | sens level 5, sens_len 1, integ level 6, integ_len 2 | reserved | bitmaps
    const SENS = '0500 0c00 01000000 05 01 06 02 00000000 0102030405060708 f0e0d0c0b0a09080 1122334455667788';
    vector(msgHex(3, 3, [SA16, SRC4, DST4, SENS]), {
      header: H(3, 3, 15),
      sa: SA16_V,
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
      sensitivity: {
        dpd: 1, sensLevel: 5, integLevel: 6,
        sensBitmap: bytes('0102030405060708'),
        integBitmap: bytes('f0e0d0c0b0a090801122334455667788'),
      },
    });
  });

  // PROPOSAL: len 19 (8 + 2*72) | replay 32 | 3 reserved bytes, then two sadb_comb.
  const PROP = c(`1300 0d00 20 000000
    03 0c 0100 a000 a000 8000 0001 00000000 00000000 00000000
      0000000000000000 0000000000000000 8c0a000000000000 100e000000000000 0000000000000000 0000000000000000
    02 03 0000 8000 8000 c000 c000 00000000 0a000000 14000000
      0000000000000010 0000000000000040 0000000000000000 0000000000000000 6400000000000000 c800000000000000`);
  const PROP_V = {
    replay: 32,
    combs: [
      {
        auth: 3, encrypt: 12, flags: 1, authMinbits: 160, authMaxbits: 160, encryptMinbits: 128, encryptMaxbits: 256,
        softAllocations: 0, hardAllocations: 0, softBytes: 0n, hardBytes: 0n,
        softAddtime: 2700n, hardAddtime: 3600n, softUsetime: 0n, hardUsetime: 0n,
      },
      {
        auth: 2, encrypt: 3, flags: 0, authMinbits: 128, authMaxbits: 128, encryptMinbits: 192, encryptMaxbits: 192,
        softAllocations: 10, hardAllocations: 20, softBytes: 2n ** 60n, hardBytes: 2n ** 62n,
        softAddtime: 0n, hardAddtime: 0n, softUsetime: 100n, hardUsetime: 200n,
      },
    ],
  };

  test('proposal with two combs in ACQUIRE (out, and in as well)', () => {
    const h = msgHex(6, 3, [SRC4, DST4, PROP], { seq: 9 });
    const want = { header: H(6, 3, 27, 9), addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'), proposal: PROP_V };
    vector(h, want, 'out');
    vector(h, want, 'in');
  });

  test('supported auth and encrypt lists in a REGISTER reply (out)', () => {
    // SUPPORTED_AUTH: len 3 | reserved | MD5 ivlen 0 128-128 | SHA1 ivlen 0 160-160
    const SUPA = '0300 0e00 00000000 02 00 8000 8000 0000 03 00 a000 a000 0000';
    // SUPPORTED_ENCRYPT: len 4 | reserved | 3DES iv 8 192-192 | NULL 0 0-0 | AES iv 16 128-256
    const SUPE = '0400 0f00 00000000 03 08 c000 c000 0000 0b 00 0000 0000 0000 0c 10 8000 0001 0000';
    vector(msgHex(7, 3, [SUPA, SUPE], { seq: 2, pid: 99 }), {
      header: H(7, 3, 9, 2, 99),
      supportedAuth: { algs: [{ id: 2, ivlen: 0, minbits: 128, maxbits: 128 }, { id: 3, ivlen: 0, minbits: 160, maxbits: 160 }] },
      supportedEncrypt: {
        algs: [
          { id: 3, ivlen: 8, minbits: 192, maxbits: 192 },
          { id: 11, ivlen: 0, minbits: 0, maxbits: 0 },
          { id: 12, ivlen: 16, minbits: 128, maxbits: 256 },
        ],
      },
    }, 'out');
    // An empty list is the bare 8-byte header.
    vector(msgHex(7, 2, ['0100 0e00 00000000']), { header: H(7, 2, 3), supportedAuth: { algs: [] } }, 'out');
    // A REGISTER request carries no extensions.
    assertRefused(() => parseMessage(msg(7, 3, [SUPA]), { direction: 'in' }), { errno: EINVAL, offset: 16, exttype: 14 });
  });

  test('SPI range in GETSPI: bounds in network order', () => {
    // len 2 | min 0x00000100 (BE) | max 0x0fffffff (BE) | reserved
    const SPIR = '0200 1000 00000100 0fffffff 00000000';
    vector(msgHex(1, 3, [SRC4, DST4, SPIR]), {
      header: H(1, 3, 10), addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'), spirange: { min: 256, max: 0x0fffffff },
    });
    // min == max is a range of one.
    const m = parseMessage(msg(1, 3, [SRC4, DST4, '0200 1000 00001234 00001234 00000000']));
    assert.deepEqual(m.spirange, { min: 0x1234, max: 0x1234 });
  });

  test('X_KMPRIVATE: the codec on its own (no message type permits it)', () => {
    // len 3 | reserved | 16 opaque bytes
    const KMP = '0300 1100 00000000 0011223344556677 8899aabbccddeeff';
    const b = bytes(KMP);
    const codec = EXT_TABLE[17]!.codec;
    assert.equal(EXT_TABLE[17]!.field, 'kmprivate');
    const v = codec.decode(b, 0, 24, 17) as KmPrivate;
    assert.deepStrictEqual(v, { data: bytes('00112233445566778899aabbccddeeff') });
    const out = new Uint8Array(codec.encodingLength(v));
    codec.encode(v, out, 0, 17);
    assert.equal(hex(out), c(KMP));
    // Reserved bytes must be zero.
    const bad = bytes('0300 1100 01000000 0011223344556677 8899aabbccddeeff');
    assertRefused(() => codec.decode(bad, 0, 24, 17), { errno: EINVAL, offset: 0, exttype: 17 });
    // In a message it is refused as not permitted, whatever the type and direction.
    for (let type = 1; type <= 19; type++) {
      for (const dir of ['in', 'out'] as const) {
        assertRefused(() => parseMessage(msg(type, 3, [KMP]), { direction: dir }), { errno: EINVAL, offset: 16, exttype: 17 }, `type ${type} ${dir}`);
      }
    }
  });

  test('X_GRPSA: X_SATYPE2, X_SA2 and X_ADDRESS_DST2', () => {
    const SA = '0200 0100 00001000 00 01 03 03 00000000';
    const SAT2 = '0100 1200 02 000000'; // second SA type AH
    const SA2 = '0200 1300 00001001 00 01 02 00 00000000';
    const DST2 = '0300 1400 00 00 0000  0200 0000 c0000203 0000000000000000';
    vector(msgHex(13, 3, [SA, DST4, SAT2, SA2, DST2]), {
      header: H(13, 3, 13),
      sa: { spi: 0x1000, replay: 0, state: 1, auth: 3, encrypt: 3, flags: 0 },
      addressDst: v4('192.0.2.2'),
      satype2: { satype: 2 },
      sa2: { spi: 0x1001, replay: 0, state: 1, auth: 2, encrypt: 0, flags: 0 },
      addressDst2: v4('192.0.2.3'),
    });
    // A second SA type with no protocol (0, RSVP 5) is refused, as are reserved bytes.
    for (const s of ['00', '05', '0c']) {
      assertRefused(() => parseMessage(msg(13, 3, [SA, DST4, `0100 1200 ${s} 000000`])), { errno: EINVAL, offset: 56, exttype: 18 }, `satype2 ${s}`);
    }
    assertRefused(() => parseMessage(msg(13, 3, [SA, DST4, '0100 1200 02 000100'])), { errno: EINVAL, offset: 56, exttype: 18 });
  });

  test('X_DEBUG: twelve subsystem words in struct order', () => {
    const DBG = '0700 1900 01000000 02000000 03000000 04000000 05000000 06000000 07000000 08000000 09000000 0a000000 0b000000 0c000000 00000000';
    vector(msgHex(16, 0, [DBG]), {
      header: H(16, 0, 9),
      debug: { tunnel: 1, netlink: 2, xform: 3, eroute: 4, spi: 5, radij: 6, esp: 7, ah: 8, rcv: 9, pfkey: 10, ipcomp: 11, verbose: 12 },
    });
    assertRefused(() => parseMessage(msg(16, 0, [DBG.replace(/00000000$/, '00000001')])), { errno: EINVAL, offset: 16, exttype: 25 });
    assertRefused(() => parseMessage(msg(16, 0, [])), { errno: EINVAL, offset: 0 });
  });

  test('X_PROTOCOL with flows and masks in X_ADDFLOW', () => {
    const PROTO = '0100 1a00 06 01 02 00'; // TCP, direction 1, flags 2, reserved
    vector(msgHex(14, 3, [SA16, DST4, SFL, DFL, SMK, DMK, PROTO]), {
      header: H(14, 3, 20),
      sa: SA16_V,
      addressDst: v4('192.0.2.2'),
      addressSrcFlow: v4('10.0.1.0'),
      addressDstFlow: v4('10.0.2.0', 80),
      addressSrcMask: v4('255.255.255.0'),
      addressDstMask: v4('255.255.255.0', 0xffff),
      protocol: { proto: 6, direction: 1, flags: 2 },
    });
    assertRefused(() => parseMessage(msg(14, 3, [SA16, DST4, SFL, DFL, SMK, DMK, '0100 1a00 06 01 02 01'])), { errno: EINVAL, offset: 152, exttype: 26 });
  });

  test('NAT-T type, ports (host order) and original address in ADD', () => {
    const NTY = '0100 1b00 02 000000'; // ESPINUDP_WITH_NON_ESP
    const NSP = '0100 1c00 9411 0000'; // 4500, little-endian
    const NDP = '0100 1d00 f401 0000'; // 500
    const NOA = '0300 1e00 00 00 0000  0200 0000 c6336407 0000000000000000'; // 198.51.100.7
    vector(msgHex(3, 3, [SA16, SRC4, DST4, NTY, NSP, NDP, NOA]), {
      header: H(3, 3, 16),
      sa: SA16_V,
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
      natTType: { type: 2 },
      natTSport: { port: 4500 },
      natTDport: { port: 500 },
      natTOa: v4('198.51.100.7'),
    });
    assertRefused(() => parseMessage(msg(3, 3, [SA16, SRC4, DST4, '0100 1c00 9411 0100'])), { errno: EINVAL, offset: 80, exttype: 28 });
    assertRefused(() => parseMessage(msg(3, 3, [SA16, SRC4, DST4, '0100 1b00 02 000001'])), { errno: EINVAL, offset: 80, exttype: 27 });
  });

  test('X_PLUMBIF in X_PLUMBIF and X_UNPLUMBIF', () => {
    vector(msgHex(18, 0, ['0100 1f00 0500 0000']), { header: H(18, 0, 3), plumbif: { ifnum: 5 } });
    // ipsec0 = IPSECDEV_OFFSET 49152 = 0xc000.
    vector(msgHex(19, 0, ['0100 1f00 00c0 0000']), { header: H(19, 0, 3), plumbif: { ifnum: 49152 } });
    assertRefused(() => parseMessage(msg(18, 0, ['0100 1f00 0500 0100'])), { errno: EINVAL, offset: 16, exttype: 31 });
  });

  test('X_SAREF in ADD', () => {
    const SRF = '0200 2000 07000000 08000000 00000000'; // me 7, him 8, padding
    vector(msgHex(3, 3, [SA16, SRC4, DST4, SRF]), {
      header: H(3, 3, 12),
      sa: SA16_V,
      addressSrc: v4('192.0.2.1'),
      addressDst: v4('192.0.2.2'),
      saref: { me: 7, him: 8 },
    });
    assertRefused(() => parseMessage(msg(3, 3, [SA16, SRC4, DST4, '0200 2000 07000000 08000000 00000001'])), { errno: EINVAL, offset: 80, exttype: 32 });
  });

  test('a parsed message keeps a non-ascending extension order and rebuilds it', () => {
    const h = msgHex(3, 3, [DST4, SA16, SRC4]);
    const m = parseMessage(unhex(h));
    assert.deepEqual(m.extOrder, [6, 1, 5]);
    assert.equal(hex(buildMessage(m)), h);
    // Without extOrder, build writes ascending order.
    const { extOrder: _drop, ...rest } = m;
    assert.equal(hex(buildMessage(rest)), msgHex(3, 3, [SA16, SRC4, DST4]));
  });

  test('headerOnly writes a 16-byte message with len 2 and defaults', () => {
    assert.equal(hex(headerOnly({ type: 9 })), '02090000020000000000000000000000');
    assert.equal(hex(headerOnly({ type: 3, satype: 3, errno: 17, seq: 5, pid: 7 })), '02031103020000000500000007000000');
  });
});

// ---------------------------------------------------------------- refusals

describe('refusals: exact errno, offset and extension type', () => {
  const ADD_OK = [GOOD_ESP_SA, SRC4, DST4];

  test('the base ADD used below is accepted', () => {
    parseMessage(msg(3, 3, ADD_OK));
  });

  test('message shorter than the 16-byte header: EMSGSIZE (90)', () => {
    assert.equal(EMSGSIZE, 90);
    assertRefused(() => parseMessage(unhex('0203000302000000')), { errno: 90, offset: 0 });
    assertRefused(() => parseMessage(new Uint8Array(0)), { errno: 90, offset: 0 });
    assertRefused(() => parseMessage(unhex('020900000200000000000000000000')), { errno: 90, offset: 0 }); // 15 bytes
  });

  test('sadb_msg_len not matching the byte count: EMSGSIZE', () => {
    assertRefused(() => parseMessage(msg(3, 3, ADD_OK, { len: 11 })), { errno: 90, offset: 4 });
    assertRefused(() => parseMessage(msg(3, 3, ADD_OK, { len: 9 })), { errno: 90, offset: 4 });
    // 20 bytes with len 2: not a whole number of units.
    assertRefused(() => parseMessage(unhex('02090000020000000000000000000000 00000000')), { errno: 90, offset: 4 });
  });

  test('version 1: EINVAL (22) at offset 0', () => {
    assert.equal(EINVAL, 22);
    assertRefused(() => parseMessage(msg(3, 3, ADD_OK, { version: 1 })), { errno: 22, offset: 0 });
  });

  test('reserved != 0: EINVAL at offset 6', () => {
    assertRefused(() => parseMessage(msg(9, 0, [], { reserved: 1 })), { errno: 22, offset: 6 });
    assertRefused(() => parseMessage(msg(9, 0, [], { reserved: 0x100 })), { errno: 22, offset: 6 });
  });

  test('message type 0 and 20 (and 255): EINVAL at offset 1', () => {
    for (const type of [0, 20, 255]) assertRefused(() => parseMessage(msg(type, 0, [])), { errno: 22, offset: 1 }, `type ${type}`);
  });

  test('GETSPI with SA type 0 or 5 (RSVP): EINVAL at offset 3', () => {
    const body = [SRC4, DST4, '0200 1000 00000100 0fffffff 00000000'];
    parseMessage(msg(1, 3, body));
    for (const satype of [0, 5, 99]) assertRefused(() => parseMessage(msg(1, satype, body)), { errno: 22, offset: 3 }, `satype ${satype}`);
  });

  test('REGISTER with SA type 0: EINVAL at offset 3 (satype 2 is accepted)', () => {
    assertRefused(() => parseMessage(msg(7, 0, [])), { errno: 22, offset: 3 });
    assert.equal(parseMessage(msg(7, 2, [])).header.satype, 2);
  });

  test('sadb_msg_errno set in a request: EINVAL for ADD, allowed for ACQUIRE', () => {
    assertRefused(() => parseMessage(msg(3, 3, ADD_OK, { errno: 22 })), { errno: 22, offset: 2 });
    // An ACQUIRE with an errno is how a key manager says it failed: header only is fine.
    const m = parseMessage(msg(6, 3, [], { errno: 2 }));
    assert.equal(m.header.errno, 2);
    // Without the errno, the same header-only ACQUIRE lacks its required extensions.
    assertRefused(() => parseMessage(msg(6, 3, [])), { errno: 22, offset: 0 });
    // Outbound (a kernel reply) an errno is fine and the body may be empty.
    assert.equal(parseMessage(msg(3, 3, [], { errno: 17 }), { direction: 'out' }).header.errno, 17);
  });

  test('zero-length extension: EINVAL', () => {
    assertRefused(() => parseMessage(msg(3, 3, ['0000 0100 00000000', SRC4, DST4])), { errno: 22, offset: 16, exttype: 1 });
  });

  test('extension overrunning the message: EINVAL', () => {
    // SA claiming 4 units (32 bytes) with only 16 left.
    assertRefused(() => parseMessage(msg(4, 3, [SRC4, DST4, '0400 0100 12345678 00 01 03 03 00000000'])), { errno: 22, offset: 64, exttype: 1 });
  });

  test('extension type 0 and 33: EINVAL', () => {
    assertRefused(() => parseMessage(msg(3, 3, ['0100 0000 00000000', ...ADD_OK])), { errno: 22, offset: 16, exttype: 0 });
    assertRefused(() => parseMessage(msg(3, 3, [...ADD_OK, '0100 2100 00000000'])), { errno: 22, offset: 80, exttype: 33 });
  });

  test('repeated extension: EINVAL at the second copy', () => {
    assertRefused(() => parseMessage(msg(3, 3, [GOOD_ESP_SA, SRC4, SRC4, DST4])), { errno: 22, offset: 56, exttype: 5 });
  });

  test('extension not permitted (SPIRANGE in ADD): EINVAL', () => {
    assertRefused(() => parseMessage(msg(3, 3, [...ADD_OK, '0200 1000 00000100 0fffffff 00000000'])), { errno: 22, offset: 80, exttype: 16 });
  });

  test('required extension missing (ADD without ADDRESS_DST): EINVAL at offset 0', () => {
    assertRefused(() => parseMessage(msg(3, 3, [GOOD_ESP_SA, SRC4])), { errno: 22, offset: 0 });
  });

  test('address family 1: EPFNOSUPPORT (96)', () => {
    assert.equal(EPFNOSUPPORT, 96);
    const SRC_AF1 = '0300 0500 00 00 0000  0100 0000 c0000201 0000000000000000';
    assertRefused(() => parseMessage(msg(3, 3, [GOOD_ESP_SA, SRC_AF1, DST4])), { errno: 96, offset: 32, exttype: 5 });
  });

  test('address prefixlen != 0: EAFNOSUPPORT (97)', () => {
    assert.equal(EAFNOSUPPORT, 97);
    const SRC_P32 = '0300 0500 00 20 0000  0200 0000 c0000201 0000000000000000';
    assertRefused(() => parseMessage(msg(3, 3, [GOOD_ESP_SA, SRC_P32, DST4])), { errno: 97, offset: 32, exttype: 5 });
  });

  test('address extension of the wrong length, or with stray bytes: EINVAL', () => {
    const cases: Array<[string, string]> = [
      ['IPv4 sockaddr in 40 bytes', '0500 0500 00 00 0000  0200 0000 c0000201 0000000000000000 0000000000000000'],
      ['16 bytes', '0200 0500 00 00 0000  0200 0000 c0000201'],
      ['IPv6 sockaddr in 24 bytes', '0300 0500 00 00 0000  0a00 0000 00000000 20010db800000000'],
      ['reserved field set', '0300 0500 00 00 0100  0200 0000 c0000201 0000000000000000'],
      ['sin_zero not zero', '0300 0500 00 00 0000  0200 0000 c0000201 0000000000000001'],
      ['IPv6 padding not zero', '0500 0500 00 00 0000  0a00 0000 00000000 20010db8000000000000000000000001 00000000 01000000'],
    ];
    for (const [what, src] of cases) {
      assertRefused(() => parseMessage(msg(3, 3, [GOOD_ESP_SA, src, DST4])), { errno: 22, offset: 32, exttype: 5 }, what);
    }
  });

  test('key extensions: 0 bits, more bits than fit, stray padding or reserved: EINVAL', () => {
    const cases: Array<[string, string]> = [
      ['0 bits', '0100 0800 0000 0000'],
      ['256 bits in 16 bytes', '0200 0800 0001 0000 0102030405060708'],
      ['64 bits in 24 bytes (padding not minimal)', '0300 0800 4000 0000 0102030405060708 0000000000000000'],
      ['non-zero padding', '0400 0800 a000 0000 0102030405060708090a0b0c0d0e0f1011121314 00000001'],
      ['reserved field set', '0200 0800 4000 0100 0102030405060708'],
    ];
    for (const [what, k] of cases) {
      assertRefused(() => parseMessage(msg(3, 3, [...ADD_OK, k])), { errno: 22, offset: 80, exttype: 8 }, what);
    }
  });

  test('SPI range: min > max is EINVAL, min <= 255 is EEXIST (17)', () => {
    assert.equal(EEXIST, 17);
    const gs = (range: string) => () => parseMessage(msg(1, 3, [SRC4, DST4, range]));
    assertRefused(gs('0200 1000 00002000 00001000 00000000'), { errno: 22, offset: 64, exttype: 16 });
    assertRefused(gs('0200 1000 000000ff 00001000 00000000'), { errno: 17, offset: 64, exttype: 16 });
    assertRefused(gs('0200 1000 00000000 00000000 00000000'), { errno: 17, offset: 64, exttype: 16 });
    assertRefused(gs('0200 1000 00000100 00001000 01000000'), { errno: 22, offset: 64, exttype: 16 });
    // min 256 is the first allowed value.
    assert.deepEqual(parseMessage(msg(1, 3, [SRC4, DST4, '0200 1000 00000100 00000100 00000000'])).spirange, { min: 256, max: 256 });
  });

  test('SA extension: state DEAD or out of range, replay 65, wrong length: EINVAL', () => {
    const del = (sa: string) => () => parseMessage(msg(4, 3, [sa, SRC4, DST4]));
    assertRefused(del(sa16('12345678', '00', '03', '03', '03')), { errno: 22, offset: 16, exttype: 1 });
    assertRefused(del(sa16('12345678', '00', '04', '03', '03')), { errno: 22, offset: 16, exttype: 1 });
    assertRefused(del(sa16('12345678', '41', '01', '03', '03')), { errno: 22, offset: 16, exttype: 1 });
    assertRefused(del('0300 0100 12345678 00 01 03 03 00000000 00800000 00000000'), { errno: 22, offset: 16, exttype: 1 }); // ref 32768
    assertRefused(del('0300 0100 12345678 00 01 03 03 00000000 00000000 00000001'), { errno: 22, offset: 16, exttype: 1 }); // reserved
    assertRefused(del('0400 0100 12345678 00 01 03 03 00000000 0000000000000000 0000000000000000'), { errno: 22, offset: 16, exttype: 1 }); // 32 bytes
    // replay 64, and LARVAL / DYING states, are fine outside ADD/UPDATE.
    assert.equal(del(sa16('12345678', '40', '00', '03', '03'))().sa?.replay, 64);
    assert.equal(del(sa16('12345678', '00', '02', '03', '03'))().sa?.state, 2);
  });

  test('lifetime extension of the wrong length or with reserved bytes: EINVAL', () => {
    const add = (lt: string) => () => parseMessage(msg(3, 3, [GOOD_ESP_SA, lt, SRC4, DST4]));
    assertRefused(add('0300 0300 00000000 0000000000000000 0000000000000000'), { errno: 22, offset: 32, exttype: 3 });
    assertRefused(add('0500 0300 00000000 0000000000000000 0000000000000000 0000000000000000 00000000 00000001'), { errno: 22, offset: 32, exttype: 3 });
  });

  test('ADD / UPDATE semantics (inbound only)', () => {
    const add = (satype: number, sa: string) => () => parseMessage(msg(3, satype, [sa, SRC4, DST4]));
    const at = { errno: 22, offset: 16, exttype: 1 };
    // state must be MATURE: LARVAL and DYING refused.
    assertRefused(add(3, sa16('12345678', '00', '00', '03', '03')), at, 'ADD LARVAL');
    assertRefused(add(3, sa16('12345678', '00', '02', '03', '03')), at, 'ADD DYING');
    assertRefused(() => parseMessage(msg(2, 3, [sa16('12345678', '00', '00', '03', '03'), SRC4, DST4])), at, 'UPDATE LARVAL');
    // AH: needs auth, no encryption.
    assertRefused(add(2, sa16('12345678', '00', '01', '02', '03')), at, 'AH with encrypt');
    assertRefused(add(2, sa16('12345678', '00', '01', '00', '00')), at, 'AH without auth');
    parseMessage(msg(3, 2, [sa16('12345678', '00', '01', '02', '00'), SRC4, DST4]));
    // ESP: needs an encryption algorithm; NULL needs authentication.
    assertRefused(add(3, sa16('12345678', '00', '01', '03', '00')), at, 'ESP encrypt 0');
    assertRefused(add(3, sa16('12345678', '00', '01', '00', '0b')), at, 'ESP NULL without auth');
    parseMessage(msg(3, 3, [sa16('12345678', '00', '01', '03', '0b'), SRC4, DST4]));
    parseMessage(msg(3, 3, [sa16('12345678', '00', '01', '00', '03'), SRC4, DST4]));
    // COMP: a compression algorithm and no auth.
    assertRefused(add(10, sa16('00001234', '00', '01', '02', '02')), at, 'COMP with auth');
    assertRefused(add(10, sa16('00001234', '00', '01', '00', '00')), at, 'COMP without algorithm');
    parseMessage(msg(3, 10, [sa16('00001234', '00', '01', '00', '02'), SRC4, DST4]));
    // SPI must be above 255.
    assertRefused(add(3, sa16('000000ff', '00', '01', '03', '03')), at, 'SPI 255');
    assertRefused(add(3, sa16('00000000', '00', '01', '03', '03')), at, 'SPI 0');
    parseMessage(msg(3, 3, [sa16('00000100', '00', '01', '03', '03'), SRC4, DST4]));
    // None of that is checked outbound (a kernel's own reply).
    parseMessage(msg(3, 3, [sa16('000000ff', '00', '00', '00', '00'), SRC4, DST4]), { direction: 'out' });
  });

  test('X_DELFLOW: needs the four flow extensions, or an SA with CLEARFLOW', () => {
    assertRefused(() => parseMessage(msg(15, 0, [])), { errno: 22, offset: 0 });
    assertRefused(() => parseMessage(msg(15, 0, [sa16('00000000', '00', '00', '00', '00', '00000000')])), { errno: 22, offset: 0 });
    assertRefused(() => parseMessage(msg(15, 0, [SFL, DFL, SMK])), { errno: 22, offset: 0 });
    const m = parseMessage(msg(15, 0, [sa16('00000000', '00', '00', '00', '00', '04000000')]));
    assert.equal(m.sa?.flags, 4);
    parseMessage(msg(15, 0, [SFL, DFL, SMK, DMK]));
    // Outbound there is no such check.
    parseMessage(msg(15, 0, []), { direction: 'out' });
  });

  test('identity: not NUL-terminated, bad type, over-padded, bytes after the NUL: EINVAL', () => {
    const cases: Array<[string, string]> = [
      ['not NUL-terminated', '0300 0a00 0200 0000 0000000000000000 6162636465666768'],
      ['type 5', '0300 0a00 0500 0000 0000000000000000 6162630000000000'],
      ['reserved set', '0300 0a00 0200 0100 0000000000000000 6162630000000000'],
      ['padding not minimal', '0400 0a00 0200 0000 0000000000000000 6162630000000000 0000000000000000'],
      ['bytes after the NUL', '0300 0a00 0200 0000 0000000000000000 6162630000000001'],
      ['8 bytes', '0100 0a00 0200 0000'],
    ];
    for (const [what, id] of cases) {
      assertRefused(() => parseMessage(msg(3, 3, [...ADD_OK, id])), { errno: 22, offset: 80, exttype: 10 }, what);
    }
  });

  test('sensitivity, proposal and supported malformations: EINVAL', () => {
    const add = (x: string) => () => parseMessage(msg(3, 3, [...ADD_OK, x]));
    assertRefused(add('0300 0c00 01000000 05 02 06 00 00000000 0102030405060708'), { errno: 22, offset: 80, exttype: 12 }); // 2 words claimed, 1 present
    assertRefused(add('0200 0c00 01000000 05 00 06 00 00000001'), { errno: 22, offset: 80, exttype: 12 }); // reserved
    const acq = (p: string) => () => parseMessage(msg(6, 3, [SRC4, DST4, p]));
    const comb = (auth: string, enc: string, bits: string, allocs = '00000000 00000000', rsv = '00000000') =>
      `0a00 0d00 00 000000 ${auth} ${enc} 0000 ${bits} ${rsv} ${allocs} ${'0000000000000000'.repeat(6)}`;
    const at = { errno: 22, offset: 64, exttype: 13 };
    assertRefused(acq(comb('03', '00', '0000 a000 0000 0000')), at, 'auth minbits 0');
    assertRefused(acq(comb('03', '00', 'c000 a000 0000 0000')), at, 'auth min > max');
    assertRefused(acq(comb('00', '00', '0000 0000 8000 8000')), at, 'encrypt bits without algorithm');
    assertRefused(acq(comb('00', '0c', '0000 0000 8000 8000', '0a000000 05000000')), at, 'soft allocations above hard');
    assertRefused(acq(comb('00', '0c', '0000 0000 8000 8000', '00000000 00000000', '01000000')), at, 'comb reserved');
    parseMessage(msg(6, 3, [SRC4, DST4, comb('00', '0c', '0000 0000 8000 8000', '0a000000 00000000')])); // hard 0 = no limit
    assertRefused(acq('0100 0d00 41 000000'), at, 'replay 65');
    assertRefused(acq('0100 0d00 00 000100'), at, 'prop reserved');
    assertRefused(acq('0200 0d00 00 000000 0000000000000000'), at, 'not 8 + n*72');
    assertRefused(() => parseMessage(msg(7, 3, ['0200 0e00 00000000 02 00 8000 8000 0100']), { direction: 'out' }), { errno: 22, offset: 16, exttype: 14 });
    assertRefused(() => parseMessage(msg(7, 3, ['0100 0e00 01000000']), { direction: 'out' }), { errno: 22, offset: 16, exttype: 14 });
  });

  test('fixed-size X_ extensions of the wrong size: EINVAL', () => {
    assertRefused(() => parseMessage(msg(18, 0, ['0200 1f00 0500 0000 0000000000000000'])), { errno: 22, offset: 16, exttype: 31 });
    assertRefused(() => parseMessage(msg(16, 0, ['0100 1900 00000000'])), { errno: 22, offset: 16, exttype: 25 });
    assertRefused(() => parseMessage(msg(3, 3, [...ADD_OK, '0100 2000 07000000'])), { errno: 22, offset: 80, exttype: 32 });
  });

  test('errno helpers name the numbers', () => {
    assert.equal(errnoName(22), 'EINVAL');
    assert.equal(errnoName(97), 'EAFNOSUPPORT');
    assert.equal(errnoName(250), 'E250');
    assert.equal(errnoText(17), 'EEXIST (already exists)');
    const e = new PfkeyError(22, 'x', { offset: 3 });
    assert.equal(e.errnoName, 'EINVAL');
    assert.equal(e.message, 'EINVAL: x');
    assert.ok(e instanceof Error);
  });
});

// ---------------------------------------------------------------- sockaddr helpers

describe('sockaddr helpers', () => {
  test('parseIPv4 accepts dotted quads and nothing else', () => {
    assert.deepStrictEqual(parseIPv4('192.0.2.1'), Uint8Array.of(192, 0, 2, 1));
    assert.deepStrictEqual(parseIPv4('0.0.0.0'), Uint8Array.of(0, 0, 0, 0));
    assert.deepStrictEqual(parseIPv4('255.255.255.255'), Uint8Array.of(255, 255, 255, 255));
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1..2.3', '1.2.3.4.', 'a.b.c.d', ' 1.2.3.4', '1.2.3.-4']) {
      assert.equal(parseIPv4(bad), undefined, JSON.stringify(bad));
    }
    assert.equal(formatIPv4(Uint8Array.of(10, 0, 1, 0)), '10.0.1.0');
  });

  test('parseIPv6 reads the RFC 4291 forms', () => {
    assert.equal(hex(parseIPv6('2001:db8::1')!), '20010db8000000000000000000000001');
    assert.equal(hex(parseIPv6('::')!), '0'.repeat(32));
    assert.equal(hex(parseIPv6('::1')!), '0'.repeat(30) + '01');
    assert.equal(hex(parseIPv6('1::')!), '0001' + '0'.repeat(28));
    assert.equal(hex(parseIPv6('2001:DB8:0:0:1:0:0:1')!), '20010db8000000000001000000000001');
    assert.equal(hex(parseIPv6('::ffff:192.0.2.1')!), '00000000000000000000ffffc0000201');
    assert.equal(hex(parseIPv6('1:2:3:4:5:6:7:8')!), '00010002000300040005000600070008');
    for (const bad of ['', ':', '1:::2', '1::2::3', 'g::1', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', ':1::', '::1.2.3', '1.2.3.4::']) {
      assert.equal(parseIPv6(bad), undefined, JSON.stringify(bad));
    }
  });

  test('formatIPv6 writes RFC 5952 canonical text', () => {
    const f = (s: string) => formatIPv6(parseIPv6(s)!);
    assert.equal(f('2001:db8::1'), '2001:db8::1');
    assert.equal(f('::'), '::');
    assert.equal(f('::1'), '::1');
    assert.equal(f('1::'), '1::');
    assert.equal(f('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1'); // first of two equal runs
    assert.equal(f('2001:0db8:0000:0000:0000:0000:0000:0001'), '2001:db8::1'); // no leading zeros
    assert.equal(f('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1'); // a single 0 is not shortened
    assert.equal(f('2001:db8:0:0:1:0:0:0'), '2001:db8:0:0:1::'); // the longer run wins
    assert.equal(f('2001:DB8::A'), '2001:db8::a'); // lower case
    assert.equal(f('::ffff:192.0.2.1'), '::ffff:192.0.2.1');
  });

  test('familyOf, maskToPrefix and prefixToMask', () => {
    assert.equal(familyOf('192.0.2.1'), AF_INET);
    assert.equal(familyOf('2001:db8::1'), AF_INET6);
    assert.equal(familyOf('example.com'), 0);
    assert.equal(maskToPrefix(AF_INET, '255.255.255.0'), 24);
    assert.equal(maskToPrefix(AF_INET, '255.255.240.0'), 20);
    assert.equal(maskToPrefix(AF_INET, '0.0.0.0'), 0);
    assert.equal(maskToPrefix(AF_INET, '255.255.255.255'), 32);
    assert.equal(maskToPrefix(AF_INET, '255.255.0.255'), -1); // not contiguous
    assert.equal(maskToPrefix(AF_INET, '255.254.255.0'), -1);
    assert.equal(maskToPrefix(AF_INET, '255.255.250.0'), -1); // hole inside the partial byte
    assert.equal(maskToPrefix(AF_INET, '255.255.255.1'), -1);
    assert.equal(maskToPrefix(AF_INET6, 'ffff:ffff:ffff:ffff::'), 64);
    assert.equal(maskToPrefix(AF_INET6, 'ffff:ffff:ffff:fffe:8000::'), -1);
    assert.equal(prefixToMask(AF_INET, 20), '255.255.240.0');
    assert.equal(prefixToMask(AF_INET, 0), '0.0.0.0');
    assert.equal(prefixToMask(AF_INET, 32), '255.255.255.255');
    assert.equal(prefixToMask(AF_INET6, 64), 'ffff:ffff:ffff:ffff::');
    assert.equal(prefixToMask(AF_INET6, 127), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe');
    assert.throws(() => maskToPrefix(AF_INET, 'nonsense'), RangeError);
  });
});

// ---------------------------------------------------------------- renderings

describe('render', () => {
  const KA = '0400 0800 a000 0000 0102030405060708090a0b0c0d0e0f1011121314 00000000';
  const LH = '0400 0300 0a000000 0100000000002000 100e000000000000 0000000000000000';
  const IDS = '0400 0a00 0200 0000 0000000000000000 76706e2e6578616d706c652e636f6d 00';
  const add = () => parseMessage(msg(3, 3, [SA16, LH, SRC4, DST4, KA, IDS], { seq: 3, pid: 77 }));

  test('renderMessage names the message, shows the SPI in hex and hides keys unless asked', () => {
    const text = renderMessage(add());
    assert.match(text, /^SADB_ADD satype=ESP seq=3 pid=77 len=\d+/);
    assert.ok(text.includes('spi=0x12345678'), text);
    assert.ok(text.includes('KEY_AUTH: bits=160 [hidden]'), text);
    assert.ok(!text.includes('0102030405'), 'key bytes not shown');
    assert.ok(text.includes('flags=PFS|CLEARFLOW'), text);
    assert.ok(text.includes('"vpn.example.com"'), text);
    const shown = renderMessage(add(), { showKeys: true });
    assert.ok(shown.includes('KEY_AUTH: bits=160 0102030405060708090a0b0c0d0e0f1011121314'), shown);
    assert.ok(!shown.includes('[hidden]'));
  });

  test('renderMessage shows an errno reply and shunt SPIs by name', () => {
    assert.match(renderMessage(parseMessage(msg(3, 3, [], { errno: 17 }), { direction: 'out' })), /errno=EEXIST\(17\)/);
    const trap = parseMessage(msg(14, 11, [sa16('00000104', '00', '00', '00', '00'), DST4,
      '0300 1500 00 00 0000  0200 0000 0a000100 0000000000000000',
      '0300 1600 00 00 0000  0200 0000 0a000200 0000000000000000',
      '0300 1700 00 00 0000  0200 0000 ffffff00 0000000000000000',
      '0300 1800 00 00 0000  0200 0000 ffffff00 0000000000000000']));
    assert.ok(renderMessage(trap).includes('spi=%trap'));
  });

  test('messageToJSON hides keys by default, shows hex with showKeys, and stringifies', () => {
    const j = messageToJSON(add()) as any;
    assert.equal(j.type, 'SADB_ADD');
    assert.equal(j.satype, 'ESP');
    assert.equal(j.errno, 0);
    assert.equal(j.extensions.KEY_AUTH.key, '[hidden]');
    assert.equal(j.extensions.KEY_AUTH.bits, 160);
    assert.equal(j.extensions.SA.spi, 0x12345678);
    // bigints: exact as a number when safe, else as a decimal string.
    assert.equal(j.extensions.LIFETIME_HARD.addtime, 3600);
    assert.equal(j.extensions.LIFETIME_HARD.bytes, '9007199254740993');
    assert.equal(j.extensions.IDENTITY_SRC.id, 0);
    const s = JSON.stringify(j);
    assert.deepEqual(JSON.parse(s), j);
    assert.ok(!s.includes('0102030405'));
    const k = messageToJSON(add(), { showKeys: true }) as any;
    assert.equal(k.extensions.KEY_AUTH.key, '0102030405060708090a0b0c0d0e0f1011121314');
    assert.doesNotThrow(() => JSON.stringify(k));
  });
});

// ---------------------------------------------------------------- regressions

describe('codec bugs found by these tests (fixed; kept as regressions)', () => {
  /** The codec's own contract (extensions.ts header): refuse, or rebuild the very same bytes. */
  function refusedOrRoundTrips(b: Uint8Array, dir: Direction): void {
    let m: PfkeyMessage;
    try {
      m = parseMessage(b, { direction: dir });
    } catch (e) {
      assert.ok(e instanceof PfkeyError);
      return;
    }
    assert.equal(hex(buildMessage(m)), hex(b));
  }
  const IDS_HEAD = '0a00 0200 0000 0000000000000000'; // exttype 10, FQDN, reserved, id 0

  test('identity: an empty string padded to 24 bytes is refused (padding must be minimal)', () => {
      refusedOrRoundTrips(msg(6, 3, [SRC4, DST4, `0300 ${IDS_HEAD} 0000000000000000`, '0100 0d00 00 000000']), 'out');
    });

  test('identity: bytes that are not UTF-8 are kept byte for byte', () => {
      refusedOrRoundTrips(msg(6, 3, [SRC4, DST4, `0300 ${IDS_HEAD} ff00000000000000`, '0100 0d00 00 000000']), 'out');
    });

  test('identity: a leading UTF-8 byte order mark (ef bb bf) is kept', () => {
      refusedOrRoundTrips(msg(6, 3, [SRC4, DST4, `0300 ${IDS_HEAD} efbbbf76706e0000`, '0100 0d00 00 000000']), 'out');
      // The value level: an identity string starting with U+FEFF does not survive build -> parse.
      const m = parseMessage(buildMessage({
        header: { type: 6, satype: 3 }, addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'),
        identitySrc: { type: 2, id: 0n, data: '\u00ef\u00bb\u00bfvpn' }, proposal: { replay: 0, combs: [] },
      }), { direction: 'out' });
      assert.equal(m.identitySrc?.data, '\u00ef\u00bb\u00bfvpn');
    });

  test('parseMessage(Buffer): decoded key bytes are copies, not views of the input', () => {
      const KA = '0400 0800 a000 0000 0102030405060708090a0b0c0d0e0f1011121314 00000000';
      const buf = Buffer.from(msgHex(3, 3, [SA16, SRC4, DST4, KA]), 'hex');
      const m = parseMessage(buf);
      buf.fill(0xee); // e.g. the socket layer reusing its receive buffer
      assert.equal(hex(m.keyAuth!.key), '0102030405060708090a0b0c0d0e0f1011121314');
    });

  test('parseMessage(u8, { keyViews: true }): key bytes are views of the input, nothing else changes', () => {
      const KA = '0400 0800 a000 0000 0102030405060708090a0b0c0d0e0f1011121314 00000000';
      const KE = '0300 0900 8000 0000 a1a2a3a4a5a6a7a8a9aaabacadaeafb0';
      const whole = Buffer.from(`ffff${msgHex(3, 3, [SA16, SRC4, DST4, KA, KE])}`, 'hex');
      const u8 = new Uint8Array(whole.buffer, whole.byteOffset + 2, whole.length - 2);
      const copied = parseMessage(u8);
      const viewed = parseMessage(u8, { keyViews: true });
      assert.deepEqual({ ...viewed, keyAuth: undefined, keyEncrypt: undefined }, { ...copied, keyAuth: undefined, keyEncrypt: undefined });
      for (const f of ['keyAuth', 'keyEncrypt'] as const) {
        assert.equal(viewed[f]!.bits, copied[f]!.bits);
        assert.equal(hex(viewed[f]!.key), hex(copied[f]!.key));
        assert.equal(viewed[f]!.key.buffer, u8.buffer, `${f} is a view`);
      }
      u8.fill(0xee);
      assert.equal(hex(viewed.keyAuth!.key), 'ee'.repeat(20));
      assert.equal(hex(copied.keyAuth!.key), '0102030405060708090a0b0c0d0e0f1011121314');
    });

  test('buildMessage: a message longer than 65535 units is refused, never wrapped', () => {
      const big = { header: { type: 3, satype: 3 }, kmprivate: { data: new Uint8Array(524288) } };
      let out: Uint8Array | undefined;
      try {
        out = buildMessage(big);
      } catch (e) {
        assert.ok(e instanceof RangeError);
        return;
      }
      const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
      assert.equal(dv.getUint16(4, true) * 8, out.length, 'sadb_msg_len must describe the bytes written');
    });
});
