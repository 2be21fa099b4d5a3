"""Process and socket records built in memory, for the policy (which does no I/O), and the
host's files as the policy would stat() them (``HOST_FILES``; a policy gets
``file_identity=host_file``)."""

import itertools

from ptfast.scan._corespec import PROCESS_FIELDS, SOCKET_FIELDS
from ptfast.scan._procscan_py import Process, Socket
from ptfast.scan.procfs import FileIdentity

USERS = {0: "root", 65534: "nobody", 1001: "alice", 1002: "bob", 48: "apache"}

#: path -> what stat() says of it in ptfast's mount namespace. System files are root's, not
#: writable by others; a path missing here does not exist on the host.
HOST_FILES: dict = {}
_inodes = itertools.count(1000)


def host_file(path: str, uid: int = 0, mode: int = 0o100755) -> FileIdentity:
    """Make ``path`` exist on the host (once); returns its identity."""
    if path not in HOST_FILES:
        HOST_FILES[path] = FileIdentity(1, next(_inodes), uid, mode)
    return HOST_FILES[path]


for _directory in ("/usr/lib/dovecot", "/usr/sbin", "/usr/bin", "/tmp"):
    host_file(_directory, mode=0o40755 if _directory != "/tmp" else 0o41777)


def sock(local_port=4444, state="LISTEN", remote_port=0, proto="tcp", local_ip="0.0.0.0",
         uid=None):
    """A socket; ``uid`` (who created it) defaults to the uid of the process given it."""
    s = Socket()
    s.inode, s.proto, s.local_ip, s.local_port = local_port * 7 + remote_port, proto, local_ip, \
        local_port
    s.remote_ip = "0.0.0.0" if not remote_port else "203.0.113.9"
    s.remote_port, s.state, s.netns, s.uid = remote_port, state, 1, uid
    return s


def proc(pid, uid=1001, exe="/tmp/.x/bot", age=100.0, sockets=(), deleted=False, ppid=1,
         pgrp=None, cmdline=None, start_time=None, exe_file=None, fork_no_exec=False):
    """A process; it runs ``exe_file`` (an identity), by default the host file its exe path
    names when the path is a system one (/usr, /bin, /sbin), else a file of its own user's.
    ``fork_no_exec``: forked by its parent and not exec'd since (a pre-fork worker); by
    default it exec'd its program."""
    p = Process()
    p.pid, p.ppid, p.pgrp, p.session, p.uid = pid, ppid, pgrp or pid, pid, uid
    p.start_time = start_time if start_time is not None else pid * 10
    p.age, p.vm_size_bytes, p.vm_rss_bytes = age, 1 << 20, 1 << 19
    p.exe, p.exe_deleted = exe, deleted
    if exe_file is None:
        system = exe.startswith(("/usr/", "/bin/", "/sbin/")) and not deleted
        exe_file = (host_file(exe) if system
                    else FileIdentity(1, next(_inodes), uid, 0o100755))
    p.exe_dev, p.exe_ino, p.exe_uid, p.exe_mode = exe_file
    p.cmdline = cmdline if cmdline is not None else exe
    p.threads, p.incomplete, p.fork_no_exec = 1, "", fork_no_exec
    for s in sockets:
        if s.uid is None:
            s.uid = uid
    p.sockets, p.open_files = tuple(sockets), ()
    return p


def socket_as_dict(sock) -> dict:
    return {name: getattr(sock, name) for name in SOCKET_FIELDS}


def process_as_dict(proc) -> dict:
    """Plain dict of a record of either core (sockets as dicts, tuples as lists)."""
    result = {}
    for name in PROCESS_FIELDS:
        value = getattr(proc, name)
        if name == "sockets" and value is not None:
            value = [socket_as_dict(sock) for sock in value]
        elif name == "open_files" and value is not None:
            value = list(value)
        result[name] = value
    return result
