"""`ptfast run` in live mode (ptfast/act/live.py): a process started after the service is
checked when it reaches PT_LIMIT, not at the next pass; lost process events make a full pass at
once, counted in the status; where the proc connector is unavailable the service polls as
before and the status and the log say why.

No age seam here: the processes really reach PT_LIMIT=1 (so these tests wait for real time).
PT_INTERVAL is 60, so no regular pass comes during a test: a finding before the second pass is
live mode's."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import nonetlink
from helpers.inproc import run_ptfast
from helpers.procs import kill_uid, process_age, public_tempdir, start_python, wait_until
from helpers.service import (LISTEN_ANY, SendmailRecorder, ServiceDir, dump_often,
                             recorded_service)
from helpers.uids import uid_for
from ptfast.act import looking
from ptfast.channels import status
from ptfast.scan import procfs

pytestmark = [pytest.mark.needs_root, pytest.mark.ageing]

UID = uid_for(960)
#: only a guard against a hang, well below PT_INTERVAL: no assertion depends on it
PATIENCE = 40.0
SETTINGS = ("PT_LIMIT=1", "PT_INTERVAL=60", "PT_PASS_SUMMARY=1")

# forks N children that exit at once, then reaps them all
BURST = textwrap.dedent("""
    import os, sys
    children = []
    for _ in range(int(sys.argv[1])):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
""")


@pytest.fixture
def service(tmp_path, monkeypatch):
    # the first dump to see a new listener judges it (Looked.uids): a dump every quarter second
    # sees it far younger than PT_LIMIT=1, so that only a live check or a pass reports it
    dump_often(monkeypatch)
    service = recorded_service(tmp_path, UID)
    service.metrics_file = os.path.join(service.root, "textfile", "ptfast.prom")
    os.makedirs(os.path.dirname(service.metrics_file))
    return service


def passes(service) -> int:
    return service.log().count("pass done")


def reported_pids(service) -> set:
    return {event.get("pid") for event in service.events()}


def read_status(service) -> dict:
    return orjson.loads(open(status.status_path(service.state_dir), "rb").read())


def status_text(service) -> str:
    return run_ptfast(["status", "--state-dir", service.state_dir], text=True).stdout


@pytest.mark.parametrize("core_name", ["compiled", "pure-python"])
def test_a_new_listener_is_reported_at_its_limit_not_at_the_next_pass(service, core_name,
                                                                      monkeypatch):
    """On both cores (the check is a walk of just the pids due)."""
    if core_name == "pure-python":
        monkeypatch.setenv("PTFAST_NO_EXTENSIONS", "1")
    else:
        pytest.importorskip("ptfast.scan._procscan", reason="no compiled core")
        monkeypatch.delenv("PTFAST_NO_EXTENSIONS", raising=False)
    with service.started(service.sendmail, *SETTINGS,
                         f"PT_METRICS_FILE={service.metrics_file}") as daemon:
        assert wait_until(lambda: passes(service) == 1, PATIENCE), service.log()
        assert "mode: live" in service.log()
        listener = start_python(LISTEN_ANY, uid=UID)
        try:
            assert wait_until(lambda: listener.pid in reported_pids(service), PATIENCE), \
                service.log()
            # reported before any second pass: by its own check at PT_LIMIT
            assert passes(service) == 1, service.log()
            assert wait_until(lambda: len(service.recorder.calls()) == 1, PATIENCE)
        finally:
            listener.stop()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert read_status(service)["core"] == core_name
    live = read_status(service)["live"]
    assert live["mode"] == "live" and live["checks"] >= 1 and live["events"] >= 1
    shown = status_text(service)
    assert "  mode:        live (since the service started: events " in shown
    with open(service.metrics_file) as handle:
        found = {sample.name: sample.value
                 for family in text_string_to_metric_families(handle.read())
                 for sample in family.samples}
    assert found["ptfast_live"] == 1
    assert found["ptfast_live_checks_total"] >= 1
    assert found["ptfast_live_resyncs_total"] == 0


def test_lost_events_make_a_full_pass_at_once(service):
    """In process, to shrink the reader's buffer to the kernel's minimum during a fork burst
    (as tests/test_procevents.py does): the events overrun it, and a full pass follows at
    once, long before PT_INTERVAL."""
    running = service.in_process(service.sendmail, *SETTINGS)
    failures: list = []

    def burst_then_stop() -> None:
        try:
            # at least one: on a busy machine events may already have been lost, and the
            # resync pass that follows can come before this thread looks
            assert wait_until(lambda: passes(service) >= 1, PATIENCE), service.log()
            before = passes(service)
            reader = running.live.reader
            reader.set_receive_buffer(1)
            # 600 events: the minimum buffer holds two or three
            subprocess.run([sys.executable, "-c", BURST, "300"], check=True)
            reader.set_receive_buffer(4 * 1024 * 1024)
            # PT_INTERVAL is 60 s, longer than PATIENCE: a pass within it is the resync's
            assert wait_until(lambda: passes(service) > before, PATIENCE), service.log()
        except BaseException as exc:         # said by the test, in the main thread
            failures.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    worker = threading.Thread(target=burst_then_stop)
    guard = threading.Timer(3 * PATIENCE, os.kill, (os.getpid(), signal.SIGTERM))
    worker.start()
    guard.start()
    try:
        running.serve()
    finally:
        guard.cancel()
        worker.join()
        running.stop()
    if failures:
        raise failures[0]
    assert "a full pass now: process events were lost (" in service.log()
    live = read_status(service)["live"]
    assert live["mode"] == "live"
    assert live["resyncs"] >= 1 and live["overruns"] + live["gaps"] >= 1
    assert read_status(service)["totals"]["passes"] >= 2


@pytest.mark.skipif(not nonetlink.SUPPORTED, reason="no seccomp filter for this machine")
def test_without_the_connector_the_service_polls_and_says_why(service):
    """Netlink sockets refused (as a seccomp or LSM policy may): no live mode; a new listener
    is found by the next pass (asked for with SIGUSR1), exactly as before."""
    daemon = subprocess.Popen(service.command(service.sendmail, *SETTINGS, once=False),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=nonetlink.REFUSALS["socket"])
    listener = None
    try:
        assert wait_until(lambda: passes(service) == 1, PATIENCE), service.log()
        why = ("polling, because the kernel refused the proc connector (socket: Permission "
               "denied; no CAP_NET_ADMIN, or a seccomp or LSM policy)")
        assert f"mode: {why}: passes every PT_INTERVAL only" in service.log()
        assert read_status(service)["live"] == {
            "mode": "polling", "reason": why[len("polling, because "):]}
        assert f"  mode:        {why}\n" in status_text(service)
        listener = start_python(LISTEN_ANY, uid=UID)
        # past its PT_LIMIT: then a pass reports it
        assert wait_until(lambda: process_age(listener.pid) > 1.2, PATIENCE)
        daemon.send_signal(signal.SIGUSR1)
        assert wait_until(lambda: listener.pid in reported_pids(service), PATIENCE), \
            service.log()
        # the pass writes its events before its "pass done" line: wait for the line, which
        # says that this pass found it
        assert wait_until(lambda: passes(service) == 2, PATIENCE), service.log()
        second = [line for line in service.log().splitlines() if "pass done" in line][1]
        assert "1 finding(s) (suspicious 1)" in second, service.log()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if listener is not None:
            listener.stop()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


class LosingReader:
    """A reader that lost events whenever the test says so (live.Live's counters only)."""

    overruns, gaps, missed = 1, 0, 0

    def __init__(self) -> None:
        self.lost = False

    def take_resync(self) -> bool:
        lost, self.lost = self.lost, False
        return lost


def test_resyncs_are_spaced_and_none_is_forgotten():
    """Losses in a row make one full pass at once, then at most one per spacing, which grows
    with the passes' duration (at most a tenth of the time walking); the reason waits."""
    from ptfast.act import live as live_mod
    reader = LosingReader()
    live = live_mod.Live(reader, 2)     # type: ignore[arg-type]
    reader.lost = True
    assert live.resync_reason(100.0).startswith("process events were lost (1 overrun(s)")
    reader.lost = True
    assert live.resync_reason(101.0) is None                 # held back, not forgotten
    assert live.resync_at() == 100.0 + live_mod.RESYNC_SPACING
    assert live.resync_reason(100.0 + live_mod.RESYNC_SPACING) is not None
    assert live.resync_reason(200.0) is None                 # nothing lost since
    assert live.resyncs == 2
    live.pass_took(3.0)                                      # a 3 s walk: 30 s apart
    reader.lost = True
    assert live.resync_reason(205.0 + live_mod.RESYNC_SPACING) is not None
    reader.lost = True
    assert live.resync_reason(205.0 + live_mod.RESYNC_SPACING + 29) is None
    assert live.resync_reason(205.0 + live_mod.RESYNC_SPACING + 30) is not None


def test_due_processes_are_checked_together():
    """A check walks the socket tables whatever the number of pids: processes due close
    together are checked in one walk, CHECK_BATCH_SECONDS after the first is due."""
    from ptfast.act import live as live_mod
    from ptfast.scan.procevents import FORK, Event
    live = live_mod.Live(LosingReader(), 2)     # type: ignore[arg-type]
    second = live_mod.NS
    live.schedule.feed([Event(FORK, pid, pid, 1, 1, -1, -1, at * second // 10)
                        for pid, at in ((101, 0), (102, 2), (103, 30))])   # 0, 0.2, 3.0 s
    first_due = 2.0
    assert live.check_at() == first_due + live_mod.CHECK_BATCH_SECONDS
    assert live.due(first_due + 0.3) == []
    assert live.due(first_due + live_mod.CHECK_BATCH_SECONDS) == [101, 102]
    assert live.check_at() == 5.0 + live_mod.CHECK_BATCH_SECONDS


# a root master of our own: its pool listener on 0.0.0.0, and a worker it forks that drops to
# the customer's uid and keeps the listener, never exec'ing (a pre-fork worker, as php-fpm's)
ROOT_MASTER_AND_WORKER = """
pool = socket.socket()
pool.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
pool.bind(("0.0.0.0", 0))
pool.listen(8)
worker = os.fork()
if worker == 0:
    os.setgroups([]); os.setresgid(WORKER_UID, WORKER_UID, WORKER_UID)
    os.setresuid(WORKER_UID, WORKER_UID, WORKER_UID)
    while True:
        signal.pause()
info["worker"] = worker
"""


def test_a_root_services_new_worker_is_judged_beside_its_master(service):
    """A check of just the due pids must see each one's parent: the service-socket rule proves
    a worker by its root master. Without it, a pool worker forked after the service started
    was reported for its pool's listener in live mode, though a full pass leaves it alone
    (the hosting bed's dovecot, pure-ftpd, sshd sessions and apache2 workers). A backdoor
    started at the same moment shows that the live check ran."""
    with service.started(service.sendmail, *SETTINGS):
        assert wait_until(lambda: passes(service) == 1, PATIENCE), service.log()
        assert "mode: live" in service.log()
        master = start_python(f"WORKER_UID = {UID}\n" + ROOT_MASTER_AND_WORKER)
        # the backdoor due a batch later than the worker (twice CHECK_BATCH_SECONDS): once it
        # is reported, the worker's check is done
        time.sleep(1.0)
        backdoor = start_python(LISTEN_ANY, uid=UID)
        try:
            assert wait_until(lambda: backdoor.pid in reported_pids(service), PATIENCE), \
                service.log()
            assert passes(service) == 1, service.log()
            assert master.info["worker"] not in reported_pids(service), service.log()
        finally:
            backdoor.stop()
            master.stop()
            kill_uid(UID)


#: a database query (a TCP connection to sys.argv[1]) opened once the file sys.argv[2] exists
QUERY_LATER = textwrap.dedent("""
    def query(port, go):
        while not os.path.exists(go):
            time.sleep(0.05)
        KEEP.append(socket.create_connection(("127.0.0.1", port)))
    threading.Thread(target=query, args=(int(sys.argv[1]), sys.argv[2]), daemon=True).start()
""")
CALLER_UID = uid_for(961)
#: a pool worker's day: one short call to another host now (a UDP connect() sends no packet, so
#: nothing leaves the machine), and a database query (a TCP connection to sys.argv[1]) opened
#: once the file sys.argv[2] exists
CALLS_THEN_QUERIES = textwrap.dedent("""
    call = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    call.connect(("198.18.0.9", 53))
    KEEP.append(call)
""") + QUERY_LATER


def test_a_connection_opened_after_the_dump_is_young_in_the_walk_that_follows_it(
        tmp_path, monkeypatch, aged):
    """Between passes, a socket dump names the accounts worth judging (a call to another host,
    a connection of age) and a walk of their processes judges them. A connection opened
    between the dump and the walk was seen by no dump: it is first seen by the walk, so young
    (PT_CONN_AGE), as a pass and a live check judge it; it counted at once before, and
    `ptfast run` reported the hosting bed's php-fpm workers for their database queries, though
    no pass or scan did. The account's listener, judged by the same walk, shows it ran.
    In process, with the age seam (``aged``): the two processes count as past PT_LIMIT at once
    (the connection, 2 s older too, stays far from PT_CONN_AGE=30)."""
    database = socket.socket()
    database.bind(("127.0.0.1", 0))
    database.listen(8)
    go_dir = public_tempdir()
    go = os.path.join(go_dir, "go")
    service_dir = ServiceDir(tmp_path, CALLER_UID)
    recorder = SendmailRecorder(str(tmp_path))
    worker = listener = None
    dump = looking.dump

    def dump_then_query(*args, **kwargs):
        uids = dump(*args, **kwargs)
        open(go, "w").close()            # the query starts after the dump read the tables
        assert wait_until(lambda: len(os.listdir(f"/proc/{worker.pid}/fd")) > fds, 10)
        return uids
    service = service_dir.in_process("PT_USERPROC=0", "PT_CONN_AGE=30",
                                     f"SENDMAIL={recorder.path}")
    try:
        worker = start_python(CALLS_THEN_QUERIES, uid=CALLER_UID,
                              argv=[str(database.getsockname()[1]), go])
        listener = start_python(LISTEN_ANY, uid=CALLER_UID)
        fds = len(os.listdir(f"/proc/{worker.pid}/fd"))
        monkeypatch.setattr(looking, "dump", dump_then_query)
        service.tracker.dump_sockets(service.settings)
    finally:
        service.stop()
        for child in (worker, listener):
            if child is not None:
                child.stop()
        database.close()
        shutil.rmtree(go_dir, ignore_errors=True)
    log = service_dir.log()
    reported = [int(pid) for pid in re.findall(r"\*Suspicious Process\* PID:(\d+)", log)]
    assert reported == [listener.pid], log


#: a listener no process holds (parked in the queue of a unix socket the process keeps): each
#: pass of `ptfast run` then walks the account's processes again, and all accounts' ones
PARKED_LISTENER = textwrap.dedent("""
    parked = socket.socket()
    parked.bind(("127.0.0.1", 0))
    parked.listen(8)
    queue, sender = socket.socketpair()
    socket.send_fds(sender, [b"x"], [parked.fileno()])
    parked.close()
    sender.close()
    KEEP.append(queue)
""")


def test_a_connection_opened_after_the_pass_is_young_in_the_walks_for_unheld_listeners(
        tmp_path, monkeypatch):
    """A pass that finds a listener outlived PT_LIMIT and held by none of the processes it
    walked walks the accounts' processes again at once (Tracker._hopping_listeners), judging
    them. A connection opened between the pass's walk and that one was seen by neither: it is
    first seen now, young (PT_CONN_AGE); it counted at once before, which on the hosting bed
    reported a php-fpm worker for a database query at the pass (CI). The listener is still
    reported, held by no process: the walks ran."""
    database = socket.socket()
    database.bind(("127.0.0.1", 0))
    database.listen(8)
    go_dir = public_tempdir()
    go = os.path.join(go_dir, "go")
    service_dir = ServiceDir(tmp_path, CALLER_UID)
    recorder = SendmailRecorder(str(tmp_path))
    parker = worker = None
    scan = procfs.scan

    def full_walk_then_query(*args, **kwargs):
        snapshot = scan(*args, **kwargs)
        if kwargs.get("pids") is None and not os.path.exists(go):   # the pass's own walk
            open(go, "w").close()
            assert wait_until(lambda: len(os.listdir(f"/proc/{worker.pid}/fd")) > fds, 10)
        return snapshot
    service = service_dir.in_process("PT_USERPROC=0", "PT_CONN_AGE=30",
                                     f"SENDMAIL={recorder.path}")
    try:
        parker = start_python(PARKED_LISTENER, uid=CALLER_UID)
        worker = start_python(QUERY_LATER, uid=CALLER_UID,
                              argv=[str(database.getsockname()[1]), go])
        fds = len(os.listdir(f"/proc/{worker.pid}/fd"))
        service.run_pass()                       # the listener first seen
        time.sleep(1.2)                          # the listener outlives PT_LIMIT=1
        # and so does the worker, started before that pass (no wait after the sleep)
        assert wait_until(lambda: process_age(worker.pid) > 1.2, 10)
        monkeypatch.setattr(procfs, "scan", full_walk_then_query)
        service.run_pass()
        assert os.path.exists(go)
    finally:
        service.stop()
        for child in (parker, worker):
            if child is not None:
                child.stop()
        database.close()
        shutil.rmtree(go_dir, ignore_errors=True)
    log = service_dir.log()
    reported = [int(pid) for pid in re.findall(r"\*Suspicious Process\* PID:(\d+)", log)]
    assert reported == [] and "held by no process" in log, log
