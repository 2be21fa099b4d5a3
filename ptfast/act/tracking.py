"""The work of ``ptfast run``, one pass at a time: scan, let the policy decide, carry out its
responses, forget processes that ended, save what was reported, deliver the spooled alerts, then
publish what the pass did (the status file, the metrics file) and summarise it. The service around
it (ptfast.commands.daemon) only schedules passes, reloads settings and holds the lock.
"""

from __future__ import annotations

import os
import socket
import time

from collections import Counter
from typing import Callable, Dict

from ptfast.foundation import config as config_mod
from ptfast.scan import connecthook, procfs
from ptfast.decide.checks import SUSPICIOUS
from ptfast.decide.checks.sockets import is_listening
from ptfast.channels.delivery import Channels, Flushed, flush
from ptfast.foundation.escape import escape_line, escape_text
from ptfast.decide.findings import CHECK_LOAD, REMEMBER_LISTENER, Remember, outlived, process_key
from ptfast.decide.judgement import Judgement, load_finding, unheld_listener_finding
from ptfast.decide.policy import build_policy
from ptfast.act import looking
from ptfast.act.respond import Responder
from ptfast.decide.lifetimes import Lifetimes
from ptfast.channels.spool import MAIL, channel_of, spooled_at
from ptfast.decide.state import MAX_LISTENERS, MAX_LISTENERS_PER_ACCOUNT
from ptfast.channels.status import (PassRecord, last_written, load_totals, status_document,
                                    status_path, write_status)
from ptfast.foundation.users import UserNames
from ptfast.foundation.words import counted


#: rounds of the hopping walks before a listener is reported as held by no process, and the
#: pause between them
UNHELD_ROUNDS = 3
UNHELD_PAUSE = 0.1


def _listening(socket_table: dict, key: tuple):
    """The listener (netns, inode) ``key`` names when it is in ``socket_table``, or None."""
    sock = socket_table.get(key[1])
    return sock if sock is not None and sock.netns == key[0] and is_listening(sock) else None


def listener_holders(processes, only=None) -> dict:
    """(netns, inode) -> uids of the non-root processes among ``processes`` seen holding that
    listener (of ``only``'s keys, when given)."""
    holders: dict = {}
    for proc in processes:
        if proc.uid == 0:
            continue
        for sock in proc.sockets or ():
            key = (sock.netns, sock.inode)
            if is_listening(sock) and (only is None or key in only):
                holders.setdefault(key, set()).add(proc.uid)
    return holders


class Tracker:
    """What lives from pass to pass: the reported state, the spool, the log, running actions
    and the user-name cache."""

    def __init__(self, log, state, spool, actions, *, proc_root: str,
                 events_file: str | None, service: str) -> None:
        self.log = log
        self.state = state
        self.spool = spool
        self.actions = actions
        self.proc_root = proc_root
        self.events_file = events_file
        self.service = service      # status.SERVICE or status.ONCE: who writes the status
        self.hostname = socket.gethostname()
        self.user_names = UserNames()
        self.waiting = 0            # alerts left in the spool after the last delivery
        self.totals = load_totals(spool.state_dir)
        self.last_pass: PassRecord | None = None
        self._failing: set = set()  # what could not be written: said once, until it works
        #: findings of this pass not remembered because their log line or event could not be
        #: written (the next pass reports them again), and those files ("PATH: why")
        self.unrecorded = 0
        self.unwritable: set = set()
        #: when the last flush started: an entry spooled before it, still waiting, was counted
        #: as failed by that flush (or by the run that wrote the previous status)
        self._last_flush = last_written(spool.state_dir)
        self._bound_logged: set = set()     # uids said to have reached their listener share
        #: connections' first sightings and calls to other hosts, from the socket dumps
        self.lifetimes = Lifetimes(lambda: procfs.host_addresses(proc_root), looking.nameservers)
        #: live mode (ptfast.act.live): (pid, start ticks) of the last full walk's processes
        #: still within PT_LIMIT, and what the status says of the mode (a callable: the
        #: counters as of each publish)
        self.young: list = []
        self.live_status: Callable[[], dict] | None = None
        #: the BPF connect hook (every connect(), with its process) when it runs; else why not
        self.connect_hook: connecthook.ConnectHook | None = None
        self.connect_hook_off = "only the service opens it"
        #: who forked a process lately (live mode's fork events), else nobody knows
        self.parent_of: Callable[[int], int | None] = lambda pid: None
        #: the processes that exited since it was last asked, with when on the boot clock
        #: (live mode's exit events)
        self.exited: Callable[[], Dict[int, float]] = dict

    def open_connect_hook(self) -> str:
        """Open the connect hook for the service's life; a line for the log."""
        self.connect_hook, why = connecthook.open_hook()
        if self.connect_hook is not None:
            return ("connects: the BPF connect hook runs (every connect() to another host "
                    "is a call, however short)")
        self.connect_hook_off = why
        return (f"connects: no BPF connect hook, because {escape_line(why)}: a short call to "
                "another host is seen only when a socket dump finds it held")

    def close_connect_hook(self) -> None:
        if self.connect_hook is not None:
            self.connect_hook.close()
            self.connect_hook = None
            self.connect_hook_off = "the service stopped"

    def settings_changed(self) -> None:
        """After a reload: accounts may have been renamed or added."""
        self.user_names = UserNames()

    def _policy(self, settings):
        return build_policy(settings.config, settings.rules, memory=self.state,
                            user_names=self.user_names, lifetimes=self.lifetimes)

    def _carry_out(self, settings, findings: list) -> None:
        responder = Responder(settings, self.log, self.spool, self.state, self.actions,
                              hostname=self.hostname, user_names=self.user_names,
                              proc_root=self.proc_root, events_file=self.events_file)
        responder.carry_out_all(findings)
        self.unrecorded += responder.unrecorded
        self.unwritable |= responder.unwritable

    def run_pass(self, settings) -> str:
        """One pass; returns a one-line summary of it."""
        started, clock = time.time(), time.perf_counter()
        policy = self._policy(settings)
        record = PassRecord(started, 0.0, policy.enabled)
        self.unrecorded, self.unwritable = 0, set()
        if policy.enabled:
            if not self.lifetimes.last_dump:        # the first look: connections' ages
                looking.warm_up(self.lifetimes, policy, self.proc_root,
                                hook=self.connect_hook)
                policy = self._policy(settings)
            judgement = Judgement(policy)
            snapshot = procfs.scan(self.proc_root, judgement.want_fds)
            self._observe(policy, snapshot)
            findings = judgement.findings(snapshot)
            self.young = [(proc.pid, proc.start_time) for proc in snapshot.processes
                          if policy.within_limit(proc)]
            for problem in settings.rules.take_match_problems():    # rules switched off
                self.log(escape_line(str(problem)))
            self._carry_out(settings, findings)
            findings += self._hopping_listeners(settings, policy, snapshot)
            live = {process_key(proc) for proc in snapshot.processes}
            self.state.forget_gone(live)
            self.lifetimes.forget_gone(live)
            left_out = self.state.observe_listeners(
                (sock for sock in snapshot.socket_table.values()
                 if is_listening(sock) and sock.uid != 0
                 and policy.tracked_user(sock.uid) is not None),
                holders=listener_holders(snapshot.processes))
            self._log_listener_bounds(left_out)
            record.processes = snapshot.stats["processes"]
            record.inspected = sum(1 for proc in snapshot.processes if proc.sockets is not None)
            record.scan_seconds = snapshot.duration
            record.findings.update(finding.check for finding in findings)
        spooled, flushed, failed = self.deliver(settings)
        record.duration = time.perf_counter() - clock
        record.unrecorded = self.unrecorded
        self.last_pass = record
        self.totals.passes += 1
        self.totals.findings.update(record.findings)
        self.publish(settings)
        return self._summary(record, spooled, flushed, failed)

    def _observe(self, policy, snapshot) -> None:
        """The pass's own tables and fd walk, for the connections' lifetimes."""
        self.lifetimes.observe(snapshot.socket_table.values(), time.time(),
                               lambda uid: policy.tracked_user(uid) is not None, dump=False)
        self.lifetimes.attribute(snapshot.processes, process_key)

    def dump_sockets(self, settings) -> None:
        """Between passes (every lifetimes.DUMP_EVERY s): a socket dump; the processes of
        accounts with a connection that just reached PT_CONN_AGE, or a new call to another
        host, are judged at once (the suspicious check alone)."""
        policy = self._policy(settings)
        if not policy.enabled:
            return
        looked = looking.dump(self.lifetimes, policy, self.proc_root, self.connect_hook,
                              self.parent_of, self.exited)
        if looked is None:
            return
        if looked.pids:
            self.check_processes(settings, sorted(looked.pids))
        uids = looked.uids
        if not uids:
            return
        policy = self._policy(settings)
        judgement = Judgement(policy)
        walk = procfs.scan(self.proc_root, lambda proc: proc.uid in uids and
                           judgement.want_fds(proc),
                           pids=procfs.newest_pids_of(uids, self.proc_root))
        # a connection opened since the dump is first seen now, young, as a pass or a live
        # check judges it (else a worker's new database query counted at once)
        self._observe(policy, walk)
        found = judgement.findings(walk, checks=(SUSPICIOUS,))
        if found:
            self._carry_out(settings, found)
            self.deliver(settings)

    def not_written(self) -> set:
        """Files the service could not write lately ("PATH: why"): the log, the events file."""
        error = getattr(self.log, "error", None)
        return self.unwritable | ({error} if error else set())

    def _summary(self, record: PassRecord, spooled: Counter, flushed: Flushed,
                 failed: Counter) -> str:
        if record.tracking:
            found = ", ".join(f"{check} {count}"
                              for check, count in sorted(record.findings.items()))
            done = (f"{counted(record.processes, 'process', 'processes')} ({record.inspected} "
                    "inspected) scanned in "
                    f"{record.scan_seconds * 1000:.0f} ms, {sum(record.findings.values())} "
                    f"finding(s)" + (f" ({found})" if found else ""))
        else:
            done = "process tracking is disabled (PT_LIMIT=0)"
        if record.unrecorded:
            done += (f", {record.unrecorded} not remembered (their log line or event could not "
                     "be written: reported again next pass)")
        return (f"{done}; alerts: {sum(spooled.values())} spooled, "
                f"{sum(flushed.delivered.values())} delivered, "
                f"{sum(failed.values())} failed, {flushed.waiting} waiting in the spool")

    def _log_listener_bounds(self, left_out) -> None:
        """Say once per account (until ptfast restarts) that it reached its share of the
        listener memory; the counts go on in ``state.listeners_left_out``."""
        for uid in sorted(left_out):
            if uid in self._bound_logged:
                continue
            self._bound_logged.add(uid)
            self.log(f"account {escape_text(self.user_names(uid))} (uid {uid}) reached its "
                     f"bound of listeners remembered for the hopping check "
                     f"({MAX_LISTENERS_PER_ACCOUNT} an account, {MAX_LISTENERS} in all): "
                     f"{left_out[uid]} of its listeners given up (reported ones first, then "
                     "its newest; its oldest unreported are kept); said once, until ptfast "
                     "restarts")

    def _hopping_listeners(self, settings, policy, snapshot) -> list:
        """Listeners that outlived PT_LIMIT whose holder this pass did not walk (it exited and
        handed them to a newer process meanwhile): a second walk, right away, of every process
        of the accounts that created or held them; for those still not found, a walk of every
        tracked account's processes, as the holder may be any account's now (handed over a
        unix socket). Whoever holds one is remembered as its holder, so the next passes walk
        that account's young processes from the start. A listener held only by processes the
        rules ignore is then remembered as reported, so that it costs no second walk again.
        One that no round of these walks (UNHELD_ROUNDS, UNHELD_PAUSE apart: a listener being
        handed on is in flight, or in a root parent's hands, for a moment only) finds held,
        and that is still there (parked in flight in a unix socket's queue, where the kernel
        still completes handshakes), is reported as held by no process, for the account that
        created it (checks.unheld_listener)."""
        held = {(sock.netns, sock.inode) for proc in snapshot.processes
                for sock in proc.sockets or ()}
        pending = {key: seen for key, seen in self.state.listeners.items()
                   if key not in held and outlived(seen, policy.limit, policy.now)}
        if not pending:
            return []
        second = self._policy(settings)
        known = {uid for seen in pending.values() for uid in (seen[0], *seen[3])}
        # newest first (a holder handed the listener by a process that just exited is new),
        # each list made when its walk starts
        walks = [(lambda proc: proc.uid in known, lambda: procfs.newest_pids_of(known,
                                                                                self.proc_root)),
                 (lambda proc: proc.uid != 0 and second.tracked_user(proc.uid) is not None,
                  lambda: procfs.newest_pids_of(None, self.proc_root))]
        findings: list = []
        for attempt in range(UNHELD_ROUNDS):
            if attempt:
                # a listener handed on is in flight, or held by root, only for a moment: the
                # next holder is walked on the next round
                time.sleep(UNHELD_PAUSE)
            for want, newest_pids in walks:
                rewalk = procfs.scan(self.proc_root, want, pids=newest_pids())
                # a connection opened since the pass's walk is first seen now, young
                self._observe(second, rewalk)
                found = Judgement(second).findings(rewalk, checks=(SUSPICIOUS,))
                self._carry_out(settings, found)
                findings += found
                holders = listener_holders(rewalk.processes, pending)
                self.state.held_by(holders)
                for proc in rewalk.processes:
                    for sock in proc.sockets or ():
                        key = (sock.netns, sock.inode)
                        if (key in pending and SUSPICIOUS.candidate(second, proc,
                                                                    process_key(proc)) is None):
                            self.state.remember(Remember(REMEMBER_LISTENER, key))
                for key in holders:
                    pending.pop(key, None)
                if not pending:
                    return findings
            # what is no longer there (closed) needs no second look
            still = {key: _listening(rewalk.socket_table, key) for key in pending}
            pending = {key: seen for key, seen in pending.items() if still[key] is not None}
            if not pending:
                return findings
        # held by no process any round saw, and still there: parked in a unix socket's queue
        unheld = [unheld_listener_finding(second, still[key], seen[1])
                  for key, seen in pending.items()]
        self._carry_out(settings, unheld)
        return findings + unheld

    def check_processes(self, settings, pids: list) -> list:
        """The processes of ``pids`` (live mode: they just reached PT_LIMIT; a dump: the connect
        hook saw them calling), walked alone and judged by the PT_LIMIT check, their findings
        carried out and delivered as a pass's are.
        Returns (pid, start ticks, age) of those still within PT_LIMIT (the clocks' ticks),
        to be checked again."""
        # most new processes are gone by their PT_LIMIT (cron's, a shell's commands): when all
        # are, no walk (it reads the socket tables whatever it finds: 10 ms at 4,000 sockets)
        pids = [pid for pid in pids if os.path.exists(f"{self.proc_root}/{pid}")]
        policy = self._policy(settings)
        if not policy.enabled or not pids:
            return []
        judgement = Judgement(policy)
        due = set(pids)
        # each one's parent and group leader beside it, as in a full walk (a worker is proven
        # by its root master, PT_SKIP_HTTP looks at both), but only the due ones' fds walked
        snapshot = procfs.scan(self.proc_root,
                               lambda proc: proc.pid in due and judgement.want_fds(proc),
                               pids=procfs.with_relatives(pids, self.proc_root))
        # as a pass does: a connection first seen now is young (PT_CONN_AGE), so that live
        # mode and polling judge connections alike
        self._observe(policy, snapshot)
        findings = [finding for finding in judgement.findings(snapshot, checks=(SUSPICIOUS,))
                    if finding.process is not None and finding.process.pid in due]
        self._carry_out(settings, findings)
        if findings:
            if self.last_pass is not None:
                self.last_pass.unrecorded = self.unrecorded
            self.totals.findings.update(finding.check for finding in findings)
            self.deliver(settings)
            self.publish(settings)
        return [(proc.pid, proc.start_time, proc.age) for proc in snapshot.processes
                if proc.pid in due and policy.within_limit(proc)]

    def check_load(self, settings) -> None:
        """PT_LOAD: alert (with the host's state attached) when the load average is high."""
        loadavg, processes = procfs.read_loadavg(self.proc_root)
        finding = load_finding(self._policy(settings), loadavg, processes, time.time())
        if finding is None:
            return
        self._carry_out(settings, [finding])
        if self.last_pass is not None:
            self.last_pass.unrecorded = self.unrecorded
        self.totals.findings[CHECK_LOAD] += 1
        self.deliver(settings)
        self.publish(settings)

    def save_state(self) -> None:
        try:
            self.state.save()
        except OSError as exc:
            self.log(f"cannot save {self.state.path}: {exc.strerror}; reported processes are "
                     "remembered in memory until it can")

    def deliver(self, settings) -> tuple:
        """Save what was reported, then send what is in the spool; ``waiting`` says how many
        alerts are left in it. Returns (entries spooled since the last delivery by channel,
        what the flush did, alerts that failed for the first time by channel)."""
        self.save_state()
        spooled = self.spool.take_added()
        channels = Channels(settings.config.settings)
        flush_started = time.time()
        flushed = flush(self.spool, channels, self.log)
        self.waiting = flushed.waiting
        self.totals.spooled.update(spooled)
        self.totals.delivered.update(flushed.delivered)
        failed = self.count_failed(flushed.kept, flush_started)
        self.totals.failed.update(failed)
        for channel, delivered in sorted(flushed.delivered.items()):
            route = channels.mail.shown if channel == MAIL else channel
            self.log(f"{delivered} alert(s) delivered via {escape_text(route)}")
        return spooled, flushed, failed

    def count_failed(self, kept: list, flush_started: float) -> Counter:
        """Alerts whose delivery failed, by channel, each counted once however many passes it
        waits (attempts are not alerts: a route that is down leaves most entries untried)."""
        failed = Counter(channel_of(path) for path in kept
                         if spooled_at(path) >= self._last_flush)
        self._last_flush = flush_started
        return failed

    def publish(self, settings) -> None:
        """The status file for ``ptfast status``, and PT_METRICS_FILE for Prometheus."""
        config: config_mod.Config = settings.config
        document = status_document(
            service=self.service, interval=config.settings.service.interval,
            last_pass=self.last_pass, totals=self.totals, waiting=self.waiting,
            rules_switched_off=settings.rules.switched_off(),
            routes=Channels(config.settings).shown(), unwritable=sorted(self.not_written()),
            live=self.live_status() if self.live_status is not None else None,
            connect_hook=(self.connect_hook.status() if self.connect_hook is not None
                          else connecthook.off_status(self.connect_hook_off)))
        state_dir = self.spool.state_dir
        self._attempt(status_path(state_dir), lambda: write_status(state_dir, document),
                      "`ptfast status` shows the pass before")
        metrics_file = config.settings.metrics.PT_METRICS_FILE
        if metrics_file:
            from ptfast.channels.metrics import metrics_text, write_metrics
            self._attempt(metrics_file, lambda: write_metrics(
                metrics_file, metrics_text(document, *self.spool.census())),
                "Prometheus sees the figures of the pass before")

    def _attempt(self, path: str, write, meanwhile: str) -> None:
        """``write()``; when it fails, say so once (not every pass) until it works again."""
        try:
            write()
        except OSError as exc:
            if path not in self._failing:
                self.log(f"cannot write {escape_text(path)}: "
                         f"{escape_text(exc.strerror or str(exc))}; {meanwhile}")
            self._failing.add(path)
        else:
            if path in self._failing:
                self.log(f"{escape_text(path)} written again")
            self._failing.discard(path)
