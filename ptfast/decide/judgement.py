"""Judging one pass: the checks run on a snapshot, each finding with the response its check
plans, then the digest applied (ptfast.decide.digest); the timed load check; and a listener
the hopping walks found held by no process.

A ``Judgement`` is one pass's: the scanner asks its ``want_fds(proc)`` during the walk (only
candidates older than PT_LIMIT get an fd walk), and ``findings(snapshot)`` then reuses those
verdicts (``checks.base.PassWork``) and starts afresh. The judging context (``Policy``, which
the checks read through ``checks.base.Judging``) is only read.

lfd's order is kept (spec section 5); ``ptfast run`` carries the responses out
(``ptfast.act.respond``), ``ptfast scan --json`` shows them, so an admin sees what ``run``
would do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

from ptfast.decide.checks import LOAD, SNAPSHOT_CHECKS, SUSPICIOUS, UNHELD_LISTENER
from ptfast.decide.checks.base import PassWork, SnapshotCheck
from ptfast.decide.checks.load import LoadReading
from ptfast.decide.digest import digest_beyond
from ptfast.decide.findings import Finding, process_key
from ptfast.decide.policy import Policy

if TYPE_CHECKING:
    from ptfast.scan.procfs import Snapshot


class Judgement:
    """The checks of one pass run with ``policy``, and what they share meanwhile."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.work = PassWork()

    def want_fds(self, proc) -> bool:
        """Predicate for the scanner: inspect fds only of candidates older than PT_LIMIT (and
        the young processes of accounts a listener hops between), so ignored and young
        processes cost no fd walk."""
        policy = self.policy
        if not policy.enabled or (policy.within_limit(proc)
                                  and proc.uid not in policy.hopping_uids):
            return False
        key = process_key(proc)
        verdict = self.work.verdicts[key] = SUSPICIOUS.candidate(policy, proc, key)
        return verdict is not None

    def findings(self, snapshot: Snapshot,
                 checks: Optional[Iterable[SnapshotCheck]] = None) -> list:
        """Every snapshot check (or those of ``checks``), in lfd's order, each finding with its
        planned response, the digest applied (PT_DIGEST_AFTER)."""
        policy = self.policy
        found = []
        for check in checks or SNAPSHOT_CHECKS:
            for finding in check.evaluate(policy, snapshot, self.work):
                finding.response = check.respond(finding, policy.settings)
                found.append(finding)
        self.work = PassWork()
        return digest_beyond(found, policy.settings.PT_DIGEST_AFTER, policy.host_addresses)


def load_finding(policy: Policy, loadavg: tuple, processes: str,
                 now: float) -> Optional[Finding]:
    """PT_LOAD: a finding (with its response) when the load average is high, outside the quiet
    period; else None. ``processes`` is /proc/loadavg's "running/total"."""
    finding = LOAD.evaluate(policy, LoadReading(loadavg, processes), now)
    if finding is not None:
        finding.response = LOAD.respond(finding, policy.settings)
    return finding


def unheld_listener_finding(policy: Policy, sock, first_seen: float) -> Finding:
    """A tracked account's listener ``sock`` (first seen at ``first_seen``) that outlived
    PT_LIMIT and that ``ptfast run``'s hopping walks found held by no process: the finding,
    with its response."""
    finding = UNHELD_LISTENER.evaluate(policy, sock, first_seen)
    finding.response = UNHELD_LISTENER.respond(finding, policy.settings)
    return finding
