"""Prepared procfs trees: files written the way the kernel writes them, for what cannot be made
for real (``--proc-root``)."""

import os

from ptfast.scan._corespec import (FIRST_AFTER_COMM, STAT_FLAGS, STAT_PGRP, STAT_PPID, STAT_RSS,
                                   STAT_SESSION, STAT_STARTTIME, STAT_STATE, STAT_VSIZE)

STAT_TPGID = 8            # proc(5); ptfast does not read it

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode\n")


def tcp_line(local, remote, state, inode):
    return (f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000  1000"
            f"        0 {inode} 1 0000000000000000 100 0 0 10 0\n")


def write(path, data, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as handle:
        handle.write(data)


STAT_LAST_FIELD = 52      # proc(5) of Linux 6.x: fields 1 to 52


def stat_line(pid, comm, ppid, start, flags=0, vsize=8192000, rss_pages=100):
    """A /proc/PID/stat line; fields ptfast does not read are 0 (tty_nr... and tpgid -1)."""
    named = {STAT_STATE: "S", STAT_PPID: ppid, STAT_PGRP: pid, STAT_SESSION: pid, STAT_TPGID: -1,
             STAT_FLAGS: flags, STAT_STARTTIME: start, STAT_VSIZE: vsize, STAT_RSS: rss_pages}
    fields = [named.get(number, 0) for number in range(FIRST_AFTER_COMM, STAT_LAST_FIELD + 1)]
    return f"{pid} ({comm}) " + " ".join(str(f) for f in fields) + "\n"
