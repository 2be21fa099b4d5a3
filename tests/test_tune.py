"""`ptfast tune` against a controlled population whose counts per PT_LIMIT are known."""

import json
import re
import subprocess
import sys
import time

import pytest

from ptfast.decide.policy import TEST_AGE_OFFSET

from helpers.uids import uid_for
from helpers.procs import start_python
from helpers.scan import core_env
from helpers.service import only_users_rule

pytestmark = pytest.mark.needs_root

UID = uid_for(301)
LISTEN = 'listen(socket.AF_INET, "127.0.0.1")'
#: seconds a short-lived socket holder lives: with the age seam at AGED_BY_HERE (3 s) it counts
#: as past 1 and never past 5, while the long-lived ones count as past 5 by the end of the watch
SHORT_LIFE = 0.8
AGED_BY_HERE = 3.0


def run_tune(tmp_path, *args, env=None):
    pignore = tmp_path / "pignore"
    pignore.write_text(only_users_rule(UID))
    command = [sys.executable, "-m", "ptfast", "tune", "--config", "/dev/null",
               "--override", "/dev/null", "--pignore", str(pignore), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


@pytest.mark.ageing         # a real watch of 3 s: the short-lived must end during it
def test_counts_per_limit_match_a_known_population(tmp_path, children):
    # long-lived: two socket holders and one process without sockets, all counting as older
    # than 5 s by the end of the watch (real age + AGED_BY_HERE), none older than 30 s
    children.append(start_python(LISTEN, uid=UID))
    children.append(start_python(LISTEN, uid=UID))
    children.append(start_python("", uid=UID))
    env = dict(core_env("compiled"), **{TEST_AGE_OFFSET: str(AGED_BY_HERE)})
    tune = run_tune(tmp_path, "--duration", "3", "--sample", "0.2", "--limits", "0,1,5,30",
                    "--set", "PT_INTERVAL=30", "--json", env=env)
    # short-lived: three socket holders that live SHORT_LIFE seconds, during the watch: from
    # its first sample on (its first progress line), however long tune took to start
    said = []
    while not (said and said[-1].startswith(b"tune: ") and b" sample" in said[-1]):
        said.append(tune.stderr.readline())
        assert said[-1], said           # tune ended before its first sample
    short = [start_python(LISTEN, uid=UID) for _ in range(3)]
    children.extend(short)
    time.sleep(SHORT_LIFE)
    for child in short:
        child.stop()
    out, err = tune.communicate(timeout=120)
    assert tune.returncode == 0, err.decode()
    result = json.loads(out)
    rows = {row["pt_limit"]: row for row in result["rows"]}
    assert result["suspicious_processes_seen"] == 5
    assert result["tracked_processes_seen"] == 6
    assert {limit: row["reported"] for limit, row in rows.items()} == {0: 0, 1: 5, 5: 2, 30: 0}
    # nobody is older than 30 s; at 5 s, only the three long-lived ones are inspected
    assert rows[30]["inspected_per_scan"] == 0
    assert 0 < rows[5]["inspected_per_scan"] <= 3
    assert rows[1]["inspected_per_scan"] > rows[5]["inspected_per_scan"]
    assert rows[5]["longest_unreported_s"] == 35
    assert rows[0]["longest_unreported_s"] is None           # 0 = tracking off
    for limit in (1, 5, 30):
        assert rows[limit]["scan_ms"] > 0 and rows[limit]["core_share"] >= 0
    # the short-lived ones finished within 5 s: 5 is the lowest limit above them
    assert result["recommended_pt_limit"] == 5
    assert "add 3 short-lived" in result["why"] and "the 2 it reports" in result["why"]


def test_table_and_bad_limits(tmp_path):
    tune = run_tune(tmp_path, "--duration", "0.5", "--sample", "0.2", "--limits", "0,5,60")
    out, err = tune.communicate(timeout=60)
    assert tune.returncode == 0, err.decode()
    text = out.decode()
    assert "PT_LIMIT  inspected/scan  reported" in text
    assert "tracking off" in text and "recommended: PT_LIMIT = " in text
    bad = run_tune(tmp_path, "--limits", "5,soon")
    _out, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and b"--limits must be whole numbers" in err


def test_progress_on_stderr_and_ctrl_c_prints_what_was_measured(tmp_path, children):
    """Issue 22, point 15: a long watch is never silent (not even into a pipe), and Ctrl-C
    keeps what was measured: the partial table, exit 130."""
    import signal
    children.append(start_python(LISTEN, uid=UID))
    tune = run_tune(tmp_path, "--duration", "600", "--sample", "0.2", "--limits", "0,1,60")
    try:
        said = [tune.stderr.readline().decode()]
        assert said[0].startswith("tune: watching this host for 600 s (Ctrl-C stops early")
        said.append(tune.stderr.readline().decode())       # the first sample's progress line
        # the seconds are the first sample's own time: 1 or more on a loaded machine
        assert re.match(r"tune: \d+/600 s, 1 sample, ", said[1]), said
        tune.send_signal(signal.SIGINT)
        out, err = tune.communicate(timeout=60)
    finally:
        if tune.poll() is None:
            tune.kill()
            tune.wait()
    assert tune.returncode == 130, err.decode()
    text = out.decode()
    assert "PT_LIMIT  inspected/scan  reported" in text
    assert "INTERRUPTED after" in text and "what was measured" in text
    assert "Traceback" not in err.decode()
