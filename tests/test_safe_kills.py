"""Kills that never hit root or an ignored process, with and without pidfds (issue 13, items 1
and 2): reproducers with real processes. They failed on the code before ptfast.act.kills (the root
master was killed; without pidfds nothing was).

A kernel without pidfds (before 5.3: AlmaLinux/CloudLinux 8 run 4.18) is simulated for the whole
`ptfast run --once` process by a seccomp filter that makes pidfd_open and pidfd_send_signal fail
with ENOSYS, which is what such a kernel answers (helpers/nopidfd.py).
"""

import os
import signal
import subprocess
import sys

import pytest

from helpers import nopidfd
from helpers.procs import alive, kill_uid, pids_of_uid, start_copied_python, wait_until
from helpers.service import ServiceDir, recorded_command
from helpers.uids import uid_for

pytestmark = [pytest.mark.needs_root,
              pytest.mark.skipif(not nopidfd.SUPPORTED, reason="seccomp filter for x86_64 "
                                                               "and aarch64 only")]

CUSTOMER_CGI = uid_for(650)
CUSTOMER_MANY = uid_for(651)
SLEEPERS = 25
# the master forks one worker, which becomes the customer and runs a "CGI" that starts sleepers;
# every process stays in the master's session, as under a real pre-fork web server
PREFORK_MASTER = f"""
import subprocess
os.setsid()
worker = os.fork()
if worker == 0:
    try:
        os.setgroups([]); os.setresgid({CUSTOMER_CGI}, {CUSTOMER_CGI}, {CUSTOMER_CGI})
        os.setresuid({CUSTOMER_CGI}, {CUSTOMER_CGI}, {CUSTOMER_CGI})
        subprocess.run(["/bin/sh", "-c", "i=0; while [ $i -lt {SLEEPERS} ]; do "
                        "sleep 1000 & i=$((i+1)); done; wait"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os._exit(0)
info["worker"] = worker
"""
PIDFDS = [pytest.param(True, id="pidfd"), pytest.param(False, id="no-pidfd")]


def comm(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/comm", "rb") as handle:
            return handle.read().strip()
    except OSError:
        return b""


def state(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return handle.read().rsplit(b")", 1)[1].split()[0]


def sleepers(uid: int) -> list:
    return [pid for pid in pids_of_uid(uid) if comm(pid) == b"sleep"]


def run_once(service, *settings, pidfds: bool):
    return subprocess.run(recorded_command(service, *settings), capture_output=True, text=True,
                          timeout=120, preexec_fn=None if pidfds else nopidfd.without_pidfds)


def test_the_simulated_kernel_has_no_pidfds():
    result = subprocess.run([sys.executable, "-c", "import os; os.pidfd_open(os.getpid())"],
                            capture_output=True, text=True, preexec_fn=nopidfd.without_pidfds)
    assert result.returncode != 0 and "Function not implemented" in result.stderr
    assert subprocess.run([sys.executable, "-c", "import os; os.pidfd_open(os.getpid())"]
                          ).returncode == 0


@pytest.mark.parametrize("pidfds", PIDFDS)
def test_a_fork_bomb_through_a_root_prefork_worker_kills_the_cgi_not_the_master(tmp_path,
                                                                                pidfds):
    root = tmp_path / "service"
    root.mkdir(mode=0o700)
    service = ServiceDir(root, CUSTOMER_CGI)
    master = None
    try:
        master = start_copied_python("prefork-master", PREFORK_MASTER)
        with open(service.pignore, "a") as handle:       # the web server is ignored, by exe
            handle.write(f"exe:{master.info['exe']}\n")
        assert wait_until(lambda: len(sleepers(CUSTOMER_CGI)) == SLEEPERS)
        result = run_once(service, "PT_FORKBOMB=20", "PT_USERPROC=0", "PT_USERMEM=0",
                          "PT_USERRSS=0", "PT_USERTIME=0", pidfds=pidfds)
        assert result.returncode == 0, result.stderr
        assert "*PT_FORKBOMB*" in service.log() and "Killed:Yes" in service.log()
        assert alive(master.pid), "the root master was killed"
        assert state(master.pid) != b"T", "the root master was left stopped"
        assert wait_until(lambda: sleepers(CUSTOMER_CGI) == []), "the CGI's sleepers live on"
    finally:
        if master is not None:
            if alive(master.pid):
                os.kill(master.pid, signal.SIGCONT)
            master.stop()
        kill_uid(CUSTOMER_CGI)


@pytest.mark.parametrize("pidfds", PIDFDS)
def test_pt_userkill_kills_without_pidfds_too(tmp_path, pidfds):
    root = tmp_path / "service"
    root.mkdir(mode=0o700)
    service = ServiceDir(root, CUSTOMER_MANY)
    started = []
    try:
        for _ in range(8):
            started.append(subprocess.Popen(["sleep", "1000"], user=CUSTOMER_MANY,
                                            group=CUSTOMER_MANY, extra_groups=[],
                                            stdin=subprocess.DEVNULL))
        result = run_once(service, "PT_USERPROC=5", "PT_USERKILL=1", "PT_USERMEM=0",
                          "PT_USERRSS=0", "PT_USERTIME=0", pidfds=pidfds)
        assert result.returncode == 0, result.stderr
        assert f"*Excessive Processes* User:{CUSTOMER_MANY} Kill:1" in service.log()
        for popen in started:
            assert popen.wait(timeout=30) == -signal.SIGKILL
    finally:
        kill_uid(CUSTOMER_MANY)
        for popen in started:
            popen.wait()
