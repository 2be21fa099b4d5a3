"""The events file's schema: every line of real runs carries `schema` and an RFC 3339 time, and
every field it has (nested ones as `sockets[].proto`, `response.kill`) is documented in the
events table of docs/observability.md, with the checks it names."""

import datetime
import os
import re
import time

import pytest

from helpers.procs import start_python
from helpers.service import LISTEN_ANY, recorded_service
from helpers.uids import uid_for

from ptfast.channels.events import SCHEMA_VERSION
from ptfast.channels.spool import SPOOL_NAME

pytestmark = pytest.mark.needs_root

DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "observability.md")


def events_section() -> str:
    with open(DOC, encoding="utf-8") as handle:
        return handle.read().split("### Events for machines", 1)[1].split("\n## ", 1)[0]


def documented_fields() -> set:
    """The names in the first column of the events table."""
    table = events_section()
    names = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([a-z_.\[\]]+)`", line.split("|")[1]))
    return names


def test_the_spooled_example_is_a_spool_entry_name():
    """The documented example of `spooled` has the form of the real value."""
    row = next(line for line in events_section().splitlines() if line.startswith("| `spooled`"))
    examples = re.findall(r"`([^`]+)`", row.split("|")[2])
    assert examples and all(SPOOL_NAME.fullmatch(example) for example in examples), examples


def fields_of(record: dict) -> set:
    names = set()
    for key, value in record.items():
        names.add(key)
        if key == "response":
            names.update(f"response.{name}" for name in value)
        if key == "sockets":
            names.update(f"sockets[].{name}" for sock in value for name in sock
                         if name in ("counted", "why"))
    return names


def test_every_event_field_is_documented_and_versioned(tmp_path, aged):
    uids = [uid_for(841), uid_for(842)]
    service = recorded_service(tmp_path, *uids)
    listener = start_python(LISTEN_ANY, uid=uids[0])
    busy = [start_python("", uid=uids[1]) for _ in range(3)]
    try:
        # aged: older than PT_LIMIT=1 at once; a resource event from virtual memory (any
        # interpreter is over 1 MB), not run time, which would need real seconds to pass
        result = service.run_once(service.sendmail, "PT_USERMEM=1",
                                  "PT_USERPROC=2")
        assert result.returncode == 0, result.stderr.decode()
    finally:
        listener.stop()
        for child in busy:
            child.stop()
    events = service.events()
    assert {event["check"] for event in events} == {"suspicious", "resource", "user_processes"}
    documented = documented_fields()
    for event in events:
        assert event["schema"] == SCHEMA_VERSION
        moment = datetime.datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S%z")
        assert abs(moment.timestamp() - time.time()) < 3600
        assert event["time"][-3] == ":"                     # RFC 3339's offset: +01:00
        missing = fields_of(event) - documented
        assert not missing, f"{event['check']} event fields not in {DOC}: {sorted(missing)}"
        # `spooled` is the spool entry's file name, no directory, as documented
        assert SPOOL_NAME.fullmatch(event["spooled"]), event["spooled"]
    suspicious = next(event for event in events if event["check"] == "suspicious")
    for name in ("proto", "local", "remote", "state", "inode", "uid", "netns"):
        assert f"`{name}`" in events_section()
        assert name in suspicious["sockets"][0]
