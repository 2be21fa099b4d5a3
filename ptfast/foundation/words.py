"""Counts in messages for people: "1 process", "2 processes"."""

from __future__ import annotations


def counted(number: int, singular: str, plural: str | None = None) -> str:
    """``number`` and the noun that goes with it (``plural`` defaults to singular + "s")."""
    if number == 1:
        return f"1 {singular}"
    return f"{number} {plural if plural is not None else singular + 's'}"
