"""A pool on [::]:P with IPV6_V6ONLY leaves every IPv4-mapped address of port P free: a
customer's code running in the pool's own worker (PHP in a php-fpm worker) binds
[::ffff:A]:P and connects out from there. That connection is the customer's, not one accepted
on the pool; on a dual-stack [::]:P (where the kernel refuses that bind) a mapped connection
is the pool's. Real processes, both cores."""

import json
import os
import time

import pytest

from helpers.procs import kill_uid, start_python, wait_until
from helpers.scan import CONNECTIONS_AT_ONCE
from helpers.service import only_users_rule
from helpers.uids import uid_for
from helpers.inproc import run_ptfast
from test_provenance import CORES, _uid_of, verdicts

UID = uid_for(242)

# The root master makes a v6only pool listener and a dual-stack one, a peer for the worker to
# reach, and a client already queued on the dual-stack pool over IPv4; then forks its workers,
# which drop to the customer's uid without exec (PF_FORKNOEXEC, the master's file).
MASTER = """
def pool(v6only):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind(("::", 0))
    s.listen(8)
    return s
v6only, dual = pool(1), pool(0)
peer = listen(socket.AF_INET, "127.0.0.1")
client = socket.create_connection(("127.0.0.1", dual.getsockname()[1]))
KEEP.extend([v6only, dual, peer, client])

def worker(keep, work):
    pid = os.fork()
    if pid:
        return pid
    for s in (v6only, dual, peer, client):
        if all(s is not k for k in keep):
            s.close()
    os.setgroups([]); os.setresgid(WORKER_UID, WORKER_UID, WORKER_UID)
    os.setresuid(WORKER_UID, WORKER_UID, WORKER_UID)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    kept = work()
    while True:
        signal.pause()

def connect_out_from_a_mapped_address_of_the_pool_port():
    s = socket.socket(socket.AF_INET6)
    s.bind(("::ffff:127.0.0.1", v6only.getsockname()[1]))
    s.connect(("::ffff:127.0.0.1", peer.getsockname()[1]))
    return s

info["mapped"] = worker([v6only, peer], connect_out_from_a_mapped_address_of_the_pool_port)
info["accepting"] = worker([dual], lambda: dual.accept())
info["v6only_port"] = v6only.getsockname()[1]
info["dual_port"] = dual.getsockname()[1]
"""


def scan(tmp_path, core) -> dict:
    pignore_file = tmp_path / "pignore"
    pignore_file.write_text(only_users_rule(UID))
    command = ["scan", "--json", "--config", os.devnull,
               "--override", os.devnull, "--pignore", str(pignore_file), "--set", "PT_LIMIT=1",
               "--set", "PT_LOAD=0", "--set", "PT_USERPROC=0",
               "--set", CONNECTIONS_AT_ONCE]
    result = run_ptfast(command, env={**os.environ, **CORES[core]})
    assert result.returncode in (0, 1), result.stderr.decode()
    return {record["pid"]: record for record in map(json.loads, result.stdout.splitlines())}


@pytest.fixture(scope="module")
def master():
    started = start_python(f"WORKER_UID = {UID}\n" + MASTER)
    try:
        info = started.info
        assert wait_until(lambda: all(_uid_of(info[name]) == UID
                                      for name in ("mapped", "accepting")))
        # the dual-stack pool's worker holds the IPv4 client's connection it accepted
        assert wait_until(lambda: _sockets_held(info["accepting"]) == 2)
        time.sleep(1.2)             # older than PT_LIMIT=1
        yield info
    finally:
        started.stop()
        kill_uid(UID)


def _sockets_held(pid) -> int:
    try:
        return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


@pytest.fixture(params=sorted(CORES))
def core(request):
    return request.param


@pytest.mark.needs_root
def test_a_connection_from_a_mapped_address_of_a_v6only_pools_port_counts(master, tmp_path,
                                                                           core):
    record = scan(tmp_path, core)[master["mapped"]]
    assert record["reasons"] == ["socket"]
    counted, why = verdicts(record)[("tcp6", f"127.0.0.1:{master['v6only_port']}",
                                     "ESTABLISHED")]
    assert counted and why == "created by the process's own user"


@pytest.mark.needs_root
def test_an_ipv4_connection_accepted_on_a_dual_stack_pool_is_the_pools(master, tmp_path, core):
    assert master["accepting"] not in scan(tmp_path, core)
