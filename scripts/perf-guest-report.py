#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
#
# perf-guest-report.py LOG PERF_TXT TOPN: the share of perf's samples per
# function, with the code QEMU translated for a guest named by the guest's
# own symbols.
#
# QEMU started with -perfmap names each translated block "guest-0x<guest
# address>"; LOG holds the guest's /proc/kallsyms text symbols between
# KSYMS-BEGIN and KSYMS-END (the guest booted nokaslr).  PERF_TXT is
# `perf report --stdio --no-children -q -t '|'` with the sort keys
# dso,sym or comm,dso,sym; with comm, each entry names its command too.
import bisect
import re
import sys


def guest_symbols(log):
    """Sorted addresses and names of the guest's text symbols in LOG."""
    syms = []
    inside = False
    row = re.compile(r"^([0-9a-f]+) [tT] (\S+)(\s+\S+)?$")
    with open(log, errors="replace") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line == "KSYMS-BEGIN":
                inside = True
            elif line == "KSYMS-END":
                inside = False
            elif inside:
                # Kernel messages relayed to the console may fall in between.
                m = row.match(line)
                if m:
                    syms.append((int(m.group(1), 16),
                                 m.group(2) + (m.group(3) or "")))
    syms.sort()
    return [a for a, _ in syms], [n for _, n in syms]


def main():
    log, perf_txt, topn = sys.argv[1], sys.argv[2], int(sys.argv[3])
    addrs, names = guest_symbols(log)
    shares = {}
    comms = {}
    guest = other = 0.0
    with open(perf_txt, errors="replace") as f:
        for line in f:
            fields = [x.strip() for x in line.rstrip("\n").split("|")]
            if len(fields) not in (3, 4) or not fields[0].endswith("%"):
                continue
            pct = float(fields[0].rstrip("%"))
            comm = fields[1] + " " if len(fields) == 4 else ""
            dso = fields[-2]
            m = re.match(r"^\[(.)\]\s+(.*)$", fields[-1])
            if not m:
                continue
            kernel, sym = m.group(1) == "k", m.group(2)
            g = re.match(r"guest-0x([0-9a-f]+)", sym)
            if g:
                i = bisect.bisect_right(addrs, int(g.group(1), 16)) - 1
                key = comm + "guest: " + (names[i] if i >= 0 else "?")
                guest += pct
            else:
                key = "%s%s: %s" % (comm, "host kernel" if kernel else dso,
                                    sym)
                other += pct
            shares[key] = shares.get(key, 0.0) + pct
            if comm:
                comms[comm] = comms.get(comm, 0.0) + pct
    print("# %d guest symbols; translated guest code %.1f%%, the rest %.1f%%"
          % (len(addrs), guest, other))
    if comms:
        print("# per command: " + ", ".join(
            "%s%.1f%%" % kv for kv in sorted(comms.items(),
                                             key=lambda kv: -kv[1])[:8]))
    for key, pct in sorted(shares.items(), key=lambda kv: -kv[1])[:topn]:
        print("%6.2f%%  %s" % (pct, key))


if __name__ == "__main__":
    main()
