"""`ptfast baseline`: a draft of ignore lines for what a scan finds now, grouped, with only
lines no customer can borrow left active."""

import os
import pwd
import socket
import stat
import subprocess
import sys
import time

import pytest

from ptfast.commands.baseline import Customers

from helpers.procs import start_copied_python, start_python
from helpers.scan import CORES, core_env
from helpers.service import free_port
from helpers.uids import uid_for
from helpers.inproc import run_ptfast

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

CUSTOMER = uid_for(230)
SYSTEM_ACCOUNT = 1              # "daemon" on Debian and EL alike: below UID_MIN
LISTEN = 'listen(socket.AF_INET, "127.0.0.1")'


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _wait_listening(port: int) -> None:
    """Until something accepts connections on 127.0.0.1:port (bounded: 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_baseline_groups_and_leaves_only_unborrowable_lines_active(tmp_path, children):
    children.extend([start_python(LISTEN, uid=CUSTOMER) for _ in range(2)])  # an interpreter
    children.append(start_python(LISTEN, uid=SYSTEM_ACCOUNT))
    app = start_copied_python("appserver", LISTEN, uid=CUSTOMER)   # root's file, root's dir
    children.append(app)
    os.chmod(app.info["exe"], 0o700)        # started by root's doing; no customer can run it
    pignore = tmp_path / "pignore"
    pignore.write_text(f"puser:(?!(?:{CUSTOMER}|daemon)$).*\n")
    result = run_ptfast(
        ["baseline", "--config", os.devnull, "--override", os.devnull, "--pignore", str(pignore),
         "--set", "PT_LIMIT=1"], text=True)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "a DRAFT, never applied" in text and "Anything already compromised" in text
    lines = text.splitlines()
    active = [line for line in lines if line and not line.startswith("#")]
    assert "user:daemon" in active
    assert f"exe:{app.info['exe']}" in active
    python = os.path.realpath(sys.executable)
    assert f"# exe:{python}" in lines and f"exe:{python}" not in active
    # grouped by listening ports: the customer's two python listeners are two groups
    assert sum(line.startswith(f"# user {CUSTOMER}, {python}, listening: tcp ")
               for line in lines) == 2


OPENSSL = "/usr/bin/openssl"
OPENSSL_UID = uid_for(231)
WEB_SERVER_USER = "www-data"


def run_baseline(pignore, core: str) -> subprocess.CompletedProcess:
    return run_ptfast(
        ["baseline", "--config", os.devnull, "--override", os.devnull, "--pignore", str(pignore),
         "--set", "PT_LIMIT=1"], env=core_env(core), text=True)


@pytest.mark.skipif(not os.access(OPENSSL, os.X_OK), reason="no /usr/bin/openssl (Debian "
                    "package openssl)")
@pytest.mark.parametrize("core", CORES)
def test_no_active_exe_line_for_a_program_any_customer_can_run(tmp_path, core):
    """Issue 20.6: `exe:/usr/bin/openssl` would hide every customer's own `openssl s_server`
    (a listener of their choosing): the line stays commented, saying why."""
    port = free_port()
    server = subprocess.Popen([OPENSSL, "s_server", "-nocert", "-accept", f"127.0.0.1:{port}"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, user=OPENSSL_UID, group=OPENSSL_UID,
                              extra_groups=[])
    try:
        _wait_listening(port)
        pignore = tmp_path / "pignore"
        pignore.write_text(f"puser:(?!(?:{OPENSSL_UID})$).*\n")
        result = run_baseline(pignore, core)
    finally:
        server.kill()
        server.wait()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"# user {OPENSSL_UID}, {OPENSSL}, listening: tcp {port}")
               for line in lines), result.stdout
    assert f"exe:{OPENSSL}" not in lines
    rule = lines.index(f"# exe:{OPENSSL}")
    assert "any user can run it" in lines[rule - 1], lines[rule - 1]


@pytest.mark.skipif(not _has_account(WEB_SERVER_USER), reason="no www-data account")
@pytest.mark.parametrize("core", CORES)
def test_no_active_user_line_for_an_account_that_runs_customers_code(tmp_path, children,
                                                                      core):
    """Issue 20.6: www-data runs customers' PHP and CGI scripts: `user:www-data` would hide
    every webshell's listener. The line stays commented, saying why."""
    children.append(start_python(LISTEN, uid=pwd.getpwnam(WEB_SERVER_USER).pw_uid))
    pignore = tmp_path / "pignore"
    pignore.write_text(f"puser:(?!(?:{WEB_SERVER_USER})$).*\n")
    result = run_baseline(pignore, core)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"user:{WEB_SERVER_USER}" not in lines, result.stdout
    rule = lines.index(f"# user:{WEB_SERVER_USER}")
    assert "runs customers' code" in lines[rule - 1], lines[rule - 1]


def test_who_can_execute_reads_other_group_and_acl_bits():
    """The file modes behind the exe: decision (no process needed): others' x bit, the x bit
    of a group a customer is in, and an ACL mask that may hide a customer's named entry."""
    customers = Customers(names=frozenset({"alice"}), uids=frozenset({1001}),
                          gids=frozenset({1001, 33}), code_accounts=frozenset())

    def mode(bits, gid=0):
        return lambda path: os.stat_result((stat.S_IFREG | bits, 1, 1, 1, 0, gid, 0, 0, 0, 0))

    no_acl = lambda path: False     # noqa: E731
    assert "any user" in customers.who_can_execute("/x", mode(0o755), no_acl)
    assert "group 33" in customers.who_can_execute("/x", mode(0o750, gid=33), no_acl)
    assert customers.who_can_execute("/x", mode(0o750, gid=4), no_acl) is None
    assert customers.who_can_execute("/x", mode(0o700), no_acl) is None
    assert "ACL" in customers.who_can_execute("/x", mode(0o750, gid=4), lambda path: True)
    assert "cannot be examined" in customers.who_can_execute("/x", _missing, no_acl)


def _missing(path):
    raise FileNotFoundError(path)
