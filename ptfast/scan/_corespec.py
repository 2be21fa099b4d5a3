"""What both scanner cores agree on, defined once.

The compiled core (``src_pyx/_procscan.pyx``) and its pure-Python twin
(``ptfast/scan/_procscan_py.py``) take their constants, tables and record fields from here;
``ptfast/scan/_procscan.pyi`` describes the records for type checkers, and
``tests/test_contract.py`` checks that the three agree. Whatever else reads ``/proc/PID/stat``
(``ptfast.scan.procfs``, the tests) names its fields with the ``STAT_*`` numbers below, never with
bare indexes.
"""

from __future__ import annotations

# -- /proc/PID/stat (proc(5)) --------------------------------------------------------------
# Fields are numbered as in proc(5): 1 is the pid, 2 the comm. The comm may hold spaces and ')',
# so the fields are counted from its LAST ')', which field 3 follows.
STAT_STATE = 3          # one letter: R, S, D, Z, ...
STAT_PPID = 4
STAT_PGRP = 5
STAT_SESSION = 6
STAT_FLAGS = 9          # PF_* flags
STAT_STARTTIME = 22     # clock ticks after boot: with the pid, the identity of a process
STAT_VSIZE = 23         # bytes
STAT_RSS = 24           # pages
FIRST_AFTER_COMM = STAT_STATE
#: A stat line shorter than this (counted from field 3) is not a process's: it is never used.
STAT_FIELDS_NEEDED = STAT_RSS - FIRST_AFTER_COMM + 1

PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread
#: include/linux/sched.h: the task was forked and has not exec'd since. Only the kernel sets it
#: (fork) and clears it (exec); stat shows it to every reader, whatever the ASLR setting.
PF_FORKNOEXEC = 0x00000040

#: include/linux/threads.h: no PID is larger. A /proc entry is a PID when its name is digits
#: without a leading zero, at most PID_MAX_DIGITS of them, and its value at most this.
PID_MAX_LIMIT = 1 << 22
PID_MAX_DIGITS = len(str(PID_MAX_LIMIT))

#: Per-process files read with ONE read() of at most this many bytes (the kernel writes stat and
#: status whole, far below it); longer content, possible only in a prepared tree, is cut there.
SMALL_FILE_MAX = 4096
#: /proc/uptime: one read of at most this many bytes.
UPTIME_MAX = 128
#: Link targets (exe, fd) of this length or more are not used: the kernel never writes one.
LINK_MAX = 4096


def parse_stat(raw: bytes) -> list | None:
    """The fields of a ``/proc/PID/stat`` line from number 3 on; None when it is not one."""
    close = raw.rfind(b")")
    if close < 0:
        return None
    fields = raw[close + 1:].split()
    return fields if len(fields) >= STAT_FIELDS_NEEDED else None


def stat_field(fields: list, number: int) -> bytes:
    """Field ``number`` (``STAT_*``) of what ``parse_stat`` returned."""
    return fields[number - FIRST_AFTER_COMM]


# -- /proc/PID/status ----------------------------------------------------------------------
#: Lines of status the scan reads.
STATUS_UID = b"Uid:"          # the last field: the filesystem uid, as lfd reads it
STATUS_THREADS = b"Threads:"

# -- /proc/PID/exe -----------------------------------------------------------------------
#: The kernel appends this to the target of an exe link whose file was unlinked; a file may also
#: be NAMED so, so it is only a hint.
DELETED_SUFFIX = " (deleted)"
#: kcmp(2)'s "do these two tasks share one fd table?" (include/uapi/linux/kcmp.h)
KCMP_FILES = 2
#: Fd tables of a process's threads read beyond its own: those of threads that unshared theirs
#: (unshare(CLONE_FILES)), in /proc/PID/task order. Each one is read whole and its fds kept
#: until the process is sorted, and a customer may make thousands of threads that each copy a
#: table of thousands of fds, so both cores stop here and say so (FD_TABLES_BEYOND_BOUND).
MAX_FD_TABLES = 64

#: The fd link target of an io_uring instance, whose registered files its fdinfo lists.
IO_URING_LINK = "anon_inode:[io_uring]"

# -- socket tables ----------------------------------------------------------------------
#: The network namespace of a socket or a process that could not be told (no real namespace has
#: inode 0).
NETNS_UNKNOWN = 0
#: Protocols (table names without their "6") whose sockets have ports. Every other socket's
#: local_port and remote_port are NO_PORT: what /proc/net shows in that column for them is an
#: ICMP echo identifier (icmp), an IP protocol number (raw) or an ethertype (packet), and what
#: the probe cannot classify has nothing there at all.
PORTED_PROTOCOLS = frozenset({"tcp", "udp", "udplite", "sctp", "dccp", "mptcp"})
NO_PORT = 0


def has_ports(proto: str) -> bool:
    return (proto[:-1] if proto.endswith("6") else proto) in PORTED_PROTOCOLS


#: Column of a /proc/net table line (split on spaces) holding the uid that created the socket.
TABLE_UID_COLUMN = 7
#: ``/proc/net/NAME`` tables of network sockets read for every network namespace, in this
#: order, all in the tcp/udp format.
SOCKET_TABLES = ("tcp", "udp", "tcp6", "udp6", "raw", "raw6", "udplite", "udplite6", "icmp",
                 "icmp6")
#: The packet sockets' table (its own format: sk RefCnt Type Proto Iface R Rmem User Inode).
PACKET_TABLE = "packet"
PACKET_PROTO_COLUMN, PACKET_IFACE_COLUMN, PACKET_UID_COLUMN, PACKET_INODE_COLUMN = 3, 4, 7, 8
#: Tables of sockets that reach no network (name, column of the inode), read only when an
#: inspected process holds a socket found in no network table.
LOCAL_TABLES = (("unix", 6), ("netlink", 9))

#: State codes of include/net/tcp_states.h, by number. Datagram sockets (udp, raw) use the same
#: codes; for them 7 (CLOSE) means an unconnected socket, which ``ss`` calls UNCONN.
STREAM_STATE_NAMES = (
    "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
)
DGRAM_STATE_NAMES = STREAM_STATE_NAMES[:7] + ("UNCONN",) + STREAM_STATE_NAMES[8:]
UNKNOWN_STATE = "UNKNOWN"


# -- sock_diag netlink -----------------------------------------------------------------
# The scanner's OWN network namespace (the host's, when it reads the live /proc) has its tcp and
# udp tables read through NETLINK_SOCK_DIAG when it can: /proc/net/tcp lists every TIME_WAIT
# socket, which has no inode and so only costs (3 to 4 times slower at 100,000 sockets;
# docs/benchmarks.md). /proc/net stays the fallback (netlink refused, an old kernel, a prepared tree)
# and serves the other tables and every other namespace, whose netlink the scanner cannot reach.
AF_INET, AF_INET6 = 2, 10                   # include/linux/socket.h
IPPROTO_TCP, IPPROTO_UDP = 6, 17            # include/uapi/linux/in.h
#: States asked of sock_diag for TCP, a bit per state code: every one in which a socket can have
#: an inode. Not TIME_WAIT nor SYN_RECV (and so not the request sockets, NEW_SYN_RECV, which the
#: kernel adds to SYN_RECV): /proc/net/tcp lists those with inode 0. Not an all-ones mask
#: either: on recent kernels (6.18 here) that also dumps TCP sockets bound but neither listening
#: nor connected (TCP_BOUND_INACTIVE), which /proc/net/tcp does not list.
SOCK_DIAG_STREAM_STATES = sum(1 << code for code, name in enumerate(STREAM_STATE_NAMES)
                              if name not in ("UNKNOWN", "SYN_RECV", "TIME_WAIT", "NEW_SYN_RECV"))
#: UDP: every state (UNCONN and ESTABLISHED are the ones a datagram socket has).
SOCK_DIAG_DGRAM_STATES = 0xFFFFFFFF
#: table -> (address family, IP protocol, states) of its sock_diag request.
SOCK_DIAG_TABLES = {
    "tcp": (AF_INET, IPPROTO_TCP, SOCK_DIAG_STREAM_STATES),
    "udp": (AF_INET, IPPROTO_UDP, SOCK_DIAG_DGRAM_STATES),
    "tcp6": (AF_INET6, IPPROTO_TCP, SOCK_DIAG_STREAM_STATES),
    "udp6": (AF_INET6, IPPROTO_UDP, SOCK_DIAG_DGRAM_STATES),
}


def is_stream_table(table: str) -> bool:
    return table.startswith("tcp")


def is_ipv6_table(table: str) -> bool:
    return table.endswith("6")


# -- records -----------------------------------------------------------------------------
#: Attributes of a Process record, in a stable order (both cores, the .pyi, JSON dumps).
PROCESS_FIELDS = ("pid", "ppid", "pgrp", "session", "uid", "start_time", "age",
                  "vm_size_bytes", "vm_rss_bytes", "exe", "exe_deleted", "exe_dev", "exe_ino",
                  "exe_uid", "exe_mode", "cmdline", "threads", "fork_no_exec", "sockets",
                  "open_files", "incomplete")
#: Attributes of a Socket record.
SOCKET_FIELDS = ("inode", "proto", "local_ip", "local_port", "remote_ip", "remote_port",
                 "state", "uid", "netns")
#: exe_uid when the executable could not be stat()ed (0 would claim root owns it).
UNKNOWN_UID = -1

#: Counters of one scan: processes returned, kernel threads skipped, processes that vanished
#: mid-read, zombies (no thread left to read), processes whose exe or fds were not readable
#: (permission), processes returned only partly inspected (``incomplete`` says why), network
#: namespaces read, sockets found in no table and identified from their fd, socket tables read
#: through sock_diag netlink instead of /proc/net (0 when it was not available).
SCAN_COUNTERS = ("processes", "kernel_threads", "vanished", "zombies", "denied", "incomplete",
                 "namespaces", "probed", "sock_diag")

#: Why a process returned was not fully inspected (its ``incomplete``; "" when it was).
EXE_PATH_TOO_LONG = "its executable's path is longer than PATH_MAX: exe not readable"
FDS_DENIED = "its open files are not readable (permission denied)"
FDS_GONE = "it exited before its open files were read"
FD_TABLES_BEYOND_BOUND = (f"more than {MAX_FD_TABLES} of its threads have an fd table of their "
                          f"own: only the first {MAX_FD_TABLES} were read")



def new_counters() -> dict:
    return dict.fromkeys(SCAN_COUNTERS, 0)
