"""A fork bomb whose every process calls setsid(): no session holds more than one process, so
no session reaches PT_FORKBOMB. ptfast counts the sessions one user started (led by its young
processes): that many is a bomb, killed; a neighbour with a few sessions of its own (logins,
cron jobs) is no bomb and untouched. Real processes, both cores; the bomb is bounded and every
process is killed at the end, whatever failed."""

import os
import resource
import select
import subprocess

import pytest

from helpers.procs import alive, kill_uid, pids_of_uid, wait_until
from helpers.service import SendmailRecorder, ServiceDir
from helpers.uids import uid_for

SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = [pytest.mark.needs_root,
              pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK),
                                 reason=f"{SYSTEM_PYTHON} not installed (Debian package "
                                        "python3)")]

BOMBER, NEIGHBOUR = uid_for(662), uid_for(663)
CORES = {"compiled": {}, "pure-python": {"PTFAST_NO_EXTENSIONS": "1"}}
THRESHOLD = 20
#: seconds after which every process of the bomb ends by itself (SIGALRM), whatever becomes of
#: the test: a run killed before its cleanup once left setsid'd processes behind, adopted by
#: init, for half an hour. Far beyond the test's own waits, so it cannot stand in for ptfast's
#: kill (and the log must say Killed:Yes anyway).
LIFETIME = 600
# each child leaves its parent's session at once; the parent forks the next
SESSIONS = """
import os, signal, sys
lifetime = int(sys.argv[2])
signal.alarm(lifetime)
for _ in range(int(sys.argv[1])):
    if os.fork() == 0:
        signal.alarm(lifetime)                          # alarms are not inherited
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)    # the test reads "ready" to its end
        os.setsid()
        signal.pause()
        os._exit(0)
print("ready", flush=True)
signal.pause()
"""


@pytest.fixture(autouse=True)
def no_process_left():
    """Every process of the test uids is killed before and after, by uid: setsid'd ones are in
    no process group or session the test could name, and their parent may be gone."""
    kill_uid(BOMBER)
    kill_uid(NEIGHBOUR)
    yield
    kill_uid(BOMBER)
    kill_uid(NEIGHBOUR)
    left = pids_of_uid(BOMBER) + pids_of_uid(NEIGHBOUR)
    assert not left, f"processes of the test uids left: {left}"


def start_sessions(uid: int, count: int) -> subprocess.Popen:
    def bounded():
        resource.setrlimit(resource.RLIMIT_NPROC, (200, 200))
    child = subprocess.Popen([SYSTEM_PYTHON, "-c", SESSIONS, str(count), str(LIFETIME)],
                             user=uid, group=uid,
                             extra_groups=[], preexec_fn=bounded, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, cwd="/")
    ready, _, _ = select.select([child.stdout], [], [], 30)
    if not ready or child.stdout.readline() != b"ready\n":
        child.kill()
        child.wait()
        raise AssertionError(f"uid {uid}'s {count} sessions did not start")
    return child


@pytest.mark.parametrize("core", sorted(CORES))
def test_a_bomb_of_a_session_per_process_is_killed_and_the_neighbour_is_not(tmp_path, core):
    started = []
    try:
        started.append(start_sessions(BOMBER, THRESHOLD + 10))
        started.append(start_sessions(NEIGHBOUR, 5))
        bomb = pids_of_uid(BOMBER)
        neighbours = pids_of_uid(NEIGHBOUR)
        assert len(bomb) == THRESHOLD + 11 and len(neighbours) == 6
        service = ServiceDir(tmp_path, BOMBER, NEIGHBOUR)
        recorder = SendmailRecorder(str(tmp_path))
        result = subprocess.run(service.command(f"SENDMAIL={recorder.path}",
                                                f"PT_FORKBOMB={THRESHOLD}", "PT_USERPROC=0"),
                                capture_output=True, timeout=120,
                                env={**os.environ, **CORES[core]})
        assert result.returncode == 0, result.stderr.decode()
        log = service.log()
        assert f"sessions of its own >= PT_FORKBOMB {THRESHOLD}: Killed:Yes" in log, log[-3000:]
        assert wait_until(lambda: not any(alive(pid) for pid in bomb), timeout=30)
        assert all(alive(pid) for pid in neighbours), "the neighbour was hit"
        assert [call for call in recorder.calls() if "fork bomb" in call["parsed"]["Subject"]]
    finally:
        for child in started:
            child.kill()
            child.wait()
            child.stdout.close()
        kill_uid(BOMBER)
        kill_uid(NEIGHBOUR)
