"""Yardstick: the same job written straightforwardly with psutil.

Every non-root process older than LIMIT seconds that holds an inet socket is reported, with its
exe, command line, sockets and open files. usage: python psutil_scan.py [LIMIT]
"""

import sys
import time
from collections import defaultdict

import psutil


def main() -> int:
    limit = float(sys.argv[1]) if len(sys.argv) > 1 else 60
    now = time.time()
    sockets_by_pid = defaultdict(list)
    for conn in psutil.net_connections("inet"):
        if conn.pid is not None:
            sockets_by_pid[conn.pid].append(conn)
    found = 0
    for proc in psutil.process_iter():
        try:
            info = proc.as_dict(["pid", "ppid", "uids", "exe", "cmdline", "create_time",
                                 "memory_info"])
        except (psutil.Error, OSError):     # OSError: ENAMETOOLONG for an exe path longer
            continue                        # than PATH_MAX, which psutil does not wrap
        if not info["uids"] or info["uids"].real == 0 or not info["exe"]:
            continue
        if now - info["create_time"] <= limit:
            continue
        try:
            proc.open_files()
        except psutil.Error:
            continue
        if sockets_by_pid.get(info["pid"]):
            found += 1
    print(f"{found} processes hold inet sockets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
