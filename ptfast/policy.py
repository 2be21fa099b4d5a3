"""Decisions of process tracking: which processes to report, and what ``ptfast run`` does about
each finding.

Pure: no I/O. A ``Policy`` is the judgment of one scan: the settings, the ignore rules, the
user names and what was reported before (read-only: ``findings.Remembered`` or
``state.ReportedState``). Each check of lfd's process
tracking (``ptfast.checks``) finds what it finds in a snapshot and plans the response to each
finding: what to kill (exact processes), which alert to mail, what to remember for how long,
which action script to run. ``ptfast run`` only carries these plans out (``ptfast.respond``);
``ptfast scan --json`` shows them, so an admin sees what ``run`` would do.

lfd's order is kept (spec section 5); its defects (spec section 9) are not copied:

* listening sockets and sockets of every address family count (lfd dropped all-zero and many
  hex-looking addresses);
* deletion comes from the scanner's link-count test, not from "(deleted)" in the path text;
* what was reported is keyed by (pid, start time), so a reused PID is a new process;
* user names and regexes are resolved once and cached, not per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from .checks import LOAD, SNAPSHOT_CHECKS, SUSPICIOUS
from .findings import NOBODY, NOTHING_REMEMBERED, Finding, process_key
from .pignore import IgnoreRules

if TYPE_CHECKING:
    from .config import Config
    from .procfs import Snapshot


class Policy:
    """Settings, ignore rules, user names and memory, applied to one scan at a time.

    During the walk the scanner asks ``want_fds(proc)`` (only candidates older than PT_LIMIT
    get an fd walk); ``findings(snapshot)`` then reuses those verdicts and forgets them.
    """

    def __init__(self, config: Config, rules: IgnoreRules, user_name: Callable[[int], str],
                 panel_users: frozenset = frozenset(), memory=NOTHING_REMEMBERED,
                 limit: Optional[float] = None) -> None:
        # ``limit`` replaces PT_LIMIT: `ptfast tune` tries other values under the same rules
        self.limit = config["PT_LIMIT"] if limit is None else limit
        self.config = config
        self.rules = rules
        self.user_name = user_name
        self.panel_users = panel_users
        self.memory = memory
        self.generic = bool(config["GENERIC"])
        self.all_users = bool(config["PT_ALL_USERS"])
        # process key -> the suspicious check's verdict from want_fds (None: not a candidate)
        self._verdicts: dict = {}
        self._tracked_users: dict[int, Optional[str]] = {}

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def tracked_user(self, uid: int) -> Optional[str]:
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

    def ignores_process(self, proc) -> bool:
        """An exe or cmd rule matches the process."""
        return self.rules.ignores("exe", proc.exe) or self.rules.ignores("cmd", proc.cmdline)

    def want_fds(self, proc) -> bool:
        """Predicate for the scanner: inspect fds only of candidates older than PT_LIMIT, so
        ignored and young processes cost no fd walk."""
        if not self.enabled or proc.age <= self.limit:
            return False
        verdict = self._verdicts[process_key(proc)] = SUSPICIOUS.candidate(self, proc)
        return verdict is not None

    def take_verdict(self, proc):
        """The verdict want_fds gave ``proc`` in this scan, or a fresh one."""
        key = process_key(proc)
        if key in self._verdicts:
            return self._verdicts.pop(key)
        return SUSPICIOUS.candidate(self, proc)

    def findings(self, snapshot: Snapshot, checks=None) -> list:
        """Every per-snapshot check (or those of ``checks``), in lfd's order, each finding with
        its planned response."""
        found = []
        for check in checks or SNAPSHOT_CHECKS:
            for finding in check.evaluate(self, snapshot):
                finding.response = check.respond(finding, self.config)
                found.append(finding)
        self._verdicts.clear()
        return found

    def load_finding(self, loadavg: tuple, processes: str, now: float) -> Optional[Finding]:
        """PT_LOAD: a finding (with its response) when the load average is high, outside the
        quiet period; else None."""
        finding = LOAD.evaluate_load(self.config, loadavg, processes, now,
                                     self.memory.load_quiet_until)
        if finding is not None:
            finding.response = LOAD.respond(finding, self.config)
        return finding


def build_policy(config: Config, rules: IgnoreRules, memory=NOTHING_REMEMBERED,
                 limit: Optional[float] = None, user_names=None) -> Policy:
    """The one place a Policy is made from settings (scan, tune and run)."""
    from .users import UserNames, accounts_to_track
    return Policy(config, rules, user_names or UserNames(), accounts_to_track(config), memory,
                  limit)
