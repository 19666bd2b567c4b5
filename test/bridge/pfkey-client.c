/*
 * A small PF_KEY client of our own for test/bridge.test.ts, run under `klips run`: it
 * opens PF_KEY sockets as any program would (socket(PF_KEY, SOCK_RAW, PF_KEY_V2)) and
 * prints what it observes, one `name value` line each, for the test to compare with
 * exact values. Each check is a subcommand:
 *
 *   datagram   one message per read, MSG_PEEK then read, MSG_TRUNC with a short buffer
 *   poll       poll/select readable exactly while a message is queued; a REGISTER's
 *              reply readable with poll(..., 0) right after write() returns
 *   nonblock   EAGAIN on an O_NONBLOCK socket with nothing queued
 *   sockopt    SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_RCVBUF
 *   errno      write() of an existing SA's ADD fails with EEXIST, DELETE of a missing
 *              SA with ESRCH; a bad version with EINVAL; a length mismatch with EMSGSIZE
 *   dup        dup() then close of one keeps the socket; close of all ends it (the
 *              test reads klipsd's stats view at each `wait` line: it answers on stdin)
 *   fork       after fork() the child sends and receives, then the parent does
 *   threads    four threads writing at once, each write() failing with its own errno
 *   fill N     N REGISTERs written without reading: each write succeeds, the replies that
 *              do not fit are dropped, and one ENOBUFS notice counts them
 *   cat FILE.. each file's bytes, as read(2) gives them (the /proc files)
 *   stat FILE.. each file's mode by stat(2), and whether access(R_OK) allows reading
 *   bench N    N ADDs (distinct SPIs), each written then its reply read; prints the time
 *   direct N   the same N ADDs to klipsd's socket ($KLIPS_SOCKET) as a framed stream,
 *              without the bridge (no status wait): what the bridge costs per message
 *   natt PORT  a UDP bind to the NAT-T port (the bridge adds SO_REUSEPORT)
 *   bypass     setsockopt(IP_IPSEC_POLICY / IPV6_IPSEC_POLICY): bypass policies and others
 */

#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#ifndef PF_KEY
#define PF_KEY 15
#endif
#define PF_KEY_V2 2
#define SADB_ADD 3
#define SADB_DELETE 4
#define SADB_REGISTER 7
#define SADB_SATYPE_ESP 3
#define SADB_EXT_SA 1
#define SADB_EXT_ADDRESS_SRC 5
#define SADB_EXT_ADDRESS_DST 6
#define SADB_EXT_KEY_AUTH 8
#define SADB_EXT_KEY_ENCRYPT 9
#define SADB_AALG_SHA1HMAC 3
#define SADB_EALG_3DESCBC 3

static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void die(const char *what)
{
	say("error %s: %s", what, strerror(errno));
	exit(2);
}

static int pfkey(void)
{
	int s = socket(PF_KEY, SOCK_RAW, PF_KEY_V2);
	if (s < 0)
		die("socket");
	return s;
}

static size_t header(unsigned char *m, int type, uint32_t seq, size_t len)
{
	memset(m, 0, 16);
	m[0] = PF_KEY_V2;
	m[1] = (unsigned char)type;
	m[3] = SADB_SATYPE_ESP;
	m[4] = (unsigned char)(len / 8);
	m[5] = (unsigned char)((len / 8) >> 8);
	memcpy(m + 8, &seq, 4);
	uint32_t pid = (uint32_t)getpid();
	memcpy(m + 12, &pid, 4);
	return len;
}

static size_t ext_sa(unsigned char *e, uint32_t spi, int keys)
{
	memset(e, 0, 16);
	e[0] = 2;
	e[2] = SADB_EXT_SA;
	uint32_t n = htonl(spi);
	memcpy(e + 4, &n, 4);
	e[9] = 1; /* mature */
	if (keys) {
		e[10] = SADB_AALG_SHA1HMAC;
		e[11] = SADB_EALG_3DESCBC;
	}
	return 16;
}

static size_t ext_addr(unsigned char *e, int type, const char *ip)
{
	struct sockaddr_in sin;
	memset(e, 0, 24);
	e[0] = 3;
	e[2] = (unsigned char)type;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sin.sin_addr);
	memcpy(e + 8, &sin, sizeof sin);
	return 24;
}

static size_t ext_key(unsigned char *e, int type, int bits, unsigned char fill)
{
	memset(e, 0, 32);
	e[0] = 4;
	e[2] = (unsigned char)type;
	e[4] = (unsigned char)bits;
	memset(e + 8, fill, (size_t)bits / 8);
	return 32;
}

/* An ESP ADD (3DES, HMAC-SHA1) of esp<spi>@192.0.2.2 from 192.0.2.1: 144 bytes. */
static size_t add_msg(unsigned char *m, uint32_t spi, uint32_t seq)
{
	size_t off = 16;
	off += ext_sa(m + off, spi, 1);
	off += ext_addr(m + off, SADB_EXT_ADDRESS_SRC, "192.0.2.1");
	off += ext_addr(m + off, SADB_EXT_ADDRESS_DST, "192.0.2.2");
	off += ext_key(m + off, SADB_EXT_KEY_AUTH, 160, 0x11);
	off += ext_key(m + off, SADB_EXT_KEY_ENCRYPT, 192, 0x22);
	return header(m, SADB_ADD, seq, off);
}

static size_t delete_msg(unsigned char *m, uint32_t spi, uint32_t seq)
{
	size_t off = 16;
	off += ext_sa(m + off, spi, 0);
	off += ext_addr(m + off, SADB_EXT_ADDRESS_SRC, "192.0.2.1");
	off += ext_addr(m + off, SADB_EXT_ADDRESS_DST, "192.0.2.2");
	return header(m, SADB_DELETE, seq, off);
}

static size_t register_msg(unsigned char *m, uint32_t seq)
{
	return header(m, SADB_REGISTER, seq, 16);
}

static void send_ok(int s, const unsigned char *m, size_t len)
{
	ssize_t n = write(s, m, len);
	if (n != (ssize_t)len)
		die("write");
}

static int readable(int s, int ms)
{
	struct pollfd p = { s, POLLIN, 0 };
	return poll(&p, 1, ms);
}

/* Read every message queued now (poll 0 between reads): how many. */
static int drain(int s)
{
	unsigned char buf[65536];
	int n = 0;
	while (readable(s, 0) > 0) {
		if (read(s, buf, sizeof buf) <= 0)
			break;
		n++;
	}
	return n;
}

static uint32_t seq_of(const unsigned char *m)
{
	uint32_t seq;
	memcpy(&seq, m + 8, 4);
	return seq;
}

static int datagram(void)
{
	int s = pfkey();
	unsigned char m[256], buf[65536], peek[65536];
	/* Two replies queued (two ADDs, broadcast to us too), then one read each. */
	send_ok(s, m, add_msg(m, 0x5001, 1));
	send_ok(s, m, add_msg(m, 0x5002, 2));
	ssize_t a = read(s, buf, sizeof buf);
	say("read1 len=%zd type=%d seq=%u", a, buf[1], seq_of(buf));
	ssize_t p = recv(s, peek, sizeof peek, MSG_PEEK);
	ssize_t b = read(s, buf, sizeof buf);
	say("peek len=%zd read2 len=%zd type=%d seq=%u same=%d", p, b, buf[1], seq_of(buf), p == b && memcmp(peek, buf, (size_t)b) == 0);
	say("queued-after %d", readable(s, 0));
	/* A REGISTER reply (much longer than 8 bytes) read into 8 bytes. */
	send_ok(s, m, register_msg(m, 3));
	unsigned char small[8];
	struct iovec iov = { small, sizeof small };
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	ssize_t t = recvmsg(s, &mh, MSG_TRUNC);
	say("trunc ret=%zd flags-trunc=%d first-bytes=%02x%02x%02x%02x", t, (mh.msg_flags & MSG_TRUNC) != 0, small[0], small[1], small[2], small[3]);
	say("queued-after-trunc %d", readable(s, 0));
	/* A header-only REGISTER reply is exact; the whole REGISTER reply with a big buffer is its real length. */
	send_ok(s, m, register_msg(m, 4));
	ssize_t whole = read(s, buf, sizeof buf);
	say("register len=%zd units=%d", whole, buf[4] | (buf[5] << 8));
	send_ok(s, m, delete_msg(m, 0x5001, 5));
	send_ok(s, m, delete_msg(m, 0x5002, 6));
	close(s);
	return 0;
}

static int poll_check(void)
{
	int s = pfkey();
	unsigned char m[256], buf[65536];
	fd_set r;
	struct timeval tv = { 0, 0 };
	say("idle poll=%d", readable(s, 0));
	FD_ZERO(&r);
	FD_SET(s, &r);
	say("idle select=%d", select(s + 1, &r, NULL, NULL, &tv));
	send_ok(s, m, register_msg(m, 1));
	say("after-register poll0=%d", readable(s, 0));
	FD_ZERO(&r);
	FD_SET(s, &r);
	tv.tv_sec = 0;
	tv.tv_usec = 0;
	say("after-register select=%d", select(s + 1, &r, NULL, NULL, &tv));
	ssize_t n = read(s, buf, sizeof buf);
	say("register-reply type=%d errno=%d seq=%u len=%zd", buf[1], buf[2], seq_of(buf), n);
	say("drained poll=%d", readable(s, 0));
	/* Each write's reply is readable when write() returns, every time. */
	int ready = 0;
	for (uint32_t i = 0; i < 200; i++) {
		send_ok(s, m, register_msg(m, 100 + i));
		ready += readable(s, 0) == 1;
		if (read(s, buf, sizeof buf) <= 0 || seq_of(buf) != 100 + i)
			die("register loop");
	}
	say("register-loop ready=%d of 200", ready);
	close(s);
	return 0;
}

static int nonblock(void)
{
	int s = socket(PF_KEY, SOCK_RAW | SOCK_NONBLOCK, PF_KEY_V2);
	if (s < 0)
		die("socket");
	unsigned char buf[1024];
	ssize_t n = read(s, buf, sizeof buf);
	say("nonblock read=%zd errno=%s", n, n < 0 && errno == EAGAIN ? "EAGAIN" : strerror(errno));
	int t = pfkey();
	fcntl(t, F_SETFL, fcntl(t, F_GETFL) | O_NONBLOCK);
	n = recv(t, buf, sizeof buf, 0);
	say("fcntl-nonblock recv=%zd errno=%s", n, n < 0 && errno == EAGAIN ? "EAGAIN" : strerror(errno));
	close(s);
	close(t);
	return 0;
}

static int sockopt(void)
{
	int s = pfkey(), v;
	socklen_t len = sizeof v;
	getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &len);
	say("SO_TYPE %d", v);
	len = sizeof v;
	getsockopt(s, SOL_SOCKET, SO_DOMAIN, &v, &len);
	say("SO_DOMAIN %d", v);
	len = sizeof v;
	getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &len);
	say("SO_PROTOCOL %d", v);
	len = sizeof v;
	getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &len);
	say("SO_RCVBUF %d", v);
	v = 65536;
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
	len = sizeof v;
	getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &len);
	say("SO_RCVBUF-after-set %d", v);
	int bad = socket(PF_KEY, SOCK_DGRAM, PF_KEY_V2);
	say("socket-dgram %d %s", bad, bad < 0 && errno == ESOCKTNOSUPPORT ? "ESOCKTNOSUPPORT" : strerror(errno));
	bad = socket(PF_KEY, SOCK_RAW, 1);
	say("socket-proto1 %d %s", bad, bad < 0 && errno == EPROTONOSUPPORT ? "EPROTONOSUPPORT" : strerror(errno));
	close(s);
	return 0;
}

static const char *errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EEXIST: return "EEXIST";
	case ESRCH: return "ESRCH";
	case EINVAL: return "EINVAL";
	case EMSGSIZE: return "EMSGSIZE";
	default: return strerror(e);
	}
}

static int errno_check(void)
{
	int s = pfkey();
	unsigned char m[256];
	size_t len = add_msg(m, 0x6001, 1);
	ssize_t r = write(s, m, len);
	say("add ret=%zd errno=%s", r, errname(r < 0 ? errno : 0));
	r = write(s, m, len);
	say("add-again ret=%zd errno=%s", r, errname(r < 0 ? errno : 0));
	len = delete_msg(m, 0x6999, 2);
	r = write(s, m, len);
	say("delete-missing ret=%zd errno=%s", r, errname(r < 0 ? errno : 0));
	len = delete_msg(m, 0x6001, 3);
	r = send(s, m, len, 0);
	say("delete ret=%zd errno=%s", r, errname(r < 0 ? errno : 0));
	len = register_msg(m, 4);
	m[0] = 3;
	r = write(s, m, len);
	say("bad-version ret=%zd errno=%s", r, errname(r < 0 ? errno : 0));
	len = register_msg(m, 5);
	r = write(s, m, len + 8);
	say("length-mismatch ret=%zd errno=%s", r, errname(r < 0 ? errno : 0));
	r = write(s, m, 8);
	say("short ret=%zd errno=%s", r, errname(r < 0 ? errno : 0));
	say("replies %d", drain(s));
	close(s);
	return 0;
}

/* A line on stdin from the test, which looks at klipsd meanwhile. */
static void wait_for_test(const char *step)
{
	char line[64];
	say("wait %s", step);
	if (fgets(line, sizeof line, stdin) == NULL)
		exit(3);
}

static int dup_check(void)
{
	unsigned char m[256], buf[65536];
	int s = pfkey();
	int d = dup(s);
	int e = fcntl(s, F_DUPFD_CLOEXEC, 20);
	wait_for_test("open");
	close(s);
	send_ok(d, m, register_msg(m, 1));
	ssize_t n = read(d, buf, sizeof buf);
	say("after-close-one type=%d seq=%u len=%zd", buf[1], seq_of(buf), n);
	close(d);
	send_ok(e, m, register_msg(m, 2));
	n = read(e, buf, sizeof buf);
	say("after-close-two type=%d seq=%u len=%zd", buf[1], seq_of(buf), n);
	wait_for_test("one-left");
	close(e);
	wait_for_test("closed");
	return 0;
}

static int fork_check(void)
{
	unsigned char m[256], buf[65536];
	int s = pfkey();
	send_ok(s, m, register_msg(m, 1));
	drain(s);
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		send_ok(s, m, add_msg(m, 0x7001, 10));
		ssize_t n = read(s, buf, sizeof buf);
		say("child add-reply type=%d errno=%d seq=%u len=%zd", buf[1], buf[2], seq_of(buf), n);
		ssize_t r = write(s, m, add_msg(m, 0x7001, 11));
		say("child add-again ret=%zd errno=%s", r, errname(r < 0 ? errno : 0));
		drain(s);
		_exit(0);
	}
	int status;
	waitpid(child, &status, 0);
	say("child exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	drain(s);
	send_ok(s, m, register_msg(m, 20));
	say("parent poll0=%d", readable(s, 0));
	ssize_t n = read(s, buf, sizeof buf);
	say("parent register-reply type=%d seq=%u len=%zd", buf[1], seq_of(buf), n);
	ssize_t r = write(s, m, delete_msg(m, 0x7001, 21));
	say("parent delete ret=%zd errno=%s", r, errname(r < 0 ? errno : 0));
	close(s);
	return 0;
}

static int cat(int argc, char **argv)
{
	char buf[4096];
	for (int i = 0; i < argc; i++) {
		int fd = open(argv[i], O_RDONLY);
		if (fd < 0) {
			say("error open %s: %s", argv[i], strerror(errno));
			return 1;
		}
		ssize_t n;
		while ((n = read(fd, buf, sizeof buf)) > 0)
			fwrite(buf, 1, (size_t)n, stdout);
		close(fd);
	}
	fflush(stdout);
	return 0;
}

/* Four threads writing at once on one socket, each alternating an ADD that succeeds with
 * one that must fail EEXIST: each write() gets its own request's errno. A fifth reads. */
static int shared_fd;
static volatile int writers_done;

static void *writer(void *arg)
{
	long id = (long)arg, wrong = 0;
	unsigned char m[256];
	for (uint32_t i = 0; i < 500; i++) {
		uint32_t spi = 0x900000 + (uint32_t)id * 0x10000 + i;
		if (write(shared_fd, m, add_msg(m, spi, i)) != 144)
			wrong++;
		if (write(shared_fd, m, add_msg(m, spi, i)) != -1 || errno != EEXIST)
			wrong++;
		if (write(shared_fd, m, delete_msg(m, spi, i)) != 80)
			wrong++;
	}
	return (void *)wrong;
}

/* Counts the replies read plus those the bridge dropped while the queue was full (a
 * reader that falls behind on a busy machine): the last ENOBUFS notice's seq. */
static void *reader(void *arg)
{
	unsigned char buf[65536];
	long n = 0, dropped = 0;
	(void)arg;
	while (!writers_done || readable(shared_fd, 0) > 0) {
		if (readable(shared_fd, 50) > 0 && read(shared_fd, buf, sizeof buf) >= 16) {
			uint32_t seq;
			memcpy(&seq, buf + 8, 4);
			if (buf[1] == 0 && buf[2] == ENOBUFS)
				dropped = seq;
			else
				n++;
		}
	}
	return (void *)(n + dropped);
}

static int threads(void)
{
	pthread_t w[4], r;
	long wrong = 0;
	void *v;
	shared_fd = pfkey();
	pthread_create(&r, NULL, reader, NULL);
	for (long i = 0; i < 4; i++)
		pthread_create(&w[i], NULL, writer, (void *)i);
	for (int i = 0; i < 4; i++) {
		pthread_join(w[i], &v);
		wrong += (long)v;
	}
	writers_done = 1;
	pthread_join(r, &v);
	say("threads writes=6000 wrong=%ld replies+dropped=%ld", wrong, (long)v);
	close(shared_fd);
	return 0;
}

/* N REGISTERs without reading: every write succeeds; what does not fit is dropped and counted in one ENOBUFS notice. */
static int fill(long n)
{
	unsigned char m[256], buf[65536];
	int s = pfkey();
	long ok = 0, replies = 0, notices = 0;
	uint32_t dropped = 0;
	for (long i = 0; i < n; i++)
		ok += write(s, m, register_msg(m, (uint32_t)i + 1)) == 16;
	while (readable(s, 500) > 0) {
		if (read(s, buf, sizeof buf) <= 0)
			break;
		if (buf[1] == 0 && buf[2] == ENOBUFS) {
			notices++;
			dropped = seq_of(buf);
		} else if (buf[1] == SADB_REGISTER) {
			replies++;
		}
	}
	say("fill writes=%ld replies-read=%s notices=%ld dropped+read=%ld", ok, replies > 0 && replies < n ? "some" : "all-or-none", notices, (long)dropped + replies);
	close(s);
	return 0;
}

static int stat_check(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0)
			say("%s mode=%o readable=%d", argv[i], (unsigned)st.st_mode, access(argv[i], R_OK) == 0);
		else
			say("%s errno=%s", argv[i], errno == ENOENT ? "ENOENT" : strerror(errno));
	}
	return 0;
}

static double seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* N ADDs, each written and its reply read, through the bridge. */
static int bench(long n, uint32_t base)
{
	unsigned char m[256], buf[65536];
	int s = pfkey();
	double t0 = seconds();
	for (long i = 0; i < n; i++) {
		send_ok(s, m, add_msg(m, base + (uint32_t)i, (uint32_t)i + 1));
		if (read(s, buf, sizeof buf) <= 0 || buf[1] != SADB_ADD || buf[2] != 0)
			die("bench reply");
	}
	double t = seconds() - t0;
	say("bench adds=%ld seconds=%.3f per-second=%.0f", n, t, (double)n / t);
	close(s);
	return 0;
}

/* The same ADDs on klipsd's own socket: a framed stream, no status. */
static int direct(long n, uint32_t base)
{
	const char *path = getenv("KLIPS_SOCKET");
	struct sockaddr_un sun;
	if (path == NULL)
		die("KLIPS_SOCKET unset");
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sun, sizeof sun) < 0)
		die("connect");
	unsigned char m[256], buf[65536];
	double t0 = seconds();
	for (long i = 0; i < n; i++) {
		send_ok(s, m, add_msg(m, base + (uint32_t)i, (uint32_t)i + 1));
		size_t have = 0, want = 16;
		while (have < want) {
			ssize_t got = read(s, buf + have, want - have);
			if (got <= 0)
				die("direct read");
			have += (size_t)got;
			if (have == 16)
				want = (size_t)(buf[4] | (buf[5] << 8)) * 8;
		}
		if (buf[1] != SADB_ADD || buf[2] != 0)
			die("direct reply");
	}
	double t = seconds() - t0;
	say("direct adds=%ld seconds=%.3f per-second=%.0f", n, t, (double)n / t);
	close(s);
	return 0;
}

/*
 * natt PORT [ADDR]: bind a UDP socket to PORT on ADDR (default any; as an IKE daemon binds
 * the NAT-T port; the bridge adds SO_REUSEPORT so it joins klipsd's carrier), wait for the
 * test ("wait bound"), then print the 5th byte of each datagram received within 2 s
 * ("got N") until "got 255" or the time runs out.
 */
static int natt(long port, const char *addr)
{
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (u < 0)
		die("udp socket");
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (addr != NULL && inet_pton(AF_INET, addr, &sin.sin_addr) != 1)
		die("natt: bad address");
	if (bind(u, (struct sockaddr *)&sin, sizeof sin) < 0) {
		say("bind errno=%d", errno);
		return 0;
	}
	wait_for_test("bound");
	for (;;) {
		struct pollfd pf = { .fd = u, .events = POLLIN };
		if (poll(&pf, 1, 2000) <= 0)
			break;
		unsigned char b[64];
		ssize_t got = recv(u, b, sizeof b, 0);
		if (got < 5)
			continue;
		say("got %u", b[4]);
		if (b[4] == 255)
			break;
	}
	close(u);
	return 0;
}

/*
 * bypass: what setsockopt answers for socket IPsec policies, as an IKE daemon sets them on
 * its IKE sockets. One line per request: "NAME 0" or "NAME errno=E".
 */
static void policy_request(const char *name, int family, int level, int opt, uint16_t type, uint8_t dir, socklen_t len)
{
	int u = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (u < 0)
		die("udp socket");
	unsigned char pol[16] = { 0 };
	uint16_t units = 2, ext = 18; /* sizeof(struct sadb_x_policy) / 8, SADB_X_EXT_POLICY */
	memcpy(pol, &units, 2);
	memcpy(pol + 2, &ext, 2);
	memcpy(pol + 4, &type, 2);
	pol[6] = dir;
	if (setsockopt(u, level, opt, pol, len) == 0)
		say("%s 0", name);
	else
		say("%s errno=%d", name, errno);
	close(u);
}

static int bypass(void)
{
	policy_request("ip4-bypass-in", AF_INET, IPPROTO_IP, 16, 4, 1, 16);
	policy_request("ip4-bypass-out", AF_INET, IPPROTO_IP, 16, 4, 2, 16);
	policy_request("ip6-bypass-in", AF_INET6, IPPROTO_IPV6, 34, 4, 1, 16);
	policy_request("ip6-bypass-out", AF_INET6, IPPROTO_IPV6, 34, 4, 2, 16);
	/* the kernel's answers: another family's option, another policy type, no direction, too short */
	policy_request("ip6-socket-ip4-option", AF_INET6, IPPROTO_IP, 16, 4, 1, 16);
	policy_request("ip4-discard", AF_INET, IPPROTO_IP, 16, 0, 2, 16);
	policy_request("ip4-ipsec", AF_INET, IPPROTO_IP, 16, 2, 2, 16);
	policy_request("ip4-bypass-dir0", AF_INET, IPPROTO_IP, 16, 4, 0, 16);
	policy_request("ip4-bypass-short", AF_INET, IPPROTO_IP, 16, 4, 1, 8);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: pfkey-client datagram|poll|nonblock|sockopt|errno|dup|fork|threads|fill N|cat FILE...|stat FILE...|bench N [BASE]|direct N [BASE]|natt PORT [ADDR]|bypass\n");
		return 2;
	}
	const char *cmd = argv[1];
	long n = argc > 2 ? strtol(argv[2], NULL, 0) : 0;
	uint32_t base = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 0) : 0x100000;
	if (strcmp(cmd, "datagram") == 0) return datagram();
	if (strcmp(cmd, "poll") == 0) return poll_check();
	if (strcmp(cmd, "nonblock") == 0) return nonblock();
	if (strcmp(cmd, "sockopt") == 0) return sockopt();
	if (strcmp(cmd, "errno") == 0) return errno_check();
	if (strcmp(cmd, "dup") == 0) return dup_check();
	if (strcmp(cmd, "fork") == 0) return fork_check();
	if (strcmp(cmd, "cat") == 0) return cat(argc - 2, argv + 2);
	if (strcmp(cmd, "stat") == 0) return stat_check(argc - 2, argv + 2);
	if (strcmp(cmd, "fill") == 0) return fill(n);
	if (strcmp(cmd, "threads") == 0) return threads();
	if (strcmp(cmd, "bench") == 0) return bench(n, base);
	if (strcmp(cmd, "direct") == 0) return direct(n, base);
	if (strcmp(cmd, "natt") == 0) return natt(n, argc > 3 ? argv[3] : NULL);
	if (strcmp(cmd, "bypass") == 0) return bypass();
	fprintf(stderr, "pfkey-client: unknown check %s\n", cmd);
	return 2;
}
