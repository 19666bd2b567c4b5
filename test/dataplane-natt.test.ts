/**
 * Tests for src/dataplane/natt.ts: ESP put in UDP (RFC 3948 and the 8-byte non-IKE
 * marker variant) and taken out again, the sorting of what arrives on the NAT-T port
 * (keepalive, IKE, ESP), its drops, and the transport-mode checksum fix after a NAT
 * rewrote the addresses, end to end through espOutput/espInput.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ESPINUDP_WITH_NON_ESP, ESPINUDP_WITH_NON_IKE, IPPROTO_ESP } from '../src/wire/index.js';
import {
  IPPROTO_TCP, IPPROTO_UDP, espInput, espOutput, internetChecksum, nattDecap, nattEncap, nattTransportFixup, parseIp,
  pseudoHeaderSum, refreshIPv4Checksum, type TransformSA,
} from '../src/dataplane/index.js';
import { addr, algPairs, bytes, espSA, ipv4, ipv6, samplePackets, tcp, udp } from './dataplane-helpers.js';

const PAIR = algPairs().find((p) => p.name === 'aes128cbc/HMAC-SHA1-96')!;
const natT = (type = ESPINUDP_WITH_NON_ESP, sport = 4500, dport = 4500) => ({ natT: { type, sport, dport } });
const V6 = { src: addr('2001:db8:ffff::1'), dst: addr('2001:db8:eeee::2') };

function espPacket(sa: TransformSA, seq = 1): Buffer {
  const r = espOutput(sa, samplePackets()[sa.src.length === 4 ? 0 : 3].packet, { mode: 'tunnel', seq });
  assert.ok(r.ok);
  return r.packet;
}

/** The transport checksum of a packet's upper layer, checked against its pseudo-header. */
function upperChecksumOk(pkt: Buffer, off: number, proto: number): boolean {
  const p = parseIp(pkt);
  assert.ok(p.ok);
  return internetChecksum(pkt, off, pkt.length, pseudoHeaderSum(p.ip, proto, pkt.length - off)) === 0;
}

test('IPv4: UDP header with the SA\'s ports, right length, zero checksum; decapsulation restores the ESP packet', () => {
  const sa = espSA(PAIR, natT(ESPINUDP_WITH_NON_ESP, 4500, 61000));
  const esp = espPacket(sa);
  const r = nattEncap(sa, esp);
  assert.ok(r.ok);
  const u = r.packet;
  assert.equal(u[9], IPPROTO_UDP);
  assert.equal(u.readUInt16BE(2), esp.length + 8);
  assert.deepEqual([u.readUInt16BE(20), u.readUInt16BE(22), u.readUInt16BE(24), u.readUInt16BE(26)], [4500, 61000, esp.length - 20 + 8, 0]);
  assert.ok(u.subarray(28).equals(esp.subarray(20)));
  assert.equal(internetChecksum(u, 0, 20), 0);
  const d = nattDecap(u);
  assert.ok(d.ok && d.kind === 'esp');
  assert.ok(d.packet.equals(esp));
  assert.deepEqual([d.sport, d.dport], [4500, 61000]);
  const back = espInput(sa, d.packet, { mode: 'tunnel' });
  assert.ok(back.ok && back.packet.equals(samplePackets()[0].packet));
});

test('the non-IKE marker variant puts 8 zero bytes before ESP, and only that variant strips them', () => {
  const sa = espSA(PAIR, natT(ESPINUDP_WITH_NON_IKE));
  const esp = espPacket(sa);
  const r = nattEncap(sa, esp);
  assert.ok(r.ok);
  assert.ok(r.packet.subarray(28, 36).equals(Buffer.alloc(8)));
  assert.equal(r.packet.readUInt16BE(24), 16 + esp.length - 20);
  const d = nattDecap(r.packet, ESPINUDP_WITH_NON_IKE);
  assert.ok(d.ok && d.kind === 'esp' && d.packet.equals(esp));
  const ike = nattDecap(r.packet, ESPINUDP_WITH_NON_ESP);
  assert.ok(ike.ok && ike.kind === 'ike', 'read as RFC 3948, 8 zero bytes start with the non-ESP marker');
  const plain = nattEncap(espSA(PAIR, natT()), esp);
  assert.ok(plain.ok);
  const asIke = nattDecap(plain.packet, ESPINUDP_WITH_NON_IKE);
  assert.ok(asIke.ok && asIke.kind === 'ike', 'without the marker it is IKE in the old variant');
});

test('IPv6: the UDP checksum is computed (zero is not allowed over IPv6)', () => {
  const sa = espSA(PAIR, { ...V6, ...natT() });
  const r = nattEncap(sa, espPacket(sa));
  assert.ok(r.ok);
  assert.equal(r.packet[6], IPPROTO_UDP);
  assert.notEqual(r.packet.readUInt16BE(46), 0);
  assert.ok(upperChecksumOk(r.packet, 40, IPPROTO_UDP));
  const d = nattDecap(r.packet);
  assert.ok(d.ok && d.kind === 'esp');
  assert.ok(espInput(sa, d.packet, { mode: 'tunnel' }).ok);
});

test('what arrives on port 4500: keepalives, IKE behind the non-ESP marker, ESP; and the drops', () => {
  const onPort = (data: Buffer, v6 = false) => {
    const seg = udp(4500, 4500, data);
    return v6 ? ipv6({ nh: IPPROTO_UDP, payload: seg }) : ipv4({ proto: IPPROTO_UDP, payload: seg });
  };
  const ka = nattDecap(onPort(Buffer.from([0xff])));
  assert.deepEqual(ka, { ok: true, kind: 'keepalive', sport: 4500, dport: 4500 });
  const ikeMsg = bytes(28, 4);
  const ike = nattDecap(onPort(Buffer.concat([Buffer.alloc(4), ikeMsg]), true));
  assert.ok(ike.ok && ike.kind === 'ike' && ike.message.equals(ikeMsg));
  assert.deepEqual(nattDecap(onPort(Buffer.from([1, 2]))), { ok: false, reason: 'too-short' });
  assert.deepEqual(nattDecap(onPort(Buffer.from([0, 0, 1, 2, 0, 0, 0]))), { ok: false, reason: 'too-short' }, 'ESP needs SPI and sequence number');
  const bad = onPort(bytes(20, 1));
  bad.writeUInt16BE(99, 24);
  assert.deepEqual(nattDecap(bad), { ok: false, reason: 'malformed' }, 'UDP length disagrees with the packet');
  assert.deepEqual(nattDecap(ipv4({ payload: tcp(4500, 4500, bytes(20)) })), { ok: false, reason: 'no-sa' });
  assert.deepEqual(nattEncap(espSA(PAIR), espPacket(espSA(PAIR))), { ok: false, reason: 'bad-sa' }, 'an SA without NAT-T');
  assert.deepEqual(nattEncap(espSA(PAIR, natT()), samplePackets()[0].packet), { ok: false, reason: 'no-sa' }, 'not ESP');
});

test('transport mode behind a NAT: the inner TCP checksum is fixed for the translated addresses', () => {
  const sa = espSA(PAIR, natT());
  const inner = ipv4({ src: '10.0.0.5', dst: '198.51.100.2', payload: tcp(33000, 443, bytes(40, 6)) });
  const out = espOutput(sa, inner, { mode: 'transport', seq: 7 });
  assert.ok(out.ok);
  const sent = nattEncap(sa, out.packet);
  assert.ok(sent.ok);
  // The NAT rewrites the source address and port.
  const natted = Buffer.from(sent.packet);
  natted.set(addr('203.0.113.77'), 12);
  natted.writeUInt16BE(40123, 20);
  refreshIPv4Checksum(natted);
  const d = nattDecap(natted);
  assert.ok(d.ok && d.kind === 'esp' && d.sport === 40123);
  const plain = espInput(sa, d.packet, { mode: 'transport' });
  assert.ok(plain.ok && plain.nextHeader === IPPROTO_TCP);
  assert.ok(!upperChecksumOk(plain.packet, 20, IPPROTO_TCP), 'checksum still covers 10.0.0.5');
  assert.ok(nattTransportFixup(plain.packet));
  assert.ok(upperChecksumOk(plain.packet, 20, IPPROTO_TCP));
  assert.ok(plain.packet.subarray(40).equals(inner.subarray(40)), 'payload untouched');
  // A zero IPv4 UDP checksum (none) stays zero; a packet with no TCP/UDP is left alone.
  const u = ipv4({ proto: IPPROTO_UDP, payload: udp(1, 2, bytes(9)) });
  u.writeUInt16BE(0, 26);
  assert.ok(nattTransportFixup(u));
  assert.equal(u.readUInt16BE(26), 0);
  assert.equal(nattTransportFixup(ipv4({ proto: IPPROTO_ESP, payload: bytes(30) })), false);
});
