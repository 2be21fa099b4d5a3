"""A listener held by no process: a customer's process sends its listener over a unix socket
(SCM_RIGHTS) into the queue of a unix socket it keeps, and closes its own fd. No process holds
the listener; the kernel keeps completing handshakes into its backlog, and the customer takes
it back (recvmsg), accepts and parks it again whenever it likes. ``ptfast run`` reports it once
it outlived PT_LIMIT, with the account that created it. Real processes, both cores."""

import os

import pytest

from helpers.procs import kill_uid, start_python
from helpers.service import SendmailRecorder, ServiceDir
from helpers.uids import uid_for
from helpers.inproc import run_ptfast

pytestmark = pytest.mark.needs_root

UID = uid_for(243)
CORES = {"compiled": {}, "pure-python": {"PTFAST_NO_EXTENSIONS": "1"}}

PARK = """
parked = socket.socket()
parked.bind(("0.0.0.0", 0))
parked.listen(8)
info["port"] = parked.getsockname()[1]
info["inode"] = os.fstat(parked.fileno()).st_ino
queue, sender = socket.socketpair()
socket.send_fds(sender, [b"x"], [parked.fileno()])
parked.close()
sender.close()
KEEP.append(queue)
"""


def run_once(service, core, *settings):
    result = run_ptfast(service.command(*settings)[3:], env={**os.environ, **CORES[core]})
    assert result.returncode == 0, result.stderr.decode(errors="replace")


@pytest.mark.parametrize("core", sorted(CORES))
def test_a_listener_parked_in_a_unix_socket_queue_is_reported_with_its_owner(tmp_path, core):
    service = ServiceDir(tmp_path, UID)
    recorder = SendmailRecorder(str(tmp_path))
    settings = ("GENERIC=1", f"SENDMAIL={recorder.path}", "PT_USERPROC=0")
    parker = None
    try:
        parker = start_python(PARK, uid=UID)
        # no process holds it: the parker holds only the unix socket
        assert not any(os.readlink(f"/proc/{parker.pid}/fd/{fd}") == f"socket:[{parker.info['inode']}]"
                       for fd in os.listdir(f"/proc/{parker.pid}/fd"))
        run_once(service, core, *settings)          # first seen
        service.age_listener_memory(1.5)            # as if it outlived PT_LIMIT=1 since
        run_once(service, core, *settings)
        events = [event for event in service.events()
                  if any(sock["inode"] == parker.info["inode"]
                         for sock in event.get("sockets", ()))]
        assert len(events) == 1, service.events()
        [event] = events
        assert event["check"] == "unheld_listener" and event["uid"] == UID
        assert "pid" not in event
        assert event["reasons"] == ["listening socket held by no process"]
        [sock] = event["sockets"]
        assert sock["local"] == f"0.0.0.0:{parker.info['port']}" and sock["counted"]
        log = service.log()
        assert f"0.0.0.0:{parker.info['port']}" in log and "held by no process" in log
        mails = [call["parsed"] for call in recorder.calls()
                 if f"0.0.0.0:{parker.info['port']}" in call["parsed"].get_content()]
        assert len(mails) == 1
        # reported once: the next pass is quiet about it
        run_once(service, core, *settings)
        assert len([call for call in recorder.calls()
                    if f"0.0.0.0:{parker.info['port']}" in call["parsed"].get_content()]) == 1
    finally:
        if parker is not None:
            parker.stop()
        kill_uid(UID)
