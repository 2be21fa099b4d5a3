"""lfd-format log lines: ``Mon DD HH:MM:SS shorthost lfd[PID]: message``.

Admins grep lfd.log for ``*Suspicious Process*`` and the like, and tools parse the ``lfd[PID]:``
tag, so ptfast writes the same shape (to its own file by default; pointing ``--log-file`` at
/var/log/lfd.log is safe, since every line is one O_APPEND write under an exclusive flock, as lfd
does). Messages must already be escaped: a process name must not be able to start a new line.

With csf.conf's ``SYSLOG = "1"`` every line also goes to syslog, as lfd sends it: ident ``lfd``,
options ndelay and pid, facility user, priority info, the log opened and closed for each line
(so a syslog daemon restarted meanwhile loses nothing).

Lines go only where no customer can reach (``safepaths``): a log path whose directories another
user could write, or that is a symbolic link, is refused, and every append opens the file with
``O_NOFOLLOW`` and checks it is a regular root-owned file.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

from ptfast.foundation import safepaths
from ptfast.foundation.paths import DEFAULT_LOG_FILE
LOG_TAG = "lfd"


def short_hostname() -> str:
    try:
        with open("/proc/sys/kernel/hostname", encoding="utf-8", errors="replace") as handle:
            name = handle.read().strip()
    except OSError:
        name = os.uname().nodename
    return name.split(".")[0]


def lfd_line(message: str, hostname: str, now: float | None = None) -> str:
    moment = time.localtime(now)
    stamp = time.strftime("%b %e %H:%M:%S", moment)
    return f"{stamp} {hostname} {LOG_TAG}[{os.getpid()}]: {message}\n"


def append_line(path: str, line: bytes) -> None:
    """One whole line onto ``path``: a single O_APPEND write under an exclusive flock, so lines
    from several writers never interleave. Raises OSError."""
    fd = safepaths.open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)


def send_to_syslog(message: str) -> None:
    """One line to syslog, as lfd's logfile() does with Sys::Syslog."""
    import syslog
    # the C API takes a NUL-terminated UTF-8 string: no NUL, no lone surrogate may reach it
    text = message.replace("\0", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    syslog.openlog(LOG_TAG, syslog.LOG_NDELAY | syslog.LOG_PID, syslog.LOG_USER)
    try:
        syslog.syslog(syslog.LOG_INFO, text)
    finally:
        syslog.closelog()


class LogFile:
    """Appends lfd-format lines to ``path``; with ``echo``, also writes the message to stderr
    (the journal, under systemd). A log that cannot be written is said once on stderr and the
    service goes on (``write`` raises instead, for lines that must not be lost: a finding's).
    A log path a customer could reach is never written (``refused`` says why, on stderr even
    without ``echo``); the service refuses to start over it."""

    def __init__(self, path: str | None = DEFAULT_LOG_FILE, echo: bool = True) -> None:
        self.path = path
        self.echo = echo
        self.to_syslog = False      # SYSLOG, set once the settings are read
        self.hostname = short_hostname()
        self.error: str | None = None     # why the last line could not be written
        self.refused = safepaths.path_problem(path, safepaths.FILE) if path else None

    def __call__(self, message: str) -> None:
        try:
            self.write(message)
        except OSError:
            pass                # said on stderr by write(); ``error`` keeps it for the status

    def write(self, message: str) -> None:
        """Like calling the log, but raises OSError when the line could not be appended to the
        file: a finding's log line must be written before it is remembered."""
        if self.echo or self.refused:
            print(message, file=sys.stderr, flush=True)
        if self.to_syslog:
            send_to_syslog(message)
        if not self.path or self.refused:
            return
        line = lfd_line(message, self.hostname).encode("utf-8", "surrogateescape")
        try:
            append_line(self.path, line)
            self.error = None
        except OSError as exc:
            if self.error is None:
                print(f"ptfast: cannot write the log {self.path}: {exc.strerror}",
                      file=sys.stderr, flush=True)
            self.error = f"{self.path}: {exc.strerror}"
            raise
