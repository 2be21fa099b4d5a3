"""``ptfast baseline``: a reviewed draft of csf.pignore lines for day one.

One scan; the suspicious processes grouped by (user, executable, listening ports), each group
printed as the ignore line that would cover it, with what it covers in comments. Only lines no
customer can borrow are left active: ``user:`` for a system account (below UID_MIN) that runs
no customer's code (not a web server's account: users.customer_code_accounts), ``exe:`` for a
system file (root's, not writable by others) that is no interpreter and that no customer can
execute. The rest are printed commented out, with the reason. Nothing is ever applied: anything
already compromised on the host would be baselined too, and the header says so.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import time
from typing import Callable, Optional

from ptfast.decide.checks.sockets import is_listening, socket_text
from ptfast.foundation.escape import escape_text
from ptfast.foundation.config import Config

#: Programs that run whatever code they are given: an exe: rule for one would hide every
#: script of every user.
INTERPRETER = re.compile(r"(python|perl|php|ruby|node|nodejs|java|bash|sh|dash|zsh|ksh|csh|tcsh|"
                         r"busybox|lua|luajit|tclsh|wish|awk|gawk|mawk|env|ld-linux.*|ld\.so|"
                         r"php-cgi|php-fpm|qemu.*)[0-9.]*")
MAX_GROUPS = 500
POSIX_ACL = "system.posix_acl_access"


class Customers:
    """Who counts as a customer for the draft: every account from UID_MIN up (a panel's
    accounts among them) and the accounts that run customers' code; ``gids`` are the groups any
    of them is in (primary or supplementary)."""

    def __init__(self, names: frozenset, uids: frozenset, gids: frozenset,
                 code_accounts: frozenset) -> None:
        self.names, self.uids, self.gids = names, uids, gids
        self.code_accounts = code_accounts      # of them, those that run customers' code

    @classmethod
    def of_host(cls, uid_min: int, config: Config | None = None) -> "Customers":
        """This host's customers; with ``config``, PT_CUSTOMER_CODE_USERS's accounts too."""
        from ptfast.foundation.users import customer_code_accounts
        code_accounts = customer_code_accounts(
            config.settings.accounts if config is not None else None)
        accounts = [entry for entry in pwd.getpwall()
                    if entry.pw_uid >= uid_min or entry.pw_name in code_accounts]
        names = frozenset(entry.pw_name for entry in accounts)
        gids = {entry.pw_gid for entry in accounts}
        gids.update(group.gr_gid for group in grp.getgrall() if names.intersection(group.gr_mem))
        return cls(names, frozenset(entry.pw_uid for entry in accounts), frozenset(gids),
                   code_accounts)

    def who_can_execute(self, path: str, stat_path=os.stat,
                        has_acl: Optional[Callable[[str], bool]] = None) -> Optional[str]:
        """Why a customer can execute the file ``path``, or None when none can. A file that
        cannot be stat()ed counts as one they can (nothing proves otherwise)."""
        try:
            info = stat_path(path)
        except (OSError, ValueError):
            return "its file cannot be examined"
        mode = info.st_mode
        if mode & stat.S_IXOTH:
            return "any user can run it (executable by others)"
        if mode & stat.S_IXGRP and info.st_gid in self.gids:
            return f"group {info.st_gid} can run it, and a customer account is in that group"
        if mode & stat.S_IXUSR and info.st_uid in self.uids:
            return "a customer account owns it"
        # with an ACL the group bits are its mask: a named entry may grant a customer execution
        if mode & stat.S_IXGRP and (has_acl or _has_acl)(path):
            return "an ACL on its file may let a customer run it"
        return None


def _has_acl(path: str) -> bool:
    try:
        return POSIX_ACL in os.listxattr(path)
    except OSError:
        return True             # cannot tell: assume the worst


def group_key(finding) -> tuple:
    listening = sorted({f"{sock.proto} {sock.local_port}" for sock, counts, _why
                        in finding.judged_sockets if counts and is_listening(sock)})
    return finding.user, finding.process.exe, tuple(listening)


def rule_for(finding, uid_min: int, file_identity, customers: Customers) -> tuple:
    """(rule line, active, why) for the group ``finding`` stands for; ``file_identity(path)``
    is stat() of a host path."""
    proc = finding.process
    if 0 < proc.uid < uid_min and escape_text(finding.user) == finding.user:
        if finding.user in customers.code_accounts:
            return (f"user:{finding.user}", False, "an account that runs customers' code (a "
                    "web server's, PHP's or CGI's): the rule would hide every customer's script "
                    "run as it")
        return f"user:{finding.user}", True, "a system account: no customer can become it"
    exe = proc.exe
    if escape_text(exe) != exe or exe != exe.strip():
        return (f"exe:{escape_text(exe)}", False, "the path holds characters a rule line "
                "cannot carry: no exact rule can name it")
    if proc.exe_deleted:
        return f"exe:{exe}", False, "its file is deleted: no rule can name it (investigate)"
    if INTERPRETER.fullmatch(os.path.basename(exe)):
        return (f"exe:{exe}", False, "an interpreter: the rule would hide every script of "
                "every user run by it")
    directory = file_identity(os.path.dirname(exe))
    if (proc.exe_uid != 0 or proc.exe_mode & 0o022 or directory is None
            or not directory.is_system_file()):
        return (f"exe:{exe}", False, "a file (or directory) someone other than root can "
                "change: whatever is put there would be hidden too")
    borrowed = customers.who_can_execute(exe)
    if borrowed is not None:
        return (f"exe:{exe}", False, f"{borrowed}: the rule would hide a customer's own "
                "listener run by this program too")
    return (f"exe:{exe}", True, "a system file no customer can execute: every process "
            "running this program is ignored")


def draft(findings: list, hostname: str, uid_min: int, file_identity,
          customers: Customers, now: float | None = None) -> str:
    groups: dict = {}
    for finding in findings:
        groups.setdefault(group_key(finding), []).append(finding)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(now))
    lines = [
        f"# ptfast baseline of {escape_text(hostname)}, {stamp}: a DRAFT, never applied by "
        "ptfast.",
        "# Every active line below hides what it matches from now on. Anything already "
        "compromised on this",
        "# host is listed too: investigate each group before you copy a line into "
        "/etc/csf/csf.pignore.",
        f"# {len(findings)} suspicious process(es) in {len(groups)} group(s) of (user, "
        "executable, listening ports).",
    ]
    for number, ((user, exe, listening), members) in enumerate(sorted(
            groups.items(), key=lambda item: (-len(item[1]), item[0]))):
        if number == MAX_GROUPS:
            lines += ["", f"# ... and {len(groups) - MAX_GROUPS} more groups"]
            break
        example = members[0]
        rule, active, why = rule_for(example, uid_min, file_identity, customers)
        ports = ", ".join(listening) or "no listening port"
        lines += ["", f"# user {escape_text(user)}, {escape_text(exe)}, listening: {ports} "
                      f"({len(members)} process(es))",
                  f"#   e.g. PID {example.process.pid}: "
                  f"{escape_text(example.process.cmdline)[:200]}"]
        for sock, counts, _why in example.judged_sockets[:5]:
            if counts:
                lines.append(f"#   {socket_text(sock)}")
        lines.append(f"#   {why}")
        lines.append(rule if active else f"# {rule}")
    return "\n".join(lines) + "\n"

