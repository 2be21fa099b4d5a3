"""``ptfast tune``: what each PT_LIMIT would cost and report on this host, measured.

For ``--duration`` seconds ptfast samples the host with the fast core under the same settings and
ignore rules as ``ptfast run``, but with every tracked process inspected whatever its age. Each
sample says, for every process, its age and whether it held a socket that counts (or ran a
deleted executable). From that, per candidate PT_LIMIT:

* inspected per scan: tracked, not ignored processes older than the limit (they get the fd walk),
  averaged over the samples;
* reported: processes seen suspicious while older than the limit. Samples are denser than
  PT_INTERVAL, so this is what the daemon could report; it sees a process only if one of its
  scans falls inside that window;
* scan cost: real scans under that limit (scan plus decisions, as the daemon runs them), taken in
  turn between samples; wall milliseconds, and CPU time as a share of one core at PT_INTERVAL;
* longest unreported run: PT_LIMIT + PT_INTERVAL (a process becomes eligible at PT_LIMIT and
  waits up to one interval for the next scan).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Iterator

from ptfast.scan import procfs
from ptfast.decide.checks import SUSPICIOUS
from ptfast.decide.judgement import Judgement
from ptfast.decide.findings import process_key
from ptfast.foundation.words import counted

DEFAULT_LIMITS = (0, 5, 10, 30, 60, 120, 300, 600, 1800)
DEFAULT_DURATION = 180.0
DEFAULT_SAMPLE = 2.0
# tune must not load the host it measures: samples are spaced so its own scans use at most
# this share of one core
MAX_OWN_SHARE = 0.25
# a limit whose scans cost more than this share of a core at PT_INTERVAL is not recommended
MAX_RECOMMENDED_SHARE = 0.05
# below this limit every PHP/CGI request that touches the network would be reported
MIN_RECOMMENDED = 5


@dataclass
class Row:
    """One candidate PT_LIMIT, measured."""

    pt_limit: int
    inspected_per_scan: float
    reported: int
    scan_ms: float | None
    core_share: float | None          # CPU seconds per scan / PT_INTERVAL
    longest_unreported_s: int | None  # None: tracking is off, no bound

    def as_dict(self) -> dict:
        return {"pt_limit": self.pt_limit, "inspected_per_scan": round(self.inspected_per_scan, 1),
                "reported": self.reported,
                "scan_ms": None if self.scan_ms is None else round(self.scan_ms, 1),
                "core_share": None if self.core_share is None else round(self.core_share, 5),
                "longest_unreported_s": self.longest_unreported_s}


@dataclass
class Result:
    rows: list
    recommended: int | None
    why: str
    duration: float
    samples: int
    pt_interval: int
    tracked_seen: int
    suspicious_seen: int
    interrupted: bool = False       # Ctrl-C: what was measured until then

    def as_dict(self) -> dict:
        return {"duration_s": round(self.duration, 1), "samples": self.samples,
                "interrupted": self.interrupted,
                "pt_interval": self.pt_interval, "tracked_processes_seen": self.tracked_seen,
                "suspicious_processes_seen": self.suspicious_seen,
                "rows": [row.as_dict() for row in self.rows],
                "recommended_pt_limit": self.recommended, "why": self.why}


class Watch:
    """Samples the host and keeps what the table needs."""

    def __init__(self, make_policy, proc_root: str, limits, pt_interval: int) -> None:
        self.make_policy = make_policy      # limit -> Policy with the run's settings
        self.proc_root = proc_root
        self.limits = sorted(set(limits))
        self.pt_interval = pt_interval
        self.suspicious: dict[tuple, list] = {}      # process key -> ages when it counted
        self.tracked: set = set()                    # keys of tracked, not ignored processes
        self.inspected_counts: dict[int, list] = {limit: [] for limit in self.limits}
        self.scan_costs: dict[int, list] = {limit: [] for limit in self.limits if limit > 0}
        self.suspicious_now: set = set()             # keys suspicious in the latest sample
        self.samples = 0
        self._next_costed = 0

    def sample(self) -> float:
        """One observation (every tracked process inspected) and one costed scan of the next
        limit in turn; returns the CPU seconds this took."""
        cpu_before = time.process_time()
        policy = self.make_policy(1e-9)     # inspect every tracked process, whatever its age
        judgement = Judgement(policy)
        candidate_ages = []
        aged_by = policy.aged_by            # the test-only age seam: 0 on a server

        def want_fds(proc) -> bool:
            wanted = judgement.want_fds(proc)
            if wanted:
                candidate_ages.append(proc.age + aged_by)
                self.tracked.add(process_key(proc))
            return wanted

        snapshot = procfs.scan(self.proc_root, want_fds)
        self.suspicious_now = set()
        for finding in judgement.findings(snapshot, checks=(SUSPICIOUS,)):
            key = process_key(finding.process)
            self.suspicious.setdefault(key, []).append(finding.process.age + aged_by)
            self.suspicious_now.add(key)
        for limit in self.limits:
            self.inspected_counts[limit].append(
                0 if limit == 0 else sum(1 for age in candidate_ages if age > limit))
        self.samples += 1
        self._cost_next_limit()
        return time.process_time() - cpu_before

    def _cost_next_limit(self) -> None:
        costed = list(self.scan_costs)
        if not costed:
            return
        limit = costed[self._next_costed % len(costed)]
        self._next_costed += 1
        judgement = Judgement(self.make_policy(limit))
        wall, cpu = time.perf_counter(), time.process_time()
        judgement.findings(procfs.scan(self.proc_root, judgement.want_fds), checks=(SUSPICIOUS,))
        self.scan_costs[limit].append((time.perf_counter() - wall, time.process_time() - cpu))

    def longest_finished(self) -> float:
        """The longest suspicious life among processes whose suspicious life ended during the
        watch (they exited or dropped their sockets): those are the workers to stay above.
        Processes still suspicious at the end are long-lived, their life not yet known."""
        finished = [max(ages) for key, ages in self.suspicious.items()
                    if key not in self.suspicious_now]
        return max(finished, default=0.0)

    def rows(self) -> list:
        import statistics       # here, not at the top: cli imports this module's defaults
        rows = []
        for limit in self.limits:
            counts = self.inspected_counts[limit]
            costs = self.scan_costs.get(limit) or []
            if limit == 0:      # lfd's meaning: process tracking is off
                rows.append(Row(0, 0.0, 0, None, None, None))
                continue
            reported = sum(1 for ages in self.suspicious.values() if max(ages) > limit)
            scan_ms = statistics.median(wall for wall, _cpu in costs) * 1000 if costs else None
            share = (statistics.median(cpu for _wall, cpu in costs) / self.pt_interval
                     if costs else None)
            rows.append(Row(limit, statistics.fmean(counts) if counts else 0.0, reported,
                            scan_ms, share, limit + self.pt_interval))
        return rows


def recommend(rows: list, longest_finished: float) -> tuple[int | None, str]:
    """The lowest affordable limit above every suspicious life that ended during the watch.

    Socket holders that come and go (PHP and CGI workers, cron jobs) are what PT_LIMIT exists to
    stay above; one still holding its socket at the end is long-lived, and is reported at any
    limit below its age: an intruder, or a daemon to pignore.
    """
    usable = [row for row in rows if row.pt_limit >= MIN_RECOMMENDED
              and (row.core_share is None or row.core_share <= MAX_RECOMMENDED_SHARE)]
    if not usable:
        return None, (f"no candidate of at least {MIN_RECOMMENDED} s stays within "
                      f"{MAX_RECOMMENDED_SHARE:.0%} of a core per scan at PT_INTERVAL")
    above = [row for row in usable if row.pt_limit >= longest_finished]
    row = above[0] if above else usable[-1]
    share = "" if row.core_share is None else f", at {row.core_share * 100:.2f}% of one core"
    if longest_finished:
        why = (f"socket holders that finished during the watch held their sockets for at most "
               f"{longest_finished:.0f} s")
        why += (f"; PT_LIMIT={row.pt_limit} is the lowest candidate above that" if above else
                f"; no candidate is above that, PT_LIMIT={row.pt_limit} is the highest")
    else:
        why = (f"no socket holder finished during the watch, so the lowest candidate "
               f"(PT_LIMIT={row.pt_limit}) catches an intruder soonest")
    lower = [r.reported for r in rows if 0 < r.pt_limit < row.pt_limit]
    extra = max(lower, default=row.reported) - row.reported
    if extra:
        why += f"; a lower limit would add {extra} short-lived process(es) as alerts"
    if row.reported:
        why += (f"; the {row.reported} it reports were still holding sockets: investigate them "
                "(or pignore the legitimate ones)")
    why += f"; a process with a socket runs at most {row.longest_unreported_s} s unreported{share}"
    return row.pt_limit, why


@contextlib.contextmanager
def _ctrl_c_noted() -> Iterator[tuple[list, int]]:
    """(a list that SIGINT makes non-empty, an fd readable once it came): Ctrl-C is acted on
    between samples, so that none is left half counted; the handler takes no lock (one taken
    by the code it interrupts would deadlock it)."""
    # signal and select here, not at the top: every command imports this module for its
    # defaults, and signal's enums cost a scan 1.5% of its instructions
    import signal
    noted: list = []
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: noted.append(signum))
    try:
        yield noted, read_end
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.set_wakeup_fd(previous_wakeup)
        os.close(read_end)
        os.close(write_end)


def watch(make_policy, proc_root: str, pt_interval: int, limits=DEFAULT_LIMITS,
          duration: float = DEFAULT_DURATION, sample_every: float = DEFAULT_SAMPLE,
          progress=None) -> Result:
    """Sample for ``duration`` seconds; ``progress(elapsed, watch)`` is called after each
    sample. Ctrl-C (KeyboardInterrupt) ends the watch early: the result is then what was
    measured until then, marked ``interrupted``."""
    import select
    observer = Watch(make_policy, proc_root, limits, pt_interval)
    started = time.monotonic()
    with _ctrl_c_noted() as (ctrl_c, wakeup):
        while not ctrl_c:
            cpu = observer.sample()
            elapsed = time.monotonic() - started
            if progress:
                progress(elapsed, observer)
            if elapsed >= duration:
                break
            # keep tune's own load bounded on a big host: wait at least cpu / MAX_OWN_SHARE
            pause = max(sample_every, cpu / MAX_OWN_SHARE - cpu)
            select.select([wakeup], [], [], min(pause, max(0.0, duration - elapsed)))
    interrupted = bool(ctrl_c)
    rows = observer.rows()
    recommended, why = recommend(rows, observer.longest_finished())
    return Result(rows, recommended, why, time.monotonic() - started, observer.samples,
                  pt_interval, len(observer.tracked), len(observer.suspicious), interrupted)


def table(result: Result) -> str:
    lines = [f"watched {result.duration:.0f} s, {result.samples} samples, PT_INTERVAL "
             f"{result.pt_interval} s: "
             f"{counted(result.tracked_seen, 'tracked process', 'tracked processes')} seen, "
             f"{result.suspicious_seen} of them suspicious at some point", "",
             f"{'PT_LIMIT':>8}  {'inspected/scan':>14}  {'reported':>8}  {'scan ms':>8}  "
             f"{'core share':>10}  {'longest unreported':>18}"]
    for row in result.rows:
        if row.pt_limit == 0:
            lines.append(f"{0:>8}  {'tracking off: nothing inspected, nothing reported':>64}")
            continue
        scan_ms = "-" if row.scan_ms is None else f"{row.scan_ms:.1f}"
        share = "-" if row.core_share is None else f"{row.core_share * 100:.3f}%"
        lines.append(f"{row.pt_limit:>8}  {row.inspected_per_scan:>14.1f}  {row.reported:>8}  "
                     f"{scan_ms:>8}  {share:>10}  {row.longest_unreported_s:>16} s")
    lines += ["", f"recommended: PT_LIMIT = \"{result.recommended}\"" if result.recommended
              is not None else "recommended: none", f"why: {result.why}"]
    if result.interrupted:
        lines.append(f"INTERRUPTED after {result.duration:.0f} s: the table holds what was "
                     "measured until then; a full watch sees more of the host's coming and going")
    return "\n".join(lines) + "\n"


PROGRESS_LINES = 10        # without a terminal: about one line per tenth of the watch


def terminal_progress(duration: float):
    """Progress on stderr: one line rewritten in place on a terminal; else (a pipe, a log) a
    line about every tenth of the watch, so a long watch is never silent."""
    sys.stderr.write(f"tune: watching this host for {duration:.0f} s (Ctrl-C stops early and "
                     "prints what was measured)\n")
    sys.stderr.flush()
    if not sys.stderr.isatty():
        next_line = [0.0]        # the first sample at once: the watch has begun

        def log_line(elapsed: float, observer: Watch) -> None:
            if elapsed < next_line[0] and elapsed < duration:
                return
            next_line[0] = elapsed + duration / PROGRESS_LINES
            sys.stderr.write(f"tune: {min(elapsed, duration):.0f}/{duration:.0f} s, "
                             f"{counted(observer.samples, 'sample')}, "
                             f"{len(observer.suspicious)} suspicious seen\n")
            sys.stderr.flush()
        return log_line

    def show(elapsed: float, observer: Watch) -> None:
        done = min(elapsed, duration)
        end = "\n" if elapsed >= duration else ""
        sys.stderr.write(f"\rtune: {done:5.0f}/{duration:.0f} s  {observer.samples} samples  "
                         f"{len(observer.suspicious)} suspicious seen{end}")
        sys.stderr.flush()
    return show
