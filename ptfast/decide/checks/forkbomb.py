"""PT_FORKBOMB: a session holding too many processes, and who forked it."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ptfast.decide.checks.base import Alerting, Judging, PassWork, SnapshotCheck
from ptfast.decide.checks.shown import process_line, shown_exe, yes_no
from ptfast.decide.findings import CHECK_FORKBOMB, Finding, Response, kill_key
from ptfast.foundation.bounds import bounded_lines, bounded_text
from ptfast.foundation.escape import escape_text

if TYPE_CHECKING:
    from ptfast.foundation.config import TrackingSettings

NO_SESSIONS = frozenset({0, 1})     # the kernel's and init's: never a fork bomb
MAX_LOGGED_FORKBOMB_PROCESSES = 100
#: A user forked a fork bomb when it owns at least 1/FORKER_SHARE of PT_FORKBOMB of the bomb's
#: processes, and 1/FORKER_SHARE as many as the user owning most: two accounts bombing together
#: are both stopped, but a neighbour whose script forked a child in the same minute is not taken
#: for a forker.
FORKER_SHARE = 4
#: A process is young, part of a growing bomb, when it started less than this many PT_INTERVALs
#: before the snapshot: since the previous pass, even one that took as long as the interval.
YOUNG_INTERVALS = 2


def forked_by_root_service(proc, by_pid: dict) -> bool:
    """``proc``'s parent is a root process of its own session: a root master (php-fpm, a pre-fork
    web server) spawned it, as a pool worker, and no customer forked it. ``by_pid``: every
    process of the snapshot. A customer cannot arrange this: its processes' parent is one of its
    own, or, once orphaned, init (whose session is 1) or a subreaper."""
    parent = by_pid.get(proc.ppid)
    return parent is not None and parent.uid == 0 and parent.session == proc.session


def forkers(procs, by_pid: dict, young_age: float, threshold: int) -> tuple:
    """The uids that forked the fork bomb of a session whose counted processes are ``procs``
    (``by_pid``: every process of the snapshot; ``threshold``: PT_FORKBOMB), sorted; never root.

    The bomb is what the session's users forked themselves, never what a root master spawned
    for them (another customer's pool workers, however many), and of that the young part
    (started less than ``young_age`` seconds ago) when it is big enough to be a bomb (a user
    owns 1/FORKER_SHARE of PT_FORKBOMB of it): the bomb is growing, and a neighbour's job forked
    hours ago is no part of it. Otherwise all of it: a bomb that stopped growing before it was
    seen. A forker owns at least 1/FORKER_SHARE of PT_FORKBOMB of it, and 1/FORKER_SHARE as much
    as the user owning most. No forker (alert, never kill): nothing a customer forked is big enough, say a root
    master's big pools and a few processes of the users; a neighbour that forks one child must
    not tip the session over and be taken for the bomb."""
    floor = threshold / FORKER_SHARE
    forked = [p for p in procs if p.uid != 0 and not forked_by_root_service(p, by_pid)]
    young = Counter(p.uid for p in forked if p.age < young_age)
    counts = young if young and max(young.values()) >= floor else Counter(p.uid for p in forked)
    if not counts:
        return ()
    least = max(floor, max(counts.values()) / FORKER_SHARE)
    return tuple(sorted(uid for uid, count in counts.items() if count >= least))


class ForkBomb(SnapshotCheck, Alerting):
    """PT_FORKBOMB: a session holding at least this many processes. Root's processes count
    toward it (a fork bomb run as root is still one); sessions 0 and 1 never do.

    A session is often shared: php-fpm's or a pre-fork web server's root master and every
    customer's pool workers in one. So the response does not kill the user holding most of it
    but the forkers: the users whose processes forked the bomb (see ``forkers``). It stops, then
    kills, the counted processes of the forkers in the session, and what they fork meanwhile:
    never root, never an ignored process, never a process of another user."""

    name = CHECK_FORKBOMB
    template = "forkbombalert.txt"

    def evaluate(self, policy: Judging, snapshot, work: PassWork) -> list:
        threshold = policy.settings.PT_FORKBOMB
        if not policy.enabled or threshold <= 0:
            return []
        rules = policy.rules
        root_counts = not rules.ignores("user", policy.user_name(0))
        sessions: dict = {}
        for proc in snapshot.processes:
            if proc.session in NO_SESSIONS:
                continue
            if not (root_counts if proc.uid == 0 else policy.tracked_user(proc.uid) is not None):
                continue
            if policy.ignores_process(proc):
                continue
            sessions.setdefault(proc.session, []).append(proc)
        findings = []
        # every process, ignored ones too: parents and session leaders are facts
        by_pid = {proc.pid: proc for proc in snapshot.processes}
        young_age = policy.settings.interval * YOUNG_INTERVALS
        for session, procs in sessions.items():
            if len(procs) >= threshold:
                leader = next((p for p in procs if p.pid == session), procs[0])
                findings.append(Finding(self.name, ("fork bomb",), leader,
                                        policy.user_name(leader.uid), tuple(procs),
                                        f"session {session} holds {len(procs)} processes >= "
                                        f"PT_FORKBOMB {threshold}",
                                        details={"forkers": forkers(procs, by_pid, young_age,
                                                                    threshold)}))
        return findings + self._spread_over_sessions(policy, sessions, by_pid, young_age,
                                                     threshold)

    def _spread_over_sessions(self, policy: Judging, sessions: dict, by_pid: dict,
                              young_age: float, threshold: int) -> list:
        """A bomb whose processes each call setsid() holds no session big enough: each is a
        session of its own. So a user that started at least PT_FORKBOMB sessions of its own
        (led by one of its young processes) that no finding counted has forked a bomb, and is
        its only forker; the bomb is its young processes in those sessions. A user starts
        that many sessions within two intervals only by forking them (cron jobs and ssh
        logins come one at a time); root masters' sessions (php-fpm's, a web server's) are
        led by root."""
        spread: dict = {}
        for session, procs in sessions.items():
            leader = by_pid.get(session)
            if (len(procs) >= threshold or leader is None or leader.uid == 0
                    or leader.age >= young_age):
                continue                    # reported as a session already, or no bomb's
            group = [proc for proc in procs if proc.uid == leader.uid and proc.age < young_age]
            if group:                       # else: an untracked user's, or ignored
                spread.setdefault(leader.uid, []).append((leader, group))
        findings = []
        for uid, groups in sorted(spread.items()):
            if len(groups) < threshold:
                continue
            procs = [proc for _leader, group in groups for proc in group]
            # and the user's processes that forked them, which fork on (in any session)
            members = {proc.pid for proc in procs}
            for leader, _group in groups:
                parent = by_pid.get(leader.ppid)
                if (parent is not None and parent.uid == uid and parent.pid not in members
                        and not policy.ignores_process(parent)):
                    members.add(parent.pid)
                    procs.append(parent)
            findings.append(Finding(self.name, ("fork bomb",), procs[0], policy.user_name(uid),
                                    tuple(procs),
                                    f"one user started {len(groups)} sessions of its own >= "
                                    f"PT_FORKBOMB {threshold}",
                                    details={"forkers": (uid,)}))
        return findings

    def respond(self, finding: Finding, settings: TrackingSettings) -> Response:
        uids = finding.details.get("forkers", ())
        kill = tuple(kill_key(p) for p in finding.processes if p.uid in uids and p.uid != 0)
        if not kill:        # no forker: root's alone, or nothing a user forked is a bomb
            return Response(alert=self.template)
        return Response(alert=self.template, kill=kill, kill_uids=uids, stop_first=True,
                        follow_forks=True)

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        procs = finding.processes
        lines = [f"*PT_FORKBOMB* PID:{p.pid} SID:{p.session} User:{escape_text(user_name(p.uid))} "
                 f"EXE:{shown_exe(p)} CMD:{bounded_text(p.cmdline)}"
                 for p in procs[:MAX_LOGGED_FORKBOMB_PROCESSES]]
        if len(procs) > MAX_LOGGED_FORKBOMB_PROCESSES:
            lines.append(f"*PT_FORKBOMB* ... and {len(procs) - MAX_LOGGED_FORKBOMB_PROCESSES} "
                         "more processes of the session")
        lines.append(f"*PT_FORKBOMB* {finding.level}: Killed:{yes_no(killed)}")
        return lines

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        return {"hostname": hostname, "level": finding.level,
                "text": "\n".join(bounded_lines(finding.processes,
                                                 lambda p: process_line(p, user_name(p.uid))))}
