"""The live layer's cost: the proc connector reader feeding the schedule (issue 21, item 6).

    sudo python3 benchmarks/live.py                          # both parts, both readers
    sudo python3 benchmarks/live.py --processes 2000 --seconds 10 --storm-seconds 5

Starts the population of benchmarks/run.py (benchmarks/population.c: PROCESSES sleeping
processes over many uids), then:

  a. steady   every reader listens at once, each in its own process, while
              benchmarks/spawn.c runs EXECS programs a second (fork, exec /bin/true, exit) for
              SECONDS: each reader's CPU (utime + stime of its process, /proc/self/stat) as a
              % of one core, and per 1,000 events received;
  b. storm    for each reader in turn, spawn.c forks STORM children a second for
              STORM_SECONDS (each exits at once): forks seen against forks made, the losses
              the reader detected and counted (ENOBUFS, gaps in the per-CPU numbering), the
              resyncs it asked for, its CPU per 1,000 events and its peak RSS (VmHWM).

Each reader does what the service will: wait for events, let more gather for
--batch-interval (0.1 s), drain the socket, feed the events to ptfast.act.schedule.Schedule
(PT_LIMIT 60) and to ptfast.act.live.Parents (who forked whom), and take what is due.
Readers: "ptfast" (ptfast.scan.procevents: socket and struct), "compiled"
(benchmarks/cn_recvmmsg.pyx, built here with Cython: recvmmsg() of 64 datagrams per call,
parsed in C, on the socket ProcEvents opened) and "pyroute2"
(pyroute2.ProcEventSocket, when installed; the same gap accounting over its decoded messages;
its get() blocks, so it is called in a loop without the batching wait). The machine's load (loadavg,
and the share of all CPUs busy during each part, /proc/stat) is recorded, since these hosts are
shared. Writes benchmarks/results/live-*.json. Root only; not part of the test suite.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

READERS = ("ptfast", "compiled", "pyroute2")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PT_LIMIT = 60
BATCH_INTERVAL = 0.1       # set from --batch-interval
BUILD = os.path.join(HERE, "build")


def build_compiled_reader() -> bool:
    """benchmarks/cn_recvmmsg.pyx built into build/ (Cython and a compiler needed)."""
    os.makedirs(BUILD, exist_ok=True)
    source = os.path.join(HERE, "cn_recvmmsg.pyx")
    copy = os.path.join(BUILD, "cn_recvmmsg.pyx")
    with open(source, "rb") as handle, open(copy, "wb") as out:
        out.write(handle.read())
    done = subprocess.run([sys.executable, "-m", "Cython.Build.Cythonize", "-q", "-i", "-3",
                           copy], cwd=BUILD, capture_output=True, text=True)
    if done.returncode:
        print(f"the compiled reader was not built: {done.stderr[-2000:]}", file=sys.stderr)
    return done.returncode == 0


def cpu_seconds() -> float:
    """utime + stime of this process."""
    with open("/proc/self/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb() -> float:
    with open("/proc/self/status", "rb") as handle:
        for line in handle:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def busy_jiffies() -> tuple:
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Pyroute2Reader:
    """pyroute2's reader behind the interface of ptfast's: read(), counters, take_resync."""

    def __init__(self, receive_buffer: int) -> None:
        import socket

        from pyroute2 import ProcEventSocket
        from ptfast.scan.procevents import Event
        self.Event = Event
        self.sock = ProcEventSocket()
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, receive_buffer)   # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.bind()
        self.sock.control(listen=True)
        self.receive_buffer = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._next_seq: dict = {}
        self.received = self.overruns = self.gaps = self.missed = 0
        self.resync_needed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int = 4096) -> list:
        """Blocks until pyroute2 has messages: its asyncio core reads the socket into a queue
        of its own, which a select() on the socket cannot see."""
        from ptfast.scan.procevents import EXEC, EXIT, FORK, UID
        events: list = []
        Event = self.Event
        try:
            messages = self.sock.get()
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self.overruns += 1
            self.resync_needed = True
            messages = []
        for message in messages:
            cpu, seq, what = message["cpu"], message["seq"], message["what"]
            expected = self._next_seq.get(cpu)
            if expected is not None and seq != expected:
                skipped = (seq - expected) & 0xFFFFFFFF
                if skipped < 0x80000000:
                    self.gaps += 1
                    self.missed += skipped
                    self.resync_needed = True
            self._next_seq[cpu] = (seq + 1) & 0xFFFFFFFF
            stamp = message["timestamp_ns"]
            if what == FORK:
                events.append(Event(FORK, message["child_pid"], message["child_tgid"],
                                    message["parent_pid"], message["parent_tgid"], -1, -1,
                                    stamp))
            elif what == EXEC:
                events.append(Event(EXEC, message["process_pid"], message["process_tgid"],
                                    0, 0, -1, -1, stamp))
            elif what == UID:
                events.append(Event(UID, message["process_pid"], message["process_tgid"],
                                    0, 0, message["ruid"], message["euid"], stamp))
            elif what == EXIT:
                events.append(Event(EXIT, message["process_pid"], message["process_tgid"],
                                    message.get("parent_pid") or 0,
                                    message.get("parent_tgid") or 0, -1, -1, stamp))
        self.received += len(events)
        return events

    def take_resync(self) -> bool:
        needed, self.resync_needed = self.resync_needed, False
        return needed

    def counters(self) -> dict:
        return {"received": self.received, "overruns": self.overruns, "gaps": self.gaps,
                "missed": self.missed}


def listen(reader_name: str, batch_interval: float) -> int:
    """The reader's process: listen until stdin says "stop PID", then print what it saw (PID:
    the spawner, whose children's forks are counted). After each wake-up it waits
    ``batch_interval`` for more events to gather, as the service will (one wake-up per event
    costs more than reading it). pyroute2's synchronous get() blocks until its asyncio core
    has read something: it is called in a loop, without that wait."""
    from ptfast.act.live import Parents
    from ptfast.act.schedule import Schedule
    from ptfast.scan.procevents import DEFAULT_RECEIVE_BUFFER, FORK, ProcEvents
    if reader_name == "pyroute2":
        reader = Pyroute2Reader(DEFAULT_RECEIVE_BUFFER)
    else:
        reader = ProcEvents(DEFAULT_RECEIVE_BUFFER)
        if reader_name == "compiled":
            sys.path.insert(0, BUILD)
            from cn_recvmmsg import CompiledRead
            reader.read = CompiledRead(reader).read
    schedule, parents = Schedule(PT_LIMIT), Parents()
    forks_by_parent: dict = {}
    resyncs = due = batches = 0
    print(json.dumps({"ready": os.getpid()}), flush=True)
    started_cpu, started = cpu_seconds(), time.monotonic()
    stop_pid = stop_ns = None
    blocking = reader_name == "pyroute2"
    while True:
        if not blocking:
            select.select([reader, sys.stdin], [], [], 1.0)
        if stop_pid is None and select.select([sys.stdin], [], [], 0)[0]:
            stop_pid = int(sys.stdin.readline().split()[1])
            stop_ns = time.monotonic_ns()
            cpu, wall = cpu_seconds() - started_cpu, time.monotonic() - started
            # an event after the stop: once it is read, everything before it was
            subprocess.run(["true"])
        if not blocking:
            time.sleep(batch_interval)
        last_ns = 0
        while True:
            events = reader.read()
            if not events:
                break
            last_ns = events[-1].timestamp_ns
            batches += 1
            schedule.feed(events)
            parents.feed(events)        # as ptfast.act.live.Live.take_events
            for event in events:
                if event.kind == FORK and event.pid == event.tgid:
                    forks_by_parent[event.parent_tgid] = forks_by_parent.get(
                        event.parent_tgid, 0) + 1
            if blocking:
                break
        due += len(schedule.due(time.monotonic_ns()))
        if reader.take_resync() or schedule.take_resync():
            resyncs += 1          # the service would walk /proc now
        if stop_ns is not None and last_ns > stop_ns:
            break
    counters = reader.counters()
    print(json.dumps({
        "reader": reader_name, "cpu_seconds": cpu, "wall_seconds": wall,
        "cpu_percent_of_one_core": 100 * cpu / wall,
        "cpu_ms_per_1000_events": 1000 * 1000 * cpu / max(1, counters["received"]),
        **counters, "resyncs": resyncs, "batches": batches, "due": due,
        "waiting_at_end": len(schedule), "schedule_overflows": schedule.overflows,
        "forks_seen_of_spawner": forks_by_parent.get(stop_pid, 0),
        "receive_buffer": reader.receive_buffer, "peak_rss_mb": peak_rss_mb()}), flush=True)
    return 0


def start_listener(reader_name: str) -> subprocess.Popen:
    popen = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--listen",
                              reader_name, "--batch-interval", str(BATCH_INTERVAL)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    line = popen.stdout.readline()
    if not line.startswith('{"ready"'):
        popen.kill()
        popen.wait()
        raise SystemExit(f"the {reader_name} reader did not start")
    return popen


def stop_listener(popen: subprocess.Popen, spawner_pid: int) -> dict:
    popen.stdin.write(f"stop {spawner_pid}\n")
    popen.stdin.flush()
    result = json.loads(popen.stdout.readline())
    popen.wait()
    return result


def spawn(spawn_binary: str, mode: str, rate: int, seconds: float, readers: list) -> dict:
    """Run the spawner with every reader in ``readers`` listening; returns the results."""
    listeners = {name: start_listener(name) for name in readers}
    busy_before = busy_jiffies()
    load_before = os.getloadavg()
    try:
        spawner = subprocess.Popen([spawn_binary, mode, str(rate), str(seconds)],
                                   stdout=subprocess.PIPE, text=True)
        made_line = spawner.stdout.read().strip()
        spawner.wait()
        # let the last events arrive: the stop line is read only after the socket is drained
        time.sleep(1.0)
    except BaseException:
        for popen in listeners.values():
            popen.kill()
            popen.wait()
        raise
    results = {name: stop_listener(popen, spawner.pid) for name, popen in listeners.items()}
    busy_after = busy_jiffies()
    made = int(made_line.split()[1])
    return {"mode": mode, "rate": rate, "seconds": seconds, "made": made,
            "spawner_said": made_line, "readers": results,
            "machine_busy_percent": 100 * (busy_after[0] - busy_before[0])
            / max(1, busy_after[1] - busy_before[1]),
            "cpus": os.cpu_count(), "loadavg_before": load_before,
            "loadavg_after": os.getloadavg()}


def available_readers(wanted: list) -> list:
    found = []
    for name in wanted:
        if name == "pyroute2":
            try:
                import pyroute2  # noqa: F401
            except ImportError:
                print("pyroute2 is not installed: its reader is left out", file=sys.stderr)
                continue
        if name == "compiled" and not build_compiled_reader():
            continue
        found.append(name)
    return found


def report(part: dict, title: str) -> list:
    lines = [f"== {title}: {part['made']:,} made ({part['spawner_said']}), machine "
             f"{part['machine_busy_percent']:.0f}% busy over {part['cpus']} CPUs, loadavg "
             f"{part['loadavg_before'][0]:.2f} -> {part['loadavg_after'][0]:.2f}"]
    for name, result in part["readers"].items():
        lines.append(
            f"   {name:9} {result['cpu_percent_of_one_core']:6.3f}% of a core, "
            f"{result['cpu_ms_per_1000_events']:6.2f} ms CPU per 1,000 events, "
            f"{result['received']:,} events, forks of the spawner seen "
            f"{result['forks_seen_of_spawner']:,}/{part['made']:,}, lost: "
            f"{result['overruns']} overruns, {result['gaps']} gaps, {result['missed']:,} "
            f"events missed, {result['resyncs']} resyncs, peak RSS "
            f"{result['peak_rss_mb']:.1f} MB")
    per_event = {name: result["cpu_ms_per_1000_events"]
                 for name, result in part["readers"].items()}
    if "ptfast" in per_event and len(per_event) > 1:
        lines.append("   CPU per event against ptfast's: " + ", ".join(
            f"{name} {value / per_event['ptfast']:.2f}x" for name, value in per_event.items()
            if name != "ptfast"))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=20000)
    parser.add_argument("--uids", type=int, default=300)
    parser.add_argument("--execs", type=int, default=50, help="execs a second in part a")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--storm", type=int, default=5000, help="forks a second in part b")
    parser.add_argument("--storm-seconds", type=float, default=30)
    parser.add_argument("--readers", default=",".join(READERS))
    parser.add_argument("--batch-interval", type=float, default=0.1,
                        help="seconds a reader lets events gather after a wake-up")
    parser.add_argument("--parts", default="steady,storm")
    args = parser.parse_args()
    if args.listen:
        return listen(args.listen, args.batch_interval)
    global BATCH_INTERVAL
    BATCH_INTERVAL = args.batch_interval
    if os.geteuid() != 0:
        raise SystemExit("run as root: the connector needs CAP_NET_ADMIN, the population "
                         "spreads over many uids")
    from host import (Sysctls, exit_on_termination, free_uid_block, kill_uid_block,
                      restore_journal)
    from record import environment, results_path, write_results
    from run import build, raise_limits, start_population, stop_population
    exit_on_termination()
    restore_journal()
    readers = available_readers(args.readers.split(","))
    parts = args.parts.split(",")
    document: dict = {"environment": environment(), "options": vars(args)}
    path = results_path("live", document)
    spawner = build("spawn")
    lines = []
    with Sysctls() as sysctls:
        raise_limits(sysctls, args.processes, 0)
        base_uid = free_uid_block(args.uids)
        population = start_population(args.processes, args.uids, base_uid)
        try:
            if "steady" in parts:
                document["steady"] = spawn(spawner, "exec", args.execs, args.seconds, readers)
                write_results(path, document)
                lines += report(document["steady"], f"a. {args.execs} execs/s for "
                                f"{args.seconds:g} s beside {args.processes:,} processes, "
                                "readers at once")
                print("\n".join(lines), flush=True)
            if "storm" in parts:
                document["storm"] = {}
                for name in readers:
                    document["storm"][name] = part = spawn(spawner, "fork", args.storm,
                                                           args.storm_seconds, [name])
                    write_results(path, document)
                    lines += report(part, f"b. storm of {args.storm:,} forks/s for "
                                    f"{args.storm_seconds:g} s, {name} alone")
                    print("\n".join(lines[-2:]), flush=True)
        finally:
            stop_population(population)
            left = kill_uid_block(base_uid, args.uids)
            if left:
                print(f"{left} processes of the population's uids are left", file=sys.stderr)
    env = document["environment"]
    print(f"== {env['kernel']}, {env['cpu_count']} x {env['cpu_model']}, Python "
          f"{env['python'].split()[0]}, git {env['git_revision'][:10]}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
