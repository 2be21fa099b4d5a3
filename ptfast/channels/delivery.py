"""The channels the settings give (mail: SENDMAIL or the LF_ALERT_SMTP relay; a webhook for each
destination of PT_WEBHOOK_URL): an alert spooled for all of them, and what waits in the spool
delivered. (A channel is also called a route in what the admin reads: "delivered via ...".)

Entries go oldest first. A route that is down (relay unreachable, a timeout, a webhook that
refuses everything) is not tried again in the same flush: its entries wait for the next pass, and
the other routes go on. An entry refused on its own (a 5xx for that message, a 400 for that post)
is kept and logged, and the next ones are tried. A route that spent ROUTE_BUDGET seconds in one
flush waits for the next pass too. Nothing leaves the spool undelivered.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

from ptfast.channels import webhooks
from ptfast.channels.channel import Alert, Channel
from ptfast.channels.mail import Mail
from ptfast.channels.spool import MAIL, Spool, channel_of
from ptfast.channels.webhooks import Webhook
from ptfast.foundation.config import Settings
from ptfast.foundation.destinations import destinations
from ptfast.foundation.escape import escape_text
from ptfast.foundation.problems import DeliveryError

#: seconds one route may spend on one flush; past them, its entries left wait for the next
#: pass. Refused entries stay in the spool and are tried again every pass: without a bound, a
#: receiver refusing big posts slowly (a 413 for each), or a spool grown through an outage,
#: would hold the pass (and the next scan) for as long as it takes to try them all
ROUTE_BUDGET = 120.0
clock = time.monotonic


@dataclass
class Flushed:
    """What one flush did, by the spool's channel of the entries (MAIL, WEBHOOK)."""

    delivered: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)     # delivery attempts that failed
    #: ptfast's own entries left in the spool (refused, or behind a route that is down);
    #: files it will not send (not its own) are not counted
    waiting: int = 0
    kept: list = field(default_factory=list)     # their paths


class Channels:
    """The channels of one set of settings: mail, then each webhook."""

    def __init__(self, settings: Settings) -> None:
        self.mail = Mail(settings.mail)
        self.webhooks = {d.key: Webhook(d) for d in destinations(settings.webhooks)}

    def all(self) -> list[Channel]:
        return [self.mail, *self.webhooks.values()]

    def shown(self) -> list:
        """Every channel as the log and the status show it: the mail route, then each webhook
        without its secrets."""
        return [channel.shown for channel in self.all()]

    def spool(self, spool: Spool, alert: Alert) -> list[str]:
        """Every channel's entries of ``alert`` into the spool, the mail under the name its
        event records give (alert.mail_entry); their paths."""
        added = [spool.add(self.mail.entries(alert)[0], MAIL, alert.mail_entry)]
        for webhook in self.webhooks.values():
            added.extend(spool.add(data, webhook.kind) for data in webhook.entries(alert))
        return added

    def open(self, kind: str, data: bytes) -> tuple[Channel, bytes]:
        """(channel, entry) for a spooled entry of ``kind`` (spool.channel_of: MAIL or WEBHOOK);
        ValueError when it is not one ptfast wrote."""
        if kind == MAIL:
            return self.mail, data
        return webhooks.open_entry(self.webhooks, data)


def flush(spool: Spool, channels: Channels, log) -> Flushed:
    """Try every spooled entry, oldest first (see the module's docstring)."""
    result = Flushed()
    down: dict = {}         # channel key -> [channel, why, entries kept]
    spent: dict = {}        # channel key -> seconds spent delivering, this flush
    directory = escape_text(spool.directory)
    for path in spool.pending():
        kind = channel_of(path)
        name = escape_text(os.path.basename(path))
        if kind == MAIL and channels.mail.key in down:    # no need to read it
            down[channels.mail.key][2] += 1
            result.waiting += 1
            result.kept.append(path)
            continue
        try:
            channel, payload = channels.open(kind, spool.read(path))
        except (OSError, ValueError) as exc:     # not ptfast's own: never sent, not waiting
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            log(f"spooled alert {name} not sent: {escape_text(why)}; left in place")
            continue
        if channel.key in down:
            down[channel.key][2] += 1
            result.waiting += 1
            result.kept.append(path)
            continue
        if spent.get(channel.key, 0.0) >= ROUTE_BUDGET:
            down[channel.key] = [channel, f"{ROUTE_BUDGET:g} s spent on it in this pass", 1]
            result.waiting += 1
            result.kept.append(path)
            continue
        started = clock()
        try:
            note = channel.deliver(payload)
        except DeliveryError as exc:
            spent[channel.key] = spent.get(channel.key, 0.0) + clock() - started
            result.failed[kind] += 1
            result.waiting += 1
            result.kept.append(path)
            if exc.route_down:
                down[channel.key] = [channel, exc, 1]
            else:
                log(f"*Alert delivery failed* via {escape_text(channel.shown)}: {exc}; "
                    f"{name} kept in {directory} for the next pass")
            continue
        spent[channel.key] = spent.get(channel.key, 0.0) + clock() - started
        if note:
            log(note)
        spool.remove(path)
        result.delivered[kind] += 1
    for channel, why, kept in down.values():
        log(f"*Alert delivery failed* via {escape_text(channel.shown)}: {why}; {kept} alert(s) "
            f"kept in {directory} for the next pass")
    return result
