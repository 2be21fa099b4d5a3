"""Read the host: pick the compiled scanner core or its pure-Python twin, return a Snapshot.

PTFAST_NO_EXTENSIONS=1 forces the twin. If the compiled module cannot be imported, the twin is
used and ``CORE_FALLBACK_REASON`` says why (``ptfast --version`` shows it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Union

from . import _procscan_py

CORE_FALLBACK_REASON: str | None = None

if os.environ.get("PTFAST_NO_EXTENSIONS"):
    _core = _procscan_py
    CORE_NAME = "pure-python"
    CORE_FALLBACK_REASON = "PTFAST_NO_EXTENSIONS is set"
else:
    try:
        from . import _procscan as _core  # type: ignore[no-redef]
        CORE_NAME = "compiled"
    except ImportError as exc:  # not built on this machine: run on the twin, and say so
        _core = _procscan_py
        CORE_NAME = "pure-python"
        CORE_FALLBACK_REASON = f"compiled core not importable: {exc}"

Process = Union[_core.Process, _procscan_py.Process]
Socket = Union[_core.Socket, _procscan_py.Socket]
WantFds = Union[bool, Callable[[Process], bool]]

#: Attribute names shared by both cores' records, in a stable order.
PROCESS_FIELDS = ("pid", "ppid", "pgrp", "session", "uid", "start_time", "age",
                  "vm_size_bytes", "vm_rss_bytes", "exe", "exe_deleted", "cmdline",
                  "sockets", "open_files")
SOCKET_FIELDS = ("inode", "proto", "local_ip", "local_port", "remote_ip", "remote_port",
                 "state", "netns")


@dataclass(slots=True)
class Snapshot:
    """One walk of the process table."""

    processes: list
    socket_table: dict          # inode -> Socket, every network namespace read
    stats: dict                 # processes, kernel_threads, vanished, denied, namespaces
    core: str                   # "compiled" or "pure-python"
    taken_at: float = field(default_factory=time.time)
    duration: float = 0.0       # seconds the walk took

    def by_pid(self) -> dict:
        return {proc.pid: proc for proc in self.processes}


def scan(proc_root: str = "/proc", want_fds: WantFds = True, core=None) -> Snapshot:
    """Walk ``proc_root``; see ``ptfast._procscan_py`` for the contract of the cores.

    ``core`` selects a module explicitly (tests run both); by default the active one.
    """
    module = core or _core
    started = time.perf_counter()
    processes, socket_table, stats = module.scan(proc_root, want_fds)
    return Snapshot(
        processes=processes,
        socket_table=socket_table,
        stats=stats,
        core="compiled" if module is not _procscan_py else "pure-python",
        duration=time.perf_counter() - started,
    )


def socket_as_dict(sock) -> dict:
    return {name: getattr(sock, name) for name in SOCKET_FIELDS}


def process_as_dict(proc) -> dict:
    """Plain dict of a record of either core (sockets as dicts, tuples as lists)."""
    result = {}
    for name in PROCESS_FIELDS:
        value = getattr(proc, name)
        if name == "sockets" and value is not None:
            value = [socket_as_dict(sock) for sock in value]
        elif name == "open_files" and value is not None:
            value = list(value)
        result[name] = value
    return result

