"""Decisions of process tracking: which processes are suspicious.

Pure functions of (snapshot, config, ignore rules, user names, reported memory): no I/O here.
The order is lfd's (spec section 5); its defects (spec section 9) are not copied:

* listening sockets and sockets of every address family count (lfd dropped all-zero and many
  hex-looking addresses);
* deletion comes from the scanner's link-count test, not from "(deleted)" in the path text;
* the reported memory is keyed by (pid, start time), so a reused PID is a new process;
* user names and regexes are resolved once and cached, not per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from .pignore import IgnoreRules

REASON_LISTENING = "listening socket"
REASON_SOCKET = "socket"
REASON_DELETED = "deleted executable"

#: Executable names of web servers, for PT_SKIP_HTTP.
WEB_SERVER_NAMES = frozenset({"httpd", "apache", "apache2", "nginx", "litespeed", "lshttpd",
                              "openlitespeed"})
HTTP_PORTS = frozenset({80, 443})
NOBODY = "nobody"


def process_key(proc) -> tuple:
    """Identity of a process across scans: a PID alone is reused, (pid, start time) is not."""
    return (proc.pid, proc.start_time)


def is_listening(sock) -> bool:
    """An open port waiting for peers: a TCP listener, or a UDP/raw socket not connected."""
    return sock.state == "LISTEN" or (sock.state == "UNCONN" and sock.remote_port == 0)


@dataclass(slots=True)
class Finding:
    """Something to report, with what an alert needs."""

    check: str          # "suspicious"
    reasons: tuple      # REASON_* values
    process: object     # the scanner's Process record
    user: str

    @property
    def sockets(self) -> tuple:
        return self.process.sockets or ()

    @property
    def open_files(self) -> tuple:
        return self.process.open_files or ()


class Policy:
    """lfd's suspicious-process decision, configured once and applied to each snapshot."""

    def __init__(self, config, rules: IgnoreRules, user_name: Callable[[int], str],
                 panel_users: frozenset = frozenset(), reported=frozenset(),
                 limit: float | None = None) -> None:
        # ``limit`` replaces PT_LIMIT: `ptfast tune` tries other values under the same rules
        self.limit = config["PT_LIMIT"] if limit is None else limit
        self.generic = bool(config["GENERIC"])
        self.all_users = bool(config["PT_ALL_USERS"])
        self.report_deleted = bool(config["PT_DELETED"])
        self.skip_http = bool(config["PT_SKIP_HTTP"])
        self.rules = rules
        self.user_name = user_name
        self.panel_users = panel_users
        self.reported = reported
        # key -> _candidate()'s verdict (None for rejected), filled while the scanner walks so
        # that evaluate() does not judge the same process twice
        self._candidates: dict = {}

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def tracks(self, user: str) -> bool:
        if self.generic or self.all_users:
            return True
        return user == NOBODY or user in self.panel_users

    def _candidate(self, proc):
        """(user, exe_or_cmd_ignored) when the process is worth a look, else None.

        Steps 2-3 of lfd's scan: tracked user, not yet reported, user not ignored, root never,
        deleted executables only with PT_DELETED (and then even when exe/cmd are ignored).
        """
        if proc.uid == 0:
            return None
        user = self.user_name(proc.uid)
        if not self.tracks(user) or process_key(proc) in self.reported:
            return None
        rules = self.rules
        if rules.ignores("user", user):
            return None
        ignored = rules.ignores("exe", proc.exe) or rules.ignores("cmd", proc.cmdline)
        if proc.exe_deleted:
            return (user, ignored) if self.report_deleted else None
        return None if ignored else (user, False)

    def want_fds(self, proc) -> bool:
        """Predicate for the scanner: inspect fds only of candidates older than PT_LIMIT, so
        ignored and young processes cost no fd walk."""
        if not self.enabled or proc.age <= self.limit:
            return False
        candidate = self._candidates[process_key(proc)] = self._candidate(proc)
        return candidate is not None

    def is_web_server_child(self, proc, by_pid: dict) -> bool:
        for related in (by_pid.get(proc.pgrp), by_pid.get(proc.ppid)):
            if related is not None and os.path.basename(related.exe) in WEB_SERVER_NAMES:
                return True
        return False

    def counted_sockets(self, proc) -> list:
        sockets = proc.sockets or ()
        if self.skip_http:
            return [sock for sock in sockets if sock.local_port not in HTTP_PORTS]
        return list(sockets)

    def evaluate(self, snapshot) -> list:
        """Suspicious processes of one snapshot, one report per deleted-executable family."""
        if not self.enabled:
            return []
        by_pid = snapshot.by_pid()
        findings = []
        for proc in snapshot.processes:
            if proc.age <= self.limit:
                continue
            key = process_key(proc)
            candidate = (self._candidates.pop(key) if key in self._candidates
                         else self._candidate(proc))
            if candidate is None:
                continue
            user, ignored = candidate
            if self.skip_http and self.is_web_server_child(proc, by_pid):
                continue
            reasons = []
            if proc.exe_deleted:
                reasons.append(REASON_DELETED)
            if not ignored:
                counted = self.counted_sockets(proc)
                if any(is_listening(sock) for sock in counted):
                    reasons.append(REASON_LISTENING)
                if any(not is_listening(sock) for sock in counted):
                    reasons.append(REASON_SOCKET)
            if reasons:
                findings.append(Finding("suspicious", tuple(reasons), proc, user))
        self._candidates.clear()
        return self._one_per_deleted_family(findings, by_pid)

    def _one_per_deleted_family(self, findings: list, by_pid: dict) -> list:
        reported_deleted = {f.process.pid for f in findings if f.process.exe_deleted}
        kept = []
        for finding in findings:
            proc = finding.process
            parent = by_pid.get(proc.ppid)
            if (proc.exe_deleted and parent is not None and parent.exe_deleted
                    and (parent.pid in reported_deleted
                         or process_key(parent) in self.reported)):
                continue
            kept.append(finding)
        return kept
