"""Issue 22, points 5 and 16: a reload (SIGHUP) whose settings could not be used is refused in
one log line that says the previous settings stay, and nothing in it contradicts that."""

import re
import signal
import subprocess
import time

import pytest

from helpers.service import recorded_service
from helpers.uids import uid_for

pytestmark = pytest.mark.needs_root

LFD_LINE = re.compile(r"[A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \S+ lfd\[\d+\]: (.*)")


def messages(service) -> list:
    return [LFD_LINE.fullmatch(line).group(1) for line in service.log().splitlines()]


def wait_for(service, text: str, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        said = messages(service)
        if any(text in message for message in said):
            return said
        time.sleep(0.1)
    raise AssertionError(f"log never said {text!r}:\n{service.log()}")


@pytest.mark.parametrize("bad_line, said", [
    ('SENDMAIL = "/nonexistent/sendmail"', "3: SENDMAIL /nonexistent/sendmail does not exist"),
    ('PT_INTERVAL = "6O"', "4: PT_INTERVAL must be a whole number, not '6O'"),
])
def test_a_reload_with_unusable_settings_is_refused_in_one_line(tmp_path, bad_line, said):
    service = recorded_service(tmp_path, uid_for(231))
    with open(service.override, "a") as handle:     # not --set: it would win over the file
        handle.write(f'SENDMAIL = "{service.recorder.path}"\n')
    with service.started(stderr=subprocess.DEVNULL) as daemon:
        wait_for(service, "started")
        before = len(messages(service))
        text = open(service.override).read()
        if bad_line.startswith("SENDMAIL"):
            text = text[:text.index("SENDMAIL")]
        with open(service.override, "w") as handle:
            handle.write(f"{text}{bad_line}\n")
        daemon.send_signal(signal.SIGHUP)
        after = wait_for(service, "reload refused")[before:]
        refused = [message for message in after if "reload refused" in message]
        assert len(refused) == 1, after
        assert refused[0].startswith("reload refused, the previous settings stay in force: "
                                     f"{service.override}:{said}"), refused[0]
        assert "using the default" not in refused[0]
        assert [message for message in after if service.override in message] == refused
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert not any("settings reloaded" in message for message in messages(service))
