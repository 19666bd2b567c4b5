/** SAID text forms as openswan writes them, and the rendering of IPIP's tunnel "algorithms". */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatSaid, formatSaidOld } from '../src/sadb/said.js';
import {
  IPPROTO_ESP, IPPROTO_INT, IPPROTO_IPIP, SPI_TRAP, SADB_REGISTER, SADB_X_SATYPE_IPIP,
  buildMessage, parseMessage, renderMessage,
} from '../src/wire/index.js';

test('formatSaid: a dot before the hex SPI for IPv4, a colon for IPv6, names for shunts', () => {
  assert.equal(formatSaid({ proto: IPPROTO_ESP, spi: 0x12345678, dst: '192.0.2.2' }), 'esp.12345678@192.0.2.2');
  assert.equal(formatSaid({ proto: IPPROTO_ESP, spi: 0x12345678, dst: '2001:db8::2' }), 'esp:12345678@2001:db8::2');
  assert.equal(formatSaid({ proto: IPPROTO_IPIP, spi: 0x1002, dst: '192.0.2.2' }), 'tun.1002@192.0.2.2');
  assert.equal(formatSaid({ proto: IPPROTO_INT, spi: SPI_TRAP, dst: '0.0.0.0' }), '%trap');
  assert.equal(formatSaidOld({ proto: IPPROTO_ESP, spi: 0x1234, dst: '192.0.2.2' }), 'esp0x1234@192.0.2.2');
});

test('an IPIP REGISTER reply renders its tunnel modes by name, not as cipher names', () => {
  const alg = (id: number) => ({ id, ivlen: 0, minbits: 32, maxbits: 32 });
  const b = buildMessage({ header: { type: SADB_REGISTER, satype: SADB_X_SATYPE_IPIP }, supportedEncrypt: { algs: [alg(1), alg(4)] } });
  const text = renderMessage(parseMessage(b, { direction: 'out' }));
  assert.match(text, /SUPPORTED_ENCRYPT: IPv4_in_IPv4\(iv=0 bits=32-32\) IPv6_in_IPv6\(/);
  assert.doesNotMatch(text, /DESCBC/);
});
