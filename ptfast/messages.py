"""Findings in words: lfd's log lines and the placeholder values of each alert template.

Formatting only (no I/O). Every attacker-chosen string is escaped here, once.
"""

from __future__ import annotations

from .bounds import bounded_lines, bounded_text
from .escape import escape_text
from .policy import (CHECK_FORKBOMB, CHECK_LOAD, CHECK_RESOURCE, CHECK_SSHD_HUNG,
                     CHECK_SUSPICIOUS, CHECK_USER_PROCESSES, RESOURCES, resource_amount)
from .report import shown_exe, socket_text

MAX_LOGGED_FORKBOMB_PROCESSES = 100


def process_line(proc, user: str) -> str:
    """One process in an alert's list."""
    return (f"PID {proc.pid} (parent {proc.ppid}) user {escape_text(user)} up {int(proc.age)} s "
            f"VM {proc.vm_size_bytes >> 20} MB RSS {proc.vm_rss_bytes >> 20} MB "
            f"exe {shown_exe(proc)} cmd {bounded_text(proc.cmdline)}")


def yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"


def log_messages(finding, killed: bool = False, user_name=str) -> list[str]:
    """lfd's log lines for a finding (shape kept, so admins' greps keep matching).
    ``user_name(uid)`` names the users of a fork bomb's processes."""
    proc, user = finding.process, escape_text(finding.user)
    check = finding.check
    if check == CHECK_SUSPICIOUS:
        return [f"*Suspicious Process* PID:{proc.pid} PPID:{proc.ppid} User:{user} "
                f"Uptime:{int(proc.age)} secs EXE:{shown_exe(proc)} "
                f"CMD:{bounded_text(proc.cmdline)}"]
    if check == CHECK_USER_PROCESSES:
        return [f"*Excessive Processes* User:{user} Kill:{int(killed)} "
                f"Process Count:{len(finding.processes)}"]
    if check == CHECK_RESOURCE:
        resource = finding.reasons[0]
        _setting, _attribute, _divisor, unit, field = RESOURCES[resource]
        return [f"*User Processing* PID:{proc.pid} Kill:{int(killed)} User:{user} "
                f"{field}:{resource_amount(proc, resource)}({unit}) EXE:{shown_exe(proc)} "
                f"CMD:{bounded_text(proc.cmdline)}"]
    if check == CHECK_FORKBOMB:
        procs = finding.processes
        lines = [f"*PT_FORKBOMB* PID:{p.pid} SID:{p.session} User:{escape_text(user_name(p.uid))} "
                 f"EXE:{shown_exe(p)} CMD:{bounded_text(p.cmdline)}"
                 for p in procs[:MAX_LOGGED_FORKBOMB_PROCESSES]]
        if len(procs) > MAX_LOGGED_FORKBOMB_PROCESSES:
            lines.append(f"*PT_FORKBOMB* ... and {len(procs) - MAX_LOGGED_FORKBOMB_PROCESSES} "
                         "more processes of the session")
        lines.append(f"*PT_FORKBOMB* {finding.level}: Killed:{yes_no(killed)}")
        return lines
    if check == CHECK_SSHD_HUNG:
        return [f"*PT_SSHDHUNG* PID:{proc.pid} PPID:{proc.ppid} User:{user} "
                f"Uptime:{int(proc.age)} secs CMD:{bounded_text(proc.cmdline)} "
                f"Killed:{yes_no(killed)}"]
    if check == CHECK_LOAD:
        return [f"*LOAD* {finding.reasons[0]}: {finding.level}"]
    raise ValueError(f"unknown check {check!r}")


def alert_values(finding, hostname: str, killed: bool = False, maps=None,
                 user_name=str) -> dict:
    """The placeholders of the finding's template (spec section 7)."""
    proc, user = finding.process, escape_text(finding.user)
    check = finding.check
    if check == CHECK_SUSPICIOUS:
        return {
            "hostname": hostname,
            "pid": f"{proc.pid} (Parent PID:{proc.ppid})",
            "user": user,
            "uptime": str(int(proc.age)),
            "exe": shown_exe(proc),
            "cmdline": bounded_text(proc.cmdline),
            "sockets": "\n".join(bounded_lines(finding.sockets, socket_text)),
            "files": "\n".join(bounded_lines(finding.open_files, bounded_text)),
            "maps": "\n".join(bounded_lines(maps or (), bounded_text)),
        }
    if check == CHECK_USER_PROCESSES:
        return {"hostname": hostname, "user": user, "count": str(len(finding.processes)),
                "text": "\n".join(bounded_lines(finding.processes,
                                                 lambda p: process_line(p, finding.user))),
                "kill": yes_no(killed)}
    if check == CHECK_RESOURCE:
        return {"hostname": hostname, "user": user, "pid": str(proc.pid), "exe": shown_exe(proc),
                "cmd": bounded_text(proc.cmdline), "resource": finding.reasons[0],
                "level": finding.level, "kill": yes_no(killed)}
    if check == CHECK_FORKBOMB:
        return {"hostname": hostname, "level": finding.level,
                "text": "\n".join(bounded_lines(finding.processes,
                                                 lambda p: process_line(p, user_name(p.uid))))}
    raise ValueError(f"no alert template for check {check!r}")
