/*
 * klips-preload: the LD_PRELOAD library behind `klips run`. It owns what an unmodified
 * program sees of a KLIPS kernel: its PF_KEY sockets, which become klipsd connections
 * with datagram semantics, and KLIPS's /proc files, served from klipsd's views.
 *
 * A PF_KEY socket. socket(PF_KEY, SOCK_RAW, PF_KEY_V2) connects to klipsd
 * ($KLIPS_SOCKET, with ".kame" appended when KLIPS_DIALECT=kame) and turns on klipsd's
 * status mode (src/wire/status.ts). The program gets one end of a
 * socketpair(AF_UNIX, SOCK_SEQPACKET), so reading, MSG_PEEK, MSG_TRUNC, poll/select,
 * O_NONBLOCK/EAGAIN, dup and close are the kernel's own. Behind it:
 *
 *   write/send/sendto/sendmsg/writev on it
 *       -> the request goes straight to klipsd (a ticket taken under send_lock)
 *       -> wait for the ticket's status: write() returns once the replies are readable,
 *          and fails with the status's errno (KLIPS's pfkey_sendmsg)
 *   a relay thread per process
 *       klipsd's stream -> framed by sadb_msg_len -> status: wakes the writer
 *                                                 -> anything else: one datagram to
 *                                                    the program's end
 *       the program's end closed everywhere -> the relay ends, the klipsd connection closes
 *
 * What the tickets and statuses need is in a MAP_SHARED page with process-shared,
 * robust mutexes, so after fork() parent and child send and receive on the same
 * socket: each process runs its own relay (pthread_atfork), the relays take turns
 * reading whole messages (recv_lock), and a status wakes whichever process's writer
 * owns the ticket. Messages are peeked, handed on, then consumed, and each status
 * carries its request's number (src/wire/status.ts), so a relay that dies part-way
 * loses nothing and no status is counted twice; a process that exits first lets its
 * relay finish the messages it holds (at worst one is read twice).
 *
 * The program's datagram queue is bounded as a socket's is (the relay end's send
 * buffer, which SO_RCVBUF on the PF_KEY socket sets). When it is full and a writer is
 * waiting for its status, the relay drops what does not fit, as a full socket does,
 * and the next message the program reads is klipsd's header-only ENOBUFS notice
 * (type 0, errno ENOBUFS, seq = messages dropped so far); with no writer waiting it
 * waits, so klipsd paces (DUMP) as it does for any slow reader.
 *
 * KLIPS's /proc files (KLIPS dialect only). open/openat/fopen (and the 64 and fortify
 * variants) of /proc/net/ipsec_eroute, ipsec_spi, ipsec_spigrp, ipsec_tncfg,
 * ipsec_klipsdebug, ipsec_version, pf_key, pf_key_registered, pf_key_supported and
 * /proc/net/ipsec/{eroute/all, spi/all, spigrp/all, tncfg, klipsdebug, version, saref,
 * natt, xforms, stats/trap_count, stats/trap_sendcount} get a memfd holding the view's
 * text from klipsd's view channel (<socket>.info); stat/lstat/access and friends
 * answer for those files and their directories as long as klipsd answers, and
 * /proc/net/pfkey (Linux af_key's, absent on a KLIPS kernel) is hidden, so pluto's
 * protostack=auto picks KLIPS.
 *
 * libc only (the design's bridge/ layer). docs/semantics.md ("The bridge") lists where
 * this differs from a kernel socket.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <netinet/in.h>

#ifndef PF_KEY
#define PF_KEY 15
#endif
#define PF_KEY_V2 2
#define SADB_MSG_HDR_LEN 16
#define MAX_MESSAGE_BYTES (64 * 1024)   /* klipsd's framing limit (src/wire/framing.ts) */
#define KLIPSD_X_STATUS 254             /* src/wire/status.ts */
#define KLIPSD_X_REASON 255             /* src/wire/reason.ts */
#define FD_TRACK 65536                  /* descriptors below this are tracked */
#define STATUS_RING 4096                /* statuses kept for writers not yet woken */
#define PRIVATE_FD_BASE 512             /* where the library's own descriptors go */
#define CONNECT_TIMEOUT_MS 10000
#define VIEW_TIMEOUT_MS 5000

/* ---------- the real functions ---------- */

static int (*real_socket)(int, int, int);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fcntl)(int, int, ...);
static int (*real_fcntl64)(int, int, ...);
static int (*real_close_range)(unsigned, unsigned, int);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
static int (*real_shutdown)(int, int);
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real___open_2)(const char *, int);
static int (*real___open64_2)(const char *, int);
static int (*real___openat_2)(int, const char *, int);
static int (*real___openat64_2)(int, const char *, int);
static FILE *(*real_fopen)(const char *, const char *);
static FILE *(*real_fopen64)(const char *, const char *);
static int (*real_stat)(const char *, struct stat *);
static int (*real_lstat)(const char *, struct stat *);
static int (*real_stat64)(const char *, struct stat64 *);
static int (*real_lstat64)(const char *, struct stat64 *);
static int (*real_fstatat)(int, const char *, struct stat *, int);
static int (*real_fstatat64)(int, const char *, struct stat64 *, int);
static int (*real___xstat)(int, const char *, struct stat *);
static int (*real___lxstat)(int, const char *, struct stat *);
static int (*real___xstat64)(int, const char *, struct stat64 *);
static int (*real___lxstat64)(int, const char *, struct stat64 *);
static int (*real___fxstatat)(int, int, const char *, struct stat *, int);
static int (*real___fxstatat64)(int, int, const char *, struct stat64 *, int);
static int (*real_statx)(int, const char *, int, unsigned, struct statx *);
static int (*real_access)(const char *, int);
static int (*real_faccessat)(int, const char *, int, int);
static int (*real_euidaccess)(const char *, int);
static void (*real__exit)(int) __attribute__((noreturn));
static void (*real__Exit)(int) __attribute__((noreturn));

static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static void resolve_all(void)
{
#define R(name) real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name)
	R(socket); R(close); R(write); R(writev); R(send); R(sendto); R(sendmsg);
	R(dup); R(dup2); R(dup3); R(fcntl); R(fcntl64); R(close_range);
	R(getsockopt); R(setsockopt); R(shutdown); R(bind);
	R(open); R(open64); R(openat); R(openat64); R(__open_2); R(__open64_2); R(__openat_2); R(__openat64_2);
	R(fopen); R(fopen64);
	R(stat); R(lstat); R(stat64); R(lstat64); R(fstatat); R(fstatat64);
	R(__xstat); R(__lxstat); R(__xstat64); R(__lxstat64); R(__fxstatat); R(__fxstatat64); R(statx);
	R(access); R(faccessat); R(euidaccess); R(_exit); R(_Exit);
#undef R
	if (real_fcntl64 == NULL)
		real_fcntl64 = real_fcntl;
}

static inline void resolve(void)
{
	if (__builtin_expect(real_close == NULL, 0))
		pthread_once(&resolved, resolve_all);
}

/* A missing libc function (an older glibc) is a missing file or an unsupported call. */
#define NEED(fn, fail)                       \
	do {                                     \
		resolve();                           \
		if (real_##fn == NULL) {             \
			errno = ENOSYS;                  \
			return fail;                     \
		}                                    \
	} while (0)

static void diag(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n = snprintf(line, sizeof line, "klips-preload: ");
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	resolve();
	(void)!real_write(2, line, (size_t)n);
}

/* ---------- where klipsd is ---------- */

static int kame_dialect(void)
{
	const char *d = getenv("KLIPS_DIALECT");
	return d != NULL && strcmp(d, "kame") == 0;
}

/* klipsd's PF_KEY socket as src/daemon/paths.ts resolves it (klips run always sets $KLIPS_SOCKET). */
static void klipsd_path(char *out, size_t size)
{
	const char *env = getenv("KLIPS_SOCKET");
	if (env != NULL && *env != '\0') {
		snprintf(out, size, "%s", env);
	} else if (getuid() == 0) {
		snprintf(out, size, "/run/klips/pfkey.sock");
	} else {
		const char *xdg = getenv("XDG_RUNTIME_DIR");
		if (xdg != NULL && xdg[0] == '/') {
			snprintf(out, size, "%s/klips/pfkey.sock", xdg);
		} else {
			const char *tmp = getenv("TMPDIR");
			if (tmp == NULL || *tmp == '\0') tmp = getenv("TMP");
			if (tmp == NULL || *tmp == '\0') tmp = getenv("TEMP");
			if (tmp == NULL || *tmp == '\0') tmp = "/tmp";
			size_t n = strlen(tmp);
			while (n > 1 && tmp[n - 1] == '/') n--;
			snprintf(out, size, "%.*s/klips-%u/pfkey.sock", (int)n, tmp, (unsigned)getuid());
		}
	}
}

/* Connect a stream socket to `path`; the descriptor, or -1 with errno. */
static int connect_unix(const char *path)
{
	struct sockaddr_un sun;
	if (strlen(path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	resolve();
	int s = real_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	if (connect(s, (struct sockaddr *)&sun, sizeof sun) < 0) {
		int e = errno;
		real_close(s);
		errno = e;
		return -1;
	}
	return s;
}

/* ---------- small I/O helpers ---------- */

static int write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = real_send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* write() until done, for descriptors that are not sockets (a memfd). */
static int write_all_plain(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = real_write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read exactly `len` bytes within `ms` milliseconds; 0, or -1 with errno (ECONNRESET at end of stream). */
static int read_full(int fd, void *buf, size_t len, int ms)
{
	unsigned char *p = buf;
	while (len > 0) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int r = poll(&pfd, 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = ETIMEDOUT;
			return -1;
		}
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = ECONNRESET;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static unsigned msg_bytes(const unsigned char *h)
{
	return (unsigned)(h[4] | (h[5] << 8)) * 8u;
}

static void header_only(unsigned char *out, unsigned type, unsigned err, unsigned satype, uint32_t seq, uint32_t pid)
{
	memset(out, 0, SADB_MSG_HDR_LEN);
	out[0] = PF_KEY_V2;
	out[1] = (unsigned char)type;
	out[2] = (unsigned char)err;
	out[3] = (unsigned char)satype;
	out[4] = 2;
	memcpy(out + 8, &seq, 4);
	memcpy(out + 12, &pid, 4);
}

/* ---------- the library's own descriptors ---------- */

static unsigned char private_fd[FD_TRACK];

/* Move `fd` above PRIVATE_FD_BASE (close-on-exec) and mark it ours; programs that close
 * every descriptor (closefrom, close loops) or dup2 onto low numbers cannot take it. */
static int hide(int fd)
{
	struct rlimit rl;
	int base = PRIVATE_FD_BASE;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (rlim_t)base + 64 > rl.rlim_cur)
		base = rl.rlim_cur > 128 ? (int)rl.rlim_cur - 64 : 3;
	int moved = real_fcntl(fd, F_DUPFD_CLOEXEC, base);
	if (moved < 0)
		moved = real_fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (moved >= 0) {
		real_close(fd);
		fd = moved;
	}
	if (fd < FD_TRACK)
		private_fd[fd] = 1;
	return fd;
}

static void close_private(int fd)
{
	if (fd < 0)
		return;
	if (fd < FD_TRACK)
		private_fd[fd] = 0;
	real_close(fd);
}

/* ---------- a PF_KEY socket ---------- */

/* Seen by every process that shares the socket (MAP_SHARED, inherited across fork). */
struct shared {
	pthread_mutex_t send_lock;  /* a ticket and its request's bytes on the stream, together */
	pthread_mutex_t recv_lock;  /* one relay reads from the stream at a time */
	pthread_mutex_t lock;       /* done, errnos */
	pthread_cond_t arrived;     /* a status came, or klipsd went away */
	uint64_t issued;            /* tickets taken (requests written); under send_lock */
	uint64_t done;              /* statuses read; under lock */
	int waiting;                /* writers waiting for their status (atomic) */
	int gone;                   /* klipsd closed the connection */
	int write_shut;             /* shutdown(SHUT_WR) on the PF_KEY socket */
	int procs;                  /* processes relaying this socket (a hint: see quiesce) */
	uint32_t dropped;           /* messages dropped because the program's queue was full */
	int notice;                 /* an ENOBUFS notice is owed */
	unsigned char errnos[STATUS_RING];
};

/* This process's handle on a socket. */
struct pfk {
	struct pfk *next;
	struct shared *sh;
	int conn;       /* the klipsd stream */
	int relay;      /* our end of the socketpair */
	int stop;       /* eventfd: this process's relay should end */
	int users;      /* the program's descriptors for it in this process */
	int running;    /* this process's relay thread is alive */
	int exiting;    /* this process is exiting (quiesce): its relay takes no more messages */
	pid_t owner;    /* the process whose relay this is (a vfork child shares the memory, not the relay) */
};

static struct pfk *by_fd[FD_TRACK];
static struct pfk *all_sockets;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static inline struct pfk *lookup(int fd)
{
	if (fd < 0 || fd >= FD_TRACK)
		return NULL;
	return __atomic_load_n(&by_fd[fd], __ATOMIC_ACQUIRE);
}

static void lock_robust(pthread_mutex_t *m)
{
	if (pthread_mutex_lock(m) == EOWNERDEAD)
		pthread_mutex_consistent(m);
}

static void free_socket(struct pfk *p)
{
	struct pfk **pp;
	for (pp = &all_sockets; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	close_private(p->conn);
	close_private(p->relay);
	close_private(p->stop);
	munmap(p->sh, sizeof *p->sh);
	free(p);
}

/* Under table_lock: a socket is freed once no descriptor and no relay of this process uses it. */
static void release_if_unused(struct pfk *p)
{
	if (p->users == 0 && !p->running)
		free_socket(p);
}

static void track(int fd, struct pfk *p)
{
	if (fd < 0 || fd >= FD_TRACK)
		return;
	p->users++;
	__atomic_store_n(&by_fd[fd], p, __ATOMIC_RELEASE);
}

/* Under table_lock: `fd` no longer names the socket; the last one in this process stops its relay. */
static void untrack(int fd)
{
	struct pfk *p = lookup(fd);
	if (p == NULL)
		return;
	__atomic_store_n(&by_fd[fd], NULL, __ATOMIC_RELEASE);
	if (--p->users > 0)
		return;
	if (p->running) {
		uint64_t one = 1;
		(void)!real_write(p->stop, &one, sizeof one);
	} else {
		release_if_unused(p);
	}
}

/*
 * A status: the `number`-th request's (modulo 2^16). One already counted (a relay that
 * died after counting it, before consuming it) is recognised and left alone; the errno
 * is stored before `done` moves, so a relay killed between the two is simply redone.
 */
static void status_arrived(struct shared *sh, unsigned err, unsigned number)
{
	lock_robust(&sh->lock);
	unsigned ahead = (number - (unsigned)sh->done) & 0xffffu;
	if (ahead != 0 && ahead < 0x8000u) {
		for (unsigned k = 1; k < ahead; k++) /* never: a status the stream did not carry */
			sh->errnos[(sh->done + k) % STATUS_RING] = EIO;
		sh->errnos[(sh->done + ahead) % STATUS_RING] = (unsigned char)err;
		sh->done += ahead;
		pthread_cond_broadcast(&sh->arrived);
	}
	pthread_mutex_unlock(&sh->lock);
}

static void klipsd_gone(struct pfk *p)
{
	struct shared *sh = p->sh;
	lock_robust(&sh->lock);
	sh->gone = 1;
	pthread_cond_broadcast(&sh->arrived);
	pthread_mutex_unlock(&sh->lock);
	/* The program reads what is queued, then end of file. */
	real_shutdown(p->relay, SHUT_WR);
}

/*
 * One datagram to the program, under recv_lock. Returns 0 when delivered or dropped,
 * -1 when this process's relay was told to stop first (the message stays in the stream).
 */
/* Under recv_lock: the ENOBUFS notice owed, if it fits now. */
static void send_notice(struct pfk *p)
{
	struct shared *sh = p->sh;
	if (!sh->notice)
		return;
	unsigned char n[SADB_MSG_HDR_LEN];
	header_only(n, 0, ENOBUFS, 0, sh->dropped, 0);
	if (real_send(p->relay, n, sizeof n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof n)
		sh->notice = 0;
}

static int deliver(struct pfk *p, const unsigned char *msg, size_t len)
{
	struct shared *sh = p->sh;
	send_notice(p);
	for (;;) {
		if (real_send(p->relay, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
			return 0; /* the program closed every end: nobody to deliver to */
		if (__atomic_load_n(&sh->waiting, __ATOMIC_ACQUIRE) > 0) {
			/* A writer waits for a status behind this: drop, as a full socket does. */
			sh->dropped++;
			sh->notice = 1;
			return 0;
		}
		struct pollfd w[2] = { { p->relay, POLLOUT, 0 }, { p->stop, POLLIN, 0 } };
		if (poll(w, 2, 20) > 0 && (w[1].revents & POLLIN))
			return -1;
	}
}

/* Peek `len` bytes at the stream's head (klipsd writes whole messages; a split one completes soon). */
static int peek_full(int fd, unsigned char *buf, size_t len)
{
	for (int tries = 0;; tries++) {
		ssize_t n = recv(fd, buf, len, MSG_PEEK | MSG_DONTWAIT);
		if (n == (ssize_t)len)
			return 0;
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return -1;
		struct timespec ts = { 0, tries < 100 ? 100000 : 1000000 };
		nanosleep(&ts, NULL);
	}
}

/* recv_lock; after a relay that died holding it, the stream's head is as it left it (nothing consumed that was not handed on). */
static void lock_recv(struct pfk *p)
{
	lock_robust(&p->sh->recv_lock);
}

/*
 * The whole messages at the stream's head, each handed on (a status to its writer, any
 * other to the program), then consumed together: one peek and one read per batch.
 * 0; -1 when klipsd is gone (or the stream lost its framing); 1 when this relay was
 * told to stop.
 */
static int from_klipsd(struct pfk *p, unsigned char *buf)
{
	struct shared *sh = p->sh;
	lock_recv(p);
	int result = 0;
	if (__atomic_load_n(&p->exiting, __ATOMIC_ACQUIRE)) {
		pthread_mutex_unlock(&sh->recv_lock);
		return 1;
	}
	size_t have = 0, off = 0;
	ssize_t n = recv(p->conn, buf, MAX_MESSAGE_BYTES, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		result = -1;
		goto out;
	}
	if (n < 0)
		goto out;
	have = (size_t)n;
	/* A message klipsd's write split: its end follows at once. */
	if (have < SADB_MSG_HDR_LEN) {
		if (peek_full(p->conn, buf, SADB_MSG_HDR_LEN) < 0) {
			result = -1;
			goto out;
		}
		have = SADB_MSG_HDR_LEN;
	}
	unsigned first = msg_bytes(buf);
	if (first >= SADB_MSG_HDR_LEN && first <= MAX_MESSAGE_BYTES && first > have) {
		if (peek_full(p->conn, buf, first) < 0) {
			result = -1;
			goto out;
		}
		have = first;
	}
	while (have - off >= SADB_MSG_HDR_LEN) {
		unsigned len = msg_bytes(buf + off);
		if (len < SADB_MSG_HDR_LEN || len > MAX_MESSAGE_BYTES) {
			result = -1; /* a stream that lost its framing */
			break;
		}
		if (have - off < len)
			break; /* the rest comes with the next batch */
		if (buf[off + 1] == KLIPSD_X_STATUS && len == SADB_MSG_HDR_LEN) {
			status_arrived(sh, buf[off + 2], (unsigned)(buf[off + 6] | (buf[off + 7] << 8)));
		} else if (deliver(p, buf + off, len) < 0) {
			result = 1;
			break;
		}
		off += len;
	}
	if (off > 0 && recv(p->conn, buf, off, MSG_WAITALL) != (ssize_t)off)
		result = -1;
out:
	pthread_mutex_unlock(&sh->recv_lock);
	return result;
}

/* Take a ticket and put the request on the stream; the ticket, or 0 with errno. */
static uint64_t submit(struct pfk *p, const void *msg, size_t len)
{
	struct shared *sh = p->sh;
	lock_robust(&sh->send_lock);
	uint64_t ticket = ++sh->issued;
	int bad = write_all(p->conn, msg, len);
	pthread_mutex_unlock(&sh->send_lock);
	if (bad) {
		errno = ECONNRESET;
		return 0;
	}
	return ticket;
}

/*
 * KLIPS's pfkey_sendmsg checks, in its order, that a stream cannot carry for us: a
 * datagram that is not exactly one message, and klipsd's private types (which would
 * change the connection's modes). 0, or the errno.
 */
static int local_refusal(const unsigned char *m, size_t len)
{
	if (len < SADB_MSG_HDR_LEN)
		return EMSGSIZE;
	if (m[0] != PF_KEY_V2)
		return EINVAL;
	if (len != msg_bytes(m) || len > MAX_MESSAGE_BYTES)
		return EMSGSIZE;
	if (m[1] == KLIPSD_X_STATUS || m[1] == KLIPSD_X_REASON)
		return EINVAL;
	return 0;
}

/* A request the program wrote to its end without us (a descriptor inherited across exec): forward it, nobody waits. */
static int from_program(struct pfk *p, unsigned char *msg, int hangup)
{
	ssize_t n = recv(p->relay, msg, MAX_MESSAGE_BYTES, MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) && !hangup ? 0 : -1;
	if (n == 0 && hangup)
		return -1;
	int err = n > MAX_MESSAGE_BYTES ? EMSGSIZE : local_refusal(msg, (size_t)n);
	if (err) {
		unsigned char reply[SADB_MSG_HDR_LEN];
		uint32_t seq = 0, pid = 0;
		if (n >= SADB_MSG_HDR_LEN) {
			memcpy(&seq, msg + 8, 4);
			memcpy(&pid, msg + 12, 4);
		}
		header_only(reply, n >= 2 ? msg[1] : 0, (unsigned)err, n >= 4 ? msg[3] : 0, seq, pid);
		lock_recv(p);
		deliver(p, reply, sizeof reply);
		pthread_mutex_unlock(&p->sh->recv_lock);
		return 0;
	}
	if (submit(p, msg, (size_t)n) == 0)
		return -1;
	return 0;
}

static void *relay_main(void *arg)
{
	struct pfk *p = arg;
	unsigned char *msg = malloc(MAX_MESSAGE_BYTES);
	while (msg != NULL) {
		/* With a notice owed, wake when the program's queue has room for it (klipsd sends its own as soon as it fits). */
		short owed = __atomic_load_n(&p->sh->notice, __ATOMIC_ACQUIRE) ? POLLOUT : 0;
		struct pollfd fds[3] = { { p->stop, POLLIN, 0 }, { p->relay, (short)(POLLIN | owed), 0 }, { p->conn, POLLIN, 0 } };
		if (poll(fds, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[0].revents)
			break;
		if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && from_program(p, msg, (fds[1].revents & (POLLHUP | POLLERR)) != 0) < 0)
			break; /* the program closed every end of it, in every process */
		if (fds[1].revents & POLLOUT) {
			lock_recv(p);
			send_notice(p);
			pthread_mutex_unlock(&p->sh->recv_lock);
		}
		if (fds[2].revents) {
			int r = from_klipsd(p, msg);
			if (r < 0) {
				klipsd_gone(p);
				break;
			}
			if (r > 0)
				break;
		}
	}
	free(msg);
	pthread_mutex_lock(&table_lock);
	p->running = 0;
	release_if_unused(p);
	pthread_mutex_unlock(&table_lock);
	return NULL;
}

/* Under table_lock. The relay runs with every signal blocked: the program's handlers stay in its own threads. */
static int start_relay(struct pfk *p)
{
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = pthread_create(&t, &attr, relay_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err != 0)
		return err;
	pthread_setname_np(t, "klips-relay");
	p->running = 1;
	p->owner = getpid();
	return 0;
}

static struct shared *new_shared(void)
{
	struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return NULL;
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&sh->send_lock, &ma);
	pthread_mutex_init(&sh->recv_lock, &ma);
	pthread_mutex_init(&sh->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_condattr_init(&ca);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	pthread_cond_init(&sh->arrived, &ca);
	pthread_condattr_destroy(&ca);
	return sh;
}

/*
 * Turn status mode on and wait for its echo. Messages klipsd queued for every socket
 * before it (broadcasts) are kept in `early` for the program. 0, or -1 with errno
 * (ENFILE: klipsd is at maxConnections).
 */
static int handshake(int conn, unsigned char **early, size_t *early_len)
{
	unsigned char on[SADB_MSG_HDR_LEN], h[SADB_MSG_HDR_LEN];
	header_only(on, KLIPSD_X_STATUS, 0, 1, 0, (uint32_t)getpid());
	if (write_all(conn, on, sizeof on) < 0)
		return -1;
	for (;;) {
		if (read_full(conn, h, SADB_MSG_HDR_LEN, CONNECT_TIMEOUT_MS) < 0)
			return -1;
		unsigned len = msg_bytes(h);
		if (len < SADB_MSG_HDR_LEN || len > MAX_MESSAGE_BYTES) {
			errno = EPROTO;
			return -1;
		}
		if (len == SADB_MSG_HDR_LEN && memcmp(h, on, sizeof on) == 0)
			return 0;
		if (h[1] == 0 && h[2] == ENFILE && len == SADB_MSG_HDR_LEN) {
			errno = ENFILE;
			return -1;
		}
		unsigned char *grown = realloc(*early, *early_len + len);
		if (grown == NULL) {
			errno = ENOMEM;
			return -1;
		}
		*early = grown;
		memcpy(grown + *early_len, h, SADB_MSG_HDR_LEN);
		if (len > SADB_MSG_HDR_LEN && read_full(conn, grown + *early_len + SADB_MSG_HDR_LEN, len - SADB_MSG_HDR_LEN, CONNECT_TIMEOUT_MS) < 0)
			return -1;
		*early_len += len;
	}
}

/* socket(PF_KEY, SOCK_RAW, PF_KEY_V2): a klipsd connection behind one end of a socketpair. */
static int pfkey_open(int flags)
{
	char path[PATH_MAX];
	klipsd_path(path, sizeof path - 8);
	if (kame_dialect())
		strcat(path, ".kame");
	int conn = connect_unix(path);
	if (conn < 0) {
		int e = errno;
		diag("socket(PF_KEY): cannot connect to klipsd at %s: %s", path, strerror(e));
		errno = e;
		return -1;
	}
	unsigned char *early = NULL;
	size_t early_len = 0;
	if (handshake(conn, &early, &early_len) < 0) {
		int e = errno;
		diag("socket(PF_KEY): klipsd at %s %s: %s", path, e == ENFILE ? "is at its connection limit" : "did not answer", strerror(e));
		free(early);
		real_close(conn);
		errno = e;
		return -1;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		int e = errno;
		free(early);
		real_close(conn);
		errno = e;
		return -1;
	}
	if (!(flags & SOCK_CLOEXEC))
		real_fcntl(sv[0], F_SETFD, 0);
	if (flags & SOCK_NONBLOCK)
		real_fcntl(sv[0], F_SETFL, real_fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	struct pfk *p = calloc(1, sizeof *p);
	struct shared *sh = p != NULL ? new_shared() : NULL;
	int stop = eventfd(0, EFD_CLOEXEC);
	if (p == NULL || sh == NULL || stop < 0) {
		free(p);
		if (sh != NULL)
			munmap(sh, sizeof *sh);
		if (stop >= 0)
			real_close(stop);
		free(early);
		real_close(conn);
		real_close(sv[0]);
		real_close(sv[1]);
		errno = ENOMEM;
		return -1;
	}
	p->sh = sh;
	sh->procs = 1;
	p->conn = hide(conn);
	p->relay = hide(sv[1]);
	p->stop = hide(stop);
	for (size_t off = 0; off < early_len; off += msg_bytes(early + off))
		real_send(p->relay, early + off, msg_bytes(early + off), MSG_DONTWAIT | MSG_NOSIGNAL);
	free(early);
	pthread_mutex_lock(&table_lock);
	p->next = all_sockets;
	all_sockets = p;
	track(sv[0], p);
	int err = start_relay(p);
	if (err != 0) {
		untrack(sv[0]);
		pthread_mutex_unlock(&table_lock);
		real_close(sv[0]);
		errno = err;
		return -1;
	}
	pthread_mutex_unlock(&table_lock);
	return sv[0];
}

/* write() and its kin on a PF_KEY socket: returns once the replies are readable, or fails with the status's errno. */
static ssize_t pfkey_send(struct pfk *p, const unsigned char *m, size_t len)
{
	struct shared *sh = p->sh;
	if (sh->write_shut) {
		raise(SIGPIPE); /* as KLIPS's send_sig(SIGPIPE) */
		errno = EPIPE;
		return -1;
	}
	int err = local_refusal(m, len);
	if (err) {
		errno = err;
		return -1;
	}
	if (__atomic_load_n(&sh->gone, __ATOMIC_ACQUIRE)) {
		errno = ECONNRESET;
		return -1;
	}
	/* Counted as waiting before the request goes: the relay must never block on a full queue while its status is due. */
	__atomic_add_fetch(&sh->waiting, 1, __ATOMIC_ACQ_REL);
	uint64_t ticket = submit(p, m, len);
	if (ticket == 0) {
		__atomic_sub_fetch(&sh->waiting, 1, __ATOMIC_ACQ_REL);
		return -1;
	}
	lock_robust(&sh->lock);
	while (sh->done < ticket && !sh->gone) {
		if (pthread_cond_wait(&sh->arrived, &sh->lock) == EOWNERDEAD)
			pthread_mutex_consistent(&sh->lock);
	}
	__atomic_sub_fetch(&sh->waiting, 1, __ATOMIC_ACQ_REL);
	err = sh->done >= ticket ? sh->errnos[ticket % STATUS_RING] : ECONNRESET;
	pthread_mutex_unlock(&sh->lock);
	if (err) {
		errno = err;
		return -1;
	}
	return (ssize_t)len;
}

/* Gather an iovec into one buffer for pfkey_send. */
static ssize_t pfkey_sendv(struct pfk *p, const struct iovec *iov, size_t n)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		if (iov[i].iov_len > MAX_MESSAGE_BYTES || (total += iov[i].iov_len) > MAX_MESSAGE_BYTES) {
			errno = EMSGSIZE;
			return -1;
		}
	}
	unsigned char *buf = malloc(total ? total : 1);
	if (buf == NULL) {
		errno = ENOBUFS;
		return -1;
	}
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(buf + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	ssize_t r = pfkey_send(p, buf, total);
	int e = errno;
	free(buf);
	errno = e;
	return r;
}

/* ---------- fork: the child gets its own relay ---------- */

static void before_fork(void)
{
	pthread_mutex_lock(&table_lock);
}

static void after_fork_parent(void)
{
	pthread_mutex_unlock(&table_lock);
}

static void after_fork_child(void)
{
	struct pfk *p = all_sockets, *next;
	for (; p != NULL; p = next) {
		next = p->next;
		p->running = 0; /* the parent's relay thread does not exist here */
		if (p->users == 0) {
			free_socket(p);
			continue;
		}
		/* The stop eventfd is the parent's too: the child gets its own. */
		close_private(p->stop);
		int stop = eventfd(0, EFD_CLOEXEC);
		if (stop < 0) {
			diag("fork: no eventfd for the child's PF_KEY relay: %s", strerror(errno));
			continue;
		}
		p->stop = hide(stop);
		int err = start_relay(p);
		if (err != 0)
			diag("fork: cannot start the child's PF_KEY relay: %s", strerror(err));
		else
			__atomic_add_fetch(&p->sh->procs, 1, __ATOMIC_ACQ_REL);
	}
	pthread_mutex_unlock(&table_lock);
}

/*
 * A process that exits while sharing a socket with another lets its relays finish the
 * messages they hold (for at most 200 ms), so the other's relay does not hand them on
 * a second time. The last process sharing a socket has nobody to hand to and skips it
 * (its relay keeps serving writes made on the way out).
 */
static void quiesce(void)
{
	static pid_t done;
	pid_t self = getpid();
	if (__atomic_exchange_n(&done, self, __ATOMIC_ACQ_REL) == self)
		return;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 200 * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	for (struct pfk *p = all_sockets; p != NULL; p = p->next) {
		if (!p->running || p->owner != self)
			continue;
		if (__atomic_sub_fetch(&p->sh->procs, 1, __ATOMIC_ACQ_REL) <= 0)
			continue;
		__atomic_store_n(&p->exiting, 1, __ATOMIC_RELEASE);
		uint64_t one = 1;
		(void)!real_write(p->stop, &one, sizeof one);
		int r = pthread_mutex_timedlock(&p->sh->recv_lock, &until);
		if (r == EOWNERDEAD)
			pthread_mutex_consistent(&p->sh->recv_lock);
		if (r == 0 || r == EOWNERDEAD)
			pthread_mutex_unlock(&p->sh->recv_lock);
	}
}

__attribute__((destructor)) static void klips_preload_fini(void)
{
	quiesce();
}

void _exit(int status)
{
	resolve();
	quiesce();
	real__exit(status);
}

void _Exit(int status)
{
	resolve();
	quiesce();
	real__Exit(status);
}

__attribute__((constructor)) static void klips_preload_init(void)
{
	resolve();
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* ---------- the intercepted socket calls ---------- */

int socket(int domain, int type, int protocol)
{
	resolve();
	if (domain != PF_KEY)
		return real_socket(domain, type, protocol);
	/* pfkey_create's checks, in KLIPS's order (the capability checks are klipsd's socket modes). */
	if ((type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) != SOCK_RAW) {
		errno = ESOCKTNOSUPPORT;
		return -1;
	}
	if (protocol != PF_KEY_V2) {
		errno = EPROTONOSUPPORT;
		return -1;
	}
	return pfkey_open(type & (SOCK_NONBLOCK | SOCK_CLOEXEC));
}

ssize_t write(int fd, const void *buf, size_t len)
{
	struct pfk *p = lookup(fd);
	resolve();
	return p ? pfkey_send(p, buf, len) : real_write(fd, buf, len);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct pfk *p = lookup(fd);
	resolve();
	return p ? pfkey_send(p, buf, len) : real_send(fd, buf, len, flags);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
{
	struct pfk *p = lookup(fd);
	resolve();
	return p ? pfkey_send(p, buf, len) : real_sendto(fd, buf, len, flags, to, tolen);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct pfk *p = lookup(fd);
	resolve();
	if (p == NULL)
		return real_sendmsg(fd, msg, flags);
	if (msg->msg_control != NULL && msg->msg_controllen != 0) {
		errno = EINVAL; /* KLIPS refused ancillary data */
		return -1;
	}
	return pfkey_sendv(p, msg->msg_iov, msg->msg_iovlen);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	struct pfk *p = lookup(fd);
	resolve();
	if (p == NULL)
		return real_writev(fd, iov, n);
	if (n < 0) {
		errno = EINVAL;
		return -1;
	}
	return pfkey_sendv(p, iov, (size_t)n);
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct pfk *p = lookup(fd);
	resolve();
	if (p != NULL && level == SOL_SOCKET && (name == SO_TYPE || name == SO_DOMAIN || name == SO_PROTOCOL)) {
		/* What af_key and KLIPS answer; SO_RCVBUF and the rest are the socket's own. */
		int v = name == SO_TYPE ? SOCK_RAW : name == SO_DOMAIN ? PF_KEY : PF_KEY_V2;
		if (val == NULL || len == NULL || *len < sizeof v) {
			errno = EINVAL;
			return -1;
		}
		memcpy(val, &v, sizeof v);
		*len = sizeof v;
		return 0;
	}
	return real_getsockopt(fd, level, name, val, len);
}

/*
 * Socket bypass policies. An IKE daemon asks the kernel to let its own IKE sockets'
 * packets pass whatever IPsec policy covers them: setsockopt(IP_IPSEC_POLICY on an
 * AF_INET socket, IPV6_IPSEC_POLICY on an AF_INET6 one) with a bare sadb_x_policy of
 * type IPSEC_POLICY_BYPASS (Linux's pfkey_compile_policy is the reference for what is
 * well formed: a whole header, sadb_x_policy_len within the option, direction in or
 * out). Under klips run the program's IPsec is klipsd's, whose data plane sees only what
 * the host routes into ipsec0; a host socket's packets never pass through a per-socket
 * policy there, so the bridge answers 0 itself and does not ask the kernel (a kernel
 * without XFRM refuses; one with XFRM would apply it to a stack the program is not
 * using). Any other request (IPSEC or DISCARD policies, malformed bytes) gets the
 * kernel's own answer.
 */
#define IP_IPSEC_POLICY_OPT 16      /* linux/in.h */
#define IPV6_IPSEC_POLICY_OPT 34    /* linux/in6.h */
#define IPSEC_POLICY_BYPASS 4       /* linux/ipsec.h */
#define IPSEC_DIR_INBOUND 1
#define IPSEC_DIR_OUTBOUND 2
#define SADB_X_POLICY_BYTES 16

static int socket_bypass(int fd, int level, int name, const void *val, socklen_t len)
{
	int family;
	if (level == IPPROTO_IP && name == IP_IPSEC_POLICY_OPT)
		family = AF_INET;
	else if (level == IPPROTO_IPV6 && name == IPV6_IPSEC_POLICY_OPT)
		family = AF_INET6;
	else
		return 0;
	if (val == NULL || len < SADB_X_POLICY_BYTES)
		return 0;
	const unsigned char *b = val;
	uint16_t units, type;
	memcpy(&units, b, 2);       /* sadb_x_policy_len, 64-bit words */
	memcpy(&type, b + 4, 2);    /* sadb_x_policy_type */
	unsigned dir = b[6];        /* sadb_x_policy_dir */
	if ((size_t)units * 8 > (size_t)len || type != IPSEC_POLICY_BYPASS || (dir != IPSEC_DIR_INBOUND && dir != IPSEC_DIR_OUTBOUND))
		return 0;
	int domain = 0;
	socklen_t dl = sizeof domain;
	return real_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) == 0 && domain == family;
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	struct pfk *p = lookup(fd);
	resolve();
	if (p == NULL && socket_bypass(fd, level, name, val, len))
		return 0;
	int r = real_setsockopt(fd, level, name, val, len);
	/* The program's queue is bounded by the relay end's send buffer: SO_RCVBUF sets both. */
	if (r == 0 && p != NULL && level == SOL_SOCKET && (name == SO_RCVBUF || name == SO_RCVBUFFORCE))
		real_setsockopt(p->relay, SOL_SOCKET, name == SO_RCVBUF ? SO_SNDBUF : SO_SNDBUFFORCE, val, len);
	return r;
}

/*
 * The NAT-T port (RFC 3948: IKE and ESP on one UDP port). klipsd's carrier holds it with
 * SO_REUSEPORT and steers datagrams with the non-ESP marker to the group's second socket
 * (src/dataplane/carrier.ts), as KLIPS took ESP off pluto's NAT-T socket. An IKE daemon's
 * UDP bind to that port ($KLIPS_NATT_PORT, default 4500; 0 for none) gets SO_REUSEPORT
 * first, so it joins the group and receives the IKE. A bind to one address (pluto binds
 * the port on each interface's address) is made to the family's wildcard address instead:
 * a socket bound to the address would form a group of its own, which the kernel prefers
 * to klipsd's wildcard one for every datagram to that address, ESP included.
 */
static unsigned natt_port(void)
{
	const char *e = getenv("KLIPS_NATT_PORT");
	if (e == NULL || *e == '\0')
		return 4500;
	char *end;
	unsigned long v = strtoul(e, &end, 10);
	return (*end == '\0' && v < 65536) ? (unsigned)v : 0;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	NEED(bind, -1);
	unsigned port = 0;
	if (addr != NULL && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
		port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
	else if (addr != NULL && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6))
		port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
	unsigned want = natt_port();
	if (port != 0 && port == want) {
		int type = 0;
		socklen_t tl = sizeof type;
		if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM) {
			int one = 1;
			real_setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
			if (addr->sa_family == AF_INET) {
				struct sockaddr_in any = *(const struct sockaddr_in *)addr;
				any.sin_addr.s_addr = htonl(INADDR_ANY);
				return real_bind(fd, (const struct sockaddr *)&any, sizeof any);
			}
			struct sockaddr_in6 any6 = *(const struct sockaddr_in6 *)addr;
			any6.sin6_addr = in6addr_any;
			any6.sin6_scope_id = 0;
			return real_bind(fd, (const struct sockaddr *)&any6, sizeof any6);
		}
	}
	return real_bind(fd, addr, len);
}

int shutdown(int fd, int how)
{
	struct pfk *p = lookup(fd);
	resolve();
	int r = real_shutdown(fd, how);
	if (r == 0 && p != NULL && (how == SHUT_WR || how == SHUT_RDWR))
		p->sh->write_shut = 1;
	return r;
}

/* ---------- descriptors: dup, close ---------- */

int close(int fd)
{
	resolve();
	if (fd >= 0 && fd < FD_TRACK) {
		if (private_fd[fd]) {
			errno = EBADF; /* ours: to the program it is not open */
			return -1;
		}
		if (lookup(fd) != NULL) {
			pthread_mutex_lock(&table_lock);
			untrack(fd);
			pthread_mutex_unlock(&table_lock);
		}
	}
	return real_close(fd);
}

static int dup_result(int from, int to)
{
	struct pfk *p = lookup(from);
	if (to >= 0 && p != NULL) {
		pthread_mutex_lock(&table_lock);
		track(to, p);
		pthread_mutex_unlock(&table_lock);
	}
	return to;
}

int dup(int fd)
{
	resolve();
	return dup_result(fd, real_dup(fd));
}

/* dup2/dup3 onto `to` closes what was there; never one of ours (EBUSY, as Linux's dup2 may say). */
static int dup_onto(int from, int to, int flags, int three)
{
	resolve();
	if (to >= 0 && to < FD_TRACK && private_fd[to]) {
		errno = EBUSY;
		return -1;
	}
	int r = three ? real_dup3(from, to, flags) : real_dup2(from, to);
	if (r < 0 || from == to)
		return r;
	if (lookup(to) != NULL) {
		pthread_mutex_lock(&table_lock);
		untrack(to);
		pthread_mutex_unlock(&table_lock);
	}
	return dup_result(from, r);
}

int dup2(int from, int to)
{
	return dup_onto(from, to, 0, 0);
}

int dup3(int from, int to, int flags)
{
	return dup_onto(from, to, flags, 1);
}

static int fcntl_common(int (*real)(int, int, ...), int fd, int cmd, unsigned long arg)
{
	int r = real(fd, cmd, arg);
	if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && r >= 0)
		dup_result(fd, r);
	return r;
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	resolve();
	return fcntl_common(real_fcntl, fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	resolve();
	return fcntl_common(real_fcntl64, fd, cmd, arg);
}

static int raw_close_range(unsigned first, unsigned last, int flags)
{
	if (real_close_range != NULL)
		return real_close_range(first, last, flags);
	return (int)syscall(SYS_close_range, first, last, flags);
}

/* close_range and closefrom: the PF_KEY descriptors in the range are forgotten, ours skipped. */
int close_range(unsigned first, unsigned last, int flags)
{
	resolve();
	if (first > last) {
		errno = EINVAL;
		return -1;
	}
	unsigned from = first;
	unsigned end = last < FD_TRACK ? last : FD_TRACK - 1;
	for (unsigned fd = first; fd <= end && fd >= first; fd++) {
		if (!(flags & CLOSE_RANGE_CLOEXEC) && lookup((int)fd) != NULL) {
			pthread_mutex_lock(&table_lock);
			untrack((int)fd);
			pthread_mutex_unlock(&table_lock);
		}
		if (private_fd[fd]) {
			if (fd > from && raw_close_range(from, fd - 1, flags) < 0)
				return -1;
			from = fd + 1;
		}
	}
	if (from <= last && from >= first)
		return raw_close_range(from, last, flags);
	return 0;
}

void closefrom(int lowfd)
{
	close_range(lowfd < 0 ? 0 : (unsigned)lowfd, ~0U, 0);
}

/* ---------- KLIPS's /proc files, from klipsd's views ---------- */

struct proc_file {
	const char *path;
	const char *view;
	mode_t mode;
};

/* ipsec_proc.c's files (0400, version 0444) and the compatibility names it links to them; pfkey_v2.c's three. */
static const struct proc_file PROC_FILES[] = {
	{ "/proc/net/ipsec_eroute", "eroute", 0400 },
	{ "/proc/net/ipsec/eroute/all", "eroute", 0400 },
	{ "/proc/net/ipsec_spi", "spi", 0400 },
	{ "/proc/net/ipsec/spi/all", "spi", 0400 },
	{ "/proc/net/ipsec_spigrp", "spigrp", 0400 },
	{ "/proc/net/ipsec/spigrp/all", "spigrp", 0400 },
	{ "/proc/net/ipsec_tncfg", "tncfg", 0400 },
	{ "/proc/net/ipsec/tncfg", "tncfg", 0400 },
	{ "/proc/net/ipsec_klipsdebug", "klipsdebug", 0400 },
	{ "/proc/net/ipsec/klipsdebug", "klipsdebug", 0400 },
	{ "/proc/net/ipsec_version", "version", 0444 },
	{ "/proc/net/ipsec/version", "version", 0444 },
	{ "/proc/net/ipsec/saref", "saref", 0400 },
	{ "/proc/net/ipsec/natt", "natt", 0400 },
	{ "/proc/net/ipsec/xforms", "xforms", 0400 },
	{ "/proc/net/ipsec/stats/trap_count", "trap_count", 0400 },
	{ "/proc/net/ipsec/stats/trap_sendcount", "trap_sendcount", 0400 },
	{ "/proc/net/pf_key", "pf_key", 0444 },
	{ "/proc/net/pf_key_registered", "registered", 0444 },
	{ "/proc/net/pf_key_supported", "supported", 0444 },
};

static const char *const PROC_DIRS[] = {
	"/proc/net/ipsec", "/proc/net/ipsec/eroute", "/proc/net/ipsec/spi", "/proc/net/ipsec/spigrp", "/proc/net/ipsec/stats",
};

/* Linux af_key's file: a KLIPS kernel has none (pluto and openswan's tools take it to mean NETKEY). */
static const char *const PROC_HIDDEN[] = { "/proc/net/pfkey" };

enum proc_kind { NOT_OURS, PROC_FILE, PROC_DIR, PROC_ABSENT };

static enum proc_kind proc_lookup(const char *path, const struct proc_file **file)
{
	if (path == NULL || strncmp(path, "/proc/net/", 10) != 0 || kame_dialect())
		return NOT_OURS;
	for (size_t i = 0; i < sizeof PROC_FILES / sizeof PROC_FILES[0]; i++) {
		if (strcmp(path, PROC_FILES[i].path) == 0) {
			*file = &PROC_FILES[i];
			return PROC_FILE;
		}
	}
	for (size_t i = 0; i < sizeof PROC_DIRS / sizeof PROC_DIRS[0]; i++)
		if (strcmp(path, PROC_DIRS[i]) == 0)
			return PROC_DIR;
	for (size_t i = 0; i < sizeof PROC_HIDDEN / sizeof PROC_HIDDEN[0]; i++)
		if (strcmp(path, PROC_HIDDEN[i]) == 0)
			return PROC_ABSENT;
	return NOT_OURS;
}

static void info_path(char *out, size_t size)
{
	klipsd_path(out, size - 8);
	strcat(out, ".info");
}

/* Whether klipsd's view channel answers (KLIPS's /proc files exist while the module is loaded). */
static int klipsd_there(void)
{
	char path[PATH_MAX];
	info_path(path, sizeof path);
	int s = connect_unix(path);
	if (s < 0)
		return 0;
	real_close(s);
	return 1;
}

/* The JSON string at *pp (just past its opening quote), decoded into out (if any); *pp past the closing quote. */
static int json_string(const char **pp, const char *end, char *out, size_t *outlen)
{
	const char *p = *pp;
	size_t n = 0;
	while (p < end && *p != '"') {
		unsigned c = (unsigned char)*p++;
		if (c == '\\') {
			if (p >= end)
				return -1;
			char e = *p++;
			switch (e) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case '"': case '\\': case '/': c = (unsigned char)e; break;
			case 'u': {
				if (end - p < 4)
					return -1;
				char hex[5] = { p[0], p[1], p[2], p[3], 0 };
				char *stop;
				unsigned long u = strtoul(hex, &stop, 16);
				if (*stop != '\0')
					return -1;
				p += 4;
				if (u >= 0xd800 && u < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
					char lo[5] = { p[2], p[3], p[4], p[5], 0 };
					unsigned long l = strtoul(lo, &stop, 16);
					if (*stop == '\0' && l >= 0xdc00 && l < 0xe000) {
						u = 0x10000 + ((u - 0xd800) << 10) + (l - 0xdc00);
						p += 6;
					}
				}
				/* UTF-8 */
				unsigned char b[4];
				size_t k;
				if (u < 0x80) { b[0] = (unsigned char)u; k = 1; }
				else if (u < 0x800) { b[0] = (unsigned char)(0xc0 | (u >> 6)); b[1] = (unsigned char)(0x80 | (u & 0x3f)); k = 2; }
				else if (u < 0x10000) { b[0] = (unsigned char)(0xe0 | (u >> 12)); b[1] = (unsigned char)(0x80 | ((u >> 6) & 0x3f)); b[2] = (unsigned char)(0x80 | (u & 0x3f)); k = 3; }
				else { b[0] = (unsigned char)(0xf0 | (u >> 18)); b[1] = (unsigned char)(0x80 | ((u >> 12) & 0x3f)); b[2] = (unsigned char)(0x80 | ((u >> 6) & 0x3f)); b[3] = (unsigned char)(0x80 | (u & 0x3f)); k = 4; }
				if (out != NULL)
					memcpy(out + n, b, k);
				n += k;
				continue;
			}
			default:
				return -1;
			}
		}
		if (out != NULL)
			out[n] = (char)c;
		n++;
	}
	if (p >= end)
		return -1;
	*pp = p + 1;
	if (outlen != NULL)
		*outlen = n;
	return 0;
}

static const char *json_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* Skip one JSON value; NULL if malformed. */
static const char *json_skip(const char *p, const char *end)
{
	p = json_ws(p, end);
	if (p >= end)
		return NULL;
	if (*p == '"') {
		p++;
		return json_string(&p, end, NULL, NULL) == 0 ? p : NULL;
	}
	if (*p == '{' || *p == '[') {
		int depth = 0;
		while (p < end) {
			if (*p == '"') {
				p++;
				if (json_string(&p, end, NULL, NULL) < 0)
					return NULL;
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0)
				return p + 1;
			p++;
		}
		return NULL;
	}
	while (p < end && *p != ',' && *p != '}' && *p != ']')
		p++;
	return p;
}

/* The "text" member of the view channel's answer object; malloc'd, or NULL (an error answer, or malformed). */
static char *view_text(const char *json, size_t len, size_t *textlen)
{
	const char *p = json_ws(json, json + len), *end = json + len;
	if (p >= end || *p++ != '{')
		return NULL;
	for (;;) {
		p = json_ws(p, end);
		if (p >= end || *p != '"')
			return NULL;
		p++;
		const char *key = p;
		if (json_string(&p, end, NULL, NULL) < 0)
			return NULL;
		int is_text = p - key == 5 && memcmp(key, "text\"", 5) == 0;
		p = json_ws(p, end);
		if (p >= end || *p++ != ':')
			return NULL;
		p = json_ws(p, end);
		if (is_text) {
			if (p >= end || *p++ != '"')
				return NULL;
			char *out = malloc((size_t)(end - p) + 1);
			if (out == NULL || json_string(&p, end, out, textlen) < 0) {
				free(out);
				return NULL;
			}
			return out;
		}
		if ((p = json_skip(p, end)) == NULL)
			return NULL;
		p = json_ws(p, end);
		if (p >= end || *p++ != ',')
			return NULL;
	}
}

/* A view's text from klipsd's view channel; malloc'd, or NULL with errno. */
static char *fetch_view(const char *view, size_t *textlen)
{
	char path[PATH_MAX];
	info_path(path, sizeof path);
	int s = connect_unix(path);
	if (s < 0)
		return NULL;
	char req[64];
	int n = snprintf(req, sizeof req, "{\"view\":\"%s\"}\n", view);
	char *buf = NULL, *text = NULL;
	size_t have = 0, cap = 0;
	if (write_all(s, req, (size_t)n) < 0)
		goto out;
	for (;;) {
		if (have == cap) {
			cap = cap ? cap * 2 : 65536;
			char *grown = realloc(buf, cap);
			if (grown == NULL)
				goto out;
			buf = grown;
		}
		struct pollfd pfd = { s, POLLIN, 0 };
		int r = poll(&pfd, 1, VIEW_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			goto out;
		ssize_t got = recv(s, buf + have, cap - have, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			goto out;
		char *nl = memchr(buf + have, '\n', (size_t)got);
		have += (size_t)got;
		if (nl != NULL) {
			text = view_text(buf, (size_t)(nl - buf), textlen);
			break;
		}
	}
out:
	free(buf);
	real_close(s);
	if (text == NULL)
		errno = ENOENT;
	return text;
}

/* A read-only descriptor holding a /proc file's text now (KLIPS's files were made at each open too). */
static int proc_open_file(const struct proc_file *f, int flags)
{
	if ((flags & O_ACCMODE) != O_RDONLY) {
		errno = EACCES;
		return -1;
	}
	if (flags & O_DIRECTORY) {
		errno = ENOTDIR;
		return -1;
	}
	size_t len = 0;
	char *text = fetch_view(f->view, &len);
	if (text == NULL)
		return -1;
	char name[80];
	snprintf(name, sizeof name, "klips:%s", f->path);
	int fd = memfd_create(name, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0 || write_all_plain(fd, text, len) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
		int e = errno;
		free(text);
		if (fd >= 0)
			real_close(fd);
		errno = e;
		return -1;
	}
	free(text);
	if (flags & O_NONBLOCK)
		real_fcntl(fd, F_SETFL, O_RDONLY | O_NONBLOCK);
	return fd;
}

/* 1 and *result when `path` is one of ours, 0 when it is not. */
static int proc_open(const char *path, int flags, int *result)
{
	const struct proc_file *f = NULL;
	switch (proc_lookup(path, &f)) {
	case PROC_FILE:
		*result = proc_open_file(f, flags);
		return 1;
	case PROC_ABSENT:
		errno = ENOENT;
		*result = -1;
		return 1;
	default:
		return 0; /* directories: the real open (nobody lists them) */
	}
}

static mode_t open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int r;
	if (proc_open(path, flags, &r))
		return r;
	NEED(open, -1);
	return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int r;
	if (proc_open(path, flags, &r))
		return r;
	NEED(open64, -1);
	return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int r;
	if (proc_open(path, flags, &r))
		return r;
	NEED(openat, -1);
	return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int r;
	if (proc_open(path, flags, &r))
		return r;
	NEED(openat64, -1);
	return real_openat64(dirfd, path, flags, mode);
}

/*
 * A libc call that answers for KLIPS's /proc files first: ANSWERED (which sets r) says
 * whether the path was ours, else the call goes to libc. PARAMS is the signature, ARGS
 * the call; used for the open, stat and access families below.
 */
#define PROC_WRAPPER(fn, ANSWERED, PARAMS, ARGS) \
	int fn PARAMS                                  \
	{                                              \
		int r;                                     \
		if (ANSWERED)                              \
			return r;                              \
		NEED(fn, -1);                              \
		return real_##fn ARGS;                     \
	}

PROC_WRAPPER(__open_2, proc_open(path, flags, &r), (const char *path, int flags), (path, flags))

PROC_WRAPPER(__open64_2, proc_open(path, flags, &r), (const char *path, int flags), (path, flags))

PROC_WRAPPER(__openat_2, proc_open(path, flags, &r), (int dirfd, const char *path, int flags), (dirfd, path, flags))

PROC_WRAPPER(__openat64_2, proc_open(path, flags, &r), (int dirfd, const char *path, int flags), (dirfd, path, flags))

/* fopen of one of ours: read-only, as the files were. */
static int proc_fopen(const char *path, const char *mode, FILE **result)
{
	const struct proc_file *f = NULL;
	enum proc_kind kind = proc_lookup(path, &f);
	if (kind != PROC_FILE && kind != PROC_ABSENT)
		return 0;
	*result = NULL;
	if (kind == PROC_ABSENT) {
		errno = ENOENT;
		return 1;
	}
	if (strpbrk(mode, "wa+") != NULL) {
		errno = EACCES;
		return 1;
	}
	int fd = proc_open_file(f, O_RDONLY | (strchr(mode, 'e') ? O_CLOEXEC : 0));
	if (fd < 0)
		return 1;
	*result = fdopen(fd, "r");
	if (*result == NULL) {
		int e = errno;
		real_close(fd);
		errno = e;
	}
	return 1;
}

FILE *fopen(const char *path, const char *mode)
{
	FILE *f;
	if (proc_fopen(path, mode, &f))
		return f;
	NEED(fopen, NULL);
	return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
	FILE *f;
	if (proc_fopen(path, mode, &f))
		return f;
	NEED(fopen64, NULL);
	return real_fopen64(path, mode);
}

/* stat and friends: 1 when `path` is ours (filled, or -1 in *result with errno), 0 when not. */
#define PROC_STAT(st, path, result)                                                           \
	({                                                                                        \
		const struct proc_file *f_ = NULL;                                                    \
		enum proc_kind k_ = proc_lookup((path), &f_);                                         \
		int ours_ = k_ != NOT_OURS;                                                           \
		if (ours_) {                                                                          \
			if (k_ == PROC_ABSENT || !klipsd_there()) {                                       \
				errno = ENOENT;                                                               \
				*(result) = -1;                                                               \
			} else {                                                                          \
				memset((st), 0, sizeof *(st));                                                \
				(st)->st_mode = k_ == PROC_DIR ? (S_IFDIR | 0555) : (S_IFREG | f_->mode);     \
				(st)->st_nlink = k_ == PROC_DIR ? 2 : 1;                                      \
				(st)->st_uid = getuid();                                                      \
				(st)->st_gid = getgid();                                                      \
				(st)->st_blksize = 1024;                                                      \
				(st)->st_ino = proc_ino(path);                                                \
				(st)->st_atime = (st)->st_mtime = (st)->st_ctime = time(NULL);                \
				*(result) = 0;                                                                \
			}                                                                                 \
		}                                                                                     \
		ours_;                                                                                \
	})

static ino_t proc_ino(const char *path)
{
	uint32_t h = 2166136261u;
	for (; *path; path++)
		h = (h ^ (unsigned char)*path) * 16777619u;
	return (ino_t)(0x4b000000u | (h & 0xffffffu));
}

/* The stat family: each answers for KLIPS's /proc files (PROC_STAT), else libc. */
PROC_WRAPPER(stat, PROC_STAT(st, path, &r), (const char *path, struct stat *st), (path, st))
PROC_WRAPPER(lstat, PROC_STAT(st, path, &r), (const char *path, struct stat *st), (path, st))
PROC_WRAPPER(stat64, PROC_STAT(st, path, &r), (const char *path, struct stat64 *st), (path, st))
PROC_WRAPPER(lstat64, PROC_STAT(st, path, &r), (const char *path, struct stat64 *st), (path, st))
PROC_WRAPPER(fstatat, PROC_STAT(st, path, &r), (int dirfd, const char *path, struct stat *st, int flags), (dirfd, path, st, flags))
PROC_WRAPPER(fstatat64, PROC_STAT(st, path, &r), (int dirfd, const char *path, struct stat64 *st, int flags), (dirfd, path, st, flags))
/* Binaries built against glibc before 2.33 call these. */
PROC_WRAPPER(__xstat, PROC_STAT(st, path, &r), (int ver, const char *path, struct stat *st), (ver, path, st))
PROC_WRAPPER(__lxstat, PROC_STAT(st, path, &r), (int ver, const char *path, struct stat *st), (ver, path, st))
PROC_WRAPPER(__xstat64, PROC_STAT(st, path, &r), (int ver, const char *path, struct stat64 *st), (ver, path, st))
PROC_WRAPPER(__lxstat64, PROC_STAT(st, path, &r), (int ver, const char *path, struct stat64 *st), (ver, path, st))
PROC_WRAPPER(__fxstatat, PROC_STAT(st, path, &r), (int ver, int dirfd, const char *path, struct stat *st, int flags), (ver, dirfd, path, st, flags))
PROC_WRAPPER(__fxstatat64, PROC_STAT(st, path, &r), (int ver, int dirfd, const char *path, struct stat64 *st, int flags), (ver, dirfd, path, st, flags))

int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *stx)
{
	struct stat st;
	int r;
	if (PROC_STAT(&st, path, &r)) {
		if (r == 0) {
			memset(stx, 0, sizeof *stx);
			stx->stx_mask = STATX_BASIC_STATS;
			stx->stx_mode = (uint16_t)st.st_mode;
			stx->stx_nlink = (uint32_t)st.st_nlink;
			stx->stx_uid = st.st_uid;
			stx->stx_gid = st.st_gid;
			stx->stx_ino = st.st_ino;
			stx->stx_blksize = (uint32_t)st.st_blksize;
			stx->stx_atime.tv_sec = stx->stx_mtime.tv_sec = stx->stx_ctime.tv_sec = st.st_mtime;
		}
		return r;
	}
	NEED(statx, -1);
	return real_statx(dirfd, path, flags, mask, stx);
}

/* access: readable while klipsd answers; never writable or executable. */
static int proc_access(const char *path, int mode, int *result)
{
	const struct proc_file *f = NULL;
	enum proc_kind kind = proc_lookup(path, &f);
	if (kind == NOT_OURS)
		return 0;
	*result = -1;
	if (kind == PROC_ABSENT || !klipsd_there())
		errno = ENOENT;
	else if ((mode & W_OK) || (kind == PROC_FILE && (mode & X_OK)))
		errno = EACCES;
	else
		*result = 0;
	return 1;
}

PROC_WRAPPER(access, proc_access(path, mode, &r), (const char *path, int mode), (path, mode))

PROC_WRAPPER(faccessat, proc_access(path, mode, &r), (int dirfd, const char *path, int mode, int flags), (dirfd, path, mode, flags))

PROC_WRAPPER(euidaccess, proc_access(path, mode, &r), (const char *path, int mode), (path, mode))

int eaccess(const char *path, int mode)
{
	return euidaccess(path, mode);
}
