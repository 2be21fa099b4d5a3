"""PT_WEBHOOK_URL and PT_WEBHOOK_FORMAT: where webhook alerts go, checked when the settings are
read, and how a destination is named where people can see it.

A webhook URL usually carries its secret (Slack's and Discord's in the path, Telegram's bot token
in the path, Teams' ``sig=`` in the query), so a destination is only ever *shown* as its scheme
and host (``https://hooks.slack.com/...``): in log lines, problems, ``ptfast status`` and events.
The full URL lives in the config file and in memory only; spool entries name their destination
by a digest of it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from ptfast.foundation.problems import Problem

JSON, SLACK, DISCORD, TEAMS, TELEGRAM = "json", "slack", "discord", "teams", "telegram"
FORMATS = (JSON, SLACK, DISCORD, TEAMS, TELEGRAM)
MAX_URLS = 16
# secrets shorter than this are not worth hiding (and would blank out every "/" or "1")
MIN_SECRET_CHARS = 4
# what a mistyped format may look like, and be quoted back: a short word, never a URL
# a host name or an IP address (urlsplit's hostname: brackets off, lower case)
_HOST = re.compile(r"[a-z0-9._-]+|[0-9a-f:.]+")
_FORMAT_LIKE = re.compile(r"[A-Za-z0-9_-]{1,20}")


def split_list(text: str) -> list:
    return [part.strip() for part in text.split(",") if part.strip()]


def shown_url(url: str) -> str:
    """The URL without anything that may be secret: scheme and host (port) only."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "(an invalid URL)"
    # a mistyped URL can put its token where the scheme or the host would be
    # ("https://hooks.example.com\\TOKEN/...", "abc,TOKEN:123" split at the comma)
    scheme = parts.scheme if parts.scheme in ("https", "http") else "?"
    if not _HOST.fullmatch(host):
        host = "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}{f':{port}' if port else ''}/..."


def secrets_of(url: str) -> list:
    """Every part of ``url`` that may be a secret, longest first."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    pieces = {url, parts.netloc, parts.path, parts.query, parts.fragment}
    pieces.update(parts.path.split("/"))
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        pieces.update((name, value))
    if parts.username or parts.password:
        pieces.update((parts.username or "", parts.password or ""))
    return sorted((piece for piece in pieces if len(piece) >= MIN_SECRET_CHARS), key=len,
                  reverse=True)


def redact(text: str, url: str) -> str:
    """``text`` (an error message, a server's answer) with every secret of ``url`` cut out."""
    for secret in secrets_of(url):
        text = text.replace(secret, "[redacted]")
    return text


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, form: str = JSON) -> str | None:
    """Why ``url`` cannot be a webhook of format ``form``; None when it can. Never quotes the
    URL beyond ``shown_url``."""
    if not url.isascii() or not url.isprintable() or " " in url:
        return "has spaces, control or non-ASCII characters (percent-encode them)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({'bad port' if 'port' in str(exc) else 'bad host'})"
    if parts.scheme not in ("https", "http"):
        return "must start with https://"
    host = parts.hostname
    if not host:
        return "has no host"
    if not _HOST.fullmatch(host):
        return "has a host that is not a name or an IP address"
    if parts.username is not None or parts.password is not None:
        return "carries user:password@, which ptfast does not send; use the token the service gives"
    if port == 0:
        return "has port 0"
    if parts.scheme == "http" and not is_loopback(host):
        return ("is plain http to another host: the alert, and any token in the URL, would "
                "cross the network in clear (use https; http is for a loopback address only)")
    if form == TELEGRAM and "chat_id" not in dict(parse_qsl(parts.query)):
        return ("is for telegram but has no ?chat_id=: write it as "
                "https://api.telegram.org/botTOKEN/sendMessage?chat_id=ID")
    return None


def check_urls(text: str) -> None:
    """PT_WEBHOOK_URL's value: ValueError (with every URL shown, never whole) unless each URL is
    usable (whatever the format; config.check_webhooks then checks them against it)."""
    urls = split_list(text)
    if len(urls) > MAX_URLS:
        raise ValueError(f"PT_WEBHOOK_URL has {len(urls)} URLs, more than {MAX_URLS}")
    for url in urls:
        problem = url_problem(url)
        if problem:
            raise ValueError(f"PT_WEBHOOK_URL {shown_url(url)} {problem}")


def check_formats(text: str) -> None:
    for form in split_list(text):
        if form not in FORMATS:
            # quoted only when it looks like a format name: a URL written here by mistake (the
            # two settings swapped) carries its token, and problems go to the log
            shown = f"{form!r}" if _FORMAT_LIKE.fullmatch(form) else "has a value that"
            raise ValueError(f"PT_WEBHOOK_FORMAT {shown} is not one of {', '.join(FORMATS)}")
    if not split_list(text):
        raise ValueError(f"PT_WEBHOOK_FORMAT is empty: use one of {', '.join(FORMATS)}")


@dataclass(frozen=True)
class Destination:
    """One webhook: its URL (secret) and the format of what it is sent."""

    url: str
    form: str

    @property
    def key(self) -> str:
        """How spool entries name it: a digest, so that no secret is written there."""
        import hashlib      # here: 4 MB that every command reading the config would pay
        return hashlib.sha256(self.url.encode()).hexdigest()[:24]

    @property
    def shown(self) -> str:
        return f"webhook {shown_url(self.url)} ({self.form})"


def pair(urls_text: str, formats_text: str) -> list:
    """Destinations from the two settings: one format for every URL, or one per URL, in order.
    ValueError when they do not pair, or when a URL does not suit its format."""
    urls, forms = split_list(urls_text), split_list(formats_text) or [JSON]
    if len(forms) == 1:
        forms = forms * len(urls)
    elif len(forms) != len(urls):
        raise ValueError(f"PT_WEBHOOK_FORMAT lists {len(forms)} formats for {len(urls)} "
                         "PT_WEBHOOK_URL URLs: give one format for all, or one per URL")
    destinations = [Destination(url, form) for url, form in zip(urls, forms)]
    for destination in destinations:
        problem = url_problem(destination.url, destination.form)
        if problem:
            raise ValueError(f"PT_WEBHOOK_URL {shown_url(destination.url)} {problem}")
    return destinations


def destinations(webhooks: WebhookSettings) -> list:
    """The webhooks of settings already checked (config.load dropped what did not pair)."""
    try:
        return pair(webhooks.PT_WEBHOOK_URL, webhooks.PT_WEBHOOK_FORMAT)
    except ValueError:
        return []


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook settings, the slice of ``config.Settings`` that webhooks read (declared here:
    config reads its checks from this module)."""

    PT_WEBHOOK_URL: str
    PT_WEBHOOK_FORMAT: str


def unprivileged_port_start(path: str = "/proc/sys/net/ipv4/ip_unprivileged_port_start") -> int:
    """The lowest port any user may listen on (1024 unless the admin changed it)."""
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return 1024


def webhook_problems(webhooks: WebhookSettings, given_at: str) -> list:
    """What ``ptfast check`` says of the webhooks beyond their syntax: a plain-http loopback URL
    on a port every user of this host may listen on. When the receiver there is down (a
    restart, a crash), a customer's process can take the port and be sent every alert, about
    every customer, with the URL's token; on loopback the connection is not private either."""
    lowest = unprivileged_port_start()
    problems = []
    for destination in destinations(webhooks):
        parts = urlsplit(destination.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme == "http" and port >= lowest:
            problems.append(Problem(
                given_at, 0,
                f"PT_WEBHOOK_URL {shown_url(destination.url)}: port {port} is one any user may "
                f"listen on (from {lowest}); while the receiver is down, a customer's process "
                "could take it and be sent the alerts and the URL's token: use https, or a port "
                f"under {lowest}"))
    return problems
