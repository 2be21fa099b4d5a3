"""What every check is, and what a check may read: the judging context (``Judging``), one pass's
shared working data (``PassWork``), the three kinds of check (``SnapshotCheck``, ``TimedCheck``,
``UnheldCheck``), and ``Alerting``, which only a check that sends an alert is.

Pure: no I/O. What an alert attaches is read by ptfast.act.respond through ``HostReader``, the
reading a check asks for (``Alerting.attachment``), so the checks need not import who reads it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar, Optional, Protocol

from ptfast.decide.findings import Action, Finding, MemoryQuestions, Response

if TYPE_CHECKING:
    from ptfast.decide.pignore import IgnoreRules
    from ptfast.foundation.config import Setting, TrackingSettings
    from ptfast.scan.procfs import Process, Snapshot


class Judging(Protocol):
    """The judging context a check reads, read-only: settings, ignore rules, memory, host facts.
    ptfast.decide.policy.Policy is the one; declared here, so that the checks need not import
    it."""

    @property
    def settings(self) -> TrackingSettings: ...
    @property
    def rules(self) -> IgnoreRules: ...
    @property
    def memory(self) -> MemoryQuestions: ...
    @property
    def limit(self) -> float: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def customer_code_uids(self) -> frozenset: ...
    @property
    def user_name(self) -> Callable[[int], str]: ...
    @property
    def v6only_listeners(self) -> Callable[[], dict]: ...
    @property
    def now(self) -> float: ...
    @property
    def lifetimes(self): ...

    def within_limit(self, proc) -> bool: ...
    def young_connection(self, age: float) -> bool: ...
    @property
    def conn_age_wait(self) -> float: ...
    def tracked_user(self, uid: int) -> Optional[str]: ...
    def ignores_process(self, proc) -> bool: ...
    def is_web_server(self, proc) -> bool: ...
    def outlived_holders(self, sock) -> bool: ...
    def handed_over(self, sock, proc) -> bool: ...
    def service_master(self, proc, by_pid: dict): ...


@dataclass
class PassWork:
    """What the checks of one pass work out once and share; thrown away with the pass.

    ``verdicts``: the suspicious check's verdict on each process want_fds was asked about during
    the walk, by process key (None: not a candidate), so the check does not judge it twice.
    ``per_user``: the processes PT_USERPROC and the resource limits count, by user
    (``per_user.counted_processes``), worked out by whichever of the two runs first.
    ``v6only``: IPV6_V6ONLY of the tcp6 listeners by (netns, inode), read once, when the
    suspicious check first needs it (``suspicious.known_dual_stack``)."""

    verdicts: dict = field(default_factory=dict)
    per_user: Optional[dict] = None
    v6only: Optional[dict] = None


class HostReader(Protocol):
    """What an alert may attach, read from the host when the alert is sent (ptfast.act.respond
    reads it; the checks only say which)."""

    def process_maps(self, proc: Process) -> Optional[list]: ...
    def host_load(self, loadavg: tuple, processes: str, minutes: int) -> dict: ...


class Check(ABC):
    """One check: ``name`` in findings and JSON; the response it plans to each finding and
    lfd's log lines for it. A check is a ``SnapshotCheck``, a ``TimedCheck`` or an
    ``UnheldCheck``, and ``Alerting`` too when it sends an alert."""

    name: ClassVar[str]

    @abstractmethod
    def respond(self, finding: Finding, settings: TrackingSettings) -> Response:
        """What ``ptfast run`` does about the finding."""

    @abstractmethod
    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        """lfd's log lines for the finding (shape kept, so admins' greps keep matching);
        ``user_name(uid)`` names other users' processes."""


class SnapshotCheck(Check):
    """A check of one snapshot of the processes, run on every pass."""

    @abstractmethod
    def evaluate(self, judging: Judging, snapshot: Snapshot, work: PassWork) -> list:
        """The findings in ``snapshot``; ``work``: what this pass's checks share."""


class TimedCheck(Check):
    """A check of readings of the host taken on its own timer, not of a snapshot (load)."""

    @abstractmethod
    def evaluate(self, judging: Judging, reading, now: float) -> Optional[Finding]:
        """A finding about ``reading``, taken at ``now``, or None."""


class UnheldCheck(Check):
    """A check of a tracked listener that ``ptfast run``'s hopping walks (ptfast.act.tracking)
    looked for in every tracked account's processes and found held by none: not of a snapshot
    (a snapshot cannot tell a listener no process holds from one it did not walk)."""

    @abstractmethod
    def evaluate(self, judging: Judging, sock, first_seen: float) -> Finding:
        """The finding about listener ``sock``, first seen at ``first_seen``."""


class Alerting(ABC):
    """A check that sends an alert: ``template`` is the lfd alert file it mails
    (ptfast/channels/templates/). A check that sends none is no ``Alerting``."""

    template: ClassVar[str]

    def attachment(self, finding: Finding, settings: TrackingSettings, host: HostReader):
        """What the alert attaches, read from ``host`` when it is sent: nothing, unless the
        check says otherwise."""
        return None

    @abstractmethod
    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        """The placeholders of the template; ``attached``: what ``attachment`` read,
        ``user_name(uid)`` names other users' processes."""


def process_of(finding: Finding) -> Process:
    """The process of a finding whose check always names one."""
    if finding.process is None:
        raise ValueError(f"a {finding.check} finding without its process")
    return finding.process


def action_for(setting: Setting[str], path: str, args) -> Optional[Action]:
    """The action script ``path`` (the value of ``setting``), with ``args``; None when the
    setting is empty."""
    return Action(setting.name, path, tuple(args)) if path else None
