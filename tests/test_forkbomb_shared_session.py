"""PT_FORKBOMB in a shared service session (issue 20, item 2): a customer's PHP script forks a
bomb inside a real php-fpm master's session, beside another customer's pool, which has more
processes than the bomb. ptfast must kill the bomb and its forker's processes, and leave the other
customer's pool workers and the root master alone. Before the fix it killed the uid with the
most processes in the session: the other customer's workers; the bomb lived on.

The bomb is bounded (RLIMIT_NPROC of its uid); every process the test starts is killed in a
``finally``, whatever failed.
"""

import ctypes
import glob
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys

import pytest

from helpers.procs import alive, kill_uid, pids_of_uid, public_tempdir, wait_until
from helpers.service import SendmailRecorder, ServiceDir, free_port, start_time_of
from helpers.uids import uid_for

PHP_FPM = sorted(glob.glob("/usr/sbin/php-fpm*"))
pytestmark = [pytest.mark.needs_root,
              pytest.mark.skipif(not PHP_FPM, reason="php-fpm not installed (Debian package "
                                                     "php-fpm)")]

FORKER = uid_for(660)           # customer A: its script forks the bomb
NEIGHBOUR = uid_for(661)        # customer B: a bigger pool in the same master's session
FORKER_WORKERS = 2
NEIGHBOUR_WORKERS = 45          # more than the forker's processes, bomb included
BOMB_BOUND = 30                 # RLIMIT_NPROC of the forker's uid: its pool workers count too
PR_SET_PDEATHSIG = 1
CORES = [pytest.param({}, id="compiled"),
         pytest.param({"PTFAST_NO_EXTENSIONS": "1"}, id="pure-python")]

FPM_CONF = """\
[global]
pid = {dir}/php-fpm.pid
error_log = /proc/self/fd/2
daemonize = no

[forker]
user = {forker}
group = {forker}
listen = 127.0.0.1:{forker_port}
pm = static
pm.max_children = {forker_workers}

[neighbour]
user = {neighbour}
group = {neighbour}
listen = 127.0.0.1:{neighbour_port}
pm = static
pm.max_children = {neighbour_workers}
"""

# every process forks for ever, as a real bomb does; the bound stops it, and at the bound each
# one waits instead of burning the CPU. No setsid: it stays in the php-fpm master's session.
BOMB = """\
import os, resource, time
resource.setrlimit(resource.RLIMIT_NPROC, ({bound}, {bound}))
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.05)
"""

# the customer's script starts the bomb in the background, as a webshell would
SCRIPT = '<?php exec("/usr/bin/python3 {bomb} >/dev/null 2>&1 &"); echo "started";\n'


def fastcgi_get(port: int, script: str) -> bytes:
    """Run ``script`` on the php-fpm pool at ``port`` (one FastCGI request); its output."""
    def record(kind: int, content: bytes) -> bytes:
        return struct.pack("!BBHHBx", 1, kind, 1, len(content), 0) + content

    params = {"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/bomb.php", "REQUEST_METHOD": "GET",
              "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1"}
    encoded = b"".join(bytes([len(name), len(value)]) + name.encode() + value.encode()
                       for name, value in params.items())          # each shorter than 128
    begin, params_kind, stdin, stdout, end = 1, 4, 5, 6, 3
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(record(begin, struct.pack("!HB5x", 1, 0)) + record(params_kind, encoded)
                     + record(params_kind, b"") + record(stdin, b""))
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    output = b""
    while len(data) >= 8:
        _version, kind, _request, length, padding = struct.unpack("!BBHHB", data[:7])
        if kind == stdout:
            output += data[8:8 + length]
        if kind == end:
            break
        data = data[8 + length + padding:]
    return output


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def state(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return b""


def workers(uid: int) -> list:
    return [pid for pid in pids_of_uid(uid) if cmdline(pid).startswith(b"php-fpm: pool")]


def bomb_pids(bomb: str) -> list:
    return [pid for pid in pids_of_uid(FORKER) if bomb.encode() in cmdline(pid)]


def end_with_the_test() -> None:
    """In the master before it runs: SIGTERM when the test process dies, even killed outright
    (php-fpm then ends its pools)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def stop_master(master: subprocess.Popen) -> None:
    """The master and its pools, gone; never raises."""
    try:
        if master.poll() is None:
            os.kill(master.pid, signal.SIGCONT)     # in case something left it stopped
            master.terminate()                      # php-fpm ends its workers, then itself
            try:
                master.wait(timeout=20)
            except subprocess.TimeoutExpired:
                master.kill()
                master.wait(timeout=10)
    except OSError:
        pass


@pytest.mark.parametrize("core_env", CORES)
def test_a_bomb_forked_in_php_fpms_session_kills_its_forker_not_the_bigger_pool(tmp_path,
                                                                                core_env):
    directory = public_tempdir()
    bomb = os.path.join(directory, "bomb.py")
    script = os.path.join(directory, "bomb.php")
    master = None
    try:
        with open(bomb, "w") as handle:
            handle.write(BOMB.format(bound=BOMB_BOUND))
        with open(script, "w") as handle:
            handle.write(SCRIPT.format(bomb=bomb))
        for path in (bomb, script):
            os.chmod(path, 0o644)
        forker_port, neighbour_port = free_port(), free_port()
        conf = os.path.join(directory, "php-fpm.conf")
        with open(conf, "w") as handle:
            handle.write(FPM_CONF.format(dir=directory, forker=FORKER, neighbour=NEIGHBOUR,
                                         forker_port=forker_port, neighbour_port=neighbour_port,
                                         forker_workers=FORKER_WORKERS,
                                         neighbour_workers=NEIGHBOUR_WORKERS))
        with open(os.path.join(directory, "php-fpm.log"), "wb") as log:
            # the master leads its own session, as under systemd; -n: no host php.ini
            master = subprocess.Popen([PHP_FPM[-1], "-n", "-F", "-y", conf],
                                      stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=end_with_the_test)
        assert wait_until(lambda: len(workers(NEIGHBOUR)) == NEIGHBOUR_WORKERS
                          and len(workers(FORKER)) == FORKER_WORKERS, timeout=60)
        neighbours = {pid: start_time_of(pid) for pid in workers(NEIGHBOUR)}

        assert b"started" in fastcgi_get(forker_port, script)
        # the bomb fills its bound: the forker's processes are fewer than the neighbour's
        assert wait_until(lambda: len(bomb_pids(bomb)) >= BOMB_BOUND - FORKER_WORKERS - 2,
                          timeout=30)
        assert all(os.getsid(pid) == master.pid for pid in bomb_pids(bomb))
        assert len(pids_of_uid(FORKER)) < len(pids_of_uid(NEIGHBOUR))

        service = ServiceDir(tmp_path, FORKER, NEIGHBOUR)
        recorder = SendmailRecorder(str(tmp_path))      # never the host's sendmail
        settings = ["PT_FORKBOMB=20", "PT_USERPROC=0", "PT_USERMEM=0", "PT_USERRSS=0",
                    "PT_USERTIME=0", f"SENDMAIL={recorder.path}"]
        env = dict(os.environ, **core_env)
        plan = subprocess.run(
            [sys.executable, "-m", "ptfast", "scan", "--json", "--config", os.devnull,
             "--override", service.override, "--pignore", service.pignore,
             *[argument for setting in settings for argument in ("--set", setting)]],
            capture_output=True, text=True, timeout=120, env=env)
        assert plan.returncode == 1, plan.stderr
        assert f'"kill_uid":{FORKER}' in plan.stdout.replace(" ", ""), plan.stdout[-2000:]

        result = subprocess.run(service.command(*settings), capture_output=True, timeout=120,
                                env=env)
        assert result.returncode == 0, result.stderr.decode()
        log = service.log()
        assert f"SID:{master.pid} User:{FORKER} " in log and "Killed:Yes" in log, log[-3000:]
        assert wait_until(lambda: bomb_pids(bomb) == [], timeout=30), "the bomb lives on"
        for pid, start_time in neighbours.items():
            assert alive(pid) and start_time_of(pid) == start_time, \
                f"the neighbour's pool worker {pid} was killed"
            assert state(pid) != b"T", f"the neighbour's pool worker {pid} was left stopped"
        assert master.poll() is None and state(master.pid) != b"T", "the root master was hit"
        [call] = [call for call in recorder.calls() if "fork bomb" in call["parsed"]["Subject"]]
        assert f"session {master.pid} holds" in call["parsed"].get_content()
    finally:
        if master is not None:
            stop_master(master)
        kill_uid(FORKER)            # the bomb, whatever failed above
        kill_uid(NEIGHBOUR)
        shutil.rmtree(directory, ignore_errors=True)
