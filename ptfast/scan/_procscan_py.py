"""Pure-Python twin of the compiled scanner core (src_pyx/_procscan.pyx).

This is the reference: same API, same results, on real and on malformed input.
``ptfast.scan.procfs`` picks the compiled core when it is importable and falls back to this module
otherwise (or when PTFAST_NO_EXTENSIONS=1). Constants, tables and record fields come from
``ptfast.scan._corespec``.

Contract of ``scan(proc_root, want_fds, pids)``:

* Reads the socket tables (``SOCKET_TABLES``) of the scanner's own network namespace first, then
  walks every ``PROC_ROOT/PID`` (a PID directory name is digits without a leading zero, at most
  ``PID_MAX_LIMIT``), or only those of ``pids``, in that order, when it is not None. On the live
  ``/proc`` the tables of ``SOCK_DIAG_TABLES`` come from NETLINK_SOCK_DIAG (each from
  ``/proc/net`` when netlink is refused or its request fails), with exactly the records
  ``/proc/net`` gives; a prepared tree's tables are its files.
* Every file of one process is opened relative to a directory fd of ``/proc/PID``: if the process
  exits and its PID is reused mid-read, the reads fail (the process is counted as vanished) and
  two processes are never mixed up.
* Kernel threads (PF_KTHREAD) are skipped; so are vanished processes, processes whose ``exe``
  cannot be read for want of permission (counted in ``stats["denied"]``) and zombies (no ``exe``
  link, and no live thread whose link stands in for an exited leader's). A ``stat`` or
  ``status`` that does not parse (only a prepared tree has one) counts as vanished. A process
  whose ``exe`` path is longer than PATH_MAX is kept, with an empty ``exe`` and ``incomplete``
  saying why.
* ``uid`` is the last field of the ``Uid:`` line of ``status`` (the filesystem uid, as lfd reads
  it), never the owner of ``/proc/PID`` (root for a non-dumpable process).
* ``exe_deleted`` is decided from the file itself, the kernel's `` (deleted)`` suffix being only
  a hint (a file may be named so): the file the ``exe`` link opens has no links left, or the
  suffix is shown and the path shown, suffix included, does not name that very file in the
  process's own root (a deleted path whose file another hard link keeps). Then the suffix is
  removed from ``exe``.
* ``want_fds`` is True (inspect all), False (none) or a callable taking the Process and returning
  a bool. For inspected processes ``sockets`` lists the network sockets among their fds (looking
  into the process's own network namespace when an inode is in no table read so far) and
  ``open_files`` every other fd target that is not a pipe; otherwise both stay None.
* Socket table lines are taken only when well formed: addresses of 8 (IPv4) or 32 (IPv6) hex
  digits, ports of 1 to 4 hex digits, a decimal inode. A state that is not two hex digits of a
  known code is ``UNKNOWN_STATE``. Only protocols with ports (``has_ports``) keep that column:
  the others' ports are ``NO_PORT``.
* The fd tables of threads that unshared theirs are read too, at most ``MAX_FD_TABLES`` of them
  in ``task/`` order; a process with more is returned with ``incomplete`` set to
  ``FD_TABLES_BEYOND_BOUND``.
* A socket found in no table is examined through its fd (``ptfast.scan._sockprobe``): it is
  returned, as a protocol-only record when nothing more can be told of it, never dropped.

Returns ``(processes, socket_table, stats)``: a list of Process, a dict inode -> Socket, and the
counters of ``SCAN_COUNTERS``.
"""

from __future__ import annotations

import errno
import os
import socket as _socket
import struct
from typing import TYPE_CHECKING

from ptfast.scan import _sockprobe
from ptfast.scan._corespec import (DELETED_SUFFIX, DGRAM_STATE_NAMES, EXE_PATH_TOO_LONG,
                                   FD_TABLES_BEYOND_BOUND, FDS_DENIED, FDS_GONE, IO_URING_LINK,
                                   KCMP_FILES, LINK_MAX, LOCAL_TABLES, MAX_FD_TABLES,
                                   NETNS_UNKNOWN, NO_PORT, PACKET_TABLE, PF_FORKNOEXEC, PF_KTHREAD,
                                   PID_MAX_DIGITS, PID_MAX_LIMIT, PROCESS_FIELDS, SMALL_FILE_MAX,
                                   SOCK_DIAG_TABLES, SOCKET_FIELDS, SOCKET_TABLES, STAT_FLAGS,
                                   STAT_PGRP, STAT_PPID, STAT_RSS, STAT_SESSION, STAT_STARTTIME,
                                   STAT_VSIZE, STATUS_THREADS, STATUS_UID, STREAM_STATE_NAMES,
                                   TABLE_UID_COLUMN, UNKNOWN_STATE, UNKNOWN_UID, UPTIME_MAX,
                                   has_ports, is_ipv6_table, is_stream_table, new_counters,
                                   parse_stat, stat_field)

#: kcmp's system call number by machine (it has no libc wrapper)
KCMP_SYSCALLS = {"x86_64": 312, "aarch64": 272, "i686": 349, "i386": 349, "armv7l": 378,
                 "ppc64le": 354, "ppc64": 354, "s390x": 343, "riscv64": 272}
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DENIED = (errno.EACCES, errno.EPERM)
_IPV4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_INT32_MAX = (1 << 31) - 1
_UINT32_MAX = (1 << 32) - 1
_UINT64_MAX = (1 << 64) - 1
# rss is in pages; beyond this its size in bytes would not fit 64 bits
_RSS_PAGES_MAX = 1 << 48

# NETLINK_SOCK_DIAG's wire format (include/uapi/linux/netlink.h, sock_diag.h, inet_diag.h); the
# compiled core takes the same from the C headers.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG_HEADER = struct.Struct("=IHHII")         # nlmsghdr: length, type, flags, seq, port id
_NLMSG_DONE_ERROR = struct.Struct("=i")         # a dump's NLMSG_DONE carries its error (0: none)
# inet_diag_req_v2: family, protocol, (ext, pad), states, and a zero inet_diag_sockid: no filter
_DIAG_REQUEST = struct.Struct("=BB2xI48x")
# inet_diag_msg: family, state, (timer, retrans), ports and addresses (network byte order),
# (interface, cookie, expires, queues), uid, inode
_DIAG_MESSAGE = struct.Struct("=BB2x2s2s16s16s24xII")
_NETLINK_BUFFER = 65536          # the kernel puts at most 32 KB of a dump in one datagram


if TYPE_CHECKING:
    # for type checkers the records are the compiled core's (ptfast/scan/_procscan.pyi): one
    # description of both, whose fields ptfast.scan._corespec lists
    from ptfast.scan._procscan import Process, Socket
else:
    class Socket:
        """One network socket from /proc/net/{tcp,udp,raw}[6] of some network namespace."""

        __slots__ = SOCKET_FIELDS

        def __repr__(self) -> str:
            return (f"Socket({self.proto} {self.local_ip}:{self.local_port} -> "
                    f"{self.remote_ip}:{self.remote_port} {self.state} inode={self.inode})")

    class Process:
        """Facts about one process; ``sockets``/``open_files`` are None unless fds were
        inspected."""

        __slots__ = PROCESS_FIELDS

        def __repr__(self) -> str:
            return f"Process(pid={self.pid} uid={self.uid} exe={self.exe!r})"


def _read_small(dir_fd: int, name: str, size: int) -> bytes:
    """One read() of at most ``size`` bytes: the kernel writes stat and status whole."""
    fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def _readlink(name: str, dir_fd: int) -> str:
    """A link target; OSError(ENAMETOOLONG) for one the kernel would never write."""
    target = os.readlink(name, dir_fd=dir_fd)
    if len(os.fsencode(target)) >= LINK_MAX:
        raise OSError(errno.ENAMETOOLONG, "link target too long", name)
    return target


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


def _number(text: bytes, maximum: int, signed: bool = False) -> int:
    """A decimal field, strictly: digits (after one '-' when ``signed``), within +-maximum.
    Raises ValueError otherwise (int() would also take '+', '_' and white space)."""
    digits = text[1:] if signed and text[:1] == b"-" else text
    if not digits.isdigit() or len(digits) > 20:
        raise ValueError(text)
    value = int(text)
    if not -maximum - 1 <= value <= maximum or (value < 0 and not signed):
        raise ValueError(text)
    return value


def _new_socket(inode: int, proto: str, local_ip: str, local_port: int, remote_ip: str,
                remote_port: int, state: str, uid: int, netns: int) -> Socket:
    sock = Socket()
    sock.inode = inode
    sock.proto = proto
    sock.local_ip = local_ip
    sock.local_port = local_port
    sock.remote_ip = remote_ip
    sock.remote_port = remote_port
    sock.state = state
    sock.uid = uid
    sock.netns = netns
    return sock


def _address_text(raw: bytes, v6: bool) -> str:
    """An address in network byte order (4 or 16 bytes) as text; IPv4-mapped IPv6 as IPv4."""
    if not v6:
        return _socket.inet_ntop(_socket.AF_INET, raw)
    if raw[:12] == _IPV4_MAPPED_PREFIX:
        return _socket.inet_ntop(_socket.AF_INET, raw[12:])
    return _socket.inet_ntop(_socket.AF_INET6, raw)


def _parse_endpoint(text: bytes, v6: bool) -> tuple[str, int]:
    address, sep, port = text.partition(b":")
    if (not sep or len(address) != (32 if v6 else 8) or not 1 <= len(port) <= 4
            or not _HEX_DIGITS.issuperset(address + port)):
        raise ValueError(text)
    # The kernel prints each 32-bit word in host byte order.
    raw = b"".join(int(address[i:i + 8], 16).to_bytes(4, "little")
                   for i in range(0, len(address), 8))
    return _address_text(raw, v6), int(port, 16)


def _state_of_code(code: int, names: tuple) -> str:
    return names[code] if code < len(names) else UNKNOWN_STATE


def _state(field: bytes, names: tuple) -> str:
    if len(field) != 2 or not _HEX_DIGITS.issuperset(field):
        return UNKNOWN_STATE
    return _state_of_code(int(field, 16), names)


def _parse_table(data: bytes, proto: str, netns: int, table: dict) -> None:
    v6 = is_ipv6_table(proto)
    names = STREAM_STATE_NAMES if is_stream_table(proto) else DGRAM_STATE_NAMES
    ported = has_ports(proto)
    for line in data.split(b"\n")[1:]:
        # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        fields = [field for field in line.split(b" ") if field]
        if len(fields) < 10 or not fields[9].isdigit() or len(fields[9]) > 20:
            continue
        inode = int(fields[9])
        if inode == 0 or inode > _UINT64_MAX or inode in table:
            continue
        try:
            local_ip, local_port = _parse_endpoint(fields[1], v6)
            remote_ip, remote_port = _parse_endpoint(fields[2], v6)
            uid = _number(fields[TABLE_UID_COLUMN], _UINT32_MAX)
        except ValueError:
            continue
        if not ported:      # an echo identifier or an IP protocol number: no port
            local_port = remote_port = NO_PORT
        table[inode] = _new_socket(inode, proto, local_ip, local_port, remote_ip, remote_port,
                                   _state(fields[3], names), uid, netns)


def _socket_of(record: tuple) -> Socket:
    """A Socket from a record tuple in SOCKET_FIELDS order (ptfast.scan._sockprobe's)."""
    return _new_socket(*record)


def _sock_diag_table(proto: str, netns: int) -> list | None:
    """The sockets with an inode of table ``proto`` (one of ``SOCK_DIAG_TABLES``) of the
    scanner's own network namespace, from NETLINK_SOCK_DIAG: the records /proc/net/PROTO gives.
    None when netlink is refused or the request fails: the caller reads /proc/net instead."""
    family, protocol, states = SOCK_DIAG_TABLES[proto]
    v6 = is_ipv6_table(proto)
    names = STREAM_STATE_NAMES if is_stream_table(proto) else DGRAM_STATE_NAMES
    request = (_NLMSG_HEADER.pack(_NLMSG_HEADER.size + _DIAG_REQUEST.size, _SOCK_DIAG_BY_FAMILY,
                                  _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
               + _DIAG_REQUEST.pack(family, protocol, states))
    address_size = 16 if v6 else 4
    sockets: list = []
    try:
        # Only the kernel (and root) can send to this socket: NETLINK_SOCK_DIAG does not let
        # other users send to a port id, so every datagram read is the kernel's answer.
        with _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as link:
            link.sendto(request, (0, 0))
            while True:
                data, _, flags, _ = link.recvmsg(_NETLINK_BUFFER)
                if not data or flags & _socket.MSG_TRUNC:
                    return None
                offset = 0
                while offset + _NLMSG_HEADER.size <= len(data):
                    length, kind = _NLMSG_HEADER.unpack_from(data, offset)[:2]
                    if length < _NLMSG_HEADER.size or length > len(data) - offset:
                        return None
                    payload = offset + _NLMSG_HEADER.size
                    if kind == _NLMSG_DONE:
                        failed = (length >= _NLMSG_HEADER.size + _NLMSG_DONE_ERROR.size
                                  and _NLMSG_DONE_ERROR.unpack_from(data, payload)[0] != 0)
                        return None if failed else sockets
                    if kind == _NLMSG_ERROR:
                        return None
                    if (kind == _SOCK_DIAG_BY_FAMILY
                            and length >= _NLMSG_HEADER.size + _DIAG_MESSAGE.size):
                        (_, state, local_port, remote_port, local, remote, uid,
                         inode) = _DIAG_MESSAGE.unpack_from(data, payload)
                        if inode:    # 0: a socket no process holds any more (an orphan)
                            sockets.append(_new_socket(
                                inode, proto, _address_text(local[:address_size], v6),
                                int.from_bytes(local_port, "big"),
                                _address_text(remote[:address_size], v6),
                                int.from_bytes(remote_port, "big"), _state_of_code(state, names),
                                uid, netns))
                    offset += (length + 3) & ~3        # NLMSG_ALIGN
    except OSError:
        return None


def _load_tables(dir_fd: int, netns: int, table: dict, sock_diag: bool = False) -> int:
    """Read every network socket table of one network namespace (``dir_fd`` is /proc or
    /proc/PID) into ``table``; with ``sock_diag`` (the scanner's own namespace, on the live
    /proc) those of ``SOCK_DIAG_TABLES`` through netlink when it answers. Returns how many
    tables came through netlink."""
    through_netlink = 0
    for proto in SOCKET_TABLES:
        if sock_diag and proto in SOCK_DIAG_TABLES:
            sockets = _sock_diag_table(proto, netns)
            if sockets is not None:
                for sock in sockets:
                    table.setdefault(sock.inode, sock)
                through_netlink += 1
                continue
        try:
            data = _read(dir_fd, "net/" + proto, until_eof=True)
        except OSError:
            continue
        _parse_table(data, proto, netns, table)
    try:
        packets = _read(dir_fd, "net/" + PACKET_TABLE, until_eof=True)
    except OSError:
        return through_netlink
    for record in _sockprobe.packet_records(packets, netns):
        table.setdefault(record[0], _socket_of(record))
    return through_netlink


def _load_local_inodes(dir_fd: int, inodes: set) -> None:
    """Inodes of the sockets that reach no network (unix, netlink) of one namespace."""
    for name, column in LOCAL_TABLES:
        try:
            data = _read(dir_fd, "net/" + name, until_eof=True)
        except OSError:
            continue
        for line in data.split(b"\n")[1:]:
            fields = [field for field in line.split(b" ") if field]
            if len(fields) > column:
                try:
                    inodes.add(_number(fields[column], _UINT64_MAX))
                except ValueError:
                    continue


def _ns_inode(link: str) -> int:
    """``net:[4026531840]`` -> 4026531840; NETNS_UNKNOWN when the text is not of that form."""
    start = link.find("[")
    if start < 0:
        return NETNS_UNKNOWN
    digits = link[start + 1:].rstrip("]")
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):
        return NETNS_UNKNOWN
    value = int(digits)
    return value if value <= _UINT64_MAX else NETNS_UNKNOWN


def _status_number(raw: bytes, key: bytes, maximum: int) -> int:
    """The last field of the status line ``key``; -1 when there is none or it is no number."""
    for line in raw.split(b"\n"):
        if line.startswith(key):
            fields = line[len(key):].split()
            try:
                return _number(fields[-1], maximum) if fields else -1
            except ValueError:
                return -1
    return -1


def _normalise_cmdline(raw: bytes) -> str:
    return _decode(raw.rstrip(b"\0").replace(b"\0", b" ").rstrip(b" \t\n\r\f\v"))


def _is_pid_name(name: str) -> bool:
    return (name[:1] in "123456789" and name.isdigit() and name.isascii()
            and len(name) <= PID_MAX_DIGITS and int(name) <= PID_MAX_LIMIT)


class _Stat:
    """The /proc/PID/stat fields the scan uses."""

    __slots__ = ("ppid", "pgrp", "session", "flags", "start_time", "vsize", "rss_pages")

    def __init__(self, raw: bytes) -> None:
        """Raises ValueError when ``raw`` is not a stat line."""
        fields = parse_stat(raw)
        if fields is None:
            raise ValueError("not a stat line")
        self.ppid = _number(stat_field(fields, STAT_PPID), _INT32_MAX, signed=True)
        self.pgrp = _number(stat_field(fields, STAT_PGRP), _INT32_MAX, signed=True)
        self.session = _number(stat_field(fields, STAT_SESSION), _INT32_MAX, signed=True)
        self.flags = _number(stat_field(fields, STAT_FLAGS), _UINT64_MAX)
        self.start_time = _number(stat_field(fields, STAT_STARTTIME), _UINT64_MAX)
        self.vsize = _number(stat_field(fields, STAT_VSIZE), _UINT64_MAX)
        self.rss_pages = _number(stat_field(fields, STAT_RSS), _RSS_PAGES_MAX)


def _thread_ids(pid_fd: int) -> list:
    """The thread ids under /proc/PID/task, read through the process's directory fd."""
    try:
        task_fd = os.open("task", _DIR_FLAGS, dir_fd=pid_fd)
    except OSError:
        return []
    try:
        return [int(name) for name in os.listdir(task_fd) if _is_pid_name(name)]
    except OSError:
        return []
    finally:
        os.close(task_fd)


class _Task:
    """Where a process is read from: its /proc/PID directory, or, when its leader exited while
    other threads live on (a zombie leader), the directory of one live thread."""

    __slots__ = ("dir_fd", "tid")

    def __init__(self, dir_fd: int, tid: int) -> None:
        self.dir_fd = dir_fd
        self.tid = tid


def _kcmp_files(pid: int, tid: int) -> int:
    """0 when the two tasks share one fd table, 1 or 2 when not, -1 when kcmp is unavailable."""
    number = KCMP_SYSCALLS.get(os.uname().machine)
    if number is None:
        return -1
    try:
        return _sockprobe.syscall(number, pid, tid, KCMP_FILES, 0, 0)
    except OSError:
        return -1


class _Scanner:
    def __init__(self, proc_root: str) -> None:
        self.proc_root = proc_root
        self.root_fd = os.open(proc_root, _DIR_FLAGS)
        try:
            self.uptime = float(_read_small(self.root_fd, "uptime", UPTIME_MAX).split()[0])
        except (OSError, ValueError, IndexError) as exc:
            os.close(self.root_fd)
            raise OSError(getattr(exc, "errno", None) or errno.EINVAL,
                          "cannot read uptime under procfs root", proc_root) from None
        self.clock_ticks = os.sysconf("SC_CLK_TCK")
        self.page_size = os.sysconf("SC_PAGESIZE")
        self.socket_table: dict = {}
        self.local_inodes: set = set()          # unix and netlink sockets: no network
        self.interned: dict = {}
        self.stats = new_counters()
        try:
            host_ns = _ns_inode(_readlink("self/ns/net", self.root_fd))
        except OSError:
            host_ns = NETNS_UNKNOWN
        # netlink reaches the scanner's own namespace, which is /proc's only on the live /proc
        self.stats["sock_diag"] = _load_tables(self.root_fd, host_ns, self.socket_table,
                                               sock_diag=proc_root == "/proc")
        self.namespaces_read = {host_ns}
        self.local_read: set = set()
        self.stats["namespaces"] = 1

    def close(self) -> None:
        os.close(self.root_fd)

    def intern(self, text: str) -> str:
        return self.interned.setdefault(text, text)

    def _namespace(self, pid_fd: int) -> int:
        """The inode of the process's network namespace; NETNS_UNKNOWN when not readable."""
        try:
            return _ns_inode(_readlink("ns/net", pid_fd))
        except OSError:
            return NETNS_UNKNOWN

    def ensure_namespace(self, pid_fd: int) -> None:
        """Read the socket tables of the process's network namespace if not yet read."""
        ns = self._namespace(pid_fd)
        if ns == NETNS_UNKNOWN or ns in self.namespaces_read:
            return
        self.namespaces_read.add(ns)
        self.stats["namespaces"] += 1
        _load_tables(pid_fd, ns, self.socket_table)

    def ensure_local_inodes(self, pid_fd: int) -> None:
        """Read the unix and netlink tables of the process's network namespace, once."""
        ns = self._namespace(pid_fd)
        if ns == NETNS_UNKNOWN or ns in self.local_read:
            return
        self.local_read.add(ns)
        _load_local_inodes(pid_fd, self.local_inodes)

    def _fd_tables(self, pid_fd: int, task: _Task, proc: Process) -> list:
        """The tasks whose fd tables hold the process's files: the task read, and every other
        thread whose table is its own (unshare(CLONE_FILES)): kcmp tells, else every thread.
        At most MAX_FD_TABLES of the threads', in task order; ``proc.incomplete`` says when a
        further one was left unread."""
        tables = [task]
        if proc.threads <= 1:
            return tables
        for tid in _thread_ids(pid_fd):
            if tid == task.tid or (self.proc_root == "/proc"
                                   and _kcmp_files(task.tid, tid) == 0):
                continue                        # the same table: read already
            if len(tables) > MAX_FD_TABLES:
                proc.incomplete = proc.incomplete or FD_TABLES_BEYOND_BOUND
                break
            try:
                dir_fd = os.open(f"task/{tid}", _DIR_FLAGS, dir_fd=pid_fd)
            except OSError:
                continue
            tables.append(_Task(dir_fd, tid))
        return tables

    def _links(self, task: _Task, proc: Process, links: list) -> bool:
        """Add (target, fd name, task) of every fd of ``task``; False when its table could not
        be read at all."""
        try:
            fd_dir = os.open("fd", _DIR_FLAGS, dir_fd=task.dir_fd)
        except OSError as exc:
            if exc.errno in _DENIED:
                self.stats["denied"] += 1
                proc.incomplete = proc.incomplete or FDS_DENIED
            else:
                proc.incomplete = proc.incomplete or FDS_GONE
            return False
        try:
            for name in os.listdir(fd_dir):
                try:
                    links.append((_readlink(name, fd_dir), name, task))
                except OSError:
                    continue   # fd closed meanwhile
        except OSError as exc:
            proc.incomplete = proc.incomplete or (FDS_DENIED if exc.errno in _DENIED
                                                  else FDS_GONE)
            return False
        finally:
            os.close(fd_dir)
        return True

    def _io_uring_links(self, fd: str, task: _Task) -> list:
        try:
            fdinfo = _read(task.dir_fd, f"fdinfo/{fd}", until_eof=True)
        except OSError:
            return []
        return [(target, None, task) for target in _sockprobe.io_uring_files(fdinfo)]

    def inspect_fds(self, pid_fd: int, proc: Process, task: _Task) -> None:
        tables = self._fd_tables(pid_fd, task, proc)
        links: list = []
        try:
            read_any = False
            for table_task in tables:
                read_any = self._links(table_task, proc, links) or read_any
            for target, fd, table_task in list(links):
                if target == IO_URING_LINK and fd is not None:
                    links.extend(self._io_uring_links(fd, table_task))
            if not read_any:
                return
            self._sort_links(pid_fd, proc, links)
        finally:
            for table_task in tables[1:]:
                os.close(table_task.dir_fd)

    def _sort_links(self, pid_fd: int, proc: Process, links: list) -> None:
        table = self.socket_table
        sockets: dict = {}
        open_files: dict = {}
        unmatched = []
        for link, fd, task in links:
            if link.startswith("socket:["):
                digits = link[8:-1]
                if not (link.endswith("]") and digits.isascii() and digits.isdigit()
                        and len(digits) <= 20) or int(digits) > _UINT64_MAX:
                    continue
                inode = int(digits)
                sock = table.get(inode)
                if sock is not None:
                    sockets.setdefault(inode, sock)
                elif inode not in sockets:
                    unmatched.append((inode, fd, task))
            elif link.startswith("pipe:[") or link == IO_URING_LINK:
                continue
            else:
                open_files.setdefault(self.intern(link), None)
        if unmatched:
            # Not in any table read so far: maybe the process lives in another network
            # namespace (a container); else a unix or netlink socket; else a network socket
            # the tables do not show, which its fd tells about (ptfast.scan._sockprobe).
            self.ensure_namespace(pid_fd)
            self.ensure_local_inodes(pid_fd)
            for inode, fd, task in unmatched:
                sock = table.get(inode)
                if sock is None and inode not in self.local_inodes:
                    sock = (self._probe(proc.pid, task.tid, fd) if fd is not None
                            else _socket_of(_sockprobe.unexamined(inode, proc.uid)))
                if sock is not None:
                    sockets.setdefault(sock.inode, sock)
        proc.sockets = tuple(sockets.values())
        proc.open_files = tuple(open_files)

    def _probe(self, pid: int, tid: int, fd: str):
        record = _sockprobe.identify(self.proc_root, pid, tid, fd)
        if record is None:
            return None
        sock = self.socket_table.get(record[0])        # it may be in a table after all
        if sock is None:
            sock = self.socket_table[record[0]] = _socket_of(record)
        self.stats["probed"] += 1
        return sock

    def _live_task(self, pid_fd: int, pid: int):
        """A zombie leader's live thread: (task, exe target), or None."""
        for tid in _thread_ids(pid_fd):
            if tid == pid:
                continue
            try:
                dir_fd = os.open(f"task/{tid}", _DIR_FLAGS, dir_fd=pid_fd)
            except OSError:
                continue
            try:
                return _Task(dir_fd, tid), _readlink("exe", dir_fd)
            except OSError:
                os.close(dir_fd)
        return None

    def _deleted(self, exe: str, exe_stat, pid_fd: int) -> bool:
        """The executable's file was unlinked. The kernel's suffix is only a hint (a file may be
        NAMED "x (deleted)"); and a file kept alive by another hard link has links left. It is
        deleted when nothing is left of it, or when the path shown (suffix included) does not
        name that very file in the process's own root."""
        if exe_stat is None:
            return False
        if exe_stat.st_nlink == 0:
            return True
        if not exe.endswith(DELETED_SUFFIX) or not exe.startswith("/"):
            return False
        try:
            named = os.stat("root" + exe, dir_fd=pid_fd)
        except (OSError, ValueError):
            return True
        return (named.st_dev, named.st_ino) != (exe_stat.st_dev, exe_stat.st_ino)

    def read_process(self, name: str, want_fds) -> Process | None:
        stats = self.stats
        try:
            pid_fd = os.open(name, _DIR_FLAGS, dir_fd=self.root_fd)
        except OSError:
            stats["vanished"] += 1
            return None
        pid = int(name)
        task = _Task(pid_fd, pid)
        incomplete = ""
        try:
            try:
                stat = _Stat(_read_small(pid_fd, "stat", SMALL_FILE_MAX))
                if stat.flags & PF_KTHREAD:
                    stats["kernel_threads"] += 1
                    return None
                status = _read_small(pid_fd, "status", SMALL_FILE_MAX)
                uid = _status_number(status, STATUS_UID, _UINT32_MAX)
                threads = max(_status_number(status, STATUS_THREADS, _INT32_MAX), 1)
                if uid < 0:
                    stats["vanished"] += 1
                    return None
            except (OSError, ValueError):
                stats["vanished"] += 1
                return None
            try:
                exe = _readlink("exe", pid_fd)
            except OSError as exc:
                if exc.errno in _DENIED:
                    stats["denied"] += 1
                    return None
                if exc.errno == errno.ENAMETOOLONG:
                    exe, incomplete = "", EXE_PATH_TOO_LONG
                elif exc.errno == errno.ENOENT:
                    # no exe: a zombie, or a leader that exited while other threads live on
                    live = self._live_task(pid_fd, pid) if threads > 1 else None
                    if live is None:
                        stats["zombies"] += 1
                        return None
                    task, exe = live
                else:
                    stats["vanished"] += 1
                    return None
            try:
                exe_stat = os.stat("exe", dir_fd=task.dir_fd)   # the file the process runs
            except OSError:
                exe_stat = None
            deleted = self._deleted(exe, exe_stat, pid_fd)
            if deleted and exe.endswith(DELETED_SUFFIX):
                exe = exe[:-len(DELETED_SUFFIX)]
            try:
                cmdline = _normalise_cmdline(_read(task.dir_fd, "cmdline"))
            except OSError:
                cmdline = ""
            proc = Process()
            proc.pid = pid
            proc.ppid = stat.ppid
            proc.pgrp = stat.pgrp
            proc.session = stat.session
            proc.uid = uid
            proc.start_time = stat.start_time
            proc.age = self.uptime - float(stat.start_time) / self.clock_ticks
            proc.vm_size_bytes = stat.vsize
            proc.vm_rss_bytes = stat.rss_pages * self.page_size
            proc.exe = self.intern(exe)
            proc.exe_deleted = deleted
            if exe_stat is not None:
                proc.exe_dev, proc.exe_ino = exe_stat.st_dev, exe_stat.st_ino
                proc.exe_uid, proc.exe_mode = exe_stat.st_uid, exe_stat.st_mode
            else:
                proc.exe_dev = proc.exe_ino = proc.exe_mode = 0
                proc.exe_uid = UNKNOWN_UID
            proc.cmdline = cmdline
            proc.threads = threads
            proc.fork_no_exec = bool(stat.flags & PF_FORKNOEXEC)
            proc.sockets = None
            proc.open_files = None
            proc.incomplete = incomplete
            if want_fds is True or (want_fds is not False and want_fds(proc)):
                self.inspect_fds(pid_fd, proc, task)
            stats["processes"] += 1
            if proc.incomplete:
                stats["incomplete"] += 1
            return proc
        finally:
            if task.dir_fd != pid_fd:
                os.close(task.dir_fd)
            os.close(pid_fd)


def scan(proc_root: str = "/proc", want_fds=True, pids=None):
    """Walk ``proc_root`` once (or only ``pids``, in that order); see the module docstring
    for the contract.

    Returns ``(processes, socket_table, stats)``.
    """
    scanner = _Scanner(proc_root)
    try:
        names = ([str(pid) for pid in pids if _is_pid_name(str(pid))] if pids is not None
                 else [name for name in os.listdir(scanner.root_fd) if _is_pid_name(name)])
        processes = []
        for name in names:
            proc = scanner.read_process(name, want_fds)
            if proc is not None:
                processes.append(proc)
        return processes, scanner.socket_table, scanner.stats
    finally:
        scanner.close()
