"""The distribution's daemons the test bed runs, and installing the missing ones with apt-get.

Installing must not start anything: Debian's maintainer scripts start a daemon through
invoke-rc.d unless /usr/sbin/policy-rc.d says no (exit 101), and a daemon started that way would
run on the host's configuration and standard ports. So, while apt-get runs, a policy-rc.d that
denies every start is in place (the host's own when it already has one).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time


class Unavailable(Exception):
    """This host cannot hold the bed (not root, no apt, a package that will not install, busy
    ports...); the message says why, and the tests skip with it."""


class BedError(Exception):
    """The bed was built wrong or a daemon of it does not work: a failure, not a skip."""


#: daemon -> (apt packages, the program that shows it is installed)
DAEMONS = {
    "nginx": (("nginx",), "/usr/sbin/nginx"),
    "apache2": (("apache2",), "/usr/sbin/apache2"),
    "php-fpm": (("php-fpm", "php-mysql"), "/usr/sbin/php-fpm*"),
    "mariadb": (("mariadb-server", "mariadb-client"), "/usr/sbin/mariadbd"),
    "exim4": (("exim4-daemon-light",), "/usr/sbin/exim4"),
    "dovecot": (("dovecot-imapd", "dovecot-pop3d"), "/usr/sbin/dovecot"),
    "redis": (("redis-server",), "/usr/bin/redis-server"),
    "memcached": (("memcached",), "/usr/bin/memcached"),
    "pure-ftpd": (("pure-ftpd",), "/usr/sbin/pure-ftpd"),
    "bind9": (("bind9",), "/usr/sbin/named"),
    "openssh": (("openssh-server", "openssh-client"), "/usr/sbin/sshd"),
    # the attacks and customer apps: perl is in every Debian base system, node may be absent
    "perl": (("perl",), "/usr/bin/perl"),
}

#: daemons the bed does without when they are missing and it may not install them
#: (--no-install): a busy host has them, but ptfast's measurement does not rest on them
OPTIONAL = ("pure-ftpd", "bind9")

POLICY_RC_D = "/usr/sbin/policy-rc.d"
DENY_ALL_STARTS = ("#!/bin/sh\n# ptfast hosting test bed: no daemon starts while it installs\n"
                   "exit 101\n")
APT_LOCK_WAIT = ("-o", "DPkg::Lock::Timeout=600")     # other jobs on the machine may hold it


def program(daemon: str) -> str | None:
    """The installed program of ``daemon`` (php-fpm's name carries its version), or None."""
    matches = sorted(glob.glob(DAEMONS[daemon][1]))
    return matches[-1] if matches else None


def missing(daemons) -> list:
    return [daemon for daemon in daemons if program(daemon) is None]


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", *APT_LOCK_WAIT, *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


class _NoDaemonStarts:
    """A deny-all policy-rc.d while apt-get runs, unless the host already has one."""

    def __enter__(self):
        self.created = not os.path.exists(POLICY_RC_D)
        if self.created:
            with open(POLICY_RC_D, "w") as handle:
                handle.write(DENY_ALL_STARTS)
            os.chmod(POLICY_RC_D, 0o755)
        return self

    def __exit__(self, *exc):
        if self.created:
            os.unlink(POLICY_RC_D)


def install(daemons, timeout_each: float = 600) -> dict:
    """Install what ``daemons`` lack, one daemon at a time; {daemon: seconds} of each install
    (the package index update is under "apt-get update"). Raises Unavailable with the reason."""
    needed = missing(daemons)
    if not needed:
        return {}
    if os.geteuid() != 0:
        raise Unavailable(f"not root: cannot install {', '.join(needed)}")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"no apt-get on this host to install {', '.join(needed)}")
    timings = {}
    with _NoDaemonStarts():
        started = time.monotonic()
        try:
            result = _apt("update", timeout=timeout_each)
        except subprocess.TimeoutExpired:
            raise Unavailable("apt-get update timed out (no network?)") from None
        timings["apt-get update"] = time.monotonic() - started
        if result.returncode != 0:
            raise Unavailable(f"apt-get update failed: {result.stderr.strip()[-500:]}")
        for daemon in needed:
            started = time.monotonic()
            try:
                result = _apt("install", "-y", "--no-install-recommends", *DAEMONS[daemon][0],
                              timeout=timeout_each)
            except subprocess.TimeoutExpired:
                raise Unavailable(f"installing {daemon} timed out") from None
            timings[daemon] = time.monotonic() - started
            if result.returncode != 0 or program(daemon) is None:
                raise Unavailable(f"cannot install {daemon} ({' '.join(DAEMONS[daemon][0])}): "
                                  f"{(result.stderr or result.stdout).strip()[-500:]}")
    return timings
