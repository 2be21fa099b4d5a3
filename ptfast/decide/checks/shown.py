"""Processes as the checks' log lines and alerts show them, escaped."""

from __future__ import annotations

from ptfast.foundation.bounds import bounded_text
from ptfast.foundation.escape import escape_text


def shown_exe(proc) -> str:
    """The executable as lfd shows it: the path, with " (deleted)" when the file is gone."""
    return escape_text(proc.exe) + (" (deleted)" if proc.exe_deleted else "")


def process_line(proc, user: str) -> str:
    """One process in an alert's list."""
    return (f"PID {proc.pid} (parent {proc.ppid}) user {escape_text(user)} up {int(proc.age)} s "
            f"VM {proc.vm_size_bytes >> 20} MB RSS {proc.vm_rss_bytes >> 20} MB "
            f"exe {shown_exe(proc)} cmd {bounded_text(proc.cmdline)}")


def yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"
