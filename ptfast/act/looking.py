"""Looking at sockets over time (decide.lifetimes): a sock_diag dump of ptfast's own network
namespace between passes, the walk that attributes short connections to other hosts to the
processes holding them, and the warm-up before a first look (``ptfast scan``, the first pass of
``ptfast run``), so that both judge connections by how long they were held."""

from __future__ import annotations

import time
from typing import Callable, Optional

from ptfast.decide.findings import process_key
from ptfast.decide.lifetimes import Lifetimes, dump_delay
from ptfast.scan import procfs


def dump(lifetimes: Lifetimes, policy, proc_root: str = "/proc") -> Optional[set]:
    """One dump: record the connections of tracked accounts; attribute their new calls to
    other hosts by a walk of those accounts' processes. Returns the uids worth judging now
    (their processes hold a connection that just reached PT_CONN_AGE, or made a call), or
    None when the tables cannot be dumped (a prepared /proc has no sock_diag)."""
    if proc_root != "/proc":
        return None
    table = procfs.scan(proc_root, False, pids=[]).socket_table
    now = time.time()
    since = lifetimes.last_dump or now
    lifetimes.last_dump = now

    def tracked(uid: int) -> bool:
        return policy.tracked_user(uid) is not None
    callers = lifetimes.observe(table.values(), now, tracked, dump=True)
    if callers:
        walk = procfs.scan(proc_root, lambda proc: proc.uid in callers,
                           pids=procfs.newest_pids_of(callers, proc_root))
        lifetimes.attribute(walk.processes, process_key)
    return callers | lifetimes.came_of_age(since, now, policy.conn_age_wait)


def warm_up(lifetimes: Lifetimes, policy, proc_root: str = "/proc",
            sleep: Callable[[float], None] = time.sleep) -> float:
    """Before a first look: dump about every second (lifetimes.dump_delay) for PT_CONN_AGE seconds, when a
    tracked account holds a connection (else at once), so that a connection counts only when
    it was there all along, as in ``ptfast run``. Returns the seconds it took."""
    conn_age = policy.conn_age_wait      # PT_CONN_AGE (less the test-only age offset)
    started = time.monotonic()
    if not policy.enabled or not conn_age or dump(lifetimes, policy, proc_root) is None:
        return 0.0
    if not lifetimes.first_seen:
        return time.monotonic() - started
    # from when the first dump ended (it saw them before), not from when it began: a slow
    # first dump (a cold pure-Python read of many sockets) would otherwise leave the
    # connections it saw a hair younger than PT_CONN_AGE at the look. The monotonic clock: a
    # step of the wall clock cannot stretch the wait.
    deadline = time.monotonic() + conn_age
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sleep(min(dump_delay(), left))
        dump(lifetimes, policy, proc_root)
    return time.monotonic() - started
