#!/usr/bin/env python3
"""Where a proxied request's CPU time goes, from run.sh's PERF samples.

    where.py PERF_DIR RESULTS

Each PERF_DIR/CASE.VARIANT.ROUND.data is one measurement's `perf record`
of the proxy (software clock, kernel call chains); RESULTS gives the
proxy's CPU time per request of the same measurement. The shares of the
samples split that time: the kernel by system call (sends, receives, the
event wait, the rest) and outside them (interrupts, faults), and user
space by object (the proxy's program, libc, the TLS library, the rest).
Medians over rounds, in microseconds per request.
"""
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict

# the kernel function each system call passes through (the `__x64_sys_`
# entry itself can be folded into its caller, as nginx's `writev` is)
SEND = {"__sys_sendto", "__sys_sendmsg", "ksys_write", "do_writev"}
RECEIVE = {"__sys_recvfrom", "__sys_recvmsg", "ksys_read", "do_readv"}
WAIT = {"do_epoll_wait"}
COLUMNS = ["send", "receive", "wait", "other calls", "no call", "program", "libc", "TLS lib", "other"]


def report(path, *args):
    out = subprocess.run(
        ["perf", "report", "-i", path, "--stdio", "-g", "none", "--percent-limit", "0", *args],
        capture_output=True, text=True, check=False,
    ).stdout
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(?:([\d.]+)%\s+)?(.*\S)", line)
        if m and not line.lstrip().startswith("#"):
            yield float(m.group(1)), m.group(3)


def shares(path):
    """Fractions of the samples, by the columns above."""
    got = defaultdict(float)
    kernel = 0.0
    for pct, dso in report(path, "--no-children", "--sort", "dso"):
        if dso == "[kernel.kallsyms]":
            kernel += pct
        elif dso.startswith("libc.so"):
            got["libc"] += pct
        elif dso.startswith(("libssl", "libcrypto")):
            got["TLS lib"] += pct
        elif dso.startswith("lib") or dso.startswith("["):
            got["other"] += pct
        else:
            got["program"] += pct
    calls = 0.0
    for pct, sym in report(path, "--children", "--sort", "symbol"):
        m = re.match(r"\[k\] (\S+)", sym)
        if not m:
            continue
        name = m.group(1)
        if name == "entry_SYSCALL_64_after_hwframe":
            calls = pct
        elif name in SEND:
            got["send"] += pct
        elif name in RECEIVE:
            got["receive"] += pct
        elif name in WAIT:
            got["wait"] += pct
    # (a kernel whose entry point has another name: the named calls only)
    calls = max(calls, got["send"] + got["receive"] + got["wait"])
    got["other calls"] = calls - got["send"] - got["receive"] - got["wait"]
    got["no call"] = max(0.0, kernel - calls)
    return {k: v / 100.0 for k, v in got.items()}


def main():
    perf_dir, results = sys.argv[1:3]
    cpu = {}
    for line in open(results):
        parts = line.split()
        if len(parts) >= 9:  # round case variant rps p50 p99 errors total cpu_us
            cpu[(parts[1], parts[2], parts[0])] = float(parts[8])
    rows = defaultdict(lambda: defaultdict(list))
    for name in sorted(os.listdir(perf_dir)):
        m = re.fullmatch(r"(\w+)\.(.+)\.(\d+)\.data", name)
        if not m or m.groups() not in cpu:
            continue
        case, variant, rnd = m.groups()
        us = cpu[(case, variant, rnd)]
        split = shares(os.path.join(perf_dir, name))
        rows[(case, variant)]["total"].append(us)
        for col in COLUMNS:
            rows[(case, variant)][col].append(us * split.get(col, 0.0))
    if not rows:
        print("no perf samples matched a measurement")
        return
    print()
    print("where the CPU time of a request goes (perf, software clock), us per request, median of rounds")
    print(f"{'case':<22}{'variant':<10}{'total':>7}  {'kernel':>7} " + " ".join(f"{c:>8}" for c in COLUMNS[:5])
          + "  " + f"{'user':>7} " + " ".join(f"{c:>8}" for c in COLUMNS[5:]))
    for (case, variant), cols in sorted(rows.items()):
        med = {k: statistics.median(v) for k, v in cols.items()}
        kernel = sum(med[c] for c in COLUMNS[:5])
        user = sum(med[c] for c in COLUMNS[5:])
        print(f"{case:<22}{variant:<10}{med['total']:>7.1f}  {kernel:>7.1f} "
              + " ".join(f"{med[c]:>8.1f}" for c in COLUMNS[:5])
              + "  " + f"{user:>7.1f} " + " ".join(f"{med[c]:>8.1f}" for c in COLUMNS[5:]))
    print("(kernel: send, receive and wait are the system calls of those names with what the kernel does")
    print(" inside them, loopback delivery to the peer included; 'no call' is interrupts and faults)")


if __name__ == "__main__":
    main()
