/**
 * Interop with openswan's IKE daemon: two unmodified plutos (openswan 2.6.49.1, built by
 * scripts/build-clients.sh --pluto), one per network namespace, each under `klips run`
 * against its own `klipsd --dataplane`, negotiate an IKEv1 PSK tunnel between the two
 * protected subnets (Main Mode, then Quick Mode with PFS; no NAT between the hosts, so
 * IKE stays on port 500 and the SAs carry no NAT-T ports).
 * Then: whack --status on each side shows the IPsec SA; each klipsd holds exactly the SAs
 * pluto's status names (ESP and IPIP, in and out, the directions mirrored between the
 * sides) and the eroute between the two subnets through pluto's outbound tunnel SA; a
 * ping and a TCP transfer cross the tunnel both ways; tcpdump on the veth saw only IKE
 * and ESP with the negotiated SPIs from the first IKE packet to the last data packet.
 * Then whack --terminate empties both klipsd back to pluto's %trap eroute, and a packet
 * hitting the %trap makes klipsd's ACQUIRE start a new negotiation (pluto on demand).
 * Both carriers of klipsd's runtime: ESP in UDP (port 4500) and raw ESP (IP protocol 50).
 * With ESP in UDP pluto runs with --nat_traversal, so it binds port 4500 on its interface's
 * address beside klipsd's carrier (the bridge joins it to the carrier's group): with no
 * NAT between the hosts IKE stays on 500, and the ESP on 4500 must still reach klipsd.
 *
 * Needs root, iproute2, /dev/net/tun, ping, tcpdump, the bridge library (a C compiler at
 * build time) and pluto and whack in $KLIPS_CLIENTS_DIR or /opt/klips-clients/bin;
 * without one of them the test is skipped with the reason.
 */

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { INET, KLIPS, Testbed, netnsUnavailable, sh, until, ping, tcpTransfer, type Side } from './netns-harness.js';

const CLIENTS = process.env.KLIPS_CLIENTS_DIR || '/opt/klips-clients/bin';
const PLUTO = path.join(CLIENTS, 'pluto');
const WHACK = path.join(CLIENTS, 'whack');
const BRIDGE = path.resolve(path.dirname(KLIPS), '../../bridge/libklips-preload.so');

function unavailable(): string | undefined {
  const ns = netnsUnavailable();
  if (ns) return ns;
  for (const p of [PLUTO, WHACK]) {
    if (!fs.existsSync(p)) return `${p} is missing (build it with scripts/build-clients.sh --pluto OPENSWAN_DIR, or set KLIPS_CLIENTS_DIR)`;
  }
  if (!fs.existsSync(BRIDGE)) return `the bridge library ${BRIDGE} was not built (no C compiler at npm run build)`;
  for (const tool of ['tcpdump', 'ping']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is missing`;
  }
  return undefined;
}

const why = unavailable();
const skip = why ? `skipped: ${why}` : false;
if (why) console.log(`# interop-pluto: ${skip}`);

const f = INET;
const PSK = 'klips-interop-pluto';

/**
 * Our updown script: pluto runs it with PLUTO_VERB and the peer's client subnet in its
 * environment; route-client sends the peer's subnet into ipsec0 (where the eroute then
 * takes it), unroute-client takes the route away. Everything else has nothing to do.
 */
const UPDOWN = `#!/bin/sh
case "$PLUTO_VERB" in
  route-client|route-host) exec ip route replace "$PLUTO_PEER_CLIENT" dev ipsec0 ;;
  unroute-client|unroute-host) ip route del "$PLUTO_PEER_CLIENT" dev ipsec0 2>/dev/null ;;
esac
exit 0
`;

const beds: Testbed[] = [];
const pidFiles: string[] = [];

after(async () => {
  for (const bed of beds) await bed.close();
  // klips run passes SIGTERM on to pluto; a pluto still alive after that is killed here.
  for (const file of pidFiles) {
    const pid = Number.parseInt(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '', 10);
    if (pid > 0) try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

function whack(s: Side & { dir?: string }, args: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', s.ns, WHACK, '--ctlbase', path.join(s.dir!, 'pluto'), ...args], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return `${r.stdout}${r.stderr}`;
}

for (const encap of ['udp', 'raw'] as const) test(`pluto interop, ESP ${encap === 'udp' ? 'in UDP' : 'raw'}: two unmodified plutos negotiate IKEv1 over klipsd; SAs and eroutes in each klipsd; ping and TCP cross; only IKE and ESP on the wire; teardown and renegotiation on demand`, { skip, timeout: 150_000 }, async () => {
  const bed = new Testbed(f, encap);
  beds.push(bed);
  bed.network();
  await Promise.all([bed.daemon(bed.left), bed.daemon(bed.right)]);
  const updown = path.join(bed.dir, 'updown.sh');
  fs.writeFileSync(updown, UPDOWN, { mode: 0o755 });

  const sides = [bed.left, bed.right] as (Side & { dir?: string })[];
  const plutos = sides.map((s, i) => {
    s.dir = path.join(bed.dir, i === 0 ? 'left' : 'right');
    fs.mkdirSync(s.dir);
    fs.writeFileSync(path.join(s.dir, 'ipsec.secrets'), `${f.outer[0]} ${f.outer[1]} : PSK "${PSK}"\n`, { mode: 0o600 });
    pidFiles.push(path.join(s.dir, 'pluto.pid'));
    // pluto pairs each interface with the ipsecN interface of the same address.
    sh('ip', ['-n', s.ns, 'addr', 'add', `${f.outer[i]}/32`, 'dev', 'ipsec0']);
    return bed.start(s, process.execPath, [KLIPS, 'run', '--socket', s.socket, '--', PLUTO, '--nofork', '--stderrlog', '--use-klips',
      '--ctlbase', path.join(s.dir, 'pluto'), '--secretsfile', path.join(s.dir, 'ipsec.secrets'), '--ipsecdir', s.dir, '--nhelpers', '0',
      ...(encap === 'udp' ? ['--nat_traversal'] : [])]);
  });
  const logs = () => plutos.map((p, i) => `--- pluto ${i === 0 ? 'left' : 'right'}:\n${p.out.join('').slice(-4000)}`).join('\n');
  try {
    for (const s of sides) await until(`pluto's control socket in ${s.ns}`, 10_000, () => fs.existsSync(path.join(s.dir!, 'pluto.ctl')));
    for (const s of sides) {
      whack(s, ['--name', 't', '--psk', '--encrypt', '--tunnel', '--pfs',
        '--host', f.outer[0], '--client', f.subnets[0], '--updown', updown, '--to',
        '--host', f.outer[1], '--client', f.subnets[1], '--updown', updown]);
      whack(s, ['--listen']);
    }
    const ports = encap === 'udp' ? [500, 4500] : [500];
    await until('pluto to listen on both sides', 10_000, () => plutos.every((p, i) => ports.every((port) => p.out.join('').includes(`adding interface ipsec0/${sides[i].veth} ${f.outer[i]}:${port}`))));

    // Left out: ARP and the veth's IPv6 multicast housekeeping (neighbour discovery, MLD).
    const filter = 'not arp and not (ip6 and dst net ff00::/8)';
    const dump = bed.start(bed.left, 'tcpdump', ['-l', '-n', '-i', bed.left.veth, filter]);
    await until('tcpdump', 10_000, () => dump.out.join('').includes('listening on'));

    whack(bed.left, ['--name', 't', '--initiate']);
    const established = [/^000 #2: "t":500 IKEv1\.0 STATE_QUICK_I2 \(sent QI2, IPsec SA established\)/m, /^000 #2: "t":500 IKEv1\.0 STATE_QUICK_R2 \(IPsec SA established\)/m];
    await until('the IPsec SA on both sides', 20_000, () => sides.every((s, i) => established[i].test(whack(s, ['--status']))));

    // The SAIDs each pluto installed, from its status: ESP out, ESP in, IPIP out, IPIP in.
    const saids = sides.map((s, i) => {
      const me = f.outer[i].replaceAll('.', '\\.');
      const peer = f.outer[1 - i].replaceAll('.', '\\.');
      const m = new RegExp(`^000 #2: "t" esp\\.([0-9a-f]+)@${peer} esp\\.([0-9a-f]+)@${me} tun\\.([0-9a-f]+)@${peer} tun\\.([0-9a-f]+)@${me} `, 'm').exec(whack(s, ['--status']));
      assert.ok(m, `SAIDs in whack --status of ${s.ns}`);
      return { espOut: m[1], espIn: m[2], tunOut: m[3], tunIn: m[4] };
    });
    // What one side sends with, the other receives with.
    assert.equal(saids[0].espOut, saids[1].espIn);
    assert.equal(saids[0].espIn, saids[1].espOut);

    for (const [i, s] of sides.entries()) {
      const { espOut, espIn, tunOut, tunIn } = saids[i];
      const me = f.outer[i];
      const peer = f.outer[1 - i];
      const hex = (spi: string) => `0x${spi}`;
      // klipsd's spi view (KLIPS's /proc/net/ipsec_spi): exactly pluto's four SAs.
      const spi = bed.klips(s, ['look', '--view', 'spi']).split('\n').filter(Boolean).sort();
      const expected = [
        new RegExp(`^esp${hex(espOut)}@${peer} ESP_AES_HMAC_SHA1: dir=out src=${me} `),
        new RegExp(`^esp${hex(espIn)}@${me} ESP_AES_HMAC_SHA1: dir=in  src=${peer} `),
        new RegExp(`^tun${hex(tunOut)}@${peer} IPIP: dir=out src=${me} `),
        new RegExp(`^tun${hex(tunIn)}@${me} IPIP: dir=in  src=${peer} policy=${f.subnets[1 - i]}->${f.subnets[i]} `),
      ];
      assert.equal(spi.length, 4, `four SAs in ${s.ns}:\n${spi.join('\n')}`);
      for (const re of expected) assert.equal(spi.filter((l) => re.test(l)).length, 1, `${re} in ${s.ns}:\n${spi.join('\n')}`);
      // The eroute pluto installed: our subnet to theirs through the outbound IPIP SA.
      const eroutes = bed.klips(s, ['look', '--view', 'eroute']).split('\n').filter(Boolean);
      assert.equal(eroutes.length, 1, eroutes.join('\n'));
      assert.match(eroutes[0], new RegExp(`^\\d+ +${f.subnets[i]} +-> ${f.subnets[1 - i]} +=> tun${hex(tunOut)}@${peer}$`));
      // And the group: the outbound IPIP SA is followed by the outbound ESP SA.
      assert.match(bed.klips(s, ['look', '--no-label']), new RegExp(`^${f.subnets[i]} +-> ${f.subnets[1 - i]} +=> tun${hex(tunOut)}@${peer} esp${hex(espOut)}@${peer} `, 'm'));
    }

    assert.match(ping(bed, 0), / 0% packet loss/);
    assert.match(ping(bed, 1), / 0% packet loss/);
    await tcpTransfer(bed, 0, 1 << 20);
    await tcpTransfer(bed, 1, 1 << 20);

    await new Promise((r) => setTimeout(r, 300));
    dump.kill('SIGINT');
    await until('tcpdump to stop', 10_000, () => dump.exitCode !== null || dump.signalCode !== null);
    const lines = dump.out.join('').split('\n').filter((l) => /^\d\d:\d\d:\d\d/.test(l));
    const spis = new Set([saids[0].espOut, saids[0].espIn].map((s) => `0x${s.padStart(8, '0')}`));
    const host = `(?:${f.outer.map((a) => a.replaceAll('.', '\\.')).join('|')})`;
    const ike = lines.filter((l) => new RegExp(`IP ${host}\\.500 > ${host}\\.500: isakmp`).test(l));
    // ESP in UDP leaves klipsd's carrier on 4500 (UDP-encap); raw ESP is IP protocol 50.
    const port = encap === 'udp' ? '\\.4500' : '';
    const espLine = new RegExp(`IP ${host}${port} > ${host}${port}: ${encap === 'udp' ? 'UDP-encap: ' : ''}ESP\\(spi=(0x[0-9a-f]+),seq=0x[0-9a-f]+\\)`);
    const esp = lines.filter((l) => { const m = espLine.exec(l); return m !== null && spis.has(m[1]); });
    assert.ok(ike.length >= 9, `Main Mode (6) and Quick Mode (3) on the veth:\n${lines.slice(0, 20).join('\n')}`);
    assert.ok(esp.length >= 12, `ESP on the veth: ${esp.length}`);
    assert.deepEqual(lines.filter((l) => !ike.includes(l) && !esp.includes(l)), [], 'nothing but IKE and ESP on the veth');

    // Teardown: pluto deletes its SAs and puts its %trap back (the connection stays routed).
    whack(bed.left, ['--name', 't', '--terminate']);
    const trapped = (i: 0 | 1) => new RegExp(`^\\d+ +${f.subnets[i]} +-> ${f.subnets[1 - i]} +=> %trap$`);
    await until('both klipsd without SAs and with the %trap eroute', 10_000, () => sides.every((s, i) =>
      bed.klips(s, ['look', '--view', 'spi']).trim() === '' && trapped(i as 0 | 1).test(bed.klips(s, ['look', '--view', 'eroute']).trim())));

    // On demand: a packet hits the %trap, klipsd sends SADB_ACQUIRE, pluto negotiates again.
    const trapsBefore = bed.runtime(bed.left).paths.xmit.drops.trap ?? 0;
    spawnSync('ip', ['netns', 'exec', bed.left.ns, 'ping', '-n', '-q', '-c', '1', '-W', '1', '-I', f.inner[0], f.inner[1]], { timeout: 10_000 });
    await until('the IPsec SA negotiated on demand', 20_000, () => /^000 #4: "t":500 IKEv1\.0 STATE_QUICK_I2 \(sent QI2, IPsec SA established\)/m.test(whack(bed.left, ['--status'])));
    const onDemand = `initiate on demand from ${f.inner[0]}:0 to ${f.inner[1]}:0 proto=0 state: fos_start because: acquire`;
    await until(`"${onDemand}" in pluto's log`, 5_000, () => plutos[0].out.join('').includes(onDemand));
    // The packet that raised the ACQUIRE was held, then dropped with the narrow %hold that
    // pluto deletes once its broad %hold covers the subnets (as on KLIPS).
    assert.equal((bed.runtime(bed.left).paths.xmit.drops.trap ?? 0) - trapsBefore, 1);
    assert.match(bed.klips(bed.left, ['look', '--view', 'eroute']).trim(), new RegExp(`^\\d+ +${f.subnets[0]} +-> ${f.subnets[1]} +=> tun0x[0-9a-f]+@${f.outer[1]}$`));
    assert.match(ping(bed, 0), / 0% packet loss/);
    assert.match(ping(bed, 1), / 0% packet loss/);
  } catch (e) {
    (e as Error).message += `\n${logs()}`;
    throw e;
  }
});
