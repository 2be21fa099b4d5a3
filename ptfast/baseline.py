"""``ptfast baseline``: a reviewed draft of csf.pignore lines for day one.

One scan; the suspicious processes grouped by (user, executable, listening ports), each group
printed as the ignore line that would cover it, with what it covers in comments. Only lines no
customer can borrow are left active: ``user:`` for a system account (below UID_MIN), ``exe:``
for a system file (root's, not writable by others) that is no interpreter. The rest are printed
commented out, with the reason. Nothing is ever applied: anything already compromised on the
host would be baselined too, and the header says so.
"""

from __future__ import annotations

import os
import re
import time

from .checks import is_listening, socket_text
from .escape import escape_text

#: Programs that run whatever code they are given: an exe: rule for one would hide every
#: script of every user.
INTERPRETER = re.compile(r"(python|perl|php|ruby|node|nodejs|java|bash|sh|dash|zsh|ksh|csh|tcsh|"
                         r"busybox|lua|luajit|tclsh|wish|awk|gawk|mawk|env|ld-linux.*|ld\.so|"
                         r"php-cgi|php-fpm|qemu.*)[0-9.]*")
MAX_GROUPS = 500


def group_key(finding) -> tuple:
    listening = sorted({f"{sock.proto} {sock.local_port}" for sock, counts, _why
                        in finding.judged_sockets if counts and is_listening(sock)})
    return finding.user, finding.process.exe, tuple(listening)


def rule_for(finding, uid_min: int, file_identity) -> tuple:
    """(rule line, active, why) for the group ``finding`` stands for; ``file_identity(path)``
    is stat() of a host path."""
    proc = finding.process
    if 0 < proc.uid < uid_min and escape_text(finding.user) == finding.user:
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
    return f"exe:{exe}", True, "a system file: any user running this program is ignored too"


def draft(findings: list, hostname: str, uid_min: int, file_identity,
          now: float | None = None) -> str:
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
        rule, active, why = rule_for(example, uid_min, file_identity)
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

