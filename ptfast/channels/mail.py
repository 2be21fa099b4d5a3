"""Delivery of alert mails, through the SENDMAIL binary or the LF_ALERT_SMTP relay.

Mails wait in the spool (ptfast.channels.spool) until delivered; ptfast.channels.delivery hands
them to the Mail channel (ptfast.channels.channel.Channel), oldest first.
"""

from __future__ import annotations

import email.parser
import email.utils
import os
import shlex
import shutil
import subprocess

from ptfast.foundation import safepaths
from ptfast.channels.alerts import envelope_sender
from ptfast.channels.channel import Alert, Channel
from ptfast.channels.spool import MAIL
from ptfast.foundation.config import Config, MailSettings, Settings
from ptfast.foundation.escape import escape_text
from ptfast.foundation.problems import DeliveryError, Problem

SENDMAIL_TIMEOUT = 60
SMTP_TIMEOUT = 30


class MailError(DeliveryError):
    """A mail was not accepted: by SENDMAIL, or by the LF_ALERT_SMTP relay."""


def envelope(message: bytes) -> tuple[str, list[str]]:
    """(sender, recipients) from the message's own From:, To:, Cc: and Bcc: headers."""
    headers = email.parser.BytesHeaderParser().parsebytes(message)
    sender = envelope_sender(headers.get("From", ""))
    fields = [value for name in ("To", "Cc", "Bcc") for value in headers.get_all(name, [])]
    recipients = [address for _name, address in email.utils.getaddresses(fields) if address]
    return sender, recipients or ["root"]


def split_relay(relay: str) -> tuple[str, int]:
    """LF_ALERT_SMTP: ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    relay = relay.strip()
    if relay.startswith("["):
        host, _, rest = relay[1:].partition("]")
        port = rest.lstrip(":")
    elif relay.count(":") == 1:
        host, port = relay.split(":")
    else:
        host, port = relay, ""
    if port and not port.isdigit():
        raise MailError(f"LF_ALERT_SMTP {escape_text(relay)}: port is not a number")
    return host, int(port or 25)


def sendmail_problem(binary: str) -> str | None:
    """Why the SENDMAIL program must not run as root (a customer could change it); None when
    it may, or when it does not exist (delivery says so)."""
    try:
        program = shlex.split(binary)
    except ValueError:
        return None
    found = shutil.which(program[0]) if program else None
    if found is None:
        return None
    return safepaths.path_problem(found, safepaths.PROGRAM)


def send_with_sendmail(binary: str, message: bytes, timeout: float = SENDMAIL_TIMEOUT) -> str:
    sender, _recipients = envelope(message)
    # lfd hands SENDMAIL to a shell, so admins may have written options into it
    # ("/usr/sbin/sendmail -v"): split it as a shell would, but never run one.
    try:
        program = shlex.split(binary)
    except ValueError as exc:
        raise MailError(f"SENDMAIL {escape_text(binary)}: {exc}") from None
    if not program:
        raise MailError("SENDMAIL is empty")
    problem = sendmail_problem(binary)
    if problem:
        raise MailError(f"SENDMAIL {escape_text(binary)} not run: {escape_text(problem)}")
    # -t: recipients from the headers, as lfd; -oi: a line holding only "." does not end the
    # message early.
    command = [*program, "-oi", "-f", sender, "-t"]
    try:
        result = subprocess.run(command, input=message, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, timeout=timeout, close_fds=True)
    except FileNotFoundError:
        raise MailError(f"SENDMAIL {escape_text(binary)} does not exist") from None
    except PermissionError:
        raise MailError(f"SENDMAIL {escape_text(binary)} is not executable") from None
    except subprocess.TimeoutExpired:
        raise MailError(f"SENDMAIL {escape_text(binary)} did not finish within "
                            f"{timeout:g} s") from None
    except OSError as exc:
        raise MailError(f"SENDMAIL {escape_text(binary)}: {exc.strerror}") from None
    if result.returncode != 0:
        said = escape_text(result.stderr.decode("utf-8", "replace").strip()[-300:])
        raise MailError(f"SENDMAIL {escape_text(binary)} exited with status "
                            f"{result.returncode}" + (f": {said}" if said else ""),
                            route_down=False)
    return ""


def send_with_smtp(relay: str, message: bytes, timeout: float = SMTP_TIMEOUT) -> str:
    """Send through the relay; returns a note when some recipients were refused (the message
    counts as delivered then: sending it again would duplicate it for the others)."""
    import smtplib  # here: it loads ssl, 5 MB a daemon that delivers through sendmail never needs
    host, port = split_relay(relay)
    sender, recipients = envelope(message)
    wire = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            refused = smtp.sendmail(sender, recipients, wire)
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError(f"relay {escape_text(relay)} refused every recipient: "
                            f"{escape_text(str(list(exc.recipients)))}",
                            route_down=False) from None
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:   # this message only
        raise MailError(f"relay {escape_text(relay)} refused the message: "
                            f"{escape_text(str(exc))}", route_down=False) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"relay {escape_text(relay)}: "
                            f"{escape_text(str(exc) or type(exc).__name__)}") from None
    if refused:
        return (f"relay {escape_text(relay)} refused {escape_text(', '.join(refused))}; "
                "delivered to the other recipients")
    return ""


class Mail(Channel):
    """The mail channel: the alert's mail, through the LF_ALERT_SMTP relay when one is set,
    else the SENDMAIL program; raises MailError."""

    kind = MAIL
    key = MAIL      # one mail route: when it is down, every spooled mail waits

    def __init__(self, mail: MailSettings) -> None:
        self.relay = mail.LF_ALERT_SMTP
        self.sendmail = mail.SENDMAIL
        self.shown = f"relay {self.relay}" if self.relay else f"{self.sendmail}"

    def entries(self, alert: Alert) -> list[bytes]:
        return [alert.message]

    def deliver(self, entry: bytes) -> str:
        """Send the message ``entry``; returns a note for the log ("" when there is nothing
        to say)."""
        message = entry
        if self.relay:
            return send_with_smtp(self.relay, message)
        return send_with_sendmail(self.sendmail, message)


def sendmail_missing(binary: str) -> str | None:
    """Why SENDMAIL cannot be run at all (None when it can): what delivery would say on every
    pass, said once by ``ptfast check``."""
    try:
        program = shlex.split(binary)
    except ValueError as exc:
        return f"cannot be split into words ({exc})"
    if not program:
        return "is empty"
    name = program[0]
    if "/" not in name:
        return None if shutil.which(name) else f"{name} is not found in PATH"
    if not os.path.lexists(name):
        return "does not exist"
    if not os.path.isfile(name) or not os.access(name, os.X_OK):
        return "is not an executable file"
    return None


def relay_problem(relay: str) -> str | None:
    """What is wrong with LF_ALERT_SMTP's syntax (``host``, ``host:port``, ``[v6]:port``)."""
    try:
        host, port = split_relay(relay)
    except MailError:
        return "its port is not a number"
    if not host:
        return "has no host"
    if not 0 < port < 65536:
        return f"port {port} is outside 1-65535"
    if not host.isascii() or not all(char.isalnum() or char in ".-_:" for char in host):
        return "is not host, host:port or [IPv6 address]:port"
    return None


def mail_problems(config: Config) -> list:
    """Problems of the delivery route (for ``ptfast check``)."""
    relay = config.settings.mail.LF_ALERT_SMTP
    if relay:
        problem = relay_problem(relay)
        return [Problem(config.where(Settings.LF_ALERT_SMTP), 0,
                        f"LF_ALERT_SMTP {escape_text(relay)} {problem}")] if problem else []
    binary = config.settings.mail.SENDMAIL
    sendmail_given_at = config.where(Settings.SENDMAIL)
    missing = sendmail_missing(binary)
    if missing:
        return [Problem(sendmail_given_at, 0, f"SENDMAIL {escape_text(binary)} {missing}: no "
                                              "alert mail can be sent")]
    problem = sendmail_problem(binary)
    if problem:
        return [Problem(sendmail_given_at, 0, f"SENDMAIL {binary} will not be run: {problem}")]
    return []
