"""Alert templates, rendering, envelopes and the reported-state file (no processes needed)."""

import email
import email.policy
import os

import orjson
import pytest

from ptfast.channels import alerts, mail
from ptfast.decide.findings import REMEMBER_PROCESS, Remember
from ptfast.decide.state import ReportedState
from helpers.realworld import REALWORLD, needs_realworld


def parsed(message: bytes):
    return email.message_from_bytes(message, policy=email.policy.default)


def test_builtin_templates_have_lfds_placeholders():
    expected = {
        "processtracking.txt": {"time", "hostname", "pid", "user", "uptime", "exe", "cmdline",
                                "sockets", "files", "maps"},
        "usertracking.txt": {"time", "hostname", "user", "count", "text", "kill"},
        "resalert.txt": {"time", "hostname", "user", "pid", "exe", "cmd", "resource", "level",
                         "kill"},
        "forkbombalert.txt": {"time", "hostname", "level", "text"},
    }
    templates = alerts.Templates(directory=None)
    for filename, names in expected.items():
        template = templates[filename]
        assert template.source == "built-in"
        text = " ".join(value for _name, value in template.headers) + template.body
        found = {match.lower() for match in alerts._PLACEHOLDER.findall(text)}
        assert found == names, filename
        assert {name.lower() for name, _ in template.headers} >= {"from", "to", "subject"}


@needs_realworld
def test_admins_lfd_templates_are_used_and_filled(tmp_path):
    templates = alerts.Templates(REALWORLD)
    assert templates.problems == []
    assert templates["processtracking.txt"].source == os.path.join(REALWORLD, "processtracking.txt")
    values = {"hostname": "web1.example.com", "pid": "123 (Parent PID:1)", "user": "bob",
              "uptime": "75", "exe": "/tmp/x", "cmdline": "x", "sockets": "tcp: a -> b",
              "files": "", "maps": ""}
    message = parsed(alerts.render(templates["processtracking.txt"], values,
                                   alert_to="admin@example.com"))
    assert message["To"] == "admin@example.com"            # LF_ALERT_TO wins
    assert message["From"] == "root"                       # the template's own
    assert "web1.example.com" in message["Subject"] and "bob" in message["Subject"]
    body = message.get_content()
    assert "123 (Parent PID:1)" in body and "tcp: a -> b" in body
    for name in [*values, "time"]:
        assert f"[{name}]" not in body and f"[{name}]" not in message["Subject"]


def test_placeholders_are_case_insensitive_and_filled_once():
    template = alerts.parse_template("Subject: [USER] on [HostName]\n\n[User] ran [cmdline] "
                                     "[unknown]\n", "t", "test", [])
    message = parsed(alerts.render(template, {"user": "bob", "hostname": "h",
                                              "cmdline": "evil [user] [maps]"}))
    assert message["Subject"] == "bob on h"
    # a value is not expanded again; an unknown placeholder stays as written, as in lfd
    assert message.get_content().strip() == "bob ran evil [user] [maps] [unknown]"


def test_time_placeholder_is_lfds_localtime_with_zone():
    template = alerts.parse_template("Subject: x\n\n[time]\n", "t", "test", [])
    body = parsed(alerts.render(template, {}, now=0)).get_content().strip()
    assert body == alerts.lfd_time(0)
    assert len(body.split()) == 6        # Thu Jan  1 00:00:00 1970 +0000


def test_long_lines_are_wrapped_and_nothing_is_lost():
    template = alerts.parse_template("Subject: x\n\n[maps]\n", "t", "test", [])
    long_value = "".join(chr(ord("a") + i % 26) for i in range(2500))
    message = alerts.render(template, {"maps": long_value})
    body_lines = message.split(b"\n\n", 1)[1].split(b"\n")
    assert max(len(line) for line in body_lines) <= alerts.MAX_LINE
    assert b"".join(body_lines).decode() == long_value


def test_header_values_cannot_add_headers():
    template = alerts.parse_template("To: root\nSubject: [cmdline]\n\nbody\n", "t", "test", [])
    message = parsed(alerts.render(template, {"cmdline": "a\nBcc: x@evil.example\r\nX: y"}))
    assert "Bcc" not in message and "X" not in message
    assert message["Subject"].startswith("a Bcc: x@evil.example")


def test_malformed_template_header_is_reported_with_line(tmp_path):
    (tmp_path / "processtracking.txt").write_text("From: root\nthis is not a header\n"
                                                  "Subject: s\n\nbody\n")
    templates = alerts.Templates(str(tmp_path))
    path = str(tmp_path / "processtracking.txt")
    assert [str(problem) for problem in templates.problems] == [
        f"{path}:2: not a header line (Name: value) before the blank line that starts the "
        "body; line skipped"]
    assert [name for name, _ in templates["processtracking.txt"].headers] == ["From", "Subject"]
    assert templates["resalert.txt"].source == "built-in"      # absent files: ptfast's own


def test_envelope_comes_from_headers():
    message = b"From: Alerts <alerts@example.com>\nTo: a@example.com, B <b@example.com>\n\nx\n"
    assert mail.envelope(message) == ("alerts@example.com", ["a@example.com", "b@example.com"])
    assert mail.envelope(b"From: -oQ/tmp evil\nTo: root\n\nx\n")[0] == "root"


@pytest.mark.parametrize("relay, expected", [
    ("127.0.0.1", ("127.0.0.1", 25)), ("mail.example.com:587", ("mail.example.com", 587)),
    ("[::1]:2525", ("::1", 2525)), ("::1", ("::1", 25)),
])
def test_relay_forms(relay, expected):
    assert mail.split_relay(relay) == expected


def test_relay_with_bad_port_is_a_delivery_error():
    with pytest.raises(mail.DeliveryError, match="port is not a number"):
        mail.split_relay("host:smtp")


def test_state_round_trip_and_forgetting(tmp_path):
    state = ReportedState(str(tmp_path))
    assert state.load() is None
    state.remember(Remember(REMEMBER_PROCESS, (10, 1000)))
    state.remember(Remember(REMEMBER_PROCESS, (11, 2000)))
    state.save()
    again = ReportedState(str(tmp_path))
    assert again.load() is None
    assert set(again.reported) == {(10, 1000), (11, 2000)}
    assert again.forget_gone({(10, 1000), (99, 5)}) == 1
    again.save()
    document = orjson.loads((tmp_path / "reported.json").read_bytes())
    assert [entry[:2] for entry in document["reported"]] == [[10, 1000]]
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_listener_memory_is_bounded_and_forgets_what_closed(tmp_path, monkeypatch):
    from types import SimpleNamespace
    from ptfast.decide import state as state_mod
    monkeypatch.setattr(state_mod, "MAX_LISTENERS", 3)
    state = ReportedState(str(tmp_path))
    sockets = [SimpleNamespace(netns=1, inode=inode, uid=1000) for inode in range(5)]
    assert state.observe_listeners(sockets, now=10.0) == {1000: 2}
    assert len(state.listeners) == 3
    assert state.observe_listeners(sockets[3:], now=20.0) == {}     # the first three closed
    assert set(state.listeners) == {(1, 3), (1, 4)}
    assert state.listener_seen(1, 3) == (1000, 20.0, False)


def test_a_planned_kill_list_is_bounded_in_json():
    from ptfast.decide.findings import ProcessKey, Response
    record = Response(kill=tuple(ProcessKey(pid, 1) for pid in range(1, 1201)),
                      kill_uids=(1000,)).as_record()
    assert len(record["kill"]) == 500 and record["kill_left_out"] == 700
