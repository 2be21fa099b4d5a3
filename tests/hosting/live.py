"""ptfast measured as the service (issue 21): ``ptfast run`` of the checkout on the busy bed,
the attacks planted while it runs at staggered times, and per attack the time from its start
to its first alert (log line and mail); per ignore file the bed's benign processes reported
within a window (false positives); then one-shot ``ptfast scan`` under the same load.

Each ``ptfast run`` has its own state directory, log, events file and a stand-in SENDMAIL that
keeps every mail with the time it was handed over. Processes outside the bed (other jobs on
the machine) are left out of every count.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from .attacks import Planter
from .bed import ACCOUNT_COUNT, IN_CGROUP, POOL_WORKERS, Bed
from .measure import (BUILTIN, SETTINGS, ignore_file_path, measure, observe_worker_connections,
                      role_of)
from .procfacts import read_processes

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: the ignore files the service runs with: ptfast's own list and csf's cPanel one
SERVICE_IGNORE_FILES = (BUILTIN, "csf.pignore")
#: the scan's settings but PT_LIMIT (given per run); PT_INTERVAL is added per run too
SERVICE_SETTINGS = tuple(setting for setting in SETTINGS if not setting.startswith("PT_LIMIT="))

#: an alert's log line: "*Suspicious Process* PID:1234 ..."
ALERT_LINE = re.compile(r"\*([^*]+)\* PID:(\d+)")
#: a mail names its processes as "Process:     1234 (Parent PID:..." (one alert) or as log
#: lines "*Suspicious Process* PID:1234 ..." (the digest); only at a line's start, so a command
#: line that contains "PID:" cannot make a mail seem to name another process
MAIL_PIDS = (re.compile(r"^Process:\s+(\d+)", re.M),
             re.compile(r"^\*[^*\n]+\* PID:(\d+)", re.M))

SENDMAIL = textwrap.dedent("""\
    #!{python}
    # a stand-in for sendmail: keeps each message with the time it was handed over
    import json, os, sys, time
    message = sys.stdin.buffer.read()
    now = time.time()
    with open(os.path.join({directory!r}, f"{{time.time_ns()}}-{{os.getpid()}}.json"), "w") as out:
        json.dump({{"time": now, "argv": sys.argv[1:],
                   "message": message.decode("utf-8", "replace")}}, out)
    """)


@dataclass
class Alert:
    pid: int
    kind: str              # "Suspicious Process", ...
    seen_at: float         # time.time() when its log line was read (polled every POLL s)
    in_bed: bool
    role: str


class LiveService:
    """One ``ptfast run`` of the checkout, its files in a directory of the bed's own."""

    POLL = 0.25

    def __init__(self, bed: Bed, planter: Planter, ignore_file: str, limit: int,
                 interval: int) -> None:
        self.bed = bed
        self.planter = planter
        self.ignore_file = ignore_file
        self.settings = (f"PT_LIMIT={limit}", f"PT_INTERVAL={interval}", *SERVICE_SETTINGS)
        slug = re.sub(r"[^\w]+", "-", ignore_file).strip("-")
        self.dir = bed.path(f"ptfast-run-{slug}")
        self.log_file = os.path.join(self.dir, "ptfast.log")
        self.sent = os.path.join(self.dir, "sent")
        self.popen: subprocess.Popen | None = None
        self.started_at = 0.0
        self.alerts: list = []          # Alert per alert line, in order
        self._known: dict = {}          # pid -> (in the bed, role), read at its first alert
        self._log_offset = 0
        self._pending = b""

    def command(self) -> list:
        sendmail = os.path.join(self.dir, "sendmail")
        command = [sys.executable, "-m", "ptfast", "run", "--config", os.devnull,
                   "--override", os.devnull, "--state-dir", os.path.join(self.dir, "state"),
                   "--log-file", self.log_file,
                   "--events-file", os.path.join(self.dir, "events.jsonl"),
                   "--templates", os.path.join(self.dir, "no-templates"), "--quiet"]
        for setting in (*self.settings, f"SENDMAIL={sendmail}"):
            command += ["--set", setting]
        path = ignore_file_path(self.ignore_file)
        if path is not None:
            command += ["--pignore", path]
        return command

    def start(self) -> None:
        os.makedirs(self.sent, mode=0o700)
        os.chmod(self.dir, 0o700)
        sendmail = os.path.join(self.dir, "sendmail")
        with open(sendmail, "w") as handle:
            handle.write(SENDMAIL.format(python=sys.executable, directory=self.sent))
        os.chmod(sendmail, 0o755)
        env = dict(os.environ, PYTHONPATH=CHECKOUT)      # the checkout's ptfast
        with open(os.path.join(self.dir, "stderr.log"), "wb") as stderr:
            self.started_at = time.time()
            # in the bed's cgroup: a bed killed outright takes its services with it
            launcher = ["/bin/sh", "-c", IN_CGROUP,
                        os.path.join(self.bed.cgroup, "cgroup.procs")]
            self.popen = subprocess.Popen(launcher + self.command(), cwd=CHECKOUT, env=env,
                                          stdin=subprocess.DEVNULL, stdout=stderr,
                                          stderr=subprocess.STDOUT)

    def poll(self) -> None:
        """Read the log lines written since the last poll; note each process's first alert."""
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(self._log_offset)
                text = handle.read()
        except FileNotFoundError:
            return
        self._log_offset += len(text)
        text = self._pending + text
        lines = text.split(b"\n")
        self._pending = lines.pop()
        now = time.time()
        for line in lines:
            match = ALERT_LINE.search(line.decode("utf-8", "replace"))
            if match is None:
                continue
            pid = int(match.group(2))
            if pid not in self._known:
                self._known[pid] = self._who(pid)
            self.alerts.append(Alert(pid, match.group(1), now, *self._known[pid]))

    def _who(self, pid: int) -> tuple:
        """(whether ``pid`` is in the bed's cgroup, what it is), read while it lives."""
        try:
            with open(f"/proc/{pid}/cgroup") as handle:
                in_bed = os.path.basename(self.bed.cgroup) in handle.read()
        except OSError:
            return pid in self._planted_pids(), "gone before it was looked at"
        fact = read_processes([pid]).get(pid)
        if fact is None:
            return in_bed, "gone"
        if self.bed.on_the_internet(fact):        # a remote host of the bed's, not this one
            return False, "internet: " + role_of(fact, self.bed, self.planter)
        return in_bed, role_of(fact, self.bed, self.planter)

    def _planted_pids(self) -> set:
        return {pid for planted in self.planter.attacks + self.planter.customer_apps
                for pid in planted.pids}

    def stop(self) -> str:
        """Stop the service; what it said on stderr when it failed."""
        if self.popen is None or self.popen.poll() is not None:
            return self._failure()
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        return ""

    def _failure(self) -> str:
        if self.popen is None:
            return "not started"
        try:
            with open(os.path.join(self.dir, "stderr.log"), errors="replace") as handle:
                return f"exited {self.popen.returncode}: {handle.read()[-600:]}"
        except OSError:
            return f"exited {self.popen.returncode}"

    def events_of(self, pids) -> list:
        """The events file's records of ``pids`` (why each was reported, its sockets), trimmed
        to what says why."""
        found = []
        try:
            with open(os.path.join(self.dir, "events.jsonl")) as handle:
                for line in handle:
                    record = json.loads(line)
                    if record.get("pid") in pids:
                        found.append({key: record.get(key) for key in
                                      ("pid", "uptime", "reasons", "cmdline", "sockets")})
        except (OSError, ValueError):
            pass
        return found

    def mails(self) -> list:
        """(time handed to sendmail, subject, pids named) per mail, oldest first."""
        found = []
        for name in sorted(os.listdir(self.sent)):
            with open(os.path.join(self.sent, name)) as handle:
                mail = json.load(handle)
            subject = next((line[len("Subject: "):] for line in mail["message"].splitlines()
                            if line.startswith("Subject: ")), "")
            pids = {int(pid) for pattern in MAIL_PIDS for pid in pattern.findall(mail["message"])}
            found.append((mail["time"], subject, pids))
        return found


@dataclass
class AttackLatency:
    name: str
    title: str
    planted_after: float          # seconds after the services started
    to_log: dict = field(default_factory=dict)      # ignore file -> seconds, None: not seen
    to_mail: dict = field(default_factory=dict)
    in_digest: dict = field(default_factory=dict)   # ignore file -> its first mail a digest
    #: ignore file -> its process was reported before the attack (a worker, for its database)
    reported_before: dict = field(default_factory=dict)


def _first_alert(alerts: list, planted) -> float | None:
    """When the first alert of ``planted``'s processes after it was planted was read (a worker
    that holds a C2 may have been reported before, for its database connection)."""
    times = [alert.seen_at for alert in alerts
             if alert.pid in planted.pids and alert.seen_at >= planted.started_at]
    return min(times) if times else None


@dataclass
class Served:
    """What ``run_service`` measured: the results (JSON-ready), and the one-shot scans' outcomes
    and the facts read after each (measure.measure), for the tests of the bed and the scan."""
    results: dict
    outcomes: list
    samples: list
    held: list                   # HeldConnection: what the pool workers held under the load


def run_service(bed: Bed, planter: Planter, limit: int = 10, interval: int = 60,
                window: float = 150, spacing: float = 4, first_at: float = 5,
                progress=lambda text: None, watch_workers: float = 0) -> Served:
    """The whole measurement, on a started bed: ``ptfast run`` with the attacks planted while
    it runs, then new sessions of the root services and new apache2 workers (a graceful
    restart), which live mode judges at their PT_LIMIT; then, under the same load,
    ``watch_workers`` seconds of watching the pool workers' connections and one-shot scans."""
    planter.prepare()
    planter.plant_customer_apps()
    bed.start_load(seconds=window + 240)         # bounded even if nobody stops it
    time.sleep(3)                                # the pools are busy before the services start
    services = [LiveService(bed, planter, name, limit, interval) for name in SERVICE_IGNORE_FILES]
    stop_polling = threading.Event()

    def poll_all() -> None:
        while not stop_polling.is_set():
            for service in services:
                service.poll()
            stop_polling.wait(LiveService.POLL)
    poller = threading.Thread(target=poll_all, daemon=True)
    failures: dict = {}
    try:
        for service in services:
            service.start()
        began = min(service.started_at for service in services)
        poller.start()
        progress(f"ptfast run started ({len(services)} services, PT_LIMIT={limit}, "
                 f"PT_INTERVAL={interval}); planting {len(planter.attack_plan())} attacks")
        for number, attack in enumerate(planter.attack_plan()):
            time.sleep(max(0.0, began + first_at + number * spacing - time.time()))
            planted = planter.plant(attack)
            progress(f"  planted {planted.name} at +{planted.started_at - began:.1f} s")
        # new sessions and workers of root services: benign, each judged by a live check
        time.sleep(max(0.0, began + first_at + len(planter.attack_plan()) * spacing
                       - time.time()))
        before = set(bed.bed_pids())
        bed.log_in(Bed.LATER_SESSION_ACCOUNTS, " (while ptfast runs)")
        bed.restart_apache_gracefully()
        progress(f"  new sessions and apache2 workers at +{time.time() - began:.1f} s")
        time.sleep(max(0.0, began + window - time.time()))
        # the new ones that lived past PT_LIMIT: each was due for a live check
        new_roles = Counter(role_of(fact, bed, planter) for fact in read_processes(
            [pid for pid in bed.bed_pids() if pid not in before]).values())
        stop_polling.set()
        poller.join()
        for service in services:
            service.poll()                      # lines written since the last poll
            failures[service.ignore_file] = service.stop()
    finally:
        stop_polling.set()
        for service in services:
            if service.popen is not None and service.popen.poll() is None:
                service.popen.kill()
                service.popen.wait()
    progress("ptfast run stopped; one-shot scans under the same load")
    held = observe_worker_connections(bed, watch_workers) if watch_workers else []
    outcomes, samples = measure(bed, planter)
    bed.stop_load()
    results = _results(bed, planter, services, began, window, limit, interval, outcomes,
                       failures)
    results["new_while_running"] = dict(new_roles)
    return Served(results, outcomes, samples, held)


def _results(bed, planter, services, began, window, limit, interval, outcomes,
             failures) -> dict:
    attack_since = {pid: planted.started_at for planted in planter.attacks
                    for pid in planted.pids}
    app_pids = {pid for planted in planter.customer_apps for pid in planted.pids}
    latencies = []
    for planted in planter.attacks:
        latency = AttackLatency(planted.name, planted.title, planted.started_at - began)
        for service in services:
            logged = _first_alert(service.alerts, planted)
            latency.to_log[service.ignore_file] = (None if logged is None
                                                   else round(logged - planted.started_at, 1))
            latency.reported_before[service.ignore_file] = any(
                alert.pid in planted.pids and alert.seen_at < planted.started_at
                for alert in service.alerts)
            mails = [(sent, subject) for sent, subject, pids in service.mails()
                     if pids & set(planted.pids) and sent >= planted.started_at]
            latency.to_mail[service.ignore_file] = (
                None if not mails else round(mails[0][0] - planted.started_at, 1))
            latency.in_digest[service.ignore_file] = (
                None if not mails else "more findings in one pass" in mails[0][1])
        latencies.append(latency)
    per_service = {}
    for service in services:
        in_window = [alert for alert in service.alerts if alert.seen_at <= began + window]
        # a process alerted for before it became an attack (the worker that later holds a
        # C2) was benign then
        benign_alerts = [alert for alert in in_window if alert.in_bed
                         and alert.pid not in app_pids
                         and alert.seen_at < attack_since.get(alert.pid, float("inf"))]
        benign = list({alert.pid: alert for alert in reversed(benign_alerts)}.values())
        workers = [alert for alert in benign if alert.role == "php-fpm worker"]
        per_service[service.ignore_file] = {
            "failure": failures.get(service.ignore_file, ""),
            "alert_lines": len(service.alerts),
            "mails": len(service.mails()),
            "false_positives": len(benign),
            "false_positive_roles": dict(Counter(alert.role for alert in benign)),
            "pool_workers_reported": len(workers),
            "false_positive_pids": sorted(alert.pid for alert in benign),
            "false_positive_events": service.events_of({alert.pid for alert in benign}),
            "outside_bed": len({alert.pid for alert in in_window if not alert.in_bed}),
        }
    scans = {}
    for outcome in outcomes:
        scans[outcome.ignore_file] = {
            "false_positives": len(outcome.false_positives),
            "false_positive_roles": dict(Counter(fp.role for fp in outcome.false_positives)),
            "attacks_missed": outcome.attacks_missed, "seconds": round(outcome.seconds, 2)}
    return {"settings": {"PT_LIMIT": limit, "PT_INTERVAL": interval, "window": window,
                         "pool_workers": ACCOUNT_COUNT * POOL_WORKERS,
                         "web_load": {"requests": bed.load_requests, "pages": bed.load_pages,
                                      "errors": len(bed.load_errors)}},
            "attacks": [latency.__dict__ for latency in latencies],
            "service": per_service, "scan": scans}


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def service_table(results: dict) -> str:
    limit = results["settings"]["PT_LIMIT"]
    files = list(results["service"])
    header = ["attack", "planted at"]
    for name in files:
        header += [f"log ({name})", "- PT_LIMIT", f"mail ({name})"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for attack in results["attacks"]:
        cells = [attack["name"], f"+{attack['planted_after']:.0f} s"]
        for name in files:
            logged = attack["to_log"][name]
            mail = _seconds(attack["to_mail"][name])
            if attack["in_digest"][name]:
                mail += " (digest)"
            if attack["reported_before"][name]:
                mail += " (its pid reported before the attack)"
            cells += [_seconds(logged), _seconds(None if logged is None else logged - limit),
                      mail]
        rows.append("| " + " | ".join(cells) + " |")
    lines = ["ptfast run: seconds from each attack's start to its first alert", *rows, ""]
    for name in files:
        after_limit = sorted(attack["to_log"][name] - limit for attack in results["attacks"]
                             if attack["to_log"][name] is not None)
        digests = sum(1 for attack in results["attacks"] if attack["in_digest"][name])
        spread = (f", {after_limit[0]:.1f} to {after_limit[-1]:.1f} s after PT_LIMIT"
                  if after_limit else "")
        lines.append(f"  {name}: {len(after_limit)}/{len(results['attacks'])} attacks "
                     f"reported{spread}; {digests} first mailed inside a digest")
    lines.append("")
    lines.append(f"false positives of ptfast run within {results['settings']['window']:.0f} s "
                 f"({results['settings']['pool_workers']} pool workers on the bed):")
    for name, service in results["service"].items():
        failure = f" SERVICE FAILED: {service['failure']}" if service["failure"] else ""
        lines.append(f"  {name}: {service['false_positives']} "
                     f"({service['pool_workers_reported']} pool workers) "
                     f"{service['false_positive_roles']}{failure}")
        for event in service.get("false_positive_events", ()):
            sockets = ", ".join(f"{sock.get('state', '')} {sock.get('local', '')}"
                                f"->{sock.get('remote', '')}"
                                for sock in (event.get("sockets") or [])[:4])
            lines.append(f"    pid {event['pid']} ({event['cmdline'][:40]}), uptime "
                         f"{event['uptime']} s: {', '.join(event['reasons'] or ())}; {sockets}")
    lines.append("false positives of one-shot ptfast scan (PT_LIMIT=1), same load:")
    for name, scan in results["scan"].items():
        missed = f", misses {scan['attacks_missed']}" if scan["attacks_missed"] else ""
        lines.append(f"  {name}: {scan['false_positives']} {scan['false_positive_roles']}"
                     f"{missed}")
    if "new_while_running" in results:
        lines.append("processes of the bed started after the attacks, alive at the window's "
                     f"end (each judged by a live check): {results['new_while_running']}")
    load = results["settings"]["web_load"]
    lines.append(f"web load: {load['requests']} requests {load['pages']}, "
                 f"{load['errors']} errors")
    return "\n".join(lines) + "\n"

