"""The work of ``ptfast run``, one pass at a time: scan, let the policy decide, carry out its
responses, forget processes that ended, save what was reported, deliver the spooled alerts.
The service around it (ptfast.daemon) only schedules passes, reloads settings and holds the lock.
"""

from __future__ import annotations

import socket
import time

from . import procfs
from .checks import SUSPICIOUS, is_listening
from .escape import escape_text
from .findings import REMEMBER_LISTENER, Remember, process_key
from .delivery import Routes, flush
from .policy import build_policy
from .spool import MAIL
from .respond import Responder
from .users import UserNames


class Tracker:
    """What lives from pass to pass: the reported state, the spool, the log, running actions
    and the user-name cache."""

    def __init__(self, log, state, spool, actions, *, proc_root: str,
                 events_file: str | None) -> None:
        self.log = log
        self.state = state
        self.spool = spool
        self.actions = actions
        self.proc_root = proc_root
        self.events_file = events_file
        self.hostname = socket.gethostname()
        self.user_names = UserNames()
        self.waiting = 0            # alerts left in the spool after the last delivery

    def settings_changed(self) -> None:
        """After a reload: accounts may have been renamed or added."""
        self.user_names = UserNames()

    def _policy(self, settings):
        return build_policy(settings.config, settings.rules, memory=self.state,
                            user_names=self.user_names)

    def _responder(self, settings) -> Responder:
        return Responder(settings, self.log, self.spool, self.state, self.actions,
                         hostname=self.hostname, user_names=self.user_names,
                         proc_root=self.proc_root, events_file=self.events_file)

    def run_pass(self, settings) -> str:
        """One pass; returns a one-line summary of it."""
        policy = self._policy(settings)
        summary = "process tracking is disabled (PT_LIMIT=0)"
        if policy.enabled:
            snapshot = procfs.scan(self.proc_root, policy.want_fds)
            findings = policy.findings(snapshot)
            for problem in settings.rules.take_match_problems():    # rules switched off
                self.log(escape_text(str(problem)))
            self._responder(settings).carry_out_all(findings)
            findings += self._hopping_listeners(settings, policy, snapshot)
            self.state.forget_gone({process_key(proc) for proc in snapshot.processes})
            left_out = self.state.observe_listeners(
                sock for sock in snapshot.socket_table.values()
                if is_listening(sock) and sock.uid != 0
                and policy.tracked_user(sock.uid) is not None)
            if left_out:
                self.log(f"{left_out} listener(s) not remembered for the hopping check: more "
                         "than MAX_LISTENERS are open")
            summary = (f"{snapshot.stats['processes']} processes scanned in "
                       f"{snapshot.duration * 1000:.0f} ms, {len(findings)} finding(s)")
        self.deliver(settings)
        return summary

    def _hopping_listeners(self, settings, policy, snapshot) -> list:
        """Listeners that outlived PT_LIMIT whose holder this pass did not walk (it exited and
        handed them to a newer process meanwhile): a second walk of their users' processes,
        all of them, right away. A listener held only by processes the rules ignore is then
        remembered as reported, so that it costs no second walk again."""
        held = {(sock.netns, sock.inode) for proc in snapshot.processes
                for sock in proc.sockets or ()}
        pending = {key: seen[0] for key, seen in self.state.listeners.items()
                   if not seen[2] and policy.now - seen[1] > policy.limit and key not in held}
        if not pending:
            return []
        uids = set(pending.values())
        second = self._policy(settings)
        # newest first: a holder handed the listener by a process that just exited is new
        rewalk = procfs.scan(self.proc_root, lambda proc: proc.uid in uids,
                             pids=procfs.newest_pids_of(uids, self.proc_root))
        findings = second.findings(rewalk, checks=(SUSPICIOUS,))
        self._responder(settings).carry_out_all(findings)
        for proc in rewalk.processes:
            for sock in proc.sockets or ():
                key = (sock.netns, sock.inode)
                if key in pending and SUSPICIOUS.candidate(second, proc) is None:
                    self.state.remember(Remember(REMEMBER_LISTENER, key))
        return findings

    def check_load(self, settings) -> None:
        """PT_LOAD: alert (with the host's state attached) when the load average is high."""
        loadavg, processes = procfs.read_loadavg(self.proc_root)
        finding = self._policy(settings).load_finding(loadavg, processes, time.time())
        if finding is None:
            return
        self._responder(settings).carry_out(finding)
        self.deliver(settings)

    def save_state(self) -> None:
        try:
            self.state.save()
        except OSError as exc:
            self.log(f"cannot save {self.state.path}: {exc.strerror}; reported processes are "
                     "remembered in memory until it can")

    def deliver(self, settings) -> None:
        """Save what was reported, then send what is in the spool; ``waiting`` says how many
        alerts are left in it."""
        self.save_state()
        routes = Routes(settings.config)
        flushed = flush(self.spool, routes, self.log)
        self.waiting = flushed.waiting
        for channel, delivered in sorted(flushed.delivered.items()):
            route = routes.mailer.route if channel == MAIL else channel
            self.log(f"{delivered} alert(s) delivered via {escape_text(route)}")
