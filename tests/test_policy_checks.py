"""PT_USERPROC, resources, fork bombs, hung sshd and load, decided on in-memory snapshots."""

import os

from ptfast.decide import checks, findings, pignore, policy
from ptfast.decide.checks import base
from ptfast.decide.judgement import Judgement, load_finding as judge_load
from ptfast.foundation import config
from ptfast.scan.procfs import Snapshot
from helpers.snapshots import HOST_FILES, USERS, proc

MB = 1 << 20


def make_judgement(settings=(), rules_text="", reported_resources=(), quiet_users=None,
                panel_users=frozenset(), panel=False):
    conf = config.load(os.devnull, list(settings), override_path=os.devnull, panel=panel)
    rules = pignore.IgnoreRules()
    pignore.parse_lines(rules_text.splitlines(), "test.pignore", rules)
    memory = findings.Remembered(resources=frozenset(reported_resources),
                                 quiet_users=quiet_users or {})
    return Judgement(policy.Policy(conf, rules, lambda uid: USERS.get(uid, str(uid)), panel_users,
                                   memory, file_identity=HOST_FILES.get))


def snapshot(processes, taken_at=1000.0):
    return Snapshot(processes=list(processes), socket_table={}, stats={}, core="test",
                    taken_at=taken_at)


USER_CHECKS = (checks.USER_PROCESSES, checks.RESOURCE)


def by_check(found, check):
    return [f for f in found if f.check == check]


def test_user_process_count():
    alice = [proc(100 + i, uid=1001, age=5) for i in range(11)]
    found = make_judgement().findings(checks=USER_CHECKS, snapshot=snapshot(alice))
    [finding] = by_check(found, findings.CHECK_USER_PROCESSES)
    assert finding.user == "alice" and len(finding.processes) == 11
    assert finding.level == "11 > PT_USERPROC 10"
    assert by_check(make_judgement().findings(checks=USER_CHECKS, snapshot=snapshot(alice[:10])),
                    findings.CHECK_USER_PROCESSES) == []
    assert make_judgement(["PT_USERPROC=0"]).findings(checks=USER_CHECKS, snapshot=snapshot(alice)) == []


def test_user_process_count_leaves_out_what_lfd_leaves_out():
    procs = ([proc(100 + i, uid=65534, age=5) for i in range(12)]              # nobody
             + [proc(200 + i, uid=0, age=5) for i in range(12)]                # root
             + [proc(300 + i, uid=1002, age=5, deleted=True) for i in range(12)]
             + [proc(400 + i, uid=1001, age=5, exe="/usr/bin/ok") for i in range(12)])
    found = make_judgement(rules_text="exe:/usr/bin/ok").findings(checks=USER_CHECKS, snapshot=snapshot(procs))
    assert found == []


def test_user_is_quiet_until_its_quiet_period_ends():
    alice = [proc(100 + i, uid=1001, age=5) for i in range(11)]
    quiet = {"alice": 2000.0}
    assert make_judgement(quiet_users=quiet).findings(checks=USER_CHECKS, snapshot=snapshot(alice, taken_at=1999)) == []
    assert len(make_judgement(quiet_users=quiet).findings(checks=USER_CHECKS, snapshot=snapshot(alice, taken_at=2000))) == 1


def test_resource_limits_each_once_per_process():
    big = proc(10, uid=1001, age=5)
    big.vm_size_bytes, big.vm_rss_bytes = 600 * MB, 300 * MB
    old = proc(11, uid=1001, age=1801)
    found = make_judgement().findings(checks=USER_CHECKS, snapshot=snapshot([big, old]))
    levels = {(f.process.pid, f.reasons[0]): f.level for f in found}
    assert levels == {(10, "virtual memory"): "600 MB > PT_USERMEM 512 MB",
                      (10, "resident memory"): "300 MB > PT_USERRSS 256 MB",
                      (11, "run time"): "1801 secs > PT_USERTIME 1800 secs"}
    reported = {(10, 100, "virtual memory"), (11, 110, "run time")}
    found = make_judgement(reported_resources=reported).findings(checks=USER_CHECKS, snapshot=snapshot([big, old]))
    assert [(f.process.pid, f.reasons[0]) for f in found] == [(10, "resident memory")]
    assert make_judgement(["PT_USERMEM=0", "PT_USERRSS=0", "PT_USERTIME=0"]).findings(checks=USER_CHECKS, snapshot=
        snapshot([big, old])) == []


def test_fork_bomb_sessions_count_root_but_never_sessions_0_and_1():
    bomb = [proc(500 + i, uid=1001 if i % 2 else 0, age=1) for i in range(20)]
    for p in bomb:
        p.session = 500
    kernel = [proc(600 + i, uid=0, age=1) for i in range(30)]
    for p in kernel:
        p.session = 1
    found = make_judgement(["PT_FORKBOMB=20"]).findings(checks=(checks.FORKBOMB,), snapshot=snapshot(bomb + kernel))
    [finding] = found
    assert finding.process.pid == 500 and len(finding.processes) == 20
    assert finding.level == "session 500 holds 20 processes >= PT_FORKBOMB 20"
    assert make_judgement(["PT_FORKBOMB=21"]).findings(checks=(checks.FORKBOMB,), snapshot=snapshot(bomb)) == []
    assert make_judgement().findings(checks=(checks.FORKBOMB,), snapshot=snapshot(bomb)) == []          # 0: off


def test_only_unauthenticated_sshd_counts_as_hung():
    names = ["sshd: unknown [net]", "sshd: unknown [priv]", "sshd: alice [priv]",
             "sshd: alice@pts/0", "/usr/sbin/sshd -D", "x sshd: unknown [priv]",
             "sshd: unknown [priv] x"]
    procs = [proc(700 + i, uid=0, age=61, cmdline=name) for i, name in enumerate(names)]
    procs.append(proc(799, uid=0, age=59, cmdline="sshd: unknown [net]"))
    found = make_judgement(["PT_SSHDHUNG=1"]).findings(checks=(checks.SSHD_HUNG,), snapshot=snapshot(procs))
    assert sorted(f.process.cmdline for f in found) == ["sshd: unknown [net]",
                                                         "sshd: unknown [priv]"]
    assert make_judgement().findings(checks=(checks.SSHD_HUNG,), snapshot=snapshot(procs)) == []


def test_load_average_check():
    conf = config.load(os.devnull, ["PT_LOAD_LEVEL=2.5"], override_path=os.devnull)
    assert load_finding(conf, (9.0, 2.0, 1.0), now=10) is None        # 5-minute default
    finding = load_finding(conf, (1.0, 2.5, 1.0), now=10)
    assert finding.check == "load" and finding.level == "2.50 >= PT_LOAD_LEVEL 2.5"
    assert finding.reasons == ("5 minute load average",)
    assert load_finding(conf, (1.0, 2.5, 1.0), now=10, quiet_until=11) is None
    one = config.load(os.devnull, ["PT_LOAD_LEVEL=2.5", "PT_LOAD_AVG=1"],
                      override_path=os.devnull)
    assert load_finding(one, (9.0, 2.0, 1.0), now=10).reasons == ("1 minute load average",)
    odd = config.load(os.devnull, ["PT_LOAD_LEVEL=2.5", "PT_LOAD_AVG=7"],
                      override_path=os.devnull)
    assert load_finding(odd, (9.0, 2.0, 3.0), now=10) is None        # 7 means 5
    off = config.load(os.devnull, ["PT_LOAD_LEVEL=0", "PT_LOAD=0"], override_path=os.devnull)
    assert load_finding(off, (9.0, 9.0, 9.0), now=10) is None


def load_finding(conf, loadavg, now, quiet_until=0.0):
    memory = findings.Remembered(load_quiet_until=quiet_until)
    return judge_load(policy.Policy(conf, pignore.IgnoreRules(), USERS.get, memory=memory),
                      loadavg, "1/100", now)


def test_each_check_declares_its_kind_and_only_alerting_ones_alert():
    # respond.py looks a finding's check up in ALERTING when its response plans an alert: a
    # check that plans one must be Alerting, and one that never does has no alert methods
    assert all(isinstance(check, base.SnapshotCheck) for check in checks.SNAPSHOT_CHECKS)
    assert isinstance(checks.LOAD, base.TimedCheck)
    # found by `ptfast run`'s hopping walks, not in a snapshot; its alert attaches nothing
    assert isinstance(checks.UNHELD_LISTENER, base.UnheldCheck)
    assert not isinstance(checks.UNHELD_LISTENER, base.SnapshotCheck)
    assert checks.UNHELD_LISTENER not in checks.SNAPSHOT_CHECKS
    assert set(checks.ALERTING) == set(checks.BY_NAME) - {findings.CHECK_SSHD_HUNG}
    assert not hasattr(checks.SSHD_HUNG, "alert_values")
    assert not hasattr(checks.SSHD_HUNG, "template")
    hung = proc(50, uid=1001, age=61, cmdline="sshd: unknown [net]")
    [found] = make_judgement(["PT_SSHDHUNG=1"]).findings(checks=(checks.SSHD_HUNG,),
                                                         snapshot=snapshot([hung]))
    assert found.response.alert is None
