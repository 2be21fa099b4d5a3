"""PT_LIMIT, ``ptfast run`` only: a tracked account's listener that outlived PT_LIMIT and that no
process of a tracked account holds (parked in flight in a unix socket's queue, where the kernel
still completes handshakes into its backlog, or handed to root or an untracked account)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptfast.decide.checks.base import Alerting, Judging, UnheldCheck
from ptfast.decide.checks.sockets import judged_socket_text
from ptfast.decide.checks.suspicious import Suspicious
from ptfast.decide.findings import (CHECK_UNHELD_LISTENER, REASON_UNHELD, REMEMBER_LISTENER,
                                    Finding, Remember, Response)
from ptfast.foundation.escape import escape_text

if TYPE_CHECKING:
    from ptfast.foundation.config import TrackingSettings


class UnheldListener(UnheldCheck, Alerting):
    """Found by the hopping walks (ptfast.act.tracking), after they looked at every tracked
    account's processes. Its own check name, as it names no process (its events have no pid,
    and consumers that key suspicious events by pid must not break on it); the suspicious
    process mail, with nothing attached (there are no maps to read)."""

    name = CHECK_UNHELD_LISTENER
    template = Suspicious.template

    def evaluate(self, judging: Judging, sock, first_seen: float) -> Finding:
        """Reported once, for the account that created ``sock`` (the ``uid`` of its table
        record, which only that account can be)."""
        why = (f"created by uid {sock.uid}, open for more than PT_LIMIT ({judging.limit:g} s); "
               "no process of a tracked account holds it")
        return Finding(self.name, (REASON_UNHELD,), None, judging.user_name(sock.uid),
                       judged_sockets=((sock, True, why),),
                       details={"uid": sock.uid, "outlived": [(sock.netns, sock.inode)],
                                "open_for": max(0, int(judging.now - first_seen))})

    def respond(self, finding: Finding, settings: TrackingSettings) -> Response:
        return Response(alert=self.template,
                        remember=tuple(Remember(REMEMBER_LISTENER, key)
                                       for key in finding.details["outlived"]))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        # lfd's shape kept, so that admins' greps for suspicious processes still match
        return [f"*Suspicious Process* PID:- PPID:- User:{escape_text(finding.user)} "
                f"Uptime:{finding.details['open_for']} secs EXE:- CMD:- "
                f"{REASON_UNHELD}: {judged_socket_text(*finding.judged_sockets[0])}"]

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        return {"hostname": hostname, "pid": f"none: {REASON_UNHELD}",
                "user": escape_text(finding.user), "uptime": str(finding.details["open_for"]),
                "exe": "-", "cmdline": "-", "files": "", "maps": "",
                "sockets": judged_socket_text(*finding.judged_sockets[0])}
