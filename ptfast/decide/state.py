"""What ptfast remembers between passes and restarts: the processes already reported.

A process is reported once, keyed by (pid, start time): a PID that the kernel hands to a new
process is a new process (lfd keyed on the PID alone and so never reported the newcomer). The
memory is one orjson file in the state directory, replaced atomically (write a temporary file,
fsync, rename), so a crash leaves the old file or the new one, never half of one. A file that
cannot be parsed is reported, kept aside for inspection and replaced; it never stops ptfast.
"""

from __future__ import annotations

import heapq
import os
import time
from collections import Counter

import orjson

from ptfast.foundation import safepaths
from ptfast.foundation.safepaths import write_atomically
from ptfast.decide.findings import (EVERYTHING, REMEMBER_LISTENER, REMEMBER_LOAD_QUIET,
                                    REMEMBER_PROCESS,
                                    REMEMBER_RESOURCE, REMEMBER_USER_QUIET, MemoryQuestions,
                                    Remember)

REPORTED_FILE = "reported.json"
#: Listeners remembered for the hopping check: a customer can open many more; the state file
#: (written each pass) stays small.
MAX_LISTENERS = 20_000
#: Each account's share of them (the account that created the listener): one account's flood
#: evicts only its own entries, never another account's.
MAX_LISTENERS_PER_ACCOUNT = 1_000
#: Accounts remembered as having held one listener (the latest ones): a listener handed across
#: accounts is followed into each of them.
MAX_HOLDERS = 8
#: what is remembered of each reported process (its listeners' ports, its peers...): its oldest
#: are forgotten first (reported again at worst, and the digest carries the volume)
MAX_WHAT_PER_PROCESS = 64
FORMAT_VERSION = 1
# far above what tracking ever remembers (a few hundred bytes a process), and a bound on what
# a planted file can make ptfast read
MAX_STATE_BYTES = 64 << 20


class _Largest:
    """The account holding the most entries of ``counts`` (which ``change`` keeps up to date),
    in O(log n) a question: a heap made on the first one, its stale entries dropped lazily."""

    def __init__(self, counts: Counter) -> None:
        self.counts = counts
        self._heap: list | None = None

    def change(self, uid: int, by: int) -> None:
        self.counts[uid] += by
        if self._heap is not None:
            heapq.heappush(self._heap, (-self.counts[uid], uid))

    def __call__(self) -> int:
        if self._heap is None:
            self._heap = [(-count, uid) for uid, count in self.counts.items()]
            heapq.heapify(self._heap)
        while True:
            count, uid = self._heap[0]
            if -count == self.counts[uid]:
                return uid
            heapq.heappop(self._heap)


class ReportedState(MemoryQuestions):
    """What was reported, persisted in ``DIR/reported.json``:

    * ``reported``: (pid, start_time) -> when, for suspicious processes;
    * ``resources``: (pid, start_time, resource) -> when, for resource alerts;
    * ``quiet_users``: user -> until when PT_USERPROC stays quiet about them (LF_FLUSH);
    * ``load_quiet_until``: until when the load check stays quiet (PT_LOAD_SKIP);
    * ``listeners``: tracked users' listening sockets, when each was first seen, whether it
      was reported and which accounts' processes held it (a listener handed from one young
      process to the next outlives them all, whichever accounts they belong to).

    The policy asks it ``findings.MemoryQuestions`` (``was_reported``...); only ptfast.act.respond
    changes the state, through ``remember``.
    """

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, REPORTED_FILE)
        self.reported: dict[tuple, float] = {}
        #: (pid, start_time) -> what it was reported for; a reported process not here (its
        #: memory predates this) is never reported again
        self.what: dict[tuple, list] = {}
        self.resources: dict[tuple, float] = {}
        self.quiet_users: dict[str, float] = {}
        self.load_quiet_until = 0.0
        #: (netns, inode) -> [uid that created it, first seen, reported, [uids that held it]]
        #: of tracked users' listeners
        self.listeners: dict[tuple, list] = {}
        #: uid -> how many of its listeners were left out or evicted (since ptfast started)
        self.listeners_left_out: Counter = Counter()
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
            what = {}
            for pid, start_time, reported_at, *words in document["reported"]:
                keys[(int(pid), int(start_time))] = float(reported_at)
                if words:       # since issue 21
                    what[(int(pid), int(start_time))] = [
                        str(word) for word in words[0]][-MAX_WHAT_PER_PROCESS:]
            resources = {}
            for pid, start_time, resource, reported_at in document.get("resources", ()):
                resources[(int(pid), int(start_time), str(resource))] = float(reported_at)
            quiet_users = {str(user): float(until)
                           for user, until in dict(document.get("quiet_users", {})).items()}
            load_quiet_until = float(document.get("load_quiet_until", 0.0))
            listeners = {}
            for entry in document.get("listeners", ()):
                netns, inode, uid, seen, reported, *held = entry     # holders: since 20.5
                holders = [int(holder) for holder in (held[0] if held else ())][-MAX_HOLDERS:]
                listeners[(int(netns), int(inode))] = [int(uid), float(seen), bool(reported),
                                                       holders]
        except (ValueError, TypeError, KeyError) as exc:
            return self._set_aside(str(exc))
        self.reported, self.resources, self.quiet_users = keys, resources, quiet_users
        self.what = what
        self.load_quiet_until = load_quiet_until
        self.listeners = listeners
        return None

    def _set_aside(self, why: str) -> str:
        kept = f"{self.path}.corrupt-{int(time.time())}"
        os.replace(self.path, kept)
        self._dirty = True
        return (f"{self.path}: corrupt state file ({why}); moved to {kept} and started "
                "afresh, so processes reported before may be reported once more")

    def reported_what(self, key: tuple):
        if key not in self.reported:
            return None
        words = self.what.get(key)
        return EVERYTHING if words is None else frozenset(words)

    # -- what a pass observes ---------------------------------------------------------
    def observe_listeners(self, sockets, holders=None, now: float | None = None) -> Counter:
        """Remember when each of ``sockets`` (tracked users' listeners of this scan) was first
        seen and, from ``holders`` ((netns, inode) -> uids of processes seen holding it), which
        accounts held it; forget the ones no longer there. Returns uid -> how many of that
        account's listeners were left out (or evicted) for the bounds.

        The bounds: MAX_LISTENERS_PER_ACCOUNT per creating account, MAX_LISTENERS in all. An
        account at its share makes room only from its own entries: first one already reported
        (it serves only to avoid a second alert), else its newest is left out; the oldest
        unreported are kept, as they are the nearest to PT_LIMIT (evicting them instead would
        let an account reset a listener's age by opening new ones). When the whole memory is
        full, the account holding the most entries gives one up by the same rule, unless the
        newcomer's own account holds as many."""
        now = time.time() if now is None else now
        current = {(sock.netns, sock.inode): sock.uid for sock in sockets}
        for key in [key for key in self.listeners if key not in current]:
            del self.listeners[key]
            self._dirty = True
        left_out: Counter = Counter()
        per_account = Counter(seen[0] for seen in self.listeners.values())
        # uid -> (its reported keys, its unreported keys oldest first): made on the first
        # eviction of the pass, so each eviction costs O(1) however many newcomers there are
        index: dict | None = None
        largest = _Largest(per_account)
        for key, uid in current.items():
            if key in self.listeners:
                continue
            victim = uid if per_account[uid] >= MAX_LISTENERS_PER_ACCOUNT else None
            if victim is None and len(self.listeners) >= MAX_LISTENERS:
                biggest = largest()
                victim = biggest if per_account[biggest] > per_account[uid] + 1 else uid
            if victim is not None:
                if index is None:
                    index = self._index_by_account()
                reported, unreported = index.setdefault(victim, ([], []))
                left_out[victim] += 1
                if reported:
                    evicted = reported.pop()
                elif victim != uid and unreported:
                    evicted = unreported.pop()
                else:                       # the newcomer is its own account's newest
                    continue
                del self.listeners[evicted]
                largest.change(victim, -1)
            self.listeners[key] = [uid, now, False, []]
            largest.change(uid, +1)
            if index is not None:
                index.setdefault(uid, ([], []))[1].append(key)
            self._dirty = True
        for key, uids in (holders or {}).items():
            self._held_by(key, uids)
        self.listeners_left_out.update(left_out)
        return left_out

    def _index_by_account(self) -> dict:
        index: dict = {}
        for key, seen in self.listeners.items():
            index.setdefault(seen[0], ([], []))[0 if seen[2] else 1].append(key)
        return index

    def _held_by(self, key: tuple, uids) -> None:
        seen = self.listeners.get(key)
        if seen is None:
            return
        known = seen[3]
        for uid in uids:
            if uid not in known:
                known.append(uid)
                del known[:-MAX_HOLDERS]
                self._dirty = True

    def held_by(self, holders: dict) -> None:
        """Record which accounts' processes hold remembered listeners: (netns, inode) -> uids."""
        for key, uids in holders.items():
            self._held_by(key, uids)

    # -- what ptfast.act.respond records ----------------------------------------------------
    def remember(self, memo: Remember, now: float | None = None) -> None:
        """Record ``memo`` (a finding's ``response.remember``)."""
        now = time.time() if now is None else now
        if memo.kind == REMEMBER_PROCESS:
            key = tuple(memo.key)
            if key not in self.reported or key in self.what:
                words = self.what.setdefault(key, [])
                words.extend(word for word in memo.what if word not in words)
                del words[:-MAX_WHAT_PER_PROCESS]
            self.reported[key] = now
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
            self.what.pop(key, None)
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
                    "reported": [[pid, start, at, *([self.what[(pid, start)]]
                                                    if (pid, start) in self.what else [])]
                                 for (pid, start), at in self.reported.items()],
                    "resources": [[pid, start, resource, at]
                                  for (pid, start, resource), at in self.resources.items()],
                    "quiet_users": self.quiet_users,
                    "load_quiet_until": self.load_quiet_until,
                    "listeners": [[netns, inode, uid, first_seen, reported, holders]
                                  for (netns, inode), (uid, first_seen, reported, holders)
                                  in self.listeners.items()]}
        write_atomically(self.path, orjson.dumps(document))
        self._dirty = False
