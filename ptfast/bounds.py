"""How much of what a process shows ptfast goes into a log line, a mail or an event: bounded.

A process chooses its own command line (6 MB is easy) and how many files it holds open (19,000 fds
on one long path once made a 69 MB mail and a 590 MB daemon). What ptfast writes about a process is
therefore capped here, in one place, and says what it left out:

* one text (a command line, a path): at most MAX_TEXT_CHARS characters of it, escaped (so at
  most 4 x MAX_TEXT_CHARS after escaping), then `` ... N more characters``;
* one list (open files, sockets, memory maps, a user's or a session's processes): repeated
  entries shown once with ``(N times)``, then at most MAX_LIST_ITEMS entries and MAX_LIST_CHARS
  characters, then a line ``... N more``.

So one alert's lists stay under about 4 x MAX_LIST_CHARS (1 MB), whatever the processes do.
"""

from __future__ import annotations

from .escape import escape_text

MAX_TEXT_CHARS = 4096           # PATH_MAX: a whole path always fits
MAX_LIST_ITEMS = 500
MAX_LIST_CHARS = 256 << 10


def bounded_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``escape_text(text)`` of at most ``limit`` characters of ``text``, saying how many more
    there were. Costs O(limit), not O(len(text))."""
    if len(text) <= limit:
        return escape_text(text)
    return f"{escape_text(text[:limit])} ... {len(text) - limit} more characters"


def bounded_lines(items, render=str, max_items: int = MAX_LIST_ITEMS,
                  max_chars: int = MAX_LIST_CHARS) -> list:
    """``render(item)`` (safe text: escaped by ``render``) for each distinct item, once, with
    ``(N times)`` when it repeats; at most ``max_items`` lines and ``max_chars`` characters in
    all, then ``... N more``. Only what is shown is rendered."""
    counts: dict = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    shown: list = []
    used = 0
    for item, count in counts.items():
        if len(shown) >= max_items:
            break
        line = render(item) + (f" ({count} times)" if count > 1 else "")
        if used + len(line) > max_chars:
            break
        shown.append(line)
        used += len(line) + 1
    left_out = len(counts) - len(shown)
    if left_out:
        shown.append(f"... {left_out} more")
    return shown
