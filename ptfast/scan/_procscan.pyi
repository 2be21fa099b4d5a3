"""Type stubs of the compiled scanner core (src_pyx/_procscan.pyx).

Same API and results as the pure-Python twin, ptfast.scan._procscan_py, whose docstring states the
contract; constants, tables and the field lists are in ptfast.scan._corespec
(tests/test_contract.py checks that these stubs, the twin and the compiled classes agree).
"""

from typing import Callable, Dict, List, Optional, Tuple, Union

class Socket:
    """One network socket: a record of a socket table of some network namespace (/proc/net
    or NETLINK_SOCK_DIAG), or one found in no table and examined from its fd."""
    inode: int
    proto: str          # a name of _corespec.SOCKET_TABLES, or "packet"; another kind seen
                        # only from its fd: the kernel's name of its protocol in lower case
                        # ("af_vsock", "xdp"), "unknown" when it has no fd to ask (io_uring)
    local_ip: str       # IPv4-mapped IPv6 is shown as IPv4; "?" when not known
    local_port: int     # _corespec.NO_PORT for a protocol without ports (has_ports)
    remote_ip: str
    remote_port: int
    state: str          # LISTEN, ESTABLISHED, ... ; UNCONN for unconnected udp/raw
    uid: int            # the uid that created the socket (only root can make one of uid 0);
                        # for an "unknown" one, its holder's
    netns: int          # inode of the network namespace the table came from, or
                        # _corespec.NETNS_UNKNOWN

class Process:
    """Facts about one process; sockets/open_files are None unless fds were inspected."""
    pid: int
    ppid: int
    pgrp: int
    session: int
    uid: int            # filesystem uid from /proc/PID/status (never the owner of /proc/PID)
    start_time: int     # clock ticks after boot: with pid, the identity of a process
    age: float          # seconds since the process started
    vm_size_bytes: int
    vm_rss_bytes: int
    exe: str            # " (deleted)" removed when exe_deleted
    exe_deleted: bool   # decided from the file (see the twin's contract), never from a name
                        # ending in "(deleted)" alone
    exe_dev: int        # the file the process runs: device and inode (0 when not readable),
    exe_ino: int        #   its identity whatever its path says
    exe_uid: int        # its owner (_corespec.UNKNOWN_UID when not readable)
    exe_mode: int       # its st_mode
    cmdline: str        # NULs as spaces, trailing white space removed; bad UTF-8 as surrogates
    threads: int        # the Threads: line of status
    fork_no_exec: bool  # forked and not exec'd since (the kernel's PF_FORKNOEXEC, stat's flags)
    sockets: Optional[Tuple[Socket, ...]]
    open_files: Optional[Tuple[str, ...]]
    incomplete: str     # why it was not fully inspected (_corespec's reasons); "" when it was

#: the values compiled into this core, by their _corespec names (its import checks them)
COMPILED_CONSTANTS: Dict[str, int]

def scan(
    proc_root: str = "/proc",
    want_fds: Union[bool, Callable[[Process], bool]] = True,
    pids: Optional[List[int]] = None,
) -> Tuple[List[Process], Dict[int, Socket], Dict[str, int]]:
    """Walk proc_root once (or only pids, in that order): (processes, socket table by inode,
    counters)."""
