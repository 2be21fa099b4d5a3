"""The scanner core against real processes; every test runs on both cores (fixture ``core``)."""

import os
import time

import psutil
import pytest

from ptfast.scan import _procscan_py, procfs
from ptfast.scan._corespec import PF_KTHREAD, STAT_FLAGS, parse_stat, stat_field
from helpers.uids import uid_for
from helpers.pidns import PidNamespace
from helpers.procs import start_copied_python, start_python
from helpers.snapshots import process_as_dict

pytestmark = pytest.mark.needs_root

UID = uid_for(1)


def scan(core, want_fds=True, proc_root="/proc"):
    return procfs.scan(proc_root, want_fds, core=core)


def find(snapshot, pid):
    matches = [proc for proc in snapshot.processes if proc.pid == pid]
    assert matches, f"pid {pid} missing from the snapshot"
    return matches[0]


def comparable(proc):
    record = process_as_dict(proc)
    record.pop("age")          # grows between two scans by design
    return record


def stable_records(before, after):
    """pid -> record of the processes that did not change between two snapshots. Other
    processes on the host (shells, pip, the CI runner) may exec, allocate or open files at any
    moment; only what stood still across a window can be compared with a read inside it."""
    later = {proc.pid: comparable(proc) for proc in after.processes}
    return {proc.pid: record for proc in before.processes
            if (record := comparable(proc)) == later.get(proc.pid)}


def the_suites_other_processes() -> set:
    """Under xdist, the controller and all below it (this worker too): the other workers and
    their tests' daemons read /proc all the time, and one may open and close a file during the
    twin's scan alone, standing still at both ends of the window."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return set()
    controller = psutil.Process(os.getppid())
    return {controller.pid} | {child.pid for child in controller.children(recursive=True)}


def kernel_thread_pids():
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = parse_stat(handle.read())
        except OSError:    # exited meanwhile
            continue
        if fields and int(stat_field(fields, STAT_FLAGS)) & PF_KTHREAD:
            pids.add(int(name))
    return pids


def endpoints(proc):
    return {(s.proto, s.local_ip, s.local_port, s.remote_ip, s.remote_port, s.state)
            for s in proc.sockets}


SOCKETS_SETUP = """
l4 = listen(socket.AF_INET, "0.0.0.0")
l6 = listen(socket.AF_INET6, "::1")
server, client, accepted = connect_pair(socket.AF_INET, "127.0.0.1")
u4 = listen(socket.AF_INET, "127.0.0.1", socket.SOCK_DGRAM)
u6 = listen(socket.AF_INET6, "::1", socket.SOCK_DGRAM)
uc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); uc.connect(("127.0.0.1", 9)); KEEP.append(uc)
mapped = listen(socket.AF_INET6, "::")
m = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
m.connect(("::ffff:127.0.0.1", mapped.getsockname()[1])); KEEP.append(m)
KEEP.append(mapped.accept()[0])
info.update(l4=l4.getsockname()[1], l6=l6.getsockname()[1], server=server.getsockname()[1],
            client=client.getsockname()[1], u4=u4.getsockname()[1], u6=u6.getsockname()[1],
            uc=uc.getsockname()[1], mapped=mapped.getsockname()[1], m=m.getsockname()[1])
"""


def test_uid_comes_from_status_not_from_proc_owner(core, shared):
    ordinary, hidden = shared("uid", lambda: start_python(uid=UID),
                              lambda: start_python(uid=UID + 1, non_dumpable=True))
    # a non-dumpable process shows root as the owner of the files in /proc/PID (and on some
    # kernels of /proc/PID itself): that must not fool us
    assert os.stat(f"/proc/{hidden.pid}/stat").st_uid == 0
    snapshot = scan(core)
    assert find(snapshot, ordinary.pid).uid == UID
    assert find(snapshot, hidden.pid).uid == UID + 1


def test_root_process_and_fields(core, shared):
    [child] = shared("root", start_python)
    proc = find(scan(core), child.pid)
    assert proc.uid == 0
    assert proc.ppid == os.getpid()
    assert proc.exe == os.path.realpath(os.sys.executable)
    assert not proc.exe_deleted
    assert proc.vm_size_bytes > proc.vm_rss_bytes > 0
    assert 0 <= proc.age < 60       # a young process: seconds, not ticks


def test_every_socket_kind_ipv4_and_ipv6(core, shared):
    [child] = shared("sockets", lambda: start_python(SOCKETS_SETUP, uid=UID))
    info = child.info
    found = endpoints(find(scan(core), child.pid))
    expected = {
        ("tcp", "0.0.0.0", info["l4"], "0.0.0.0", 0, "LISTEN"),
        ("tcp6", "::1", info["l6"], "::", 0, "LISTEN"),
        ("tcp", "127.0.0.1", info["server"], "0.0.0.0", 0, "LISTEN"),
        ("tcp", "127.0.0.1", info["client"], "127.0.0.1", info["server"], "ESTABLISHED"),
        ("tcp", "127.0.0.1", info["server"], "127.0.0.1", info["client"], "ESTABLISHED"),
        ("udp", "127.0.0.1", info["u4"], "0.0.0.0", 0, "UNCONN"),
        ("udp6", "::1", info["u6"], "::", 0, "UNCONN"),
        ("udp", "127.0.0.1", info["uc"], "127.0.0.1", 9, "ESTABLISHED"),
        ("tcp6", "::", info["mapped"], "::", 0, "LISTEN"),
        # IPv4-mapped IPv6 is shown as IPv4
        ("tcp6", "127.0.0.1", info["m"], "127.0.0.1", info["mapped"], "ESTABLISHED"),
        ("tcp6", "127.0.0.1", info["mapped"], "127.0.0.1", info["m"], "ESTABLISHED"),
    }
    assert expected <= found, expected - found
    assert len(found) == len(expected)


def test_listener_in_another_network_namespace(core, shared):
    setup = 'info["port"] = listen(socket.AF_INET, "0.0.0.0").getsockname()[1]'
    [child] = shared("netns", lambda: start_python(setup, uid=UID, netns=True))
    assert os.readlink(f"/proc/{child.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    snapshot = scan(core)
    proc = find(snapshot, child.pid)
    assert [(s.proto, s.local_port, s.state) for s in proc.sockets] == [
        ("tcp", child.info["port"], "LISTEN")]
    assert proc.sockets[0].netns == os.stat(f"/proc/{child.pid}/ns/net").st_ino
    assert snapshot.stats["namespaces"] >= 2


def test_deleted_executable_is_decided_from_the_file(core, shared):
    [deleted] = shared("deleted", lambda: start_copied_python("payload", uid=UID, delete=True))
    proc = find(scan(core), deleted.pid)
    assert proc.exe_deleted
    assert proc.exe == deleted.info["exe"]          # the kernel's suffix is removed


def test_deleted_in_the_path_text_is_not_deletion(core, shared):
    in_dir, in_name = shared(
        "deleted in the path",
        lambda: start_copied_python("sleeper", uid=UID, subdir="x (deleted)"),
        lambda: start_copied_python("sleeper (deleted)", uid=UID))
    snapshot = scan(core)
    for child in (in_dir, in_name):
        proc = find(snapshot, child.pid)
        assert not proc.exe_deleted
        assert proc.exe == child.info["exe"]


def test_hostile_names_survive_as_data(core, shared):
    name = "evil\n\x1b[31mname\x07"
    [child] = shared("hostile", lambda: start_copied_python(name, uid=UID, setup=""))
    proc = find(scan(core), child.pid)
    assert proc.exe == child.info["exe"]
    assert "\x1b[31m" in proc.exe


def test_cmdline_is_normalised_and_keeps_undecodable_bytes(core, shared):
    [child] = shared("cmdline",
                     lambda: start_python(argv=["one", "two  three", b"\xff\xfe-bytes", ""]))
    proc = find(scan(core), child.pid)
    assert proc.cmdline.endswith("one two  three \udcff\udcfe-bytes")   # trailing NUL dropped
    assert "\0" not in proc.cmdline


def test_open_files_and_no_pipes(core, shared):
    setup = """
        KEEP.append(open("/etc/hostname"))
        KEEP.extend(os.pipe())
    """
    [child] = shared("open files", lambda: start_python(setup, uid=UID))
    proc = find(scan(core), child.pid)
    assert "/etc/hostname" in proc.open_files
    assert not any(path.startswith("pipe:") for path in proc.open_files)
    assert proc.sockets == ()


def test_caller_decides_which_processes_get_an_fd_walk(core, shared):
    inspected, skipped = shared(
        "fd walk", lambda: start_python('listen(socket.AF_INET, "127.0.0.1")', uid=UID),
        lambda: start_python('listen(socket.AF_INET, "127.0.0.1")', uid=UID + 2))
    asked = []

    def want_fds(proc):
        asked.append(proc.pid)
        return proc.uid == UID

    snapshot = scan(core, want_fds)
    assert inspected.pid in asked and skipped.pid in asked
    assert len(find(snapshot, inspected.pid).sockets) == 1
    assert find(snapshot, skipped.pid).sockets is None
    assert find(snapshot, skipped.pid).open_files is None
    assert all(proc.sockets is None for proc in scan(core, False).processes)


def test_kernel_threads_are_skipped(core):
    # a PID can be a user process in the snapshot and a new kworker a moment later: only PIDs
    # that were kernel threads both before and after the scan are checked
    before = kernel_thread_pids()
    snapshot = scan(core)
    kernel_threads = before & kernel_thread_pids()
    pids = {proc.pid for proc in snapshot.processes}
    assert kernel_threads and not pids & kernel_threads
    assert snapshot.stats["kernel_threads"] >= len(kernel_threads)


def test_processes_that_vanish_mid_scan_are_counted_not_errors(core, children):
    trigger = start_python(uid=UID)                 # listed before the victims (lower PIDs)
    victims = [start_python(uid=UID) for _ in range(3)]
    children.extend([trigger, *victims])
    assert all(victim.pid > trigger.pid for victim in victims)

    def want_fds(proc):
        if proc.pid == trigger.pid:                 # mid-scan: the victims exit and are reaped
            for victim in victims:
                victim.stop()
        return False

    snapshot = scan(core, want_fds)
    pids = {proc.pid for proc in snapshot.processes}
    assert trigger.pid in pids and not pids & {victim.pid for victim in victims}
    assert snapshot.stats["vanished"] >= len(victims)
    for proc in snapshot.processes:                 # never a half-read record (an exe path
        assert (proc.exe or proc.incomplete) and proc.start_time > 0    # beyond PATH_MAX: said)


def test_a_reused_pid_is_never_mixed_with_its_predecessor(core, tmp_path):
    """Every read of a process goes through one directory fd of /proc/PID: when the process
    dies mid-scan and a newcomer gets its PID, the rest of the record is not the newcomer's."""
    marker = str(tmp_path / "newcomer-marker")
    with PidNamespace() as namespace:
        old = namespace.spawn()
        old_start = namespace.start_time(old)
        # start times count clock ticks: the newcomer must start in a later tick to be told
        # apart at all (as any PID reuse on a real host does: it takes a wrap of the PID space)
        time.sleep(3 / os.sysconf("SC_CLK_TCK"))
        replaced = []

        def want_fds(proc):
            if proc.pid == old and not replaced:    # between its exe and its fd walk
                replaced.append(namespace.reuse(old, marker))
            return True

        snapshot = scan(core, want_fds, proc_root=namespace.proc_root)
        assert replaced == [old] and namespace.start_time(old) != old_start   # reused for real
        record = find(snapshot, old)
        assert record.start_time == old_start
        assert not record.open_files or marker not in record.open_files
        newcomer = find(scan(core, proc_root=namespace.proc_root), old)        # it is there
        assert marker in newcomer.open_files


def unmap(ip):
    """psutil keeps IPv4-mapped IPv6 as ::ffff:a.b.c.d; ptfast shows the IPv4 address."""
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def test_view_agrees_with_psutil(core, shared):
    """psutil is the independent oracle for uid, exe, cmdline, start time and sockets."""
    import psutil
    children = shared("psutil", lambda: start_python(SOCKETS_SETUP, uid=UID),
                      lambda: start_python(argv=["a", "b c"], uid=UID + 3))
    snapshot = scan(core)
    oracle = {}
    for proc in snapshot.processes:
        try:
            live = psutil.Process(proc.pid)
            with live.oneshot():
                oracle[proc.pid] = (
                    live.uids(), live.exe(), " ".join(live.cmdline()).rstrip(),
                    live.create_time(),
                    {(unmap(c.laddr.ip), c.laddr.port, unmap(c.raddr.ip) if c.raddr else None)
                     for c in live.net_connections("inet")})
        except (psutil.Error, OSError):     # psutil passes ENAMETOOLONG (an exe path beyond
            continue                         # PATH_MAX, any process on the host) through raw
    stable = stable_records(snapshot, scan(core))      # psutil read inside this window
    assert {child.pid for child in children} <= stable.keys()
    boot = psutil.boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    compared = 0
    for proc in snapshot.processes:
        if proc.pid not in oracle or proc.pid not in stable or proc.pid == os.getpid():
            continue
        uids, exe, cmdline, create_time, connections = oracle[proc.pid]
        compared += 1
        if uids.real == uids.effective == uids.saved:
            assert proc.uid == uids.real
        assert exe == proc.exe or proc.exe_deleted
        assert cmdline == proc.cmdline
        assert abs(create_time - (boot + proc.start_time / ticks)) < 0.05
        # sockets of the test's own processes only: any other process on the host may open
        # and close connections between psutil's read and ours (psutil also reads only this
        # network namespace's tables)
        if proc.pid in {child.pid for child in children}:
            ours = {(s.local_ip, s.local_port,
                     s.remote_ip if s.remote_port or s.state not in ("LISTEN", "UNCONN")
                     else None)
                    for s in proc.sockets if not s.proto.startswith("raw")}
            assert ours == connections, proc
    assert compared >= 3


def test_both_cores_return_the_same_records(children, compiled_core):
    _procscan = compiled_core
    children.append(start_python(SOCKETS_SETUP, uid=UID))
    children.append(start_copied_python("gone", uid=UID, delete=True))
    mine = {child.pid for child in children}

    def compared() -> tuple:
        suite = the_suites_other_processes()
        before = scan(_procscan)
        twin = {p.pid: comparable(p) for p in scan(_procscan_py).processes}
        compiled = stable_records(before, scan(_procscan))   # the twin's scan ran in between
        compiled.pop(os.getpid(), None)                      # our own fds change between scans
        for pid in (suite | the_suites_other_processes()) - mine:
            compiled.pop(pid, None)
        return twin, compiled
    twin, compiled = compared()
    assert mine <= compiled.keys()
    differing = {pid for pid, record in compiled.items() if twin.get(pid) != record}
    # A host process may change and change back inside the window (an sshd's title counting
    # its startups, a shell's fds): those are looked at again; a core's mistake stays.
    for _ in range(3):
        if not differing:
            break
        twin, compiled = compared()
        differing = {pid for pid in differing
                     if pid in compiled and twin.get(pid) != compiled[pid]}
    for pid in differing:
        assert twin.get(pid) == compiled[pid]


def test_socket_tables_longer_than_one_read_are_read_whole(core, shared):
    """/proc/net/tcp gives about a page per read(); a table cut after the first read loses
    every socket past it."""
    setup = 'info["ports"] = [listen(socket.AF_INET, "127.0.0.1").getsockname()[1] ' \
            'for _ in range(400)]'
    [child] = shared("400 listeners", lambda: start_python(setup, uid=UID))
    snapshot = scan(core)
    assert len(snapshot.socket_table) >= 400
    ports = {sock.local_port for sock in find(snapshot, child.pid).sockets}
    assert ports == set(child.info["ports"])
