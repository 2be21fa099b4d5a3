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
import subprocess
import sys
import tempfile
import textwrap

CHILD_PRELUDE = textwrap.dedent("""
    import ctypes, json, os, socket, sys
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
    KEEP = []
""")

CHILD_DROP = textwrap.dedent("""
    if UID is not None:
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
                 env: dict | None = None, cleanup=None) -> Child:
    """A Python child running ``setup`` (which may fill ``info``), as ``uid`` once set up."""
    code = CHILD_PRELUDE
    if netns:
        code += "assert libc.unshare(CLONE_NEWNET) == 0, ctypes.get_errno()\n"
    code += textwrap.dedent(setup) + "\n"
    code += f"UID = {uid!r}\nNON_DUMPABLE = {non_dumpable!r}\n" + CHILD_DROP
    popen = subprocess.Popen([executable or sys.executable, "-c", code, *argv],
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
    env = dict(os.environ, PYTHONHOME=sys.prefix)
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
