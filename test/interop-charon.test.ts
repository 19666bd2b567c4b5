/**
 * strongSwan's charon against klipsd (issue 13): keys from a real IKEv2 negotiation, klips's
 * ESP against strongSwan's. Two namespaces joined by a veth (the Testbed's):
 *
 *   left   klipsd --dataplane (ipsec0, ESP in UDP 4500), and charon with kernel-pfkey
 *          (/opt/klips-clients/strongswan, scripts/build-charon-pfkey.sh) under
 *          `klips run --dialect kame`: its PF_KEY socket is klipsd's KAME socket, its NAT-T
 *          socket shares klipsd's UDP port (IKE to charon, ESP to klipsd); kernel-netlink
 *          serves addresses only (install_routes = no, our own route into ipsec0)
 *   right  Debian's charon with kernel-libipsec (userspace ESP over its own TUN)
 *
 * IKEv2 with a PSK, a tunnel between 10.98.1.0/24 and 10.98.2.0/24 over 10.99.0.1/2, UDP
 * encapsulation forced on both sides (encap = yes: libipsec has no raw ESP). Asserted: the
 * CHILD_SA INSTALLED on both sides with matching SPIs; klipsd's SAs (both directions, the
 * SPIs swanctl shows, reqid, NAT-T ports) and policies (`klips setkey -D`, `-DP`); ping both
 * ways; 5 MB over TCP checksummed at both ends; the usage charon reads back with SADB_GET
 * equal to klipsd's; a capture on the veth sees only UDP 500/4500, and on it exactly the
 * two SPIs; terminate empties klipsd's tables; then a trap policy: the first packet makes
 * klipsd send ACQUIRE, charon negotiates, and traffic flows.
 *
 * Needs root, iproute2, /dev/net/tun, tcpdump, ping, the bridge library (npm run build, a C
 * compiler), our charon and Debian's libipsec charon (.ci/run installs and builds them);
 * skipped with the reason printed when one is missing.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { INET, KLIPS, Testbed, netnsUnavailable, NO_HOUSEKEEPING, sh, tcpTransfer, until } from './netns-harness.js';
import { BRIDGE_LIBRARY } from '../src/cli/run.js';

const PFKEY_PREFIX = process.env.KLIPS_CHARON_PFKEY || '/opt/klips-clients/strongswan';
const PFKEY_CHARON = path.join(PFKEY_PREFIX, 'libexec/ipsec/charon');
const PFKEY_SWANCTL = path.join(PFKEY_PREFIX, 'sbin/swanctl');
const LIBIPSEC_CHARON = '/usr/lib/ipsec/charon';
const LIBIPSEC_PLUGIN = '/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so';
const DEBIAN_SWANCTL = '/usr/sbin/swanctl';

function why(): string | undefined {
  const ns = netnsUnavailable();
  if (ns) return ns;
  const missing = [
    [PFKEY_CHARON, 'charon with kernel-pfkey (scripts/build-charon-pfkey.sh)'],
    [PFKEY_SWANCTL, 'its swanctl (scripts/build-charon-pfkey.sh)'],
    [LIBIPSEC_CHARON, "Debian's charon (strongswan-charon)"],
    [LIBIPSEC_PLUGIN, "Debian's kernel-libipsec plugin (libcharon-extra-plugins)"],
    [DEBIAN_SWANCTL, "Debian's swanctl (strongswan-swanctl)"],
    [BRIDGE_LIBRARY, 'the bridge library (npm run build, with a C compiler)'],
  ].find(([p]) => !fs.existsSync(p));
  if (missing) return `${missing[1]} is missing: ${missing[0]}`;
  for (const tool of ['tcpdump', 'ping']) {
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).error) return `${tool} is not installed`;
  }
  return undefined;
}

const unavailable = why();
const skip = unavailable ? `skipped: ${unavailable}` : false;
if (unavailable) console.log(`# interop-charon: ${skip}`);

const f = INET;
const PSK = 'klips-interop-not-a-secret-0123456789';
/** Linux's kernel-pfkey charon writes its pid file in /run/klips-charon (--with-piddir), Debian's in /run: each side gets a private /run. */
const PFKEY_PIDDIR = 'klips-charon';

interface Charon {
  dir: string;
  conf: string;
  vici: string;
  swanctl: string;
  log: string;
}

let tb: Testbed;
let left: Charon;
let right: Charon;

function strongswanConf(c: Charon, side: 'left' | 'right'): string {
  // left: our charon's own plugin configs, kernel-pfkey first so that PF_KEY does the IPsec
  // and kernel-netlink only addresses; no routes of charon's (ours goes into ipsec0).
  // right: Debian's stock set, kernel-libipsec enabled ahead of kernel-netlink.
  const plugins = side === 'left'
    ? `include ${PFKEY_PREFIX}/etc/strongswan.d/charon/*.conf
		kernel-pfkey { load = 10 }`
    : `include /etc/strongswan.d/charon/*.conf
		kernel-libipsec { load = 10 }
		stroke { load = no }`;
  return `charon {
	load_modular = yes
	${side === 'left' ? 'install_routes = no' : ''}
	plugins {
		${plugins}
		vici { socket = unix://${c.vici} }
	}
	filelog {
		log {
			path = ${c.log}
			append = no
			flush_line = yes
			default = 1
			knl = 2
		}
	}
	syslog { daemon { default = -1 } auth { default = -1 } }
}
swanctl { load = random nonce }
`;
}

function swanctlConf(i: 0 | 1, startAction: 'none' | 'trap'): string {
  const ids = ['left', 'right'];
  return `connections {
	s2s {
		version = 2
		local_addrs = ${f.outer[i]}
		remote_addrs = ${f.outer[1 - i]}
		encap = yes
		proposals = aes128-sha256-ecp256
		local { auth = psk
			id = ${ids[i]} }
		remote { auth = psk
			id = ${ids[1 - i]} }
		children {
			s2s {
				local_ts = ${f.subnets[i]}
				remote_ts = ${f.subnets[1 - i]}
				esp_proposals = aes128gcm16
				start_action = ${startAction}
			}
		}
	}
}
secrets { ike-s2s { id-1 = left
	id-2 = right
	secret = "${PSK}" } }
`;
}

function swanctl(c: Charon, args: string[], timeout = 30_000): string {
  return sh('env', [`STRONGSWAN_CONF=${c.conf}`, c.swanctl, args[0], '--uri', `unix://${c.vici}`, ...args.slice(1)], { timeout });
}

function load(c: Charon, i: 0 | 1, startAction: 'none' | 'trap'): void {
  const file = path.join(c.dir, 'swanctl.conf');
  fs.writeFileSync(file, swanctlConf(i, startAction));
  // swanctl also looks for credential folders beside the file; none exist (stderr only).
  swanctl(c, ['--load-all', '--file', file]);
}

interface ChildSa { reqid: number; state: string; mode: string; proposal: string; in: string; out: string; inBytes: number; outBytes: number }

/** The CHILD_SAs `swanctl --list-sas` shows, newest last. */
function childSas(c: Charon): ChildSa[] {
  const text = swanctl(c, ['--list-sas']);
  const found: ChildSa[] = [];
  const re = /s2s: #\d+, reqid (\d+), (\w+), ([\w-]+), (\S+)\n(?:.*\n)*?\s+in\s+([0-9a-f]{8}),\s+(\d+) bytes.*\n\s+out\s+([0-9a-f]{8}),\s+(\d+) bytes/g;
  for (const m of text.matchAll(re)) {
    found.push({ reqid: Number(m[1]), state: m[2], mode: m[3], proposal: m[4], in: m[5], inBytes: Number(m[6]), out: m[7], outBytes: Number(m[8]) });
  }
  return found;
}

interface KameSa { src: string; dst: string; spi: string; kind: string; reqid: number; state: string; enc: string; bytes: number }

/** klipsd's SAs as `klips setkey -D` prints them (ipsec-tools' format). */
function klipsdSas(): KameSa[] {
  const text = sh(process.execPath, [KLIPS, 'setkey', '-D', '--socket', tb.left.socket]);
  const re = /^(\S+) (\S+) \n\t(\S+) mode=tunnel spi=\d+\(0x([0-9a-f]{8})\) reqid=(\d+)\(0x[0-9a-f]+\)\n\tE: (\S+) .*\n\tseq=\S+ replay=\d+ flags=\S+ state=(\w+) \n(?:\t.*\n)*?\tcurrent: (\d+)\(bytes\)/gm;
  return [...text.matchAll(re)].map((m) => ({ src: m[1], dst: m[2], kind: m[3], spi: m[4], reqid: Number(m[5]), enc: m[6], state: m[7], bytes: Number(m[8]) }));
}

/** klipsd's policies as `klips setkey -DP` prints them: selector, direction, template. */
function klipsdPolicies(): string[] {
  const text = sh(process.execPath, [KLIPS, 'setkey', '-DP', '--socket', tb.left.socket]);
  const re = /^(\S+ \S+ \S+)\n\t(\w+) prio [^\n]* ipsec\n\t(\S+)\n/gm;
  return [...text.matchAll(re)].map((m) => `${m[1]} ${m[2]} ${m[3]}`).sort();
}

function ping(from: 0 | 1, count: number): string {
  const side = from === 0 ? tb.left : tb.right;
  const r = spawnSync('ip', ['netns', 'exec', side.ns, 'ping', '-n', '-c', String(count), '-i', '0.3', '-W', '2', '-I', f.inner[from], f.inner[1 - from]], { encoding: 'utf8', timeout: 30_000 });
  return r.stdout ?? '';
}

function startCharon(side: 'left' | 'right'): Charon {
  const s = side === 'left' ? tb.left : tb.right;
  const dir = path.join(tb.dir, side);
  const c: Charon = {
    dir, conf: path.join(dir, 'strongswan.conf'), vici: path.join(dir, 'charon.vici'), log: path.join(dir, 'charon.log'),
    swanctl: side === 'left' ? PFKEY_SWANCTL : DEBIAN_SWANCTL,
  };
  fs.mkdirSync(path.join(dir, 'run', PFKEY_PIDDIR), { recursive: true });
  fs.writeFileSync(c.conf, strongswanConf(c, side));
  const command = side === 'left'
    ? `${process.execPath} ${KLIPS} run --dialect kame --socket ${s.socket} -- ${PFKEY_CHARON}`
    : LIBIPSEC_CHARON;
  // A private /run per side: each charon's pid file path is compiled in.
  tb.start(s, 'env', [`STRONGSWAN_CONF=${c.conf}`, 'unshare', '-m', '--propagation', 'private',
    'sh', '-c', `mount --bind ${path.join(dir, 'run')} /run && exec ${command}`]);
  return c;
}

const charonLog = (c: Charon) => (fs.existsSync(c.log) ? fs.readFileSync(c.log, 'utf8') : '');

before(async () => {
  if (unavailable) return;
  tb = new Testbed(f, 'udp');
  tb.network();
  // klipsd binds UDP 4500 first; charon's NAT-T socket then joins it (the bridge's SO_REUSEPORT).
  await tb.daemon(tb.left);
  left = startCharon('left');
  right = startCharon('right');
  await until('both charons listening on vici', 15_000, () => fs.existsSync(left.vici) && fs.existsSync(right.vici));
  load(right, 1, 'none');
  load(left, 0, 'none');
  tb.route(tb.left, 0);
});

after(async () => {
  if (!tb) return;
  // Everything still running in the two namespaces is ours (charon outlives a klips run
  // that is killed): TERM, then KILL what is left after 3 s, then the Testbed's own close.
  const pids = () => [tb.left, tb.right].flatMap((s) => spawnSync('ip', ['netns', 'pids', s.ns], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean).map(Number) ?? []);
  const signal = (sig: NodeJS.Signals) => { for (const pid of pids()) try { process.kill(pid, sig); } catch { /* gone */ } };
  signal('SIGTERM');
  await until('the namespaces\' processes to end', 3_000, () => pids().length === 0).catch(() => signal('SIGKILL'));
  await tb.close();
});

test('charon (kernel-pfkey) on klipsd negotiates with charon (kernel-libipsec): SAs and policies in klipsd, ping both ways, 5 MB over TCP, only UDP 500/4500 on the wire', { skip }, async () => {
  const filter = NO_HOUSEKEEPING; // the veth's own link-local housekeeping left out
  // (Headers are enough; whole 64 KB runs would fill tcpdump's buffer and be dropped.)
  const dump = tb.start(tb.left, 'tcpdump', ['-l', '-n', '-t', '-s', '128', '-i', tb.left.veth, filter]);
  await until('tcpdump', 10_000, () => dump.out.join('').includes('listening on'));

  assert.match(swanctl(left, ['--initiate', '--child', 's2s', '--timeout', '20']), /initiate completed successfully/);
  const [l] = childSas(left);
  const [r] = childSas(right);
  assert.ok(l && r, 'a CHILD_SA on each side');
  for (const c of [l, r]) assert.deepEqual([c.state, c.mode, c.proposal], ['INSTALLED', 'TUNNEL-in-UDP', 'ESP:AES_GCM_16-128']);
  assert.deepEqual([l.in, l.out], [r.out, r.in], 'one SA each way, the same SPIs on both sides');

  // klipsd holds what kernel-pfkey installed: both SAs (ESP in UDP, 4500 both ends) ...
  const sas = klipsdSas();
  assert.deepEqual(sas.map((s) => [s.src, s.dst, s.kind, s.spi, s.reqid, s.enc, s.state]).sort(), [
    [`${f.outer[0]}[4500]`, `${f.outer[1]}[4500]`, 'esp-udp', l.out, l.reqid, 'aes-gcm-16', 'mature'],
    [`${f.outer[1]}[4500]`, `${f.outer[0]}[4500]`, 'esp-udp', l.in, l.reqid, 'aes-gcm-16', 'mature'],
  ].sort());
  // ... and its three policies (out, and in and fwd for the return), each a tunnel template.
  const unique = `unique:${l.reqid}`;
  assert.deepEqual(klipsdPolicies(), [
    `${f.subnets[0]}[any] ${f.subnets[1]}[any] any out esp/tunnel/${f.outer[0]}-${f.outer[1]}/${unique}`,
    `${f.subnets[1]}[any] ${f.subnets[0]}[any] any fwd esp/tunnel/${f.outer[1]}-${f.outer[0]}/${unique}`,
    `${f.subnets[1]}[any] ${f.subnets[0]}[any] any in esp/tunnel/${f.outer[1]}-${f.outer[0]}/${unique}`,
  ].sort());

  assert.match(ping(0, 4), / 4 received, 0% packet loss/, 'left to right');
  assert.match(ping(1, 4), / 4 received, 0% packet loss/, 'right to left');

  const bytes = 5 << 20;
  await tcpTransfer(tb, 0, bytes); // the same SHA-256 at both ends, or it throws

  // charon reads the SAs' usage from klipsd (SADB_GET): the same counts klipsd shows.
  await new Promise((res) => setTimeout(res, 300));
  const [after1] = childSas(left);
  const usage = new Map(klipsdSas().map((s) => [s.spi, s.bytes]));
  assert.ok(after1.outBytes > bytes, `outbound SA counted the transfer: ${after1.outBytes}`);
  assert.deepEqual([after1.outBytes, after1.inBytes], [usage.get(l.out), usage.get(l.in)]);

  dump.kill('SIGINT');
  await until('tcpdump to stop', 5_000, () => dump.exitCode !== null || dump.signalCode !== null);
  const lines = dump.out.join('').split('\n').filter((x) => x.startsWith('IP'));
  const udp = /^IP (10\.99\.0\.[12])\.(500|4500) > (10\.99\.0\.[12])\.(500|4500): /;
  assert.deepEqual(lines.filter((x) => !udp.test(x)), [], 'nothing but UDP 500/4500 on the veth');
  assert.ok(lines.some((x) => /\.500 > .*isakmp/.test(x)), 'IKE_SA_INIT on 500');
  const spis = new Set([...dump.out.join('').matchAll(/UDP-encap: ESP\(spi=0x([0-9a-f]{8})/g)].map((m) => m[1]));
  assert.deepEqual([...spis].sort(), [l.in, l.out].sort(), 'ESP on the wire carries exactly the negotiated SPIs');
  // klipsd sends runs of ESP datagrams as one UDP_SEGMENT message, which the capture on the
  // veth sees as one packet (showing the run's first sequence number): the transfer is
  // told by how far the outbound SA's sequence numbers went on the wire.
  const seqs = [...dump.out.join('').matchAll(new RegExp(`UDP-encap: ESP\\(spi=0x${l.out},seq=0x([0-9a-f]+)\\)`, 'g'))].map((m) => parseInt(m[1], 16));
  assert.ok(Math.max(0, ...seqs) > bytes / 1500, `the transfer went as ESP in UDP: sequence numbers up to ${Math.max(0, ...seqs)} for ${bytes} bytes`);
  assert.doesNotMatch(charonLog(left), /failed|unable/, 'charon (kernel-pfkey) logged no failure');

  assert.match(swanctl(left, ['--terminate', '--ike', 's2s', '--timeout', '10']), /terminate completed successfully/);
  assert.equal(sh(process.execPath, [KLIPS, 'setkey', '-D', '--socket', tb.left.socket]), 'No SAD entries.\n');
  assert.equal(sh(process.execPath, [KLIPS, 'setkey', '-DP', '--socket', tb.left.socket]), 'No SPD entries.\n');
});

test('a trap policy: the first packet makes klipsd send ACQUIRE, charon negotiates, traffic flows', { skip }, async () => {
  load(left, 0, 'trap');
  assert.equal(klipsdSas().length, 0, 'no SA before the first packet');
  assert.equal(klipsdPolicies().length, 3, 'the trap policies are installed');
  // The first packet is dropped (as Linux drops it) while charon negotiates; the ones after it find the tunnel.
  const out = ping(0, 6);
  assert.match(out, / [56] received/);
  assert.match(charonLog(left), /received an SADB_ACQUIRE/);
  const [l] = childSas(left);
  assert.equal(l?.state, 'INSTALLED');
  assert.deepEqual(klipsdSas().map((s) => s.spi).sort(), [l.in, l.out].sort());
  assert.match(ping(1, 3), / 3 received, 0% packet loss/, 'right to left');
});
