/**
 * `klips spi` end to end against a real klipsd (in this process, so the SA table can be
 * inspected): add with every algorithm form, get, delete, flush, dump, getspi, listing,
 * and every error path (errno replies exit 1 with one line; bad arguments exit 2 with one
 * line and a --help pointer; an unreachable klipsd exits 1).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_IPIP, SADB_SASTATE_LARVAL, SADB_SASTATE_MATURE,
} from '../src/wire/index.js';
import { formatSaidOld } from '../src/sadb/said.js';
import { assertUsageError, jsonRecords, KEY_3DES, KEY_MD5, KEY_SHA1, klips, klipsOk, useDaemon, waitUntil } from './cli-harness.js';

const kd = useDaemon();

const sa = (proto: number, spi: number, dst: string) => kd.d.server.engine.sadb.get({ proto, spi, dst });
const esp = (spi: number, dst = '192.0.2.2') => sa(IPPROTO_ESP, spi, dst);
const AES128 = '0x000102030405060708090a0b0c0d0e0f';

test('ADD with the man page form, then EEXIST on the same SAID', async () => {
  const args = ['spi', ...kd.S, '--af', 'inet', '--edst', '192.0.2.2', '--spi', '0x12345678', '--proto', 'esp', '--src', '192.0.2.1',
    '--esp', '3des-sha1-96', '--enckey', KEY_3DES, '--authkey', KEY_SHA1];
  assert.equal(await klipsOk(args), '');
  const s = esp(0x12345678)!;
  assert.ok(s, 'SA in the table');
  assert.deepEqual([s.state, s.auth, s.encrypt, s.src.addr, s.keyAuth!.bits, s.keyEncrypt!.bits], [SADB_SASTATE_MATURE, 3, 3, '192.0.2.1', 160, 192]);
  const again = await klips(args);
  assert.equal(again.code, 1);
  assert.equal(again.stdout, '');
  assert.equal(again.stderr, 'spi: ADD esp0x12345678@192.0.2.2 failed: EEXIST (SA already exists): SA esp.12345678@192.0.2.2 already exists\n');
});

test("openswan's algorithm strings: aes128-sha1, aes-md5, aes256-sha2_256, aes_gcm128, null-sha1, 3des", async () => {
  const cases: Array<[string, string, string | undefined, number, number, number, number]> = [
    ['aes128-sha1', AES128, KEY_SHA1, 0x2001, 3, 12, 128],
    ['aes-md5', AES128, KEY_MD5, 0x2002, 2, 12, 128],
    ['aes256-sha2_256', `${AES128}${AES128.slice(2)}`, `${KEY_SHA1}0102030405060708090a0b0c`, 0x2003, 5, 12, 256],
    ['aes_gcm128', `${AES128}01020304`, undefined, 0x2004, 0, 20, 160],
    ['3des', KEY_3DES, undefined, 0x2005, 0, 3, 192],
  ];
  for (const [alg, ek, ak, spi, auth, enc, bits] of cases) {
    const args = ['spi', ...kd.S, '--said', `esp.${spi.toString(16)}@192.0.2.2`, '--src', '192.0.2.1', '--esp', alg, '--enckey', ek];
    if (ak) args.push('--authkey', ak);
    await klipsOk(args);
    const s = esp(spi)!;
    assert.deepEqual([s.auth, s.encrypt, s.keyEncrypt?.bits], [auth, enc, bits], alg);
  }
  await klipsOk(['spi', ...kd.S, '--said', 'esp0x2006@192.0.2.2', '--esp', 'null-sha1', '--authkey', KEY_SHA1]);
  assert.deepEqual([esp(0x2006)!.encrypt, esp(0x2006)!.auth, esp(0x2006)!.keyEncrypt], [11, 3, undefined]);
  assert.equal(esp(0x2006)!.src.addr, '0.0.0.0', 'no --src: the any address, as openswan');
});

test('AH with lifetimes and a replay window, IPv6, IPIP, IPCOMP, NAT-T, outif and SAref', async () => {
  await klipsOk(['spi', ...kd.S, '--af', 'inet', '--edst', '192.0.2.2', '--spi', '0x1003', '--proto', 'ah', '--src', '192.0.2.1',
    '--ah', 'hmac-md5-96', '--authkey', KEY_MD5, '--replay_window', '32', '--life', 'soft-addtime=100,hard-addtime=200', '--life', 'hard-bytes=1000000']);
  const ah = sa(IPPROTO_AH, 0x1003, '192.0.2.2')!;
  assert.deepEqual([ah.auth, ah.replay, ah.soft.addtime, ah.hard.addtime, ah.hard.bytes], [2, 32, 100, 200, 1000000]);

  await klipsOk(['spi', ...kd.S, '--af', 'inet6', '--edst', '2001:db8::2', '--spi', '0x150', '--proto', 'esp', '--src', '2001:db8::1',
    '--esp', '3des-md5-96', '--enckey', KEY_3DES, '--authkey', KEY_MD5]);
  assert.equal(sa(IPPROTO_ESP, 0x150, '2001:db8::2')!.src.addr, '2001:db8::1');

  await klipsOk(['spi', ...kd.S, '--said', 'tun.1002@192.0.2.2', '--src', '192.0.2.1', '--dst', '192.0.2.2', '--ip4']);
  assert.equal(sa(IPPROTO_IPIP, 0x1002, '192.0.2.2')!.satype, 9);
  await klipsOk(['spi', ...kd.S, '--said', 'tun:1004@2001:db8::2', '--src', '2001:db8::1', '--ip6']);
  assert.ok(sa(IPPROTO_IPIP, 0x1004, '2001:db8::2'), 'tun:HEX@v6 is an IPv6 SAID with a hex SPI');
  await klipsOk(['spi', ...kd.S, '--af', 'inet', '--edst', '192.0.2.2', '--spi', '0x4001', '--proto', 'comp', '--src', '192.0.2.1', '--comp', 'deflate']);
  assert.equal(sa(IPPROTO_COMP, 0x4001, '192.0.2.2')!.encrypt, 2);

  await klipsOk(['spi', ...kd.S, '--said', 'esp.3001@192.0.2.2', '--esp', '3des-sha1-96', '--enckey', KEY_3DES, '--authkey', KEY_SHA1,
    '--natt', 'nonesp', '--sport', '4500', '--dport', '4501', '--outif', 'ipsec0']);
  const n = esp(0x3001)!;
  assert.deepEqual(n.natT, { type: 2, sport: 4501, dport: 4500, oa: undefined }, "openswan's --sport/--dport swap is kept");
  assert.equal(n.plumbif, 49152);

  const saref = await klipsOk(['spi', ...kd.S, '--said', 'esp.3002@192.0.2.2', '--esp', '3des', '--enckey', KEY_3DES, '--saref_me', '7', '--saref_him', '8']);
  assert.equal(saref, 'spi: saref=7/8\n');

  const warn = await klips(['spi', ...kd.S, '--said', 'esp.3003@192.0.2.2', '--esp', '3des', '--enckey', KEY_3DES, '--life', 'hard-packets=10']);
  assert.equal(warn.code, 0);
  assert.match(warn.stderr, /warning: packets lifetimes are not sent/);
});

test('GET shows one SA, keys hidden unless --show-keys; --json', async () => {
  await klipsOk(['spi', ...kd.S, '--said', 'esp.4001@192.0.2.3', '--src', '192.0.2.1', '--esp', '3des-md5-96', '--enckey', KEY_3DES, '--authkey', KEY_MD5]);
  const text = await klipsOk(['spi', ...kd.S, '--get', '--said', 'esp.4001@192.0.2.3']);
  const lines = text.split('\n');
  assert.match(lines[0], /^SADB_GET satype=ESP seq=1 pid=\d+ len=23$/);
  assert.deepEqual(lines.slice(1, 2).concat(lines.slice(3)), [
    '  SA: spi=0x00004001 replay=0 state=MATURE auth=MD5HMAC encrypt=3DESCBC flags=0 ref=0',
    '  ADDRESS_SRC: 192.0.2.1',
    '  ADDRESS_DST: 192.0.2.3',
    '  KEY_AUTH: bits=128 [hidden]',
    '  KEY_ENCRYPT: bits=192 [hidden]',
    '',
  ]);
  assert.match(lines[2], /^ {2}LIFETIME_CURRENT: allocations=0 bytes=0 addtime=\d+ usetime=0 packets=0$/);
  const shown = await klipsOk(['spi', ...kd.S, '--get', '--said', 'esp.4001@192.0.2.3', '--show-keys']);
  assert.match(shown, /KEY_AUTH: bits=128 0102030405060708090a0b0c0d0e0f10\n/);
  const json = JSON.parse(await klipsOk(['spi', ...kd.S, '--get', '--said', 'esp.4001@192.0.2.3', '--json']));
  assert.equal(json.said, 'esp0x4001@192.0.2.3');
  assert.deepEqual([json.authKeyBits, json.encryptKeyBits, 'authKey' in json, 'encryptKey' in json], [128, 192, false, false], 'key sizes, no key bytes');
  const keyed = JSON.parse(await klipsOk(['spi', ...kd.S, '--get', '--said', 'esp.4001@192.0.2.3', '--json', '--show-keys']));
  assert.deepEqual([keyed.authKey, keyed.encryptKey], [KEY_MD5.slice(2), KEY_3DES.slice(2)]);
  const missing = await klips(['spi', ...kd.S, '--get', '--said', 'esp.4fff@192.0.2.3']);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'spi: GET esp0x4fff@192.0.2.3 failed: ESRCH (no such SA): no SA esp.4fff@192.0.2.3\n');
});

test('--json: the listing, --get and --dump give each SA as the same record', async () => {
  const added = jsonRecords(await klipsOk(['spi', ...kd.S, '--said', 'esp.4101@192.0.2.7', '--src', '192.0.2.1', '--esp', 'aes128-sha2_256', '--enckey', AES128,
    '--authkey', `${KEY_SHA1}000102030405060708090a0b`, '--replay_window', '32', '--life', 'soft-bytes=1000000,hard-bytes=2000000,hard-addtime=3600',
    '--natt', 'nonesp', '--sport', '4500', '--dport', '4501', '--json']));
  assert.deepEqual(added.map((m) => [m.type, m.errno, m.extensions.SA.spi]), [['SADB_ADD', null, 0x4101]], "a change prints klipsd's reply as a message record");
  kd.d.server.engine.countTraffic({ proto: IPPROTO_ESP, spi: 0x4101, dst: '192.0.2.7' }, 1500, 3);
  const get = JSON.parse(await klipsOk(['spi', ...kd.S, '--get', '--said', 'esp.4101@192.0.2.7', '--json']));
  assert.deepEqual({ ...get, current: { ...get.current, addtime: 0, usetime: 0 } }, {
    said: 'esp0x4101@192.0.2.7', satype: 'ESP', spi: 0x4101, src: '192.0.2.1', dst: '192.0.2.7', state: 'MATURE', replay: 32,
    auth: 'sha2_256', encrypt: 'aes', flags: 0, authKeyBits: 256, encryptKeyBits: 128,
    current: { allocations: 0, bytes: 1500, addtime: 0, usetime: 0, packets: 3 },
    soft: { allocations: 0, bytes: 1000000, addtime: 0, usetime: 0, packets: 0 },
    hard: { allocations: 0, bytes: 2000000, addtime: 3600, usetime: 0, packets: 0 },
    natT: { type: 'nonesp', sport: 4501, dport: 4500 },
  });
  assert.ok(get.current.addtime >= 0 && get.current.addtime <= 2 && get.current.usetime >= 0 && get.current.usetime <= 2, 'ages in seconds');
  const list = (await klipsOk(['spi', ...kd.S, '--json'])).trim().split('\n').map((l) => JSON.parse(l));
  const dump = (await klipsOk(['spi', ...kd.S, '--dump', '--json'])).trim().split('\n').map((l) => JSON.parse(l));
  const noAge = (r: { current: object }) => ({ ...r, current: { ...r.current, addtime: 0, usetime: 0 } });
  for (const other of [list.find((r) => r.said === get.said), dump.find((r) => r.said === get.said)]) {
    assert.deepEqual(noAge(other), noAge(get), 'the same fields, types and values');
    assert.ok(Math.abs(other.current.addtime - get.current.addtime) <= 1);
  }
  // Every record of either view has the same keys with the same JSON types (natT: an object or null).
  const shape = (r: Record<string, unknown>) => Object.entries(r).map(([k, v]) => `${k}:${v === null ? 'null' : typeof v}`).join(' ');
  const shapes = new Set([...list, ...dump].map((r) => shape({ ...r, natT: r.natT ?? {} })));
  assert.equal(shapes.size, 1, [...shapes].join('\n'));
});

test('DELETE removes the SA; a missing SA is ESRCH', async () => {
  await klipsOk(['spi', ...kd.S, '--said', 'esp.5001@192.0.2.4', '--esp', '3des', '--enckey', KEY_3DES]);
  assert.ok(esp(0x5001, '192.0.2.4'));
  assert.equal(await klipsOk(['spi', ...kd.S, '--said', 'esp.5001@192.0.2.4', '--del']), '');
  assert.equal(esp(0x5001, '192.0.2.4'), undefined);
  const r = await klips(['spi', ...kd.S, '--af', 'inet', '--edst', '192.0.2.4', '--spi', '0x5001', '--proto', 'esp', '--del']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'spi: DELETE esp0x5001@192.0.2.4 failed: ESRCH (no such SA): no SA esp.5001@192.0.2.4\n');
});

test('GETSPI allocates a larval SA in the range; a taken fixed SPI is EEXIST', async () => {
  const out = await klipsOk(['spi', ...kd.S, '--getspi', '0x7000-0x70ff', '--af', 'inet', '--edst', '192.0.2.5', '--proto', 'esp', '--src', '192.0.2.1']);
  const m = /^esp\.([0-9a-f]+)@192\.0\.2\.5\n$/.exec(out);
  assert.ok(m, out);
  const spi = parseInt(m![1], 16);
  assert.ok(spi >= 0x7000 && spi <= 0x70ff);
  assert.equal(esp(spi, '192.0.2.5')!.state, SADB_SASTATE_LARVAL);
  const r = await klips(['spi', ...kd.S, '--getspi', `0x${spi.toString(16)}-0x${spi.toString(16)}`, '--af', 'inet', '--edst', '192.0.2.5', '--proto', 'esp']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `spi: GETSPI esp@192.0.2.5 0x${spi.toString(16)}-0x${spi.toString(16)} failed: EEXIST (no free SPI in the range): SPI 0x${spi.toString(16)} is taken\n`);
});

test('listing, DUMP, FLUSH of one type, FLUSH of all, and an empty DUMP', async () => {
  await klipsOk(['spi', ...kd.S, '--said', 'esp.6001@192.0.2.6', '--src', '192.0.2.1', '--esp', '3des-sha1-96', '--enckey', KEY_3DES, '--authkey', KEY_SHA1, '--replay_window', '16']);
  const list = await klipsOk(['spi', ...kd.S]);
  assert.match(list, /^esp0x6001@192\.0\.2\.6 ESP_3DES_HMAC_SHA1: dir=out src=192\.0\.2\.1 ooowin=16 alen=160 aklen=160 eklen=192 life\(c,s,h\)=addtime\(\d+,0,0\) natencap=none natsport=0 natdport=0 refcount=1 ref=\d+ refhim=0$/m);
  assert.equal(list.split('\n').filter(Boolean).length, kd.d.server.engine.sadb.size);

  const dump = await klipsOk(['spi', ...kd.S, '--dump', '--json']);
  const records = dump.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(records.length, kd.d.server.engine.sadb.size, 'one SA record per line, the whole table');
  assert.deepEqual(records.map((r) => r.said).sort(), [...kd.d.server.engine.sadb.values()].map((x) => formatSaidOld(x.said)).sort());
  const text = await klipsOk(['spi', ...kd.S, '--dump', '--proto', 'ah']);
  assert.equal((text.match(/^SADB_DUMP satype=AH/gm) ?? []).length, [...kd.d.server.engine.sadb.values()].filter((s) => s.satype === 2).length);

  const before = kd.d.server.engine.sadb.size;
  const ahCount = [...kd.d.server.engine.sadb.values()].filter((s) => s.satype === 2).length;
  assert.ok(ahCount > 0);
  await klipsOk(['spi', ...kd.S, '--clear', '--proto', 'ah']);
  assert.equal(kd.d.server.engine.sadb.size, before - ahCount);
  assert.equal(await klipsOk(['spi', ...kd.S, '--clear']), '');
  assert.equal(kd.d.server.engine.sadb.size, 0);
  assert.equal(await klipsOk(['spi', ...kd.S, '--dump']), '', 'nothing to dump: no output, exit 0');
  assert.equal(await klipsOk(['spi', ...kd.S, '--dump', '--json']), '');
  assert.equal(await klipsOk(['spi', ...kd.S]), '');
  assert.equal(await klipsOk(['spi', ...kd.S, '--json']), '', 'an empty table: no JSON lines');
});

test('refusals from the engine: an algorithm klips knows but klipsd does not run is EINVAL', async () => {
  const lzs = await klips(['spi', ...kd.S, '--said', 'comp.4002@192.0.2.2', '--comp', 'lzs']);
  assert.equal(lzs.code, 1);
  assert.equal(lzs.stderr, 'spi: ADD comp0x4002@192.0.2.2 failed: EINVAL (invalid argument or unsupported algorithm/key): encrypt algorithm 3 not supported\n');
  const blowfish = await klips(['spi', ...kd.S, '--said', 'esp.8001@192.0.2.2', '--esp', 'blowfish-sha1', '--enckey', AES128, '--authkey', KEY_SHA1]);
  assert.equal(blowfish.code, 1);
  assert.equal(blowfish.stderr, 'spi: ADD esp0x8001@192.0.2.2 failed: EINVAL (invalid argument or unsupported algorithm/key): encrypt algorithm 7 not supported\n');
  assert.equal(esp(0x8001), undefined);
});

test("keys in openswan's three forms: 0x hex with '_' between byte pairs, 0s base64, 0t text", async () => {
  await klipsOk(['spi', ...kd.S, '--said', 'ah.8101@192.0.2.2', '--ah', 'hmac-md5-96', '--authkey', '0x00010203_04050607_08090a0b_0c0d0e0f']);
  assert.equal(Buffer.from(sa(IPPROTO_AH, 0x8101, '192.0.2.2')!.keyAuth!.key()).toString('hex'), '000102030405060708090a0b0c0d0e0f');
  await klipsOk(['spi', ...kd.S, '--said', 'ah.8102@192.0.2.2', '--ah', 'hmac-sha1-96', '--authkey', `0s${Buffer.from('twenty bytes of key!').toString('base64')}`]);
  assert.equal(Buffer.from(sa(IPPROTO_AH, 0x8102, '192.0.2.2')!.keyAuth!.key()).toString(), 'twenty bytes of key!');
  await klipsOk(['spi', ...kd.S, '--said', 'esp.8103@192.0.2.2', '--esp', 'aes-sha1', '--enckey', '0tsixteen bytes!!!', '--authkey', '0ttwenty bytes of key!']);
  assert.deepEqual([esp(0x8103)!.keyEncrypt!.bits, Buffer.from(esp(0x8103)!.keyAuth!.key()).toString()], [128, 'twenty bytes of key!']);
});

test('bad arguments: one line and a --help pointer, exit 2, nothing sent', async () => {
  const before = kd.d.server.stats.framesIn;
  const bad: Array<[string[], RegExp]> = [
    [['--af', 'inet'], /no action chosen/],
    [['--del', '--clear'], /only one of --ah, --esp/],
    [['--said', 'esp.ff@192.0.2.2', '--del'], /illegal reserved SPI 0xff/],
    [['--spi', '0x1000', '--proto', 'esp', '--del'], /SA destination not specified/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', '3des'], /needs an encryption key \(--enckey\)/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', 'aes128-sha1', '--enckey', KEY_3DES, '--authkey', KEY_SHA1], /^klips spi: --enckey has 192 bits; "aes128-sha1" takes 128$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', '3des-sha1-96', '--enckey', '0x0102030405060708', '--authkey', KEY_SHA1], /^klips spi: --enckey has 64 bits; "3des-sha1-96" takes 192$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', '3des-sha1-96', '--enckey', KEY_3DES, '--authkey', KEY_MD5], /^klips spi: --authkey has 128 bits; "3des-sha1-96" takes 160$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', 'aes-md5', '--enckey', KEY_3DES.slice(0, 36), '--authkey', KEY_MD5], /^klips spi: --enckey has 136 bits; "aes-md5" takes 128, 192 or 256$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', 'aes_gcm128', '--enckey', AES128], /^klips spi: --enckey has 128 bits; "aes_gcm128" takes 160$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', 'blowfish', '--enckey', '0x01020304'], /^klips spi: --enckey has 32 bits; "blowfish" takes 40 to 448$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', 'aes100-sha1'], /^klips spi: invalid key length 100 in "aes100-sha1" \(aes takes 128, 192 or 256\)$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', 'null128-sha1'], /^klips spi: invalid key length 128 in "null128-sha1" \(null takes no key\)$/],
    [['--said', 'ah.1000@192.0.2.2', '--ah', 'sha2_512', '--authkey', `${KEY_SHA1}000000000000000000000000`], /^klips spi: --authkey has 256 bits; "sha2_512" takes 512$/],
    [['--said', 'ah.1000@192.0.2.2', '--ah', 'md5'], /^klips spi: "md5" needs an authentication key \(--authkey\) of 128 bits$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', '3des', '--enckey', KEY_3DES.slice(2)], /^klips spi: --enckey needs 0x, 0s or 0t prefix$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', '3des', '--enckey', `0X${KEY_3DES.slice(2)}`], /^klips spi: --enckey needs 0x, 0s or 0t prefix$/],
    [['--said', 'ah.1000@192.0.2.2', '--ah', 'md5', '--authkey', '0x0_102030405060708090a0b0c0d0e0f10'], /^klips spi: --authkey: '_' may only stand alone between byte pairs$/],
    [['--said', 'ah.1000@192.0.2.2', '--ah', 'md5', '--authkey', '0sAB=='], /^klips spi: --authkey: malformed base64 after 0s$/],
    [['--said', 'ah.1000@192.0.2.2', '--ah', 'md5', '--authkey', '0t'], /^klips spi: --authkey: no key bytes after 0t$/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', 'rot13', '--enckey', KEY_3DES], /invalid encryption algorithm "rot13"/],
    [['--said', 'esp.1000@192.0.2.2', '--ah', 'hmac-md5-96', '--authkey', KEY_MD5], /--ah makes an SA of protocol ah, but the SA given is esp/],
    [['--said', 'esp.1000@999.0.2.2', '--del'], /invalid --said "esp\.1000@999\.0\.2\.2"/],
    [['--said', 'esp.1000@192.0.2.2', '--edst', '192.0.2.2', '--del'], /cannot be combined/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', '3des', '--enckey', KEY_3DES, '--life', 'soft-forever=1'], /invalid --life type "forever"/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', '3des', '--enckey', KEY_3DES, '--replay_window', '65'], /illegal replay window 65/],
    [['--said', 'esp.1000@192.0.2.2', '--esp', '3des', '--enckey', '0xabc'], /odd number of hex digits/],
    [['--af', 'inet6', '--edst', '192.0.2.2', '--spi', '0x1000', '--proto', 'esp', '--del'], /invalid --edst "192\.0\.2\.2" \(an IPv6 address\)/],
    [['--bogus'], /unknown option '--bogus'/],
  ];
  for (const [args, why] of bad) {
    assertUsageError(await klips(['spi', ...kd.S, ...args]), 'spi', why, args.join(' '));
  }
  assert.equal(kd.d.server.stats.framesIn, before, 'no bad command reached klipsd');
});

test('no klipsd at the socket path: exit 1 with one line', async () => {
  const nowhere = path.join(kd.d.dir, 'absent.sock');
  const r = await klips(['spi', '--socket', nowhere, '--said', 'esp.1000@192.0.2.2', '--del']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `spi: cannot connect to klipsd at ${nowhere}: ENOENT (is klipsd running?)\n`);
  const l = await klips(['spi', '--socket', nowhere]);
  assert.equal(l.code, 1);
  assert.match(l.stderr, /cannot connect to klipsd's view channel/);
});

test('--dry-run prints the request and sends nothing', async () => {
  const before = kd.d.server.stats.framesIn;
  const out = await klipsOk(['spi', ...kd.S, '--clear', '--dry-run']);
  assert.match(out, /^020900000200000001000000[0-9a-f]{8}\n$/);
  assert.equal(kd.d.server.stats.framesIn, before);
});

test('the tools leave no connection or PF_KEY socket behind in klipsd', async () => {
  await klipsOk(['spi', ...kd.S, '--said', 'esp.9001@192.0.2.2', '--esp', '3des', '--enckey', KEY_3DES]);
  await klipsOk(['spi', ...kd.S, '--said', 'esp.9001@192.0.2.2', '--del']);
  await waitUntil('connections to close', () => kd.d.server.connectionCount() === 0);
  assert.equal(kd.d.server.engine.endpoints.size, 0);
});
