"""The other PT_* checks against real processes: too many processes, real memory use, a real
(bounded) fork bomb, hung-sshd look-alikes and a load alert, through `ptfast run --once` and
`ptfast scan`."""

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from ptfast.decide.checks import sshd_hung

from helpers.uids import uid_for
from helpers.procs import (alive, kill_uid, pids_of_uid, process_age, start_python,
                           wait_until)
from helpers.service import SendmailRecorder, ServiceDir, SmtpServer, record_action

pytestmark = pytest.mark.needs_root


def user_with_processes(tmp_path, children, uid: int, count: int = 4):
    """``count`` idle processes of ``uid``, and a service dir and sendmail recorder for it."""
    for _ in range(count):
        children.append(start_python("", uid=uid))
    return ServiceDir(tmp_path, uid), SendmailRecorder(str(tmp_path))


def test_user_over_pt_userproc_is_reported_once_then_quiet(tmp_path, children):
    uid = uid_for(401)
    service, recorder = user_with_processes(tmp_path, children, uid)
    action, record = record_action(tmp_path)
    settings = ("PT_USERPROC=3", f"SENDMAIL={recorder.path}", f"PT_USER_ACTION={action}")
    for _ in range(2):
        result = service.run_once(*settings)
        assert result.returncode == 0, result.stderr.decode()
    [call] = recorder.calls()
    body = call["parsed"].get_content()
    assert str(uid) in call["parsed"]["Subject"]
    for child in children:
        assert f"PID {child.pid} " in body
    messages = service.log()
    assert messages.count(f"*Excessive Processes* User:{uid} Kill:0 Process Count:4") == 1
    assert sorted(json.loads(record.read_text())[0].split(",")) == sorted(
        str(child.pid) for child in children)
    assert all(alive(child.pid) for child in children)        # PT_USERKILL=0: nothing killed


def test_pt_userkill_kills_the_flagged_user_processes_without_mail(tmp_path, children):
    uid = uid_for(402)
    service, recorder = user_with_processes(tmp_path, children, uid)
    result = service.run_once("PT_USERPROC=3", "PT_USERKILL=1", "PT_USERKILL_ALERT=0",
                              f"SENDMAIL={recorder.path}")
    assert result.returncode == 0, result.stderr.decode()
    assert wait_until(lambda: not any(alive(child.pid) for child in children))
    assert recorder.calls() == []
    assert f"*Excessive Processes* User:{uid} Kill:1 Process Count:4" in service.log()


ALLOCATE = """
block = bytearray(96 << 20)
for offset in range(0, len(block), 4096):   # touch every page: resident, not just reserved
    block[offset] = 1
KEEP.append(block)
"""


def test_resident_memory_past_pt_userrss_is_alerted_and_killed(tmp_path, children):
    uid = uid_for(403)
    hog = start_python(ALLOCATE, uid=uid)
    children.append(hog)
    service = ServiceDir(tmp_path, uid)
    with SmtpServer() as smtp:
        result = service.run_once("PT_USERRSS=64", "PT_USERKILL=1", f"LF_ALERT_SMTP={smtp.relay}")
        assert result.returncode == 0, result.stderr.decode()
        messages = smtp.inbox.messages()
    assert wait_until(lambda: not alive(hog.pid))
    [message] = messages
    body = message.get_content()
    assert "resident memory" in body and "> PT_USERRSS 64 MB" in body
    assert f"{hog.pid}" in message["Subject"]
    assert "Yes" in body                                         # [kill]
    log = service.log()
    assert f"*User Processing* PID:{hog.pid} Kill:1 User:{uid} RSS:" in log
    assert [event["check"] for event in service.events()] == ["resource"]


FORK_BOMB = textwrap.dedent("""
    import os, resource, sys, time
    os.setsid()
    resource.setrlimit(resource.RLIMIT_NPROC, (BOUND, BOUND))   # at most BOUND processes
    os.setgroups([]); os.setresgid(BOMB_UID, BOMB_UID, BOMB_UID)
    os.setresuid(BOMB_UID, BOMB_UID, BOMB_UID)
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:                     # every process forks forever: a real fork bomb
        try:
            os.fork()
        except OSError:
            time.sleep(0.05)        # at the bound: wait, without burning the CPU
""")


def test_fork_bomb_is_contained_and_killed(tmp_path):
    uid, limit = uid_for(404), 40
    code = f"BOUND, BOMB_UID = {limit}, {uid}\n" + FORK_BOMB
    bomb = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        assert bomb.stdout.readline() == b"ready\n"
        assert wait_until(lambda: len(pids_of_uid(uid)) >= limit - 2)
        service = ServiceDir(tmp_path, uid)
        recorder = SendmailRecorder(str(tmp_path))
        result = service.run_once("PT_FORKBOMB=20", "PT_USERPROC=0", f"SENDMAIL={recorder.path}")
        assert result.returncode == 0, result.stderr.decode()
        assert wait_until(lambda: pids_of_uid(uid) == [])
        [call] = recorder.calls()
        body = call["parsed"].get_content()
        assert f"session {bomb.pid} holds" in body and ">= PT_FORKBOMB 20" in body
        assert f"*PT_FORKBOMB* PID:{bomb.pid} SID:{bomb.pid} User:{uid}" in service.log()
        assert os.getsid(0) != bomb.pid and alive(os.getpid())
    finally:
        kill_uid(uid)               # never leave a bomb behind, whatever failed above
        bomb.wait(timeout=10)


def sshd_look_alike(cmdline: str, uid: int) -> subprocess.Popen:
    """A process whose whole command line is ``cmdline`` (cat waiting on its stdin)."""
    return subprocess.Popen(["bash", "-c", f"exec -a '{cmdline}' cat"], stdin=subprocess.PIPE,
                            user=uid, group=uid, extra_groups=[])


@pytest.mark.ageing         # the look-alikes really outlive a (lowered) grace period
def test_hung_sshd_is_killed_after_its_grace_period_but_sessions_never(tmp_path, monkeypatch):
    # lfd's grace period is 60 s (test_policy_checks checks 59 and 61 s); here it is 0.3 s, so
    # the test proves the kills without waiting a minute
    monkeypatch.setattr(sshd_hung, "SSHD_HUNG_AFTER", 0.3)
    uid = uid_for(405)
    names = ["sshd: unknown [net]", "sshd: unknown [priv]", "sshd: alice [priv]"]
    started = [sshd_look_alike(name, uid) for name in names]
    try:
        assert wait_until(lambda: all(
            open(f"/proc/{p.pid}/cmdline", "rb").read().rstrip(b"\0") == name.encode()
            for p, name in zip(started, names)))
        assert wait_until(lambda: all(process_age(p.pid) > 0.5 for p in started))
        service = ServiceDir(tmp_path, uid)
        recorder = SendmailRecorder(str(tmp_path))
        running = service.in_process("PT_SSHDHUNG=1", f"SENDMAIL={recorder.path}")
        try:
            assert running.once()
        finally:
            running.stop()
        assert recorder.calls() == []                      # lfd mails nothing about these
        assert wait_until(lambda: started[0].poll() is not None and started[1].poll() is not None)
        assert started[2].poll() is None                   # the authenticated session lives
        log = service.log()
        for process, name in zip(started[:2], names[:2]):
            assert f"*PT_SSHDHUNG* PID:{process.pid} " in log and f"CMD:{name} Killed:Yes" in log
        assert "alice" not in log
    finally:
        for process in started:
            process.kill()
            process.wait()


class StatusPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body>Apache Server Status: 42 requests currently being processed\x1b[2J"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_load_alert_with_processes_connections_and_status_page(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), StatusPage)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()
    service = ServiceDir(tmp_path, uid_for(406))
    action, record = record_action(tmp_path, "load-action")
    url = f"http://127.0.0.1:{server.server_address[1]}/server-status"
    settings = ("PT_LOAD=30", "PT_LOAD_LEVEL=0", "PT_LOAD_AVG=1", f"PT_APACHESTATUS={url}",
                f"PT_LOAD_ACTION={action}")
    try:
        with SmtpServer() as smtp:
            for _ in range(2):        # the second pass is inside PT_LOAD_SKIP: quiet
                result = service.run_once(*settings, f"LF_ALERT_SMTP={smtp.relay}")
                assert result.returncode == 0, result.stderr.decode()
            messages = smtp.inbox.messages()
    finally:
        server.shutdown()
    [message] = messages
    assert message.is_multipart() and "1 minute load average" in message["Subject"]
    parts = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert str(os.getpid()) in parts["processes.txt"]
    assert "memory: total" in parts["memory-cpu.txt"]
    assert f"127.0.0.1:{smtp.port}" in parts["connections.txt"]
    assert "42 requests currently being processed\\x1b[2J" in parts["server-status.html"]
    assert service.log().count("*LOAD* 1 minute load average:") == 1
    assert wait_until(record.exists) and json.loads(record.read_text()) == []


def test_scan_shows_every_check_and_never_kills(tmp_path, children):
    uid = uid_for(407)
    for _ in range(4):
        children.append(start_python("", uid=uid))
    hog = start_python(ALLOCATE, uid=uid)
    children.append(hog)
    pignore = tmp_path / "pignore"
    pignore.write_text(f"puser:(?!{uid}$).*\n")
    result = subprocess.run(
        [sys.executable, "-m", "ptfast", "scan", "--json", "--config", os.devnull,
         "--override", os.devnull, "--pignore", str(pignore), "--set", "PT_USERPROC=3",
         "--set", "PT_USERRSS=64", "--set", "PT_USERKILL=1", "--set", "PT_LOAD_LEVEL=0",
         "--set", "PT_LIMIT=1"], capture_output=True, timeout=120)
    assert result.returncode == 1, result.stderr.decode()
    records = [json.loads(line) for line in result.stdout.splitlines()]
    found = {record["check"]: record for record in records}
    assert set(found) == {"user_processes", "resource", "load"}
    assert found["user_processes"]["count"] == 5
    assert found["resource"]["pid"] == hog.pid
    # what `run` would do: kill exactly these processes (PT_USERKILL), mail (PT_USERKILL_ALERT
    # defaults to 1) and stay quiet about the user for LF_FLUSH
    plan = found["user_processes"]["response"]
    assert sorted(plan["kill"]) == sorted(child.pid for child in children)
    assert plan["kill_uid"] == uid and plan["alert"] == "usertracking.txt"
    assert plan["remember"] == [{"kind": "user_quiet", "key": [str(uid)], "seconds": 3600.0}]
    assert found["resource"]["response"]["kill"] == [hog.pid]
    assert found["load"]["response"]["kill"] == [] and found["load"]["response"]["alert"] == \
        "loadalert.txt"
    assert all(alive(child.pid) for child in children)          # scan is read-only
