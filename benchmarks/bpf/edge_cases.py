"""The iterators against the /proc scan on three processes the benchmark population has none of.

    sudo python3 benchmarks/bpf/edge_cases.py

A listener running a deleted copy of python, a listener in a network namespace of its own, and
a process whose second thread holds a listener in an fd table of its own (unshare(CLONE_FILES)).
Prints, for each, whether both walks agree on exe, exe_deleted and the socket inodes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import task_walk  # noqa: E402

from ptfast.scan import procfs  # noqa: E402

LISTEN = ("import socket, time\n"
          "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); time.sleep(60)\n")
CLONE_FILES = 0x400
THREAD_LISTENS = ("import ctypes, socket, threading, time\n"
                  "def own_table():\n"
                  f"    ctypes.CDLL(None).unshare({CLONE_FILES})\n"
                  "    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); time.sleep(60)\n"
                  "threading.Thread(target=own_table, daemon=True).start(); time.sleep(60)\n")


def main() -> int:
    started = []
    with tempfile.TemporaryDirectory() as scratch:
        copy = os.path.join(scratch, "python-copy")
        shutil.copy(sys.executable, copy)
        try:
            started.append(("deleted exe", subprocess.Popen([copy, "-c", LISTEN])))
            started.append(("own netns", subprocess.Popen(["unshare", "--net", sys.executable,
                                                           "-c", LISTEN])))
            started.append(("own fd table", subprocess.Popen([sys.executable, "-c",
                                                              THREAD_LISTENS])))
            time.sleep(1.5)                   # each has its listener by then
            os.unlink(copy)
            scanned = {proc.pid: proc for proc in procfs.scan("/proc", True).processes}
            with task_walk.Iterators(programs=("dump_processes", "dump_sockets")) as iterators:
                walked = task_walk.walk(iterators)
            agree = True
            for label, popen in started:
                theirs, ours = scanned.get(popen.pid), walked.get(popen.pid)
                if theirs is None or ours is None:
                    print(f"{label}: missing (scan {theirs is not None}, "
                          f"iterator {ours is not None})")
                    agree = False
                    continue
                same = ((theirs.exe, theirs.exe_deleted) == (ours.exe, ours.exe_deleted)
                        and {sock.inode for sock in theirs.sockets or ()}
                        == task_walk.network_sockets(ours) != set())
                agree = agree and same
                print(f"{label}: {'same' if same else 'DIFFERENT'} (exe_deleted "
                      f"{ours.exe_deleted}, sockets {sorted(task_walk.network_sockets(ours))})")
            return 0 if agree else 1
        finally:
            for _, popen in started:
                popen.kill()
                popen.wait()


if __name__ == "__main__":
    sys.exit(main())
