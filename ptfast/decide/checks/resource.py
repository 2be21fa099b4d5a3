"""PT_USERMEM, PT_USERRSS, PT_USERTIME: a process over a limit of memory or run time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptfast.decide.checks.base import (Alerting, Judging, PassWork, SnapshotCheck, action_for,
                                       process_of)
from ptfast.decide.checks.per_user import counted_processes, user_kill
from ptfast.decide.checks.shown import shown_exe, yes_no
from ptfast.decide.findings import (CHECK_RESOURCE, REMEMBER_RESOURCE, Finding, Remember, Response,
                                    process_key)
from ptfast.foundation.bounds import bounded_text
from ptfast.foundation.config import Settings
from ptfast.foundation.escape import escape_text

if TYPE_CHECKING:
    from ptfast.foundation.config import TrackingSettings

#: resource name -> (setting, Process attribute, unit divisor, unit, lfd log field)
RESOURCES = {
    "virtual memory": ("PT_USERMEM", "vm_size_bytes", 1 << 20, "MB", "VM"),
    "resident memory": ("PT_USERRSS", "vm_rss_bytes", 1 << 20, "MB", "RSS"),
    "run time": ("PT_USERTIME", "age", 1, "secs", "Time"),
}


def resource_limits(settings: TrackingSettings) -> dict:
    """RESOURCES name -> its limit in force (0: off)."""
    return {"virtual memory": settings.PT_USERMEM, "resident memory": settings.PT_USERRSS,
            "run time": settings.PT_USERTIME}


def resource_amount(proc, resource: str) -> int:
    """How much of ``resource`` (a RESOURCES name) ``proc`` uses, in that resource's unit."""
    _setting, attribute, divisor, _unit, _field = RESOURCES[resource]
    return int(getattr(proc, attribute) / divisor)


class Resource(SnapshotCheck, Alerting):
    """PT_USERMEM, PT_USERRSS, PT_USERTIME: a process over a limit, once per process and
    resource."""

    name = CHECK_RESOURCE
    template = "resalert.txt"

    def evaluate(self, policy: Judging, snapshot, work: PassWork) -> list:
        given = resource_limits(policy.settings)
        limits = [(resource, setting, unit, given[resource])
                  for resource, (setting, _attribute, _divisor, unit, _field) in RESOURCES.items()
                  if given[resource] > 0]
        if not policy.enabled or not limits:
            return []
        per_user = counted_processes(policy, snapshot, work)
        findings = []
        for resource, setting, unit, limit in limits:
            _setting, attribute, divisor, _unit, _field = RESOURCES[resource]
            # the amount is int(value / divisor): at most ``limit`` while value is below this
            below = (limit + 1) * divisor
            for user, procs in per_user.items():
                for proc in procs:
                    if getattr(proc, attribute) < below:
                        continue
                    amount = resource_amount(proc, resource)
                    if amount <= limit or policy.memory.resource_reported(process_key(proc),
                                                                          resource):
                        continue
                    findings.append(Finding(self.name, (resource,), proc, user,
                                            level=f"{amount} {unit} > {setting} {limit} {unit}"))
        return findings

    def respond(self, finding: Finding, settings: TrackingSettings) -> Response:
        proc = process_of(finding)
        kill, uids = user_kill(settings, (proc,))
        return Response(
            alert=self.template if not kill or settings.PT_USERKILL_ALERT else None,
            kill=kill, kill_uids=uids,
            remember=(Remember(REMEMBER_RESOURCE, (*process_key(proc), finding.reasons[0])),),
            action=action_for(Settings.PT_USER_ACTION, settings.actions.PT_USER_ACTION,
                              (str(proc.pid),)))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        proc, resource = process_of(finding), finding.reasons[0]
        _setting, _attribute, _divisor, unit, field = RESOURCES[resource]
        return [f"*User Processing* PID:{proc.pid} Kill:{int(killed)} "
                f"User:{escape_text(finding.user)} "
                f"{field}:{resource_amount(proc, resource)}({unit}) EXE:{shown_exe(proc)} "
                f"CMD:{bounded_text(proc.cmdline)}"]

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        proc = process_of(finding)
        return {"hostname": hostname, "user": escape_text(finding.user), "pid": str(proc.pid),
                "exe": shown_exe(proc), "cmd": bounded_text(proc.cmdline),
                "resource": finding.reasons[0], "level": finding.level, "kill": yes_no(killed)}
