"""When each new process is due for its check: at its start + PT_LIMIT.

Fed with the proc connector's events (scan/procevents), it keeps a heap of due times. A process
is due once, at the moment it becomes old enough to be judged, as lfd's PT_LIMIT counts age
from the start; a process that exits first is forgotten. A process that execs or changes uid
after its check is due again (what it runs, or whose it is, changed), at once if it is old
enough. Threads are not processes, but a waiting process's threads are counted: its main thread
may end while the others run on, and then its check stays due.

Memory is bounded: at most ``capacity`` processes wait (about 220 bytes each with its heap
entry: 100,000 took 22 MB, measured with tracemalloc). A new process past the bound is not scheduled; ``overflows`` counts it and
``resync_needed`` is set, so the service walks /proc at once, as it does after lost events;
the full walk every PT_INTERVAL stays the backstop for whatever is not scheduled.
"""

from __future__ import annotations

import heapq
from typing import Dict, Iterable, List, Set, Tuple

from ptfast.scan.procevents import EXEC, EXIT, FORK, UID, Event

DEFAULT_CAPACITY = 100_000


class Schedule:
    def __init__(self, limit_seconds: float, capacity: int = DEFAULT_CAPACITY) -> None:
        self.limit_ns = int(limit_seconds * 1_000_000_000)
        self.capacity = capacity
        #: tgid -> (due_ns, start_ns) of each waiting process; the heap may hold stale entries
        #: (a process that exited or was rescheduled), skipped when they come up
        self._waiting: Dict[int, Tuple[int, int]] = {}
        self._heap: List[Tuple[int, int, int]] = []     # (due_ns, tgid, start_ns)
        #: live threads besides the main one, of waiting processes that made any; and those
        #: whose main thread ended while others run
        self._threads: Dict[int, int] = {}
        self._leader_gone: Set[int] = set()
        self.overflows = 0
        self.resync_needed = False

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, tgid: int, start_ns: int, due_ns: int) -> None:
        if tgid not in self._waiting and len(self._waiting) >= self.capacity:
            self.overflows += 1
            self.resync_needed = True
            return
        self._waiting[tgid] = (due_ns, start_ns)
        heapq.heappush(self._heap, (due_ns, tgid, start_ns))
        if len(self._heap) > 2 * len(self._waiting) + 1024:
            self._compact()

    def forget(self, tgid: int) -> None:
        self._waiting.pop(tgid, None)
        self._threads.pop(tgid, None)
        self._leader_gone.discard(tgid)

    def feed(self, events: Iterable[Event]) -> None:
        """Take the reader's events, in the order they came."""
        limit, waiting = self.limit_ns, self._waiting
        threads, leader_gone = self._threads, self._leader_gone
        for event in events:
            kind, tgid = event.kind, event.tgid
            if event.pid != tgid:
                # a thread: counted for a waiting process, since its main thread may end
                # first and leave the process running on its other threads
                if tgid in waiting:
                    if kind == FORK:
                        threads[tgid] = threads.get(tgid, 0) + 1
                    elif kind == EXIT:
                        left = threads.get(tgid, 1) - 1
                        threads[tgid] = left
                        if left <= 0 and tgid in leader_gone:
                            self.forget(tgid)
                continue
            if kind == FORK:
                self.forget(tgid)         # a reused pid: whatever waited under it is gone
                self.add(tgid, event.timestamp_ns, event.timestamp_ns + limit)
            elif kind == EXIT:
                if threads.get(tgid, 0) > 0 and tgid in waiting:
                    leader_gone.add(tgid)     # still running: its check stays due
                else:
                    self.forget(tgid)
            elif kind == EXEC or kind == UID:
                if event.tgid in waiting:
                    continue      # still waiting: its check will see what it runs then
                # checked already, or born before we listened (its start unknown here: its
                # exec counts as its start, and the full walk covers it meanwhile)
                self.add(event.tgid, event.timestamp_ns, event.timestamp_ns + limit)

    def due(self, now_ns: int) -> List[Tuple[int, int]]:
        """(tgid, start_ns) of every process due by ``now_ns`` (time.monotonic_ns), in due
        order; each is then forgotten until it execs or changes uid."""
        heap, waiting, ready = self._heap, self._waiting, []
        while heap and heap[0][0] <= now_ns:
            due_ns, tgid, start_ns = heapq.heappop(heap)
            if waiting.get(tgid) == (due_ns, start_ns):
                self.forget(tgid)
                ready.append((tgid, start_ns))
        return ready

    def next_due(self) -> int:
        """The monotonic ns of the next due check, or -1 when none waits (for a poll
        timeout)."""
        heap, waiting = self._heap, self._waiting
        while heap and waiting.get(heap[0][1]) != (heap[0][0], heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else -1

    def rebuild(self, young: Iterable[Tuple[int, int]]) -> None:
        """After a full walk (a resync): what waits is exactly the walk's processes that are
        still younger than the limit, given as (tgid, start_ns); the walk judged the rest."""
        self._waiting.clear()
        self._heap.clear()
        self._threads.clear()
        self._leader_gone.clear()
        self.resync_needed = False
        for tgid, start_ns in young:
            self.add(tgid, start_ns, start_ns + self.limit_ns)

    def take_resync(self) -> bool:
        needed, self.resync_needed = self.resync_needed, False
        return needed

    def _compact(self) -> None:
        self._heap = [(due, tgid, start) for tgid, (due, start) in self._waiting.items()]
        heapq.heapify(self._heap)
