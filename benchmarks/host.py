"""What a benchmark changes on the host, and how it puts everything back.

Kernel settings are raised for a run and restored, also on Ctrl-C, SIGTERM or an exception; a
journal under results/ lets the next run restore them after a SIGKILL. The population runs in a
block of uids that no account and no running process uses, so that killing "everything of the
block" at the end cannot hit anyone else's process.
"""

from __future__ import annotations

import json
import os
import pwd
import random
import signal
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JOURNAL = os.path.join(HERE, "results", ".sysctl-journal.json")


def _sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def read_sysctl(name: str) -> str:
    with open(_sysctl_path(name)) as handle:
        return handle.read().strip()


def _write_sysctl(name: str, value: str) -> None:
    with open(_sysctl_path(name), "w") as handle:
        handle.write(value)


def restore_journal() -> dict:
    """Put back the settings a killed run left raised; returns them."""
    try:
        with open(JOURNAL) as handle:
            saved = json.load(handle)
    except FileNotFoundError:
        return {}
    for name, value in saved.items():
        _write_sysctl(name, value)
    os.unlink(JOURNAL)
    return saved


class Sysctls:
    """Raise integer kernel settings for the length of a ``with`` block."""

    def __init__(self) -> None:
        self.saved: dict = {}

    def raise_to(self, name: str, value: int) -> None:
        """Never lowers: a host tuned higher than the benchmark needs stays as it is."""
        current = read_sysctl(name)
        if int(current) >= value:
            return
        self.saved.setdefault(name, current)
        os.makedirs(os.path.dirname(JOURNAL), exist_ok=True)
        with open(JOURNAL, "w") as handle:
            json.dump(self.saved, handle)
        _write_sysctl(name, str(value))

    def restore(self) -> None:
        # a second Ctrl-C must not cut the restore short
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT,
                                                                       signal.SIGTERM)}
        try:
            for name, value in self.saved.items():
                _write_sysctl(name, value)
            self.saved.clear()
            if os.path.exists(JOURNAL):
                os.unlink(JOURNAL)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __enter__(self) -> "Sysctls":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


def exit_on_termination() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so that every ``finally`` runs."""
    def unwind(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, unwind)
    signal.signal(signal.SIGHUP, unwind)


def _uids_of_processes(include_zombies: bool = True) -> dict:
    """pid -> set of (real, effective, saved, filesystem) uids, for every process now."""
    uids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"State:") and b"Z" in line and not include_zombies:
                        break
                    if line.startswith(b"Uid:"):
                        uids[int(name)] = {int(field) for field in line.split()[1:]}
                        break
        except (OSError, ValueError):
            continue
    return uids


def free_uid_block(size: int) -> int:
    """First uid of ``size`` consecutive uids that no account and no process uses."""
    used = {entry.pw_uid for entry in pwd.getpwall()}
    for uids in _uids_of_processes().values():
        used |= uids
    chooser = random.SystemRandom()
    while True:
        base = chooser.randrange(1_000_000, 2_000_000_000 - size)
        if not any(base <= uid < base + size for uid in used):
            return base


def kill_uid_block(base: int, size: int, timeout: float = 30.0) -> int:
    """SIGKILL every live process with a uid in the block until none is left; returns how
    many remain. (Zombies are dead already: their parent or init reaps them.)"""
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid, uids in _uids_of_processes(include_zombies=False).items()
                if any(base <= uid < base + size for uid in uids)]
        if not pids or time.monotonic() > deadline:
            return len(pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
