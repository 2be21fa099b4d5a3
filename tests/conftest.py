import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from ptfast import _procscan_py  # noqa: E402


def _compiled_core():
    try:
        from ptfast import _procscan
    except ImportError as exc:  # the build must have produced it: a missing core is a failure
        pytest.fail(f"compiled core not importable ({exc}); reinstall with pip install -e .")
    return _procscan


@pytest.fixture(params=["compiled", "pure-python"])
def core(request):
    """Every core test runs against both the compiled core and its pure-Python twin."""
    return _compiled_core() if request.param == "compiled" else _procscan_py


@pytest.fixture
def children():
    """Start real processes with procs.start_*; all are stopped at the end of the test."""
    started = []
    yield started
    for child in started:
        child.stop()


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root to create processes of other uids")
        for item in items:
            if "needs_root" in item.keywords:
                item.add_marker(skip)
