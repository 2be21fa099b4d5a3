"""Read the host: pick the compiled scanner core or its pure-Python twin, return a Snapshot.

PTFAST_NO_EXTENSIONS=1 forces the twin. If the compiled module cannot be imported, the twin is
used and ``CORE_FALLBACK_REASON`` says why (``ptfast --version`` shows it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple, Union

from ptfast.scan._corespec import STAT_PGRP, STAT_PPID, STAT_STARTTIME, parse_stat, stat_field

CORE_FALLBACK_REASON: str | None = None
#: what an admin does about a core that was not built (said by --version, check and the log)
HOW_TO_BUILD = ("to build it, install gcc and the Python headers (apt-get install gcc "
                "python3-dev), then run the same pip install again")


def fallback_reason(exc: ImportError, package_dir: str = os.path.dirname(__file__)) -> str:
    import glob
    if not glob.glob(os.path.join(glob.escape(package_dir), "_procscan*.so")):
        return ("the compiled core was not built when ptfast was installed (no C compiler "
                f"or Python headers?), so the slower pure-Python core runs; {HOW_TO_BUILD}")
    return f"the compiled core cannot be loaded ({exc}); the pure-Python core runs"

# the twin is imported only when it is the core (it is the slower import)
if os.environ.get("PTFAST_NO_EXTENSIONS"):
    from ptfast.scan import _procscan_py as _core
    CORE_NAME = "pure-python"
    CORE_FALLBACK_REASON = "PTFAST_NO_EXTENSIONS is set"
else:
    try:
        from ptfast.scan import _procscan as _core  # type: ignore[no-redef]
        CORE_NAME = "compiled"
    except ImportError as exc:  # not built on this machine: run on the twin, and say so
        from ptfast.scan import _procscan_py as _core  # type: ignore[no-redef]
        CORE_NAME = "pure-python"
        CORE_FALLBACK_REASON = fallback_reason(exc)

if TYPE_CHECKING:
    # both cores' records, as the compiled core's stubs describe them
    from ptfast.scan._procscan import Process, Socket  # noqa: F401  (re-exported for annotations)
    WantFds = Union[bool, Callable[[Process], bool]]


@dataclass
class Snapshot:
    """One walk of the process table."""

    processes: list
    socket_table: dict          # inode -> Socket, every network namespace read
    stats: dict                 # _corespec.SCAN_COUNTERS
    core: str                   # "compiled" or "pure-python"
    taken_at: float = field(default_factory=time.time)
    duration: float = 0.0       # seconds the walk took

    def by_pid(self) -> dict:
        return {proc.pid: proc for proc in self.processes}


def scan(proc_root: str = "/proc", want_fds: WantFds = True, core=None,
         pids=None) -> Snapshot:
    """Walk ``proc_root`` (only ``pids``, in that order, when given); see
    ``ptfast.scan._procscan_py`` for the contract of the cores.

    ``core`` selects a module explicitly (tests run both); by default the active one.
    """
    module = core or _core
    started = time.perf_counter()
    processes, socket_table, stats = module.scan(proc_root, want_fds, pids)
    return Snapshot(
        processes=processes,
        socket_table=socket_table,
        stats=stats,
        core="pure-python" if module.__name__.endswith("_py") else "compiled",
        duration=time.perf_counter() - started,
    )


def newest_pids_of(uids: set | None, proc_root: str = "/proc") -> list:
    """PIDs that may belong to ``uids`` (None: to anyone), newest first: a cheap pre-selection
    by the owner of /proc/PID (root's too, as a non-dumpable process's directory is root's);
    the scan then reads each one's real uid."""
    if uids is None:
        return sorted((int(name) for name in os.listdir(proc_root) if name.isdigit()),
                      reverse=True)
    owners = set(uids) | {0}
    found = []
    for name in os.listdir(proc_root):
        if name.isdigit():
            try:
                if os.stat(f"{proc_root}/{name}").st_uid in owners:
                    found.append(int(name))
            except OSError:
                continue
    return sorted(found, reverse=True)


class FileIdentity(NamedTuple):
    """What stat() says of a file: which file it is (device, inode), who owns it, its mode."""

    dev: int
    ino: int
    uid: int
    mode: int

    def is_system_file(self) -> bool:
        """Owned by root and not writable by group or others: no customer can change it."""
        return self.uid == 0 and not self.mode & 0o022


class FileIdentities:
    """stat() of host paths, each asked once (paths repeat: thousands of processes run a few
    hundred executables). A scan makes a new one: packages get upgraded between passes."""

    def __init__(self) -> None:
        self._known: dict = {}

    def __call__(self, path: str):
        try:
            return self._known[path]
        except KeyError:
            pass
        try:
            info = os.stat(path)
            identity = FileIdentity(info.st_dev, info.st_ino, info.st_uid, info.st_mode)
        except (OSError, ValueError):       # gone, or a NUL in a hostile name
            identity = None
        self._known[path] = identity
        return identity


def read_loadavg(proc_root: str = "/proc") -> tuple[tuple, str]:
    """((1, 5, 15 minute averages), "running/total") from /proc/loadavg."""
    with open(os.path.join(proc_root, "loadavg"), "rb") as handle:
        fields = handle.read().split()
    return (float(fields[0]), float(fields[1]), float(fields[2])), fields[3].decode()


MAX_MAPS_LINES = 2000


def read_maps(pid: int, start_time: int, proc_root: str = "/proc") -> list[str] | None:
    """``/proc/PID/maps`` lines of exactly that process (None when it is gone or was replaced by
    a newcomer with the same PID). Capped at MAX_MAPS_LINES; a last line says what was left out.
    """
    try:
        pid_fd = os.open(f"{proc_root}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None

    def opener(name, flags):
        return os.open(name, flags, dir_fd=pid_fd)
    try:
        # the directory fd pins this process: if it exits, reads through it fail
        with open("stat", "rb", opener=opener) as handle:
            fields = parse_stat(handle.read())
        if not fields or int(stat_field(fields, STAT_STARTTIME)) != start_time:
            return None
        with open("maps", "rb", opener=opener) as handle:
            lines = handle.read().decode("utf-8", "surrogateescape").splitlines()
    except (OSError, ValueError):
        return None
    finally:
        os.close(pid_fd)
    if len(lines) > MAX_MAPS_LINES:
        lines = lines[:MAX_MAPS_LINES] + [f"... {len(lines) - MAX_MAPS_LINES} more lines"]
    return lines


def with_relatives(pids: list, proc_root: str = "/proc") -> list:
    """``pids``, then each one's parent and process-group leader not already among them. A
    walk of a few processes (live mode's due checks) judges them as a full walk does only with
    these beside them: the service-socket rule proves a worker by its root parent, PT_SKIP_HTTP
    looks at the parent and the group leader. A process that is gone adds nothing."""
    wanted = list(pids)
    seen = set(wanted)
    for pid in pids:
        try:
            with open(f"{proc_root}/{pid}/stat", "rb") as handle:
                fields = parse_stat(handle.read())
            relatives = ((int(stat_field(fields, STAT_PPID)), int(stat_field(fields, STAT_PGRP)))
                         if fields else ())
        except (OSError, ValueError):
            continue
        for relative in relatives:
            if relative > 0 and relative not in seen:
                seen.add(relative)
                wanted.append(relative)
    return wanted


def host_addresses(proc_root: str = "/proc") -> frozenset:
    """This host's own addresses (``ipaddress`` objects) in ptfast's network namespace: IPv4
    from the kernel's local routes (``/proc/net/fib_trie``: an address followed by ``/32 host
    LOCAL``), IPv6 from ``/proc/net/if_inet6``. Only root can add one. What cannot be read is
    left out: a peer then ranks as elsewhere, more urgent, never less (digest.severity)."""
    import ipaddress  # here: only a pass with more mails than PT_DIGEST_AFTER asks
    found: set = set()
    try:
        with open(os.path.join(proc_root, "net", "fib_trie"), "rb") as handle:
            last = b""
            for line in handle:
                words = line.split()
                if len(words) == 2 and words[0] in (b"|--", b"+--"):
                    last = words[1]
                elif words[:3] == [b"/32", b"host", b"LOCAL"] and last:
                    found.add(ipaddress.IPv4Address(last.decode("ascii")))
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    try:
        with open(os.path.join(proc_root, "net", "if_inet6"), "rb") as handle:
            for line in handle:
                words = line.split()
                if words and len(words[0]) == 32:
                    found.add(ipaddress.IPv6Address(int(words[0], 16)))
    except (OSError, ValueError):
        pass
    return frozenset(found)


def v6only_listeners() -> dict:
    """(netns, inode) -> whether the socket is IPV6_V6ONLY, for every tcp6 listener of
    ptfast's own network namespace, from NETLINK_SOCK_DIAG (INET_DIAG_SKV6ONLY, which the
    kernel adds to every AF_INET6 record). /proc/net/tcp6 does not say it. Empty when netlink
    is refused or fails: a caller then knows nothing of any listener.

    Why it matters: a tcp6 listener on [::] with IPV6_V6ONLY accepts no IPv4 connection, and
    leaves every IPv4-mapped address of its port free for anyone to bind (policy: an outgoing
    connection from [::ffff:A]:P is no connection accepted on such a listener)."""
    import socket
    import struct
    header = struct.Struct("=IHHII")                # nlmsghdr
    request = struct.Struct("=BB2xI48x")            # inet_diag_req_v2, no filter
    message = struct.Struct("=72x")                 # inet_diag_msg
    attribute = struct.Struct("=HH")                # rtattr: length, type
    sock_diag_by_family, done, error = 20, 3, 2
    skv6only, tcp_listen = 11, 10
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return {}
    found: dict = {}
    query = (header.pack(header.size + request.size, sock_diag_by_family, 0x1 | 0x300, 1, 0)
             + request.pack(socket.AF_INET6, socket.IPPROTO_TCP, 1 << tcp_listen))
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4) as link:
            link.sendto(query, (0, 0))
            while True:
                data, _, flags, _ = link.recvmsg(65536)
                if not data or flags & socket.MSG_TRUNC:
                    return {}
                offset = 0
                while offset + header.size <= len(data):
                    length, kind = header.unpack_from(data, offset)[:2]
                    if length < header.size or length > len(data) - offset or kind == error:
                        return {}
                    if kind == done:
                        return found
                    body = offset + header.size
                    if kind == sock_diag_by_family and length >= header.size + message.size:
                        inode = struct.unpack_from("=I", data, body + 68)[0]
                        at, end = body + message.size, offset + length
                        while at + attribute.size <= end:
                            size, kind_of = attribute.unpack_from(data, at)
                            if size < attribute.size:
                                break
                            if kind_of == skv6only and size > attribute.size:
                                found[(netns, inode)] = data[at + attribute.size] != 0
                            at += (size + 3) & ~3
                    offset += (length + 3) & ~3
    except OSError:
        return {}
