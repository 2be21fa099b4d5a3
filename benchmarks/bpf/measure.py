"""The in-kernel walk (BPF iterators) against ptfast's /proc scan and the C floor, measured.

    sudo python3 benchmarks/bpf/measure.py                          # 20,000 and 50,000
    sudo python3 benchmarks/bpf/measure.py --sizes 2000 --rounds 3

It runs in a pid and a network namespace of its own (--host: among the host's processes and
sockets), so that other work on the machine is neither walked nor read; the CPU is still
shared. For each size it starts benchmarks/population.c through benchmarks/run.py's helpers
(raising the host's kernel.pid_max when the population would not fit, restoring it after), then:

1. checks that the iterators find what ``ptfast.scan.procfs.scan('/proc', True)`` finds: the same
   (pid, socket inode) pairs for every process of the population (and for every process seen
   by both with the same start time), and says how the other fields compare;
2. times, interleaved, ROUNDS times:
     floor        benchmarks/floor.c (a process of its own, as in run.py)
     scan         ptfast.scan.procfs.scan('/proc', True) in this process, compiled core
     bpf-read     the two iterators read to their end (kernel work only, records not parsed)
     bpf-walk     the same, parsed into Python records (task_walk.walk)
     bpf-files    processes and every fd's path (what scan's open_files holds), parsed
     bpf-full     bpf-files and every process's cmdline: all that scan's records hold
     bpf-full-read  what bpf-full reads, not parsed (kernel work only)
     bpf-cold     open + verify + attach + bpf-walk + close, as a one-shot command would
   and prints min / median / max in ms of wall and of CPU time (user + system, the floor's
   included), and the ratios of medians.

Not part of the test suite; needs root, clang, bpftool and libbpf (see README.md here).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))       # benchmarks/: run.py's helpers
sys.path.insert(0, HERE)

import run  # noqa: E402  (benchmarks/run.py)
import task_walk  # noqa: E402

from ptfast.scan import procfs  # noqa: E402
from ptfast.foundation.escape import escape_text  # noqa: E402

PID_MAX = "/proc/sys/kernel/pid_max"
PID_HEADROOM = 20_000
# fields both records carry under the same name, compared process by process
COMPARED = ("ppid", "pgrp", "session", "uid", "start_time", "threads", "vm_size_bytes",
            "vm_rss_bytes", "exe", "exe_deleted", "exe_dev", "exe_ino", "exe_uid", "exe_mode",
            "cmdline")


def build_object() -> None:
    subprocess.run(["make", "-s", "-C", HERE], check=True)


def read_pid_max() -> int:
    with open(PID_MAX) as handle:
        return int(handle.read())


def write_pid_max(value: int) -> None:
    with open(PID_MAX, "w") as handle:
        handle.write(str(value))


def raise_pid_max(size: int):
    """Raises pid_max when SIZE more processes might not fit; returns (was, set) or None."""
    tasks = sum(1 for name in os.listdir("/proc") if name.isdigit())
    needed = tasks + size + PID_HEADROOM
    was = read_pid_max()
    if was >= needed:
        return None
    write_pid_max(needed)
    return was, needed


def restore_pid_max(change) -> None:
    # another benchmark on this machine may have changed it meanwhile: then it is theirs
    if change is not None and read_pid_max() == change[1]:
        write_pid_max(change[0])


def population_pids(leader: int) -> set:
    pids = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    raw = handle.read()
            except OSError:
                continue
            if int(raw[raw.rfind(b")") + 2:].split()[1]) == leader:
                pids.add(int(name))
    return pids


def shown(value) -> str:
    """A value for the terminal: process names, paths and cmdlines are the processes' own."""
    return escape_text(repr(value))


def pairs(sockets_by_pid: dict, pids) -> set:
    return {(pid, inode) for pid in pids for inode in sockets_by_pid.get(pid, ())}


def compare(leader: int) -> list:
    """Lines saying how the iterators' records match the /proc scan's."""
    members = population_pids(leader)
    snapshot = procfs.scan("/proc", True)
    with task_walk.Iterators(programs=("dump_processes", "dump_files",
                                       "dump_cmdlines")) as iterators:
        walked = task_walk.walk(iterators, "dump_files", cmdlines=True)
    scanned = {proc.pid: proc for proc in snapshot.processes}
    scan_sockets = {pid: {sock.inode for sock in proc.sockets or ()}
                    for pid, proc in scanned.items()}
    walk_sockets = {pid: task_walk.network_sockets(proc) for pid, proc in walked.items()}
    lines = []
    ours_scan, ours_walk = pairs(scan_sockets, members), pairs(walk_sockets, members)
    lines.append(f"population: {len(members)} processes; (pid, socket inode) pairs: scan "
                 f"{len(ours_scan)}, iterator {len(ours_walk)}, identical: "
                 f"{ours_scan == ours_walk}")
    if ours_scan != ours_walk:
        lines.append(f"   only in scan: {sorted(ours_scan - ours_walk)[:10]}; only in iterator:"
                     f" {sorted(ours_walk - ours_scan)[:10]}")
    # this process's own fds change between the two walks: it is left out
    both = [pid for pid in scanned.keys() & walked.keys()
            if scanned[pid].start_time == walked[pid].start_time and pid != os.getpid()]
    host_scan, host_walk = pairs(scan_sockets, both), pairs(walk_sockets, both)
    lines.append(f"all processes: scan {len(scanned)} processes, iterator {len(walked)}, "
                 f"{len(both)} in both; pairs scan {len(host_scan)}, iterator "
                 f"{len(host_walk)}; differing pairs {len(host_scan ^ host_walk)}")
    for pid, inode in sorted(host_scan ^ host_walk)[:5]:
        side = "scan" if (pid, inode) in host_scan else "iterator"
        lines.append(f"   only in {side}: pid {pid} ({shown(walked[pid].comm)}) inode {inode}")
    differing = {name: 0 for name in COMPARED + ("open_files",)}
    for pid in both:
        ours, theirs = walked[pid], scanned[pid]
        for name in COMPARED:
            if getattr(ours, name) != getattr(theirs, name):
                differing[name] += 1
        if set(ours.open_files) != set(theirs.open_files or ()):
            differing["open_files"] += 1
    lines.append("processes in both whose field differs: " + ", ".join(
        f"{name} {count}" for name, count in differing.items()))
    for name in differing:
        told = 0
        for pid in both:
            ours, theirs = walked[pid], scanned[pid]
            if name == "open_files":
                mine, its = set(ours.open_files), set(theirs.open_files or ())
            else:
                mine, its = getattr(ours, name), getattr(theirs, name)
            if mine != its and told < 2:
                told += 1
                lines.append(f"   {name} of {pid} ({shown(ours.comm)}): iterator {shown(mine)}, "
                             f"scan {shown(its)}")
    return lines


def cpu_seconds() -> float:
    """User and system time of this process and of its waited-for children."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                            resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(function) -> tuple:
    """(wall seconds, CPU seconds) of one call: on a shared machine the CPU time says what the
    work costs, the wall time also what waiting for the CPU cost."""
    started, cpu = time.perf_counter(), cpu_seconds()
    function()
    return time.perf_counter() - started, cpu_seconds() - cpu


def floor_run(binary: str) -> None:
    subprocess.run([binary, str(run.PT_LIMIT)], check=True, stdout=subprocess.DEVNULL)


def cold_walk() -> None:
    with task_walk.Iterators() as iterators:
        task_walk.walk(iterators)


def measure(rounds: int) -> dict:
    floor = run.build("floor")
    warm = task_walk.Iterators(programs=("dump_processes", "dump_sockets", "dump_files",
                                         "dump_cmdlines"))
    try:
        contenders = {
            "floor": lambda: floor_run(floor),
            "scan": lambda: procfs.scan("/proc", True),
            "bpf-read": lambda: (warm.read("dump_processes"), warm.read("dump_sockets")),
            "bpf-full-read": lambda: (warm.read("dump_processes"), warm.read("dump_files"),
                                      warm.read("dump_cmdlines")),
            "bpf-walk": lambda: task_walk.walk(warm),
            "bpf-files": lambda: task_walk.walk(warm, "dump_files"),
            "bpf-full": lambda: task_walk.walk(warm, "dump_files", cmdlines=True),
            "bpf-cold": cold_walk,
        }
        times: dict = {name: [] for name in contenders}
        cpu: dict = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, function in contenders.items():
                wall, used = timed(function)
                times[name].append(wall)
                cpu[name].append(used)
        return times, cpu
    finally:
        warm.close()


def report(size: int, times: dict, cpu: dict) -> list:
    lines = [f"   {'':13} {'min':>8} {'median':>8} {'max':>8}   wall ms   {'min':>8} {'median':>8}"
             f" {'max':>8}   CPU ms"]
    for name, values in times.items():
        lines.append(f"   {name:13} " + " ".join(
            f"{f(values) * 1000:8.1f}" for f in (min, statistics.median, max)) + "           "
            + " ".join(f"{f(cpu[name]) * 1000:8.1f}" for f in (min, statistics.median, max)))
    for label, table in (("wall", times), ("CPU", cpu)):
        median = {name: statistics.median(values) for name, values in table.items()}
        for slow in ("scan", "floor"):
            lines.append(f"   {label:4} {slow} / " + ", ".join(
                f"{fast} {median[slow] / median[fast]:.2f}x"
                for fast in ("bpf-read", "bpf-walk", "bpf-files", "bpf-full", "bpf-full-read",
                             "bpf-cold")))
        lines.append(f"   {label:4} per 1,000 processes (median ms): " + ", ".join(
            f"{name} {median[name] * 1e6 / size:.2f}" for name in median))
    return lines


def loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def run_sizes(sizes: list, rounds: int, uids: int, host: bool) -> None:
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs, "
          f"{'the host' if host else 'a pid and network namespace of its own'}", flush=True)
    for size in sizes:
        change = raise_pid_max(size) if host else None
        try:
            population = run.start_population(size, uids)
            try:
                print(f"== {size} processes (load average before: {loadavg()})", flush=True)
                for line in compare(population.pid):
                    print("   " + line, flush=True)
                times, cpu = measure(rounds)
                print("\n".join(report(size, times, cpu)), flush=True)
                print(f"   load average after: {loadavg()}", flush=True)
            finally:
                run.stop_population(population)
                if not host:
                    reap_orphans()
        finally:
            restore_pid_max(change)


def reap_orphans() -> None:
    """In its own PID namespace this process is the init: the population's processes, orphaned
    when their parent ends first, become its children and stay zombies (holding their PIDs)
    until waited for. Waits for all, so the next population starts with none left."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20000,50000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uids", type=int, default=300, help="distinct uids in the population")
    parser.add_argument("--host", action="store_true",
                        help="run among the host's processes and sockets, not in namespaces "
                             "of its own")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the population spreads over many uids, BPF needs root")
    if procfs.CORE_NAME != "compiled":
        raise SystemExit(f"the compiled core is not in use: {procfs.CORE_FALLBACK_REASON}")
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.host or args.inside:
        if args.inside:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        run_sizes(sizes, args.rounds, args.uids, host=args.host)
        return 0
    build_object()
    # Other work on the machine (processes, 200,000 sockets) would be walked and read too: the
    # measurement runs in a pid namespace (a /proc, and iterators, that show only its own
    # processes) and a network namespace (socket tables of its own). When its first process
    # ends, the kernel kills every other one in it. Every PID also takes one in the host's
    # namespace, whose pid_max therefore still has to fit the population.
    change = raise_pid_max(max(sizes))
    try:
        inner = [sys.executable, os.path.abspath(__file__), "--inside", "--sizes", args.sizes,
                 "--rounds", str(args.rounds), "--uids", str(args.uids)]
        return subprocess.run(["unshare", "--pid", "--net", "--fork", "--kill-child",
                               "--mount-proc"] + inner).returncode
    finally:
        restore_pid_max(change)


if __name__ == "__main__":
    sys.exit(main())
