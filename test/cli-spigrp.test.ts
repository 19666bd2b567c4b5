/**
 * `klips spigrp` end to end: group two and three SAs (SAIDs and quads), the listing in
 * /proc/net/ipsec_spigrp form, ungroup, DELETE taking the whole group, and the errors.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IPPROTO_AH, IPPROTO_ESP, IPPROTO_IPIP } from '../src/wire/index.js';
import { formatSaidOld } from '../src/sadb/said.js';
import { assertUsageError, jsonRecords, KEY_3DES, KEY_MD5, klips, klipsOk, useDaemon } from './cli-harness.js';

const kd = useDaemon();

async function addTrio(dst: string): Promise<void> {
  await klipsOk(['spi', ...kd.S, '--said', `tun.1002@${dst}`, '--src', '192.0.2.1', '--ip4']);
  await klipsOk(['spi', ...kd.S, '--said', `esp.12345678@${dst}`, '--src', '192.0.2.1', '--esp', '3des', '--enckey', KEY_3DES]);
  await klipsOk(['spi', ...kd.S, '--said', `ah.1001@${dst}`, '--src', '192.0.2.1', '--ah', 'hmac-md5-96', '--authkey', KEY_MD5]);
}

function chain(proto: number, spi: number, dst: string): string[] {
  const out: string[] = [];
  for (let s = kd.d.server.engine.sadb.get({ proto, spi, dst }); s; s = s.next) out.push(formatSaidOld(s.said));
  return out;
}

test('group three SAs with --said, list, ungroup', async () => {
  await addTrio('192.0.2.2');
  assert.equal(await klipsOk(['spigrp', ...kd.S, '--said', 'tun.1002@192.0.2.2', 'esp.12345678@192.0.2.2', 'ah.1001@192.0.2.2']), '');
  assert.deepEqual(chain(IPPROTO_IPIP, 0x1002, '192.0.2.2'), ['tun0x1002@192.0.2.2', 'esp0x12345678@192.0.2.2', 'ah0x1001@192.0.2.2']);
  assert.equal(await klipsOk(['spigrp', ...kd.S]), [
    'tun0x1002@192.0.2.2 esp0x12345678@192.0.2.2 ah0x1001@192.0.2.2 ',
    'esp0x12345678@192.0.2.2 ah0x1001@192.0.2.2 ',
    'ah0x1001@192.0.2.2 ',
    '',
  ].join('\n'));
  assert.deepEqual(jsonRecords(await klipsOk(['spigrp', ...kd.S, '--json'])), [
    { said: 'tun0x1002@192.0.2.2', group: ['tun0x1002@192.0.2.2', 'esp0x12345678@192.0.2.2', 'ah0x1001@192.0.2.2'] },
    { said: 'esp0x12345678@192.0.2.2', group: ['esp0x12345678@192.0.2.2', 'ah0x1001@192.0.2.2'] },
    { said: 'ah0x1001@192.0.2.2', group: ['ah0x1001@192.0.2.2'] },
  ]);

  const again = await klips(['spigrp', ...kd.S, '--said', 'tun.1002@192.0.2.2', 'esp.12345678@192.0.2.2']);
  assert.equal(again.code, 1);
  assert.equal(again.stderr, 'spigrp: GROUP tun0x1002@192.0.2.2 -> esp0x12345678@192.0.2.2 failed: EEXIST (an SA is already in a group): tun.1002@192.0.2.2 is already linked, or esp.12345678@192.0.2.2 leads to it\n');

  assert.equal(await klipsOk(['spigrp', ...kd.S, '--said', 'tun.1002@192.0.2.2']), '');
  assert.deepEqual(chain(IPPROTO_IPIP, 0x1002, '192.0.2.2'), ['tun0x1002@192.0.2.2']);
  assert.deepEqual(chain(IPPROTO_ESP, 0x12345678, '192.0.2.2'), ['esp0x12345678@192.0.2.2']);
});

test("SAIDs without --said, as README's example writes them", async () => {
  await addTrio('192.0.2.4');
  assert.equal(await klipsOk(['spigrp', ...kd.S, 'tun.1002@192.0.2.4', 'esp.12345678@192.0.2.4']), '');
  assert.deepEqual(chain(IPPROTO_IPIP, 0x1002, '192.0.2.4'), ['tun0x1002@192.0.2.4', 'esp0x12345678@192.0.2.4']);
  assert.equal(await klipsOk(['spigrp', ...kd.S, 'tun0x1002@192.0.2.4']), '', 'one SAID ungroups');
  assert.deepEqual(chain(IPPROTO_IPIP, 0x1002, '192.0.2.4'), ['tun0x1002@192.0.2.4']);
});

test('group with quads; DELETE of a member removes the whole group', async () => {
  await addTrio('192.0.2.3');
  await klipsOk(['spigrp', ...kd.S, 'inet', '192.0.2.3', '0x1002', 'tun', 'inet', '192.0.2.3', '0x12345678', 'esp']);
  assert.deepEqual(chain(IPPROTO_IPIP, 0x1002, '192.0.2.3'), ['tun0x1002@192.0.2.3', 'esp0x12345678@192.0.2.3']);
  await klipsOk(['spi', ...kd.S, '--said', 'esp.12345678@192.0.2.3', '--del']);
  assert.equal(kd.d.server.engine.sadb.get({ proto: IPPROTO_IPIP, spi: 0x1002, dst: '192.0.2.3' }), undefined);
  assert.ok(kd.d.server.engine.sadb.get({ proto: IPPROTO_AH, spi: 0x1001, dst: '192.0.2.3' }), 'the ungrouped AH SA stays');
});

test('spigrp errors: a missing SA is ENOENT; bad arguments exit 2', async () => {
  const r = await klips(['spigrp', ...kd.S, '--said', 'tun.1fff@192.0.2.9', 'esp.12345678@192.0.2.9']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'spigrp: GROUP tun0x1fff@192.0.2.9 -> esp0x12345678@192.0.2.9 failed: ENOENT (no such SA): no SA tun.1fff@192.0.2.9\n');
  const u = await klips(['spigrp', ...kd.S, '--said', 'tun.1fff@192.0.2.9']);
  assert.equal(u.code, 1);
  assert.equal(u.stderr, 'spigrp: UNGROUP tun0x1fff@192.0.2.9 failed: ENOENT (no such SA): no SA tun.1fff@192.0.2.9\n');
  const bad: Array<[string[], RegExp]> = [
    [['inet', '192.0.2.2', '0x1002'], /groups of "af dst spi proto"/],
    [['--said', 'a', 'b', 'c', 'd', 'e'], /expecting 1 to 4 SAs/],
    [['inet', '192.0.2.2', '0x1002', 'gre'], /invalid --proto "gre"/],
    [['inet7', '192.0.2.2', '0x1002', 'tun'], /invalid address family of SA 1 "inet7"/],
    [['--said', 'tun.10@192.0.2.2', 'esp.1000@192.0.2.2'], /illegal reserved SPI 0x10/],
    [['--said'], /--said needs the SAs/],
    [['tun.1002@192.0.2.2', 'inet'], /invalid SA 2 "inet" \(no @\)/],
  ];
  for (const [args, why] of bad) {
    assertUsageError(await klips(['spigrp', ...kd.S, ...args]), 'spigrp', why, args.join(' '));
  }
});
