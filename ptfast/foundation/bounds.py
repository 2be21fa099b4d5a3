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

The digest (the one mail that lists a pass's findings beyond PT_DIGEST_AFTER) is a list too: at
most MAX_DIGEST_ENTRIES findings, each at most MAX_ENTRY_LINES of its log lines, each line at most
MAX_ENTRY_LINE_CHARS characters, then ``... and N more findings``. So its text stays under
MAX_DIGEST_CHARS however many findings a pass has and whatever they are called, and the mail
always fits the spool (``spool.MAX_ENTRY_BYTES``) and an ordinary relay's size limit.
"""

from __future__ import annotations

from ptfast.foundation.escape import escape_text

MAX_TEXT_CHARS = 4096           # PATH_MAX: a whole path always fits
MAX_LIST_ITEMS = 500
MAX_LIST_CHARS = 256 << 10
MAX_DIGEST_ENTRIES = 100
MAX_ENTRY_LINES = 4
MAX_ENTRY_LINE_CHARS = 900      # a digest line stays one line of mail (alerts.MAX_LINE)
_CUT_NOTE = " ... {} more characters"
_LEFT_OUT_LINES = "  ... {} more lines of this finding: see the log"
_LEFT_OUT_ENTRIES = ("... and {} more findings, most severe first above; every one is in the "
                     "log and the events file")
#: what bounded_digest returns can weigh, in characters (line breaks included)
MAX_DIGEST_CHARS = (MAX_DIGEST_ENTRIES * MAX_ENTRY_LINES
                    * (MAX_ENTRY_LINE_CHARS + len(_CUT_NOTE) + 20 + 1)
                    + len(_LEFT_OUT_ENTRIES) + 20)


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


def cut_escaped(line: str, limit: int = MAX_ENTRY_LINE_CHARS) -> str:
    """Safe text (``escape_text``'s: printable ASCII, every backslash starting an escape) of at
    most ``limit`` characters, then `` ... N more characters``. The cut never falls inside an
    escape (``\\x4`` alone would read as something else)."""
    if len(line) <= limit:
        return line
    end = 0
    while end < limit:
        step = (4 if line[end + 1:end + 2] == "x" else 2) if line[end] == "\\" else 1
        if end + step > limit:
            break
        end += step
    return line[:end] + _CUT_NOTE.format(len(line) - end)


def bounded_entry(lines: list) -> list:
    """One finding's lines in the digest: at most MAX_ENTRY_LINES (the first ones, a line that
    says how many were left out, and the last, which states the finding: a fork bomb's), each
    cut to MAX_ENTRY_LINE_CHARS."""
    if len(lines) > MAX_ENTRY_LINES:
        left_out = len(lines) - (MAX_ENTRY_LINES - 1)
        lines = [*lines[:MAX_ENTRY_LINES - 2], _LEFT_OUT_LINES.format(left_out), lines[-1]]
    return [cut_escaped(line) for line in lines]


def bounded_digest(entries) -> list:
    """The digest's lines: the first MAX_DIGEST_ENTRIES entries (each a finding's safe log
    lines, ``bounded_entry``), then ``... and N more findings``. At most MAX_DIGEST_CHARS."""
    shown: list = []
    count = 0
    for count, lines in enumerate(entries, start=1):
        if count <= MAX_DIGEST_ENTRIES:
            shown.extend(bounded_entry(lines))
    if count > MAX_DIGEST_ENTRIES:
        shown.append(_LEFT_OUT_ENTRIES.format(count - MAX_DIGEST_ENTRIES))
    return shown
