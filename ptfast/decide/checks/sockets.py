"""Sockets as the checks judge and show them: listening or not, and lfd's form of an endpoint.
Every attacker-chosen string is escaped here, once, before it reaches a log line or a template."""

from __future__ import annotations

from ptfast.foundation.escape import escape_text
from ptfast.scan._corespec import has_ports


def is_listening(sock) -> bool:
    """An open port waiting for peers: a TCP listener, or a UDP/raw socket not connected."""
    return sock.state == "LISTEN" or (sock.state == "UNCONN" and sock.remote_port == 0)


def endpoint(ip: str, port: int, ported: bool = True) -> str:
    """``ip:port``, ``[ip6]:port``; only ``ip`` for a protocol without ports (``ported``
    False: icmp, raw, packet, one the probe could not classify). Escaped, as a packet socket's
    interface name is anyone's choice in a network namespace of their own."""
    ip = escape_text(ip)
    if not ported:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def socket_endpoints(sock) -> tuple:
    """(local, remote) of ``sock`` as ``endpoint`` shows them."""
    ported = has_ports(sock.proto)
    return (endpoint(sock.local_ip, sock.local_port, ported),
            endpoint(sock.remote_ip, sock.remote_port, ported))


def socket_text(sock) -> str:
    """lfd's form, ``proto: local-ip:port -> remote-ip:port``, plus the state."""
    local, remote = socket_endpoints(sock)
    return f"{escape_text(sock.proto)}: {local} -> {remote} ({sock.state})"


def judged_socket_text(sock, counts: bool, why: str) -> str:
    return socket_text(sock) + ("" if counts else f" [not counted: {why}]")
