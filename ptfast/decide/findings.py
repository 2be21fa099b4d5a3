"""The vocabulary of decisions: checks, reasons, findings and the planned responses.

Plain data, shared by the checks that make them (ptfast.decide.checks), the judgement that runs
them (ptfast.decide.judgement), the code that carries responses out (ptfast.act.respond) and the
reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Collection, NamedTuple, Optional

if TYPE_CHECKING:
    from ptfast.scan.procfs import Process

#: The checks, as named in findings, JSON and events.
CHECK_SUSPICIOUS = "suspicious"
CHECK_USER_PROCESSES = "user_processes"     # PT_USERPROC
CHECK_RESOURCE = "resource"                 # PT_USERMEM, PT_USERRSS, PT_USERTIME
CHECK_FORKBOMB = "forkbomb"                 # PT_FORKBOMB
CHECK_SSHD_HUNG = "sshd_hung"               # PT_SSHDHUNG
CHECK_LOAD = "load"                         # PT_LOAD
CHECK_UNHELD_LISTENER = "unheld_listener"   # PT_LIMIT: a listener no process holds (run)

REASON_LISTENING = "listening socket"
REASON_SOCKET = "socket"
REASON_DELETED = "deleted executable"
REASON_INCOMPLETE = "not fully inspected"     # what could not be read may be what hides
#: a tracked account's listener that outlived PT_LIMIT and that no process it tracks holds (parked
#: in flight in a unix socket's queue): a suspicious finding without a process
REASON_UNHELD = "listening socket held by no process"

NOBODY = "nobody"


class ProcessKey(NamedTuple):
    """Identity of a process across scans: a PID alone is reused, (pid, start time) is not."""

    pid: int
    start_time: int


def process_key(proc) -> tuple:
    """(pid, start time): what the memory is keyed by (a plain tuple: it is made for every
    process of every scan)."""
    return (proc.pid, proc.start_time)


def kill_key(proc) -> ProcessKey:
    """The process a planned kill names."""
    return ProcessKey(proc.pid, proc.start_time)


# -- plans ------------------------------------------------------------------------------
#: The template of the one mail that lists a pass's findings beyond PT_DIGEST_AFTER (ptfast's
#: own: lfd mails every finding on its own).
DIGEST_TEMPLATE = "digest.txt"

REMEMBER_PROCESS = "process"           # key (pid, start_time): reported for its whole life
REMEMBER_RESOURCE = "resource"         # key (pid, start_time, resource)
REMEMBER_USER_QUIET = "user_quiet"     # key (user,): quiet for ``seconds``
REMEMBER_LOAD_QUIET = "load_quiet"     # key (): quiet for ``seconds``
REMEMBER_LISTENER = "listener"         # key (netns, inode): a hopping listener, reported


#: reported_what's answer for a process reported for good (memory kept before what was reported
#: was remembered): never reported again
EVERYTHING = frozenset({"*"})


@dataclass(frozen=True)
class Remember:
    """What the state records so that a finding is not reported again."""

    kind: str              # REMEMBER_*
    key: tuple
    seconds: float = 0.0   # quiet periods: how long from now
    what: tuple = ()       # REMEMBER_PROCESS: what was reported (checks.suspicious.reported_what)

    def as_record(self) -> dict:
        record: dict = {"kind": self.kind, "key": list(self.key)}
        if self.seconds:
            record["seconds"] = self.seconds
        if self.what:
            record["what"] = list(self.what)
        return record


@dataclass(frozen=True)
class Action:
    """An action script to run: ``path args...``, for ``setting``."""

    setting: str
    path: str
    args: tuple

    def as_record(self) -> list:
        return [self.setting, self.path, *map(str, self.args)]


@dataclass
class Response:
    """What ``ptfast run`` does about one finding: planned by the policy, carried out by
    ptfast.act.respond. Each finding has its own (the digest rewrites ``alert``)."""

    alert: Optional[str] = None        # the template file to mail; None: no mail
    kill: tuple = ()                   # ProcessKey of exactly the processes to SIGKILL
    kill_uids: tuple = ()              # the uids they may still have (one, or a fork bomb's
                                       # forkers); never 0
    stop_first: bool = False           # SIGSTOP them all before any SIGKILL (a fork bomb) ...
    follow_forks: bool = False         # ... and the children they fork meanwhile (of those uids)
    remember: tuple = ()               # Remember: what the state records
    action: Optional[Action] = None

    def as_record(self) -> dict:
        """The plan as ``ptfast scan --json`` shows it."""
        # a fork bomb's list is the bomb's to choose
        from ptfast.foundation.bounds import MAX_LIST_ITEMS
        record: dict = {"alert": self.alert,
                        "kill": [key.pid for key in self.kill[:MAX_LIST_ITEMS]]}
        if len(self.kill) > MAX_LIST_ITEMS:
            record["kill_left_out"] = len(self.kill) - MAX_LIST_ITEMS
        if self.kill and len(self.kill_uids) == 1:
            record["kill_uid"] = self.kill_uids[0]
        elif self.kill:                # a fork bomb forked by several users
            record["kill_uids"] = list(self.kill_uids)
        if self.stop_first:
            record["stop_first"] = True
        if self.follow_forks:
            record["follow_forks"] = True
        if self.remember:
            record["remember"] = [memo.as_record() for memo in self.remember]
        if self.action is not None:
            record["action"] = self.action.as_record()
        return record


@dataclass
class Finding:
    """Something to report, with what an alert needs and the planned response."""

    check: str                        # CHECK_*
    reasons: tuple                    # REASON_* values, or the resource name
    process: Optional[Process]        # the scanner's record (None for per-user or host findings)
    user: str
    processes: tuple = ()             # user_processes and forkbomb: every process concerned
    level: str = ""                   # resource, forkbomb and load: the limit crossed, in words
    response: Response = field(default_factory=Response)
    #: load: "loadavg" and "processes" as read; suspicious, for a listener handed between
    #: young processes: "outlived", the (netns, inode) of each such listener; forkbomb:
    #: "forkers", the uids that forked the bomb
    details: dict = field(default_factory=dict)
    #: suspicious: every socket of the process as (socket, counted, why)
    judged_sockets: tuple = ()
    #: digest.severity's rank (0 most severe), set when a pass has more mails than
    #: PT_DIGEST_AFTER: it chooses the single mails and orders the digest
    severity: Optional[int] = None

    @property
    def sockets(self) -> tuple:
        return (self.process.sockets or ()) if self.process is not None else ()

    @property
    def open_files(self) -> tuple:
        return (self.process.open_files or ()) if self.process is not None else ()


# -- memory ----------------------------------------------------------------------------
def outlived(seen, older_than: float, now: float) -> bool:
    """A remembered listener's (uid, first seen, reported): first seen more than
    ``older_than`` seconds before ``now`` (PT_LIMIT: it outlived its holders), not reported."""
    first_seen, reported = seen[1], seen[2]
    return not reported and now - first_seen > older_than


class MemoryQuestions:
    """The questions the policy asks of what was reported before, over four collections a
    subclass holds: ``reported`` (ProcessKey), ``resources`` ((pid, start_time, resource)),
    ``quiet_users`` (user -> quiet until) and ``listeners`` ((netns, inode) -> (uid that
    created it, first seen, reported[, uids whose processes held it]))."""

    reported: Collection
    resources: Collection
    quiet_users: dict
    listeners: dict
    #: until when the load check stays quiet (PT_LOAD_SKIP)
    load_quiet_until: float

    def was_reported(self, key: tuple) -> bool:
        return key in self.reported

    def reported_what(self, key: tuple):
        """What the process was reported for (a frozenset of reported_what's words), None when
        it was not reported, EVERYTHING when it is never to be reported again."""
        return EVERYTHING if key in self.reported else None

    def resource_reported(self, key: tuple, resource: str) -> bool:
        return (*key, resource) in self.resources

    def user_quiet_until(self, user: str) -> float:
        return self.quiet_users.get(user, 0.0)

    def listener_seen(self, netns: int, inode: int):
        """(uid, first seen, reported) of a tracked user's listener, or None."""
        seen = self.listeners.get((netns, inode))
        return None if seen is None else tuple(seen[:3])

    def listener_uids(self, older_than: float, now: float) -> set:
        """uids whose processes may hold a listener first seen more than ``older_than``
        seconds ago and not reported: the account that created it and every account whose
        processes were seen holding it (it may be handed across accounts)."""
        uids = set()
        for seen in self.listeners.values():
            if outlived(seen, older_than, now):
                uids.add(seen[0])
                uids.update(seen[3] if len(seen) > 3 else ())
        return uids


@dataclass
class Remembered(MemoryQuestions):
    """What was reported before, read-only to the policy. ``ptfast.decide.state.ReportedState``
    asks the same questions of its file; this plain one serves scan, tune and tests."""

    reported: frozenset = frozenset()              # ProcessKey
    resources: frozenset = frozenset()             # (pid, start_time, resource)
    quiet_users: dict = field(default_factory=dict)   # user -> quiet until (epoch seconds)
    load_quiet_until: float = 0.0
    #: (netns, inode) -> (uid, first seen, reported[, holders' uids]) of tracked users'
    #: listeners: the daemon
    #: sees sockets across passes (a scan alone has no past)
    listeners: dict = field(default_factory=dict)


NOTHING_REMEMBERED = Remembered()
