"""Real processes for the tests: other uids, sockets, namespaces, deleted and hostile executables.

A child starts as root (the interpreter lives under /root, which other uids cannot enter), runs its
setup code, drops to the requested uid, prints one JSON line ("ready") and then blocks reading its
stdin: when the test (or pytest) goes away, the child gets EOF and exits, so nothing is left over.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from ptfast.scan._corespec import STAT_STARTTIME, parse_stat, stat_field

CHILD_PRELUDE = textwrap.dedent("""
    # modules setups use, imported while still root (the interpreter lives under /root); with
    # -S no site runs, so the codecs Python 3.9 looks up lazily are imported here too
    import ctypes, encodings.ascii, encodings.idna, encodings.latin_1, encodings.utf_8
    import json, os, resource, select, signal, socket, struct, sys
    import threading, time
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_DUMPABLE = 4
    CLONE_NEWNET = 0x40000000
    info = {}
    def listen(family, host, kind=socket.SOCK_STREAM):
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        if kind == socket.SOCK_STREAM:
            s.listen(8)
        KEEP.append(s)
        return s
    def connect_pair(family, host):
        server = listen(family, host)
        client = socket.socket(family, socket.SOCK_STREAM)
        client.connect(server.getsockname()[:2])
        accepted, _ = server.accept()
        KEEP.extend([client, accepted])
        return server, client, accepted
    def call_out(host, port):
        # a UDP connect() and close: a call the connect hook records, and no packet sent
        call = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_DGRAM)
        try:
            call.connect((host, port))
        except OSError:
            pass
        call.close()
    KEEP = []
""")

# The setup runs with the test uid as effective uid, so that what it creates (sockets above
# all: /proc/net/* shows their creator) is that user's, as it would be for a real customer.
# Only ``root_setup`` runs as root.
CHILD_BECOME = textwrap.dedent("""
    if UID is not None:
        os.setegid(UID)
        os.seteuid(UID)
""")

CHILD_DROP = textwrap.dedent("""
    if UID is not None:
        os.seteuid(0)
        os.setgroups([])
        os.setresgid(UID, UID, UID)
        os.setresuid(UID, UID, UID)
        # changing uid makes a process non-dumpable; make it ordinary again unless asked not to
        libc.prctl(PR_SET_DUMPABLE, 0 if NON_DUMPABLE else 1, 0, 0, 0)
    elif NON_DUMPABLE:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    info["pid"] = os.getpid()
    sys.stdout.write(json.dumps(info) + "\\n")
    sys.stdout.flush()
    sys.stdin.read()
""")


class Child:
    def __init__(self, popen: subprocess.Popen, info: dict, cleanup=None) -> None:
        self.popen = popen
        self.info = info
        self.pid = popen.pid
        self._cleanup = cleanup

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream:
                stream.close()
        if self._cleanup:
            self._cleanup()


def _wait_ready(popen: subprocess.Popen, timeout: float = 20.0) -> dict:
    ready, _, _ = select.select([popen.stdout], [], [], timeout)
    if not ready:
        popen.kill()
        raise RuntimeError("child did not become ready")
    line = popen.stdout.readline()
    if not line:
        popen.wait()
        raise RuntimeError(f"child exited early: {popen.stderr.read().decode(errors='replace')}")
    return json.loads(line)


def start_python(setup: str = "", uid: int | None = None, non_dumpable: bool = False,
                 netns: bool = False, argv=(), executable: str | None = None,
                 env: dict | None = None, cleanup=None, root_setup: str = "") -> Child:
    """A Python child running ``root_setup`` as root, then ``setup`` (which may fill ``info``)
    as ``uid`` (its effective uid), then dropping to ``uid`` for good."""
    code = CHILD_PRELUDE + f"UID = {uid!r}\nNON_DUMPABLE = {non_dumpable!r}\n"
    if netns:
        code += "assert libc.unshare(CLONE_NEWNET) == 0, ctypes.get_errno()\n"
    code += textwrap.dedent(root_setup) + "\n" + CHILD_BECOME
    code += textwrap.dedent(setup) + "\n" + CHILD_DROP
    # -S: the child needs the standard library alone, and site's work (the editable install's
    # import hook above all) is half of an interpreter's start, paid by hundreds of children
    popen = subprocess.Popen([executable or sys.executable, "-S", "-c", code, *argv],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    try:
        info = _wait_ready(popen)
    except Exception:
        if cleanup:
            cleanup()
        raise
    return Child(popen, info, cleanup)


def public_tempdir() -> str:
    """A directory other uids can traverse (pytest's tmp_path is private to root)."""
    path = tempfile.mkdtemp(prefix="ptfast-test-", dir="/tmp")
    os.chmod(path, 0o755)
    return path


def start_copied_python(name: str, setup: str = "", uid: int | None = None,
                        delete: bool = False, subdir: str | None = None) -> Child:
    """A Python child whose executable is a copy of the interpreter at ``DIR[/subdir]/name``;
    with ``delete`` the copy is removed once the child runs (a deleted executable)."""
    base = public_tempdir()
    directory = os.path.join(base, subdir) if subdir else base
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    path = os.path.join(directory, name)
    shutil.copy2(os.path.realpath(sys.executable), path)
    # a copied interpreter finds its standard library through PYTHONHOME; in a venv that is
    # the base installation (the venv holds only site-packages)
    env = dict(os.environ, PYTHONHOME=sys.base_prefix)
    try:
        child = start_python(setup, uid=uid, executable=path, env=env,
                             cleanup=lambda: shutil.rmtree(base, ignore_errors=True))
    except Exception:
        shutil.rmtree(base, ignore_errors=True)
        raise
    child.info["exe"] = path
    if delete:
        os.unlink(path)
    return child


def _status_fields(pid: str) -> dict | None:
    """``/proc/PID/status`` as bytes fields (a process name may be any bytes, not UTF-8)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            return dict(line.split(b":", 1) for line in handle if b":" in line)
    except OSError:
        return None


def pids_of_uid(uid: int) -> list:
    """Live (not zombie) processes whose real uid is ``uid``."""
    return pids_of_uids(uid, uid + 1)


def pids_of_uids(low: int, high: int) -> list:
    """Live (not zombie) processes whose real uid is in ``[low, high)``."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _status_fields(name)
        if (fields and low <= int(fields[b"Uid"].split()[0]) < high
                and not fields[b"State"].strip().startswith(b"Z")):
            pids.append(int(name))
    return pids


def kill_uid(uid: int, rounds: int = 100) -> None:
    """SIGKILL every process of ``uid`` (a test's own, never-shared uid) until none is left; never
    raises, so it is safe in a ``finally``."""
    kill_uids(uid, uid + 1, rounds)


def kill_uids(low: int, high: int, rounds: int = 100) -> list:
    """SIGKILL every process whose real uid is in ``[low, high)`` until none is left (a fork
    bomb refills); returns the PIDs found at first. Never raises."""
    found = []
    for _ in range(rounds):
        try:
            pids = pids_of_uids(low, high)
        except Exception:       # never raise from a cleanup, whatever /proc holds
            pids = []
        if not pids:
            break
        found = found or pids
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def process_age(pid: int) -> float:
    """Seconds since ``pid`` started (0.0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = parse_stat(handle.read())
        with open("/proc/uptime", "rb") as handle:
            uptime = float(handle.read().split()[0])
    except OSError:
        return 0.0
    return uptime - int(stat_field(fields, STAT_STARTTIME)) / os.sysconf("SC_CLK_TCK")


# Every module ptfast may import lazily, for runs as another uid: the interpreter (and so the
# standard library and site-packages) may live where that uid cannot read, e.g. under /root.
AS_USER_IMPORTS = textwrap.dedent("""
    import argparse, os, shutil, socket, statistics, sys, traceback
    import orjson, regex
    from ptfast.scan import _procscan_py, _sockprobe, connecthook
    from ptfast.act import looking
    from ptfast.commands import baseline, cli, tune
    from ptfast.decide import checks, digest, findings, judgement, policy, report
    from ptfast.decide.checks import (base, forkbomb, load, per_user, resource, shown, sockets,
                                      sshd_hung, suspicious, user_processes, web_server)
    from ptfast.channels import status
    from ptfast.foundation import users
""")


def ptfast_as(uid: int, *args: str) -> subprocess.CompletedProcess:
    """``ptfast ARGS`` run as ``uid``, everything imported while still root."""
    code = AS_USER_IMPORTS + textwrap.dedent(f"""
        os.setgroups([]); os.setresgid({uid}, {uid}, {uid}); os.setresuid({uid}, {uid}, {uid})
        os.chdir("/")
        sys.exit(cli.main({list(args)!r}))
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
