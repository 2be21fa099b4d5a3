"""PT_SKIP_HTTP: what is the web server's, which the suspicious check and the per-user counts
leave out."""

from __future__ import annotations

from ptfast.decide.checks.base import Judging

#: Executable names of web servers, for PT_SKIP_HTTP.
WEB_SERVER_NAMES = frozenset({"httpd", "apache", "apache2", "nginx", "litespeed", "lshttpd",
                              "openlitespeed"})
HTTP_PORTS = frozenset({80, 443})
#: The protocols PT_SKIP_HTTP's ports are web ports of: the tables lfd read (tcp, udp and their
#: IPv6 twins; UDP 443 is HTTP/3). An ICMP echo identifier, a raw socket's IP protocol or a
#: packet socket's ethertype of 80 is no web port (the cores give those no port at all).
HTTP_PROTOCOLS = frozenset({"tcp", "tcp6", "udp", "udp6"})


def is_web_server_child(policy: Judging, proc, by_pid: dict) -> bool:
    """PT_SKIP_HTTP: the process's group leader or parent is the web server."""
    for related in (by_pid.get(proc.pgrp), by_pid.get(proc.ppid)):
        if related is not None and policy.is_web_server(related):
            return True
    return False
