"""One pass is not a mail flood: the most severe findings are mailed one by one, the rest in
one digest mail (PT_DIGEST_AFTER), and how severe a finding is."""

from __future__ import annotations

import functools
import ipaddress
from typing import Callable

from ptfast.decide.checks.sockets import is_listening
from ptfast.decide.findings import (CHECK_FORKBOMB, CHECK_SUSPICIOUS, CHECK_UNHELD_LISTENER,
                                    DIGEST_TEMPLATE, REASON_INCOMPLETE, Finding)


#: severity() ranks, most severe first
OPEN_TO_NETWORK, CONCEALED, LOOPBACK_LISTENER, LOCAL_ONLY, USAGE = range(5)


def severity(finding: Finding, host_addresses: frozenset) -> int:
    """How urgently the admin must read about ``finding``: the order in which a pass's
    findings get their single mails (the first PT_DIGEST_AFTER) and the digest lists the rest.

    OPEN_TO_NETWORK: a counted listener on any address but loopback (one held by no process
        too: ranked by its socket like a suspicious process), or a counted socket whose
        peer is not this host: what a bind shell, a reverse shell or a bot's C2 channel is.
        A peer address that is no IP address (a packet socket's, a protocol ptfast cannot
        classify) counts as elsewhere: what cannot be told local is not ranked as local.
    CONCEALED: a fork bomb (the host's own availability, killed at once), or a process not
        fully inspected (what could not be read may be that listener).
    LOOPBACK_LISTENER: a listener only this host can reach (a tunnel's end, a dev server).
    LOCAL_ONLY: connections to this host's own services (loopback or ``host_addresses``: a
        site talking to its database), and deleted executables: most are an upgrade or a
        build, and they stay in the log and events file whatever their rank.
    USAGE: too many processes, too much memory or time: limits, not intrusions.

    Without this, the single mails went to the first findings in PID order: a customer's
    300 processes holding connections to the local database took them all, and the real
    backdoor, started later, reached the admin only inside the digest.
    """
    if finding.check == CHECK_FORKBOMB:
        return CONCEALED
    if finding.check not in (CHECK_SUSPICIOUS, CHECK_UNHELD_LISTENER):
        return USAGE
    rank = LOCAL_ONLY
    for sock, counts, _why in finding.judged_sockets:
        if not counts:
            continue
        if is_listening(sock):
            if not _is_loopback(sock.local_ip):
                return OPEN_TO_NETWORK
            rank = min(rank, LOOPBACK_LISTENER)
        elif not _is_this_host(sock.remote_ip, host_addresses):
            return OPEN_TO_NETWORK
    if REASON_INCOMPLETE in finding.reasons:
        rank = min(rank, CONCEALED)
    return rank


@functools.lru_cache(maxsize=4096)
def _address(text: str):
    # cached: a flood of processes holds thousands of sockets to the same few peers
    try:
        address = ipaddress.ip_address(text)
    except ValueError:          # a packet socket's interface, an unknown family: not an IP
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _is_loopback(ip: str) -> bool:
    address = _address(ip)
    return address is not None and address.is_loopback


def _is_this_host(ip: str, host_addresses: frozenset) -> bool:
    address = _address(ip)
    # unspecified: no peer at all (a socket bound but neither listening nor connected)
    return address is not None and (address.is_loopback or address.is_unspecified
                                    or address in host_addresses)


def digest_beyond(found: list, mails: int,
                  host_addresses: Callable[[], frozenset] = frozenset) -> list:
    """One pass is not a mail flood: the ``mails`` most severe findings that mail
    (PT_DIGEST_AFTER; ``severity``, then the accounts in turn, then lfd's order) are mailed
    one by one, as lfd does, the rest in one digest mail listing them, most severe first (0:
    every one on its own). Each is still logged, written to the events file and remembered.
    ``found`` keeps lfd's order; each mailing finding's ``severity`` is set when some go to
    the digest."""
    mailing = [finding for finding in found if finding.response.alert is not None]
    if mails <= 0 or len(mailing) <= mails:
        return found
    addresses = host_addresses()
    # within a rank, the accounts take turns: one account's flood of listeners cannot push
    # another account's backdoor of the same rank out of the single mails
    turns: dict = {}
    turn_of = {}
    for finding in mailing:
        finding.severity = severity(finding, addresses)
        account = (finding.severity, finding.user)
        turn_of[id(finding)] = turns[account] = turns.get(account, -1) + 1
    # sorted() is stable: within a rank and a turn, lfd's order
    for finding in sorted(mailing, key=lambda finding: (finding.severity,
                                                        turn_of[id(finding)]))[mails:]:
        finding.response.alert = DIGEST_TEMPLATE
    return found
    addresses = host_addresses()
    for finding in mailing:
        finding.severity = severity(finding, addresses)
    # sorted() is stable: within a rank, lfd's order
    for finding in sorted(mailing, key=lambda finding: finding.severity)[mails:]:
        finding.response.alert = DIGEST_TEMPLATE
    return found
