"""Service sockets against real processes: a root pre-fork master whose worker (running as a
customer, the same executable) holds the master's listener and a connection it accepted on it,
and a backdoor the worker started, which inherits the listener and connects out."""

import json
import os
import subprocess
import sys

import pytest

from helpers.procs import kill_uid, start_python
from helpers.scan import CONNECTIONS_AT_ONCE
from helpers.service import only_users_rule
from helpers.uids import uid_for

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

UID = uid_for(220)

MASTER = """
import subprocess
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
target = listen(socket.AF_INET, "127.0.0.1")             # where the backdoor connects to
client = socket.create_connection(listener.getsockname())  # waits in the backlog
KEEP.extend([listener, client])
report_r, report_w = os.pipe()
worker = os.fork()
if worker == 0:                                          # the pool's worker, as the customer
    os.setgroups([]); os.setresgid(WORKER_UID, WORKER_UID, WORKER_UID)
    os.setresuid(WORKER_UID, WORKER_UID, WORKER_UID)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    accepted, _ = listener.accept()
    backdoor = subprocess.Popen(
        ["perl", "-MIO::Socket::INET", "-e",
         "my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0]) or die; sleep 3600",
         "127.0.0.1:%d" % target.getsockname()[1]],
        pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL)
    os.write(report_w, b"%d\\n" % backdoor.pid)
    while True:
        signal.pause()
info["worker"] = worker
info["backdoor"] = int(os.read(report_r, 64))
info["port"] = listener.getsockname()[1]
"""


def scan(tmp_path, *settings):
    pignore = tmp_path / "pignore"
    pignore.write_text(only_users_rule(UID))
    command = [sys.executable, "-m", "ptfast", "scan", "--json", "--config", os.devnull,
               "--override", os.devnull, "--pignore", str(pignore), "--set", "PT_LIMIT=1",
               "--set", "PT_LOAD=0", "--set", "PT_USERPROC=0",
               "--set", CONNECTIONS_AT_ONCE, *settings]
    result = subprocess.run(command, capture_output=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr.decode()
    return {record["pid"]: record for record in map(json.loads, result.stdout.splitlines())}


def test_the_worker_is_quiet_and_the_backdoor_it_started_is_reported(tmp_path):
    master = start_python(f"WORKER_UID = {UID}\n" + MASTER)      # root, as a real master
    try:
        worker, backdoor = master.info["worker"], master.info["backdoor"]
        found = scan(tmp_path)
        assert worker not in found
        record = found[backdoor]
        assert record["reasons"] == ["listening socket", "socket"]
        verdicts = {sock["state"]: (sock["counted"], sock["why"]) for sock in record["sockets"]}
        assert verdicts["LISTEN"] == (True, "handed over by uid 0 to a process that is no "
                                            "worker of its root service")
        assert verdicts["ESTABLISHED"] == (True, "created by the process's own user")
        # without the rule the worker is reported too, as lfd's counting would
        found = scan(tmp_path, "--set", "PT_SERVICE_SOCKETS=0")
        assert found[worker]["reasons"] == ["listening socket", "socket"]
    finally:
        master.stop()
        kill_uid(UID)               # the worker and the backdoor outlive their master
