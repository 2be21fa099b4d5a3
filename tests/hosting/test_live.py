"""The bookkeeping of ``python3 -m tests.hosting --service`` (tests/hosting/live.py), on text as
ptfast writes it: which process a log line or a mail names, and which alert counts for an
attack. No bed needed."""

from __future__ import annotations

from .attacks import Planted
from .live import ALERT_LINE, MAIL_PIDS, Alert, _first_alert


def mail_pids(message: str) -> set:
    return {int(pid) for pattern in MAIL_PIDS for pid in pattern.findall(message)}


def test_a_single_alert_mail_names_its_process_not_the_parent():
    message = ("Subject: Suspicious process running under user pthost10\n\n"
               "Time:        Mon Dec  7 20:10:01 2026\n"
               "Process:     4242 (Parent PID:1)\n"
               "Command Line: /bin/bash -i\n")
    assert mail_pids(message) == {4242}


def test_a_digest_names_each_process_by_its_log_line():
    message = ("Subject: ptfast on bed: 2 more findings in one pass\n\n[text]\n"
               "*Suspicious Process* PID:4243 PPID:1 Account:pthost11 Uptime:20 secs\n"
               "*Suspicious Process* PID:4244 PPID:4243 Account:pthost12 Uptime:20 secs\n")
    assert mail_pids(message) == {4243, 4244}


def test_a_command_line_holding_pid_text_names_no_process():
    line = ("*Suspicious Process* PID:4245 PPID:1 Account:pthost13 Uptime:20 secs "
            "Executable:/usr/bin/perl Command Line:perl -e 'PID:4242 *x* PID:4242'")
    assert mail_pids("Subject: x\n\n" + line + "\n") == {4245}
    assert ALERT_LINE.search(line).group(2) == "4245"


def test_an_alert_before_the_attack_began_does_not_count_for_it():
    """A pool worker reported for its database query, then hijacked: only a later alert is
    the attack's."""
    planted = Planted("worker_c2", "title", "pthost12", [77], started_at=100.0)
    earlier = Alert(77, "Suspicious Process", 40.0, True, "php-fpm worker")
    assert _first_alert([earlier], planted) is None
    later = Alert(77, "Suspicious Process", 103.5, True, "attack worker_c2")
    other = Alert(78, "Suspicious Process", 101.0, True, "php-fpm worker")
    assert _first_alert([earlier, other, later], planted) == 103.5
