"""The C programs of tests/evasions: compiled by the test with gcc, run as real processes.

Each program takes the test uid as its first argument, drops to it, prints one JSON line when
ready and exits on EOF on its stdin (see tests/evasions/evasion.h)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess

import pytest

from .procs import Child, _wait_ready, public_tempdir

DEEP_DIRECTORY = "d" * 200
DEEP_LEVELS = 25          # 25 * 201 bytes: the path is longer than PATH_MAX (4096)
PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"
#: root's own directory: no other user can take the lock's name
PING_GROUP_RANGE_LOCK = "/run/ptfast-tests-ping_group_range.lock"

#: every connect hook on the host records every account's connect()s: a test that floods the
#: hook's map (more distinct calls than it holds) evicts the calls another worker's test waits
#: for. The flooder holds this lock alone; tests that count on their calls hold it shared
CONNECT_HOOK_LOCK = "/run/ptfast-tests-connect-hook.lock"

SOURCES = os.path.join(os.path.dirname(__file__), "..", "evasions")

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None,
                               reason="gcc is missing: the evasion programs are C, compiled by "
                                      "the tests (apt-get install gcc)")


def needs_program(program: str, package: str):
    """Skip, naming the Debian package, when ``program`` is not on PATH (a newcomer's machine
    has no MTA, no logrotate)."""
    return pytest.mark.skipif(shutil.which(program) is None,
                              reason=f"{program} is not installed (apt-get install {package})")


def program_fixtures(names):
    """Module-scoped ``workdir`` (a directory other uids can traverse, removed afterwards, deep
    trees included) and ``programs`` (name -> path of each program, compiled once a session
    into a shared directory other uids can traverse), for a test module to bind:
    ``workdir, programs = program_fixtures(...)``."""

    @pytest.fixture(scope="module")
    def workdir():
        path = public_tempdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @pytest.fixture(scope="module")
    def programs(compiled_programs):
        return compiled_programs(names)

    return workdir, programs


class Programs:
    """The C programs of tests/evasions, each compiled once a run into ``directory``: the
    xdist workers share it (several modules and every worker use them, and gcc was a good
    part of their CPU). A lock per program lets one worker build it while the others wait."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.built: dict = {}

    def __call__(self, names) -> dict:
        missing = sorted(name for name in names if name not in self.built)
        with contextlib.ExitStack() as locks:
            compiling = {}
            for name in missing:          # in sorted order: two workers cannot deadlock
                locks.enter_context(_locked(os.path.join(self.directory, name + ".lock")))
                if os.path.exists(os.path.join(self.directory, name)):
                    self.built[name] = os.path.join(self.directory, name)
                else:
                    compiling[name] = _start_build(name, self.directory)
            failed = []
            for name, (gcc, output) in compiling.items():
                _out, err = gcc.communicate()
                if gcc.returncode != 0:
                    failed.append(f"gcc failed for {name}.c:\n{err}")
                else:
                    # whole or absent under its final name, for the next worker to take
                    self.built[name] = os.path.join(self.directory, name)
                    os.rename(output, self.built[name])
        if failed:
            raise RuntimeError("\n".join(failed))
        return {name: self.built[name] for name in names}


@contextlib.contextmanager
def _locked(path: str):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _start_build(name: str, directory: str) -> tuple:
    output = os.path.join(directory, f"{name}.building")
    gcc = subprocess.Popen(["gcc", "-O2", "-Wall", "-pthread", "-o", output,
                            os.path.join(SOURCES, name + ".c")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return gcc, output


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


def copy_program(source: str, directory: str, name: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    shutil.copy2(source, path)
    return path


def start_from_deep_path(program: str, workdir: str, uid: int):
    """Run a copy of ``program`` from a path longer than PATH_MAX: the directories are made one
    fd at a time and the program is started relative to the deepest one."""
    dir_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEEP_LEVELS):
            os.mkdir(DEEP_DIRECTORY, 0o755, dir_fd=dir_fd)
            deeper = os.open(DEEP_DIRECTORY, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = deeper
        with open(program, "rb") as source:
            image = source.read()
        target = os.open("listener", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755, dir_fd=dir_fd)
        try:
            os.write(target, image)
        finally:
            os.close(target)
        deepest = dir_fd
        return start(["./listener", uid], preexec_fn=lambda: os.fchdir(deepest))
    finally:
        os.close(dir_fd)


def start_deleted(program: str, directory: str, name: str, *args):
    """Run a copy of ``program`` and delete the copy once it runs."""
    path = copy_program(program, directory, name)
    child = start([path, *args])
    os.unlink(path)
    child.info["exe"] = path
    return child


def start_with_hidden_link(program: str, directory: str, uid: int):
    """Run ``directory/run-me`` and unlink it, while a second link elsewhere keeps the file: the
    path it ran from is gone, the file's link count is 1."""
    path = copy_program(program, directory, "run-me")
    os.makedirs(os.path.join(directory, ".cache"))
    os.link(path, os.path.join(directory, ".cache", "kept"))
    child = start([path, uid, "--quiet"])
    os.unlink(path)
    child.info["exe"] = path
    return child


@contextlib.contextmanager
def ping_group_range_allowing(*gids: int):
    """net.ipv4.ping_group_range covering ``gids`` (so they may make ICMP ping sockets) for the
    time of the ``with`` block; the previous range is restored whatever happens. The host has
    one range: a lock keeps other tests (other xdist workers, another run of the suite) from
    changing it meanwhile, or from restoring ours as their "previous" one."""
    with open(PING_GROUP_RANGE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(PING_GROUP_RANGE) as handle:
            previous = handle.read()
        with open(PING_GROUP_RANGE, "w") as handle:
            handle.write(f"{min(gids)} {max(gids)}\n")
        try:
            yield
        finally:
            with open(PING_GROUP_RANGE, "w") as handle:
                handle.write(previous)


@contextlib.contextmanager
def connect_hook_maps(alone: bool = False):
    """Held while a test counts on the calls the connect hook records (shared), or while it
    floods the hook's maps (``alone``)."""
    with open(CONNECT_HOOK_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield
