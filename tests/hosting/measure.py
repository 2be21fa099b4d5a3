"""Scan the bed with ptfast against each ignore file, say what every finding is, and print the
issue's table; and who owns which socket (the facts a "service socket" rule rests on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .attacks import Planter
from .bed import Bed
from .procfacts import ProcessFact, read_processes

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.realworld import REALWORLD  # noqa: E402

#: the issue's settings; the other checks off, so only suspicious processes are counted
SETTINGS = ("PT_LIMIT=1", "GENERIC=1", "PT_SKIP_HTTP=1", "PT_DELETED=1", "PT_USERPROC=0",
            "PT_USERMEM=0", "PT_USERRSS=0", "PT_USERTIME=0", "PT_LOAD=0", "PT_FORKBOMB=0")
BUILTIN = "built-in list"
IGNORE_FILES = (BUILTIN, "csf.generic.pignore", "csf.pignore")
LOAD_RAMP = 3.0          # seconds

#: roles that are a root service's own worker, login process or session. Not exim4's SMTP
#: session: Debian's exim daemon gives up root itself once it listens, so no root master is
#: left; the session is a fork of the daemon, reported with it and ignored by the same exe: rule
SERVICE_WORKER_ROLES = ("php-fpm worker", "nginx worker", "apache2 worker", "dovecot imap-login",
                        "dovecot pop3-login", "dovecot imap session", "dovecot pop3 session",
                        "sshd session", "pure-ftpd session")


def ignore_file_path(name: str) -> str | None:
    return None if name == BUILTIN else os.path.join(REALWORLD, name)


def scan_command(ignore_file: str) -> list:
    command = [sys.executable, "-m", "ptfast", "scan", "--json", "--config", os.devnull,
               "--override", os.devnull]
    for setting in SETTINGS:
        command += ["--set", setting]
    path = ignore_file_path(ignore_file)
    if path is not None:
        command += ["--pignore", path]
    return command


def run_scan(ignore_file: str) -> tuple:
    """(suspicious-process records, seconds) of one ``ptfast scan --json``."""
    began = time.monotonic()
    result = subprocess.run(scan_command(ignore_file), capture_output=True, timeout=300)
    elapsed = time.monotonic() - began
    if result.returncode not in (0, 1):
        raise RuntimeError(f"ptfast scan ({ignore_file}) exited {result.returncode}: "
                           f"{result.stderr.decode(errors='replace')[-800:]}")
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return [r for r in records if r.get("check") == "suspicious"], elapsed


def role_of(fact: ProcessFact, bed: Bed, planter: Planter) -> str:
    """What a process of the bed is, in an admin's words."""
    for planted in planter.attacks:
        if fact.pid in planted.pids:
            return f"attack {planted.name}"
    for planted in planter.customer_apps:
        if fact.pid in planted.pids:
            return f"customer app {planted.name}"
    name, command = fact.exe_name, fact.cmdline
    if name.startswith("php-fpm"):
        return "php-fpm master" if "master process" in command else "php-fpm worker"
    if name == "nginx":
        return "nginx master" if "master process" in command else "nginx worker"
    if name == "apache2":
        return "apache2 parent" if fact.uid == 0 else "apache2 worker"
    if name == "exim4":
        started = bed.started.get("exim4")
        return "exim4 daemon" if started and fact.pid == started.pid else "exim4 SMTP session"
    if fact.exe.startswith("/usr/lib/dovecot/"):
        if name in ("imap", "pop3"):
            return f"dovecot {name} session"
        return f"dovecot {name}"
    if name == "dovecot":
        return "dovecot master"
    if name == "sshd":
        if command.startswith("sshd: ") and not command.endswith("[listener] 0 of 10-100 startups"):
            return "sshd session" + (" [priv]" if command.endswith("[priv]") else "")
        return "sshd master"
    if name == "pure-ftpd":
        return "pure-ftpd master" if "SERVER" in command else "pure-ftpd session"
    for started in bed.started.values():
        if fact.pid == started.pid:
            return started.role
    return f"{name} ({command[:40]})"


@dataclass
class FalsePositive:
    pid: int
    user: str
    exe: str
    cmdline: str
    role: str

    def worker_of_root_service(self) -> bool:
        return self.role.startswith(SERVICE_WORKER_ROLES)


@dataclass
class Outcome:
    """One scan of the bed with one ignore file."""
    ignore_file: str
    seconds: float
    attacks_reported: dict = field(default_factory=dict)     # name -> reported pids
    attacks_missed: list = field(default_factory=list)
    apps_reported: dict = field(default_factory=dict)
    apps_missed: list = field(default_factory=list)
    false_positives: list = field(default_factory=list)
    outside_bed: list = field(default_factory=list)          # other jobs on this machine
    remote_hosts: list = field(default_factory=list)         # the bed's "internet" (roles)
    bed_records: list = field(default_factory=list)          # the scan's records of the bed

    def attack_count(self) -> int:
        return len(self.attacks_reported) + len(self.attacks_missed)

    def as_dict(self) -> dict:
        return {"ignore_file": self.ignore_file, "seconds": round(self.seconds, 3),
                "attacks_reported": self.attacks_reported, "attacks_missed": self.attacks_missed,
                "apps_reported": self.apps_reported, "apps_missed": self.apps_missed,
                "false_positives": [fp.__dict__ for fp in self.false_positives],
                "outside_bed": self.outside_bed}


def classify(ignore_file: str, records: list, seconds: float, bed: Bed, planter: Planter,
             facts: dict) -> Outcome:
    outcome = Outcome(ignore_file, seconds)
    reported = {record["pid"]: record for record in records}
    for group, hits, misses in ((planter.attacks, outcome.attacks_reported,
                                 outcome.attacks_missed),
                                (planter.customer_apps, outcome.apps_reported,
                                 outcome.apps_missed)):
        for planted in group:
            pids = [pid for pid in planted.pids if pid in reported]
            if pids:
                hits[planted.name] = pids
            else:
                misses.append(planted.name)
    planted_pids = {pid for planted in planter.attacks + planter.customer_apps
                    for pid in planted.pids}
    for pid, record in reported.items():
        fact = facts.get(pid)
        if fact is not None and bed.on_the_internet(fact):
            outcome.remote_hosts.append(role_of(fact, bed, planter))
            continue
        if fact is not None:
            outcome.bed_records.append(record)
        if pid in planted_pids:
            continue
        if fact is None:
            outcome.outside_bed.append({key: record.get(key) for key in
                                        ("pid", "user", "exe", "cmdline")})
            continue
        outcome.false_positives.append(FalsePositive(pid, record.get("user", ""),
                                                     record.get("exe", ""),
                                                     record.get("cmdline", ""),
                                                     role_of(fact, bed, planter)))
    return outcome


def measure(bed: Bed, planter: Planter, ignore_files=IGNORE_FILES) -> tuple:
    """One scan per ignore file, under web load (started here unless it runs): (the outcomes in
    that order, the facts of the bed's processes read after each scan)."""
    outcomes, samples = [], []
    load_was_running = bool(bed._load_threads)
    bed.start_load()
    if not load_was_running:
        time.sleep(LOAD_RAMP)        # requests of every length in flight, not all new at once
    try:
        for ignore_file in ignore_files:
            records, seconds = run_scan(ignore_file)
            facts = read_processes(bed.bed_pids())
            samples.append(facts)
            outcomes.append(classify(ignore_file, records, seconds, bed, planter, facts))
    finally:
        if not load_was_running:
            bed.stop_load()
    return outcomes, samples


@dataclass
class HeldConnection:
    """A TCP connection a pool worker was seen holding, between two samples of /proc."""
    pid: int
    remote: str
    first: float
    last: float

    @property
    def seen_for(self) -> float:
        return self.last - self.first


def observe_worker_connections(bed: Bed, seconds: float, every: float = 0.2) -> list:
    """The established TCP connections from php-fpm workers to anything but their own pool
    port, sampled every ``every`` s for ``seconds`` s (under load): what the web load holds."""
    pool_ports = {account.pool_port for account in bed.accounts}
    account_uids = {account.uid for account in bed.accounts}
    held: dict = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = time.monotonic()
        for fact in read_processes(bed.bed_pids()).values():
            # by its executable: a customer's process can call itself "php-fpm: pool"
            if fact.uid not in account_uids or not fact.exe_name.startswith("php-fpm"):
                continue
            for sock in fact.sockets:
                if sock.state != "ESTABLISHED" or sock.local_port in pool_ports:
                    continue
                key = (fact.pid, sock.inode)
                if key not in held:
                    held[key] = HeldConnection(fact.pid, sock.endpoint("remote"), now, now)
                held[key].last = now
        time.sleep(every)
    return list(held.values())


def false_positive_summary(false_positives: list) -> str:
    if not false_positives:
        return "0"
    counts = Counter(fp.role for fp in false_positives)
    parts = [f"{count} {role}" if count > 1 else role for role, count in counts.most_common()]
    return f"{len(false_positives)}: " + ", ".join(parts)


def table(outcomes: list) -> str:
    rows = ["| scanner, ignore file | attacks reported | customer apps reported "
            "| false positives |", "|---|---|---|---|"]
    for outcome in outcomes:
        attacks = f"{len(outcome.attacks_reported)}/{outcome.attack_count()}"
        if outcome.attacks_missed:
            attacks += f" (misses {', '.join(outcome.attacks_missed)})"
        apps_planted = len(outcome.apps_reported) + len(outcome.apps_missed)
        apps = f"{len(outcome.apps_reported)}/{apps_planted}"
        label = (outcome.ignore_file if outcome.ignore_file == BUILTIN
                 else f"csf's `{outcome.ignore_file}`")
        rows.append(f"| ptfast, {label} | {attacks} | {apps} | "
                    f"{false_positive_summary(outcome.false_positives)} |")
    return "\n".join(rows) + "\n"


def details(outcomes: list) -> str:
    lines = []
    for outcome in outcomes:
        lines.append(f"\n{outcome.ignore_file}: scan took {outcome.seconds:.2f} s")
        by_role = defaultdict(list)
        for fp in outcome.false_positives:
            by_role[fp.role].append(fp)
        for role, fps in sorted(by_role.items()):
            example = fps[0]
            lines.append(f"  false positive x{len(fps)}: {role}: user {example.user}, "
                         f"exe {example.exe}, cmd {example.cmdline[:70]}")
        if outcome.outside_bed:
            examples = ", ".join(f"pid {record['pid']} user {record['user']} exe {record['exe']}"
                                 for record in outcome.outside_bed[:3])
            lines.append(f"  ignored: {len(outcome.outside_bed)} finding(s) of processes outside "
                         f"the bed (other jobs on this machine), e.g. {examples}")
    return "\n".join(lines) + "\n"


def socket_ownership(bed: Bed, planter: Planter, samples: list) -> str:
    """Who holds which socket, and who created it (the uid column of /proc/net), per role,
    over ``samples`` (facts read while the bed served requests). Accounts are shown as
    "account", pool ports as 90NN, ports from 32768 as "ephemeral", so the 20 pools read as one."""
    names = _user_names()
    account_uids = {account.uid for account in bed.accounts}
    pool_ports = {account.pool_port for account in bed.accounts}

    def user(uid: int) -> str:
        return "account" if uid in account_uids else names(uid)

    def port(number: int) -> str:
        if number in pool_ports:
            return "90NN"
        return "ephemeral" if number >= 32768 else str(number)

    holders = defaultdict(set)                       # (role, user) -> pids
    sockets = defaultdict(set)                       # (role, user) -> {(socket text, pid)}
    for fact in (fact for facts in samples for fact in facts.values()):
        key = (role_of(fact, bed, planter), user(fact.uid))
        if fact.sockets:
            holders[key].add(fact.pid)
        for sock in fact.sockets:
            remote = ("" if sock.state in ("LISTEN", "UNCONN") else
                      f" -> {sock.remote_ip}:{port(sock.remote_port)}")
            creator = "its own uid" if sock.uid == fact.uid else user(sock.uid)
            sockets[key].add((f"{sock.proto} {sock.local_ip}:{port(sock.local_port)}{remote} "
                              f"{sock.state}, created by {creator}", fact.pid))
    lines = []
    for (role, runs_as), pids in sorted(holders.items()):
        lines.append(f"{role} (runs as {runs_as}, {len(pids)} process{'es' * (len(pids) > 1)}):")
        by_text = defaultdict(set)
        for text, pid in sockets[(role, runs_as)]:
            by_text[text].add(pid)
        for text, holding in sorted(by_text.items()):
            lines.append(f"    {text}  [held by {len(holding)}]")
    return "\n".join(lines) + "\n"


def _user_names():
    import pwd
    cache: dict = {}

    def name(uid: int) -> str:
        if uid not in cache:
            try:
                cache[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                cache[uid] = str(uid)
        return cache[uid]
    return name
