"""The spool: every alert waiting for delivery, one file per alert and destination.

An alert is written here (atomically) before the first delivery attempt and removed only once
delivered, so a relay or a webhook that is down, a missing sendmail binary or a crash in between
loses nothing: the next pass retries whatever is still there, oldest first
(``ptfast.channels.delivery``). Mails are ``*.eml`` (the message as sent), webhook posts ``*.hook``
(``ptfast.channels.webhooks``). A name starts with the time the entry was spooled, in nanoseconds,
so the directory listing alone tells how deep the spool is and how old its oldest entry.

Only ptfast's own files are entries: a name of SPOOL_NAME's pattern, a regular file (not a
symlink), owned by root, in a directory no one else can write (else UnsafePath at start).
Anything else found there is left alone, never sent.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections import Counter

from ptfast.foundation import safepaths
from ptfast.foundation.safepaths import write_atomically

SPOOL_SUBDIR = "spool"
MAIL, WEBHOOK = "mail", "webhook"
#: channel -> the extension of its entries
EXTENSIONS = {MAIL: "eml", WEBHOOK: "hook"}
CHANNELS = tuple(EXTENSIONS)
_CHANNEL_OF = {extension: channel for channel, extension in EXTENSIONS.items()}
# the names Spool.add gives: only these are ever read and sent
SPOOL_NAME = re.compile(r"([0-9]{20})-[0-9]+-[0-9]{6}\.(eml|hook)")
# far above any alert ptfast renders (its lists are capped); a bound on what a planted file costs
MAX_ENTRY_BYTES = 16 << 20


def channel_of(path: str) -> str:
    """MAIL or WEBHOOK, from an entry's name."""
    return _CHANNEL_OF[path.rsplit(".", 1)[1]]


def spooled_at(path: str) -> float:
    """When the entry was spooled (epoch seconds), from its name."""
    match = SPOOL_NAME.fullmatch(os.path.basename(path))
    assert match is not None, path
    return int(match.group(1)) / 1e9


def entry_names(directory: str) -> list:
    """The entries' names, oldest first; none when the directory does not exist."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if SPOOL_NAME.fullmatch(name))


def census(state_dir: str) -> tuple:
    """(entries waiting, when the oldest was spooled or None), read from the spool directory
    itself; nothing is created (``ptfast status`` reads it)."""
    names = entry_names(os.path.join(state_dir, SPOOL_SUBDIR))
    return len(names), (spooled_at(names[0]) if names else None)


class Spool:
    """Entries not yet delivered: ``STATE_DIR/spool/``, oldest first by name."""

    _sequence = itertools.count()

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.directory = os.path.join(state_dir, SPOOL_SUBDIR)
        safepaths.make_private_directory(self.directory)
        self._added: Counter = Counter()

    def new_name(self, channel: str = MAIL) -> str:
        """A name for an entry not spooled yet (an alert's mail, which its event records
        name before it is written): the time now, so it sorts as spooled now."""
        return (f"{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):06d}."
                f"{EXTENSIONS[channel]}")

    def add(self, data: bytes, channel: str = MAIL, name: str | None = None) -> str:
        """Spool one entry, under ``name`` (new_name's) or a new one; returns its path."""
        if name is None:
            name = self.new_name(channel)
        assert SPOOL_NAME.fullmatch(name) and channel_of(name) == channel, name
        path = os.path.join(self.directory, name)
        write_atomically(path, data)
        self._added[channel] += 1
        return path

    def retract(self, paths) -> None:
        """Take back entries added by this pass before anything delivered them (their finding
        could not be recorded: it is reported, and spooled, again by the next pass)."""
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            self._added[channel_of(path)] -= 1

    def take_added(self) -> Counter:
        """Entries added, by channel, since the last call."""
        added, self._added = self._added, Counter()
        return added

    def pending(self) -> list[str]:
        return [os.path.join(self.directory, name) for name in entry_names(self.directory)]

    def read(self, path: str) -> bytes:
        """An entry's content; OSError (UnsafePath for a file someone else planted)."""
        return safepaths.read_private_file(path, MAX_ENTRY_BYTES)

    def remove(self, path: str) -> None:
        os.unlink(path)

    def census(self) -> tuple:
        return census(self.state_dir)
