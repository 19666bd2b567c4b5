/**
 * The /proc-style views work in process, with no daemon: after PF_KEY requests on an
 * engine, each view's text and JSON describe exactly what the tables hold.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SADB_X_SATYPE_INT, SADB_X_SATYPE_IPIP, SADB_SATYPE_ESP, SPI_TRAP, SADB_X_PLUMBIF, IPSECDEV_OFFSET } from '../src/wire/index.js';
import { renderView } from '../src/engine/views.js';
import { world, addReq, addflowReq, grpsaReq, plumbReq, drain, addEsp } from './engine-helpers.js';

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
