/**
 * Nothing a client sends can crash the engine or change the tables when it is refused:
 * seeded mutations of valid requests of every type (byte flips, with sadb_msg_len kept
 * right so most reach the parser and handlers). For each: send() returns a number, a
 * non-zero result leaves the tables exactly as they were, and the messages the engine
 * delivers pass the outbound rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SADB_DELETE, SADB_GET, SADB_REGISTER, SADB_FLUSH, SADB_DUMP,
  SADB_X_PROMISC, SADB_X_SATYPE_IPIP, SADB_SATYPE_ESP, SADB_X_SATYPE_INT, SPI_TRAP,
  buildMessage, parseMessage, checkHeader,
  type MessageInput,
} from '../src/wire/index.js';
import {
  world, seededRandom, addReq, updateReq, getspiReq, saidReq, hdrReq, grpsaReq, addflowReq,
  delflowReq, clearflowReq, debugReq, plumbReq, snapshot, lifetime,
} from './engine-helpers.js';

const FLOW = { src: '10.0.0.0', srcMask: '255.255.255.0', dst: '10.0.1.0', dstMask: '255.255.255.0' };

function seeds(): MessageInput[] {
  return [
    getspiReq({ min: 0x1000, max: 0x1fff }),
    addReq({ spi: 0x2000, extra: { lifetimeHard: lifetime({ bytes: 1e6, addtime: 100 }), lifetimeSoft: lifetime({ bytes: 5e5, packets: 10 }), identitySrc: { type: 2, id: 0n, data: 'a.example' }, natTType: { type: 2 }, natTSport: { port: 4500 }, natTDport: { port: 4500 } } }),
    addReq({ spi: 0x2001, satype: SADB_X_SATYPE_IPIP }),
    updateReq({ spi: 0x1000 }),
    saidReq(SADB_DELETE, { spi: 0x2000 }),
    saidReq(SADB_GET, { spi: 0x2000 }),
    hdrReq(SADB_REGISTER, SADB_SATYPE_ESP),
    hdrReq(SADB_FLUSH, 0),
    hdrReq(SADB_DUMP, 0),
    hdrReq(SADB_X_PROMISC, 1),
    grpsaReq({ satype: SADB_SATYPE_ESP, spi: 0x2000 }, { satype: SADB_X_SATYPE_IPIP, spi: 0x2001 }),
    addflowReq({ ...FLOW, spi: 0x2000 }),
    addflowReq({ ...FLOW, satype: SADB_X_SATYPE_INT, spi: SPI_TRAP, dst: '10.0.2.0' }),
    delflowReq({ ...FLOW }),
    clearflowReq(),
    debugReq({ netlink: 0x80000000, pfkey: 1 }),
    plumbReq(18, 49152),
    plumbReq(19, 49152),
  ];
}

test('seeded mutations of valid requests never crash the engine, and refusals change nothing', async () => {
  const w = world({ larvalLifetime: 50 });
  const rnd = seededRandom(0xfeed);
  const a = w.client({ rcvbuf: 1 << 22 });
  const watch = w.client({ rcvbuf: 1 << 22 });
  const base = seeds().map((m) => buildMessage(m));
  let refused = 0;
  let accepted = 0;
  for (let i = 0; i < 6000; i++) {
    const src = base[rnd(base.length)];
    const b = src.slice();
    const flips = 1 + rnd(3);
    for (let f = 0; f < flips; f++) {
      const at = rnd(b.length);
      b[at] = rnd(4) === 0 ? 0 : rnd(256);
    }
    // Keep the header sane half the time so the mutation reaches the parser and handlers.
    if (rnd(2) === 0) { b[0] = 2; b[4] = b.length / 8; b[5] = 0; b[6] = 0; b[7] = 0; if (b[1] === 0 || b[1] > 19) b[1] = src[1]; }
    const before = snapshot(w.engine);
    let rc: number;
    try {
      rc = a.send(b);
    } catch (e) {
      assert.fail(`send threw ${(e as Error).stack} on ${Buffer.from(b).toString('hex')}`);
    }
    assert.equal(typeof rc, 'number');
    if (rc !== 0) {
      refused++;
      assert.equal(snapshot(w.engine), before, `refused (${rc}) but the tables changed: ${Buffer.from(b).toString('hex')}`);
    } else accepted++;
    if (i % 50 === 0) { w.advance(7); w.engine.tick(); }
    if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    for (const c of [a, watch]) {
      for (;;) {
        let m: Uint8Array | undefined;
        try { m = c.sock.recv(); } catch { continue; }
        if (!m) break;
        try {
          checkHeader(m);
          parseMessage(m, { direction: 'out' });
        } catch (e) {
          assert.fail(`the engine sent a message its outbound rules refuse after ${Buffer.from(b).toString('hex')}: ${(e as Error).message}: ${Buffer.from(m).toString('hex')}`);
        }
      }
    }
  }
  assert.ok(refused > 1000 && accepted > 100, `both paths exercised (refused ${refused}, accepted ${accepted})`);
});
