"""What ``ptfast status`` reports: the service writes STATE_DIR/status.json at the end of every
pass (atomically: a reader sees the last pass or the one before, never half of one), and the
command reads it back with what only the host can say now: who holds the lock, and how deep and
how old the spool is.

Counts since the first pass on this state directory (passes, findings, alerts spooled, delivered
and failed) are carried over from the previous status file when the service starts, so they only
grow, as Prometheus counters should; a lost or unreadable file starts them afresh.

Health, and the exit status for monitoring: 0 healthy; 1 degraded (the spool is not draining, the
last pass is older than STALE_PASSES x PT_INTERVAL, ignore rules were switched off, the log or
events file could not be written); 2 not
running (the service that wrote the status holds the lock no more) or no status at all. A status
written by ``run --once`` (cron) needs no running process, only fresh passes.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from ptfast.foundation import safepaths
from ptfast.foundation.escape import escape_text
from ptfast.channels.spool import CHANNELS, census
from ptfast.foundation.safepaths import write_atomically
from ptfast.foundation.words import counted

STATUS_FILE = "status.json"
LOCK_FILE = "ptfast.lock"
SCHEMA_VERSION = 1
MAX_STATUS_BYTES = 1 << 20
STALE_PASSES = 3
HEALTHY, DEGRADED, DOWN = 0, 1, 2
HEALTH_WORDS = {HEALTHY: "healthy", DEGRADED: "degraded", DOWN: "down"}
SERVICE, ONCE = "run", "run --once"


@dataclass
class PassRecord:
    """One pass, as the status and the metrics show it."""

    started_at: float
    duration: float
    tracking: bool              # False with PT_LIMIT = 0
    processes: int = 0          # seen (kernel threads and zombies left out)
    inspected: int = 0          # whose open files were read
    scan_seconds: float = 0.0   # of ``duration``: the walk of /proc
    findings: Counter = field(default_factory=Counter)     # check -> new findings
    unrecorded: int = 0         # findings whose log line or event could not be written

    def as_dict(self) -> dict:
        return {"started_at": self.started_at, "ended_at": self.started_at + self.duration,
                "duration_seconds": self.duration, "scan_seconds": self.scan_seconds,
                "tracking": self.tracking,
                "processes": self.processes, "inspected": self.inspected,
                "unrecorded": self.unrecorded,
                "findings": dict(sorted(self.findings.items()))}


@dataclass
class Totals:
    """Counts since ``since``, carried from status file to status file."""

    since: float = field(default_factory=time.time)
    passes: int = 0
    findings: Counter = field(default_factory=Counter)     # check -> findings
    spooled: Counter = field(default_factory=Counter)      # channel -> entries
    delivered: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)       # alerts not delivered when due
                                                           # (each once, however long it waits)

    def as_dict(self) -> dict:
        return {"since": self.since, "passes": self.passes,
                "findings": dict(sorted(self.findings.items())),
                "alerts": {name: {channel: int(counts[channel]) for channel in CHANNELS}
                           for name, counts in (("spooled", self.spooled),
                                                ("delivered", self.delivered),
                                                ("failed", self.failed))}}

    @classmethod
    def from_dict(cls, document: dict) -> "Totals":
        """ValueError, TypeError or KeyError when ``document`` is not what as_dict made."""
        alerts = document["alerts"]

        def counts(mapping) -> Counter:
            return Counter({str(key): int(value) for key, value in dict(mapping).items()})
        return cls(float(document["since"]), int(document["passes"]),
                   counts(document["findings"]), counts(alerts["spooled"]),
                   counts(alerts["delivered"]), counts(alerts["failed"]))


def status_path(state_dir: str) -> str:
    return os.path.join(state_dir, STATUS_FILE)


def read_status(state_dir: str) -> dict:
    """The last status written; OSError (FileNotFoundError when there is none) or ValueError."""
    data = safepaths.read_private_file(status_path(state_dir), MAX_STATUS_BYTES)
    document = orjson.loads(data)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"not a ptfast status file of schema {SCHEMA_VERSION}")
    return document


def load_totals(state_dir: str) -> Totals:
    """The counts of the previous status file, or fresh ones."""
    try:
        return Totals.from_dict(read_status(state_dir)["totals"])
    except (OSError, ValueError, TypeError, KeyError):
        return Totals()


def last_written(state_dir: str) -> float:
    """When the previous status was written (its pass had flushed the spool); 0 without one."""
    try:
        return float(read_status(state_dir)["written_at"])
    except (OSError, ValueError, TypeError, KeyError):
        return 0.0


def status_document(*, service: str, interval: int, last_pass: PassRecord | None,
                    totals: Totals, waiting: int, rules_switched_off: list, routes: list,
                    unwritable: tuple | list = (), now: float | None = None,
                    live: dict | None = None, connect_hook: dict | None = None) -> dict:
    """What a pass leaves for ``ptfast status`` (docs/observability.md, "ptfast status", shows
    the fields). ``live`` is the service's mode (ptfast.act.live: "live" with the proc
    connector's counters since the service started, or "polling" and why); None for
    ``run --once``. ``connect_hook``: whether the BPF connect hook runs (scan.connecthook),
    what it counted, or why not."""
    from ptfast import __version__
    from ptfast.scan import procfs
    return {"schema": SCHEMA_VERSION, "written_at": time.time() if now is None else now,
            "pid": os.getpid(), "service": service, "version": __version__,
            "core": procfs.CORE_NAME, "interval": interval,
            "last_pass": last_pass.as_dict() if last_pass is not None else None,
            "totals": totals.as_dict(), "spool_waiting": waiting,
            "rules_switched_off": [escape_text(rule) for rule in rules_switched_off],
            "alerts_via": routes, "unwritable": [escape_text(why) for why in unwritable],
            "live": live, "connect_hook": connect_hook}


def write_status(state_dir: str, document: dict) -> None:
    """Atomically; OSError when it cannot be written."""
    write_atomically(status_path(state_dir), orjson.dumps(document))


# -- reading it back: ``ptfast status`` ---------------------------------------------------------
def lock_holder(state_dir: str, locks_file: str = "/proc/locks") -> int | None:
    """The PID holding the service's lock, from the kernel's list of locks (taking the lock to
    find out would make a service starting at that moment refuse to start)."""
    path = os.path.join(state_dir, LOCK_FILE)
    try:
        info = os.stat(path)
        with open(locks_file, encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}"
    written = _pid_written_in(path)
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2146717 0 EOF"; waiters have "->" after "1:"
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
            continue
        dev_ino = fields[5].rsplit(":", 1)
        if len(dev_ino) != 2 or not dev_ino[1].isdigit() or int(dev_ino[1]) != info.st_ino:
            continue
        pid = int(fields[4]) if fields[4].lstrip("-").isdigit() else -1
        # the same device, or (overlayfs shows the lower device) the PID the file names
        if dev_ino[0] == device or (written is not None and pid == written):
            return pid if pid > 0 else written
    return None


def _pid_written_in(path: str) -> int | None:
    try:
        text = safepaths.read_private_file(path, 64).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@dataclass
class Report:
    """The status file (None when missing or unreadable) judged against the host now."""

    code: int
    health: str
    problems: list
    document: dict | None
    holder: int | None
    spool_entries: int
    oldest_spooled_at: float | None
    now: float

    def as_dict(self) -> dict:
        oldest = self.oldest_spooled_at
        return {**(self.document or {}), "health": self.health, "exit_status": self.code,
                "problems": self.problems,
                "running": {"pid": self.holder} if self.holder is not None else None,
                "spool": {"entries": self.spool_entries, "oldest_spooled_at": oldest,
                          "oldest_age_seconds": None if oldest is None else
                          max(0.0, self.now - oldest)}}


def report(state_dir: str, now: float | None = None) -> Report:
    now = time.time() if now is None else now
    holder = lock_holder(state_dir)
    try:
        entries, oldest = census(state_dir)
    except PermissionError as exc:
        return _unreadable_state(exc, holder, now)
    except OSError as exc:
        return Report(DOWN, "no state", [f"cannot read the spool: {exc.strerror}"], None,
                      holder, 0, None, now)
    try:
        document = read_status(state_dir)
    except PermissionError as exc:
        return _unreadable_state(exc, holder, now)
    except FileNotFoundError:
        why = (f"no status in {state_dir} yet: the service has not finished a pass"
               if holder is not None else f"no status in {state_dir}: ptfast run never ran here")
        return Report(DOWN, "no state", [why], None, holder, entries, oldest, now)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return Report(DOWN, "no state", [f"{status_path(state_dir)}: {why}"], None, holder,
                      entries, oldest, now)
    code, problems = judge(document, holder, entries, oldest, now)
    return Report(code, HEALTH_WORDS[code] if code != DOWN else "not running", problems,
                  document, holder, entries, oldest, now)


def _unreadable_state(exc: OSError, holder: int | None, now: float) -> Report:
    """Not "no state": there may well be one, this user may not read it."""
    where = exc.filename or "the state directory"
    return Report(DOWN, "cannot read the state", [
        f"{where}: {exc.strerror} (the state directory is root's: run ptfast status as root)"],
        None, holder, 0, None, now)


def judge(document: dict, holder: int | None, entries: int, oldest: float | None,
          now: float) -> tuple:
    """(exit status, problems) of a status document read back."""
    problems = []
    code = HEALTHY
    if document.get("service") == SERVICE and holder is None:
        problems.append(f"the service (pid {document.get('pid')}) is not running: no process "
                        "holds the lock")
        code = DOWN
    last = document.get("last_pass") or {}
    interval = float(document.get("interval") or 60)
    ended = float(last.get("ended_at") or document.get("written_at") or 0)
    if now - ended > STALE_PASSES * interval:
        problems.append(f"the last pass ended {ago(now - ended)} ago, more than {STALE_PASSES} x "
                        f"PT_INTERVAL ({interval:g} s)")
        code = max(code, DEGRADED)
    written = float(document.get("written_at") or 0)
    if entries and oldest is not None and oldest < written:
        problems.append(f"the spool is not draining: {entries} alert(s) waiting, the oldest "
                        f"spooled {ago(now - oldest)} ago and not delivered by the last pass "
                        "(the log says why)")
        code = max(code, DEGRADED)
    unrecorded = int(last.get("unrecorded") or 0)
    unwritable = document.get("unwritable") or []
    if unrecorded or unwritable:
        problems.append(f"{'; '.join(unwritable) or 'the log or events file'}: could not be "
                        f"written" + (f", {unrecorded} finding(s) not remembered (reported "
                                      "again next pass)" if unrecorded else ""))
        code = max(code, DEGRADED)
    switched_off = document.get("rules_switched_off") or []
    if switched_off:
        problems.append(f"{len(switched_off)} ignore rule(s) switched off (their regex ran too "
                        "long): processes they would ignore are reported")
        code = max(code, DEGRADED)
    return code, problems


def mode_line(live: dict) -> str:
    """"live (events ...)" or "polling, because ..."."""
    if live.get("mode") != "live":
        return f"polling, because {escape_text(str(live.get('reason') or 'unknown'))}"
    counts = ", ".join(f"{name.replace('_', ' ')} {int(live.get(name) or 0)}"
                       for name in LIVE_COUNTERS)
    return f"live (since the service started: {counts})"


def connect_hook_line(hook: dict) -> str:
    """"BPF connect hook (...)" or "socket dumps only, because ..."."""
    if not hook.get("on"):
        return ("socket dumps only, because "
                f"{escape_text(str(hook.get('reason') or 'unknown'))}")
    return (f"BPF connect hook (since the service started: connects "
            f"{int(hook.get('connects') or 0)}, overflows {int(hook.get('overflows') or 0)})")


#: what live mode counts (ptfast.act.live.Live.status), for the status and the metrics
LIVE_COUNTERS = ("events", "overruns", "gaps", "missed", "resyncs", "schedule_overflows",
                 "checks")


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def moment(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(epoch))


def text(result: Report) -> str:
    """``ptfast status`` for people."""
    lines = [f"ptfast: {result.health}"]
    document = result.document or {}
    if result.holder is not None:
        lines.append(f"  running:     pid {result.holder}")
    elif document:
        lines.append(f"  running:     no (last written by pid {document.get('pid')}, "
                     f"ptfast {document.get('service')})")
    else:
        lines.append("  running:     no")
    last = document.get("last_pass")
    if last:
        findings = ", ".join(f"{check} {count}" for check, count in last["findings"].items())
        scanned = (f"{counted(last['processes'], 'process', 'processes')}, "
                   f"{last['inspected']} inspected"
                   if last["tracking"] else "tracking disabled (PT_LIMIT=0)")
        lines.append(f"  last pass:   {moment(last['started_at'])} "
                     f"({ago(result.now - last['ended_at'])} ago), "
                     f"{last['duration_seconds'] * 1000:.0f} ms, {scanned}, "
                     f"findings: {findings or 'none'}")
    totals = document.get("totals")
    if totals:
        alerts = totals["alerts"]

        def by_channel(name: str) -> str:
            counts = alerts[name]
            parts = ", ".join(f"{channel} {count}" for channel, count in counts.items() if count)
            return f"{name} {sum(counts.values())}" + (f" ({parts})" if parts else "")
        lines.append(f"  alerts:      {by_channel('spooled')}, {by_channel('delivered')}, "
                     f"{by_channel('failed')} since {moment(totals['since'])}")
    live = document.get("live")
    if live:
        lines.append(f"  mode:        {mode_line(live)}")
    hook = document.get("connect_hook")
    if hook and live:
        lines.append(f"  connects:    {connect_hook_line(hook)}")
    if document.get("alerts_via"):
        lines.append(f"  alerts via:  {', '.join(document['alerts_via'])}")
    if result.oldest_spooled_at is not None:
        lines.append(f"  spool:       {result.spool_entries} waiting, the oldest spooled "
                     f"{ago(result.now - result.oldest_spooled_at)} ago")
    else:
        lines.append("  spool:       empty")
    if document:
        lines.append(f"  core:        {document.get('core')} (ptfast {document.get('version')})")
        for rule in document.get("rules_switched_off") or []:
            lines.append(f"  rule off:    {escape_text(rule)}")
    for problem in result.problems:
        lines.append(f"  problem:     {problem}")
    return "\n".join(lines) + "\n"
