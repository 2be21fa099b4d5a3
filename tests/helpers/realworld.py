"""csf's own files (../shared/realworld beside the checkout, as CI lays it out, or the directory
PTFAST_REALWORLD names, for a checkout elsewhere): inputs ptfast must read as lfd does. Tests
that need them skip when they are absent."""

import os

import pytest

REALWORLD = os.environ.get("PTFAST_REALWORLD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "realworld")
needs_realworld = pytest.mark.skipif(not os.path.isdir(REALWORLD),
                                     reason="csf's own files are not here: put the shared/"
                                            "realworld directory of the ptfast project beside the "
                                            "checkout (../shared/realworld), or set "
                                            "PTFAST_REALWORLD=/path/to/realworld")
