"""Socket lifetimes: when each connection was first seen (PT_CONN_AGE), and which processes keep
connecting out to other hosts (so that a stream of short connections is no hiding place).

Fed by socket table dumps (sock_diag, every DUMP_EVERY seconds between passes, and each pass's
own tables), by fd walks (which process holds which inode) and, where it runs, by the BPF
connect hook (scan.connecthook: every connect(), however short, with its process). No I/O here:
ptfast.act.looking reads the host and hands the tables in.

The rule for short connections: a connection to a remote peer (an address that is none of
this host's and no loopback) is a *call*. A call seen in a dump is attributed to the process
holding its inode (a walk of that account's processes right after the dump). A process with
REMOTE_CALLS calls or more within REMOTE_WINDOW seconds counts as connecting out, however short
each was: a spam sender's SMTP sessions, a beacon. With the hook, the calls are its connect()s (the dumps
then attribute none, so that a call is not counted twice); without it, a call is seen only
when a dump finds it held. A service worker (see
checks.suspicious.judge_sockets) whose calls all went to one host is querying its database and
does not count; a second remote host makes it count.

Bounds: MAX_CONNECTIONS connections remembered (beyond, a new connection's age is unknown and it
counts at once: a flood cannot make connections look young), MAX_CALLERS processes with calls
(the oldest caller forgotten first), MAX_CALLS_KEPT calls a process.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import sys
from collections import OrderedDict, deque
from typing import Callable, Iterable, NamedTuple, Optional

from ptfast.foundation.escape import escape_text

#: seconds between two socket dumps of ``ptfast run`` (measured: about 1 ms a dump of a few
#: hundred sockets with the compiled core, see docs/detection.md)
DUMP_EVERY = 1.0

#: Test-only: seconds between dumps in place of DUMP_EVERY, so that the test suite's services
#: (and scans' warm-ups) see a connection, a call or a new listener within a fraction of a
#: second instead of waiting a second a dump. Read from the environment of the ptfast process
#: alone (root's: no customer can set it), and only in [MIN_TEST_DUMP_EVERY, DUMP_EVERY]: it
#: can make dumps more frequent, never rarer. Anything else is refused (ignored, said on
#: stderr). Not a setting: never set it on a server.
TEST_DUMP_EVERY = "PTFAST_TEST_DUMP_EVERY"
MIN_TEST_DUMP_EVERY = 0.05


@functools.lru_cache(maxsize=None)
def dump_every_for_tests(text: Optional[str]) -> float:
    """DUMP_EVERY, or PTFAST_TEST_DUMP_EVERY's seconds (``text``) when it is in bounds. Said
    once on stderr when in force or refused: it is never quiet."""
    if text is None:
        return DUMP_EVERY
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not MIN_TEST_DUMP_EVERY <= seconds <= DUMP_EVERY:     # NaN and inf too
        print(f"ptfast: {TEST_DUMP_EVERY}={escape_text(text)} refused (test-only, seconds from "
              f"{MIN_TEST_DUMP_EVERY:g} to {DUMP_EVERY:g}): a socket dump every "
              f"{DUMP_EVERY:g} s", file=sys.stderr)
        return DUMP_EVERY
    print(f"ptfast: {TEST_DUMP_EVERY}={seconds:g} in force (test-only): a socket dump every "
          f"{seconds:g} s", file=sys.stderr)
    return seconds


def dump_delay() -> float:
    """Seconds to the next dump: DUMP_EVERY on average, jittered by half of it either way, so
    that a beacon whose period matches the cadence cannot keep its calls between two dumps."""
    import random       # here, not at the top: a scan that does not wait never draws
    every = dump_every_for_tests(os.environ.get(TEST_DUMP_EVERY))
    return every * random.uniform(0.5, 1.5)


#: calls to remote peers within REMOTE_WINDOW seconds that make a process count as connecting out
REMOTE_CALLS = 3
REMOTE_WINDOW = 300.0
MAX_CONNECTIONS = 200_000
MAX_CALLERS = 10_000
MAX_CALLS_KEPT = 32
#: the socket tables whose records are connections with a lifetime
CONNECTION_PROTOCOLS = frozenset(("tcp", "tcp6", "udp", "udp6"))


class Call(NamedTuple):
    """A connect() the hook saw, in the shape of a socket record (its local end and inode are
    not known: the socket may be long closed)."""
    proto: str
    remote_ip: str
    remote_port: int
    uid: int
    inode: int = 0
    local_ip: str = ""
    local_port: int = 0
    state: str = "connect()"
    netns: int = 0


def is_connection(sock) -> bool:
    """A connected tcp or udp socket (not a listener, not an unconnected udp socket)."""
    return (sock.proto in CONNECTION_PROTOCOLS and sock.state not in ("LISTEN", "UNCONN")
            and sock.remote_port != 0)


class Lifetimes:
    """First sightings of connections, and calls to remote peers by process."""

    def __init__(self, host_addresses: Callable[[], frozenset] = frozenset,
                 nameservers: Callable[[], frozenset] = frozenset) -> None:
        self._host_addresses = host_addresses
        self._hosts: Optional[frozenset] = None
        self._nameservers = nameservers
        self._resolvers: Optional[frozenset] = None
        #: (netns, inode) -> (when first seen, uid that created it)
        self.first_seen: dict = {}
        #: the network namespaces the dumps read (ptfast's own)
        self.dumped_netns: set = set()
        #: (netns, inode) -> (socket, first seen) of calls not yet attributed to a process
        self.unattributed: dict = {}
        #: process key -> deque of (first seen, socket)
        self.calls: OrderedDict = OrderedDict()
        self.connections_left_out = 0
        self.last_dump = 0.0
        #: the connect hook runs: calls come from it, not from the dumps
        self.hooked = False
        #: (netns, inode) of the non-root listeners in the last dump (None before the first)
        self.listening: Optional[set] = None

    # -- what the dumps and walks tell -------------------------------------------------------
    def is_remote(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if address.is_loopback or address.is_unspecified:
            return False
        if self._hosts is None:
            self._hosts = self._host_addresses()
        return address not in self._hosts

    def is_call(self, ip: str, port: int, proto: str) -> bool:
        """A connection to ``ip``:``port`` is a call to another host: the peer is remote and
        not one of the host's own DNS resolvers (every name lookup asks one, by a UDP or TCP
        connect() to its port 53: the system's service, not a call out)."""
        if not self.is_remote(ip):
            return False
        if port != 53 or proto not in CONNECTION_PROTOCOLS:
            return True
        if self._resolvers is None:
            self._resolvers = frozenset(self._nameservers())
        return ipaddress.ip_address(ip) not in self._resolvers

    def observe(self, sockets: Iterable, now: float, tracked: Callable[[int], bool],
                dump: bool) -> set:
        """Record the connections among ``sockets`` of accounts ``tracked`` says yes to.

        ``dump``: a dump's table, of ptfast's own network namespace, read whole, so the
        connections of that namespace not in it are gone. A pass's tables (``dump`` False)
        only add connections of the namespaces dumps cover: a namespace no dump reads (a
        container's) has no lifetimes, and its connections count at once, as lfd's.

        Returns the uids with calls not yet attributed to a process."""
        present = set()
        for sock in sockets:
            if dump:
                self.dumped_netns.add(sock.netns)
            elif sock.netns not in self.dumped_netns:
                continue
            if sock.uid == 0 or not is_connection(sock) or not tracked(sock.uid):
                continue
            key = (sock.netns, sock.inode)
            present.add(key)
            if key in self.first_seen:
                continue
            if len(self.first_seen) >= MAX_CONNECTIONS:
                self.connections_left_out += 1
                continue
            self.first_seen[key] = (now, sock.uid)
            if not self.hooked and self.is_call(sock.remote_ip, sock.remote_port, sock.proto):
                self.unattributed[key] = (sock, now)
        if dump:
            for key in [key for key in self.first_seen
                        if key not in present and key[0] in self.dumped_netns]:
                del self.first_seen[key]
        for key in [key for key, call in self.unattributed.items()
                    if key not in self.first_seen or now - call[1] > REMOTE_WINDOW]:
            del self.unattributed[key]
        return {call[0].uid for call in self.unattributed.values()}

    def attribute(self, processes: Iterable, key_of: Callable) -> None:
        """Attribute the calls not yet attributed to the walked processes holding them."""
        if not self.unattributed:
            return
        for proc in processes:
            for sock in proc.sockets or ():
                call = self.unattributed.pop((sock.netns, sock.inode), None)
                if call is None:
                    continue
                self.add_call(key_of(proc), call[1], call[0])

    def add_call(self, key, when: float, sock) -> None:
        """A call by the process ``key`` at ``when``: a socket record, or a hook's Call."""
        calls = self.calls.pop(key, None) or deque(maxlen=MAX_CALLS_KEPT)
        calls.append((when, sock))
        self.calls[key] = calls         # the newest caller last
        while len(self.calls) > MAX_CALLERS:
            self.calls.popitem(last=False)

    def forget_gone(self, live_keys) -> None:
        for key in [key for key in self.calls if key not in live_keys]:
            del self.calls[key]

    # -- what the checks ask -------------------------------------------------------------------
    def age(self, sock, now: float) -> Optional[float]:
        """Seconds ``sock`` has been held, None when not known (never seen, or left out)."""
        seen = self.first_seen.get((sock.netns, sock.inode))
        return None if seen is None else max(0.0, now - seen[0])

    def came_of_age(self, since: float, now: float, conn_age: float) -> set:
        """uids with a connection that reached ``conn_age`` seconds between ``since`` and
        ``now``: its holder may count now."""
        return {uid for seen, uid in self.first_seen.values()
                if since < seen + conn_age <= now}

    def recent_calls(self, key, now: float) -> list:
        """The sockets of the process's calls first seen within REMOTE_WINDOW."""
        return [sock for seen, sock in self.calls.get(key, ()) if now - seen <= REMOTE_WINDOW]
