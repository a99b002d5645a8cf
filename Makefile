# SPDX-License-Identifier: GPL-2.0
#
# vhost-serial: build, check and demo.
#
#   make [KERNEL=6.12|6.1]   build vhost_serial.ko for one of Debian's kernels
#   make check               set up, build and run every test in VMs (both kernels)
#   make check DEBUG_KERNEL=1  the same on a debug build of 6.12 (KASAN, lockdep,
#                            kmemleak, UBSAN, fault injection; built once, cached)
#   make check-guest [GUEST_DRIVER=intree|project]  guest-driver tests only
#   make demo                a guest with vhost=on, nested in a host VM running the
#                            module: a file each way (DEMO_MODULE=1: module alone)
#   make sparse | checkpatch static checks of the kernel code
#   make qemu | qemu-check   QEMU with qemu-patches/ (cached); its virtio-serial qtests
#   make qemu-smoke          that QEMU with vhost=on in a VM, a guest nested in it
#   make bench [QUICK=1]     every benchmark figure, its anchor, a table and a plot
#   make install [KVER=..] [DESTDIR=..]  modules into /lib/modules/KVER/updates,
#                            the uapi header, udev rules, man page; uninstall
#   make dkms-src [DESTDIR=..]  this tree as /usr/src/vhost-serial-VERSION for DKMS
#   make check-packaging     DKMS and install (into a staging root, then booted)
#                            for both kernels, the docs, the in-tree series; part
#                            of make check
#   make kernel-series       the in-tree patch series against linux-source-6.12
#                            (build/kernel-series); kernel-series-check applies
#                            it to a pristine tree and builds it with W=1
#
# Kernels, headers and sources are resolved and cached by scripts/setup.sh
# in $(VSERIAL_CACHE) (default /var/cache/vhost-serial).

KERNEL		?= 6.12
KERNELS		?= 6.12 6.1
VSERIAL_CACHE	?= /var/cache/vhost-serial
export VSERIAL_CACHE

TOP		:= $(CURDIR)
KCACHE		 = $(VSERIAL_CACHE)/kernels/$(1)
KENV		 = $(call KCACHE,$(1))/env
BUILD		:= $(TOP)/build
# Before the first rule that names it: prerequisites expand as read.
VSERIAL_ATTACH	:= $(BUILD)/tools/vserial-attach
SELFTEST_DIR	:= tools/testing/selftests/vserial
KERNEL_SRCS	:= Kbuild drivers/vhost/serial.c drivers/vhost/serial_compat.h \
		   include/uapi/linux/vhost_serial.h \
		   drivers/char/virtio_console.c drivers/char/virtio_console_compat.h
# Private kernel headers, linked from the matching kernel source.
PRIVATE_HDRS	:= drivers/vhost/vhost.h drivers/tty/hvc/hvc_console.h

# The kernel-headers directory of a series, from its cached env file.
kdir = $(shell sed -n 's/^KDIR=//p' $(call KENV,$(1)) | tail -n1)

.PHONY: all modules setup check demo sparse checkpatch selftests clean
all: modules

# DEBUG_KERNEL=1: the module's, the guest driver's and the end-to-end
# tests run on the debug kernel (scripts/debug-kernel.sh), which is built
# from the 6.12 source that setup caches.
ifeq ($(DEBUG_KERNEL),1)
CHECK_KERNELS	:= 6.12-debug
CHECK_ENV	:= BENCH=0 GUEST_TIMEOUT=1800
else
CHECK_KERNELS	:= $(KERNELS)
CHECK_ENV	:=
endif

setup:
	@scripts/setup.sh $(filter-out %-debug,$(KERNELS))
ifeq ($(DEBUG_KERNEL),1)
	@scripts/debug-kernel.sh
endif

$(VSERIAL_CACHE)/kernels/6.12-debug/env: $(VSERIAL_CACHE)/kernels/6.12/env
	@scripts/debug-kernel.sh

$(VSERIAL_CACHE)/kernels/%/env:
	@scripts/setup.sh $*

# One build tree per kernel: symlinks to the sources, objects beside them.
define link_tree
	@for f in $(KERNEL_SRCS); do mkdir -p $(1)/$$(dirname $$f); \
		ln -sf $(TOP)/$$f $(1)/$$f; done
	@for f in $(PRIVATE_HDRS); do mkdir -p $(1)/$$(dirname $$f); \
		ln -sf $(call KCACHE,$(2))/src/$$f $(1)/$$f; done
endef

$(BUILD)/%/vhost_serial.ko $(BUILD)/%/virtio_console.ko: $(KERNEL_SRCS) $(VSERIAL_CACHE)/kernels/%/env
	$(call link_tree,$(BUILD)/$*,$*)
	$(MAKE) -C $(call kdir,$*) M=$(BUILD)/$* modules

modules: $(BUILD)/$(KERNEL)/vhost_serial.ko

selftests: $(VSERIAL_CACHE)/kernels/6.12/env $(VSERIAL_ATTACH)
	$(MAKE) -C $(SELFTEST_DIR) OUTPUT=$(BUILD)/selftests \
		KSFT_INC=$(call KCACHE,6.12)/src/tools/testing/selftests \
		STATIC=1

sparse: $(VSERIAL_CACHE)/kernels/$(KERNEL)/env
	$(call link_tree,$(BUILD)/sparse-$(KERNEL),$(KERNEL))
	$(MAKE) -C $(call kdir,$(KERNEL)) M=$(BUILD)/sparse-$(KERNEL) C=2 \
		CF="-D__CHECK_ENDIAN__" W=1 modules \
		2>&1 | tee $(BUILD)/sparse-$(KERNEL).log
	@! grep -E 'warning:|error:' $(BUILD)/sparse-$(KERNEL).log

checkpatch: $(VSERIAL_CACHE)/kernels/6.12/env
	perl $(call KCACHE,6.12)/src/scripts/checkpatch.pl --strict --no-tree \
		--ignore FILE_PATH_CHANGES,SPDX_LICENSE_TAG \
		-f drivers/vhost/serial.c drivers/vhost/serial_compat.h \
		include/uapi/linux/vhost_serial.h \
		drivers/char/virtio_console.c drivers/char/virtio_console_compat.h

check: setup
	@$(CHECK_ENV) scripts/check.sh $(CHECK_KERNELS)

# Guest-driver tests alone, in VMs of each kernel, against the in-tree
# virtio_console (intree) or the project's build/<kernel>/virtio_console.ko.
GUEST_DRIVER	?= intree
.PHONY: check-guest
check-guest: setup
	@scripts/check.sh --guest-only $(GUEST_DRIVER) $(KERNELS)

.PHONY: bench
bench: setup
	@QUICK=$(QUICK) scripts/bench.sh

demo: setup
	@DEMO_MODULE=$(DEMO_MODULE) scripts/demo.sh

# Where the time of one figure goes: perf on this machine, or in the host
# VM for the nested figures (FIGURE=e2e_vhost_g2h and the like).
FIGURE		?= module_h2g_socket_64k
.PHONY: profile
profile: setup qemu selftests
	@$(MAKE) -s KERNEL=6.12 modules >/dev/null
	@KERNEL=6.12 scripts/profile.sh $(FIGURE)

# QEMU 10.0.x from Debian's source with the qemu-patches/ series, cached in
# $(VSERIAL_CACHE)/qemu by version and series (scripts/qemu.sh).
.PHONY: qemu qemu-check
qemu:
	@scripts/qemu.sh build

qemu-check:
	@scripts/qemu.sh check

.PHONY: qemu-smoke
qemu-smoke: $(VSERIAL_CACHE)/kernels/6.12/env
	@scripts/qemu-smoke.sh

# ---- installing ---------------------------------------------------------
# For the running kernel, or KVER, built against /lib/modules/KVER/build
# (the headers package) with the two private headers that
# scripts/dkms-prepare.sh finds in the kernel's source.
VERSION		:= $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' $(TOP)/dkms.conf)
KVER		?= $(shell uname -r)
KVER_KDIR	?= /lib/modules/$(KVER)/build
KVER_BUILD	:= $(BUILD)/kver-$(KVER)
PREFIX		?= /usr/local
MODDIR		?= /lib/modules/$(KVER)/updates
UDEVRULESDIR	?= /etc/udev/rules.d
INCLUDEDIR	?= $(PREFIX)/include
MANDIR		?= $(PREFIX)/share/man
DOCDIR		?= $(PREFIX)/share/doc/vhost-serial
DKMS_FILES	:= $(KERNEL_SRCS) dkms.conf scripts/dkms-prepare.sh
INSTALLED	:= $(MODDIR)/vhost_serial.ko $(MODDIR)/virtio_console.ko \
		   $(PREFIX)/bin/vserial-attach \
		   $(INCLUDEDIR)/linux/vhost_serial.h \
		   $(UDEVRULESDIR)/60-vhost-serial.rules \
		   $(MANDIR)/man4/vhost-serial.4 \
		   $(DOCDIR)/examples/modules-load.d/vhost-serial.conf

.PHONY: install uninstall dkms-src check-packaging tools
# tools/vserial: vserial-attach, a port of a running device to a file or
# socket by hand (through QEMU's monitor).
tools: $(VSERIAL_ATTACH)
$(VSERIAL_ATTACH): tools/vserial/vserial-attach.c
	@mkdir -p $(dir $@)
	$(CC) -Wall -Wextra -O2 -o $@ $<

$(KVER_BUILD)/vhost_serial.ko $(KVER_BUILD)/virtio_console.ko: $(KERNEL_SRCS)
	@test -d $(KVER_KDIR) || { echo "no $(KVER_KDIR): install the headers of $(KVER) or set KVER"; exit 1; }
	@for f in $(KERNEL_SRCS); do mkdir -p $(KVER_BUILD)/$$(dirname $$f); \
		ln -sf $(TOP)/$$f $(KVER_BUILD)/$$f; done
	cd $(KVER_BUILD) && $(TOP)/scripts/dkms-prepare.sh $(KVER)
	$(MAKE) -C $(KVER_KDIR) M=$(KVER_BUILD) modules

install: $(KVER_BUILD)/vhost_serial.ko $(KVER_BUILD)/virtio_console.ko $(VSERIAL_ATTACH)
	install -D -m 0755 $(VSERIAL_ATTACH) $(DESTDIR)$(PREFIX)/bin/vserial-attach
	install -D -m 0644 $(KVER_BUILD)/vhost_serial.ko $(DESTDIR)$(MODDIR)/vhost_serial.ko
	install -D -m 0644 $(KVER_BUILD)/virtio_console.ko $(DESTDIR)$(MODDIR)/virtio_console.ko
	install -D -m 0644 include/uapi/linux/vhost_serial.h $(DESTDIR)$(INCLUDEDIR)/linux/vhost_serial.h
	install -D -m 0644 udev/60-vhost-serial.rules $(DESTDIR)$(UDEVRULESDIR)/60-vhost-serial.rules
	install -D -m 0644 man/vhost-serial.4 $(DESTDIR)$(MANDIR)/man4/vhost-serial.4
	install -D -m 0644 udev/modules-load.d/vhost-serial.conf \
		$(DESTDIR)$(DOCDIR)/examples/modules-load.d/vhost-serial.conf
	depmod $(if $(DESTDIR),-b $(DESTDIR)) $(KVER)
ifeq ($(DESTDIR),)
	-udevadm control --reload 2>/dev/null
endif

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir -p $(DESTDIR)$(DOCDIR)/examples/modules-load.d 2>/dev/null
	depmod $(if $(DESTDIR),-b $(DESTDIR)) $(KVER)

# The DKMS source tree: dkms add/build/install -m vhost-serial -v $(VERSION).
dkms-src:
	@for f in $(DKMS_FILES); do \
		install -D -m $$(test -x $$f && echo 0755 || echo 0644) $$f \
			$(DESTDIR)/usr/src/vhost-serial-$(VERSION)/$$f || exit 1; done
	@echo "DKMS tree: $(DESTDIR)/usr/src/vhost-serial-$(VERSION)"

check-packaging: setup
	@scripts/check-packaging.sh $(KERNELS)

.PHONY: kernel-series kernel-series-check
kernel-series: $(VSERIAL_CACHE)/kernels/6.12/env
	@scripts/kernel-series.sh series

kernel-series-check: $(VSERIAL_CACHE)/kernels/6.12/env
	@scripts/kernel-series.sh check

clean:
	rm -rf $(BUILD)
	$(MAKE) -C $(SELFTEST_DIR) clean OUTPUT=$(BUILD)/selftests >/dev/null 2>&1 || true
