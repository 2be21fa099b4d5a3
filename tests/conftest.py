import compileall
import os
import shutil
import sys

import pytest

from helpers.procs import kill_uids, public_tempdir
from helpers.scan import AGED_BY
from helpers.uids import BASE, BLOCK

from ptfast.scan import _procscan_py
from ptfast.decide import policy

try:
    from ptfast.scan import _procscan as _compiled
    COMPILED_MISSING = None
except ImportError as exc:     # not built here (no compiler): ptfast runs on the twin
    _compiled = None
    COMPILED_MISSING = str(exc)

# CI builds the compiled core and must not pass without it: there a missing core is a failure.
REQUIRE_COMPILED = bool(os.environ.get("PTFAST_REQUIRE_COMPILED"))


def pytest_configure(config):
    if COMPILED_MISSING and REQUIRE_COMPILED:
        raise pytest.UsageError(f"PTFAST_REQUIRE_COMPILED is set but the compiled core is not "
                                f"importable: {COMPILED_MISSING}")
    # Hundreds of tests start `python -m ptfast`. An editable install has no bytecode, and
    # with PYTHONDONTWRITEBYTECODE set none is ever written: each start would compile every
    # module from source again (a quarter of the suite's CPU). Written once here, as pip does
    # for a regular install (a no-op there).
    import ptfast
    compileall.compile_dir(os.path.dirname(ptfast.__file__), quiet=1)
    # The same for the test modules: pytest caches their assertion rewrite as bytecode unless
    # PYTHONDONTWRITEBYTECODE is set, and each xdist worker would rewrite all of them again
    # (seconds of CPU each). Only this process stops honouring it; the ptfast it starts do.
    sys.dont_write_bytecode = False
    _make_programs_directory()


#: xdist workers by default: the suite mostly waits (for processes, daemons, sockets), so four
#: keep two cores busy. Tests share nothing a worker changes: each worker picks its own block of
#: uids (helpers.uids), the one host-wide setting is changed under a lock (helpers.native)
WORKERS = 4


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """``-n 4`` unless the command line chose (``-n 0``, ``-n 2``, ``--dist``, ``--pdb``,
    ``-p no:xdist``); not in addopts, so that pytest without xdist (the sdist's and the wheels'
    core tests) still runs the tests, one at a time."""
    option = config.option
    if (not config.pluginmanager.hasplugin("xdist") or "PYTEST_XDIST_WORKER" in os.environ
            or option.numprocesses is not None or option.dist != "no"
            or getattr(option, "tx", None) or option.usepdb):
        return
    option.numprocesses = WORKERS
    option.dist = "load"
    # one test at a time: in chunks, a worker took a run of waiting tests and the others
    # finished half a minute before it (see spread_waiting_tests)
    option.maxschedchunk = 1
    option.tx = ["popen"] * WORKERS


def pytest_report_header(config):
    if COMPILED_MISSING:
        return f"ptfast cores: pure-python only (compiled core not importable: {COMPILED_MISSING})"
    return "ptfast cores: compiled and pure-python"


@pytest.fixture(params=["compiled", "pure-python"])
def core(request):
    """Every core test runs against both the compiled core and its pure-Python twin."""
    return _compiled if request.param == "compiled" else _procscan_py


@pytest.fixture
def aged(monkeypatch):
    """Every process counts AGED_BY seconds older against PT_LIMIT, in each `ptfast` this test
    runs (subprocesses through the environment, in-process through build_policy), instead of
    the test sleeping past PT_LIMIT=1. Only PT_LIMIT's comparison moves: PT_USERTIME, the
    hung-sshd grace, young forkers and the listener memory see real ages (tests of those, and
    a few of PT_LIMIT itself, really wait: marked ``ageing``)."""
    monkeypatch.setenv(policy.TEST_AGE_OFFSET, str(AGED_BY))
    monkeypatch.setattr(policy, "age_offset_for_tests", lambda text=None: AGED_BY)
    return AGED_BY


#: the directory the C programs of tests/evasions are built in, shared by the xdist workers:
#: made by the process that starts them (their environment is inherited), removed by it
PROGRAMS_DIRECTORY = "PTFAST_TEST_PROGRAMS_DIRECTORY"
_made_programs_directory = None


def _make_programs_directory():
    global _made_programs_directory
    if PROGRAMS_DIRECTORY not in os.environ:
        _made_programs_directory = os.environ[PROGRAMS_DIRECTORY] = public_tempdir()


def pytest_unconfigure(config):
    if _made_programs_directory:
        shutil.rmtree(_made_programs_directory, ignore_errors=True)
        del os.environ[PROGRAMS_DIRECTORY]


@pytest.fixture(scope="session")
def compiled_programs():
    """``compiled_programs(names)``: name -> path of each C program of tests/evasions, each
    compiled once a run into a directory other uids can traverse (helpers.native)."""
    from helpers.native import Programs
    return Programs(os.environ[PROGRAMS_DIRECTORY])


def _open_hook(alone: bool):
    from helpers.native import connect_hook_maps
    from ptfast.scan import connecthook
    # the lock first: a hook opened while another worker's test floods would fill with the
    # flood while it waits (and its first drain count an overflow)
    with connect_hook_maps(alone):
        opened, why = connecthook.open_hook()
        if opened is None:
            if os.environ.get("PTFAST_REQUIRE_CONNECT_HOOK") == "1":
                pytest.fail(f"the BPF connect hook does not run here: {why}")
            pytest.skip(f"the BPF connect hook does not run here: {why}")
        try:
            yield opened
        finally:
            opened.close()


@pytest.fixture
def hook():
    """A BPF connect hook of the test's own (skipped where none can run, failed there in
    CI); no test floods the hooks' maps meanwhile (helpers.native.connect_hook_maps)."""
    yield from _open_hook(alone=False)


@pytest.fixture
def hook_alone():
    """A connect hook for a test that floods the hooks' maps: no test that counts on its
    calls runs meanwhile."""
    yield from _open_hook(alone=True)


@pytest.fixture
def compiled_core():
    return _compiled


@pytest.fixture(scope="module")
def shared_by_both_cores():
    from helpers.shared import SharedChildren
    children = SharedChildren(cases=2)
    yield children
    children.stop()


@pytest.fixture
def shared(shared_by_both_cores):
    """Children both cores' cases of a test only read (helpers.shared): a scan, or a
    ``run --once`` that mails and remembers in the case's own ServiceDir and kills nothing."""
    yield shared_by_both_cores
    shared_by_both_cores.stop_used_up()


@pytest.fixture
def children():
    """Start real processes with helpers.procs.start_*; all are stopped at the end of the test."""
    started = []
    yield started
    for child in started:
        child.stop()


def _needs_compiled(item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "compiled" in callspec.params.values():
        return True
    return "compiled_core" in getattr(item, "fixturenames", ())


def spread_waiting_tests(items: list) -> list:
    """The tests that wait for real time (``ageing``) spread evenly over the first two thirds
    of the others. xdist hands each worker the next test when it is done with one
    (``--maxschedchunk 1``): spread out, about as many workers wait at any time as the suite's
    waiting needs, while the others keep both cores busy; the waiting ones are done before the
    tail. Bunched at the start, every worker waited at once and the cores idled; at the end,
    one worker waited alone."""
    waiting = [item for item in items if "ageing" in item.keywords]
    others = [item for item in items if "ageing" not in item.keywords]
    if not waiting:
        return others
    step = max(1, (2 * len(others) // 3) // len(waiting))
    spread = []
    for index, item in enumerate(waiting):
        spread.append(item)
        spread.extend(others[index * step:(index + 1) * step])
    spread.extend(others[len(waiting) * step:])
    return spread


def pytest_collection_modifyitems(config, items):
    items[:] = spread_waiting_tests(items)
    if COMPILED_MISSING and not REQUIRE_COMPILED:
        # without the compiled core its tests are deselected (not errors); the twin's still run
        kept = [item for item in items if not _needs_compiled(item)]
        config.hook.pytest_deselected(items=[item for item in items if _needs_compiled(item)])
        items[:] = kept
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root to create processes of other uids")
        for item in items:
            if "needs_root" in item.keywords:
                item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    """Nothing a test started as one of the session's uids may outlive the run, whatever
    failed: kill what is left, and fail the run so the leaking test gets fixed."""
    left = kill_uids(BASE, BASE + BLOCK)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"LEFTOVER processes of test uids killed after the run: "
                                f"{sorted(left)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
