"""PT_LIMIT, PT_DELETED, PT_SKIP_HTTP, PT_SERVICE_SOCKETS: the suspicious process check, and how
it judges each socket (a root service's socket handed to its own worker does not count)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Optional

from ptfast.decide.checks.base import (Alerting, HostReader, Judging, PassWork, SnapshotCheck,
                                       action_for, process_of)
from ptfast.decide.checks.shown import shown_exe
from ptfast.decide.checks.sockets import endpoint, is_listening, judged_socket_text
from ptfast.decide.checks.web_server import HTTP_PORTS, HTTP_PROTOCOLS, is_web_server_child
from ptfast.decide.lifetimes import REMOTE_CALLS, REMOTE_WINDOW, is_connection
from ptfast.decide.findings import (EVERYTHING, CHECK_SUSPICIOUS, REASON_DELETED, REASON_INCOMPLETE,
                                    REASON_LISTENING, REASON_SOCKET, REMEMBER_LISTENER,
                                    REMEMBER_PROCESS, Finding, Remember, Response, process_key)
from ptfast.foundation.bounds import bounded_lines, bounded_text
from ptfast.foundation.config import Settings
from ptfast.foundation.escape import escape_text
from ptfast.scan._corespec import FDS_GONE

if TYPE_CHECKING:
    from ptfast.foundation.config import TrackingSettings

#: take_verdict's mark for a process want_fds was not asked about (None is a verdict)
_NOT_ASKED = object()


class Suspicious(SnapshotCheck, Alerting):
    """PT_LIMIT, PT_DELETED, PT_SKIP_HTTP: processes of tracked users older than PT_LIMIT with
    network sockets, or running a deleted executable."""

    name = CHECK_SUSPICIOUS
    template = "processtracking.txt"

    def candidate(self, policy: Judging, proc, key: tuple):
        """(user, exe_or_cmd_ignored) when the process (``key``: its process_key) is worth a
        look, else None.

        Steps 2-3 of lfd's scan: tracked user, user not ignored, root never. A process reported
        before is looked at again (what it holds now may be new: see ``evaluate``), unless its
        memory predates what-was-reported (then it is never reported again, as before).
        An ignored exe or cmd takes a process out, except that with PT_DELETED its deleted
        executable is still reported. PT_DELETED=0 only removes that reason: a deleted
        executable's sockets count like any other's (lfd skipped the process: an evasion).
        """
        user = policy.tracked_user(proc.uid)
        if user is None or policy.memory.reported_what(key) is EVERYTHING:
            return None
        ignored = policy.ignores_process(proc)
        if proc.exe_deleted and policy.settings.PT_DELETED:
            return (user, ignored)
        return None if ignored else (user, False)

    def take_verdict(self, policy: Judging, proc, work: PassWork):
        """The verdict want_fds gave ``proc`` in this pass (``work.verdicts``), or a fresh
        one."""
        key = process_key(proc)
        verdict = work.verdicts.pop(key, _NOT_ASKED)
        return self.candidate(policy, proc, key) if verdict is _NOT_ASKED else verdict

    def evaluate(self, policy: Judging, snapshot, work: PassWork) -> list:
        """Suspicious processes of one snapshot, one deleted-executable report per family."""
        if not policy.enabled:
            return []
        skip_http = policy.settings.PT_SKIP_HTTP
        by_pid = snapshot.by_pid()
        findings = []
        for proc in snapshot.processes:
            if policy.within_limit(proc):
                hopping = self._hopping(policy, proc, work)
                if hopping is not None:
                    findings.append(hopping)
                continue
            verdict = self.take_verdict(policy, proc, work)
            if verdict is None:
                continue
            user, ignored = verdict
            if skip_http and is_web_server_child(policy, proc, by_pid):
                continue
            reasons = []
            if proc.exe_deleted and policy.settings.PT_DELETED:
                reasons.append(REASON_DELETED)
            if proc.incomplete and proc.incomplete != FDS_GONE and not ignored:
                reasons.append(REASON_INCOMPLETE)
            judged: tuple = ()
            calls: tuple = ()       # an ignored process's calls do not count
            if not ignored:
                judged = judge_sockets(policy, proc, by_pid, skip_http, work)
                counted = [sock for sock, counts, _why in judged if counts]
                if any(is_listening(sock) for sock in counted):
                    reasons.append(REASON_LISTENING)
                if any(not is_listening(sock) for sock in counted):
                    reasons.append(REASON_SOCKET)
                calls = self._calls(policy, proc, by_pid, judged)
                if calls:
                    if REASON_SOCKET not in reasons:
                        reasons.append(REASON_SOCKET)
            if not reasons:
                continue
            what = reported_what(reasons, judged, calls)
            judged += calls
            known = policy.memory.reported_what(process_key(proc))
            if known is not None and not set(what) - known:
                continue        # reported before, and it holds nothing new
            findings.append(Finding(self.name, tuple(reasons), proc, user,
                                    judged_sockets=judged,
                                    details={"what": what} if known is None else
                                    {"what": what, "new": [w for w in what if w not in known]}))
        return self._one_deleted_report_per_family(policy, findings, by_pid)

    @staticmethod
    def _calls(policy: Judging, proc, by_pid: dict, judged: tuple) -> tuple:
        """The process's short connections to other hosts (decide.lifetimes), as judged
        sockets, when there are REMOTE_CALLS or more within REMOTE_WINDOW; none when it is a
        service worker whose calls all went to one host (its database)."""
        lifetimes = policy.lifetimes
        if lifetimes is None or not policy.settings.PT_CONN_AGE:
            return ()
        calls = lifetimes.recent_calls(process_key(proc), policy.now)
        if len(calls) < REMOTE_CALLS:
            return ()
        if (len({sock.remote_ip for sock in calls}) == 1 and policy.settings.PT_SERVICE_SOCKETS
                and policy.service_master(proc, by_pid) is not None):
            return ()
        held = {(sock.netns, sock.inode) for sock, _counts, _why in judged}
        why = (f"one of {len(calls)} connections to other hosts within {REMOTE_WINDOW:g} s, "
               "each held less than PT_CONN_AGE")
        return tuple((sock, True, why) for sock in calls if (sock.netns, sock.inode) not in held)

    def _hopping(self, policy: Judging, proc, work: PassWork) -> Optional[Finding]:
        """A young process holding a listener that outlived PT_LIMIT (handed from one short
        -lived holder to the next, of any account): reported for that listener alone. Only
        the young processes whose fds were walked (want_fds: those of the accounts that
        created or held such a listener; the hopping walk: any) have sockets to judge."""
        if proc.sockets is None:
            return None
        verdict = self.take_verdict(policy, proc, work)
        if verdict is None or verdict[1]:
            return None
        outlived = [sock for sock in proc.sockets
                    if is_listening(sock) and policy.outlived_holders(sock)]
        if not outlived:
            return None
        judged = tuple((sock, sock in outlived,
                        f"a listener open for more than PT_LIMIT ({policy.limit:g} s), handed "
                        "between processes younger than that" if sock in outlived
                        else "the process is younger than PT_LIMIT")
                       for sock in proc.sockets)
        return Finding(self.name, (REASON_LISTENING,), proc, verdict[0], judged_sockets=judged,
                       details={"outlived": [(sock.netns, sock.inode) for sock in outlived],
                                "what": reported_what((REASON_LISTENING,), judged)})

    @staticmethod
    def _one_deleted_report_per_family(policy: Judging, findings: list, by_pid: dict) -> list:
        """A child of a deleted executable whose deleted executable is reported gets no second
        report of it; its own sockets still count."""
        reported_deleted = {process_of(f).pid for f in findings if REASON_DELETED in f.reasons}
        kept = []
        for finding in findings:
            proc = process_of(finding)
            parent = by_pid.get(proc.ppid)
            if (REASON_DELETED in finding.reasons and parent is not None and parent.exe_deleted
                    and (parent.pid in reported_deleted
                         or policy.memory.was_reported(process_key(parent)))):
                finding.reasons = tuple(r for r in finding.reasons if r != REASON_DELETED)
                if not finding.reasons:
                    continue
            kept.append(finding)
        return kept

    def respond(self, finding: Finding, settings: TrackingSettings) -> Response:
        proc = process_of(finding)
        action = (action_for(Settings.PT_DELETED_ACTION, settings.actions.PT_DELETED_ACTION,
                             (proc.exe, proc.pid, finding.user, proc.ppid))
                  if REASON_DELETED in finding.reasons else None)
        # a listener that outlived its holders is reported once, not again with each holder
        listeners = tuple(Remember(REMEMBER_LISTENER, key)
                          for key in finding.details.get("outlived", ()))
        return Response(alert=self.template,
                        remember=(Remember(REMEMBER_PROCESS, process_key(proc),
                                           what=tuple(finding.details.get("what", ()))),
                                  *listeners),
                        action=action)

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        proc = process_of(finding)
        return [f"*Suspicious Process* PID:{proc.pid} PPID:{proc.ppid} "
                f"User:{escape_text(finding.user)} Uptime:{int(proc.age)} secs "
                f"EXE:{shown_exe(proc)} CMD:{bounded_text(proc.cmdline)}"]

    def attachment(self, finding: Finding, settings: TrackingSettings, host: HostReader):
        """The process's memory maps."""
        return host.process_maps(process_of(finding))

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        proc = process_of(finding)
        return {
            "hostname": hostname,
            "pid": f"{proc.pid} (Parent PID:{proc.ppid})",
            "user": escape_text(finding.user),
            "uptime": str(int(proc.age)),
            "exe": shown_exe(proc),
            "cmdline": bounded_text(proc.cmdline),
            "sockets": "\n".join(bounded_lines(finding.judged_sockets,
                                               lambda judged: judged_socket_text(*judged))),
            "files": "\n".join(bounded_lines(finding.open_files, bounded_text)),
            "maps": "\n".join(bounded_lines(attached or (), bounded_text)),
        }


#: the word for a process's calls to other hosts, whichever hosts: a spam sender reported
#: for them is not reported again for each next mail host (the digest carries the volume)
CALLS_WORD = "calls to other hosts"


def reported_what(reasons, judged, calls=()) -> list:
    """What a finding reports, in words its memory keeps (state.ReportedState): a process
    reported before is reported again only for something not among them: a listener on
    another port, a connection to another peer, calls to other hosts, a reason it did not
    have."""
    what = [reason for reason in (REASON_DELETED, REASON_INCOMPLETE) if reason in reasons]
    if calls:
        what.append(CALLS_WORD)
    for sock, counts, _why in judged:
        if not counts:
            continue
        word = (f"listener {sock.proto} {sock.local_port}" if is_listening(sock)
                else f"peer {sock.remote_ip}")
        if word not in what:
            what.append(word)
    return what


def judge_sockets(policy: Judging, proc, by_pid: dict, skip_http: bool,
                  work: PassWork) -> tuple:
    """Every socket of ``proc`` as (socket, counted, why).

    Not counted: tcp and udp sockets on local port 80/443 under PT_SKIP_HTTP, as lfd; and with
    PT_SERVICE_SOCKETS (ptfast's, default on) the sockets a root service handed to its own
    worker: one it did not create (root or a system account did, which no customer can) while
    it is a worker of its root parent (policy.service_master: forked by it and not exec'd
    since, or one of its package's own programs), and the connections it accepted on such a
    listener. A process that holds an inherited listener but is no such worker (a backdoor
    started from a php-fpm worker, php-fpm run again with LD_PRELOAD or a configuration of
    its own) is no worker: all of its sockets count.
    """
    sockets = proc.sockets
    if not sockets:
        return ()
    handed = [policy.handed_over(sock, proc) for sock in sockets]
    master = None
    if policy.settings.PT_SERVICE_SOCKETS and any(handed):
        master = policy.service_master(proc, by_pid)
    judged = []
    service_listeners = []
    for sock, handed_over in zip(sockets, handed):
        if skip_http and sock.proto in HTTP_PROTOCOLS and sock.local_port in HTTP_PORTS:
            judged.append((sock, False, "local port 80/443 under PT_SKIP_HTTP"))
        elif master is not None and handed_over:
            kind = "listener" if is_listening(sock) else "socket"
            judged.append((sock, False, f"service socket: {kind} of root pid {master.pid} "
                                        f"({escape_text(os.path.basename(master.exe))})"))
            if sock.state == "LISTEN":
                service_listeners.append(sock)
        elif handed_over:
            judged.append((sock, True, f"handed over by uid {sock.uid} to a process that is "
                                       "no worker of its root service"))
        elif sock.uid == proc.uid:
            judged.append((sock, True, "created by the process's own user"))
        elif sock.uid in policy.customer_code_uids:
            judged.append((sock, True, f"created by uid {sock.uid}, an account that runs "
                                       "customers' code"))
        else:
            judged.append((sock, True, f"created by uid {sock.uid}, another customer"))
    conn_age = policy.settings.PT_CONN_AGE
    if policy.lifetimes is not None and conn_age:
        for number, (sock, counts, _why) in enumerate(judged):
            age = policy.lifetimes.age(sock, policy.now) if counts and is_connection(sock) else None
            if age is not None and policy.young_connection(age):
                judged[number] = (sock, False, f"a connection held {age:.0f} s so far, less "
                                               f"than PT_CONN_AGE ({conn_age} s)")
    if master is not None:
        for number, (sock, counts, _why) in enumerate(judged):
            listener = (accepted_on(sock, service_listeners,
                                    lambda listener: known_dual_stack(policy, work, listener))
                        if counts else None)
            if listener is not None:
                judged[number] = (sock, False, "service socket: accepted on the listener "
                                               f"{endpoint(listener.local_ip, listener.local_port)}"
                                               f" of root pid {master.pid}")
    return tuple(judged)


def known_dual_stack(policy: Judging, work: PassWork, listener) -> bool:
    """``listener`` (tcp6) is known not to be IPV6_V6ONLY: it accepts IPv4 connections, and no
    one else can bind an IPv4-mapped address of its port. Unknown (another network namespace,
    netlink refused) is no: a mapped connection is then not taken for its. The listeners are
    read once a pass (``work.v6only``), and only by a pass that asks."""
    if work.v6only is None:
        work.v6only = policy.v6only_listeners()
    return work.v6only.get((listener.netns, listener.inode)) is False


def accepted_on(sock, listeners, dual_stack: Callable[[object], bool] = lambda listener: False):
    """The listener among ``listeners`` that ``sock`` is a connection accepted on, or None: same
    network namespace, same table (family and protocol: a tcp listener accepts only tcp
    connections, a tcp6 one only tcp6 ones, IPv4-mapped included), same local port, and the
    listener's address or its family's wildcard. An outgoing connection cannot borrow the
    port: bind() refuses a port another uid's listener holds in that family (a tcp6 socket
    may bind [::1]:P beside a tcp listener on 0.0.0.0:P, which is why the table counts).
    ``dual_stack(listener)``: a tcp6 listener known not to be IPV6_V6ONLY (see _accepts_at)."""
    if sock.state in ("LISTEN", "UNCONN") or not sock.proto.startswith("tcp"):
        return None
    for listener in listeners:
        if (listener.netns == sock.netns and listener.proto == sock.proto
                and listener.local_port == sock.local_port
                and _accepts_at(listener, sock, dual_stack)):
            return listener
    return None


def _accepts_at(listener, sock, dual_stack: Callable[[object], bool]) -> bool:
    """A listener of ``sock``'s table accepts connections to ``sock``'s local address: its own
    address, or its wildcard. IPv4-mapped addresses are shown as IPv4, so in tcp6 "0.0.0.0"
    (::ffff:0.0.0.0) is the wildcard of the mapped addresses only, and "::" of the IPv6 ones,
    and of the mapped ones only when it is known not to be IPV6_V6ONLY (``dual_stack``): a
    v6only [::]:P leaves [::ffff:A]:P free for a customer's worker to bind and connect out
    from (the kernel refuses that bind beside a dual-stack [::]:P)."""
    if listener.local_ip == sock.local_ip:
        return True
    if listener.local_ip == "0.0.0.0":
        return ":" not in sock.local_ip
    if listener.local_ip != "::" or sock.proto != "tcp6":
        return False
    return ":" in sock.local_ip or dual_stack(listener)
