"""`ptfast scan` and `ptfast tune` run as an ordinary user (issue 13, item 9): they cannot see
other users' processes, so they must never report a clean host. Decided: a warning on stderr that
says the result is incomplete, and exit 2 instead of 0 (a scan that found something still exits
1); `tune --json` carries the reason as "incomplete". As root, the odd denied process (another
user namespace, a security module) is only warned about: this test host shows one now and then."""

import json
import os

import pytest

from helpers.inproc import run_ptfast
from helpers.procs import ptfast_as, start_python
from helpers.scan import CONNECTIONS_AT_ONCE
from helpers.uids import uid_for

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

OTHER, SCANNER = uid_for(640), uid_for(641)
LISTEN = 'info["port"] = listen(socket.AF_INET, "127.0.0.1").getsockname()[1]'
#: and connections counted at once: with every account tracked, some process of the host holds
#: a connection, and each scan would wait PT_CONN_AGE for it
ONLY_SUSPICIOUS = ["--set", "PT_LIMIT=1", "--set", "PT_LOAD=0", "--set", "PT_USERPROC=0",
                   "--set", "PT_USERMEM=0", "--set", "PT_USERRSS=0", "--set", "PT_USERTIME=0",
                   "--set", CONNECTIONS_AT_ONCE]


@pytest.fixture(scope="module")
def other_users_listener():
    child = start_python(LISTEN, uid=OTHER)
    yield child
    child.stop()


def scan_as(uid: int):
    return ptfast_as(uid, "scan", "--config", os.devnull, "--override", os.devnull,
                     "--pignore", os.devnull, "--json", *ONLY_SUSPICIOUS)


def test_root_sees_the_listener(other_users_listener):
    result = run_ptfast(["scan", "--config", os.devnull, "--override", os.devnull, "--pignore",
                         os.devnull, "--json", *ONLY_SUSPICIOUS], text=True)
    pids = [json.loads(line)["pid"] for line in result.stdout.splitlines()]
    assert other_users_listener.pid in pids and result.returncode == 1


def test_non_root_scan_that_sees_nothing_is_not_clean(other_users_listener):
    result = scan_as(SCANNER)
    assert result.stdout == ""                  # it cannot see the listener...
    assert result.returncode == 2               # ...so it must not say "clean"
    assert "not running as root" in result.stderr and "incomplete" in result.stderr


def test_non_root_scan_with_findings_exits_1_and_still_warns(other_users_listener):
    own = start_python(LISTEN, uid=SCANNER)
    try:
        result = scan_as(SCANNER)
    finally:
        own.stop()
    pids = [json.loads(line)["pid"] for line in result.stdout.splitlines()]
    assert own.pid in pids and other_users_listener.pid not in pids
    assert result.returncode == 1
    assert "incomplete" in result.stderr


def test_non_root_tune_refuses_to_recommend(other_users_listener):
    """Issue 22, point 8: a value measured on one user's processes is no recommendation."""
    result = ptfast_as(SCANNER, "tune", "--config", os.devnull, "--override", os.devnull,
                       "--pignore", os.devnull, "--duration", "1", "--sample", "0.5",
                       "--limits", "5,60", "--json")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "tune cannot measure this host: not running as root" in result.stderr
    assert "run as root" in result.stderr


def test_non_root_scan_of_a_root_only_config_says_run_as_root(tmp_path):
    """Issue 22, point 8: after install-service /etc/ptfast is root's."""
    private = tmp_path / "etc"
    private.mkdir(mode=0o700)
    conf = private / "ptfast.conf"
    conf.write_text('PT_LIMIT = "60"\n')
    tmp_path.chmod(0o755)
    result = ptfast_as(SCANNER, "scan", "--config", os.devnull, "--override", str(conf),
                       "--pignore", os.devnull)
    assert result.returncode == 2
    assert f"{conf}: cannot read: Permission denied (run ptfast as root)" in result.stderr
    assert result.stdout == ""


def test_non_root_status_says_it_cannot_read_the_state(tmp_path):
    state = tmp_path / "state"
    (state / "spool").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    tmp_path.chmod(0o755)
    result = ptfast_as(SCANNER, "status", "--state-dir", str(state))
    assert result.returncode == 2
    assert result.stdout.startswith("ptfast: cannot read the state\n"), result.stdout
    assert "no state" not in result.stdout
    assert "run ptfast status as root" in result.stdout
