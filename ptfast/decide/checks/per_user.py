"""The processes PT_USERPROC and the resource limits (PT_USERMEM, PT_USERRSS, PT_USERTIME)
count for each user, worked out once a pass for both checks, and PT_USERKILL's kill."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptfast.decide.checks.base import Judging, PassWork
from ptfast.decide.checks.web_server import is_web_server_child
from ptfast.decide.findings import NOBODY, kill_key

if TYPE_CHECKING:
    from ptfast.foundation.config import TrackingSettings


def counted_processes(policy: Judging, snapshot, work: PassWork) -> dict:
    """user -> processes that PT_USERPROC and the resource checks count: tracked users but
    nobody, no deleted executables, no ignored processes, no web server children under
    PT_SKIP_HTTP. Worked out once per pass (``work``) for both checks."""
    if work.per_user is None:
        work.per_user = _count_user_processes(policy, snapshot)
    return work.per_user


def _count_user_processes(policy: Judging, snapshot) -> dict:
    skip_http = policy.settings.PT_SKIP_HTTP
    by_pid = snapshot.by_pid() if skip_http else {}
    per_user: dict = {}
    for proc in snapshot.processes:
        if proc.exe_deleted:
            continue
        user = policy.tracked_user(proc.uid)
        if user is None or user == NOBODY or policy.ignores_process(proc):
            continue
        if skip_http and is_web_server_child(policy, proc, by_pid):
            continue
        per_user.setdefault(user, []).append(proc)
    return per_user


def user_kill(settings: TrackingSettings, procs) -> tuple:
    """PT_USERKILL: (processes to kill, (their uid,)); nothing without it."""
    if not settings.PT_USERKILL:
        return (), ()
    return tuple(kill_key(proc) for proc in procs), (procs[0].uid,)
