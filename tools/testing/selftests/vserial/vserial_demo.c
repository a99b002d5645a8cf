// SPDX-License-Identifier: GPL-2.0
/*
 * Demo of /dev/vhost-serial: create a device with one named port, play its
 * guest with the selftest library, attach a socket as the port's host side,
 * and move a file through the port in both directions, showing the SHA-1
 * seen at each end and the throughput.
 *
 *   vserial_demo [SIZE_MIB]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/virtio_console.h>

#include "vq.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void digest(struct sha1 *s, char hex[41])
{
	struct sha1 copy = *s;
	uint8_t d[20];

	sha1_final(&copy, d);
	sha1_hex(d, hex);
}

static int run(const char *what, struct vs_flow *f)
{
	char tx[41], rx[41];
	double t0, dt;
	int ret;

	t0 = now();
	ret = vs_pump(f, 1, VS_TIMEOUT_MS);
	dt = now() - t0;
	if (ret) {
		fprintf(stderr, "demo: %s failed: %s\n", what, strerror(-ret));
		return ret;
	}
	digest(&f->sha_tx, tx);
	digest(&f->sha_rx, rx);
	printf("demo: %-13s %llu bytes  sent sha1 %s\n", what,
	       (unsigned long long)f->total, tx);
	printf("demo: %-13s %llu bytes  recv sha1 %s  %s\n", "",
	       (unsigned long long)f->received, rx,
	       vs_flow_match(f) ? "MATCH" : "MISMATCH");
	printf("demo: %-13s %.1f MB/s (%.3f s)\n", "", f->total / dt / 1e6, dt);
	return vs_flow_match(f) ? 0 : -EILSEQ;
}

int main(int argc, char **argv)
{
	uint64_t size = (argc > 1 ? strtoull(argv[1], NULL, 0) : 32) << 20;
	struct vhost_serial_port_state st;
	struct vs_port_info info[1];
	struct vs_flow g2h, h2g;
	struct vs_dev d;
	int sv[2], ret;

	ret = vs_create(&d, 1, vs_default_features());
	if (ret) {
		fprintf(stderr, "demo: cannot create a device: %s\n",
			strerror(-ret));
		return 1;
	}
	ret = vs_add_port(&d, 0, "org.example.demo", false);
	if (!ret)
		ret = vs_handshake(&d, info, 1, 1);
	if (ret) {
		fprintf(stderr, "demo: handshake failed: %s\n", strerror(-ret));
		return 1;
	}
	printf("demo: guest sees port 0 named \"%s\"\n", info[0].name);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) ||
	    vs_set_backend(&d, 0, sv[0], sv[0]) ||
	    vs_ctrl_expect(&d, 0, VIRTIO_CONSOLE_PORT_OPEN, &(struct vs_ctrl){}) ||
	    vs_guest_open(&d, 0, true)) {
		fprintf(stderr, "demo: cannot connect the port\n");
		return 1;
	}
	printf("demo: host socket attached, guest opened the port\n");

	if (vs_flow_init(&g2h, &d, 0, true, sv[1], size, 1) ||
	    vs_flow_init(&h2g, &d, 0, false, sv[1], size, 2))
		return 1;
	if (run("guest->host", &g2h) || run("host->guest", &h2g))
		return 1;

	vs_port_state(&d, 0, &st);
	printf("demo: port counters: tx %llu bytes in %llu buffers, rx %llu bytes in %llu buffers, %llu errors\n",
	       (unsigned long long)st.tx_bytes, (unsigned long long)st.tx_bufs,
	       (unsigned long long)st.rx_bytes, (unsigned long long)st.rx_bufs,
	       (unsigned long long)st.errors);
	vs_close(&d);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
