"""`ptfast run` against real processes: mail through a real SMTP server and through a sendmail
recorder, the spool, reported-once memory, log lines, events, actions, signals and the lock."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from helpers.uids import uid_for
from helpers.inproc import run_ptfast
from helpers.procs import start_copied_python, start_python, wait_until
from helpers.proctree import TCP_HEADER, stat_line, write
from helpers.service import (SendmailRecorder, ServiceDir, SmtpServer, free_port, record_action,
                     start_time_of)

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

BINDSHELL_UID = uid_for(201)
LISTEN_ANY = 'info["port"] = listen(socket.AF_INET, "0.0.0.0").getsockname()[1]'
LFD_LINE = re.compile(r"[A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \S+ lfd\[\d+\]: (.*)")


@pytest.fixture(scope="module")
def bindshell():
    child = start_python(LISTEN_ANY, uid=BINDSHELL_UID)
    yield child
    child.stop()


@pytest.fixture
def service(tmp_path):
    return ServiceDir(tmp_path, BINDSHELL_UID)


def log_messages(service) -> list:
    """Every log line must have lfd's shape; returns the messages."""
    messages = []
    for line in service.log().splitlines():
        match = LFD_LINE.fullmatch(line)
        assert match, f"not an lfd-format log line: {line!r}"
        messages.append(match.group(1))
    return messages


def test_alert_through_smtp_relay(service, bindshell):
    with SmtpServer() as smtp:
        result = service.run_once(f"LF_ALERT_SMTP={smtp.relay}", "LF_ALERT_TO=admin@example.com",
                                  "LF_ALERT_FROM=ptfast@example.com")
        assert result.returncode == 0, result.stderr.decode()
        assert len(smtp.inbox.envelopes) == 1
        envelope = smtp.inbox.envelopes[0]
        message = smtp.inbox.messages()[0]
    assert envelope.mail_from == "ptfast@example.com"
    assert envelope.rcpt_tos == ["admin@example.com"]
    assert message["To"] == "admin@example.com"
    assert message["From"] == "ptfast@example.com"
    assert str(BINDSHELL_UID) in message["Subject"]
    body = message.get_content()
    ppid = os.getpid()
    assert f"{bindshell.pid} (Parent PID:{ppid})" in body
    assert f"tcp: 0.0.0.0:{bindshell.info['port']} -> 0.0.0.0:0 (LISTEN)" in body
    assert "[maps]" not in body and "r-xp" in body      # memory maps filled in
    assert service.spooled() == []

    suspicious = [m for m in log_messages(service) if m.startswith("*Suspicious Process*")]
    assert len(suspicious) == 1
    assert re.fullmatch(rf"\*Suspicious Process\* PID:{bindshell.pid} PPID:{ppid} "
                        rf"User:{BINDSHELL_UID} Uptime:\d+ secs EXE:/\S+ CMD:.+", suspicious[0])
    events = service.events()
    assert [(e["check"], e["pid"], e["reasons"]) for e in events] == [
        ("suspicious", bindshell.pid, ["listening socket"])]


def test_sendmail_once_per_process_across_passes_and_restarts(service, bindshell, tmp_path):
    recorder = SendmailRecorder(str(tmp_path))
    sendmail = f"SENDMAIL={recorder.path}"
    for _ in range(3):          # each --once is a fresh start of ptfast, from the state file
        result = service.run_once(sendmail, "LF_ALERT_FROM=Alerts <alerts@example.com>")
        assert result.returncode == 0, result.stderr.decode()
    calls = recorder.calls()
    assert len(calls) == 1
    assert calls[0]["argv"] == ["-oi", "-f", "alerts@example.com", "-t"]
    assert recorder.calls()[0]["parsed"]["To"] == "root"
    assert calls[0]["parsed"]["From"] == "Alerts <alerts@example.com>"
    assert f"{bindshell.pid} (Parent PID:" in calls[0]["parsed"].get_content()
    with open(service.reported_file(), "rb") as handle:
        reported = json.load(handle)["reported"]
    assert [entry[:2] for entry in reported] == [[bindshell.pid, start_time_of(bindshell.pid)]]


def test_two_passes_of_one_service_alert_once(service, bindshell, tmp_path):
    recorder = SendmailRecorder(str(tmp_path))
    running = service.in_process(f"SENDMAIL={recorder.path}")
    try:
        running.run_pass()
        running.run_pass()
    finally:
        running.stop()
    assert len(recorder.calls()) == 1


def test_an_alert_that_could_not_be_spooled_is_not_remembered(service, bindshell, tmp_path):
    recorder = SendmailRecorder(str(tmp_path))
    running = service.in_process(f"SENDMAIL={recorder.path}")
    spool_add = running.tracker.spool.add

    def disk_full(message):
        raise OSError(28, "No space left on device")

    try:
        running.tracker.spool.add = disk_full
        assert running.guarded(running.run_pass)[0] is False
        assert running.state.reported == {}             # not remembered: it was never spooled
        running.tracker.spool.add = spool_add
        running.run_pass()
    finally:
        running.stop()
    assert len(recorder.calls()) == 1               # the next pass alerted after all


def test_sendmail_setting_with_options_as_lfd_users_write_it(service, bindshell, tmp_path):
    """lfd runs SENDMAIL through a shell, so it may carry options; ptfast splits it the same
    way and runs it without a shell (a ';' is just an argument)."""
    recorder = SendmailRecorder(str(tmp_path))
    result = service.run_once(f"SENDMAIL={recorder.path} -v 'x;touch /tmp/ptfast-pwned'")
    assert result.returncode == 0, result.stderr.decode()
    [call] = recorder.calls()
    assert call["argv"] == ["-v", "x;touch /tmp/ptfast-pwned", "-oi", "-f", "root", "-t"]
    assert not os.path.exists("/tmp/ptfast-pwned")


def write_reported(service, entries) -> None:
    os.makedirs(service.state_dir, exist_ok=True)
    with open(service.reported_file(), "w") as handle:
        json.dump({"version": 1, "reported": entries}, handle)


def test_reused_pid_is_a_new_process(service, bindshell, tmp_path):
    recorder = SendmailRecorder(str(tmp_path))
    start = start_time_of(bindshell.pid)
    write_reported(service, [[bindshell.pid, start, time.time()]])
    service.run_once(f"SENDMAIL={recorder.path}")
    assert recorder.calls() == []                       # this very process: already reported

    # the same PID with another start time is another process: lfd would stay silent here
    write_reported(service, [[bindshell.pid, start - 100, time.time()]])
    service.run_once(f"SENDMAIL={recorder.path}")
    assert len(recorder.calls()) == 1
    with open(service.reported_file(), "rb") as handle:
        remembered = [entry[:2] for entry in json.load(handle)["reported"]]
    assert remembered == [[bindshell.pid, start]]       # the gone one is forgotten


@pytest.mark.parametrize("content", [b'{"version":1,"reported":[[1,2', b"\x00\xffgarbage",
                                     b'{"version":1,"reported":[["x"]]}', b"[]"])
def test_corrupt_state_file_is_reported_and_replaced(service, bindshell, tmp_path, content):
    recorder = SendmailRecorder(str(tmp_path))
    os.makedirs(service.state_dir)
    with open(service.reported_file(), "wb") as handle:
        handle.write(content)
    result = service.run_once(f"SENDMAIL={recorder.path}")
    assert result.returncode == 0, result.stderr.decode()
    assert any("corrupt state file" in m and service.reported_file() in m
               for m in log_messages(service))
    assert len(recorder.calls()) == 1                   # tracking went on
    with open(service.reported_file(), "rb") as handle:
        assert json.load(handle)["version"] == 1
    kept_aside = [n for n in os.listdir(service.state_dir) if ".corrupt-" in n]
    assert len(kept_aside) == 1


def test_spool_keeps_alerts_through_a_relay_outage(service, bindshell):
    port = free_port()                   # nothing listens here yet: the relay is down
    relay = f"LF_ALERT_SMTP=127.0.0.1:{port}"
    result = service.run_once(relay)
    # a one-shot run (cron) that could not deliver is an error: exit 2, and the log says so
    assert result.returncode == 2, result.stderr.decode()
    assert len(service.spooled()) == 1
    assert any(m.startswith("*Alert delivery failed*") for m in log_messages(service))
    assert "1 alert(s) not delivered: kept in the spool for the next run" in service.log()
    assert len(service.events()) == 1    # the event is written whether or not mail works

    result = service.run_once(relay)     # still down: nothing new, nothing lost
    assert len(service.spooled()) == 1
    with SmtpServer(port) as smtp:
        assert service.run_once(relay).returncode == 0      # delivered: a clean run again
        service.run_once(relay)
        delivered = smtp.inbox.messages()
    assert len(delivered) == 1           # delivered once, not duplicated
    assert f"{bindshell.pid} (Parent PID:" in delivered[0].get_content()
    assert service.spooled() == []
    assert len(service.events()) == 1


def test_a_refused_message_does_not_hold_up_the_others(service, bindshell):
    # an older alert in the spool that the relay will always refuse
    spool = os.path.join(service.state_dir, "spool")
    os.makedirs(spool)
    with open(os.path.join(spool, "00000000000000000001-1-000000.eml"), "wb") as handle:
        handle.write(b"From: root\nTo: admin@example.com\nSubject: old\n\nREFUSE-ME\n")
    with SmtpServer() as smtp:
        smtp.inbox.refuse_marker = b"REFUSE-ME"
        result = service.run_once(f"LF_ALERT_SMTP={smtp.relay}", "LF_ALERT_TO=admin@example.com")
        # one alert could not be delivered: a one-shot run says so by its exit status
        assert result.returncode == 2, result.stderr.decode()
        delivered = smtp.inbox.messages()
    assert len(delivered) == 1 and f"{bindshell.pid} (Parent PID:" in delivered[0].get_content()
    assert service.spooled() == ["00000000000000000001-1-000000.eml"]    # kept, not lost
    assert any("refused the message" in m and "00000000000000000001-1-000000.eml kept" in m
               for m in log_messages(service))


def test_partly_refused_recipients_are_not_sent_twice(service, bindshell):
    with SmtpServer() as smtp:
        smtp.inbox.refuse_recipients = {"gone@example.com"}
        for _ in range(2):
            service.run_once(f"LF_ALERT_SMTP={smtp.relay}",
                             "LF_ALERT_TO=admin@example.com, gone@example.com")
        envelopes = smtp.inbox.envelopes
    assert [envelope.rcpt_tos for envelope in envelopes] == [["admin@example.com"]]
    assert service.spooled() == []
    assert any("refused gone@example.com; delivered to the other recipients" in m
               for m in log_messages(service))


HOSTILE_TEMPLATE = """\
From: root
To: admin@example.com
Subject: [exe] [user] [cmdline]

[cmdline]
"""
INJECTION = "x\r\nBcc: victim@evil.example\r\nSubject: forged"
INJECTION_ESCAPED = "x\\r\\nBcc: victim@evil.example\\r\\nSubject: forged"


def test_hostile_process_name_cannot_inject_headers(service):
    os.makedirs(service.templates)
    with open(os.path.join(service.templates, "processtracking.txt"), "w") as handle:
        handle.write(HOSTILE_TEMPLATE)
    uid = BINDSHELL_UID + 1
    service.track_only(uid)
    # the executable's file name, and so its command line, carries the injection
    child = start_copied_python(INJECTION, LISTEN_ANY, uid=uid)
    try:
        with SmtpServer() as smtp:
            result = service.run_once(f"LF_ALERT_SMTP={smtp.relay}")
            assert result.returncode == 0, result.stderr.decode()
            envelopes = smtp.inbox.envelopes
            messages = smtp.inbox.messages()
    finally:
        child.stop()
    assert len(messages) == 1
    message = messages[0]
    assert envelopes[0].rcpt_tos == ["admin@example.com"]
    assert "Bcc" not in message
    assert len(message.get_all("Subject")) == 1
    assert INJECTION_ESCAPED in message["Subject"]
    assert INJECTION_ESCAPED in message.get_content()
    suspicious = [m for m in log_messages(service) if m.startswith("*Suspicious Process*")]
    assert len(suspicious) == 1 and INJECTION_ESCAPED in suspicious[0]


def run_with_deleted_executable(service, tmp_path, uid: int, action):
    """One pass over a process of ``uid`` whose executable was deleted, with PT_DELETED=1 and
    ``action`` as PT_DELETED_ACTION; returns (child, sendmail calls)."""
    service.track_only(uid)
    recorder = SendmailRecorder(str(tmp_path))
    child = start_copied_python("miner", uid=uid, delete=True)
    try:
        result = service.run_once("PT_DELETED=1", f"PT_DELETED_ACTION={action}",
                                  f"SENDMAIL={recorder.path}")
        assert result.returncode == 0, result.stderr.decode()
    finally:
        child.stop()
    return child, recorder.calls()


def test_deleted_executable_action_receives_its_arguments(service, tmp_path):
    uid = BINDSHELL_UID + 2
    action, record = record_action(tmp_path)
    child, calls = run_with_deleted_executable(service, tmp_path, uid, action)
    assert json.loads(record.read_text()) == [child.info["exe"], str(child.pid), str(uid),
                                              str(os.getpid())]
    assert len(calls) == 1 and f"{child.info['exe']} (deleted)" in calls[0]["message"]


def test_action_that_is_not_executable_is_logged_not_fatal(service, tmp_path):
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\ntouch /tmp/should-not-run\n")
    _child, calls = run_with_deleted_executable(service, tmp_path, BINDSHELL_UID + 3, plain)
    assert any(m == f"PT_DELETED_ACTION {plain} not run: not an executable file"
               for m in log_messages(service))
    assert len(calls) == 1


def test_short_interval_is_raised_and_logged(service, tmp_path):
    recorder = SendmailRecorder(str(tmp_path))
    service.run_once("PT_INTERVAL=5", f"SENDMAIL={recorder.path}")
    assert "PT_INTERVAL is 5, less than 10: using 60 seconds" in log_messages(service)


def wait_for_log(service, text: str, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = log_messages(service)
        if any(text in message for message in messages):
            return messages
        time.sleep(0.1)
    raise AssertionError(f"log never said {text!r}:\n{service.log()}")


def test_daemon_sighup_lock_and_sigterm(service, bindshell, tmp_path):
    recorder = SendmailRecorder(str(tmp_path))
    with service.started(f"SENDMAIL={recorder.path}", stderr=subprocess.PIPE) as daemon:
        wait_for_log(service, "1 alert(s) delivered")
        # a second instance on the same state directory is refused
        second = service.run_once(f"SENDMAIL={recorder.path}")
        assert second.returncode == 2
        assert b"another ptfast holds" in second.stderr

        # a broken config: reported with file and line, the running settings kept
        with open(service.override, "w") as handle:
            handle.write('PT_LIMIT = "1"\nPT_LOAD = "0"\nPT_INTERVAL = 3600\n')
        daemon.send_signal(signal.SIGHUP)
        messages = wait_for_log(service, "reload refused")
        assert any(f"{service.override}:3:" in message for message in messages)

        with open(service.override, "w") as handle:
            handle.write('PT_LIMIT = "1"\nPT_LOAD = "0"\nPT_INTERVAL = "3600"\n')
        daemon.send_signal(signal.SIGHUP)
        wait_for_log(service, "settings reloaded: PT_LIMIT=1 PT_INTERVAL=3600")

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    messages = log_messages(service)
    assert messages[-2:] == ["ptfast stopping on SIGTERM", "ptfast stopped"]
    assert len(recorder.calls()) == 1


def test_sigusr1_runs_a_pass_now(service, bindshell, tmp_path):
    """The pass clock's seam, for admins and tests alike: with PT_INTERVAL an hour, SIGUSR1
    starts the next pass at once, and the service goes on."""
    recorder = SendmailRecorder(str(tmp_path))

    def passes() -> int:
        return sum(message.startswith("pass done") for message in log_messages(service))

    with service.started(f"SENDMAIL={recorder.path}", "PT_INTERVAL=3600",
                         "PT_PASS_SUMMARY=1") as daemon:
        wait_for_log(service, "pass done")
        for expected in (2, 3):
            daemon.send_signal(signal.SIGUSR1)
            assert wait_until(lambda: passes() >= expected, 30), service.log()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert passes() == 3
    assert len(recorder.calls()) == 1            # the bindshell, reported once


def test_nothing_is_killed_on_the_word_of_a_prepared_tree(service, tmp_path, children):
    """PIDs read from --proc-root name nothing on this host: even one that matches a live
    process (same PID, same start time) is not killed."""
    uid = BINDSHELL_UID + 4
    child = start_python("", uid=uid)
    children.append(child)
    tree = str(tmp_path / "proc")
    with open("/proc/uptime") as handle:
        uptime = float(handle.read().split()[0])
    write(f"{tree}/uptime", f"{uptime + 100:.2f} 0.00\n")
    for table in ("tcp", "udp", "tcp6", "udp6", "raw", "raw6"):
        write(f"{tree}/net/{table}", TCP_HEADER)
    base = f"{tree}/{child.pid}"
    write(f"{base}/stat", stat_line(child.pid, "python", 1, start_time_of(child.pid)))
    write(f"{base}/status", f"Name:\tpython\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    write(f"{base}/cmdline", "python\0")
    os.symlink("/usr/bin/python3", f"{base}/exe")
    os.makedirs(f"{base}/fd")
    service.track_only(uid)
    recorder = SendmailRecorder(str(tmp_path))
    result = run_ptfast(service.command("PT_USERTIME=1", "PT_USERKILL=1",
                                        f"SENDMAIL={recorder.path}")[3:] + ["--proc-root", tree])
    assert result.returncode == 0, result.stderr.decode()
    assert f"not killing: --proc-root {tree} is not /proc" in service.log()
    assert f"*User Processing* PID:{child.pid} Kill:0" in service.log()
    assert child.popen.poll() is None                    # alive
