"""PT_LOAD: the host's load average, a timed check (on its own timer, not per snapshot)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional

from ptfast.decide.checks.base import Alerting, HostReader, Judging, TimedCheck, action_for
from ptfast.decide.findings import CHECK_LOAD, REMEMBER_LOAD_QUIET, Finding, Remember, Response
from ptfast.foundation.config import Settings

if TYPE_CHECKING:
    from ptfast.foundation.config import TrackingSettings


class LoadReading(NamedTuple):
    """/proc/loadavg: the 1, 5 and 15 minute averages and "running/total" processes."""

    loadavg: tuple
    processes: str


class Load(TimedCheck, Alerting):
    """PT_LOAD: the host's load average, on its own timer (not per snapshot); the alert
    attaches the host's state (its busiest processes, the web server's status)."""

    name = CHECK_LOAD
    template = "loadalert.txt"

    def evaluate(self, policy: Judging, reading: LoadReading, now: float) -> Optional[Finding]:
        """A finding when the chosen load average (PT_LOAD_AVG) is at least PT_LOAD_LEVEL,
        outside the quiet period after an alert (PT_LOAD_SKIP); else None."""
        load = policy.settings.load
        loadavg, processes = reading
        if load.PT_LOAD <= 0 or now < policy.memory.load_quiet_until:
            return None
        minutes = load.minutes          # PT_LOAD_AVG: 1, 5 or 15; anything else means 5
        value = loadavg[(1, 5, 15).index(minutes)]
        if value < load.PT_LOAD_LEVEL:
            return None
        return Finding(self.name, (f"{minutes} minute load average",), None, "",
                       level=f"{value:.2f} >= PT_LOAD_LEVEL {load.PT_LOAD_LEVEL:g}",
                       details={"loadavg": loadavg, "processes": processes})

    def respond(self, finding: Finding, settings: TrackingSettings) -> Response:
        return Response(alert=self.template,
                        remember=(Remember(REMEMBER_LOAD_QUIET, (),
                                           float(settings.load.PT_LOAD_SKIP)),),
                        action=action_for(Settings.PT_LOAD_ACTION,
                                          settings.actions.PT_LOAD_ACTION, ()))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        return [f"*LOAD* {finding.reasons[0]}: {finding.level}"]

    def attachment(self, finding: Finding, settings: TrackingSettings,
                   host: HostReader) -> dict:
        details = finding.details
        return host.host_load(details["loadavg"], details["processes"], settings.load.minutes)

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        return attached
