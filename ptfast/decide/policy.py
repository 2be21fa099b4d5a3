"""Decisions of process tracking: which processes to report, and what ``ptfast run`` does about
each finding.

Pure: no I/O. A ``Policy`` is the judgment of one scan: the settings, the ignore rules, the
user names and what was reported before (read-only: ``findings.Remembered`` or
``state.ReportedState``). Each check of lfd's process
tracking (``ptfast.decide.checks``) finds what it finds in a snapshot and plans the response to each
finding: what to kill (exact processes), which alert to mail, what to remember for how long,
which action script to run. ``ptfast run`` only carries these plans out (``ptfast.act.respond``);
``ptfast scan --json`` shows them, so an admin sees what ``run`` would do.

lfd's order is kept (spec section 5); its defects (spec section 9) are not copied:

* listening sockets and sockets of every address family count (lfd dropped all-zero and many
  hex-looking addresses);
* deletion comes from the scanner's link-count test, not from "(deleted)" in the path text;
* what was reported is keyed by (pid, start time), so a reused PID is a new process;
* user names and regexes are resolved once and cached, not per process.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import time
from typing import TYPE_CHECKING, Callable, Optional

from ptfast.decide.checks import LOAD, SNAPSHOT_CHECKS, SUSPICIOUS, WEB_SERVER_NAMES, is_listening
from ptfast.decide.findings import (CHECK_FORKBOMB, CHECK_SUSPICIOUS, DIGEST_TEMPLATE, NOBODY,
                                    NOTHING_REMEMBERED, REASON_INCOMPLETE, FileIdentity, Finding,
                                    outlived, process_key)
from ptfast.decide.pignore import IgnoreRules
from ptfast.foundation.users import DEFAULT_UID_MIN

if TYPE_CHECKING:
    from ptfast.foundation.config import Config
    from ptfast.scan.procfs import Snapshot


#: take_verdict's mark for a process want_fds was not asked about (None is a verdict)
_NOT_ASKED = object()
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
    """Settings, ignore rules, user names and memory, applied to one scan at a time.

    During the walk the scanner asks ``want_fds(proc)`` (only candidates older than PT_LIMIT
    get an fd walk); ``findings(snapshot)`` then reuses those verdicts and forgets them.
    """

    def __init__(self, config: Config, rules: IgnoreRules, user_name: Callable[[int], str],
                 panel_users: frozenset = frozenset(), memory=NOTHING_REMEMBERED,
                 limit: Optional[float] = None,
                 file_identity: Callable[[str], Optional[FileIdentity]] = lambda path: None,
                 uid_min: int = DEFAULT_UID_MIN, now: Optional[float] = None,
                 host_addresses: Callable[[], frozenset] = frozenset,
                 customer_code_uids: frozenset = frozenset(),
                 v6only_listeners: Callable[[], dict] = dict) -> None:
        # ``limit`` replaces PT_LIMIT: `ptfast tune` tries other values under the same rules
        self.limit = config["PT_LIMIT"] if limit is None else limit
        self.config = config
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
        # (netns, inode) -> IPV6_V6ONLY of the tcp6 listeners, read when a pass needs it
        self.v6only_listeners = v6only_listeners
        self.generic = bool(config["GENERIC"])
        self.all_users = bool(config["PT_ALL_USERS"])
        # process key -> the suspicious check's verdict from want_fds (None: not a candidate)
        self._verdicts: dict = {}
        # what checks work out once per snapshot and share (cleared with the verdicts)
        self.scratch: dict = {}
        # when this judgment is made (the memory's listener ages are measured to it)
        self.now = time.time() if now is None else now
        # accounts that created or held a listener that outlived PT_LIMIT: their young
        # processes get an fd walk too, as a listener handed from one young process to the
        # next (of the same account or another) must not hide
        self.hopping_uids = (memory.listener_uids(self.limit, self.now) if self.limit > 0
                             else set())
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

    def dual_stack(self, listener) -> bool:
        """``listener`` (tcp6) is known not to be IPV6_V6ONLY: it accepts IPv4 connections,
        and no one else can bind an IPv4-mapped address of its port. Unknown (another network
        namespace, netlink refused) is no: a mapped connection is then not taken for its."""
        known = self.scratch.get("v6only")
        if known is None:
            known = self.scratch["v6only"] = self.v6only_listeners()
        return known.get((listener.netns, listener.inode)) is False

    def want_fds(self, proc) -> bool:
        """Predicate for the scanner: inspect fds only of candidates older than PT_LIMIT, so
        ignored and young processes cost no fd walk."""
        if not self.enabled or (proc.age <= self.limit and proc.uid not in self.hopping_uids):
            return False
        key = process_key(proc)
        verdict = self._verdicts[key] = SUSPICIOUS.candidate(self, proc, key)
        return verdict is not None

    def take_verdict(self, proc):
        """The verdict want_fds gave ``proc`` in this scan, or a fresh one."""
        key = process_key(proc)
        verdict = self._verdicts.pop(key, _NOT_ASKED)
        return SUSPICIOUS.candidate(self, proc, key) if verdict is _NOT_ASKED else verdict

    def findings(self, snapshot: Snapshot, checks=None) -> list:
        """Every per-snapshot check (or those of ``checks``), in lfd's order, each finding with
        its planned response."""
        found = []
        for check in checks or SNAPSHOT_CHECKS:
            for finding in check.evaluate(self, snapshot):
                finding.response = check.respond(finding, self.config)
                found.append(finding)
        self._verdicts.clear()
        self.scratch.clear()
        return digest_beyond(found, self.config["PT_DIGEST_AFTER"], self.host_addresses)

    def load_finding(self, loadavg: tuple, processes: str, now: float) -> Optional[Finding]:
        """PT_LOAD: a finding (with its response) when the load average is high, outside the
        quiet period; else None."""
        finding = LOAD.evaluate_load(self.config, loadavg, processes, now,
                                     self.memory.load_quiet_until)
        if finding is not None:
            finding.response = LOAD.respond(finding, self.config)
        return finding


#: severity() ranks, most severe first
OPEN_TO_NETWORK, CONCEALED, LOOPBACK_LISTENER, LOCAL_ONLY, USAGE = range(5)


def severity(finding: Finding, host_addresses: frozenset) -> int:
    """How urgently the admin must read about ``finding``: the order in which a pass's
    findings get their single mails (the first PT_DIGEST_AFTER) and the digest lists the rest.

    OPEN_TO_NETWORK: a counted listener on any address but loopback, or a counted socket whose
        peer is not this host: what a bind shell, a reverse shell or a bot's C2 channel is.
        A peer address that is no IP address (a packet socket's, a protocol ptfast cannot
        classify) counts as elsewhere: what cannot be told local is not ranked as local.
    CONCEALED: a fork bomb (the host's own availability, killed at once), or a process not
        fully inspected (what could not be read may be that listener).
    LOOPBACK_LISTENER: a listener only this host can reach (a tunnel's end, a dev server).
    LOCAL_ONLY: connections to this host's own services (loopback or ``host_addresses``: a
        site talking to its database), and deleted executables: most are an upgrade or a
        build, and they stay in the log and events file whatever their rank.
    USAGE: too many processes, too much memory or time: limits, not intrusions.

    Without this, the single mails went to the first findings in PID order: a customer's
    300 processes holding connections to the local database took them all, and the real
    backdoor, started later, reached the admin only inside the digest.
    """
    if finding.check == CHECK_FORKBOMB:
        return CONCEALED
    if finding.check != CHECK_SUSPICIOUS:
        return USAGE
    rank = LOCAL_ONLY
    for sock, counts, _why in finding.judged_sockets:
        if not counts:
            continue
        if is_listening(sock):
            if not _is_loopback(sock.local_ip):
                return OPEN_TO_NETWORK
            rank = min(rank, LOOPBACK_LISTENER)
        elif not _is_this_host(sock.remote_ip, host_addresses):
            return OPEN_TO_NETWORK
    if REASON_INCOMPLETE in finding.reasons:
        rank = min(rank, CONCEALED)
    return rank


@functools.lru_cache(maxsize=4096)
def _address(text: str):
    # cached: a flood of processes holds thousands of sockets to the same few peers
    try:
        address = ipaddress.ip_address(text)
    except ValueError:          # a packet socket's interface, an unknown family: not an IP
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _is_loopback(ip: str) -> bool:
    address = _address(ip)
    return address is not None and address.is_loopback


def _is_this_host(ip: str, host_addresses: frozenset) -> bool:
    address = _address(ip)
    # unspecified: no peer at all (a socket bound but neither listening nor connected)
    return address is not None and (address.is_loopback or address.is_unspecified
                                    or address in host_addresses)


def digest_beyond(found: list, mails: int,
                  host_addresses: Callable[[], frozenset] = frozenset) -> list:
    """One pass is not a mail flood: the ``mails`` most severe findings that mail
    (PT_DIGEST_AFTER; ``severity``, then the accounts in turn, then lfd's order) are mailed
    one by one, as lfd does, the rest in one digest mail listing them, most severe first (0:
    every one on its own). Each is
    still logged, written to the events file and remembered. ``found`` keeps lfd's order;
    each mailing finding's ``severity`` is set when some go to the digest."""
    mailing = [finding for finding in found if finding.response.alert is not None]
    if mails <= 0 or len(mailing) <= mails:
        return found
    addresses = host_addresses()
    # within a rank, the accounts take turns: one account's flood of listeners cannot push
    # another account's backdoor of the same rank out of the single mails
    turns: dict = {}
    turn_of = {}
    for finding in mailing:
        finding.severity = severity(finding, addresses)
        account = (finding.severity, finding.user)
        turn_of[id(finding)] = turns[account] = turns.get(account, -1) + 1
    # sorted() is stable: within a rank and a turn, lfd's order
    for finding in sorted(mailing, key=lambda finding: (finding.severity,
                                                        turn_of[id(finding)]))[mails:]:
        finding.response.alert = DIGEST_TEMPLATE
    return found


def build_policy(config: Config, rules: IgnoreRules, memory=NOTHING_REMEMBERED,
                 limit: Optional[float] = None, user_names=None) -> Policy:
    """The one place a Policy is made from settings (scan, tune and run), with this host's
    accounts and files."""
    from ptfast.scan.procfs import FileIdentities, host_addresses, v6only_listeners
    from ptfast.foundation.users import UserNames, accounts_to_track, customer_code_uids, uid_min
    return Policy(config, rules, user_names or UserNames(), accounts_to_track(config), memory,
                  limit, FileIdentities(), uid_min(), host_addresses=host_addresses,
                  customer_code_uids=customer_code_uids(config),
                  v6only_listeners=v6only_listeners)
