"""``ptfast run``: the tracking service that replaces lfd's process tracking.

One pass: scan, decide, then for each finding log it, spool its alert mail, append it to the
events file, remember it as reported and start its action; then save the reported memory and
deliver the spool. The order is what makes alerts survive anything: the mail is on disk before
the process is marked as reported, and leaves the disk only once delivered.

Signals are noted by their handlers and acted on between passes (a wakeup fd ends the wait
early): SIGHUP reloads settings, SIGTERM and SIGINT stop after the current pass. Passes never
overlap: the next one is due PT_INTERVAL after the previous one started, or after it ended when
it overran.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field

import orjson

from . import __version__, config as config_mod, pignore, procfs, safepaths
from .actions import Actions, kill_session, signal_process
from .alerts import Templates, render
from .escape import escape_text
from .logfile import LogFile, append_line
from .mail import Mailer, Spool
from .messages import alert_values, log_messages
from .policy import (CHECK_FORKBOMB, CHECK_RESOURCE, CHECK_SSHD_HUNG, CHECK_SUSPICIOUS,
                     CHECK_USER_PROCESSES, Policy, load_finding, load_minutes,
                     process_key)
from .report import finding_record
from .state import ReportedState
from .users import UserNames, accounts_to_track

LOCK_FILE = "ptfast.lock"


@dataclass
class Settings:
    """Everything read from files, replaced as a whole on SIGHUP."""

    config: config_mod.Config
    rules: pignore.IgnoreRules
    templates: Templates
    problems: list = field(default_factory=list)


def load_settings(args) -> Settings:
    config = config_mod.load(args.config, args.set, override_path=args.override)
    rules = pignore.load(args.pignore)
    templates = Templates(args.templates)
    return Settings(config, rules, templates,
                    config.problems + rules.problems + templates.problems)


class AlreadyRunning(Exception):
    pass


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
    def __init__(self, args) -> None:
        self.args = args
        self.state_dir = args.state_dir
        self.log = LogFile(args.log_file, echo=not args.quiet)
        self.events_file = args.events_file
        self.hostname = socket.gethostname()
        self.user_names = UserNames()
        self.settings: Settings | None = None
        self.state = ReportedState(self.state_dir)
        self.spool: Spool | None = None
        self.actions = Actions(self.log)
        self._signals: list[int] = []
        self._lock_fd: int | None = None

    # -- settings -------------------------------------------------------------------------
    @property
    def config(self):
        return self.settings.config

    def interval(self) -> int:
        return config_mod.effective_interval(self.config)

    def _log_problems(self, settings: Settings) -> None:
        for problem in settings.problems:
            self.log(escape_text(str(problem)))

    def _settings_summary(self) -> str:
        config, rules = self.config, self.settings.rules
        interval = config["PT_INTERVAL"]
        if interval < config_mod.MIN_INTERVAL:
            self.log(f"PT_INTERVAL is {interval}, less than {config_mod.MIN_INTERVAL}: "
                     f"using {config_mod.RAISED_INTERVAL} seconds")
        tracking = (f"PT_LIMIT={config['PT_LIMIT']}" if config["PT_LIMIT"] > 0
                    else "process tracking disabled (PT_LIMIT=0)")
        return (f"{tracking} PT_INTERVAL={self.interval()}, config "
                f"{config.path or 'built-in defaults'}, {rules.rule_count()} ignore rules, "
                f"alerts via {Mailer(config).route}")

    def reload(self) -> None:
        """SIGHUP: read everything again; with any problem, keep what runs now."""
        settings = load_settings(self.args)
        if settings.problems:
            self._log_problems(settings)
            self.log(f"reload refused: {len(settings.problems)} problem(s) in the new settings; "
                     "keeping the previous ones")
            return
        self.settings = settings
        self.user_names = UserNames()
        self.log(f"settings reloaded: {self._settings_summary()}")

    # -- start and stop -------------------------------------------------------------------
    def start(self) -> None:
        """Lock, read settings and memory. Raises AlreadyRunning or OSError."""
        safepaths.prepare_service_paths(self.state_dir, (self.log.path, self.events_file))
        self._lock_fd = take_lock(self.state_dir)
        self.spool = Spool(self.state_dir)
        self.settings = load_settings(self.args)
        self._log_problems(self.settings)
        problem = self.state.load()
        if problem:
            self.log(escape_text(problem))
        self.log(f"ptfast {__version__} ({procfs.CORE_NAME} core) started: "
                 f"{self._settings_summary()}")

    def stop(self) -> None:
        self.actions.wait()
        self._save_state()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- one pass -------------------------------------------------------------------------
    def _save_state(self) -> None:
        try:
            self.state.save()
        except OSError as exc:
            self.log(f"cannot save {self.state.path}: {exc.strerror}; reported processes are "
                     "remembered in memory until it can")

    def _append_event(self, record: dict) -> None:
        if not self.events_file:
            return
        try:
            append_line(self.events_file, orjson.dumps(record) + b"\n")
        except OSError as exc:
            self.log(f"cannot append to {self.events_file}: {exc.strerror}")

    def _raise_alert(self, finding, values: dict) -> None:
        """Spool the mail (before anything can lose it) and write the event line."""
        config = self.config
        template = self.settings.templates[finding.check]
        message = render(template, values, config["LF_ALERT_TO"], config["LF_ALERT_FROM"])
        spooled = self.spool.add(message)
        self._append_event({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "host": self.hostname, **finding_record(finding),
                            "template": template.source, "spooled": os.path.basename(spooled)})

    def _policy(self) -> Policy:
        config = self.config
        return Policy(config, self.settings.rules, self.user_names, accounts_to_track(config),
                      self.state.keys,
                      reported_resources=self.state.resources,
                      quiet_users=self.state.quiet_users)

    def _may_kill(self) -> bool:
        """Only what was read from the live /proc may be killed: PIDs of a prepared tree
        (--proc-root) name nothing on this host."""
        if self.args.proc_root == "/proc":
            return True
        self.log(f"not killing: --proc-root {escape_text(self.args.proc_root)} is not /proc")
        return False

    def _kill(self, procs) -> bool:
        """SIGKILL each of ``procs`` (exactly those processes); True when all are gone."""
        if not self._may_kill():
            return False
        all_gone = True
        for proc in procs:
            why_not = signal_process(proc.pid, proc.start_time)
            if why_not is not None and not why_not.startswith("already gone"):
                self.log(f"could not kill PID {proc.pid}: {why_not}")
                all_gone = False
        return all_gone

    def _respond(self, finding) -> None:
        """Log, remember, kill, alert and run the action of one finding, as lfd does."""
        config, check, proc = self.config, finding.check, finding.process
        killed, alert = False, True
        if check in (CHECK_USER_PROCESSES, CHECK_RESOURCE) and config["PT_USERKILL"]:
            killed = self._kill(finding.processes or (proc,))
            alert = bool(config["PT_USERKILL_ALERT"])
        elif check == CHECK_FORKBOMB:
            killed = self._may_kill() and kill_session(proc.session) > 0
        elif check == CHECK_SSHD_HUNG:
            killed, alert = self._kill((proc,)), False      # lfd logs these, sends no mail
        for message in log_messages(finding, killed, self.user_names):
            self.log(message)
        if alert:
            maps = (procfs.read_maps(proc.pid, proc.start_time, self.args.proc_root)
                    if check == CHECK_SUSPICIOUS else None)
            self._raise_alert(finding, alert_values(finding, self.hostname, killed, maps,
                                                    self.user_names))
        # remembered only once its mail is in the spool: a failure before that leaves the
        # finding to the next pass instead of losing it
        if check == CHECK_SUSPICIOUS:
            self.state.add(process_key(proc))
        elif check == CHECK_USER_PROCESSES:
            self.state.quiet_user(finding.user, time.time() + config["LF_FLUSH"])
        elif check == CHECK_RESOURCE:
            self.state.add_resource(process_key(proc), finding.reasons[0])
        if check == CHECK_SUSPICIOUS and proc.exe_deleted:
            self.actions.run("PT_DELETED_ACTION", config["PT_DELETED_ACTION"],
                             [proc.exe, proc.pid, finding.user, proc.ppid])
        elif check in (CHECK_USER_PROCESSES, CHECK_RESOURCE):
            pids = ",".join(str(p.pid) for p in finding.processes or (proc,))
            self.actions.run("PT_USER_ACTION", config["PT_USER_ACTION"], [pids])

    def run_pass(self) -> str:
        """One pass; returns a one-line summary of it."""
        policy = self._policy()
        summary = "process tracking is disabled (PT_LIMIT=0)"
        if policy.enabled:
            snapshot = procfs.scan(self.args.proc_root, policy.want_fds)
            findings = policy.evaluate_all(snapshot)
            for problem in self.settings.rules.take_match_problems():   # rules switched off
                self.log(escape_text(str(problem)))
            for finding in findings:
                self._respond(finding)
            self.state.forget_gone({process_key(proc) for proc in snapshot.processes})
            summary = (f"{snapshot.stats['processes']} processes scanned in "
                       f"{snapshot.duration * 1000:.0f} ms, {len(findings)} finding(s)")
        self._deliver()
        return summary

    def check_load(self) -> None:
        """PT_LOAD: alert (with the host's state attached) when the load average is high."""
        config = self.config
        loadavg, totprocs = procfs.read_loadavg(self.args.proc_root)
        finding = load_finding(config, loadavg, time.time(), self.state.load_quiet_until)
        if finding is None:
            return
        self.state.quiet_load(time.time() + config["PT_LOAD_SKIP"])
        for message in log_messages(finding):
            self.log(message)
        from .hostload import load_alert_values  # psutil and urllib: only when an alert fires
        self._raise_alert(finding, load_alert_values(config, self.hostname, loadavg, totprocs,
                                                     load_minutes(config)))
        self.actions.run("PT_LOAD_ACTION", config["PT_LOAD_ACTION"], [])
        self._deliver()

    def _deliver(self) -> None:
        self._save_state()
        mailer = Mailer(self.config)
        delivered, _waiting = self.spool.flush(mailer, self.log)
        if delivered:
            self.log(f"{delivered} alert(s) delivered via {mailer.route}")

    # -- the loop -------------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        self._signals.append(signum)

    def serve(self) -> None:
        """Passes and load checks until SIGTERM or SIGINT; SIGHUP reloads."""
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        handled = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        try:
            self._loop(wake_read)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_read)
            os.close(wake_write)

    def _loop(self, wake_read: int) -> None:
        next_pass = next_load = time.monotonic()
        while True:
            while self._signals:
                signum = self._signals.pop(0)
                if signum == signal.SIGHUP:
                    self.reload()
                else:
                    self.log(f"ptfast stopping on {signal.Signals(signum).name}")
                    return
            now = time.monotonic()
            if now >= next_pass:
                self.guarded(self.run_pass)
                ended = time.monotonic()
                next_pass = now + self.interval()
                if ended > next_pass:
                    self.log(f"a pass took {ended - now:.1f} s, longer than PT_INTERVAL "
                             f"({self.interval()} s); the next starts {self.interval()} s "
                             "after it ended")
                    next_pass = ended + self.interval()
                continue
            load_every = self.config["PT_LOAD"]
            if load_every > 0 and now >= next_load:
                self.guarded(self.check_load)
                next_load = now + load_every
                continue
            wake_at = min(next_pass, next_load) if load_every > 0 else next_pass
            select.select([wake_read], [], [], max(0.0, wake_at - now))
            try:
                os.read(wake_read, 512)
            except BlockingIOError:
                pass

    def once(self) -> bool:
        """``--once``: one pass and one load check."""
        passed, summary = self.guarded(self.run_pass)
        if passed:
            self.log(f"pass done: {summary}")
        if self.config["PT_LOAD"] > 0:
            passed = self.guarded(self.check_load)[0] and passed
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
    except AlreadyRunning as exc:
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
