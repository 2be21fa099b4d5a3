"""Nothing ptfast writes as root goes through a path a customer controls (issue 13, item 3).

A customer's directory here is a real directory owned by a test uid; what the customer plants in
it (symlinks, FIFOs, mail files) is really there, owned by that uid. The victim is a root-only
file that must come out of every test unchanged.
"""

import os
import threading

import pytest

from ptfast.decide import state
from helpers.service import (CHECKED_SENDMAIL, ServiceDir, SmtpServer, free_port,
                             recorded_command)
from helpers.uids import uid_for
from helpers.inproc import run_ptfast

pytestmark = pytest.mark.needs_root

CUSTOMER = uid_for(600)
PRECIOUS = b"root:only:precious\n"
FORGED = "*Suspicious Process* PID:1 forged"


@pytest.fixture
def service(tmp_path):
    root = tmp_path / "service"
    root.mkdir(mode=0o700)
    return ServiceDir(root, CUSTOMER)


@pytest.fixture
def victim(tmp_path):
    """A root-only file a customer would love to overwrite or read."""
    directory = tmp_path / "root-only"
    directory.mkdir(mode=0o700)
    path = directory / "victim"
    path.write_bytes(PRECIOUS)
    path.chmod(0o600)
    return path


@pytest.fixture
def customer_dir(tmp_path):
    """A directory the customer owns (as its home or its web root)."""
    path = tmp_path / "customer"
    path.mkdir(mode=0o755)
    os.chown(path, CUSTOMER, CUSTOMER)
    return path


def plant_symlink(target, link) -> None:
    os.symlink(target, link)
    os.lchown(link, CUSTOMER, CUSTOMER)


def run_once(service, *settings, extra=()):
    return run_ptfast(recorded_command(service, *settings)[3:] + list(extra), text=True)


def check(service, *extra):
    command = ["check", "--config", os.devnull, "--override", service.override,
               "--pignore", service.pignore,
               "--templates", service.templates, "--state-dir", service.state_dir,
               "--log-file", service.log_file, "--events-file", service.events_file,
               "--set", CHECKED_SENDMAIL, *extra]
    return run_ptfast(command, text=True)


def test_state_dir_in_a_customer_directory_is_refused(service, customer_dir):
    service.state_dir = str(customer_dir / "state")
    result = run_once(service)
    assert result.returncode == 2
    assert f"directory {customer_dir} is owned by uid {CUSTOMER}, not by root" in result.stderr
    assert os.listdir(customer_dir) == []           # nothing created there
    checked = check(service)
    assert checked.returncode == 2
    assert f"{service.state_dir}: directory {customer_dir} is owned by uid {CUSTOMER}" in \
        checked.stdout


def test_group_or_world_writable_state_dir_is_refused(service, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)              # root-owned, but anyone may add or replace entries
    service.state_dir = str(shared / "state")
    result = run_once(service)
    assert result.returncode == 2
    assert f"directory {shared} is writable by every user (mode 0777)" in result.stderr
    assert os.listdir(shared) == []


@pytest.mark.parametrize("owner", ["customer", "root"])
def test_lock_never_truncates_through_a_symlink(service, customer_dir, victim, owner):
    """The customer's state dir (refused outright), or root's with a symlink planted in it
    (O_NOFOLLOW refuses it): either way the victim keeps its content."""
    if owner == "customer":
        service.state_dir = str(customer_dir / "state")
        os.mkdir(service.state_dir)
        os.chown(service.state_dir, CUSTOMER, CUSTOMER)
    else:
        os.makedirs(service.state_dir, mode=0o700)
    plant_symlink(victim, os.path.join(service.state_dir, "ptfast.lock"))
    result = run_once(service)
    assert result.returncode == 2
    assert "ptfast.lock" in result.stderr or f"uid {CUSTOMER}" in result.stderr
    assert victim.read_bytes() == PRECIOUS


def test_spool_symlinked_to_a_customer_directory_is_refused(service, customer_dir):
    os.makedirs(service.state_dir, mode=0o700)
    plant_symlink(customer_dir, os.path.join(service.state_dir, "spool"))
    relay_down = f"LF_ALERT_SMTP=127.0.0.1:{free_port()}"
    result = run_once(service, relay_down)
    assert result.returncode == 2
    assert f"directory {customer_dir} is owned by uid {CUSTOMER}" in result.stderr
    assert os.listdir(customer_dir) == []


def spool_of(service) -> str:
    path = os.path.join(service.state_dir, "spool")
    os.makedirs(path, mode=0o700)
    return path


PLANTED = (b"From: root\nTo: admin@example.com\nBcc: thief@evil.example\n"
           b"Subject: PLANTED\n\nPLANTED\n")
OWN_NAME = "00000000000000000001-1-000000.eml"


def test_only_ptfasts_own_spool_files_are_sent(service, victim):
    spool = spool_of(service)
    # not ptfast's name pattern
    with open(os.path.join(spool, "evil.eml"), "wb") as handle:
        handle.write(PLANTED)
    # ptfast's pattern, but the customer's file
    customers = os.path.join(spool, OWN_NAME)
    with open(customers, "wb") as handle:
        handle.write(PLANTED)
    os.chown(customers, CUSTOMER, CUSTOMER)
    # ptfast's pattern, a symlink that would pipe a root-only file into the mail
    victim.write_bytes(PLANTED)
    plant_symlink(victim, os.path.join(spool, "00000000000000000002-1-000000.eml"))
    with SmtpServer() as smtp:
        result = run_once(service, f"LF_ALERT_SMTP={smtp.relay}")
        delivered = list(smtp.inbox.envelopes)
    assert result.returncode == 0, result.stderr
    assert delivered == []
    assert sorted(os.listdir(spool)) == sorted(["evil.eml", OWN_NAME,
                                                "00000000000000000002-1-000000.eml"])
    log = service.log()
    assert f"spooled alert {OWN_NAME} not sent: it is owned by uid {CUSTOMER}" in log


def test_a_spool_file_name_cannot_forge_a_log_line(service):
    spool = spool_of(service)
    # a name that fails to be read (a directory) is logged: its line break must stay escaped
    os.mkdir(os.path.join(spool, f"x\n{FORGED}.eml"))
    os.mkdir(os.path.join(spool, "00000000000000000003-1-000000.eml"))
    with SmtpServer() as smtp:
        result = run_once(service, f"LF_ALERT_SMTP={smtp.relay}")
    assert result.returncode == 0, result.stderr
    for line in service.log().splitlines():
        assert FORGED not in line.split(": ", 1)[0]
        assert not line.startswith(FORGED)
        assert " lfd[" in line


def test_a_fifo_as_the_state_file_does_not_block(service):
    os.makedirs(service.state_dir, mode=0o700)
    os.mkfifo(service.reported_file(), 0o600)
    result = run_once(service)           # before the fix: blocked for good opening the FIFO
    assert result.returncode == 0, result.stderr
    assert f"{service.reported_file()}: corrupt state file" in service.log()
    assert os.path.isfile(service.reported_file())


def test_a_fifo_at_the_temporary_state_file_does_not_block(service):
    """The temporary name used to be predictable (it carried the PID): a FIFO planted there
    made the daemon wait for a reader for ever."""
    directory = service.state_dir
    os.makedirs(directory, mode=0o700)
    target = os.path.join(directory, state.REPORTED_FILE)
    fifo = os.path.join(directory, f".{state.REPORTED_FILE}.{os.getpid()}.tmp")
    os.mkfifo(fifo, 0o600)
    outcome = []
    writer = threading.Thread(target=lambda: outcome.append(
        state.write_atomically(target, b'{"version":1,"reported":[]}')), daemon=True)
    writer.start()
    writer.join(60)
    if writer.is_alive():                # release the blocked writer, then fail
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(60)
        pytest.fail("write_atomically blocked on a FIFO at its temporary file")
    with open(target, "rb") as handle:
        assert handle.read() == b'{"version":1,"reported":[]}'
    assert os.path.exists(fifo)          # the planted FIFO is left alone, not used


@pytest.mark.parametrize("which", ["log_file", "events_file"])
def test_log_and_events_are_not_appended_through_a_symlink(service, victim, which):
    link = os.path.join(service.root, f"{which}-link")
    plant_symlink(victim, link)
    setattr(service, which, link)
    result = run_once(service)
    assert result.returncode == 2
    assert f"{link} is a symbolic link" in result.stderr
    assert victim.read_bytes() == PRECIOUS
    checked = check(service)
    assert checked.returncode == 2 and f"{link} is a symbolic link" in checked.stdout


@pytest.mark.parametrize("which", ["log_file", "events_file"])
def test_log_and_events_in_a_customer_directory_are_refused(service, customer_dir, which):
    path = str(customer_dir / "ptfast.out")
    setattr(service, which, path)
    result = run_once(service)
    assert result.returncode == 2
    assert f"directory {customer_dir} is owned by uid {CUSTOMER}" in result.stderr
    assert os.listdir(customer_dir) == []


def test_safe_paths_under_tmp_and_root_owned_files_are_accepted(service):
    """The sticky /tmp above a root-owned directory is fine, as is everything ServiceDir
    lays out under pytest's private tmp_path."""
    result = run_once(service)
    assert result.returncode == 0, result.stderr
    assert check(service).returncode == 0


def test_path_rules_sticky_links_and_groups(tmp_path, customer_dir):
    from ptfast.foundation.safepaths import DIRECTORY, FILE, PROGRAM, path_problem
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "roots").mkdir(mode=0o700)
    (sticky / "theirs").mkdir(mode=0o700)
    os.chown(sticky / "theirs", CUSTOMER, CUSTOMER)
    assert path_problem(str(sticky / "roots" / "state"), DIRECTORY) is None
    # the customer's entry in a sticky directory: the customer may swap it
    assert "writable by every user" in path_problem(str(sticky / "theirs" / "state"), DIRECTORY)
    # a name not there yet in a sticky directory: the customer could take it first
    assert "writable by every user" in path_problem(str(sticky / "new"), DIRECTORY)

    # a root-owned link to a root-owned place, but the link sits in the customer's directory
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    plant_symlink(safe, customer_dir / "link")
    os.lchown(customer_dir / "link", 0, 0)
    assert f"directory {customer_dir} is owned by uid {CUSTOMER}" in \
        path_problem(str(customer_dir / "link" / "log"), FILE)
    # the same link in a root-only directory is fine; a link as the file itself is not
    os.symlink(safe, tmp_path / "rootlink")
    assert path_problem(str(tmp_path / "rootlink" / "log"), FILE) is None
    os.symlink(safe / "log", tmp_path / "loglink")
    assert "is a symbolic link" in path_problem(str(tmp_path / "loglink"), FILE)
    # "name/.." is resolved after the link "name", as the kernel does
    assert path_problem(str(tmp_path / "rootlink" / ".." / "safe" / "x"), FILE) is None

    group = tmp_path / "group"
    group.mkdir(mode=0o770)
    group.chmod(0o770)
    assert path_problem(str(group / "x"), FILE) is None          # group root: fine
    os.chown(group, 0, 4)             # a system group ("adm"), as Ubuntu's /var/log is syslog's
    assert path_problem(str(group / "x"), FILE) is None
    os.chown(group, 0, CUSTOMER)
    assert f"writable by group {CUSTOMER}" in path_problem(str(group / "x"), FILE)

    program = safe / "action"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o775)
    os.chown(program, 0, CUSTOMER)
    assert f"writable by group {CUSTOMER}" in path_problem(str(program), PROGRAM)
