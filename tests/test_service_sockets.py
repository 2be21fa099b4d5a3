"""Service sockets and ignore rules that cannot be borrowed, decided on in-memory snapshots.

The kernel facts the rule rests on: the uid column of /proc/net/* is the uid that created a
socket; a listener a root master created shows uid 0 in every worker that inherited it; a
connection a worker accepts on it shows the worker's uid and the listener's local address; no
customer can create a socket of another uid, nor bind a port another uid's listener holds.
"""

import os

from ptfast.foundation import config
from ptfast.decide import findings, pignore, policy
from ptfast.decide.judgement import Judgement
from ptfast.decide.checks import SUSPICIOUS
from ptfast.scan.procfs import FileIdentity
from ptfast.scan.procfs import Snapshot

from helpers.snapshots import HOST_FILES, USERS, host_file, proc, sock

DOVENULL = 110          # a system account (below UID_MIN)
USERS = {**USERS, DOVENULL: "dovenull"}
PHP_FPM = "/usr/sbin/php-fpm8.2"
POOL = dict(local_port=9001, local_ip="127.0.0.1")


def judge(processes, settings=(), rules_text=""):
    conf = config.load(os.devnull, ["PT_LIMIT=1", *settings], override_path=os.devnull)
    rules = pignore.IgnoreRules()
    pignore.parse_lines(rules_text.splitlines(), "test.pignore", rules)
    pol = policy.Policy(conf, rules, lambda uid: USERS.get(uid, str(uid)), frozenset(),
                        findings.NOTHING_REMEMBERED, file_identity=HOST_FILES.get)
    snapshot = Snapshot(processes=list(processes), socket_table={}, stats={}, core="test")
    return {f.process.pid: f for f in Judgement(pol).findings(snapshot, checks=(SUSPICIOUS,))}


def pool(worker_sockets=(), extra=()):
    """A root php-fpm master (pid 10) and one worker of alice's pool (pid 11) holding the
    pool's listener, which the master created."""
    listener = sock(state="LISTEN", uid=0, **POOL)
    master = proc(10, uid=0, exe=PHP_FPM, sockets=[listener])
    worker = proc(11, uid=1001, exe=PHP_FPM, ppid=10, sockets=[listener, *worker_sockets],
                  fork_no_exec=True)
    return [master, worker, *extra], listener


def test_a_pre_fork_worker_holding_its_masters_listener_is_not_reported():
    accepted = sock(state="ESTABLISHED", remote_port=50000, **POOL)     # alice's uid
    processes, _listener = pool([accepted])
    assert judge(processes) == {}
    # the rule is a setting: off, every socket counts as in lfd
    found = judge(processes, ["PT_SERVICE_SOCKETS=0"])
    assert found[11].reasons == ("listening socket", "socket")


def test_json_says_per_socket_whether_it_counted_and_why():
    outgoing = sock(local_port=40001, state="ESTABLISHED", remote_port=3306)
    found = judge(pool([outgoing])[0])
    verdicts = {s.local_port: (counts, why) for s, counts, why in found[11].judged_sockets}
    assert verdicts[9001] == (False, "service socket: listener of root pid 10 (php-fpm8.2)")
    assert verdicts[40001] == (True, "created by the process's own user")
    assert found[11].reasons == ("socket",)         # its own connection, not the pool's


def test_a_backdoor_started_from_a_worker_is_no_worker():
    """perl started by a PHP webshell inherits the pool's listener: it counts, and so does
    its own connection."""
    processes, listener = pool()
    backdoor = proc(12, uid=1001, exe="/usr/bin/perl", ppid=11,
                    sockets=[listener, sock(local_port=40002, state="ESTABLISHED",
                                            remote_port=4444)])
    found = judge([*processes, backdoor])
    assert 11 not in found
    assert found[12].reasons == ("listening socket", "socket")
    verdicts = {s.local_port: counts for s, counts, _why in found[12].judged_sockets}
    assert verdicts == {9001: True, 40002: True}


def test_accepting_on_an_inherited_listener_while_running_another_program_counts():
    processes, listener = pool()
    stolen = sock(state="ESTABLISHED", remote_port=50001, **POOL)
    thief = proc(12, uid=1001, exe="/usr/bin/python3.11", ppid=11, sockets=[listener, stolen])
    found = judge([*processes, thief])
    assert found[12].reasons == ("listening socket", "socket")


def test_a_customer_copy_of_the_service_binary_is_no_worker():
    """Same name, other file: a customer's php-fpm in ~ holding the inherited listener."""
    processes, listener = pool()
    copy = proc(12, uid=1001, exe="/home/alice/php-fpm8.2", ppid=11, sockets=[listener])
    assert judge([*processes, copy])[12].reasons == ("listening socket",)


def test_sockets_of_a_customer_or_handed_by_another_customer_are_never_service_sockets():
    processes, _listener = pool()
    from_bob = sock(local_port=7777, state="LISTEN", uid=1002)    # passed over a unix socket
    worker = proc(13, uid=1001, exe=PHP_FPM, ppid=10, sockets=[from_bob],
                  fork_no_exec=True)
    assert judge([*processes, worker])[13].reasons == ("listening socket",)


def test_dovecot_login_and_imap_processes_are_workers_of_the_dovecot_master():
    """Several programs make one service: imap-login and imap live in the master's package
    directory, /usr/lib/dovecot."""
    imap_listener = sock(local_port=143, state="LISTEN", uid=0, local_ip="0.0.0.0")
    master = proc(20, uid=0, exe="/usr/sbin/dovecot", sockets=[imap_listener])
    client = sock(local_port=143, local_ip="127.0.0.1", state="ESTABLISHED",
                  remote_port=50002, uid=DOVENULL)
    login = proc(21, uid=DOVENULL, exe="/usr/lib/dovecot/imap-login", ppid=20,
                 sockets=[imap_listener, client])
    imap = proc(22, uid=1001, exe="/usr/lib/dovecot/imap", ppid=20, sockets=[client])
    assert judge([master, login, imap]) == {}
    # a customer file dropped in a directory they can write is not the package's
    host_file("/usr/lib/dovecot/evil", uid=1001)
    evil = proc(23, uid=1001, exe="/usr/lib/dovecot/evil", ppid=20, sockets=[client],
                exe_file=HOST_FILES["/usr/lib/dovecot/evil"])
    assert judge([master, evil])[23].reasons == ("socket",)


def test_an_ssh_session_holds_the_connection_its_root_sshd_accepted():
    listener = sock(local_port=22, state="LISTEN", uid=0)
    connection = sock(local_port=22, local_ip="10.0.0.5", state="ESTABLISHED",
                      remote_port=51000, uid=0)
    sshd = proc(30, uid=0, exe="/usr/sbin/sshd", sockets=[listener])
    priv = proc(31, uid=0, exe="/usr/sbin/sshd", ppid=30, sockets=[connection])   # re-exec'd
    session = proc(32, uid=1001, exe="/usr/sbin/sshd", ppid=31, sockets=[connection],
                   cmdline="sshd: alice@pts/0", fork_no_exec=True)
    assert judge([sshd, priv, session]) == {}
    # the session's own forwarding listener is alice's: reported, as an admin wants
    forwarded = proc(33, uid=1001, exe="/usr/sbin/sshd", ppid=31,
                     sockets=[connection, sock(local_port=8080, state="LISTEN")],
                     fork_no_exec=True)
    assert judge([sshd, priv, forwarded])[33].reasons == ("listening socket",)


def test_an_orphan_holding_a_root_listener_has_no_master():
    """Reparented to init, which adopts every orphan: being its child proves nothing."""
    listener = sock(state="LISTEN", uid=0, **POOL)
    init = proc(1, uid=0, exe="/usr/lib/systemd/systemd")
    orphan = proc(40, uid=1001, exe=PHP_FPM, ppid=1, sockets=[listener])
    assert judge([init, orphan])[40].reasons == ("listening socket",)


def test_exe_rules_match_only_the_host_file_at_that_path():
    """A customer who mounts a tmpfs over /usr/sbin in a namespace of their own runs their
    binary as /usr/sbin/named: an exe: or pexe: rule for named must not hide it."""
    bot = [sock(local_port=40003, state="ESTABLISHED", remote_port=6667)]
    real = proc(50, uid=1001, exe="/usr/sbin/named", sockets=bot)
    fake = proc(51, uid=1001, exe="/usr/sbin/named", sockets=bot,
                exe_file=FileIdentity(9, 4242, 1001, 0o100755))
    for rule in ("exe:/usr/sbin/named", "pexe:/usr/sbin/nam.*"):
        found = judge([real, fake], rules_text=rule)
        assert 50 not in found and found[51].reasons == ("socket",), rule


def test_the_masters_own_program_exec_d_again_is_no_package_program():
    """cPanel's php-fpm lives in a directory of its own, which counts as its package's: a
    worker that exec'd that very program again (LD_PRELOAD) is still no worker."""
    ea_php = "/opt/cpanel/ea-php82/root/usr/sbin/php-fpm"
    host_file("/opt/cpanel/ea-php82/root/usr/sbin", mode=0o40755)
    host_file(ea_php)
    listener = sock(state="LISTEN", uid=0, **POOL)
    master = proc(10, uid=0, exe=ea_php, sockets=[listener], exe_file=HOST_FILES[ea_php])
    reexec = proc(11, uid=1001, exe=ea_php, ppid=10, sockets=[listener],
                  exe_file=HOST_FILES[ea_php])
    assert judge([master, reexec])[11].reasons == ("listening socket",)


def test_an_orphan_running_a_program_of_inits_package_is_no_worker():
    """Any process can become init's child (orphaned) and exec a system file beside systemd."""
    host_file("/usr/lib/systemd", mode=0o40755)
    host_file("/usr/lib/systemd/systemd-sleep")
    listener = sock(state="LISTEN", uid=0, **POOL)
    init = proc(1, uid=0, exe="/usr/lib/systemd/systemd")
    orphan = proc(40, uid=1001, exe="/usr/lib/systemd/systemd-sleep", ppid=1, sockets=[listener])
    assert judge([init, orphan])[40].reasons == ("listening socket",)
