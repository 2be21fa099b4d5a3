"""``ptfast <command>`` run inside the test process, for the tests that only want its output.

Each `python -m ptfast` a test starts costs ~80 ms of CPU (interpreter and imports); the suite
started hundreds. ``run_ptfast`` calls ``ptfast.commands.cli.main`` as that process would, and
returns what ``subprocess.run(..., capture_output=True)`` would: the exit status, stdout and
stderr as bytes. What ptfast reads from its environment is honoured per call: ``env`` is the
whole environment it sees (os.environ while it runs), PTFAST_NO_EXTENSIONS picks the core as
the import of ptfast.scan.procfs would, PTFAST_TEST_AGE_OFFSET is read again (its cache is
cleared). Whatever the command changes in the process (cwd, umask, signal handlers, logging,
sys.argv) is put back. Tests of the process boundary itself (exit through a real process,
signals, daemons, locking, other uids, the import-time core choice) keep real processes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
from typing import Mapping, Optional, Sequence

from ptfast.commands import cli
from ptfast.decide import policy
from ptfast.scan import _procscan_py, procfs

#: the handlers a command could set (run's daemon, tune's Ctrl-C)
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
           signal.SIGPIPE, signal.SIGCHLD, signal.SIGALRM)
#: sys.argv[0] of `python -m ptfast`
MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__))), "__main__.py")


def _core_for(env: Mapping[str, str]):
    """(module, CORE_NAME, CORE_FALLBACK_REASON) as ptfast.scan.procfs picks them at import."""
    if env.get("PTFAST_NO_EXTENSIONS"):
        return _procscan_py, "pure-python", "PTFAST_NO_EXTENSIONS is set"
    try:
        from ptfast.scan import _procscan
    except ImportError as exc:
        return _procscan_py, "pure-python", procfs.fallback_reason(exc)
    return _procscan, "compiled", None


def _clear_age_cache() -> None:
    # the `aged` fixture may have replaced the function by a constant (no cache then)
    clear = getattr(policy.age_offset_for_tests, "cache_clear", None)
    if clear is not None:
        clear()


@contextlib.contextmanager
def _environment(env: Mapping[str, str]):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _process_state_kept():
    cwd, umask = os.getcwd(), os.umask(0o022)
    os.umask(umask)
    handlers = {signum: signal.getsignal(signum) for signum in SIGNALS}
    root = logging.getLogger()
    log_handlers, log_level = list(root.handlers), root.level
    argv = sys.argv
    core = procfs._core, procfs.CORE_NAME, procfs.CORE_FALLBACK_REASON
    try:
        yield
    finally:
        procfs._core, procfs.CORE_NAME, procfs.CORE_FALLBACK_REASON = core
        sys.argv = argv
        root.handlers[:] = log_handlers
        root.setLevel(log_level)
        for signum, handler in handlers.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)
        os.umask(umask)
        os.chdir(cwd)
        _clear_age_cache()


def run_ptfast(argv: Sequence[str], env: Optional[Mapping[str, str]] = None,
               stdin: bytes = b"", text: bool = False) -> subprocess.CompletedProcess:
    """``python -m ptfast *argv`` with ``env`` (default: this process's), in this process;
    with ``text``, stdout and stderr are str (subprocess.run's text=True)."""
    argv = [str(arg) for arg in argv]
    env = dict(os.environ if env is None else env)
    out, err = io.BytesIO(), io.BytesIO()
    # as a child's: stdout strict, stderr backslashreplace; both UTF-8 (the tests' locale)
    out_text = io.TextIOWrapper(out, encoding="utf-8", newline="\n", write_through=True)
    err_text = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", newline="\n",
                                write_through=True)
    in_text = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    with _process_state_kept(), _environment(env):
        procfs._core, procfs.CORE_NAME, procfs.CORE_FALLBACK_REASON = _core_for(env)
        _clear_age_cache()
        sys.argv = [MAIN, *argv]
        saved_stdin = sys.stdin
        sys.stdin = in_text
        try:
            with contextlib.redirect_stdout(out_text), contextlib.redirect_stderr(err_text):
                try:
                    code = cli.main(argv)
                except SystemExit as exc:       # argparse's usage errors, --help, --version
                    if exc.code is None or isinstance(exc.code, int):
                        code = exc.code or 0
                    else:
                        print(exc.code, file=sys.stderr)
                        code = 1
                out_text.flush()
                err_text.flush()
        finally:
            sys.stdin = saved_stdin
    stdout, stderr = out.getvalue(), err.getvalue()
    if text:
        return subprocess.CompletedProcess(["ptfast", *argv], code, stdout.decode(),
                                           stderr.decode())
    return subprocess.CompletedProcess(["ptfast", *argv], code, stdout, stderr)
