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

#: The checks, as named in findings, JSON and events.
CHECK_SUSPICIOUS = "suspicious"
CHECK_USER_PROCESSES = "user_processes"     # PT_USERPROC
CHECK_RESOURCE = "resource"                 # PT_USERMEM, PT_USERRSS, PT_USERTIME
CHECK_FORKBOMB = "forkbomb"                 # PT_FORKBOMB
CHECK_SSHD_HUNG = "sshd_hung"               # PT_SSHDHUNG
CHECK_LOAD = "load"                         # PT_LOAD

REASON_LISTENING = "listening socket"
REASON_SOCKET = "socket"
REASON_DELETED = "deleted executable"

#: resource name -> (setting, Process attribute, unit divisor, unit, lfd log field)
RESOURCES = {
    "virtual memory": ("PT_USERMEM", "vm_size_bytes", 1 << 20, "MB", "VM"),
    "resident memory": ("PT_USERRSS", "vm_rss_bytes", 1 << 20, "MB", "RSS"),
    "run time": ("PT_USERTIME", "age", 1, "secs", "Time"),
}

#: The two command lines of an sshd child that has not authenticated anyone, exactly. lfd's
#: pattern lacked a group around its alternation and also matched any line ending in "[priv]",
#: killing logged-in sessions ("sshd: alice [priv]").
def resource_amount(proc, resource: str) -> int:
    """How much of ``resource`` (a RESOURCES name) ``proc`` uses, in that resource's unit."""
    _setting, attribute, divisor, _unit, _field = RESOURCES[resource]
    return int(getattr(proc, attribute) / divisor)


SSHD_UNAUTHENTICATED = frozenset({"sshd: unknown [net]", "sshd: unknown [priv]"})
SSHD_HUNG_AFTER = 60
NO_SESSIONS = frozenset({0, 1})     # the kernel's and init's: never a fork bomb

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


@dataclass
class Finding:
    """Something to report, with what an alert needs."""

    check: str               # CHECK_*
    reasons: tuple           # REASON_* values, or the resource name
    process: object          # the scanner's Process record (None for per-user/session/host)
    user: str
    processes: tuple = ()    # user_processes and forkbomb: every process concerned
    level: str = ""          # resource, forkbomb and load: the limit crossed, in words

    @property
    def sockets(self) -> tuple:
        return (self.process.sockets or ()) if self.process is not None else ()

    @property
    def open_files(self) -> tuple:
        return (self.process.open_files or ()) if self.process is not None else ()


class Policy:
    """lfd's suspicious-process decision, configured once and applied to each snapshot."""

    def __init__(self, config, rules: IgnoreRules, user_name: Callable[[int], str],
                 panel_users: frozenset = frozenset(), reported=frozenset(),
                 limit: float | None = None, reported_resources=frozenset(),
                 quiet_users=None) -> None:
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
        self.reported_resources = reported_resources     # {(pid, start_time, resource)}
        self.quiet_users = quiet_users or {}             # user -> quiet until (epoch seconds)
        self.config = config
        # key -> _candidate()'s verdict (None for rejected), filled while the scanner walks so
        # that evaluate() does not judge the same process twice
        self._candidates: dict = {}
        self._tracked_users: dict[int, str | None] = {}

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def tracked_user(self, uid: int) -> str | None:
        """The name of a non-root, tracked, not ignored user; None for anyone else. Decided
        once per uid: the same few hundred users own the thousands of processes."""
        try:
            return self._tracked_users[uid]
        except KeyError:
            pass
        user = self.user_name(uid) if uid != 0 else None
        if user is not None and (not self.tracks(user) or self.rules.ignores("user", user)):
            user = None
        self._tracked_users[uid] = user
        return user

    def tracks(self, user: str) -> bool:
        if self.generic or self.all_users:
            return True
        return user == NOBODY or user in self.panel_users

    def _candidate(self, proc):
        """(user, exe_or_cmd_ignored) when the process is worth a look, else None.

        Steps 2-3 of lfd's scan: tracked user, not yet reported, user not ignored, root never,
        deleted executables only with PT_DELETED (and then even when exe/cmd are ignored).
        """
        user = self.tracked_user(proc.uid)
        if user is None or process_key(proc) in self.reported:
            return None
        rules = self.rules
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
                findings.append(Finding(CHECK_SUSPICIOUS, tuple(reasons), proc, user))
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

    # -- the other checks of lfd's process tracking (spec sections 2 and 5) -----------------

    def user_findings(self, snapshot) -> list:
        """PT_USERPROC per user (then quiet until its quiet period ends), then PT_USERMEM,
        PT_USERRSS and PT_USERTIME per process (each once per process and resource)."""
        config = self.config
        max_processes = config["PT_USERPROC"]
        limits = [(resource, setting, unit, config[setting])
                  for resource, (setting, _attribute, _divisor, unit, _field) in RESOURCES.items()
                  if config[setting] > 0]
        if not self.enabled or (max_processes <= 0 and not limits):
            return []
        by_pid = snapshot.by_pid() if self.skip_http else {}
        rules = self.rules
        per_user: dict[str, list] = {}
        for proc in snapshot.processes:
            if proc.exe_deleted:
                continue
            user = self.tracked_user(proc.uid)
            if (user is None or user == NOBODY or rules.ignores("exe", proc.exe)
                    or rules.ignores("cmd", proc.cmdline)):
                continue
            if self.skip_http and self.is_web_server_child(proc, by_pid):
                continue
            per_user.setdefault(user, []).append(proc)
        findings = []
        if max_processes > 0:
            for user, procs in per_user.items():
                if (len(procs) > max_processes
                        and self.quiet_users.get(user, 0) <= snapshot.taken_at):
                    findings.append(Finding(CHECK_USER_PROCESSES, ("too many processes",), None,
                                            user, tuple(procs),
                                            f"{len(procs)} > PT_USERPROC {max_processes}"))
        for resource, setting, unit, limit in limits:
            for user, procs in per_user.items():
                for proc in procs:
                    amount = resource_amount(proc, resource)
                    if amount <= limit or (proc.pid, proc.start_time, resource) in \
                            self.reported_resources:
                        continue
                    findings.append(Finding(CHECK_RESOURCE, (resource,), proc, user,
                                            level=f"{amount} {unit} > {setting} {limit} {unit}"))
        return findings

    def forkbomb_findings(self, snapshot) -> list:
        """PT_FORKBOMB: sessions holding at least that many processes. Root's processes count
        here (a fork bomb run as root is still one); sessions 0 and 1 never do."""
        threshold = self.config["PT_FORKBOMB"]
        if not self.enabled or threshold <= 0:
            return []
        sessions: dict[int, list] = {}
        rules = self.rules
        root_counts = not rules.ignores("user", self.user_name(0))
        for proc in snapshot.processes:
            if proc.session in NO_SESSIONS:
                continue
            if not (root_counts if proc.uid == 0 else self.tracked_user(proc.uid) is not None):
                continue
            if rules.ignores("exe", proc.exe) or rules.ignores("cmd", proc.cmdline):
                continue
            sessions.setdefault(proc.session, []).append(proc)
        findings = []
        for session, procs in sessions.items():
            if len(procs) >= threshold:
                leader = next((p for p in procs if p.pid == session), procs[0])
                findings.append(Finding(CHECK_FORKBOMB, ("fork bomb",), leader,
                                        self.user_name(leader.uid), tuple(procs),
                                        f"session {session} holds {len(procs)} processes >= "
                                        f"PT_FORKBOMB {threshold}"))
        return findings

    def hung_sshd_findings(self, snapshot) -> list:
        """PT_SSHDHUNG: sshd children still unauthenticated after 60 seconds."""
        if not self.enabled or not self.config["PT_SSHDHUNG"]:
            return []
        findings = []
        for proc in snapshot.processes:
            if proc.cmdline in SSHD_UNAUTHENTICATED and proc.age > SSHD_HUNG_AFTER:
                user = self.user_name(proc.uid)
                if not self.rules.ignores("user", user):
                    findings.append(Finding(CHECK_SSHD_HUNG, ("unauthenticated sshd",), proc,
                                            user, level=f"{int(proc.age)} secs > "
                                                        f"{SSHD_HUNG_AFTER} secs"))
        return findings

    def evaluate_all(self, snapshot) -> list:
        """Every per-snapshot check, in lfd's order."""
        return (self.hung_sshd_findings(snapshot) + self.forkbomb_findings(snapshot)
                + self.evaluate(snapshot) + self.user_findings(snapshot))


def load_minutes(config) -> int:
    """PT_LOAD_AVG: the 1, 5 or 15 minute average; anything else means 5, as in lfd."""
    return config["PT_LOAD_AVG"] if config["PT_LOAD_AVG"] in (1, 5, 15) else 5


def load_finding(config, loadavg: tuple, now: float, quiet_until: float = 0.0):
    """PT_LOAD: a finding when the chosen load average (PT_LOAD_AVG 1, 5 or 15; anything else
    means 5) is at least PT_LOAD_LEVEL, outside the quiet period; else None."""
    if config["PT_LOAD"] <= 0 or now < quiet_until:
        return None
    minutes = load_minutes(config)
    value = loadavg[(1, 5, 15).index(minutes)]
    if value < config["PT_LOAD_LEVEL"]:
        return None
    return Finding(CHECK_LOAD, (f"{minutes} minute load average",), None, "",
                   level=f"{value:.2f} >= PT_LOAD_LEVEL {config['PT_LOAD_LEVEL']:g}")
