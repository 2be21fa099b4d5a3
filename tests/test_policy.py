"""The suspicious-process decision on snapshots built in memory (the policy does no I/O)."""

import os

import pytest

from ptfast.foundation import config
from ptfast.decide import findings, pignore, policy
from ptfast.decide.judgement import Judgement
from ptfast.decide.checks import SUSPICIOUS
from ptfast.scan.procfs import Snapshot

from ptfast.scan.procfs import FileIdentity

from helpers.snapshots import HOST_FILES, USERS, proc, sock

def evaluate(processes, settings=(), rules_text="", panel_users=frozenset(), reported=(),
             panel=False, tmp_path=None):
    conf = config.load(os.devnull, list(settings), override_path=os.devnull, panel=panel)
    rules = pignore.IgnoreRules()
    pignore.parse_lines(rules_text.splitlines(), "test.pignore", rules)
    memory = findings.Remembered(reported=frozenset(reported))
    pol = policy.Policy(conf, rules, lambda uid: USERS.get(uid, str(uid)), panel_users, memory,
                        file_identity=HOST_FILES.get)
    snapshot = Snapshot(processes=list(processes), socket_table={}, stats={}, core="test")
    found = Judgement(pol).findings(snapshot, checks=(SUSPICIOUS,))
    return {f.process.pid: f for f in found}, pol


def test_listening_and_connected_sockets_are_suspicious():
    found, _ = evaluate([proc(10, sockets=[sock()]),
                         proc(11, sockets=[sock(50000, "ESTABLISHED", 6667)]),
                         proc(12, sockets=[sock(5353, "UNCONN", proto="udp6", local_ip="::")]),
                         proc(13)])
    assert found[10].reasons == ("listening socket",)       # lfd defect 1: never counted
    assert found[11].reasons == ("socket",)
    assert found[12].reasons == ("listening socket",)
    assert 13 not in found


def test_root_is_never_reported_and_age_must_exceed_pt_limit():
    found, _ = evaluate([proc(10, uid=0, sockets=[sock()]),
                         proc(11, age=60.0, sockets=[sock()]),
                         proc(12, age=60.5, sockets=[sock()])])
    assert list(found) == [12]


def test_pt_limit_zero_disables():
    found, pol = evaluate([proc(10, sockets=[sock()])], ["PT_LIMIT=0"])
    assert found == {} and not pol.enabled


def test_tracked_users_on_panel_hosts():
    procs = [proc(10, uid=1001, sockets=[sock()]), proc(11, uid=1002, sockets=[sock()]),
             proc(12, uid=65534, sockets=[sock()])]
    found, _ = evaluate(procs, ["GENERIC=0"], panel_users=frozenset({"alice"}))
    assert sorted(found) == [10, 12]                 # panel account and nobody
    found, _ = evaluate(procs, ["GENERIC=0", "PT_ALL_USERS=1"], panel_users=frozenset())
    assert sorted(found) == [10, 11, 12]
    found, _ = evaluate(procs)                       # generic: every user
    assert sorted(found) == [10, 11, 12]


def test_reported_memory_is_keyed_by_pid_and_start_time():
    old = proc(10, sockets=[sock()], start_time=500)
    found, _ = evaluate([old], reported=[(10, 500)])
    assert found == {}
    reused = proc(10, sockets=[sock()], start_time=900)  # same PID, a new process
    found, _ = evaluate([reused], reported=[(10, 500)])
    assert list(found) == [10]                        # lfd defect 4: silently never reported


def test_ignores_skip_before_any_fd_walk():
    rules = "user:bob\nexe:/usr/sbin/named\npcmd:/opt/app/run --port \\d+\n"
    procs = [proc(10, uid=1002, sockets=[sock()]),
             proc(11, exe="/usr/sbin/named", sockets=[sock()]),
             proc(12, cmdline="/opt/app/run --port 8080", sockets=[sock()]),
             proc(13, cmdline="/opt/app/run --port 8080 x", sockets=[sock()]),
             proc(14, age=5, sockets=[sock()])]
    found, pol = evaluate(procs, rules_text=rules)
    assert list(found) == [13]
    assert [Judgement(pol).want_fds(p) for p in procs] == [False, False, False, True, False]


def test_pt_skip_http():
    master = proc(99, uid=0, exe="/usr/sbin/httpd")
    httpd = proc(100, uid=48, exe="/usr/sbin/httpd", sockets=[sock(80, uid=0)], ppid=99,
                 pgrp=99)
    cgi = proc(101, uid=1001, exe="/home/alice/cgi", ppid=100, pgrp=99,
               sockets=[sock(40000, "ESTABLISHED", 25)])
    php_fpm = proc(102, uid=1001, exe="/usr/sbin/php-fpm",
                   sockets=[sock(443, "ESTABLISHED", 50000), sock(80)])
    found, _ = evaluate([master, httpd, cgi, php_fpm], ["PT_SKIP_HTTP=1"])
    assert 101 not in found                           # child of the web server
    assert 102 not in found                           # only ports 80/443
    assert 100 not in found                           # its only socket is port 80
    found, _ = evaluate([master, httpd, cgi, php_fpm], ["PT_SKIP_HTTP=1",
                                                        "PT_SERVICE_SOCKETS=0"])
    assert 101 not in found and 102 not in found
    found, _ = evaluate([master, httpd, cgi, php_fpm])
    assert {101, 102} <= set(found)


@pytest.mark.parametrize("proto, skipped", [("tcp", True), ("tcp6", True), ("udp", True),
                                            ("udp6", True), ("icmp", False), ("icmp6", False),
                                            ("raw", False), ("packet", False),
                                            ("udplite", False), ("af_vsock", False)])
def test_pt_skip_http_skips_only_web_ports(proto, skipped):
    """lfd's tables were tcp and udp (and their IPv6 twins): port 80/443 there is a web port.
    Whatever else says 80 (an ICMP echo identifier, from a core that gave one as a port) is
    not."""
    holder = proc(110, sockets=[sock(80, "UNCONN", proto=proto)])
    found, _ = evaluate([holder], ["PT_SKIP_HTTP=1"])
    assert (110 not in found) == skipped


def test_pt_skip_http_web_server_is_root_running_a_system_file():
    """A customer's own binary named like a web server gains its children nothing."""
    bot = dict(sockets=[sock(40000, "ESTABLISHED", 6667)])
    fake_by_name = proc(300, uid=1001, exe="/home/alice/.cache/nginx")
    child = proc(301, ppid=300, pgrp=300, **bot)
    dash_copy = proc(302, uid=1001, exe="/home/alice/httpd",
                     exe_file=FileIdentity(1, 77, 1001, 0o100755))
    child2 = proc(303, ppid=302, pgrp=302, **bot)
    # even a root process whose "httpd" is a file a customer can write
    writable = proc(304, uid=0, exe="/srv/httpd", exe_file=FileIdentity(1, 78, 0, 0o100777))
    child3 = proc(305, ppid=304, pgrp=304, **bot)
    found, _ = evaluate([fake_by_name, child, dash_copy, child2, writable, child3],
                        ["PT_SKIP_HTTP=1"])
    assert {301, 303, 305} <= set(found)
    assert 300 not in found or found[300].reasons     # itself judged like anyone


def test_nginx_and_litespeed_children_are_web_children_too():
    for server in ("/usr/sbin/nginx", "/usr/local/lsws/bin/litespeed"):
        leader = proc(200, uid=0, exe=server)
        child = proc(201, ppid=200, pgrp=200, sockets=[sock(40000, "ESTABLISHED", 3306)])
        found, _ = evaluate([leader, child], ["PT_SKIP_HTTP=1"])
        assert found == {}, server


def test_deleted_executables():
    gone = proc(10, deleted=True)
    found, _ = evaluate([gone])
    assert found == {}                                # PT_DELETED=0: not reported
    found, _ = evaluate([gone], ["PT_DELETED=1"])
    assert found[10].reasons == ("deleted executable",)
    # even when ignored, the deleted report stands; sockets then do not add a reason
    ignored = proc(11, exe="/usr/sbin/exim", deleted=True, sockets=[sock(25)],
                   cmdline="/usr/sbin/exim -bd")
    found, _ = evaluate([ignored], ["PT_DELETED=1"], rules_text="cmd:/usr/sbin/exim -bd")
    assert found[11].reasons == ("deleted executable",)
    # without PT_DELETED an ignored one is simply ignored
    found, _ = evaluate([ignored], rules_text="cmd:/usr/sbin/exim -bd")
    assert found == {}
    # a deleted file is not the host's file at that path: exe rules do not cover it
    found, _ = evaluate([ignored], rules_text="exe:/usr/sbin/exim")
    assert found[11].reasons == ("listening socket",)


def test_pt_deleted_0_removes_only_the_deleted_reason():
    """lfd skipped deleted executables entirely without PT_DELETED: a memfd or deleted
    backdoor hid its sockets that way."""
    gone = proc(10, deleted=True, exe="/memfd:x", sockets=[sock()])
    found, _ = evaluate([gone])
    assert found[10].reasons == ("listening socket",)
    found, _ = evaluate([gone], ["PT_DELETED=1"])
    assert found[10].reasons == ("deleted executable", "listening socket")


def test_one_report_per_deleted_family():
    parent = proc(10, deleted=True, exe="/tmp/m")
    child = proc(11, deleted=True, exe="/tmp/m", ppid=10)
    other = proc(12, deleted=True, exe="/tmp/n", ppid=1)
    found, _ = evaluate([parent, child, other], ["PT_DELETED=1"])
    assert sorted(found) == [10, 12]
    # the parent was reported in an earlier pass: the child still stays quiet
    found, _ = evaluate([parent, child], ["PT_DELETED=1"], reported=[(10, 100)])
    assert found == {}
    # ... but only about its deleted executable: a listener it opens is its own report
    listening = proc(11, deleted=True, exe="/tmp/m", ppid=10, sockets=[sock()])
    found, _ = evaluate([parent, listening], ["PT_DELETED=1"], reported=[(10, 100)])
    assert found[11].reasons == ("listening socket",)
    found, _ = evaluate([parent, listening], ["PT_DELETED=1"])
    assert found[10].reasons == ("deleted executable",)
    assert found[11].reasons == ("listening socket",)


def test_deleted_in_the_name_does_not_blind_the_check():
    """lfd defect 3: a path merely containing '(deleted)' hid the process with PT_DELETED=0."""
    fake = proc(10, exe="/home/a/x (deleted)/bot", sockets=[sock()])
    found, _ = evaluate([fake])
    assert found[10].reasons == ("listening socket",)


@pytest.mark.parametrize("ip", ["192.168.0.10", "10.0.0.1", "2001:db8::1", "fe80::1"])
def test_every_address_counts(ip):
    """lfd defect 2: hex text tested as a number dropped many addresses."""
    found, _ = evaluate([proc(10, sockets=[sock(local_ip=ip, state="ESTABLISHED",
                                                remote_port=443)])])
    assert 10 in found


def test_a_listener_that_outlives_its_young_holders_is_reported():
    """Handed from one process younger than PT_LIMIT to the next, a listener the daemon has
    seen for longer than PT_LIMIT is reported with its holder of the moment, once."""
    listener = sock(4444)
    holder = proc(70, age=0.5, sockets=[listener])
    conf = config.load(os.devnull, [], override_path=os.devnull)
    rules = pignore.IgnoreRules()

    def judge(seen):
        memory = findings.Remembered(listeners={(1, listener.inode): seen})
        pol = policy.Policy(conf, rules, lambda uid: USERS.get(uid, str(uid)), frozenset(),
                            memory, file_identity=HOST_FILES.get, now=1000.0)
        judgement = Judgement(pol)
        assert judgement.want_fds(holder) == (holder.uid in pol.hopping_uids)
        snapshot = Snapshot(processes=[holder], socket_table={}, stats={}, core="test")
        return {f.process.pid: f for f in judgement.findings(snapshot, checks=(SUSPICIOUS,))}

    found = judge((1001, 1000.0 - 61, False))           # seen 61 s ago, PT_LIMIT 60
    assert found[70].reasons == ("listening socket",)
    plan = found[70].response.as_record()
    assert {"kind": "listener", "key": [1, listener.inode]} in plan["remember"]
    assert judge((1001, 1000.0 - 59, False)) == {}      # not yet older than PT_LIMIT
    assert judge((1001, 1000.0 - 61, True)) == {}       # reported already
