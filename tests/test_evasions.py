"""Issue 12: every way found to keep a network backdoor out of ptfast's sight, run for real.

Each evasion is a small C program (tests/evasions) run as a process of its own test uid. With
PT_LIMIT=1 and GENERIC=1, ``ptfast scan --json`` on BOTH cores must report that process (the
right pid) with a socket reason; hopping, which only a service that remembers can see, is
checked with two passes of ``ptfast run --once``. These tests describe what ptfast must see,
not what it sees today: until issue 12 is fixed they fail.
"""

import errno
import json
import os
import select
import signal
import socket
import subprocess
import time

import pytest

from helpers.native import (needs_gcc, ping_group_range_allowing, program_fixtures, start,
                            start_deleted, start_from_deep_path, start_with_hidden_link)
from helpers.procs import _wait_ready, kill_uid, start_python, wait_until
from helpers.scan import CORES, core_env, run_scan, suspicious_by_pid
from helpers.service import SendmailRecorder, ServiceDir, only_users_rule
from helpers.uids import uid_for
from helpers.inproc import run_ptfast

pytestmark = [pytest.mark.needs_root, needs_gcc]

REASON_DELETED = "deleted executable"
SOCKET_REASONS = {"listening socket", "socket"}
PT_LIMIT = 1

UIDS = {
    "zombie_leader": uid_for(500),
    "private_fd_table": uid_for(501),
    "long_exe_path": uid_for(502),
    "churn": uid_for(503),
    "io_uring_fixed_file": uid_for(504),
    "deleted_exe": uid_for(505),
    "memfd_exe": uid_for(506),
    "deleted_family": uid_for(507),
    "udplite": uid_for(508),
    "ping": uid_for(509),
    "ping6": uid_for(510),
    "packet": uid_for(511),
    "netns_tcp": uid_for(512),
    "hidden_hard_link": uid_for(513),
    "control": uid_for(516),
    "userns_tcp": uid_for(517),
}
HOPPING_UID = uid_for(514)
FAMILY_SERVICE_UID = uid_for(515)
#: issue 20.5: the account that creates a hopping listener, and two that hand it on
HOP_CREATOR_UID, HOP_HOLDER_UID, HOP_OTHER_HOLDER_UID = uid_for(518), uid_for(519), uid_for(520)
#: issue 20.5: an account filling the listener memory, and one whose listener hops meanwhile
FLOODING_UID, FLOODED_OUT_UID = uid_for(521), uid_for(522)

#: Evasions whose process must be reported with a socket reason under the default PT_DELETED=0.
SOCKET_EVASIONS = ("zombie_leader", "private_fd_table", "long_exe_path", "churn",
                   "io_uring_fixed_file", "deleted_exe", "memfd_exe", "udplite", "ping",
                   "ping6", "packet", "netns_tcp", "userns_tcp")
PROGRAMS = ("zombie_leader", "private_fd_table", "listener", "churn", "io_uring_fixed",
            "family", "other_kinds", "hop", "hop_across")


class Unavailable:
    """An evasion this machine cannot run (the kernel lacks the feature); its tests skip."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


workdir, programs = program_fixtures(PROGRAMS)


def start_deleted_family(program: str, directory: str, uid: int):
    """A parent run from a deleted executable and its child, which opens a listener now."""
    family = start_deleted(program, directory, "family", uid)
    os.kill(family.info["child"], signal.SIGUSR1)
    family.info.update(_wait_ready(family.popen))
    return family


def udplite_missing():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE).close()
    except OSError as exc:
        return f"no UDP-Lite in this kernel ({exc.strerror})"
    return None


def io_uring_missing():
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as handle:
            if handle.read().strip() != "0":
                return "io_uring is disabled for unprivileged users (kernel.io_uring_disabled)"
    except FileNotFoundError:      # before 6.6 there is no such switch
        pass
    return None


def start_userns_listener(program: str, uid: int):
    try:
        return start([program, uid, "userns-tcp"])
    except RuntimeError as exc:
        if "unshare(CLONE_NEWUSER|CLONE_NEWNET)" in str(exc):
            return Unavailable(f"unprivileged user namespaces are not allowed here: {exc}")
        raise


def start_io_uring(program: str, uid: int):
    try:
        return start([program, uid])
    except RuntimeError as exc:
        if os.strerror(errno.ENOSYS) in str(exc):
            return Unavailable("no io_uring in this kernel")
        raise


@pytest.fixture(scope="module")
def live_services(workdir):
    """core -> ServiceDir of a `ptfast run` in live mode started before the evasions, with
    no pass due for an hour: what it reports of them, its live layer found (issue 21)."""
    services, daemons = {}, []
    try:
        for core in CORES:
            root = os.path.join(workdir, f"live-{core}")
            os.makedirs(root)
            service = ServiceDir(root, *UIDS.values())
            daemons.append(subprocess.Popen(
                service.command("SENDMAIL=/bin/true", "GENERIC=1", "PT_INTERVAL=3600",
                                "PT_USERPROC=0", "PT_PASS_SUMMARY=1", once=False),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=core_env(core)))
            services[core] = service
        for service in services.values():
            assert wait_until(lambda: "pass done" in service.log(), 60), service.log()
            assert "mode: live" in service.log(), service.log()
        yield services
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


@pytest.fixture(scope="module")
def attacks(programs, workdir, live_services):
    """Every evasion started once (after the live services); name -> Child or Unavailable."""
    started = {}
    try:
        started["zombie_leader"] = start([programs["zombie_leader"], UIDS["zombie_leader"]])
        started["private_fd_table"] = start([programs["private_fd_table"],
                                             UIDS["private_fd_table"]])
        started["long_exe_path"] = start_from_deep_path(programs["listener"], workdir,
                                                        UIDS["long_exe_path"])
        started["churn"] = start([programs["churn"], UIDS["churn"]])
        missing = io_uring_missing()
        started["io_uring_fixed_file"] = (
            Unavailable(missing) if missing
            else start_io_uring(programs["io_uring_fixed"], UIDS["io_uring_fixed_file"]))
        started["deleted_exe"] = start_deleted(programs["listener"],
                                               os.path.join(workdir, "deleted"), "listener",
                                               UIDS["deleted_exe"])
        started["memfd_exe"] = start([programs["listener"], UIDS["memfd_exe"], "--memfd"])
        started["deleted_family"] = start_deleted_family(
            programs["family"], os.path.join(workdir, "family"), UIDS["deleted_family"])
        missing = udplite_missing()
        started["udplite"] = (Unavailable(missing) if missing
                              else start([programs["other_kinds"], UIDS["udplite"], "udplite"]))
        with ping_group_range_allowing(UIDS["ping"], UIDS["ping6"]):
            # the range is checked when the socket is made; the socket outlives the setting
            for name in ("ping", "ping6"):
                started[name] = start([programs["other_kinds"], UIDS[name], name])
        started["packet"] = start([programs["other_kinds"], UIDS["packet"], "packet"])
        started["netns_tcp"] = start([programs["other_kinds"], UIDS["netns_tcp"], "netns-tcp"])
        started["userns_tcp"] = start_userns_listener(programs["other_kinds"], UIDS["userns_tcp"])
        started["hidden_hard_link"] = start_with_hidden_link(
            programs["listener"], os.path.join(workdir, "hidden"), UIDS["hidden_hard_link"])
        started["control"] = start([programs["listener"], UIDS["control"]])
        yield started
    finally:
        for child in started.values():
            if not isinstance(child, Unavailable):
                child.stop()
        for uid in UIDS.values():
            kill_uid(uid)


@pytest.fixture(scope="module")
def scans(workdir, attacks):
    """``scan(core, *settings)``: suspicious findings by pid of one `ptfast scan --json` with
    PT_LIMIT=1 and GENERIC=1, tracking only the evasions' uids; each scan is made once."""
    pignore = os.path.join(workdir, "pignore")
    with open(pignore, "w") as handle:
        handle.write(only_users_rule(*UIDS.values()))
    done = {}

    def scan(core, *settings):
        key = (core, settings)
        if key not in done:
            extra = [f"--set={setting}" for setting in ("GENERIC=1", *settings)]
            # aged: the processes count as older than PT_LIMIT (no sleeping past it)
            result = run_scan("--json", "--pignore", pignore, *extra, core=core, aged=True)
            assert result.returncode in (0, 1), result.stderr.decode(errors="replace")
            done[key] = suspicious_by_pid(result)
        return done[key]
    return scan


def running(attacks, name):
    child = attacks[name]
    if isinstance(child, Unavailable):
        pytest.skip(child.reason)
    return child


def assert_reported_with_socket(findings: dict, pid: int, uid: int) -> dict:
    assert pid in findings, f"pid {pid} not reported; reported: {sorted(findings)}"
    finding = findings[pid]
    assert finding["uid"] == uid
    assert SOCKET_REASONS & set(finding["reasons"]), finding["reasons"]
    return finding


@pytest.mark.parametrize("core", CORES)
def test_control_plain_listener_is_reported(attacks, scans, core):
    """The scans themselves work: a listener that hides nothing is reported (today too)."""
    assert_reported_with_socket(scans(core), attacks["control"].info["pid"], UIDS["control"])


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("name", SOCKET_EVASIONS)
def test_evasion_is_reported_with_its_socket(attacks, scans, name, core):
    child = running(attacks, name)
    finding = assert_reported_with_socket(scans(core), child.info["pid"], UIDS[name])
    # PT_DELETED (0 here) adds or removes the "deleted executable" reason, nothing else
    assert REASON_DELETED not in finding["reasons"]


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("name", ("control", *SOCKET_EVASIONS))
def test_evasion_is_reported_with_its_socket_by_run_in_live_mode(attacks, live_services, name,
                                                                  core):
    """The same evasions against the service: started after its only pass, each must be
    reported by the live layer (its check at PT_LIMIT, or a socket dump) with its socket."""
    child = running(attacks, name)
    service = live_services[core]
    pid = child.info["pid"]
    assert wait_until(lambda: pid in suspicious_events(service), 30), \
        f"pid {pid} not reported; reported: {sorted(suspicious_events(service))}"
    assert_reported_with_socket(suspicious_events(service), pid, UIDS[name])
    assert service.log().count("pass done") == 1, service.log()     # no pass found it


@pytest.mark.parametrize("core", CORES)
def test_child_of_a_reported_deleted_parent_is_reported_for_its_socket(attacks, scans, core):
    family = running(attacks, "deleted_family")
    findings = scans(core, "PT_DELETED=1")
    # the parent is reported for its deleted executable: the precondition of the family rule
    assert REASON_DELETED in findings[family.info["pid"]]["reasons"]
    assert_reported_with_socket(findings, family.info["child"], UIDS["deleted_family"])


@pytest.mark.parametrize("core", CORES)
def test_deleted_executable_kept_by_a_hidden_hard_link(attacks, scans, core):
    child = running(attacks, "hidden_hard_link")
    pid = child.info["pid"]
    assert os.stat(f"/proc/{pid}/exe").st_nlink == 1      # the evasion: a link remains
    findings = scans(core, "PT_DELETED=1")
    assert pid in findings, f"pid {pid} not reported; reported: {sorted(findings)}"
    assert REASON_DELETED in findings[pid]["reasons"]
    assert findings[pid]["exe_deleted"] is True


def run_service_once(service: ServiceDir, core: str, *settings: str, aged: bool = False):
    result = run_ptfast(service.command(*settings)[3:], env=core_env(core, aged))
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


def suspicious_events(service: ServiceDir) -> dict:
    return {event["pid"]: event for event in service.events() if event["check"] == "suspicious"}


def next_holders(chain, timeout: float = 10.0) -> list:
    """The holders the chain printed since the last call, waiting until there is at least one:
    the listener has been handed on (it outlived the holder that had it before)."""
    deadline = time.monotonic() + timeout
    while True:
        printed = printed_so_far(chain)
        if printed or time.monotonic() > deadline:
            return [line["holder"] for line in printed]
        select.select([chain.popen.stdout], [], [], max(0.0, deadline - time.monotonic()))


def printed_so_far(child) -> list:
    """Every JSON line the child and its descendants have printed since the last call."""
    stream = child.popen.stdout
    os.set_blocking(stream.fileno(), False)
    data = stream.read() or b""      # None: nothing new
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("core", CORES)
def test_listener_handed_between_young_processes_is_reported(programs, tmp_path, core):
    """Hopping: each holder lives 0.4 s (younger than PT_LIMIT), then forks and exits; the
    listener lives on. The second pass, more than PT_LIMIT after the first, must report the
    holder of the day."""
    service = ServiceDir(tmp_path, HOPPING_UID)
    recorder = SendmailRecorder(str(tmp_path))
    settings = ("GENERIC=1", f"SENDMAIL={recorder.path}")
    chain = None
    try:
        chain = start([programs["hop"], HOPPING_UID, 400])
        run_service_once(service, core, *settings)
        service.age_listener_memory(PT_LIMIT + 0.5)     # the second pass, later than PT_LIMIT
        holders_before = next_holders(chain)            # handed on since the first pass
        run_service_once(service, core, *settings)
        holders_during = [line["holder"] for line in printed_so_far(chain)]
        candidates = set(holders_before[-1:] + holders_during)
        reported = suspicious_events(service)
        assert candidates & set(reported), (
            f"none of the holders {sorted(candidates)} reported; events: {service.events()}")
        for pid in candidates & set(reported):
            assert SOCKET_REASONS & set(reported[pid]["reasons"])
    finally:
        if chain is not None:
            chain.stop()
        kill_uid(HOPPING_UID)


@pytest.mark.parametrize("core", CORES)
def test_child_that_opens_a_listener_after_its_family_was_reported(programs, tmp_path, core):
    """The service's side of the family rule: pass 1 reports the deleted parent (and folds its
    quiet child into that report); the child then opens a listener; pass 2 must report it."""
    service = ServiceDir(tmp_path, FAMILY_SERVICE_UID)
    recorder = SendmailRecorder(str(tmp_path))
    settings = ("GENERIC=1", "PT_DELETED=1", f"SENDMAIL={recorder.path}")
    family = None
    try:
        family = start_deleted(programs["family"], str(tmp_path / "exe"), "family",
                               FAMILY_SERVICE_UID)
        run_service_once(service, core, *settings, aged=True)
        assert family.info["pid"] in suspicious_events(service)
        os.kill(family.info["child"], signal.SIGUSR1)
        family.info.update(_wait_ready(family.popen))
        run_service_once(service, core, *settings, aged=True)
        events = suspicious_events(service)
        assert family.info["child"] in events, f"child not reported; events: {service.events()}"
        assert SOCKET_REASONS & set(events[family.info["child"]]["reasons"])
    finally:
        if family is not None:
            family.stop()
        kill_uid(FAMILY_SERVICE_UID)


@pytest.mark.parametrize("holders", [(HOP_HOLDER_UID,), (HOP_HOLDER_UID, HOP_OTHER_HOLDER_UID)],
                         ids=["one-other-account", "two-other-accounts"])
@pytest.mark.parametrize("core", CORES)
def test_listener_hopping_across_accounts_is_reported(programs, tmp_path, core, holders):
    """Issue 20.5: account A creates the listener and passes it on (SCM_RIGHTS); processes of
    other accounts, each younger than PT_LIMIT, hold it in turn. The hopping walk must follow
    whatever account holds the listener, not only the one that created it."""
    uids = (HOP_CREATOR_UID, *holders)
    service = ServiceDir(tmp_path, *uids)
    recorder = SendmailRecorder(str(tmp_path))
    settings = ("GENERIC=1", f"SENDMAIL={recorder.path}")
    chain = None
    try:
        chain = start([programs["hop_across"], HOP_CREATOR_UID, 300, *holders])
        run_service_once(service, core, *settings)
        service.age_listener_memory(PT_LIMIT + 0.5)     # the second pass, later than PT_LIMIT
        holders_before = next_holders(chain)            # handed on since the first pass
        run_service_once(service, core, *settings)
        holders_during = [line["holder"] for line in printed_so_far(chain)]
        candidates = set(holders_before[-1:] + holders_during)
        reported = suspicious_events(service)
        assert candidates & set(reported), (
            f"none of the holders {sorted(candidates)} reported, only {sorted(reported)}")
        for pid in candidates & set(reported):
            assert SOCKET_REASONS & set(reported[pid]["reasons"])
            assert reported[pid]["uid"] in holders
    finally:
        if chain is not None:
            chain.stop()
        for uid in uids:
            kill_uid(uid)


FLOOD = 'info["ports"] = [listen(socket.AF_INET, "127.0.0.1").getsockname()[1] for _ in range(30)]'


def test_an_account_filling_the_listener_memory_hides_no_other_accounts_hopping(
        programs, tmp_path, monkeypatch, core):
    """Issue 20.5: one account opens more listeners than the memory holds (bounds lowered
    here, 30 real listeners); another account's listener then hops between young processes.
    The flooder may use up its own share only: the hopper is still reported, and the log says
    once that the flooder hit its bound."""
    from ptfast.scan import procfs
    from ptfast.decide import state
    monkeypatch.setattr(state, "MAX_LISTENERS", 8)
    monkeypatch.setattr(state, "MAX_LISTENERS_PER_ACCOUNT", 4, raising=False)
    monkeypatch.setattr(procfs, "_core", core)
    service = ServiceDir(tmp_path, FLOODING_UID, FLOODED_OUT_UID)
    recorder = SendmailRecorder(str(tmp_path))
    flood = chain = running = None
    try:
        flood = start_python(FLOOD, uid=FLOODING_UID)
        running = service.in_process("GENERIC=1", f"SENDMAIL={recorder.path}")
        running.run_pass()                  # the memory fills with the flooder's listeners
        running.run_pass()
        chain = start([programs["hop"], FLOODED_OUT_UID, 300])
        running.run_pass()                  # the hopper's listener is first seen
        for entry in running.state.listeners.values():      # [uid, first seen, ...]
            entry[1] -= PT_LIMIT + 0.5      # the next pass, later than PT_LIMIT
        holders_before = next_holders(chain)            # handed on since it was first seen
        running.run_pass()
        holders_during = [line["holder"] for line in printed_so_far(chain)]
        candidates = set(holders_before[-1:] + holders_during)
        reported = suspicious_events(service)
        assert candidates & set(reported), (
            f"none of the hopper's holders {sorted(candidates)} reported, only "
            f"{sorted(reported)}; log: {service.log()}")
        assert flood.pid in reported        # the flooder's own process is reported as ever
        bound_lines = [line for line in service.log().splitlines()
                       if "listeners remembered for the hopping check" in line]
        assert len(bound_lines) == 1 and f"uid {FLOODING_UID}" in bound_lines[0], bound_lines
    finally:
        if running is not None:
            running.stop()
        for child in (chain, flood):
            if child is not None:
                child.stop()
        kill_uid(FLOODING_UID)
        kill_uid(FLOODED_OUT_UID)
