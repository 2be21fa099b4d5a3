"""Webhook alerts against a real local HTTP(S) server: through the spool like mail (an outage
keeps the post, the next pass sends it once), refusals kept, chat payload shapes, https verified,
timeouts bounded, and no token in any log line or event."""

import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from helpers.procs import start_copied_python
from helpers.service import (LISTEN_ANY, WebhookServer, bindshell_fixture, recorded_service,
                             self_signed_certificate)
from helpers.uids import uid_for
from helpers.inproc import run_ptfast

from ptfast.foundation import destinations
from ptfast.channels import webhooks
from ptfast.channels.channel import Alert

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

UID = uid_for(800)
TOKEN = "T0KEN-s3cr3t-abcdef"


bindshell = bindshell_fixture(UID)


@pytest.fixture
def service(tmp_path):
    return recorded_service(tmp_path, UID)


def hooks(service) -> list:
    return [name for name in service.spooled() if name.endswith(".hook")]


def assert_no_token(service, *outputs) -> None:
    """Neither the log, the events, the status file nor what was printed carries the token."""
    with open(service.log_file) as handle:
        assert TOKEN not in handle.read()
    status_file = os.path.join(service.state_dir, "status.json")
    for path in (service.events_file, status_file):
        if os.path.exists(path):
            with open(path) as handle:
                assert TOKEN not in handle.read()
    status = run_ptfast(["status", "--json", "--state-dir", service.state_dir])
    assert b"webhook http" in status.stdout and TOKEN.encode() not in status.stdout
    for output in outputs:
        assert TOKEN.encode() not in output


def test_json_webhook_outage_then_delivered_exactly_once(service, bindshell):
    server = WebhookServer()                 # its port is taken, nothing listens yet: down
    url = f"PT_WEBHOOK_URL={server.url('/hook/' + TOKEN + '?key=' + TOKEN)}"
    first = service.run_once(service.sendmail, url)
    assert first.returncode == 2, first.stderr.decode()     # an alert left in the spool
    assert len(hooks(service)) == 1
    assert len(service.recorder.calls()) == 1                # mail went its own way
    failed = [line for line in service.log().splitlines() if "*Alert delivery failed*" in line]
    assert len(failed) == 1
    assert f"via webhook http://127.0.0.1:{server.port}/... (json)" in failed[0]
    assert "1 alert(s) kept in" in failed[0]

    second = service.run_once(service.sendmail, url)       # still down: kept, not doubled
    assert second.returncode == 2 and len(hooks(service)) == 1

    with server:
        third = service.run_once(service.sendmail, url)
        fourth = service.run_once(service.sendmail, url)
    assert third.returncode == 0, third.stderr.decode()
    assert fourth.returncode == 0, fourth.stderr.decode()
    assert len(server.posts) == 1                           # exactly once
    path, headers, body = server.posts[0]
    assert path == f"/hook/{TOKEN}?key={TOKEN}"
    assert headers["Content-Type"].startswith("application/json")
    [event] = service.events()
    assert json.loads(body) == event                        # the event record, as in the file
    assert event["schema"] == 1 and event["pid"] == bindshell.pid
    assert hooks(service) == []
    assert "1 alert(s) delivered via webhook" in service.log()
    assert len(service.recorder.calls()) == 1
    assert_no_token(service, first.stderr, second.stderr, third.stderr)


def test_a_refused_post_is_kept_and_logged_without_the_token(service, bindshell):
    with WebhookServer() as server:
        url = f"PT_WEBHOOK_URL={server.url('/hook/' + TOKEN)}"
        server.status, server.answer = 400, "invalid_payload for {path}"    # echoes the token
        refused = service.run_once(service.sendmail, url)
        assert refused.returncode == 2
        assert len(hooks(service)) == 1 and len(server.posts) == 1
        [failed] = [line for line in service.log().splitlines()
                    if "*Alert delivery failed*" in line]
        assert "HTTP 400: invalid_payload for [redacted]" in failed
        assert f"{hooks(service)[0]} kept in" in failed     # this post only: like a refused mail
        assert_no_token(service, refused.stderr)

        server.status, server.answer = 404, "no_service"    # the destination itself is gone
        assert service.run_once(service.sendmail, url).returncode == 2
        assert len(hooks(service)) == 1
        assert "HTTP 404: no_service; 1 alert(s) kept in" in service.log()

        server.status, server.answer = 200, "ok"
        assert service.run_once(service.sendmail, url).returncode == 0
        service.run_once(service.sendmail, url)
    bodies = server.bodies()
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]   # the same post, retried
    assert hooks(service) == []
    assert len(service.recorder.calls()) == 1


HOSTILE = "x<!channel>@everyone&[fix](x)"


def test_chat_formats_in_their_documented_shapes(service, tmp_path):
    uid = uid_for(801)
    service.track_only(uid)
    child = start_copied_python(HOSTILE, LISTEN_ANY, uid=uid)
    try:
        with WebhookServer() as server:
            urls = ",".join([server.url("/slack/" + TOKEN), server.url("/discord/" + TOKEN),
                             server.url("/teams/" + TOKEN),
                             server.url(f"/bot{TOKEN}/sendMessage?chat_id=-100123")])
            result = service.run_once(service.sendmail, f"PT_WEBHOOK_URL={urls}",
                                      "PT_WEBHOOK_FORMAT=slack, discord,teams ,telegram")
            assert result.returncode == 0, result.stderr.decode()
    finally:
        child.stop()
    by_path = {path: json.loads(body) for path, _headers, body in server.posts}
    assert sorted(by_path) == sorted([f"/slack/{TOKEN}", f"/discord/{TOKEN}", f"/teams/{TOKEN}",
                                      f"/bot{TOKEN}/sendMessage"])   # telegram: no query
    host = service.events()[0]["host"]
    slack = by_path[f"/slack/{TOKEN}"]
    assert list(slack) == ["text", "unfurl_links", "unfurl_media"]
    assert slack["unfurl_links"] is False and slack["unfurl_media"] is False
    assert slack["text"].startswith(f"ptfast on {host}: suspicious process of user {uid}\n")
    assert f"*Suspicious Process* PID:{child.pid} " in slack["text"]
    assert "<!channel>" not in slack["text"]
    assert "x&lt;!channel&gt;@everyone&amp;[fix](x)" in slack["text"]

    discord = by_path[f"/discord/{TOKEN}"]
    assert discord["allowed_mentions"] == {"parse": []} and discord["flags"] == 4
    assert f"\\*Suspicious Process\\* PID\\:{child.pid} " in discord["content"]
    assert "x\\<!channel\\>\\@everyone&\\[fix\\]\\(x\\)" in discord["content"]
    assert len(discord["content"]) <= 2000

    teams = by_path[f"/teams/{TOKEN}"]
    assert teams["type"] == "message"
    [attachment] = teams["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.2"
    runs = [block["inlines"] for block in card["body"]]
    assert all(block["type"] == "RichTextBlock" for block in card["body"])   # no markdown
    assert runs[0] == [{"type": "TextRun", "text": f"ptfast on {host}: suspicious process of "
                                                   f"user {uid}", "weight": "Bolder"}]
    assert f"*Suspicious Process* PID:{child.pid} " in runs[1][0]["text"]
    assert HOSTILE in runs[1][0]["text"]

    telegram = by_path[f"/bot{TOKEN}/sendMessage"]
    assert telegram["chat_id"] == "-100123" and "parse_mode" not in telegram
    assert telegram["link_preview_options"] == {"is_disabled": True}
    assert f"*Suspicious Process* PID:{child.pid} " in telegram["text"]
    assert_no_token(service, result.stderr)


def test_https_is_verified(service, bindshell, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    certificate = self_signed_certificate(str(tmp_path))
    with WebhookServer(certificate=certificate) as server:
        url = f"PT_WEBHOOK_URL={server.url('/hook/' + TOKEN, scheme='https')}"
        untrusted = service.run_once(service.sendmail, url)
        assert untrusted.returncode == 2
        assert server.posts == [] and len(hooks(service)) == 1
        assert "CERTIFICATE_VERIFY_FAILED" in service.log()
        # the same server once its certificate is trusted (SSL_CERT_FILE names the CAs)

        trusted = subprocess.run(service.command(service.sendmail, url),
                                 env={**os.environ, "SSL_CERT_FILE": certificate[0]},
                                 capture_output=True, timeout=120)
        assert trusted.returncode == 0, trusted.stderr.decode()
    assert len(server.posts) == 1 and hooks(service) == []
    assert_no_token(service, untrusted.stderr, trusted.stderr)


def test_a_webhook_that_never_answers_times_out_and_keeps_the_post(service, bindshell,
                                                                  monkeypatch):
    with WebhookServer() as server:
        server.hang = threading.Event()
        monkeypatch.setattr(webhooks, "TIMEOUT", 0.3)
        running = service.in_process(service.sendmail,
                                     f"PT_WEBHOOK_URL={server.url('/hook/' + TOKEN)}")
        try:
            running.run_pass()
        finally:
            running.stop()
    assert len(server.posts) == 1                           # it was asked, and never answered
    assert len(hooks(service)) == 1
    assert "timed out" in service.log()
    assert_no_token(service)


def test_a_post_for_a_destination_no_longer_configured_is_kept(service, bindshell):
    with WebhookServer() as server:
        server.status = 503                                 # down: the post stays spooled
        service.run_once(service.sendmail, f"PT_WEBHOOK_URL={server.url('/old/' + TOKEN)}")
        assert len(hooks(service)) == 1
        server.status = 204
        result = service.run_once(service.sendmail, f"PT_WEBHOOK_URL={server.url('/new')}")
    assert result.returncode == 2
    assert [path for path, _h, _b in server.posts] == [f"/old/{TOKEN}"]     # never re-routed
    assert len(hooks(service)) == 1
    assert "is no longer in PT_WEBHOOK_URL" in service.log()
    assert_no_token(service)


# -- the settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("url, problem", [
    ("http://example.com/x", "plain http to another host"),
    ("ftp://example.com/x", "must start with https://"),
    ("https://user:pw@example.com/x", "user:password@"),
    ("https://example.com:99999/x", "not a valid URL"),
    ("https:///x", "has no host"),
    ("https://exa mple.com/x", "spaces"),
])
def test_url_problems_name_only_scheme_and_host(url, problem):
    said = destinations.url_problem(url)
    assert said is not None and problem in said


def test_telegram_needs_a_chat_id():
    assert "chat_id" in destinations.url_problem(
        f"https://api.telegram.org/bot{TOKEN}/sendMessage", destinations.TELEGRAM)
    assert destinations.url_problem(
        f"https://api.telegram.org/bot{TOKEN}/sendMessage?chat_id=1", destinations.TELEGRAM) is None


def test_shown_and_redacted_urls_carry_no_secret():
    url = f"https://hooks.example.com:8443/services/{TOKEN}?sig={TOKEN}x&v=1.0"
    assert destinations.shown_url(url) == "https://hooks.example.com:8443/..."
    said = destinations.redact(f"error for {url} at /services/{TOKEN} sig={TOKEN}x", url)
    assert TOKEN not in said


def test_bad_webhook_settings_are_problems_with_their_line(tmp_path):
    from ptfast.foundation import config
    override = tmp_path / "ptfast.conf"
    override.write_text(f'PT_WEBHOOK_URL = "https://a.example/{TOKEN},https://b.example/x"\n'
                        'PT_WEBHOOK_FORMAT = "slack,json,teams"\n')
    loaded = config.load(os.devnull, override_path=str(override))
    [problem] = loaded.problems
    assert (problem.path, problem.line) == (str(override), 1)
    assert "3 formats for 2" in problem.message and TOKEN not in str(problem)
    assert loaded.settings.PT_WEBHOOK_URL == ""                   # nothing sent in the wrong shape
    override.write_text('PT_WEBHOOK_FORMAT = "mattermost"\n')
    [problem] = config.load(os.devnull, override_path=str(override)).problems
    assert "'mattermost' is not one of json, slack, discord, teams, telegram" in problem.message


def test_webhook_url_in_the_format_setting_is_not_quoted_back(tmp_path):
    """A careless admin swaps the two settings: the problem (printed by check, logged by the
    service) must not carry the URL's token."""
    from ptfast.foundation import config
    override = tmp_path / "ptfast.conf"
    override.write_text(f'PT_WEBHOOK_FORMAT = "https://hooks.example.com/services/{TOKEN}"\n'
                        'PT_WEBHOOK_URL = "slack"\n')
    loaded = config.load(os.devnull, override_path=str(override))
    assert loaded.problems
    assert all(TOKEN not in str(problem) for problem in loaded.problems), loaded.problems
    assert any("PT_WEBHOOK_FORMAT has a value that is not one of" in str(problem)
               for problem in loaded.problems)


def test_a_mistyped_set_name_does_not_quote_its_value():
    from ptfast.foundation import config
    loaded = config.load(os.devnull, override_path=os.devnull,
                         overrides=[f"PT_WEBHOOK_UR=https://hooks.example.com/{TOKEN}",
                                    f"https://hooks.example.com/{TOKEN}"])
    said = [str(problem) for problem in loaded.problems]
    assert len(said) == 2 and all(TOKEN not in line for line in said), said
    assert "unknown setting PT_WEBHOOK_UR; did you mean PT_WEBHOOK_URL?" in said[0]


@pytest.mark.parametrize("url", [
    f"https://hooks.example.com\\{TOKEN}/x",            # a backslash for a slash
    f"{TOKEN}:443/x",                                   # what is left of "...?a=b,TOKEN:443/x"
])
def test_a_token_where_the_scheme_or_host_would_be_is_not_shown(url):
    assert TOKEN.lower() not in destinations.shown_url(url).lower()
    problem = destinations.url_problem(url)
    assert problem is not None and TOKEN.lower() not in problem.lower()
    with pytest.raises(ValueError) as raised:
        destinations.check_urls(url)
    assert TOKEN.lower() not in str(raised.value).lower()


def test_a_receiver_dribbling_its_answer_is_cut_off_at_the_deadline(monkeypatch):
    """Each byte comes well within TIMEOUT, but the answer as a whole would take 20 s: the post
    gives up at DEADLINE (the server sees its connection cut before it finished)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    outcome = {}

    def dribble():
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(30)
            connection.recv(65536)
            try:
                for byte in b"HTTP/1.1 500 " + b"x" * 400:     # 400 x 0.05 s
                    connection.sendall(bytes([byte]))
                    time.sleep(0.05)
                connection.sendall(b"\r\nContent-Length: 0\r\n\r\n")
                outcome["finished"] = True
            except OSError:
                outcome["finished"] = False

    server = threading.Thread(target=dribble)
    server.start()
    monkeypatch.setattr(webhooks, "TIMEOUT", 30.0)
    monkeypatch.setattr(webhooks, "DEADLINE", 0.3, raising=False)
    port = listener.getsockname()[1]
    route = webhooks.Webhook(destinations.Destination(f"http://127.0.0.1:{port}/h/{TOKEN}",
                                                      destinations.JSON))
    try:
        with pytest.raises(webhooks.DeliveryError) as raised:
            route.deliver(b"{}")
    finally:
        server.join(60)
        listener.close()
    assert outcome == {"finished": False}
    assert "no complete answer within 0.3 s" in str(raised.value)
    assert raised.value.route_down and TOKEN not in str(raised.value)
    assert not any(isinstance(thread, threading.Timer) for thread in threading.enumerate())


def entries(destination, records: list, subject: str, hostname: str, lines: list) -> list:
    """The webhook's spool entries of an alert with this subject, host, records and lines."""
    alert = Alert(template="built-in", subject=subject, message=b"", lines=tuple(lines),
                  records=tuple(records), hostname=hostname, mail_entry="")
    return webhooks.Webhook(destination).entries(alert)


PHISHING = "[Your server is compromised: click to fix](https://evil.example/fix) # **@everyone**"


def _hook(form: str, lines: list, subject: str = "suspicious process") -> dict:
    [data] = entries(destinations.Destination("https://chat.example/h", form), [],
                     subject, "host", lines)
    return json.loads(json.loads(data)["body"])


def test_discord_gets_no_markup_from_a_process():
    """Discord webhooks render masked links, headings and bold: a process's command line must
    show as the text it is, every markdown character escaped with a backslash."""
    content = _hook("discord", [f"*Suspicious Process* PID:1 CMD:{PHISHING}"])["content"]
    unescaped = re.sub(r"\\.", "", content)          # what is left once escapes are taken out
    assert not set(unescaped) & set("*_~`|>#-[]()<@:\\"), unescaped
    assert re.sub(r"\\(.)", r"\1", content).endswith(f"CMD:{PHISHING}")


def test_teams_gets_no_markdown_from_a_process():
    """An Adaptive Card's TextBlock renders markdown links; its TextRuns do not."""
    card = _hook("teams", [f"*Suspicious Process* PID:1 CMD:{PHISHING}"])["attachments"][0]
    blocks = card["content"]["body"]
    assert {block["type"] for block in blocks} == {"RichTextBlock"}
    texts = [run["text"] for block in blocks for run in block["inlines"]]
    assert all(run["type"] == "TextRun" for block in blocks for run in block["inlines"])
    assert texts == ["host: suspicious process", f"*Suspicious Process* PID:1 CMD:{PHISHING}"]


def test_a_command_line_of_quotes_keeps_a_teams_post_under_its_size_limit():
    """Teams refuses a message over 28 KB (and ptfast would keep retrying it): escaped quotes and
    backslashes take two bytes each in JSON, so the cut is made on the post's bytes."""
    from ptfast.foundation.escape import escape_text
    line = "*Suspicious Process* PID:1 CMD:" + escape_text('"\\' * 4096)
    for lines in ([line], [line] * 5):
        [data] = entries(destinations.Destination("https://chat.example/h", "teams"),
                         [], "suspicious process", "host", lines)
        body = json.loads(data)["body"].encode()
        assert len(body) <= webhooks.MAX_POST_BYTES["teams"] < 28 * 1024
        text = "\n".join(run["text"] for block in json.loads(body)["attachments"][0]["content"]
                         ["body"] for run in block["inlines"])
        assert text.endswith("more characters: see the mail or the log")


def test_a_loopback_webhook_never_goes_through_http_proxy(monkeypatch):
    """Plain http is allowed only to loopback; an http_proxy in the environment (a cron job
    run from an admin's shell) would carry the alert and the token off the host in clear."""
    import socket

    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(1)
    proxy.settimeout(0)                     # accept() below must not wait
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.getsockname()[1]}")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.delenv("NO_PROXY", raising=False)
    try:
        with WebhookServer() as server:
            status, _said = webhooks.post(server.url(f"/hook/{TOKEN}"), b"{}", 5.0)
        with pytest.raises(BlockingIOError):
            proxy.accept()                  # nothing ever connected to the proxy
    finally:
        proxy.close()
    assert status == 204 and [path for path, _h, _b in server.posts] == [f"/hook/{TOKEN}"]


def test_a_telegram_url_cannot_turn_a_process_name_into_markup():
    """A careless admin copies "&parse_mode=HTML" into the URL: a process's <a href> must still
    arrive as text."""
    url = (f"https://api.telegram.org/bot{TOKEN}/sendMessage?chat_id=-100123&parse_mode=HTML"
           "&message_thread_id=7&entities=x&link_preview_options=y")
    [data] = entries(destinations.Destination(url, "telegram"), [], "suspicious",
                     "host", ['CMD:<a href="https://evil.example">fix</a>'])
    body = json.loads(json.loads(data)["body"])
    assert sorted(body) == ["chat_id", "link_preview_options", "message_thread_id", "text"]
    assert body["chat_id"] == "-100123" and '<a href="https://evil.example">' in body["text"]


def test_a_token_echoed_across_the_shown_part_of_an_answer_is_not_half_shown():
    with WebhookServer() as server:
        server.status = 400
        server.answer = "e" * (webhooks.ANSWER_SHOWN - 8) + "{path}"   # the cut in the token
        route = webhooks.Webhook(destinations.Destination(server.url(f"/{TOKEN}"),
                                                          destinations.JSON))
        with pytest.raises(webhooks.DeliveryError) as raised:
            route.deliver(b"{}")
    assert str(raised.value).startswith("HTTP 400: eeee")
    assert TOKEN[:5] not in str(raised.value), str(raised.value)


def test_a_route_that_takes_too_long_in_one_flush_waits_for_the_next_pass(tmp_path, monkeypatch):
    """Refused posts stay in the spool and are tried every pass: a receiver refusing each one
    slowly must not hold the pass until every one was tried. The clock is a stand-in that
    says each post took 50 s."""
    from ptfast.foundation import config
    from ptfast.channels import delivery
    from ptfast.channels.spool import WEBHOOK, Spool

    ticks = iter(range(0, 10_000, 50))     # read before and after each post: 50 s each
    monkeypatch.setattr(delivery, "clock", lambda: float(next(ticks)), raising=False)
    said: list = []
    with WebhookServer() as server:
        server.status, server.answer = 413, "too large"          # this post refused
        settings = config.load(os.devnull, override_path=os.devnull,
                               overrides=[f"PT_WEBHOOK_URL={server.url('/hook/' + TOKEN)}"])
        spool = Spool(str(tmp_path / "state"))
        [destination] = destinations.destinations(settings.settings.webhooks)
        for number in range(5):
            [data] = entries(destination, [{"n": number}], "", "host", [])
            spool.add(data, WEBHOOK)
        flushed = delivery.flush(spool, delivery.Channels(settings.settings), said.append)
    assert server.bodies() == [{"n": 0}, {"n": 1}, {"n": 2}]       # 0 to 50, 50 to 100, 100 to 150
    assert flushed.waiting == 5 and len(spool.pending()) == 5
    assert any(f"{delivery.ROUTE_BUDGET:g} s spent on it in this pass; 2 alert(s) kept" in line
               for line in said), said
    assert all(TOKEN not in line for line in said)
