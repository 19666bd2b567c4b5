/**
 * The data plane's runtime between two hosts: two network namespaces joined by a veth
 * pair, `klipsd --dataplane` in each, the tunnel installed with the klips tools. Real
 * traffic (ping, a TCP transfer checksummed at both ends) crosses it both ways for UDP and
 * raw encapsulation, IPv4 and IPv6; a capture on the veth sees only ESP. Then, on one
 * tunnel: a %trap eroute raises ACQUIRE at the first packet and the held packet leaves once
 * the SA is added, a byte lifetime fires soft then hard EXPIRE from the traffic, and a
 * replayed ESP packet captured off the wire is dropped and counted.
 *
 * Needs root, iproute2, /dev/net/tun, ping and tcpdump (CI installs them and runs as root);
 * elsewhere each test is skipped with the reason.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { INET, INET6, KLIPS, KLIPSD, Testbed, netnsUnavailable, NO_HOUSEKEEPING, ping, tcpTransfer, until, type Family } from './netns-harness.js';

const unavailable = netnsUnavailable();
const skip = unavailable ? `skipped: ${unavailable}` : false;
if (unavailable) console.log(`# dataplane-runtime: ${skip}`);

const UDP_LISTEN = `
const dgram = require('dgram');
const [addr, port] = process.argv.slice(1);
const s = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
s.on('message', (m) => { console.log('got ' + m.toString()); process.exit(0); });
s.bind(Number(port), addr, () => console.log('listening'));
setTimeout(() => process.exit(3), 30000).unref();
`;

const UDP_SEND = `
const dgram = require('dgram');
const [src, dst, port, hex, sport] = process.argv.slice(1);
const s = dgram.createSocket(dst.includes(':') ? 'udp6' : 'udp4');
s.on('error', (e) => { console.error(e.message); process.exit(2); });
s.bind(Number(sport || 0), src, () => s.send(Buffer.from(hex, 'hex'), Number(port), dst, (e) => { if (e) { console.error(e.message); process.exit(2); } s.close(); }));
`;

/** tcpdump on the left veth while `during` runs; the lines it printed (outer ND and ARP left out). */
async function capture(tb: Testbed, during: () => void): Promise<string[]> {
  const p = tb.start(tb.left, 'tcpdump', ['-l', '-n', '-i', tb.left.veth, NO_HOUSEKEEPING]);
  await until('tcpdump', 10_000, () => p.out.join('').includes('listening on'));
  during();
  await new Promise((r) => setTimeout(r, 300));
  p.kill('SIGINT');
  await new Promise<void>((r) => p.on('exit', () => r()));
  return p.out.join('').split('\n').filter((l) => /^\d\d:\d\d:\d\d/.test(l));
}

async function bed(f: Family, encap: 'udp' | 'raw', rightFlags: string[] = []): Promise<Testbed> {
  const tb = new Testbed(f, encap);
  try {
    tb.network();
    await Promise.all([tb.daemon(tb.left), tb.daemon(tb.right, rightFlags)]);
  } catch (e) {
    await tb.close();
    throw e;
  }
  return tb;
}

/** Family, encapsulation, bytes each way, and the right klipsd's extra flags. */
const COMBOS: [Family, 'udp' | 'raw', number, string[]][] = [
  [INET, 'udp', 50 << 20, []],
  [INET, 'raw', 8 << 20, []],
  [INET6, 'udp', 8 << 20, []],
  [INET6, 'raw', 8 << 20, ['--keep-warm', '0']],
];

for (const [f, encap, bytes, rightFlags] of COMBOS) {
  test(`runtime ${f.name} over ${encap}: ping and a ${bytes >> 20} MB TCP transfer both ways; only ESP on the wire${rightFlags.length ? ` (right: ${rightFlags.join(' ')})` : ''}`, { skip, timeout: 240_000 }, async () => {
    const tb = await bed(f, encap, rightFlags);
    try {
      tb.tunnel();
      // klips tncfg shows ipsec0 carried, as KLIPS showed it attached to a device.
      assert.match(tb.klips(tb.left, ['tncfg']), new RegExp(`^ipsec0 -> ${encap === 'udp' ? 'udp:4500' : 'raw'} mtu=1400\\(1400\\) -> 1400$`, 'm'));
      assert.match(ping(tb, 0), / 0% packet loss/);
      assert.match(ping(tb, 1), / 0% packet loss/);
      const lines = await capture(tb, () => ping(tb, 0, 2));
      const esp = lines.filter((l) => /ESP\(spi=0x0000(1001|2001),seq=0x[0-9a-f]+\)/.test(l));
      assert.ok(esp.length >= 4, `ESP packets on the veth:\n${lines.join('\n')}`);
      assert.deepEqual(lines.filter((l) => !esp.includes(l)), [], 'nothing but ESP on the veth');
      if (encap === 'udp') assert.ok(esp.every((l) => l.includes('.4500 > ') && l.includes('UDP-encap')), esp.join('\n'));
      else assert.ok(esp.every((l) => !l.includes('UDP')), esp.join('\n'));
      await tcpTransfer(tb, 0, bytes);
      await tcpTransfer(tb, 1, bytes);
      // The host's TCP handed over super-segments (TUN offloads): more packets went out than were read.
      const sender = tb.runtime(tb.left);
      assert.ok(sender.paths.xmit.packets > sender.tun.read * 2, `offload in use: ${sender.paths.xmit.packets} packets from ${sender.tun.read} reads`);
      // And the receiver wrote the segments back merged (TunCoalescer): fewer writes than packets.
      const receiver = tb.runtime(tb.right);
      assert.ok(receiver.tun.merged > 0 && receiver.tun.written < receiver.paths.rcv.ipsec / 2, `merged: ${JSON.stringify(receiver.tun)} for ${receiver.paths.rcv.ipsec} packets`);
      for (const s of [tb.left, tb.right]) {
        const v = tb.runtime(s);
        assert.ok(v.tun.read > 0 && v.tun.written > 0, JSON.stringify(v));
        assert.equal(v.paths.rcv.drops.icv ?? 0, 0);
        assert.equal(v.drops.txRefused + v.drops.tunWrite + v.drops.truncated + v.drops.noCarrier, 0, JSON.stringify(v.drops));
        // Between the pings the paths were kept warm: each tick took one private packet of each
        // suite across; with --keep-warm 0, never.
        if (s === tb.right && rightFlags.includes('--keep-warm')) assert.deepEqual(v.warm, { ticks: 0, packets: 0 });
        else assert.ok(v.warm.ticks > 0 && v.warm.packets === 3 * v.warm.ticks, JSON.stringify(v.warm));
      }
    } finally {
      await tb.close();
    }
  });
}

test('runtime: %trap raises ACQUIRE and the held packet leaves once the SA is added; byte lifetimes expire soft then hard; a replayed packet is dropped and counted', { skip, timeout: 120_000 }, async () => {
  const tb = await bed(INET, 'udp');
  const f = INET;
  try {
    const mon = tb.start(tb.left, process.execPath, [KLIPS, 'monitor', '--esp', '--json', '--socket', tb.left.socket]);
    await until('klips monitor to register', 10_000, () => mon.out.join('').includes('SADB_REGISTER'));
    // Right: the whole tunnel. Left: only a %trap eroute and the route, no SA yet.
    tb.tunnel({ life: 'soft-bytes=30000,hard-bytes=60000', eroute: false });
    tb.klips(tb.right, ['eroute', '--add', '--eraf', 'inet', '--src', f.subnets[1], '--dst', f.subnets[0], '--said', 'tun.2001@10.99.0.1']);
    tb.klips(tb.left, ['eroute', '--add', '--eraf', 'inet', '--src', f.subnets[0], '--dst', f.subnets[1], '--said', '%trap']);
    const listener = tb.start(tb.right, process.execPath, ['-e', UDP_LISTEN, f.inner[1], '9999']);
    await until('the UDP listener', 10_000, () => listener.out.join('').includes('listening'));
    tb.exec(tb.left, process.execPath, ['-e', UDP_SEND, f.inner[0], f.inner[1], '9999', Buffer.from('held packet').toString('hex')]);
    await until('SADB_ACQUIRE', 10_000, () => mon.out.join('').includes('SADB_ACQUIRE'));
    const acquires = mon.out.join('').split('\n').filter((l) => l.includes('SADB_ACQUIRE'));
    assert.equal(acquires.length, 1, 'one ACQUIRE for the flow');
    assert.equal(tb.runtime(tb.left).paths.xmit.drops.trap, 1);
    assert.ok(!listener.out.join('').includes('got'), 'nothing crossed before the SA');
    // The SA arrives (the tunnel's SAs were added above). As pluto does, the host-to-host
    // %hold the trap left is replaced by an eroute to the SA, and its held packet leaves.
    tb.klips(tb.left, ['eroute', '--replace', '--eraf', 'inet', '--src', `${f.inner[0]}/32`, '--dst', `${f.inner[1]}/32`, '--said', 'tun.1001@10.99.0.2']);
    await until('the held packet at the right', 10_000, () => listener.out.join('').includes('got held packet'));

    // Replay: one ESP-in-UDP datagram captured on the right's veth, sent again from the left.
    const pcap = path.join(tb.dir, 'one.pcap');
    const dump = tb.start(tb.right, 'tcpdump', ['-n', '-i', tb.right.veth, '-c', '1', '-w', pcap, 'udp and dst port 4500 and src host 10.99.0.1']);
    await until('tcpdump', 10_000, () => dump.out.join('').includes('listening on'));
    ping(tb, 0, 1);
    await until('the capture', 10_000, () => dump.exitCode !== null);
    const payload = udpPayloadFromPcap(fs.readFileSync(pcap));
    const before = tb.runtime(tb.right).paths.rcv.drops.replay ?? 0;
    tb.exec(tb.left, process.execPath, ['-e', UDP_SEND, '10.99.0.1', '10.99.0.2', '4500', payload.toString('hex')]);
    await until('the replay drop', 10_000, () => (tb.runtime(tb.right).paths.rcv.drops.replay ?? 0) === before + 1)
      .catch((e: Error) => { throw new Error(`${e.message}: ${JSON.stringify(tb.runtime(tb.right))}`); });

    // Lifetimes: 1000-byte pings until the outbound ESP SA's 60000 bytes are spent.
    tb.exec(tb.left, 'ping', ['-n', '-q', '-c', '70', '-i', '0.01', '-s', '1000', '-W', '1', '-I', f.inner[0], f.inner[1]], { timeout: 30_000 });
    await until('hard EXPIRE', 10_000, () => /SADB_EXPIRE.*lifetime_hard/i.test(mon.out.join('')));
    const expires = mon.out.join('').split('\n').filter((l) => l.includes('SADB_EXPIRE'));
    assert.ok(/lifetime_soft/i.test(expires[0]), `first EXPIRE is soft: ${expires[0]}`);
    assert.ok(/lifetime_hard/i.test(expires[expires.length - 1]), 'last EXPIRE is hard');
    assert.equal(expires.filter((l) => /lifetime_soft/i.test(l)).length, 1, 'one soft EXPIRE');
    // Past hard expiry the SA is gone: the tunnel's packets are dropped, not sent in clear.
    assert.ok(!tb.klips(tb.left, ['spi', '--dump']).includes('esp.1001@10.99.0.2'));
  } finally {
    await tb.close();
  }
});

/** The UDP payload of the one packet in a pcap file (Ethernet, IPv4). */
function udpPayloadFromPcap(b: Buffer): Buffer {
  const rec = 24;
  const caplen = b.readUInt32LE(rec + 8);
  const frame = b.subarray(rec + 16, rec + 16 + caplen);
  const ip = frame.subarray(14);
  const ihl = (ip[0] & 0x0f) * 4;
  const udpLen = ip.readUInt16BE(ihl + 4);
  return Buffer.from(ip.subarray(ihl + 8, ihl + udpLen));
}


const FLOOD = `
const dgram = require('dgram'), crypto = require('crypto');
const [src, dst, n] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.on('error', (e) => { console.error(e.message); process.exit(2); });
// Every kind of bad datagram, n of each kind, sent in bursts (the send queue stays bounded).
const kinds = [
  () => crypto.randomBytes(1 + crypto.randomInt(1400)),                        // random SPIs, sizes
  () => Buffer.from([0, 0, 0x10, 0x01, 0, 0, 0]),                              // truncated ESP
  () => Buffer.concat([Buffer.from('0000100100000001', 'hex'), crypto.randomBytes(80)]), // our SPI, bad ICV
  () => Buffer.concat([Buffer.alloc(4), crypto.randomBytes(60)]),              // IKE (non-ESP marker)
  () => Buffer.from([0xff]),                                                   // NAT keepalive
];
const all = [];
for (const k of kinds) for (let i = 0; i < Number(n); i++) all.push(k());
let at = 0;
s.bind(0, src, () => {
  const burst = () => {
    for (let j = 0; j < 200 && at < all.length; j++) s.send(all[at++], 4500, dst);
    if (at < all.length) setTimeout(burst, 2); else setTimeout(() => s.close(), 50);
  };
  burst();
});
`;

test('runtime: a flood of hostile datagrams to the ESP port is dropped and counted; klipsd keeps serving; SIGTERM removes ipsec0 and the sockets', { skip, timeout: 120_000 }, async () => {
  const tb = await bed(INET, 'udp');
  try {
    tb.tunnel();
    const n = 400;
    tb.exec(tb.left, process.execPath, ['-e', FLOOD, '10.99.0.1', '10.99.0.2', String(n)], { timeout: 60_000 });
    await until('the flood to be read', 10_000, () => tb.runtime(tb.right).carriers[0].received >= 4 * n);
    const v = tb.runtime(tb.right);
    const r = v.paths.rcv;
    // What was not IKE or a keepalive was dropped, each with a reason; nothing reached ipsec0.
    assert.equal(v.tun.written, 0, 'nothing of the flood became a packet');
    assert.ok(r.dropped >= 3 * n - 5, JSON.stringify(r));
    assert.ok((r.drops['no-sa'] ?? 0) > 0 && (r.drops.icv ?? 0) >= n && (r.drops['too-short'] ?? 0) + (r.drops.malformed ?? 0) > 0, JSON.stringify(r.drops));
    assert.equal(r.dropped, Object.values(r.drops).reduce((a, b) => a + b, 0), 'every drop has a reason');
    assert.ok(r.passed >= 2 * n - 5, 'IKE and keepalives handed on, not dropped as errors');
    // Still serving: the tunnel carries a ping, PF_KEY answers.
    assert.match(ping(tb, 0), / 0% packet loss/);
    assert.match(tb.klips(tb.right, ['spi', '--get', '--said', 'esp.2001@10.99.0.1']), /spi=0x00002001 .* state=MATURE/);
    // SIGTERM: klipsd exits 0 and takes ipsec0 and its socket files with it.
    const d = tb.right.daemon!;
    const exited = new Promise<number | null>((res) => d.on('exit', (code) => res(code)));
    d.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.throws(() => tb.exec(tb.right, 'ip', ['link', 'show', 'ipsec0']), /does not exist/);
    assert.ok(!fs.existsSync(tb.right.socket) && !fs.existsSync(`${tb.right.socket}.info`));
  } finally {
    await tb.close();
  }
});

test('klipsd --dataplane without CAP_NET_ADMIN: one clear line, exit 1, nothing created', { skip: skip || (fs.existsSync('/usr/bin/setpriv') ? false : 'skipped: setpriv (util-linux) is missing') }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klips-nopriv-'));
  fs.chmodSync(dir, 0o777);
  try {
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all',
      process.execPath, KLIPSD, '--dataplane', '--socket', path.join(dir, 'k.sock')], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'klipsd: --dataplane needs root or CAP_NET_ADMIN (to create the TUN interface); run as root, or without --dataplane for the control plane alone\n');
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('warm-up where the loopback is down (a fresh namespace): nothing crosses and nothing throws, so the runtime goes on without it; a refused send is dropped and counted, never retried forever', { skip, timeout: 30_000 }, () => {
  const ns = `klw-${process.pid}`;
  spawnSync('ip', ['netns', 'del', ns]);
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  try {
    const warmup = path.join(path.dirname(KLIPSD), '..', 'dataplane', 'warmup.js');
    const carrier = path.join(path.dirname(KLIPSD), '..', 'dataplane', 'carrier.js');
    const script = `
      const { WarmPaths } = await import(${JSON.stringify(warmup)});
      const { Carrier } = await import(${JSON.stringify(carrier)});
      const w = new WarmPaths({ offload: true });
      console.log(w.run(16), w.tick());
      w.close();
      // A send the kernel refuses (no route at all here) is dropped and counted, once per datagram.
      const k = new Carrier({ family: 2, encap: 'udp', port: 0, batch: 8, slotBytes: 2048, socketBuffer: 0, private: true });
      const p = Buffer.alloc(60); p[0] = 0x45; p.set([10, 0, 0, 1], 16);
      for (let i = 0; i < 3; i++) k.queue(p, undefined);
      const q = Buffer.alloc(80); q[0] = 0x45; q.set([10, 0, 0, 2], 16);
      k.queue(q, undefined);
      console.log(k.flush(), k.stats.sendErrors, k.stats.lastSendError);
      k.close();`;
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['0 0', '4 4 ENETUNREACH']);
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});

test('runtime, idle: a datagram wakes it both ways of waiting (the event loop\'s watch, and the thread pool\'s poll it falls back to), and close() ends either', { skip, timeout: 60_000 }, () => {
  const ns = `klx-${process.pid}`;
  spawnSync('ip', ['netns', 'del', ns]);
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  try {
    assert.equal(spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']).status, 0);
    const dist = path.join(path.dirname(KLIPSD), '..');
    const script = `
      import dgram from 'node:dgram';
      const { Engine } = await import(${JSON.stringify(path.join(dist, 'engine', 'engine.js'))});
      const { DataplaneRuntime } = await import(${JSON.stringify(path.join(dist, 'dataplane', 'runtime.js'))});
      for (const loopWatch of [true, false]) {
        const rt = DataplaneRuntime.start(new Engine({ localAddresses: () => ['127.0.0.1'] }), { interface: 'klx0', families: [2], warmUp: false, loopWatch });
        const idle = () => new Promise((r) => setTimeout(r, 150));
        await idle();
        const before = rt.stats().wakes;
        // An ESP-in-UDP datagram for no SA: received, dropped as no-sa.
        const s = dgram.createSocket('udp4');
        await new Promise((r) => s.send(Buffer.from('0000beef00000001' + '00'.repeat(40), 'hex'), 4500, '127.0.0.1', r));
        s.close();
        await idle();
        const st = rt.stats();
        console.log(loopWatch, st.wakes - before, st.carriers[0].received, st.paths.rcv.drops['no-sa'] ?? 0);
        await rt.close();
      }`;
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['true 1 1 1', 'false 1 1 1']);
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});
