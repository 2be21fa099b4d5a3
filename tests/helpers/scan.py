"""``ptfast scan`` on the core a test chooses, in the test process (helpers.inproc)."""

from __future__ import annotations

import json
import os
import subprocess

from ptfast.decide.policy import TEST_AGE_OFFSET

from helpers.inproc import run_ptfast

CORES = ("compiled", "pure-python")
#: The age seam's offset (ptfast.decide.policy.TEST_AGE_OFFSET): more than the tests' PT_LIMIT=1, so a
#: process started this instant already counts as older than PT_LIMIT.
AGED_BY = 2.0
#: Tests of other things judge connections at once, as lfd does: with PT_CONN_AGE (default 5)
#: every scan and first pass would wait it out while a tracked account holds a connection.
#: tests/test_lifetimes.py sets its own PT_CONN_AGE (a later --set wins); the hosting bed runs
#: on the default.
CONNECTIONS_AT_ONCE = "PT_CONN_AGE=0"


def core_env(core, aged=False):
    """The environment that makes ptfast pick ``core`` ("compiled" or "pure-python"); with
    ``aged``, every process counts AGED_BY s older against PT_LIMIT (no sleeping past it)."""
    env = dict(os.environ)
    env.pop("PTFAST_NO_EXTENSIONS", None)
    if core == "pure-python":
        env["PTFAST_NO_EXTENSIONS"] = "1"
    if aged:
        env[TEST_AGE_OFFSET] = str(AGED_BY)
    return env


def run_scan(*args, core="compiled", aged=False):
    env = core_env(core, aged)
    # no csf.conf on the test machine, but never let a real one change the test's meaning.
    # Only the suspicious-process check: the machine's own load, users and old processes must
    # not add findings (test_checks_live covers the other checks).
    others_off = [f"--set={name}=0" for name in ("PT_LOAD", "PT_USERPROC", "PT_USERMEM",
                                                 "PT_USERRSS", "PT_USERTIME")]
    command = ["scan", "--config", os.devnull, "--override", os.devnull, "--set", "PT_LIMIT=1",
               *others_off, "--set", CONNECTIONS_AT_ONCE, *args]
    return run_ptfast(command, env=env)


def suspicious_by_pid(result: subprocess.CompletedProcess) -> dict:
    """pid -> finding of the suspicious-process check, from ``scan --json`` output."""
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    return {finding["pid"]: finding for finding in findings if finding["check"] == "suspicious"}
