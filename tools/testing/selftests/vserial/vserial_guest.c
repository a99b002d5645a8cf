// SPDX-License-Identifier: GPL-2.0
/*
 * Guest-side tests of a virtio-console driver (the project's or the
 * in-tree one: the user-visible contract is the same) against QEMU's
 * virtio-serial device.  One static binary, several roles:
 *
 *   vserial_guest --guest [--ctl TTY] [--group NAME] [--driver KIND]
 *                 [--bulk-mib N] [harness options]
 *       inside the VM: the kselftest harness, TAP on stdout.  Before each
 *       test it asks the host end, over TTY (a second UART, never the
 *       device under test), to reset its side; every host action is a
 *       request with a reply.
 *   vserial_guest --host DIR [--timeout SECONDS] [--devopts OPTS]
 *       on the build machine: listens on DIR/ctl.sock, where QEMU connects
 *       the guest's second UART, and serves the guest's requests with
 *       QEMU's chardev sockets DIR/<id>.sock and its QMP socket
 *       DIR/qmp.sock.  OPTS go to every virtio-serial-pci device it
 *       hot-plugs, as DEVOPTS below.
 *   vserial_guest --qemu-args GROUP DIR [DEVOPTS]
 *       the QEMU options of a test group's virtio-serial devices and ports,
 *       one per line; DEVOPTS is appended to every virtio-serial-pci
 *       device (for example vhost=on).
 *   vserial_guest --group-info GROUP
 *       "smp=N", "fixtures=...", "cmdline=..." lines of a group.
 *   vserial_guest --groups
 *       the names of the groups.
 *
 * Control protocol: one text line per message.  The guest sends
 * "TAG VERB ARGS...", the host answers "TAG OK ..." or "TAG ERR reason"
 * once the action is complete (a WAIT or FIND answers when its condition
 * holds or its timeout expires).  A reply with another tag is stale and
 * ignored: tags hold the pid of the test process.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <linux/netlink.h>
#include <linux/virtio_console.h>
#include <linux/vm_sockets.h>

#include "sha1.h"
#include "kselftest_harness.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

#define MiB			(1024ULL * 1024)
#define CTL_LINE_MAX		16384
/* A host request, unless it says otherwise. */
#define CTL_TIMEOUT_MS		30000
/* A port's host-connected state to change as seen by the guest. */
#define STATE_TIMEOUT_MS	10000
/* A hot-plugged port or device to appear or go away. */
#define PLUG_TIMEOUT_MS		30000
/* Data the host sent to show up in the guest, and the other way round. */
#define DATA_TIMEOUT_MS		10000
/* A blocked thread to return after the event that should wake it. */
#define WAKE_TIMEOUT_MS		10000
#define IO_BLOCK		(64 * 1024)
#define PORT_PREFIX		"org.test."
#define SYS_PORTS		"/sys/class/virtio-ports"
#define SYS_VIRTIO		"/sys/bus/virtio/devices"
#define HVC_MAX			8
#define LONG_NAME_LEN		5000
#define BAD_KLOG_WORDS		{ "Oops", "WARNING:", "BUG:", "KASAN", \
				  "general protection", "Call Trace" }

/* ---- time ---------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int remaining_ms(int64_t deadline)
{
	int64_t left = deadline - now_ms();

	return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/*
 * Reaps child @pid, waiting at most timeout_ms for it to exit: its pidfd
 * turns readable when it does.  On timeout the child is killed (and still
 * reaped) and -ETIMEDOUT returned.
 */
static int wait_child(pid_t pid, int timeout_ms, int *status)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd pfd = { .events = POLLIN };
	int ready = 0, err = 0;

	pfd.fd = syscall(SYS_pidfd_open, pid, 0);
	if (pfd.fd < 0)
		err = -errno;
	while (!err && !ready && remaining_ms(deadline)) {
		ready = poll(&pfd, 1, remaining_ms(deadline));
		if (ready < 0 && errno != EINTR)
			err = -errno;
		if (ready < 0)
			ready = 0;
	}
	if (pfd.fd >= 0)
		close(pfd.fd);
	if (!ready) {
		kill(pid, SIGKILL);
		err = err ? err : -ETIMEDOUT;
	}
	if (waitpid(pid, status, 0) < 0)
		return -errno;
	return err;
}

/* ---- test data: a seeded pseudo-random byte stream ------------------------ */

/*
 * Both ends generate the same stream from a seed (xorshift64*), so a
 * receiver can check every byte as well as the SHA-1 of the whole.  Seed 0
 * means zeros, for throughput runs that must not measure the generator.
 */
struct stream {
	uint64_t state;
	uint64_t word;
	unsigned int left;	/* bytes of word not handed out yet */
	bool zero;
};

static void stream_init(struct stream *st, uint64_t seed)
{
	st->zero = !seed;
	st->state = (seed * 0x9e3779b97f4a7c15ULL) | 1;
	st->word = 0;
	st->left = 0;
}

static uint64_t stream_next(struct stream *st)
{
	uint64_t x = st->state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	st->state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static void stream_fill(struct stream *st, void *dst, size_t len)
{
	uint8_t *p = dst;
	uint64_t w;

	if (st->zero) {
		memset(p, 0, len);
		return;
	}
	for (; len && st->left; len--, st->left--)
		*p++ = st->word >> (8 * (8 - st->left));
	for (; len >= 8; len -= 8, p += 8) {
		w = stream_next(st);
		memcpy(p, &w, 8);
	}
	if (len) {
		st->word = stream_next(st);
		st->left = 8;
		for (; len; len--, st->left--)
			*p++ = st->word >> (8 * (8 - st->left));
	}
}

static void sha1_hex_final(struct sha1 *s, char hex[41])
{
	uint8_t d[20];

	sha1_final(s, d);
	sha1_hex(d, hex);
}

static void hex_encode(const void *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hex_nibble(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes hex text into out (at most size bytes); returns the length or -1. */
static ssize_t hex_decode(const char *hex, uint8_t *out, size_t size)
{
	size_t n = strlen(hex), i;
	int hi, lo;

	if (n % 2 || n / 2 > size)
		return -1;
	for (i = 0; i < n / 2; i++) {
		hi = hex_nibble(hex[2 * i]);
		lo = hex_nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = hi << 4 | lo;
	}
	return n / 2;
}

/* ---- topology: the test groups and their devices -------------------------- */

struct topo_port {
	const char *id;		/* chardev id; the port is named org.test.<id> */
	unsigned int nr;	/* port number in the device */
	bool console;		/* virtconsole rather than virtserialport */
	bool named;		/* has a name (a legacy device never sends one) */
};

struct topo_dev {
	const char *id;
	unsigned int max_ports;
	const struct topo_port *ports;
	unsigned int nports;
};

struct group {
	const char *name;
	unsigned int smp;
	const char *fixtures;	/* harness fixtures run in this group */
	const char *cmdline;	/* kernel parameters, before console=ttyS0 */
	const struct topo_dev *devs;
	unsigned int ndevs;
	/* A vhost-vsock device too, and the guest modules it needs. */
	bool vsock;
	const char *modules;
};

/* Two consoles and four generic ports: port 0 is a console, as QEMU wants. */
static const struct topo_port vs0_ports[] = {
	{ "c0", 0, true, true },
	{ "c1", 1, true, true },
	{ "p2", 2, false, true },
	{ "p3", 3, false, true },
	{ "p4", 4, false, true },
	{ "p5", 5, false, true },
};

/* A second multiport device. */
static const struct topo_port vs1_ports[] = {
	{ "q1", 1, false, true },
	{ "q2", 2, false, true },
};

/* max_ports=1: QEMU offers no MULTIPORT, the driver runs in legacy mode. */
static const struct topo_port vs2_ports[] = {
	{ "l0", 0, true, false },
};

/*
 * Seventeen generic ports: QEMU's device sends a PORT_ADD for every port at
 * once when the driver says it is ready, and drops each that finds no
 * control buffer posted; a driver that posts fewer loses ports.
 */
static const struct topo_port vs3_ports[] = {
	{ "m1", 1, false, true },	{ "m2", 2, false, true },
	{ "m3", 3, false, true },	{ "m4", 4, false, true },
	{ "m5", 5, false, true },	{ "m6", 6, false, true },
	{ "m7", 7, false, true },	{ "m8", 8, false, true },
	{ "m9", 9, false, true },	{ "m10", 10, false, true },
	{ "m11", 11, false, true },	{ "m12", 12, false, true },
	{ "m13", 13, false, true },	{ "m14", 14, false, true },
	{ "m15", 15, false, true },	{ "m16", 16, false, true },
	{ "m17", 17, false, true },
};

#define TOPO_DEV(name, max, ports) { name, max, ports, ARRAY_SIZE(ports) }

static const struct topo_dev devs_std[] = {
	TOPO_DEV("vs0", 8, vs0_ports),
	TOPO_DEV("vs1", 4, vs1_ports),
};

static const struct topo_dev devs_main[] = {
	TOPO_DEV("vs0", 8, vs0_ports),
	TOPO_DEV("vs1", 4, vs1_ports),
	TOPO_DEV("vs2", 1, vs2_ports),
	TOPO_DEV("vs3", 18, vs3_ports),
};

/* Free port numbers of vs0 that hot-plug tests use. */
#define HP_NR_A			6
#define HP_NR_B			7

static const struct group groups[] = {
	{ "main", 2,
	  "port console multidev legacy hotplug malicious pm bulk broken_console",
	  "console=hvc0", devs_main, ARRAY_SIZE(devs_main) },
	{ "smp1", 1, "port multidev bulk", "", devs_std, ARRAY_SIZE(devs_std) },
	{ "smp4", 4, "port multidev bulk", "", devs_std, ARRAY_SIZE(devs_std) },
	{ "bench", 2, "bench", "", devs_std, ARRAY_SIZE(devs_std) },
	/*
	 * The benchmark's two reference channels in one boot: the bench
	 * fixture over the devices as given (QEMU's own without vhost=on) and
	 * AF_VSOCK over vhost-vsock.
	 */
	{ "vsock", 2, "bench vsock", "", devs_std, ARRAY_SIZE(devs_std), true,
	  "vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport" },
};

/* The guest's vsock address (the host is VMADDR_CID_HOST) and the port. */
#define VSOCK_GUEST_CID		3
#define VSOCK_PORT		5000

static const struct group *find_group(const char *name)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(groups); i++)
		if (!strcmp(groups[i].name, name))
			return &groups[i];
	return NULL;
}

static const struct topo_port *topo_find(const struct group *g, const char *id,
					 const struct topo_dev **devp)
{
	unsigned int d, p;

	for (d = 0; d < g->ndevs; d++)
		for (p = 0; p < g->devs[d].nports; p++)
			if (!strcmp(g->devs[d].ports[p].id, id)) {
				if (devp)
					*devp = &g->devs[d];
				return &g->devs[d].ports[p];
			}
	return NULL;
}

static int print_qemu_args(const char *gname, const char *dir,
			   const char *devopts)
{
	const struct group *g = find_group(gname);
	const struct topo_port *p;
	unsigned int d, i;

	if (!g) {
		fprintf(stderr, "unknown group %s\n", gname);
		return 2;
	}
	for (d = 0; d < g->ndevs; d++) {
		printf("-device\nvirtio-serial-pci,id=%s,max_ports=%u%s%s\n",
		       g->devs[d].id, g->devs[d].max_ports,
		       devopts && *devopts ? "," : "", devopts ? devopts : "");
		for (i = 0; i < g->devs[d].nports; i++) {
			p = &g->devs[d].ports[i];
			printf("-chardev\nsocket,id=%s,path=%s/%s.sock,server=on,wait=off\n",
			       p->id, dir, p->id);
			printf("-device\n%s,bus=%s.0,chardev=%s,nr=%u,id=port-%s",
			       p->console ? "virtconsole" : "virtserialport",
			       g->devs[d].id, p->id, p->nr, p->id);
			if (p->named)
				printf(",name=" PORT_PREFIX "%s", p->id);
			printf("\n");
		}
	}
	if (g->vsock)
		printf("-device\nvhost-vsock-pci,guest-cid=%u\n", VSOCK_GUEST_CID);
	/* A second monitor, for tools run by hand (vserial-attach). */
	printf("-chardev\nsocket,id=toolqmp,path=%s/tool-qmp.sock,server=on,wait=off\n"
	       "-mon\nchardev=toolqmp,mode=control\n", dir);
	return 0;
}

static int print_group_info(const char *gname)
{
	const struct group *g = find_group(gname);

	if (!g) {
		fprintf(stderr, "unknown group %s\n", gname);
		return 2;
	}
	printf("smp=%u\nfixtures=%s\ncmdline=%s\nmodules=%s\n", g->smp,
	       g->fixtures, g->cmdline, g->modules ? g->modules : "");
	return 0;
}

/* ==== host role ============================================================ */

#define HOST_MAX_PORTS		32
#define HOST_KEEP_MAX		(1024 * 1024)
#define HOST_TXBUF		(256 * 1024)
#define HOST_RXBUF		(256 * 1024)
#define HOST_ACCEPT_MS		120000
#define HOST_CHR_MS		10000
#define HOST_QMP_MS		30000
#define HOST_MAX_DELETED	32

enum rx_mode { RX_OFF, RX_SHA, RX_COUNT, RX_KEEP, RX_ECHO };
enum pending_kind { PEND_NONE, PEND_WAIT, PEND_FIND };

/* QEMU's end of one chardev socket, as the host program sees it. */
struct hport {
	char id[64];
	int fd;			/* our connection, -1 if none */
	/* host -> guest */
	bool tx_on;
	bool tx_count;		/* zeros, not hashed: for the benchmark */
	bool tx_fill;		/* stop at the first write the socket refuses */
	int tx_err;
	uint64_t tx_total, tx_done;
	struct stream tx_st;
	struct sha1 tx_sha;
	uint8_t *tx_buf;
	size_t tx_len, tx_off;
	/* guest -> host */
	enum rx_mode rx_mode;
	int rx_err;
	bool rx_eof;
	uint64_t rx_total;	/* 0: no limit */
	uint64_t rx_done;
	struct sha1 rx_sha;
	char *keep;		/* RX_KEEP: the last bytes received */
	size_t keep_len;
};

struct host {
	char dir[108];
	int lfd, cfd, qfd;
	int vlfd;		/* AF_VSOCK listener, -1 if none */
	char cin[CTL_LINE_MAX];
	size_t cin_len;
	char qin[256 * 1024];
	size_t qin_len;
	unsigned int qmp_seq;
	struct hport ports[HOST_MAX_PORTS];
	unsigned int nports;
	char deleted[HOST_MAX_DELETED][64];
	unsigned int ndeleted;
	/* the one request whose reply waits for a condition */
	enum pending_kind pend;
	char pend_tag[64];
	struct hport *pend_port;
	uint64_t pend_rx;
	uint8_t pend_needle[512];
	size_t pend_needle_len;
	int64_t pend_deadline;
	int64_t start_ms;
	bool quit;
	/* key=value,... added to every virtio-serial-pci device_add */
	const char *devopts;
};

static void hlog(struct host *h, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[%7.3f] ", (now_ms() - h->start_ms) / 1000.0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int write_all_fd(int fd, const void *buf, size_t len, int timeout_ms)
{
	const char *p = buf;
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	ssize_t r;

	while (len) {
		r = write(fd, p, len);
		if (r > 0) {
			p += r;
			len -= r;
			continue;
		}
		if (r < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (!remaining_ms(deadline))
			return -ETIMEDOUT;
		poll(&pfd, 1, remaining_ms(deadline));
	}
	return 0;
}

static void host_reply(struct host *h, const char *tag, const char *fmt, ...)
{
	char line[CTL_LINE_MAX];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "%s ", tag);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	hlog(h, "< %.*s", n > 200 ? 200 : n, line);
	line[n++] = '\n';
	if (write_all_fd(h->cfd, line, n, 10000))
		hlog(h, "cannot write the reply");
}

/* -- a minimal reader of QMP's JSON: top-level keys and string values -- */

/* Skips a JSON value starting at s; returns the first character after it. */
static const char *json_skip(const char *s)
{
	int depth = 0;
	bool str = false;

	for (; *s; s++) {
		if (str) {
			if (*s == '\\' && s[1])
				s++;
			else if (*s == '"') {
				str = false;
				if (!depth)
					return s + 1;
			}
			continue;
		}
		switch (*s) {
		case '"':
			str = true;
			break;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (--depth <= 0)
				return depth < 0 ? s : s + 1;
			break;
		case ',':
			if (!depth)
				return s;
			break;
		}
	}
	return s;
}

static const char *json_ws(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	return s;
}

/* The value of key in the object at obj (which starts with '{'), or NULL. */
static const char *json_get(const char *obj, const char *key)
{
	const char *s = json_ws(obj), *k;
	size_t klen = strlen(key);

	if (*s != '{')
		return NULL;
	s = json_ws(s + 1);
	while (*s == '"') {
		k = s + 1;
		s = json_skip(s);
		if ((size_t)(s - k - 1) == klen && !strncmp(k, key, klen)) {
			s = json_ws(s);
			return *s == ':' ? json_ws(s + 1) : NULL;
		}
		s = json_ws(s);
		if (*s != ':')
			return NULL;
		s = json_skip(json_ws(s + 1));
		s = json_ws(s);
		if (*s != ',')
			return NULL;
		s = json_ws(s + 1);
	}
	return NULL;
}

/* Copies the JSON string at s (unescaping \" and \\ only). */
static bool json_str(const char *s, char *out, size_t size)
{
	size_t n = 0;

	if (!s || *s != '"' || !size)
		return false;
	for (s++; *s && *s != '"'; s++) {
		if (*s == '\\' && s[1])
			s++;
		if (n + 1 < size)
			out[n++] = *s;
	}
	out[n] = '\0';
	return *s == '"';
}

static bool json_get_str(const char *obj, const char *key, char *out,
			 size_t size)
{
	return json_str(json_get(obj, key), out, size);
}

/* Appends s to out as a JSON string. */
static void json_put_str(char *out, size_t size, const char *s)
{
	size_t n = strlen(out);

	if (n + 1 < size)
		out[n++] = '"';
	for (; *s && n + 3 < size; s++) {
		if (*s == '"' || *s == '\\')
			out[n++] = '\\';
		out[n++] = *s;
	}
	if (n + 1 < size)
		out[n++] = '"';
	out[n] = '\0';
}

/* -- QMP -- */

static void qmp_note_event(struct host *h, const char *line)
{
	char ev[64], dev[64];
	const char *data;

	if (!json_get_str(line, "event", ev, sizeof(ev)))
		return;
	hlog(h, "qmp event %s", ev);
	if (strcmp(ev, "DEVICE_DELETED"))
		return;
	data = json_get(line, "data");
	if (!data || !json_get_str(data, "device", dev, sizeof(dev)))
		return;
	if (h->ndeleted == HOST_MAX_DELETED) {
		memmove(h->deleted[0], h->deleted[1],
			sizeof(h->deleted[0]) * (HOST_MAX_DELETED - 1));
		h->ndeleted--;
	}
	snprintf(h->deleted[h->ndeleted++], sizeof(h->deleted[0]), "%s", dev);
}

/* Reads one line from QMP into line; returns its length or -errno. */
static int qmp_read_line(struct host *h, char *line, size_t size,
			 int64_t deadline)
{
	struct pollfd pfd = { .fd = h->qfd, .events = POLLIN };
	char *nl;
	size_t n;
	ssize_t r;

	for (;;) {
		nl = memchr(h->qin, '\n', h->qin_len);
		if (nl) {
			n = nl - h->qin + 1;
			snprintf(line, size, "%.*s", (int)(n - 1), h->qin);
			memmove(h->qin, h->qin + n, h->qin_len - n);
			h->qin_len -= n;
			return strlen(line);
		}
		if (h->qin_len == sizeof(h->qin))
			h->qin_len = 0;		/* an absurd line: drop it */
		if (poll(&pfd, 1, remaining_ms(deadline)) <= 0)
			return -ETIMEDOUT;
		r = read(h->qfd, h->qin + h->qin_len, sizeof(h->qin) - h->qin_len);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (r > 0)
			h->qin_len += r;
	}
}

static int unix_connect(const char *path, bool nonblock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, type = SOCK_STREAM | SOCK_CLOEXEC;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, type | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int qmp_call(struct host *h, const char *cmd, const char *args,
		    char *resp, size_t size);

static int qmp_open(struct host *h)
{
	char path[160], line[4096];
	int64_t deadline = now_ms() + HOST_QMP_MS;
	int fd;

	snprintf(path, sizeof(path), "%s/qmp.sock", h->dir);
	for (;;) {
		fd = unix_connect(path, false);
		if (fd >= 0)
			break;
		if (!remaining_ms(deadline))
			return fd;
		sleep_ms(50);
	}
	h->qfd = fd;
	h->qin_len = 0;
	if (qmp_read_line(h, line, sizeof(line), deadline) < 0 ||
	    !json_get(line, "QMP")) {
		close(fd);
		h->qfd = -1;
		return -EPROTO;
	}
	return qmp_call(h, "qmp_capabilities", NULL, NULL, 0);
}

/*
 * Runs a QMP command; on success copies its "return" value to resp.
 * Returns 0, -EREMOTEIO with QEMU's error text in resp, or -errno.
 */
static int qmp_call(struct host *h, const char *cmd, const char *args,
		    char *resp, size_t size)
{
	static char line[256 * 1024];
	char id[32], rid[32], req[CTL_LINE_MAX + 256];
	int64_t deadline = now_ms() + HOST_QMP_MS;
	const char *v;
	int ret;

	if (h->qfd < 0 && strcmp(cmd, "qmp_capabilities")) {
		ret = qmp_open(h);
		if (ret)
			return ret;
	}
	snprintf(id, sizeof(id), "q%u", ++h->qmp_seq);
	snprintf(req, sizeof(req), "{\"execute\":\"%s\"%s%s,\"id\":\"%s\"}\n",
		 cmd, args ? ",\"arguments\":" : "", args ? args : "", id);
	ret = write_all_fd(h->qfd, req, strlen(req), HOST_QMP_MS);
	if (ret)
		return ret;
	for (;;) {
		ret = qmp_read_line(h, line, sizeof(line), deadline);
		if (ret < 0)
			return ret;
		if (json_get(line, "event")) {
			qmp_note_event(h, line);
			continue;
		}
		if (!json_get_str(line, "id", rid, sizeof(rid)) || strcmp(rid, id))
			continue;
		v = json_get(line, "return");
		if (v) {
			if (resp)
				snprintf(resp, size, "%.*s",
					 (int)(json_skip(v) - v), v);
			return 0;
		}
		v = json_get(line, "error");
		if (resp && !(v && json_get_str(v, "desc", resp, size)))
			snprintf(resp, size, "QMP error");
		return -EREMOTEIO;
	}
}

/* Waits for a DEVICE_DELETED event of device id. */
static int qmp_wait_deleted(struct host *h, const char *id, int timeout_ms)
{
	static char line[256 * 1024];
	int64_t deadline = now_ms() + timeout_ms;
	unsigned int i;
	int ret;

	for (;;) {
		for (i = 0; i < h->ndeleted; i++)
			if (!strcmp(h->deleted[i], id))
				return 0;
		ret = qmp_read_line(h, line, sizeof(line), deadline);
		if (ret < 0)
			return ret;
		if (json_get(line, "event"))
			qmp_note_event(h, line);
	}
}

/*
 * Whether QEMU has a client on chardev id: its query-chardev filename
 * starts with "disconnected:" while it has none.
 */
static int chardev_connected(struct host *h, const char *id)
{
	static char resp[64 * 1024];
	char obj[4096], label[64], file[512];
	const char *s, *e;
	int ret;

	ret = qmp_call(h, "query-chardev", NULL, resp, sizeof(resp));
	if (ret)
		return ret;
	for (s = strchr(resp, '{'); s; s = strchr(e, '{')) {
		e = json_skip(s);
		snprintf(obj, sizeof(obj), "%.*s", (int)(e - s), s);
		if (!json_get_str(obj, "label", label, sizeof(label)) ||
		    strcmp(label, id))
			continue;
		if (!json_get_str(obj, "filename", file, sizeof(file)))
			return -EPROTO;
		return strncmp(file, "disconnected:", 13) != 0;
	}
	return -ENOENT;
}

/* Waits until QEMU has seen our connect or close of chardev id. */
static int chardev_wait(struct host *h, const char *id, bool connected)
{
	int64_t deadline = now_ms() + HOST_CHR_MS;
	int ret;

	for (;;) {
		ret = chardev_connected(h, id);
		if (ret < 0)
			return ret;
		if (ret == connected)
			return 0;
		if (!remaining_ms(deadline))
			return -ETIMEDOUT;
		sleep_ms(5);
	}
}

/* -- ports -- */

static struct hport *hport_get(struct host *h, const char *id, bool create)
{
	struct hport *p;
	unsigned int i;

	for (i = 0; i < h->nports; i++)
		if (!strcmp(h->ports[i].id, id))
			return &h->ports[i];
	if (!create || h->nports == HOST_MAX_PORTS || strlen(id) >= sizeof(p->id))
		return NULL;
	p = &h->ports[h->nports++];
	memset(p, 0, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%s", id);
	p->fd = -1;
	return p;
}

static void hport_stop(struct hport *p)
{
	p->tx_on = false;
	p->tx_err = 0;
	p->tx_total = p->tx_done = 0;
	p->tx_len = p->tx_off = 0;
	p->rx_mode = RX_OFF;
	p->rx_err = 0;
	p->rx_eof = false;
	p->rx_total = p->rx_done = 0;
	free(p->keep);
	p->keep = NULL;
	p->keep_len = 0;
}

static void hport_close(struct hport *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	hport_stop(p);
}

static int hport_connect(struct host *h, struct hport *p)
{
	char path[sizeof(h->dir) + sizeof(p->id) + 8];
	int fd;

	if (p->fd >= 0)
		return -EISCONN;
	snprintf(path, sizeof(path), "%s/%s.sock", h->dir, p->id);
	fd = unix_connect(path, true);
	if (fd < 0)
		return fd;
	hport_stop(p);
	p->fd = fd;
	return chardev_wait(h, p->id, true);
}

static int hport_disconnect(struct host *h, struct hport *p)
{
	if (p->fd < 0)
		return -ENOTCONN;
	hport_close(p);
	return chardev_wait(h, p->id, false);
}

static void keep_append(struct hport *p, const uint8_t *data, size_t len)
{
	size_t drop;

	if (!p->keep) {
		p->keep = malloc(HOST_KEEP_MAX);
		if (!p->keep)
			return;
	}
	if (len > HOST_KEEP_MAX) {
		data += len - HOST_KEEP_MAX;
		len = HOST_KEEP_MAX;
	}
	if (p->keep_len + len > HOST_KEEP_MAX) {
		drop = p->keep_len + len - HOST_KEEP_MAX;
		memmove(p->keep, p->keep + drop, p->keep_len - drop);
		p->keep_len -= drop;
	}
	memcpy(p->keep + p->keep_len, data, len);
	p->keep_len += len;
}

static void hport_rx(struct host *h, struct hport *p)
{
	static uint8_t buf[HOST_RXBUF];
	ssize_t r;
	int i;

	for (i = 0; i < 16; i++) {
		r = read(p->fd, buf, sizeof(buf));
		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				p->rx_err = errno;
				hlog(h, "%s: read: %s", p->id, strerror(errno));
				close(p->fd);
				p->fd = -1;
			}
			return;
		}
		if (r == 0) {
			/* QEMU closed its end (the chardev went away). */
			hlog(h, "%s: end of file from QEMU", p->id);
			p->rx_eof = true;
			close(p->fd);
			p->fd = -1;
			return;
		}
		if (p->rx_total && p->rx_done + r > p->rx_total && !p->rx_err) {
			hlog(h, "%s: %llu bytes more than the %llu expected",
			     p->id, (unsigned long long)(p->rx_done + r - p->rx_total),
			     (unsigned long long)p->rx_total);
			p->rx_err = EOVERFLOW;
		}
		p->rx_done += r;
		if (p->rx_mode == RX_SHA)
			sha1_update(&p->rx_sha, buf, r);
		else if (p->rx_mode == RX_KEEP)
			keep_append(p, buf, r);
		else if (p->rx_mode == RX_ECHO && write(p->fd, buf, r) != r &&
			 !p->rx_err) {
			/* Echoes are a few bytes: a short write is a failure. */
			hlog(h, "%s: echo: %s", p->id, strerror(errno));
			p->rx_err = EIO;
		}
	}
}

/*
 * Whether a write would be taken now: a Unix socket stops saying so while
 * more than a quarter of its send buffer is in flight, before a write
 * would fail.
 */
static bool fd_writable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT);
}

static void hport_tx(struct host *h, struct hport *p)
{
	ssize_t r;
	size_t n;
	int i;

	for (i = 0; i < 16 && p->tx_done < p->tx_total; i++) {
		if (p->tx_off == p->tx_len) {
			n = p->tx_total - p->tx_done;
			if (n > HOST_TXBUF)
				n = HOST_TXBUF;
			if (!p->tx_count) {
				stream_fill(&p->tx_st, p->tx_buf, n);
				sha1_update(&p->tx_sha, p->tx_buf, n);
			}
			p->tx_len = n;
			p->tx_off = 0;
		}
		r = write(p->fd, p->tx_buf + p->tx_off, p->tx_len - p->tx_off);
		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				p->tx_err = errno;
				p->tx_on = false;
				hlog(h, "%s: write: %s", p->id, strerror(errno));
			} else if (errno == EAGAIN && p->tx_fill) {
				p->tx_on = false;
			}
			return;
		}
		p->tx_off += r;
		p->tx_done += r;
	}
	if (p->tx_fill && p->tx_on && !fd_writable(p->fd))
		p->tx_on = false;
}

/* -- pending replies (WAIT, FIND) -- */

static bool wait_done(struct hport *p, uint64_t want_rx)
{
	bool rx_ok, tx_ok;

	if (p->rx_err || p->tx_err || p->rx_eof || p->fd < 0)
		return true;
	if (p->rx_mode == RX_OFF)
		rx_ok = true;
	else if (want_rx)
		rx_ok = p->rx_done >= want_rx;
	else
		rx_ok = p->rx_total && p->rx_done >= p->rx_total;
	tx_ok = !p->tx_on || p->tx_done >= p->tx_total;
	return rx_ok && tx_ok;
}

static void reply_wait(struct host *h, const char *tag, struct hport *p,
		       bool timed_out)
{
	char rxhex[41] = "-", txhex[41] = "-";
	struct sha1 s;
	const char *err = NULL;

	if (p->rx_mode == RX_SHA) {
		s = p->rx_sha;
		sha1_hex_final(&s, rxhex);
	}
	if ((p->tx_on || p->tx_total) && !p->tx_count) {
		s = p->tx_sha;
		sha1_hex_final(&s, txhex);
	}
	if (timed_out)
		err = "timeout";
	else if (p->rx_err)
		err = strerror(p->rx_err);
	else if (p->tx_err)
		err = strerror(p->tx_err);
	else if (p->rx_eof)
		err = "eof";
	else if (p->fd < 0)
		err = "not-connected";
	if (err)
		host_reply(h, tag, "ERR %s rx=%llu tx=%llu", err,
			   (unsigned long long)p->rx_done,
			   (unsigned long long)p->tx_done);
	else
		host_reply(h, tag, "OK rx=%llu rxsha=%s tx=%llu txsha=%s",
			   (unsigned long long)p->rx_done, rxhex,
			   (unsigned long long)p->tx_done, txhex);
}

static bool find_done(struct host *h)
{
	struct hport *p = h->pend_port;

	return p->keep && p->keep_len >= h->pend_needle_len &&
	       memmem(p->keep, p->keep_len, h->pend_needle,
		      h->pend_needle_len);
}

static void pending_check(struct host *h, bool abort_it)
{
	bool expired = !remaining_ms(h->pend_deadline);

	if (h->pend == PEND_WAIT) {
		if (wait_done(h->pend_port, h->pend_rx) || expired || abort_it) {
			reply_wait(h, h->pend_tag, h->pend_port, !wait_done(h->pend_port,
				   h->pend_rx));
			h->pend = PEND_NONE;
		}
	} else if (h->pend == PEND_FIND) {
		if (find_done(h)) {
			host_reply(h, h->pend_tag, "OK");
			h->pend = PEND_NONE;
		} else if (expired || abort_it || h->pend_port->fd < 0) {
			host_reply(h, h->pend_tag, "ERR not-found (%zu bytes seen)",
				   h->pend_port->keep_len);
			h->pend = PEND_NONE;
		}
	}
}

/* -- requests -- */

struct request {
	char *tag;
	char *verb;
	char *argv[8];
	int argc;
};

static struct hport *req_port(struct host *h, struct request *rq, bool create)
{
	struct hport *p;

	if (rq->argc < 1) {
		host_reply(h, rq->tag, "ERR missing port");
		return NULL;
	}
	p = hport_get(h, rq->argv[0], create);
	if (!p)
		host_reply(h, rq->tag, "ERR unknown port %s", rq->argv[0]);
	return p;
}

static void reply_status(struct host *h, struct request *rq, int ret,
			 const char *detail)
{
	if (!ret)
		host_reply(h, rq->tag, "OK");
	else
		host_reply(h, rq->tag, "ERR %s%s%s", strerror(-ret),
			   detail ? ": " : "", detail ? detail : "");
}

static void cmd_reset(struct host *h, struct request *rq)
{
	char closed[1024] = "";
	unsigned int i;
	int ret = 0, r;

	if (h->pend != PEND_NONE)
		pending_check(h, true);
	for (i = 0; i < h->nports; i++) {
		if (h->ports[i].fd < 0) {
			hport_stop(&h->ports[i]);
			continue;
		}
		r = hport_disconnect(h, &h->ports[i]);
		if (r && r != -ENOENT && !ret)
			ret = r;
		if (strlen(closed) + strlen(h->ports[i].id) + 2 < sizeof(closed)) {
			strcat(closed, " ");
			strcat(closed, h->ports[i].id);
		}
	}
	if (ret)
		reply_status(h, rq, ret, "disconnecting");
	else
		host_reply(h, rq->tag, "OK%s", closed);
}

static void cmd_connect(struct host *h, struct request *rq)
{
	struct hport *p = req_port(h, rq, true);

	if (p)
		reply_status(h, rq, hport_connect(h, p), rq->argv[0]);
}

static void cmd_disconnect(struct host *h, struct request *rq)
{
	struct hport *p = req_port(h, rq, false);

	if (p)
		reply_status(h, rq, hport_disconnect(h, p), rq->argv[0]);
}

/*
 * SEND id bytes seed [count|fill]: stream bytes to the guest in the
 * background; "count" sends zeros and hashes nothing, so that a benchmark
 * measures the channel, not this program; "fill" ends the stream once
 * the socket, given a large send buffer, takes no more for now (a WAIT
 * then tells how much went).
 */
static void cmd_send(struct host *h, struct request *rq)
{
	static const int fill_sndbuf = 8 * 1024 * 1024;
	struct hport *p = req_port(h, rq, false);

	if (!p)
		return;
	if (rq->argc < 3 || p->fd < 0) {
		host_reply(h, rq->tag, "ERR usage or not connected");
		return;
	}
	if (!p->tx_buf)
		p->tx_buf = malloc(HOST_TXBUF);
	p->tx_count = rq->argc > 3 && !strcmp(rq->argv[3], "count");
	p->tx_fill = rq->argc > 3 && !strcmp(rq->argv[3], "fill");
	/* Room for more than a guest's receive buffers hold (root only). */
	if (p->tx_fill)
		setsockopt(p->fd, SOL_SOCKET, SO_SNDBUFFORCE, &fill_sndbuf,
			   sizeof(fill_sndbuf));
	if (p->tx_buf && p->tx_count)
		memset(p->tx_buf, 0, HOST_TXBUF);
	p->tx_total = strtoull(rq->argv[1], NULL, 0);
	p->tx_done = 0;
	p->tx_len = p->tx_off = 0;
	p->tx_err = 0;
	stream_init(&p->tx_st, strtoull(rq->argv[2], NULL, 0));
	sha1_init(&p->tx_sha);
	p->tx_on = p->tx_buf != NULL;
	reply_status(h, rq, p->tx_on ? 0 : -ENOMEM, NULL);
}

/* RECV id bytes sha|count|keep: take what the guest writes (0: no limit). */
static void cmd_recv(struct host *h, struct request *rq)
{
	struct hport *p = req_port(h, rq, false);
	const char *mode;

	if (!p)
		return;
	if (rq->argc < 3 || p->fd < 0) {
		host_reply(h, rq->tag, "ERR usage or not connected");
		return;
	}
	mode = rq->argv[2];
	p->rx_total = strtoull(rq->argv[1], NULL, 0);
	p->rx_done = 0;
	p->rx_err = 0;
	p->rx_eof = false;
	sha1_init(&p->rx_sha);
	p->keep_len = 0;
	if (!strcmp(mode, "sha"))
		p->rx_mode = RX_SHA;
	else if (!strcmp(mode, "count"))
		p->rx_mode = RX_COUNT;
	else if (!strcmp(mode, "echo"))
		p->rx_mode = RX_ECHO;
	else
		p->rx_mode = RX_KEEP;
	host_reply(h, rq->tag, "OK");
}

/* WAIT id ms [rxbytes]: answer once the port's transfers are complete. */
static void cmd_wait(struct host *h, struct request *rq)
{
	struct hport *p = req_port(h, rq, false);

	if (!p)
		return;
	if (rq->argc < 2) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	h->pend = PEND_WAIT;
	snprintf(h->pend_tag, sizeof(h->pend_tag), "%s", rq->tag);
	h->pend_port = p;
	h->pend_rx = rq->argc > 2 ? strtoull(rq->argv[2], NULL, 0) : 0;
	h->pend_deadline = now_ms() + atoi(rq->argv[1]);
	pending_check(h, false);
}

/* STAT id: progress so far. */
static void cmd_stat(struct host *h, struct request *rq)
{
	struct hport *p = req_port(h, rq, false);

	if (p)
		host_reply(h, rq->tag, "OK rx=%llu tx=%llu connected=%d",
			   (unsigned long long)p->rx_done,
			   (unsigned long long)p->tx_done, p->fd >= 0);
}

/*
 * What /proc/stat counts so far: CPU ticks, context switches; and from
 * /proc/interrupts, the interrupts of virtio devices (timer ticks and
 * IPIs would drown them in the total).
 */
struct cpu_stat {
	unsigned long long busy, total, virtio_irqs, ctxt;
};

static unsigned long long read_virtio_irqs(void)
{
	unsigned long long sum = 0, n;
	char line[512], *p, *end;
	FILE *f;

	f = fopen("/proc/interrupts", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strstr(line, "virtio"))
			continue;
		p = strchr(line, ':');
		if (!p)
			continue;
		/* Per-CPU counts follow the number, then the chip's name. */
		for (p++;; p = end) {
			n = strtoull(p, &end, 10);
			if (end == p)
				break;
			sum += n;
		}
	}
	fclose(f);
	return sum;
}

static int read_cpu_stat(struct cpu_stat *st)
{
	unsigned long long v[8] = { 0 };
	char line[256];
	int n = 0, i;
	FILE *f;

	memset(st, 0, sizeof(*st));
	f = fopen("/proc/stat", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "cpu ", 4))
			n = sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
				   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
				   &v[6], &v[7]);
		else if (!strncmp(line, "ctxt ", 5))
			sscanf(line, "ctxt %llu", &st->ctxt);
	}
	fclose(f);
	if (n != 8)
		return -EPROTO;
	for (i = 0; i < 8; i++)
		st->total += v[i];
	/* Busy is everything but idle (v[3]) and iowait (v[4]). */
	st->busy = st->total - v[3] - v[4];
	st->virtio_irqs = read_virtio_irqs();
	return 0;
}

/*
 * CPU: CPU time this host (all of it: QEMU, the kernel, this program) has
 * spent busy so far, and in all, in clock ticks of hz per second.
 */
static void cmd_cpu(struct host *h, struct request *rq)
{
	struct cpu_stat st;

	if (read_cpu_stat(&st)) {
		host_reply(h, rq->tag, "ERR cannot read /proc/stat");
		return;
	}
	host_reply(h, rq->tag, "OK busy=%llu total=%llu hz=%ld", st.busy,
		   st.total, sysconf(_SC_CLK_TCK));
}

/* VSOCK_LISTEN port: listen for the guest on AF_VSOCK. */
static void cmd_vsock_listen(struct host *h, struct request *rq)
{
	struct sockaddr_vm a = {
		.svm_family = AF_VSOCK,
		.svm_cid = VMADDR_CID_ANY,
	};

	if (rq->argc < 1) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	if (h->vlfd >= 0)
		close(h->vlfd);
	a.svm_port = strtoul(rq->argv[0], NULL, 0);
	h->vlfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h->vlfd < 0 || bind(h->vlfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(h->vlfd, 1)) {
		reply_status(h, rq, -errno, "AF_VSOCK listen");
		if (h->vlfd >= 0)
			close(h->vlfd);
		h->vlfd = -1;
		return;
	}
	host_reply(h, rq->tag, "OK");
}

/*
 * VSOCK_ACCEPT ms: take the guest's connection (made after VSOCK_LISTEN
 * answered) and serve it as the port "vsock", like a chardev's socket.
 */
static void cmd_vsock_accept(struct host *h, struct request *rq)
{
	struct pollfd pfd = { .events = POLLIN };
	struct hport *p = hport_get(h, "vsock", true);
	int fd;

	if (rq->argc < 1 || h->vlfd < 0 || !p) {
		host_reply(h, rq->tag, "ERR usage, no listener or no port");
		return;
	}
	pfd.fd = h->vlfd;
	if (poll(&pfd, 1, atoi(rq->argv[0])) != 1) {
		host_reply(h, rq->tag, "ERR no connection from the guest");
		return;
	}
	fd = accept4(h->vlfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		reply_status(h, rq, -errno, "accept");
		return;
	}
	hport_close(p);
	p->fd = fd;
	host_reply(h, rq->tag, "OK");
}

/* PUT id hex: write these bytes to the guest now. */
static void cmd_put(struct host *h, struct request *rq)
{
	struct hport *p = req_port(h, rq, false);
	uint8_t data[CTL_LINE_MAX / 2];
	ssize_t n;

	if (!p)
		return;
	if (rq->argc < 2 || p->fd < 0) {
		host_reply(h, rq->tag, "ERR usage or not connected");
		return;
	}
	n = hex_decode(rq->argv[1], data, sizeof(data));
	if (n < 0) {
		host_reply(h, rq->tag, "ERR bad hex");
		return;
	}
	reply_status(h, rq, write_all_fd(p->fd, data, n, 10000), NULL);
}

/* FIND id hex ms: answer once the guest has written these bytes. */
static void cmd_find(struct host *h, struct request *rq)
{
	struct hport *p = req_port(h, rq, false);
	ssize_t n;

	if (!p)
		return;
	if (rq->argc < 3 || p->fd < 0) {
		host_reply(h, rq->tag, "ERR usage or not connected");
		return;
	}
	n = hex_decode(rq->argv[1], h->pend_needle, sizeof(h->pend_needle));
	if (n <= 0) {
		host_reply(h, rq->tag, "ERR bad hex");
		return;
	}
	if (p->rx_mode != RX_KEEP) {
		p->rx_mode = RX_KEEP;
		p->rx_total = 0;
	}
	h->pend = PEND_FIND;
	snprintf(h->pend_tag, sizeof(h->pend_tag), "%s", rq->tag);
	h->pend_port = p;
	h->pend_needle_len = n;
	h->pend_deadline = now_ms() + atoi(rq->argv[2]);
	pending_check(h, false);
}

static void cmd_chardev_add(struct host *h, struct request *rq)
{
	char args[1024], path[sizeof(h->dir) + 80], err[512] = "";

	if (rq->argc < 1) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	snprintf(path, sizeof(path), "%s/%s.sock", h->dir, rq->argv[0]);
	snprintf(args, sizeof(args), "{\"id\":");
	json_put_str(args, sizeof(args), rq->argv[0]);
	strcat(args, ",\"backend\":{\"type\":\"socket\",\"data\":{\"addr\":"
	       "{\"type\":\"unix\",\"data\":{\"path\":");
	json_put_str(args, sizeof(args), path);
	strcat(args, "}},\"server\":true,\"wait\":false}}}");
	reply_status(h, rq, qmp_call(h, "chardev-add", args, err, sizeof(err)),
		     err);
}

static void cmd_chardev_del(struct host *h, struct request *rq)
{
	char args[256] = "{\"id\":", err[512] = "";
	struct hport *p;

	if (rq->argc < 1) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	p = hport_get(h, rq->argv[0], false);
	if (p)
		hport_close(p);
	json_put_str(args, sizeof(args), rq->argv[0]);
	strcat(args, "}");
	reply_status(h, rq, qmp_call(h, "chardev-remove", args, err,
				     sizeof(err)), err);
}

/*
 * ATTACH CHARDEV file|null|socket:PATH: runs the tool that attaches a port
 * of the running device by hand (tools/vserial/vserial-attach, found in
 * $VSERIAL_ATTACH) on QEMU's second monitor, DIR/tool-qmp.sock; "file"
 * is DIR/CHARDEV.out, made anew.  Replies "ERR SKIP ..." without the tool.
 */
static void cmd_attach(struct host *h, struct request *rq)
{
	char qmp[sizeof(h->dir) + 16], spec[sizeof(h->dir) + 128];
	const char *tool = getenv("VSERIAL_ATTACH");
	char out[512];
	size_t len = 0;
	int pfd[2], status = 0;
	ssize_t n;
	pid_t pid;

	if (rq->argc < 2 || strchr(rq->argv[0], '/')) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	if (!tool || access(tool, X_OK)) {
		host_reply(h, rq->tag, "ERR SKIP no vserial-attach (VSERIAL_ATTACH unset)");
		return;
	}
	snprintf(qmp, sizeof(qmp), "%s/tool-qmp.sock", h->dir);
	if (!strcmp(rq->argv[1], "file")) {
		snprintf(spec, sizeof(spec), "file:%s/%s.out", h->dir, rq->argv[0]);
		unlink(spec + 5);
	} else {
		snprintf(spec, sizeof(spec), "%s", rq->argv[1]);
	}
	if (pipe2(pfd, O_CLOEXEC)) {
		reply_status(h, rq, -errno, "pipe");
		return;
	}
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execl(tool, tool, "-q", qmp, "attach", rq->argv[0], spec,
		      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while (pid > 0 && len + 1 < sizeof(out) &&
	       (n = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += n;
	out[len] = '\0';
	close(pfd[0]);
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		reply_status(h, rq, -ECHILD, tool);
		return;
	}
	for (n = 0; n < (ssize_t)len; n++)
		if (out[n] == '\n')
			out[n] = ' ';
	hlog(h, "%s %s %s: status %d %s", tool, rq->argv[0], spec, status, out);
	if (WIFEXITED(status) && !WEXITSTATUS(status))
		host_reply(h, rq->tag, "OK");
	else
		host_reply(h, rq->tag, "ERR exit %d: %s", WIFEXITED(status) ?
			   WEXITSTATUS(status) : -1, out);
}

/*
 * FILE_SHA CHARDEV LEN TIMEOUT_MS: waits until DIR/CHARDEV.out holds LEN
 * bytes; "OK size=N sha=SHA1-of-the-first-LEN".  Blocks the host program
 * for at most TIMEOUT_MS (10 s), which only file-port tests use.
 */
static void cmd_file_sha(struct host *h, struct request *rq)
{
	char path[sizeof(h->dir) + 80], hex[41], buf[4096];
	unsigned long long want, got;
	int64_t deadline;
	struct sha1 sha;
	struct stat st;
	ssize_t n;
	int fd;

	if (rq->argc < 3 || strchr(rq->argv[0], '/')) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	snprintf(path, sizeof(path), "%s/%s.out", h->dir, rq->argv[0]);
	want = strtoull(rq->argv[1], NULL, 0);
	deadline = now_ms() + (atoi(rq->argv[2]) < 10000 ? atoi(rq->argv[2]) : 10000);
	while (stat(path, &st) || (unsigned long long)st.st_size < want) {
		if (!remaining_ms(deadline)) {
			host_reply(h, rq->tag, "ERR timed out: %s has %lld bytes", path,
				   stat(path, &st) ? -1LL : (long long)st.st_size);
			return;
		}
		sleep_ms(10);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		reply_status(h, rq, -errno, path);
		return;
	}
	sha1_init(&sha);
	for (got = 0; got < want; got += n) {
		n = read(fd, buf, want - got < sizeof(buf) ? want - got : sizeof(buf));
		if (n <= 0)
			break;
		sha1_update(&sha, buf, n);
	}
	close(fd);
	sha1_hex_final(&sha, hex);
	host_reply(h, rq->tag, "OK size=%lld sha=%s", (long long)st.st_size, hex);
}

/*
 * RESIZE PORT COLS ROWS: sets the console-size of virtconsole port-PORT
 * (QMP qom-set), which QEMU with the vhost-serial series passes on to the
 * guest.  QEMU without it answers that the property is not found.
 */
static void cmd_resize(struct host *h, struct request *rq)
{
	char args[256] = "{\"path\":", path[96], size[32], err[512] = "";

	if (rq->argc < 3) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	snprintf(path, sizeof(path), "/machine/peripheral/port-%s", rq->argv[0]);
	snprintf(size, sizeof(size), "%ux%u", (unsigned int)atoi(rq->argv[1]),
		 (unsigned int)atoi(rq->argv[2]));
	json_put_str(args, sizeof(args), path);
	strcat(args, ",\"property\":\"console-size\",\"value\":");
	json_put_str(args, sizeof(args), size);
	strcat(args, "}");
	reply_status(h, rq, qmp_call(h, "qom-set", args, err, sizeof(err)),
		     err);
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* DEVICE_ADD key=value,...: device_add; numbers and on/off typed. */
static void cmd_device_add(struct host *h, struct request *rq)
{
	static char args[CTL_LINE_MAX + 256], props[CTL_LINE_MAX + 256];
	char err[512] = "", *kv, *save = NULL, *eq;
	bool first = true;

	if (rq->argc < 1) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	/* Hot-plugged devices get the same options as the others (vhost=on). */
	if (h->devopts && *h->devopts &&
	    !strncmp(rq->argv[0], "driver=virtio-serial-pci,", 25)) {
		snprintf(props, sizeof(props), "%s,%s", rq->argv[0], h->devopts);
		rq->argv[0] = props;
	}
	strcpy(args, "{");
	for (kv = strtok_r(rq->argv[0], ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		eq = strchr(kv, '=');
		if (!eq) {
			host_reply(h, rq->tag, "ERR bad property %s", kv);
			return;
		}
		*eq = '\0';
		if (!first)
			strcat(args, ",");
		first = false;
		json_put_str(args, sizeof(args), kv);
		strcat(args, ":");
		/* QMP wants JSON types: numbers and booleans unquoted. */
		if (all_digits(eq + 1) && strlen(eq + 1) < 10)
			strcat(args, eq + 1);
		else if (!strcmp(eq + 1, "on") || !strcmp(eq + 1, "off"))
			strcat(args, eq[1] == 'o' && eq[2] == 'n' ? "true" : "false");
		else
			json_put_str(args, sizeof(args), eq + 1);
	}
	strcat(args, "}");
	reply_status(h, rq, qmp_call(h, "device_add", args, err, sizeof(err)),
		     err);
}

/* DEVICE_DEL id ms: device_del, then wait for DEVICE_DELETED. */
static void cmd_device_del(struct host *h, struct request *rq)
{
	char args[256] = "{\"id\":", err[512] = "";
	unsigned int i;
	int ret;

	if (rq->argc < 2) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	for (i = 0; i < h->ndeleted; i++)
		if (!strcmp(h->deleted[i], rq->argv[0]))
			h->deleted[i][0] = '\0';
	json_put_str(args, sizeof(args), rq->argv[0]);
	strcat(args, "}");
	ret = qmp_call(h, "device_del", args, err, sizeof(err));
	if (!ret)
		ret = qmp_wait_deleted(h, rq->argv[0], atoi(rq->argv[1]));
	reply_status(h, rq, ret, err[0] ? err : NULL);
}

/* Where the vhost-serial module lets root make a device misbehave. */
#define VHOST_SERIAL_DEBUGFS	"/sys/kernel/debug/vhost-serial"

/*
 * Finds the debugfs directory of the vhost-serial device that has a port
 * named @name: its "ports" file lists "<id> <name>" lines.
 */
static int inject_dir(const char *name, char *dir, size_t size)
{
	char path[PATH_MAX], line[256];
	struct dirent *e;
	int ret = -ENOENT;
	char *sp;
	FILE *f;
	DIR *d;

	d = opendir(VHOST_SERIAL_DEBUGFS);
	if (!d)
		return -ENOENT;
	while (ret && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), VHOST_SERIAL_DEBUGFS "/%s/ports",
			 e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		while (ret && fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = '\0';
			sp = strchr(line, ' ');
			if (sp && !strcmp(sp + 1, name)) {
				snprintf(dir, size, VHOST_SERIAL_DEBUGFS "/%s",
					 e->d_name);
				ret = 0;
			}
		}
		fclose(f);
	}
	closedir(d);
	return ret;
}

/*
 * INJECT PORTNAME COMMAND...: COMMAND goes to the "inject" file of the
 * vhost-serial device that has port PORTNAME (see drivers/vhost/serial.c);
 * PORTNAME "-" stands for a port without a name (a legacy device's).
 * Without vhost=on there is no such device: QEMU's own device cannot be
 * made to break the protocol, and the reply says SKIP.
 */
static void cmd_inject(struct host *h, struct request *rq)
{
	char dir[PATH_MAX], path[PATH_MAX + 16], cmd[CTL_LINE_MAX] = "";
	ssize_t n;
	int i, fd, ret;

	if (rq->argc < 2) {
		host_reply(h, rq->tag, "ERR usage");
		return;
	}
	ret = inject_dir(strcmp(rq->argv[0], "-") ? rq->argv[0] : "", dir,
			 sizeof(dir));
	if (ret && !(h->devopts && strstr(h->devopts, "vhost=on"))) {
		host_reply(h, rq->tag,
			   "ERR SKIP only a vhost-serial device (vhost=on) can be told to break the protocol");
		return;
	}
	if (ret) {
		reply_status(h, rq, ret, "no vhost-serial device in debugfs has that port");
		return;
	}
	for (i = 1; i < rq->argc; i++) {
		if (i > 1)
			strcat(cmd, " ");
		strcat(cmd, rq->argv[i]);
	}
	snprintf(path, sizeof(path), "%s/inject", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		reply_status(h, rq, -errno, path);
		return;
	}
	n = write(fd, cmd, strlen(cmd));
	ret = n < 0 ? -errno : 0;
	close(fd);
	reply_status(h, rq, ret, cmd);
}

/* HELLO: "OK vserial-host", and " vhost=on" if the devices have it. */
static void cmd_hello(struct host *h, struct request *rq)
{
	bool vhost = h->devopts && strstr(h->devopts, "vhost=on");

	host_reply(h, rq->tag, vhost ? "OK vserial-host vhost=on" :
				       "OK vserial-host");
}

static void cmd_bye(struct host *h, struct request *rq)
{
	host_reply(h, rq->tag, "OK");
	h->quit = true;
}

static const struct {
	const char *verb;
	void (*fn)(struct host *h, struct request *rq);
} host_cmds[] = {
	{ "HELLO", cmd_hello },
	{ "RESET", cmd_reset },
	{ "CONNECT", cmd_connect },
	{ "DISCONNECT", cmd_disconnect },
	{ "SEND", cmd_send },
	{ "RECV", cmd_recv },
	{ "WAIT", cmd_wait },
	{ "STAT", cmd_stat },
	{ "CPU", cmd_cpu },
	{ "VSOCK_LISTEN", cmd_vsock_listen },
	{ "VSOCK_ACCEPT", cmd_vsock_accept },
	{ "PUT", cmd_put },
	{ "FIND", cmd_find },
	{ "CHARDEV_ADD", cmd_chardev_add },
	{ "CHARDEV_DEL", cmd_chardev_del },
	{ "DEVICE_ADD", cmd_device_add },
	{ "DEVICE_DEL", cmd_device_del },
	{ "ATTACH", cmd_attach },
	{ "RESIZE", cmd_resize },
	{ "FILE_SHA", cmd_file_sha },
	{ "INJECT", cmd_inject },
	{ "BYE", cmd_bye },
};

static void host_request(struct host *h, char *line)
{
	struct request rq = { 0 };
	char *save = NULL, *w;
	unsigned int i;

	hlog(h, "> %.200s", line);
	rq.tag = strtok_r(line, " ", &save);
	rq.verb = strtok_r(NULL, " ", &save);
	if (!rq.tag || !rq.verb)
		return;
	while ((w = strtok_r(NULL, " ", &save)) && rq.argc < (int)ARRAY_SIZE(rq.argv))
		rq.argv[rq.argc++] = w;
	/* A new request ends the one still waiting: its test has gone. */
	if (h->pend != PEND_NONE)
		pending_check(h, true);
	for (i = 0; i < ARRAY_SIZE(host_cmds); i++)
		if (!strcmp(host_cmds[i].verb, rq.verb)) {
			host_cmds[i].fn(h, &rq);
			return;
		}
	host_reply(h, rq.tag, "ERR unknown request %s", rq.verb);
}

static int host_read_ctl(struct host *h)
{
	char *nl, line[CTL_LINE_MAX];
	size_t n;
	ssize_t r;

	r = read(h->cfd, h->cin + h->cin_len, sizeof(h->cin) - h->cin_len);
	if (r == 0)
		return -ECONNRESET;
	if (r < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	h->cin_len += r;
	while ((nl = memchr(h->cin, '\n', h->cin_len))) {
		n = nl - h->cin + 1;
		memcpy(line, h->cin, n - 1);
		line[n - 1] = '\0';
		memmove(h->cin, h->cin + n, h->cin_len - n);
		h->cin_len -= n;
		if (n > 1 && line[n - 2] == '\r')
			line[n - 2] = '\0';
		if (line[0])
			host_request(h, line);
	}
	if (h->cin_len == sizeof(h->cin))
		h->cin_len = 0;
	return 0;
}

static int host_listen(struct host *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/ctl.sock", h->dir) >=
	    (int)sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	unlink(sa.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1)) {
		close(fd);
		return -errno;
	}
	return fd;
}

static int host_loop(struct host *h, int64_t deadline)
{
	struct pollfd pfd[HOST_MAX_PORTS + 1];
	struct hport *map[HOST_MAX_PORTS + 1];
	unsigned int i, n;
	int timeout, ret;

	while (!h->quit) {
		if (!remaining_ms(deadline)) {
			hlog(h, "overall timeout");
			return 1;
		}
		n = 0;
		pfd[n].fd = h->cfd;
		pfd[n].events = POLLIN;
		map[n++] = NULL;
		for (i = 0; i < h->nports; i++) {
			struct hport *p = &h->ports[i];

			if (p->fd < 0)
				continue;
			pfd[n].fd = p->fd;
			pfd[n].events = (p->rx_mode != RX_OFF ? POLLIN : 0) |
				(p->tx_on && p->tx_done < p->tx_total ? POLLOUT : 0);
			map[n++] = p;
		}
		timeout = 1000;
		if (h->pend != PEND_NONE && remaining_ms(h->pend_deadline) < timeout)
			timeout = remaining_ms(h->pend_deadline);
		if (poll(pfd, n, timeout) < 0 && errno != EINTR)
			return 1;
		for (i = 1; i < n; i++) {
			struct hport *p = map[i];

			if (pfd[i].revents & POLLIN)
				hport_rx(h, p);
			if (p->fd >= 0 && (pfd[i].revents & POLLOUT))
				hport_tx(h, p);
			if (p->fd >= 0 && (pfd[i].revents & (POLLHUP | POLLERR)) &&
			    !(pfd[i].revents & POLLIN)) {
				hlog(h, "%s: QEMU closed the connection", p->id);
				close(p->fd);
				p->fd = -1;
				p->rx_eof = true;
			}
		}
		if (h->pend != PEND_NONE)
			pending_check(h, false);
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ret = host_read_ctl(h);
			if (ret) {
				hlog(h, "control channel closed: QEMU exited");
				return 0;
			}
		}
	}
	return 0;
}

static int host_main(const char *dir, int timeout_s, const char *devopts)
{
	static struct host h;
	struct pollfd pfd;
	int64_t deadline;
	int ret;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stderr, NULL, _IOLBF, 0);
	h.start_ms = now_ms();
	h.qfd = h.cfd = h.vlfd = -1;
	h.devopts = devopts;
	deadline = h.start_ms + timeout_s * 1000LL;
	if (snprintf(h.dir, sizeof(h.dir), "%s", dir) >= (int)sizeof(h.dir) - 16) {
		fprintf(stderr, "directory name too long: %s\n", dir);
		return 2;
	}
	h.lfd = host_listen(&h);
	if (h.lfd < 0) {
		fprintf(stderr, "cannot listen on %s/ctl.sock: %s\n", dir,
			strerror(-h.lfd));
		return 2;
	}
	hlog(&h, "listening on %s/ctl.sock", dir);
	pfd.fd = h.lfd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, HOST_ACCEPT_MS) != 1) {
		hlog(&h, "QEMU did not connect within %d s", HOST_ACCEPT_MS / 1000);
		return 1;
	}
	h.cfd = accept4(h.lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (h.cfd < 0) {
		hlog(&h, "accept: %s", strerror(errno));
		return 1;
	}
	hlog(&h, "QEMU connected the guest's control UART");
	ret = host_loop(&h, deadline);
	hlog(&h, "done");
	return ret;
}

/* ==== guest role =========================================================== */

static const char *opt_ctl = "/dev/ttyS1";
static const char *opt_driver = "intree";
static const struct group *cur_group;
static uint64_t bulk_bytes = 64 * MiB;
/* --bulk-mib was given: the benchmarks move that much too. */
static bool bulk_given;
static int ctl_fd = -1;
static char ctl_in[CTL_LINE_MAX];
static size_t ctl_in_len;
static unsigned int ctl_seq;
/* The text after OK/ERR of the last host reply, for messages. */
static char host_said[CTL_LINE_MAX];

static int ctl_open(const char *path)
{
	struct termios t;
	int fd;

	fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t);
		t.c_cflag |= CLOCAL | CREAD;
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		cfsetspeed(&t, B115200);
		tcsetattr(fd, TCSANOW, &t);
	}
	return fd;
}

static int ctl_read_line(char *line, size_t size, int64_t deadline)
{
	struct pollfd pfd = { .fd = ctl_fd, .events = POLLIN };
	char *nl;
	size_t n;
	ssize_t r;

	for (;;) {
		nl = memchr(ctl_in, '\n', ctl_in_len);
		if (nl) {
			n = nl - ctl_in + 1;
			snprintf(line, size, "%.*s", (int)(n - 1), ctl_in);
			memmove(ctl_in, ctl_in + n, ctl_in_len - n);
			ctl_in_len -= n;
			return 0;
		}
		if (ctl_in_len == sizeof(ctl_in))
			ctl_in_len = 0;
		if (poll(&pfd, 1, remaining_ms(deadline)) <= 0)
			return -ETIMEDOUT;
		r = read(ctl_fd, ctl_in + ctl_in_len, sizeof(ctl_in) - ctl_in_len);
		if (r < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (r > 0)
			ctl_in_len += r;
	}
}

/*
 * Sends one request to the host and waits for its reply.  Returns 0 for
 * OK, -EREMOTEIO for ERR; host_said holds the rest of the reply.
 */
static int host_vcmd(int timeout_ms, const char *fmt, va_list ap)
{
	static char line[CTL_LINE_MAX], reply[CTL_LINE_MAX];
	const char *rest;
	char tag[32];
	int64_t deadline = now_ms() + timeout_ms;
	size_t tlen;
	int n, ret;

	host_said[0] = '\0';
	if (ctl_fd < 0)
		return -ENOTCONN;
	snprintf(tag, sizeof(tag), "g%d.%u", getpid(), ++ctl_seq);
	n = snprintf(line, sizeof(line), "%s ", tag);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (n >= (int)sizeof(line) - 1)
		return -E2BIG;
	line[n++] = '\n';
	ret = write_all_fd(ctl_fd, line, n, timeout_ms);
	if (ret)
		return ret;
	tlen = strlen(tag);
	for (;;) {
		ret = ctl_read_line(reply, sizeof(reply), deadline);
		if (ret) {
			snprintf(host_said, sizeof(host_said),
				 "no reply to '%.60s'", line);
			return ret;
		}
		if (strncmp(reply, tag, tlen) || reply[tlen] != ' ')
			continue;	/* stale: the reply to an earlier test */
		if (!strncmp(reply + tlen + 1, "OK", 2)) {
			rest = reply + tlen + 3;
			while (*rest == ' ')
				rest++;
			snprintf(host_said, sizeof(host_said), "%s", rest);
			return 0;
		}
		snprintf(host_said, sizeof(host_said), "%s", reply + tlen + 1);
		return -EREMOTEIO;
	}
}

static int __attribute__((format(printf, 2, 3)))
host_cmd_t(int timeout_ms, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = host_vcmd(timeout_ms, fmt, ap);
	va_end(ap);
	return ret;
}

#define HOST(...)	host_cmd_t(CTL_TIMEOUT_MS, __VA_ARGS__)

/* ASSERT that a host request succeeded, showing the host's answer if not. */
#define ASSERT_HOST(...) do {						\
	int __r = HOST(__VA_ARGS__);					\
	ASSERT_EQ(0, __r) TH_LOG("host: %s", host_said);		\
} while (0)

#define EXPECT_HOST(...) do {						\
	int __r = HOST(__VA_ARGS__);					\
	EXPECT_EQ(0, __r) TH_LOG("host: %s", host_said);		\
} while (0)

static int host_hello(int timeout_ms)
{
	return host_cmd_t(timeout_ms, "HELLO");
}

/* Parses "rx=N rxsha=H tx=N txsha=H" of a WAIT reply. */
struct xfer_result {
	unsigned long long rx, tx;
	char rxsha[41], txsha[41];
};

static int host_wait(const char *id, int timeout_ms, uint64_t want_rx,
		     struct xfer_result *res)
{
	int ret;

	ret = host_cmd_t(timeout_ms + 5000, "WAIT %s %d %llu", id, timeout_ms,
			 (unsigned long long)want_rx);
	if (ret)
		return ret;
	memset(res, 0, sizeof(*res));
	if (sscanf(host_said, "rx=%llu rxsha=%40s tx=%llu txsha=%40s",
		   &res->rx, res->rxsha, &res->tx, res->txsha) != 4)
		return -EPROTO;
	return 0;
}

static int host_stat(const char *id, unsigned long long *rx,
		     unsigned long long *tx)
{
	int connected, ret;

	ret = HOST("STAT %s", id);
	if (ret)
		return ret;
	if (sscanf(host_said, "rx=%llu tx=%llu connected=%d", rx, tx,
		   &connected) != 3)
		return -EPROTO;
	return 0;
}

static int host_put(const char *id, const char *text)
{
	char hex[2 * 1024 + 1];

	if (strlen(text) > 1024)
		return -E2BIG;
	hex_encode(text, strlen(text), hex);
	return HOST("PUT %s %s", id, hex);
}

static int host_find(const char *id, const char *text, int timeout_ms)
{
	char hex[2 * 256 + 1];

	if (strlen(text) > 256)
		return -E2BIG;
	hex_encode(text, strlen(text), hex);
	return host_cmd_t(timeout_ms + 5000, "FIND %s %s %d", id, hex,
			  timeout_ms);
}

/* -- kernel log -- */

static bool bad_klog_line(const char *text)
{
	static const char *const words[] = BAD_KLOG_WORDS;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(words); i++)
		if (strstr(text, words[i]))
			return true;
	return false;
}

/*
 * Lines of the kernel log so far that contain @word, or with @word NULL
 * the Oops, WARNING, BUG, ... lines.
 */
static int klog_count(const char *word)
{
	char rec[8192], *text;
	int fd, n = 0;
	ssize_t r;

	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return 0;
	for (;;) {
		r = read(fd, rec, sizeof(rec) - 1);
		if (r < 0) {
			if (errno == EPIPE || errno == EINTR)
				continue;
			break;
		}
		rec[r] = '\0';
		text = strchr(rec, ';');
		if (text && (word ? !!strstr(text + 1, word) :
				    bad_klog_line(text + 1)))
			n++;
	}
	close(fd);
	return n;
}

static int klog_bad(void)
{
	return klog_count(NULL);
}

/* -- sysfs and device nodes -- */

static int read_text(const char *path, char *buf, size_t size)
{
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = read(fd, buf, size - 1);
	close(fd);
	if (r < 0)
		return -errno;
	buf[r] = '\0';
	while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == '\r'))
		buf[--r] = '\0';
	return r;
}

static int write_text(const char *path, const char *text)
{
	ssize_t r;
	int fd;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = write(fd, text, strlen(text));
	close(fd);
	if (r < 0)
		return -errno;
	return r == (ssize_t)strlen(text) ? 0 : -EIO;
}

/* One /sys/class/virtio-ports entry. */
struct vport {
	char sysname[32];	/* vportNpM */
	char dev[48];		/* /dev/vportNpM */
	unsigned int devidx;	/* N: the virtio device's index */
	unsigned int nr;	/* M: the port number */
};

static bool vport_parse(const char *sysname, struct vport *vp)
{
	char tail;

	if (sscanf(sysname, "vport%up%u%c", &vp->devidx, &vp->nr, &tail) != 2)
		return false;
	snprintf(vp->sysname, sizeof(vp->sysname), "%s", sysname);
	snprintf(vp->dev, sizeof(vp->dev), "/dev/%s", sysname);
	return true;
}

/* Finds the port whose sysfs name is name. */
static int find_port_name(const char *name, struct vport *vp)
{
	char path[PATH_MAX], val[4200];
	struct dirent *e;
	DIR *d;
	int ret = -ENOENT;

	d = opendir(SYS_PORTS);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), SYS_PORTS "/%s/name", e->d_name);
		if (read_text(path, val, sizeof(val)) < 0 || strcmp(val, name))
			continue;
		if (vport_parse(e->d_name, vp)) {
			ret = 0;
			break;
		}
	}
	closedir(d);
	return ret;
}

static int find_port(const char *id, struct vport *vp)
{
	char name[128];

	snprintf(name, sizeof(name), PORT_PREFIX "%s", id);
	return find_port_name(name, vp);
}

/*
 * Hot-plug waits.  A kernel uevent wakes the waiter, which then looks at
 * sysfs again; the look is repeated every UEVENT_RECHECK_MS too, since the
 * kernel announces a removal before it takes the sysfs directory away.
 */
#define UEVENT_RECHECK_MS	100

static int uevent_socket(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = 1 };
	int fd;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    NETLINK_KOBJECT_UEVENT);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* Until done(arg), at most timeout_ms: 0 or -ETIMEDOUT. */
static int wait_uevents(bool (*done)(const void *arg), const void *arg,
			int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd pfd = { .events = POLLIN };
	char buf[4096];
	int ret = -ETIMEDOUT, left;

	/* Subscribed before the first look, so no event falls between. */
	pfd.fd = uevent_socket();
	if (pfd.fd < 0)
		ksft_print_msg("uevent socket: %s; looking every %d ms instead\n",
			       strerror(-pfd.fd), UEVENT_RECHECK_MS);
	for (;;) {
		if (done(arg)) {
			ret = 0;
			break;
		}
		left = remaining_ms(deadline);
		if (!left)
			break;
		if (poll(&pfd, pfd.fd >= 0, left < UEVENT_RECHECK_MS ?
			 left : UEVENT_RECHECK_MS) > 0)
			while (recv(pfd.fd, buf, sizeof(buf), 0) > 0)
				;
	}
	if (pfd.fd >= 0)
		close(pfd.fd);
	return ret;
}

struct port_wait {
	const char *id;
	struct vport *vp;
};

static bool port_found(const void *arg)
{
	const struct port_wait *w = arg;

	return !find_port(w->id, w->vp);
}

static int wait_port(const char *id, struct vport *vp, int timeout_ms)
{
	struct port_wait w = { .id = id, .vp = vp };

	return wait_uevents(port_found, &w, timeout_ms);
}

static bool path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static bool path_gone(const void *path)
{
	return !path_exists(path);
}

static bool path_has_text(const void *path)
{
	char start[4];

	return read_text(path, start, sizeof(start)) > 0;
}

static int wait_path_gone(const char *path, int timeout_ms)
{
	return wait_uevents(path_gone, path, timeout_ms);
}

/* Opens the port of chardev id; returns the descriptor or -errno. */
static int open_port(const char *id, int flags)
{
	struct vport vp;
	int fd, ret;

	ret = find_port(id, &vp);
	if (ret)
		return ret;
	fd = open(vp.dev, flags | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The index N of the virtio device that port vp belongs to, from sysfs. */
static int vport_parent_index(const struct vport *vp)
{
	char path[PATH_MAX], link[PATH_MAX];
	unsigned int idx;
	const char *base;
	ssize_t r;

	snprintf(path, sizeof(path), SYS_PORTS "/%s/device", vp->sysname);
	r = readlink(path, link, sizeof(link) - 1);
	if (r < 0)
		return -errno;
	link[r] = '\0';
	base = strrchr(link, '/');
	base = base ? base + 1 : link;
	if (sscanf(base, "virtio%u", &idx) != 1)
		return -EINVAL;
	return idx;
}

/* Whether feature bit is negotiated on virtio device virtio<idx>. */
static int virtio_feature(unsigned int idx, unsigned int bit)
{
	char path[PATH_MAX], bits[256];
	int n;

	snprintf(path, sizeof(path), SYS_VIRTIO "/virtio%u/features", idx);
	n = read_text(path, bits, sizeof(bits));
	if (n < 0)
		return n;
	return (int)bit < n && bits[bit] == '1';
}

/* Whether the host end of fd is connected: poll reports POLLHUP if not. */
static bool host_is_connected(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLOUT };

	poll(&pfd, 1, 0);
	return !(pfd.revents & POLLHUP);
}

/*
 * Waits until the guest sees the host end of fd in the wanted state.  The
 * driver gives no event for a connect that poll() could wait on (POLLHUP
 * is level-triggered), so this checks the state every few milliseconds.
 */
static int wait_host_state(int fd, bool connected, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (host_is_connected(fd) != connected) {
		if (!remaining_ms(deadline))
			return -ETIMEDOUT;
		sleep_ms(2);
	}
	return 0;
}

static int change_host(const char *verb, const char *id, int fd,
		       bool connected)
{
	int ret = HOST("%s %s", verb, id);

	if (!ret && fd >= 0) {
		ret = wait_host_state(fd, connected, STATE_TIMEOUT_MS);
		if (ret)
			snprintf(host_said, sizeof(host_said),
				 "%s %s done, but the guest did not see it within %d ms",
				 verb, id, STATE_TIMEOUT_MS);
	}
	return ret;
}

static int connect_host(const char *id, int fd)
{
	return change_host("CONNECT", id, fd, true);
}

static int disconnect_host(const char *id, int fd)
{
	return change_host("DISCONNECT", id, fd, false);
}

/*
 * Resets the host end, then waits until the guest has seen every port the
 * host closed as disconnected, so that no late PORT_OPEN of a previous
 * test reaches the next one.
 */
static int host_reset(void)
{
	static char closed[CTL_LINE_MAX];
	char *id, *save = NULL;
	int ret, fd;

	ret = HOST("RESET");
	if (ret)
		return ret;
	snprintf(closed, sizeof(closed), "%s", host_said);
	for (id = strtok_r(closed, " ", &save); id;
	     id = strtok_r(NULL, " ", &save)) {
		fd = open_port(id, O_RDWR | O_NONBLOCK);
		if (fd < 0)
			continue;	/* a console, or a port now gone */
		ret = wait_host_state(fd, false, STATE_TIMEOUT_MS);
		close(fd);
		if (ret)
			return ret;
	}
	return 0;
}

/* -- threads that move data -- */

/*
 * Threads a test started and has not joined yet.  A failed ASSERT leaves
 * the test body by longjmp() while they may still run, so their state is
 * never in the test's stack frame (the teardown's frames reuse it): tests
 * declare workers, calls and duplexes static.  The teardown cancels what
 * is left before it closes the descriptors those threads use.
 */
static pthread_t test_threads[32];
static unsigned int nr_test_threads;

static int test_thread_start(pthread_t *th, void *(*fn)(void *), void *arg)
{
	if (nr_test_threads == ARRAY_SIZE(test_threads) ||
	    pthread_create(th, NULL, fn, arg))
		return -EAGAIN;
	test_threads[nr_test_threads++] = *th;
	return 0;
}

static void test_thread_joined(pthread_t th)
{
	unsigned int i;

	for (i = 0; i < nr_test_threads; i++) {
		if (pthread_equal(test_threads[i], th)) {
			test_threads[i] = test_threads[--nr_test_threads];
			return;
		}
	}
}

static void stop_test_threads(void)
{
	while (nr_test_threads) {
		pthread_t th = test_threads[--nr_test_threads];

		pthread_cancel(th);
		pthread_join(th, NULL);
	}
}

struct worker {
	pthread_t th;
	int fd;
	bool write;
	bool verify;		/* reads: compare every byte with the stream */
	uint64_t total;
	uint64_t seed;
	size_t blk;
	/* written by the thread */
	volatile pid_t tid;
	volatile int running;
	volatile uint64_t done;
	volatile int finished;
	volatile int stop;	/* set by the test: end after this call */
	int err;		/* errno of the call that failed, or 0 */
	ssize_t last_ret;
	bool eof;		/* a read returned 0 */
	int64_t mismatch;	/* offset of the first wrong byte, or -1 */
	char sha[41];
	bool started;
};

static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	uint8_t *buf, *exp = NULL;
	uint64_t generated = 0;
	size_t len = 0, off = 0, n, i;
	struct stream st;
	struct sha1 sha;
	ssize_t r;

	w->tid = syscall(SYS_gettid);
	w->mismatch = -1;
	buf = malloc(w->blk);
	if (w->verify)
		exp = malloc(w->blk);
	if (!buf || (w->verify && !exp)) {
		w->err = ENOMEM;
		goto out;
	}
	stream_init(&st, w->seed);
	sha1_init(&sha);
	w->running = 1;
	while (w->done < w->total && !w->stop) {
		if (w->write) {
			if (off == len) {
				n = w->total - generated;
				if (n > w->blk)
					n = w->blk;
				stream_fill(&st, buf, n);
				sha1_update(&sha, buf, n);
				generated += n;
				len = n;
				off = 0;
			}
			r = write(w->fd, buf + off, len - off);
		} else {
			n = w->total - w->done;
			r = read(w->fd, buf, n > w->blk ? w->blk : n);
		}
		w->last_ret = r;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			w->err = errno;
			break;
		}
		if (w->write) {
			off += r;
		} else if (r == 0) {
			w->eof = true;
			break;
		} else {
			sha1_update(&sha, buf, r);
			if (w->verify && w->mismatch < 0) {
				stream_fill(&st, exp, r);
				for (i = 0; i < (size_t)r; i++)
					if (buf[i] != exp[i])
						break;
				if (i < (size_t)r)
					w->mismatch = w->done + i;
			}
		}
		w->done += r;
	}
	sha1_hex_final(&sha, w->sha);
out:
	free(buf);
	free(exp);
	w->finished = 1;
	return NULL;
}

static int worker_start(struct worker *w, int fd, bool write, uint64_t total,
			uint64_t seed, bool verify)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->write = write;
	w->total = total;
	w->seed = seed;
	w->verify = verify;
	w->blk = IO_BLOCK;
	if (test_thread_start(&w->th, worker_fn, w))
		return -EAGAIN;
	w->started = true;
	return 0;
}

/* Joins a worker within timeout_ms; -ETIMEDOUT if it is still running. */
static int worker_join(struct worker *w, int timeout_ms)
{
	struct timespec ts;
	int ret;

	if (!w->started)
		return 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	ret = pthread_timedjoin_np(w->th, NULL, &ts);
	if (ret)
		return -ret;
	test_thread_joined(w->th);
	w->started = false;
	return 0;
}

static char task_state(pid_t tid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	if (read_text(path, buf, sizeof(buf)) < 0)
		return '?';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

/*
 * Waits until the worker sleeps in the kernel and makes no progress: it is
 * blocked in read() or write().
 */
static int worker_wait_blocked(struct worker *w, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	uint64_t before;

	for (;;) {
		if (w->finished)
			return -ESRCH;
		if (w->running && task_state(w->tid) == 'S') {
			before = w->done;
			sleep_ms(20);
			if (!w->finished && w->done == before &&
			    task_state(w->tid) == 'S')
				return 0;
		}
		if (!remaining_ms(deadline))
			return -ETIMEDOUT;
		sleep_ms(5);
	}
}

/* Waits until the worker has moved at least bytes. */
static int worker_wait_progress(struct worker *w, uint64_t bytes,
				int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (w->done < bytes) {
		if (w->finished)
			return -ESRCH;
		if (!remaining_ms(deadline))
			return -ETIMEDOUT;
		sleep_ms(5);
	}
	return 0;
}

/* A single blocking call in a thread: read() or write() of a small buffer. */
struct call {
	pthread_t th;
	int fd;
	bool write;
	char buf[256];
	size_t len;
	volatile pid_t tid;
	volatile int finished;
	ssize_t ret;
	int err;
};

static void *call_fn(void *arg)
{
	struct call *c = arg;

	c->tid = syscall(SYS_gettid);
	if (c->write)
		c->ret = write(c->fd, c->buf, c->len);
	else
		c->ret = read(c->fd, c->buf, c->len);
	c->err = c->ret < 0 ? errno : 0;
	c->finished = 1;
	return NULL;
}

static int call_start(struct call *c, int fd, bool write, size_t len)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->write = write;
	c->len = len < sizeof(c->buf) ? len : sizeof(c->buf);
	return test_thread_start(&c->th, call_fn, c);
}

static int call_wait_blocked(struct call *c, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		if (c->finished)
			return -ESRCH;
		if (c->tid && task_state(c->tid) == 'S') {
			sleep_ms(20);
			if (!c->finished && task_state(c->tid) == 'S')
				return 0;
		}
		if (!remaining_ms(deadline))
			return -ETIMEDOUT;
		sleep_ms(5);
	}
}

static int call_join(struct call *c, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (!c->finished) {
		if (!remaining_ms(deadline))
			return -ETIMEDOUT;
		sleep_ms(2);
	}
	pthread_join(c->th, NULL);
	test_thread_joined(c->th);
	return 0;
}

/* Non-blocking writes until the port pushes back; returns bytes written. */
static int64_t fill_port(int fd, uint64_t limit)
{
	static char buf[32 * 1024];
	uint64_t total = 0;
	ssize_t r;
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	while (total < limit) {
		r = write(fd, buf, sizeof(buf));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		total += r;
	}
	fcntl(fd, F_SETFL, fl);
	if (total >= limit)
		return -ENOSPC;
	return errno == EAGAIN ? (int64_t)total : -errno;
}

/*
 * The device may still take output after fill_port() saw EAGAIN: QEMU's
 * device goes on until its chardev pushes back.  Fills again while the
 * port says it is writable, at most @rounds times; adds to *filled.
 */
static int fill_port_until_full(int fd, int64_t *filled, int rounds)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	int64_t more;

	do {
		more = fill_port(fd, 512 * MiB);
		if (more < 0)
			return more;
		*filled += more;
	} while (poll(&pfd, 1, 0) == 1 && --rounds > 0);
	return 0;
}

/*
 * Starts a blocking write of @len bytes on a full port and waits until it
 * sleeps.  One that went through because the device took more meanwhile
 * is counted in *filled, and the port filled again.
 */
static int start_blocked_write(struct call *c, int fd, size_t len,
			       int64_t *filled)
{
	int ret, rounds = 8;

	for (;;) {
		ret = fill_port_until_full(fd, filled, 8);
		if (!ret)
			ret = call_start(c, fd, true, len);
		if (!ret)
			ret = call_wait_blocked(c, WAKE_TIMEOUT_MS);
		if (ret != -ESRCH || !--rounds)
			return ret;
		ret = call_join(c, WAKE_TIMEOUT_MS);
		if (ret)
			return ret;
		if (c->ret < 0)
			return -c->err;
		*filled += c->ret;
	}
}

/* Reads exactly len bytes within timeout_ms. */
static ssize_t read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int64_t deadline = now_ms() + timeout_ms;
	size_t got = 0;
	ssize_t r;

	while (got < len) {
		if (poll(&pfd, 1, remaining_ms(deadline)) <= 0)
			return -ETIMEDOUT;
		r = read(fd, (char *)buf + got, len - got);
		if (r < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (r == 0)
			return got;
		if (r > 0)
			got += r;
	}
	return got;
}

/*
 * Moves bytes each way at once on an open port whose host end is
 * connected, and checks both SHA-1s against the host's.
 */
struct duplex {
	const char *id;
	int fd;
	uint64_t bytes;
	uint64_t seed;
	struct worker rd, wr;
};

static int duplex_start(struct duplex *x, const char *id, int fd,
			uint64_t bytes, uint64_t seed)
{
	int ret;

	x->id = id;
	x->fd = fd;
	x->bytes = bytes;
	x->seed = seed;
	ret = HOST("RECV %s %llu sha", id, (unsigned long long)bytes);
	if (!ret)
		ret = worker_start(&x->rd, fd, false, bytes, seed + 1, false);
	if (!ret)
		ret = HOST("SEND %s %llu %llu", id, (unsigned long long)bytes,
			   (unsigned long long)(seed + 1));
	if (!ret)
		ret = worker_start(&x->wr, fd, true, bytes, seed, false);
	return ret;
}

#define DUPLEX_CHECK(x, timeout_ms) do {				\
	struct xfer_result __res;					\
	ASSERT_EQ(0, worker_join(&(x)->wr, (timeout_ms)));		\
	ASSERT_EQ(0, worker_join(&(x)->rd, (timeout_ms)));		\
	ASSERT_EQ(0, (x)->wr.err) TH_LOG("%s: write: %s", (x)->id,	\
					  strerror((x)->wr.err));	\
	ASSERT_EQ(0, (x)->rd.err) TH_LOG("%s: read: %s", (x)->id,	\
					  strerror((x)->rd.err));	\
	ASSERT_EQ((x)->bytes, (x)->rd.done) TH_LOG("%s: eof=%d",	\
						   (x)->id, (x)->rd.eof); \
	ASSERT_EQ(0, host_wait((x)->id, (timeout_ms), 0, &__res))	\
		TH_LOG("host: %s", host_said);				\
	EXPECT_EQ((x)->bytes, __res.rx);				\
	EXPECT_EQ((x)->bytes, __res.tx);				\
	EXPECT_STREQ((x)->wr.sha, __res.rxsha) TH_LOG("%s: guest->host", (x)->id); \
	EXPECT_STREQ(__res.txsha, (x)->rd.sha) TH_LOG("%s: host->guest", (x)->id); \
} while (0)

/* -- consoles -- */

static int hvc_open_raw(int n, int flags)
{
	char path[32];
	struct termios t;
	int fd;

	snprintf(path, sizeof(path), "/dev/hvc%d", n);
	fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC | flags);
	if (fd < 0)
		return -errno;
	if (tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t);
		tcsetattr(fd, TCSANOW, &t);
	}
	return fd;
}

/*
 * Finds which /dev/hvcN each console chardev of ids[] is: the host writes
 * a tag into each chardev, the guest looks for it on every hvc that opens.
 * hvc[i] gets N for ids[i].  The host ends stay connected.
 */
static int map_consoles(const char *const *ids, unsigned int n, int *hvc)
{
	int fds[HVC_MAX], ret = 0;
	char seen[HVC_MAX][512], tag[64], buf[256];
	size_t seen_len[HVC_MAX] = { 0 };
	struct pollfd pfd[HVC_MAX];
	unsigned int i, k, found = 0;
	int64_t deadline;
	ssize_t r;

	for (i = 0; i < n; i++) {
		hvc[i] = -1;
		ret = HOST("CONNECT %s", ids[i]);
		if (ret)
			return ret;
	}
	for (k = 0; k < HVC_MAX; k++) {
		fds[k] = hvc_open_raw(k, O_NONBLOCK);
		tcflush(fds[k], TCIFLUSH);
		pfd[k].fd = fds[k];
		pfd[k].events = POLLIN;
	}
	for (i = 0; i < n && !ret; i++) {
		snprintf(tag, sizeof(tag), "<map-%s-%d>", ids[i], getpid());
		ret = host_put(ids[i], tag);
	}
	deadline = now_ms() + DATA_TIMEOUT_MS;
	while (!ret && found < n) {
		if (poll(pfd, HVC_MAX, remaining_ms(deadline)) <= 0) {
			ret = -ETIMEDOUT;
			break;
		}
		for (k = 0; k < HVC_MAX; k++) {
			if (fds[k] < 0 || !(pfd[k].revents & POLLIN))
				continue;
			r = read(fds[k], buf, sizeof(buf));
			if (r <= 0)
				continue;
			if (seen_len[k] + r >= sizeof(seen[k]))
				seen_len[k] = 0;
			memcpy(seen[k] + seen_len[k], buf, r);
			seen_len[k] += r;
			seen[k][seen_len[k]] = '\0';
		}
		found = 0;
		for (i = 0; i < n; i++) {
			snprintf(tag, sizeof(tag), "<map-%s-%d>", ids[i], getpid());
			for (k = 0; k < HVC_MAX; k++)
				if (fds[k] >= 0 && seen_len[k] &&
				    memmem(seen[k], seen_len[k], tag, strlen(tag)))
					hvc[i] = k;
			found += hvc[i] >= 0;
		}
	}
	if (ret) {
		/* Say what was found, for the test's message. */
		size_t len = 0;

		for (i = 0; i < n; i++)
			len += snprintf(host_said + len, sizeof(host_said) - len,
					"%s->hvc%d ", ids[i], hvc[i]);
		for (k = 0; k < HVC_MAX; k++)
			if (fds[k] >= 0)
				len += snprintf(host_said + len, sizeof(host_said) - len,
						"hvc%u read %zu bytes; ", k, seen_len[k]);
	}
	for (k = 0; k < HVC_MAX; k++)
		if (fds[k] >= 0)
			close(fds[k]);
	return ret;
}

/*
 * The in-tree driver of older kernels (6.1) numbers consoles from an
 * unlocked counter: when two devices add console ports at the same time,
 * two ports can get the same vtermno and one console has no hvc.  Later
 * kernels allocate the numbers with an IDA.  Its debugfs files show the
 * numbers; true when two console ports share one.
 */
static bool intree_vtermno_clash(void)
{
	static const char dir[] = "/sys/kernel/debug/virtio-ports";
	char path[PATH_MAX], text[8192], *v;
	unsigned int seen[64], n = 0, i, t;
	struct dirent *e;
	bool clash = false;
	DIR *d;

	if (strcmp(opt_driver, "intree"))
		return false;
	d = opendir(dir);
	if (!d)
		return false;
	while ((e = readdir(d)) && !clash) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (read_text(path, text, sizeof(text)) <= 0 ||
		    !strstr(text, "is_console: yes"))
			continue;
		v = strstr(text, "console_vtermno: ");
		if (!v || sscanf(v, "console_vtermno: %u", &t) != 1)
			continue;
		for (i = 0; i < n; i++)
			if (seen[i] == t)
				clash = true;
		if (n < ARRAY_SIZE(seen))
			seen[n++] = t;
	}
	closedir(d);
	return clash;
}

#define MAP_CONSOLES(ids, n, hvc) do {					\
	int __r = map_consoles(ids, n, hvc);				\
	if (__r && intree_vtermno_clash())				\
		SKIP(return, "in-tree driver race at boot: two console ports " \
		     "share a vtermno (unlocked counter; later kernels use an IDA)"); \
	ASSERT_EQ(0, __r) TH_LOG("%s", host_said);			\
} while (0)

/* Reads fd until text shows up. */
static int expect_text(int fd, const char *text, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int64_t deadline = now_ms() + timeout_ms;
	char seen[4096];
	size_t len = 0;
	ssize_t r;

	for (;;) {
		if (len >= strlen(text) && memmem(seen, len, text, strlen(text)))
			return 0;
		if (poll(&pfd, 1, remaining_ms(deadline)) <= 0)
			return -ETIMEDOUT;
		if (len > sizeof(seen) / 2) {
			memmove(seen, seen + len - 512, 512);
			len = 512;
		}
		r = read(fd, seen + len, sizeof(seen) - len);
		if (r < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (r > 0)
			len += r;
	}
}

/* -- shared fixture pieces -- */

static void common_setup(struct __test_metadata *_metadata, int *kbad)
{
	*kbad = klog_bad();
	ASSERT_EQ(0, host_reset()) TH_LOG("host: %s", host_said);
}

static void common_teardown(struct __test_metadata *_metadata, int kbad)
{
	/* No test may add an oops or a warning to the kernel log. */
	EXPECT_EQ(kbad, klog_bad());
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static bool is_project_driver(void)
{
	return !strcmp(opt_driver, "project");
}

static int ids_of_consoles(const char **ids, unsigned int max)
{
	const struct group *g = cur_group;
	unsigned int d, p, n = 0;

	for (d = 0; d < g->ndevs; d++)
		for (p = 0; p < g->devs[d].nports; p++)
			if (g->devs[d].ports[p].console && n < max)
				ids[n++] = g->devs[d].ports[p].id;
	return n;
}

/* ==== tests: generic ports ================================================= */

FIXTURE(port) {
	int fd;
	int fd2;
	int kbad;
};

FIXTURE_SETUP(port)
{
	self->fd = self->fd2 = -1;
	signal(SIGPIPE, SIG_IGN);
	common_setup(_metadata, &self->kbad);
}

FIXTURE_TEARDOWN(port)
{
	stop_test_threads();
	close_fd(&self->fd);
	close_fd(&self->fd2);
	common_teardown(_metadata, self->kbad);
}

/* Every port is /dev/vportNpM with N its device's index and M its number. */
TEST_F(port, vport_nodes_match_device_and_port_numbers)
{
	const struct group *g = cur_group;
	const struct topo_port *tp;
	char path[PATH_MAX], devno[32];
	unsigned int d, i, maj, min;
	struct vport vp;
	struct stat st;

	for (d = 0; d < g->ndevs; d++) {
		for (i = 0; i < g->devs[d].nports; i++) {
			tp = &g->devs[d].ports[i];
			if (!tp->named)
				continue;
			ASSERT_EQ(0, find_port(tp->id, &vp)) TH_LOG("port %s", tp->id);
			EXPECT_EQ(tp->nr, vp.nr) TH_LOG("%s is %s", tp->id, vp.sysname);
			EXPECT_EQ((int)vp.devidx, vport_parent_index(&vp))
				TH_LOG("%s: N of vportNpM is not its virtio device", vp.sysname);
			ASSERT_EQ(0, stat(vp.dev, &st)) TH_LOG("%s: %s", vp.dev, strerror(errno));
			EXPECT_TRUE(S_ISCHR(st.st_mode));
			snprintf(path, sizeof(path), SYS_PORTS "/%s/dev", vp.sysname);
			ASSERT_LT(0, read_text(path, devno, sizeof(devno)));
			ASSERT_EQ(2, sscanf(devno, "%u:%u", &maj, &min));
			EXPECT_EQ(makedev(maj, min), st.st_rdev) TH_LOG("%s", vp.dev);
		}
	}
}

/* Each named port shows the name QEMU gave it, once. */
TEST_F(port, sysfs_names_match_qemu_port_names)
{
	const struct group *g = cur_group;
	char path[PATH_MAX], name[4200];
	unsigned int named = 0, d, i, seen = 0;
	struct dirent *e;
	DIR *dir;

	for (d = 0; d < g->ndevs; d++)
		for (i = 0; i < g->devs[d].nports; i++)
			named += g->devs[d].ports[i].named;
	dir = opendir(SYS_PORTS);
	ASSERT_NE(NULL, dir);
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), SYS_PORTS "/%s/name", e->d_name);
		if (read_text(path, name, sizeof(name)) <= 0)
			continue;
		EXPECT_EQ(0, strncmp(name, PORT_PREFIX, strlen(PORT_PREFIX)))
			TH_LOG("%s: unexpected name '%s'", e->d_name, name);
		EXPECT_NE(NULL, topo_find(g, name + strlen(PORT_PREFIX), NULL))
			TH_LOG("%s: unexpected name '%s'", e->d_name, name);
		seen++;
	}
	closedir(dir);
	EXPECT_EQ(named, seen);
}

TEST_F(port, second_open_fails_ebusy)
{
	pid_t pid;
	int status, fd;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd) TH_LOG("open: %s", strerror(-self->fd));
	fd = open_port("p2", O_RDWR);
	EXPECT_EQ(-EBUSY, fd);
	if (fd >= 0)
		close(fd);
	/* Another process is refused as well. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(open_port("p2", O_RDONLY) == -EBUSY ? 0 : 1);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Once closed, the port opens again. */
	close_fd(&self->fd);
	self->fd = open_port("p2", O_RDWR);
	EXPECT_LE(0, self->fd);
}

TEST_F(port, read_returns_zero_when_host_not_connected)
{
	char buf[16];

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, wait_host_state(self->fd, false, STATE_TIMEOUT_MS));
	EXPECT_EQ(0, read(self->fd, buf, sizeof(buf)));
	/* Also without O_NONBLOCK's EAGAIN: no host is end of file. */
	fcntl(self->fd, F_SETFL, O_NONBLOCK);
	EXPECT_EQ(0, read(self->fd, buf, sizeof(buf)));
}

TEST_F(port, nonblocking_read_without_data_fails_eagain)
{
	char buf[16];

	self->fd = open_port("p2", O_RDWR | O_NONBLOCK);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	EXPECT_EQ(-1, read(self->fd, buf, sizeof(buf)));
	EXPECT_EQ(EAGAIN, errno);
}

TEST_F(port, short_messages_cross_both_ways)
{
	char buf[64] = "";

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, host_put("p2", "hello guest"));
	ASSERT_EQ(11, read_exact(self->fd, buf, 11, DATA_TIMEOUT_MS));
	EXPECT_EQ(0, memcmp(buf, "hello guest", 11));
	ASSERT_EQ(10, write(self->fd, "hello host", 10));
	EXPECT_EQ(0, host_find("p2", "hello host", DATA_TIMEOUT_MS))
		TH_LOG("host: %s", host_said);
}

TEST_F(port, blocking_read_waits_for_host_data)
{
	static struct call c;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, call_start(&c, self->fd, false, 64));
	ASSERT_EQ(0, call_wait_blocked(&c, WAKE_TIMEOUT_MS)) TH_LOG("read did not block");
	ASSERT_EQ(0, host_put("p2", "wake"));
	ASSERT_EQ(0, call_join(&c, WAKE_TIMEOUT_MS)) TH_LOG("read did not wake up");
	EXPECT_EQ(4, c.ret);
	EXPECT_EQ(0, memcmp(c.buf, "wake", 4));
}

TEST_F(port, blocked_read_returns_zero_on_host_disconnect)
{
	static struct call c;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, call_start(&c, self->fd, false, 64));
	ASSERT_EQ(0, call_wait_blocked(&c, WAKE_TIMEOUT_MS));
	ASSERT_EQ(0, disconnect_host("p2", -1)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, call_join(&c, WAKE_TIMEOUT_MS)) TH_LOG("read did not wake up");
	EXPECT_EQ(0, c.ret);
	EXPECT_FALSE(host_is_connected(self->fd));
}

TEST_F(port, nonblocking_write_without_host_fails_eagain)
{
	self->fd = open_port("p2", O_RDWR | O_NONBLOCK);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, wait_host_state(self->fd, false, STATE_TIMEOUT_MS));
	EXPECT_EQ(-1, write(self->fd, "x", 1));
	EXPECT_EQ(EAGAIN, errno);
}

/* A host that does not read makes writes fail with EAGAIN, losing nothing. */
TEST_F(port, nonblocking_write_fails_eagain_when_host_stops_reading)
{
	struct pollfd pfd;
	struct xfer_result res;
	int64_t filled, more;
	int ret, tries;

	self->fd = open_port("p2", O_RDWR | O_NONBLOCK);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	filled = 0;
	ret = fill_port_until_full(self->fd, &filled, 8);
	ASSERT_EQ(0, ret) TH_LOG("fill: %s", strerror(-ret));
	ASSERT_LT(0, filled);
	/*
	 * A device may still take some of what it holds after the last
	 * EAGAIN (QEMU's does when its chardev drains into the socket), and
	 * POLLOUT then says so rightly: fill again.  With a host that reads
	 * nothing the port must end up full, with no POLLOUT.
	 */
	pfd.fd = self->fd;
	pfd.events = POLLOUT;
	tries = 8;
	while ((ret = poll(&pfd, 1, 0)) == 1 && tries--) {
		more = fill_port(self->fd, 512 * MiB);
		ASSERT_LE(0, more) TH_LOG("fill: %s", strerror((int)-more));
		filled += more;
	}
	EXPECT_EQ(0, ret) TH_LOG("POLLOUT with a full queue, after 8 more fills");
	/* The host drains: everything written arrives, POLLOUT comes back. */
	ASSERT_HOST("RECV p2 %lld count", (long long)filled);
	EXPECT_EQ(1, poll(&pfd, 1, DATA_TIMEOUT_MS));
	EXPECT_TRUE(pfd.revents & POLLOUT);
	ASSERT_EQ(0, host_wait("p2", DATA_TIMEOUT_MS, 0, &res)) TH_LOG("host: %s", host_said);
	EXPECT_EQ((unsigned long long)filled, res.rx);
}

TEST_F(port, blocking_write_waits_for_host_to_drain)
{
	struct xfer_result res;
	static struct call c;
	int64_t filled;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	filled = 0;
	ASSERT_EQ(0, start_blocked_write(&c, self->fd, 200, &filled))
		TH_LOG("write did not block");
	ASSERT_LT(0, filled);
	ASSERT_HOST("RECV p2 0 count");
	ASSERT_EQ(0, call_join(&c, WAKE_TIMEOUT_MS)) TH_LOG("write did not wake up");
	ASSERT_EQ(200, c.ret) TH_LOG("write: %s", strerror(c.err));
	ASSERT_EQ(0, host_wait("p2", DATA_TIMEOUT_MS, filled + 200, &res))
		TH_LOG("host: %s", host_said);
	EXPECT_EQ((unsigned long long)filled + 200, res.rx);
}

TEST_F(port, poll_reports_pollin_when_data_arrives)
{
	struct pollfd pfd;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	pfd.fd = self->fd;
	pfd.events = POLLIN;
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	ASSERT_EQ(0, host_put("p2", "x"));
	ASSERT_EQ(1, poll(&pfd, 1, DATA_TIMEOUT_MS));
	EXPECT_EQ(POLLIN, pfd.revents & (POLLIN | POLLHUP));
}

TEST_F(port, poll_reports_pollout_when_writable)
{
	struct pollfd pfd;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	pfd.fd = self->fd;
	pfd.events = POLLOUT;
	ASSERT_EQ(1, poll(&pfd, 1, DATA_TIMEOUT_MS));
	EXPECT_EQ(POLLOUT, pfd.revents);
}

TEST_F(port, poll_reports_pollhup_while_host_disconnected)
{
	struct pollfd pfd;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	pfd.fd = self->fd;
	pfd.events = POLLIN | POLLOUT;
	ASSERT_EQ(0, wait_host_state(self->fd, false, STATE_TIMEOUT_MS));
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(pfd.revents & POLLHUP);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	poll(&pfd, 1, 0);
	EXPECT_FALSE(pfd.revents & POLLHUP);
	ASSERT_EQ(0, disconnect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(pfd.revents & POLLHUP);
}

TEST_F(port, select_reports_readable_and_writable)
{
	struct timeval tv = { DATA_TIMEOUT_MS / 1000, 0 };
	fd_set rd, wr;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(self->fd, &rd);
	FD_SET(self->fd, &wr);
	ASSERT_EQ(1, select(self->fd + 1, &rd, &wr, NULL, &tv));
	EXPECT_TRUE(FD_ISSET(self->fd, &wr));
	EXPECT_FALSE(FD_ISSET(self->fd, &rd));
	ASSERT_EQ(0, host_put("p2", "y"));
	FD_ZERO(&rd);
	FD_SET(self->fd, &rd);
	tv.tv_sec = DATA_TIMEOUT_MS / 1000;
	ASSERT_EQ(1, select(self->fd + 1, &rd, NULL, NULL, &tv));
	EXPECT_TRUE(FD_ISSET(self->fd, &rd));
}

/* Waits for SIGIO (blocked, so it stays pending) within timeout_ms. */
static int wait_sigio(int timeout_ms)
{
	struct timespec ts = { timeout_ms / 1000, (timeout_ms % 1000) * 1000000L };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGIO);
	return sigtimedwait(&set, NULL, &ts) == SIGIO ? 0 : -errno;
}

static void drop_sigio(void)
{
	while (wait_sigio(0) == 0)
		;
}

static int set_async(int fd)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGIO);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (fcntl(fd, F_SETOWN, getpid()))
		return -errno;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC))
		return -errno;
	return 0;
}

TEST_F(port, sigio_on_host_connect_and_disconnect)
{
	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, wait_host_state(self->fd, false, STATE_TIMEOUT_MS));
	ASSERT_EQ(0, set_async(self->fd));
	drop_sigio();
	ASSERT_HOST("CONNECT p2");
	ASSERT_EQ(0, wait_sigio(STATE_TIMEOUT_MS)) TH_LOG("no SIGIO on connect");
	EXPECT_EQ(0, wait_host_state(self->fd, true, STATE_TIMEOUT_MS));
	drop_sigio();
	ASSERT_HOST("DISCONNECT p2");
	ASSERT_EQ(0, wait_sigio(STATE_TIMEOUT_MS)) TH_LOG("no SIGIO on disconnect");
	EXPECT_EQ(0, wait_host_state(self->fd, false, STATE_TIMEOUT_MS));
}

TEST_F(port, sigio_on_data)
{
	struct pollfd pfd;
	char c;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, set_async(self->fd));
	drop_sigio();
	ASSERT_EQ(0, host_put("p2", "s"));
	ASSERT_EQ(0, wait_sigio(DATA_TIMEOUT_MS)) TH_LOG("no SIGIO on data");
	pfd.fd = self->fd;
	pfd.events = POLLIN;
	EXPECT_EQ(1, poll(&pfd, 1, DATA_TIMEOUT_MS));
	EXPECT_EQ(1, read(self->fd, &c, 1));
	EXPECT_EQ('s', c);
}

/*
 * A reader that takes exactly what came (a message of known length) and
 * then waits for SIGIO must get one for the next message too: the read
 * that ended at a buffer's end must not leave the queue's interrupt off.
 */
TEST_F(port, sigio_for_each_message_read_exactly)
{
	char msg[] = "m0", got[sizeof(msg)];
	int i;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, set_async(self->fd));
	drop_sigio();
	for (i = 0; i < 4; i++) {
		msg[1] = '0' + i;
		ASSERT_EQ(0, host_put("p2", msg));
		ASSERT_EQ(0, wait_sigio(DATA_TIMEOUT_MS))
			TH_LOG("no SIGIO for message %d", i);
		ASSERT_EQ(2, read(self->fd, got, 2)) TH_LOG("message %d", i);
		EXPECT_EQ(0, memcmp(got, msg, 2)) TH_LOG("message %d", i);
		drop_sigio();
	}
}

TEST_F(port, lseek_fails_espipe)
{
	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	EXPECT_EQ(-1, lseek(self->fd, 0, SEEK_SET));
	EXPECT_EQ(ESPIPE, errno);
	EXPECT_EQ(-1, lseek(self->fd, 10, SEEK_CUR));
	EXPECT_EQ(ESPIPE, errno);
}

/*
 * The host drops its end in the middle of a stream it sends: the guest
 * reads a correct prefix, then 0; after a reconnect a new stream arrives
 * whole, with nothing of the old one in front of it.
 */
TEST_F_TIMEOUT(port, host_reconnect_mid_stream_to_guest, 120)
{
	struct xfer_result res;
	static struct worker w;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_HOST("SEND p2 %llu 11", 1024 * MiB);
	ASSERT_EQ(0, worker_start(&w, self->fd, false, 1024 * MiB, 11, true));
	ASSERT_EQ(0, worker_wait_progress(&w, 2 * MiB, 30000));
	ASSERT_HOST("DISCONNECT p2");
	ASSERT_EQ(0, worker_join(&w, 30000)) TH_LOG("reader never saw end of file");
	EXPECT_EQ(0, w.err);
	EXPECT_TRUE(w.eof);
	EXPECT_LT(w.done, 1024 * MiB);
	EXPECT_EQ(-1, w.mismatch) TH_LOG("byte %lld is wrong", (long long)w.mismatch);
	EXPECT_FALSE(host_is_connected(self->fd));

	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_HOST("SEND p2 %llu 12", 4 * MiB);
	ASSERT_EQ(0, worker_start(&w, self->fd, false, 4 * MiB, 12, true));
	ASSERT_EQ(0, worker_join(&w, 60000));
	EXPECT_EQ(4 * MiB, w.done);
	EXPECT_EQ(-1, w.mismatch) TH_LOG("byte %lld is wrong", (long long)w.mismatch);
	ASSERT_EQ(0, host_wait("p2", DATA_TIMEOUT_MS, 0, &res)) TH_LOG("host: %s", host_said);
	EXPECT_STREQ(res.txsha, w.sha);
}

/*
 * The host fills the port's socket while the guest has the port closed,
 * and hangs up.  The guest opens the port and writes first: its write
 * finds the host gone.  What the host sent still reaches the guest, whole,
 * before end of file.  QEMU's own device drops what its chardev had not
 * read once the peer leaves; vhost=on leaves the socket to the kernel
 * until it has read it to the end.
 */
TEST_F_TIMEOUT(port, host_data_outlives_hangup_and_guest_write, 120)
{
	struct xfer_result res;
	static struct worker w;
	uint64_t sent;

	ASSERT_EQ(0, host_hello(CTL_TIMEOUT_MS)) TH_LOG("host: %s", host_said);
	if (!strstr(host_said, "vhost=on"))
		SKIP(return, "QEMU's own device drops what its chardev had not read when the peer leaves");
	ASSERT_EQ(0, connect_host("p2", -1)) TH_LOG("host: %s", host_said);
	/* Nobody has the port open: everything stays in the socket. */
	ASSERT_HOST("SEND p2 %llu 41 fill", 1024 * MiB);
	ASSERT_EQ(0, host_wait("p2", 60000, 0, &res)) TH_LOG("host: %s", host_said);
	sent = res.tx;
	ASSERT_LT(0, sent);
	ASSERT_HOST("DISCONNECT p2");

	self->fd = open_port("p2", O_RDWR | O_NONBLOCK);
	ASSERT_LE(0, self->fd);
	/* Until the kernel has read the socket to its end, the host is there. */
	ASSERT_EQ(0, wait_host_state(self->fd, true, STATE_TIMEOUT_MS));
	ASSERT_EQ(1, write(self->fd, "x", 1)) TH_LOG("write: %s", strerror(errno));
	ASSERT_EQ(0, fcntl(self->fd, F_SETFL, 0));
	ASSERT_EQ(0, worker_start(&w, self->fd, false, 1024 * MiB, 41, true));
	ASSERT_EQ(0, worker_join(&w, 30000))
		TH_LOG("reader never saw end of file: %llu of %llu bytes",
		       (unsigned long long)w.done, (unsigned long long)sent);
	EXPECT_EQ(0, w.err);
	EXPECT_TRUE(w.eof);
	EXPECT_EQ(sent, w.done);
	EXPECT_EQ(-1, w.mismatch) TH_LOG("byte %lld is wrong", (long long)w.mismatch);
}

/*
 * The host drops its end while the guest writes a stream: the writer
 * blocks while no host is there and carries on after the reconnect.  The
 * stream has no set length: the writer is stopped once it has moved a
 * little more after the reconnect, so the time taken does not depend on
 * how fast the machine is.
 */
TEST_F_TIMEOUT(port, host_reconnect_mid_stream_from_guest, 120)
{
	static struct worker w;
	struct xfer_result res;
	unsigned long long rx, tx;
	uint64_t at_reconnect;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_HOST("RECV p2 0 count");
	ASSERT_EQ(0, worker_start(&w, self->fd, true, UINT64_MAX, 21, false));
	ASSERT_EQ(0, worker_wait_progress(&w, 2 * MiB, 30000));
	ASSERT_EQ(0, disconnect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, worker_wait_blocked(&w, WAKE_TIMEOUT_MS))
		TH_LOG("writer did not stop without a host (%llu bytes)",
		       (unsigned long long)w.done);
	at_reconnect = w.done;
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_HOST("RECV p2 0 count");
	ASSERT_EQ(0, worker_wait_progress(&w, at_reconnect + 2 * MiB, 60000))
		TH_LOG("writer stuck after reconnect at %llu bytes",
		       (unsigned long long)w.done);
	w.stop = 1;
	ASSERT_EQ(0, worker_join(&w, 30000)) TH_LOG("writer did not stop");
	EXPECT_EQ(0, w.err);
	/* What was written after the reconnect reaches the new connection. */
	ASSERT_EQ(0, host_wait("p2", 60000, w.done - at_reconnect, &res))
		TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, host_stat("p2", &rx, &tx));
	EXPECT_LE(w.done - at_reconnect, rx);
	EXPECT_GE(w.done, rx);
}

/* ==== tests: consoles ====================================================== */

FIXTURE(console) {
	int fd;
	int kbad;
	const char *ids[8];
	int hvc[8];
	unsigned int n;
	char printk_levels[64];	/* to restore, when not empty */
};

FIXTURE_SETUP(console)
{
	self->fd = -1;
	self->printk_levels[0] = '\0';
	common_setup(_metadata, &self->kbad);
	self->n = ids_of_consoles(self->ids, ARRAY_SIZE(self->ids));
}

static void console_restore_printk(FIXTURE_DATA(console) *self);

FIXTURE_TEARDOWN(console)
{
	stop_test_threads();
	close_fd(&self->fd);
	console_restore_printk(self);
	common_teardown(_metadata, self->kbad);
}

static int hvc_of(FIXTURE_DATA(console) *self, const char *id)
{
	unsigned int i;

	for (i = 0; i < self->n; i++)
		if (!strcmp(self->ids[i], id))
			return self->hvc[i];
	return -1;
}

/* Data both ways through the hvc of console chardev id. */
static void console_round_trip(struct __test_metadata *_metadata,
			       FIXTURE_DATA(console) *self, const char *id)
{
	char text[64];
	int n = hvc_of(self, id);

	ASSERT_LE(0, n) TH_LOG("no hvc for %s", id);
	self->fd = hvc_open_raw(n, O_NONBLOCK);
	ASSERT_LE(0, self->fd);
	snprintf(text, sizeof(text), "to-guest-%s-%d", id, getpid());
	ASSERT_EQ(0, host_put(id, text));
	EXPECT_EQ(0, expect_text(self->fd, text, DATA_TIMEOUT_MS)) TH_LOG("hvc%d", n);
	snprintf(text, sizeof(text), "to-host-%s-%d", id, getpid());
	ASSERT_EQ((ssize_t)strlen(text), write(self->fd, text, strlen(text)));
	EXPECT_EQ(0, host_find(id, text, DATA_TIMEOUT_MS)) TH_LOG("host: %s", host_said);
	close_fd(&self->fd);
}

/* Each console port is exactly one hvc, and no other hvc exists. */
TEST_F(console, console_ports_are_hvc_devices)
{
	unsigned int i, j, backed = 0;
	int fd;

	MAP_CONSOLES(self->ids, self->n, self->hvc);
	for (i = 0; i < self->n; i++) {
		EXPECT_LE(0, self->hvc[i]) TH_LOG("%s has no hvc", self->ids[i]);
		for (j = 0; j < i; j++)
			EXPECT_NE(self->hvc[i], self->hvc[j]);
	}
	for (i = 0; i < HVC_MAX; i++) {
		fd = hvc_open_raw(i, O_NONBLOCK);
		if (fd >= 0) {
			backed++;
			close(fd);
		} else {
			EXPECT_EQ(-ENODEV, fd) TH_LOG("hvc%u", i);
		}
	}
	EXPECT_EQ(self->n, backed);
}

TEST_F(console, port0_console_moves_data_both_ways)
{
	MAP_CONSOLES(self->ids, self->n, self->hvc);
	console_round_trip(_metadata, self, "c0");
}

TEST_F(console, additional_console_moves_data_both_ways)
{
	MAP_CONSOLES(self->ids, self->n, self->hvc);
	console_round_trip(_metadata, self, "c1");
}

/*
 * Everything at once: both consoles answer while four ports of the first
 * device and a port of the second move sha1-checked streams both ways.
 */
TEST_F_TIMEOUT(console, consoles_ports_and_devices_move_data_at_once, 300)
{
	static const char *const ids[] = { "p2", "p3", "p4", "p5", "q1" };
	static struct duplex x[ARRAY_SIZE(ids)];
	int fds[ARRAY_SIZE(ids)];
	unsigned int i, round;

	for (i = 0; i < ARRAY_SIZE(ids); i++)
		if (!topo_find(cur_group, ids[i], NULL))
			SKIP(return, "group %s has no port %s", cur_group->name, ids[i]);
	MAP_CONSOLES(self->ids, self->n, self->hvc);
	for (i = 0; i < ARRAY_SIZE(ids); i++) {
		fds[i] = open_port(ids[i], O_RDWR);
		ASSERT_LE(0, fds[i]) TH_LOG("%s", ids[i]);
		ASSERT_EQ(0, connect_host(ids[i], fds[i])) TH_LOG("host: %s", host_said);
	}
	for (i = 0; i < ARRAY_SIZE(ids); i++)
		ASSERT_EQ(0, duplex_start(&x[i], ids[i], fds[i], bulk_bytes / 4,
					  2000 + 10 * i));
	for (round = 0; round < 3; round++) {
		console_round_trip(_metadata, self, "c0");
		console_round_trip(_metadata, self, "c1");
	}
	for (i = 0; i < ARRAY_SIZE(ids); i++)
		DUPLEX_CHECK(&x[i], 240000);
	for (i = 0; i < ARRAY_SIZE(ids); i++)
		close(fds[i]);
}

TEST_F(console, console_vport_node_refuses_open_enxio)
{
	EXPECT_EQ(-ENXIO, open_port("c0", O_RDWR));
	EXPECT_EQ(-ENXIO, open_port("c1", O_RDWR));
}

/* A shell on an hvc: the host types a command and reads its output. */
TEST_F(console, login_shell_runs_on_console)
{
	char path[32];
	pid_t pid;
	int n, status, fd;

	ASSERT_TRUE(path_exists("/bin/sh")) TH_LOG("no /bin/sh in the VM");
	MAP_CONSOLES(self->ids, self->n, self->hvc);
	n = hvc_of(self, "c1");
	ASSERT_LE(0, n);
	snprintf(path, sizeof(path), "/dev/hvc%d", n);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		setsid();
		fd = open(path, O_RDWR);	/* becomes the controlling tty */
		if (fd < 0)
			_exit(126);
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
		execl("/bin/sh", "-sh", "-i", (char *)NULL);
		_exit(127);
	}
	EXPECT_EQ(0, host_put("c1", "echo vserial-$((6*7))-shell; tty\n"));
	EXPECT_EQ(0, host_find("c1", "vserial-42-shell", DATA_TIMEOUT_MS))
		TH_LOG("host: %s", host_said);
	EXPECT_EQ(0, host_find("c1", path, DATA_TIMEOUT_MS)) TH_LOG("tty is not %s", path);
	EXPECT_EQ(0, host_put("c1", "exit\n"));
	EXPECT_EQ(0, wait_child(pid, DATA_TIMEOUT_MS, &status))
		TH_LOG("the shell did not exit");
}

/* With console=hvc0 the kernel's messages reach hvc0's host end. */
TEST_F(console, kernel_console_output_reaches_hvc0)
{
	char consoles[1024], marker[64], msg[96];
	unsigned int i;
	int kfd;

	if (!strstr(cur_group->cmdline, "console=hvc0"))
		SKIP(return, "group %s boots without console=hvc0", cur_group->name);
	ASSERT_LT(0, read_text("/proc/consoles", consoles, sizeof(consoles)));
	ASSERT_NE(NULL, strstr(consoles, "hvc0")) TH_LOG("consoles: %s", consoles);
	MAP_CONSOLES(self->ids, self->n, self->hvc);
	for (i = 0; i < self->n && self->hvc[i] != 0; i++)
		;
	ASSERT_LT(i, self->n) TH_LOG("no console chardev is hvc0");
	snprintf(marker, sizeof(marker), "vserial-kmsg-%d", getpid());
	/* Level 0 passes the console loglevel the VM's init lowered. */
	snprintf(msg, sizeof(msg), "<0>%s\n", marker);
	kfd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	ASSERT_LE(0, kfd);
	EXPECT_EQ((ssize_t)strlen(msg), write(kfd, msg, strlen(msg)));
	close(kfd);
	EXPECT_EQ(0, host_find(self->ids[i], marker, DATA_TIMEOUT_MS))
		TH_LOG("host: %s", host_said);
}

static int console_device_index(const char *id)
{
	struct vport vp;

	if (find_port(id, &vp))
		return -ENOENT;
	return vport_parent_index(&vp);
}

TEST_F(console, console_size_from_config_space)
{
	struct winsize ws;
	int idx, has;

	idx = console_device_index("c0");
	ASSERT_LE(0, idx);
	has = virtio_feature(idx, VIRTIO_CONSOLE_F_SIZE);
	ASSERT_LE(0, has);
	if (!has)
		SKIP(return, "the device does not offer VIRTIO_CONSOLE_F_SIZE: QEMU never "
		     "does, with or without vhost=on (sizes reach the guest as RESIZE)");
	MAP_CONSOLES(self->ids, self->n, self->hvc);
	self->fd = hvc_open_raw(hvc_of(self, "c0"), O_NONBLOCK);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, ioctl(self->fd, TIOCGWINSZ, &ws));
	EXPECT_NE(0, ws.ws_col);
	EXPECT_NE(0, ws.ws_row);
}

/*
 * A size set on the host (QEMU's console-size, with vhost=on) reaches the
 * guest's terminal: the driver applies the RESIZE message to the hvc tty.
 * The in-tree driver before 6.15 reads its two fields swapped.
 */
TEST_F(console, console_resize_message)
{
	const unsigned int cols = 123, rows = 45;
	int64_t deadline = now_ms() + STATE_TIMEOUT_MS;
	struct winsize ws = { 0 };
	int ret;

	/* hvc applies a size to an open tty only. */
	MAP_CONSOLES(self->ids, self->n, self->hvc);
	self->fd = hvc_open_raw(hvc_of(self, "c0"), O_NONBLOCK);
	ASSERT_LE(0, self->fd);
	ret = HOST("RESIZE c0 %u %u", cols, rows);
	if (ret && strstr(host_said, "not found"))
		SKIP(return, "this QEMU has no console-size (QEMU 7.2 never sends "
		     "VIRTIO_CONSOLE_RESIZE); the end-to-end suite runs it with vhost=on");
	if (ret && strstr(host_said, "needs vhost=on"))
		SKIP(return, "console-size needs vhost=on");
	ASSERT_EQ(0, ret) TH_LOG("host: %s", host_said);
	/* The message travels on its own: wait for the tty to change. */
	do {
		ASSERT_EQ(0, ioctl(self->fd, TIOCGWINSZ, &ws));
		if ((ws.ws_col == cols && ws.ws_row == rows) ||
		    (!is_project_driver() && ws.ws_col == rows && ws.ws_row == cols))
			break;
		sleep_ms(20);
	} while (remaining_ms(deadline));
	if (is_project_driver()) {
		EXPECT_EQ(cols, ws.ws_col);
		EXPECT_EQ(rows, ws.ws_row);
	} else {
		EXPECT_EQ(cols * rows, (unsigned int)ws.ws_col * ws.ws_row);
	}
}

TEST_F(console, emergency_write_negotiated)
{
	int idx, has;

	idx = console_device_index("c0");
	ASSERT_LE(0, idx);
	has = virtio_feature(idx, VIRTIO_CONSOLE_F_EMERG_WRITE);
	ASSERT_LE(0, has);
	if (!is_project_driver())
		SKIP(return, "the %s driver does not negotiate VIRTIO_CONSOLE_F_EMERG_WRITE "
		     "(%s)", opt_driver, has ? "it did" : "as expected");
	/* QEMU offers it (its emergency-write property defaults on). */
	EXPECT_EQ(1, has);
}

/* ==== tests: several devices =============================================== */

FIXTURE(multidev) {
	int fd[2];
	int kbad;
};

FIXTURE_SETUP(multidev)
{
	self->fd[0] = self->fd[1] = -1;
	common_setup(_metadata, &self->kbad);
}

FIXTURE_TEARDOWN(multidev)
{
	stop_test_threads();
	close_fd(&self->fd[0]);
	close_fd(&self->fd[1]);
	common_teardown(_metadata, self->kbad);
}

TEST_F(multidev, devices_number_their_ports_separately)
{
	char path[PATH_MAX], id[16];
	struct vport a, b;

	ASSERT_EQ(0, find_port("p2", &a));
	ASSERT_EQ(0, find_port("q2", &b));
	EXPECT_NE(a.devidx, b.devidx);
	EXPECT_EQ(2, a.nr);
	EXPECT_EQ(2, b.nr);
	snprintf(path, sizeof(path), SYS_VIRTIO "/virtio%u/device", a.devidx);
	ASSERT_LT(0, read_text(path, id, sizeof(id)));
	EXPECT_STREQ("0x0003", id);
	snprintf(path, sizeof(path), SYS_VIRTIO "/virtio%u/device", b.devidx);
	ASSERT_LT(0, read_text(path, id, sizeof(id)));
	EXPECT_STREQ("0x0003", id);
}

TEST_F_TIMEOUT(multidev, transfers_on_two_devices_at_once, 300)
{
	static const char *const ids[] = { "p3", "q1" };
	static struct duplex x[2];
	unsigned int i;

	for (i = 0; i < 2; i++) {
		self->fd[i] = open_port(ids[i], O_RDWR);
		ASSERT_LE(0, self->fd[i]) TH_LOG("%s", ids[i]);
		ASSERT_EQ(0, connect_host(ids[i], self->fd[i])) TH_LOG("host: %s", host_said);
	}
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, duplex_start(&x[i], ids[i], self->fd[i], bulk_bytes / 4,
					  100 + 2 * i));
	for (i = 0; i < 2; i++)
		DUPLEX_CHECK(&x[i], 240000);
}

/* ==== tests: legacy (single-port) device ==================================== */

FIXTURE(legacy) {
	int fd;
	int kbad;
};

FIXTURE_SETUP(legacy)
{
	self->fd = -1;
	common_setup(_metadata, &self->kbad);
}

FIXTURE_TEARDOWN(legacy)
{
	stop_test_threads();
	close_fd(&self->fd);
	common_teardown(_metadata, self->kbad);
}

/* Virtio console devices without MULTIPORT, as indices. */
static int legacy_devices(unsigned int *idx, unsigned int max)
{
	char path[PATH_MAX], id[16];
	struct dirent *e;
	unsigned int n = 0, i;
	DIR *d;

	d = opendir(SYS_VIRTIO);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (sscanf(e->d_name, "virtio%u", &i) != 1)
			continue;
		snprintf(path, sizeof(path), SYS_VIRTIO "/%s/device", e->d_name);
		if (read_text(path, id, sizeof(id)) <= 0 || strcmp(id, "0x0003"))
			continue;
		if (virtio_feature(i, VIRTIO_CONSOLE_F_MULTIPORT) == 0 && n < max)
			idx[n++] = i;
	}
	closedir(d);
	return n;
}

TEST_F(legacy, single_port_device_runs_without_multiport)
{
	unsigned int idx[4];
	char path[PATH_MAX];
	int n;

	n = legacy_devices(idx, ARRAY_SIZE(idx));
	ASSERT_EQ(1, n) TH_LOG("devices without MULTIPORT");
	snprintf(path, sizeof(path), SYS_PORTS "/vport%up0", idx[0]);
	EXPECT_TRUE(path_exists(path)) TH_LOG("%s", path);
	snprintf(path, sizeof(path), SYS_PORTS "/vport%up1", idx[0]);
	EXPECT_FALSE(path_exists(path)) TH_LOG("%s", path);
	/* Its one port is a console: the vport node refuses to open. */
	snprintf(path, sizeof(path), "/dev/vport%up0", idx[0]);
	self->fd = open(path, O_RDWR);
	EXPECT_EQ(-1, self->fd);
	EXPECT_EQ(ENXIO, errno);
}

TEST_F(legacy, single_port_console_moves_data_both_ways)
{
	const char *ids[8];
	int hvc[8], n, i;
	char text[64];

	n = ids_of_consoles(ids, ARRAY_SIZE(ids));
	MAP_CONSOLES(ids, n, hvc);
	for (i = 0; i < n && strcmp(ids[i], "l0"); i++)
		;
	ASSERT_LT(i, n);
	ASSERT_LE(0, hvc[i]);
	self->fd = hvc_open_raw(hvc[i], O_NONBLOCK);
	ASSERT_LE(0, self->fd);
	snprintf(text, sizeof(text), "legacy-in-%d", getpid());
	ASSERT_EQ(0, host_put("l0", text));
	EXPECT_EQ(0, expect_text(self->fd, text, DATA_TIMEOUT_MS));
	snprintf(text, sizeof(text), "legacy-out-%d", getpid());
	ASSERT_EQ((ssize_t)strlen(text), write(self->fd, text, strlen(text)));
	EXPECT_EQ(0, host_find("l0", text, DATA_TIMEOUT_MS)) TH_LOG("host: %s", host_said);
}

/* ==== tests: hot-plug ====================================================== */

/*
 * Debian's udevd, with the project's rule alone, where guest_vmtest.sh could
 * put it into the VM (udevadm is also systemd-udevd).
 */
#define UDEVADM			"/bin/udevadm"
#define UDEVD			"/lib/systemd/systemd-udevd"
#define UDEV_LINKS		"/dev/virtio-ports"
#define UDEV_TIMEOUT_MS		90000

/* Runs argv[0], at most timeout_ms; returns its exit status or -errno. */
static int run_wait(char *const argv[], int timeout_ms)
{
	int status, fd, ret;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	ret = wait_child(pid, timeout_ms, &status);
	if (ret)
		return ret;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -EINTR;
}

/* udevadm with up to three arguments. */
static int udevadm(const char *a, const char *b, const char *c)
{
	char *const argv[] = { UDEVADM, (char *)a, (char *)b, (char *)c, NULL };

	return run_wait(argv, UDEV_TIMEOUT_MS);
}

/* 0 when @link is a symbolic link to the device node @dev. */
static int link_to_node(const char *link, const char *dev)
{
	struct stat l, d;

	if (lstat(link, &l))
		return -errno;
	if (!S_ISLNK(l.st_mode))
		return -EINVAL;
	if (stat(link, &l) || stat(dev, &d))
		return -errno;
	return S_ISCHR(l.st_mode) && l.st_rdev == d.st_rdev ? 0 : -EXDEV;
}

FIXTURE(hotplug) {
	int fd;
	int kbad;
	char added[4][32];	/* device ids to remove in teardown */
	char chardevs[4][32];
	unsigned int nadded, nchardevs;
	bool udevd;		/* started udevd: stop it in teardown */
};

FIXTURE_SETUP(hotplug)
{
	self->fd = -1;
	common_setup(_metadata, &self->kbad);
}

/*
 * device_del returns once the host dropped the port; the guest lets go of
 * it when it reads PORT_REMOVE.  Tests after this one may want the number.
 */
static void hp_del_and_wait(struct __test_metadata *_metadata,
			    const char *devid)
{
	char path[PATH_MAX];
	struct vport vp;
	bool found;

	found = !strncmp(devid, "hp-", 3) && !find_port(devid + 3, &vp);
	HOST("DEVICE_DEL %s %d", devid, PLUG_TIMEOUT_MS);
	if (!found)
		return;
	snprintf(path, sizeof(path), SYS_PORTS "/%s", vp.sysname);
	if (wait_path_gone(path, PLUG_TIMEOUT_MS))
		TH_LOG("%s outlived device_del %s", path, devid);
}

FIXTURE_TEARDOWN(hotplug)
{
	int i;

	stop_test_threads();
	close_fd(&self->fd);
	for (i = self->nadded - 1; i >= 0; i--)
		if (self->added[i][0])
			hp_del_and_wait(_metadata, self->added[i]);
	for (i = self->nchardevs - 1; i >= 0; i--)
		if (self->chardevs[i][0])
			HOST("CHARDEV_DEL %s", self->chardevs[i]);
	if (self->udevd)
		udevadm("control", "--exit", NULL);
	common_teardown(_metadata, self->kbad);
}

static int hp_add_chardev(FIXTURE_DATA(hotplug) *self, const char *id)
{
	int ret = HOST("CHARDEV_ADD %s", id);

	if (!ret && self->nchardevs < ARRAY_SIZE(self->chardevs))
		snprintf(self->chardevs[self->nchardevs++], 32, "%s", id);
	return ret;
}

static void hp_forget(char (*list)[32], unsigned int n, const char *id)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (!strcmp(list[i], id))
			list[i][0] = '\0';
}

static int hp_del_chardev(FIXTURE_DATA(hotplug) *self, const char *id)
{
	hp_forget(self->chardevs, self->nchardevs, id);
	return HOST("CHARDEV_DEL %s", id);
}

/* device_add of a port named org.test.<id> (or name) on bus, id hp-<id>. */
static int hp_add_port(FIXTURE_DATA(hotplug) *self, const char *id,
		       const char *bus, unsigned int nr, const char *name)
{
	char devid[32];
	int ret;

	ret = hp_add_chardev(self, id);
	if (ret)
		return ret;
	snprintf(devid, sizeof(devid), "hp-%s", id);
	if (name)
		ret = HOST("DEVICE_ADD driver=virtserialport,bus=%s,chardev=%s,nr=%u,id=%s,name=%s",
			   bus, id, nr, devid, name);
	else
		ret = HOST("DEVICE_ADD driver=virtserialport,bus=%s,chardev=%s,nr=%u,id=%s,name="
			   PORT_PREFIX "%s", bus, id, nr, devid, id);
	if (!ret && self->nadded < ARRAY_SIZE(self->added))
		snprintf(self->added[self->nadded++], 32, "%s", devid);
	return ret;
}

static int hp_del_device(FIXTURE_DATA(hotplug) *self, const char *devid)
{
	hp_forget(self->added, self->nadded, devid);
	return HOST("DEVICE_DEL %s %d", devid, PLUG_TIMEOUT_MS);
}

/* Opens hot-plugged port id, connects the host, checks a short transfer. */
static void hp_open_and_check(struct __test_metadata *_metadata,
			      FIXTURE_DATA(hotplug) *self, const char *id,
			      uint64_t bytes)
{
	static struct duplex x;

	self->fd = open_port(id, O_RDWR);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", id, strerror(-self->fd));
	ASSERT_EQ(0, connect_host(id, self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, duplex_start(&x, id, self->fd, bytes, 300));
	DUPLEX_CHECK(&x, 60000);
}

TEST_F_TIMEOUT(hotplug, hotplugged_port_appears_works_and_goes_away, 120)
{
	char path[PATH_MAX];
	struct vport vp, p2;

	ASSERT_EQ(0, find_port("p2", &p2));
	ASSERT_EQ(0, hp_add_port(self, "h6", "vs0.0", HP_NR_A, NULL)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, wait_port("h6", &vp, PLUG_TIMEOUT_MS)) TH_LOG("port never appeared");
	EXPECT_EQ(HP_NR_A, vp.nr);
	EXPECT_EQ(p2.devidx, vp.devidx);
	ASSERT_TRUE(path_exists(vp.dev));
	hp_open_and_check(_metadata, self, "h6", 1 * MiB);
	close_fd(&self->fd);
	ASSERT_EQ(0, hp_del_device(self, "hp-h6")) TH_LOG("host: %s", host_said);
	EXPECT_EQ(0, wait_path_gone(vp.dev, PLUG_TIMEOUT_MS)) TH_LOG("%s stays", vp.dev);
	snprintf(path, sizeof(path), SYS_PORTS "/%s", vp.sysname);
	EXPECT_EQ(0, wait_path_gone(path, PLUG_TIMEOUT_MS)) TH_LOG("%s stays", path);
	EXPECT_EQ(0, hp_del_chardev(self, "h6"));
}

/*
 * tools/vserial/vserial-attach moves a port of the running device to a
 * file by hand, through QEMU's monitor (chardev-change): what the guest
 * writes afterwards lands in the file, byte for byte.  With vhost=on the
 * file's descriptor goes to the kernel's device.
 */
/*
 * The shipped udev rule: with udevd running, named ports get
 * /dev/virtio-ports/NAME, those there already (an "add" replayed by
 * udevadm trigger) and a hot-plugged one, whose name arrives after the port
 * (a "change" event); the link goes when the port does.
 */
TEST_F_TIMEOUT(hotplug, udev_rule_links_port_names, 300)
{
	char *const start[] = { UDEVD, "--daemon", "--resolve-names=never", NULL };
	struct vport p2, vp;

	if (access(UDEVD, X_OK) || access(UDEVADM, X_OK))
		SKIP(return, "no udevd in this VM (no udevadm where it was built)");
	/* udevd watches its rules and devices with inotify, or exits. */
	if (access("/proc/sys/fs/inotify", F_OK))
		SKIP(return, "this kernel has no inotify (CONFIG_INOTIFY_USER), "
		     "without which udevd does not run");
	ASSERT_EQ(0, find_port("p2", &p2));
	ASSERT_EQ(0, run_wait(start, UDEV_TIMEOUT_MS));
	self->udevd = true;
	ASSERT_EQ(0, udevadm("control", "--ping", NULL));
	ASSERT_EQ(0, udevadm("trigger", "--action=add", "--subsystem-match=virtio-ports"));
	ASSERT_EQ(0, udevadm("settle", NULL, NULL));
	EXPECT_EQ(0, link_to_node(UDEV_LINKS "/" PORT_PREFIX "p2", p2.dev));

	ASSERT_EQ(0, hp_add_port(self, "ha", "vs0.0", HP_NR_A, NULL)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, wait_port("ha", &vp, PLUG_TIMEOUT_MS)) TH_LOG("port never appeared");
	ASSERT_EQ(0, udevadm("settle", NULL, NULL));
	EXPECT_EQ(0, link_to_node(UDEV_LINKS "/" PORT_PREFIX "ha", vp.dev));

	ASSERT_EQ(0, hp_del_device(self, "hp-ha")) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, wait_path_gone(vp.dev, PLUG_TIMEOUT_MS));
	ASSERT_EQ(0, udevadm("settle", NULL, NULL));
	EXPECT_FALSE(path_exists(UDEV_LINKS "/" PORT_PREFIX "ha"));
}

TEST_F_TIMEOUT(hotplug, attach_tool_moves_a_port_to_a_file, 120)
{
	static const char text[] = "vserial-attach moved this port to a file\n";
	char hex[41], want[80];
	struct sha1 sha;
	struct vport vp;
	int ret;

	ASSERT_EQ(0, hp_add_port(self, "ha", "vs0.0", HP_NR_A, NULL)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, wait_port("ha", &vp, PLUG_TIMEOUT_MS)) TH_LOG("port never appeared");
	self->fd = open_port("ha", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("ha", self->fd)) TH_LOG("host: %s", host_said);
	ret = HOST("ATTACH ha file");
	if (ret && !strncmp(host_said, "ERR SKIP ", 9))
		SKIP(return, "%.200s", host_said + 9);
	ASSERT_EQ(0, ret) TH_LOG("host: %s", host_said);
	/* A file is always there: the port is open on the host side. */
	ASSERT_EQ(0, wait_host_state(self->fd, true, STATE_TIMEOUT_MS));
	ASSERT_EQ((ssize_t)strlen(text), write(self->fd, text, strlen(text)));
	ASSERT_EQ(0, host_cmd_t(DATA_TIMEOUT_MS + 5000, "FILE_SHA ha %zu %d",
				strlen(text), DATA_TIMEOUT_MS))
		TH_LOG("host: %s", host_said);
	sha1_init(&sha);
	sha1_update(&sha, text, strlen(text));
	sha1_hex_final(&sha, hex);
	snprintf(want, sizeof(want), "size=%zu sha=%s", strlen(text), hex);
	EXPECT_STREQ(want, host_said);
}

TEST_F_TIMEOUT(hotplug, unplug_wakes_blocked_reader_with_enodev, 120)
{
	struct pollfd pfd;
	struct vport vp;
	static struct call c;

	ASSERT_EQ(0, hp_add_port(self, "h6", "vs0.0", HP_NR_A, NULL)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, wait_port("h6", &vp, PLUG_TIMEOUT_MS));
	self->fd = open(vp.dev, O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("h6", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, call_start(&c, self->fd, false, 64));
	ASSERT_EQ(0, call_wait_blocked(&c, WAKE_TIMEOUT_MS));
	ASSERT_EQ(0, hp_del_device(self, "hp-h6")) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, call_join(&c, WAKE_TIMEOUT_MS)) TH_LOG("reader not woken by unplug");
	EXPECT_EQ(-1, c.ret);
	EXPECT_EQ(ENODEV, c.err) TH_LOG("read: %s", strerror(c.err));
	/* The open descriptor keeps failing cleanly until it is closed. */
	EXPECT_EQ(-1, write(self->fd, "x", 1));
	EXPECT_EQ(ENODEV, errno);
	pfd.fd = self->fd;
	pfd.events = POLLIN | POLLOUT;
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(pfd.revents & POLLHUP);
	close_fd(&self->fd);
	EXPECT_EQ(0, hp_del_chardev(self, "h6"));
}

/*
 * A writer blocked on a full queue wakes up when its port goes away.  QEMU
 * hands back the queued buffers before the guest hears PORT_REMOVE, so the
 * blocked write may still complete; the writes after it fail with ENODEV.
 */
TEST_F_TIMEOUT(hotplug, unplug_wakes_blocked_writer_with_enodev, 120)
{
	struct vport vp;
	static struct worker w;

	ASSERT_EQ(0, hp_add_port(self, "h6", "vs0.0", HP_NR_A, NULL)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, wait_port("h6", &vp, PLUG_TIMEOUT_MS));
	self->fd = open(vp.dev, O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("h6", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, worker_start(&w, self->fd, true, 8192 * MiB, 41, false));
	ASSERT_EQ(0, worker_wait_blocked(&w, 30000)) TH_LOG("writer did not block");
	ASSERT_EQ(0, hp_del_device(self, "hp-h6")) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, worker_join(&w, WAKE_TIMEOUT_MS)) TH_LOG("writer not woken by unplug");
	EXPECT_EQ(ENODEV, w.err) TH_LOG("write: %s after %llu bytes", strerror(w.err),
					(unsigned long long)w.done);
	close_fd(&self->fd);
	EXPECT_EQ(0, hp_del_chardev(self, "h6"));
}

/* Unplug in the middle of a transfer each way, then plug the port again. */
TEST_F_TIMEOUT(hotplug, unplug_during_transfer_then_replug, 240)
{
	static struct worker rd, wr;
	struct vport vp;

	ASSERT_EQ(0, hp_add_port(self, "h6", "vs0.0", HP_NR_A, NULL)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, wait_port("h6", &vp, PLUG_TIMEOUT_MS));
	self->fd = open(vp.dev, O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("h6", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_HOST("RECV h6 0 count");
	ASSERT_HOST("SEND h6 %llu 31", 8192 * MiB);
	ASSERT_EQ(0, worker_start(&rd, self->fd, false, 8192 * MiB, 31, true));
	ASSERT_EQ(0, worker_start(&wr, self->fd, true, 8192 * MiB, 32, false));
	ASSERT_EQ(0, worker_wait_progress(&rd, 2 * MiB, 60000));
	ASSERT_EQ(0, worker_wait_progress(&wr, 2 * MiB, 60000));
	ASSERT_EQ(0, hp_del_device(self, "hp-h6")) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, worker_join(&rd, WAKE_TIMEOUT_MS)) TH_LOG("reader not woken by unplug");
	ASSERT_EQ(0, worker_join(&wr, WAKE_TIMEOUT_MS)) TH_LOG("writer not woken by unplug");
	EXPECT_EQ(ENODEV, rd.err) TH_LOG("read: %s, eof %d", strerror(rd.err), rd.eof);
	EXPECT_EQ(ENODEV, wr.err) TH_LOG("write: %s", strerror(wr.err));
	EXPECT_EQ(-1, rd.mismatch) TH_LOG("byte %lld is wrong", (long long)rd.mismatch);
	close_fd(&self->fd);
	EXPECT_EQ(0, wait_path_gone(vp.dev, PLUG_TIMEOUT_MS));
	ASSERT_EQ(0, hp_del_chardev(self, "h6"));

	/* The same number, plugged again, is a fresh working port. */
	ASSERT_EQ(0, hp_add_port(self, "h6", "vs0.0", HP_NR_A, NULL)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, wait_port("h6", &vp, PLUG_TIMEOUT_MS));
	EXPECT_EQ(HP_NR_A, vp.nr);
	hp_open_and_check(_metadata, self, "h6", 1 * MiB);
}

/* A whole virtio-serial PCI device goes away while one of its ports is open. */
TEST_F_TIMEOUT(hotplug, device_unplug_wakes_reader_with_enodev, 240)
{
	struct vport vp;
	static struct call c;

	ASSERT_HOST("DEVICE_ADD driver=virtio-serial-pci,id=vs9,max_ports=4");
	snprintf(self->added[self->nadded++], 32, "vs9");
	ASSERT_EQ(0, hp_add_port(self, "h9", "vs9.0", 1, NULL)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, wait_port("h9", &vp, 2 * PLUG_TIMEOUT_MS))
		TH_LOG("port of the hot-plugged device never appeared");
	hp_open_and_check(_metadata, self, "h9", 256 * 1024);
	ASSERT_EQ(0, call_start(&c, self->fd, false, 64));
	ASSERT_EQ(0, call_wait_blocked(&c, WAKE_TIMEOUT_MS));
	hp_forget(self->added, self->nadded, "hp-h9");
	ASSERT_EQ(0, hp_del_device(self, "vs9")) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, call_join(&c, WAKE_TIMEOUT_MS)) TH_LOG("reader not woken by device removal");
	EXPECT_EQ(-1, c.ret);
	EXPECT_EQ(ENODEV, c.err) TH_LOG("read: %s", strerror(c.err));
	close_fd(&self->fd);
	EXPECT_EQ(0, wait_path_gone(vp.dev, PLUG_TIMEOUT_MS));
	EXPECT_EQ(0, hp_del_chardev(self, "h9"));
}

/* ==== tests: a device that misbehaves ====================================== */

FIXTURE(malicious) {
	int fd;
	int kbad;
};

FIXTURE_SETUP(malicious)
{
	self->fd = -1;
	common_setup(_metadata, &self->kbad);
}

static int malicious_p2(struct vport *vp, unsigned int *max_ports);

FIXTURE_TEARDOWN(malicious)
{
	unsigned int max_ports;
	struct vport p2;

	stop_test_threads();
	close_fd(&self->fd);
	/* A case that failed may leave empty buffers to come on p2. */
	if (!malicious_p2(&p2, &max_ports))
		HOST("INJECT " PORT_PREFIX "p2 used_empty %u 0", p2.nr);
	HOST("DEVICE_DEL hp-hl %d", PLUG_TIMEOUT_MS);
	HOST("CHARDEV_DEL hl");
	common_teardown(_metadata, self->kbad);
}

/*
 * QEMU 7.2 copies a port name into one control buffer and reports the full
 * length as used even when it exceeds the buffer: a name longer than the
 * guest's buffer arrives cut, without its terminator, with a used length
 * larger than the buffer.  The guest must stay up and keep the port usable.
 */
TEST_F_TIMEOUT(malicious, oversized_port_name_is_handled, 120)
{
	char name[LONG_NAME_LEN + 1], path[PATH_MAX], shown[LONG_NAME_LEN + 64];
	struct vport p2, vp;
	static struct duplex x;
	int len = -1, i, ret;

	ASSERT_EQ(0, find_port("p2", &p2));
	memset(name, 'n', LONG_NAME_LEN);
	name[LONG_NAME_LEN] = '\0';
	ASSERT_HOST("CHARDEV_ADD hl");
	ret = HOST("DEVICE_ADD driver=virtserialport,bus=vs0.0,chardev=hl,nr=%u,id=hp-hl,name=%s",
		   HP_NR_B, name);
	/* A vhost device checks names when the port is added. */
	if (ret && strstr(host_said, "port name longer than")) {
		HOST("CHARDEV_DEL hl");
		SKIP(return, "the device refuses such names at device_add, none reaches the guest");
	}
	ASSERT_EQ(0, ret) TH_LOG("host: %s", host_said);
	snprintf(vp.sysname, sizeof(vp.sysname), "vport%up%u", p2.devidx, HP_NR_B);
	snprintf(path, sizeof(path), SYS_PORTS "/%s/name", vp.sysname);
	wait_uevents(path_has_text, path, PLUG_TIMEOUT_MS);
	len = read_text(path, shown, sizeof(shown));
	ASSERT_LT(0, len) TH_LOG("%s never showed a name", path);
	EXPECT_GE(LONG_NAME_LEN, len);
	for (i = 0; i < len && shown[i] == 'n'; i++)
		;
	EXPECT_EQ(len, i) TH_LOG("name has a foreign byte at %d", i);
	TH_LOG("a %d-byte name shows as %d bytes", LONG_NAME_LEN, len);
	snprintf(path, sizeof(path), "%s", vp.sysname);
	ASSERT_TRUE(vport_parse(path, &vp));
	self->fd = open(vp.dev, O_RDWR);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", vp.dev, strerror(errno));
	ASSERT_EQ(0, connect_host("hl", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, duplex_start(&x, "hl", self->fd, 256 * 1024, 400));
	DUPLEX_CHECK(&x, 60000);
}

/*
 * The cases below need a device that breaks the protocol on request: the
 * vhost-serial module does (its debugfs "inject" file, reached through the
 * host's INJECT request), QEMU's own device cannot, so they SKIP there.
 * Each injects, then connects the host end of p2: the PORT_OPEN follows the
 * injected messages on the control queue, so once the guest sees p2
 * connected it has handled them.  Then p2 must still carry checked data.
 */
#define INJECT(...) do {						\
	int __r = HOST("INJECT " PORT_PREFIX "p2 " __VA_ARGS__);	\
	if (__r && !strncmp(host_said, "ERR SKIP ", 9))			\
		SKIP(return, "%.200s", host_said + 9);			\
	ASSERT_EQ(0, __r) TH_LOG("host: %s", host_said);		\
} while (0)

/* p2 of the group's first device: its port number and max_ports. */
static int malicious_p2(struct vport *vp, unsigned int *max_ports)
{
	const struct topo_dev *dev;

	if (!topo_find(cur_group, "p2", &dev))
		return -ENOENT;
	*max_ports = dev->max_ports;
	return find_port("p2", vp);
}

static int malicious_open_p2(int *fd)
{
	*fd = open_port("p2", O_RDWR);
	return *fd < 0 ? *fd : 0;
}

static bool port_nr_exists(const struct vport *p2, unsigned int nr)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), SYS_PORTS "/vport%up%u", p2->devidx, nr);
	return path_exists(path);
}

/* Whether p2's device negotiated VIRTIO_RING_F_EVENT_IDX (bit 29). */
static bool port_has_event_idx(const struct vport *p2)
{
	char path[PATH_MAX], bits[128];

	snprintf(path, sizeof(path), SYS_PORTS "/vport%up%u/device/features",
		 p2->devidx, p2->nr);
	return read_text(path, bits, sizeof(bits)) > 29 && bits[29] == '1';
}

#define MALICIOUS_P2_STILL_WORKS(self) do {				\
	static struct duplex __x;					\
	ASSERT_EQ(0, connect_host("p2", (self)->fd))			\
		TH_LOG("host: %s", host_said);				\
	ASSERT_EQ(0, duplex_start(&__x, "p2", (self)->fd, 256 * 1024, 500)); \
	DUPLEX_CHECK(&__x, 60000);					\
} while (0)

TEST_F(malicious, control_message_for_missing_port)
{
	unsigned int max_ports;
	struct vport p2;

	ASSERT_EQ(0, malicious_p2(&p2, &max_ports));
	ASSERT_FALSE(port_nr_exists(&p2, HP_NR_A));
	ASSERT_EQ(0, malicious_open_p2(&self->fd));
	INJECT("ctrl %u %u 1", HP_NR_A, VIRTIO_CONSOLE_PORT_OPEN);
	INJECT("ctrl %u %u 0", HP_NR_A, VIRTIO_CONSOLE_RESIZE);
	INJECT("ctrl %u %u 1 ghost", HP_NR_A, VIRTIO_CONSOLE_PORT_NAME);
	INJECT("ctrl %u %u 1", HP_NR_A, VIRTIO_CONSOLE_CONSOLE_PORT);
	INJECT("ctrl %u %u 1", HP_NR_A, VIRTIO_CONSOLE_PORT_REMOVE);
	INJECT("ctrl 4294967295 %u 1", VIRTIO_CONSOLE_PORT_OPEN);
	INJECT("ctrl %u 65535 1", p2.nr);
	MALICIOUS_P2_STILL_WORKS(self);
	EXPECT_FALSE(port_nr_exists(&p2, HP_NR_A));
}

TEST_F(malicious, port_add_beyond_max_nr_ports)
{
	unsigned int max_ports;
	struct vport p2;

	ASSERT_EQ(0, malicious_p2(&p2, &max_ports));
	ASSERT_EQ(0, malicious_open_p2(&self->fd));
	INJECT("ctrl %u %u 1", max_ports, VIRTIO_CONSOLE_PORT_ADD);
	INJECT("ctrl 4294967295 %u 1", VIRTIO_CONSOLE_PORT_ADD);
	MALICIOUS_P2_STILL_WORKS(self);
	EXPECT_FALSE(port_nr_exists(&p2, max_ports));
}

/* A second PORT_ADD for an open port: the open port stays as it was. */
TEST_F(malicious, duplicate_port_add_while_running)
{
	unsigned int max_ports;
	struct vport p2, again;
	struct stat before, after;

	ASSERT_EQ(0, malicious_p2(&p2, &max_ports));
	ASSERT_EQ(0, malicious_open_p2(&self->fd));
	ASSERT_EQ(0, fstat(self->fd, &before));
	INJECT("ctrl %u %u 1", p2.nr, VIRTIO_CONSOLE_PORT_ADD);
	INJECT("ctrl %u %u 1", p2.nr, VIRTIO_CONSOLE_PORT_ADD);
	MALICIOUS_P2_STILL_WORKS(self);
	ASSERT_EQ(0, find_port("p2", &again));
	EXPECT_EQ(p2.nr, again.nr);
	ASSERT_EQ(0, stat(again.dev, &after));
	EXPECT_EQ(before.st_rdev, after.st_rdev);
}

/*
 * A port the device announces, then names without a terminator: the name
 * shows exactly, nothing after it.  The device has no such port, so the
 * guest's PORT_READY for it goes nowhere: the device must not mind either.
 */
TEST_F(malicious, name_without_terminator)
{
	static const char name[] = "unterminated";
	char path[PATH_MAX], shown[128];
	unsigned int max_ports;
	struct vport p2;
	int len;

	ASSERT_EQ(0, malicious_p2(&p2, &max_ports));
	ASSERT_FALSE(port_nr_exists(&p2, HP_NR_A));
	ASSERT_EQ(0, malicious_open_p2(&self->fd));
	INJECT("ctrl %u %u 1", HP_NR_A, VIRTIO_CONSOLE_PORT_ADD);
	INJECT("ctrl %u %u 1 %s", HP_NR_A, VIRTIO_CONSOLE_PORT_NAME, name);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	snprintf(path, sizeof(path), SYS_PORTS "/vport%up%u/name", p2.devidx, HP_NR_A);
	len = read_text(path, shown, sizeof(shown));
	INJECT("ctrl %u %u 1", HP_NR_A, VIRTIO_CONSOLE_PORT_REMOVE);
	ASSERT_EQ((int)strlen(name), len) TH_LOG("%s: %d bytes", path, len);
	EXPECT_EQ(0, memcmp(shown, name, len));
	ASSERT_EQ(0, disconnect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	MALICIOUS_P2_STILL_WORKS(self);
	EXPECT_FALSE(port_nr_exists(&p2, HP_NR_A));
}

/*
 * The device reports a receive buffer longer than it is: the guest reads
 * no more than the buffer holds, and the stream goes on.
 */
TEST_F(malicious, data_used_length_larger_than_buffer)
{
	static char buf[4 * MiB];
	unsigned int max_ports;
	struct pollfd pfd;
	struct stream st;
	char want[64];
	struct vport p2;
	ssize_t n;

	ASSERT_EQ(0, malicious_p2(&p2, &max_ports));
	ASSERT_EQ(0, malicious_open_p2(&self->fd));
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	INJECT("used_extra %u %u", p2.nr, 1U << 30);
	ASSERT_HOST("SEND p2 %zu 77", sizeof(want));
	ASSERT_HOST("WAIT p2 %d", DATA_TIMEOUT_MS);
	n = read(self->fd, buf, sizeof(buf));
	ASSERT_LE((ssize_t)sizeof(want), n) TH_LOG("read: %s", strerror(errno));
	EXPECT_GT((ssize_t)sizeof(buf), n);
	stream_init(&st, 77);
	stream_fill(&st, want, sizeof(want));
	EXPECT_EQ(0, memcmp(buf, want, sizeof(want)));
	TH_LOG("a %zu-byte send reported 1 GiB longer reads as %zd bytes",
	       sizeof(want), n);
	pfd.fd = self->fd;
	pfd.events = POLLIN;
	EXPECT_EQ(0, poll(&pfd, 1, 0)) TH_LOG("more data than the device wrote");
	ASSERT_EQ(0, disconnect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	MALICIOUS_P2_STILL_WORKS(self);
}

/*
 * The device hands receive buffers back empty, thousands of times: the
 * guest gives each back, and the data that follows still arrives.  The
 * driver takes a bounded number of empty buffers per turn; with
 * VIRTIO_RING_F_EVENT_IDX no interrupt comes for those it left, so it has
 * to come back for them itself, or the port stalls with data in its ring.
 */
TEST_F_TIMEOUT(malicious, empty_buffers_do_not_stall_the_port, 180)
{
	unsigned int max_ports;
	char buf[64], want[64];
	struct stream st;
	struct vport p2;
	ssize_t n;

	ASSERT_EQ(0, malicious_p2(&p2, &max_ports));
	ASSERT_TRUE(port_has_event_idx(&p2))
		TH_LOG("VIRTIO_RING_F_EVENT_IDX not negotiated: the case needs it");
	ASSERT_EQ(0, malicious_open_p2(&self->fd));
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	INJECT("used_empty %u %u", p2.nr, 2048);
	ASSERT_HOST("SEND p2 %zu 78", sizeof(want));
	n = read_exact(self->fd, buf, sizeof(buf), 6 * DATA_TIMEOUT_MS);
	ASSERT_EQ((ssize_t)sizeof(buf), n)
		TH_LOG("read after empty buffers: %s",
		       n < 0 ? strerror((int)-n) : "end of file");
	stream_init(&st, 78);
	stream_fill(&st, want, sizeof(want));
	EXPECT_EQ(0, memcmp(buf, want, sizeof(want)));
	ASSERT_EQ(0, disconnect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	MALICIOUS_P2_STILL_WORKS(self);
}

/* ==== tests: suspend and resume ============================================ */

FIXTURE(pm) {
	int fd;
	int kbad;
};

FIXTURE_SETUP(pm)
{
	self->fd = -1;
	common_setup(_metadata, &self->kbad);
}

FIXTURE_TEARDOWN(pm)
{
	stop_test_threads();
	close_fd(&self->fd);
	write_text("/sys/power/pm_test", "none");
	common_teardown(_metadata, self->kbad);
}

/*
 * Suspends and resumes every device through the driver's freeze and
 * restore callbacks (suspend-to-idle with pm_test=devices: the devices go
 * down and come back, the machine does not sleep).  Returns a reason to
 * skip, or NULL.
 */
static const char *pm_cycle(struct __test_metadata *_metadata)
{
	static const char stats[] = "/sys/power/suspend_stats/success";
	char states[128], before[32] = "", after[32] = "";
	int ret;

	if (read_text("/sys/power/state", states, sizeof(states)) < 0 ||
	    !strstr(states, "freeze"))
		return "no suspend-to-idle in /sys/power/state";
	if (!path_exists("/sys/power/pm_test"))
		return "no /sys/power/pm_test (CONFIG_PM_DEBUG)";
	write_text("/sys/module/suspend/parameters/pm_test_delay", "0");
	read_text(stats, before, sizeof(before));
	EXPECT_EQ(0, write_text("/sys/power/pm_test", "devices"));
	ret = write_text("/sys/power/state", "freeze");
	EXPECT_EQ(0, ret) TH_LOG("suspend failed: %s", strerror(-ret));
	EXPECT_EQ(0, write_text("/sys/power/pm_test", "none"));
	/* The kernel counts a suspend that went down and came back. */
	read_text(stats, after, sizeof(after));
	EXPECT_EQ(atoi(before) + 1, atoi(after)) TH_LOG("suspend_stats/success %s -> %s",
						      before, after);
	return NULL;
}

TEST_F_TIMEOUT(pm, open_port_works_after_freeze_and_restore, 180)
{
	const char *skip, *ids[8];
	static struct duplex x;
	int hvc[8], fd, n, i;
	char text[64];

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, duplex_start(&x, "p2", self->fd, 1 * MiB, 500));
	DUPLEX_CHECK(&x, 60000);

	skip = pm_cycle(_metadata);
	if (skip)
		SKIP(return, "%s", skip);

	/* The open port comes back connected and moves data. */
	ASSERT_EQ(0, wait_host_state(self->fd, true, STATE_TIMEOUT_MS))
		TH_LOG("host connection not seen again after restore");
	ASSERT_EQ(0, duplex_start(&x, "p2", self->fd, 4 * MiB, 510));
	DUPLEX_CHECK(&x, 60000);
	/* A port that was closed opens. */
	fd = open_port("p3", O_RDWR);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, connect_host("p3", fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, duplex_start(&x, "p3", fd, 1 * MiB, 520));
	DUPLEX_CHECK(&x, 60000);
	close(fd);
	/* Consoles work. */
	n = ids_of_consoles(ids, ARRAY_SIZE(ids));
	MAP_CONSOLES(ids, n, hvc);
	for (i = 0; i < n; i++) {
		ASSERT_LE(0, hvc[i]) TH_LOG("%s lost its hvc", ids[i]);
		fd = hvc_open_raw(hvc[i], O_NONBLOCK);
		ASSERT_LE(0, fd);
		snprintf(text, sizeof(text), "after-restore-%s-%d", ids[i], getpid());
		EXPECT_EQ((ssize_t)strlen(text), write(fd, text, strlen(text)));
		EXPECT_EQ(0, host_find(ids[i], text, DATA_TIMEOUT_MS)) TH_LOG("%s", ids[i]);
		close(fd);
	}
}

TEST_F_TIMEOUT(pm, blocked_reader_survives_freeze_and_restore, 180)
{
	const char *skip;
	static struct call c;

	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, call_start(&c, self->fd, false, 64));
	ASSERT_EQ(0, call_wait_blocked(&c, WAKE_TIMEOUT_MS));
	skip = pm_cycle(_metadata);
	if (skip) {
		HOST("DISCONNECT p2");
		call_join(&c, WAKE_TIMEOUT_MS);
		SKIP(return, "%s", skip);
	}
	ASSERT_EQ(0, wait_host_state(self->fd, true, STATE_TIMEOUT_MS));
	EXPECT_FALSE(c.finished) TH_LOG("read returned %zd (%s) across the freeze",
					c.ret, strerror(c.err));
	ASSERT_EQ(0, host_put("p2", "thawed"));
	ASSERT_EQ(0, call_join(&c, WAKE_TIMEOUT_MS));
	EXPECT_EQ(6, c.ret);
	EXPECT_EQ(0, memcmp(c.buf, "thawed", 6));
}

/*
 * A writer asleep on a full ring through a freeze: the reset took what
 * the device held, so after restore the ring has room, and the writer
 * must go on without waiting for anything from the host.
 */
TEST_F_TIMEOUT(pm, blocked_writer_resumes_after_freeze_and_restore, 180)
{
	static struct worker w;
	const char *skip;
	uint64_t before;

	/* Measured: 6.12's in-tree driver leaves it asleep (no wake-up). */
	if (!is_project_driver())
		SKIP(return, "the %s driver does not wake writers at restore",
		     opt_driver);
	self->fd = open_port("p2", O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, connect_host("p2", self->fd)) TH_LOG("host: %s", host_said);
	ASSERT_EQ(0, worker_start(&w, self->fd, true, 8192 * MiB, 44, false));
	ASSERT_EQ(0, worker_wait_blocked(&w, 30000)) TH_LOG("writer did not block");
	before = w.done;
	skip = pm_cycle(_metadata);
	if (skip)
		SKIP(return, "%s", skip);
	EXPECT_EQ(0, worker_wait_progress(&w, before + 1, DATA_TIMEOUT_MS))
		TH_LOG("the writer slept on after restore, %llu bytes written",
		       (unsigned long long)w.done);
	/*
	 * Leave the port empty: a device that loses nothing would hand what
	 * is still queued to the next test's host.  The host drains up to a
	 * marker written after the writer's last call.
	 */
	w.stop = 1;
	ASSERT_HOST("RECV p2 0 keep");
	ASSERT_EQ(0, worker_join(&w, DATA_TIMEOUT_MS));
	ASSERT_EQ(11, write(self->fd, "end-of-test", 11));
	EXPECT_EQ(0, host_find("p2", "end-of-test", DATA_TIMEOUT_MS));
}

/*
 * Console output while the driver is frozen, its queues down, takes the
 * emergency-write register.  With console suspend off the kernel prints
 * the PM test's message in that window; without the register it would be
 * lost, since an hvc console drops what put_chars refuses.
 */
#define CONSOLE_SUSPEND		"/sys/module/printk/parameters/console_suspend"
#define PRINTK_LEVELS		"/proc/sys/kernel/printk"

/* Also from the teardown: a failed assertion must not leave them changed. */
static void console_restore_printk(FIXTURE_DATA(console) *self)
{
	if (!self->printk_levels[0])
		return;
	write_text(PRINTK_LEVELS, self->printk_levels);
	write_text(CONSOLE_SUSPEND, "Y");
	self->printk_levels[0] = '\0';
}

TEST_F_TIMEOUT(console, emergency_write_carries_output_while_frozen, 180)
{
	static const char text[] = "suspend debug: Waiting";
	const char *skip;
	unsigned int i;
	int found = -1;

	if (!strstr(cur_group->cmdline, "console=hvc0"))
		SKIP(return, "group %s boots without console=hvc0", cur_group->name);
	if (!is_project_driver())
		SKIP(return, "the %s driver does not negotiate VIRTIO_CONSOLE_F_EMERG_WRITE",
		     opt_driver);
	MAP_CONSOLES(self->ids, self->n, self->hvc);
	ASSERT_LT(0, read_text(PRINTK_LEVELS, self->printk_levels,
			       sizeof(self->printk_levels)));
	ASSERT_EQ(0, write_text(CONSOLE_SUSPEND, "N"));
	ASSERT_EQ(0, write_text(PRINTK_LEVELS, "8"));
	skip = pm_cycle(_metadata);
	console_restore_printk(self);
	if (skip)
		SKIP(return, "%s", skip);
	/*
	 * The kernel prints on hvc0 (console=hvc0), so the bytes take the
	 * register of the device behind it, whose first console port the
	 * host has open receives them.  Look there first: every chardev that
	 * is not it costs a whole timeout.
	 */
	for (i = 0; i < self->n && found < 0; i++)
		if (self->hvc[i] == 0 &&
		    !host_find(self->ids[i], text, DATA_TIMEOUT_MS))
			found = i;
	for (i = 0; i < self->n && found < 0; i++)
		if (self->hvc[i] != 0 &&
		    !host_find(self->ids[i], text, WAKE_TIMEOUT_MS))
			found = i;
	EXPECT_LE(0, found) TH_LOG("no console chardev received \"%s\"", text);
}

/* ==== tests: bulk transfers ================================================ */

FIXTURE(bulk) {
	int fd[4];
	int kbad;
};

FIXTURE_SETUP(bulk)
{
	int i;

	for (i = 0; i < 4; i++)
		self->fd[i] = -1;
	common_setup(_metadata, &self->kbad);
}

FIXTURE_TEARDOWN(bulk)
{
	int i;

	stop_test_threads();
	for (i = 0; i < 4; i++)
		close_fd(&self->fd[i]);
	common_teardown(_metadata, self->kbad);
}

static void bulk_run(struct __test_metadata *_metadata,
		     FIXTURE_DATA(bulk) *self, unsigned int nports)
{
	static const char *const ids[] = { "p2", "p3", "p4", "p5" };
	static struct duplex x[4];
	unsigned int i;
	double t0, dt;

	for (i = 0; i < nports; i++) {
		self->fd[i] = open_port(ids[i], O_RDWR);
		ASSERT_LE(0, self->fd[i]) TH_LOG("%s", ids[i]);
		ASSERT_EQ(0, connect_host(ids[i], self->fd[i])) TH_LOG("host: %s", host_said);
	}
	t0 = now_s();
	for (i = 0; i < nports; i++)
		ASSERT_EQ(0, duplex_start(&x[i], ids[i], self->fd[i], bulk_bytes,
					  1000 + 10 * i));
	for (i = 0; i < nports; i++)
		DUPLEX_CHECK(&x[i], 240000);
	dt = now_s() - t0;
	TH_LOG("%u port(s), %llu MiB each way each: %.1f s, %.1f MB/s in total",
	       nports, (unsigned long long)(bulk_bytes / MiB), dt,
	       2.0 * nports * bulk_bytes / 1e6 / dt);
}

TEST_F_TIMEOUT(bulk, sha1_checked_each_way_on_one_port, 300)
{
	bulk_run(_metadata, self, 1);
}

TEST_F_TIMEOUT(bulk, sha1_checked_each_way_on_four_ports_at_once, 300)
{
	bulk_run(_metadata, self, 4);
}

/* ==== benchmarks (printed, not asserted) =================================== */

/*
 * Each figure is the median of a few rounds, printed with their spread:
 * one TCG run moves a lot from one round to the next.
 *
 *   BENCH <name> <median> <unit> min <min> max <max> runs <rounds>
 */
#define BENCH_BYTES	(128 * MiB)
#define BENCH_ROUNDS	5
#define RTT_ECHOES	500

FIXTURE(bench) {
	int fd;
	int kbad;
};

FIXTURE_SETUP(bench)
{
	self->fd = -1;
	common_setup(_metadata, &self->kbad);
}

FIXTURE_TEARDOWN(bench)
{
	stop_test_threads();
	close_fd(&self->fd);
	common_teardown(_metadata, self->kbad);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void bench_print(const char *name, const char *unit, double *v)
{
	qsort(v, BENCH_ROUNDS, sizeof(*v), cmp_double);
	printf("BENCH %s %.1f %s min %.1f max %.1f runs %d\n", name,
	       v[BENCH_ROUNDS / 2], unit, v[0], v[BENCH_ROUNDS - 1],
	       BENCH_ROUNDS);
	fflush(stdout);
}

static uint64_t bench_bytes(void)
{
	return bulk_given ? bulk_bytes : BENCH_BYTES;
}

/* The host's busy CPU time so far, in seconds (its CPU request). */
static int host_cpu_s(double *s)
{
	unsigned long long busy, total;
	long hz;
	int ret;

	ret = HOST("CPU");
	if (ret)
		return ret;
	if (sscanf(host_said, "busy=%llu total=%llu hz=%ld", &busy, &total,
		   &hz) != 3 || hz <= 0)
		return -EPROTO;
	*s = (double)busy / hz;
	return 0;
}

/* Host CPU seconds per GiB moved, from busy times around a transfer. */
static double cpu_per_gib(double c0, double c1)
{
	return (c1 - c0) / ((double)bench_bytes() / (1024.0 * MiB));
}

/*
 * Where a round's time went on this side: how busy this guest's CPUs were,
 * and virtio interrupts and context switches per @unit (@units of them in
 * the round).  Printed with each round, so that a figure says whether the
 * guest computed or waited.
 */
static void bench_log_guest(struct __test_metadata *_metadata, int round,
			    double value, const char *vunit, double units,
			    const char *unit, const struct cpu_stat *s0)
{
	struct cpu_stat s1;

	if (!s0->total || read_cpu_stat(&s1) || s1.total == s0->total) {
		TH_LOG("round %d: %.1f %s", round + 1, value, vunit);
		return;
	}
	TH_LOG("round %d: %.1f %s; guest CPUs %.0f%% busy, %.2f virtio interrupts and %.2f context switches per %s",
	       round + 1, value, vunit,
	       100.0 * (s1.busy - s0->busy) / (s1.total - s0->total),
	       (s1.virtio_irqs - s0->virtio_irqs) / units,
	       (s1.ctxt - s0->ctxt) / units, unit);
}

/* The same for a throughput round, per block moved. */
static void bench_log_blocks(struct __test_metadata *_metadata, int round,
			     double mbps, const struct cpu_stat *s0)
{
	char unit[16];

	snprintf(unit, sizeof(unit), "%d KiB", IO_BLOCK / 1024);
	bench_log_guest(_metadata, round, mbps, "MB/s",
			(double)bench_bytes() / IO_BLOCK, unit, s0);
}

/* Guest -> host through @fd, the guest's end of the host's port @id. */
static void bench_g2h(struct __test_metadata *_metadata, int fd,
		      const char *id)
{
	static char buf[IO_BLOCK];
	double t0, c0, c1, mbps[BENCH_ROUNDS], cpu[BENCH_ROUNDS];
	struct xfer_result res;
	struct cpu_stat st;
	uint64_t done;
	ssize_t r;
	int round;

	for (round = 0; round < BENCH_ROUNDS; round++) {
		ASSERT_HOST("RECV %s %llu count", id,
			    (unsigned long long)bench_bytes());
		ASSERT_EQ(0, host_cpu_s(&c0)) TH_LOG("host: %s", host_said);
		read_cpu_stat(&st);
		t0 = now_s();
		for (done = 0; done < bench_bytes(); done += r) {
			r = write(fd, buf, sizeof(buf));
			ASSERT_LT(0, r) TH_LOG("write: %s", strerror(errno));
		}
		ASSERT_EQ(0, host_wait(id, 120000, 0, &res)) TH_LOG("host: %s", host_said);
		mbps[round] = bench_bytes() / 1e6 / (now_s() - t0);
		ASSERT_EQ(0, host_cpu_s(&c1)) TH_LOG("host: %s", host_said);
		cpu[round] = cpu_per_gib(c0, c1);
		EXPECT_EQ(bench_bytes(), res.rx);
		bench_log_blocks(_metadata, round, mbps[round], &st);
	}
	bench_print("guest_to_host_MBps", "MB/s", mbps);
	bench_print("host_cpu_g2h_s_per_GiB", "s/GiB", cpu);
}

static void bench_h2g(struct __test_metadata *_metadata, int fd,
		      const char *id)
{
	static char buf[IO_BLOCK];
	double t0, c0, c1, mbps[BENCH_ROUNDS], cpu[BENCH_ROUNDS];
	struct cpu_stat st;
	uint64_t done;
	ssize_t r;
	int round;

	for (round = 0; round < BENCH_ROUNDS; round++) {
		ASSERT_EQ(0, host_cpu_s(&c0)) TH_LOG("host: %s", host_said);
		read_cpu_stat(&st);
		t0 = now_s();
		ASSERT_HOST("SEND %s %llu 0 count", id,
			    (unsigned long long)bench_bytes());
		for (done = 0; done < bench_bytes(); done += r) {
			r = read(fd, buf, sizeof(buf));
			ASSERT_LT(0, r) TH_LOG("read: %s", r ? strerror(errno) : "end of file");
		}
		mbps[round] = bench_bytes() / 1e6 / (now_s() - t0);
		ASSERT_EQ(0, host_cpu_s(&c1)) TH_LOG("host: %s", host_said);
		cpu[round] = cpu_per_gib(c0, c1);
		bench_log_blocks(_metadata, round, mbps[round], &st);
	}
	bench_print("host_to_guest_MBps", "MB/s", mbps);
	bench_print("host_cpu_h2g_s_per_GiB", "s/GiB", cpu);
}

/* One byte out, the host echoes it, one byte back: microseconds each. */
static void bench_rtt(struct __test_metadata *_metadata, int fd,
		      const char *id)
{
	double t0, us[BENCH_ROUNDS];
	struct cpu_stat st;
	int round, i;
	char c;

	ASSERT_HOST("RECV %s 0 echo", id);
	for (round = 0; round < BENCH_ROUNDS; round++) {
		read_cpu_stat(&st);
		t0 = now_s();
		for (i = 0; i < RTT_ECHOES; i++) {
			c = (char)i;
			ASSERT_EQ(1, write(fd, &c, 1));
			ASSERT_EQ(1, read(fd, &c, 1));
			ASSERT_EQ((char)i, c);
		}
		us[round] = (now_s() - t0) * 1e6 / RTT_ECHOES;
		bench_log_guest(_metadata, round, us[round], "us", RTT_ECHOES,
				"echo", &st);
	}
	bench_print("round_trip_us", "us", us);
}

static int bench_port(struct __test_metadata *_metadata, int *fd)
{
	*fd = open_port("p2", O_RDWR);
	if (*fd < 0)
		return -errno;
	return connect_host("p2", *fd);
}

TEST_F_TIMEOUT(bench, guest_to_host_throughput, 300)
{
	ASSERT_EQ(0, bench_port(_metadata, &self->fd)) TH_LOG("host: %s", host_said);
	bench_g2h(_metadata, self->fd, "p2");
}

TEST_F_TIMEOUT(bench, host_to_guest_throughput, 300)
{
	ASSERT_EQ(0, bench_port(_metadata, &self->fd)) TH_LOG("host: %s", host_said);
	bench_h2g(_metadata, self->fd, "p2");
}

TEST_F_TIMEOUT(bench, one_byte_round_trip, 300)
{
	ASSERT_EQ(0, bench_port(_metadata, &self->fd)) TH_LOG("host: %s", host_said);
	bench_rtt(_metadata, self->fd, "p2");
}

/*
 * The limit a copying channel cannot pass in this guest: one pass over
 * the data at the same block size (dd if=/dev/zero of=/dev/null bs=64k).
 */
TEST_F_TIMEOUT(bench, one_pass_limit, 300)
{
	static char buf[IO_BLOCK];
	double t0, mbps[BENCH_ROUNDS];
	int zero, null, round;
	uint64_t done;

	zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	ASSERT_LE(0, zero);
	ASSERT_LE(0, null);
	for (round = 0; round < BENCH_ROUNDS; round++) {
		t0 = now_s();
		for (done = 0; done < bench_bytes(); done += sizeof(buf)) {
			ASSERT_EQ(sizeof(buf), read(zero, buf, sizeof(buf)));
			ASSERT_EQ(sizeof(buf), write(null, buf, sizeof(buf)));
		}
		mbps[round] = bench_bytes() / 1e6 / (now_s() - t0);
	}
	bench_print("one_pass_MBps", "MB/s", mbps);
	close(zero);
	close(null);
}

/*
 * The same figures over AF_VSOCK (vhost-vsock), the channel a guest would
 * use otherwise: the benchmark's reference, not a test of this project.
 */
FIXTURE(vsock) {
	int fd;
	int kbad;
};

FIXTURE_SETUP(vsock)
{
	struct sockaddr_vm a = {
		.svm_family = AF_VSOCK,
		.svm_cid = VMADDR_CID_HOST,
		.svm_port = VSOCK_PORT,
	};

	self->fd = -1;
	common_setup(_metadata, &self->kbad);
	ASSERT_HOST("VSOCK_LISTEN %d", VSOCK_PORT);
	self->fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_LE(0, self->fd) TH_LOG("AF_VSOCK: %s", strerror(errno));
	ASSERT_EQ(0, connect(self->fd, (struct sockaddr *)&a, sizeof(a)))
		TH_LOG("connect to the host: %s", strerror(errno));
	ASSERT_HOST("VSOCK_ACCEPT %d", CTL_TIMEOUT_MS);
}

FIXTURE_TEARDOWN(vsock)
{
	stop_test_threads();
	close_fd(&self->fd);
	common_teardown(_metadata, self->kbad);
}

TEST_F_TIMEOUT(vsock, guest_to_host_throughput, 300)
{
	bench_g2h(_metadata, self->fd, "vsock");
}

TEST_F_TIMEOUT(vsock, host_to_guest_throughput, 300)
{
	bench_h2g(_metadata, self->fd, "vsock");
}

TEST_F_TIMEOUT(vsock, one_byte_round_trip, 300)
{
	bench_rtt(_metadata, self->fd, "vsock");
}

/*
 * Runs last in its group (fixtures run in the order they are defined): it
 * leaves the kernel console's output queue broken.
 *
 * A device that puts an id it never handed out into the used ring of
 * hvc0's output queue.  The driver finds it while it holds that queue's
 * lock: in the output interrupt, or sending what a program writes to
 * /dev/hvc0, whichever comes first.  The virtio core's report of it is
 * kernel console output, for the same queue, and neither path defers it.
 * The driver must drop that output rather than spin on the lock its CPU
 * holds; the report stays in the kernel log, and the console goes on
 * through the emergency register.
 */
FIXTURE(broken_console) {
	int kbad;
	const char *ids[8];
	int hvc[8];
	unsigned int n;
};

FIXTURE_SETUP(broken_console)
{
	common_setup(_metadata, &self->kbad);
	self->n = ids_of_consoles(self->ids, ARRAY_SIZE(self->ids));
}

FIXTURE_TEARDOWN(broken_console)
{
	common_teardown(_metadata, self->kbad);
}

/* Writes a line to hvc0 as a program does (through the tty layer). */
static int hvc0_write_line(const char *text)
{
	char line[128];
	ssize_t n;
	int fd, len;

	len = snprintf(line, sizeof(line), "%s\n", text);
	fd = open("/dev/hvc0", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, line, len);
	close(fd);
	return n == len ? 0 : -EIO;
}

TEST_F_TIMEOUT(broken_console, bogus_used_id_on_the_kernel_console, 120)
{
	const struct topo_port *tp;
	char before[64], after[64], name[64];
	int ret, bad_rings;
	const char *id;
	unsigned int i;

	if (!strstr(cur_group->cmdline, "console=hvc0"))
		SKIP(return, "group %s boots without console=hvc0", cur_group->name);
	MAP_CONSOLES(self->ids, self->n, self->hvc);
	for (i = 0; i < self->n && self->hvc[i] != 0; i++)
		;
	ASSERT_LT(i, self->n) TH_LOG("no console chardev is hvc0");
	id = self->ids[i];
	tp = topo_find(cur_group, id, NULL);
	ASSERT_NE(NULL, tp);
	/* The host finds the device by the port's name, if it has one. */
	snprintf(name, sizeof(name), tp->named ? PORT_PREFIX "%s" : "-", id);
	bad_rings = klog_count("out of range");
	ret = HOST("INJECT %s used_bogus %u", name, tp->nr);
	if (ret && !strncmp(host_said, "ERR SKIP ", 9))
		SKIP(return, "%.200s", host_said + 9);
	ASSERT_EQ(0, ret) TH_LOG("host: %s", host_said);

	/* Through the device: the entry is in the used ring by then. */
	snprintf(before, sizeof(before), "vserial-before-%d", getpid());
	ASSERT_EQ(0, hvc0_write_line(before));
	ASSERT_EQ(0, host_find(id, before, DATA_TIMEOUT_MS)) TH_LOG("host: %s", host_said);
	/* This one finds it, unless the interrupt did. */
	snprintf(after, sizeof(after), "vserial-after-%d", getpid());
	ASSERT_EQ(0, hvc0_write_line(after));
	EXPECT_EQ(bad_rings + 1, klog_count("out of range"));
	EXPECT_EQ(0, host_find(id, after, DATA_TIMEOUT_MS)) TH_LOG("host: %s", host_said);
}

/* ==== main ================================================================= */

/* Waits until every named port of the group is there. */
static void wait_topology(int timeout_ms)
{
	const struct group *g = cur_group;
	const struct topo_port *tp;
	int64_t deadline = now_ms() + timeout_ms;
	unsigned int d, i;
	struct vport vp;

	for (d = 0; d < g->ndevs; d++)
		for (i = 0; i < g->devs[d].nports; i++) {
			tp = &g->devs[d].ports[i];
			if (tp->named && wait_port(tp->id, &vp, remaining_ms(deadline)))
				printf("# port %s did not appear within %d s\n",
				       tp->id, timeout_ms / 1000);
		}
}

static int usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s --guest [--ctl TTY] [--group NAME] [--driver intree|project]\n"
		"          [--bulk-mib N] [harness options]\n"
		"       %s --host DIR [--timeout SECONDS] [--devopts KEY=VALUE,...]\n"
		"       %s --qemu-args GROUP DIR [DEVOPTS]\n"
		"       %s --group-info GROUP\n"
		"       %s --groups\n", prog, prog, prog, prog, prog);
	return 2;
}

static int guest_main(int argc, char **argv)
{
	char *hargv[64], fixtures[256], *f, *save = NULL;
	const char *gname = "main";
	int hargc = 0, i, ret;

	hargv[hargc++] = argv[0];
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--ctl") && i + 1 < argc)
			opt_ctl = argv[++i];
		else if (!strcmp(argv[i], "--group") && i + 1 < argc)
			gname = argv[++i];
		else if (!strcmp(argv[i], "--driver") && i + 1 < argc)
			opt_driver = argv[++i];
		else if (!strcmp(argv[i], "--bulk-mib") && i + 1 < argc)
			bulk_given = (bulk_bytes = strtoull(argv[++i], NULL, 0) * MiB);
		else if (hargc < (int)ARRAY_SIZE(hargv) - 1)
			hargv[hargc++] = argv[i];
	}
	cur_group = find_group(gname);
	if (!cur_group) {
		fprintf(stderr, "unknown group %s\n", gname);
		return 2;
	}
	/* Without harness options, run the group's fixtures. */
	if (hargc == 1) {
		snprintf(fixtures, sizeof(fixtures), "%s", cur_group->fixtures);
		for (f = strtok_r(fixtures, " ", &save); f && hargc < 60;
		     f = strtok_r(NULL, " ", &save)) {
			hargv[hargc++] = "-f";
			hargv[hargc++] = f;
		}
	}
	hargv[hargc] = NULL;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < hargc; i++)
		if (!strcmp(hargv[i], "-l") || !strcmp(hargv[i], "-h"))
			return test_harness_run(hargc, hargv);

	ctl_fd = ctl_open(opt_ctl);
	if (ctl_fd < 0) {
		printf("Bail out! cannot open the control channel %s: %s\n",
		       opt_ctl, strerror(-ctl_fd));
		return 1;
	}
	ret = host_hello(60000);
	if (ret) {
		printf("Bail out! no answer from the host end on %s: %s\n",
		       opt_ctl, strerror(-ret));
		return 1;
	}
	printf("# group %s, driver %s, host: %s\n", gname, opt_driver, host_said);
	wait_topology(30000);
	ret = test_harness_run(hargc, hargv);
	HOST("RESET");
	return ret;
}

static int host_args(int argc, char **argv)
{
	const char *devopts = NULL;
	int timeout_s = 3600, i;

	for (i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout_s = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--devopts") && i + 1 < argc)
			devopts = argv[++i];
		else
			return usage(argv[0]);
	}
	return host_main(argv[2], timeout_s, devopts);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "--guest"))
		return guest_main(argc, argv);
	if (argc >= 3 && !strcmp(argv[1], "--host"))
		return host_args(argc, argv);
	if (argc >= 4 && !strcmp(argv[1], "--qemu-args"))
		return print_qemu_args(argv[2], argv[3], argc >= 5 ? argv[4] : NULL);
	if (argc == 3 && !strcmp(argv[1], "--group-info"))
		return print_group_info(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "--groups")) {
		unsigned int i;

		for (i = 0; i < ARRAY_SIZE(groups); i++)
			printf("%s\n", groups[i].name);
		return 0;
	}
	return usage(argv[0]);
}
