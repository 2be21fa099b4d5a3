"""Attacks on the BPF connect hook (issue 21) by a customer with a shell: what one account can
do to hide another's calls to other hosts from `ptfast run`. Real processes, the kernel's own
hook; no packet leaves the host (a UDP connect() sends nothing; loopback)."""

import os
import shutil
import time

import pytest

from ptfast.scan import connecthook, procfs

from helpers.procs import public_tempdir, start_python, wait_until
from helpers.service import dump_often, reported_by_live_service
from helpers.uids import uid_for

pytestmark = [pytest.mark.needs_root]

SPAMMER_UID = uid_for(601)
FLOODER_UID = uid_for(602)
WIDE_UID = uid_for(603)

#: three calls (UDP connect()s: nothing sent) to documentation-range hosts, then a mark file
#: (argv[1]) once made
SPAMMER = """
def spam():
    while os.getuid() == 0:
        time.sleep(0.01)
    for host in ("198.18.60.1", "198.18.60.2", "198.18.60.3"):
        call_out(host, 25)
    open(sys.argv[1], "w").close()
threading.Thread(target=spam, daemon=True).start()
"""

#: connect()s that are no call and cost nothing, more of them (distinct peers) than the hook's
#: map holds: loopback v4, loopback v4-mapped in v6, ::1 on every port, the host's own
#: address (argv[2], if any) on every port; then a mark file (argv[1])
FLOOD = """
def flood():
    while os.getuid() == 0:
        time.sleep(0.01)
    for n in range(10000):
        call_out(f"127.1.{n >> 8}.{n & 255}", 9)
    for n in range(4000):
        call_out(f"::ffff:127.2.{n >> 8}.{n & 255}", 9)
    for port in range(1, 4001):
        call_out("::1", port)
    if sys.argv[2]:
        for port in range(1, 4001):
            call_out(sys.argv[2], port)
    open(sys.argv[1], "w").close()
threading.Thread(target=flood, daemon=True).start()
"""

#: distinct remote peers (calls, each), more than the map holds; then a mark file (argv[1])
WIDE = """
def wide():
    while os.getuid() == 0:
        time.sleep(0.01)
    for n in range(20000):
        call_out(f"198.18.{64 + (n >> 8)}.{n & 255}", 25)
    open(sys.argv[1], "w").close()
threading.Thread(target=wide, daemon=True).start()
"""


def _own_address() -> str:
    """One of the host's own addresses that is no loopback, or "" when it has none."""
    for address in sorted(procfs.host_addresses(), key=lambda a: (a.version, int(a))):
        if not (address.is_loopback or address.is_link_local):
            return str(address)
    return ""


def test_another_accounts_flood_of_connects_that_are_no_calls_cannot_evict_calls(hook):
    """The map holds 16,384 process x peer entries between two drains, least recently
    written evicted first. A customer's 20,000 connect()s in a fraction of a second to
    loopback and the host's own addresses (no call: never reported) evicted a spammer's three
    calls before the drain. They are not recorded now, and the calls survive."""
    public = public_tempdir()
    os.chmod(public, 0o1777)            # the children leave their marks there
    spammed, flooded = os.path.join(public, "spammed"), os.path.join(public, "flooded")
    hook.drain()
    spammer = start_python(SPAMMER, uid=SPAMMER_UID, argv=[spammed])
    flooder = None
    try:
        assert wait_until(lambda: os.path.exists(spammed), 10)
        flooder = start_python(FLOOD, uid=FLOODER_UID, argv=[flooded, _own_address()])
        assert wait_until(lambda: os.path.exists(flooded), 60)
        found = hook.drain()
    finally:
        for child in (spammer, flooder):
            if child is not None:
                child.stop()
        shutil.rmtree(public)
    calls = {c.remote_ip for c in found if c.pid == spammer.pid}
    assert calls == {"198.18.60.1", "198.18.60.2", "198.18.60.3"}, len(found)
    assert not [c for c in found if c.uid == FLOODER_UID][:5]
    assert hook.overflowed == 0


def test_a_drain_of_a_nearly_full_map_counts_as_an_overflow(hook_alone):
    """The kernel's LRU evicts before the map is quite full (20,000 distinct calls left
    16,240 entries on a 2-CPU host): such a drain is an overflow in the status, not none."""
    public = public_tempdir()
    os.chmod(public, 0o1777)            # the children leave their marks there
    done = os.path.join(public, "done")
    hook_alone.drain()
    wide = start_python(WIDE, uid=WIDE_UID, argv=[done])
    try:
        assert wait_until(lambda: os.path.exists(done), 60)
        found = hook_alone.drain()
    finally:
        wide.stop()
        shutil.rmtree(public)
    assert len(found) < connecthook.MAX_ENTRIES       # some were evicted
    assert hook_alone.overflowed == 1, len(found)


DEEP_UID = uid_for(605)

#: a loop that never connects itself: every 0.3 s its child forks five generations deep, each
#: exiting as soon as it forked, and the last makes one call (to a new host) and exits, long
#: before any drain
DEEP_LOOPER = """
def loop():
    host = 0
    while True:
        host += 1
        child = os.fork()
        if child == 0:
            for _ in range(5):
                if os.fork():
                    os._exit(0)
            call_out(f"198.18.41.{1 + host % 250}", 443)
            os._exit(0)
        os.waitpid(child, 0)
        time.sleep(0.3)
threading.Thread(target=loop, daemon=True).start()
"""


@pytest.mark.ageing         # waits for a service's dumps in real time
@pytest.mark.usefixtures("aged")
def test_calls_made_six_generations_below_a_running_loop_count_for_it(tmp_path, hook):
    """A call from a process gone before the drain counts for its nearest running ancestor.
    Carried four generations up at most, a beacon's calls were lost when it forked five deep
    for each (each exiting at once: `sh -c 'sh -c ...'` does as much): the walk now goes up
    as far as the fork events reach, to the first running one."""
    hook.close()        # the service opens its own
    _pid, mail = reported_by_live_service(tmp_path, DEEP_UID, DEEP_LOOPER)
    assert "-> 198.18.41." in mail and "(connect())" in mail, mail[:1500]


BATCH_UID = uid_for(606)

#: a loop that never connects itself: it forks a child for each batch, which makes three calls
#: (to new hosts) over 0.4 s and exits at about 1 s, younger than PT_LIMIT (2 s): alive at the
#: drains that take its calls (every 0.375 s at most), gone before its own PT_LIMIT check
BATCHER = """
def loop():
    batch = 0
    while True:
        batch += 1
        child = os.fork()
        if child == 0:
            for n in range(3):
                call_out(f"198.18.42.{1 + (batch * 3 + n) % 250}", 25)
                time.sleep(0.2)
            time.sleep(0.4)
            os._exit(0)
        os.waitpid(child, 0)
threading.Thread(target=loop, daemon=True).start()
"""


@pytest.mark.ageing
def test_calls_of_a_child_that_exits_before_its_pt_limit_count_for_the_loop(tmp_path, hook,
                                                                            monkeypatch):
    """A child that outlives the drain of its calls but exits before PT_LIMIT is never
    judged: a spam loop forking one per batch of mails was never reported. When a caller
    exits, its calls count for its nearest running ancestor of the same account."""
    hook.close()        # the service opens its own
    dump_often(monkeypatch)     # every call drained while its child runs
    _pid, mail = reported_by_live_service(tmp_path, BATCH_UID, BATCHER, "PT_LIMIT=2")
    assert "-> 198.18.42." in mail and "(connect())" in mail, mail[:1500]


def test_parents_keep_the_processes_that_exited_until_asked():
    """Exits of processes (not of threads) since the last ask: the callers whose calls go to
    their running ancestor."""
    from ptfast.act import live
    from ptfast.act.live import Parents
    from ptfast.scan.procevents import EXIT, FORK, Event
    parents = Parents()
    parents.feed([Event(FORK, 700, 700, 600, 600, -1, -1, 1),
                  Event(EXIT, 701, 700, 0, 0, -1, -1, 2),        # a thread of 700
                  Event(EXIT, 700, 700, 600, 600, -1, -1, 3)])
    assert parents.get(700) == 600
    exited = parents.take_exited()
    assert list(exited) == [700]
    # when, moved from the event's monotonic clock to the boot clock of /proc's start times
    assert exited[700] == pytest.approx((3 - live.boot_to_monotonic_ns()) / live.NS, abs=0.01)
    assert parents.take_exited() == {}


LATE_UID = uid_for(607)


def test_a_caller_gone_before_its_pt_limit_keeps_its_calls_when_the_dump_comes_after_it(
        children):
    """Whether a gone caller was never judged is its age when it exited, not when the dump
    that learns of its exit runs: a child that exits just before PT_LIMIT, noticed by a dump
    just after, lost its calls (neither judged itself nor carried to its loop)."""
    from ptfast.act import looking
    from ptfast.decide import pignore, policy
    from ptfast.decide.lifetimes import Call, Lifetimes
    from ptfast.foundation import config
    loop = start_python("", uid=LATE_UID)          # the running ancestor: a shell loop
    children.append(loop)
    time.sleep(0.3)                                 # its calls come after it started
    conf = config.load(os.devnull, ["GENERIC=1", "PT_LIMIT=2"], override_path=os.devnull)
    lifetimes = Lifetimes()
    judging = policy.Policy(conf, pignore.IgnoreRules(),
                            lambda uid: "looper" if uid == LATE_UID else None,
                            lifetimes=lifetimes)
    ticks = os.sysconf("SC_CLK_TCK")
    boot, wall = time.clock_gettime(time.CLOCK_BOOTTIME), time.time()
    gone_pid = 4_000_001                            # above pid_max: no running process
    started = int((boot - 2.5) * ticks)             # 2.5 s old now, past PT_LIMIT...
    exited_at = boot - 0.6                          # ...but 1.9 s old when it exited
    lifetimes.calls[(gone_pid, started)] = [
        (wall - 0.2, Call("tcp", f"198.18.43.{n}", 25, LATE_UID)) for n in (1, 2, 3)]
    looked = looking.dump(lifetimes, judging, parent_of={gone_pid: loop.pid}.get,
                          exited=lambda: {gone_pid: exited_at})
    assert looked is not None
    assert loop.pid in looked.pids, lifetimes.calls
