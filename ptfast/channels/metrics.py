"""PT_METRICS_FILE: the pass's figures in Prometheus' text format, for node_exporter's textfile
collector, written with the official client library (prometheus_client) at the end of every
pass, atomically (node_exporter never reads half a file), through ptfast's safe paths.

The figures are those of the status file (ptfast.channels.status), so ``ptfast status`` and
Prometheus never disagree; counters carry on across restarts like the status's counts.
prometheus_client is imported only when PT_METRICS_FILE is set (it loads ssl and an HTTP server
ptfast never starts: measured, 80 ms and 6-7 MB more for `run --once`).
"""

from __future__ import annotations

from ptfast.foundation import safepaths
from ptfast.foundation.config import Config, Settings
from ptfast.decide.findings import (CHECK_FORKBOMB, CHECK_LOAD, CHECK_RESOURCE, CHECK_SSHD_HUNG,
                                    CHECK_SUSPICIOUS, CHECK_UNHELD_LISTENER, CHECK_USER_PROCESSES)
from ptfast.channels.spool import CHANNELS
from ptfast.channels.status import LIVE_COUNTERS
from ptfast.foundation.safepaths import write_atomically

CHECKS = (CHECK_SUSPICIOUS, CHECK_USER_PROCESSES, CHECK_RESOURCE, CHECK_FORKBOMB,
          CHECK_SSHD_HUNG, CHECK_LOAD, CHECK_UNHELD_LISTENER)
#: node_exporter runs as its own user: the file is readable by all (it holds no secret)
METRICS_MODE = 0o644


def _client():
    try:
        import prometheus_client
        from prometheus_client import core
    except ImportError:
        raise OSError("the prometheus_client package is not installed (pip install "
                      "prometheus_client); no metrics are written") from None
    return prometheus_client, core


def metrics_text(document: dict, spool_entries: int, oldest_spooled_at: float | None) -> bytes:
    """The metrics of a status document (status.status_document) and the spool's census."""
    prometheus_client, core = _client()
    last = document.get("last_pass") or {}
    totals = document["totals"]
    alerts = totals["alerts"]

    def gauge(name: str, doc: str, value: float):
        return core.GaugeMetricFamily(name, doc, value=value)

    def labelled(kind, name: str, doc: str, label: str, values: dict, keys):
        """A family with one sample per key (0 for a key without a value), so every series
        exists from the first pass on."""
        family = kind(name, doc, labels=[label])
        for key in keys:
            family.add_metric([key], values.get(key, 0))
        return family

    live = document.get("live") or {}
    live_docs = {"events": "process events received from the proc connector",
                 "overruns": "overruns of the proc connector's receive buffer (events lost)",
                 "gaps": "gaps in a CPU's numbering of process events (events lost)",
                 "missed": "process events the gaps skipped",
                 "resyncs": "full walks of /proc done at once because events were lost",
                 "schedule_overflows": "new processes not scheduled: the schedule was full",
                 "checks": "processes checked at their own PT_LIMIT"}

    class PassCollector:
        def collect(self):
            if live:
                yield core.InfoMetricFamily(
                    "ptfast_mode", "which source of process events runs (live: the proc "
                    "connector; polling: passes only), and why",
                    value={"mode": str(live.get("mode")), "reason": str(live.get("reason"))})
                yield gauge("ptfast_live", "1 when each process is checked at its own "
                            "PT_LIMIT (the proc connector), 0 when polling",
                            1 if live.get("mode") == "live" else 0)
                for name in LIVE_COUNTERS:
                    yield core.CounterMetricFamily(
                        f"ptfast_live_{name}", live_docs[name] + " (since the service "
                        "started)", value=int(live.get(name) or 0))
            hook = document.get("connect_hook")
            if hook and live:
                yield gauge("ptfast_connect_hook", "1 when the BPF connect hook records every "
                            "connect() (short calls to other hosts), 0 when only socket dumps "
                            "see them", 1 if hook.get("on") else 0)
                if hook.get("on"):
                    yield core.CounterMetricFamily(
                        "ptfast_connect_hook_connects", "process-and-peer records the connect "
                        "hook gave (since the service started)",
                        value=int(hook.get("connects") or 0))
                    yield core.CounterMetricFamily(
                        "ptfast_connect_hook_overflows", "drains that found the hook's map "
                        "full (the oldest records were lost; since the service started)",
                        value=int(hook.get("overflows") or 0))
            yield core.InfoMetricFamily("ptfast", "ptfast's version and the core in use",
                                        value={"version": document["version"],
                                               "core": document["core"]})
            yield gauge("ptfast_interval_seconds", "PT_INTERVAL in force",
                        document["interval"])
            yield gauge("ptfast_tracking_enabled", "1 unless PT_LIMIT is 0",
                        1 if last.get("tracking") else 0)
            yield gauge("ptfast_last_pass_timestamp_seconds", "when the last pass ended",
                        last.get("ended_at", 0))
            yield gauge("ptfast_last_pass_duration_seconds",
                        "how long the last pass took, delivery included",
                        last.get("duration_seconds", 0))
            yield gauge("ptfast_last_pass_scan_seconds", "of it, the walk of /proc",
                        last.get("scan_seconds", 0))
            yield gauge("ptfast_last_pass_processes", "processes the last pass saw",
                        last.get("processes", 0))
            yield gauge("ptfast_last_pass_processes_inspected",
                        "processes whose open files the last pass read",
                        last.get("inspected", 0))
            counter = core.CounterMetricFamily
            yield labelled(core.GaugeMetricFamily, "ptfast_last_pass_findings",
                           "new findings of the last pass", "check", last.get("findings", {}),
                           CHECKS)
            yield counter("ptfast_passes", "passes", value=totals["passes"])
            yield labelled(counter, "ptfast_findings", "findings", "check", totals["findings"],
                           CHECKS)
            for name, doc, key in (
                    ("ptfast_alerts_spooled", "alerts spooled (one per destination)", "spooled"),
                    ("ptfast_alerts_delivered", "alerts delivered", "delivered"),
                    ("ptfast_alert_delivery_failures", "alerts whose delivery failed",
                     "failed")):
                yield labelled(counter, name, doc, "channel", alerts[key], CHANNELS)
            yield gauge("ptfast_spool_entries", "alerts waiting in the spool", spool_entries)
            yield gauge("ptfast_spool_oldest_entry_timestamp_seconds",
                        "when the oldest alert waiting was spooled (0: none waits)",
                        oldest_spooled_at or 0)
            yield gauge("ptfast_ignore_rules_switched_off",
                        "ignore rules switched off (their regex ran too long)",
                        len(document.get("rules_switched_off") or ()))

    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(PassCollector())
    return prometheus_client.generate_latest(registry)


def metrics_problems(config: Config) -> list:
    """What would keep PT_METRICS_FILE from being written (for ``ptfast check``)."""
    import os
    from ptfast.foundation.problems import Problem
    path = config.settings.metrics.PT_METRICS_FILE
    if not path:
        return []
    where = config.where(Settings.PT_METRICS_FILE)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        return [Problem(where, 0, f"PT_METRICS_FILE {path}: the directory {directory} does not "
                                  "exist (ptfast does not create it: node_exporter's textfile "
                                  "directory, as --collector.textfile.directory names it)")]
    problems = []
    problem = safepaths.path_problem(path, safepaths.FILE)
    if problem:
        problems.append(Problem(where, 0, f"PT_METRICS_FILE {path} will not be written: "
                                          f"{problem}"))
    try:
        _client()
    except OSError as exc:
        problems.append(Problem(where, 0, f"PT_METRICS_FILE is set but {exc}"))
    return problems


def write_metrics(path: str, data: bytes) -> None:
    """Atomically, where no customer can reach; OSError (UnsafePath) otherwise."""
    safepaths.require_safe(path, safepaths.FILE)
    write_atomically(path, data, mode=METRICS_MODE)
