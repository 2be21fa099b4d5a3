"""`ptfast check` on the delivery settings: SENDMAIL exists and runs, LF_ALERT_SMTP's syntax,
webhook URLs and formats (never printing a token), PT_METRICS_FILE's directory."""

import os
import subprocess

import pytest

from helpers.inproc import run_ptfast

TOKEN = "T0KEN-s3cr3t-abcdef"


def check(tmp_path, *settings) -> subprocess.CompletedProcess:
    command = ["check", "--config", os.devnull, "--override",
               os.devnull, "--pignore", os.devnull, "--state-dir", str(tmp_path / "state"),
               "--log-file", str(tmp_path / "ptfast.log"), "--events-file",
               str(tmp_path / "events.jsonl")]
    for setting in settings:
        command += ["--set", setting]
    return run_ptfast(command, text=True)


def problems(result) -> list:
    lines = result.stdout.splitlines()
    if "no problems found" in lines:
        return []
    start = next(i for i, line in enumerate(lines) if line.endswith("problem(s):"))
    return [line.strip() for line in lines[start + 1:]]


@pytest.fixture
def sendmail(tmp_path):
    program = tmp_path / "sendmail"
    program.write_text("#!/bin/sh\ncat >/dev/null\n")
    program.chmod(0o755)
    return str(program)


def test_a_working_sendmail_is_no_problem(tmp_path, sendmail):
    result = check(tmp_path, f"SENDMAIL={sendmail} -v")
    assert result.returncode == 0, result.stdout
    assert problems(result) == []


@pytest.mark.parametrize("make, said", [
    (lambda path: None, "does not exist"),
    (lambda path: (path.write_text("#!/bin/sh\n"), path.chmod(0o644)), "is not an executable file"),
    (lambda path: path.mkdir(), "is not an executable file"),
])
def test_sendmail_that_cannot_run_is_a_problem(tmp_path, make, said):
    path = tmp_path / "sendmail"
    make(path)
    result = check(tmp_path, f"SENDMAIL={path}")
    assert result.returncode == 2
    assert any(f"SENDMAIL {path} {said}: no alert mail can be sent" in line
               for line in problems(result)), result.stdout


def test_sendmail_not_in_path(tmp_path):
    result = check(tmp_path, "SENDMAIL=no-such-sendmail-here -t")
    assert result.returncode == 2
    assert any("no-such-sendmail-here is not found in PATH" in line for line in problems(result))


@pytest.mark.parametrize("relay, said", [
    ("mail.example.com:smtp", "its port is not a number"),
    (":25", "has no host"),
    ("mail.example.com:70000", "port 70000 is outside 1-65535"),
    ("mail example.com", "is not host, host:port or [IPv6 address]:port"),
])
def test_relay_syntax(tmp_path, sendmail, relay, said):
    result = check(tmp_path, f"LF_ALERT_SMTP={relay}", "SENDMAIL=/nonexistent")
    assert result.returncode == 2
    # with a relay, SENDMAIL is not used and so not checked
    assert problems(result) == [f"--set: LF_ALERT_SMTP {relay} {said}"]


@pytest.mark.parametrize("relay", ["mail.example.com", "mail.example.com:587", "[::1]:25",
                                   "::1", "127.0.0.1:2525"])
def test_good_relays(tmp_path, relay):
    result = check(tmp_path, f"LF_ALERT_SMTP={relay}")
    assert problems(result) == [], result.stdout


def test_webhooks_are_checked_and_never_printed_whole(tmp_path, sendmail):
    good = check(tmp_path, f"SENDMAIL={sendmail}",
                 f"PT_WEBHOOK_URL=https://hooks.example.com/services/{TOKEN},"
                 f"https://api.telegram.org/bot{TOKEN}/sendMessage?chat_id=5",
                 "PT_WEBHOOK_FORMAT=slack,telegram")
    assert good.returncode == 0, good.stdout
    assert TOKEN not in good.stdout + good.stderr
    [line] = [line for line in good.stdout.splitlines() if line.startswith("PT_WEBHOOK_URL ")]
    assert "https://hooks.example.com/...,https://api.telegram.org/..." in line

    bad = check(tmp_path, f"SENDMAIL={sendmail}",
                f"PT_WEBHOOK_URL=http://hooks.example.com/services/{TOKEN}")
    assert bad.returncode == 2
    assert TOKEN not in bad.stdout + bad.stderr
    assert any("PT_WEBHOOK_URL http://hooks.example.com/... is plain http" in line
               for line in problems(bad))

    unpaired = check(tmp_path, f"SENDMAIL={sendmail}",
                     f"PT_WEBHOOK_URL=https://a.example/{TOKEN}", "PT_WEBHOOK_FORMAT=json,slack")
    assert unpaired.returncode == 2 and TOKEN not in unpaired.stdout + unpaired.stderr
    assert any("2 formats for 1" in line for line in problems(unpaired))


def test_a_loopback_webhook_on_a_port_any_user_may_take(tmp_path, sendmail):
    """On a shared host, loopback is not private: while the receiver is down, a customer may
    listen on an unprivileged port and be sent every alert and the token."""
    from ptfast.foundation.destinations import unprivileged_port_start
    lowest = unprivileged_port_start()
    if lowest > 65535:
        pytest.skip("no port is unprivileged here")
    taken = check(tmp_path, f"SENDMAIL={sendmail}",
                  f"PT_WEBHOOK_URL=http://127.0.0.1:{max(lowest, 8080)}/hook/{TOKEN}")
    assert taken.returncode == 2, taken.stdout
    assert TOKEN not in taken.stdout + taken.stderr
    assert any(f"PT_WEBHOOK_URL http://127.0.0.1:{max(lowest, 8080)}/...: port" in line
               and "any user may listen on" in line for line in problems(taken)), taken.stdout
    if lowest > 80:
        privileged = check(tmp_path, f"SENDMAIL={sendmail}",
                           f"PT_WEBHOOK_URL=http://127.0.0.1/hook/{TOKEN}")
        assert problems(privileged) == [], privileged.stdout


@pytest.mark.needs_root
def test_metrics_file_directory(tmp_path, sendmail):
    textfile = tmp_path / "textfile"
    missing = check(tmp_path, f"SENDMAIL={sendmail}", f"PT_METRICS_FILE={textfile}/ptfast.prom")
    assert missing.returncode == 2
    assert any(f"the directory {textfile} does not exist" in line for line in problems(missing))

    textfile.mkdir()
    ready = check(tmp_path, f"SENDMAIL={sendmail}", f"PT_METRICS_FILE={textfile}/ptfast.prom")
    assert ready.returncode == 0, ready.stdout

    textfile.chmod(0o777)
    open_to_all = check(tmp_path, f"SENDMAIL={sendmail}",
                        f"PT_METRICS_FILE={textfile}/ptfast.prom")
    assert open_to_all.returncode == 2
    assert any("will not be written" in line and "writable by every user" in line
               for line in problems(open_to_all))

    relative = check(tmp_path, f"SENDMAIL={sendmail}", "PT_METRICS_FILE=ptfast.prom")
    assert any("PT_METRICS_FILE must be an absolute path" in line for line in problems(relative))


def test_metrics_file_must_be_a_prom_file(tmp_path, sendmail):
    """A careless admin names ptfast's own state (or any root file) as PT_METRICS_FILE: it
    would be overwritten with metrics every pass (reported.json: every alert again)."""
    from ptfast.foundation import config
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    reported = state / "reported.json"
    reported.write_text("{}")
    loaded = config.load(os.devnull, override_path=os.devnull,
                         overrides=[f"PT_METRICS_FILE={reported}"])
    assert loaded.settings.PT_METRICS_FILE == ""
    assert any("PT_METRICS_FILE must end with .prom" in str(problem)
               for problem in loaded.problems), loaded.problems
    result = check(tmp_path, f"SENDMAIL={sendmail}", f"PT_METRICS_FILE={reported}")
    assert result.returncode == 2
    assert any("must end with .prom" in line for line in problems(result)), result.stdout
