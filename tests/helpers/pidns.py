"""A private PID namespace whose PIDs a test can reuse on purpose.

Its first process (PID 1 there) has its own /proc, which the test scans through
``/proc/<its host pid>/root/proc``. On command it starts sleeping children, and makes a PID
reused: it kills and reaps the child holding it, sets ``ns_last_pid`` so that the next fork gets
that number, and forks a newcomer that opens a marker file. When the namespace's first process
exits (the test ends, or pytest dies), the kernel kills everything in it: nothing is left over.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

INIT = textwrap.dedent("""
    import json, os, signal, sys, time
    children = set()

    def fork(marker=None):
        pid = os.fork()
        if pid == 0:
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            if marker:
                keep = open(marker, "w")
            while True:
                signal.pause()
        children.add(pid)
        return pid

    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "spawn":
            reply = {"pid": fork()}
        elif command[0] == "reuse":
            pid, marker = int(command[1]), command[2]
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            children.discard(pid)
            with open("/proc/sys/kernel/ns_last_pid", "w") as handle:
                handle.write(str(pid - 1))
            reply = {"pid": fork(marker)}
            while not os.path.exists(f"/proc/{reply['pid']}/fd/3"):   # the marker is open
                time.sleep(0.01)
        print(json.dumps(reply), flush=True)
""")


class PidNamespace:
    def __enter__(self) -> "PidNamespace":
        self.init = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", INIT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.init.stdout.readline()) == {"ready": 1}
        # unshare forks: the namespace's PID 1 is unshare's child
        with open(f"/proc/{self.init.pid}/task/{self.init.pid}/children") as handle:
            self.host_pid = int(handle.read().split()[0])
        self.proc_root = f"/proc/{self.host_pid}/root/proc"
        return self

    def _ask(self, *command) -> dict:
        self.init.stdin.write(" ".join(map(str, command)) + "\n")
        self.init.stdin.flush()
        return json.loads(self.init.stdout.readline())

    def spawn(self) -> int:
        """A sleeping child; its PID in the namespace."""
        return self._ask("spawn")["pid"]

    def reuse(self, pid: int, marker: str) -> int:
        """Replace the child holding ``pid`` by a newcomer with the same PID that holds
        ``marker`` open; returns the newcomer's PID (== pid)."""
        return self._ask("reuse", pid, marker)["pid"]

    def start_time(self, pid: int) -> int:
        from ptfast.scan._corespec import STAT_STARTTIME, parse_stat, stat_field
        with open(f"{self.proc_root}/{pid}/stat", "rb") as handle:
            return int(stat_field(parse_stat(handle.read()), STAT_STARTTIME))

    def __exit__(self, *exc) -> None:
        self.init.stdin.close()          # PID 1 there ends, and with it every child
        self.init.wait(timeout=10)
        self.init.stdout.close()
