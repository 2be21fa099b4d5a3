"""User names and tracked accounts: the password-database look-ups, done once per uid."""

from __future__ import annotations

import os
import pwd

from dataclasses import dataclass

from ptfast.foundation.problems import problem_at

CPANEL_USERS_DIR = "/var/cpanel/users"
DIRECTADMIN_USERS_DIR = "/usr/local/directadmin/data/users"


class UserNames:
    """uid -> name, cached (lfd looked each one up again for every process)."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}

    def __call__(self, uid: int) -> str:
        name = self._names.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:       # no passwd entry: show the number, as ls does
                name = str(uid)
            self._names[uid] = name
        return name


def panel_accounts(dirs=(CPANEL_USERS_DIR, DIRECTADMIN_USERS_DIR)) -> frozenset:
    """Account names of a control panel (one file or directory per account)."""
    names: set[str] = set()
    for directory in dirs:
        try:
            names.update(entry for entry in os.listdir(directory) if not entry.startswith("."))
        except OSError:
            continue
    return frozenset(names)


@dataclass(frozen=True)
class AccountSettings:
    """Whose processes are tracked and who runs customers' code: the slice of
    ``config.Settings`` that this module reads (declared here: safepaths, below config, uses
    this module)."""

    GENERIC: bool
    PT_CUSTOMER_CODE_USERS: tuple[str, ...]     #: the names, stripped, none empty


def accounts_to_track(accounts: AccountSettings) -> frozenset:
    """Panel accounts tracked besides nobody; none to list in generic mode (every user is)."""
    return frozenset() if accounts.GENERIC else panel_accounts()


LOGIN_DEFS = "/etc/login.defs"
DEFAULT_UID_MIN = 1000


def _login_defs(key: str, path: str) -> int:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == key and fields[1].isdigit():
                    return int(fields[1])
    except OSError:
        pass
    return DEFAULT_UID_MIN


def uid_min(path: str = LOGIN_DEFS) -> int:
    """UID_MIN of login.defs: accounts made by useradd start there; uids below it (and root)
    are the system's, which no customer ever is."""
    return _login_defs("UID_MIN", path)


def gid_min(path: str = LOGIN_DEFS) -> int:
    """GID_MIN of login.defs: groups below it are the system's (syslog, adm), no customer's."""
    return _login_defs("GID_MIN", path)


#: Accounts that web servers, PHP and CGI run customers' code as (Debian's www-data, EL's apache,
#: nobody for suexec-less setups and old cPanel, httpd for some builds): whatever runs as one of
#: them may be any customer's script, so no rule may trust them. PT_CUSTOMER_CODE_USERS names
#: more.
CUSTOMER_CODE_ACCOUNTS = ("www-data", "apache", "nobody", "httpd")


def _customer_code_uid_of(accounts: AccountSettings | None) -> dict:
    """name -> uid of each account that runs customers' code and exists on this host (one
    lookup a name: each is a walk of the passwd sources, a scan builds two policies)."""
    present = {}
    named = accounts.PT_CUSTOMER_CODE_USERS if accounts is not None else ()
    for name in (*CUSTOMER_CODE_ACCOUNTS, *named):
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:        # not on this host
            continue
        if uid != 0:
            present[name] = uid
    return present


def customer_code_accounts(accounts: AccountSettings | None = None) -> frozenset:
    """The names of the accounts that run customers' code and exist on this host:
    CUSTOMER_CODE_ACCOUNTS, and those PT_CUSTOMER_CODE_USERS names when ``accounts`` is given.
    Never root, whatever the setting says."""
    return frozenset(_customer_code_uid_of(accounts))


def customer_code_uids(accounts: AccountSettings) -> frozenset:
    """The uids of ``customer_code_accounts(accounts)``: a socket one of them created is a
    customer's, never a service's."""
    return frozenset(_customer_code_uid_of(accounts).values())


def customer_code_user_problems(accounts: AccountSettings, given_at: str) -> list:
    """``ptfast check``: each name of PT_CUSTOMER_CODE_USERS that is no account of this host
    (a typo would leave the account it meant a service's), or is root (never a customer)."""
    problems = []
    for name in accounts.PT_CUSTOMER_CODE_USERS:
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            problems.append(problem_at(given_at, f"PT_CUSTOMER_CODE_USERS: no account {name} "
                                                 "on this host"))
            continue
        if uid == 0:
            problems.append(problem_at(given_at, f"PT_CUSTOMER_CODE_USERS: {name} is root, "
                                                 "which runs no customer's code; ignored"))
    return problems
