"""csf.conf's SYSLOG = "1": every log line of a real `ptfast run --once` reaches a real syslog
socket, as lfd sends it (ident lfd, pid, facility user, priority info).

The run happens in a private mount namespace whose /dev is an overlay of the host's, with a unix
datagram socket of the test bound over /dev/log: the host's /dev (which may have no /dev/log at
all) is never touched."""

import os
import re
import shutil
import socket
import subprocess

import pytest

from helpers.service import bindshell_fixture, recorded_service
from helpers.uids import uid_for

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

UID = uid_for(830)
USER_INFO = 1 * 8 + 6       # facility user (1), priority info (6)
DATAGRAM = re.compile(r"<(\d+)>[A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d lfd\[(\d+)\]: (.*)", re.S)
LOG_LINE = re.compile(r"[A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \S+ lfd\[(\d+)\]: (.*)")
# the overlay needs an upper directory on a file system that is not itself an overlay
IN_NAMESPACE = ('set -e; mount -t overlay overlay -o "lowerdir=/dev,upperdir=$1,workdir=$2" /dev;'
                ' touch /dev/log; mount --bind "$3" /dev/log; shift 3; exec "$@"')


bindshell = bindshell_fixture(UID)


def run_with_syslog_socket(service, tmp_path, *settings) -> tuple:
    """``ptfast run --once`` with our socket as its /dev/log; (result, datagrams received)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command (util-linux)")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    address = str(tmp_path / "log.sock")
    host_dev_log = os.path.lexists("/dev/log")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(address)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 IN_NAMESPACE, "sh", str(upper), str(work), address,
                                 *service.command(*settings)],
                                capture_output=True, timeout=120)
        if result.returncode != 0 and b"mount" in result.stderr and not service.log():
            pytest.skip(f"cannot mount in a private namespace here: {result.stderr[-300:]!r}")
        receiver.setblocking(False)
        datagrams = []
        while True:
            try:
                datagrams.append(receiver.recv(1 << 20).decode("utf-8", "replace"))
            except BlockingIOError:
                break
    finally:
        receiver.close()
    assert os.path.lexists("/dev/log") == host_dev_log         # the host's /dev untouched
    return result, datagrams


def test_every_log_line_goes_to_syslog_as_lfd_sends_it(tmp_path, bindshell):
    service = recorded_service(tmp_path, UID)
    result, datagrams = run_with_syslog_socket(service, tmp_path, service.sendmail, "SYSLOG=1")
    assert result.returncode == 0, result.stderr.decode()
    logged = [LOG_LINE.fullmatch(line) for line in service.log().splitlines()]
    assert all(logged)
    received = [DATAGRAM.fullmatch(datagram) for datagram in datagrams]
    assert all(received), datagrams
    assert {int(match.group(1)) for match in received} == {USER_INFO}
    # the same messages, in the same order, from the same process
    assert [match.group(3) for match in received] == [match.group(2) for match in logged]
    assert {match.group(2) for match in received} == {match.group(1) for match in logged}
    assert any(match.group(3).startswith(f"*Suspicious Process* PID:{bindshell.pid} ")
               for match in received)
    assert any(match.group(3).startswith("pass done: ") for match in received)


def test_no_syslog_unless_asked(tmp_path, bindshell):
    service = recorded_service(tmp_path, UID)
    result, datagrams = run_with_syslog_socket(service, tmp_path, service.sendmail)
    assert result.returncode == 0, result.stderr.decode()
    assert "*Suspicious Process*" in service.log()
    assert datagrams == []
