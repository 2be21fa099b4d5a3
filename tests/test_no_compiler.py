"""Issue 22, point 10: an install without a compiler says so, and what to install: at build time
(setup.py) and in `ptfast --version`."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version_says_what_to_install_when_the_core_was_not_built(tmp_path):
    """The package as installed without a compiler: no _procscan*.so beside it."""
    shutil.copytree(os.path.join(ROOT, "ptfast"), tmp_path / "ptfast",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    # the copy alone: an editable install's finder would supply this checkout's core
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in repr(f)]; "
            "from ptfast.commands.cli import main; sys.exit(main(['--version']))")
    result = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "(pure-python core)" in result.stdout
    assert "cannot import name" not in result.stdout
    assert "apt-get install gcc python3-dev" in result.stdout
    assert "pip install again" in result.stdout


def test_the_build_warns_when_the_core_cannot_be_compiled(tmp_path):
    pytest.importorskip("Cython", reason="Cython builds the core (pip install Cython, or "
                                          "apt-get install cython3)")
    pytest.importorskip("setuptools", minversion="77", reason="the build needs setuptools>=77")
    shutil.copytree(ROOT, tmp_path, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".*", "*.so", "*.c", "build", "tests",
                                                  "benchmarks", "__pycache__", "*.egg-info"))
    environment = dict(os.environ, CC="/nonexistent/cc")    # as if no compiler is installed
    environment.pop("PTFAST_REQUIRE_COMPILED", None)
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ptfast's compiled core could not be built" in result.stderr
    assert "apt-get install gcc python3-dev" in result.stderr
