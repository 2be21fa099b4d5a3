"""What the BPF connect hook costs (ptfast/scan/connecthook.py, issue 21).

    sudo python3 benchmarks/connecthook.py                  # 7 rounds of 200,000 connects
    sudo python3 benchmarks/connecthook.py --rounds 3 --count 50000

a. connect() with and without the hook: benchmarks/connects.c (built here with cc) opens a
   socket, connect()s it and closes it COUNT times, as UDP to 198.18.0.9 (a UDP connect()
   sends nothing: the cost is the system calls and the hook's record) and as TCP to a listener
   on 127.0.0.1 (a real handshake; the hook skips loopback, so its short path; TCP_COUNT a round, within the listener's backlog, as
   nothing accepts them); each round measures both, the hook first in every other round
   (a later run finds the earlier one's TIME_WAIT sockets), so that drift falls on both. Reported: ns per iteration (median and range), and the
   ratio with/without per round (median and range).
b. a drain: the map filled with COUNT_DRAIN distinct records (each connect() to another
   port), then drained: ms per drain and per 1,000 records.
The machine's load is recorded, since these hosts are shared. Writes
benchmarks/results/connecthook-*.json. Root only (the connects run as nobody, uid 65534: the
hook skips root's); not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

sys.path.insert(0, HERE)

from ptfast.scan import connecthook  # noqa: E402
from record import environment, results_path, spread, write_results  # noqa: E402


TCP_COUNT = 3000         # below the listener's backlog (4096): nothing accepts them


#: the connects run as this uid (nobody): the programs skip root's connect()s (and
#: loopback's: the TCP case measures that short path; the UDP case the full record)
CONNECT_UID = 65534


def build(directory: str) -> str:
    binary = os.path.join(directory, "connects")
    subprocess.run(["cc", "-O2", "-o", binary, os.path.join(HERE, "connects.c")], check=True)
    os.chmod(directory, 0o755)
    return binary


def per_connect(binary: str, kind: str, count: int, port: int) -> float:
    out = subprocess.run([binary, kind, str(count), str(port)], check=True,
                         capture_output=True, text=True, user=CONNECT_UID,
                         group=CONNECT_UID, extra_groups=[]).stdout
    return float(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--count-drain", type=int, default=connecthook.MAX_ENTRIES)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("root only", file=sys.stderr)
        return 2
    results: dict = {"environment": environment(), "options": vars(args)}
    with tempfile.TemporaryDirectory() as directory:
        binary = build(directory)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(4096)
        port = server.getsockname()[1]
        for kind in ("udp", "tcp"):
            without, with_hook, ratios = [], [], []
            count = args.count if kind == "udp" else min(args.count, TCP_COUNT)

            def measure() -> float:
                nonlocal server
                if kind == "tcp":       # the handshakes land in the backlog: a fresh one
                    server.close()
                    server = socket.socket()
                    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    server.bind(("127.0.0.1", port))
                    server.listen(4096)
                return per_connect(binary, kind, count, port)
            for round_ in range(args.rounds):
                # ABBA: a later run finds more of the earlier one's TIME_WAIT sockets (TCP's
                # port search), so the hook goes first every other round
                hooked_first = round_ % 2 == 1
                if not hooked_first:
                    bare = measure()
                hook, why = connecthook.open_hook()
                if hook is None:
                    print(f"the hook does not run here: {why}", file=sys.stderr)
                    return 1
                try:
                    hooked = measure()
                    hook.drain()
                finally:
                    hook.close()
                if hooked_first:
                    bare = measure()
                without.append(bare)
                with_hook.append(hooked)
                ratios.append(hooked / bare)
            results[kind] = {"ns_without": spread(without), "ns_with": spread(with_hook),
                             "ratio": spread(ratios)}
            print(f"a. {kind} connect()+close: {statistics.median(without):.0f} ns without the "
                  f"hook, {statistics.median(with_hook):.0f} ns with it; ratio median "
                  f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-"
                  f"{max(ratios):.3f}, {args.rounds} rounds of {count})")
        server.close()
        drains = []
        hook, _why = connecthook.open_hook()
        assert hook is not None
        try:
            for _ in range(args.rounds):
                subprocess.run([binary, "udp", str(args.count_drain), "0", "spread"],
                               check=True, capture_output=True, user=CONNECT_UID,
                               group=CONNECT_UID, extra_groups=[])
                started = time.perf_counter()
                records = hook.drain()
                drains.append(((time.perf_counter() - started) * 1000, len(records)))
        finally:
            hook.close()
        times = [ms for ms, _n in drains]
        records = statistics.median(n for _ms, n in drains)
        results["drain"] = {"ms": spread(times), "records": records}
        print(f"b. a drain of {records:.0f} records: {statistics.median(times):.1f} ms median "
              f"({min(times):.1f}-{max(times):.1f}), "
              f"{statistics.median(times) / records * 1000:.2f} ms per 1,000")
    results["load_after"] = os.getloadavg()
    print(f"load average {results['environment']['load_average_at_start'][0]:.1f} -> "
          f"{results['load_after'][0]:.1f}")
    path = results_path("connecthook", results)
    write_results(path, results)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
