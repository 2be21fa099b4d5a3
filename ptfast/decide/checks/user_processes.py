"""PT_USERPROC: a user running more processes than this."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptfast.decide.checks.base import Alerting, Judging, PassWork, SnapshotCheck, action_for
from ptfast.decide.checks.per_user import counted_processes, user_kill
from ptfast.decide.checks.shown import process_line, yes_no
from ptfast.decide.findings import (CHECK_USER_PROCESSES, REMEMBER_USER_QUIET, Finding, Remember,
                                    Response)
from ptfast.foundation.bounds import bounded_lines
from ptfast.foundation.config import Settings
from ptfast.foundation.escape import escape_text

if TYPE_CHECKING:
    from ptfast.foundation.config import TrackingSettings


class UserProcesses(SnapshotCheck, Alerting):
    """PT_USERPROC: a user running more processes than this; quiet for LF_FLUSH afterwards."""

    name = CHECK_USER_PROCESSES
    template = "usertracking.txt"

    def evaluate(self, policy: Judging, snapshot, work: PassWork) -> list:
        limit = policy.settings.PT_USERPROC
        if not policy.enabled or limit <= 0:
            return []
        findings = []
        for user, procs in counted_processes(policy, snapshot, work).items():
            if (len(procs) > limit
                    and policy.memory.user_quiet_until(user) <= snapshot.taken_at):
                findings.append(Finding(self.name, ("too many processes",), None, user,
                                        tuple(procs), f"{len(procs)} > PT_USERPROC {limit}"))
        return findings

    def respond(self, finding: Finding, settings: TrackingSettings) -> Response:
        kill, uids = user_kill(settings, finding.processes)
        return Response(
            alert=self.template if not kill or settings.PT_USERKILL_ALERT else None,
            kill=kill, kill_uids=uids,
            remember=(Remember(REMEMBER_USER_QUIET, (finding.user,),
                               float(settings.LF_FLUSH)),),
            action=action_for(Settings.PT_USER_ACTION, settings.actions.PT_USER_ACTION,
                              (",".join(str(p.pid) for p in finding.processes),)))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        return [f"*Excessive Processes* User:{escape_text(finding.user)} Kill:{int(killed)} "
                f"Process Count:{len(finding.processes)}"]

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        return {"hostname": hostname, "user": escape_text(finding.user),
                "count": str(len(finding.processes)),
                "text": "\n".join(bounded_lines(finding.processes,
                                                 lambda p: process_line(p, finding.user))),
                "kill": yes_no(killed)}
