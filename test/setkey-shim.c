/*
 * Test-only LD_PRELOAD library: gives an unmodified ipsec-tools setkey a PF_KEY socket
 * that is a Unix stream connection to $PFKEY_SHIM_SOCKET (a test's mock server), so the
 * real tool can run on a kernel without PF_KEY. socket(PF_KEY, ...) connects there;
 * recv() on that socket returns one whole message at a time, framed by sadb_msg_len,
 * as a PF_KEY datagram socket would (MSG_PEEK shows the next header). send() needs no
 * change. cli-setkey.test.ts compiles it with cc when it compares klips setkey with the
 * real one. (klips run, from bridge/, is the general form of this for real use.)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SHIM_PF_KEY 15

static int shim_fd = -1;

int socket(int domain, int type, int protocol) {
  static int (*real_socket)(int, int, int);
  if (!real_socket) real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
  if (domain != SHIM_PF_KEY) return real_socket(domain, type, protocol);
  const char *path = getenv("PFKEY_SHIM_SOCKET");
  if (!path) {
    errno = EAFNOSUPPORT;
    return -1;
  }
  int fd = real_socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return -1;
  }
  shim_fd = fd;
  return fd;
}

static ssize_t (*real_recv)(int, void *, size_t, int);

/* Exactly n bytes (fewer only at end of stream or on an error after some arrived). */
static ssize_t recv_all(int fd, uint8_t *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = real_recv(fd, buf + got, n - got, 0);
    if (r < 0) return got ? (ssize_t)got : -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

ssize_t recv(int fd, void *buf, size_t len, int flags) {
  if (!real_recv) real_recv = (ssize_t (*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
  if (fd != shim_fd) return real_recv(fd, buf, len, flags);
  uint8_t h[16];
  if (flags & MSG_PEEK) {
    ssize_t r = real_recv(fd, h, sizeof h, MSG_PEEK | MSG_WAITALL);
    if (r <= 0) return r;
    size_t n = len < (size_t)r ? len : (size_t)r;
    memcpy(buf, h, n);
    return (ssize_t)n;
  }
  ssize_t r = recv_all(fd, h, sizeof h);
  if (r < (ssize_t)sizeof h) return r < 0 ? -1 : 0;
  size_t total = (size_t)(h[4] | (h[5] << 8)) * 8;
  if (total < sizeof h) total = sizeof h;
  uint8_t *m = malloc(total);
  if (!m) {
    errno = ENOMEM;
    return -1;
  }
  memcpy(m, h, sizeof h);
  if (total > sizeof h && recv_all(fd, m + sizeof h, total - sizeof h) < (ssize_t)(total - sizeof h)) {
    free(m);
    return 0;
  }
  size_t n = len < total ? len : total;
  memcpy(buf, m, n);
  free(m);
  return (ssize_t)n;
}
