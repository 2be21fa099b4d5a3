"""Issue 22, point 16: messages read naturally. Counts agree with their nouns, and the status
counts alerts, not delivery attempts."""

import json
import subprocess
import sys

import pytest

from helpers.procs import start_python
from helpers.service import ServiceDir, free_port
from helpers.uids import uid_for
from ptfast.channels import status
from ptfast.foundation.words import counted

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = pytest.mark.usefixtures("aged")

LISTEN_ANY = 'info["port"] = listen(socket.AF_INET, "0.0.0.0").getsockname()[1]'


def test_counted_nouns():
    assert counted(1, "process", "processes") == "1 process"
    assert counted(2, "process", "processes") == "2 processes"
    assert counted(0, "zombie") == "0 zombies"


def test_status_of_a_pass_over_one_process_says_process():
    document = {"schema": 1, "written_at": 100.0, "pid": 1, "service": status.ONCE,
                "interval": 60, "last_pass": status.PassRecord(90.0, 0.01, True, 1, 1).as_dict()}
    result = status.Report(0, "healthy", [], document, None, 0, None, 100.0)
    assert "1 process, 1 inspected" in status.text(result)


@pytest.mark.needs_root
def test_failed_counts_alerts_not_attempts(tmp_path):
    """Two alerts behind a relay that is down: the first attempt fails and the route is not
    tried again in that pass; both alerts failed, and a second pass counts neither again."""
    uid = uid_for(241)
    children = [start_python(LISTEN_ANY, uid=uid) for _ in range(2)]
    try:
        service = ServiceDir(tmp_path, uid)
        relay = f"LF_ALERT_SMTP=127.0.0.1:{free_port()}"      # nothing listens there
        first = service.run_once(relay)
        assert first.returncode == 2
        assert "alerts: 2 spooled, 0 delivered, 2 failed, 2 waiting" in first.stderr.decode()
        second = service.run_once(relay)
        assert "alerts: 0 spooled, 0 delivered, 0 failed, 2 waiting" in second.stderr.decode()
    finally:
        for child in children:
            child.stop()
    report = json.loads(subprocess.run(
        [sys.executable, "-m", "ptfast", "status", "--json", "--state-dir", service.state_dir],
        capture_output=True, text=True, timeout=60).stdout)
    assert report["totals"]["alerts"]["spooled"]["mail"] == 2
    assert report["totals"]["alerts"]["failed"]["mail"] == 2
