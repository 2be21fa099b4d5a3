"""The channels (ptfast.channels.channel): an alert rendered once (Alert) and handed to mail and
every webhook; entries spooled by an earlier version still delivered; each channel's own error
type; the chat subject is the mail's rendered Subject, never the mail parsed back."""

import dataclasses
import email.policy
import hashlib
import json
import os
import string
import time

import pytest
from hypothesis import given, settings, strategies

from helpers.procs import start_copied_python
from helpers.service import LISTEN_ANY, WebhookServer, recorded_service
from helpers.uids import uid_for

from ptfast.channels import alerts, delivery, mail, webhooks
from ptfast.channels.channel import Alert, Channel
from ptfast.foundation import config, destinations
from ptfast.foundation.escape import escape_text
from ptfast.foundation.problems import DeliveryError

UID = uid_for(810)
TOKEN = "T0KEN-s3cr3t-channels"


@pytest.mark.needs_root
def test_entries_spooled_by_the_previous_version_are_delivered_after_an_upgrade(tmp_path):
    """A mail and a webhook post left in the spool by an earlier ptfast (an outage, then the
    upgrade), written here byte for byte in that version's format, are delivered once by the
    first pass, and the spool is empty after it."""
    service = recorded_service(tmp_path)            # tracks no one: only the spool is sent
    with WebhookServer() as server:
        url = server.url(f"/hook/{TOKEN}")
        spool = os.path.join(service.state_dir, "spool")
        os.makedirs(spool, mode=0o700)
        os.chmod(service.state_dir, 0o700)
        mail_name = "01796000000000000000-4242-000000.eml"
        hook_name = "01796000000000000001-4242-000001.hook"
        with open(os.path.join(spool, mail_name), "wb") as handle:
            handle.write(b"From: root\nTo: root\nSubject: ptfast on oldhost: suspicious process "
                         b"of user bob\nDate: Thu, 26 Nov 2026 13:19:02 +0000\nMessage-ID: "
                         b"<1@oldhost>\nMIME-Version: 1.0\nContent-Type: text/plain; "
                         b"charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\nspooled before "
                         b"the upgrade\n")
        # the webhook entry of format version 1: the destination by the first 24 hex digits of
        # its URL's SHA-256, how it is shown, and the body to post
        key = hashlib.sha256(url.encode()).hexdigest()[:24]
        body = json.dumps({"text": "oldhost: spooled before the upgrade"}, separators=(",", ":"))
        with open(os.path.join(spool, hook_name), "wb") as handle:
            handle.write(json.dumps({"version": 1, "destination": key,
                                     "shown": "webhook http://127.0.0.1 (slack)", "body": body},
                                    separators=(",", ":")).encode())
        result = service.run_once(service.sendmail, f"PT_WEBHOOK_URL={url}",
                                  "PT_WEBHOOK_FORMAT=slack")
        assert result.returncode == 0, result.stderr.decode()
        posts = list(server.posts)
    [sent] = service.recorder.calls()
    assert sent["parsed"]["Subject"] == "ptfast on oldhost: suspicious process of user bob"
    assert "spooled before the upgrade" in sent["parsed"].get_content()
    assert [(path, json.loads(posted)) for path, _headers, posted in posts] == [
        (f"/hook/{TOKEN}", {"text": "oldhost: spooled before the upgrade"})]
    assert service.spooled() == []
    assert "1 alert(s) delivered via webhook" in service.log()


@pytest.mark.needs_root
def test_a_path_in_the_subject_cannot_add_lines_to_a_chat_message(tmp_path):
    """An admin's template may put the executable in the Subject. A process named like an
    RFC 2047 encoded word (``=?utf-8?q?...=0A...?=``) is printable ASCII, so it reaches the
    header as written; the chat message must show it as written too. (The subject was once
    parsed back out of the mail, which decoded it into a line break and a forged line.)"""
    service = recorded_service(tmp_path, UID)
    os.makedirs(service.templates)
    with open(os.path.join(service.templates, "processtracking.txt"), "w") as handle:
        handle.write("From: root\nTo: root\nSubject: ptfast on [hostname]: [exe]\n\n[cmdline]\n")
    forged = "=?utf-8?q?x=0AKilled:_yes,_nothing_to_do?="
    child = start_copied_python(forged, LISTEN_ANY, uid=UID)
    try:
        time.sleep(1.2)                     # older than PT_LIMIT=1
        with WebhookServer() as server:
            result = service.run_once(service.sendmail, f"PT_WEBHOOK_URL={server.url('/h')}",
                                      "PT_WEBHOOK_FORMAT=slack")
            posts = list(server.posts)
    finally:
        child.stop()
    assert result.returncode == 0, result.stderr.decode()
    [(_path, _headers, posted)] = posts
    text = json.loads(posted)["text"]
    head, *_lines = text.split("\n")
    assert head.endswith(forged), text
    assert "Killed: yes" not in text
    [sent] = service.recorder.calls()
    assert sent["message"].split("\nSubject: ", 1)[1].split("\n", 1)[0] == head


# -- the interface ------------------------------------------------------------------------------
def _alert(**fields) -> Alert:
    return Alert(**{"template": "built-in", "subject": "ptfast on h: suspicious", "message":
                    b"Subject: ptfast on h: suspicious\n\nbody\n", "lines": ("line 1",),
                    "records": ({"n": 1}, {"n": 2}), "hostname": "h",
                    "mail_entry": "01796000000000000000-1-000000.eml", **fields})


def test_every_channel_declares_the_interface_and_makes_its_entries_from_the_alert():
    settings_ = config.load(os.devnull, override_path=os.devnull, overrides=[
        "SENDMAIL=/bin/true",
        "PT_WEBHOOK_URL=https://a.example/h/" + TOKEN + ",https://b.example/h/" + TOKEN,
        "PT_WEBHOOK_FORMAT=json,slack"])
    channels = delivery.Channels(settings_.settings)
    assert all(isinstance(channel, Channel) for channel in channels.all())
    assert [type(channel).__name__ for channel in channels.all()] == ["Mail", "Webhook",
                                                                     "Webhook"]
    assert all(TOKEN not in shown for shown in channels.shown())
    mail_channel, json_hook, slack_hook = channels.all()
    alert = _alert()
    assert mail_channel.entries(alert) == [alert.message]
    # json: one post per event record, each the record as the events file has it
    assert [json.loads(json.loads(data)["body"]) for data in json_hook.entries(alert)] == [
        {"n": 1}, {"n": 2}]
    [chat] = slack_hook.entries(alert)
    assert json.loads(json.loads(chat)["body"])["text"] == "ptfast on h: suspicious\nline 1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.subject = "changed"       # type: ignore[misc]


def test_each_channel_raises_its_own_delivery_error(tmp_path):
    missing = mail.Mail(config.load(os.devnull, override_path=os.devnull,
                                    overrides=[f"SENDMAIL={tmp_path}/no-sendmail"]).settings.mail)
    with pytest.raises(mail.MailError) as raised:
        missing.deliver(b"To: root\n\nx\n")
    assert isinstance(raised.value, DeliveryError) and raised.value.route_down
    gone = webhooks.Gone("abc", "webhook https://a.example (json)")
    with pytest.raises(webhooks.WebhookError) as refused:
        gone.deliver(b"{}")
    assert isinstance(refused.value, DeliveryError)
    assert not issubclass(mail.MailError, webhooks.WebhookError)
    assert not issubclass(webhooks.WebhookError, mail.MailError)


HEADER_TEMPLATES = ["Subject: ptfast on [hostname]: [user]",
                    "Subject:  two spaces  [user]  ",
                    "Subject: folded [user]\n\tand continued [hostname]",
                    "To: root\nsubject: lower case [user]\nSubject: a second one",
                    "To: root"]


@settings(max_examples=300, deadline=None)
@given(strategies.sampled_from(HEADER_TEMPLATES),
       strategies.text(string.printable + "\u00e9\u4e2d\u202e\x00\x1b", max_size=1200))
def test_the_subject_is_what_a_mail_reader_sees(template_text, value):
    """What the chat channels show as the subject is the Subject a mail reader sees (the first
    one, unfolded, cut as the header is) for every value an alert carries (escaped text)."""
    template = alerts.parse_template(template_text + "\n\nbody [user]\n", "t", "built-in", [])
    alert = alerts.render_alert(template, {"user": escape_text(value), "hostname": "h"}, "",
                                "", lines=[], records=[], hostname="h", mail_entry="")
    parsed = email.message_from_bytes(alert.message, policy=email.policy.default)
    assert alert.subject == str(parsed.get("Subject", ""))
