/**
 * ipsec-tools' own setkey (unmodified, racoon-ipsec-tools 0.9.1, built by
 * scripts/build-setkey.sh into /opt/klips-clients/bin or $KLIPS_CLIENTS_DIR) on klipsd's
 * KAME socket through `klips run --dialect kame`: it installs SAs and policies from a
 * setkey file, lists them with -D and -DP as klips setkey does, sees File exists for a
 * second ADD, and shares the tables with the KLIPS dialect (the policy is an eroute that
 * `klips eroute` shows resolved to the SA; an eroute added with `klips eroute` is a
 * policy setkey -DP lists). Skipped, with the reason, where the binary or the bridge
 * library (a C compiler at build time) is missing.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { klips, klipsOk, startDaemon, type Daemon } from './cli-harness.js';
import { BRIDGE_LIBRARY } from '../src/cli/run.js';

const SETKEY = path.join(process.env.KLIPS_CLIENTS_DIR ?? '/opt/klips-clients/bin', 'setkey');
const missing = !fs.existsSync(SETKEY)
  ? `${SETKEY} is missing (scripts/build-setkey.sh builds ipsec-tools' setkey there)`
  : !fs.existsSync(BRIDGE_LIBRARY) ? `${BRIDGE_LIBRARY} is missing (npm run build makes it where cc exists)` : undefined;
if (missing) console.log(`# real setkey interop skipped: ${missing}`);

const KEY_AES = '0x00112233445566778899aabbccddeeff';
const KEY_SHA256 = '0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
const CONF = `flush;
spdflush;
# two tunnel-mode SAs and the policies that use them
add 10.0.0.1 10.0.0.2 esp 0x1001 -m tunnel -E aes-cbc ${KEY_AES} -A hmac-sha256 ${KEY_SHA256};
add 10.0.0.2 10.0.0.1 esp 0x1002 -m tunnel -E aes-cbc ${KEY_AES} -A hmac-sha256 ${KEY_SHA256};
spdadd 10.1.0.0/24 10.2.0.0/24 any -P out ipsec esp/tunnel/10.0.0.1-10.0.0.2/require;
spdadd 10.2.0.0/24 10.1.0.0/24 any -P in ipsec esp/tunnel/10.0.0.2-10.0.0.1/require;
`;

let d: Daemon;
let dir: string;

before(async () => {
  if (missing) return;
  d = await startDaemon();
  dir = fs.mkdtempSync(path.join(d.dir, 'setkey-'));
});
after(async () => { await d?.stop(); });

const setkey = (...args: string[]) => klips(['run', '--dialect', 'kame', '--socket', d.socket, '--', SETKEY, ...args]);
/** A dump without what moves between two runs (times, the pid, the per-message seq). */
const steady = (text: string) => text.split('\n').filter((l) => !/created:|current:|diff:|last:|sadb_seq=|spid=|lastused/.test(l)).join('\n');

test('real setkey -f installs SAs and policies; -D and -DP list them as klips setkey does; the tables are one', { skip: missing }, async () => {
  const file = path.join(dir, 'tunnel.conf');
  fs.writeFileSync(file, CONF);
  const load = await setkey('-f', file);
  assert.deepEqual([load.code, load.stderr], [0, '']);

  const dump = await setkey('-D');
  assert.equal(dump.code, 0);
  assert.match(dump.stdout, /^10\.0\.0\.1 10\.0\.0\.2 \n\tesp mode=tunnel spi=4097\(0x00001001\) reqid=0\(0x00000000\)\n\tE: aes-cbc  00112233 44556677 8899aabb ccddeeff\n\tA: hmac-sha256  00112233 44556677 8899aabb ccddeeff 00112233 44556677 8899aabb ccddeeff\n\tseq=0x00000000 replay=0 flags=0x00000000 state=mature $/m);
  assert.match(dump.stdout, /^10\.0\.0\.2 10\.0\.0\.1 \n\tesp mode=tunnel spi=4098\(0x00001002\)/m);
  assert.equal(steady((await klipsOk(['setkey', '--socket', d.socket, '-D'])).trimEnd()), steady(dump.stdout.trimEnd()), 'klips setkey -D prints what setkey -D prints');

  const policies = await setkey('-DP');
  assert.equal(policies.code, 0);
  const dirs = [...policies.stdout.matchAll(/^\t(in|out|fwd) prio def ipsec$/gm)].map((m) => m[1]).sort();
  assert.deepEqual(dirs, ['fwd', 'in', 'out'], 'setkey sends the fwd twin of the in policy, as on Linux');
  assert.match(policies.stdout, /^10\.1\.0\.0\/24\[any\] 10\.2\.0\.0\/24\[any\] \S+\n\tout prio def ipsec\n\tesp\/tunnel\/10\.0\.0\.1-10\.0\.0\.2\/require$/m);

  // The out policy is an eroute, its template resolved to the SA setkey added.
  assert.match(await klipsOk(['eroute', '--socket', d.socket]), /10\.1\.0\.0\/24\s+-> 10\.2\.0\.0\/24\s+=> esp0x1001@10\.0\.0\.2/);

  // An eroute added the KLIPS way is a policy setkey lists (priority 0: no `prio` word).
  await klipsOk(['eroute', '--socket', d.socket, '--add', '--src', '10.3.0.0/24', '--dst', '10.4.0.0/24', '--said', '%drop']);
  const after = await setkey('-DP');
  assert.match(after.stdout, /^10\.3\.0\.0\/24\[any\] 10\.4\.0\.0\/24\[any\] \S+\n\tout discard$/m);
});

test('real setkey: a second ADD of the same SA is File exists; -F and -FP empty both tables', { skip: missing }, async () => {
  const file = path.join(dir, 'again.conf');
  fs.writeFileSync(file, `add 10.0.0.1 10.0.0.2 esp 0x1001 -m tunnel -E aes-cbc ${KEY_AES} -A hmac-sha256 ${KEY_SHA256};\n`);
  const again = await setkey('-f', file);
  assert.match(again.stdout + again.stderr, /File exists/);

  assert.equal((await setkey('-F')).code, 0);
  assert.equal((await setkey('-FP')).code, 0);
  assert.equal((await setkey('-D')).stdout, 'No SAD entries.\n');
  // Without --dialect, klips run gives setkey the KAME socket by its name.
  const byName = await klips(['run', '--socket', d.socket, '--', SETKEY, '-D']);
  assert.deepEqual([byName.code, byName.stdout], [0, 'No SAD entries.\n']);
  assert.equal((await setkey('-DP')).stdout, 'No SPD entries.\n');
  assert.equal((await klipsOk(['eroute', '--socket', d.socket])).trim(), '', 'no eroute left');
});
