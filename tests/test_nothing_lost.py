"""Issue 22, point 1: a log line or event that cannot be written is never lost silently. The
service refuses to start on a log or events file it cannot write (exit 2); a finding whose log
line or event fails during a pass is not remembered (so the next pass reports it again), its
spooled alert is taken back, ``run --once`` exits 2, ``status`` is degraded and ``check`` says
so beforehand."""

import json
import os
import subprocess
import sys

import pytest

from helpers.service import bindshell_fixture, recorded_service
from helpers.uids import uid_for
from helpers.inproc import run_ptfast
from ptfast.channels.status import ONCE

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

BINDSHELL_UID = uid_for(221)
bindshell = bindshell_fixture(BINDSHELL_UID)


@pytest.fixture
def service(tmp_path):
    return recorded_service(tmp_path, BINDSHELL_UID)


def ptfast(*args) -> subprocess.CompletedProcess:
    return run_ptfast(args, text=True)


@pytest.mark.parametrize("which", ["log_file", "events_file"])
def test_run_once_on_an_unwritable_file_exits_2_and_remembers_nothing(service, bindshell,
                                                                        tmp_path, which):
    setattr(service, which, str(tmp_path / "missing-dir" / "out"))
    result = service.run_once(service.sendmail)
    assert result.returncode == 2, result.stderr.decode()
    assert "missing-dir" in result.stderr.decode()
    assert "not started" in result.stderr.decode()
    assert not os.path.exists(service.reported_file()) or \
        str(bindshell.pid) not in open(service.reported_file()).read()
    assert service.spooled() == []


def test_check_flags_a_log_or_events_file_it_cannot_write(service, tmp_path):
    for option in ("--log-file", "--events-file"):
        missing = str(tmp_path / "missing-dir" / "out")
        result = ptfast("check", "--config", os.devnull, "--override", service.override,
                        "--pignore", service.pignore, "--state-dir", service.state_dir,
                        option, missing)
        assert result.returncode == 2, result.stdout
        assert f"{missing}: cannot be written" in result.stdout
        assert "no problems found" not in result.stdout


def test_a_pass_whose_events_cannot_be_written_forgets_nothing(service, bindshell, tmp_path):
    """The events file becomes unwritable while the service runs (its directory is removed):
    the finding is not remembered, its mail is taken back, the pass fails and status says so."""
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    service.events_file = str(events_dir / "events.jsonl")
    running = service.in_process(service.sendmail)
    running.tracker.service = ONCE      # status then needs no running process
    try:
        os.unlink(service.events_file)
        events_dir.rmdir()
        assert running.once() is False
        reported = open(service.reported_file()).read()
        assert str(bindshell.pid) not in reported
        assert service.spooled() == []
        assert any("events" in line and "reported again" in line
                   for line in service.log().splitlines())
    finally:
        running.stop()
    status = ptfast("status", "--state-dir", service.state_dir)
    assert status.returncode == 1, status.stdout
    assert "ptfast: degraded" in status.stdout
    assert "could not be written" in status.stdout
    # once the directory is back, the next pass records it and remembers it
    events_dir.mkdir()
    result = service.run_once(service.sendmail)
    assert [event["pid"] for event in service.events()] == [bindshell.pid]
    assert str(bindshell.pid) in open(service.reported_file()).read()
    del result


def test_a_pass_whose_log_line_cannot_be_written_forgets_nothing(service, bindshell, tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    service.log_file = str(log_dir / "ptfast.log")
    running = service.in_process(service.sendmail)
    running.tracker.service = ONCE      # status then needs no running process
    try:
        os.unlink(service.log_file)
        log_dir.rmdir()
        assert running.once() is False
        assert str(bindshell.pid) not in open(service.reported_file()).read()
        assert service.spooled() == []
        assert service.events() == []
    finally:
        running.stop()
    status = json.loads(ptfast("status", "--json", "--state-dir", service.state_dir).stdout)
    assert status["health"] == "degraded"
    assert status["last_pass"]["unrecorded"] == 1


def in_mount_namespace(script: str) -> subprocess.CompletedProcess:
    """``script`` (sh) in a private mount namespace, so that its mounts die with it."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m (util-linux) is needed to mount in a private namespace")
    return subprocess.run(["unshare", "-m", "sh", "-ec", script], capture_output=True,
                          text=True, timeout=120)


def test_check_flags_a_read_only_state_directory(service):
    """Issue 22, point 6: `run` refuses to start on it, so `check` must say so first."""
    os.makedirs(service.state_dir)
    state = service.state_dir
    result = in_mount_namespace(
        f"mount --bind '{state}' '{state}'; mount -o remount,bind,ro '{state}'; "
        f"exec '{sys.executable}' -m ptfast check --config /dev/null "
        f"--override '{service.override}' --pignore '{service.pignore}' --state-dir '{state}' "
        f"--log-file '{service.log_file}' --events-file '{service.events_file}'")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{state}: cannot be written: read-only file system" in result.stdout
