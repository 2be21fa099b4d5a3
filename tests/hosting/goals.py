"""Issue 21's goals on the bed, and what today's ptfast does not meet yet, in one place.

The tests of ``test_hosting`` and ``test_service`` assert the goals per attack and per ignore
file. A case ptfast misses for a known reason is marked xfail(strict=True) here only: when
ptfast gets better the test XPASSes and fails the run until its entry is removed, and a
regression anywhere else fails at once.
"""

from __future__ import annotations

import pytest

#: ``ptfast run`` (live mode) reports each attack at most this many seconds after its PT_LIMIT
SECONDS_AFTER_LIMIT = 5
#: false positives of ``ptfast run`` and ``ptfast scan``: none with the built-in ignore list,
#: at most this many with csf's files (never a worker, login process or session of a root
#: service)
CSF_FALSE_POSITIVES_AT_MOST = 4

#: Attacks ``ptfast run`` misses for a known reason: none since the connect hook
#: (scan.connecthook) sees the spam sender's and the beacon's millisecond calls. (Not a goal at
#: all: a webshell's short calls to one C2 from a pool worker; the bed plants none.)
RUN_MISSES: dict = {}
#: Attacks the one-shot ``ptfast scan`` misses for a known reason
SCAN_MISSES = {
    "beacon": "a scan watches connect()s only while it waits PT_CONN_AGE (5 s): a beacon calling "
              "home every 3 s makes 2 calls there, and 3 make a process count",
}


def attack_cases(names, misses: dict) -> list:
    """``names`` as pytest parameters, the known ``misses`` marked xfail(strict) with the
    reason."""
    return [pytest.param(name, marks=pytest.mark.xfail(
                strict=True, reason=f"not seen: {misses[name]}"))
            if name in misses else name
            for name in names]
