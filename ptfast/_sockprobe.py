"""What both cores do, alike and rarely, for what the socket tables do not show.

* A socket an inspected process holds whose inode is in no table read (it was created after the
  tables were read, in a throwaway network namespace, or is of a kind without a table): the fd
  itself is examined. ``getxattr("system.sockprotoname")`` on ``/proc/PID/fd/N`` names its
  protocol (every kernel ptfast runs on); unix and netlink sockets are no network. A network
  socket is then duplicated with ``pidfd_getfd`` (Linux 5.6+; a thread's own fd table needs
  PIDFD_THREAD, Linux 6.9+) and asked for its addresses (getsockname, getpeername), its TCP
  state (TCP_INFO) and its network namespace (SIOCGSKNS). Where that is not possible, the socket
  is still returned, with its protocol and unknown addresses: never dropped.
* io_uring: the files registered with a ring (even after their fds were closed) are listed in
  ``/proc/PID/fdinfo/<ring fd>`` under ``UserFiles:``.

Records go back to the core as plain tuples in ``_corespec.SOCKET_FIELDS`` order.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat

from ._corespec import (PACKET_IFACE_COLUMN, PACKET_INODE_COLUMN, PACKET_PROTO_COLUMN,
                        PACKET_TABLE, PACKET_UID_COLUMN, STREAM_STATE_NAMES, UNKNOWN_STATE)

UNKNOWN_ADDRESS = "?"
#: Protocol names (sockprotoname) of sockets that reach no network.
_LOCAL_PROTOCOLS = ("UNIX", "NETLINK", "ALG")
#: sockprotoname -> ptfast's table name, for sockets ptfast cannot open itself.
_TABLE_NAMES = {"TCP": "tcp", "TCPv6": "tcp6", "UDP": "udp", "UDPv6": "udp6",
                "UDP-Lite": "udplite", "UDPLITEv6": "udplite6", "PING": "icmp",
                "PINGv6": "icmp6", "RAW": "raw", "RAWv6": "raw6", "PACKET": "packet",
                "MPTCP": "mptcp", "MPTCPv6": "mptcp6", "SCTP": "sctp", "SCTPv6": "sctp6"}
_SYS_PIDFD_GETFD = 438        # the same on every architecture (a syscall added in 5.6)
_PIDFD_THREAD = os.O_EXCL     # include/uapi/linux/pidfd.h
_SIOCGSKNS = 0x894C           # include/uapi/linux/sockios.h
_IPPROTO_UDPLITE = 136
_IPPROTO_MPTCP = 262
_IPPROTO_SCTP = 132
_ETH_PACKET = 17              # AF_PACKET
_libc = None


def _syscall(*args) -> int:
    global _libc
    if _libc is None:
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)
    result = _libc.syscall(*args)
    if result < 0:
        import ctypes
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return result


def is_network(path: str):
    """(network?, protocol name, stat) of the socket the fd link ``path`` holds now; (None, "",
    None) when it holds none."""
    try:
        info = os.stat(path)
        if not stat.S_ISSOCK(info.st_mode):
            return None, "", None
        name = os.getxattr(path, "system.sockprotoname").rstrip(b"\0").decode("ascii", "replace")
    except OSError:
        return None, "", None
    return not name.startswith(_LOCAL_PROTOCOLS), name, info


def _table_name(sock) -> str:
    import socket
    v6 = "6" if sock.family == socket.AF_INET6 else ""
    if sock.family == _ETH_PACKET:
        return "packet"
    if sock.type == socket.SOCK_STREAM:
        return {_IPPROTO_MPTCP: "mptcp", _IPPROTO_SCTP: "sctp"}.get(sock.proto, "tcp") + v6
    if sock.type == socket.SOCK_RAW:
        return "raw" + v6
    if sock.proto in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6):
        return "icmp" + v6
    if sock.proto == _IPPROTO_UDPLITE:
        return "udplite" + v6
    return "udp" + v6


def _unmapped(address: str) -> str:
    return address[7:] if address.startswith("::ffff:") and "." in address else address


def _endpoint(address) -> tuple:
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
        return _unmapped(str(address[0])), address[1]
    return UNKNOWN_ADDRESS, 0


def _examine(fd: int, inode: int, uid: int) -> tuple:
    """A record of the socket ptfast now holds a duplicate of."""
    import socket        # here: most scans never examine a socket this way
    sock = socket.socket(fileno=fd)
    try:
        proto = _table_name(sock)
        if sock.family == _ETH_PACKET:
            # (interface name, protocol in host order, ...); an unbound one has no interface
            interface, protocol = sock.getsockname()[:2]
            local = (interface or "*", protocol if isinstance(protocol, int) else 0)
            remote, state = ("*", 0), "UNCONN"
        else:
            local = _endpoint(sock.getsockname())
            try:
                remote = _endpoint(sock.getpeername())
                connected = True
            except OSError:
                remote = ("::" if sock.family == socket.AF_INET6 else "0.0.0.0", 0)
                connected = False
            if sock.type == socket.SOCK_STREAM and proto.startswith("tcp"):
                code = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
                state = STREAM_STATE_NAMES[code] if code < len(STREAM_STATE_NAMES) else \
                    UNKNOWN_STATE
            else:
                state = "ESTABLISHED" if connected else "UNCONN"
        try:
            ns_fd = fcntl.ioctl(sock.fileno(), _SIOCGSKNS)
            try:
                netns = os.fstat(ns_fd).st_ino
            finally:
                os.close(ns_fd)
        except OSError:
            netns = 0
    finally:
        sock.detach()
    return (inode, proto, local[0], local[1], remote[0], remote[1], state, uid, netns)


def identify(proc_root: str, pid: int, tid: int, fd: str):
    """The network socket fd ``fd`` of task ``tid`` of process ``pid`` holds now (tid == pid
    for the process's own fd table): a record tuple, or None when it holds none. A socket
    re-created on the same fd since it was listed (churn) is the one examined: the process
    holds it now."""
    task = f"{proc_root}/{pid}" if tid == pid else f"{proc_root}/{pid}/task/{tid}"
    path = f"{task}/fd/{fd}"
    network, name, info = is_network(path)
    if not network:
        return None
    inode, uid = info.st_ino, info.st_uid
    if proc_root == "/proc":
        try:
            pidfd = (os.pidfd_open(pid) if tid == pid
                     else os.pidfd_open(tid, _PIDFD_THREAD))     # type: ignore[call-arg]
        except (AttributeError, OSError, TypeError):
            pidfd = -1
        if pidfd >= 0:
            try:
                duplicate = _syscall(_SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            except OSError as exc:
                if exc.errno == errno.EBADF:        # closed meanwhile: it is gone
                    return None
                duplicate = -1
            finally:
                os.close(pidfd)
            if duplicate >= 0:
                try:
                    held = os.fstat(duplicate)
                    if not stat.S_ISSOCK(held.st_mode):
                        return None                 # the fd now holds something else
                    return _examine(duplicate, held.st_ino, held.st_uid)
                except OSError:
                    return None
                finally:
                    os.close(duplicate)
    # no way to open it here (a kernel before 5.6, a prepared tree): its protocol is known
    return (inode, _TABLE_NAMES.get(name, name.lower()), UNKNOWN_ADDRESS, 0, UNKNOWN_ADDRESS,
            0, UNKNOWN_STATE, uid, 0)


_USER_FILE = re.compile(rb"\s*\d+: (.*)")


def io_uring_files(fdinfo: bytes) -> list:
    """The files registered with an io_uring (its fdinfo's ``UserFiles:`` list), as the
    targets an fd link would show (``socket:[123]``, a path)."""
    files = []
    listing = False
    for line in fdinfo.split(b"\n"):
        if line.startswith(b"UserFiles:"):
            listing = True
            continue
        if listing:
            match = _USER_FILE.fullmatch(line)
            if match is None:
                break
            files.append(os.fsdecode(match.group(1)))
    return files



_HEX = frozenset(b"0123456789abcdefABCDEF")


def packet_records(data: bytes, netns: int) -> list:
    """Record tuples of /proc/net/packet (sk RefCnt Type Proto Iface R Rmem User Inode; the
    protocol in hex, in host order). A line that does not parse is skipped."""
    records = []
    for line in data.split(b"\n")[1:]:
        fields = [field for field in line.split(b" ") if field]
        if len(fields) <= PACKET_INODE_COLUMN:
            continue
        inode, uid, interface = (fields[PACKET_INODE_COLUMN], fields[PACKET_UID_COLUMN],
                                 fields[PACKET_IFACE_COLUMN])
        protocol = fields[PACKET_PROTO_COLUMN]
        if not (inode.isdigit() and len(inode) <= 20 and uid.isdigit() and len(uid) <= 10
                and interface.isdigit() and len(interface) <= 10
                and 1 <= len(protocol) <= 4 and _HEX.issuperset(protocol)):
            continue
        if int(inode) == 0 or int(inode) >= 1 << 64 or int(uid) >= 1 << 32:
            continue
        records.append((int(inode), PACKET_TABLE,
                        f"if:{int(interface)}" if int(interface) else "*", int(protocol, 16),
                        "*", 0, "UNCONN", int(uid), netns))
    return records
