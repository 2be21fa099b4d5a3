"""ptfast's scanner cores reading the host's socket tables, through sock_diag and from /proc/net.

    sudo python3 benchmarks/tables.py [ROUNDS]        # default 5

A scan of no process (``pids=[]``) reads only the socket tables of the scanner's own network
namespace: on the live /proc its tcp and udp tables through sock_diag netlink, under any other
procfs root from the files. ``/proc/.`` is the same procfs under another name, so it is read the
file way: both ways see the same host. Each core reads it both ways in turn, ROUNDS times.
Prints one JSON object: seconds per read (sorted) by core and way, the sockets each way found,
and how many tables came through netlink. benchmarks/run.py runs it once per round.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptfast.scan import _procscan_py  # noqa: E402

WAYS = {"sock_diag": "/proc", "proc_net": "/proc/."}


def cores() -> dict:
    found = {"twin": _procscan_py}
    try:
        from ptfast.scan import _procscan
        found = {"compiled": _procscan, **found}
    except ImportError:
        pass
    return found


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    result: dict = {}
    for core_name, core in cores().items():
        for way, root in WAYS.items():
            result[f"{core_name}_{way}"] = {"seconds": []}
    for _ in range(rounds):
        for core_name, core in cores().items():
            for way, root in WAYS.items():
                entry = result[f"{core_name}_{way}"]
                started = time.perf_counter()
                _, table, stats = core.scan(root, False, [])
                entry["seconds"].append(time.perf_counter() - started)
                entry["sockets"] = len(table)
                entry["through_netlink"] = stats["sock_diag"]
    for entry in result.values():
        entry["seconds"].sort()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
