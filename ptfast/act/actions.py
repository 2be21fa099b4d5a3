"""Action scripts (PT_DELETED_ACTION and the other *_ACTION settings): run in the background.
(Kills are in ptfast.act.kills.)

Arguments go to the script as an argument list, never through a shell, so a process name cannot
become a command. A script runs only when it is an executable regular file that no customer can
change (owned by root, not group/other-writable, in directories that are the same all the way
up to /: ``safepaths``), in its own session (its children die with it on timeout), with a time
limit; failure is logged, never fatal. ``ptfast check`` reports the scripts that would be refused.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading

from ptfast.foundation import safepaths
from ptfast.foundation.config import Config, Settings
from ptfast.foundation.problems import Problem
from ptfast.foundation.escape import escape_text

ACTION_TIMEOUT = 60.0


def script_problem(path: str) -> str | None:
    """Why the action script ``path`` must not run as root; None when it may."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return exc.strerror
    if not stat.S_ISREG(info.st_mode) or not os.access(path, os.X_OK):
        return "not an executable file"
    return safepaths.path_problem(path, safepaths.PROGRAM)


def action_problems(config: Config) -> list:
    """Problems of every *_ACTION setting that names a script (for ``ptfast check``)."""
    problems = []
    actions = config.settings.actions
    for setting, path in ((Settings.PT_DELETED_ACTION, actions.PT_DELETED_ACTION),
                          (Settings.PT_USER_ACTION, actions.PT_USER_ACTION),
                          (Settings.PT_LOAD_ACTION, actions.PT_LOAD_ACTION)):
        problem = script_problem(path) if path else None
        if problem:
            problems.append(Problem(config.where(setting), 0,
                                    f"{setting.name} {path} will not be run: {problem}"))
    return problems


class Actions:
    """Starts action scripts and watches each from a thread until it ends or runs out of time."""

    def __init__(self, log, timeout: float = ACTION_TIMEOUT) -> None:
        self.log = log
        self.timeout = timeout
        self._watchers: list[threading.Thread] = []

    def run(self, setting: str, path: str, args: list) -> bool:
        """Start ``path args...`` for ``setting``; False (and a log line) when it cannot."""
        path = path.strip()
        if not path:
            return False
        shown = f"{setting} {escape_text(path)}"
        problem = script_problem(path)
        if problem:
            self.log(f"{shown} not run: {escape_text(problem)}")
            return False
        try:
            child = subprocess.Popen([path, *map(str, args)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     close_fds=True, start_new_session=True)
        except OSError as exc:
            self.log(f"{shown} could not start: {exc.strerror}")
            return False
        watcher = threading.Thread(target=self._watch, args=(shown, child), daemon=True)
        watcher.start()
        self._watchers = [thread for thread in self._watchers if thread.is_alive()]
        self._watchers.append(watcher)
        return True

    def _watch(self, shown: str, child: subprocess.Popen) -> None:
        try:
            _out, err = child.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.communicate()
            self.log(f"{shown} killed: still running after {self.timeout:g} s")
            return
        if child.returncode != 0:
            said = escape_text(err.decode("utf-8", "replace").strip()[-300:])
            self.log(f"{shown} failed with status {child.returncode}"
                     + (f": {said}" if said else ""))

    def wait(self) -> None:
        """Wait for running scripts (each is bounded by the time limit)."""
        for thread in self._watchers:
            thread.join()
        self._watchers.clear()
