// SPDX-License-Identifier: GPL-2.0
/*
 * Throughput and memory figures of /dev/vhost-serial with this process as
 * the guest (the selftest library), for make bench.  Nothing is asserted:
 * each figure is printed as
 *
 *   BENCH <name> <median> <unit> min <min> max <max> runs <n>
 *
 * Figures (names):
 *   memcpy_MBps                     memcpy of 64 KiB blocks, the VM's anchor
 *   module_<dir>_<backend>_<size>   one port, guest buffers of <size>
 *                                   (4k, 64k, 1m), into/out of a pipe or a
 *                                   socket; dir g2h or h2g; MB/s
 *   scale_ports_<n>_MBps            n ports of one device, g2h, 64 KiB, all
 *                                   at once: aggregate MB/s
 *   scale_devices_<n>_MBps          n devices of one port each, the same
 *   mem_idle_<n>ports_KiB           kernel memory per device (slab and
 *                                   vmalloc, /proc/meminfo) with n ports,
 *                                   rings set up, started, backends attached
 *   mem_busy_1port_KiB              the same with every buffer in flight and
 *                                   the backend full
 *   <path>_g2h_<sink>_MBps          guest output into a pipe, by reference
 *                                   (path zerocopy) or copied (path copy),
 *                                   spliced on to /dev/null or to a file
 *
 * Environment: VSERIAL_BENCH_QUICK=1 moves little data once per figure
 * (the smoke run of make check); VSERIAL_BENCH_RUNS=N sets the repeats
 * (default 5); VSERIAL_BENCH_ONLY=<prefix> runs only the figures whose
 * names start with it (module_ and memcpy_ figures one by one, scale_ and
 * mem_ as a whole), for scripts/profile.sh or a quick look at one figure;
 * VSERIAL_BENCH_SCALE=N (1..64) moves N times the data in each module_ run,
 * so that set-up is a small part of a profile.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <linux/virtio_console.h>

#include "vq.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

#define MIB			(1024 * 1024ULL)
#define MAX_RUNS		15
#define BENCH_TIMEOUT_MS	60000
#define BACKEND_BUF		(4 * 1024 * 1024)
#define SCALE_BUF		(64 * 1024)
#define SCALE_NBUFS		8
#define MEM_DEVICES		16

enum backend { BK_PIPE, BK_SOCKET };

static unsigned int runs = 5;
static unsigned int scale = 1;	/* data per module_ run, times this */
static bool quick;
static const char *only;

static bool wanted(const char *name)
{
	return !only || !strncmp(name, only, strlen(only));
}

/* Figures computed together: all of them, when one is wanted. */
static bool family_wanted(const char *prefix)
{
	return !only || !strncmp(only, prefix, strlen(prefix));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Prints one figure from its runs; an empty set is reported as missing. */
static void report(const char *name, const char *unit, double *v,
		   unsigned int n)
{
	if (!n) {
		printf("# %s: no successful run\n", name);
		return;
	}
	qsort(v, n, sizeof(*v), cmp_double);
	printf("BENCH %s %.1f %s min %.1f max %.1f runs %u\n", name,
	       n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, unit, v[0],
	       v[n - 1], n);
	fflush(stdout);
}

static double memcpy_mbps(void)
{
	size_t area = 32 * MIB, block = 64 * 1024, off;
	char *src = malloc(area), *dst = malloc(area);
	uint64_t total = quick ? 64 * MIB : 1024 * MIB, done = 0;
	double t0, dt;

	if (!src || !dst) {
		free(src);
		free(dst);
		return 0;
	}
	memset(src, 1, area);
	memset(dst, 2, area);
	t0 = now();
	for (off = 0; done < total; done += block) {
		memcpy(dst + off, src + off, block);
		off = (off + block) % area;
	}
	dt = now() - t0;
	/* Keep the copies observable. */
	if (dst[area / 2] != 1)
		printf("# memcpy check failed\n");
	free(src);
	free(dst);
	return total / dt / 1e6;
}

static void set_backend_size(int fd, enum backend bk)
{
	int sz = BACKEND_BUF;

	if (bk == BK_PIPE) {
		fcntl(fd, F_SETPIPE_SZ, sz);
	} else {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
}

/*
 * A backend for port @id of @d, direction @g2h: the module's ends go to
 * the device, the host's end is returned in *host.  Pipes: the module
 * writes guest output into one and reads host input from another.
 */
static int attach_backend(struct vs_dev *d, uint32_t id, enum backend bk,
			  bool g2h, int *host)
{
	struct vs_ctrl m;
	int p[2], ret;

	if (bk == BK_PIPE) {
		if (pipe2(p, O_NONBLOCK | O_CLOEXEC))
			return -errno;
		set_backend_size(p[0], bk);
		/* A pipe has one direction: the other end is a dead pipe. */
		ret = g2h ? vs_set_backend(d, id, -1, p[1]) :
			    vs_set_backend(d, id, p[0], -1);
		*host = g2h ? p[0] : p[1];
		close(g2h ? p[1] : p[0]);
	} else {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
			       SOCK_CLOEXEC, 0, p))
			return -errno;
		set_backend_size(p[0], bk);
		set_backend_size(p[1], bk);
		ret = vs_set_backend(d, id, p[0], p[0]);
		*host = p[1];
		close(p[0]);
	}
	if (ret)
		return ret;
	ret = vs_ctrl_expect(d, id, VIRTIO_CONSOLE_PORT_OPEN, &m);
	if (!ret)
		ret = vs_guest_open(d, id, true);
	return ret;
}

/* A started device with @nports ports, each announced and ready. */
static int bench_device(struct vs_dev *d, unsigned int nports)
{
	struct vs_port_info *info = calloc(nports, sizeof(*info));
	uint64_t features = vs_default_features() |
			    (1ULL << VIRTIO_RING_F_EVENT_IDX);
	char name[32];
	unsigned int i;
	int ret;

	if (!info)
		return -ENOMEM;
	ret = vs_create(d, nports, features);
	for (i = 0; !ret && i < nports; i++) {
		snprintf(name, sizeof(name), "bench%u", i);
		ret = vs_add_port(d, i, name, false);
	}
	if (!ret)
		ret = vs_handshake(d, info, nports, nports);
	free(info);
	return ret;
}

static unsigned int nbufs_for(size_t size)
{
	if (size <= 4096)
		return 128;
	if (size <= 64 * 1024)
		return 64;
	return 16;
}

/* One run of one port, one direction: MB/s, or a negative errno. */
static double module_run(enum backend bk, bool g2h, size_t size)
{
	uint64_t total = quick ? 8 * MIB : (size <= 4096 ? 128 : 512) * MIB;
	struct vs_flow f;
	struct vs_dev d;
	double t0, dt;
	int host = -1, ret;

	total *= scale;
	ret = bench_device(&d, 1);
	if (!ret)
		ret = attach_backend(&d, 0, bk, g2h, &host);
	if (!ret)
		ret = vs_flow_init_sized(&f, &d, 0, g2h, host, total, 1, size,
					 nbufs_for(size));
	if (ret) {
		printf("# set-up failed: %s\n", strerror(-ret));
		goto out;
	}
	f.raw = true;
	t0 = now();
	ret = vs_pump(&f, 1, BENCH_TIMEOUT_MS);
	dt = now() - t0;
	vs_flow_free(&f);
	if (ret)
		printf("# transfer failed: %s\n", strerror(-ret));
out:
	if (host >= 0)
		close(host);
	vs_close(&d);
	return ret ? ret : total / dt / 1e6;
}

static void figure_module(void)
{
	static const struct { size_t size; const char *name; } sizes[] = {
		{ 4096, "4k" }, { 64 * 1024, "64k" }, { 1024 * 1024, "1m" },
	};
	static const char *const bk_name[] = { "pipe", "socket" };
	double v[MAX_RUNS], r;
	unsigned int s, b, dir, i, n;
	char name[64];

	for (b = BK_PIPE; b <= BK_SOCKET; b++)
		for (dir = 0; dir < 2; dir++)
			for (s = 0; s < ARRAY_SIZE(sizes); s++) {
				snprintf(name, sizeof(name), "module_%s_%s_%s",
					 dir ? "h2g" : "g2h", bk_name[b],
					 sizes[s].name);
				if (!wanted(name))
					continue;
				for (i = n = 0; i < runs; i++) {
					r = module_run(b, !dir, sizes[s].size);
					if (r > 0)
						v[n++] = r;
				}
				report(name, "MB/s", v, n);
			}
}

/* @ndev devices of @nports ports each, every port g2h at once: MB/s. */
static double scale_run(unsigned int ndev, unsigned int nports)
{
	uint64_t per = (quick ? 16 * MIB : 512 * MIB) / (ndev * nports);
	unsigned int nflows = ndev * nports, i, j, k = 0;
	struct vs_flow *flows = calloc(nflows, sizeof(*flows));
	struct vs_dev *devs = calloc(ndev, sizeof(*devs));
	int *hosts = calloc(nflows, sizeof(*hosts));
	double t0, dt = 0;
	int ret = -ENOMEM;

	if (!flows || !devs || !hosts)
		goto out;
	for (i = 0; i < ndev; i++)
		devs[i].fd = -1;
	for (i = 0; i < nflows; i++)
		hosts[i] = -1;
	per -= per % SCALE_BUF;
	ret = 0;
	for (i = 0; !ret && i < ndev; i++) {
		ret = bench_device(&devs[i], nports);
		for (j = 0; !ret && j < nports; j++, k++) {
			ret = attach_backend(&devs[i], j, BK_SOCKET, true,
					     &hosts[k]);
			if (!ret)
				ret = vs_flow_init_sized(&flows[k], &devs[i],
							 j, true, hosts[k],
							 per, k, SCALE_BUF,
							 SCALE_NBUFS);
			flows[k].raw = true;
		}
	}
	if (ret) {
		printf("# scale set-up (%u devices, %u ports) failed: %s\n",
		       ndev, nports, strerror(-ret));
		goto out;
	}
	t0 = now();
	ret = vs_pump(flows, nflows, BENCH_TIMEOUT_MS);
	dt = now() - t0;
	if (ret)
		printf("# scale transfer failed: %s\n", strerror(-ret));
out:
	for (i = 0; flows && i < k; i++)
		vs_flow_free(&flows[i]);
	for (i = 0; hosts && i < nflows; i++)
		if (hosts[i] >= 0)
			close(hosts[i]);
	for (i = 0; devs && i < ndev; i++)
		if (devs[i].fd >= 0)
			vs_close(&devs[i]);
	free(flows);
	free(devs);
	free(hosts);
	return ret ? ret : per * nflows / dt / 1e6;
}

static void figure_scale(void)
{
	static const unsigned int ports[] = { 1, 8, 64 };
	static const unsigned int devices[] = { 1, 8, 32 };
	double v[MAX_RUNS], r;
	unsigned int s, i, n;
	char name[64];

	for (s = 0; s < ARRAY_SIZE(ports); s++) {
		for (i = n = 0; i < runs; i++) {
			r = scale_run(1, ports[s]);
			if (r > 0)
				v[n++] = r;
		}
		snprintf(name, sizeof(name), "scale_ports_%u_MBps", ports[s]);
		report(name, "MB/s", v, n);
	}
	for (s = 0; s < ARRAY_SIZE(devices); s++) {
		for (i = n = 0; i < runs; i++) {
			r = scale_run(devices[s], 1);
			if (r > 0)
				v[n++] = r;
		}
		snprintf(name, sizeof(name), "scale_devices_%u_MBps",
			 devices[s]);
		report(name, "MB/s", v, n);
	}
}

/* Slab plus vmalloc in use, in KiB, from /proc/meminfo. */
static long kernel_kib(void)
{
	char line[256];
	long v, sum = 0;
	FILE *f;

	f = fopen("/proc/meminfo", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Slab: %ld", &v) == 1 ||
		    sscanf(line, "VmallocUsed: %ld", &v) == 1)
			sum += v;
	fclose(f);
	return sum;
}

/* Settles the slab counters: RCU frees and per-CPU caches. */
static void settle(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (write(fd, "3", 1) < 0)
			printf("# drop_caches: %s\n", strerror(errno));
		close(fd);
	}
	usleep(200000);
}

/*
 * Kernel memory per device: MEM_DEVICES devices of @nports ports with
 * socket backends; with @busy, every guest buffer of port 0 is in flight
 * and the backend is full.  KiB, or a negative errno.
 */
static double mem_run(unsigned int nports, bool busy)
{
	unsigned int ndev = quick ? 4 : MEM_DEVICES, i, j, k = 0;
	unsigned int nhosts = ndev * nports;
	struct vs_dev *devs = calloc(ndev, sizeof(*devs));
	struct vs_flow *flows = calloc(ndev, sizeof(*flows));
	int *hosts = calloc(nhosts, sizeof(*hosts));
	long before, after = 0;
	int ret = -ENOMEM;

	if (!devs || !flows || !hosts)
		goto out;
	for (i = 0; i < ndev; i++)
		devs[i].fd = -1;
	for (i = 0; i < nhosts; i++)
		hosts[i] = -1;
	settle();
	before = kernel_kib();
	ret = 0;
	for (i = 0; !ret && i < ndev; i++) {
		ret = bench_device(&devs[i], nports);
		for (j = 0; !ret && j < nports; j++)
			ret = attach_backend(&devs[i], j, BK_SOCKET, true,
					     &hosts[i * nports + j]);
		if (!ret && busy) {
			/* The host never reads: the backend fills, then the ring. */
			ret = vs_flow_init_sized(&flows[i], &devs[i], 0, true,
						 hosts[i * nports], 64 * MIB,
						 i, SCALE_BUF, SCALE_NBUFS);
			flows[i].raw = true;
			flows[i].host_stop_at = 1;
			k = i + 1;
			if (!ret)
				ret = vs_pump_until_idle(&flows[i], 1, 500);
		}
	}
	if (!ret) {
		settle();
		after = kernel_kib();
	} else {
		printf("# memory set-up (%u ports) failed: %s\n", nports,
		       strerror(-ret));
	}
out:
	for (i = 0; flows && i < k; i++)
		vs_flow_free(&flows[i]);
	for (i = 0; devs && i < ndev; i++)
		if (devs[i].fd >= 0)
			vs_close(&devs[i]);
	for (i = 0; hosts && i < nhosts; i++)
		if (hosts[i] >= 0)
			close(hosts[i]);
	free(devs);
	free(flows);
	free(hosts);
	if (ret)
		return ret;
	return (double)(after - before) / ndev;
}

static void figure_memory(void)
{
	static const unsigned int ports[] = { 1, 8, 64 };
	double v[MAX_RUNS];
	unsigned int s, i, n;
	char name[64];

	for (s = 0; s < ARRAY_SIZE(ports); s++) {
		for (i = n = 0; i < runs; i++) {
			v[n] = mem_run(ports[s], false);
			if (v[n] >= 0)
				n++;
		}
		snprintf(name, sizeof(name), "mem_idle_%uports_KiB", ports[s]);
		report(name, "KiB", v, n);
	}
	for (i = n = 0; i < runs; i++) {
		v[n] = mem_run(1, true);
		if (v[n] >= 0)
			n++;
	}
	report("mem_busy_1port_KiB", "KiB", v, n);
}

/*
 * Guest output through a pipe backend, copied or by reference, that the
 * host splices on to @sink: MB/s, or a negative errno.
 */
static double zc_run(bool zerocopy, int sink)
{
	uint64_t total = quick ? 16 * MIB : 512 * MIB;
	struct vs_flow f;
	struct vs_ctrl m;
	struct vs_dev d;
	int p[2] = { -1, -1 }, ret;
	double t0, dt = 0;

	ret = bench_device(&d, 1);
	if (ret)
		goto out;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC)) {
		ret = -errno;
		goto out;
	}
	fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
	ret = vs_set_backend_flags(&d, 0, -1, p[1],
				   zerocopy ? VHOST_SERIAL_BACKEND_F_ZEROCOPY : 0);
	if (!ret)
		ret = vs_ctrl_expect(&d, 0, VIRTIO_CONSOLE_PORT_OPEN, &m);
	if (!ret)
		ret = vs_guest_open(&d, 0, true);
	if (!ret)
		ret = vs_flow_init_sized(&f, &d, 0, true, p[0], total, 1,
					 64 * 1024, 64);
	if (ret)
		goto out;
	f.raw = true;
	f.sink_fd = sink;
	t0 = now();
	ret = vs_pump(&f, 1, BENCH_TIMEOUT_MS);
	dt = now() - t0;
	vs_flow_free(&f);
out:
	if (ret)
		printf("# %s run failed: %s\n", zerocopy ? "zero-copy" : "copy",
		       strerror(-ret));
	vs_close(&d);
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return ret ? ret : total / dt / 1e6;
}

static void figure_zerocopy(void)
{
	static const char *const path_name[] = { "copy", "zerocopy" };
	static const char *const sink_name[] = { "null", "file" };
	double v[MAX_RUNS], r;
	unsigned int path, k, i, n;
	char name[64];
	int sink;

	for (path = 0; path < 2; path++)
		for (k = 0; k < 2; k++) {
			for (i = n = 0; i < runs; i++) {
				sink = k ? open("/tmp/vserial-bench.sink",
						O_WRONLY | O_CREAT | O_TRUNC |
						O_CLOEXEC, 0600) :
					   open("/dev/null", O_WRONLY | O_CLOEXEC);
				if (sink < 0) {
					printf("# sink: %s\n", strerror(errno));
					continue;
				}
				r = zc_run(path, sink);
				close(sink);
				unlink("/tmp/vserial-bench.sink");
				if (r > 0)
					v[n++] = r;
			}
			snprintf(name, sizeof(name), "%s_g2h_%s_MBps",
				 path_name[path], sink_name[k]);
			report(name, "MB/s", v, n);
		}
}

int main(void)
{
	struct rlimit rl = { 65536, 65536 };
	const char *e;
	double v[MAX_RUNS];
	unsigned int i;

	e = getenv("VSERIAL_BENCH_QUICK");
	quick = e && *e == '1';
	e = getenv("VSERIAL_BENCH_RUNS");
	if (e && atoi(e) > 0)
		runs = atoi(e) < MAX_RUNS ? atoi(e) : MAX_RUNS;
	if (quick)
		runs = 1;
	only = getenv("VSERIAL_BENCH_ONLY");
	e = getenv("VSERIAL_BENCH_SCALE");
	if (e && atoi(e) > 0 && atoi(e) <= 64)
		scale = atoi(e);
	setrlimit(RLIMIT_NOFILE, &rl);
	printf("# vserial_bench: %u run(s) per figure%s%s%s\n", runs,
	       quick ? ", quick" : "", only ? ", only " : "", only ? only : "");

	if (wanted("memcpy_MBps")) {
		for (i = 0; i < runs; i++)
			v[i] = memcpy_mbps();
		report("memcpy_MBps", "MB/s", v, runs);
	}
	figure_module();
	if (family_wanted("scale_"))
		figure_scale();
	if (family_wanted("mem_"))
		figure_memory();
	if (!only)
		figure_zerocopy();
	return 0;
}
