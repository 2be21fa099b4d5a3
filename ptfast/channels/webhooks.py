"""Webhook alerts (PT_WEBHOOK_URL, PT_WEBHOOK_FORMAT): what each destination is sent, and the
HTTP POST that sends it.

Formats: ``json`` posts each event record exactly as the events file has it (one post per event,
digest or not: machines want every event); ``slack`` (``{"text"}``), ``discord``
(``{"content"}``, mentions off), ``teams`` (an Adaptive Card in a ``message``, as Workflows
webhooks take it) and ``telegram`` (Bot API sendMessage, ``chat_id`` from the URL) post one chat
message per alert: the mail's subject and the alert's log lines.

Each post is one spool entry (``*.hook``), written before the first attempt and removed once the
receiver answered 2xx: an outage keeps it, and the next pass sends it once. Answers: 2xx
delivered; 400, 413, 422 (this post refused) kept and logged, the next ones still tried; 429,
any other 4xx or 5xx, a redirect (never followed: the body would not follow), a timeout or no
connection: kept, and the destination's other posts wait for the next pass. Every network step
has TIMEOUT seconds, the whole exchange DEADLINE; https is verified against the system's CAs. A
URL is never logged whole (ptfast.foundation.destinations).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

import orjson

from ptfast.channels.channel import Alert, Channel
from ptfast.channels.spool import WEBHOOK
from ptfast.foundation.destinations import (DISCORD, JSON, SLACK, TEAMS, TELEGRAM, Destination,
                                            is_loopback, redact)
from ptfast.foundation.escape import escape_text
from ptfast.foundation.problems import DeliveryError

TIMEOUT = 10.0                  # seconds, for each network step of a post
DEADLINE = 30.0                 # seconds, for the whole of a post once connected
MAX_ANSWER_BYTES = 4096         # of a receiver's answer, read to say why it refused
ANSWER_SHOWN = 200              # characters of that answer in the log line
#: characters of a chat message (Discord's and Telegram's limits; Slack advises 4,000 for
#: text; a Teams card must stay under 28 KB)
CHAT_LIMITS = {SLACK: 3900, DISCORD: 2000, TEAMS: 20000, TELEGRAM: 4096}
REFUSED_THIS_POST = {400, 413, 422}
ENTRY_VERSION = 1


class WebhookError(DeliveryError):
    """A post was not accepted by its destination (said without the URL's secrets)."""


# -- what is sent -------------------------------------------------------------------------------
def chat_text(subject: str, hostname: str, lines: list, limit: int, escape=None) -> str:
    """The subject (with the host when it does not say it), then the log lines, each passed
    through ``escape`` (the service's markup), cut to ``limit`` characters with a note of what
    was left out."""
    head = subject if hostname and hostname in subject else f"{hostname}: {subject}"
    parts = [head, *lines]
    text = "\n".join(parts if escape is None else [escape(part) for part in parts])
    if len(text) <= limit:
        return text
    note = f"\n... {len(text) - limit} more characters: see the mail or the log"
    return text[:max(0, limit - len(note))] + note


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup (<!channel> would call everyone, <url|text> hide a
    # link): these three, only, as Slack's formatting guide says
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Discord's markdown: a backslash before any of these shows it as itself. A process may call
# itself "[Click to fix](https://...)" (a masked link, which webhooks render), "# " or "> "
# (headings, quotes), "||" (spoilers), "`" (code), "<@&id>" or "<t:...>"; mentions are off anyway
_DISCORD_MARKUP = frozenset("\\*_~`|>#-[]()<@:")


def _discord_escape(text: str) -> str:
    return "".join("\\" + char if char in _DISCORD_MARKUP else char for char in text)


_ESCAPES = {SLACK: _slack_escape, DISCORD: _discord_escape}
#: bytes of a whole post (a Teams message must stay under 28 KB; JSON doubles every quote and
#: backslash of the escaped text, which a command line can be full of)
MAX_POST_BYTES = {TEAMS: 24000}
#: sendMessage parameters taken from a telegram URL's query (the rest would change how the
#: text is read: parse_mode=HTML would turn a process's "<a href=...>" into a link)
TELEGRAM_PARAMETERS = frozenset({"chat_id", "message_thread_id", "disable_notification",
                                 "protect_content", "business_connection_id"})
DISCORD_SUPPRESS_EMBEDS = 1 << 2    # no preview fetched for a URL a process put in its name


def chat_payload(destination: Destination, text: str) -> dict:
    """The post for ``text`` (chat_text's, escaped for the service already)."""
    form = destination.form
    if form == SLACK:
        # no preview of a URL (or an image) a process put in its command line
        return {"text": text, "unfurl_links": False, "unfurl_media": False}
    if form == DISCORD:
        # no @everyone, @here or user mentions, whatever a process calls itself
        return {"content": text, "allowed_mentions": {"parse": []},
                "flags": DISCORD_SUPPRESS_EMBEDS}
    if form == TEAMS:
        # RichTextBlock's TextRuns: plain text (a TextBlock renders markdown, links included)
        head, *rest = text.split("\n")

        def block(line: str, **style) -> dict:
            return {"type": "RichTextBlock",
                    "inlines": [{"type": "TextRun", "text": line, **style}]}
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard", "version": "1.2",
                "body": [block(head, weight="Bolder"),
                         *(block(line, fontType="Monospace") for line in rest if line)]}
        return {"type": "message",
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                 "contentUrl": None, "content": card}]}
    if form == TELEGRAM:
        # the URL's parameters (chat_id, maybe message_thread_id) go in the body, only those of
        # TELEGRAM_PARAMETERS; no parse_mode: plain text, nothing in it is markup
        given = dict(parse_qsl(urlsplit(destination.url).query))
        return {**{key: value for key, value in given.items() if key in TELEGRAM_PARAMETERS},
                "text": text, "link_preview_options": {"is_disabled": True}}
    raise ValueError(f"{form} is not a chat format")


def chat_body(destination: Destination, subject: str, hostname: str, lines: list) -> bytes:
    """The chat message's post: within the service's characters, and its bytes."""
    form = destination.form
    limit, max_bytes = CHAT_LIMITS[form], MAX_POST_BYTES.get(form)
    while True:
        text = chat_text(subject, hostname, lines, limit, _ESCAPES.get(form))
        body = orjson.dumps(chat_payload(destination, text))
        if max_bytes is None or len(body) <= max_bytes or limit == 0:
            return body
        # in proportion (JSON may spend 2 bytes on a character), and always fewer
        limit = max(0, min(limit - 1, limit * max_bytes // len(body)))


def entry(destination: Destination, body: bytes) -> bytes:
    """A spool entry: the destination by its key (no secret), and the body to post."""
    return orjson.dumps({"version": ENTRY_VERSION, "destination": destination.key,
                         "shown": destination.shown, "body": body.decode()})


# -- how it is sent -----------------------------------------------------------------------------
def post_url(destination: Destination) -> str:
    """Telegram's parameters travel in the body; every other URL is posted to as written."""
    if destination.form != TELEGRAM:
        return destination.url
    parts = urlsplit(destination.url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class _Deadline:
    """The whole exchange of one post within ``seconds``: TIMEOUT bounds each network step,
    and a receiver dribbling its answer a byte at a time would never trip it. When the time is
    up, the connection is shut down (the socket itself, from a timer thread), so the read
    blocked on it ends at once."""

    def __init__(self, seconds: float) -> None:
        import threading
        self.seconds = seconds
        self.expired = False
        self._sockets: list = []
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def connection(self, base):
        """``base`` (HTTPConnection or HTTPSConnection), its socket watched once connected."""
        deadline = self

        class Watched(base):
            def connect(self):
                super().connect()
                deadline.watch(self.sock)
        return Watched

    def watch(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:            # the time ran out while connecting
                self._shut(sock)

    @staticmethod
    def _shut(sock) -> None:
        import socket
        if sock.fileno() < 0:           # closed already
            return
        try:
            # the plain socket's shutdown: an SSLSocket's would drop its TLS state under the
            # reader's feet
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()
        self._timer.join()


def post(url: str, body: bytes, timeout: float, deadline: float | None = None) -> tuple:
    """POST ``body`` as JSON; (status, the start of the answer). Redirects are not followed.
    Each network step has ``timeout`` seconds, the whole exchange ``deadline`` (DEADLINE).
    Raises OSError (no connection, timeout, TLS) or http.client.HTTPException."""
    import http.client
    import ssl              # here: 5 MB that a host without webhooks never loads
    import urllib.error
    import urllib.request

    from ptfast import __version__

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    limit = _Deadline(DEADLINE if deadline is None else deadline)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(limit.connection(http.client.HTTPConnection), req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(limit.connection(http.client.HTTPSConnection), req,
                                context=self._context)

    handlers = [NoRedirect(), HTTPHandler(), HTTPSHandler(context=ssl.create_default_context())]
    if is_loopback(urlsplit(url).hostname or ""):
        # never through http_proxy: plain http is allowed only because it stays on this host
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": f"ptfast/{__version__}"})
    with limit:
        try:
            with opener.open(request, timeout=timeout) as answer:
                if 200 <= answer.status < 300:
                    return answer.status, b""   # delivered: what it says next does not matter
                status, said = answer.status, _answer_start(answer)
        except urllib.error.HTTPError as exc:     # an answer all the same: 4xx, 5xx, 3xx
            try:
                status, said = exc.code, _answer_start(exc) if exc.fp is not None else b""
            finally:
                exc.close()
        except urllib.error.URLError as exc:
            reason = exc.reason
            if limit.expired:
                raise TimeoutError(f"no complete answer within {limit.seconds:g} s") from None
            raise OSError(str(reason) if not isinstance(reason, OSError) else
                          (reason.strerror or str(reason))) from None
        except (OSError, http.client.HTTPException):
            if limit.expired:
                raise TimeoutError(f"no complete answer within {limit.seconds:g} s") from None
            raise
    if limit.expired:       # a refusal cut short: its status line may be, too
        raise TimeoutError(f"no complete answer within {limit.seconds:g} s")
    return status, said


def _answer_start(answer) -> bytes:
    """The start of a refusal's answer, to say why; what could be read of it when it breaks
    off (the deadline, a reset): the status is what counts."""
    import http.client
    try:
        return answer.read(MAX_ANSWER_BYTES)
    except http.client.IncompleteRead as exc:
        return exc.partial[:MAX_ANSWER_BYTES]
    except (OSError, http.client.HTTPException, ValueError):
        return b""


class Webhook(Channel):
    """The channel to one destination of PT_WEBHOOK_URL, in its format; raises WebhookError."""

    kind = WEBHOOK

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.key = destination.key
        self.shown = destination.shown

    def entries(self, alert: Alert) -> list[bytes]:
        """One per event record for ``json``; one chat message (the subject and the log
        lines) otherwise."""
        if self.destination.form == JSON:
            return [entry(self.destination, orjson.dumps(record)) for record in alert.records]
        return [entry(self.destination, chat_body(self.destination, alert.subject,
                                                  alert.hostname, list(alert.lines)))]

    def _said(self, text: str) -> str:
        return escape_text(redact(text, self.destination.url))

    def deliver(self, body: bytes) -> str:
        try:
            status, answer = post(post_url(self.destination), body, TIMEOUT)
        except Exception as exc:    # OSError, HTTPException, ValueError: the route, not the post
            raise WebhookError(self._said(str(exc) or type(exc).__name__)) from None
        if 200 <= status < 300:
            return ""
        # the secrets cut out of the whole answer first: cut short first, a token echoed
        # across the cut would keep its start
        said = self._said(answer.decode("utf-8", "replace").strip())[:ANSWER_SHOWN]
        why = f"HTTP {status}" + (f": {said}" if said else "")
        if 300 <= status < 400:
            raise WebhookError(f"{why} (a redirect; not followed)")
        raise WebhookError(why, route_down=status not in REFUSED_THIS_POST)


class Gone(Channel):
    """A spooled post whose destination is no longer in PT_WEBHOOK_URL: kept (the admin may put
    it back, or delete the entry), never sent elsewhere."""

    kind = WEBHOOK

    def __init__(self, key: str, shown: str) -> None:
        self.key = key
        self.shown = shown

    def entries(self, alert: Alert) -> list[bytes]:
        return []           # nothing new is spooled for a destination that is gone

    def deliver(self, entry: bytes) -> str:
        raise WebhookError("this destination is no longer in PT_WEBHOOK_URL")


def open_entry(webhooks: dict, data: bytes) -> tuple:
    """(channel, body) of a spool entry, by ``webhooks`` (key -> Webhook): the destination's,
    or Gone; ValueError when it is not one ptfast wrote."""
    try:
        document = orjson.loads(data)
        key, shown, body = document["destination"], document["shown"], document["body"]
        if document.get("version") != ENTRY_VERSION or not all(
                isinstance(value, str) for value in (key, shown, body)):
            raise ValueError
    except (ValueError, TypeError, KeyError):
        raise ValueError("not a ptfast webhook entry") from None
    channel = webhooks.get(key)
    return (channel if channel is not None else Gone(key, escape_text(shown))), body.encode()
