"""What a benchmark result needs to be read later: the environment it ran in, the spread of
each measurement, and a JSON file under benchmarks/results/ (git-ignored)."""

from __future__ import annotations

import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")


def compile_tree() -> None:
    """Write the tree's bytecode, as installing ptfast (pip) does. With
    PYTHONDONTWRITEBYTECODE set, every run of the tree's ptfast would compile each module from
    source (~40 ms at start-up), a cost no installed copy pays, nor the "before" contender."""
    compileall.compile_dir(os.path.join(REPO, "ptfast"), quiet=1)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cython_of_core() -> str:
    """The Cython that generated the compiled core, from the header of the generated C file
    (Cython is a build dependency only, so it is usually not importable here)."""
    try:
        with open(os.path.join(REPO, "src_pyx", "_procscan.c")) as handle:
            first = handle.readline()
        return first.replace("/*", "").replace("*/", "").strip()
    except OSError:
        return "unknown (no generated src_pyx/_procscan.c)"


def _in_python(python: str, code: str) -> str:
    """Ask the interpreter the benchmark runs ptfast with (not necessarily this one)."""
    try:
        return subprocess.run([python, "-c", code], capture_output=True, text=True,
                              cwd=REPO, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"unknown ({exc})"


def environment(python: str = sys.executable) -> dict:
    with open("/proc/loadavg") as handle:
        load = handle.read().split()
    meminfo = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            key, value = line.split(":", 1)
            meminfo[key] = int(value.split()[0]) // 1024
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_mb": {"total": meminfo.get("MemTotal"), "available": meminfo.get("MemAvailable")},
        "load_average_at_start": [float(x) for x in load[:3]],
        "python": _in_python(python, "import sys; print(sys.version.split()[0], sys.executable)"),
        "ptfast": _in_python(python, "from ptfast.commands.cli import version_text; "
                                     "print(version_text())"),
        "psutil": _in_python(python, "import psutil; print(psutil.__version__)"),
        "core_file": _in_python(python, "import ptfast.scan.procfs as p; print(p._core.__file__)"),
        "cython_of_core": _cython_of_core(),
        "git_revision": _git("rev-parse", "HEAD"),
        "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
        "git_dirty": dirty != "" if dirty != "unknown" else None,
    }


def spread(values: list) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "all": list(values)}


def results_path(kind: str, document: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    revision = document["environment"]["git_revision"][:10]
    return os.path.join(RESULTS, f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{revision}.json")


def write_results(path: str, document: dict) -> None:
    """(Re)written after every case, so that an interrupted run keeps what it measured."""
    with open(path, "w") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")
