"""Service workers proven by provenance, against real processes and on both cores.

A worker is its root master's direct child that either was forked by it and has not exec'd
since (the kernel's PF_FORKNOEXEC) or runs another program of the master's own package. What a
webshell can arrange (run the master's own program again with LD_PRELOAD, even with the
master's address-space layout forged back; start its own php-fpm on the pool's inherited
listener; fork from a worker; connect out over IPv6 from the pool's port; hold a socket of the
web server's account) is no worker's, and counts.
"""

import glob
import json
import os
import shutil
import socket
import struct
import subprocess

import pytest

from ptfast.foundation import config, users
from ptfast.decide import findings, pignore, policy
from ptfast.decide.judgement import Judgement
from ptfast.decide.checks import SUSPICIOUS
from ptfast.decide.checks.base import PassWork
from ptfast.decide.checks.suspicious import accepted_on, known_dual_stack
from ptfast.scan.procfs import Snapshot

from helpers.procs import kill_uid, public_tempdir, start_python, wait_until
from helpers.scan import CONNECTIONS_AT_ONCE
from helpers.service import free_port, only_users_rule
from helpers.snapshots import HOST_FILES, USERS, proc, sock
from helpers.uids import uid_for
from helpers.inproc import run_ptfast

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = pytest.mark.usefixtures("aged")

UID = uid_for(240)
CORES = {"compiled": {}, "pure-python": {"PTFAST_NO_EXTENSIONS": "1"}}
#: a library every host has and that does nothing when preloaded
HARMLESS_LIBRARY = next(iter(glob.glob("/lib/*-linux-gnu/libm.so.6")
                             + glob.glob("/lib64/libm.so.6")), "")
LAYOUT_FIELDS = (28, 48, 49, 50, 51)      # stat: start_stack, arg_start/end, env_start/end
DAEMON_UID = 1          # Debian's "daemon": a system account a test may name in the setting


def scan(tmp_path, core, *settings):
    pignore_file = tmp_path / "pignore"
    pignore_file.write_text(only_users_rule(UID))
    command = ["scan", "--json", "--config", os.devnull,
               "--override", os.devnull, "--pignore", str(pignore_file), "--set", "PT_LIMIT=1",
               "--set", "PT_LOAD=0", "--set", "PT_USERPROC=0",
               "--set", CONNECTIONS_AT_ONCE, *settings]
    result = run_ptfast(command, env={**os.environ, **CORES[core]})
    assert result.returncode in (0, 1), result.stderr.decode()
    return {record["pid"]: record for record in map(json.loads, result.stdout.splitlines())}


def verdicts(record) -> dict:
    return {(s["proto"], s["local"], s["state"]): (s["counted"], s["why"])
            for s in record["sockets"]}


# ---------------------------------------------------------------- a root master of our own

# The master (root) makes the pool's listener on 0.0.0.0, a connection waiting in its backlog,
# an IPv6 listener to connect to, and listeners made by www-data and by daemon (as a web server
# or a system service would hand them on); then forks its children, each of which keeps only
# what its case needs.
MASTER = """
import subprocess
def made_by(uid, family=socket.AF_INET):
    os.seteuid(uid)
    try:
        return listen(family, "127.0.0.1")
    finally:
        os.seteuid(0)
listener = socket.socket()
listener.bind(("0.0.0.0", 0))
listener.listen(8)
port = listener.getsockname()[1]
client = socket.create_connection(("127.0.0.1", port))
target6 = listen(socket.AF_INET6, "::1")
www = made_by(WWW_UID) if WWW_UID is not None else None
daemon = made_by(DAEMON_UID)
KEEP.extend([listener, client])
everything = [s for s in (listener, client, target6, www, daemon, *KEEP) if s is not None]
report_r, report_w = os.pipe()
# the exec'd child drops to the customer's uid, then puts back the address-space layout it had
# before exec (the master's), as any process may with prctl(PR_SET_MM, PR_SET_MM_MAP)
EXEC_AND_FORGE = '''
import ctypes, os, struct, sys, time
uid, layout = int(sys.argv[1]), [int(value) for value in sys.argv[2:7]]
os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(4, 1, 0, 0, 0)
libc.sbrk.restype = ctypes.c_void_p
fields = open("/proc/self/stat", "rb").read().rsplit(b")", 1)[1].split()
mine = lambda number: int(fields[number - 3])
mm_map = struct.pack("=11QQII", mine(26), mine(27), mine(45), mine(46), mine(47), libc.sbrk(0),
                     *layout, 0, 0, 0xffffffff)
libc.prctl(35, 14, ctypes.create_string_buffer(mm_map), len(mm_map), 0)
time.sleep(3600)
'''

def own_layout():
    fields = open("/proc/self/stat", "rb").read().rsplit(b")", 1)[1].split()
    return [fields[number - 3].decode() for number in LAYOUT_FIELDS]

def child(keep, work, then_exec=None):
    pid = os.fork()
    if pid:
        return pid
    for s in everything:
        if all(s is not k for k in keep):
            s.close()
    if then_exec:
        # the interpreter lives where only root may enter: exec'd as root, it drops to the
        # customer's uid itself, first thing
        for s in keep:
            os.set_inheritable(s.fileno(), True)
        os.execve(sys.executable, [sys.executable, "-S", "-c", EXEC_AND_FORGE, str(WORKER_UID),
                                   *own_layout()], {"LD_PRELOAD": then_exec})
    os.setgroups([]); os.setresgid(WORKER_UID, WORKER_UID, WORKER_UID)
    os.setresuid(WORKER_UID, WORKER_UID, WORKER_UID)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    kept = work()
    while True:
        signal.pause()

def accept_one():
    return listener.accept()

def connect_from_the_pool_port_over_ipv6():
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::1", port))
    s.connect(target6.getsockname()[:2])
    return s

def fork_a_grandchild():
    grandchild = os.fork()
    if grandchild == 0:
        while True:
            signal.pause()
    os.write(report_w, b"%d\\n" % grandchild)

info["worker"] = child([listener], accept_one)
info["ipv6"] = child([listener, target6], connect_from_the_pool_port_over_ipv6)
info["exec"] = child([listener], lambda: None, then_exec=HARMLESS_LIBRARY)
info["parent"] = child([listener], fork_a_grandchild)
info["grandchild"] = int(os.read(report_r, 64))
info["www"] = child([www], lambda: None) if www is not None else None
info["daemon"] = child([daemon], lambda: None)
info["port"] = port
"""


@pytest.fixture(scope="module")
def master():
    if not HARMLESS_LIBRARY:
        pytest.skip("no libm.so.6 to preload")
    try:
        www_uid = users.pwd.getpwnam("www-data").pw_uid
    except KeyError:
        www_uid = None
    started = start_python(f"WORKER_UID = {UID}\nWWW_UID = {www_uid!r}\n"
                           f"DAEMON_UID = {DAEMON_UID}\nHARMLESS_LIBRARY = {HARMLESS_LIBRARY!r}\n"
                           f"LAYOUT_FIELDS = {LAYOUT_FIELDS!r}\n" + MASTER)
    try:
        info = started.info
        pids = [pid for pid in (info["worker"], info["ipv6"], info["exec"], info["parent"],
                                info["grandchild"], info["www"], info["daemon"]) if pid]
        # every child has dropped to the customer's uid (the exec'd one has exec'd) and is
        # older than PT_LIMIT=1
        assert wait_until(lambda: all(_uid_of(pid) == UID for pid in pids))
        assert wait_until(lambda: _exe_of(info["exec"]) == _exe_of(started.pid)
                          and _cmdline(info["exec"]) != _cmdline(started.pid))
        # the forged layout is the master's where the kernel lets any process rewrite it
        # (CONFIG_CHECKPOINT_RESTORE): a layout proves nothing there
        info["forged"] = wait_until(lambda: _layout(info["exec"]) == _layout(started.pid), 5)
        yield info
    finally:
        started.stop()
        kill_uid(UID)               # the children outlive their master


def _uid_of(pid):
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None


def _layout(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return [int(fields[number - 3]) for number in LAYOUT_FIELDS]


def _exe_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return None


@pytest.fixture(params=sorted(CORES))
def core(request):
    return request.param


@pytest.mark.needs_root
def test_a_forked_worker_is_quiet_and_its_accepted_connection_is_the_pools(master, tmp_path,
                                                                           core):
    found = scan(tmp_path, core)
    assert master["worker"] not in found
    assert master["parent"] not in found        # a worker itself; its child is not


@pytest.mark.needs_root
def test_the_masters_program_run_again_with_ld_preload_is_no_worker(master, tmp_path, core):
    """The master's direct child, running the master's very file, holding its listener, with
    the master's address-space layout forged back after exec: it exec'd, so it is no
    worker."""
    record = scan(tmp_path, core)[master["exec"]]
    assert record["reasons"] == ["listening socket"]
    listener = verdicts(record)[("tcp", f"0.0.0.0:{master['port']}", "LISTEN")]
    assert listener == (True, "handed over by uid 0 to a process that is no worker of its "
                              "root service")


@pytest.mark.needs_root
def test_a_workers_child_is_no_worker_though_it_never_exec_d(master, tmp_path, core):
    record = scan(tmp_path, core)[master["grandchild"]]
    assert record["reasons"] == ["listening socket"]


@pytest.mark.needs_root
def test_an_ipv6_connection_from_the_pool_port_is_not_accepted_on_the_ipv4_pool(master,
                                                                                 tmp_path, core):
    record = scan(tmp_path, core)[master["ipv6"]]
    assert record["reasons"] == ["socket"]
    counted, why = verdicts(record)[("tcp6", f"[::1]:{master['port']}", "ESTABLISHED")]
    assert counted and why == "created by the process's own user"


@pytest.mark.needs_root
def test_a_socket_of_the_web_servers_account_handed_to_a_worker_counts(master, tmp_path, core):
    if master["www"] is None:
        pytest.skip("no www-data account on this host")
    record = scan(tmp_path, core)[master["www"]]
    assert record["reasons"] == ["listening socket"]
    (counted, why), = verdicts(record).values()
    assert counted and "runs customers' code" in why


@pytest.mark.needs_root
def test_accounts_named_in_pt_customer_code_users_are_customers(master, tmp_path, core):
    """daemon is a system account: its listener is a service's until the setting names it."""
    assert master["daemon"] not in scan(tmp_path, core)
    found = scan(tmp_path, core, "--set", "PT_CUSTOMER_CODE_USERS=daemon")
    assert found[master["daemon"]]["reasons"] == ["listening socket"]


# ---------------------------------------------------------------- a real php-fpm master

PHP_FPM = sorted(glob.glob("/usr/sbin/php-fpm*"))
WEBSHELL = """<?php
// started from the pool: its own php-fpm, on the pool's listener the worker inherited
$env = ['FPM_SOCKETS' => $_SERVER['POOL_ADDRESS'] . '=' . $_SERVER['POOL_FD']];
if ($_SERVER['PRELOAD'] !== '') { $env['LD_PRELOAD'] = $_SERVER['PRELOAD']; }
$null = ['file', '/dev/null', 'r'];
$process = proc_open([$_SERVER['PHP_FPM'], '-n', '-F', '-y', $_SERVER['OWN_CONFIG']],
                     [0 => $null, 1 => ['file', '/dev/null', 'w'],
                      2 => ['file', $_SERVER['OWN_LOG'], 'w']], $pipes, null, $env);
echo $process ? "started" : "failed";
"""


def fastcgi_request(port: int, params: dict) -> bytes:
    """One FastCGI request (the responder role, as nginx sends it); the reply's stdout."""
    def record(kind: int, content: bytes) -> bytes:
        return struct.pack("!BBHHBx", 1, kind, 1, len(content), 0) + content

    def pair(name: bytes, value: bytes) -> bytes:
        def length(n):
            return struct.pack("!B", n) if n < 128 else struct.pack("!I", n | 0x80000000)
        return length(len(name)) + length(len(value)) + name + value

    body = b"".join(pair(k.encode(), v.encode()) for k, v in params.items())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(record(1, struct.pack("!HB5x", 1, 0)) + record(4, body) + record(4, b"")
                     + record(5, b""))
        reply = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    out, offset = b"", 0
    while offset + 8 <= len(reply):
        _version, kind, _id, size, padding = struct.unpack_from("!BBHHB", reply, offset)
        if kind == 6:
            out += reply[offset + 8:offset + 8 + size]
        offset += 8 + size + padding
    return out


def _socket_fd(pid: int, port: int) -> int:
    """The fd number under which ``pid`` holds the TCP listener on ``port``."""
    inodes = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                inodes.add(fields[9])
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return int(fd)
    raise AssertionError(f"pid {pid} holds no listener on port {port}")


def _children(pid: int) -> list:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(child) for child in handle.read().split()]


@pytest.fixture(scope="module")
def php_pool():
    """A root php-fpm master with one pool of one static worker running as the test uid, on a
    TCP listener; the worker is asked to run a webshell that starts the customer's own
    php-fpm on the inherited listener, and again with LD_PRELOAD."""
    if not PHP_FPM:
        pytest.skip("php-fpm is not installed (Debian package php-fpm)")
    directory = public_tempdir()
    port = free_port()
    master = None
    try:
        customer = os.path.join(directory, "customer")
        os.mkdir(customer)
        os.chown(customer, UID, UID)
        with open(os.path.join(directory, "php-fpm.conf"), "w") as conf:
            conf.write(f"[global]\npid = {directory}/php-fpm.pid\nerror_log = {directory}/log\n"
                       f"daemonize = no\n[pool]\nuser = {UID}\ngroup = {UID}\n"
                       f"listen = 127.0.0.1:{port}\npm = static\npm.max_children = 1\n"
                       "clear_env = no\n")
        with open(os.path.join(customer, "shell.php"), "w") as shell:
            shell.write(WEBSHELL)
        for name in ("own", "preloaded"):
            with open(os.path.join(customer, f"{name}.conf"), "w") as conf:
                conf.write(f"[global]\npid = {customer}/{name}.pid\n"
                           f"error_log = {customer}/{name}-log\ndaemonize = no\n"
                           f"[{name}]\nlisten = 127.0.0.1:{port}\npm = static\n"
                           "pm.max_children = 1\n")
            os.chown(os.path.join(customer, f"{name}.conf"), UID, UID)
        master = subprocess.Popen([PHP_FPM[-1], "-n", "-F", "-y",
                                   os.path.join(directory, "php-fpm.conf")],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        assert wait_until(lambda: any(_uid_of(c) == UID for c in _children(master.pid)), 30)
        worker = next(c for c in _children(master.pid) if _uid_of(c) == UID)
        fd = _socket_fd(worker, port)
        started = {}
        for name, preload in (("own", ""), ("preloaded", HARMLESS_LIBRARY)):
            before = set(_children(worker))
            reply = fastcgi_request(port, {
                "SCRIPT_FILENAME": os.path.join(customer, "shell.php"),
                "REQUEST_METHOD": "GET", "POOL_ADDRESS": f"127.0.0.1:{port}",
                "POOL_FD": str(fd), "PRELOAD": preload, "PHP_FPM": PHP_FPM[-1],
                "OWN_CONFIG": os.path.join(customer, f"{name}.conf"),
                "OWN_LOG": os.path.join(customer, f"{name}-stderr")})
            assert reply.endswith(b"started"), reply
            new = set(_children(worker)) - before
            assert len(new) == 1, new
            started[name] = new.pop()
            # it runs on the inherited listener: its own worker has forked
            assert wait_until(lambda: _children(started[name]) != [], 30), \
                open(os.path.join(customer, f"{name}-log")).read()
        yield {"master": master.pid, "worker": worker, "port": port, **started}
    finally:
        if master is not None:
            master.kill()
            master.wait()
        kill_uid(UID)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.needs_root
def test_a_real_pool_worker_is_quiet_and_the_customers_own_php_fpm_is_reported(php_pool,
                                                                              tmp_path, core):
    found = scan(tmp_path, core)
    assert php_pool["worker"] not in found
    for name in ("own", "preloaded"):
        pid = php_pool[name]
        assert found[pid]["reasons"][0] == "listening socket", name
        listener = verdicts(found[pid])[("tcp", f"127.0.0.1:{php_pool['port']}", "LISTEN")]
        assert listener == (True, "handed over by uid 0 to a process that is no worker of its "
                                  "root service"), name
        # and the workers it forked on that listener are no workers of the root master
        for child in _children(pid):
            assert child in found, (name, child)


# ---------------------------------------------------------------- without a proof

def judge(processes, customer_code_uids=frozenset()):
    conf = config.load(os.devnull, ["PT_LIMIT=1"], override_path=os.devnull)
    pol = policy.Policy(conf, pignore.IgnoreRules(), lambda uid: USERS.get(uid, str(uid)),
                        frozenset(), findings.NOTHING_REMEMBERED, file_identity=HOST_FILES.get,
                        customer_code_uids=customer_code_uids)
    snapshot = Snapshot(processes=list(processes), socket_table={}, stats={}, core="test")
    return {f.process.pid: f for f in Judgement(pol).findings(snapshot, checks=(SUSPICIOUS,))}


def test_a_direct_child_running_the_masters_file_that_exec_d_is_no_worker():
    listener = sock(state="LISTEN", uid=0, local_port=9001)
    master = proc(10, uid=0, exe="/usr/sbin/php-fpm8.2", sockets=[listener])
    worker = proc(11, uid=1001, exe="/usr/sbin/php-fpm8.2", ppid=10, sockets=[listener],
                  fork_no_exec=True)
    reexec = proc(12, uid=1001, exe="/usr/sbin/php-fpm8.2", ppid=10, sockets=[listener])
    found = judge([master, worker, reexec])
    assert 11 not in found and found[12].reasons == ("listening socket",)


def test_www_data_sockets_are_no_services_in_memory_too():
    listener = sock(state="LISTEN", uid=33, local_port=8080)
    master = proc(10, uid=0, exe="/usr/sbin/apache2", sockets=[])
    worker = proc(11, uid=1001, exe="/usr/sbin/apache2", ppid=10, sockets=[listener],
                  fork_no_exec=True)
    assert judge([master, worker]) == {}                        # 33 as a system account
    found = judge([master, worker], customer_code_uids=frozenset({33}))
    assert found[11].reasons == ("listening socket",)


FORK_AND_EXEC = """
import subprocess
forked = os.fork()
if forked == 0:
    while True:
        signal.pause()
execd = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(3600)"])
info["forked"], info["execd"] = forked, execd.pid
"""


def test_both_cores_read_whether_a_process_exec_d_since_its_fork(core_module):
    started = start_python(FORK_AND_EXEC)
    try:
        forked, execd = started.info["forked"], started.info["execd"]
        processes, _table, _stats = core_module.scan(want_fds=False,
                                                     pids=[started.pid, forked, execd])
        seen = {p.pid: p.fork_no_exec for p in processes}
        assert seen == {started.pid: False, forked: True, execd: False}
    finally:
        for pid in (started.info.get("forked"), started.info.get("execd")):
            if pid:
                os.kill(pid, 9)
        started.stop()


@pytest.fixture(params=["compiled", "pure-python"])
def core_module(request):
    from ptfast.scan import _procscan_py
    if request.param == "pure-python":
        return _procscan_py
    try:
        from ptfast.scan import _procscan
    except ImportError:
        pytest.skip("compiled core not built")
    return _procscan


def test_accepted_connections_are_matched_in_their_own_table():
    v4 = sock(state="LISTEN", local_port=9001, local_ip="0.0.0.0", uid=0)
    dual = sock(state="LISTEN", local_port=9002, local_ip="::", proto="tcp6", uid=0)
    mapped_any = sock(state="LISTEN", local_port=9003, local_ip="0.0.0.0", proto="tcp6", uid=0)

    def connection(port, ip, proto):
        return sock(state="ESTABLISHED", local_port=port, local_ip=ip, proto=proto,
                    remote_port=50000)
    assert accepted_on(connection(9001, "127.0.0.1", "tcp"), [v4]) is v4
    assert accepted_on(connection(9001, "::1", "tcp6"), [v4]) is None
    assert accepted_on(connection(9001, "127.0.0.1", "tcp6"), [v4]) is None    # mapped
    assert accepted_on(connection(9002, "::1", "tcp6"), [dual]) is dual
    # mapped: only on a listener known not to be IPV6_V6ONLY (a v6only [::]:P leaves
    # [::ffff:A]:P free for anyone to bind and connect out from)
    assert accepted_on(connection(9002, "127.0.0.1", "tcp6"), [dual], lambda l: True) is dual
    assert accepted_on(connection(9002, "127.0.0.1", "tcp6"), [dual]) is None
    assert accepted_on(connection(9002, "127.0.0.1", "tcp"), [dual]) is None
    assert accepted_on(connection(9003, "127.0.0.1", "tcp6"), [mapped_any]) is mapped_any
    assert accepted_on(connection(9003, "::1", "tcp6"), [mapped_any]) is None


def test_the_listeners_v6only_is_read_once_a_pass_and_unknown_is_not_dual_stack():
    reads = []

    def v6only_listeners():
        reads.append(1)
        return {(1, 10): False, (1, 11): True}
    conf = config.load(os.devnull, [], override_path=os.devnull)
    judging = policy.Policy(conf, pignore.IgnoreRules(), USERS.get,
                            v6only_listeners=v6only_listeners)
    dual, v6only, unknown = (sock(state="LISTEN", proto="tcp6", local_ip="::", uid=0)
                             for _ in range(3))
    dual.inode, v6only.inode, unknown.inode = 10, 11, 12
    work = PassWork()
    assert known_dual_stack(judging, work, dual)
    assert not known_dual_stack(judging, work, v6only)
    assert not known_dual_stack(judging, work, unknown)
    assert len(reads) == 1                      # the pass's PassWork keeps it
    assert known_dual_stack(judging, PassWork(), dual) and len(reads) == 2     # a new pass


def test_customer_code_accounts_are_the_web_servers_nobody_and_the_settings():
    conf = config.load(os.devnull, ["PT_CUSTOMER_CODE_USERS=daemon, no-such-account"],
                       override_path=os.devnull)
    uids = users.customer_code_uids(conf.settings.accounts)
    assert DAEMON_UID in uids and 0 not in uids
    for name in users.CUSTOMER_CODE_ACCOUNTS:
        try:
            assert users.pwd.getpwnam(name).pw_uid in uids
        except KeyError:
            continue
    bad = config.load(os.devnull, ["PT_CUSTOMER_CODE_USERS=www-data,$(reboot)"],
                      override_path=os.devnull)
    assert bad.settings.PT_CUSTOMER_CODE_USERS == ""
    assert "is not a user name" in str(bad.problems[0])


def test_ptfast_check_names_unknown_accounts_and_root_in_the_setting(tmp_path):
    conf = tmp_path / "ptfast.conf"
    conf.write_text('PT_CUSTOMER_CODE_USERS = "daemon, no-such-account, root"\n'
                    'PT_LIMIT = "60"\n')
    result = run_ptfast(["check", "--config", os.devnull, "--override", str(conf)])
    out = result.stdout.decode()
    assert result.returncode != 0
    assert f"{conf}:1: PT_CUSTOMER_CODE_USERS: no account no-such-account on this host" in out
    assert f"{conf}:1: PT_CUSTOMER_CODE_USERS: root is root" in out
    conf.write_text('PT_CUSTOMER_CODE_USERS = "www-data;rm -rf /"\n')
    result = run_ptfast(["check", "--config", os.devnull, "--override", str(conf)])
    assert "is not a user name" in result.stdout.decode() and result.returncode != 0
