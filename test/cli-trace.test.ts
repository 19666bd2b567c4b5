/**
 * `klips trace` end to end against running klipsds: "west" (every SA outbound) and
 * "east" (192.0.2.2 is its own address, so its SAs are inbound and grouped esp → tun),
 * both set up with `klips spi`, `spigrp` and `eroute`. A dry run uses the next ESP
 * sequence number and changes nothing; --count sends for real (seq, lifetimes, the
 * counters `klips look` shows); east's --in trace of west's packet gives the original
 * back; a %trap eroute raises SADB_ACQUIRE to a registered socket only with --count;
 * a trace is refused once the view channel grants more than the PF_KEY socket; and
 * usage errors and an absent klipsd are one line.
 */

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import {
  KEY_SHA1, RawClient, assertUsageError, jsonRecords, klips, klipsOk, startDaemon, type Daemon,
} from './cli-harness.js';
import { Engine } from '../src/engine/engine.js';
import { SADB_ACQUIRE, SADB_REGISTER, SADB_SATYPE_ESP } from '../src/wire/index.js';

const W = '192.0.2.1';
const E = '192.0.2.2';
const KEY_AES = '0x000102030405060708090a0b0c0d0e0f';
/** The ICMP echo probe 10.1.0.5 → 10.2.0.7 with payload "kl" (30 bytes), as scapy builds it. */
const PROBE = '4500001e00010000400166d00a0100050a02000708008c91000100016b6c';

let west: Daemon;
let east: Daemon;
const S = () => ['--socket', west.socket];
const SE = () => ['--socket', east.socket];

before(async () => {
  west = await startDaemon();
  east = await startDaemon({ engine: new Engine({ localAddresses: () => [E] }) });
  for (const s of [['--socket', west.socket], ['--socket', east.socket]]) {
    await klipsOk(['spi', ...s, '--said', `tun.200@${E}`, '--src', W, '--dst', E, '--ip4']);
    await klipsOk(['spi', ...s, '--said', `esp.100@${E}`, '--src', W, '--esp', 'aes128-sha1', '--enckey', KEY_AES, '--authkey', KEY_SHA1, '--replay_window', '32']);
    await klipsOk(['spigrp', ...s, `tun.200@${E}`, `esp.100@${E}`]);
  }
  await klipsOk(['eroute', ...S(), '--add', '--eraf', 'inet', '--src', '10.1.0.0/16', '--dst', '10.2.0.0/16', '--said', `tun.200@${E}`]);
  await klipsOk(['eroute', ...S(), '--add', '--eraf', 'inet', '--src', '10.1.0.0/16', '--dst', '10.3.0.0/16', '--said', '%trap']);
  await klipsOk(['eroute', ...S(), '--add', '--eraf', 'inet6', '--src', '2001:db8:1::/48', '--dst', '2001:db8:2::/48', '--said', '%pass']);
});

after(async () => {
  await west?.stop();
  await east?.stop();
});

const OUT = ['trace', '--out', '--src', '10.1.0.5', '--dst', '10.2.0.7', '--proto', 'icmp', '--payload', '6b6c'];

/** The out steps for PROBE with ESP sequence number `seq`. */
const outSteps = (seq: number) => [
  { step: 'eroute', eroute: `10.1.0.0/16 -> 10.2.0.0/16 => tun0x200@${E}` },
  { step: 'sa', said: `tun0x200@${E}`, xform: 'IPIP', before: 30, after: 50 },
  // 20 + 8 + 16 IV + (30 + 2 = 32) + 12 ICV.
  { step: 'sa', said: `esp0x100@${E}`, xform: 'ESP_AES_HMAC_SHA1', before: 50, after: 88, seq },
  { step: 'send', dst: E, bytes: 88 },
];

/** `klips spi --json` of west, by SAID: the current counters (addtime and usetime left out: they are ages). */
async function currents(s: string[]): Promise<Record<string, { bytes: number; packets: number; allocations: number }>> {
  const out: Record<string, { bytes: number; packets: number; allocations: number }> = {};
  for (const r of jsonRecords(await klipsOk(['spi', ...s, '--json']))) {
    out[r.said] = { bytes: r.current.bytes, packets: r.current.packets, allocations: r.current.allocations };
  }
  return out;
}

test('trace --out: a dry run uses seq 1 every time and changes no lifetime; --count advances seq and the byte counts; east --in gives the original back', async () => {
  const before = await currents(S());
  const beforeText = (await klipsOk(['spi', ...S()])).replace(/addtime\(\d+,/g, 'addtime(N,');
  for (let i = 0; i < 2; i++) {
    const [r, ...more] = jsonRecords(await klipsOk([...OUT, ...S(), '--json']));
    assert.equal(more.length, 0, 'one record');
    assert.deepEqual(Object.keys(r), ['dir', 'count', 'result', 'input', 'steps', 'packet', 'dst', 'layers']);
    assert.deepEqual([r.dir, r.count, r.result, r.input, r.dst], ['out', false, 'ipsec', PROBE, E]);
    assert.deepEqual(r.steps, outSteps(1));
    assert.equal(r.packet.length, 176);
    assert.deepEqual(r.layers.slice(1), [{ layer: 'esp', spi: 0x100, seq: 1, encrypted: 60 }]);
    assert.deepEqual(r.layers[0], { layer: 'ipv4', src: W, dst: E, protocol: 50, ttl: 64, id: r.layers[0].id, length: 88, df: false, mf: false, fragmentOffset: 0 });
  }
  assert.deepEqual(await currents(S()), before, 'no lifetime moved');
  assert.equal((await klipsOk(['spi', ...S()])).replace(/addtime\(\d+,/g, 'addtime(N,'), beforeText);
  assert.deepEqual(JSON.parse(await klipsOk(['look', ...S(), '--view', 'dataplane', '--json'])).data.xmit.packets, 0);

  // The text: each step, then the packet layer by layer (ESP's payload is encrypted).
  const text = await klipsOk([...OUT, ...S()]);
  const lines = text.split('\n');
  assert.deepEqual(lines.slice(0, 6), [
    'trace out (dry run: nothing in klipsd changed)',
    `  eroute   10.1.0.0/16 -> 10.2.0.0/16 => tun0x200@${E}`,
    `  sa       tun0x200@${E} IPIP: 30 -> 50 bytes`,
    `  sa       esp0x100@${E} ESP_AES_HMAC_SHA1: 50 -> 88 bytes, seq 1`,
    `  send     to ${E}, 88 bytes`,
    `packet 88 bytes to ${E}:`,
  ]);
  assert.match(lines[6], new RegExp(`^  IPv4    ${W} -> ${E} ESP\\(50\\) ttl 64 id \\d+ len 88$`));
  assert.equal(lines[7], "  ESP     spi 0x100 seq 1; 60 bytes encrypted (the inner packet cannot be read without the SA's key)");
  assert.match(lines[8], /^ {2}hex {5}45000058[0-9a-f]{168}$/);
  assert.deepEqual(lines.slice(9), ['']);

  // --count: seq 1, then 2, and the SAs count each packet's bytes.
  const sent: string[] = [];
  for (const seq of [1, 2]) {
    const [r] = jsonRecords(await klipsOk([...OUT, ...S(), '--count', '--json']));
    assert.equal(r.count, true);
    assert.deepEqual(r.steps, outSteps(seq));
    assert.equal(r.layers[1].seq, seq);
    sent.push(r.packet);
  }
  const now = await currents(S());
  assert.deepEqual(now[`esp0x100@${E}`], { bytes: 176, packets: 2, allocations: 0 });
  assert.deepEqual(now[`tun0x200@${E}`], { bytes: 100, packets: 2, allocations: 1 }, 'the eroute is bound to the tun SA');
  const spi = await klipsOk(['spi', ...S()]);
  assert.match(spi, new RegExp(`^esp0x100@${E} ESP_AES_HMAC_SHA1: .* life\\(c,s,h\\)=bytes\\(176,0,0\\)addtime\\(\\d+,0,0\\)usetime\\(\\d+,0,0\\)packets\\(2,0,0\\) `, 'm'));
  // A dry run after them shows seq 3 and leaves the count at 2.
  const [r3] = jsonRecords(await klipsOk([...OUT, ...S(), '--json']));
  assert.equal(r3.steps[2].seq, 3);
  assert.deepEqual((await currents(S()))[`esp0x100@${E}`].packets, 2);

  // East: the packet west sent, decrypted and decapsulated to the probe itself.
  const inSteps = [
    { step: 'lookup', said: `esp0x100@${E}`, found: true, xform: 'ESP_AES_HMAC_SHA1' },
    { step: 'replay', said: `esp0x100@${E}`, seq: 1, window: 32, verdict: 'ok' },
    { step: 'icv', said: `esp0x100@${E}`, verdict: 'ok' },
    { step: 'decap', said: `esp0x100@${E}`, xform: 'ESP_AES_HMAC_SHA1', before: 88, after: 50, nextHeader: 4 },
    { step: 'policy', said: `tun0x200@${E}`, check: 'source', ok: true },
    { step: 'decap', said: `tun0x200@${E}`, xform: 'IPIP', before: 50, after: 30, nextHeader: 4 },
    { step: 'policy', said: `tun0x200@${E}`, check: 'complete', ok: true },
    { step: 'deliver', kind: 'ipsec', bytes: 30 },
  ];
  const [d] = jsonRecords(await klipsOk(['trace', ...SE(), '--in', '--packet', sent[0], '--json']));
  assert.deepEqual(d, {
    dir: 'in', count: false, result: 'ipsec', input: sent[0], steps: inSteps, packet: PROBE,
    layers: [
      { layer: 'ipv4', src: '10.1.0.5', dst: '10.2.0.7', protocol: 1, ttl: 64, id: 1, length: 30, df: false, mf: false, fragmentOffset: 0 },
      { layer: 'icmp', type: 8, code: 0, checksum: 'ok', id: 1, seq: 1 },
      { layer: 'data', bytes: 2 },
    ],
  });
  const [c] = jsonRecords(await klipsOk(['trace', ...SE(), '--in', '--packet', sent[0], '--count', '--json']));
  assert.equal(c.packet, PROBE);
  // Counted, the window moved: the same packet is now a replay, and a dry run says so.
  const [again] = jsonRecords(await klipsOk(['trace', ...SE(), '--in', '--packet', sent[0], '--json']));
  assert.deepEqual([again.result, again.reason, again.said], ['drop', 'replay', `esp0x100@${E}`]);
  assert.deepEqual(again.steps.slice(1), [
    { step: 'replay', said: `esp0x100@${E}`, seq: 1, window: 32, verdict: 'replay' },
    { step: 'drop', reason: 'replay', said: `esp0x100@${E}` },
  ]);
  const inText = await klipsOk(['trace', ...SE(), '--in', '--packet', sent[1]]);
  assert.equal(inText, [
    'trace in (dry run: nothing in klipsd changed)',
    `  lookup   esp0x100@${E}: found (ESP_AES_HMAC_SHA1)`,
    `  replay   esp0x100@${E} seq 2: ok (window 32)`,
    `  icv      esp0x100@${E}: ok`,
    `  decap    esp0x100@${E} ESP_AES_HMAC_SHA1: 88 -> 50 bytes, next header IPIP(4)`,
    `  policy   tun0x200@${E} outer source is the tunnel SA's source: ok`,
    `  decap    tun0x200@${E} IPIP: 50 -> 30 bytes, next header IPIP(4)`,
    `  policy   tun0x200@${E} group used to its end: ok`,
    '  deliver  ipsec, 30 bytes to the host',
    'packet 30 bytes delivered:',
    '  IPv4    10.1.0.5 -> 10.2.0.7 ICMP(1) ttl 64 id 1 len 30',
    '  ICMP    type 8 code 0 id 1 seq 1 checksum ok',
    '  data    2 bytes',
    `  hex     ${PROBE}`,
    '',
  ].join('\n'));

  // klips look: the counters section once packets were seen, as numbers under --json.
  const look = (await klipsOk(['look', ...SE(), '--no-label'])).split('\n');
  assert.deepEqual(look.slice(-4), [
    'dataplane xmit: packets=0 ipsec=0 passed=0 dropped=0',
    'dataplane rcv: packets=1 ipsec=1 passed=0 dropped=0',
    'dataplane icmpSent=0 natTMappings=0',
    '',
  ]);
  const [j] = jsonRecords(await klipsOk(['look', ...SE(), '--json']));
  assert.deepEqual(j.dataplane, {
    xmit: { packets: 0, ipsec: 0, passed: 0, dropped: 0, drops: {} },
    rcv: { packets: 1, ipsec: 1, passed: 0, dropped: 0, drops: {} },
    icmpSent: 0, natTMappings: 0,
  });
  assert.equal(await klipsOk(['look', ...S(), '--view', 'dataplane']), [
    'xmit.packets=2', 'xmit.ipsec=2', 'xmit.passed=0', 'xmit.dropped=0',
    'rcv.packets=0', 'rcv.ipsec=0', 'rcv.passed=0', 'rcv.dropped=0', 'icmpSent=0', 'natTMappings=0', '',
  ].join('\n'));
});

test('drops are reported with their reason: no eroute (text and JSON), and a count drop shows in look', async () => {
  const args = ['trace', ...S(), '--out', '--src', '10.1.0.5', '--dst', '10.9.0.1', '--proto', 'udp'];
  assert.equal(await klipsOk(args), [
    'trace out (dry run: nothing in klipsd changed)',
    '  eroute   (none matches)',
    '  drop     no-eroute',
    'dropped: no-eroute',
    '',
  ].join('\n'));
  const [r] = jsonRecords(await klipsOk([...args, '--json']));
  assert.deepEqual(r, {
    dir: 'out', count: false, result: 'drop', input: '4500001c00010000401166c10a0100050a090001c000003500082b99',
    steps: [{ step: 'eroute', eroute: null }, { step: 'drop', reason: 'no-eroute' }], reason: 'no-eroute',
  });
  const before = JSON.parse(await klipsOk(['look', ...S(), '--view', 'dataplane', '--json'])).data.xmit;
  await klipsOk([...args, '--count']);
  const afterCount = JSON.parse(await klipsOk(['look', ...S(), '--view', 'dataplane', '--json'])).data.xmit;
  assert.deepEqual(afterCount, { ...before, packets: before.packets + 1, dropped: before.dropped + 1, drops: { ...before.drops, 'no-eroute': (before.drops['no-eroute'] ?? 0) + 1 } });
  const look = (await klipsOk(['look', ...S(), '--no-label'])).split('\n');
  assert.match(look[look.length - 4], /^dataplane xmit: packets=\d+ ipsec=\d+ passed=0 dropped=1 \(no-eroute=1\)$/);
});

test('IPv6: a %pass eroute hands the ICMPv6 echo on unchanged', async () => {
  const [r] = jsonRecords(await klipsOk(['trace', ...S(), '--out', '--src', '2001:db8:1::5', '--dst', '2001:db8:2::7', '--proto', 'icmp', '--json']));
  assert.equal(r.result, 'pass');
  assert.equal(r.packet, r.input);
  assert.deepEqual(r.steps, [
    { step: 'eroute', eroute: '2001:db8:1::/48 -> 2001:db8:2::/48 => %pass' },
    { step: 'send', dst: '2001:db8:2::7', bytes: 48 },
  ]);
  assert.deepEqual(r.layers, [
    { layer: 'ipv6', src: '2001:db8:1::5', dst: '2001:db8:2::7', nextHeader: 58, hopLimit: 64, length: 48, flowLabel: 0 },
    { layer: 'icmpv6', type: 128, code: 0, checksum: 'ok', id: 1, seq: 1 },
    { layer: 'data', bytes: 0 },
  ]);
});

test('%trap: a dry run sends no ACQUIRE and makes no %hold; --count sends one to the registered socket', async () => {
  const pluto = await RawClient.connect(west.socket);
  try {
    pluto.send({ header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 4242 } });
    await pluto.waitFor('REGISTER reply', (m) => m.header.type === SADB_REGISTER && m.header.seq === 1);
    const args = ['trace', ...S(), '--out', '--src', '10.1.0.5', '--dst', '10.3.0.7', '--proto', 'tcp', '--dport', '443', '--json'];
    const [dry] = jsonRecords(await klipsOk(args));
    assert.deepEqual(dry.steps, [
      { step: 'eroute', eroute: '10.1.0.0/16 -> 10.3.0.0/16 => %trap' },
      { step: 'acquire', sent: false, listeners: 1 },
      { step: 'drop', reason: 'trap' },
    ]);
    assert.equal(dry.acquireSeq, undefined);
    assert.doesNotMatch(await klipsOk(['eroute', ...S()]), /%hold/);
    const [real] = jsonRecords(await klipsOk([...args, '--count']));
    assert.equal(typeof real.acquireSeq, 'number');
    assert.deepEqual(real.steps[1], { step: 'acquire', sent: true, listeners: 1, seq: real.acquireSeq });
    const acq = await pluto.waitFor('the ACQUIRE', (m) => m.header.type === SADB_ACQUIRE);
    assert.equal(acq.header.seq, real.acquireSeq);
    assert.equal(acq.addressSrc!.addr, '10.1.0.5');
    assert.equal(acq.addressDst!.addr, '10.3.0.7');
    // Only the REGISTER reply came before it: the dry run sent nothing.
    assert.deepEqual(pluto.messages.map((b) => b[1]), [SADB_REGISTER, SADB_ACQUIRE]);
    assert.match(await klipsOk(['eroute', ...S()]), /10\.1\.0\.5\/32 +-> 10\.3\.0\.7\/32 +=> %hold/);
  } finally {
    pluto.close();
  }
});

test('a trace is refused while the view channel grants more than the PF_KEY socket; views still answer', async () => {
  const info = `${west.socket}.info`;
  fs.chmodSync(info, 0o666);
  try {
    const r = await klips([...OUT, ...S()]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `trace: refused, ${info} grants more than ${west.socket} does (a trace needs the rights of a PF_KEY connection)\n`);
    const j = await klips([...OUT, ...S(), '--json']);
    assert.equal(j.code, 1);
    assert.deepEqual(JSON.parse(j.stderr), { error: { errno: null, code: null, message: r.stderr.trim() } });
    await klipsOk(['look', ...S()]);
  } finally {
    fs.chmodSync(info, 0o600);
  }
  await klipsOk([...OUT, ...S()]);
});

test('bad arguments are one line and a pointer to --help; an absent klipsd is one line, exit 1', async () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /give --out \(build a packet\) or --in --packet HEX$/],
    [['--out', '--in'], /--out and --in exclude each other$/],
    [['--out', '--src', '10.0.0.1'], /--out needs --dst, --proto$/],
    [['--out', '--src', '10.0.0.1', '--dst', 'nowhere', '--proto', 'udp'], /invalid --dst "nowhere" \(a numeric IPv4 or IPv6 address\)$/],
    [['--out', '--src', '10.0.0.1', '--dst', '2001:db8::1', '--proto', 'udp'], /--src and --dst must both be IPv4 or both IPv6$/],
    [['--out', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--proto', 'gre'], /option '--proto <proto>' argument 'gre' is invalid\. Allowed choices are icmp, tcp, udp\.$/],
    [['--out', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--proto', 'icmp', '--dport', '80'], /--sport and --dport are for --proto tcp or udp$/],
    [['--out', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--proto', 'udp', '--dport', '70000'], /invalid --dport "70000" /],
    [['--out', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--proto', 'udp', '--payload', 'xyz'], /invalid --payload "xyz" \(bytes in hex: an even number of hex digits, 0x allowed\)$/],
    [['--out', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--proto', 'udp', '--packet', '45'], /--packet is for --in$/],
    [['--in'], /--in needs --packet HEX$/],
    [['--in', '--packet', '4'], /invalid --packet "4" /],
    [['--in', '--packet', '45', '--proto', 'tcp'], /--proto is for --out$/],
  ];
  for (const [args, why] of cases) assertUsageError(await klips(['trace', ...S(), ...args]), 'trace', why, args.join(' '));
  const gone = `${west.dir}/nothing-here.sock`;
  const r = await klips(['trace', '--socket', gone, ...OUT.slice(1)]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `trace: cannot connect to klipsd's view channel at ${gone}.info: ENOENT (is klipsd running?)\n`);
});

test('the view channel takes a trace of the largest packet in one request line', async () => {
  // A 65535-byte IPv4 packet (TCP, zero-filled): parsed, not IPsec, handed on as is.
  const big = Buffer.alloc(65535);
  big.set(Buffer.from('4500ffff000000004006', 'hex'));
  big.writeUInt16BE(0, 10);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += big.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  big.writeUInt16BE(~sum & 0xffff, 10);
  const line = `${JSON.stringify({ trace: { dir: 'in', packet: big.toString('hex'), count: false } })}\n`;
  assert.ok(line.length > 131000);
  const answer = await new Promise<string>((resolve, reject) => {
    const c = net.connect(`${west.socket}.info`, () => c.end(line));
    let got = '';
    c.setEncoding('utf8').on('data', (s: string) => { got += s; }).on('end', () => resolve(got)).on('error', reject);
  });
  const a = JSON.parse(answer);
  assert.deepEqual([a.result, a.steps], ['not-ipsec', [{ step: 'deliver', kind: 'not-ipsec', bytes: 65535 }]]);
});
