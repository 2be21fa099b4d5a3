"""What goes wrong, said for the admin: a ``Problem`` in an input file or setting (with where
it is), and a ``DeliveryError`` when a channel does not accept an alert. Every floor reports
these, so they live on the ground floor and import nothing of ptfast."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """Something wrong in an input file, said with where it is."""

    path: str
    line: int          # 0 when the problem is about the whole file
    message: str
    #: what the admin named cannot be used as meant (a file unreadable, a setting name unknown,
    #: a --set refused): commands stop with exit 2 rather than run on what is left
    fatal: bool = False
    #: what ptfast does about it when it goes on ("using the default 60"): not said when a
    #: reload is refused, since the previous settings stay instead
    consequence: str = ""

    def __str__(self) -> str:
        return self.said(with_consequence=True)

    def said(self, with_consequence: bool = True) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        then = f"; {self.consequence}" if self.consequence and with_consequence else ""
        return f"{where}: {self.message}{then}"


def problem_at(source: str, message: str) -> Problem:
    """A problem with a setting given at ``source`` ("FILE:LINE", "--set" or "default": see
    ``config.Config.where``)."""
    path, _, line = source.rpartition(":")
    if path and line.isdigit():
        return Problem(path, int(line), message)
    return Problem("--set", 0, message)


class DeliveryError(Exception):
    """An entry was not accepted; the text says why, ready for a log line (never a secret).

    ``route_down``: the route itself failed (no binary, relay or web server unreachable, a
    timeout, a destination that refuses everything), so its other entries would fail too and
    wait for the next pass. Otherwise only this entry was refused, and the route's other
    entries are still tried: one undeliverable alert must not hold up every later one.
    """

    def __init__(self, text: str, route_down: bool = True) -> None:
        super().__init__(text)
        self.route_down = route_down
