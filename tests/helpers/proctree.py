"""Prepared procfs trees: files written the way the kernel writes them, for what cannot be made
for real (``--proc-root``)."""

import os

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode\n")


def tcp_line(local, remote, state, inode):
    return (f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000  1000"
            f"        0 {inode} 1 0000000000000000 100 0 0 10 0\n")


def write(path, data, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as handle:
        handle.write(data)


def stat_line(pid, comm, ppid, start, flags=0):
    fields = ["S", ppid, pid, pid, 0, -1, flags] + [0] * 12 + [start, 8192000, 100] + [0] * 20
    return f"{pid} ({comm}) " + " ".join(str(f) for f in fields) + "\n"
