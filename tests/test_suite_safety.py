"""The suite is safe to run on a real server (issue 13, item 10): its helpers read /proc as bytes
(a process name may be anything), and nothing a test starts under a test uid outlives the run
(conftest sweeps the session's uid block at the end and fails the run if it found anything)."""

import os
import signal
import subprocess

import pytest

from helpers import uids
from helpers.procs import kill_uid, kill_uids, pids_of_uid, start_python, wait_until
from helpers.uids import uid_for

pytestmark = pytest.mark.needs_root

HOSTILE_NAME = b"\xff\xfe)x\n1 (Z"          # not UTF-8, with the characters stat parsing trips on
RENAME = f"""
libc.prctl(15, ctypes.c_char_p({HOSTILE_NAME!r}), 0, 0, 0)     # PR_SET_NAME
"""


def test_helpers_tolerate_non_utf8_process_names():
    uid = uid_for(660)
    child = start_python(RENAME, uid=uid, argv=[os.fsdecode(b"\xff\xfe-not-utf8")])
    try:
        with open(f"/proc/{child.pid}/comm", "rb") as handle:
            assert handle.read().rstrip(b"\n") == HOSTILE_NAME[:15]
        assert pids_of_uid(uid) == [child.pid]
        assert uid in uids._uids_in_use()
        kill_uid(uid)
        assert pids_of_uid(uid) == []
    finally:
        child.stop()


def test_a_leftover_is_swept_and_reported():
    """What conftest does at the end of the run, on a process no test stopped."""
    low = uid_for(661)
    forgotten = [subprocess.Popen(["sleep", "1000"], user=low + n, group=low + n,
                                  extra_groups=[]) for n in range(3)]
    try:
        found = kill_uids(low, low + 3)
        assert sorted(found) == sorted(p.pid for p in forgotten)
        for popen in forgotten:
            assert popen.wait(timeout=30) == -signal.SIGKILL
        assert wait_until(lambda: kill_uids(low, low + 3) == [])
    finally:
        for popen in forgotten:
            if popen.poll() is None:
                popen.kill()
            popen.wait()
