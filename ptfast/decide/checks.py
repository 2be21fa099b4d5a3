"""The checks of lfd's process tracking, one class each: what it finds, what ``ptfast run`` does
about it, and how it says so (lfd's log lines and the placeholders of its alert template).

Everything about a check lives in its class: a new check is a new class here (and its template
in ptfast/channels/templates/). Pure: no I/O; the policy (ptfast.decide.policy) runs the checks on a snapshot,
ptfast.act.respond carries out the responses. Every attacker-chosen string is escaped here, once,
before it reaches a log line or a template.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING, Optional

from ptfast.foundation import config as config_mod
from ptfast.scan._corespec import FDS_GONE, has_ports
from ptfast.foundation.bounds import bounded_lines, bounded_text
from ptfast.foundation.escape import escape_text
from ptfast.decide.findings import (CHECK_FORKBOMB, CHECK_LOAD, CHECK_RESOURCE, CHECK_SSHD_HUNG,
                                    CHECK_SUSPICIOUS, CHECK_UNHELD_LISTENER, CHECK_USER_PROCESSES,
                                    NOBODY, REASON_DELETED, REASON_INCOMPLETE, REASON_LISTENING,
                                    REASON_SOCKET, REASON_UNHELD, REMEMBER_LISTENER,
                                    REMEMBER_LOAD_QUIET, REMEMBER_PROCESS, REMEMBER_RESOURCE,
                                    REMEMBER_USER_QUIET, Action, Finding, Remember, Response,
                                    kill_key, process_key)

if TYPE_CHECKING:
    from ptfast.decide.policy import Policy
    from ptfast.scan.procfs import Process

#: Executable names of web servers, for PT_SKIP_HTTP.
WEB_SERVER_NAMES = frozenset({"httpd", "apache", "apache2", "nginx", "litespeed", "lshttpd",
                              "openlitespeed"})
HTTP_PORTS = frozenset({80, 443})
#: The protocols PT_SKIP_HTTP's ports are web ports of: the tables lfd read (tcp, udp and their
#: IPv6 twins; UDP 443 is HTTP/3). An ICMP echo identifier, a raw socket's IP protocol or a
#: packet socket's ethertype of 80 is no web port (the cores give those no port at all).
HTTP_PROTOCOLS = frozenset({"tcp", "tcp6", "udp", "udp6"})
#: The two command lines of an sshd child that has not authenticated anyone, exactly. lfd's
#: pattern lacked a group around its alternation and also matched any line ending in "[priv]",
#: killing logged-in sessions ("sshd: alice [priv]").
SSHD_UNAUTHENTICATED = frozenset({"sshd: unknown [net]", "sshd: unknown [priv]"})
SSHD_HUNG_AFTER = 60            # seconds, fixed in lfd
NO_SESSIONS = frozenset({0, 1})     # the kernel's and init's: never a fork bomb
MAX_LOGGED_FORKBOMB_PROCESSES = 100
#: A user forked a fork bomb when it owns at least 1/FORKER_SHARE of PT_FORKBOMB of the bomb's
#: processes, and 1/FORKER_SHARE as many as the user owning most: two accounts bombing together
#: are both stopped, but a neighbour whose script forked a child in the same minute is not taken
#: for a forker.
FORKER_SHARE = 4
#: A process is young, part of a growing bomb, when it started less than this many PT_INTERVALs
#: before the snapshot: since the previous pass, even one that took as long as the interval.
YOUNG_INTERVALS = 2

#: resource name -> (setting, Process attribute, unit divisor, unit, lfd log field)
RESOURCES = {
    "virtual memory": ("PT_USERMEM", "vm_size_bytes", 1 << 20, "MB", "VM"),
    "resident memory": ("PT_USERRSS", "vm_rss_bytes", 1 << 20, "MB", "RSS"),
    "run time": ("PT_USERTIME", "age", 1, "secs", "Time"),
}


def resource_amount(proc, resource: str) -> int:
    """How much of ``resource`` (a RESOURCES name) ``proc`` uses, in that resource's unit."""
    _setting, attribute, divisor, _unit, _field = RESOURCES[resource]
    return int(getattr(proc, attribute) / divisor)


def is_listening(sock) -> bool:
    """An open port waiting for peers: a TCP listener, or a UDP/raw socket not connected."""
    return sock.state == "LISTEN" or (sock.state == "UNCONN" and sock.remote_port == 0)


def endpoint(ip: str, port: int, ported: bool = True) -> str:
    """``ip:port``, ``[ip6]:port``; only ``ip`` for a protocol without ports (``ported``
    False: icmp, raw, packet, one the probe could not classify). Escaped, as a packet socket's
    interface name is anyone's choice in a network namespace of their own."""
    ip = escape_text(ip)
    if not ported:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def socket_endpoints(sock) -> tuple:
    """(local, remote) of ``sock`` as ``endpoint`` shows them."""
    ported = has_ports(sock.proto)
    return (endpoint(sock.local_ip, sock.local_port, ported),
            endpoint(sock.remote_ip, sock.remote_port, ported))


def socket_text(sock) -> str:
    """lfd's form, ``proto: local-ip:port -> remote-ip:port``, plus the state."""
    local, remote = socket_endpoints(sock)
    return f"{escape_text(sock.proto)}: {local} -> {remote} ({sock.state})"


def shown_exe(proc) -> str:
    """The executable as lfd shows it: the path, with " (deleted)" when the file is gone."""
    return escape_text(proc.exe) + (" (deleted)" if proc.exe_deleted else "")


def process_line(proc, user: str) -> str:
    """One process in an alert's list."""
    return (f"PID {proc.pid} (parent {proc.ppid}) user {escape_text(user)} up {int(proc.age)} s "
            f"VM {proc.vm_size_bytes >> 20} MB RSS {proc.vm_rss_bytes >> 20} MB "
            f"exe {shown_exe(proc)} cmd {bounded_text(proc.cmdline)}")


def yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"


def process_of(finding: Finding) -> Process:
    """The process of a finding whose check always names one."""
    if finding.process is None:
        raise ValueError(f"a {finding.check} finding without its process")
    return finding.process


def action_for(config, setting: str, args) -> Optional[Action]:
    """The action script ``setting`` names, with ``args``; None when the setting is empty."""
    path = config[setting].strip()
    return Action(setting, path, tuple(args)) if path else None


def forked_by_root_service(proc, by_pid: dict) -> bool:
    """``proc``'s parent is a root process of its own session: a root master (php-fpm, a pre-fork
    web server) spawned it, as a pool worker, and no customer forked it. ``by_pid``: every
    process of the snapshot. A customer cannot arrange this: its processes' parent is one of its
    own, or, once orphaned, init (whose session is 1) or a subreaper."""
    parent = by_pid.get(proc.ppid)
    return parent is not None and parent.uid == 0 and parent.session == proc.session


def forkers(procs, by_pid: dict, young_age: float, threshold: int) -> tuple:
    """The uids that forked the fork bomb of a session whose counted processes are ``procs``
    (``by_pid``: every process of the snapshot; ``threshold``: PT_FORKBOMB), sorted; never root.

    The bomb is what the session's users forked themselves, never what a root master spawned
    for them (another customer's pool workers, however many), and of that the young part
    (started less than ``young_age`` seconds ago) when it is big enough to be a bomb (a user
    owns 1/FORKER_SHARE of PT_FORKBOMB of it): the bomb is growing, and a neighbour's job forked
    hours ago is no part of it. Otherwise all of it: a bomb that stopped growing before it was
    seen. A forker owns at least 1/FORKER_SHARE of PT_FORKBOMB of it, and 1/FORKER_SHARE as much
    as the user owning most. No forker (alert, never kill): nothing a customer forked is big enough, say a root
    master's big pools and a few processes of the users; a neighbour that forks one child must
    not tip the session over and be taken for the bomb."""
    floor = threshold / FORKER_SHARE
    forked = [p for p in procs if p.uid != 0 and not forked_by_root_service(p, by_pid)]
    young = Counter(p.uid for p in forked if p.age < young_age)
    counts = young if young and max(young.values()) >= floor else Counter(p.uid for p in forked)
    if not counts:
        return ()
    least = max(floor, max(counts.values()) / FORKER_SHARE)
    return tuple(sorted(uid for uid, count in counts.items() if count >= least))


class Check:
    """One check: ``name`` in findings and JSON, ``template`` the lfd alert file it mails
    (None: it mails nothing), ``attachment`` what ptfast.act.respond reads for the alert when it
    sends one ("maps" of the process, the "host_load" state; None: nothing)."""

    name = ""
    template: Optional[str] = None
    attachment: Optional[str] = None

    def evaluate(self, policy: Policy, snapshot) -> list:
        raise NotImplementedError

    def respond(self, finding: Finding, config) -> Response:
        raise NotImplementedError

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        """lfd's log lines for the finding (shape kept, so admins' greps keep matching);
        ``user_name(uid)`` names other users' processes."""
        raise NotImplementedError

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        """The placeholders of the template; ``attached`` is what ``attachment`` named,
        ``user_name(uid)`` names other users' processes."""
        raise NotImplementedError


class Suspicious(Check):
    """PT_LIMIT, PT_DELETED, PT_SKIP_HTTP: processes of tracked users older than PT_LIMIT with
    network sockets, or running a deleted executable."""

    name = CHECK_SUSPICIOUS
    template = "processtracking.txt"
    attachment = "maps"

    def candidate(self, policy: Policy, proc, key: tuple):
        """(user, exe_or_cmd_ignored) when the process (``key``: its process_key) is worth a
        look, else None.

        Steps 2-3 of lfd's scan: tracked user, not yet reported, user not ignored, root never.
        An ignored exe or cmd takes a process out, except that with PT_DELETED its deleted
        executable is still reported. PT_DELETED=0 only removes that reason: a deleted
        executable's sockets count like any other's (lfd skipped the process: an evasion).
        """
        user = policy.tracked_user(proc.uid)
        if user is None or policy.memory.was_reported(key):
            return None
        ignored = policy.ignores_process(proc)
        if proc.exe_deleted and policy.config["PT_DELETED"]:
            return (user, ignored)
        return None if ignored else (user, False)

    def evaluate(self, policy: Policy, snapshot) -> list:
        """Suspicious processes of one snapshot, one deleted-executable report per family."""
        if not policy.enabled:
            return []
        skip_http = bool(policy.config["PT_SKIP_HTTP"])
        by_pid = snapshot.by_pid()
        findings = []
        for proc in snapshot.processes:
            if proc.age <= policy.limit:
                hopping = self._hopping(policy, proc)
                if hopping is not None:
                    findings.append(hopping)
                continue
            verdict = policy.take_verdict(proc)
            if verdict is None:
                continue
            user, ignored = verdict
            if skip_http and is_web_server_child(policy, proc, by_pid):
                continue
            reasons = []
            if proc.exe_deleted and policy.config["PT_DELETED"]:
                reasons.append(REASON_DELETED)
            if proc.incomplete and proc.incomplete != FDS_GONE and not ignored:
                reasons.append(REASON_INCOMPLETE)
            judged: tuple = ()
            if not ignored:
                judged = judge_sockets(policy, proc, by_pid, skip_http)
                counted = [sock for sock, counts, _why in judged if counts]
                if any(is_listening(sock) for sock in counted):
                    reasons.append(REASON_LISTENING)
                if any(not is_listening(sock) for sock in counted):
                    reasons.append(REASON_SOCKET)
            if reasons:
                findings.append(Finding(self.name, tuple(reasons), proc, user,
                                        judged_sockets=judged))
        return self._one_deleted_report_per_family(policy, findings, by_pid)

    def _hopping(self, policy: Policy, proc) -> Optional[Finding]:
        """A young process holding a listener that outlived PT_LIMIT (handed from one short
        -lived holder to the next, of any account): reported for that listener alone. Only
        the young processes whose fds were walked (policy.want_fds: those of the accounts that
        created or held such a listener; the hopping walk: any) have sockets to judge."""
        if proc.sockets is None:
            return None
        verdict = policy.take_verdict(proc)
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
                       details={"outlived": [(sock.netns, sock.inode) for sock in outlived]})

    @staticmethod
    def _one_deleted_report_per_family(policy: Policy, findings: list, by_pid: dict) -> list:
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

    def respond(self, finding: Finding, config) -> Response:
        proc = process_of(finding)
        action = (action_for(config, "PT_DELETED_ACTION",
                             (proc.exe, proc.pid, finding.user, proc.ppid))
                  if REASON_DELETED in finding.reasons else None)
        # a listener that outlived its holders is reported once, not again with each holder
        listeners = tuple(Remember(REMEMBER_LISTENER, key)
                          for key in finding.details.get("outlived", ()))
        return Response(alert=self.template,
                        remember=(Remember(REMEMBER_PROCESS, process_key(proc)),
                                  *listeners),
                        action=action)

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        proc = process_of(finding)
        return [f"*Suspicious Process* PID:{proc.pid} PPID:{proc.ppid} "
                f"User:{escape_text(finding.user)} Uptime:{int(proc.age)} secs "
                f"EXE:{shown_exe(proc)} CMD:{bounded_text(proc.cmdline)}"]

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


class UnheldListener(Check):
    """``ptfast run`` only (found by the hopping walks, ptfast.act.tracking): a tracked account's
    listener that outlived PT_LIMIT and that no process of a tracked account holds. Its own
    check name, as it has no process (its events have no pid); the suspicious process mail."""

    name = CHECK_UNHELD_LISTENER
    template = Suspicious.template

    def evaluate(self, policy: Policy, snapshot) -> list:
        return []                   # not a snapshot check: see unheld_listener

    def respond(self, finding: Finding, config) -> Response:
        return Response(alert=self.template,
                        remember=tuple(Remember(REMEMBER_LISTENER, key)
                                       for key in finding.details["outlived"]))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        # lfd's shape kept, so that admins' greps for suspicious processes still match
        return [f"*Suspicious Process* PID:- PPID:- User:{escape_text(finding.user)} "
                f"Uptime:{finding.details['open_for']} secs EXE:- CMD:- "
                f"{REASON_UNHELD}: {judged_socket_text(*finding.judged_sockets[0])}"]

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        return {"hostname": hostname, "pid": f"none: {REASON_UNHELD}",
                "user": escape_text(finding.user), "uptime": str(finding.details["open_for"]),
                "exe": "-", "cmdline": "-", "files": "", "maps": "",
                "sockets": judged_socket_text(*finding.judged_sockets[0])}


def unheld_listener(policy: Policy, sock, first_seen: float) -> Finding:
    """A tracked account's listener (``sock``, first seen at ``first_seen``) that outlived
    PT_LIMIT and that no process of a tracked account holds, after the hopping walks looked
    at every one of them: parked in flight in a unix socket's queue (the kernel still
    completes handshakes into its backlog, and its owner takes it back to accept whenever it
    likes), or handed to root or an untracked account. Reported once, for the account that
    created it (the ``uid`` of its table record, which only that account can be)."""
    why = (f"created by uid {sock.uid}, open for more than PT_LIMIT ({policy.limit:g} s); "
           "no process of a tracked account holds it")
    finding = Finding(CHECK_UNHELD_LISTENER, (REASON_UNHELD,), None,
                      policy.user_name(sock.uid), judged_sockets=((sock, True, why),),
                      details={"uid": sock.uid, "outlived": [(sock.netns, sock.inode)],
                               "open_for": max(0, int(policy.now - first_seen))})
    finding.response = UNHELD_LISTENER.respond(finding, policy.config)
    return finding


def is_web_server_child(policy: Policy, proc, by_pid: dict) -> bool:
    """PT_SKIP_HTTP: the process's group leader or parent is the web server."""
    for related in (by_pid.get(proc.pgrp), by_pid.get(proc.ppid)):
        if related is not None and policy.is_web_server(related):
            return True
    return False


def judge_sockets(policy: Policy, proc, by_pid: dict, skip_http: bool) -> tuple:
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
    if policy.config["PT_SERVICE_SOCKETS"] and any(handed):
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
    if master is not None:
        for number, (sock, counts, _why) in enumerate(judged):
            listener = (accepted_on(sock, service_listeners, policy.dual_stack) if counts
                        else None)
            if listener is not None:
                judged[number] = (sock, False, "service socket: accepted on the listener "
                                               f"{endpoint(listener.local_ip, listener.local_port)}"
                                               f" of root pid {master.pid}")
    return tuple(judged)


def accepted_on(sock, listeners, dual_stack=lambda listener: False):
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


def _accepts_at(listener, sock, dual_stack) -> bool:
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


def judged_socket_text(sock, counts: bool, why: str) -> str:
    return socket_text(sock) + ("" if counts else f" [not counted: {why}]")


def _user_processes(policy: Policy, snapshot) -> dict:
    """user -> processes that PT_USERPROC and the resource checks count: tracked users but
    nobody, no deleted executables, no ignored processes, no web server children under
    PT_SKIP_HTTP. Worked out once per snapshot for both checks."""
    cached = policy.scratch.get("user_processes")
    if cached is not None and cached[0] is snapshot:
        return cached[1]
    per_user = _count_user_processes(policy, snapshot)
    policy.scratch["user_processes"] = (snapshot, per_user)
    return per_user


def _count_user_processes(policy: Policy, snapshot) -> dict:
    skip_http = bool(policy.config["PT_SKIP_HTTP"])
    by_pid = snapshot.by_pid() if skip_http else {}
    per_user: dict = {}
    for proc in snapshot.processes:
        if proc.exe_deleted:
            continue
        user = policy.tracked_user(proc.uid)
        if user is None or user == NOBODY or policy.ignores_process(proc):
            continue
        if skip_http and is_web_server_child(policy, proc, by_pid):
            continue
        per_user.setdefault(user, []).append(proc)
    return per_user


def _user_kill(config, procs) -> tuple:
    """PT_USERKILL: (processes to kill, (their uid,)); nothing without it."""
    if not config["PT_USERKILL"]:
        return (), ()
    return tuple(kill_key(proc) for proc in procs), (procs[0].uid,)


class UserProcesses(Check):
    """PT_USERPROC: a user running more processes than this; quiet for LF_FLUSH afterwards."""

    name = CHECK_USER_PROCESSES
    template = "usertracking.txt"

    def evaluate(self, policy: Policy, snapshot) -> list:
        limit = policy.config["PT_USERPROC"]
        if not policy.enabled or limit <= 0:
            return []
        findings = []
        for user, procs in _user_processes(policy, snapshot).items():
            if (len(procs) > limit
                    and policy.memory.user_quiet_until(user) <= snapshot.taken_at):
                findings.append(Finding(self.name, ("too many processes",), None, user,
                                        tuple(procs), f"{len(procs)} > PT_USERPROC {limit}"))
        return findings

    def respond(self, finding: Finding, config) -> Response:
        kill, uids = _user_kill(config, finding.processes)
        return Response(
            alert=self.template if not kill or config["PT_USERKILL_ALERT"] else None,
            kill=kill, kill_uids=uids,
            remember=(Remember(REMEMBER_USER_QUIET, (finding.user,),
                               float(config["LF_FLUSH"])),),
            action=action_for(config, "PT_USER_ACTION",
                              (",".join(str(p.pid) for p in finding.processes),)))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        return [f"*Excessive Processes* User:{escape_text(finding.user)} Kill:{int(killed)} "
                f"Process Count:{len(finding.processes)}"]

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        return {"hostname": hostname, "user": escape_text(finding.user),
                "count": str(len(finding.processes)),
                "text": "\n".join(bounded_lines(finding.processes,
                                                 lambda p: process_line(p, finding.user))),
                "kill": yes_no(killed)}


class Resource(Check):
    """PT_USERMEM, PT_USERRSS, PT_USERTIME: a process over a limit, once per process and
    resource."""

    name = CHECK_RESOURCE
    template = "resalert.txt"

    def evaluate(self, policy: Policy, snapshot) -> list:
        config = policy.config
        limits = [(resource, setting, unit, config[setting])
                  for resource, (setting, _attribute, _divisor, unit, _field) in RESOURCES.items()
                  if config[setting] > 0]
        if not policy.enabled or not limits:
            return []
        per_user = _user_processes(policy, snapshot)
        findings = []
        for resource, setting, unit, limit in limits:
            _setting, attribute, divisor, _unit, _field = RESOURCES[resource]
            # the amount is int(value / divisor): at most ``limit`` while value is below this
            below = (limit + 1) * divisor
            for user, procs in per_user.items():
                for proc in procs:
                    if getattr(proc, attribute) < below:
                        continue
                    amount = resource_amount(proc, resource)
                    if amount <= limit or policy.memory.resource_reported(process_key(proc),
                                                                          resource):
                        continue
                    findings.append(Finding(self.name, (resource,), proc, user,
                                            level=f"{amount} {unit} > {setting} {limit} {unit}"))
        return findings

    def respond(self, finding: Finding, config) -> Response:
        proc = process_of(finding)
        kill, uids = _user_kill(config, (proc,))
        return Response(
            alert=self.template if not kill or config["PT_USERKILL_ALERT"] else None,
            kill=kill, kill_uids=uids,
            remember=(Remember(REMEMBER_RESOURCE, (*process_key(proc), finding.reasons[0])),),
            action=action_for(config, "PT_USER_ACTION", (str(proc.pid),)))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        proc, resource = process_of(finding), finding.reasons[0]
        _setting, _attribute, _divisor, unit, field = RESOURCES[resource]
        return [f"*User Processing* PID:{proc.pid} Kill:{int(killed)} "
                f"User:{escape_text(finding.user)} "
                f"{field}:{resource_amount(proc, resource)}({unit}) EXE:{shown_exe(proc)} "
                f"CMD:{bounded_text(proc.cmdline)}"]

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        proc = process_of(finding)
        return {"hostname": hostname, "user": escape_text(finding.user), "pid": str(proc.pid),
                "exe": shown_exe(proc), "cmd": bounded_text(proc.cmdline),
                "resource": finding.reasons[0], "level": finding.level, "kill": yes_no(killed)}


class ForkBomb(Check):
    """PT_FORKBOMB: a session holding at least this many processes. Root's processes count
    toward it (a fork bomb run as root is still one); sessions 0 and 1 never do.

    A session is often shared: php-fpm's or a pre-fork web server's root master and every
    customer's pool workers in one. So the response does not kill the user holding most of it
    but the forkers: the users whose processes forked the bomb (see ``forkers``). It stops, then
    kills, the counted processes of the forkers in the session, and what they fork meanwhile:
    never root, never an ignored process, never a process of another user."""

    name = CHECK_FORKBOMB
    template = "forkbombalert.txt"

    def evaluate(self, policy: Policy, snapshot) -> list:
        threshold = policy.config["PT_FORKBOMB"]
        if not policy.enabled or threshold <= 0:
            return []
        rules = policy.rules
        root_counts = not rules.ignores("user", policy.user_name(0))
        sessions: dict = {}
        for proc in snapshot.processes:
            if proc.session in NO_SESSIONS:
                continue
            if not (root_counts if proc.uid == 0 else policy.tracked_user(proc.uid) is not None):
                continue
            if policy.ignores_process(proc):
                continue
            sessions.setdefault(proc.session, []).append(proc)
        findings = []
        # every process, ignored ones too: parents and session leaders are facts
        by_pid = {proc.pid: proc for proc in snapshot.processes}
        young_age = config_mod.effective_interval(policy.config) * YOUNG_INTERVALS
        for session, procs in sessions.items():
            if len(procs) >= threshold:
                leader = next((p for p in procs if p.pid == session), procs[0])
                findings.append(Finding(self.name, ("fork bomb",), leader,
                                        policy.user_name(leader.uid), tuple(procs),
                                        f"session {session} holds {len(procs)} processes >= "
                                        f"PT_FORKBOMB {threshold}",
                                        details={"forkers": forkers(procs, by_pid, young_age,
                                                                    threshold)}))
        return findings + self._spread_over_sessions(policy, sessions, by_pid, young_age,
                                                     threshold)

    def _spread_over_sessions(self, policy: Policy, sessions: dict, by_pid: dict,
                              young_age: float, threshold: int) -> list:
        """A bomb whose processes each call setsid() holds no session big enough: each is a
        session of its own. So a user that started at least PT_FORKBOMB sessions of its own
        (led by one of its young processes) that no finding counted has forked a bomb, and is
        its only forker; the bomb is its young processes in those sessions. A user starts
        that many sessions within two intervals only by forking them (cron jobs and ssh
        logins come one at a time); root masters' sessions (php-fpm's, a web server's) are
        led by root."""
        spread: dict = {}
        for session, procs in sessions.items():
            leader = by_pid.get(session)
            if (len(procs) >= threshold or leader is None or leader.uid == 0
                    or leader.age >= young_age):
                continue                    # reported as a session already, or no bomb's
            group = [proc for proc in procs if proc.uid == leader.uid and proc.age < young_age]
            if group:                       # else: an untracked user's, or ignored
                spread.setdefault(leader.uid, []).append((leader, group))
        findings = []
        for uid, groups in sorted(spread.items()):
            if len(groups) < threshold:
                continue
            procs = [proc for _leader, group in groups for proc in group]
            # and the user's processes that forked them, which fork on (in any session)
            members = {proc.pid for proc in procs}
            for leader, _group in groups:
                parent = by_pid.get(leader.ppid)
                if (parent is not None and parent.uid == uid and parent.pid not in members
                        and not policy.ignores_process(parent)):
                    members.add(parent.pid)
                    procs.append(parent)
            findings.append(Finding(self.name, ("fork bomb",), procs[0], policy.user_name(uid),
                                    tuple(procs),
                                    f"one user started {len(groups)} sessions of its own >= "
                                    f"PT_FORKBOMB {threshold}",
                                    details={"forkers": (uid,)}))
        return findings

    def respond(self, finding: Finding, config) -> Response:
        uids = finding.details.get("forkers", ())
        kill = tuple(kill_key(p) for p in finding.processes if p.uid in uids and p.uid != 0)
        if not kill:        # no forker: root's alone, or nothing a user forked is a bomb
            return Response(alert=self.template)
        return Response(alert=self.template, kill=kill, kill_uids=uids, stop_first=True,
                        follow_forks=True)

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        procs = finding.processes
        lines = [f"*PT_FORKBOMB* PID:{p.pid} SID:{p.session} User:{escape_text(user_name(p.uid))} "
                 f"EXE:{shown_exe(p)} CMD:{bounded_text(p.cmdline)}"
                 for p in procs[:MAX_LOGGED_FORKBOMB_PROCESSES]]
        if len(procs) > MAX_LOGGED_FORKBOMB_PROCESSES:
            lines.append(f"*PT_FORKBOMB* ... and {len(procs) - MAX_LOGGED_FORKBOMB_PROCESSES} "
                         "more processes of the session")
        lines.append(f"*PT_FORKBOMB* {finding.level}: Killed:{yes_no(killed)}")
        return lines

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        return {"hostname": hostname, "level": finding.level,
                "text": "\n".join(bounded_lines(finding.processes,
                                                 lambda p: process_line(p, user_name(p.uid))))}


class SshdHung(Check):
    """PT_SSHDHUNG: sshd children still unauthenticated after 60 seconds are killed and logged;
    lfd mails nothing about them. Never a root one: killing its unprivileged child ends it."""

    name = CHECK_SSHD_HUNG

    def evaluate(self, policy: Policy, snapshot) -> list:
        if not policy.enabled or not policy.config["PT_SSHDHUNG"]:
            return []
        findings = []
        for proc in snapshot.processes:
            if proc.cmdline in SSHD_UNAUTHENTICATED and proc.age > SSHD_HUNG_AFTER:
                user = policy.user_name(proc.uid)
                if not policy.rules.ignores("user", user):
                    findings.append(Finding(self.name, ("unauthenticated sshd",), proc, user,
                                            level=f"{int(proc.age)} secs > "
                                                  f"{SSHD_HUNG_AFTER} secs"))
        return findings

    def respond(self, finding: Finding, config) -> Response:
        proc = process_of(finding)
        if proc.uid == 0:
            return Response()
        return Response(kill=(kill_key(proc),), kill_uids=(proc.uid,))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        proc = process_of(finding)
        return [f"*PT_SSHDHUNG* PID:{proc.pid} PPID:{proc.ppid} User:{escape_text(finding.user)} "
                f"Uptime:{int(proc.age)} secs CMD:{bounded_text(proc.cmdline)} "
                f"Killed:{yes_no(killed)}"]

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        raise ValueError("PT_SSHDHUNG mails nothing")


def load_minutes(config) -> int:
    """PT_LOAD_AVG: the 1, 5 or 15 minute average; anything else means 5, as in lfd."""
    return config["PT_LOAD_AVG"] if config["PT_LOAD_AVG"] in (1, 5, 15) else 5


class Load(Check):
    """PT_LOAD: the host's load average, on its own timer (not per snapshot)."""

    name = CHECK_LOAD
    template = "loadalert.txt"
    attachment = "host_load"

    def evaluate(self, policy: Policy, snapshot) -> list:
        return []           # not a per-snapshot check: see evaluate_load

    def evaluate_load(self, config, loadavg: tuple, processes: str, now: float,
                      quiet_until: float = 0.0) -> Optional[Finding]:
        """A finding when the chosen load average (PT_LOAD_AVG) is at least PT_LOAD_LEVEL,
        outside the quiet period; else None. ``processes`` is /proc/loadavg's
        "running/total"."""
        if config["PT_LOAD"] <= 0 or now < quiet_until:
            return None
        minutes = load_minutes(config)
        value = loadavg[(1, 5, 15).index(minutes)]
        if value < config["PT_LOAD_LEVEL"]:
            return None
        return Finding(self.name, (f"{minutes} minute load average",), None, "",
                       level=f"{value:.2f} >= PT_LOAD_LEVEL {config['PT_LOAD_LEVEL']:g}",
                       details={"loadavg": loadavg, "processes": processes})

    def respond(self, finding: Finding, config) -> Response:
        return Response(alert=self.template,
                        remember=(Remember(REMEMBER_LOAD_QUIET, (),
                                           float(config["PT_LOAD_SKIP"])),),
                        action=action_for(config, "PT_LOAD_ACTION", ()))

    def log_lines(self, finding: Finding, killed: bool, user_name) -> list:
        return [f"*LOAD* {finding.reasons[0]}: {finding.level}"]

    def alert_values(self, finding: Finding, hostname: str, killed: bool, attached,
                     user_name) -> dict:
        return attached


SUSPICIOUS = Suspicious()
USER_PROCESSES = UserProcesses()
RESOURCE = Resource()
FORKBOMB = ForkBomb()
SSHD_HUNG = SshdHung()
LOAD = Load()

#: Checks run on every snapshot, in lfd's order.
SNAPSHOT_CHECKS = (SSHD_HUNG, FORKBOMB, SUSPICIOUS, USER_PROCESSES, RESOURCE)
#: Every check by name.
UNHELD_LISTENER = UnheldListener()
BY_NAME = {check.name: check for check in (*SNAPSHOT_CHECKS, LOAD, UNHELD_LISTENER)}
