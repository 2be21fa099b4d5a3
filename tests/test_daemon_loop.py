"""The service loop's timing, in process: passes never overlap and an overrun does not pile up
passes; SIGTERM mid-pass lets the pass finish."""

import os
import signal
import threading
import time

import pytest

from ptfast.commands import daemon
from ptfast.commands.cli import build_parser

INTERVAL = 0.1


def make_service(tmp_path):
    args = build_parser().parse_args([
        "run", "--config", os.devnull, "--override", os.devnull, "--set", "PT_LOAD=0",
        "--state-dir", str(tmp_path / "state"), "--log-file", str(tmp_path / "log"),
        "--events-file", str(tmp_path / "events"), "--templates", str(tmp_path), "--quiet"])
    service = daemon.Service(args)
    service.start()
    service.interval = lambda: INTERVAL
    return service


@pytest.mark.ageing         # real intervals of 0.1 s pass between the passes
def test_overrunning_passes_do_not_pile_up(tmp_path):
    service = make_service(tmp_path)
    passes = []

    def slow_then_quick_pass():
        started = time.monotonic()
        time.sleep(INTERVAL * 1.75 if len(passes) < 2 else 0.0)     # the first two overrun
        passes.append((started, time.monotonic()))
        if len(passes) == 4:
            os.kill(os.getpid(), signal.SIGTERM)    # after this pass: no timing decides it

    service.run_pass = slow_then_quick_pass
    previous = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(60, os.kill, (os.getpid(), signal.SIGTERM))    # never hang
    timer.start()
    try:
        service.serve()
    finally:
        timer.cancel()
        service.stop()
    assert signal.getsignal(signal.SIGTERM) is previous         # handlers put back
    assert len(passes) == 4
    for (start, end), (next_start, _next_end) in zip(passes, passes[1:]):
        assert next_start >= end                                 # never overlapping
        if end - start > INTERVAL:                               # overran: a full pause after
            assert next_start - end >= INTERVAL * 0.95
        else:                                                    # on time: one per interval
            assert next_start - start >= INTERVAL * 0.95
    log = (tmp_path / "log").read_text()
    assert log.count("longer than PT_INTERVAL") == 2
    assert log.rstrip().endswith("ptfast stopping on SIGTERM")


def test_sigterm_during_a_pass_lets_it_finish(tmp_path):
    service = make_service(tmp_path)
    finished = []

    def pass_that_gets_a_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)                     # the handler has run by now; the pass goes on
        finished.append(True)

    service.run_pass = pass_that_gets_a_sigterm
    try:
        service.serve()
    finally:
        service.stop()
    assert finished == [True]


def test_a_failing_pass_is_logged_and_the_service_goes_on(tmp_path):
    service = make_service(tmp_path)
    calls = []

    def run_pass():
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("a bug\nwith a forged line")
        os.kill(os.getpid(), signal.SIGTERM)

    service.run_pass = run_pass
    try:
        service.serve()
    finally:
        service.stop()
    assert len(calls) == 2
    log = (tmp_path / "log").read_text()
    assert "run_pass failed: RuntimeError(\\'a bug\\\\nwith a forged line\\')" in log
    assert "Traceback (most recent call last):" in log
    assert "RuntimeError: a bug\\nwith a forged line" in log      # escaped, on one line
    assert not any(": with a forged line" in line for line in log.splitlines())


def test_sigusr1_asks_for_a_pass_now_and_signals_during_a_pass_make_one(tmp_path):
    service = make_service(tmp_path)
    service.interval = lambda: 3600
    passes = []

    def run_pass():
        passes.append(time.monotonic())
        if len(passes) == 1:
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGUSR1)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    service.run_pass = run_pass
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)   # without the seam: ignored
    # without the seam the next pass is an hour away: stop the test instead of hanging
    timer = threading.Timer(30, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        service.serve()
    finally:
        timer.cancel()
        service.stop()
        signal.signal(signal.SIGUSR1, previous)
    assert len(passes) == 2
