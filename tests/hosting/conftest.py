"""The hosting bed for the tests: built once per run of this directory, measured, torn down.

It installs packages and starts a server's worth of daemons (about two minutes of apt-get on
the first run, then about a minute), so it runs only when asked for: ``-m hosting`` or
PTFAST_HOSTING=1.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import pytest

from helpers.realworld import REALWORLD

from .attacks import Planter, settle
from .bed import Bed
from .measure import (LOAD_RAMP, details, measure, observe_worker_connections, socket_ownership,
                      table)
from .packages import Unavailable

REPORTS: list = []         # what the terminal summary prints
WATCH_WORKERS_SECONDS = 8


@dataclass(repr=False)       # pytest shows a failing test's arguments: keep it to one line
class Measured:
    bed: Bed
    planter: Planter
    outcomes: dict          # ignore file -> Outcome
    samples: list           # the facts of the bed's processes read during the scans
    held: list              # HeldConnection: what the pool workers held under the web load

    def __repr__(self) -> str:
        return f"<hosting bed {self.bed.dir}: {len(self.samples[-1])} processes>"


def opted_in(config) -> bool:
    return os.environ.get("PTFAST_HOSTING") == "1" or "hosting" in (config.option.markexpr or "")


def _terminate(signum, frame):
    raise KeyboardInterrupt          # SIGTERM tears the bed down as Ctrl-C does


@pytest.fixture(scope="package")
def hosting(request):
    if not opted_in(request.config):
        pytest.skip("the hosting bed installs packages and starts daemons: run with -m hosting "
                    "or PTFAST_HOSTING=1")
    if os.geteuid() != 0:
        pytest.skip("the hosting bed needs root")
    if not os.path.isdir(REALWORLD):
        pytest.skip(f"csf's files are not at {REALWORLD} (set PTFAST_REALWORLD)")
    bed = Bed()
    previous = signal.signal(signal.SIGTERM, _terminate)
    problems: list = []
    try:
        try:
            bed.start()
            planter = Planter(bed)
            planter.plant_all()
        except Unavailable as exc:
            pytest.skip(f"hosting bed unavailable: {exc}")
        settle(2.0)              # every process older than PT_LIMIT=1
        bed.start_load()
        settle(LOAD_RAMP)
        held = observe_worker_connections(bed, WATCH_WORKERS_SECONDS)
        outcomes, samples = measure(bed, planter)
        bed.stop_load()
        REPORTS.append(table(outcomes) + details(outcomes) + "\nwho holds which socket:\n"
                       + socket_ownership(bed, planter, samples))
        yield Measured(bed, planter, {outcome.ignore_file: outcome for outcome in outcomes},
                       samples, held)
    finally:
        problems = bed.teardown()
        signal.signal(signal.SIGTERM, previous)
    assert not problems, f"the hosting bed left things behind: {problems}"


def pytest_terminal_summary(terminalreporter):
    for report in REPORTS:
        terminalreporter.section("ptfast on the hosting bed")
        terminalreporter.write(report)
