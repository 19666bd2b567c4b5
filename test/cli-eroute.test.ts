/**
 * `klips eroute` end to end: add to an SA and to every shunt, replace, delete, clear,
 * transport protocol and ports, IPv6, inbound policy (--addin/--replacein), the listing
 * in /proc/net/ipsec_eroute form, and every error path.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IPPROTO_ESP, IPPROTO_INT, IPPROTO_IPIP, SADB_X_SAFLAGS_INFLOW } from '../src/wire/index.js';
import { assertUsageError, jsonRecords, KEY_3DES, KEY_SHA1, klips, klipsOk, useDaemon } from './cli-harness.js';

const kd = useDaemon({}, async (S) => {
  await klipsOk(['spi', ...S, '--said', 'esp.12345678@192.0.2.2', '--src', '192.0.2.1', '--esp', '3des-sha1-96', '--enckey', KEY_3DES, '--authkey', KEY_SHA1]);
  await klipsOk(['spi', ...S, '--said', 'esp.12345679@192.0.2.2', '--src', '192.0.2.1', '--esp', '3des-sha1-96', '--enckey', KEY_3DES, '--authkey', KEY_SHA1]);
});

const table = () => [...kd.d.server.engine.spd.entries()].map((e) => ({
  flow: `${e.flow.src}/${e.flow.srcPrefix}>${e.flow.dst}/${e.flow.dstPrefix}${e.flow.proto ? ` p${e.flow.proto}:${e.flow.sport}:${e.flow.dport}` : ''}`,
  said: `${e.said.proto}/${e.said.spi.toString(16)}@${e.said.dst}`,
}));

test('add to an SA, listing, EEXIST, replace, delete, EFAULT', async () => {
  assert.equal(await klipsOk(['eroute', ...kd.S, '--add', '--eraf', 'inet', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--said', 'esp0x12345678@192.0.2.2']), '');
  assert.deepEqual(table(), [{ flow: '10.0.1.0/24>10.0.2.0/24', said: `${IPPROTO_ESP}/12345678@192.0.2.2` }]);
  assert.equal(await klipsOk(['eroute', ...kd.S]), '0          10.0.1.0/24        -> 10.0.2.0/24        => esp0x12345678@192.0.2.2\n');

  const dup = await klips(['eroute', ...kd.S, '--add', '--eraf', 'inet', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--said', 'esp0x12345678@192.0.2.2']);
  assert.equal(dup.code, 1);
  assert.equal(dup.stderr, 'eroute: ADD 10.0.1.0/24 -> 10.0.2.0/24 => esp0x12345678@192.0.2.2 failed: EEXIST (eroute already exists): eroute 10.0.1.0/24 -> 10.0.2.0/24 already exists\n');

  await klipsOk(['eroute', ...kd.S, '--replace', '--eraf', 'inet', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--af', 'inet', '--edst', '192.0.2.2', '--spi', '0x12345679', '--proto', 'esp']);
  assert.deepEqual(table(), [{ flow: '10.0.1.0/24>10.0.2.0/24', said: `${IPPROTO_ESP}/12345679@192.0.2.2` }]);
  const norep = await klips(['eroute', ...kd.S, '--replace', '--src', '10.9.0.0/16', '--dst', '10.8.0.0/16', '--said', '%drop']);
  assert.equal(norep.code, 1);
  assert.equal(norep.stderr, 'eroute: REPLACE 10.9.0.0/16 -> 10.8.0.0/16 => %drop failed: EFAULT (no such eroute): no eroute 10.9.0.0/16 -> 10.8.0.0/16 to replace\n');

  assert.equal(await klipsOk(['eroute', ...kd.S, '--del', '--eraf', 'inet', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24']), '');
  assert.deepEqual(table(), []);
  const nodel = await klips(['eroute', ...kd.S, '--del', '--eraf', 'inet', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24']);
  assert.equal(nodel.code, 1);
  assert.equal(nodel.stderr, 'eroute: DELETE 10.0.1.0/24 -> 10.0.2.0/24 failed: EFAULT (no such eroute): no eroute 10.0.1.0/24 -> 10.0.2.0/24 to delete\n');
});

test('every shunt, a port-specific trap, IPv6, listing and --clear', async () => {
  const shunts = ['%pass', '%drop', '%reject', '%hold', '%trap', '%trapsubnet'];
  for (const [i, s] of shunts.entries()) {
    await klipsOk(['eroute', ...kd.S, '--add', '--eraf', 'inet', '--src', '10.1.0.0/16', '--dst', `10.2.${i}.0/24`, '--said', s]);
  }
  await klipsOk(['eroute', ...kd.S, '--add', '--eraf', 'inet', '--src', '10.0.1.1/32', '--dst', '10.0.2.1/32', '--transport-proto', 'udp', '--dst-port', '53', '--said', '%trap']);
  await klipsOk(['eroute', ...kd.S, '--add', '--eraf', 'inet', '--src', '10.0.1.1/32', '--dst', '10.0.2.1/32', '--transport-proto', 'tcp', '--src-port', '1234', '--dst-port', 'http', '--said', 'esp0x12345678@192.0.2.2']);
  const colon = await klips(['eroute', ...kd.S, '--add', '--eraf', 'inet6', '--src', '2001:db8:1::/48', '--dst', '2001:db8:2::/48', '--said', 'esp:12345678@192.0.2.2']);
  assert.equal(colon.code, 2, "':' in an SAID means IPv6, so an IPv4 destination is refused");
  assert.match(colon.stderr, /bad IPv6 address "192\.0\.2\.2"/);
  await klipsOk(['eroute', ...kd.S, '--add', '--eraf', 'inet6', '--src', '2001:db8:1::/48', '--dst', '2001:db8:2::/48', '--said', 'esp.12345678@192.0.2.2']);
  const saids = [...kd.d.server.engine.spd.entries()].filter((e) => e.said.proto === IPPROTO_INT).map((e) => e.said.spi).sort();
  assert.deepEqual(saids, [256, 257, 258, 259, 260, 260, 261]);
  assert.equal(await klipsOk(['eroute', ...kd.S]), [
    '0          10.0.1.1/32:1234   -> 10.0.2.1/32:80     => esp0x12345678@192.0.2.2:6',
    '0          10.0.1.1/32        -> 10.0.2.1/32:53     => %trap:17',
    '0          10.1.0.0/16        -> 10.2.0.0/24        => %pass',
    '0          10.1.0.0/16        -> 10.2.1.0/24        => %drop',
    '0          10.1.0.0/16        -> 10.2.2.0/24        => %reject',
    '0          10.1.0.0/16        -> 10.2.3.0/24        => %hold',
    '0          10.1.0.0/16        -> 10.2.4.0/24        => %trap',
    '0          10.1.0.0/16        -> 10.2.5.0/24        => %trapsubnet',
    '0          2001:db8:1::/48    -> 2001:db8:2::/48    => esp0x12345678@192.0.2.2',
    '',
  ].join('\n'));
  const withPort = [...kd.d.server.engine.spd.entries()].find((e) => e.flow.proto === 6)!;
  assert.deepEqual([withPort.flow.sport, withPort.flow.dport], [1234, 80]);
  const rows = jsonRecords(await klipsOk(['eroute', ...kd.S, '--json']));
  assert.equal(rows.length, 9, 'one JSON line per eroute');
  const { pid, created, lastUsed, ...trap } = rows[1];
  assert.deepEqual(trap, { count: 0, src: '10.0.1.1/32', dst: '10.0.2.1/32', proto: 17, sport: 0, dport: 53, said: '%trap' });
  assert.deepEqual([typeof pid, typeof created, typeof lastUsed], ['number', 'number', 'number']);
  assert.equal(rows[0].said, 'esp0x12345678@192.0.2.2');

  await klipsOk(['eroute', ...kd.S, '--del', '--src', '10.0.1.1/32', '--dst', '10.0.2.1/32', '--transport-proto', 'udp', '--dst-port', '53']);
  assert.equal(kd.d.server.engine.spd.size, 8);
  const [cleared] = jsonRecords(await klipsOk(['eroute', ...kd.S, '--clear', '--json']));
  assert.deepEqual([cleared.type, cleared.satype, cleared.errno, Object.keys(cleared.extensions)], ['SADB_X_DELFLOW', 'UNSPEC', null, ['SA']], "klipsd's reply as a message record");
  assert.equal(kd.d.server.engine.spd.size, 0);
  assert.equal(await klipsOk(['eroute', ...kd.S]), '');
  assert.equal(await klipsOk(['eroute', ...kd.S, '--json']), '');
});

test('--addin puts an inbound policy on the IPIP SA of a group; ENOENT without one', async () => {
  await klipsOk(['spi', ...kd.S, '--said', 'tun.1002@192.0.2.1', '--src', '192.0.2.2', '--ip4']);
  await klipsOk(['spi', ...kd.S, '--said', 'esp.2002@192.0.2.1', '--src', '192.0.2.2', '--esp', '3des', '--enckey', KEY_3DES]);
  await klipsOk(['spigrp', ...kd.S, '--said', 'tun.1002@192.0.2.1', 'esp.2002@192.0.2.1']);
  await klipsOk(['eroute', ...kd.S, '--addin', '--eraf', 'inet', '--src', '10.0.2.0/24', '--dst', '10.0.1.0/24', '--said', 'tun0x1002@192.0.2.1']);
  const tun = kd.d.server.engine.sadb.get({ proto: IPPROTO_IPIP, spi: 0x1002, dst: '192.0.2.1' })!;
  assert.ok(tun.flags & SADB_X_SAFLAGS_INFLOW);
  assert.equal(tun.inbound!.srcFlow.addr, '10.0.2.0');
  assert.equal(kd.d.server.engine.spd.size, 0, 'an inbound policy is not an eroute');
  assert.match(await klipsOk(['spi', ...kd.S]), /^tun0x1002@192\.0\.2\.1 IPIP: dir=out src=192\.0\.2\.2 policy=10\.0\.2\.0\/24->10\.0\.1\.0\/24 flags=0x8<> /m);
  await klipsOk(['eroute', ...kd.S, '--replacein', '--eraf', 'inet', '--src', '10.0.3.0/24', '--dst', '10.0.1.0/24', '--said', 'tun.1002@192.0.2.1']);
  assert.equal(tun.inbound!.srcFlow.addr, '10.0.3.0');
  const r = await klips(['eroute', ...kd.S, '--addin', '--eraf', 'inet', '--src', '10.0.2.0/24', '--dst', '10.0.1.0/24', '--said', 'tun0x1fff@192.0.2.1']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'eroute: ADDIN 10.0.2.0/24 -> 10.0.1.0/24 => tun0x1fff@192.0.2.1 failed: ENOENT (no such SA (an inbound policy needs an IPIP SA in the group)): no SA tun.1fff@192.0.2.1\n');
});

test('bad eroute arguments: one line, exit 2, nothing sent', async () => {
  const before = kd.d.server.stats.framesIn;
  const bad: Array<[string[], RegExp]> = [
    [['--add', '--dst', '10.0.2.0/24', '--said', '%pass'], /--add needs --src/],
    [['--add', '--src', '10.0.1.0/24', '--said', '%pass'], /--add needs --dst/],
    [['--add', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24'], /--add needs the SA/],
    [['--add', '--src', '10.0.1.1/24', '--dst', '10.0.2.0/24', '--said', '%pass'], /improper subnet, host-part bits on/],
    [['--add', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--said', '%passthrough'], /illegal reserved SPI 0x0/],
    [['--add', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--said', '%bogus'], /unknown % keyword/],
    [['--add', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--src-port', '53', '--said', '%pass'], /need --transport-proto tcp or udp/],
    [['--add', '--del', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24'], /only one of --add/],
    [['--add', '--eraf', 'inet6', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--said', '%pass'], /invalid --src "10\.0\.1\.0\/24" \(an IPv6 address\)/],
    [['--add', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--af', 'inet', '--edst', '192.0.2.2', '--spi', '0x1000'], /--af, --edst, --spi and --proto together/],
    [['--src', '10.0.1.0/24'], /exactly one of --add/],
  ];
  for (const [args, why] of bad) {
    assertUsageError(await klips(['eroute', ...kd.S, ...args]), 'eroute', why, args.join(' '));
  }
  assert.equal(kd.d.server.stats.framesIn, before);
});
