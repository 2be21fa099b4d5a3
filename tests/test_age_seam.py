"""The test-only age seam (PTFAST_TEST_AGE_OFFSET, ptfast.decide.policy) that lets the suite judge a
process against PT_LIMIT=1 without sleeping past it: it works through the environment of a
real `ptfast scan`, it can only make processes older, and it moves nothing but PT_LIMIT's
comparison. One test here really waits (``ageing``): PT_LIMIT on real ages, end to end."""

import json
import os
import time

import pytest

from ptfast.foundation import config
from ptfast.decide import pignore, policy

from helpers.procs import process_age, start_python
from helpers.scan import AGED_BY, CORES, run_scan
from helpers.service import only_users_rule
from helpers.snapshots import USERS, proc
from helpers.uids import uid_for

YOUNG_UID, OLD_UID = uid_for(950), uid_for(951)
LISTEN = 'info["port"] = listen(socket.AF_INET, "127.0.0.1").getsockname()[1]'


def judge(aged_by: float) -> policy.Policy:
    conf = config.load(os.devnull, ["GENERIC=1", "PT_LIMIT=1"], override_path=os.devnull)
    return policy.Policy(conf, pignore.IgnoreRules(), lambda uid: USERS.get(uid, str(uid)),
                         aged_by=aged_by)


@pytest.mark.parametrize("text", ["-5", "-0.5", "nan", "inf", "-inf", "3600.5", "1e9", "",
                                  "two", "0x10"])
def test_anything_but_seconds_from_0_to_3600_is_refused(text, capsys):
    assert policy.age_offset_for_tests.__wrapped__(text) == 0.0
    err = capsys.readouterr().err
    assert "PTFAST_TEST_AGE_OFFSET=" in err and "refused" in err


@pytest.mark.parametrize("text, seconds", [("0", 0.0), ("2", 2.0), ("0.25", 0.25),
                                           ("3600", 3600.0)])
def test_seconds_in_range_are_in_force_and_said(text, seconds, capsys):
    assert policy.age_offset_for_tests.__wrapped__(text) == seconds
    assert "in force (test-only)" in capsys.readouterr().err


def test_a_negative_offset_never_makes_a_process_younger():
    old = proc(pid=10, age=5.0)
    assert not judge(-100.0).within_limit(old)
    assert judge(-100.0).aged_by == 0.0


def test_the_offset_moves_pt_limit_alone():
    young = proc(pid=11, age=0.1)
    assert judge(0.0).within_limit(young)
    assert not judge(AGED_BY).within_limit(young)
    # the listener memory's clock is not moved: hopping tests age the memory itself
    assert abs(judge(AGED_BY).now - time.time()) < 60


def scan_findings(tmp_path, core, aged, *settings):
    rules = tmp_path / "pignore"
    rules.write_text(only_users_rule(YOUNG_UID, OLD_UID))
    result = run_scan("--json", "--pignore", str(rules), "--set=GENERIC=1", *settings,
                      core=core, aged=aged)
    assert result.returncode in (0, 1), result.stderr.decode(errors="replace")
    return {finding["pid"]: finding for finding in map(json.loads, result.stdout.splitlines())}, \
        result.stderr.decode(errors="replace")


@pytest.mark.needs_root
@pytest.mark.parametrize("core", CORES)
def test_a_young_process_is_judged_old_only_under_the_seam(tmp_path, children, core):
    young = start_python(LISTEN, uid=YOUNG_UID)
    children.append(young)
    plain, said = scan_findings(tmp_path, core, aged=False)
    assert young.pid not in plain and "PTFAST_TEST_AGE_OFFSET" not in said
    aged, said = scan_findings(tmp_path, core, aged=True)
    assert young.pid in aged, said
    assert "PTFAST_TEST_AGE_OFFSET=2 in force (test-only)" in said
    # what is shown is the real age: the seam moves no age an admin reads
    assert aged[young.pid]["uptime"] <= int(process_age(young.pid))


#: PT_LIMIT for the real wait: a young process must stay younger than it through one scan's
#: start on a loaded machine (PT_LIMIT=1 was not always enough there when each scan was a new
#: python; 2 since they run in the test process, helpers.inproc)
LIMIT = 2


@pytest.mark.ageing
@pytest.mark.needs_root
def test_pt_limit_on_real_ages_end_to_end(tmp_path, children, monkeypatch):
    """The one end-to-end check of PT_LIMIT without the seam, on both cores (one wait): a
    process really older than PT_LIMIT is reported, one younger is not; a refused (negative)
    offset changes neither."""
    old = start_python(LISTEN, uid=OLD_UID)
    children.append(old)
    time.sleep(LIMIT + 0.2)                             # really older than PT_LIMIT

    def young_one():
        # a new one for each scan: four scans in a row on a busy machine (xdist, other work)
        # take seconds, and a young process started before the first would be old by the last
        young = start_python(LISTEN, uid=YOUNG_UID)
        children.append(young)
        return young
    for core in CORES:
        young = young_one()
        found, _said = scan_findings(tmp_path, core, False, f"--set=PT_LIMIT={LIMIT}")
        assert old.pid in found and young.pid not in found, core
    monkeypatch.setenv(policy.TEST_AGE_OFFSET, "-100")
    for core in CORES:
        young = young_one()
        found, said = scan_findings(tmp_path, core, False, f"--set=PT_LIMIT={LIMIT}")
        assert old.pid in found and young.pid not in found, core
        assert "PTFAST_TEST_AGE_OFFSET=-100 refused" in said


def test_the_offset_makes_connections_count_sooner_never_later():
    conf = config.load(os.devnull, ["GENERIC=1", "PT_LIMIT=1", "PT_CONN_AGE=5"],
                       override_path=os.devnull)

    def judging(aged_by: float) -> policy.Policy:
        return policy.Policy(conf, pignore.IgnoreRules(), lambda uid: USERS.get(uid, str(uid)),
                             aged_by=aged_by)
    assert judging(0.0).young_connection(4.0) and not judging(0.0).young_connection(5.0)
    assert not judging(AGED_BY).young_connection(5.0 - AGED_BY)
    assert judging(AGED_BY).conn_age_wait == 5.0 - AGED_BY
    assert judging(-100.0).young_connection(4.0) and judging(-100.0).conn_age_wait == 5.0
    assert judging(3600.0).conn_age_wait == 0.0
