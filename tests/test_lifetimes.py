"""Socket lifetimes (issue 21): a connection counts once held PT_CONN_AGE seconds, a process that
keeps calling other hosts counts however short each call, `ptfast scan` agrees with `ptfast run`,
and a reported process is reported again for what is new. Real processes, both cores."""

import errno
import os
import shutil
import signal
import socket
import threading
import time

import pytest

from ptfast.act import looking
from ptfast.decide import pignore, policy
from ptfast.decide import lifetimes as lifetimes_module
from ptfast.decide.lifetimes import Lifetimes
from ptfast.foundation import config
from ptfast.scan import procfs

from helpers.procs import public_tempdir, start_python, wait_until
from helpers.scan import run_scan, suspicious_by_pid
from helpers.service import SendmailRecorder, ServiceDir, dump_often
from helpers.uids import uid_for

pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

YOUNG_UID = uid_for(231)
HELD_UID = uid_for(232)
BEACON_UID = uid_for(233)
NEWS_UID = uid_for(234)
OPENER_UID = uid_for(235)

#: a worker's database queries: a half-second connection to a local listener, again and again
YOUNG_QUERIES = """
def queries(port):
    while True:
        client = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.5)
        client.close()
        time.sleep(0.1)
threading.Thread(target=queries, args=(int(sys.argv[1]),), daemon=True).start()
"""
#: a connection held from when sys.argv[2] exists (at once when it is "now")
HELD = """
def hold(port, when):
    while when != "now" and not os.path.exists(when):
        time.sleep(0.1)
    KEEP.append(socket.create_connection(("127.0.0.1", port)))
threading.Thread(target=hold, args=(int(sys.argv[1]), sys.argv[2]), daemon=True).start()
"""
#: a beacon: a UDP "connection" to a documentation-range host every half second, held 0.35 s
#: (never PT_CONN_AGE, even 2 s older under the age seam; most dumps see a call, the connect
#: hook each one, so the test is short); a UDP connect() sends no packet, so nothing leaves
#: the machine
BEACON = """
def beacon():
    while True:
        call = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        call.connect(("198.18.0.9", 53))
        time.sleep(0.35)
        call.close()
        time.sleep(0.15)
threading.Thread(target=beacon, daemon=True).start()
"""
#: no socket at all until sys.argv[1] exists, then a listener
LATE_LISTENER = """
def later(path):
    while not os.path.exists(path):
        time.sleep(0.1)
    listen(socket.AF_INET, "127.0.0.1")
threading.Thread(target=later, args=(sys.argv[1],), daemon=True).start()
"""
#: a listener now, and a second one once sys.argv[1] exists
NEW_LISTENER = """
listen(socket.AF_INET, "127.0.0.1")
def later(path):
    while not os.path.exists(path):
        time.sleep(0.1)
    listen(socket.AF_INET, "127.0.0.1")
threading.Thread(target=later, args=(sys.argv[1],), daemon=True).start()
"""


@pytest.fixture
def database():
    """A local listener (root's, as a database server's is not the customer's) accepting every
    connection in a thread."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    for conn in held:
        conn.close()


@pytest.fixture
def children():
    started = []
    yield started
    for child in started:
        child.stop()


def use_core(monkeypatch, core_name):
    if core_name == "pure-python":
        monkeypatch.setenv("PTFAST_NO_EXTENSIONS", "1")


def socket_fds(pid: int) -> int:
    """The TCP sockets ``pid`` holds connected or listening: a socket's fd comes before its
    connect() or listen(), and a dump between the two sees no connection (a busy machine, xdist,
    made that happen)."""
    fd_dir = f"/proc/{pid}/fd"
    inodes = set()
    for fd in os.listdir(fd_dir):
        target = os.readlink(os.path.join(fd_dir, fd))
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ready = 0
    with open(f"/proc/{pid}/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            ready += fields[3] in ("01", "0A") and fields[9] in inodes    # ESTABLISHED, LISTEN
    return ready


@pytest.fixture
def go(tmp_path):
    """A path the test creates when a child is to go on (in a directory its uid can read)."""
    directory = public_tempdir()
    yield os.path.join(directory, "go")
    shutil.rmtree(directory, ignore_errors=True)


def reported_pids(service) -> list:
    return [int(line.split("PID:")[1].split()[0]) for line in service.log().splitlines()
            if "*Suspicious Process* PID:" in line]


@pytest.mark.ageing         # connections really held past PT_CONN_AGE
@pytest.mark.parametrize("core_name", ["compiled", "pure-python"])
def test_young_connections_are_not_reported_held_ones_are_and_scan_agrees_with_run(
        tmp_path, database, children, core_name, monkeypatch):
    """PT_CONN_AGE=4 (2 s with the `aged` fixture's 2, which scan and run each wait): a worker
    whose 0.5 s queries come and go is reported neither by scan nor by run; a process holding
    its connection is reported by both."""
    use_core(monkeypatch, core_name)
    young = start_python(YOUNG_QUERIES, uid=YOUNG_UID, argv=[str(database)])
    children.append(young)
    held = start_python(HELD, uid=HELD_UID, argv=[str(database), "now"])
    children.append(held)
    assert wait_until(lambda: socket_fds(held.pid) and socket_fds(young.pid), 10)
    service = ServiceDir(tmp_path, YOUNG_UID, HELD_UID)
    scanned = run_scan("--json", "--pignore", service.pignore, "--set", "PT_CONN_AGE=4",
                       core=core_name, aged=True)
    assert scanned.returncode in (0, 1), scanned.stderr.decode()
    recorder = SendmailRecorder(str(tmp_path))
    result = service.run_once(f"SENDMAIL={recorder.path}", "PT_CONN_AGE=4", "PT_USERPROC=0")
    assert result.returncode == 0, result.stderr.decode()
    by_scan = set(suspicious_by_pid(scanned)) & {young.pid, held.pid}
    assert by_scan == {held.pid}, (scanned.stdout.decode(), scanned.stderr.decode())
    assert set(reported_pids(service)) == by_scan, service.log()


@pytest.mark.ageing         # connections really held past PT_CONN_AGE
@pytest.mark.parametrize("core_name", ["compiled", "pure-python"])
def test_run_reports_a_connection_once_held_past_conn_age_without_waiting_for_a_pass(
        tmp_path, database, children, go, core_name, monkeypatch):
    """An old process opens a connection while the service runs (PT_INTERVAL an hour): the
    socket dumps see it reach PT_CONN_AGE and judge its account's processes at once."""
    use_core(monkeypatch, core_name)
    dump_often(monkeypatch)
    held = start_python(HELD, uid=HELD_UID, argv=[str(database), str(go)])
    children.append(held)
    service = ServiceDir(tmp_path, HELD_UID)
    recorder = SendmailRecorder(str(tmp_path))
    with service.started(f"SENDMAIL={recorder.path}", "PT_INTERVAL=3600", "PT_CONN_AGE=3",
                         "PT_USERPROC=0", "PT_PASS_SUMMARY=1") as daemon:
        assert wait_until(lambda: "pass done" in service.log(), 60), service.log()
        assert held.pid not in reported_pids(service)
        open(go, "w").close()
        assert wait_until(lambda: held.pid in reported_pids(service), 30), service.log()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0


def can_call_other_hosts() -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("198.18.0.9", 53))
    except OSError as exc:
        return exc.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH)
    finally:
        probe.close()
    return True


@pytest.mark.ageing         # connections really held past PT_CONN_AGE
@pytest.mark.parametrize("core_name", ["compiled", "pure-python"])
def test_a_beacon_of_short_calls_is_reported_by_run(tmp_path, children, core_name,
                                                    monkeypatch):
    """A process that connects out twice a second and holds each call 0.35 s (never
    PT_CONN_AGE) is reported within a few dumps, with no pass (PT_INTERVAL an hour)."""
    if not can_call_other_hosts():
        pytest.skip("no route to 198.18.0.9 for a UDP connect()")
    use_core(monkeypatch, core_name)
    dump_often(monkeypatch)
    service = ServiceDir(tmp_path, BEACON_UID)
    recorder = SendmailRecorder(str(tmp_path))
    with service.started(f"SENDMAIL={recorder.path}", "PT_INTERVAL=3600", "PT_CONN_AGE=5",
                         "PT_USERPROC=0", "PT_PASS_SUMMARY=1") as daemon:
        assert wait_until(lambda: "pass done" in service.log(), 60), service.log()
        beacon = start_python(BEACON, uid=BEACON_UID)
        children.append(beacon)
        assert wait_until(lambda: beacon.pid in reported_pids(service), 60), service.log()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    mail = recorder.calls()[0]["parsed"].get_content()
    assert "198.18.0.9:53" in mail, mail[:1500]


@pytest.mark.parametrize("core_name", ["compiled", "pure-python"])
def test_a_reported_process_is_reported_again_for_a_new_listener(tmp_path, children, go,
                                                                  core_name, monkeypatch):
    """Reported once for its listener; not again for the same one; again when it opens a
    second (another port: something new)."""
    use_core(monkeypatch, core_name)
    child = start_python(NEW_LISTENER, uid=NEWS_UID, argv=[str(go)])
    children.append(child)
    service = ServiceDir(tmp_path, NEWS_UID)
    recorder = SendmailRecorder(str(tmp_path))
    settings = (f"SENDMAIL={recorder.path}", "PT_USERPROC=0")
    for _ in range(2):
        assert service.run_once(*settings).returncode == 0
    assert reported_pids(service) == [child.pid]
    open(go, "w").close()
    assert wait_until(lambda: socket_fds(child.pid) >= 2, 10)     # its second listener
    assert service.run_once(*settings).returncode == 0
    assert reported_pids(service) == [child.pid, child.pid], service.log()
    assert service.run_once(*settings).returncode == 0
    assert reported_pids(service) == [child.pid, child.pid], service.log()


def test_a_listener_opened_by_an_old_process_is_reported_at_the_next_dump(tmp_path, children,
                                                                          go, monkeypatch):
    """Issue 21: "a new socket in an old process is found at the next socket dump". The
    process was checked (nothing to report) long before; no pass comes (PT_INTERVAL an hour)
    and it forks and execs nothing, so only the dump can find its new listener."""
    dump_often(monkeypatch)
    child = start_python(LATE_LISTENER, uid=OPENER_UID, argv=[str(go)])
    children.append(child)
    service = ServiceDir(tmp_path, OPENER_UID)
    recorder = SendmailRecorder(str(tmp_path))
    with service.started(f"SENDMAIL={recorder.path}", "PT_INTERVAL=3600", "PT_USERPROC=0",
                         "PT_PASS_SUMMARY=1") as daemon:
        assert wait_until(lambda: "pass done" in service.log(), 60), service.log()
        assert reported_pids(service) == []
        open(go, "w").close()
        assert wait_until(lambda: reported_pids(service) == [child.pid], 30), service.log()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0


def test_the_warm_up_counts_from_when_its_first_dump_saw_the_connections(database, children,
                                                                         monkeypatch):
    """A slow first dump (a cold pure-Python read of many sockets: the digest's flood) must
    not leave the connections it saw younger than PT_CONN_AGE when the warm-up ends: it
    waits PT_CONN_AGE from when that dump saw them, not from when it began."""
    held = start_python(HELD, uid=HELD_UID, argv=[str(database), "now"])
    children.append(held)
    assert wait_until(lambda: socket_fds(held.pid), 10)
    conf = config.load(os.devnull, ["GENERIC=1", "PT_LIMIT=1", "PT_CONN_AGE=1"],
                       override_path=os.devnull)
    lifetimes = Lifetimes()

    def judging() -> policy.Policy:
        return policy.Policy(conf, pignore.IgnoreRules(),
                             lambda uid: "holder" if uid == HELD_UID else None,
                             lifetimes=lifetimes)
    read_tables, slow = procfs.scan, [0.5]

    def first_read_slow(*args, **kwargs):
        snapshot = read_tables(*args, **kwargs)
        time.sleep(slow.pop() if slow else 0.0)
        return snapshot
    monkeypatch.setattr(procfs, "scan", first_read_slow)
    looking.warm_up(lifetimes, judging())
    look = judging()
    ages = [look.now - seen for seen, uid in lifetimes.first_seen.values() if uid == HELD_UID]
    assert ages and not any(look.young_connection(age) for age in ages), ages


LIVE_UID = uid_for(235)


def test_live_checks_judge_connections_by_their_lifetimes_as_passes_do(tmp_path, database,
                                                                      children):
    """Live mode's check at PT_LIMIT (Tracker.check_processes) of a process whose connection
    no dump has seen yet: the connection is first seen now, young, as a pass would judge it,
    not counted at once; its listener (in the same check) is reported."""
    service_dir = ServiceDir(tmp_path, HELD_UID, LIVE_UID)
    recorder = SendmailRecorder(str(tmp_path))
    service = service_dir.in_process("PT_USERPROC=0", "PT_CONN_AGE=30",
                                     f"SENDMAIL={recorder.path}")
    try:
        service.tracker.dump_sockets(service.settings)     # as between passes: before they start
        held = start_python(HELD, uid=HELD_UID, argv=[str(database), "now"])
        children.append(held)
        listening = start_python('listen(socket.AF_INET, "127.0.0.1")', uid=LIVE_UID)
        children.append(listening)
        assert wait_until(lambda: socket_fds(held.pid), 10)
        service.tracker.check_processes(service.settings, [held.pid, listening.pid])
    finally:
        service.stop()
    assert reported_pids(service_dir) == [listening.pid], service_dir.log()


@pytest.mark.parametrize("text", ["0", "0.01", "1.5", "60", "-0.2", "nan", "inf", "soon"])
def test_the_dump_seam_refuses_what_would_not_make_dumps_more_frequent(text, capsys):
    """PTFAST_TEST_DUMP_EVERY (test-only) only in [MIN_TEST_DUMP_EVERY, DUMP_EVERY]: anything
    else leaves the server's cadence, and says so."""
    assert lifetimes_module.dump_every_for_tests.__wrapped__(text) == lifetimes_module.DUMP_EVERY
    said = capsys.readouterr().err
    assert "PTFAST_TEST_DUMP_EVERY=" in said and "refused" in said, said


def test_the_dump_seam_is_off_unless_set_and_jittered_like_the_cadence_when_set(monkeypatch,
                                                                               capsys):
    monkeypatch.delenv(lifetimes_module.TEST_DUMP_EVERY, raising=False)
    assert all(0.5 <= lifetimes_module.dump_delay() <= 1.5 for _ in range(100))
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(lifetimes_module.TEST_DUMP_EVERY, "0.2")
    delays = [lifetimes_module.dump_delay() for _ in range(100)]
    assert all(0.1 <= delay <= 0.3 for delay in delays), delays
    assert "PTFAST_TEST_DUMP_EVERY=0.2 in force (test-only)" in capsys.readouterr().err
