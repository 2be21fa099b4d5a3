"""What both cores do, alike and rarely, for what the socket tables do not show.

* A socket an inspected process holds whose inode is in no table read (it was created after the
  tables were read, in a throwaway network namespace, or is of a kind without a table): the fd
  itself is examined. ``getxattr("system.sockprotoname")`` on ``/proc/PID/fd/N`` names its
  protocol (every kernel ptfast runs on); unix and netlink sockets are no network. A network
  socket is then duplicated with ``pidfd_getfd`` (Linux 5.6+; a thread's own fd table needs
  PIDFD_THREAD, Linux 6.9+) and asked for its addresses (getsockname, getpeername), its TCP
  state (TCP_INFO) and its network namespace (SIOCGSKNS). Where that is not possible, or the
  protocol is none of the tables' (AF_VSOCK, XDP, any family ptfast does not know), the socket
  is still returned, protocol-only: its protocol, unknown addresses, no ports. Never dropped.
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

from ptfast.scan._corespec import (NETNS_UNKNOWN, NO_PORT, PACKET_IFACE_COLUMN,
                                   PACKET_INODE_COLUMN, PACKET_PROTO_COLUMN, PACKET_TABLE,
                                   PACKET_UID_COLUMN, STREAM_STATE_NAMES, UNKNOWN_STATE, has_ports)

UNKNOWN_ADDRESS = "?"
#: Protocol names (sockprotoname) of sockets that reach no network.
_LOCAL_PROTOCOLS = ("UNIX", "NETLINK", "ALG")
#: sockprotoname -> ptfast's table name: the protocols whose addresses the probe reads. Any
#: other (AF_VSOCK, XDP, a family this list does not know) is returned protocol-only.
_TABLE_NAMES = {"TCP": "tcp", "TCPv6": "tcp6", "UDP": "udp", "UDPv6": "udp6",
                "UDP-Lite": "udplite", "UDPLITEv6": "udplite6", "PING": "icmp",
                "PINGv6": "icmp6", "RAW": "raw", "RAWv6": "raw6", "PACKET": "packet",
                "MPTCP": "mptcp", "MPTCPv6": "mptcp6", "SCTP": "sctp", "SCTPv6": "sctp6",
                "DCCP": "dccp", "DCCPv6": "dccp6"}
#: What is kept of a protocol name the kernel gives that is in no table (it comes from the
#: kernel, but it reaches logs and mail: only these characters, at most this long).
_NAME_CHARACTERS = re.compile(r"[^a-z0-9_.+-]")
_NAME_MAX = 32
UNKNOWN_PROTOCOL = "unknown"
_SYS_PIDFD_GETFD = 438        # the same on every architecture (a syscall added in 5.6)
_PIDFD_THREAD = os.O_EXCL     # include/uapi/linux/pidfd.h
_SIOCGSKNS = 0x894C           # include/uapi/linux/sockios.h
_ETH_PACKET = 17              # AF_PACKET
_libc = None


def syscall(*args) -> int:
    """A raw system call without a wrapper in os (pidfd_getfd; kcmp, for the twin's fd
    tables): its result, or OSError (ENOSYS where ctypes is missing)."""
    global _libc
    try:
        import ctypes
    except ImportError:
        raise OSError(errno.ENOSYS, "no ctypes: system call not available") from None
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    result = _libc.syscall(*args)
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return result


def _protocol_name(path: str) -> str:
    """The kernel's name of the protocol of the socket ``path`` opens (system.sockprotoname);
    OSError when it holds none or cannot be asked."""
    return os.getxattr(path, "system.sockprotoname").rstrip(b"\0").decode("ascii", "replace")


def is_network(path: str):
    """(network?, protocol name, stat) of the socket the fd link ``path`` holds now; (None, "",
    None) when it holds none. A socket that does not name its protocol counts as network."""
    try:
        info = os.stat(path)
    except OSError:
        return None, "", None
    if not stat.S_ISSOCK(info.st_mode):
        return None, "", None
    try:
        name = _protocol_name(path)
    except OSError:
        return True, "", info           # kept: protocol() makes it "unknown"
    return not name.startswith(_LOCAL_PROTOCOLS), name, info


def protocol(kernel_name: str) -> str:
    """ptfast's name for the protocol the kernel calls ``kernel_name``: its table name, else the
    kernel's own name in lower case (``af_vsock``, ``xdp``), harmless characters only."""
    known = _TABLE_NAMES.get(kernel_name)
    if known is not None:
        return known
    return _NAME_CHARACTERS.sub("", kernel_name.lower())[:_NAME_MAX] or UNKNOWN_PROTOCOL


def protocol_only(inode: int, proto: str, uid: int, netns: int = NETNS_UNKNOWN) -> tuple:
    """The record of a socket of which only the protocol is known: never dropped."""
    return (inode, proto, UNKNOWN_ADDRESS, NO_PORT, UNKNOWN_ADDRESS, NO_PORT, UNKNOWN_STATE, uid,
            netns)


def unexamined(inode: int, holder_uid: int) -> tuple:
    """The record of a socket in no table that has no fd to examine (an io_uring registered
    file whose fd was closed): nothing is known of it but that it is no unix or netlink socket,
    so it counts as its holder's own."""
    return protocol_only(inode, UNKNOWN_PROTOCOL, holder_uid)


def _unmapped(address: str) -> str:
    return address[7:] if address.startswith("::ffff:") and "." in address else address


def _endpoint(address, ported: bool) -> tuple:
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
        return _unmapped(str(address[0])), address[1] if ported else NO_PORT
    return UNKNOWN_ADDRESS, NO_PORT


def _namespace(fd: int) -> int:
    try:
        ns_fd = fcntl.ioctl(fd, _SIOCGSKNS)
    except OSError:
        return NETNS_UNKNOWN
    try:
        return os.fstat(ns_fd).st_ino
    except OSError:
        return NETNS_UNKNOWN
    finally:
        os.close(ns_fd)


def _examine(fd: int, inode: int, uid: int, proto: str) -> tuple:
    """A record of the socket ptfast now holds a duplicate of, whose protocol is ``proto``:
    addresses and state when it is one of the tables' protocols and answers, else
    protocol-only."""
    import socket        # here: most scans never examine a socket this way
    netns = _namespace(fd)
    if proto not in _TABLE_NAMES.values():
        return protocol_only(inode, proto, uid, netns)
    ported = has_ports(proto)
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return protocol_only(inode, proto, uid, netns)
    try:
        if sock.family == _ETH_PACKET:
            # (interface name, protocol, ...): an unbound one has no interface; the protocol
            # (an ethertype) is no port
            interface = sock.getsockname()[0]
            local, remote, state = (interface or "*", NO_PORT), ("*", NO_PORT), "UNCONN"
        else:
            local = _endpoint(sock.getsockname(), ported)
            try:
                remote = _endpoint(sock.getpeername(), ported)
                connected = True
            except OSError:
                remote = ("::" if sock.family == socket.AF_INET6 else "0.0.0.0", NO_PORT)
                connected = False
            if proto.startswith("tcp"):
                code = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
                state = STREAM_STATE_NAMES[code] if code < len(STREAM_STATE_NAMES) else \
                    UNKNOWN_STATE
            else:
                state = "ESTABLISHED" if connected else "UNCONN"
    except OSError:
        return protocol_only(inode, proto, uid, netns)
    finally:
        sock.detach()
    return (inode, proto, local[0], local[1], remote[0], remote[1], state, uid, netns)


def identify(proc_root: str, pid: int, tid: int, fd: str):
    """The network socket fd ``fd`` of task ``tid`` of process ``pid`` holds now (tid == pid
    for the process's own fd table): a record tuple, or None when it holds none. A socket
    re-created on the same fd since it was listed (churn) is the one examined: the process
    holds it now. A network socket is never dropped: what cannot be examined is returned with
    its protocol alone."""
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
                duplicate = syscall(_SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            except OSError as exc:
                if exc.errno == errno.EBADF:        # closed meanwhile: it is gone
                    return None
                duplicate = -1
            finally:
                os.close(pidfd)
            if duplicate >= 0:
                try:
                    return _examine_duplicate(duplicate, inode, uid, name)
                finally:
                    os.close(duplicate)
    # no way to open it here (a kernel before 5.6, a prepared tree): its protocol is known
    return protocol_only(inode, protocol(name), uid)


def _examine_duplicate(duplicate: int, inode: int, uid: int, name: str):
    """The record of the socket ``duplicate`` (ptfast's own fd) holds: what the fd now holds,
    which may differ from what was listed (churn); None when that is no network socket."""
    try:
        held = os.fstat(duplicate)
    except OSError:
        return protocol_only(inode, protocol(name), uid)
    if not stat.S_ISSOCK(held.st_mode):
        return None                                 # the fd now holds something else
    if held.st_ino != inode:
        try:
            name = _protocol_name(f"/proc/self/fd/{duplicate}")
        except OSError:
            return protocol_only(held.st_ino, UNKNOWN_PROTOCOL, held.st_uid)
        if name.startswith(_LOCAL_PROTOCOLS):
            return None
    return _examine(duplicate, held.st_ino, held.st_uid, protocol(name))


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
        # the protocol (an ethertype) is checked as the kernel writes it, but is no port
        records.append((int(inode), PACKET_TABLE,
                        f"if:{int(interface)}" if int(interface) else "*", NO_PORT,
                        "*", NO_PORT, "UNCONN", int(uid), netns))
    return records
