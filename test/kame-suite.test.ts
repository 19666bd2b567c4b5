/**
 * klipsd's KAME socket against a real Linux af_key (issue 13): start klipsd, replay the
 * differential suite (test/fixtures/linux-af_key-suite/suite.json) on `<socket>.kame`,
 * and compare every step with Linux's captured answers (linux.json) field by field, with
 * the masks scripts/kame-diff.ts documents. Every step must be equal except the ones in
 * KNOWN below, each of which names the documentation section that explains it; an entry
 * whose step has become equal fails too, so the list never outlives its reason.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { compareRuns, renderReport, type Run, type Suite } from '../scripts/kame-diff.js';
import { FIXTURES, ROOT, readJson, replayStream } from '../scripts/kame-compare.js';
import { tempDir, waitUntil } from './cli-harness.js';
import { connectable, ready, spawnDaemon, stopWith } from './daemon-child.js';

/**
 * Steps where klipsd differs from Linux on purpose or by nature, each with the section of
 * docs/ that says why (file#heading-anchor). Add an entry only together with that section.
 */
const PER_TYPE = 'docs/semantics.md#per-message-type-linux-numbering';
const KNOWN: Record<string, string> = {
  // Over a stream the bytes after what sadb_msg_len covers are the next message: klipsd
  // answers the GET, then times the 8-byte remainder out (EMSGSIZE) and closes.
  bad_len_trailing: 'docs/semantics.md#datagram-boundaries',
  // REGISTER lists klipsd's algorithms (AES-GCM included, no DES/CAST/Blowfish/...), with
  // RFC 2367's ivlen in bits: the REGISTER row of the per-message table.
  register_esp: PER_TYPE,
  register_ah: PER_TYPE,
  register_unspec: PER_TYPE,
  register_ipcomp: PER_TYPE,
  register_rsvp: PER_TYPE,
  acquire_register_esp: PER_TYPE,
  acquire_register_ah: PER_TYPE,
  // Linux's reply to an UPDATE of a mature SA describes its discarded copy (state DEAD);
  // klipsd's shows the SA as it now is: the UPDATE row.
  update_mature_lifetimes: PER_TYPE,
  // AES-GCM through PF_KEY works in klipsd (Linux: ENOSYS); an HMAC key must have the
  // algorithm's size (Linux takes any length): the ADD row.
  bad_aes_gcm: PER_TYPE,
  add_sha1_key_128: PER_TYPE,
};

/** The anchors a markdown file's headings get (GitHub's rule: lower case, punctuation dropped, spaces to dashes). */
function anchors(file: string): Set<string> {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  return new Set([...text.matchAll(/^#+ (.+)$/gm)].map((m) => m[1].trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')));
}

test('every allow-list entry names a documentation section that exists', () => {
  for (const [stepName, ref] of Object.entries(KNOWN)) {
    const [file, anchor] = ref.split('#');
    assert.ok(anchors(file).has(anchor), `${stepName}: ${ref} names no heading in ${file}`);
  }
});

test('klipsd\'s KAME socket answers the differential suite as Linux af_key does (except the documented differences)', { timeout: 180_000 }, async () => {
  const suite = readJson<Suite>(path.join(FIXTURES, 'suite.json'));
  const linux = readJson<Run>(path.join(FIXTURES, 'linux.json'));
  for (const name of Object.keys(KNOWN)) assert.ok(suite.steps.some((s) => s.name === name), `allow-list entry ${name} is no suite step`);

  const dir = tempDir('klips-kame-');
  const socket = path.join(dir, 'pfkey.sock');
  const kame = `${socket}.kame`;
  const config = path.join(dir, 'klipsd.json');
  // A stalled half message (the suite's bad_len_long) must be answered within its 1.5 s settle.
  fs.writeFileSync(config, JSON.stringify({ partialFrameTimeoutMs: 500 }));
  const p = spawnDaemon(['--socket', socket, '--config', config]);
  try {
    await ready(p, socket);
    try {
      await waitUntil(`klipsd's KAME socket at ${kame}`, () => connectable(kame), 3000);
    } catch {
      assert.fail(`klipsd has no KAME socket yet: it listens on ${socket} but nothing accepts connections at ${kame} (the KAME dialect, issue 13's other half, is not merged)`);
    }
    const run = await replayStream(suite, kame);
    const reports = compareRuns(suite, { label: 'linux', run: linux }, { label: 'klipsd', run });
    const unexpected = reports.filter((r) => !r.equal && !(r.name in KNOWN));
    const stale = reports.filter((r) => r.equal && r.name in KNOWN).map((r) => r.name);
    assert.deepEqual(
      unexpected.map((r) => r.name), [],
      `steps where klipsd differs from Linux without a documented reason:\n${renderReport(unexpected, 'unexpected differences')}`,
    );
    assert.deepEqual(stale, [], 'allow-list entries whose steps are now equal: remove them (and their doc sections, if nothing else needs them)');
  } finally {
    if (p.child.exitCode === null) await stopWith(p, 'SIGTERM').catch(() => p.child.kill('SIGKILL'));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
