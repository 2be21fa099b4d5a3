"""The kernel's proc connector: fork, exec, uid and exit events as they happen.

A netlink socket (NETLINK_CONNECTOR, group CN_IDX_PROC) asks the kernel for every process
event (PROC_CN_MCAST_LISTEN). The kernel answers only a caller with CAP_NET_ADMIN in the initial
user namespace, in the initial pid namespace (it reports pids as the host sees them) and the
initial network namespace (the connector's kernel socket lives only there). ``open_reader``
says, as a ``Mode``, either "live" or why not ("polling, because ..."), for `status` and the
metrics.

Events can be lost: the socket's receive buffer overruns (recv fails once with ENOBUFS), and
the kernel numbers each CPU's events (cn_msg.seq, with proc_event.cpu), so a jump in a CPU's
numbers counts the events that never arrived. Either sets ``resync_needed``: the service must
walk /proc at once, since it no longer knows every process. After an overrun the kernel drops
every new event for the socket until its queue is read empty, so the reader drains it in
batches and a loss shows up as one gap per CPU.

Pure Python (socket and struct), chosen by measure (benchmarks/live.py, docs/benchmarks.md):
2.7 ms of CPU per 1,000 events in a storm of 5,000 forks/s, 0.23% of a core at 50 execs/s when
woken at most every 0.1 s; a compiled reader (recvmmsg) saved 0.05% of a core there, and
pyroute2's cost 14-17 times more per event.
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import struct
import time
from typing import List, NamedTuple, Optional, Tuple

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33        # socket.SO_RCVBUFFORCE is missing on some Pythons
CAP_NET_ADMIN = 12
#: inode numbers of the initial namespaces (include/linux/proc_ns.h), fixed since Linux 3.8
INITIAL_USER_NS = 0xEFFFFFFD
INITIAL_PID_NS = 0xEFFFFFFC

# proc_event.what
NONE = 0x00000000          # the kernel's acknowledgement of a LISTEN or IGNORE
FORK = 0x00000001
EXEC = 0x00000002
UID = 0x00000004
EXIT = 0x80000000
KIND_NAMES = {FORK: "fork", EXEC: "exec", UID: "uid", EXIT: "exit"}

#: nlmsghdr (len, type, flags, seq, pid), cn_msg (idx, val, seq, ack, len, flags),
#: proc_event (what, cpu, timestamp_ns); the event's data follows at offset 52
_HEADER = struct.Struct("=IHHII IIIIHH IIQ")
_DATA = _HEADER.size
_FORK = struct.Struct("=iiii")       # parent_pid, parent_tgid, child_pid, child_tgid
_TWO = struct.Struct("=ii")          # process_pid, process_tgid (exec; the start of exit)
_ID = struct.Struct("=iiII")         # process_pid, process_tgid, ruid, euid
_EXIT_PARENT = struct.Struct("=ii")  # parent_pid, parent_tgid, after exit_code, exit_signal
_LISTEN = struct.Struct("=IHHII IIIIHH I")
#: one datagram is one event of at most ~100 bytes; 512 leaves room for new kinds' data
_DATAGRAM = 512
DEFAULT_RECEIVE_BUFFER = 16 * 1024 * 1024


class Event(NamedTuple):
    """One process event. ``pid`` is the thread, ``tgid`` the process (they are equal for a
    process's main thread); ``parent_*`` are set for fork (the forking thread and its process)
    and, on kernels that report them (5.x on), for exit; ``ruid``/``euid`` for uid.
    ``timestamp_ns`` is the kernel's CLOCK_MONOTONIC time of the event (time.monotonic_ns)."""
    kind: int
    pid: int
    tgid: int
    parent_pid: int
    parent_tgid: int
    ruid: int
    euid: int
    timestamp_ns: int


class Mode(NamedTuple):
    """Which source of process events runs: live (the connector) or polling, and why."""
    live: bool
    reason: str = ""

    def __str__(self) -> str:
        return "live" if self.live else f"polling, because {self.reason}"


class Unavailable(Exception):
    """The connector cannot be used here; the message says why, for an admin."""


def namespace_inode(kind: str, pid: str = "self") -> Optional[int]:
    try:
        link = os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None
    try:
        return int(link[link.index("[") + 1:-1])
    except ValueError:
        return None


def _has_net_admin() -> bool:
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def unavailable_reason() -> Optional[str]:
    """Why the connector cannot serve this process, judged without opening it, or None.
    (The kernel ignores a LISTEN from another pid or user namespace without an answer, so
    these must be known beforehand.)"""
    if not _has_net_admin():
        return "the service lacks CAP_NET_ADMIN (not root?)"
    user_ns = namespace_inode("user")
    if user_ns is not None and user_ns != INITIAL_USER_NS:
        return "it runs in a user namespace other than the host's (a container?)"
    pid_ns = namespace_inode("pid")
    if pid_ns is not None and pid_ns != INITIAL_PID_NS:
        return "it runs in a pid namespace other than the host's (a container?)"
    # in the initial pid namespace /proc/1 is the host's init
    net_ns, host_net_ns = namespace_inode("net"), namespace_inode("net", "1")
    if net_ns is not None and host_net_ns is not None and net_ns != host_net_ns:
        return "it runs in a network namespace other than the host's"
    return None


def _socket_error_reason(exc: OSError, what: str) -> str:
    if exc.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
        return f"the kernel has no proc connector ({what}: {os.strerror(exc.errno)}; " \
               "CONFIG_CONNECTOR and CONFIG_PROC_EVENTS)"
    if exc.errno in (errno.EPERM, errno.EACCES):
        return f"the kernel refused the proc connector ({what}: {os.strerror(exc.errno)}; " \
               "no CAP_NET_ADMIN, or a seccomp or LSM policy)"
    if exc.errno == errno.ECONNREFUSED:
        return "it runs in a network namespace other than the host's (the proc connector " \
               f"lives only in the host's; {what}: {os.strerror(exc.errno)})"
    return f"the proc connector failed ({what}: {exc.strerror or exc})"


class ProcEvents:
    """A listening proc connector socket, non-blocking; ``read`` drains it in batches.

    Counters (for the metrics): ``received`` events, ``overruns`` (ENOBUFS: the receive
    buffer overflowed), ``gaps`` (jumps in a CPU's numbering) and ``missed`` (the events those
    jumps skipped: a lower bound, since a CPU's numbering is known from its first event heard,
    and a loss shows once that CPU's next event arrives). Any loss sets ``resync_needed`` until ``take_resync`` is called."""

    def __init__(self, receive_buffer: int = DEFAULT_RECEIVE_BUFFER,
                 answer_timeout: float = 2.0) -> None:
        self.acknowledgements_numbered = False
        reason = unavailable_reason()
        if reason:
            raise Unavailable(reason)
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            raise Unavailable(_socket_error_reason(exc, "socket")) from None
        try:
            self.set_receive_buffer(receive_buffer)
            try:
                self.sock.bind((0, CN_IDX_PROC))
            except OSError as exc:
                raise Unavailable(_socket_error_reason(exc, "bind")) from None
            self._request(PROC_CN_MCAST_LISTEN, answer_timeout)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self._buffer = bytearray(_DATAGRAM)
        self._next_seq: dict = {}          # cpu -> the number its next event should carry
        self.received = 0
        self.overruns = 0
        self.gaps = 0
        self.missed = 0
        self.resync_needed = False
        self.receive_buffer = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def set_receive_buffer(self, size: int) -> None:
        """At least ``size`` bytes of waiting events (the kernel doubles it for its overhead)."""
        # FORCE passes net.core.rmem_max (root only); plain RCVBUF is capped by it
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def _send(self, operation: int) -> Tuple[int, int]:
        """Send LISTEN or IGNORE; the kernel acts on it before sendto() returns. The
        sequence and acknowledgement numbers sent, to recognise the answer by."""
        seq, ack = random.randrange(1, 2 ** 31), random.randrange(1, 2 ** 31)
        message = _LISTEN.pack(_LISTEN.size, NLMSG_DONE, 0, seq, 0,
                               CN_IDX_PROC, CN_VAL_PROC, seq, ack, 4, 0, operation)
        try:
            self.sock.sendto(message, (0, 0))
        except OSError as exc:
            raise Unavailable(_socket_error_reason(exc, "send")) from None
        return seq, ack

    def _request(self, operation: int, timeout: float) -> None:
        """Send LISTEN and wait for the kernel's acknowledgement, which comes to every
        listener: ours is the one that answers our random sequence number."""
        seq, ack = self._send(operation)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise Unavailable("the kernel did not answer the proc connector's listen "
                                  "request (no CONFIG_PROC_EVENTS, or another namespace)")
            try:
                data, (sender, _) = self.sock.recvfrom(_DATAGRAM)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    continue          # others' events overran us meanwhile: keep waiting
                raise Unavailable(_socket_error_reason(exc, "recv")) from None
            if len(data) < _DATA + 4 or sender != 0:
                continue
            fields = _HEADER.unpack_from(data)
            if fields[11] != NONE or fields[8] != ack + 1:
                continue          # an event, or another listener's acknowledgement
            # Older kernels answer with our sequence number; newer ones (send_msg()) number
            # acknowledgements like events, per CPU, so others' count in the numbering
            self.acknowledgements_numbered = fields[7] != seq
            (error,) = struct.unpack_from("=I", data, _DATA)
            if error:
                raise Unavailable(_socket_error_reason(OSError(error, os.strerror(error)),
                                                       "listen"))
            return

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int = 4096) -> List[Event]:
        """The events waiting now, at most ``limit``; an empty list when none wait."""
        events: List[Event] = []
        buffer, recvfrom_into, next_seq = self._buffer, self.sock.recvfrom_into, self._next_seq
        header, data_at = _HEADER.unpack_from, _DATA
        numbered = self.acknowledgements_numbered
        append = events.append
        while len(events) < limit:
            try:
                size, (sender, _) = recvfrom_into(buffer)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1
                self.resync_needed = True
                continue
            if size < data_at or sender != 0:
                continue          # only the kernel (port 0) speaks for the connector
            (_, _, _, _, _, idx, val, seq, _, _, _, what, cpu, stamp) = header(buffer)
            if idx != CN_IDX_PROC or val != CN_VAL_PROC:
                continue
            if what == NONE and not numbered:
                continue
            expected = next_seq.get(cpu)
            if expected is not None and seq != expected:
                skipped = (seq - expected) & 0xFFFFFFFF
                if skipped < 0x80000000:      # behind means a duplicate: nothing lost
                    self.gaps += 1
                    self.missed += skipped
                    self.resync_needed = True
            next_seq[cpu] = (seq + 1) & 0xFFFFFFFF
            if what == FORK:
                parent_pid, parent_tgid, pid, tgid = _FORK.unpack_from(buffer, data_at)
                append(Event(FORK, pid, tgid, parent_pid, parent_tgid, -1, -1, stamp))
            elif what == EXEC:
                pid, tgid = _TWO.unpack_from(buffer, data_at)
                append(Event(EXEC, pid, tgid, 0, 0, -1, -1, stamp))
            elif what == UID:
                pid, tgid, ruid, euid = _ID.unpack_from(buffer, data_at)
                append(Event(UID, pid, tgid, 0, 0, ruid, euid, stamp))
            elif what == EXIT:
                pid, tgid = _TWO.unpack_from(buffer, data_at)
                parent_pid = parent_tgid = 0
                if size >= data_at + 24:
                    parent_pid, parent_tgid = _EXIT_PARENT.unpack_from(buffer, data_at + 16)
                append(Event(EXIT, pid, tgid, parent_pid, parent_tgid, -1, -1, stamp))
            # other kinds (gid, sid, ptrace, comm, coredump) count only for the numbering
        self.received += len(events)
        return events

    def take_resync(self) -> bool:
        """True once after events were lost: the caller walks /proc now."""
        needed, self.resync_needed = self.resync_needed, False
        return needed

    def counters(self) -> dict:
        return {"received": self.received, "overruns": self.overruns, "gaps": self.gaps,
                "missed": self.missed}

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        try:
            # IGNORE lets the kernel stop building events when no listener is left; it acts
            # on it within sendto(). Not waited for: newer kernels (6.18 here) never deliver
            # the answer to a socket that asked to ignore, so a wait ran to its timeout,
            # half a second added to every stop of the service
            self._send(PROC_CN_MCAST_IGNORE)
        except (Unavailable, OSError):
            pass
        self.sock.close()

    def __enter__(self) -> "ProcEvents":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_reader(receive_buffer: int = DEFAULT_RECEIVE_BUFFER
                ) -> Tuple[Optional[ProcEvents], Mode]:
    """The reader and Mode(live=True), or None and the Mode that says why polling runs."""
    try:
        return ProcEvents(receive_buffer), Mode(True)
    except Unavailable as exc:
        return None, Mode(False, str(exc))
