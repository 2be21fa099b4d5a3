"""Process and socket records built in memory, for the policy (which does no I/O)."""

from ptfast._corespec import PROCESS_FIELDS, SOCKET_FIELDS
from ptfast._procscan_py import Process, Socket

USERS = {0: "root", 65534: "nobody", 1001: "alice", 1002: "bob", 48: "apache"}


def sock(local_port=4444, state="LISTEN", remote_port=0, proto="tcp", local_ip="0.0.0.0"):
    s = Socket()
    s.inode, s.proto, s.local_ip, s.local_port = local_port * 7 + remote_port, proto, local_ip, \
        local_port
    s.remote_ip = "0.0.0.0" if not remote_port else "203.0.113.9"
    s.remote_port, s.state, s.netns = remote_port, state, 1
    return s


def proc(pid, uid=1001, exe="/tmp/.x/bot", age=100.0, sockets=(), deleted=False, ppid=1,
         pgrp=None, cmdline=None, start_time=None):
    p = Process()
    p.pid, p.ppid, p.pgrp, p.session, p.uid = pid, ppid, pgrp or pid, pid, uid
    p.start_time = start_time if start_time is not None else pid * 10
    p.age, p.vm_size_bytes, p.vm_rss_bytes = age, 1 << 20, 1 << 19
    p.exe, p.exe_deleted = exe, deleted
    p.cmdline = cmdline if cmdline is not None else exe
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
