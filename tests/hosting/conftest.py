"""The hosting bed for the tests: built once per run of this directory, measured, torn down.

It installs packages and starts a server's worth of daemons (about two minutes of apt-get on
the first run, then under four minutes: ``ptfast run`` watches the bed for SERVICE_WINDOW
seconds while the attacks are planted, then one-shot scans run under the same load), so it
runs only when asked for: ``-m hosting`` or PTFAST_HOSTING=1. CI runs it (.ci/run).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import pytest

from helpers.realworld import REALWORLD

from .attacks import Planter
from .bed import Bed
from .live import run_service, service_table
from .measure import details, socket_ownership, table
from .packages import Unavailable

REPORTS: list = []         # what the terminal summary prints
WATCH_WORKERS_SECONDS = 8
#: ``ptfast run``'s PT_LIMIT, PT_INTERVAL and the seconds it runs (the attacks are planted from
#: +5 s, one every 4 s, then new sessions at about +61 s: each judged within the window)
SERVICE_LIMIT = 10
SERVICE_INTERVAL = 60
SERVICE_WINDOW = 150


@dataclass(repr=False)       # pytest shows a failing test's arguments: keep it to one line
class Measured:
    bed: Bed
    planter: Planter
    outcomes: dict          # ignore file -> Outcome of the one-shot scan
    samples: list           # the facts of the bed's processes read during the scans
    held: list              # HeldConnection: what the pool workers held under the web load
    service: dict           # live.run_service's results: ``ptfast run`` on the bed

    def __repr__(self) -> str:
        return f"<hosting bed {self.bed.dir}: {len(self.samples[-1])} processes>"


def opted_in(config) -> bool:
    return os.environ.get("PTFAST_HOSTING") == "1" or "hosting" in (config.option.markexpr or "")


def unavailable(reason: str):
    """Skip: the bed cannot run here; fail instead where it must run (CI sets
    PTFAST_HOSTING_REQUIRED=1), so that a bed that stopped building cannot pass unnoticed."""
    if os.environ.get("PTFAST_HOSTING_REQUIRED") == "1":
        pytest.fail(f"the hosting bed is required here (PTFAST_HOSTING_REQUIRED=1): {reason}")
    pytest.skip(reason)


def _terminate(signum, frame):
    raise KeyboardInterrupt          # SIGTERM tears the bed down as Ctrl-C does


@pytest.fixture(scope="package")
def hosting(request):
    if not opted_in(request.config):
        pytest.skip("the hosting bed installs packages and starts daemons: run with -m hosting "
                    "or PTFAST_HOSTING=1")
    if os.geteuid() != 0:
        unavailable("the hosting bed needs root")
    if not os.path.isdir(REALWORLD):
        unavailable(f"csf's files are not at {REALWORLD} (set PTFAST_REALWORLD)")
    timings: list = []       # the build's steps and the phases, printed at the end
    bed = Bed(progress=timings.append)
    previous = signal.signal(signal.SIGTERM, _terminate)
    problems: list = []
    began = time.monotonic()
    try:
        try:
            bed.start()
            planter = Planter(bed)
        except Unavailable as exc:
            unavailable(f"hosting bed unavailable: {exc}")
        built = time.monotonic()
        served = run_service(bed, planter, SERVICE_LIMIT, SERVICE_INTERVAL, SERVICE_WINDOW,
                             watch_workers=WATCH_WORKERS_SECONDS)
        measured = time.monotonic()
        outcomes = served.outcomes
        longest: dict = {}
        for conn in served.held:
            longest[conn.remote] = max(longest.get(conn.remote, 0.0), conn.seen_for)
        held = ", ".join(f"{remote} {seconds:.1f} s" for remote, seconds in sorted(longest.items()))
        REPORTS.append(service_table(served.results)
                       + f"the pool workers' connections under the load, longest seen held over "
                         f"{WATCH_WORKERS_SECONDS} s: {held}\n\n"
                       + table(outcomes) + details(outcomes)
                       + "\nwho holds which socket:\n"
                       + socket_ownership(bed, planter, served.samples))
        timings.append(f"install {sum(bed.install_timings.values()):.0f} s, build "
                       f"{built - began - sum(bed.install_timings.values()):.0f} s, ptfast run "
                       f"and the scans {measured - built:.0f} s")
        yield Measured(bed, planter, {outcome.ignore_file: outcome for outcome in outcomes},
                       served.samples, served.held, served.results)
    finally:
        torn = time.monotonic()
        problems = bed.teardown()
        signal.signal(signal.SIGTERM, previous)
        timings.append(f"teardown {time.monotonic() - torn:.1f} s; the bed in all "
                       f"{time.monotonic() - began:.0f} s")
        REPORTS.append("timings: " + "; ".join(timings) + "\n")
    assert not problems, f"the hosting bed left things behind: {problems}"


def pytest_terminal_summary(terminalreporter):
    for report in REPORTS:
        terminalreporter.section("ptfast on the hosting bed")
        terminalreporter.write(report)
