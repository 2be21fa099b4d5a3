"""The judging context of process tracking: the settings, the ignore rules, the user names,
what was reported before (read-only: ``findings.Remembered`` or ``state.ReportedState``) and
the host facts the checks ask about (is this a web server, a root service's worker, its socket
handed over). Pure: no I/O; what it must know of the host's files is injected.

The checks (``ptfast.decide.checks``) read a ``Policy`` through ``checks.base.Judging``;
``ptfast.decide.judgement`` runs them on one snapshot. lfd's defects (spec section 9) are not
copied: what was reported is keyed by (pid, start time), so a reused PID is a new process; user
names and regexes are resolved once and cached, not per process.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Callable, Optional

from ptfast.decide.checks.web_server import WEB_SERVER_NAMES
from ptfast.decide.findings import NOBODY, NOTHING_REMEMBERED, outlived
from ptfast.decide.pignore import IgnoreRules
from ptfast.foundation.escape import escape_text
from ptfast.foundation.users import DEFAULT_UID_MIN

if TYPE_CHECKING:
    from ptfast.foundation.config import Config, TrackingSettings
    from ptfast.scan.procfs import FileIdentity


#: The pid of init, which adopts every orphan: being its child proves nothing.
INIT_PID = 1
#: Directories shared by many packages: an executable beside the master's in one of these is
#: not thereby part of its service.
SHARED_BIN_DIRS = frozenset({"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin",
                             "/usr/local/sbin"})
#: NAME's private executables live in PREFIX/NAME (dovecot: /usr/lib/dovecot/imap-login).
PACKAGE_DIR_PREFIXES = ("/usr/lib", "/usr/lib64", "/usr/libexec", "/usr/local/lib",
                        "/usr/local/libexec")


class Policy:
    """Settings, ignore rules, user names, memory and host facts, which the checks read and
    never change (a pass's working data is ``checks.base.PassWork``). Made afresh for each
    pass, with that pass's settings and memory."""

    def __init__(self, config: Config, rules: IgnoreRules, user_name: Callable[[int], str],
                 panel_users: frozenset = frozenset(), memory=NOTHING_REMEMBERED,
                 limit: Optional[float] = None,
                 file_identity: Callable[[str], Optional[FileIdentity]] = lambda path: None,
                 uid_min: int = DEFAULT_UID_MIN, now: Optional[float] = None,
                 host_addresses: Callable[[], frozenset] = frozenset,
                 customer_code_uids: frozenset = frozenset(), aged_by: float = 0.0,
                 v6only_listeners: Callable[[], dict] = dict, lifetimes=None) -> None:
        # ``limit`` replaces PT_LIMIT: `ptfast tune` tries other values under the same rules
        self.settings: TrackingSettings = config.settings.tracking
        self.limit = self.settings.PT_LIMIT if limit is None else limit
        self.rules = rules
        self.user_name = user_name
        self.panel_users = panel_users
        self.memory = memory
        # stat() of a path in ptfast's own mount namespace (injected: the policy does no I/O)
        self.file_identity = file_identity
        self.uid_min = uid_min
        # this host's own addresses (ip_address objects), read when a pass ranks its mails
        self.host_addresses = host_addresses
        # accounts that run customers' code (web server users, nobody, PT_CUSTOMER_CODE_USERS)
        self.customer_code_uids = customer_code_uids
        # reads (netns, inode) -> IPV6_V6ONLY of the tcp6 listeners (procfs.v6only_listeners);
        # a pass reads it once, only when it needs it (checks.suspicious.known_dual_stack)
        self.v6only_listeners = v6only_listeners
        self.generic = self.settings.GENERIC
        self.all_users = self.settings.PT_ALL_USERS
        # test-only (age_offset_for_tests): seconds a process's age counts more against PT_LIMIT,
        # and a connection's against PT_CONN_AGE. Never negative: it can make a process or a
        # connection look older (count sooner), never younger.
        self.aged_by = max(0.0, aged_by)
        # decide.lifetimes.Lifetimes: connections' ages and calls to other hosts (None: no
        # sighting of sockets over time, every connection counts at once, as lfd)
        self.lifetimes = lifetimes
        # when this judgment is made (the memory's listener ages are measured to it)
        self.now = time.time() if now is None else now
        # accounts that created or held a listener that outlived PT_LIMIT: their young
        # processes get an fd walk too, as a listener handed from one young process to the
        # next (of the same account or another) must not hide
        self.hopping_uids = (memory.listener_uids(self.limit, self.now) if self.limit > 0
                             else set())
        # uid -> tracked_user's answer: a fact of these settings, worked out once
        self._tracked_users: dict[int, Optional[str]] = {}

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def within_limit(self, proc) -> bool:
        """``proc`` is not older than PT_LIMIT (too young to be judged suspicious)."""
        return proc.age + self.aged_by <= self.limit

    def young_connection(self, age: float) -> bool:
        """A connection held ``age`` s so far is younger than PT_CONN_AGE: it does not count
        yet."""
        return age + self.aged_by < self.settings.PT_CONN_AGE

    @property
    def conn_age_wait(self) -> float:
        """Seconds a connection must be seen held before it counts: PT_CONN_AGE, less the
        test-only age offset (never below 0)."""
        return max(0.0, self.settings.PT_CONN_AGE - self.aged_by)

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
        """An exe rule matches the process and it runs that very host file, or a cmd rule
        matches its command line."""
        return ((self.rules.ignores("exe", proc.exe) and self.runs_host_file(proc))
                or self.rules.ignores("cmd", proc.cmdline))

    def runs_host_file(self, proc) -> bool:
        """The process runs the file its exe path names in ptfast's mount namespace (same
        device and inode): not a customer's binary mounted over that path in a namespace of its
        own, not a deleted or replaced file."""
        identity = self.file_identity(proc.exe)
        return (identity is not None and proc.exe_ino != 0
                and (identity.dev, identity.ino) == (proc.exe_dev, proc.exe_ino))

    def is_web_server(self, proc) -> bool:
        """PT_SKIP_HTTP's web server: a root process whose executable, named as a web server,
        is a system file (root-owned, not group/other writable). A customer's own binary
        named "nginx" or "httpd" is none."""
        return (proc.uid == 0 and os.path.basename(proc.exe) in WEB_SERVER_NAMES
                and proc.exe_uid == 0 and not proc.exe_mode & 0o022)

    def outlived_holders(self, sock) -> bool:
        """A tracked user's listener first seen more than PT_LIMIT ago and not yet reported,
        whatever the age of the process holding it now."""
        seen = self.memory.listener_seen(sock.netns, sock.inode)
        return seen is not None and outlived(seen, self.limit, self.now)

    def handed_over(self, sock, proc) -> bool:
        """The socket was created by root or a system account, not by the process's user: it
        was handed to the process (inherited, or passed over a unix socket). No customer can
        create one. An account that runs customers' code (customer_code_uids) is a customer's:
        what it creates is no service's."""
        return (sock.uid != proc.uid and (sock.uid == 0 or sock.uid < self.uid_min)
                and sock.uid not in self.customer_code_uids)

    def service_master(self, proc, by_pid: dict):
        """The root process whose worker ``proc`` is, or None. Only its parent can be, a root
        process other than init, and only when

        * it forked ``proc`` and ``proc`` has not exec'd since (``forked_unchanged``, which the
          kernel proves): a pre-fork worker (php-fpm, nginx, apache2), an sshd session; or
        * ``proc`` runs another system program of the master's own package
          (``runs_package_program``): dovecot's imap-login and imap, postfix's smtpd, which the
          master forks and execs by design. Weaker: the kernel proves the parent and the file,
          not who exec'd it; no customer's code runs in such a master's children.

        A child of a worker, or anything that exec'd the master's own program again (with
        LD_PRELOAD, or its own configuration), is no worker: resembling one proves nothing."""
        master = by_pid.get(proc.ppid)
        if (master is None or master.uid != 0 or master.pid == proc.pid
                or proc.ppid == INIT_PID):
            return None
        if self.forked_unchanged(proc, master) or self.runs_package_program(proc, master):
            return master
        return None

    @staticmethod
    def forked_unchanged(proc, parent) -> bool:
        """``parent`` forked ``proc`` (its pid as the parent's already says so) and ``proc``
        has not exec'd since: the kernel's PF_FORKNOEXEC, set by fork and cleared by exec, which
        no process can set or keep itself. The address-space layout would not do: any process
        may rewrite it (prctl PR_SET_MM_MAP, with CONFIG_CHECKPOINT_RESTORE, no privilege)."""
        return (proc.fork_no_exec and proc.exe_ino != 0
                and (proc.exe_dev, proc.exe_ino) == (parent.exe_dev, parent.exe_ino))

    def runs_package_program(self, proc, master) -> bool:
        """``proc`` runs a system file (root's, in a root-owned directory, no one else may
        write either) in ``master``'s own package directory (PREFIX/NAME, or the master's
        directory when it is not a shared one such as /usr/sbin), and not the master's own
        program: a re-exec of that one is how a webshell dresses up as a worker."""
        if proc.exe_ino == 0 or (proc.exe_dev, proc.exe_ino) == (master.exe_dev, master.exe_ino):
            return False
        name = os.path.basename(master.exe)
        master_dir, worker_dir = os.path.dirname(master.exe), os.path.dirname(proc.exe)
        package_dirs = {f"{prefix}/{name}" for prefix in PACKAGE_DIR_PREFIXES}
        if master_dir not in SHARED_BIN_DIRS:
            package_dirs.add(master_dir)
        if worker_dir not in package_dirs or not self.runs_host_file(proc):
            return False
        worker_file, directory = self.file_identity(proc.exe), self.file_identity(worker_dir)
        return (worker_file is not None and worker_file.is_system_file()
                and directory is not None and directory.is_system_file())


#: TEST-ONLY. Seconds added to a process's age where it is judged against PT_LIMIT or, by
#: `ptfast tune`, against a candidate limit (and nowhere else: not PT_USERTIME, the hung-sshd
#: grace, the fork bomb's young forkers, the listener memory, any age shown), so that the test suite need not sleep past PT_LIMIT before a
#: `ptfast scan` or `ptfast run` subprocess judges a process it just started. It is read from
#: the environment of the ptfast process alone (root's, set by whoever starts ptfast: no
#: customer can set it) and only in [0, MAX_TEST_AGE_OFFSET]: it can make ptfast inspect and
#: report more, and sooner, never less or later. Anything else is refused (ignored, said on
#: stderr). Not a setting: never set it on a server.
TEST_AGE_OFFSET = "PTFAST_TEST_AGE_OFFSET"
MAX_TEST_AGE_OFFSET = 3600.0


@functools.lru_cache(maxsize=None)
def age_offset_for_tests(text: Optional[str] = None) -> float:
    """PTFAST_TEST_AGE_OFFSET's seconds (``text``, by default the environment's), or 0.0 when
    it is unset or refused. Said once on stderr when in force or refused: it is never quiet."""
    if text is None:
        text = os.environ.get(TEST_AGE_OFFSET)
        if text is None:
            return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0.0 <= seconds <= MAX_TEST_AGE_OFFSET:     # NaN, inf and negatives too
        print(f"ptfast: {TEST_AGE_OFFSET}={escape_text(text)} refused (test-only, seconds "
              f"from 0 to {MAX_TEST_AGE_OFFSET:g}): process ages are read as they are",
              file=sys.stderr)
        return 0.0
    print(f"ptfast: {TEST_AGE_OFFSET}={seconds:g} in force (test-only): every process counts "
          f"{seconds:g} s older against PT_LIMIT, every connection against PT_CONN_AGE",
          file=sys.stderr)
    return seconds


def build_policy(config: Config, rules: IgnoreRules, memory=NOTHING_REMEMBERED,
                 limit: Optional[float] = None, user_names=None, lifetimes=None) -> Policy:
    """The one place a Policy is made from settings (scan, tune and run), with this host's
    accounts and files."""
    from ptfast.scan.procfs import FileIdentities, host_addresses, v6only_listeners
    from ptfast.foundation.users import UserNames, accounts_to_track, customer_code_uids, uid_min
    accounts = config.settings.accounts
    return Policy(config, rules, user_names or UserNames(), accounts_to_track(accounts), memory,
                  limit, FileIdentities(), uid_min(), host_addresses=host_addresses,
                  customer_code_uids=customer_code_uids(accounts), aged_by=age_offset_for_tests(),
                  v6only_listeners=v6only_listeners, lifetimes=lifetimes)
