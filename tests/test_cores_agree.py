"""Issue 20, items 3 and 4, and PT_SKIP_HTTP: the two cores agree on every process, and no
socket is dropped or mistaken for a port.

* A bound on the threads' own fd tables (``_corespec.MAX_FD_TABLES``) is the same in both cores
  and never silent: a process with more is returned "not fully inspected", with the reason,
  and ``scan`` reports it. A real process with one thread more than the bound, each thread
  with a table of its own, holds a listener only in the last; one at the bound holds it in the
  last table read.
* A socket of a family the probe cannot classify (AF_VSOCK, AF_XDP) is a protocol-only record
  that counts: ``scan`` reports its holder, on both cores.
* Ports are ports only for protocols that have them: a ping socket's echo identifier 80 is no
  web port, so PT_SKIP_HTTP does not hide it.
"""

import os

import pytest

from ptfast.scan import _corespec, _procscan_py

from helpers.native import needs_gcc, ping_group_range_allowing, program_fixtures, start
from helpers.procs import kill_uid, start_python
from helpers.scan import CORES, run_scan, suspicious_by_pid
from helpers.service import only_users_rule
from helpers.uids import uid_for

pytestmark = [pytest.mark.needs_root, needs_gcc]

PT_LIMIT = 1
REASON_INCOMPLETE = "not fully inspected"
SOCKET_REASONS = {"listening socket", "socket"}
UIDS = {
    "at_bound": uid_for(730),
    "beyond_bound": uid_for(731),
    "vsock": uid_for(732),
    "xdp": uid_for(733),
    "ping80": uid_for(734),
    "io_uring_vsock": uid_for(735),
    "shared_table": uid_for(736),
}
#: thread fd tables of each fd_tables process, and which one holds the listener
TABLES = {"at_bound": _corespec.MAX_FD_TABLES, "beyond_bound": _corespec.MAX_FD_TABLES + 1}
#: what each unclassifiable family is called in a record (the kernel's name, in lower case)
UNCLASSIFIED = {"vsock": "af_vsock", "xdp": "xdp"}


class Unavailable:
    """A socket family this kernel lacks; its tests skip."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


workdir, programs = program_fixtures(("fd_tables", "other_kinds", "io_uring_fixed"))


def io_uring_missing():
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as handle:
            if handle.read().strip() != "0":
                return "io_uring is disabled for unprivileged users (kernel.io_uring_disabled)"
    except FileNotFoundError:      # before 6.6 there is no such switch
        pass
    return None


def start_family(program: str, uid: int, kind: str):
    try:
        return start([program, uid, kind])
    except RuntimeError as exc:
        if "socket(family" in str(exc):
            return Unavailable(f"no {kind} sockets in this kernel: {exc}")
        raise


@pytest.fixture(scope="module")
def holders(programs):
    """Every process started once; name -> Child or Unavailable."""
    started = {}
    try:
        for name, tables in TABLES.items():
            started[name] = start([programs["fd_tables"], UIDS[name], tables, tables])
        for kind in UNCLASSIFIED:
            started[kind] = start_family(programs["other_kinds"], UIDS[kind], kind)
        missing = io_uring_missing()
        started["io_uring_vsock"] = (
            Unavailable(missing) if missing
            else start_family(programs["io_uring_fixed"], UIDS["io_uring_vsock"], "vsock"))
        with ping_group_range_allowing(UIDS["ping80"]):
            started["ping80"] = start([programs["other_kinds"], UIDS["ping80"], "ping80"])
        yield started
    finally:
        for child in started.values():
            if not isinstance(child, Unavailable):
                child.stop()
        for uid in UIDS.values():
            kill_uid(uid)


@pytest.fixture(scope="module")
def scans(workdir, holders):
    """``scan(core, *settings)``: suspicious findings by pid of one `ptfast scan --json` with
    PT_LIMIT=1 and GENERIC=1, tracking only this module's uids; each made once."""
    pignore = os.path.join(workdir, "pignore")
    with open(pignore, "w") as handle:
        handle.write(only_users_rule(*UIDS.values()))
    done = {}

    def scan(core, *settings):
        key = (core, settings)
        if key not in done:
            extra = [f"--set={setting}" for setting in ("GENERIC=1", *settings)]
            # aged: the processes count as older than PT_LIMIT (no sleeping past it)
            result = run_scan("--json", "--pignore", pignore, *extra, core=core, aged=True)
            assert result.returncode in (0, 1), result.stderr.decode(errors="replace")
            done[key] = suspicious_by_pid(result)
        return done[key]
    return scan


def running(holders, name):
    child = holders[name]
    if isinstance(child, Unavailable):
        pytest.skip(child.reason)
    return child


def scanned(core, pid: int):
    processes, _table, _stats = core.scan("/proc", True, [pid])
    [proc] = processes
    return proc


def endpoints(proc) -> set:
    return {(sock.proto, sock.local_ip, sock.local_port, sock.state) for sock in proc.sockets}


def test_the_threads_are_what_the_test_says(holders):
    for name, tables in TABLES.items():
        child = holders[name]
        assert child.info["threads"] == tables
        tasks = os.listdir(f"/proc/{child.info['pid']}/task")      # in the cores' order
        assert len(tasks) == tables + 1
        assert tasks[-1] == str(child.info["tid"])     # the holder's table is the last one


def test_threads_that_share_the_process_table_are_no_tables_of_their_own(children,
                                                                          compiled_core):
    """kcmp tells a shared table: a process with many more threads than the bound, all
    sharing its table, is fully inspected."""
    threads = 2 * _corespec.MAX_FD_TABLES
    children.append(start_python(f"""
        stop = threading.Event()
        for _ in range({threads}):
            threading.Thread(target=stop.wait, daemon=True).start()
        info["port"] = listen(socket.AF_INET, "127.0.0.1").getsockname()[1]
    """, uid=UIDS["shared_table"]))
    child = children[-1]
    for core in (compiled_core, _procscan_py):
        proc = scanned(core, child.pid)
        assert proc.threads == threads + 1
        assert proc.incomplete == "", core.__name__
        assert ("tcp", "127.0.0.1", child.info["port"], "LISTEN") in endpoints(proc)


def test_a_listener_in_the_last_table_within_the_bound_is_found_by_both_cores(
        holders, compiled_core):
    child = holders["at_bound"]
    listener = ("tcp", "127.0.0.1", child.info["port"], "LISTEN")
    for core in (compiled_core, _procscan_py):
        proc = scanned(core, child.info["pid"])
        assert listener in endpoints(proc), (core.__name__, proc.sockets)
        assert proc.incomplete == ""


def test_a_process_beyond_the_bound_is_not_fully_inspected_alike_in_both_cores(
        holders, compiled_core):
    child = holders["beyond_bound"]
    records = {}
    for core in (compiled_core, _procscan_py):
        proc = scanned(core, child.info["pid"])
        assert proc.incomplete == _corespec.FD_TABLES_BEYOND_BOUND, core.__name__
        records[core.__name__] = endpoints(proc)
    # the same tables were read, so the same sockets found: the listener is in the one left
    assert len(set(map(frozenset, records.values()))) == 1, records
    assert ("tcp", "127.0.0.1", child.info["port"], "LISTEN") not in records.popitem()[1]


@pytest.mark.parametrize("core", CORES)
def test_scan_reports_a_process_beyond_the_bound(holders, scans, core):
    child = holders["beyond_bound"]
    findings = scans(core)
    pid = child.info["pid"]
    assert pid in findings, f"pid {pid} not reported; reported: {sorted(findings)}"
    assert REASON_INCOMPLETE in findings[pid]["reasons"]
    assert findings[pid]["incomplete"] == _corespec.FD_TABLES_BEYOND_BOUND


@pytest.mark.parametrize("core", CORES)
def test_scan_reports_the_listener_in_the_last_table_within_the_bound(holders, scans, core):
    child = holders["at_bound"]
    findings = scans(core)
    pid = child.info["pid"]
    assert pid in findings, f"pid {pid} not reported; reported: {sorted(findings)}"
    assert "listening socket" in findings[pid]["reasons"]


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("kind", sorted(UNCLASSIFIED))
def test_a_socket_the_probe_cannot_classify_is_kept_and_counts(holders, scans, kind, core):
    child = running(holders, kind)
    findings = scans(core)
    pid = child.info["pid"]
    assert pid in findings, f"pid {pid} not reported; reported: {sorted(findings)}"
    assert SOCKET_REASONS & set(findings[pid]["reasons"])
    [sock] = findings[pid]["sockets"]
    assert (sock["proto"], sock["local"], sock["remote"], sock["counted"]) == (
        UNCLASSIFIED[kind], "?", "?", True)


@pytest.mark.parametrize("core", CORES)
def test_a_socket_with_no_fd_and_in_no_table_is_kept_and_counts(holders, scans, core):
    """An AF_VSOCK socket registered with io_uring, its fd closed: only the ring's fdinfo names
    it, and nothing can be asked of it. It is kept, protocol unknown, as its holder's."""
    child = running(holders, "io_uring_vsock")
    findings = scans(core)
    pid = child.info["pid"]
    assert pid in findings, f"pid {pid} not reported; reported: {sorted(findings)}"
    [sock] = findings[pid]["sockets"]
    assert (sock["proto"], sock["uid"], sock["counted"]) == (
        "unknown", UIDS["io_uring_vsock"], True)


@pytest.mark.parametrize("core", CORES)
def test_a_ping_identifier_of_80_is_no_web_port_under_skip_http(holders, scans, core):
    child = holders["ping80"]
    with open("/proc/net/icmp") as table:      # the kernel shows the identifier as the port
        assert any(line.split()[1].endswith(":0050") for line in table.readlines()[1:])
    findings = scans(core, "PT_SKIP_HTTP=1")
    pid = child.info["pid"]
    assert pid in findings, f"pid {pid} not reported; reported: {sorted(findings)}"
    [sock] = findings[pid]["sockets"]
    assert sock["proto"] == "icmp" and sock["counted"] is True
    assert sock["local"] == "127.0.0.1"         # an identifier is no port: none is shown
