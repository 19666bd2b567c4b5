/**
 * `klips look` end to end: eroutes with the SA replaced by its group (and the packet
 * count), interfaces on one line, SAs sorted, in ipsec look's layout.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { jsonRecords, KEY_3DES, KEY_SHA1, klips, klipsOk, useDaemon } from './cli-harness.js';

const kd = useDaemon();

test('look shows eroutes with their SA groups, interfaces and sorted SAs', async () => {
  assert.match(
    await klipsOk(['look', ...kd.S]),
    new RegExp(`^${os.hostname()} .+\\nmast0->NULL mtu=0\\(0\\)->0   ipsec0->NULL mtu=0\\(0\\)->0   ipsec1->NULL mtu=0\\(0\\)->0\\n$`),
    'an empty engine: the label and the interfaces KLIPS starts with',
  );
  await klipsOk(['spi', ...kd.S, '--said', 'tun.1002@192.0.2.2', '--src', '192.0.2.1', '--ip4']);
  await klipsOk(['spi', ...kd.S, '--said', 'esp.12345678@192.0.2.2', '--src', '192.0.2.1', '--esp', '3des-sha1-96', '--enckey', KEY_3DES, '--authkey', KEY_SHA1, '--replay_window', '32']);
  await klipsOk(['spigrp', ...kd.S, '--said', 'tun.1002@192.0.2.2', 'esp.12345678@192.0.2.2']);
  await klipsOk(['eroute', ...kd.S, '--add', '--eraf', 'inet', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--said', 'tun.1002@192.0.2.2']);
  await klipsOk(['eroute', ...kd.S, '--add', '--eraf', 'inet', '--src', '10.0.3.0/24', '--dst', '10.0.4.0/24', '--said', '%trap']);
  await klipsOk(['tncfg', ...kd.S, '--create', 'mast1']);
  // Traffic on the first eroute, as the data plane would count it.
  kd.d.server.engine.route({ family: 2, src: Uint8Array.of(10, 0, 1, 5), dst: Uint8Array.of(10, 0, 2, 9), proto: 6, sport: 1, dport: 2 });

  const out = await klipsOk(['look', ...kd.S, '--no-label']);
  const lines = out.split('\n');
  assert.deepEqual(lines.slice(0, 3), [
    '10.0.1.0/24        -> 10.0.2.0/24        => tun0x1002@192.0.2.2 esp0x12345678@192.0.2.2  (1)',
    '10.0.3.0/24        -> 10.0.4.0/24        => %trap (0)',
    'mast0->NULL mtu=0(0)->0   mast1->NULL mtu=0(0)->0   ipsec0->NULL mtu=0(0)->0   ipsec1->NULL mtu=0(0)->0',
  ]);
  assert.match(lines[3], /^esp0x12345678@192\.0\.2\.2 ESP_3DES_HMAC_SHA1: dir=out src=192\.0\.2\.1 ooowin=32 alen=160 aklen=160 eklen=192 life\(c,s,h\)=addtime\(\d+,0,0\) natencap=none natsport=0 natdport=0 refcount=1 ref=2 refhim=0$/);
  assert.match(lines[4], /^tun0x1002@192\.0\.2\.2 IPIP: dir=out src=192\.0\.2\.1 life\(c,s,h\)=addtime\(\d+,0,0\) natencap=none natsport=0 natdport=0 refcount=2 ref=1 refhim=0$/);
  assert.equal(lines.length, 6);
  assert.equal(lines[5], '');

  const labelled = await klipsOk(['look', ...kd.S]);
  assert.equal(labelled.split('\n')[0].split(' ')[0], os.hostname());
  const [j, ...more] = jsonRecords(await klipsOk(['look', ...kd.S, '--json']));
  assert.equal(more.length, 0, 'one screen, one JSON line');
  assert.deepEqual(Object.keys(j), ['host', 'date', 'eroute', 'spigrp', 'tncfg', 'spi', 'dataplane']);
  // No packet went through the data plane: the text has no counters section, the JSON zeros.
  const zero = { packets: 0, ipsec: 0, passed: 0, dropped: 0, drops: {} };
  assert.deepEqual(j.dataplane, { xmit: zero, rcv: zero, icmpSent: 0, natTMappings: 0 });
  assert.equal(j.eroute[0].count, 1);
  assert.deepEqual(j.spigrp[0], { said: 'tun0x1002@192.0.2.2', group: ['tun0x1002@192.0.2.2', 'esp0x12345678@192.0.2.2'] });
  assert.deepEqual(j.spi.map((r: { said: string }) => r.said).sort(), ['esp0x12345678@192.0.2.2', 'tun0x1002@192.0.2.2'], 'SA records, SAIDs as everywhere');
  const noAge = (r: Record<string, any>) => ({ ...r, current: { ...r.current, addtime: 0 } });
  assert.deepEqual(j.spi.map(noAge), jsonRecords(await klipsOk(['spi', ...kd.S, '--json'])).map(noAge), "the same records as spi's listing");

  // One /proc file on its own, as `cat /proc/net/ipsec/saref` gave it.
  assert.equal(await klipsOk(['look', ...kd.S, '--view', 'saref']),
    'saref enabled\nref=1 refhim=0 said=tun0x1002@192.0.2.2\nref=2 refhim=0 said=esp0x12345678@192.0.2.2\n');
  assert.deepEqual(jsonRecords(await klipsOk(['look', ...kd.S, '--view', 'natt', '--json'])), [{ view: 'natt', data: { available: 1 } }]);
  const bad = await klips(['look', ...kd.S, '--view', 'nosuch']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^look: unknown view "nosuch" \(known: eroute, /);
});
