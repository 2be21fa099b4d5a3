"""PT_SSHDHUNG: sshd children still unauthenticated after 60 seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptfast.decide.checks.base import Judging, PassWork, SnapshotCheck, process_of
from ptfast.decide.checks.shown import yes_no
from ptfast.decide.findings import CHECK_SSHD_HUNG, Finding, Response, kill_key
from ptfast.foundation.bounds import bounded_text
from ptfast.foundation.escape import escape_text

if TYPE_CHECKING:
    from ptfast.foundation.config import TrackingSettings

#: The two command lines of an sshd child that has not authenticated anyone, exactly. lfd's
#: pattern lacked a group around its alternation and also matched any line ending in "[priv]",
#: killing logged-in sessions ("sshd: alice [priv]").
SSHD_UNAUTHENTICATED = frozenset({"sshd: unknown [net]", "sshd: unknown [priv]"})
SSHD_HUNG_AFTER = 60            # seconds, fixed in lfd


class SshdHung(SnapshotCheck):
    """PT_SSHDHUNG: sshd children still unauthenticated after 60 seconds are killed and logged;
    lfd mails nothing about them. Never a root one: killing its unprivileged child ends it."""

    name = CHECK_SSHD_HUNG

    def evaluate(self, policy: Judging, snapshot, work: PassWork) -> list:
        if not policy.enabled or not policy.settings.PT_SSHDHUNG:
            return []
        findings = []
        for proc in snapshot.processes:
            if proc.cmdline in SSHD_UNAUTHENTICATED and proc.age > SSHD_HUNG_AFTER:
                user = policy.user_name(proc.uid)
                if not policy.rules.ignores("user", user):
                    findings.append(Finding(self.name, ("unauthenticated sshd",), proc, user,
                                            level=f"{int(proc.age)} secs > "
                                                  f"{SSHD_HUNG_AFTER} secs"))
        return findings

    def respond(self, finding: Finding, settings: TrackingSettings) -> Response:
        proc = process_of(finding)
        if proc.uid == 0:
            return Response()
        return Response(kill=(kill_key(proc),), kill_uids=(proc.uid,))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        proc = process_of(finding)
        return [f"*PT_SSHDHUNG* PID:{proc.pid} PPID:{proc.ppid} User:{escape_text(finding.user)} "
                f"Uptime:{int(proc.age)} secs CMD:{bounded_text(proc.cmdline)} "
                f"Killed:{yes_no(killed)}"]
