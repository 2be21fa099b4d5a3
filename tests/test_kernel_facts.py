"""What the kernel shows of each evasion of issue 12: the facts a fix of the cores rests on.

These test the kernel, not ptfast: they pass today, and a kernel (or a sysctl) that changes a
fact makes them fail or skip here, with the reason, rather than make a fix silently blind.
Versions: pidfd_open 5.3, pidfd_getfd 5.6, PIDFD_THREAD 6.9, SIOCGSKNS 4.10 (needs
CAP_NET_ADMIN over the socket's namespace), kcmp 3.5 (CONFIG_CHECKPOINT_RESTORE before 5.12,
CONFIG_KCMP since), io_uring 5.1 and its fdinfo listing 5.6, system.sockprotoname 2012 (3.x;
"UNIX-STREAM" apart from "UNIX" only since about 5.15).
"""

import contextlib
import ctypes
import errno
import json
import os
import socket
import subprocess

import pytest

from helpers.native import (needs_gcc, ping_group_range_allowing, program_fixtures, start,
                            start_from_deep_path, start_with_hidden_link)
from helpers.procs import kill_uid
from helpers.uids import uid_for

pytestmark = [pytest.mark.needs_root, needs_gcc]

UID = uid_for(530)       # every program here runs as this uid, one at a time
PROGRAMS = ("zombie_leader", "private_fd_table", "listener", "churn", "io_uring_fixed",
            "other_kinds", "sockprobe")
SYS_KCMP = 312           # x86_64
KCMP_FILES = 2
LISTEN = "0A"


workdir, programs = program_fixtures(PROGRAMS)


@pytest.fixture
def run(programs):
    """``run(name, *args)`` starts a program as UID; all are stopped at the end of the test."""
    started = []

    def run_program(name, *args, **options):
        child = start([programs[name], UID, *args], **options)
        started.append(child)
        return child
    yield run_program
    for child in started:
        child.stop()
    kill_uid(UID)


def probe(programs, pid, fd, thread=False) -> dict:
    """sockprobe's view of fd ``fd`` of ``pid`` (a thread id with ``thread``)."""
    args = [programs["sockprobe"], str(pid), str(fd)] + (["thread"] if thread else [])
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def status(pid, task=None) -> dict:
    path = f"/proc/{pid}/task/{task}/status" if task else f"/proc/{pid}/status"
    with open(path) as handle:
        return dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)


def fd_links(directory) -> dict:
    return {int(name): os.readlink(f"{directory}/{name}") for name in os.listdir(directory)}


def errno_of(call, *args) -> int:
    try:
        call(*args)
    except OSError as exc:
        return exc.errno
    return 0


def table_rows(name: str) -> list:
    with open(f"/proc/net/{name}") as handle:
        return [line.split() for line in handle.read().splitlines()[1:]]


def kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split(".")
    return (int(release[0]), int(release[1].split("-")[0])) >= (major, minor)


def test_zombie_leader(run, programs):
    child = run("zombie_leader")
    pid, tid = child.info["pid"], child.info["tid"]
    assert status(pid)["State"].startswith("Z") and status(pid)["Threads"] == "2"
    assert errno_of(os.readlink, f"/proc/{pid}/exe") == errno.ENOENT
    assert errno_of(os.readlink, f"/proc/{pid}/ns/net") == errno.ENOENT
    assert os.listdir(f"/proc/{pid}/fd") == []
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        assert handle.read() == b""
    # the live thread has it all
    assert os.readlink(f"/proc/{pid}/task/{tid}/exe") == programs["zombie_leader"]
    assert any(link.startswith("socket:[") for link in fd_links(f"/proc/{pid}/task/{tid}/fd")
               .values())
    with open(f"/proc/{pid}/task/{tid}/cmdline", "rb") as handle:
        assert handle.read().startswith(programs["zombie_leader"].encode() + b"\0")
    assert not status(pid, tid)["State"].startswith("Z")


def test_private_fd_table(run, programs):
    child = run("private_fd_table")
    pid, tid = child.info["pid"], child.info["tid"]
    process_links = fd_links(f"/proc/{pid}/fd").values()
    thread_links = fd_links(f"/proc/{pid}/task/{tid}/fd").values()
    assert not any(link.startswith("socket:[") for link in process_links)
    assert any(link.startswith("socket:[") for link in thread_links)
    libc = ctypes.CDLL(None, use_errno=True)
    same = libc.syscall(SYS_KCMP, pid, pid, KCMP_FILES, 0, 0)
    if same < 0 and ctypes.get_errno() == errno.ENOSYS:
        pytest.skip("kcmp is not built into this kernel (CONFIG_KCMP)")
    assert same == 0
    assert libc.syscall(SYS_KCMP, pid, tid, KCMP_FILES, 0, 0) > 0     # 1 or 2: not the same


def test_exe_path_longer_than_path_max(programs, workdir):
    child = start_from_deep_path(programs["listener"], workdir, UID)
    try:
        pid = child.info["pid"]
        assert errno_of(os.readlink, f"/proc/{pid}/exe") == errno.ENAMETOOLONG
        # the file itself is still reachable through the link, and maps prints the full path
        exe_stat = os.stat(f"/proc/{pid}/exe")
        assert exe_stat.st_nlink == 1
        with open(f"/proc/{pid}/maps") as handle:
            paths = {line.split(None, 5)[5] for line in handle.read().splitlines()
                     if line.split()[4] == str(exe_stat.st_ino)}
        (path,) = paths
        assert len(path) > 4096 and path.endswith("/listener")
    finally:
        child.stop()
        kill_uid(UID)


def test_io_uring_fixed_file_shows_only_in_fdinfo(run):
    try:
        child = run("io_uring_fixed")
    except RuntimeError as exc:
        pytest.skip(f"io_uring unavailable: {exc}")
    pid, ring_fd = child.info["pid"], child.info["ring_fd"]
    links = fd_links(f"/proc/{pid}/fd")
    assert links[ring_fd] == "anon_inode:[io_uring]"
    assert not any(link.startswith("socket:[") for link in links.values())
    with open(f"/proc/{pid}/fdinfo/{ring_fd}") as handle:
        fdinfo = handle.read()
    # "UserFiles:\t1\n    0: socket:[INODE]\n"
    lines = fdinfo.splitlines()
    start_line = lines.index("UserFiles:\t1")
    index, target = lines[start_line + 1].split(None, 1)
    assert index == "0:" and target.startswith("socket:[")
    inode = target[len("socket:["):-1]
    # still listening, in the table with its owner, and it accepts connections
    row = next(row for row in table_rows("tcp") if row[9] == inode)
    assert row[3] == LISTEN and int(row[7]) == UID
    socket.create_connection(("127.0.0.1", child.info["port"]), timeout=5).close()


SOCKET_KINDS = {
    # name: (family, type, protocol, bind address, sockprotoname, table)
    "tcp": (socket.AF_INET, socket.SOCK_STREAM, 0, ("127.0.0.1", 0), "TCP", "tcp"),     # listens
    "tcp6": (socket.AF_INET6, socket.SOCK_STREAM, 0, ("::1", 0), "TCPv6", "tcp6"),   # listens
    "udp": (socket.AF_INET, socket.SOCK_DGRAM, 0, ("127.0.0.1", 0), "UDP", "udp"),
    "udp6": (socket.AF_INET6, socket.SOCK_DGRAM, 0, ("::1", 0), "UDPv6", "udp6"),
    "udplite": (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE, ("127.0.0.1", 0),
                "UDP-Lite", "udplite"),
    "udplite6": (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE, ("::1", 0),
                 "UDPLITEv6", "udplite6"),
    "ping": (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP, ("127.0.0.1", 0), "PING",
             "icmp"),
    "ping6": (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6, ("::1", 0), "PINGv6",
              "icmp6"),
    "raw": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, None, "RAW", "raw"),
    "raw6": (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6, None, "RAWv6", "raw6"),
    "packet": (socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3), None, "PACKET", "packet"),
    "unix stream": (socket.AF_UNIX, socket.SOCK_STREAM, 0, None, "UNIX-STREAM", None),
    "unix dgram": (socket.AF_UNIX, socket.SOCK_DGRAM, 0, None, "UNIX", None),
    "unix seqpacket": (socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, None, "UNIX", None),
    "netlink": (socket.AF_NETLINK, socket.SOCK_RAW, 0, None, "NETLINK", None),
    "tcp, not bound": (socket.AF_INET, socket.SOCK_STREAM, 0, None, "TCP", None),
    "tcp, bound, not listening": (socket.AF_INET, socket.SOCK_STREAM, 0, ("127.0.0.1", 0), "TCP",
                                  None),
    "udp, not bound": (socket.AF_INET, socket.SOCK_DGRAM, 0, None, "UDP", None),
}


@pytest.mark.parametrize("kind", sorted(SOCKET_KINDS))
def test_sockprotoname_and_tables(programs, kind):
    """getxattr(/proc/PID/fd/N, "system.sockprotoname") names every kind of socket; and the
    /proc/net table, if any, that lists it (inode column 9, owner column 7 in the inet tables;
    inode column 8, owner column 7 in packet). A socket that is not bound is in no table, nor
    is a TCP socket that is bound but neither listening nor connected."""
    family, kind_type, protocol, address, name, table = SOCKET_KINDS[kind]
    allowed = (ping_group_range_allowing(0, 0) if protocol in (socket.IPPROTO_ICMP,
                                                               socket.IPPROTO_ICMPV6)
               else contextlib.nullcontext())
    try:
        with allowed:
            sock = socket.socket(family, kind_type, protocol)
    except OSError as exc:
        if exc.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
            pytest.skip(f"no {kind} sockets in this kernel")
        raise
    with sock:
        if address:
            sock.bind(address)
            if table in ("tcp", "tcp6"):
                sock.listen()
        fd = sock.fileno()
        # the value ends with its NUL
        assert os.getxattr(f"/proc/self/fd/{fd}", "system.sockprotoname") == \
            name.encode() + b"\0"
        facts = probe(programs, os.getpid(), fd)
        assert facts["sockprotoname"] == name
        assert (facts["domain"], facts["type"]) == (family, kind_type)
        inode = str(os.fstat(fd).st_ino)
        rows = {candidate: [row for row in table_rows(candidate)
                            if row[inode_column(candidate):][:1] == [inode]]
                for candidate in ("tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "icmp",
                                  "icmp6", "raw", "raw6", "packet")}
        assert [candidate for candidate, found in rows.items() if found] == \
            ([table] if table else [])
        if table:
            assert rows[table][0][7] == "0"     # the owner column: root made it


def inode_column(table: str) -> int:
    return 8 if table == "packet" else 9


@pytest.mark.parametrize("kind", ["netns-tcp", "userns-tcp"])
def test_pidfd_getfd_sees_the_throwaway_netns_socket(run, programs, kind):
    """Made by root (unshare, setns back) or by the user alone (a child in a new user and
    network namespace passes it over a unix socket): the same socket, in the same blind spot."""
    try:
        child = run("other_kinds", kind)
    except RuntimeError as exc:
        if kind == "userns-tcp" and "unshare" in str(exc):
            pytest.skip(f"unprivileged user namespaces are not allowed here: {exc}")
        raise
    facts = probe(programs, child.info["pid"], child.info["fd"])
    if "pidfd_getfd_errno" in facts or "pidfd_open_errno" in facts:
        pytest.skip(f"pidfd_getfd (5.6) unavailable: {facts}")
    assert facts["own_netns"] is False       # SIOCGSKNS: another network namespace
    assert facts["accepting"] == 1 and facts["tcp_state"] == 10
    assert facts["local"] == {"family": socket.AF_INET, "ip": "127.0.0.1",
                              "port": child.info["port"]}
    # and the socket is in no table of the namespace the process is in
    inodes = {row[9] for name in ("tcp", "tcp6") for row in table_rows(name)}
    assert str(facts["inode"]) not in inodes


def test_pidfd_getfd_always_finds_the_churned_listener(run, programs):
    child = run("churn")
    for _ in range(20):
        facts = probe(programs, child.info["pid"], child.info["fd"])
        assert facts["accepting"] == 1 and facts["local"]["port"] == child.info["port"]


@pytest.mark.parametrize("program", ["zombie_leader", "private_fd_table"])
def test_pidfd_thread_reaches_a_thread_fd_table(run, programs, program):
    if not kernel_at_least(6, 9):
        pytest.skip("PIDFD_THREAD needs Linux 6.9")
    child = run(program)
    pid, tid = child.info["pid"], child.info["tid"]
    socket_fd = next(fd for fd, link in fd_links(f"/proc/{pid}/task/{tid}/fd").items()
                     if link.startswith("socket:["))
    via_process = probe(programs, pid, socket_fd)
    # the zombie leader has no fd table left (ESRCH); the process's table lacks the fd (EBADF)
    assert via_process.get("pidfd_getfd_errno") in (errno.ESRCH, errno.EBADF)
    via_thread = probe(programs, tid, socket_fd, thread=True)
    assert via_thread["accepting"] == 1 and via_thread["local"]["port"] == child.info["port"]


def test_deleted_executable_kept_by_another_link(programs, workdir):
    child = start_with_hidden_link(programs["listener"], os.path.join(workdir, "hidden"), UID)
    try:
        pid = child.info["pid"]
        assert os.readlink(f"/proc/{pid}/exe") == child.info["exe"] + " (deleted)"
        exe_stat = os.stat(f"/proc/{pid}/exe")
        assert exe_stat.st_nlink == 1           # not 0: the hidden link keeps the file
        assert not os.path.exists(child.info["exe"])
        kept = os.stat(os.path.join(workdir, "hidden", ".cache", "kept"))
        assert (kept.st_dev, kept.st_ino) == (exe_stat.st_dev, exe_stat.st_ino)
    finally:
        child.stop()
        kill_uid(UID)


def test_memfd_executable(run):
    child = run("listener", "--memfd")
    pid = child.info["pid"]
    assert os.readlink(f"/proc/{pid}/exe") == "/memfd:listener (deleted)"
    assert os.stat(f"/proc/{pid}/exe").st_nlink == 0
