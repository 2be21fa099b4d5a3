"""Make attacker-chosen text (process names, paths, command lines) safe to print.

A process picks its own name and command line. Before such text reaches a terminal, a log line,
a mail or a JSON line, control characters, quotes, backslashes and every byte >= 0x7F (including
bytes that are not valid UTF-8) are written as escapes, so the result is printable ASCII that
cannot move a cursor, fake a log line or break a header, and can be decoded back unambiguously.
"""

from __future__ import annotations

_NAMED = {0x5C: "\\\\", 0x22: '\\"', 0x27: "\\'", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
_BYTE_TEXT = tuple(
    _NAMED.get(byte, chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}")
    for byte in range(256)
)
_UNSAFE_ASCII = frozenset("\\\"'")


def escape_text(text: str) -> str:
    """Escape ``text`` (which may carry undecodable bytes as surrogates) to printable ASCII."""
    if text.isascii() and text.isprintable() and _UNSAFE_ASCII.isdisjoint(text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    return "".join([_BYTE_TEXT[byte] for byte in raw])


_LINE_BYTE_TEXT = tuple(
    chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}" for byte in range(256)
)


def escape_line(text: str) -> str:
    """One line for a person (a problem with a file, on a terminal or in the log): control
    characters and bytes >= 0x7F escaped, so nothing can move a cursor or start a new line, but
    quotes and backslashes kept as written (a regex ``listener\\.py`` reads as its author wrote
    it, not doubled). Not for text that is parsed back (log fields, JSON): use escape_text."""
    if text.isascii() and text.isprintable():
        return text
    raw = text.encode("utf-8", "surrogateescape")
    return "".join([_LINE_BYTE_TEXT[byte] for byte in raw])


_BLOCK_BYTE_TEXT = tuple(
    chr(byte) if 0x20 <= byte < 0x7F or byte == 0x09 else f"\\x{byte:02x}" for byte in range(256)
)


def escape_block(text: str) -> str:
    """Multi-line text for a mail attachment (a process list, a status page): every line kept,
    quotes kept, but any other control character and every byte >= 0x7F escaped, so nothing in
    it can act on a terminal or break the message's structure."""
    lines = []
    for line in text.splitlines():
        if line.isascii() and line.isprintable():
            lines.append(line)
        else:
            raw = line.encode("utf-8", "surrogateescape")
            lines.append("".join([_BLOCK_BYTE_TEXT[byte] for byte in raw]))
    return "\n".join(lines)
