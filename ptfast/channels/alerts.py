"""Alert mails: lfd's templates, filled in, as a complete message ready for delivery; and the
alert rendered once for every channel (``render_alert``: a ptfast.channels.channel.Alert holding
the mail, its subject, the log lines and the event records).

A template is header lines (``From:``, ``To:``, ``Subject:``, ...), a blank line, then the body.
``[name]`` placeholders are replaced case-insensitively, in one pass, so a value that itself
contains ``[user]`` is not expanded again. Admins edit lfd's templates in /usr/local/csf/tpl/, so
those are used when present; otherwise ptfast's own (``ptfast/channels/templates/``), which have
the same placeholders.

Header safety: every attacker-chosen value is escaped to printable ASCII before it gets here
(``escape_text``), and in the header block any line break a value still carries becomes a space,
so no value can start a header of its own (no Bcc: injection through a process name).
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from dataclasses import dataclass
from email.header import Header

from ptfast.channels.channel import Alert
from ptfast.foundation.problems import Problem
from ptfast.foundation.safepaths import read_regular_file
from ptfast.foundation.paths import DEFAULT_TEMPLATE_DIR
from ptfast.decide.checks import ALERTING
from ptfast.decide.findings import DIGEST_TEMPLATE

#: check -> template file name (lfd's names), for the checks that mail; and ptfast's digest.
TEMPLATE_FILES = {**{name: check.template for name, check in ALERTING.items()},
                  "digest": DIGEST_TEMPLATE}

MAX_LINE = 990          # SMTP allows 998 octets a line; lfd wraps long lines too
MAX_HEADER_VALUE = 900
MAX_TEMPLATE_BYTES = 1 << 20
_PLACEHOLDER = re.compile(r"\[([A-Za-z0-9_]+)\]")
_HEADER = re.compile(r"([!-9;-~]+):[ \t]?(.*)")
_ADDRESS = re.compile(r"[A-Za-z0-9][\w.=+-]*(?:@[\w.-]+)?")


@dataclass
class Template:
    name: str
    source: str        # file path, or "built-in"
    headers: list      # [(name, raw value with placeholders)]
    body: str


def parse_template(text: str, name: str, source: str, problems: list) -> Template:
    """Split a template into header lines and body; malformed header lines become problems."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    headers: list = []
    body_start = len(lines)
    for number, line in enumerate(lines, start=1):
        if line == "":
            body_start = number
            break
        if line[0] in " \t" and headers:        # folded continuation of the previous header
            header_name, value = headers[-1]
            headers[-1] = (header_name, f"{value}\n{line}")
            continue
        match = _HEADER.fullmatch(line)
        if match is None:
            problems.append(Problem(source, number, "not a header line (Name: value) before "
                                                    "the blank line that starts the body; "
                                                    "line skipped"))
            continue
        headers.append((match.group(1), match.group(2)))
    body = "\n".join(lines[body_start:])
    return Template(name, source, headers, body)


def builtin_template_text(filename: str) -> str:
    # beside this module: importlib.resources would cost more to import than the file to read
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", filename)
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class Templates:
    """The alert templates by file name (lfd's: ``templates["processtracking.txt"]``): the
    admin's from ``directory`` when present, else ptfast's."""

    def __init__(self, directory: str | None = DEFAULT_TEMPLATE_DIR) -> None:
        self.problems: list = []
        self.by_file: dict[str, Template] = {}
        # each file once: checks may share one (an unheld listener mails as a suspicious
        # process), and its problems are said once
        for filename in dict.fromkeys(TEMPLATE_FILES.values()):
            self.by_file[filename] = self._load(directory, filename)

    def _load(self, directory: str | None, filename: str) -> Template:
        if directory:
            path = os.path.join(directory, filename)
            try:
                # a regular file of a sane size: a FIFO or a device here must not hang a pass
                text = read_regular_file(path, MAX_TEMPLATE_BYTES).decode("utf-8", "replace")
                return parse_template(text, filename, path, self.problems)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.problems.append(Problem(path, 0, f"cannot read ({exc.strerror}); using "
                                                      "ptfast's built-in template"))
        return parse_template(builtin_template_text(filename), filename, "built-in", [])

    def __getitem__(self, filename: str) -> Template:
        return self.by_file[filename]


def lfd_time(now: float | None = None) -> str:
    """lfd's [time]: Perl's scalar localtime, then the zone (``Thu Nov 26 13:19:02 2026 +0000``)."""
    moment = time.localtime(now)
    return f"{time.asctime(moment)} {time.strftime('%z', moment)}"


def fill(text: str, values: dict, one_line: bool = False) -> str:
    def replace(match: re.Match) -> str:
        value = values.get(match.group(1).lower())
        if value is None:
            return match.group(0)        # unknown placeholder: left as written, as lfd does
        value = str(value)
        return " ".join(value.splitlines()) if one_line else value
    return _PLACEHOLDER.sub(replace, text)


def wrap(body: str, width: int = MAX_LINE) -> str:
    """Lines longer than ``width`` cut into pieces of ``width``: linear in the body's length
    (slicing off the head of a long line over and over was quadratic)."""
    lines: list = []
    for line in body.split("\n"):
        lines.extend(line[start:start + width] for start in range(0, len(line), width))
        if not line:
            lines.append(line)
    return "\n".join(lines)


def envelope_sender(from_value: str) -> str:
    """The ``-f`` address: the address in From: when it is a plain one, else root (lfd's
    fallback)."""
    address = email.utils.parseaddr(from_value)[1]
    # a plain address only: anything else (a leading "-", spaces) could be read as an option
    return address if _ADDRESS.fullmatch(address) else "root"


def _header_value(value: str) -> str:
    if len(value) > MAX_HEADER_VALUE:
        value = value[:MAX_HEADER_VALUE] + "..."
    if not value.isascii():
        value = Header(value, "utf-8").encode()
    return value


def render(template: Template, values: dict, alert_to: str = "", alert_from: str = "",
           now: float | None = None) -> bytes:
    """The complete message (LF line ends): headers, then the wrapped body."""
    return _render(template, values, alert_to, alert_from, now)[0]


def render_alert(template: Template, values: dict, alert_to: str, alert_from: str, *,
                 lines: list, records: list, hostname: str, mail_entry: str,
                 now: float | None = None) -> Alert:
    """The alert, rendered once: the mail, and its subject as the mail says it (for the chat
    channels), with the log lines and event records of its findings."""
    message, subject = _render(template, values, alert_to, alert_from, now)
    return Alert(template=template.source, subject=subject, message=message,
                 lines=tuple(lines), records=tuple(records), hostname=hostname,
                 mail_entry=mail_entry)


def _subject(headers: list) -> str:
    """The first Subject: header's value as a reader of the mail sees it: cut as the header
    is, its folds undone."""
    for name, value in headers:
        if name.lower() == "subject":
            if len(value) > MAX_HEADER_VALUE:
                value = value[:MAX_HEADER_VALUE] + "..."
            return value.replace("\n", "").lstrip()
    return ""


def _render(template: Template, values: dict, alert_to: str, alert_from: str,
            now: float | None) -> tuple[bytes, str]:
    """(the complete message, its subject)."""
    values = {"time": lfd_time(now), **values}
    headers = []
    for name, raw in template.headers:
        lowered = name.lower()
        if lowered == "to" and alert_to:
            raw = alert_to
        elif lowered == "from" and alert_from:
            raw = alert_from
        value = "\n".join(fill(part, values, one_line=True) for part in raw.split("\n"))
        headers.append((name, value))
    present = {name.lower() for name, _ in headers}
    for name, default in (("From", alert_from or "root"), ("To", alert_to or "root")):
        if name.lower() not in present:
            headers.append((name, default))
    body = wrap(fill(template.body, values))
    if "date" not in present:
        headers.append(("Date", email.utils.formatdate(now, localtime=True)))
    if "message-id" not in present:
        headers.append(("Message-ID", email.utils.make_msgid(domain=values.get("hostname"))))
    if "content-type" not in present:
        headers.append(("MIME-Version", "1.0"))
        charset, encoding = ("us-ascii", "7bit") if body.isascii() else ("utf-8", "8bit")
        headers.append(("Content-Type", f"text/plain; charset={charset}"))
        headers.append(("Content-Transfer-Encoding", encoding))
    lines = [f"{name}: {_header_value(value)}" for name, value in headers]
    text = "\n".join(lines) + "\n\n" + body
    if not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8", "surrogateescape"), _subject(headers)
