"""What every channel is given and what every channel must do.

An ``Alert`` is one alert rendered once (ptfast.channels.alerts.render_alert): the mail as it is
sent, its subject, the log lines and the event records. Each ``Channel`` (the mail route,
ptfast.channels.mail; each webhook destination, ptfast.channels.webhooks) makes its spool
entries from it, and later delivers each entry, raising its own ``DeliveryError`` subclass when
the entry was not accepted. ptfast.channels.delivery holds the channels of one set of settings:
it spools an alert for all of them, and sends what the spool holds.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Alert:
    """One alert, rendered once; every channel's entries are made from it."""

    template: str                   # the template's source: a path, or "built-in"
    subject: str                    # the mail's Subject, as rendered (unfolded, decoded)
    message: bytes                  # the whole mail, as sent
    lines: tuple[str, ...]          # the log lines of the alert's findings
    records: tuple[dict, ...]       # their event records, as the events file has them
    hostname: str
    #: the spool entry name of the mail: chosen before the records, which name it
    mail_entry: str


class Channel(abc.ABC):
    """A way out of the host for alerts: its entries wait in the spool until ``deliver``
    accepted them."""

    #: the spool's channel of its entries (spool.MAIL or spool.WEBHOOK: their extension)
    kind: ClassVar[str]
    #: what the spool knows it by: when one delivery says the channel is down, the other
    #: entries with this key wait for the next pass
    key: str
    #: how the log and the status show it: never a secret
    shown: str

    @abc.abstractmethod
    def entries(self, alert: Alert) -> list[bytes]:
        """What the spool keeps for ``alert``, one item per delivery."""

    @abc.abstractmethod
    def deliver(self, entry: bytes) -> str:
        """Send one spooled entry (an item ``entries`` made, read back from the spool); a note
        for the log ("" when there is nothing to say). Raises the channel's DeliveryError
        subclass (its ``route_down`` says whether the channel's other entries would fail too)."""
