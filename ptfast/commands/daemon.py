"""``ptfast run``: the tracking service that replaces lfd's process tracking.

This module is the service's life: the lock, the settings and their reload, signals and the
timing of passes. What one pass does (scan, decide, respond, deliver) is ptfast.act.tracking's.

Signals are noted by their handlers and acted on between passes (a wakeup fd ends the wait
early): SIGHUP reloads settings, SIGUSR1 asks for a pass now (the next is then due PT_INTERVAL
after it; several asked during a pass make one), SIGTERM and SIGINT stop after the current
pass. Passes never overlap: the next one is due PT_INTERVAL after the previous one started, or
after it ended when it overran.

Live mode (ptfast.act.live), where the kernel's proc connector serves: the loop also waits on
its reader, and checks each new process when it reaches PT_LIMIT (a walk of just the processes
due); lost events ask for a full walk at once. Without it, the loop polls as above.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import time
import traceback

from ptfast import __version__
from ptfast.foundation import config as config_mod, safepaths
from ptfast.scan import procfs
from ptfast.act.actions import Actions
from ptfast.foundation.escape import escape_line, escape_text
from ptfast.channels.logfile import LogFile
from ptfast.channels.delivery import Channels
from ptfast.commands.settings import Loaded, load_settings, route_problems
from ptfast.channels.spool import Spool
from ptfast.decide.state import ReportedState
from ptfast.channels.status import LOCK_FILE, ONCE, SERVICE
from ptfast.act.tracking import Tracker
from ptfast.decide.lifetimes import dump_delay
from ptfast.act import live as live_mod
from ptfast.scan import procevents


class AlreadyRunning(Exception):
    pass


class SettingsRefused(Exception):
    """A fatal problem in the settings or rules (ptfast.commands.settings.Loaded.fatal): tracking
    on what is left (no ignore rules at all, a default in place of a mistyped setting) would alert
    on every daemon or watch the wrong thing."""


def take_lock(state_dir: str) -> int:
    """An exclusive lock on STATE_DIR/ptfast.lock, held for the life of the process."""
    path = os.path.join(state_dir, LOCK_FILE)
    fd = safepaths.open_private(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise AlreadyRunning(f"another ptfast holds {path} (pid {holder})") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Service:
    """The service's lifecycle: lock, settings, signals, the timing of passes."""

    def __init__(self, args) -> None:
        self.args = args
        self.state_dir = args.state_dir
        self.log = LogFile(args.log_file, echo=not args.quiet)
        self.settings: Loaded = None  # type: ignore[assignment]   # set by start()
        self.state = ReportedState(self.state_dir)
        self.actions = Actions(self.log)
        self.tracker: Tracker = None  # type: ignore[assignment]     # set by start()
        self._signals: list[int] = []
        self._lock_fd: int | None = None
        #: opens the proc connector (a seam: tests make it say why it cannot)
        self.open_events = procevents.open_reader
        self.live: live_mod.Live | None = None

    # -- settings -------------------------------------------------------------------------
    @property
    def config(self) -> config_mod.Config:
        return self.settings.config

    def interval(self) -> int:
        return self.config.settings.service.interval

    def _log_problems(self, settings: Loaded) -> None:
        for problem in settings.problems:
            self.log(escape_line(str(problem)))

    def _settings_summary(self) -> str:
        config, rules = self.config, self.settings.rules
        service = config.settings.service
        if service.PT_INTERVAL < config_mod.MIN_INTERVAL:
            self.log(f"PT_INTERVAL is {service.PT_INTERVAL}, less than "
                     f"{config_mod.MIN_INTERVAL}: using {config_mod.RAISED_INTERVAL} seconds")
        tracking = (f"PT_LIMIT={service.PT_LIMIT}" if service.PT_LIMIT > 0
                    else "process tracking disabled (PT_LIMIT=0)")
        return (f"{tracking} PT_INTERVAL={self.interval()}, config "
                f"{config.path or 'built-in defaults'}, {rules.rule_count()} ignore rules, "
                f"alerts via {', '.join(Channels(config.settings).shown())}")

    def reload(self) -> None:
        """SIGHUP: read everything again; with any problem, keep what runs now (said in one
        line: the problems' own "using the default" would contradict it)."""
        settings = load_settings(self.args, templates=True)
        problems = settings.problems + route_problems(settings.config)
        if problems:
            said = "; ".join(escape_line(problem.said(with_consequence=False))
                             for problem in problems)
            self.log(f"reload refused, the previous settings stay in force: {said}")
            return
        self.settings = settings
        self.log.to_syslog = self.config.settings.service.SYSLOG
        self.tracker.settings_changed()
        if self.live is not None:
            self.live.set_limit(self.config.settings.service.PT_LIMIT)
        self.log(f"settings reloaded: {self._settings_summary()}")

    # -- start and stop -------------------------------------------------------------------
    def start(self) -> None:
        """Lock, read settings and memory. Raises AlreadyRunning or OSError."""
        safepaths.prepare_service_paths(self.state_dir, (self.log.path, self.args.events_file))
        self._lock_fd = take_lock(self.state_dir)
        for path in (self.log.path, self.args.events_file):
            if path:    # written before they are needed: a missing directory is said now
                os.close(safepaths.open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT))
        self.tracker = Tracker(self.log, self.state, Spool(self.state_dir), self.actions,
                               proc_root=self.args.proc_root, events_file=self.args.events_file,
                               service=ONCE if self.args.once else SERVICE)
        self.settings = load_settings(self.args, templates=True)
        self.log.to_syslog = self.config.settings.service.SYSLOG
        self._log_problems(self.settings)
        for problem in route_problems(self.config):     # said now, not at the first alert
            self.log(escape_line(str(problem)))
        fatal = self.settings.fatal()
        if fatal:
            raise SettingsRefused("; ".join(escape_line(str(problem)) for problem in fatal))
        problem = self.state.load()
        if problem:
            self.log(escape_text(problem))
        self.log(f"ptfast {__version__} ({procfs.CORE_NAME} core) started: "
                 f"{self._settings_summary()}")

    def stop(self) -> None:
        self.actions.wait()
        if self.tracker is not None:
            self.tracker.save_state()
            self.tracker.close_connect_hook()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the work, as scheduled -------------------------------------------------------------
    def run_pass(self) -> str:
        summary = self.tracker.run_pass(self.settings)
        if self.config.settings.service.PT_PASS_SUMMARY:
            self.log(f"pass done: {summary}")
        return summary

    def check_load(self) -> None:
        self.tracker.check_load(self.settings)

    # -- the loop -------------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        self._signals.append(signum)

    def serve(self) -> None:
        """Passes and load checks until SIGTERM or SIGINT; SIGHUP reloads, SIGUSR1 asks for a
        pass now."""
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        handled = (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        self.open_live()
        try:
            self._loop(wake_read)
        finally:
            if self.live is not None:
                self.live.close()
                self.live = None
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_read)
            os.close(wake_write)

    def open_live(self) -> None:
        """Live mode when the proc connector serves; otherwise polling, and the log and the
        status say why."""
        self.live, mode = live_mod.open_live(self.config.settings.service.PT_LIMIT, opener=self.open_events)
        self.log(self.tracker.open_connect_hook())
        if self.live is not None:
            self.tracker.live_status = self.live.status
            self.tracker.parent_of = self.live.parents.get
            self.tracker.exited = self.live.parents.take_exited
            self.log("mode: live (the kernel's proc connector: each new process is checked "
                     "when it reaches PT_LIMIT; a full pass every PT_INTERVAL)")
        else:
            polling = live_mod.polling_status(mode)
            self.tracker.live_status = lambda: polling
            self.log(f"mode: {escape_text(str(mode))}: passes every PT_INTERVAL only")

    def check_due(self, pids: list) -> None:
        """Live mode: the processes that reached PT_LIMIT now."""
        assert self.live is not None
        self.live.checks += len(pids)
        young = self.tracker.check_processes(self.settings, pids)
        self.live.recheck(young, self.config.settings.service.PT_LIMIT)

    def _loop(self, wake_read: int) -> None:
        next_pass = next_load = next_dump = time.monotonic()
        live = self.live
        while True:
            while self._signals:
                signum = self._signals.pop(0)
                if signum == signal.SIGHUP:
                    self.reload()
                elif signum == signal.SIGUSR1:
                    next_pass = time.monotonic()    # due now; handled between passes
                else:
                    self.log(f"ptfast stopping on {signal.Signals(signum).name}")
                    return
            now = time.monotonic()
            if live is not None:
                why = live.resync_reason(now)
                if why:
                    self.log(f"a full pass now: {why}")
                    next_pass = now
            if now >= next_pass:
                self.guarded(self.run_pass)
                ended = time.monotonic()
                if live is not None:     # what the walk judged waits no more; the young do
                    live.rebuild(self.tracker.young)
                    live.pass_took(ended - now)
                next_pass = now + self.interval()
                if ended > next_pass:
                    self.log(f"a pass took {ended - now:.1f} s, longer than PT_INTERVAL "
                             f"({self.interval()} s); the next starts {self.interval()} s "
                             "after it ended")
                    next_pass = ended + self.interval()
                continue
            load_every = self.config.settings.service.PT_LOAD
            if load_every > 0 and now >= next_load:
                self.guarded(self.check_load)
                next_load = now + load_every
                continue
            if now >= next_dump:                    # sockets' lifetimes (PT_CONN_AGE)
                self.guarded(lambda: self.tracker.dump_sockets(self.settings))
                next_dump = now + dump_delay()
                continue
            # the earliest of: the next pass, load check, socket dump, and in live mode the
            # next due check and resync (the proc connector's events wake the select too)
            wake_at = min(next_pass, next_dump)
            wake_at = min(wake_at, next_load) if load_every > 0 else wake_at
            waiting_on = [wake_read]
            if live is not None:
                due = live.due(time.monotonic())
                if due:
                    def check_processes_due(due=due) -> None:
                        self.check_due(due)
                    self.guarded(check_processes_due)
                    continue
                waiting_on.append(live.fileno())
                for moment in (live.check_at(), live.resync_at()):
                    if moment is not None:
                        wake_at = min(wake_at, moment)
            readable = select.select(waiting_on, [], [], max(0.0, wake_at - now))[0]
            if live is not None and live.fileno() in readable:
                time.sleep(live_mod.BATCH_SECONDS)  # a burst of events: one batch, one check
                self.guarded(live.take_events)
            try:
                os.read(wake_read, 512)
            except BlockingIOError:
                pass

    def once(self) -> bool:
        """``--once``: one pass and one load check; False when either failed, a log line or event
        could not be written, or alerts could not be delivered (they stay in the spool for the
        next run), so that cron says so."""
        passed = self.guarded(self.run_pass)[0]
        if self.config.settings.service.PT_LOAD > 0:
            passed = self.guarded(self.check_load)[0] and passed
        if self.tracker.unrecorded or self.tracker.not_written():
            passed = False
        if self.tracker.waiting:
            self.log(f"{self.tracker.waiting} alert(s) not delivered: kept in the spool for the "
                     "next run")
            passed = False
        return passed

    def guarded(self, work) -> tuple[bool, object]:
        """(True, what ``work`` returned), or (False, None) after an unexpected error, which is
        logged with its traceback: the service goes on."""
        try:
            return True, work()
        except Exception as exc:    # a bug must not end tracking on a production server
            self.log(f"{work.__name__} failed: {escape_text(repr(exc))}")
            # one log line per traceback entry; a message's own line breaks stay escaped
            for entry in traceback.format_exception(type(exc), exc, exc.__traceback__):
                self.log(escape_text(entry.rstrip("\n")))
            return False, None


def run(args) -> int:
    service = Service(args)
    try:
        service.start()
    except (AlreadyRunning, SettingsRefused) as exc:
        service.log(f"not started: {escape_text(str(exc))}")
        return 2
    except OSError as exc:
        service.log(f"not started: {escape_text(exc.filename or args.state_dir)}: {exc.strerror}")
        return 2
    try:
        if args.once:
            return 0 if service.once() else 2
        service.serve()
        return 0
    finally:
        service.stop()
        if not args.once:
            service.log("ptfast stopped")
