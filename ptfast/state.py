"""What ptfast remembers between passes and restarts: the processes already reported.

A process is reported once, keyed by (pid, start time): a PID that the kernel hands to a new
process is a new process (lfd keyed on the PID alone and so never reported the newcomer). The
memory is one orjson file in the state directory, replaced atomically (write a temporary file,
fsync, rename), so a crash leaves the old file or the new one, never half of one. A file that
cannot be parsed is reported, kept aside for inspection and replaced; it never stops ptfast.
"""

from __future__ import annotations

import os
import tempfile
import time

import orjson

from . import safepaths
from .findings import (REMEMBER_LISTENER, REMEMBER_LOAD_QUIET, REMEMBER_PROCESS,
                       REMEMBER_RESOURCE, REMEMBER_USER_QUIET, MemoryQuestions, Remember)

REPORTED_FILE = "reported.json"
#: Listeners remembered for the hopping check: a customer can open many more; the state file
#: (written each pass) stays small.
MAX_LISTENERS = 20_000
FORMAT_VERSION = 1
# far above what tracking ever remembers (a few hundred bytes a process), and a bound on what
# a planted file can make ptfast read
MAX_STATE_BYTES = 64 << 20


def write_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: readers see the old content or the new, never a mix.

    The temporary file has a random name and is created with O_EXCL (``mkstemp``): nothing
    planted in the directory (a symlink, a FIFO) is ever opened or truncated.
    """
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                     dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)   # make the rename itself durable
    finally:
        os.close(dir_fd)


class ReportedState(MemoryQuestions):
    """What was reported, persisted in ``DIR/reported.json``:

    * ``reported``: (pid, start_time) -> when, for suspicious processes;
    * ``resources``: (pid, start_time, resource) -> when, for resource alerts;
    * ``quiet_users``: user -> until when PT_USERPROC stays quiet about them (LF_FLUSH);
    * ``load_quiet_until``: until when the load check stays quiet (PT_LOAD_SKIP);
    * ``listeners``: tracked users' listening sockets, when each was first seen and whether it
      was reported (a listener handed from one young process to the next outlives them all).

    The policy asks it ``findings.MemoryQuestions`` (``was_reported``...); only ptfast.respond
    changes the state, through ``remember``.
    """

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, REPORTED_FILE)
        self.reported: dict[tuple, float] = {}
        self.resources: dict[tuple, float] = {}
        self.quiet_users: dict[str, float] = {}
        self.load_quiet_until = 0.0
        #: (netns, inode) -> [uid, first seen, reported] of tracked users' listeners
        self.listeners: dict[tuple, list] = {}
        self._dirty = False

    def load(self) -> str | None:
        """Read the file; returns a problem message (the file was corrupt) or None."""
        try:
            data = safepaths.read_regular_file(self.path, MAX_STATE_BYTES, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:      # a FIFO, a symlink, a huge file: set aside like a corrupt one
            return self._set_aside(exc.strerror or str(exc))
        try:
            document = orjson.loads(data)
            if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
                raise ValueError("not a ptfast state file of version 1")
            keys = {}
            for pid, start_time, reported_at in document["reported"]:
                keys[(int(pid), int(start_time))] = float(reported_at)
            resources = {}
            for pid, start_time, resource, reported_at in document.get("resources", ()):
                resources[(int(pid), int(start_time), str(resource))] = float(reported_at)
            quiet_users = {str(user): float(until)
                           for user, until in dict(document.get("quiet_users", {})).items()}
            load_quiet_until = float(document.get("load_quiet_until", 0.0))
            listeners = {(int(netns), int(inode)): [int(uid), float(seen), bool(reported)]
                         for netns, inode, uid, seen, reported in document.get("listeners", ())}
        except (ValueError, TypeError, KeyError) as exc:
            return self._set_aside(str(exc))
        self.reported, self.resources, self.quiet_users = keys, resources, quiet_users
        self.load_quiet_until = load_quiet_until
        self.listeners = listeners
        return None

    def _set_aside(self, why: str) -> str:
        kept = f"{self.path}.corrupt-{int(time.time())}"
        os.replace(self.path, kept)
        self._dirty = True
        return (f"{self.path}: corrupt state file ({why}); moved to {kept} and started "
                "afresh, so processes reported before may be reported once more")

    # -- what a pass observes ---------------------------------------------------------
    def observe_listeners(self, sockets, now: float | None = None) -> int:
        """Remember when each of ``sockets`` (tracked users' listeners of this scan) was first
        seen; forget the ones no longer there. At most MAX_LISTENERS are remembered (the ones
        known longest first): returns how many were left out."""
        now = time.time() if now is None else now
        current = {(sock.netns, sock.inode): sock.uid for sock in sockets}
        for key in [key for key in self.listeners if key not in current]:
            del self.listeners[key]
            self._dirty = True
        left_out = 0
        for key, uid in current.items():
            if key not in self.listeners:
                if len(self.listeners) >= MAX_LISTENERS:
                    left_out += 1
                    continue
                self.listeners[key] = [uid, now, False]
                self._dirty = True
        return left_out

    # -- what ptfast.respond records ----------------------------------------------------
    def remember(self, memo: Remember, now: float | None = None) -> None:
        """Record ``memo`` (a finding's ``response.remember``)."""
        now = time.time() if now is None else now
        if memo.kind == REMEMBER_PROCESS:
            self.reported[tuple(memo.key)] = now
        elif memo.kind == REMEMBER_RESOURCE:
            self.resources[tuple(memo.key)] = now
        elif memo.kind == REMEMBER_USER_QUIET:
            self.quiet_users[memo.key[0]] = now + memo.seconds
        elif memo.kind == REMEMBER_LOAD_QUIET:
            self.load_quiet_until = now + memo.seconds
        elif memo.kind == REMEMBER_LISTENER:
            seen = self.listeners.get(tuple(memo.key))
            if seen is not None:
                seen[2] = True
        else:
            raise ValueError(f"unknown kind of memory {memo.kind!r}")
        self._dirty = True

    def forget_gone(self, live_keys, now: float | None = None) -> int:
        """Drop processes that no longer exist and quiet periods that are over; returns how
        many processes were dropped."""
        gone = [key for key in self.reported if key not in live_keys]
        for key in gone:
            del self.reported[key]
        gone_resources = [key for key in self.resources if key[:2] not in live_keys]
        for key in gone_resources:
            del self.resources[key]
        now = time.time() if now is None else now
        over = [user for user, until in self.quiet_users.items() if until <= now]
        for user in over:
            del self.quiet_users[user]
        if gone or gone_resources or over:
            self._dirty = True
        return len(gone)

    def save(self) -> None:
        if not self._dirty:
            return
        document = {"version": FORMAT_VERSION,
                    "reported": [[pid, start, at] for (pid, start), at in self.reported.items()],
                    "resources": [[pid, start, resource, at]
                                  for (pid, start, resource), at in self.resources.items()],
                    "quiet_users": self.quiet_users,
                    "load_quiet_until": self.load_quiet_until,
                    "listeners": [[netns, inode, *seen]
                                  for (netns, inode), seen in self.listeners.items()]}
        write_atomically(self.path, orjson.dumps(document))
        self._dirty = False
