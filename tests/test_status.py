"""`ptfast status` after real passes: the status file each pass writes, the lock holder, the spool
read back, health and exit codes; the one log line per pass."""

import json
import os
import signal
import subprocess

import pytest

from helpers.procs import start_python, wait_until
from helpers.service import ServiceDir, bindshell_fixture, free_port, recorded_service
from helpers.uids import uid_for
from helpers.inproc import run_ptfast

from ptfast.scan import procfs
from ptfast.channels import status

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

UID = uid_for(810)


bindshell = bindshell_fixture(UID)


@pytest.fixture
def service(tmp_path):
    return recorded_service(tmp_path, UID)


def ptfast_status(service, *options) -> subprocess.CompletedProcess:
    return run_ptfast(["status", "--state-dir", service.state_dir, *options], text=True)


def status_json(service) -> tuple:
    result = ptfast_status(service, "--json")
    return result.returncode, json.loads(result.stdout)


def test_status_reports_the_pass_of_run_once(service, bindshell):
    assert service.run_once(service.sendmail).returncode == 0
    code, report = status_json(service)
    assert code == 0 and report["health"] == "healthy" and report["problems"] == []
    assert report["service"] == "run --once" and report["running"] is None
    assert report["core"] == procfs.CORE_NAME
    last = report["last_pass"]
    assert last["tracking"] is True
    assert 1 <= last["inspected"] <= last["processes"]
    assert last["findings"] == {"suspicious": 1}
    assert last["started_at"] < last["ended_at"] <= report["written_at"]
    assert report["totals"]["alerts"]["spooled"]["mail"] == 1
    assert report["totals"]["alerts"]["delivered"]["mail"] == 1
    assert report["spool"] == {"entries": 0, "oldest_spooled_at": None,
                               "oldest_age_seconds": None}

    # a second run carries the counts on (they only grow), and reports nothing new
    assert service.run_once(service.sendmail).returncode == 0
    code, again = status_json(service)
    assert code == 0
    assert again["totals"]["passes"] == 2 and again["totals"]["since"] == report["totals"]["since"]
    assert again["totals"]["findings"] == {"suspicious": 1}
    assert again["last_pass"]["findings"] == {}
    assert again["totals"]["alerts"]["delivered"]["mail"] == 1

    text = ptfast_status(service)
    assert text.returncode == 0
    assert text.stdout.startswith("ptfast: healthy\n")
    assert "findings: none" in text.stdout and "spool:       empty" in text.stdout
    assert f"alerts via:  {service.recorder.path}\n" in text.stdout


def test_status_of_a_running_service_and_after_it_stops(service, bindshell):
    with service.started(service.sendmail) as daemon:
        assert wait_until(lambda: os.path.exists(status.status_path(service.state_dir)), 60)
        code, report = status_json(service)
        assert code == 0, report
        assert report["running"] == {"pid": daemon.pid} and report["pid"] == daemon.pid
        assert report["service"] == "run"
        assert f"running:     pid {daemon.pid}" in ptfast_status(service).stdout
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    code, report = status_json(service)
    assert code == 2 and report["health"] == "not running" and report["running"] is None
    assert f"(pid {daemon.pid}) is not running" in report["problems"][0]


def test_a_spool_that_does_not_drain_is_degraded(service, bindshell):
    relay = f"LF_ALERT_SMTP=127.0.0.1:{free_port()}"       # nothing listens: the relay is down
    assert service.run_once(relay).returncode == 2
    code, report = status_json(service)
    assert code == 1 and report["health"] == "degraded"
    assert report["spool"]["entries"] == 1 and report["spool"]["oldest_age_seconds"] >= 0
    [problem] = report["problems"]
    assert "the spool is not draining: 1 alert(s) waiting" in problem
    assert report["totals"]["alerts"]["failed"]["mail"] == 1
    assert report["totals"]["alerts"]["delivered"]["mail"] == 0
    assert "problem:     the spool is not draining" in ptfast_status(service).stdout


def test_a_last_pass_older_than_three_intervals_is_degraded(service):
    assert service.run_once(service.sendmail).returncode == 0
    document = status.read_status(service.state_dir)
    ended = document["last_pass"]["ended_at"]
    assert status.report(service.state_dir, now=ended + 2 * 60).code == status.HEALTHY
    late = status.report(service.state_dir, now=ended + 3 * 60 + 1)
    assert late.code == status.DEGRADED
    assert "more than 3 x PT_INTERVAL (60 s)" in late.problems[0]


def test_no_state_is_exit_2(tmp_path):
    result = run_ptfast(["status", "--json", "--state-dir", str(tmp_path / "none")], text=True)
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["health"] == "no state" and "never ran here" in report["problems"][0]


CATASTROPHIC = "pcmd:[\\s\\S]*(a|aa)+b\n"


def test_ignore_rules_switched_off_are_degraded(service):
    uid = uid_for(811)
    service.track_only(uid)
    with open(service.pignore, "a") as handle:
        handle.write(CATASTROPHIC)
    child = start_python("", uid=uid, argv=("a" * 5000 + "!",))
    try:
        service.run_once(service.sendmail, "PT_USERPROC=0")
    finally:
        child.stop()
    code, report = status_json(service)
    assert code == 1
    assert report["rules_switched_off"] == [f"{service.pignore}:2: pcmd:[\\\\s\\\\S]*(a|aa)+b"]
    assert "1 ignore rule(s) switched off" in report["problems"][0]


def test_one_summary_line_per_pass_unless_switched_off(service, bindshell):
    running = service.in_process(service.sendmail)
    try:
        running.run_pass()
        running.run_pass()
    finally:
        running.stop()
    summaries = [line for line in service.log().splitlines() if "pass done: " in line]
    assert len(summaries) == 2
    assert "finding(s) (suspicious 1); alerts: 1 spooled, 1 delivered, 0 failed" in summaries[0]
    assert ", 0 finding(s); alerts: 0 spooled" in summaries[1]

    quiet_root = os.path.join(service.root, "quiet")
    os.makedirs(quiet_root)
    quiet = ServiceDir(quiet_root, UID)
    assert quiet.run_once(service.sendmail, "PT_PASS_SUMMARY=0").returncode == 0
    assert "pass done" not in quiet.log() and "*Suspicious Process*" in quiet.log()


def test_lock_holder_from_the_kernels_list(tmp_path):
    """/proc/locks names the holder by device and inode; on overlayfs the device differs, and
    the PID written in the lock file decides."""
    os.makedirs(tmp_path / "state")
    lock = tmp_path / "state" / status.LOCK_FILE
    lock.write_text("4242\n")
    inode = os.stat(lock).st_ino
    locks = tmp_path / "locks"
    locks.write_text(f"1: FLOCK  ADVISORY  WRITE 4242 00:99:{inode} 0 EOF\n"
                     f"1: -> FLOCK  ADVISORY  WRITE 777 00:99:{inode} 0 EOF\n")
    assert status.lock_holder(str(tmp_path / "state"), str(locks)) == 4242
    locks.write_text(f"1: FLOCK  ADVISORY  WRITE 5151 00:99:{inode} 0 EOF\n")
    assert status.lock_holder(str(tmp_path / "state"), str(locks)) is None
    locks.write_text(f"1: FLOCK  ADVISORY  READ 4242 00:99:{inode} 0 EOF\n")
    assert status.lock_holder(str(tmp_path / "state"), str(locks)) is None
