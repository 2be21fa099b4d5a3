"""PT_FORKBOMB's plan on in-memory snapshots (issue 20, item 2): in a shared session it kills the
users who forked the bomb, never another user's processes that merely share the session, never
root, never an ignored process. The real processes: tests/test_forkbomb_shared_session.py."""

import os
import signal
import subprocess

import pytest

from ptfast.decide import checks, findings, pignore, policy
from ptfast.decide.judgement import Judgement
from ptfast.foundation import config
from ptfast.act import kills
from ptfast.scan.procfs import Snapshot
from helpers.procs import alive, wait_until
from helpers.service import start_time_of
from helpers.snapshots import HOST_FILES, USERS, proc
from helpers.uids import uid_for

ALICE, BOB, CAROL = 1001, 1002, 1003        # tracked users of helpers.snapshots
MASTER = 10                                 # a root master leading its session (php-fpm)


def plan(processes, settings=("PT_FORKBOMB=20",), rules_text=""):
    """The fork bomb findings of ``processes``, each with its planned response."""
    conf = config.load(os.devnull, list(settings), override_path=os.devnull)
    rules = pignore.IgnoreRules()
    pignore.parse_lines(rules_text.splitlines(), "test.pignore", rules)
    decider = policy.Policy(conf, rules, lambda uid: USERS.get(uid, str(uid)), frozenset(),
                            findings.Remembered(), file_identity=HOST_FILES.get)
    snapshot = Snapshot(processes=list(processes), socket_table={}, stats={}, core="test",
                        taken_at=1000.0)
    return Judgement(decider).findings(checks=(checks.FORKBOMB,), snapshot=snapshot)


def in_session(procs, session=MASTER):
    for p in procs:
        p.session = session
    return procs


def master():
    return in_session([proc(MASTER, uid=0, exe="/usr/sbin/php-fpm8.2", age=86400, ppid=1)])


def pool(uid, first_pid, count, age=86400.0):
    """A pool's workers: spawned by the root master."""
    return in_session([proc(first_pid + i, uid=uid, exe="/usr/sbin/php-fpm8.2", age=age,
                            ppid=MASTER) for i in range(count)])


def bomb(uid, first_pid, count, parent, age=2.0):
    """A bomb forked by ``parent`` (a process of ``uid``), half of it orphaned already (init)."""
    return in_session([proc(first_pid + i, uid=uid, exe="/usr/bin/python3", age=age,
                            ppid=parent if i % 2 else 1) for i in range(count)])


def killed(finding):
    return {key.pid for key in finding.response.kill}


def pids(procs):
    return {p.pid for p in procs}


def test_a_bomb_in_a_shared_session_kills_its_forker_not_the_bigger_pool():
    bob_pool = pool(BOB, 200, 40)               # more than alice's bomb and workers together
    alice_pool = pool(ALICE, 300, 2)
    alice_bomb = bomb(ALICE, 400, 25, parent=300)
    [finding] = plan(master() + bob_pool + alice_pool + alice_bomb)
    assert finding.level == f"session {MASTER} holds 68 processes >= PT_FORKBOMB 20"
    assert killed(finding) == pids(alice_pool + alice_bomb)     # the worker that forked it too
    assert finding.response.kill_uids == (ALICE,)
    assert finding.response.stop_first and finding.response.follow_forks
    record = finding.response.as_record()
    assert record["kill_uid"] == ALICE and "kill_uids" not in record


def test_pool_workers_the_master_just_spawned_are_not_a_bomb():
    # bob's pool was (re)started a moment ago: young, but the root master forked them
    bob_pool = pool(BOB, 200, 40, age=1.0)
    alice_bomb = bomb(ALICE, 400, 25, parent=300) + pool(ALICE, 300, 1)
    [finding] = plan(master() + bob_pool + alice_bomb)
    assert killed(finding) == pids(alice_bomb)


def test_a_session_of_pools_alone_is_alerted_never_killed():
    [finding] = plan(master() + pool(BOB, 200, 30) + pool(ALICE, 300, 30, age=1.0))
    assert finding.response.alert == "forkbombalert.txt"
    assert finding.response.kill == () and finding.response.kill_uids == ()


def test_a_neighbours_child_of_the_same_minute_does_not_make_it_a_forker():
    bob_pool = pool(BOB, 200, 10)
    bob_convert = in_session([proc(250, uid=BOB, exe="/usr/bin/convert", age=3.0, ppid=200)])
    alice_bomb = bomb(ALICE, 400, 25, parent=300) + pool(ALICE, 300, 1)
    [finding] = plan(master() + bob_pool + bob_convert + alice_bomb)
    assert killed(finding) == pids(alice_bomb)


def test_a_neighbours_old_jobs_are_no_part_of_a_growing_bomb():
    # bob's site started long-running jobs hours ago (orphaned, in the session): more of them
    # than alice's young bomb
    bob_jobs = in_session([proc(200 + i, uid=BOB, exe="/usr/bin/php", age=7200, ppid=1)
                           for i in range(30)])
    alice_bomb = bomb(ALICE, 400, 12, parent=300) + pool(ALICE, 300, 1)
    [finding] = plan(master() + bob_jobs + alice_bomb)
    assert killed(finding) == pids(alice_bomb)


def test_a_bomb_that_stopped_growing_is_still_its_forkers():
    # seen only after PT_INTERVAL: nothing is young any more; what root did not spawn is the bomb
    alice_bomb = bomb(ALICE, 400, 25, parent=300, age=600) + pool(ALICE, 300, 1)
    bob_pool = pool(BOB, 200, 40)
    [finding] = plan(master() + bob_pool + alice_bomb)
    assert killed(finding) == pids(alice_bomb)


def test_young_means_since_the_previous_pass():
    # PT_INTERVAL 600: a bomb started 600 s ago is young, bob's jobs of two hours ago are not;
    # with the default 60 s, neither would be, and bob would count as a forker too
    alice_bomb = bomb(ALICE, 400, 12, parent=300, age=600) + pool(ALICE, 300, 1)
    bob_jobs = in_session([proc(200 + i, uid=BOB, exe="/usr/bin/php", age=7200, ppid=1)
                           for i in range(30)])
    [finding] = plan(master() + bob_jobs + alice_bomb,
                     settings=("PT_FORKBOMB=20", "PT_INTERVAL=600"))
    assert killed(finding) == pids(alice_bomb)


def test_a_neighbour_forking_one_child_never_tips_the_session_onto_itself():
    # bob's pool nearly fills PT_FORKBOMB; alice keeps a few old processes there, and bob's
    # site, which alice can call, forks one child: the session is over, but nobody bombed
    bob_pool = pool(BOB, 200, 40)
    bob_convert = in_session([proc(250, uid=BOB, exe="/usr/bin/convert", age=1.0, ppid=200)])
    alice_old = in_session([proc(400 + i, uid=ALICE, exe="/usr/bin/php", age=7200, ppid=1)
                            for i in range(3)])
    [finding] = plan(master() + bob_pool + bob_convert + alice_old,
                     settings=("PT_FORKBOMB=45",))
    assert finding.response.kill == ()


def test_an_old_bomb_is_not_hidden_by_a_neighbours_young_child():
    alice_bomb = bomb(ALICE, 400, 25, parent=300, age=600) + pool(ALICE, 300, 1)
    bob_convert = in_session([proc(250, uid=BOB, exe="/usr/bin/convert", age=1.0, ppid=200)])
    [finding] = plan(master() + pool(BOB, 200, 40) + bob_convert + alice_bomb)
    assert killed(finding) == pids(alice_bomb)


def test_users_bombing_together_are_all_forkers():
    alice_bomb = bomb(ALICE, 400, 20, parent=300) + pool(ALICE, 300, 1)
    carol_bomb = bomb(CAROL, 500, 10, parent=310) + pool(CAROL, 310, 1)
    bob_pool = pool(BOB, 200, 40)
    [finding] = plan(master() + bob_pool + alice_bomb + carol_bomb)
    assert killed(finding) == pids(alice_bomb + carol_bomb)
    assert finding.response.kill_uids == (ALICE, CAROL)
    record = finding.response.as_record()
    assert record["kill_uids"] == [ALICE, CAROL] and "kill_uid" not in record


def test_a_bomb_of_its_own_session_is_killed_whole():
    # the classic: a customer's shell forks; every process is its own, none a root master's
    shell = proc(600, uid=ALICE, exe="/bin/bash", age=300, ppid=599)
    alice_bomb = in_session([shell] + bomb(ALICE, 601, 30, parent=600), session=600)
    [finding] = plan(alice_bomb)
    assert killed(finding) == pids(alice_bomb)


def test_root_and_ignored_processes_are_never_killed():
    root_bomb = bomb(0, 700, 10, parent=MASTER)
    alice_bomb = bomb(ALICE, 400, 25, parent=300) + pool(ALICE, 300, 1)
    ignored = in_session([proc(800 + i, uid=ALICE, exe="/usr/bin/ok", age=1.0, ppid=300)
                          for i in range(5)])
    [finding] = plan(master() + root_bomb + alice_bomb + ignored, rules_text="exe:/usr/bin/ok")
    assert killed(finding) == pids(alice_bomb)
    # a bomb of root's alone is alerted, never killed
    [finding] = plan(master() + bomb(0, 700, 25, parent=MASTER))
    assert finding.response.kill == ()


@pytest.mark.needs_root
def test_a_kill_for_several_forkers_hits_each_of_their_processes_and_no_other():
    forker, other, bystander = uid_for(670), uid_for(671), uid_for(672)
    sleeper = subprocess.Popen(["sleep", "1000"], user=forker, group=forker, extra_groups=[],
                               stdin=subprocess.DEVNULL)
    try:
        start = start_time_of(sleeper.pid)
        assert kills.signal_process(sleeper.pid, start, {other, bystander}) == (
            f"not killed: it runs as uid {forker}, not {min(other, bystander)} or "
            f"{max(other, bystander)}")
        assert alive(sleeper.pid)
        assert kills.signal_process(sleeper.pid, start, {0, forker}) is None
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert kills.signal_process(os.getpid(), start_time_of(os.getpid()), {0}) is not None
    finally:
        sleeper.kill()
        sleeper.wait()
        assert wait_until(lambda: not alive(sleeper.pid))


def test_sessions_a_user_started_count_together_but_a_few_logins_do_not():
    """A bomb of a session per process (setsid): 20 young sessions of one user are a bomb of
    that user, with the process that forked them; 19 are not; a root master's session and a
    user's old sessions are never counted."""
    forker = proc(500, uid=ALICE, age=5.0, ppid=1)
    forker.session = 400                                   # the user's login session
    sessions = [proc(501 + i, uid=ALICE, age=2.0, ppid=500) for i in range(20)]
    for p in sessions:
        p.session = p.pid
    old = [proc(600 + i, uid=BOB, age=86400.0, ppid=1) for i in range(25)]
    for p in old:
        p.session = p.pid
    [found] = plan([forker, *sessions, *old, *master(), *pool(CAROL, 700, 15, age=2.0)],
                   ("PT_FORKBOMB=20",))
    assert "started 20 sessions of its own" in found.level
    assert killed(found) == {500, *pids(sessions)}
    assert found.response.kill_uids == (ALICE,)
    assert plan([forker, *sessions[:19]], ("PT_FORKBOMB=20",)) == []
