"""Kills: exactly the processes a response names, each checked to be still the process the
policy chose (same pid, start time and uid), never root.

With a pidfd (Linux 5.3+) the process is pinned while it is checked, so a PID the kernel hands
to a newcomer after the scan is never signalled. Older kernels (EL8 runs 4.18) have no pidfd:
there the check is made just before kill(), and one race remains: if the process exits and the
kernel gives its PID to a new process between the check and the kill (microseconds, and only
after the PID space wrapped around), the newcomer is signalled. The newcomer would have to run
as the same uid, which is checked too, for anything but SIGSTOP/SIGKILL of one of that user's own
processes to happen.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import Collection, Optional

from ptfast.scan._corespec import STAT_PPID, STAT_STARTTIME, parse_stat, stat_field

#: Rounds of "stop what the stopped processes forked meanwhile" before a fork bomb is killed.
FORKBOMB_ROUNDS = 50
_NO_PIDFD = (errno.ENOSYS, errno.EINVAL, errno.EPERM)


def identity_of(pid: int, proc_root: str = "/proc") -> Optional[tuple]:
    """(start time, uid) of /proc/PID read through one directory fd, or None when it is gone.
    The uid is the filesystem uid (last field of ``Uid:``), as the scan reads it."""
    try:
        dir_fd = os.open(f"{proc_root}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        def opener(name, flags):
            return os.open(name, flags, dir_fd=dir_fd)
        with open("stat", "rb", opener=opener) as handle:
            fields = parse_stat(handle.read())
        with open("status", "rb", opener=opener) as handle:
            status = handle.read()
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    if fields is None:
        return None
    for line in status.split(b"\n"):
        if line.startswith(b"Uid:"):
            return int(stat_field(fields, STAT_STARTTIME)), int(line.split()[-1])
    return None


def _check(pid: int, start_time: int, uids: Collection[int]) -> Optional[str]:
    identity = identity_of(pid)
    if identity is None:
        return "already gone"
    if identity[0] != start_time:
        return "already gone (its PID now belongs to another process)"
    if identity[1] not in uids or identity[1] == 0:
        wanted = " or ".join(str(uid) for uid in sorted(uids)) or "none"
        return f"not killed: it runs as uid {identity[1]}, not {wanted}"
    return None


def signal_process(pid: int, start_time: int, uids: Collection[int],
                   signum: int = signal.SIGKILL) -> Optional[str]:
    """Send ``signum`` to exactly the process (pid, start_time) if it still runs as one of
    ``uids`` (never 0); None on success, else why not."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return "already gone"
    except (AttributeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in _NO_PIDFD:
            return exc.strerror
        why_not = _check(pid, start_time, uids)       # no pidfd here: check, then kill
        if why_not is None:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                return "already gone"
            except OSError as kill_error:
                return kill_error.strerror
        return why_not
    try:
        why_not = _check(pid, start_time, uids)       # the pidfd pins what is checked
        if why_not is None:
            signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        return "already gone"
    except OSError as exc:
        return exc.strerror
    finally:
        os.close(pidfd)
    return why_not


def children_of(pids: set, proc_root: str = "/proc") -> list:
    """(pid, start time) of every process whose parent is in ``pids``, read now."""
    found = []
    for name in os.listdir(proc_root):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc_root}/{name}/stat", "rb") as handle:
                fields = parse_stat(handle.read())
        except OSError:
            continue
        if fields and int(stat_field(fields, STAT_PPID)) in pids:
            found.append((int(name), int(stat_field(fields, STAT_STARTTIME))))
    return found


def kill_planned(response, log) -> bool:
    """Carry out the kill part of a response; True when every named process is gone.

    A fork bomb (``stop_first``) is stopped process by process first, then, with
    ``follow_forks``, whatever the stopped ones forked before they stopped (a stopped process
    cannot fork), round after round, and only then killed: killing first would let the rest
    fork on. Every one must still run as one of the response's uids, its forks too.
    """
    uids = frozenset(response.kill_uids)
    targets = [(key.pid, key.start_time) for key in response.kill]
    if response.stop_first:
        stopped = [(pid, start) for pid, start in targets
                   if signal_process(pid, start, uids, signal.SIGSTOP) is None]
        if response.follow_forks:
            for _round in range(FORKBOMB_ROUNDS):
                known = set(stopped)
                fresh = [(pid, start) for pid, start in children_of({pid for pid, _ in stopped})
                         if (pid, start) not in known
                         and signal_process(pid, start, uids, signal.SIGSTOP) is None]
                if not fresh:
                    break
                stopped.extend(fresh)
        was_stopped = set(stopped)
        targets = stopped + [target for target in targets if target not in was_stopped]
    all_gone = True
    for pid, start_time in targets:
        why_not = signal_process(pid, start_time, uids)
        if why_not is not None and not why_not.startswith("already gone"):
            log(f"could not kill PID {pid}: {why_not}")
            all_gone = False
    return all_gone
