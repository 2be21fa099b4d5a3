"""PT_FORKBOMB in a shared service session (issue 20, item 2): a customer's PHP script forks a
bomb inside a real php-fpm master's session, beside another customer's pool, which has more
processes than the bomb. ptfast must kill the bomb and its forker's processes, and leave the other
customer's pool workers and the root master alone. Before the fix it killed the uid with the
most processes in the session: the other customer's workers; the bomb lived on.

The bomb is bounded (RLIMIT_NPROC of its uid); every process the test starts is killed when the
test ends, whatever failed (SharedPhpFpm), and the master ends with the test process even when
that is killed outright.

A second test is an attack on the fix: a customer tips the session over with a few processes of
its own and one child of the neighbour's site; nobody forked a bomb, and nobody is killed.
"""

import ctypes
import glob
import json
import os
import shutil
import signal
import socket
import struct
import subprocess

import pytest

from helpers.procs import alive, kill_uid, pids_of_uid, public_tempdir, wait_until
from helpers.service import SendmailRecorder, ServiceDir, free_port, start_time_of
from helpers.uids import uid_for
from helpers.inproc import run_ptfast

PHP_FPM = sorted(glob.glob("/usr/sbin/php-fpm*"))
# the bomb runs as a customer, who cannot reach an interpreter under /root (a venv's)
SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = [pytest.mark.needs_root,
              pytest.mark.skipif(not PHP_FPM, reason="php-fpm not installed (Debian package "
                                                     "php-fpm)"),
              pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK),
                                 reason=f"{SYSTEM_PYTHON} not installed (Debian package "
                                        "python3)")]

FORKER = uid_for(660)           # customer A: its script forks the bomb
NEIGHBOUR = uid_for(661)        # customer B: a bigger pool in the same master's session
FORKER_WORKERS = 2
NEIGHBOUR_WORKERS = 45          # more than the forker's processes, bomb included
BOMB_BOUND = 30                 # RLIMIT_NPROC of the forker's uid: its pool workers count too
PR_SET_PDEATHSIG = 1
CORES = [pytest.param({}, id="compiled"),
         pytest.param({"PTFAST_NO_EXTENSIONS": "1"}, id="pure-python")]

GLOBAL_CONF = """\
[global]
pid = {dir}/php-fpm.pid
error_log = /proc/self/fd/2
daemonize = no
"""
POOL_CONF = """
[pool{uid}]
user = {uid}
group = {uid}
listen = 127.0.0.1:{port}
pm = static
pm.max_children = {workers}
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

# a customer's script starting COMMAND in the background, as a webshell (or a site's image
# conversion) would
SCRIPT = '<?php exec("{command} >/dev/null 2>&1 &"); echo "started";\n'


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


class SharedPhpFpm:
    """A real root php-fpm master leading its own session, as under systemd, with one static
    pool per customer (``pools``: uid -> workers), and scripts in a directory every pool can
    read. A context: on leaving, the master, every process of the pools' uids and the
    directory are gone, whatever failed."""

    def __init__(self, pools: dict) -> None:
        self.pools = pools
        self.ports = {uid: free_port() for uid in pools}
        self.directory = public_tempdir()
        self.master = None

    def __enter__(self) -> "SharedPhpFpm":
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        conf = GLOBAL_CONF.format(dir=self.directory) + "".join(
            POOL_CONF.format(uid=uid, port=self.ports[uid], workers=workers)
            for uid, workers in self.pools.items())
        conf_path = self.write("php-fpm.conf", conf)
        with open(os.path.join(self.directory, "php-fpm.log"), "wb") as log:
            # -n: not the host's php.ini
            self.master = subprocess.Popen([PHP_FPM[-1], "-n", "-F", "-y", conf_path],
                                           stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           preexec_fn=end_with_the_test)
        assert wait_until(lambda: all(len(workers(uid)) == count
                                      for uid, count in self.pools.items()), timeout=60)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o644)
        return path

    def start_in_background(self, uid: int, command: str) -> None:
        """``command`` started by a PHP script of ``uid``'s pool: in the master's session."""
        script = self.write(f"start{len(os.listdir(self.directory))}.php",
                            SCRIPT.format(command=command))
        assert b"started" in fastcgi_get(self.ports[uid], script)

    def __exit__(self, *exc) -> None:
        if self.master is not None:
            stop_master(self.master)
        for uid in self.pools:
            kill_uid(uid)           # a bomb, whatever failed
        shutil.rmtree(self.directory, ignore_errors=True)


def ptfast_plan_and_run(tmp_path, core_env: dict, *settings: str):
    """``ptfast scan --json`` (the plan), then ``ptfast run --once`` tracking FORKER and
    NEIGHBOUR (root ignored), alerts to a recorder (never the host's sendmail): (the plan's
    fork bomb record, the service dir, the recorder)."""
    service = ServiceDir(tmp_path, FORKER, NEIGHBOUR)
    recorder = SendmailRecorder(str(tmp_path))
    settings = ("PT_USERPROC=0", "PT_USERMEM=0", "PT_USERRSS=0", "PT_USERTIME=0",
                f"SENDMAIL={recorder.path}", *settings)
    env = dict(os.environ, **core_env)
    plan = run_ptfast(
        ["scan", "--json", "--config", os.devnull, "--override", service.override, "--pignore",
         service.pignore, *[argument for setting in settings for argument in ("--set", setting)]],
        env=env, text=True)
    assert plan.returncode == 1, plan.stderr
    [bomb_record] = [record for record in map(json.loads, plan.stdout.splitlines())
                     if record["check"] == "forkbomb"]
    result = run_ptfast(service.command(*settings)[3:], env=env)
    assert result.returncode == 0, result.stderr.decode()
    return bomb_record, service, recorder


def untouched(processes: dict) -> list:
    """Which of ``processes`` (pid -> start time) were killed or left stopped."""
    return [pid for pid, start_time in processes.items()
            if not alive(pid) or start_time_of(pid) != start_time or state(pid) == b"T"]


@pytest.mark.parametrize("core_env", CORES)
def test_a_bomb_forked_in_php_fpms_session_kills_its_forker_not_the_bigger_pool(tmp_path,
                                                                                core_env):
    with SharedPhpFpm({FORKER: FORKER_WORKERS, NEIGHBOUR: NEIGHBOUR_WORKERS}) as fpm:
        master = fpm.master
        neighbours = {pid: start_time_of(pid) for pid in workers(NEIGHBOUR)}
        bomb = fpm.write("bomb.py", BOMB.format(bound=BOMB_BOUND))
        fpm.start_in_background(FORKER, f"{SYSTEM_PYTHON} -S {bomb}")
        # the bomb fills its bound: the forker's processes are fewer than the neighbour's
        assert wait_until(lambda: len(bomb_pids(bomb)) >= BOMB_BOUND - FORKER_WORKERS - 2,
                          timeout=30)
        assert all(os.getsid(pid) == master.pid for pid in bomb_pids(bomb))
        assert len(pids_of_uid(FORKER)) < len(pids_of_uid(NEIGHBOUR))

        plan, service, recorder = ptfast_plan_and_run(tmp_path, core_env, "PT_FORKBOMB=20")
        assert plan["response"]["kill_uid"] == FORKER, plan["response"]
        log = service.log()
        assert f"SID:{master.pid} User:{FORKER} " in log and "Killed:Yes" in log, log[-3000:]
        assert wait_until(lambda: bomb_pids(bomb) == [], timeout=30), "the bomb lives on"
        assert untouched(neighbours) == [], "the neighbour's pool workers were hit"
        assert master.poll() is None and state(master.pid) != b"T", "the root master was hit"
        [call] = [call for call in recorder.calls() if "fork bomb" in call["parsed"]["Subject"]]
        assert f"session {master.pid} holds" in call["parsed"].get_content()


@pytest.mark.parametrize("core_env", CORES)
def test_a_neighbours_one_child_tipping_the_session_over_kills_nobody(tmp_path, core_env):
    # the attack: the forker keeps a few processes in the session, then calls a page of the
    # neighbour's site that starts one child; the session is over PT_FORKBOMB, and the
    # neighbour owns the most processes and the youngest one, but nobody forked a bomb
    with SharedPhpFpm({FORKER: FORKER_WORKERS, NEIGHBOUR: NEIGHBOUR_WORKERS}) as fpm:
        neighbours = {pid: start_time_of(pid) for pid in workers(NEIGHBOUR)}
        for _ in range(3):
            fpm.start_in_background(FORKER, "/bin/sleep 600")
        fpm.start_in_background(NEIGHBOUR, "/bin/sleep 601")
        assert wait_until(lambda: len(pids_of_uid(FORKER)) == FORKER_WORKERS + 3
                          and len(pids_of_uid(NEIGHBOUR)) == NEIGHBOUR_WORKERS + 1)
        everyone = {pid: start_time_of(pid)
                    for pid in pids_of_uid(FORKER) + pids_of_uid(NEIGHBOUR)}
        threshold = len(everyone)

        plan, service, recorder = ptfast_plan_and_run(tmp_path, core_env,
                                                      f"PT_FORKBOMB={threshold}")
        assert plan["response"]["kill"] == [], plan["response"]
        assert f"holds {threshold} processes >= PT_FORKBOMB {threshold}: Killed:No" in \
            service.log()
        assert untouched(everyone) == []
        assert [call for call in recorder.calls() if "fork bomb" in call["parsed"]["Subject"]]
