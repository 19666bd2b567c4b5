/**
 * The `klips` command itself: --version, the aliases (pf_key, klipsdebug), one-line
 * reports of bad arguments at every level (unknown command, unknown option, missing
 * option argument), and failures as one JSON object under --json with the same exit codes.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { assertUsageError, DIST, klips, klipsOk, useDaemon } from './cli-harness.js';

const kd = useDaemon();

test('--version prints the package version', async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(DIST, '..', 'package.json'), 'utf8')) as { version: string };
  assert.equal(await klipsOk(['--version']), `${pkg.version}\n`);
  assert.equal(await klipsOk(['-V']), `${pkg.version}\n`);
});

test('klipsdebug is debug and pf_key is monitor', async () => {
  assert.equal(await klipsOk(['klipsdebug', ...kd.S, '--set', 'pfkey']), '');
  assert.equal(kd.d.server.engine.debug.pfkey, 0xffffffff);
  assert.equal(await klipsOk(['klipsdebug', ...kd.S]), await klipsOk(['debug', ...kd.S]));
  await klipsOk(['klipsdebug', ...kd.S, '--none']);
  assert.match(await klipsOk(['pf_key', ...kd.S, '--count', '1']), /^SADB_REGISTER satype=AH /);
});

test('bad arguments at every level: one line and where to look, exit 2', async () => {
  const unknown = await klips(['frob']);
  assert.deepEqual(unknown, { code: 2, stdout: '', stderr: "klips: unknown command 'frob'\nTry 'klips --help'.\n" });
  assert.deepEqual(await klips(['spi', '--bogus']), { code: 2, stdout: '', stderr: "klips spi: unknown option '--bogus'\nTry 'klips spi --help'.\n" });
  assertUsageError(await klips(['eroute', '--said']), 'eroute', /^klips eroute: option '--said <said>' argument missing$/);
  assertUsageError(await klips(['klipsdebug', '--set']), 'debug', /argument missing/);
  assertUsageError(await klips(['spigrp', '--timeout', '-5']), 'spigrp', /--timeout must be a positive number of milliseconds/);
  const help = await klips(['spi', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: klips spi /);
  const bare = await klips([]);
  assert.equal(bare.code, 2, 'no command: the overview, as a usage error');
  assert.match(bare.stderr, /^Usage: klips <command> \[options\]\n/);
});

test('--json: a failure is one JSON object on stderr, with the exit code it has without --json', async () => {
  const err = (r: { stderr: string }) => JSON.parse(r.stderr) as { error: { errno: string | null; code: number | null; message: string } };
  const usage = await klips(['spi', ...kd.S, '--json', '--said', 'esp.1000@192.0.2.2', '--esp', '3des', '--enckey', '0102']);
  assert.equal(usage.code, 2);
  assert.equal(usage.stdout, '');
  assert.equal(usage.stderr.split('\n').length, 2, 'one line');
  assert.deepEqual(err(usage), { error: { errno: null, code: null, message: 'klips spi: --enckey needs 0x, 0s or 0t prefix' } });

  const missing = await klips(['spi', ...kd.S, '--json', '--del', '--said', 'esp.1000@192.0.2.2']);
  assert.equal(missing.code, 1);
  assert.equal(missing.stdout, '');
  assert.deepEqual(err(missing), { error: { errno: 'ESRCH', code: 3, message: 'spi: DELETE esp0x1000@192.0.2.2 failed: ESRCH (no such SA): no SA esp.1000@192.0.2.2' } });

  const nowhere = path.join(kd.d.dir, 'absent.sock');
  const down = await klips(['eroute', '--socket', nowhere, '--json']);
  assert.equal(down.code, 1);
  assert.deepEqual(err(down), { error: { errno: 'ENOENT', code: 2, message: `eroute: cannot connect to klipsd's view channel at ${nowhere}.info: ENOENT (is klipsd running?)` } });

  const refused = await klips(['decode', '--json', '020700030300000001000000af010000']);
  assert.equal(refused.code, 1);
  assert.deepEqual(err(refused), { error: { errno: 'EMSGSIZE', code: 90, message: 'decode: EMSGSIZE at byte 4 (sadb_msg_len says 24 bytes, 16 given)' } });

  const opt = await klips(['tncfg', '--json', '--bogus']);
  assert.equal(opt.code, 2);
  assert.deepEqual(err(opt), { error: { errno: null, code: null, message: "klips tncfg: unknown option '--bogus'" } });
});
