// SPDX-License-Identifier: GPL-2.0
/*
 * vserial-attach: attach a port of a running virtio-serial device to a
 * file or a socket, by hand, through QEMU's monitor.
 *
 *   vserial-attach -q QMP-SOCKET list
 *   vserial-attach -q QMP-SOCKET attach CHARDEV file:PATH|socket:PATH|null
 *
 * Only the VMM that owns a /dev/vhost-serial device may drive it (every
 * other process gets EPERM), so a port is re-attached by asking QEMU to
 * replace the port's chardev (QMP chardev-change): with vhost=on, QEMU
 * then hands the new chardev's descriptor to the module
 * (VHOST_SERIAL_SET_BACKEND); without it, QEMU's own device uses it.
 *
 *   file:PATH    guest output is appended to PATH (created if need be)
 *   socket:PATH  QEMU connects to the listening unix socket PATH: both ways
 *   null         the port is detached (the guest sees the host close it)
 *
 * QMP-SOCKET is a QMP monitor of QEMU, for example from
 * "-qmp unix:/run/vm.qmp,server=on,wait=off".  It accepts one client at a
 * time: give QEMU a second monitor for this tool when a management daemon
 * holds the first.
 *
 * Exit status: 0 done, 1 QEMU refused (its reason is printed), 2 usage or
 * connection error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define QMP_TIMEOUT_MS	30000
#define QMP_LINE_MAX	65536

static const char *prog = "vserial-attach";

struct qmp {
	int fd;
	char buf[QMP_LINE_MAX];
	size_t len;
};

static void usage(void)
{
	fprintf(stderr,
		"usage: %s -q QMP-SOCKET list\n"
		"       %s -q QMP-SOCKET attach CHARDEV file:PATH|socket:PATH|null\n",
		prog, prog);
	exit(2);
}

/* Appends s to out as a JSON string; false if it does not fit. */
static bool json_str(char *out, size_t size, const char *s)
{
	size_t n = strlen(out);

	if (n + 1 >= size)
		return false;
	out[n++] = '"';
	for (; *s; s++) {
		if (n + 7 >= size)
			return false;
		if (*s == '"' || *s == '\\')
			n += snprintf(out + n, size - n, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			n += snprintf(out + n, size - n, "\\u%04x", *s);
		else
			out[n++] = *s;
	}
	out[n++] = '"';
	out[n] = '\0';
	return true;
}

/* Reads one line (a QMP message) into line. */
static int qmp_read(struct qmp *q, char *line, size_t size)
{
	struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
	char *nl;
	ssize_t r;

	for (;;) {
		nl = memchr(q->buf, '\n', q->len);
		if (nl) {
			size_t n = nl - q->buf;

			if (n >= size)
				return -EMSGSIZE;
			memcpy(line, q->buf, n);
			line[n] = '\0';
			q->len -= n + 1;
			memmove(q->buf, nl + 1, q->len);
			return 0;
		}
		if (q->len == sizeof(q->buf))
			return -EMSGSIZE;
		r = poll(&pfd, 1, QMP_TIMEOUT_MS);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0 && errno != EINTR)
			return -errno;
		r = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (r > 0)
			q->len += r;
	}
}

/* The string value of "key" in a JSON line, unescaped simply; or NULL. */
static const char *json_value(const char *line, const char *key, char *out,
			      size_t size)
{
	char pat[64];
	const char *p;
	size_t n = 0;

	snprintf(pat, sizeof(pat), "\"%s\": \"", key);
	p = strstr(line, pat);
	if (!p)
		return NULL;
	for (p += strlen(pat); *p && *p != '"' && n + 1 < size; p++) {
		if (*p == '\\' && p[1])
			p++;
		out[n++] = *p;
	}
	out[n] = '\0';
	return out;
}

/*
 * Sends a command and waits for its answer, skipping events.  Returns 0
 * with the answer's line in line, 1 when QEMU answered with an error
 * (printed), or -errno.
 */
static int qmp_call(struct qmp *q, const char *cmd, const char *args,
		    char *line, size_t size)
{
	char req[4096], desc[1024];
	int ret;

	snprintf(req, sizeof(req), "{\"execute\": \"%s\"%s%s}\n", cmd,
		 args ? ", \"arguments\": " : "", args ? args : "");
	if (write(q->fd, req, strlen(req)) != (ssize_t)strlen(req))
		return -EIO;
	for (;;) {
		ret = qmp_read(q, line, size);
		if (ret)
			return ret;
		if (strstr(line, "\"return\""))
			return 0;
		if (strstr(line, "\"error\"")) {
			if (!json_value(line, "desc", desc, sizeof(desc)))
				snprintf(desc, sizeof(desc), "%s", line);
			fprintf(stderr, "%s: %s: %s\n", prog, cmd, desc);
			return 1;
		}
		/* An event: not ours. */
	}
}

static int qmp_connect(struct qmp *q, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static char line[QMP_LINE_MAX];
	int ret;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "%s: %s: path too long\n", prog, path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	q->len = 0;
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		return ret;
	}
	/* The greeting, then capabilities negotiation. */
	ret = qmp_read(q, line, sizeof(line));
	if (!ret && !strstr(line, "\"QMP\""))
		ret = -EPROTO;
	if (!ret)
		ret = qmp_call(q, "qmp_capabilities", NULL, line, sizeof(line));
	if (ret < 0)
		fprintf(stderr, "%s: %s: no QMP monitor there: %s\n", prog, path,
			strerror(-ret));
	return ret;
}

/* Prints "LABEL FILENAME" for every chardev. */
static int cmd_list(struct qmp *q)
{
	static char line[QMP_LINE_MAX];
	char label[256], file[1024];
	const char *p;
	int ret;

	ret = qmp_call(q, "query-chardev", NULL, line, sizeof(line));
	if (ret)
		return ret;
	for (p = strstr(line, "{"); p && (p = strstr(p + 1, "{"));) {
		if (json_value(p, "label", label, sizeof(label)) &&
		    json_value(p, "filename", file, sizeof(file)))
			printf("%s %s\n", label, file);
	}
	return 0;
}

/* The "backend" object of chardev-change for spec; false if bad. */
static bool backend_of(const char *spec, char *out, size_t size)
{
	if (!strcmp(spec, "null")) {
		snprintf(out, size, "{\"type\": \"null\", \"data\": {}}");
		return true;
	}
	if (!strncmp(spec, "file:", 5) && spec[5]) {
		snprintf(out, size, "{\"type\": \"file\", \"data\": {\"out\": ");
		return json_str(out, size, spec + 5) &&
		       strlen(out) + 24 < size &&
		       strcat(out, ", \"append\": true}}");
	}
	if (!strncmp(spec, "socket:", 7) && spec[7]) {
		snprintf(out, size, "{\"type\": \"socket\", \"data\": {\"addr\": "
			 "{\"type\": \"unix\", \"data\": {\"path\": ");
		return json_str(out, size, spec + 7) &&
		       strlen(out) + 40 < size &&
		       strcat(out, "}}, \"server\": false}}");
	}
	return false;
}

static int cmd_attach(struct qmp *q, const char *chardev, const char *spec)
{
	static char line[QMP_LINE_MAX];
	char backend[2048], args[3072] = "{\"id\": ";

	if (!backend_of(spec, backend, sizeof(backend))) {
		fprintf(stderr, "%s: '%s': want file:PATH, socket:PATH or null\n",
			prog, spec);
		return 2;
	}
	if (!json_str(args, sizeof(args), chardev) ||
	    strlen(args) + strlen(backend) + 16 >= sizeof(args))
		return 2;
	strcat(args, ", \"backend\": ");
	strcat(args, backend);
	strcat(args, "}");
	return qmp_call(q, "chardev-change", args, line, sizeof(line));
}

int main(int argc, char **argv)
{
	const char *qmp_path = NULL;
	struct qmp *q;
	int opt, ret;

	while ((opt = getopt(argc, argv, "q:h")) != -1) {
		switch (opt) {
		case 'q':
			qmp_path = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (!qmp_path || argc < 1)
		usage();
	if (!((!strcmp(argv[0], "list") && argc == 1) ||
	      (!strcmp(argv[0], "attach") && argc == 3)))
		usage();

	q = calloc(1, sizeof(*q));
	if (!q)
		return 2;
	ret = qmp_connect(q, qmp_path);
	if (ret)
		return ret < 0 ? 2 : 1;
	if (!strcmp(argv[0], "list"))
		ret = cmd_list(q);
	else
		ret = cmd_attach(q, argv[1], argv[2]);
	close(q->fd);
	free(q);
	if (ret < 0) {
		fprintf(stderr, "%s: QMP: %s\n", prog, strerror(-ret));
		return 2;
	}
	return ret;
}
