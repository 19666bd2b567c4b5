/**
 * `klips debug` (klipsdebug) and `klips tncfg` end to end: setting and clearing each
 * flag changes the engine's flags exactly as KLIPS's OR/AND semantics say, the listing
 * is /proc/net/ipsec_klipsdebug's format; virtual interfaces are plumbed, listed and
 * unplumbed, with their errors.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEBUG_SUBSYSTEMS } from '../src/wire/index.js';
import { assertUsageError, jsonRecords, klips, klipsOk, useDaemon } from './cli-harness.js';

const kd = useDaemon();

const flags = () => ({ ...kd.d.server.engine.debug });

test('--set, --clear, --all, --none change exactly the named flags', async () => {
  assert.equal(await klipsOk(['debug', ...kd.S, '--set', 'tunnel']), '');
  assert.equal(flags().tunnel, 0xffffffff);
  assert.equal(flags().pfkey, 0);
  await klipsOk(['debug', ...kd.S, '--set', 'pfkey']);
  assert.deepEqual([flags().tunnel, flags().pfkey, flags().netlink], [0xffffffff, 0xffffffff, 0]);
  await klipsOk(['debug', ...kd.S, '--clear', 'tunnel']);
  assert.deepEqual([flags().tunnel, flags().pfkey], [0, 0xffffffff]);
  await klipsOk(['debug', ...kd.S, '--all']);
  for (const n of DEBUG_SUBSYSTEMS) {
    const want = n === 'verbose' ? 0 : n === 'netlink' ? 0x7fffffff : 0xffffffff;
    assert.equal(flags()[n], want, n);
  }
  await klipsOk(['debug', ...kd.S, '--clear', 'esp']);
  assert.equal(flags().esp, 0);
  assert.equal(flags().ah, 0xffffffff);
  await klipsOk(['debug', ...kd.S, '--none']);
  assert.ok(DEBUG_SUBSYSTEMS.every((n) => flags()[n] === 0));
  await klipsOk(['debug', ...kd.S, '--set', 'tunnel-xmit']);
  assert.equal(flags().tunnel, 0x10);
  await klipsOk(['debug', ...kd.S, '--set', 'comp']);
  assert.equal(flags().ipcomp, 0xffffffff);
  // /proc/net/ipsec_klipsdebug's nine lines, as KLIPS's ipsec_proc.c prints them (ipcomp is in --json).
  assert.equal(await klipsOk(['debug', ...kd.S]), [
    'debug_tunnel=00000010.', 'debug_xform=00000000.', 'debug_eroute=00000000.', 'debug_spi=00000000.',
    'debug_radij=00000000.', 'debug_esp=00000000.', 'debug_ah=00000000.', 'debug_rcv=00000000.',
    'debug_pfkey=00000000.', '',
  ].join('\n'));
  const [reply] = jsonRecords(await klipsOk(['debug', ...kd.S, '--set', 'spi', '--json']));
  assert.equal(reply.type, 'SADB_X_DEBUG');
  assert.equal(reply.extensions.X_DEBUG.spi, 0xffffffff, 'the reply carries the flags now in force');
  assert.equal(reply.extensions.X_DEBUG.tunnel, 0x10);
  assert.deepEqual(jsonRecords(await klipsOk(['debug', ...kd.S, '--json'])), [reply.extensions.X_DEBUG], 'the listing: the same flags object');
  await klipsOk(['debug', ...kd.S, '--clear', 'all']);
  assert.ok(DEBUG_SUBSYSTEMS.every((n) => flags()[n] === 0));
});

test('debug: bad arguments exit 2', async () => {
  for (const [args, why] of [[['--set', 'everything'], /unknown debug flag "everything"/], [['--set', 'esp', '--all'], /only one of/], [['--set'], /argument missing/]] as const) {
    assertUsageError(await klips(['debug', ...kd.S, ...args]), 'debug', why, args.join(' '));
  }
});

test('tncfg: create, list, EEXIST, delete, ENOENT (KLIPS numbering: ipsec0 is not reachable by number)', async () => {
  const keys = () => [...kd.d.server.engine.interfaces.keys()].sort((a, b) => a - b);
  assert.deepEqual(keys(), [0, 49152, 49153], 'mast0, ipsec0 and ipsec1 from the start');
  const ipsec0 = await klips(['tncfg', ...kd.S, '--create', 'ipsec0']);
  assert.equal(ipsec0.code, 1);
  assert.equal(ipsec0.stderr, 'tncfg: PLUMBIF ipsec0 failed: ENOENT (no such interface): interface number 49152 names no possible ipsecN or mastN\n', 'KLIPS reads 49152 as mast49152');
  await klipsOk(['tncfg', ...kd.S, '--create', 'mast12']);
  await klipsOk(['tncfg', ...kd.S, '--plumb', 'ipsec3']);
  assert.deepEqual(keys(), [0, 12, 49152, 49153, 49155]);
  assert.equal(await klipsOk(['tncfg', ...kd.S]), ['mast0', 'mast12', 'ipsec0', 'ipsec1', 'ipsec3'].map((n) => `${n} -> NULL mtu=0(0) -> 0\n`).join(''));
  assert.deepEqual(jsonRecords(await klipsOk(['tncfg', ...kd.S, '--json'])).map((i) => i.name), ['mast0', 'mast12', 'ipsec0', 'ipsec1', 'ipsec3']);
  const dup = await klips(['tncfg', ...kd.S, '--create', 'ipsec1']);
  assert.equal(dup.code, 1);
  assert.equal(dup.stderr, 'tncfg: PLUMBIF ipsec1 failed: EEXIST (interface already exists): interface ipsec1 exists\n');
  await klipsOk(['tncfg', ...kd.S, '--delete', 'ipsec1']);
  await klipsOk(['tncfg', ...kd.S, '--unplumb', 'ipsec3']);
  assert.deepEqual(keys(), [0, 12, 49152]);
  const gone = await klips(['tncfg', ...kd.S, '--delete', 'ipsec1']);
  assert.equal(gone.code, 1);
  assert.equal(gone.stderr, 'tncfg: UNPLUMBIF ipsec1 failed: ENOENT (no such interface): no interface ipsec1\n');
  for (const [args, why] of [[['--create', 'eth0'], /invalid virtual interface "eth0"/], [['--create', 'mast1', '--delete', 'mast1'], /only one of --create or --delete/]] as const) {
    assertUsageError(await klips(['tncfg', ...kd.S, ...args]), 'tncfg', why, args.join(' '));
  }
});
