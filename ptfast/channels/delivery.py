"""Delivery of what waits in the spool, by the routes the settings give: mail (SENDMAIL or the
LF_ALERT_SMTP relay) and webhooks (PT_WEBHOOK_URL).

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

from ptfast.foundation.escape import escape_text
from ptfast.channels.mail import Mailer
from ptfast.channels.spool import MAIL, DeliveryError, Spool, channel_of
from ptfast.channels.webhooks import Webhooks

#: seconds one route may spend on one flush; past them, its entries left wait for the next
#: pass. Refused entries stay in the spool and are tried again every pass: without a bound, a
#: receiver refusing big posts slowly (a 413 for each), or a spool grown through an outage,
#: would hold the pass (and the next scan) for as long as it takes to try them all
ROUTE_BUDGET = 120.0
clock = time.monotonic


@dataclass
class Flushed:
    """What one flush did, by channel (MAIL, WEBHOOK)."""

    delivered: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)     # delivery attempts that failed
    #: ptfast's own entries left in the spool (refused, or behind a route that is down);
    #: files it will not send (not its own) are not counted
    waiting: int = 0
    kept: list = field(default_factory=list)     # their paths


class Routes:
    """The routes of one set of settings."""

    def __init__(self, config) -> None:
        self.mailer = Mailer(config)
        self.webhooks = Webhooks(config)

    def shown(self) -> list:
        """Every route as the log and the status show it: the mail route, then each webhook
        without its secrets."""
        return [self.mailer.route, *self.webhooks.shown()]

    def open(self, channel: str, data: bytes) -> tuple:
        """(route, payload) for a spooled entry; ValueError when it is not one ptfast wrote."""
        if channel == MAIL:
            return self.mailer, data
        return self.webhooks.open_entry(data)


def flush(spool: Spool, routes: Routes, log) -> Flushed:
    """Try every spooled entry, oldest first (see the module's docstring)."""
    result = Flushed()
    down: dict = {}         # route key -> [route, why, entries kept]
    spent: dict = {}        # route key -> seconds spent delivering, this flush
    directory = escape_text(spool.directory)
    for path in spool.pending():
        channel = channel_of(path)
        name = escape_text(os.path.basename(path))
        if channel == MAIL and routes.mailer.key in down:    # no need to read it
            down[routes.mailer.key][2] += 1
            result.waiting += 1
            result.kept.append(path)
            continue
        try:
            route, payload = routes.open(channel, spool.read(path))
        except (OSError, ValueError) as exc:     # not ptfast's own: never sent, not waiting
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            log(f"spooled alert {name} not sent: {escape_text(why)}; left in place")
            continue
        if route.key in down:
            down[route.key][2] += 1
            result.waiting += 1
            result.kept.append(path)
            continue
        if spent.get(route.key, 0.0) >= ROUTE_BUDGET:
            down[route.key] = [route, f"{ROUTE_BUDGET:g} s spent on it in this pass", 1]
            result.waiting += 1
            result.kept.append(path)
            continue
        started = clock()
        try:
            note = route.deliver(payload)
        except DeliveryError as exc:
            spent[route.key] = spent.get(route.key, 0.0) + clock() - started
            result.failed[channel] += 1
            result.waiting += 1
            result.kept.append(path)
            if exc.route_down:
                down[route.key] = [route, exc, 1]
            else:
                log(f"*Alert delivery failed* via {escape_text(route.shown)}: {exc}; "
                    f"{name} kept in {directory} for the next pass")
            continue
        spent[route.key] = spent.get(route.key, 0.0) + clock() - started
        if note:
            log(note)
        spool.remove(path)
        result.delivered[channel] += 1
    for route, why, kept in down.values():
        log(f"*Alert delivery failed* via {escape_text(route.shown)}: {why}; {kept} alert(s) "
            f"kept in {directory} for the next pass")
    return result
