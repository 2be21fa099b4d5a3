"""Looking at sockets over time (decide.lifetimes): a sock_diag dump of ptfast's own network
namespace between passes, the walk that attributes short connections to other hosts to the
processes holding them (or, where the BPF connect hook runs, its record of every connect()),
the listeners opened since the last dump (judged at once), and the warm-up before a first look (``ptfast scan``, the first pass of ``ptfast run``), so
that both judge connections by how long they were held."""

from __future__ import annotations

import ipaddress
import os
import time
from typing import TYPE_CHECKING, Callable, Container, Dict, NamedTuple, Optional

from ptfast.decide.checks.sockets import is_listening
from ptfast.decide.findings import process_key
from ptfast.decide.lifetimes import REMOTE_CALLS, REMOTE_WINDOW, Call, Lifetimes, dump_delay
from ptfast.scan import procfs

if TYPE_CHECKING:
    # not at run time: the hook's module brings ctypes and socket (8% of the
    # instructions of a scan), which a scan that does not wait PT_CONN_AGE never uses
    from ptfast.scan.connecthook import ConnectHook

#: a process whose start the clocks put this much after a connect() still made it (the start
#: time is in clock ticks; the two clocks are read a moment apart)
START_SLACK = 0.5


class Looked(NamedTuple):
    """What a dump found worth judging now."""
    uids: set       # accounts to walk: a connection came of age, a new listener, a call a
                    # dump attributed (which process holds an inode: only a walk can tell)
    pids: set       # processes the connect hook saw calling, whose verdict may change now


def dump(lifetimes: Lifetimes, policy, proc_root: str = "/proc",
         hook: Optional[ConnectHook] = None,
         parent_of: Callable[[int], Optional[int]] = lambda pid: None,
         exited: Callable[[], Dict[int, float]] = dict) -> Optional[Looked]:
    """One dump: record the connections of tracked accounts; attribute their new calls to
    other hosts, from the connect hook when it runs, else by a walk of those accounts'
    processes. ``parent_of`` says who forked a process lately (live mode's fork events), so
    that a call from a process already gone counts for its running ancestor; ``exited``, which
    processes exited since the last dump and when, on the boot clock (its exit events), so
    that the calls of a caller that exited after the drain count for it too (a child forked
    for a batch of mails, gone before its PT_LIMIT: never judged itself). Returns what is
    worth judging now, or None when the tables cannot be dumped (a prepared /proc has no
    sock_diag)."""
    if proc_root != "/proc":
        return None
    table = procfs.scan(proc_root, False, pids=[]).socket_table
    now = time.time()
    since = lifetimes.last_dump or now
    lifetimes.last_dump = now
    lifetimes.hooked = hook is not None

    def tracked(uid: int) -> bool:
        return policy.tracked_user(uid) is not None
    opened = new_listeners(lifetimes, table, tracked)
    callers = lifetimes.observe(table.values(), now, tracked, dump=True)
    if callers:
        walk = procfs.scan(proc_root, lambda proc: proc.uid in callers,
                           pids=procfs.newest_pids_of(callers, proc_root))
        lifetimes.attribute(walk.processes, process_key)
    pids = (hooked_calls(lifetimes, hook, tracked, proc_root, parent_of) if hook is not None
            else set())
    gone = exited()
    if gone:
        ticks = os.sysconf("SC_CLK_TCK")

        def unjudged(key: tuple) -> bool:
            """Exited within PT_LIMIT (never judged) and never reported: a reported caller
            killed must not pass its calls up to its shell, then the shell's to its session.
            Its age when it exited, not now: one gone just before its PT_LIMIT and seen by a
            dump just after lost its calls."""
            return (gone[key[0]] - key[1] / ticks + policy.aged_by <= policy.limit
                    and policy.memory.reported_what(key) is None)
        pids |= carry_calls(lifetimes, gone, unjudged, proc_root, parent_of)
    return Looked(callers | opened | lifetimes.came_of_age(since, now, policy.conn_age_wait),
                  pids)


def new_listeners(lifetimes: Lifetimes, table: dict, tracked: Callable[[int], bool]) -> set:
    """The uids of tracked accounts with a listener the last dump did not have: a listener
    counts at once, so an old process that opens one is judged now, not at the next pass.
    Nothing at the first dump (nothing to compare with: the pass judges what it finds)."""
    listening = {(sock.netns, sock.inode): sock.uid for sock in table.values()
                 if sock.uid != 0 and is_listening(sock)}
    before, lifetimes.listening = lifetimes.listening, set(listening)
    if before is None:
        return set()
    return {uid for key, uid in listening.items() if key not in before and tracked(uid)}


#: how far up a gone caller's ancestry its call may be carried: as far as the fork events
#: reach (live.Parents keeps 65,536). No smaller bound: a chain of processes that each fork
#: and exit at once costs a customer a fork a step, and a bound of four let a beacon that
#: forks five deep for each call lose every call; the walk stops at the first running one.
MAX_ANCESTRY = 65536


def hooked_calls(lifetimes: Lifetimes, hook: ConnectHook, tracked: Callable[[int], bool],
                 proc_root: str = "/proc",
                 parent_of: Callable[[int], Optional[int]] = lambda pid: None) -> set:
    """The hook's connect()s to other hosts by tracked accounts, each a call of the process
    that made it (when that process still runs, and is the same one: its start, uid), or,
    when it is gone, of its nearest running ancestor of the same uid that ``parent_of``
    knows (a loop that runs a short-lived ``curl`` for each call).
    Returns the pids whose calls could change their verdict now: they reached REMOTE_CALLS,
    or a second host (a worker's calls to its one database do not count). Judging every
    caller at every dump would walk a busy host's workers each second."""
    connects = [connect for connect in hook.drain()
                if connect.uid != 0 and tracked(connect.uid)
                and lifetimes.is_call(connect.remote_ip, connect.remote_port, connect.proto)]
    if not connects:
        return set()
    runs = Running(proc_root)
    lines = {connect.pid: ancestry(connect.pid, parent_of, runs) for connect in connects}
    walk = procfs.scan(proc_root, False,
                       pids=sorted({pid for line in lines.values() for pid in line}))
    by_pid = {proc.pid: proc for proc in walk.processes}
    wall, monotonic = time.time(), time.monotonic()
    credits = []
    for connect in connects:
        proc = caller(lines[connect.pid], by_pid, connect.uid, connect.monotonic, monotonic)
        if proc is not None:
            credits.append((proc, wall - (monotonic - connect.monotonic),
                            Call(connect.proto, connect.remote_ip, connect.remote_port,
                                 connect.uid)))
    return credit_calls(lifetimes, credits, wall)


def carry_calls(lifetimes: Lifetimes, exited: Container[int],
                carries: Callable[[tuple], bool],
                proc_root: str = "/proc",
                parent_of: Callable[[int], Optional[int]] = lambda pid: None) -> set:
    """The recent calls of each caller that exited and ``carries`` says yes to (its process
    key), to its nearest running ancestor of the same uid (as a call of a process gone before
    the drain). Returns the ancestors whose verdict may change now."""
    gone = [key for key in lifetimes.calls if key[0] in exited and carries(key)]
    if not gone:
        return set()
    runs = Running(proc_root)
    wall, monotonic = time.time(), time.monotonic()
    moving = []
    for key in gone:
        calls = [(when, sock) for when, sock in lifetimes.calls.pop(key)
                 if wall - when <= REMOTE_WINDOW]
        parent = parent_of(key[0])
        if calls and parent is not None and parent > 1:
            moving.append((calls, ancestry(parent, parent_of, runs)))
    if not moving:
        return set()
    walk = procfs.scan(proc_root, False,
                       pids=sorted({pid for _calls, line in moving for pid in line}))
    by_pid = {proc.pid: proc for proc in walk.processes}
    credits = []
    for calls, line in moving:
        first_when, first = calls[0]        # the ancestor must have started before it
        proc = caller(line, by_pid, first.uid, monotonic - (wall - first_when), monotonic)
        if proc is not None:
            credits += [(proc, when, sock) for when, sock in calls]
    return credit_calls(lifetimes, credits, wall)


def credit_calls(lifetimes: Lifetimes, credits: list, wall: float) -> set:
    """Each (process, when, call) of ``credits`` added as a call of that process, in order;
    returns the pids whose verdict may change now (verdict_may_change)."""
    before: dict = {}
    for proc, when, sock in credits:
        key = process_key(proc)
        if key not in before:
            before[key] = (proc.pid, lifetimes.recent_calls(key, wall))
        lifetimes.add_call(key, when, sock)
    return {pid for key, (pid, earlier) in before.items()
            if verdict_may_change(earlier, lifetimes.recent_calls(key, wall))}


class Running:
    """Whether a pid runs (a zombie does not: its calls belong to its parent), each pid read
    once."""

    def __init__(self, proc_root: str) -> None:
        self._proc_root = proc_root
        self._known: dict = {}

    def __call__(self, pid: int) -> bool:
        known = self._known.get(pid)
        if known is None:
            try:
                with open(os.path.join(self._proc_root, str(pid), "stat"), "rb") as handle:
                    stat = handle.read()
                known = stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X", b"")
            except OSError:
                known = False
            self._known[pid] = known
        return known


def ancestry(pid: int, parent_of: Callable[[int], Optional[int]],
             runs: Callable[[int], bool] = lambda pid: True) -> list:
    """``pid`` and the ancestors ``parent_of`` knows, nearest first, up to the first that
    ``runs`` (MAX_ANCESTRY at most)."""
    line, seen = [pid], {pid}
    while len(line) < MAX_ANCESTRY and not runs(line[-1]):
        parent = parent_of(line[-1])
        if parent is None or parent <= 1 or parent in seen:
            break
        line.append(parent)
        seen.add(parent)
    return line


def caller(line: list, by_pid: dict, uid: int, called: float, monotonic: float):
    """The process a call made by ``uid`` at ``called`` (the monotonic clock; ``monotonic``
    is now) counts for: the first of ``line`` still running, of that uid, started before the
    call (not a reused pid); None when there is none. Only the caller itself may have changed
    uid since: an ancestor of another uid is another account's (or root's) and gets no call."""
    for pid in line:
        proc = by_pid.get(pid)
        if proc is None:
            continue            # gone: its parent, if known
        if proc.uid != uid or monotonic - proc.age > called + START_SLACK:
            return None         # another account's, a setuid, or a reused pid
        return proc
    return None


def verdict_may_change(earlier: list, now: list) -> bool:
    """Calls (socket records) before and after a drain: the count reached REMOTE_CALLS, or,
    past it, the calls reached a second host."""
    if len(now) < REMOTE_CALLS:
        return False
    if len(earlier) < REMOTE_CALLS:
        return True
    hosts = {sock.remote_ip for sock in earlier}
    return len(hosts) == 1 and any(sock.remote_ip not in hosts for sock in now)


def nameservers(path: str = "/etc/resolv.conf") -> frozenset:
    """The DNS resolvers (``ipaddress`` objects) the host's own resolv.conf names (root's
    file: a customer cannot add one); none when it cannot be read."""
    found = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:            # without a link-local's %scope
                        found.add(ipaddress.ip_address(words[1].split("%")[0]))
                    except ValueError:
                        continue
    except OSError:
        pass
    return frozenset(found)


def warm_up(lifetimes: Lifetimes, policy, proc_root: str = "/proc",
            sleep: Callable[[float], None] = time.sleep,
            hook: Optional[ConnectHook] = None,
            open_hook: Optional[Callable[[], Optional[ConnectHook]]] = None) -> float:
    """Before a first look: dump about every second (lifetimes.dump_delay) for PT_CONN_AGE
    seconds, when a tracked account holds a connection (else at once), so that a connection
    counts only when it was there all along, as in ``ptfast run``. The connect ``hook`` (the
    service's), or one ``open_hook`` opens once there is a wait and that is closed after it
    (``ptfast scan``'s: a scan that does not wait pays nothing for it), sees the calls made
    meanwhile. Returns the seconds it took."""
    conn_age = policy.conn_age_wait      # PT_CONN_AGE (less the test-only age offset)
    started = time.monotonic()
    if not policy.enabled or not conn_age or dump(lifetimes, policy, proc_root, hook) is None:
        return 0.0
    if not lifetimes.first_seen:
        return time.monotonic() - started
    opened = open_hook() if hook is None and open_hook is not None else None
    try:
        _wait_and_dump(lifetimes, policy, proc_root, sleep, conn_age, hook or opened)
    finally:
        if opened is not None:
            opened.close()
    return time.monotonic() - started


def _wait_and_dump(lifetimes: Lifetimes, policy, proc_root: str,
                   sleep: Callable[[float], None], conn_age: float,
                   hook: Optional[ConnectHook]) -> None:
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
        dump(lifetimes, policy, proc_root, hook)
