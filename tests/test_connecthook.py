"""The BPF connect hook (issue 21): every connect() is seen with its process, however short the
connection, and `ptfast run` reports a process whose calls to other hosts last milliseconds.
Real processes; the hook is the kernel's own cgroup BPF hook."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from ptfast.act import looking
from ptfast.scan import connecthook

from helpers.inproc import run_ptfast
from helpers.procs import kill_uid, public_tempdir, start_python, wait_until
from helpers.scan import run_scan, suspicious_by_pid
from helpers.service import (SendmailRecorder, ServiceDir, dump_often, only_users_rule,
                             reported_by_live_service)
from helpers.uids import uid_for

pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

CALLER_UID = uid_for(241)
SPAMMER_UID = uid_for(242)
RESOLVING_UID = uid_for(243)
WORKERS_UID = uid_for(244)
LOOPER_UID = uid_for(245)
HOLDER_UID = uid_for(246)

#: once the child runs as its uid alone (the hook records the real uid): connect() and close
#: at once, a TCP call to a local listener (argv[1]: loopback, not recorded), then, in a
#: network namespace of its own with no route (no packet leaves), a TCP call and UDP calls
#: to a documentation-range host, v4 and v6
CALLS = """
def calls():
    while os.getuid() == 0:
        time.sleep(0.01)
    client = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    client.close()
    sockets = [(socket.AF_INET, socket.SOCK_STREAM, "198.18.7.7")]
    sockets += [(family, socket.SOCK_DGRAM, host)
                for family, host in ((socket.AF_INET, "198.18.7.7"),
                                     (socket.AF_INET6, "2001:db8::7"))]
    for family, kind, host in sockets:
        call = socket.socket(family, kind, fileno=in_netns(family, kind))
        try:
            call.connect((host, 25))
        except OSError:
            pass        # no route: the hook ran before the kernel looked for one
        call.close()
threading.Thread(target=calls, daemon=True).start()
"""

#: (root, before the drop) sockets made in a network namespace of its own, from a helper
#: thread that entered it: the rest of the child stays in the host's
IN_NETNS = """
_requests, _replies = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
_entered = threading.Event()
def _maker():
    assert libc.unshare(CLONE_NEWNET) == 0, ctypes.get_errno()     # this thread alone
    _entered.set()
    while True:
        family, kind = struct.unpack("=ii", _requests.recv(8))
        made = socket.socket(family, kind)
        socket.send_fds(_requests, [b"x"], [made.fileno()])
        made.close()
threading.Thread(target=_maker, daemon=True).start()
_entered.wait()         # while still root: the drop applies to every thread
def in_netns(family, kind):
    _replies.send(struct.pack("=ii", family, kind))
    return socket.recv_fds(_replies, 1, 1)[1][0]
"""


#: a spam sender that holds each call for no time at all, to a new host each time
SPAMMER = """
def spam():
    host = 0
    while True:
        host += 1
        call_out(f"198.18.{8 + host // 250 % 8}.{1 + host % 250}", 25)
        time.sleep(0.3)
threading.Thread(target=spam, daemon=True).start()
"""


#: name lookups, as glibc makes them: a UDP connect() to the host's resolver (argv[1]), port 53
LOOKUPS = """
def lookups():
    while True:
        call = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET,
                             socket.SOCK_DGRAM)
        try:
            call.connect((sys.argv[1], 53))
        except OSError:
            pass
        call.close()
        time.sleep(0.3)
threading.Thread(target=lookups, daemon=True).start()
"""


#: a root master (this child, root) and two workers it forks, which drop to argv[1]'s uid and
#: never exec (service workers, by provenance): "querying" calls its database, one host,
#: every 0.2 s; "wandering" does the same, then once sys.argv[2] exists calls a second host too
MASTER_AND_WORKERS = """
def worker(hosts_now):
    pid = os.fork()
    if pid:
        return pid
    uid = int(sys.argv[1])
    os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    while True:
        for host in hosts_now():
            call_out(host, 3306)
        time.sleep(0.2)
info["querying"] = worker(lambda: ["198.18.20.1"])
info["wandering"] = worker(lambda: ["198.18.20.1"] + (["198.18.20.2"]
                                                      if os.path.exists(sys.argv[2]) else []))
"""


#: a loop that never connects itself: every 0.3 s it forks a child that makes one call (to
#: a new host) and exits at once, long before any drain, as a shell running curl would
LOOPER = """
def loop():
    host = 0
    while True:
        host += 1
        child = os.fork()
        if child == 0:
            call_out(f"198.18.30.{1 + host % 250}", 443)
            os._exit(0)
        os.waitpid(child, 0)
        time.sleep(0.3)
threading.Thread(target=loop, daemon=True).start()
"""


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


def test_the_hook_records_each_connect_with_its_process_uid_and_peer(hook, listener):
    caller = start_python(CALLS, uid=CALLER_UID, argv=[str(listener)], root_setup=IN_NETNS)
    try:
        found = []
        assert wait_until(lambda: found.extend(hook.drain()) or
                          len([c for c in found if c.pid == caller.pid]) >= 3, 10), found
        mine = {(c.proto, c.remote_ip, c.remote_port, c.uid)
                for c in found if c.pid == caller.pid}
    finally:
        caller.stop()
    assert mine == {("tcp", "198.18.7.7", 25, CALLER_UID),
                    ("udp", "198.18.7.7", 25, CALLER_UID),
                    ("udp6", "2001:db8::7", 25, CALLER_UID)}
    # drained: a second drain has none of them
    assert not [c for c in hook.drain() if c.pid == caller.pid]


HOLDER = """
import sys
from ptfast.act import looking
from ptfast.scan import connecthook
hook, why = connecthook.open_hook()
print(" ".join(map(str, hook.program_ids())) if hook else "none: " + why, flush=True)
sys.stdin.read()
"""


def test_a_killed_holder_leaves_no_program_attached(hook):
    """The programs hang on a BPF link: the kernel detaches them when ptfast dies, however."""
    root = connecthook.cgroup2_root()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        ids = [int(word) for word in holder.stdout.readline().split()]
        assert len(ids) == 2, ids
        attached = connecthook.attached_program_ids(root)
        assert set(ids) <= attached, (ids, attached)
        # the hook of this test (the fixture's) is attached beside it: each has its own
        assert set(hook.program_ids()) <= attached
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert wait_until(lambda: not set(ids) & connecthook.attached_program_ids(root), 10)
    assert set(hook.program_ids()) <= connecthook.attached_program_ids(root)


@pytest.mark.ageing         # waits for a service's dumps in real time
def test_a_stream_of_millisecond_calls_to_other_hosts_is_reported_by_run(tmp_path, hook,
                                                                        monkeypatch):
    """A process that never holds a call for a dump to see is reported for its connect()s,
    with no pass (PT_INTERVAL an hour), naming the hosts it called; once, however many more
    hosts it calls; a process resolving names through the host's resolver is not."""
    hook.close()        # the service opens its own
    dump_often(monkeypatch)
    resolvers = [address for address in looking.nameservers()
                 if not (address.is_loopback or address.is_link_local)]
    service = ServiceDir(tmp_path, SPAMMER_UID, RESOLVING_UID)
    recorder = SendmailRecorder(str(tmp_path))
    spammer = resolving = None
    with service.started(f"SENDMAIL={recorder.path}", "PT_INTERVAL=3600", "PT_CONN_AGE=5",
                         "PT_USERPROC=0", "PT_PASS_SUMMARY=1") as daemon:
        try:
            assert wait_until(lambda: "pass done" in service.log(), 60), service.log()
            assert "connects: the BPF connect hook runs" in service.log(), service.log()
            if resolvers:       # a process resolving names is not calling other hosts
                resolving = start_python(LOOKUPS, uid=RESOLVING_UID, argv=[str(resolvers[0])])
            spammer = start_python(SPAMMER, uid=SPAMMER_UID)
            assert wait_until(lambda: f"*Suspicious Process* PID:{spammer.pid} " in
                              service.log(), 60), service.log()
            # a few more dumps (dump_often: at least three): the spammer calls four more hosts
            time.sleep(1.2)
            # reported once for its calls, not again for each next host
            assert service.log().count(f"*Suspicious Process* PID:{spammer.pid} ") == 1, \
                service.log()
            if resolving is not None:       # its lookups began first
                assert f"PID:{resolving.pid} " not in service.log(), service.log()
            status = run_ptfast(["status", "--state-dir", service.state_dir], text=True)
        finally:
            for child in (spammer, resolving):
                if child is not None:
                    child.stop()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    mail = recorder.calls()[0]["parsed"].get_content()
    assert "-> 198.18.8." in mail and "(connect())" in mail, mail[:1500]
    assert "BPF connect hook" in status.stdout, status.stdout + status.stderr


IN_A_PID_NAMESPACE = """
import ctypes, os, sys
from ptfast.scan import connecthook
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x20000000) == 0, ctypes.get_errno()      # CLONE_NEWPID: for children
pid = os.fork()
if pid == 0:
    hook, why = connecthook.open_hook()
    print("opened" if hook else why, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.ageing         # waits for a service's dumps in real time
def test_a_workers_calls_to_its_one_database_do_not_count_a_second_host_does(tmp_path, hook,
                                                                             monkeypatch):
    """Service workers (forked by a root master, never exec'd) calling one remote host again
    and again are querying their database: not reported, however many calls. One that then
    calls a second host is reported for it at once (no pass: PT_INTERVAL an hour)."""
    hook.close()        # the service opens its own
    dump_often(monkeypatch)
    public = public_tempdir()           # the workers must see the file appear
    go = os.path.join(public, "second-host")
    service = ServiceDir(tmp_path, WORKERS_UID)
    recorder = SendmailRecorder(str(tmp_path))
    master = None
    with service.started(f"SENDMAIL={recorder.path}", "PT_INTERVAL=3600", "PT_CONN_AGE=5",
                         "PT_USERPROC=0", "PT_PASS_SUMMARY=1") as daemon:
        try:
            assert wait_until(lambda: "pass done" in service.log(), 60), service.log()
            master = start_python(MASTER_AND_WORKERS, argv=[str(WORKERS_UID), go])
            querying, wandering = master.info["querying"], master.info["wandering"]
            # some 7 calls each, and at least three dumps (dump_often): REMOTE_CALLS drained
            time.sleep(1.5)
            open(go, "w").close()
            assert wait_until(lambda: f"*Suspicious Process* PID:{wandering} " in
                              service.log(), 30), service.log()
            time.sleep(0.8)     # a few more dumps (a bug would report it beside the other)
            assert f"PID:{querying} " not in service.log(), service.log()
        finally:
            if master is not None:
                master.stop()
            kill_uid(WORKERS_UID)           # the workers outlive their master
            shutil.rmtree(public, ignore_errors=True)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    mail = recorder.calls()[0]["parsed"].get_content()
    assert "198.18.20.2:3306" in mail, mail[:1500]


@pytest.mark.ageing         # waits for a service's dumps in real time
def test_calls_of_children_gone_before_the_drain_count_for_the_loop_that_forked_them(tmp_path,
                                                                                     hook,
                                                                                     monkeypatch):
    """Live mode knows who forked each process: the calls of a child that exited before the
    hook's map was drained are its parent's, so the loop is reported."""
    hook.close()        # the service opens its own
    dump_often(monkeypatch)
    _pid, mail = reported_by_live_service(tmp_path, LOOPER_UID, LOOPER)
    assert "-> 198.18.30." in mail and "(connect())" in mail, mail[:1500]


#: a connection held from the start (to argv[1]): a tracked account holds one, so the scan waits
HOLDS_ONE = """
KEEP = [socket.create_connection(("127.0.0.1", int(sys.argv[1])))]
"""


def test_scan_sees_the_calls_made_while_it_waits(tmp_path, hook, listener):
    """`ptfast scan` waits PT_CONN_AGE when a tracked account holds a connection, and opens the
    hook for that wait: a spam sender holding nothing is reported for its calls, as by run."""
    hook.close()
    holder = start_python(HOLDS_ONE, uid=HOLDER_UID, argv=[str(listener)])
    # a call every 0.1 s: ten in the one second the scan waits
    spammer = start_python(SPAMMER.replace("time.sleep(0.3)", "time.sleep(0.1)"),
                           uid=SPAMMER_UID)
    try:
        pignore = os.path.join(tmp_path, "pignore")
        with open(pignore, "w") as handle:
            handle.write(only_users_rule(HOLDER_UID, SPAMMER_UID))
        # aged: 2 s older, the wait as well: PT_CONN_AGE 3 waits 1 s
        result = run_scan("--json", "--pignore", pignore, "--set", "PT_CONN_AGE=3", aged=True)
        found = suspicious_by_pid(result)
    finally:
        holder.stop()
        spammer.stop()
    assert spammer.pid in found, (sorted(found), result.stderr)
    assert {sock["state"] for sock in found[spammer.pid]["sockets"]} == {"connect()"}


def test_in_a_pid_namespace_of_its_own_the_hook_is_not_used_and_says_why(hook):
    """The programs record the host's process ids; in a container's pid namespace they would
    name other processes, or none."""
    result = subprocess.run([sys.executable, "-c", IN_A_PID_NAMESPACE], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == ("it runs in a pid namespace other than the host's "
                                     "(a container?)"), result.stdout + result.stderr
