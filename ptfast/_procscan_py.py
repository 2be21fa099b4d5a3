"""Pure-Python twin of the compiled scanner core (src_pyx/_procscan.pyx).

This is the reference: same API, same results. ``ptfast.procfs`` picks the compiled core when it
is importable and falls back to this module otherwise (or when PTFAST_NO_EXTENSIONS=1).

Contract of ``scan(proc_root, want_fds)``:

* Reads the inet socket tables (tcp, udp, tcp6, udp6, raw, raw6) of the scanner's own network
  namespace first, then walks every ``PROC_ROOT/PID``.
* Every file of one process is opened relative to a directory fd of ``/proc/PID``: if the process
  exits and its PID is reused mid-read, the reads fail (the process is counted as vanished) and
  two processes are never mixed up.
* Kernel threads (PF_KTHREAD, or no ``exe`` link) are skipped; so are vanished processes and
  processes whose ``exe`` cannot be read (counted in ``stats["denied"]``).
* ``uid`` is the last field of the ``Uid:`` line of ``status`` (the filesystem uid, as lfd reads
  it), never the owner of ``/proc/PID`` (root for a non-dumpable process).
* ``exe_deleted`` is decided from the file itself: the kernel's `` (deleted)`` suffix is only
  trusted when the inode that the ``exe`` link opens has no links left; then the suffix is
  removed from ``exe``.
* ``want_fds`` is True (inspect all), False (none) or a callable taking the Process and returning
  a bool. For inspected processes ``sockets`` lists the inet sockets among their fds (looking
  into the process's own network namespace when an inode is in no table read so far) and
  ``open_files`` every other fd target that is not a pipe; otherwise both stay None.

Returns ``(processes, socket_table, stats)``: a list of Process, a dict inode -> Socket, and
counters ``processes``, ``kernel_threads``, ``vanished``, ``denied``, ``namespaces``.
"""

from __future__ import annotations

import errno
import os
import socket as _socket
import struct

TABLES = ("tcp", "udp", "tcp6", "udp6", "raw", "raw6")
TCP_STATES = (
    "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
)
PF_KTHREAD = 0x00200000
DELETED_SUFFIX = " (deleted)"
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DENIED = (errno.EACCES, errno.EPERM)
_IPV4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


class Socket:
    """One inet socket from /proc/net/{tcp,udp,raw}[6] of some network namespace."""

    __slots__ = ("inode", "proto", "local_ip", "local_port", "remote_ip", "remote_port",
                 "state", "netns")

    def __repr__(self) -> str:
        return (f"Socket({self.proto} {self.local_ip}:{self.local_port} -> "
                f"{self.remote_ip}:{self.remote_port} {self.state} inode={self.inode})")


class Process:
    """Facts about one process; ``sockets``/``open_files`` are None unless fds were inspected."""

    __slots__ = ("pid", "ppid", "pgrp", "session", "uid", "start_time", "age",
                 "vm_size_bytes", "vm_rss_bytes", "exe", "exe_deleted", "cmdline",
                 "sockets", "open_files")

    def __repr__(self) -> str:
        return f"Process(pid={self.pid} uid={self.uid} exe={self.exe!r})"


def _read(dir_fd: int, name: str, until_eof: bool = False) -> bytes:
    """A whole procfs file. Per-process files give everything that fits in one read, so a short
    read ends them; multi-record files such as net/tcp give about a page per read and need
    ``until_eof``."""
    fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            chunks.append(chunk)
            if not chunk or (len(chunk) < 65536 and not until_eof):
                return b"".join(chunks)
    finally:
        os.close(fd)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _parse_endpoint(text: str, v6: bool) -> tuple[str, int]:
    hex_addr, hex_port = text.split(":")
    # The kernel prints each 32-bit word in host byte order.
    raw = b"".join(struct.pack("=I", int(hex_addr[i:i + 8], 16))
                   for i in range(0, len(hex_addr), 8))
    if not v6:
        ip = _socket.inet_ntop(_socket.AF_INET, raw)
    elif raw[:12] == _IPV4_MAPPED_PREFIX:
        ip = _socket.inet_ntop(_socket.AF_INET, raw[12:])
    else:
        ip = _socket.inet_ntop(_socket.AF_INET6, raw)
    return ip, int(hex_port, 16)


def _parse_table(data: bytes, proto: str, netns: int, table: dict) -> None:
    v6 = proto.endswith("6")
    is_tcp = proto.startswith("tcp")
    for line in data.decode("ascii", "replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        inode = int(fields[9])
        if inode == 0 or inode in table:
            continue
        try:
            local_ip, local_port = _parse_endpoint(fields[1], v6)
            remote_ip, remote_port = _parse_endpoint(fields[2], v6)
            st = int(fields[3], 16)
        except ValueError:
            continue
        sock = Socket()
        sock.inode = inode
        sock.proto = proto
        sock.local_ip = local_ip
        sock.local_port = local_port
        sock.remote_ip = remote_ip
        sock.remote_port = remote_port
        if not is_tcp and st == 7:
            sock.state = "UNCONN"
        elif 0 < st < len(TCP_STATES):
            sock.state = TCP_STATES[st]
        else:
            sock.state = "UNKNOWN"
        sock.netns = netns
        table[inode] = sock


def _load_tables(dir_fd: int, netns: int, table: dict) -> None:
    for proto in TABLES:
        try:
            data = _read(dir_fd, "net/" + proto, until_eof=True)
        except OSError:
            continue
        _parse_table(data, proto, netns, table)


def _ns_inode(link: str) -> int:
    start = link.find("[")
    if start < 0:
        return 0
    digits = link[start + 1:].rstrip("]")
    return int(digits) if digits.isdigit() else 0


def _parse_stat(raw: bytes) -> list[bytes] | None:
    """Fields from number 3 on (state, ppid, ...): comm may hold spaces and ')'."""
    close = raw.rfind(b")")
    if close < 0:
        return None
    return raw[close + 1:].split()


def _parse_status_uid(raw: bytes) -> int:
    for line in raw.split(b"\n"):
        if line.startswith(b"Uid:"):
            fields = line[4:].split()
            return int(fields[-1]) if fields else -1
    return -1


def _normalise_cmdline(raw: bytes) -> str:
    return _decode(raw.rstrip(b"\0").replace(b"\0", b" ").rstrip(b" \t\n\r\f\v"))


class _Scanner:
    def __init__(self, proc_root: str) -> None:
        self.root_fd = os.open(proc_root, _DIR_FLAGS)
        self.uptime = float(_read(self.root_fd, "uptime").split()[0])
        self.clock_ticks = os.sysconf("SC_CLK_TCK")
        self.page_size = os.sysconf("SC_PAGESIZE")
        self.socket_table: dict = {}
        self.interned: dict = {}
        self.stats = {"processes": 0, "kernel_threads": 0, "vanished": 0, "denied": 0,
                      "namespaces": 1}
        try:
            host_ns = _ns_inode(os.readlink("self/ns/net", dir_fd=self.root_fd))
        except OSError:
            host_ns = 0
        _load_tables(self.root_fd, host_ns, self.socket_table)
        self.namespaces_read = {host_ns}

    def close(self) -> None:
        os.close(self.root_fd)

    def intern(self, text: str) -> str:
        return self.interned.setdefault(text, text)

    def ensure_namespace(self, pid_fd: int) -> None:
        try:
            ns = _ns_inode(os.readlink("ns/net", dir_fd=pid_fd))
        except OSError:
            return
        if ns in self.namespaces_read:
            return
        self.namespaces_read.add(ns)
        self.stats["namespaces"] += 1
        _load_tables(pid_fd, ns, self.socket_table)

    def inspect_fds(self, pid_fd: int, proc: Process) -> None:
        try:
            fd_dir = os.open("fd", _DIR_FLAGS, dir_fd=pid_fd)
        except OSError as exc:
            if exc.errno in _DENIED:
                self.stats["denied"] += 1
            return
        try:
            links = []
            for name in os.listdir(fd_dir):
                try:
                    links.append(os.readlink(name, dir_fd=fd_dir))
                except OSError:
                    continue   # fd closed meanwhile
        except OSError as exc:
            if exc.errno in _DENIED:
                self.stats["denied"] += 1
            return
        finally:
            os.close(fd_dir)
        table = self.socket_table
        sockets = []
        open_files = []
        unmatched = []
        for link in links:
            if link.startswith("socket:["):
                inode = int(link[8:].rstrip("]"))
                sock = table.get(inode)
                if sock is not None:
                    sockets.append(sock)
                else:
                    unmatched.append(inode)
            elif link.startswith("pipe:["):
                continue
            else:
                open_files.append(self.intern(link))
        if unmatched:
            # Not in any table read so far: maybe the process lives in another network
            # namespace (a container). Unix sockets stay unmatched, which is right.
            self.ensure_namespace(pid_fd)
            sockets.extend(table[inode] for inode in unmatched if inode in table)
        proc.sockets = tuple(sockets)
        proc.open_files = tuple(open_files)

    def read_process(self, name: str, want_fds) -> Process | None:
        stats = self.stats
        try:
            pid_fd = os.open(name, _DIR_FLAGS, dir_fd=self.root_fd)
        except OSError:
            stats["vanished"] += 1
            return None
        try:
            try:
                fields = _parse_stat(_read(pid_fd, "stat"))
                if fields is None or len(fields) < 22:
                    stats["vanished"] += 1
                    return None
                if int(fields[6]) & PF_KTHREAD:
                    stats["kernel_threads"] += 1
                    return None
                uid = _parse_status_uid(_read(pid_fd, "status"))
                if uid < 0:
                    stats["vanished"] += 1
                    return None
            except OSError:
                stats["vanished"] += 1
                return None
            try:
                exe = os.readlink("exe", dir_fd=pid_fd)
            except OSError as exc:
                if exc.errno in _DENIED:
                    stats["denied"] += 1
                elif exc.errno == errno.ENOENT:   # a kernel thread or a zombie
                    stats["kernel_threads"] += 1
                else:
                    stats["vanished"] += 1
                return None
            deleted = False
            if exe.endswith(DELETED_SUFFIX):
                # The suffix is only a hint: a file may be NAMED "x (deleted)". The file is
                # gone when the inode the link opens has no links left.
                try:
                    deleted = os.stat("exe", dir_fd=pid_fd).st_nlink == 0
                except OSError:
                    deleted = False
                if deleted:
                    exe = exe[:-len(DELETED_SUFFIX)]
            try:
                cmdline = _normalise_cmdline(_read(pid_fd, "cmdline"))
            except OSError:
                cmdline = ""
            start_time = int(fields[19])
            proc = Process()
            proc.pid = int(name)
            proc.ppid = int(fields[1])
            proc.pgrp = int(fields[2])
            proc.session = int(fields[3])
            proc.uid = uid
            proc.start_time = start_time
            proc.age = self.uptime - float(start_time) / self.clock_ticks
            proc.vm_size_bytes = int(fields[20])
            proc.vm_rss_bytes = int(fields[21]) * self.page_size
            proc.exe = self.intern(exe)
            proc.exe_deleted = deleted
            proc.cmdline = cmdline
            proc.sockets = None
            proc.open_files = None
            if want_fds is True or (want_fds is not False and want_fds(proc)):
                self.inspect_fds(pid_fd, proc)
            stats["processes"] += 1
            return proc
        finally:
            os.close(pid_fd)


def scan(proc_root: str = "/proc", want_fds=True):
    """Walk ``proc_root`` once; see the module docstring for the contract.

    Returns ``(processes, socket_table, stats)``.
    """
    scanner = _Scanner(proc_root)
    try:
        names = [name for name in os.listdir(scanner.root_fd)
                 if name[:1] in "123456789" and name.isdigit()]
        processes = []
        for name in names:
            proc = scanner.read_process(name, want_fds)
            if proc is not None:
                processes.append(proc)
        return processes, scanner.socket_table, scanner.stats
    finally:
        scanner.close()
