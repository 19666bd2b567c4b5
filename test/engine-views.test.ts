/**
 * The /proc-style views work in process, with no daemon: after PF_KEY requests on an
 * engine, each view's text and JSON describe exactly what the tables hold, in the
 * formats of KLIPS's /proc files (pf_key, version, natt, trap counts, xforms, outif).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  SADB_X_SATYPE_INT, SADB_X_SATYPE_IPIP, SADB_SATYPE_ESP, SADB_SATYPE_AH, SPI_TRAP, SADB_X_PLUMBIF,
  SADB_REGISTER, SADB_X_PROMISC, IPSECDEV_OFFSET, MASTTRANSPORT_OFFSET,
} from '../src/wire/index.js';
import { renderView, VIEW_NAMES } from '../src/engine/views.js';
import { world, addReq, addflowReq, grpsaReq, plumbReq, hdrReq, drain, addEsp } from './engine-helpers.js';

test('views in process: eroute, spigrp, tncfg and spi reflect the tables; unknown view is undefined', () => {
  const w = world();
  const c = w.client();
  addEsp(c, 0x1234);
  c.ok(addReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x1002 }));
  c.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x1002 }, { satype: SADB_SATYPE_ESP, spi: 0x1234 }));
  c.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_TRAP, src: '10.0.1.0', srcMask: '255.255.255.0', dst: '10.0.2.0', dstMask: '255.255.255.0' }));
  c.ok(plumbReq(SADB_X_PLUMBIF, IPSECDEV_OFFSET + 3));
  drain(c);

  const eroute = renderView('eroute', w.engine)!;
  assert.equal(eroute.text.trim().split('\n').length, 1);
  assert.match(eroute.text, /10\.0\.1\.0\/24\s+-> 10\.0\.2\.0\/24\s+=> %trap/);

  const grp = renderView('spigrp', w.engine)!;
  assert.match(grp.text, /tun0x1002@192\.0\.2\.2 esp0x1234@192\.0\.2\.2/);

  const tn = renderView('tncfg', w.engine)!;
  assert.equal(tn.text, 'mast0 -> NULL mtu=0(0) -> 0\nipsec0 -> NULL mtu=0(0) -> 0\nipsec1 -> NULL mtu=0(0) -> 0\nipsec3 -> NULL mtu=0(0) -> 0\n');

  const spi = renderView('spi', w.engine)!;
  const lines = spi.text.trim().split('\n');
  assert.equal(lines.length, 2, 'one line per SA');
  assert.ok(lines.some((l) => l.startsWith('esp0x1234@192.0.2.2')), spi.text);
  assert.ok(lines.some((l) => l.startsWith('tun0x1002@192.0.2.2')), spi.text);
  assert.doesNotThrow(() => JSON.stringify(spi.data));

  assert.equal(renderView('nonesuch', w.engine), undefined);
});

test('pf_key lists the open sockets as /proc/net/pf_key did (socket numbers for kernel pointers)', () => {
  const w = world();
  const [a, b] = [w.client(), w.client({ rcvbuf: 4096 })];
  b.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP));
  b.ok(hdrReq(SADB_X_PROMISC, 1));
  const pids = new Map([[a.sock.id, 0], [b.sock.id, 4242]]);
  const v = renderView('pf_key', w.engine, { pidOf: (ep) => pids.get(ep.id) ?? 0 })!;
  const h = (n: number) => n.toString(16).padStart(8, '0');
  assert.equal(v.text, [
    '    sock   pid   socket     next     prev e n p sndbf    Flags     Type St',
    `${h(a.sock.id)}     0 ${h(a.sock.id)} 0 2 212992 00000000        3  1`,
    `${h(b.sock.id)}  4242 ${h(b.sock.id)} 0 2  4096 00000000        3  1`,
    '',
  ].join('\n'));
  const queued = b.sock.rcvbuf - b.sock.room();
  assert.ok(queued > 0);
  assert.deepEqual(v.data, [
    { socket: a.sock.id, pid: 0, rcvbuf: 212992, queued: 0, registered: [], promisc: false, pchange: false },
    { socket: b.sock.id, pid: 4242, rcvbuf: 4096, queued, registered: [SADB_SATYPE_ESP], promisc: true, pchange: false },
  ]);
  a.close();
  assert.equal(renderView('pf_key', w.engine)!.text.split('\n').length, 3, 'a closed socket is gone');
});

test('version (equal to package.json\'s), natt, trap_count and trap_sendcount', () => {
  const w = world();
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(renderView('version', w.engine)!.text, `Openswan version: klips-${pkg.version}\n`);
  assert.equal(renderView('natt', w.engine)!.text, '1\n', 'pluto reads a leading 0 as "no NAT-T"');
  const sel = { family: 2, src: '10.0.0.1', dst: '10.0.1.1', proto: 0, sport: 0, dport: 0 };
  assert.throws(() => w.engine.acquire(sel), /EPROTONOSUPPORT/);
  assert.deepEqual([renderView('trap_count', w.engine)!.text, renderView('trap_sendcount', w.engine)!.text], ['1\n', '0\n']);
  const c = w.client();
  c.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP));
  w.engine.acquire(sel);
  w.engine.acquire(sel);
  assert.deepEqual([renderView('trap_count', w.engine)!.data, renderView('trap_sendcount', w.engine)!.data], [{ count: 3 }, { count: 2 }]);
});

test('xforms: one ipsec_alg line per supported ESP/AH algorithm, REFCNT the SAs using it', () => {
  const w = world();
  const c = w.client();
  addEsp(c, 0x100);
  addEsp(c, 0x101);
  c.ok(addReq({ spi: 0x102, satype: SADB_SATYPE_AH }));
  drain(c);
  const v = renderView('xforms', w.engine)!;
  const lines = v.text.split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.length, 7 + 5, 'seven ciphers, five hashes (AH\'s are ESP\'s, listed once)');
  assert.ok(lines.includes('VERSION=524544 TYPE=15 ID=12 NAME=aes REFCNT=2 STATE=00000003 BLOCKSIZE=16 IVLEN=128 KEYMINBITS=128 KEYMAXBITS=256 IVLEN=128 KEYMINBITS=128 KEYMAXBITS=256 KEYLEN=32 CTXSIZE=0 '), v.text);
  assert.ok(lines.includes('VERSION=524544 TYPE=14 ID=3 NAME=sha1 REFCNT=3 STATE=00000003 BLOCKSIZE=64 IVLEN=0 KEYMINBITS=160 KEYMAXBITS=160 IVLEN=0 KEYMINBITS=160 KEYMAXBITS=160 KEYLEN=20 CTXSIZE=0 AUTHLEN=12 '), v.text);
  assert.ok(lines.includes('VERSION=524544 TYPE=15 ID=3 NAME=3des REFCNT=0 STATE=00000003 BLOCKSIZE=8 IVLEN=64 KEYMINBITS=192 KEYMAXBITS=192 IVLEN=64 KEYMINBITS=192 KEYMAXBITS=192 KEYLEN=24 CTXSIZE=0 '), v.text);
  assert.equal((v.data as Array<{ type: number }>).length, 12);
});

test('spi view: outif when the SA\'s X_PLUMBIF names an existing interface other than 0 (":1" for transport-direct mast)', () => {
  const w = world();
  const c = w.client();
  c.ok(plumbReq(SADB_X_PLUMBIF, 1));
  const withOutif = (spi: number, ifnum: number) => c.ok(addReq({ spi, extra: { plumbif: { ifnum } } }));
  withOutif(0x200, IPSECDEV_OFFSET + 1);
  withOutif(0x201, MASTTRANSPORT_OFFSET + 1);
  withOutif(0x202, 1);
  withOutif(0x203, 0);
  withOutif(0x204, 5);
  drain(c);
  const text = renderView('spi', w.engine)!.text;
  const outif = (spi: number) => / outif=(\S+)$/m.exec(text.split('\n').find((l) => l.startsWith(`esp0x${spi.toString(16)}@`))!)?.[1];
  assert.deepEqual([0x200, 0x201, 0x202, 0x203, 0x204].map(outif), ['ipsec1:0', 'mast1:1', 'mast1:0', undefined, undefined]);
});

test('every view name renders a view of that name with text and JSON', () => {
  const w = world();
  for (const name of VIEW_NAMES) {
    const v = renderView(name, w.engine)!;
    assert.equal(v.view, name);
    assert.equal(typeof v.text, 'string');
    assert.doesNotThrow(() => JSON.stringify(v.data));
  }
  assert.equal(renderView('toString', w.engine), undefined, 'not fooled by Object.prototype');
});
