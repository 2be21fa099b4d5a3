"""Benchmark runner: ptfast against its yardsticks, on one real population, interleaved.

    sudo python3 benchmarks/run.py                        # 5,000 / 10,000 / 20,000 processes
    sudo python3 benchmarks/run.py --sizes 2000 --rounds 3

For each size it starts the population (benchmarks/population.c: sleeping processes over many
uids, each with open files and a pipe, 10% with an established loopback TCP connection, 1%
listening), waits until every process is older than PT_LIMIT=1, then runs in turn, ROUNDS times:

  floor      benchmarks/floor.c, a minimal C scanner doing the same system calls
  ptfast     `ptfast scan --json` with the compiled core and the built-in ignore list
  twin       the same with PTFAST_NO_EXTENSIONS=1 (the pure-Python core)
  psutil     benchmarks/psutil_scan.py, the job written straightforwardly with psutil
  ss         `ss -tanp`
  warm       the floor's job inside `ptfast run` (warm caches, no interpreter start, nothing
             remembered as reported), timed in the process (benchmarks/warm_pass.py)
  pass       a steady pass of `ptfast run` (every finding already reported), timed likewise

and prints median wall times, ratios (these machines are shared and noisy: compare ratios taken
in one run, not absolute times) and ptfast's peak resident memory. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build")
PT_LIMIT = 1


def build(name: str) -> str:
    os.makedirs(BUILD, exist_ok=True)
    source = os.path.join(HERE, f"{name}.c")
    binary = os.path.join(BUILD, name)
    if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(source):
        subprocess.run(["cc", "-O2", "-Wall", "-o", binary, source], check=True)
    return binary


def start_population(size: int, uids: int) -> subprocess.Popen:
    popen = subprocess.Popen([build("population"), str(size), str(uids), "60000"],
                             stdout=subprocess.PIPE, text=True)
    line = popen.stdout.readline()
    if not line.startswith("ready"):
        popen.kill()
        raise SystemExit(f"population of {size} did not start")
    time.sleep(PT_LIMIT + 0.5)          # every process must be old enough to be inspected
    return popen


def stop_population(popen: subprocess.Popen) -> None:
    try:
        os.killpg(popen.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    popen.wait()


def contenders() -> dict:
    scan = [sys.executable, "-m", "ptfast", "scan", "--json", "--config", os.devnull,
            "--override", os.devnull, "--set", f"PT_LIMIT={PT_LIMIT}"]
    plain = {k: v for k, v in os.environ.items() if k != "PTFAST_NO_EXTENSIONS"}
    return {
        "floor": ([build("floor"), str(PT_LIMIT)], plain),
        "ptfast": (scan, plain),
        "twin": (scan, dict(plain, PTFAST_NO_EXTENSIONS="1")),
        "psutil": ([sys.executable, os.path.join(HERE, "psutil_scan.py"), str(PT_LIMIT)], plain),
        "ss": (["ss", "-tanp"], plain),
        # timed inside the process (they print their seconds): the daemon's cost per pass
        "warm": ([sys.executable, os.path.join(HERE, "warm_pass.py"), "warm", str(PT_LIMIT)],
                 plain),
        "pass": ([sys.executable, os.path.join(HERE, "warm_pass.py"), "pass", str(PT_LIMIT)],
                 plain),
    }


def measure(command: list, env: dict) -> tuple[float, float, bytes]:
    """Wall seconds, peak RSS in MB, and stdout of one run."""
    started = time.perf_counter()
    popen = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    output = popen.stdout.read()
    _, status, usage = os.wait4(popen.pid, 0)
    elapsed = time.perf_counter() - started
    popen.returncode = os.waitstatus_to_exitcode(status)
    if popen.returncode not in (0, 1):
        raise SystemExit(f"{command[:3]} failed with status {popen.returncode}")
    return elapsed, usage.ru_maxrss / 1024, output


def run_size(size: int, rounds: int, uids: int) -> dict:
    population = start_population(size, uids)
    try:
        commands = contenders()
        times = {name: [] for name in commands}
        peaks = {name: [] for name in commands}
        outputs = {}
        for _ in range(rounds):
            for name, (command, env) in commands.items():
                elapsed, peak, output = measure(command, env)
                if name in ("warm", "pass"):
                    elapsed = float(output)
                times[name].append(elapsed)
                peaks[name].append(peak)
                outputs[name] = output
    finally:
        stop_population(population)
    # the floor only finds socket holders; ptfast's other checks (PT_USERPROC and the rest,
    # on by default as in lfd) are run and timed, but not counted here
    findings = sum(1 for line in outputs["ptfast"].splitlines()
                   if json.loads(line)["check"] == "suspicious")
    return {"size": size, "time": {k: statistics.median(v) for k, v in times.items()},
            "peak": {k: max(v) for k, v in peaks.items()}, "findings": findings,
            "floor_says": outputs["floor"].decode().strip()}


def report(results: list) -> str:
    lines = []
    for result in results:
        t = result["time"]
        lines.append(f"== {result['size']} processes: ptfast reported {result['findings']}; "
                     f"floor: {result['floor_says']}")
        lines.append(f"   median ms   floor {t['floor'] * 1000:7.1f}   ptfast "
                     f"{t['ptfast'] * 1000:7.1f}   twin {t['twin'] * 1000:7.1f}   psutil "
                     f"{t['psutil'] * 1000:7.1f}   ss {t['ss'] * 1000:7.1f}")
        lines.append(f"   ptfast / floor     {t['ptfast'] / t['floor']:6.2f}x   (goal <= 1.25)")
        lines.append(f"   psutil / ptfast    {t['psutil'] / t['ptfast']:6.2f}x   (goal >= 4)")
        lines.append(f"   twin / psutil      {t['twin'] / t['psutil']:6.2f}x   (goal <= 1)")
        lines.append(f"   ss -tanp / ptfast  {t['ss'] / t['ptfast']:6.2f}x")
        lines.append(f"   warm / floor       {t['warm'] / t['floor']:6.2f}x   (the floor's job "
                     f"inside `ptfast run`, no interpreter start: {t['warm'] * 1000:.1f} ms)")
        lines.append(f"   pass / floor       {t['pass'] / t['floor']:6.2f}x   (a steady pass of "
                     f"`ptfast run`, findings already reported: {t['pass'] * 1000:.1f} ms; "
                     f"daemon RSS {result['peak']['pass']:.1f} MB)")
        lines.append(f"   ptfast peak RSS    {result['peak']['ptfast']:6.1f} MB (goal <= 40); "
                     f"twin {result['peak']['twin']:.1f} MB, psutil "
                     f"{result['peak']['psutil']:.1f} MB")
    if len(results) > 1:
        lines.append("== scaling, ms per 1,000 processes")
        for name in ("floor", "ptfast", "warm", "pass", "twin", "psutil"):
            per = [r["time"][name] * 1e6 / r["size"] for r in results]
            lines.append(f"   {name:<7}" + "".join(f"{r['size']:>7}: {p:6.2f}"
                                                   for r, p in zip(results, per)))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,10000,20000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uids", type=int, default=300, help="distinct uids in the population")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the population spreads over many uids")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        results.append(run_size(size, args.rounds, args.uids))
        print(report(results[-1:]), flush=True)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
