"""The proc connector reader (ptfast/scan/procevents.py) and the schedule it feeds
(ptfast/act/schedule.py), against real processes: forks, execs, uid changes and exits are seen
with the right pids; a process is due at its start + PT_LIMIT; an overrun is detected and
counted; and where the connector cannot work, the mode says why."""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import nonetlink
from helpers.uids import uid_for
from ptfast.act.schedule import Schedule
from ptfast.scan import procevents
from ptfast.scan.procevents import EXEC, EXIT, FORK, UID, Event, Mode

pytestmark = pytest.mark.needs_root

CHANGED_UID = uid_for(710)
LIMIT_SECONDS = 5
#: only a guard against a hang: no assertion depends on it
PATIENCE = 60.0

# forks a thread, then a child that becomes CHANGED_UID and execs /bin/true; prints their ids
LIFE = textwrap.dedent("""
    import os, sys, threading
    uid = int(sys.argv[1])
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    pid = os.fork()
    if pid == 0:
        os.setgid(uid)
        os.setuid(uid)
        os.execv("/bin/true", ["true"])
    os.waitpid(pid, 0)
    print(pid, thread.native_id, flush=True)
""")

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


def read_until(reader: procevents.ProcEvents, done) -> list:
    """Every event until ``done(event)`` is true of one of them."""
    seen: list = []
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        select.select([reader], [], [], 1.0)
        for event in reader.read():
            seen.append(event)
            if done(event):
                return seen
    raise AssertionError(f"the awaited event never came ({len(seen)} others did)")


def process_exit_of(pid: int):
    return lambda event: event.kind == EXIT and event.pid == event.tgid == pid


@pytest.fixture
def reader():
    opened, mode = procevents.open_reader()
    if opened is None:
        pytest.skip(f"no proc connector here: {mode}")
    yield opened
    opened.close()


def test_mode_says_live(reader):
    assert str(Mode(True)) == "live"
    assert reader.fileno() >= 0


def test_fork_exec_uid_and_exit_of_real_processes(reader):
    script = subprocess.Popen([sys.executable, "-c", LIFE, str(CHANGED_UID)],
                              stdout=subprocess.PIPE, text=True)
    try:
        events = read_until(reader, process_exit_of(script.pid))
        child, thread = map(int, script.stdout.readline().split())
    finally:
        script.kill()
        script.wait()
    mine = [event for event in events if script.pid in (event.tgid, event.parent_tgid)
            or event.tgid == child]
    forks = [event for event in mine if event.kind == FORK]
    # the script itself, born of this test's process
    assert any(event.tgid == event.pid == script.pid and event.parent_tgid == os.getpid()
               for event in forks)
    # its thread: a fork whose pid is not the process
    assert any(event.pid == thread and event.tgid == script.pid for event in forks)
    # its child, forked by its main thread
    assert any(event.pid == event.tgid == child and event.parent_pid == event.parent_tgid
               == script.pid for event in forks)
    child_events = [event for event in mine if event.tgid == child]
    kinds = [event.kind for event in child_events]
    assert kinds.index(FORK) < kinds.index(UID) < kinds.index(EXEC) < kinds.index(EXIT)
    changed = next(event for event in child_events if event.kind == UID)
    assert (changed.ruid, changed.euid) == (CHANGED_UID, CHANGED_UID)
    end = next(event for event in child_events if event.kind == EXIT)
    assert end.pid == child
    assert end.parent_tgid in (0, script.pid)       # 0: a kernel that does not say it
    stamps = [event.timestamp_ns for event in child_events]
    assert stamps == sorted(stamps)
    assert reader.received >= len(events)


def test_a_process_is_due_at_its_start_plus_the_limit(reader):
    schedule = Schedule(LIMIT_SECONDS)
    sleeper = subprocess.Popen(["sleep", "1000"])
    short = subprocess.Popen(["true"])
    try:
        short.wait()
        events = read_until(reader, process_exit_of(short.pid))
        schedule.feed(events)
    finally:
        sleeper.kill()
        sleeper.wait()
    born = next(event for event in events if event.kind == FORK and event.tgid == sleeper.pid)
    due_at = born.timestamp_ns + LIMIT_SECONDS * 1_000_000_000
    assert sleeper.pid not in dict(schedule.due(due_at - 1))
    assert schedule.next_due() <= due_at
    # (the host's other new processes are due too, each at its own time)
    assert dict(schedule.due(due_at))[sleeper.pid] == born.timestamp_ns
    # once checked, it waits no more; the short-lived one exited first and was forgotten
    later = dict(schedule.due(due_at + 10 ** 12))
    assert sleeper.pid not in later and short.pid not in later


# the main thread ends alone (exit, not exit_group): the process runs on in its other thread
LEADER_LEAVES = textwrap.dedent("""
    import ctypes, os, threading, time
    threading.Thread(target=time.sleep, args=(1000,)).start()
    print(os.getpid(), flush=True)
    ctypes.CDLL(None).syscall(60, 0)
""")


def test_a_process_whose_main_thread_ended_is_still_due(reader):
    schedule = Schedule(LIMIT_SECONDS)
    script = subprocess.Popen([sys.executable, "-c", LEADER_LEAVES], stdout=subprocess.PIPE,
                              text=True)
    try:
        events = read_until(reader, process_exit_of(script.pid))
        schedule.feed(events)
        assert os.path.exists(f"/proc/{script.pid}/task")      # it runs on
    finally:
        script.kill()
        script.wait()
    born = next(event for event in events if event.kind == FORK and event.tgid == script.pid)
    due = dict(schedule.due(born.timestamp_ns + LIMIT_SECONDS * 1_000_000_000))
    assert due.get(script.pid) == born.timestamp_ns


def run_on_every_cpu() -> None:
    """An exec and an exit on each CPU, so that a loss at the end of a CPU's numbering shows
    as a gap too."""
    for cpu in sorted(os.sched_getaffinity(0)):
        subprocess.run(["true"], check=True,
                       preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu}))


def run_marker(reader: procevents.ProcEvents) -> list:
    """Events until a new process's exit: everything before it has come."""
    marker = subprocess.Popen(["true"])
    marker.wait()
    return read_until(reader, process_exit_of(marker.pid))


def test_an_overrun_is_detected_and_counted():
    reader = procevents.ProcEvents()
    forks = 300         # 600 events: the minimum buffer holds two or three
    try:
        # every CPU's numbering known before the loss (a CPU first heard from after it
        # cannot say how much it lost)
        run_on_every_cpu()
        run_marker(reader)
        reader.set_receive_buffer(1)       # the kernel's minimum: a few events
        subprocess.run([sys.executable, "-c", BURST, str(forks)], check=True)
        # from now on the rest must come: a buffer that holds it, and the queue read empty,
        # which ends the overrun (until then the kernel drops every new event for the socket)
        reader.set_receive_buffer(procevents.DEFAULT_RECEIVE_BUFFER)
        events = reader.read(limit=10 ** 6)
        run_on_every_cpu()
        events += run_marker(reader)
    finally:
        reader.close()
    assert reader.overruns >= 1
    assert reader.gaps >= 1
    # nothing lost uncounted: the burst's forks and exits were either received or counted
    assert len(events) + reader.missed >= 2 * forks
    assert reader.take_resync() is True
    assert reader.take_resync() is False


def mode_in(command: list, preexec_fn=None, uid=None) -> str:
    """What open_reader says in a child process started with ``command`` before Python (as
    ``uid`` if given: it drops to it once its modules are loaded, which other uids cannot
    read)."""
    drop = f"os.setgroups([]); os.setgid({uid}); os.setuid({uid})\n" if uid else ""
    code = (f"import os, sys; sys.path[:0] = {sys.path!r}\n"
            "from ptfast.scan import procevents\n" + drop +
            "reader, mode = procevents.open_reader()\n"
            "print(mode)\n")
    done = subprocess.run(command + [sys.executable, "-c", code], capture_output=True,
                          text=True, check=True, preexec_fn=preexec_fn)
    return done.stdout.strip()


def test_in_a_new_user_namespace_it_polls_and_says_why():
    assert mode_in(["unshare", "--user", "--map-root-user"]) == (
        "polling, because it runs in a user namespace other than the host's (a container?)")


def test_in_a_new_pid_namespace_it_polls_and_says_why():
    assert mode_in(["unshare", "--pid", "--fork"]) == (
        "polling, because it runs in a pid namespace other than the host's (a container?)")


def test_in_a_new_network_namespace_it_polls_and_says_why():
    mode = mode_in(["unshare", "--net"])
    assert mode.startswith("polling, because it runs in a network namespace other than "
                           "the host's"), mode


def test_without_root_it_polls_and_says_why():
    mode = mode_in([], uid=uid_for(711))
    assert mode == "polling, because the service lacks CAP_NET_ADMIN (not root?)"


@pytest.mark.skipif(not nonetlink.SUPPORTED, reason="no seccomp filter for this machine")
def test_a_refused_netlink_socket_polls_and_says_why():
    mode = mode_in([], preexec_fn=nonetlink.REFUSALS["socket"])
    assert mode == ("polling, because the kernel refused the proc connector (socket: "
                    "Permission denied; no CAP_NET_ADMIN, or a seccomp or LSM policy)")


# --- the schedule alone, on made-up events -------------------------------------------------

SECOND = 1_000_000_000


def event(kind: int, tgid: int, at: int, pid: int = 0) -> Event:
    return Event(kind, pid or tgid, tgid, 1, 1, -1, -1, at)


def test_threads_are_not_scheduled():
    schedule = Schedule(1)
    schedule.feed([event(FORK, 100, 0, pid=101)])
    assert len(schedule) == 0


def test_exec_or_uid_after_the_check_makes_it_due_again():
    schedule = Schedule(1)
    schedule.feed([event(FORK, 100, 0), event(EXEC, 100, SECOND // 2)])
    assert schedule.due(SECOND) == [(100, 0)]          # the exec did not move its check
    schedule.feed([event(UID, 100, 3 * SECOND)])
    assert schedule.due(4 * SECOND - 1) == []
    assert schedule.due(4 * SECOND) == [(100, 3 * SECOND)]


def test_a_reused_pid_is_a_new_process():
    schedule = Schedule(1)
    schedule.feed([event(FORK, 100, 0), event(EXIT, 100, 1), event(FORK, 100, SECOND)])
    assert schedule.due(SECOND) == []
    assert schedule.due(2 * SECOND) == [(100, SECOND)]


def test_past_its_capacity_it_counts_and_asks_for_a_walk():
    schedule = Schedule(1, capacity=3)
    schedule.feed([event(FORK, pid, 0) for pid in range(100, 105)])
    assert len(schedule) == 3
    assert schedule.overflows == 2
    assert schedule.take_resync() is True
    schedule.rebuild([(200, 0), (201, SECOND)])
    assert schedule.due(SECOND) == [(200, 0)]
    assert schedule.due(2 * SECOND) == [(201, SECOND)]


def test_exited_processes_do_not_pile_up():
    schedule = Schedule(60)
    for pid in range(100, 100_100):
        schedule.feed([event(FORK, pid, pid), event(EXIT, pid, pid + 1)])
    assert len(schedule) == 0
    assert len(schedule._heap) <= 1024 + 1


def forged_fork(tgid: int) -> bytes:
    """A datagram that looks like the kernel's fork event of ``tgid``."""
    import struct
    header = struct.pack("=IHHII IIIIHH IIQ", 68, 3, 0, 0, 0, 1, 1, 0, 0, 32, 0, FORK, 0, 0)
    return header + struct.pack("=iiii", 1, 1, tgid, tgid)


def test_a_forged_event_from_another_socket_is_ignored(reader):
    import socket
    forger = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, procevents.NETLINK_CONNECTOR)
    marker = None
    try:
        forger.bind((0, 0))
        # root may send to the reader's port; the reader must not believe it
        forger.sendto(forged_fork(4_000_000), (reader.sock.getsockname()[0], 0))
        marker = subprocess.Popen(["true"])
        marker.wait()
        events = read_until(reader, process_exit_of(marker.pid))
    finally:
        forger.close()
    assert not any(event.tgid == 4_000_000 for event in events)


def test_another_uid_cannot_send_to_the_reader(reader):
    uid = uid_for(712)
    code = (f"import os, socket; s = socket.socket(16, socket.SOCK_DGRAM, 11)\n"
            f"os.setgroups([]); os.setgid({uid}); os.setuid({uid})\n"
            f"try:\n"
            f"    s.sendto({forged_fork(4_000_001)!r}, ({reader.sock.getsockname()[0]}, 0))\n"
            f"    print('sent')\n"
            f"except PermissionError:\n"
            f"    print('refused')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "refused"


def test_a_threaded_process_is_forgotten_once_its_last_thread_ends():
    schedule = Schedule(1)
    schedule.feed([event(FORK, 100, 0), event(FORK, 100, 1, pid=101),
                   event(EXIT, 100, 2)])               # the main thread first
    assert len(schedule) == 1
    schedule.feed([event(EXIT, 100, 3, pid=101)])
    assert len(schedule) == 0
    schedule.feed([event(FORK, 200, 0), event(FORK, 200, 1, pid=201),
                   event(EXIT, 200, 2, pid=201), event(EXIT, 200, 3)])
    assert len(schedule) == 0


def test_close_tells_the_kernel_to_ignore_and_does_not_wait_for_an_answer(reader, monkeypatch):
    """The kernel acts on IGNORE within sendto(), and newer ones never answer a socket that
    asked to ignore: a wait for the answer ran to its timeout at every stop of the service."""
    sent = []
    real_sendto = reader.sock.sendto

    class Watched:            # socket methods are read-only: wrap the socket instead
        def __init__(self, sock):
            self._sock = sock

        def sendto(self, data, address):
            sent.append(struct.unpack_from("=I", data, len(data) - 4)[0])
            return real_sendto(data, address)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    def no_wait(*args, **kwargs):
        raise AssertionError("close() waited for an answer")

    monkeypatch.setattr(procevents.select, "select", no_wait)
    reader.sock = Watched(reader.sock)
    reader.close()
    assert sent == [procevents.PROC_CN_MCAST_IGNORE]
    assert reader.sock.fileno() < 0
