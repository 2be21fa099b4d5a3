"""Exit codes of ``ptfast scan``: 0 clean, 1 findings, 2 error. An unexpected exception is an
error, never 1 (which a cron job or a monitoring check reads as "findings")."""

import subprocess
import sys
import textwrap

FAILING_SCAN = textwrap.dedent("""
    import os, sys
    from ptfast.scan import procfs
    from ptfast.commands.cli import main

    def scan(*args, **kwargs):
        raise RuntimeError("unexpected failure planted by the test")

    procfs.scan = scan
    sys.exit(main(["scan", "--json", "--config", os.devnull, "--override", os.devnull,
                   "--pignore", os.devnull]))
""")


def test_unexpected_exception_in_scan_exits_2():
    result = subprocess.run([sys.executable, "-c", FAILING_SCAN], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "unexpected failure planted by the test" in result.stderr   # said, not swallowed
    assert result.stdout == ""
