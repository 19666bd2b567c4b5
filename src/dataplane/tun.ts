/**
 * KLIPS's virtual interface (`ipsec0`) as a Linux TUN device: opened on /dev/net/tun with
 * IFF_TUN | IFF_NO_PI (whole IPv4/IPv6 packets, no packet-info prefix), its MTU set and
 * brought up with the interface ioctls, non-blocking. What the host routes into it is
 * the outbound path's input; what the inbound path delivers is written back to it. The
 * device is not persistent: closing the descriptor removes it, so a klipsd that dies
 * leaves no interface behind.
 */

import { AF_INET } from '../wire/index.js';
import {
  IFF_NO_PI, IFF_TUN, IFF_UP, IFF_VNET_HDR, IFNAMSIZ, IFREQ_BYTES, O_CLOEXEC, O_NONBLOCK, O_RDWR, SIOCGIFFLAGS,
  SIOCGIFINDEX, SIOCSIFFLAGS, SIOCSIFMTU, SOCK_CLOEXEC, SOCK_DGRAM, TUNSETIFF, TUNSETOFFLOAD, TUN_F_CSUM, TUN_F_TSO4,
  TUN_F_TSO6, errnoText, libc,
} from './libc.js';
import { rd16, rd32, wr16, wr32 } from '../wire/bytes.js';

export class TunError extends Error {}

export interface TunDevice {
  readonly name: string;
  readonly fd: number;
  readonly mtu: number;
  readonly ifindex: number;
  /** Packets read and written carry a virtio_net_hdr (gso.ts): checksum and TCP segmentation offloads are on. */
  readonly offload: boolean;
  close(): void;
}

function ifreq(name: string): Buffer {
  const r = Buffer.alloc(IFREQ_BYTES);
  r.write(name, 0, IFNAMSIZ - 1, 'latin1');
  return r;
}

/**
 * Create (or attach to) TUN device `name`, set its MTU and bring it up. With `offload`,
 * packets carry a virtio_net_hdr and the device asks for checksum and TCP segmentation
 * offloads (the host's TCP then hands over up to 64 KB per read); a kernel that refuses
 * the offloads still frames packets the same way, with nothing left to do in the header.
 */
export function openTun(name: string, mtu: number, offload = false): TunDevice {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new TunError(`bad interface name "${name}" (1 to 15 letters, digits, . _ -)`);
  const c = libc();
  const fd = c.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw new TunError(`cannot open /dev/net/tun: ${errnoText(c.errno())}`);
  const fail = (what: string, ctl = -1): never => {
    const e = c.errno();
    if (ctl >= 0) c.close(ctl);
    c.close(fd);
    throw new TunError(`${what} ${name}: ${errnoText(e)}`);
  };
  const req = ifreq(name);
  wr16(req, IFNAMSIZ, IFF_TUN | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0));
  if (c.ioctl(fd, TUNSETIFF, req) < 0) fail('cannot create TUN device');
  // Refused offloads leave the header in place with nothing offloaded: the same framing.
  if (offload) c.ioctlInt(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
  const actual = req.toString('latin1', 0, IFNAMSIZ).replace(/\0.*$/s, '');
  // The interface ioctls go through any socket of the host's.
  const ctl = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (ctl < 0) fail('cannot open a control socket for');
  const m = ifreq(actual);
  wr32(m, IFNAMSIZ, mtu);
  if (c.ioctl(ctl, SIOCSIFMTU, m) < 0) fail(`cannot set MTU ${mtu} on`, ctl);
  const flags = ifreq(actual);
  if (c.ioctl(ctl, SIOCGIFFLAGS, flags) < 0) fail('cannot read the flags of', ctl);
  wr16(flags, IFNAMSIZ, rd16(flags, IFNAMSIZ) | IFF_UP);
  if (c.ioctl(ctl, SIOCSIFFLAGS, flags) < 0) fail('cannot bring up', ctl);
  const idx = ifreq(actual);
  if (c.ioctl(ctl, SIOCGIFINDEX, idx) < 0) fail('cannot read the index of', ctl);
  c.close(ctl);
  let open = true;
  return {
    name: actual, fd, mtu, ifindex: rd32(idx, IFNAMSIZ), offload,
    close() {
      if (!open) return;
      open = false;
      c.close(fd);
    },
  };
}
