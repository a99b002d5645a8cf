#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Nested smoke test of the QEMU series (make qemu-smoke).  A host VM (L1:
# Debian 6.12 with vhost_serial.ko, booted by e2e_vmtest.sh, the build
# machine's root shared read-only) runs the cached patched QEMU with
# virtio-serial-pci,vhost=on and a guest (L2: the same kernel, its in-tree
# virtio_console, a busybox initramfs).  Checked, each as one TAP line:
#
#   - the ports reach the guest with their names (the module announces them)
#   - a console and a generic port write through file chardevs (descriptors
#     passed to the kernel); the console's chardev has an input file, which
#     reaches the guest, and the console's output goes on after it ended
#   - a pty port relayed through QEMU, one line each way
#   - a file chardev with a logfile: relayed, so that its log sees the data
#   - a server socket port: a line each way, then 4 MiB the host writes and
#     closes at once, all of it in the guest (md5 equal); then a second
#     client on the same server
#   - a server socket port the guest does not open yet: a client that
#     leaves input behind, then a second client, attached once QEMU gives
#     up on the guest taking that input; the guest reads the second
#     client's line first
#   - hot-plug and unplug of a port (ringbuf chardev, relayed)
#   - VSERPORT_CHANGE events, a close and an open at once among them
#
# GUEST_DRIVER=project runs L2 with the project's virtio_console.ko
# instead of the in-tree driver (built-in; kept out with initcall_blacklist).
#
# The last line is "N passed, N failed"; the exit status is non-zero when
# anything failed.  Work files go to /var/tmp (L1 mounts its own /tmp).
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly TOP
readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly SERIES=6.12
readonly E2E=$TOP/tools/testing/selftests/vserial/e2e_vmtest.sh
# shellcheck source=../tools/testing/selftests/vserial/vm_lib.sh
. "$TOP/tools/testing/selftests/vserial/vm_lib.sh"
readonly MODULE=$TOP/build/$SERIES/vhost_serial.ko
readonly GUEST_MODULE=$TOP/build/$SERIES/virtio_console.ko
readonly GUEST_DRIVER=${GUEST_DRIVER:-intree}
readonly BUSYBOX=/bin/busybox
readonly VM_TIMEOUT=${SMOKE_TIMEOUT:-900}
# Seconds the scenario gives L2 (boot and every step).
readonly L2_TIMEOUT=420

work=""

die() { echo "qemu-smoke: $*" >&2; exit 2; }

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	[ -n "$work" ] && rm -rf "$work"
}

write_l2_init() {
	cat >"$1" <<'EOT'
#!/bin/busybox sh
# L2 of scripts/qemu-smoke.sh: the in-tree virtio_console against vhost=on.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
exec </dev/console >/dev/console 2>&1
echo "L2-UP $(uname -r)"
if [ -f /virtio_console.ko ]; then
	insmod /virtio_console.ko && echo "L2-DRIVER project"
fi

port_dev() {
	for d in /sys/class/virtio-ports/*; do
		[ "$(cat "$d/name" 2>/dev/null)" = "$1" ] && echo "/dev/${d##*/}"
	done
}

wait_port() {
	i=0
	while [ -z "$(port_dev "$1")" ] && [ $i -lt 1500 ]; do
		sleep 0.2
		i=$((i + 1))
	done
	port_dev "$1"
}

wait_port org.test.p3 >/dev/null
wait_port org.test.p5 >/dev/null
for d in /sys/class/virtio-ports/*; do
	echo "L2-PORT $(cat "$d/name")"
done
p1=$(port_dev org.test.p1)
p2=$(port_dev org.test.p2)
p3=$(port_dev org.test.p3)

# One open of the console for both: a tty's last close drops its input.
exec 5<>/dev/hvc0
echo "console-ok" >&5
read -r -t 120 cin <&5
echo "L2-CONSOLE-IN $cin"
exec 5<&-
echo "hello-file" >"$p2"
echo "hello-log" >"$(port_dev org.test.p5)"

exec 4<>"$p3"
echo "relay-out" >&4
read -r r <&4
echo "L2-RELAY $r"
exec 4<&-

exec 3<>"$p1"
echo "ping-from-guest" >&3
read -r reply <&3
echo "L2-REPLY $reply"
sum=$(cat <&3 | tee /tmp/bulk | md5sum | cut -d' ' -f1)
echo "L2-BULK $(wc -c </tmp/bulk) $sum"
# Closed and opened again at once: QMP must see both.
exec 3<&-
exec 3<>"$p1"
echo "again" >&3
read -r reply <&3
echo "L2-REPLY2 $reply"
exec 3<&-

hp=$(wait_port org.test.hp)
echo "hotplug-ok" >"$hp" && echo "L2-HOTPLUG-WRITE"
i=0
while [ -n "$(port_dev org.test.hp)" ] && [ $i -lt 1500 ]; do
	sleep 0.2
	i=$((i + 1))
done
[ -z "$(port_dev org.test.hp)" ] && echo "L2-UNPLUGGED"
# The host's first client on p6 left input behind, its second one a line.
read -r -t 120 late <"$(port_dev org.test.p6)"
echo "L2-DRAIN $late"
echo "console-late" >/dev/hvc0
echo "L2-DONE"
poweroff -f
EOT
	chmod +x "$1"
}

write_host_py() {
	cat >"$1" <<'EOT'
#!/usr/bin/python3
"""Host side of scripts/qemu-smoke.sh, next to QEMU in L1."""
import hashlib
import json
import os
import socket
import sys
import time
import tty

events = []


def connect(path, tries=2400):
    for _ in range(tries):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            time.sleep(0.25)
    sys.exit('HOST-FATAL cannot connect to ' + path)


class QMP:
    def __init__(self, path):
        self.f = connect(path).makefile('rw')
        self.f.readline()
        self.cmd('qmp_capabilities')

    def read(self):
        line = self.f.readline()
        if not line:
            sys.exit('HOST-FATAL QMP closed')
        msg = json.loads(line)
        if 'event' in msg:
            events.append(msg)
        return msg

    def cmd(self, name, args=None):
        self.f.write(json.dumps({'execute': name,
                                 'arguments': args or {}}) + '\n')
        self.f.flush()
        while True:
            msg = self.read()
            if 'error' in msg:
                sys.exit('HOST-FATAL %s: %s' % (name, msg['error']))
            if 'return' in msg:
                return msg['return']

    def wait_event(self, name, data, after=0):
        """Waits for an event past the first @after; returns its index."""
        seen = after
        while True:
            for i, ev in enumerate(events[seen:], seen):
                if ev['event'] == name and ev['data'] == data:
                    return i
            seen = len(events)
            self.read()


def read_line(sock):
    buf = b''
    while b'\n' not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            sys.exit('HOST-FATAL socket closed before a line')
        buf += chunk
    return buf.decode(errors='replace').strip()


def wait_text(path, text, tries=480):
    for _ in range(tries):
        with open(path, errors='replace') as f:
            if text in f.read():
                return True
        time.sleep(0.25)
    return False


def drain_stall():
    """A port the guest does not open yet: a client leaves input behind,
    and a second client waits behind it until QEMU gives up on the guest.
    The guest opens the port at its end, and must read the second client's
    line first."""
    p6 = connect('/tmp/p6.sock')
    p6.settimeout(2)
    try:
        while True:
            p6.sendall(b'x' * 65536)
    except socket.timeout:
        pass
    p6.close()
    p6 = connect('/tmp/p6.sock')
    p6.sendall(b'after-drop\n')
    if wait_text('/tmp/qemu.out', 'the rest is dropped for the next one'):
        print('HOST-DRAIN-DROPPED', flush=True)
    return p6


def wait_ringbuf(qmp, dev, text):
    got = ''
    while text not in got:
        got += qmp.cmd('ringbuf-read', {'device': dev, 'size': 4096,
                                        'format': 'utf8'})
        time.sleep(0.25)
    return got


def main():
    qmp = QMP('/tmp/qmp.sock')

    pty = [c['filename'] for c in qmp.cmd('query-chardev')
           if c['label'] == 'p3'][0].split(':', 1)[1]
    fd = os.open(pty, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    got = b''
    while b'relay-out\n' not in got:
        got += os.read(fd, 4096)
    print('HOST-RELAY relay-out', flush=True)
    os.write(fd, b'relay-in\n')

    p1 = connect('/tmp/p1.sock')
    print('HOST-GOT ' + read_line(p1), flush=True)
    # QEMU knows the port open before the guest closes and opens it again.
    qmp.wait_event('VSERPORT_CHANGE', {'id': 'port1', 'open': True})
    data = os.urandom(4 << 20)
    p1.sendall(b'pong-from-host\n' + data)
    p1.close()
    print('HOST-BULK %d %s' % (len(data), hashlib.md5(data).hexdigest()),
          flush=True)

    # The guest reads to the end, sees the host leave and closes the port.
    # It opens the port again at once: QMP sees the close and the open,
    # whether the kernel's eventfd merged them or not.
    closed = qmp.wait_event('VSERPORT_CHANGE',
                            {'id': 'port1', 'open': False})
    p1 = connect('/tmp/p1.sock')
    print('HOST-GOT2 ' + read_line(p1), flush=True)
    qmp.wait_event('VSERPORT_CHANGE', {'id': 'port1', 'open': True},
                   closed + 1)
    print('HOST-REOPENED', flush=True)
    p6 = drain_stall()
    p1.sendall(b'second-client\n')

    qmp.cmd('chardev-add', {'id': 'hp', 'backend': {
        'type': 'ringbuf', 'data': {'size': 4096}}})
    qmp.cmd('device_add', {'driver': 'virtserialport', 'bus': 'vser0.0',
                           'chardev': 'hp', 'name': 'org.test.hp',
                           'id': 'hp0'})
    wait_ringbuf(qmp, 'hp', 'hotplug-ok\n')
    print('HOST-HOTPLUG hotplug-ok', flush=True)
    qmp.cmd('device_del', {'id': 'hp0'})
    qmp.wait_event('DEVICE_DELETED', {'device': 'hp0',
                                      'path': '/machine/peripheral/hp0'})
    print('HOST-UNPLUGGED', flush=True)
    for ev in events:
        if ev['event'] == 'VSERPORT_CHANGE':
            print('HOST-EVENT %s %s' % (ev['data']['id'],
                                        ev['data']['open']), flush=True)
    p1.close()
    p6.close()


main()
EOT
}

# The scenario L1 runs: QEMU, the host side, then every check.
write_scenario() {
	cat >"$1" <<EOT
#!/bin/bash
readonly W=$work
readonly QEMU=$QEMU
readonly L2_TIMEOUT=$L2_TIMEOUT
readonly L2_APPEND="$l2_append"
readonly L2_DRIVER=$GUEST_DRIVER
EOT
	cat >>"$1" <<'EOT'
pass=0
fail=0
check() {
	if [ "$2" = 0 ]; then
		echo "ok - $1"
		pass=$((pass + 1))
	else
		echo "not ok - $1"
		fail=$((fail + 1))
	fi
}
# The console's tty turns "\n" into "\r\n".
has() { tr -d '\r' <"$1" | grep -qx "$2"; echo $?; }

[ -c /dev/vhost-serial ] || { echo "not ok - /dev/vhost-serial"; exit 1; }
echo console-input >/tmp/c0.in
"$QEMU" -accel tcg -m 512 -smp 1 -nodefaults -display none -no-reboot \
	-serial file:/tmp/l2.log -kernel "$W/kernel" -initrd "$W/l2.cpio" \
	-append "console=ttyS0 panic=-1 quiet $L2_APPEND" \
	-qmp unix:/tmp/qmp.sock,server=on,wait=off \
	-device virtio-serial-pci,id=vser0,vhost=on \
	-chardev file,id=c0,path=/tmp/c0.out,input-path=/tmp/c0.in \
	-device virtconsole,bus=vser0.0,chardev=c0,name=org.test.console,id=con0 \
	-chardev socket,id=p1,path=/tmp/p1.sock,server=on,wait=off \
	-device virtserialport,bus=vser0.0,chardev=p1,name=org.test.p1,id=port1 \
	-chardev file,id=p2,path=/tmp/p2.out \
	-device virtserialport,bus=vser0.0,chardev=p2,name=org.test.p2,id=port2 \
	-chardev pty,id=p3 \
	-device virtserialport,bus=vser0.0,chardev=p3,name=org.test.p3,id=port3 \
	-chardev file,id=p5,path=/tmp/p5.out,logfile=/tmp/p5.log \
	-device virtserialport,bus=vser0.0,chardev=p5,name=org.test.p5,id=port5 \
	-chardev socket,id=p6,path=/tmp/p6.sock,server=on,wait=off \
	-device virtserialport,bus=vser0.0,chardev=p6,name=org.test.p6,id=port6 \
	>/tmp/qemu.out 2>&1 &
qpid=$!
/usr/bin/python3 "$W/host.py" >/tmp/host.out 2>&1 &
hpid=$!
timeout "$L2_TIMEOUT" tail --pid=$qpid -f /dev/null
kill $qpid $hpid 2>/dev/null
wait $hpid 2>/dev/null
for f in qemu.out host.out l2.log; do
	echo "--- $f"
	tr -d '\r' </tmp/$f | grep -v '^busybox:' >/tmp/$f.clean
	cat /tmp/$f.clean
done
L2=/tmp/l2.log.clean
H=/tmp/host.out.clean

for p in org.test.console org.test.p1 org.test.p2 org.test.p3; do
	check "port $p announced" "$(has $L2 "L2-PORT $p")"
done
check "console through a file chardev" "$(has /tmp/c0.out console-ok)"
check "console input from the chardev's input file" \
	"$(has $L2 'L2-CONSOLE-IN console-input')"
check "console output after its input ended" \
	"$(has /tmp/c0.out console-late)"
check "port through a file chardev" "$(has /tmp/p2.out hello-file)"
check "file chardev with a logfile, file" "$(has /tmp/p5.out hello-log)"
check "file chardev with a logfile, log" "$(has /tmp/p5.log hello-log)"
check "relayed pty, guest to host" "$(has $H 'HOST-RELAY relay-out')"
check "relayed pty, host to guest" "$(has $L2 'L2-RELAY relay-in')"
check "socket, guest to host" "$(has $H 'HOST-GOT ping-from-guest')"
check "socket, host to guest" "$(has $L2 'L2-REPLY pong-from-host')"
bulk=$(sed -n 's/^HOST-BULK //p' $H)
check "socket, 4 MiB then close: all delivered" \
	"$([ -n "$bulk" ] && has $L2 "L2-BULK $bulk" || echo 1)"
check "socket, second client" "$(has $L2 'L2-REPLY2 second-client')"
check "socket, second client, guest to host" "$(has $H 'HOST-GOT2 again')"
check "hot-plugged port" "$(has $H 'HOST-HOTPLUG hotplug-ok')"
check "hot-unplugged port" "$(has $L2 L2-UNPLUGGED)"
check "VSERPORT_CHANGE" "$(has $H 'HOST-EVENT port1 True')"
check "VSERPORT_CHANGE, a close and an open at once" "$(has $H HOST-REOPENED)"
drained=$(has $H HOST-DRAIN-DROPPED)
[ "$(has $L2 'L2-DRAIN after-drop')" = 0 ] || drained=1
check "socket, a second client attached after the guest stalled" "$drained"
check "guest finished" "$(has $L2 L2-DONE)"
if [ "$L2_DRIVER" = project ]; then
	check "project guest driver loaded" "$(has $L2 'L2-DRIVER project')"
fi
echo "SMOKE $pass passed, $fail failed"
[ "$fail" = 0 ]
EOT
	chmod +x "$1"
}

main() {
	local rc=0 l2_append="" kdir

	[ "$(id -u)" = 0 ] || die "must run as root"
	[ -x "$E2E" ] || die "$E2E missing"
	[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (busybox-static)"
	QEMU=$("$TOP/scripts/qemu.sh" path)
	make -C "$TOP" --no-print-directory KERNEL=$SERIES modules >/dev/null ||
		die "cannot build the module for $SERIES"

	work=$(mktemp -d /var/tmp/vhost-serial-qemu-smoke.XXXXXX)
	trap cleanup EXIT
	mkdir -p "$work"/l2/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp}
	vm_install_busybox "$BUSYBOX" "$work/l2"
	case $GUEST_DRIVER in
	intree) l2_append=$(vm_lean_cmdline) ;;
	project)
		[ -f "$GUEST_MODULE" ] || die "$GUEST_MODULE not built"
		cp "$GUEST_MODULE" "$work/l2/virtio_console.ko"
		l2_append=$(vm_lean_cmdline virtio_console_init)
		;;
	*) die "GUEST_DRIVER is intree or project" ;;
	esac
	write_l2_init "$work/l2/init"
	(cd "$work/l2" && find . | cpio -o -H newc --quiet) >"$work/l2.cpio"
	kdir=$CACHE/kernels/$SERIES
	cp "$(vm_kernel_image)" "$work/kernel"
	write_host_py "$work/host.py"
	write_scenario "$work/scenario.sh"

	"$E2E" -k "$SERIES" -m "$MODULE" -l "$work/l1.log" -T "$VM_TIMEOUT" \
		"$work/scenario.sh" || rc=$?
	sed -n '/^--- qemu.out/,/^SMOKE /p' "$work/l1.log" | tr -d '\r'
	grep -q '^SMOKE .* 0 failed' "$work/l1.log" || rc=1
	return $rc
}

main "$@"
