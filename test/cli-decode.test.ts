/**
 * `klips decode`: hex in (argument or stdin), decoded text or JSON out, request or reply
 * rules, back-to-back messages, and "decode: <ERRNO> at byte <offset> (<reason>)".
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonRecords, klips, klipsOk } from './cli-harness.js';
import { readVector } from './vectors.js';

const vectors = readVector('clients/openswan-spi.json') as { cases: Array<{ name: string; requests: Array<{ hex: string }> }> };
const hexOf = (name: string) => vectors.cases.find((c) => c.name === name)!.requests[0].hex;
const REGISTER = '020700030200000001000000af010000';

test('decode a header-only request, from the argument and from stdin', async () => {
  assert.equal(await klipsOk(['decode', REGISTER]), 'SADB_REGISTER satype=ESP seq=1 pid=431 len=2\n');
  assert.equal(await klipsOk(['decode'], { input: `${REGISTER.slice(0, 10)}\n  ${REGISTER.slice(10)}\n` }), 'SADB_REGISTER satype=ESP seq=1 pid=431 len=2\n');
});

test("decode openswan spi's ADD: keys hidden unless --show-keys; --json", async () => {
  const hex = hexOf('spi-esp-3des-sha1');
  assert.equal(await klipsOk(['decode', hex]), [
    'SADB_ADD satype=ESP seq=1 pid=32658 len=19',
    '  SA: spi=0x12345678 replay=0 state=MATURE auth=SHA1HMAC encrypt=3DESCBC flags=0 ref=0',
    '  ADDRESS_SRC: 192.0.2.1',
    '  ADDRESS_DST: 192.0.2.2',
    '  KEY_AUTH: bits=160 [hidden]',
    '  KEY_ENCRYPT: bits=192 [hidden]',
    '',
  ].join('\n'));
  assert.match(await klipsOk(['decode', hex, '--show-keys']), /KEY_ENCRYPT: bits=192 0102030405060708090a0b0c0d0e0f101112131415161718\n/);
  const j = JSON.parse(await klipsOk(['decode', '--json', hex]));
  assert.deepEqual([j.type, j.satype, j.errno, j.header.errno], ['SADB_ADD', 'ESP', null, 0], 'errno: a name, or null');
  assert.equal(j.extensions.KEY_AUTH.key, '[hidden]');
  assert.equal(j.extensions.SA.spi, 0x12345678);
});

test('--out parses a reply with the kernel-to-user rules; two messages back to back', async () => {
  const reply = '020700030a00000001000000af01000004000e000000000002008000800000000300a000a0000000050000010001000004000f00000000000308c000c00000000b000000000000000c10800000010000';
  const r = await klips(['decode', reply]);
  assert.equal(r.code, 1, 'a REGISTER with SUPPORTED extensions is not a valid request');
  assert.match(r.stderr, /^decode: EINVAL at byte 16 \(extension SUPPORTED_AUTH not permitted in REGISTER \(in\)\)\n$/);
  const out = await klipsOk(['decode', '--out', reply]);
  assert.match(out, /^SADB_REGISTER satype=ESP seq=1 pid=431 len=10\n {2}SUPPORTED_AUTH: MD5HMAC\(iv=0 bits=128-128\)/);
  const two = await klipsOk(['decode', REGISTER + REGISTER.replace('01000000af', '02000000af')]);
  assert.equal(two, 'SADB_REGISTER satype=ESP seq=1 pid=431 len=2\nSADB_REGISTER satype=ESP seq=2 pid=431 len=2\n');
  const lines = jsonRecords(await klipsOk(['decode', '--json', REGISTER + REGISTER.replace('01000000af', '02000000af')]));
  assert.deepEqual(lines.map((m) => [m.type, m.header.seq]), [['SADB_REGISTER', 1], ['SADB_REGISTER', 2]], 'one JSON line per message');
});

test('refusals name the errno, the byte and the reason, exit 1; non-hex input exits 2', async () => {
  const cases: Array<[string, string]> = [
    ['0207000302000000010000', 'decode: EMSGSIZE at byte 0 (message of 11 bytes is shorter than the 16-byte header)\n'],
    ['020700030300000001000000af010000', 'decode: EMSGSIZE at byte 4 (sadb_msg_len says 24 bytes, 16 given)\n'],
    ['020700030300000001000000af0100000000000000000000', 'decode: EINVAL at byte 16 (zero-length extension)\n'],
    ['030700030200000001000000af010000', 'decode: EINVAL at byte 0 (version 3, must be 2)\n'],
    ['021700030200000001000000af010000', 'decode: EINVAL at byte 1 (message type 23 out of range 1..19)\n'],
  ];
  for (const [hex, want] of cases) {
    const r = await klips(['decode', hex]);
    assert.equal(r.code, 1, hex);
    assert.equal(r.stderr, want);
    assert.equal(r.stdout, '');
  }
  for (const bad of ['zz', '123']) {
    const r = await klips(['decode', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not hexadecimal|odd number of hex digits/);
  }
});
