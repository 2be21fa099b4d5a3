"""The C programs of tests/evasions: compiled by the test with gcc, run as real processes.

Each program takes the test uid as its first argument, drops to it, prints one JSON line when
ready and exits on EOF on its stdin (see tests/evasions/evasion.h)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .procs import Child, _wait_ready

SOURCES = os.path.join(os.path.dirname(__file__), "..", "evasions")

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None,
                               reason="gcc is missing: the evasion programs are C, compiled by "
                                      "the tests")


def build(name: str, directory: str) -> str:
    """Compile tests/evasions/NAME.c into DIRECTORY/NAME; the path of the program."""
    output = os.path.join(directory, name)
    result = subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", output,
                             os.path.join(SOURCES, name + ".c")],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"gcc failed for {name}.c:\n{result.stderr}")
    return output


def start(argv: list, cleanup=None, **popen_options) -> Child:
    """Run a program and wait for its ready line (its JSON becomes ``Child.info``)."""
    popen = subprocess.Popen([str(arg) for arg in argv], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen_options)
    try:
        info = _wait_ready(popen)
    except Exception:
        popen.kill()
        popen.wait()
        if cleanup:
            cleanup()
        raise
    return Child(popen, info, cleanup)
