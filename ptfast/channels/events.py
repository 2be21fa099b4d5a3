"""The events file: one JSON object per line for every finding that was alerted, for log shippers
and SIEMs (docs/observability.md, "Events for machines", documents every field).

The record is ``ptfast scan --json``'s (ptfast.decide.report.finding_record) with ``schema``,
``time``, ``host``, ``template`` and ``spooled`` added. ``schema`` says which version of this
layout a line follows: fields may be added within a version, never renamed, removed or changed in
type; anything else raises it. The same record is what a ``json`` webhook receives.
"""

from __future__ import annotations

import datetime

from ptfast.channels.logfile import append_line
from ptfast.decide.report import finding_record, json_line

SCHEMA_VERSION = 1


def event_time(now: float | None = None) -> str:
    """RFC 3339 local time with its offset, to the second: ``2026-11-26T13:22:51+01:00``."""
    moment = datetime.datetime.fromtimestamp(now) if now is not None else datetime.datetime.now()
    return moment.astimezone().isoformat(timespec="seconds")


def event_record(finding, hostname: str, template: str, spooled: str,
                 now: float | None = None) -> dict:
    """``template``: the alert template's source (a path, or "built-in"); ``spooled``: the name
    of the alert mail's spool entry."""
    return {"schema": SCHEMA_VERSION, "time": event_time(now), "host": hostname,
            **finding_record(finding), "template": template, "spooled": spooled}


def append_event(path: str, record: dict) -> None:
    """One line onto the events file; OSError when it cannot be written."""
    append_line(path, json_line(record))
