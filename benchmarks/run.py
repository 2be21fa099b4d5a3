"""Benchmark runner: ptfast against its yardsticks, on one real population, interleaved.

    sudo python3 benchmarks/run.py                        # 5,000 / 10,000 / 20,000 processes
    sudo python3 benchmarks/run.py --sizes 2000 --rounds 3
    sudo python3 benchmarks/run.py --sizes 5000 --sockets 0,100000,200000
    sudo python3 benchmarks/run.py --sizes 50000 --rounds 1 --only floor,ptfast,warm,pass,ss

For each case (a number of processes, and a number of extra TCP sockets) it starts the
population (benchmarks/population.c: sleeping processes over many uids, each with open files and
a pipe, 10% with an established loopback TCP connection, 1% listening) and, with --sockets, a
socket-heavy load beside it (benchmarks/sockets.c: 1% of the sockets listening, 10% established,
the rest in TIME_WAIT, all on loopback), waits until every process is older than PT_LIMIT=1,
then runs in turn, ROUNDS times:

  floor       benchmarks/floor.c, a minimal C scanner doing the same system calls
  floor-diag  the floor reading its TCP tables with sock_diag netlink (only with --sockets)
  ptfast      `ptfast scan --json` with the compiled core and the built-in ignore list, and
              PT_CONN_AGE=0: the walk alone
  look-twice  the same at the default PT_CONN_AGE (5): when a tracked account holds a
              connection (the population's do) the scan dumps the socket tables for 5 s first,
              so that a connection counts only if held that long (docs/detection.md)
  twin        the same with PTFAST_NO_EXTENSIONS=1 (the pure-Python core)
  psutil      benchmarks/psutil_scan.py, the job written straightforwardly with psutil
  ss          `ss -tanp` (sock_diag netlink, then every /proc/PID/fd)
  ss-threads  `ss -tanpT` (the same, through every thread's fd directory)
  warm        the floor's job inside `ptfast run` (warm caches, no interpreter start, nothing
              remembered as reported), timed in the process (benchmarks/warm_pass.py)
  pass        a steady pass of `ptfast run` (every finding already reported), timed likewise

and, once per round, `floor --tables 1`: reading the TCP tables from /proc/net/tcp + tcp6
against sock_diag, timed inside the C program; and `tables.py 1`: ptfast's cores reading the
host's socket tables both ways (tcp and udp through sock_diag, as the scan does, against all from
/proc/net), timed in the process. TIME_WAIT sockets live 60 s, so the load is
topped up before every measurement (never during one), enough for the TIME_WAIT share to last
until the measurement ends (1.5 times the longest run of the contender's process so far); the
TIME_WAIT counts seen before and after each measurement are recorded. Wall time and peak RSS of
a command are taken by benchmarks/timed.c (the runner's own wait4() would report its own size
as every contender's peak).

A run that exits with an unexpected status is reported with its stderr and not timed (psutil,
for one, gives up on a process whose exe path is longer than PATH_MAX). Prints min / median /
max wall times, ratios to the floor (these machines are shared and noisy: compare ratios taken
in one run, not absolute times) and peak resident memory, and writes
everything, with the environment, to benchmarks/results/run-*.json. The population's uids are a
block no account or process uses; everything of that block is killed at the end. kernel.pid_max,
kernel.threads-max and net.ipv4.tcp_max_tw_buckets are raised when a case needs it and restored
at the end, on Ctrl-C and on SIGTERM (after a SIGKILL, by the next run). Not part of the test
suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from host import (Sysctls, exit_on_termination, free_uid_block, kill_uid_block,  # noqa: E402
                  read_sysctl, restore_journal)
from record import (compile_tree, environment, results_path, spread,  # noqa: E402
                    write_results)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUILD = os.path.join(HERE, "build")
PT_LIMIT = 1
CONTENDERS = ("floor", "floor-diag", "ptfast", "look-twice", "before", "twin", "psutil", "ss",
              "ss-threads", "warm", "pass")
TIMED_INSIDE = ("warm", "pass")     # they print their own seconds: no interpreter start
SOCKET_HOLDERS = 100                # processes of the socket load holding its live sockets
HOLDER_FDS = 800                    # at most this many sockets per holder (fd soft limit 1024)


def build(name: str) -> str:
    os.makedirs(BUILD, exist_ok=True)
    source = os.path.join(HERE, f"{name}.c")
    binary = os.path.join(BUILD, name)
    sources = [source, os.path.join(HERE, "common.h")]
    if not os.path.exists(binary) or os.path.getmtime(binary) < max(map(os.path.getmtime,
                                                                        sources)):
        subprocess.run(["cc", "-O2", "-Wall", "-o", binary, source], check=True)
    return binary


def _wait_ready(popen: subprocess.Popen, what: str) -> None:
    """Ends the group if it fails or is interrupted while starting (it forks as root)."""
    try:
        line = popen.stdout.readline()
    except BaseException:
        stop_group(popen)
        raise
    if not line.startswith("ready"):
        stop_group(popen)
        raise SystemExit(f"{what} did not start")


def start_population(size: int, uids: int, base_uid: int) -> subprocess.Popen:
    popen = subprocess.Popen([build("population"), str(size), str(uids), str(base_uid)],
                             stdout=subprocess.PIPE, text=True)
    _wait_ready(popen, f"population of {size}")
    return popen


def stop_group(popen: subprocess.Popen, close_input: bool = False) -> None:
    """End a population or socket load: both lead their own process group, whose SIGTERM
    ends the children; the leader reaps them and exits (the socket load's once its standard
    input ends)."""
    try:
        os.killpg(popen.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if close_input and popen.stdin:
        popen.stdin.close()
    popen.wait()


stop_population = stop_group


def population_holders(size: int) -> int:
    """Processes of population.c holding an inet socket: its listeners and its clients."""
    return max(1, size // 100) + size // 10


def socket_mix(sockets: int) -> dict:
    """How --sockets N splits: 1% listening, 10% established (both ends of N/20 loopback
    connections), the rest TIME_WAIT, as on a busy web server."""
    listening = max(1, sockets // 100)
    established = sockets // 10 // 2 * 2
    return {"listening": listening, "established": established,
            "time_wait": sockets - listening - established}


def tcp_sockstat() -> dict:
    with open("/proc/net/sockstat") as handle:
        for line in handle:
            if line.startswith("TCP:"):
                fields = line.split()[1:]
                return {fields[i]: int(fields[i + 1]) for i in range(0, len(fields), 2)}
    return {}


class SocketLoad:
    """benchmarks/sockets.c: live sockets held by SOCKET_HOLDERS processes, TIME_WAIT on demand."""

    def __init__(self, sockets: int, uids: int, base_uid: int) -> None:
        self.mix = socket_mix(sockets)
        live = self.mix["listening"] + self.mix["established"]
        # each holder listens at least once; none holds more fds than its soft limit allows
        self.holders = min(self.mix["listening"],
                           max(SOCKET_HOLDERS, math.ceil(live / HOLDER_FDS)))
        self.popen = subprocess.Popen(
            [build("sockets"), str(self.mix["listening"]), str(self.mix["established"]),
             str(self.holders), str(base_uid), str(uids)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        _wait_ready(self.popen, f"socket load of {sockets}")

    def fill(self, seconds_ahead: float) -> int:
        """Top TIME_WAIT up to its share, for a measurement of about ``seconds_ahead``;
        returns the count reached."""
        # a TIME_WAIT socket lives 60 s: no fill can cover a longer measurement
        self.popen.stdin.write(f"fill {self.mix['time_wait']} {min(seconds_ahead, 50):.1f}\n")
        self.popen.stdin.flush()
        return int(self.popen.stdout.readline().split()[1])

    def refill_for(self, seconds: float, seen: list):
        """A fill to call later, noting the TIME_WAIT count it reached in ``seen``."""
        def refill() -> None:
            self.fill(seconds)
            seen.append(tcp_sockstat().get("tw", 0))
        return refill

    def stop(self) -> None:
        stop_group(self.popen, close_input=True)


def contenders(only: tuple, sockets: int) -> dict:
    scan = [sys.executable, "-m", "ptfast", "scan", "--json", "--config", os.devnull,
            "--override", os.devnull, "--set", f"PT_LIMIT={PT_LIMIT}"]
    # the walk alone, as the floor and "before" (no lifetimes) do it: with PT_CONN_AGE at its
    # default the population's connections make the scan wait 5 s first ("look-twice")
    walk = scan + ["--set", "PT_CONN_AGE=0"]
    plain = {k: v for k, v in os.environ.items() if k != "PTFAST_NO_EXTENSIONS"}
    # the scripts in benchmarks/ must import this tree's ptfast, as `-m ptfast` from it does,
    # not whichever one the interpreter has installed
    plain["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    warm_pass = [sys.executable, os.path.join(HERE, "warm_pass.py")]
    findings = (0, 1)           # ptfast scan exits 1 when it reports something
    every = {
        "floor": ([build("floor"), str(PT_LIMIT)], plain, (0,)),
        "floor-diag": ([build("floor"), "--sockdiag", str(PT_LIMIT)], plain, (0,)),
        "ptfast": (walk, plain, findings),
        "look-twice": (scan, plain, findings),
        "twin": (walk, dict(plain, PTFAST_NO_EXTENSIONS="1"), findings),
        "psutil": ([sys.executable, os.path.join(HERE, "psutil_scan.py"), str(PT_LIMIT)], plain,
                   (0,)),
        "ss": (["ss", "-tanp"], plain, (0,)),
        "ss-threads": (["ss", "-tanpT"], plain, (0,)),
        "warm": (warm_pass + ["warm", str(PT_LIMIT)], plain, (0,)),
        "pass": (warm_pass + ["pass", str(PT_LIMIT)], plain, (0,)),
    }
    before = os.environ.get("PTFAST_BASELINE_PYTHON")
    if before:
        # another revision of ptfast, installed (not editable) for that interpreter: -I keeps
        # this tree and PYTHONPATH out of its way, so the two are compared in one run
        every["before"] = ([before, "-I", "-m", "ptfast", *scan[3:]], plain, findings)
    if not sockets:
        del every["floor-diag"]     # without TIME_WAIT to skip it only measures noise
    return {name: every[name] for name in CONTENDERS if name in every and name in only}


class Failed(Exception):
    """A contender exited with an unexpected status (its stderr says why)."""


def measure(command: list, env: dict, statuses: tuple = (0,),
            before_timing=None) -> tuple[float, float, bytes]:
    """Wall seconds, peak RSS in MB, and stdout of one run (timed by benchmarks/timed.c).

    With ``before_timing``, the command is warm_pass.py's handshake: it is called once the
    command says "set up", and the command goes on when it returns."""
    report_read, report_write = os.pipe()
    try:
        popen = subprocess.Popen([build("timed"), str(report_write), *command], env=env,
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.PIPE if before_timing else None,
                                 pass_fds=(report_write,))
        os.close(report_write)
        try:
            if before_timing:
                if popen.stdout.readline().strip() == b"set up":
                    before_timing()
                popen.stdin.write(b"go\n")
                popen.stdin.close()
                popen.stdin = None          # communicate() must not flush it again
            output, errors = popen.communicate()
        except BaseException:           # Ctrl-C or SIGTERM: leave nothing running
            popen.kill()
            popen.wait()
            raise
        with os.fdopen(report_read) as report:
            seconds, peak_kb = report.read().split()
    finally:
        for fd in (report_read, report_write):
            try:
                os.close(fd)
            except OSError:
                pass
    if popen.returncode not in statuses:
        raise Failed(f"status {popen.returncode}: "
                     f"{errors.decode(errors='replace').strip()[-300:]}")
    return float(seconds), int(peak_kb) / 1024, output


def raise_limits(sysctls: Sysctls, size: int, sockets: int) -> None:
    with open("/proc/loadavg") as handle:
        tasks_now = int(handle.read().split()[3].split("/")[1])
    needed = tasks_now + size + SOCKET_HOLDERS + 1000
    # half-full pid space at most: the kernel searches for a free pid at every fork
    sysctls.raise_to("kernel.pid_max", min(4194304, 2 * needed))
    sysctls.raise_to("kernel.threads-max", 2 * needed)
    if sockets:
        time_wait = socket_mix(sockets)["time_wait"]
        # the fill looks ahead: up to twice the share may be alive at a measurement's start
        sysctls.raise_to("net.ipv4.tcp_max_tw_buckets", 2 * time_wait + 10000)


def settle_time_wait(sockets: int) -> int:
    """Wait (at most a TIME_WAIT lifetime) for an earlier case's TIME_WAIT sockets to expire,
    so that they do not count for this one; returns the count left."""
    ceiling = (socket_mix(sockets)["time_wait"] if sockets else 0) + 2000
    deadline = time.monotonic() + 65
    while tcp_sockstat().get("tw", 0) > ceiling and time.monotonic() < deadline:
        time.sleep(1)
    return tcp_sockstat().get("tw", 0)


def run_case(size: int, sockets: int, rounds: int, uids: int, only: tuple,
             sysctls: Sysctls) -> dict:
    raise_limits(sysctls, size, sockets)
    time_wait_at_start = settle_time_wait(sockets)
    base_uid = free_uid_block(uids)
    population = load = None
    try:
        population = start_population(size, uids, base_uid)
        if sockets:
            load = SocketLoad(sockets, uids, base_uid)
            load.fill(0)
        time.sleep(PT_LIMIT + 0.5)          # every process must be old enough to be inspected
        commands = contenders(only, sockets)
        times = {name: [] for name in commands}
        walls = {name: [] for name in commands}     # whole process, warm and pass included
        peaks = {name: [] for name in commands}
        time_wait_seen = []
        tables = []
        core_tables: dict = {}
        outputs = {}
        failures: dict = {}
        for _ in range(rounds):
            for name, (command, env, statuses) in commands.items():
                if load:
                    # how long this contender's process took so far, or a first guess
                    expected = max(walls[name]) if walls[name] else 5 + size / 1000
                    load.fill(1.5 * expected + 1)
                    time_wait_seen.append(tcp_sockstat().get("tw", 0))
                before_timing = None
                if load and name in TIMED_INSIDE:
                    # the first pass can outlast the TIME_WAIT sockets: refill before the timed
                    # part too, for as long as it took so far
                    command = command + ["--handshake"]
                    before_timing = load.refill_for(
                        1.5 * max(times[name]) + 1 if times[name] else 10, time_wait_seen)
                try:
                    elapsed, peak, output = measure(command, env, statuses, before_timing)
                except Failed as exc:       # e.g. a process of the host it cannot cope with
                    failures.setdefault(name, []).append(str(exc))
                    print(f"   {name} failed, not counted: {exc}", file=sys.stderr)
                    continue
                finally:
                    if load:
                        time_wait_seen.append(tcp_sockstat().get("tw", 0))
                walls[name].append(elapsed)
                if name in TIMED_INSIDE:
                    elapsed = float(output)
                times[name].append(elapsed)
                peaks[name].append(peak)
                outputs[name] = output
            if load:
                load.fill(2)
            tables.append(json.loads(measure([build("floor"), "--tables", "1"], os.environ)[2]))
            for key, entry in json.loads(measure([sys.executable, os.path.join(HERE, "tables.py"),
                                                  "1"], os.environ)[2]).items():
                core_tables.setdefault(key, dict(entry, seconds=[]))["seconds"].extend(
                    entry["seconds"])
    finally:
        if load:
            load.stop()
        if population:
            stop_population(population)
        left = kill_uid_block(base_uid, uids)
        if left:
            print(f"warning: {left} processes of uids {base_uid}.. still there", file=sys.stderr)
    result = {"size": size, "sockets": sockets, "uids": uids, "rounds": rounds,
              "socket_mix": socket_mix(sockets) if sockets else None,
              "time": {k: spread(v) for k, v in times.items() if v},
              "peak_rss_mb": {k: spread(v) for k, v in peaks.items() if v},
              "failures": failures,
              "time_wait_at_start": time_wait_at_start,
              "time_wait_seen": spread(time_wait_seen) if time_wait_seen else None,
              "tables": {
                  "proc_net": spread([t["proc_net"][0] for t in tables]),
                  "sock_diag": spread([t["sock_diag"][0] for t in tables]),
                  "proc_net_lines": tables[-1]["proc_net_lines"],
                  "proc_net_bytes": tables[-1]["proc_net_bytes"],
                  "proc_net_inodes": tables[-1]["proc_net_inodes"],
                  "sock_diag_sockets": tables[-1]["sock_diag_sockets"]},
              "core_tables": {key: dict(entry, seconds=spread(entry["seconds"]))
                              for key, entry in core_tables.items()}}
    if "floor" in outputs and not failures:
        # per round, against the floor of the same round: how much of a ratio is noise
        result["paired_ratio"] = {k: spread([a / b for a, b in zip(v, times["floor"])])
                                  for k, v in times.items() if k != "floor"}
        result["floor_says"] = outputs["floor"].decode().strip()
    if "ptfast" in outputs:
        # the check that ptfast finds what it must: every socket holder of the population (the
        # host's other processes come and go). ptfast's other checks (PT_USERPROC and the
        # rest, on by default as in lfd) are run and timed, but not counted here
        result["expected_holders"] = population_holders(size) + (load.holders + 1 if load else 0)
        result["findings"] = sum(1 for line in outputs["ptfast"].splitlines()
                                 if json.loads(line)["check"] == "suspicious"
                                 and base_uid <= json.loads(line)["uid"] < base_uid + uids)
    return result


def scan_goal(size: int, sockets: int) -> float:
    """`ptfast scan` against the floor, from the project's issues."""
    if sockets:
        return 1.5
    return 1.10 if size >= 20000 else 1.25


def _case_title(result: dict) -> str:
    title = f"== {result['size']:,} processes over {result['uids']} uids"
    if result["sockets"]:
        mix = result["socket_mix"]
        seen = result["time_wait_seen"]
        title += (f" + {result['sockets']:,} TCP sockets ({mix['listening']:,} listening, "
                  f"{mix['established']:,} established, {mix['time_wait']:,} TIME_WAIT; "
                  f"seen {seen['min']:,}..{seen['max']:,})")
    return title + f", {result['rounds']} rounds"


def report_case(result: dict) -> list:
    t, peak = result["time"], result["peak_rss_mb"]
    lines = [_case_title(result)]
    if "findings" in result:
        lines.append(f"   ptfast reported {result['findings']:,} of the population's "
                     f"{result['expected_holders']:,} socket holders")
    if "floor_says" in result:
        lines.append(f"   floor (the whole host): {result['floor_says']}")
    lines.append(f"   {'ms':<11}{'min':>9}{'median':>9}{'max':>9}{'x floor':>9}"
                 f"{'paired x floor':>22}{'peak RSS MB':>13}")
    for name, spread_ in t.items():
        ratio = paired = ""
        if "floor" in t and name != "floor":
            ratio = f"{spread_['median'] / t['floor']['median']:.2f}"
            if "paired_ratio" in result:
                p = result["paired_ratio"][name]
                paired = f"{p['min']:.2f} / {p['median']:.2f} / {p['max']:.2f}"
        lines.append(f"   {name:<11}{spread_['min'] * 1000:9.1f}{spread_['median'] * 1000:9.1f}"
                     f"{spread_['max'] * 1000:9.1f}{ratio:>9}{paired:>22}"
                     f"{peak[name]['max']:13.1f}")
    for name, failed in result["failures"].items():
        lines.append(f"   {name:<11}failed {len(failed)} of {result['rounds']} rounds: "
                     f"{failed[-1][:150]}")

    def median(name):
        return t[name]["median"] if name in t else None

    def ratio_line(label, top, bottom, goal):
        if median(top) and median(bottom):
            lines.append(f"   {label:<18}{median(top) / median(bottom):6.2f}x   {goal}")

    ratio_line("ptfast / floor", "ptfast", "floor",
               f"(goal <= {scan_goal(result['size'], result['sockets'])})")
    ratio_line("ptfast / before", "ptfast", "before", "(this tree against PTFAST_BASELINE_PYTHON's)")
    ratio_line("pass / floor", "pass", "floor", "(goal <= 1.0: the daemon's steady pass)")
    ratio_line("warm / floor", "warm", "floor", "(the floor's job inside `ptfast run`)")
    ratio_line("psutil / ptfast", "psutil", "ptfast", "(goal >= 4)")
    ratio_line("twin / psutil", "twin", "psutil", "(goal <= 1)")
    ratio_line("ss -tanp / ptfast", "ss", "ptfast", "")
    if "ptfast" in peak:
        rss_goal = 60 if result["sockets"] else 40
        lines.append(f"   ptfast peak RSS {peak['ptfast']['max']:6.1f} MB (goal <= {rss_goal})"
                     + (f"; daemon (pass) {peak['pass']['max']:.1f} MB" if "pass" in peak
                        else ""))
    tables = result["tables"]
    proc_net, diag = tables["proc_net"], tables["sock_diag"]
    lines.append(f"   TCP tables, ms min / median / max: /proc/net/tcp+tcp6 "
                 f"{proc_net['min'] * 1000:.1f} / {proc_net['median'] * 1000:.1f} / "
                 f"{proc_net['max'] * 1000:.1f} ({tables['proc_net_lines']:,} lines, "
                 f"{tables['proc_net_bytes'] / 1e6:.1f} MB, {tables['proc_net_inodes']:,} "
                 f"with an inode); sock_diag {diag['min'] * 1000:.1f} / "
                 f"{diag['median'] * 1000:.1f} / {diag['max'] * 1000:.1f} "
                 f"({tables['sock_diag_sockets']:,} sockets)")
    for key, entry in result.get("core_tables", {}).items():
        seconds = entry["seconds"]
        lines.append(f"   {key.replace('_', ' ', 1)} tables, ms: {seconds['min'] * 1000:.1f} / "
                     f"{seconds['median'] * 1000:.1f} / {seconds['max'] * 1000:.1f} "
                     f"({entry['sockets']:,} sockets, {entry['through_netlink']} tables "
                     f"through netlink)")
    return lines


def report_scaling(results: list) -> list:
    lines = []
    by_sockets: dict = {}
    for result in results:
        by_sockets.setdefault(result["sockets"], []).append(result)
    for sockets, group in sorted(by_sockets.items()):
        if len(group) < 2:
            continue
        lines.append(f"== scaling, ms per 1,000 processes ({sockets:,} extra sockets)")
        for name in CONTENDERS:
            if all(name in r["time"] for r in group):
                lines.append(f"   {name:<11}" + "".join(
                    f"{r['size']:>8,}: {r['time'][name]['median'] * 1e6 / r['size']:7.2f}"
                    for r in group))
    by_size: dict = {}
    for result in results:
        by_size.setdefault(result["size"], []).append(result)
    for size, group in sorted(by_size.items()):
        if len(group) < 2:
            continue
        group.sort(key=lambda r: r["sockets"])
        least = group[0]
        lines.append(f"== scaling, ms per 10,000 sockets beyond {least['sockets']:,} "
                     f"({size:,} processes)")
        for name in CONTENDERS + ("proc_net", "sock_diag"):
            row = []
            for r in group[1:]:
                def median(result):
                    if name in result["time"]:
                        return result["time"][name]["median"]
                    return result["tables"].get(name, {}).get("median")
                if median(r) is None or median(least) is None:
                    break
                per = (median(r) - median(least)) * 1000 / ((r["sockets"] - least["sockets"]) / 1e4)
                row.append(f"{r['sockets']:>9,}: {per:7.2f}")
            else:
                if row:
                    lines.append(f"   {name:<11}" + "".join(row))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,10000,20000",
                        help="numbers of processes, one case each (default %(default)s)")
    parser.add_argument("--sockets", default="0",
                        help="numbers of extra TCP sockets, one case per size each "
                             "(default %(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uids", type=int, default=300, help="distinct uids in the population")
    parser.add_argument("--only", default=",".join(CONTENDERS),
                        help="contenders to run (default: all of %(default)s)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the population spreads over many uids")
    only = tuple(args.only.split(","))
    unknown = set(only) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders: {', '.join(sorted(unknown))}")
    exit_on_termination()
    restored = restore_journal()
    if restored:
        print(f"restored settings a killed run left raised: {restored}", file=sys.stderr)
    compile_tree()
    document = {"environment": environment(), "options": vars(args), "cases": []}
    path = results_path("run", document)
    with Sysctls() as sysctls:
        for size in (int(s) for s in args.sizes.split(",")):
            for sockets in (int(s) for s in args.sockets.split(",")):
                result = run_case(size, sockets, args.rounds, args.uids, only, sysctls)
                result["sysctls"] = {name: read_sysctl(name) for name in (
                    "kernel.pid_max", "kernel.threads-max", "net.ipv4.tcp_max_tw_buckets")}
                document["cases"].append(result)
                with open("/proc/loadavg") as handle:
                    document["load_average_at_end"] = [float(x)
                                                       for x in handle.read().split()[:3]]
                write_results(path, document)
                print("\n".join(report_case(result)), flush=True)
    env = document["environment"]
    print(f"== {env['kernel']}, {env['cpu_count']} x {env['cpu_model']}, Python "
          f"{env['python'].split()[0]}, {env['ptfast']}, psutil {env['psutil']}, "
          f"{env['cython_of_core']}, git {env['git_revision'][:10]}"
          f"{' (dirty)' if env['git_dirty'] else ''}, load {env['load_average_at_start']} at "
          f"start, {document['load_average_at_end']} at end")
    print("\n".join(report_scaling(document["cases"])))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: population ended, kernel settings restored", file=sys.stderr)
        sys.exit(130)
