"""Live mode of ``ptfast run``: each new process checked at its own start + PT_LIMIT.

The proc connector (ptfast.scan.procevents) reports forks, execs, uid changes and exits; the
schedule (ptfast.act.schedule) keeps when each new process reaches PT_LIMIT. The service
(ptfast.commands.daemon) waits on the reader, hands the events here, and asks ``due`` which
processes to check now: a walk of just those pids (Tracker.check_processes). The full walk every
PT_INTERVAL stays as the backstop; after it, ``rebuild`` makes the schedule exactly the walk's
processes still younger than PT_LIMIT. Lost events (an overrun of the socket's buffer, a gap in
a CPU's numbering) or a full schedule ask for a full walk at once (``resync_reason``), at most
one every RESYNC_SPACING seconds, and at most RESYNC_SHARE of the time: a storm of losses
must not become a storm of walks.

Without the connector (not root, a container, another pid, user or network namespace, an old
kernel) there is no Live: the service polls exactly as before, and the status says why.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

from ptfast.act.schedule import Schedule
from ptfast.scan import procevents
from ptfast.scan.procevents import EXIT, FORK, Event, Mode, ProcEvents

#: after a wake-up, wait this long so that one walk checks a burst of events, not each one
BATCH_SECONDS = 0.1
#: due processes are checked together, this long after the first of them is due: a check
#: costs a walk of the socket tables (2.4 ms of CPU for one pid, measured on a 2-vCPU host),
#: so at 50 execs/s checking each at its own moment would cost 12% of a core; batched, at
#: most 2 checks a second
CHECK_BATCH_SECONDS = 0.5
#: at most one resync walk this often, however often events are lost; and at most
#: RESYNC_SHARE of the time in resync walks (a customer's fork storm that overruns the buffer
#: must not keep the service walking /proc)
RESYNC_SPACING = 5.0
RESYNC_SHARE = 0.1
#: a process found still within PT_LIMIT when due (clock granularity: /proc counts start times
#: in ticks) is checked again this long after it is old enough
RECHECK_MARGIN = 0.05
NS = 1_000_000_000


def boot_to_monotonic_ns() -> int:
    """What to add to a CLOCK_BOOTTIME time (in ns) to get CLOCK_MONOTONIC's (they differ by
    the time the host was suspended; /proc's start times count on the boot clock)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) - \
        time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class Parents:
    """Who forked each process lately (the proc connector's fork events): a call the connect
    hook saw from a process that exited before the drain (a ``curl`` a shell loop runs, a
    child forked per mail) belongs to the ancestor that is still running. Bounded: the oldest
    forgotten first (at 5,000 forks a second, the last 13 s are kept; a drain comes every
    second)."""

    CAPACITY = 65536

    def __init__(self) -> None:
        self._parent: OrderedDict = OrderedDict()
        #: processes that exited since the last take_exited, with when (the event's
        #: CLOCK_MONOTONIC ns): a caller's calls then go to its running ancestor
        #: (looking.carry_calls); CAPACITY at most, the rest not kept
        self._exited: Dict[int, int] = {}

    def feed(self, events: Iterable[Event]) -> None:
        parent, capacity, exited = self._parent, self.CAPACITY, self._exited
        for event in events:
            if event.pid != event.tgid:
                continue                                          # a thread, not a process
            if event.kind == FORK:
                parent.pop(event.tgid, None)                      # a reused pid: its newest
                parent[event.tgid] = event.parent_tgid
                if len(parent) > capacity:
                    parent.popitem(last=False)
            elif event.kind == EXIT and len(exited) < capacity:
                exited[event.tgid] = event.timestamp_ns

    def take_exited(self) -> Dict[int, float]:
        """The processes that exited since the last call: pid -> when, on the boot clock
        (seconds, as /proc's start times count), to tell their age when they exited."""
        exited, self._exited = self._exited, {}
        offset = boot_to_monotonic_ns()
        return {pid: (stamp - offset) / NS for pid, stamp in exited.items()}

    def get(self, pid: int) -> Optional[int]:
        return self._parent.get(pid)


class Live:
    """The reader, the schedule and what they counted, for the status and the metrics."""

    def __init__(self, reader: ProcEvents, limit_seconds: float) -> None:
        self.reader = reader
        self.schedule = Schedule(limit_seconds)
        self.parents = Parents()
        self.clock_ticks = os.sysconf("SC_CLK_TCK")
        self.resyncs = 0            # full walks asked for because events were lost
        self.checks = 0             # processes checked at their PT_LIMIT
        self.spacing = RESYNC_SPACING
        self.last_resync = float("-inf")
        self.pending_resync: Optional[str] = None   # why, while spacing holds a walk back

    def fileno(self) -> int:
        return self.reader.fileno()

    def set_limit(self, limit_seconds: float) -> None:
        """After a reload: processes scheduled from now on are due at the new PT_LIMIT (the
        next full walk rebuilds the rest)."""
        self.schedule.limit_ns = int(limit_seconds * NS)

    def take_events(self, batches: int = 8) -> None:
        """What waits on the reader now, into the schedule: at most ``batches`` reads, so that
        a fork storm cannot hold the loop (what is left wakes it again at once)."""
        for _ in range(batches):
            events = self.reader.read()
            if not events:
                return
            self.schedule.feed(events)
            self.parents.feed(events)

    def resync_reason(self, now: float) -> Optional[str]:
        """Why a full walk is needed now (events lost, or the schedule full), or None; when
        the last resync was less than RESYNC_SPACING ago, the reason is kept for later."""
        lost_before = (self.reader.overruns, self.reader.gaps, self.reader.missed)
        if self.reader.take_resync():
            overruns, gaps, missed = lost_before
            self.pending_resync = (f"process events were lost ({overruns} overrun(s), "
                                   f"{gaps} gap(s), {missed} event(s) missed so far)")
        if self.schedule.take_resync():
            self.pending_resync = (f"the schedule of new processes is full "
                                   f"({self.schedule.capacity}; {self.schedule.overflows} "
                                   "not scheduled so far)")
        if self.pending_resync is None or now - self.last_resync < self.spacing:
            return None
        why, self.pending_resync = self.pending_resync, None
        self.last_resync = now
        self.resyncs += 1
        return why

    def resync_at(self) -> Optional[float]:
        """When a resync held back by the spacing may run (monotonic seconds), or None."""
        return self.last_resync + self.spacing if self.pending_resync else None

    def pass_took(self, seconds: float) -> None:
        """A full pass's duration: resyncs are spaced so that they take at most RESYNC_SHARE
        of the time."""
        self.spacing = max(RESYNC_SPACING, seconds / RESYNC_SHARE)

    def due(self, now: float) -> List[int]:
        """The processes to check now: every one due by ``now`` (monotonic seconds) once
        the first of them has waited CHECK_BATCH_SECONDS; otherwise none."""
        check_at = self.check_at()
        if check_at is None or now < check_at:
            return []
        return [tgid for tgid, _start in self.schedule.due(int(now * NS))]

    def check_at(self) -> Optional[float]:
        """Monotonic seconds of the next check (the first due, plus the batch), or None."""
        due_ns = self.schedule.next_due()
        return None if due_ns < 0 else due_ns / NS + CHECK_BATCH_SECONDS

    def rebuild(self, young: Iterable[Tuple[int, int]]) -> None:
        """After a full walk: ``young`` is (pid, start time in clock ticks since boot) of the
        walk's processes still within PT_LIMIT."""
        offset, ticks = boot_to_monotonic_ns(), self.clock_ticks
        self.schedule.rebuild((pid, start_ticks * NS // ticks + offset)
                              for pid, start_ticks in young)

    def recheck(self, young: Iterable[Tuple[int, int, float]], limit_seconds: float) -> None:
        """Processes found still within PT_LIMIT when due: (pid, start ticks, age) each, due
        again once they are old enough."""
        now_ns, offset, ticks = time.monotonic_ns(), boot_to_monotonic_ns(), self.clock_ticks
        for pid, start_ticks, age in young:
            wait_ns = int((max(0.0, limit_seconds - age) + RECHECK_MARGIN) * NS)
            self.schedule.add(pid, start_ticks * NS // ticks + offset, now_ns + wait_ns)

    def status(self) -> dict:
        """For the status file and the metrics."""
        counters = self.reader.counters()
        return {"mode": "live", "reason": "",
                "events": counters["received"], "overruns": counters["overruns"],
                "gaps": counters["gaps"], "missed": counters["missed"],
                "resyncs": self.resyncs, "schedule_overflows": self.schedule.overflows,
                "checks": self.checks, "waiting": len(self.schedule)}

    def close(self) -> None:
        self.reader.close()


def polling_status(mode: Mode) -> dict:
    return {"mode": "polling", "reason": mode.reason}


def open_live(limit_seconds: float, opener=procevents.open_reader
              ) -> Tuple[Optional[Live], Mode]:
    """Live mode and Mode(live=True), or None and the Mode that says why the service polls."""
    reader, mode = opener()
    if reader is None:
        return None, mode
    return Live(reader, limit_seconds), mode
