/**
 * Tests for src/dataplane/gso.ts: what a TUN device with offloads hands over, made into
 * whole packets. A TCP super-segment (IPv4 and IPv6) is cut into gso_size pieces whose
 * lengths, IPv4 ids, sequence numbers, flags and checksums are exactly what the host would
 * have sent; a NEEDS_CSUM packet gets its checksum; a header that makes no sense is a fault.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VNET_HDR_BYTES, offloadedPackets } from '../src/dataplane/gso.js';
import { buildIPv4Header, buildIPv6Header, internetChecksum, onesSum } from '../src/dataplane/index.js';

const SRC4 = Uint8Array.of(10, 1, 0, 5);
const DST4 = Uint8Array.of(10, 2, 0, 7);
const SRC6 = Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? 0xfd : i === 15 ? 1 : 0));
const DST6 = Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? 0xfd : i === 15 ? 2 : 0));

/** A TCP segment (20-byte header, flags) with `payload` bytes, behind a vnet header. */
function superSegment(v6: boolean, payload: number, gsoSize: number, flags: number): Buffer {
  const tcp = Buffer.alloc(20 + payload);
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(5201, 2);
  tcp.writeUInt32BE(0xfffff000, 4); // the sequence number wraps inside the super-segment
  tcp.writeUInt32BE(77, 8);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  tcp.writeUInt16BE(512, 14);
  for (let i = 0; i < payload; i++) tcp[20 + i] = (i * 7) & 0xff;
  const ip = v6
    ? buildIPv6Header({ trafficClass: 0, flowLabel: 0, hopLimit: 64, nextHeader: 6, src: SRC6, dst: DST6, payloadLength: tcp.length })
    : buildIPv4Header({ tos: 0, id: 0x1234, flags: 2, ttl: 64, protocol: 6, src: SRC4, dst: DST4, payloadLength: tcp.length });
  const vnet = Buffer.alloc(VNET_HDR_BYTES);
  vnet[0] = 1; // NEEDS_CSUM
  vnet[1] = v6 ? 4 : 1; // GSO_TCPV6 / GSO_TCPV4
  vnet.writeUInt16LE(ip.length + 20, 2);
  vnet.writeUInt16LE(gsoSize, 4);
  vnet.writeUInt16LE(ip.length, 6);
  vnet.writeUInt16LE(16, 8);
  return Buffer.concat([vnet, ip, tcp]);
}

function tcpChecksumOk(p: Buffer, v6: boolean): boolean {
  const at = v6 ? 40 : 20;
  const l4 = p.length - at;
  const pseudo = (v6 ? onesSum(p, 8, 40) : onesSum(p, 12, 20)) + 6 + l4;
  return internetChecksum(p, at, p.length, pseudo) === 0;
}

for (const v6 of [false, true]) {
  test(`a ${v6 ? 'TCPv6' : 'TCPv4'} super-segment of 3000 bytes cut at 1000: three packets as the host would send them`, () => {
    const read = superSegment(v6, 3000, 1000, 0x18 | 0x01 | 0x80); // PSH ACK FIN CWR
    const buf = Buffer.alloc(70000);
    read.copy(buf);
    const got: Buffer[] = [];
    assert.equal(offloadedPackets(buf, read.length, Buffer.alloc(70000), (p) => got.push(Buffer.from(p))), undefined);
    assert.equal(got.length, 3);
    const at = v6 ? 40 : 20;
    got.forEach((p, i) => {
      assert.equal(p.length, at + 20 + 1000);
      if (v6) assert.equal(p.readUInt16BE(4), 1020);
      else {
        assert.equal(p.readUInt16BE(2), 1040);
        assert.equal(p.readUInt16BE(4), 0x1234 + i);
        assert.equal(internetChecksum(p, 0, 20), 0, 'IPv4 header checksum');
      }
      assert.equal(p.readUInt32BE(at + 4), (0xfffff000 + 1000 * i) >>> 0);
      const flags = p[at + 13];
      assert.equal(flags, i === 0 ? 0x10 | 0x80 : i === 2 ? 0x18 | 0x01 : 0x10, `flags of piece ${i}`);
      assert.ok(tcpChecksumOk(p, v6), `TCP checksum of piece ${i}`);
      for (let k = 0; k < 1000; k++) assert.equal(p[at + 20 + k], ((1000 * i + k) * 7) & 0xff);
    });
  });
}

test('a super-segment whose payload does not divide evenly ends with the short piece', () => {
  const read = superSegment(false, 2500, 1000, 0x10);
  const got: number[] = [];
  offloadedPackets(read, read.length, Buffer.alloc(70000), (p) => got.push(p.length));
  assert.deepEqual(got, [1040, 1040, 540]);
});

test('NEEDS_CSUM without GSO: the checksum is completed in place from the pseudo-header sum the host left', () => {
  const read = superSegment(false, 300, 0, 0x18);
  read[1] = 0; // GSO_NONE
  // The host puts the pseudo-header sum in the checksum field for the device to finish.
  const at = VNET_HDR_BYTES + 20;
  const pseudo = onesSum(read, VNET_HDR_BYTES + 12, VNET_HDR_BYTES + 20) + 6 + 320;
  read.writeUInt16BE((pseudo & 0xffff) + (pseudo >>> 16), at + 16);
  const got: Buffer[] = [];
  offloadedPackets(read, read.length, Buffer.alloc(70000), (p) => got.push(Buffer.from(p)));
  assert.equal(got.length, 1);
  assert.ok(tcpChecksumOk(got[0], false));
});

test('a vnet header that makes no sense is a fault, not a throw', () => {
  const read = superSegment(false, 3000, 1000, 0x10);
  read[1] = 3; // GSO_UDP, never asked for
  assert.equal(offloadedPackets(read, read.length, Buffer.alloc(70000), () => assert.fail('no packet')), 'bad-vnet-header');
  const short = Buffer.alloc(5);
  assert.equal(offloadedPackets(short, 5, Buffer.alloc(10), () => assert.fail('no packet')), 'bad-vnet-header');
  const wrongVersion = superSegment(true, 100, 50, 0x10);
  wrongVersion[1] = 1; // says TCPv4, holds IPv6
  assert.equal(offloadedPackets(wrongVersion, wrongVersion.length, Buffer.alloc(70000), () => assert.fail('no packet')), 'bad-vnet-header');
});
