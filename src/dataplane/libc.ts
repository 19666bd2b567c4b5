/**
 * The few libc calls the data plane's runtime needs that Node does not offer (a TUN
 * device's ioctls, raw and UDP sockets read and written in batches with recvmmsg and
 * sendmmsg, poll on any descriptor), bound through koffi, a maintained FFI library with
 * prebuilt binaries (no native addon of our own to build); and, from the node binary's own
 * libuv, a watch of descriptors by the event loop (`watchFromLoop`). Loaded on first use
 * only, so nothing but `klipsd --dataplane` ever touches it.
 *
 * Every call returns what the syscall returns; on -1 `errno()` tells why. Memory the
 * kernel keeps addresses into (the batch arenas) comes from `nativeArena`, which never
 * moves; everything else is passed as a Buffer for the duration of one call.
 */

import os from 'node:os';
import { loadKoffi, type Koffi, type KoffiFn, type KoffiLibrary } from './koffi.js';

/** Linux x86_64/arm64 constants (asm-generic and x86 agree on these). */
export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = O_NONBLOCK;
export const SOCK_CLOEXEC = O_CLOEXEC;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_SNDBUF = 7;
export const SO_REUSEADDR = 2;
export const SO_REUSEPORT = 15;
export const SO_ATTACH_REUSEPORT_CBPF = 51;
export const IPPROTO_IP = 0;
export const IPPROTO_IPV6 = 41;
export const IP_HDRINCL = 3;
export const IP_PKTINFO = 8;
export const IPV6_V6ONLY = 26;
export const IPV6_RECVPKTINFO = 49;
export const IPV6_PKTINFO = 50;
export const POLLIN = 0x1;
export const MSG_DONTWAIT = 0x40;
export const EAGAIN = 11;
export const EINTR = 4;
export const EIO = 5;

/** TUN ioctls and flags (linux/if_tun.h), interface ioctls (linux/sockios.h). */
export const TUNSETIFF = 0x400454ca;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
export const TUNSETOFFLOAD = 0x400454d0;
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const SIOCGIFFLAGS = 0x8913;
export const SIOCSIFFLAGS = 0x8914;
export const SIOCSIFMTU = 0x8922;
export const SIOCGIFINDEX = 0x8933;
export const IFF_UP = 0x1;
export const IFNAMSIZ = 16;
export const IFREQ_BYTES = 40;

/** struct mmsghdr on LP64: a 56-byte msghdr and the 4-byte count, padded to 64. */
export const MMSGHDR_BYTES = 64;
export const IOVEC_BYTES = 16;

export interface Libc {
  open(path: string, flags: number): number;
  close(fd: number): number;
  ioctl(fd: number, request: number, arg: Uint8Array): number;
  /** ioctl with an integer argument passed by value (TUNSETOFFLOAD). */
  ioctlInt(fd: number, request: number, arg: number): number;
  read(fd: number, buf: Uint8Array, len: number): number;
  write(fd: number, buf: Uint8Array, len: number): number;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  /** `len`: one int, in and out (socklen_t). */
  getsockname(fd: number, addr: Uint8Array, len: Int32Array): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  sendto(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array, addrlen: number): number;
  recvfrom(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array | null, addrlen: Uint8Array | null): number;
  /** recvmmsg/sendmmsg on a vector in a NativeArena (its iovecs point into the same arena). */
  recvmmsg(fd: number, vec: Uint8Array, vlen: number, flags: number, timeout: null): number;
  sendmmsg(fd: number, vec: Uint8Array, vlen: number, flags: number): number;
  pipe2(fds: Int32Array, flags: number): number;
  /** ppoll() here and now, blocking this thread up to the timespec's time (16 bytes: seconds, nanoseconds). */
  ppoll(fds: Uint8Array, n: number, timeout: Uint8Array, sigmask: null): number;
  /** poll() on the thread pool: the callback runs on the event loop when it returns. */
  pollAsync(fds: Uint8Array, n: number, timeoutMs: number, done: (err: unknown, ready: number) => void): void;
  errno(): number;
}

/** Memory outside the V8 heap that never moves: its addresses can be written into msghdrs. */
export interface NativeArena {
  /** The bytes, as a Buffer (a view of it passes the same addresses to a call). */
  readonly buf: Buffer;
  /** The address of buf[0]. */
  readonly base: bigint;
}

let cached: { libc: Libc; koffi: Koffi } | undefined;

/** Why the runtime cannot use libc here (no koffi build for this platform, no glibc). */
export class LibcUnavailable extends Error {}

function bind(): { libc: Libc; koffi: Koffi } {
  if (cached) return cached;
  const koffi = loadKoffi();
  if (koffi instanceof Error) throw new LibcUnavailable(koffi.message);
  if (process.platform !== 'linux') throw new LibcUnavailable(`the data plane runtime needs Linux (this is ${process.platform})`);
  const lib = koffi.load('libc.so.6');
  const f = (decl: string): KoffiFn => lib.func(decl);
  const poll = f('int poll(void *fds, unsigned long n, int timeout)');
  const libc: Libc = {
    open: f('int open(const char *path, int flags)') as Libc['open'],
    close: f('int close(int fd)') as Libc['close'],
    // ioctl is variadic in C; on Linux's LP64 ABIs a pointer third argument passes the same way.
    ioctl: f('int ioctl(int fd, unsigned long request, void *arg)') as Libc['ioctl'],
    ioctlInt: f('int ioctl(int fd, unsigned long request, unsigned long arg)') as Libc['ioctlInt'],
    read: f('long read(int fd, void *buf, unsigned long len)') as Libc['read'],
    write: f('long write(int fd, void *buf, unsigned long len)') as Libc['write'],
    socket: f('int socket(int domain, int type, int protocol)') as Libc['socket'],
    bind: f('int bind(int fd, void *addr, unsigned int len)') as Libc['bind'],
    getsockname: f('int getsockname(int fd, void *addr, void *len)') as Libc['getsockname'],
    setsockopt: f('int setsockopt(int fd, int level, int name, void *value, unsigned int len)') as Libc['setsockopt'],
    sendto: f('long sendto(int fd, void *buf, unsigned long len, int flags, void *addr, unsigned int addrlen)') as Libc['sendto'],
    recvfrom: f('long recvfrom(int fd, void *buf, unsigned long len, int flags, void *addr, void *addrlen)') as Libc['recvfrom'],
    recvmmsg: f('int recvmmsg(int fd, void *vec, unsigned int vlen, int flags, void *timeout)') as Libc['recvmmsg'],
    sendmmsg: f('int sendmmsg(int fd, void *vec, unsigned int vlen, int flags)') as Libc['sendmmsg'],
    pipe2: f('int pipe2(void *fds, int flags)') as Libc['pipe2'],
    ppoll: f('int ppoll(void *fds, unsigned long n, void *timeout, void *sigmask)') as unknown as Libc['ppoll'],
    pollAsync: (fds, n, timeoutMs, done) => poll.async(fds, n, timeoutMs, done),
    errno: () => koffi.errno(),
  };
  cached = { libc, koffi };
  return cached;
}

/** libc through koffi; throws LibcUnavailable with the reason where it cannot be had. */
export function libc(): Libc {
  return bind().libc;
}

/** Descriptors watched by Node's own event loop (libuv's uv_poll): `onReady` runs on it when one turns readable. */
export interface LoopWatch {
  /** Start watching (again); onReady runs once, then the watch stops until start() is called again. */
  start(): void;
  stop(): void;
  /** Stop for good and let the callback go. */
  close(): void;
}

/** libuv's uv_handle_type UV_POLL, and uv_poll_event UV_READABLE. */
const UV_POLL = 8;
const UV_READABLE = 1;
/** Handles given to uv_close: libuv lets go of one a loop iteration later, so their memory is kept. */
const closedHandles: unknown[] = [];

/**
 * Watch `fds` from the main thread's libuv loop, reached through the symbols the node
 * binary exports for addons: a readable descriptor wakes the event loop itself (one
 * sleeping thread), where a poll on the thread pool wakes a pool thread and then the loop
 * (two). Undefined where the symbols cannot be found (the caller then polls on the pool).
 */
export function watchFromLoop(fds: readonly number[], onReady: () => void): LoopWatch | undefined {
  let k: Koffi;
  let self: KoffiLibrary;
  try {
    k = bind().koffi;
    self = k.load(null);
  } catch {
    return undefined;
  }
  let loop: unknown;
  let handleSize: number;
  let init: KoffiFn;
  let start: KoffiFn;
  let stop: KoffiFn;
  let close: KoffiFn;
  try {
    loop = self.func('void *uv_default_loop()')();
    handleSize = Number(self.func('size_t uv_handle_size(int type)')(UV_POLL));
    init = self.func('int uv_poll_init(void *loop, void *handle, int fd)');
    start = self.func('int uv_poll_start(void *handle, int events, void *cb)');
    stop = self.func('int uv_poll_stop(void *handle)');
    close = self.func('void uv_close(void *handle, void *cb)');
  } catch {
    // (A node built without libuv's symbols exported.)
    return undefined;
  }
  const handles = fds.map(() => k.alloc('uint8_t', handleSize));
  let watching = false;
  const stopAll = () => {
    if (!watching) return;
    watching = false;
    for (const h of handles) stop(h);
  };
  const cb = k.register(() => {
    stopAll();
    onReady();
  }, k.pointer(k.proto('void klips_uv_poll_cb(void *handle, int status, int events)')));
  for (let i = 0; i < fds.length; i++) {
    if (init(loop, handles[i], fds[i]) !== 0) {
      k.unregister(cb);
      return undefined;
    }
  }
  return {
    start: () => {
      if (watching) return;
      watching = true;
      for (const h of handles) start(h, UV_READABLE, cb);
    },
    stop: stopAll,
    close: () => {
      stopAll();
      for (const h of handles) close(h, null);
      closedHandles.push(...handles);
      k.unregister(cb);
    },
  };
}

/** `bytes` of native memory (zeroed), kept for the life of the process by its holder. */
export function nativeArena(bytes: number): NativeArena {
  const { koffi } = bind();
  const ptr = koffi.alloc('uint8_t', bytes);
  const buf = Buffer.from(koffi.view(ptr, bytes));
  buf.fill(0);
  // The pointer object owns the memory: keep it reachable as long as the Buffer is.
  keep.set(buf, ptr);
  return { buf, base: koffi.address(ptr) };
}

const keep = new WeakMap<Buffer, unknown>();

/** The message for an errno number (Node's own table: the same words as strerror). */
export function errnoText(n: number): string {
  return (osErrnoNames.get(n) ?? `errno ${n}`);
}

const osErrnoNames = new Map<number, string>(Object.entries(os.constants.errno).map(([k, v]) => [v as number, k]));
