"""Detection latency of `ptfast run`: from a process's start to its alert, live mode against
polling (issue 21, item 6: the first half).

    sudo python3 benchmarks/latency.py                       # PT_LIMIT 2, PT_INTERVAL 30, 6 each
    sudo python3 benchmarks/latency.py --limit 10 --interval 60 --attacks 8
    sudo python3 benchmarks/latency.py --attacks 2 --churn 50 --churn-seconds 30   # and CPU
    sudo python3 benchmarks/latency.py --kinds start,late-listener,calls --modes live \
        --population 20000 --churn 50          # each attack kind; CPU beside 20,000 processes

For each mode it starts its own `ptfast run` (a private state directory, log and events file,
alerts to /bin/true, ignore rules that track only one test uid), waits for its first pass,
then starts ATTACKS listeners of that uid (a bind shell's shape: a socket listening on
127.0.0.1) at random moments spread over one PT_INTERVAL, and records when each one's event
appears in the events file (read every 10 ms). Latency is reported after PT_LIMIT: the time
from the process's start to its event, less PT_LIMIT (what live mode can at best make 0).
Polling mode is the same service with its netlink sockets refused by a seccomp filter
(tests/helpers/nonetlink.py), as on a host whose policy refuses the proc connector.
--kinds: "start" (above), "late-listener" (an old process, checked long before, opens a
listener: latency from the listen() to its event: the socket dumps' part) and "calls" (a
process that holds no socket a dump could see: a UDP connect() and close to a new host every
0.5 s, as a spam sender; latency after PT_LIMIT: the connect hook's part).
--population N starts run.py's population of N sleeping processes over many uids beside the
service. With --churn EXECS, benchmarks/spawn.c then runs EXECS programs a second (built here with cc)
and the service's own CPU (utime + stime) is measured meanwhile.
Writes benchmarks/results/latency-*.json. Root only; not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), HERE]

from helpers import nonetlink              # noqa: E402
from helpers.uids import uid_for           # noqa: E402

UID = uid_for(970)
KEEP = False            # --keep
#: the attack of each --kind: "start", a bind shell from its start (latency from its start,
#: less PT_LIMIT); "late-listener", an old process (past PT_LIMIT and checked) that opens a
#: listener when told (latency from the listen()); "calls", a process that only makes calls
#: held for no time (UDP connect() and close: nothing is sent) to a new documentation-range
#: host every CALL_EVERY s, as a spam sender (latency from its start, less PT_LIMIT)
KINDS = ("start", "late-listener", "calls")
CALL_EVERY = 0.5
ATTACK = {
    "start": "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n",
    "late-listener": "sys.stdout.write('old\\n'); sys.stdout.flush(); sys.stdin.readline()\n"
                     "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n",
    "calls": "def calls():\n"
             "    for host in range(1, 100000):\n"
             "        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "        c.connect(('198.18.%d.%d' % (10 + host // 250 % 50, 1 + host % 250), 25))\n"
             "        c.close(); time.sleep(CALL_EVERY)\n"
             "threading.Thread(target=calls, daemon=True).start()\n",
}
# every import before the setuid: the interpreter's library may be readable by root only
CHILD = ("import os, socket, sys, threading, time\n"
         "CALL_EVERY = {every}\n"
         "os.setgroups([]); os.setgid({uid}); os.setuid({uid})\n"
         "{attack}"
         "sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()\n")


def events_of(path: str) -> dict:
    """pid -> when its first event was seen (by us)."""
    found = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    found.setdefault(json.loads(line).get("pid"), None)
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return found


def cpu_seconds_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawner() -> str:
    """benchmarks/spawn.c, built into benchmarks/build/."""
    binary = os.path.join(HERE, "build", "spawn")
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    subprocess.run(["cc", "-O2", "-o", binary, os.path.join(HERE, "spawn.c")], check=True)
    return binary


def measure(mode: str, limit: int, interval: int, attacks: int,
            churn: tuple = (0, 0.0), kind: str = "start") -> dict:
    work = tempfile.mkdtemp(prefix=f"ptfast-latency-{mode}-")
    events_file, log_file = os.path.join(work, "events.jsonl"), os.path.join(work, "log")
    pignore, override = os.path.join(work, "pignore"), os.path.join(work, "ptfast.conf")
    with open(pignore, "w") as handle:
        handle.write(f"puser:(?!(?:{UID})$).*\n")
    with open(override, "w") as handle:
        handle.write(f'PT_LIMIT = "{limit}"\nPT_INTERVAL = "{interval}"\nPT_LOAD = "0"\n'
                     'SENDMAIL = "/bin/true"\n')
    command = [sys.executable, "-m", "ptfast", "run", "--config", os.devnull, "--override",
               override, "--pignore", pignore, "--state-dir", os.path.join(work, "state"),
               "--log-file", log_file, "--events-file", events_file, "--quiet"]
    refuse = nonetlink.REFUSALS["socket"] if mode == "polling" else None
    service = subprocess.Popen(command, cwd=ROOT, preexec_fn=refuse,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list = []
    try:
        deadline = time.monotonic() + 60
        while "pass done" not in open(log_file).read() if os.path.exists(log_file) else True:
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode}: the service never finished a pass")
            time.sleep(0.05)
        log = open(log_file).read()
        said = [line for line in log.splitlines() if "mode: " in line]
        moments = sorted(random.uniform(0, interval) for _ in range(attacks))
        started: dict = {}
        seen: dict = {}

        def watch(until: float) -> None:
            """Read the events file every 10 ms until ``until`` (or all are seen)."""
            while True:
                now = time.monotonic()
                for pid in events_of(events_file):
                    if pid in started and pid not in seen:
                        seen[pid] = now
                if now >= until or (len(seen) == attacks):
                    return
                time.sleep(0.01)

        begun = time.monotonic()
        for moment in moments:
            watch(begun + moment)       # earlier attacks' alerts are timed meanwhile
            at = time.monotonic()
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD.format(uid=UID, every=CALL_EVERY,
                                                    attack=ATTACK[kind])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            children.append(child)
            if kind == "late-listener":
                # old: past PT_LIMIT and its check (and a dump) before it listens
                child.stdout.readline()
                watch(time.monotonic() + limit + 2)     # earlier ones' alerts meanwhile
                child.stdin.write(b"go\n")
                child.stdin.flush()
                child.stdout.readline()
                at = time.monotonic() - limit    # latency from the listen(), not the start
            started[child.pid] = at
        watch(time.monotonic() + limit + 2 * interval + 30)
        execs, churn_seconds = churn
        cpu = None
        if execs:
            # the service's own CPU while spawn.c runs EXECS programs a second (root's: they
            # are scheduled and checked like any, then ignored)
            before = cpu_seconds_of(service.pid)
            subprocess.run([spawner(), "exec", str(execs), str(churn_seconds)], check=True,
                           stdout=subprocess.DEVNULL)
            time.sleep(limit + 1)       # the last ones' checks
            cpu = 100 * (cpu_seconds_of(service.pid) - before) / (churn_seconds + limit + 1)
        latencies = sorted(seen[pid] - started[pid] - limit for pid in seen)
    finally:
        for child in children:
            child.kill()
            child.wait()
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        if KEEP:
            print(f"{mode}: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return {"mode": mode, "kind": kind,
            "said": said[-1].split("]: ", 1)[-1] if said else "",
            "attacks": attacks, "reported": len(latencies),
            "after_limit_seconds": [round(value, 3) for value in latencies],
            "median": round(statistics.median(latencies), 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
            "churn_execs_per_second": churn[0],
            "service_cpu_percent_of_one_core": None if cpu is None else round(cpu, 2)}


@contextlib.contextmanager
def population(size: int, uids: int):
    """run.py's population: SIZE sleeping processes over UIDS uids, the limits raised."""
    from host import Sysctls, free_uid_block, kill_uid_block
    from run import raise_limits, start_population, stop_population
    with Sysctls() as sysctls:
        raise_limits(sysctls, size, 0)
        base_uid = free_uid_block(uids)
        popen = start_population(size, uids, base_uid)
        try:
            yield
        finally:
            stop_population(popen)
            left = kill_uid_block(base_uid, uids)
            if left:
                print(f"{left} processes of the population's uids are left", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=2, help="PT_LIMIT")
    parser.add_argument("--interval", type=int, default=30, help="PT_INTERVAL (10 or more)")
    parser.add_argument("--attacks", type=int, default=6)
    parser.add_argument("--modes", default="live,polling")
    parser.add_argument("--churn", type=int, default=0, help="then EXECS programs a second "
                        "for --churn-seconds, and the service's CPU meanwhile")
    parser.add_argument("--churn-seconds", type=float, default=30)
    parser.add_argument("--kinds", default="start",
                        help=f"attacks, comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--population", type=int, default=0, help="PROCESSES sleeping "
                        "processes over --population-uids uids (run.py's) beside the service")
    parser.add_argument("--population-uids", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep each service's directory "
                        "(its log and events) and say where")
    args = parser.parse_args()
    global KEEP
    KEEP = args.keep
    if os.geteuid() != 0:
        raise SystemExit("root only: the proc connector and other uids need it")
    results = {"host": socket.gethostname(), "cpus": os.cpu_count(),
               "loadavg": open("/proc/loadavg").read().split()[:3],
               "pt_limit": args.limit, "pt_interval": args.interval, "modes": []}
    results["population"] = args.population
    with contextlib.ExitStack() as stack:
        if args.population:
            stack.enter_context(population(args.population, args.population_uids))
        for kind in args.kinds.split(","):
            for mode in args.modes.split(","):
                if mode == "polling" and not nonetlink.SUPPORTED:
                    print("polling: no seccomp filter for this machine, skipped")
                    continue
                result = measure(mode, args.limit, args.interval, args.attacks,
                                 (args.churn, args.churn_seconds), kind)
                results["modes"].append(result)
                since = "the listen()" if kind == "late-listener" else "PT_LIMIT"
                print(f"{kind:13} {mode:8} {result['reported']}/{result['attacks']} reported; "
                      f"after {since}: median {result['median']} s, max {result['max']} s "
                      f"({', '.join(map(str, result['after_limit_seconds']))}) "
                      f"[{result['said']}]", flush=True)
                if result["service_cpu_percent_of_one_core"] is not None:
                    print(f"{kind:13} {mode:8} at {args.churn} execs/s beside "
                          f"{args.population:,} processes: the service used "
                          f"{result['service_cpu_percent_of_one_core']}% of one core",
                          flush=True)
    out = os.path.join(HERE, "results", f"latency-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
