"""csf.conf reading: lfd's syntax, and every setting ptfast reads, declared once (``Settings``:
default, kind, range, check, whose it is, meaning), with the slice of them each part reads.

Syntax, as lfd reads it: one ``NAME = "value"`` per line. Lines that start with ``#`` or with
white space, and blank lines, are comments; a line without ``=`` is ignored. A value not in
double quotes, or a name given twice, is an error. Names ptfast does not use (the firewall part of
csf.conf) are ignored.

Unlike lfd, a broken line does not stop ptfast: it is reported with file and line, and the
setting keeps its default. So is a number outside its setting's range (``Setting.limits``). A UTF-8
byte order mark before the first line is dropped. A config file must be a regular file of at most
MAX_INPUT_BYTES (a FIFO or a device would hang or flood the reader).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Generic, Mapping, TypeVar, cast, overload

from ptfast.foundation import destinations, safepaths, users
from ptfast.foundation.problems import Problem, problem_at
from ptfast.scan._corespec import PID_MAX_LIMIT
from ptfast.foundation.paths import DEFAULT_CONFIG_PATH, DEFAULT_OVERRIDE_PATH

# Directories whose presence marks a control-panel host (GENERIC then defaults to 0, as the
# panel installs of csf ship it).
PANEL_MARKERS = ("/var/cpanel/users", "/usr/local/directadmin/data/users",
                 "/usr/local/interworx", "/usr/local/cwpsrv")

INT, FLOAT, TEXT = "integer", "number", "text"

YEAR = 365 * 86400
FLAG = (0, 1)


def _absolute_path(name: str, suffix: str = ""):
    def check(text: str) -> None:
        if text.strip() and not text.strip().startswith("/"):
            raise ValueError(f"{name} must be an absolute path")
        if text.strip() and not text.strip().endswith(suffix):
            # node_exporter reads only *.prom; anything else named here (ptfast's own state,
            # a log, a system file) would be overwritten every pass for nothing
            raise ValueError(f"{name} must end with {suffix} (node_exporter's textfile "
                             "collector reads only those)")
    return check


#: A user name as useradd accepts it (and Samba's trailing $), at most 32 characters.
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,30}\$?")


def check_user_names(name: str):
    def check(text: str) -> None:
        for user in text.split(","):
            user = user.strip()
            if user and not _USER_NAME.fullmatch(user):
                shown = user if len(user) <= 40 else user[:40] + "..."
                raise ValueError(f"{name}: {shown!r} is not a user name (a comma separated "
                                 "list of names)")
    return check


Value = TypeVar("Value", int, float, str)


class Setting(Generic[Value]):
    """One setting, declared once: its default (whose type is the setting's kind), its range
    (numbers: outside it, the default is kept and the value reported; PT_INTERVAL="99999999999"
    once crashed the daemon after its first pass), the check of a text value (raises ValueError
    saying why, never quoting a secret), whose setting it is (``lfd``: lfd's, at home in
    csf.conf; else ptfast's own, at home in ptfast.conf; either file may set either) and what
    it means.

    Declared as a class attribute of ``Settings`` under its lfd name: on the class,
    ``Settings.PT_LIMIT`` is this declaration; on the settings in force, ``settings.PT_LIMIT``
    is the value, typed (an int here), so mypy catches a misspelt name."""

    def __init__(self, default: Value, limits: tuple[Value, Value] | None = None, *,
                 help: str, lfd: bool = True,
                 check: Callable[[str], None] | None = None) -> None:
        self.name = ""                  # the attribute's name, given by __set_name__
        self.default: Value = default
        self.kind = TEXT if isinstance(default, str) else FLOAT if isinstance(default, float) \
            else INT
        self.limits: tuple[Value, Value] | None = limits
        self.check = check
        self.lfd = lfd
        self.help = help

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, settings: None, owner: type) -> Setting[Value]: ...
    @overload
    def __get__(self, settings: Settings, owner: type) -> Value: ...

    def __get__(self, settings, owner):
        if settings is None:
            return self
        return settings._values[self.name]

    def convert(self, text: str) -> Value:
        """A raw value as this setting's type; ValueError says why not."""
        name, value = self.name, text.strip()
        if self.kind == TEXT:
            if self.check is not None:
                self.check(text)
            return cast(Value, text)
        shown = value if len(value) <= 40 else value[:40] + "..."
        if self.kind == INT:
            if not _INTEGER.fullmatch(value):
                raise ValueError(f"{name} must be a whole number, not '{shown}'")
        elif not _NUMBER.fullmatch(value):
            raise ValueError(f"{name} must be a number, not '{shown}'")
        assert self.limits is not None, name
        lowest, highest = cast("tuple[float, float]", self.limits)
        number = (int if self.kind == INT else float)(value) \
            if len(value) <= MAX_NUMBER_CHARS else None
        if number is None or not lowest <= number <= highest:
            raise ValueError(f"{name} must be between {lowest} and {highest}, not {shown}")
        return cast(Value, number)


class Settings:
    """The settings in force, typed and frozen: ``settings.PT_LIMIT`` is an int. Each
    attribute keeps the setting's lfd name, as admins write it in csf.conf and read it in
    ``check``, the log and the docs: one concept, one name, and a grep finds every use.
    Defaults are lfd's (spec section 2); the order is ``check``'s and the sample config's.
    Built once per load (``Config.settings``), with the slice each part reads."""

    PT_LIMIT = Setting(60, (0, YEAR), help="seconds a process must have run before its "
                       "sockets count; 0 in csf.conf: lfd handed tracking over (ptfast keeps "
                       "60); 0 in ptfast.conf or --set: tracking off (all checks but load)")
    PT_INTERVAL = Setting(60, (0, 86400), help="seconds between passes; under 10 means 60")
    PT_SKIP_HTTP = Setting(0, FLAG, help="1: skip what the web server started, and sockets on "
                           "local port 80 or 443 do not count")
    PT_ALL_USERS = Setting(0, FLAG, help="with GENERIC 0: 1 tracks every user but root")
    GENERIC = Setting(1, FLAG, help="1: every user is tracked; 0: the panel's accounts and "
                      "nobody (the default on a control-panel host)")
    PT_DELETED = Setting(0, FLAG, help="1: a deleted executable is a reason to report")
    PT_DELETED_ACTION = Setting("", help="program run as ACTION exe pid user ppid after a "
                                "deleted-executable report")
    PT_USERPROC = Setting(10, (0, PID_MAX_LIMIT), help="alert when a user runs more "
                          "processes; 0: off")
    PT_USERMEM = Setting(512, (0, 1 << 24), help="alert when a process's virtual size exceeds "
                         "this many MB; 0: off")            # 16 TiB at most
    PT_USERRSS = Setting(256, (0, 1 << 24), help="alert when a process's resident size "
                         "exceeds this many MB; 0: off")
    PT_USERTIME = Setting(1800, (0, 10 * YEAR), help="alert when a process has existed longer "
                          "than this many seconds; 0: off")
    PT_USERKILL = Setting(0, FLAG, help="1: kill what PT_USERPROC, PT_USERMEM, PT_USERRSS and "
                          "PT_USERTIME flag")
    PT_USERKILL_ALERT = Setting(1, FLAG, help="with PT_USERKILL, still send the alert")
    PT_USER_ACTION = Setting("", help="program run with the flagged PIDs, comma separated")
    PT_LOAD = Setting(30, (0, 86400), help="seconds between load checks; 0: off")
    # 1, 5 or 15; anything else in range means 5
    PT_LOAD_AVG = Setting(5, (1, 15), help="which load average: 1, 5 or 15 minutes")
    PT_LOAD_LEVEL = Setting(6.0, (0, 1_000_000), help="alert when that load average is at "
                            "or over this")
    PT_LOAD_SKIP = Setting(3600, (0, YEAR), help="seconds of quiet after a load alert")
    PT_LOAD_ACTION = Setting("", help="program run after a load alert")
    PT_APACHESTATUS = Setting("http://127.0.0.1/server-status", help="status page attached "
                              "to the load alert when it answers")
    PT_FORKBOMB = Setting(0, (0, PID_MAX_LIMIT), help="a session with this many processes is "
                          "a fork bomb; 0: off")
    PT_SSHDHUNG = Setting(0, FLAG, help="1: kill sshd children unauthenticated for over 60 s")
    PT_SERVICE_SOCKETS = Setting(1, FLAG, lfd=False, help="sockets a root service created and "
                                 "handed to its workers do not count; 0: every socket counts")
    PT_CONN_AGE = Setting(5, (0, 3600), lfd=False, help="seconds a connection must be held "
                          "before it counts (listeners count at once; a process that keeps "
                          "calling other hosts counts anyway); 0: every connection at once")
    PT_CUSTOMER_CODE_USERS = Setting(
        "", lfd=False, check=check_user_names("PT_CUSTOMER_CODE_USERS"),
        help="accounts (comma separated) besides the web server's and nobody that run "
             "customers' code")
    PT_DIGEST_AFTER = Setting(10, (0, PID_MAX_LIMIT), lfd=False, help="findings of one pass "
                              "mailed one by one; the rest in one digest; 0: every one alone")
    LF_ALERT_TO = Setting("", help="replaces the To: of every alert")
    LF_ALERT_FROM = Setting("", help="replaces the From: of every alert")
    LF_ALERT_SMTP = Setting("", help="send through this relay (host or host:port) instead of "
                            "SENDMAIL")
    SENDMAIL = Setting("/usr/sbin/sendmail", help="run as SENDMAIL -oi -f FROM -t, never "
                       "through a shell")
    LF_FLUSH = Setting(3600, (0, YEAR), help="seconds of quiet for a user after a PT_USERPROC "
                       "alert")
    SYSLOG = Setting(0, FLAG, help="1: every log line to syslog too, tagged lfd")
    # ptfast's own, for running a fleet
    PT_PASS_SUMMARY = Setting(1, FLAG, lfd=False, help="one log line per pass; 0: none")
    PT_METRICS_FILE = Setting("", lfd=False, check=_absolute_path("PT_METRICS_FILE", ".prom"),
                              help="absolute path ending in .prom: a Prometheus textfile "
                                   "written after each pass")
    PT_WEBHOOK_URL = Setting("", lfd=False, check=destinations.check_urls,
                             help="webhook URLs, comma separated")
    PT_WEBHOOK_FORMAT = Setting(destinations.JSON, lfd=False, check=destinations.check_formats,
                                help="json, slack, discord, teams or telegram: one for all "
                                     "URLs, or one per URL")

    __slots__ = ("_values", "service", "accounts", "actions", "load", "tracking", "mail",
                 "webhooks", "metrics")
    _values: dict[str, object]
    service: ServiceSettings
    accounts: users.AccountSettings
    actions: ActionSettings
    load: LoadSettings
    tracking: TrackingSettings
    mail: MailSettings
    webhooks: destinations.WebhookSettings
    metrics: MetricsSettings

    def __init__(self, values: Mapping[str, object]) -> None:
        missing = set(SETTINGS) - set(values)
        if missing:
            raise ValueError(f"settings without a value: {sorted(missing)}")
        init = partial(object.__setattr__, self)
        init("_values", {name: values[name] for name in SETTINGS})
        init("service", ServiceSettings(
            PT_LIMIT=self.PT_LIMIT, PT_LOAD=self.PT_LOAD, SYSLOG=bool(self.SYSLOG),
            PT_PASS_SUMMARY=bool(self.PT_PASS_SUMMARY), PT_INTERVAL=self.PT_INTERVAL,
            interval=(RAISED_INTERVAL if self.PT_INTERVAL < MIN_INTERVAL
                      else self.PT_INTERVAL)))
        init("accounts", users.AccountSettings(
            GENERIC=bool(self.GENERIC),
            PT_CUSTOMER_CODE_USERS=tuple(name.strip()
                                         for name in self.PT_CUSTOMER_CODE_USERS.split(",")
                                         if name.strip())))
        init("actions", ActionSettings(PT_DELETED_ACTION=self.PT_DELETED_ACTION.strip(),
                                       PT_USER_ACTION=self.PT_USER_ACTION.strip(),
                                       PT_LOAD_ACTION=self.PT_LOAD_ACTION.strip()))
        init("load", LoadSettings(
            PT_LOAD=self.PT_LOAD, PT_LOAD_LEVEL=self.PT_LOAD_LEVEL,
            PT_LOAD_SKIP=self.PT_LOAD_SKIP, PT_APACHESTATUS=self.PT_APACHESTATUS,
            minutes=self.PT_LOAD_AVG if self.PT_LOAD_AVG in (1, 5, 15) else 5))
        init("tracking", TrackingSettings(
            PT_LIMIT=self.PT_LIMIT, interval=self.service.interval, GENERIC=self.accounts.GENERIC,
            PT_ALL_USERS=bool(self.PT_ALL_USERS), PT_SKIP_HTTP=bool(self.PT_SKIP_HTTP),
            PT_DELETED=bool(self.PT_DELETED), PT_SERVICE_SOCKETS=bool(self.PT_SERVICE_SOCKETS),
            PT_CONN_AGE=self.PT_CONN_AGE,
            PT_USERPROC=self.PT_USERPROC, PT_USERMEM=self.PT_USERMEM,
            PT_USERRSS=self.PT_USERRSS, PT_USERTIME=self.PT_USERTIME,
            PT_USERKILL=bool(self.PT_USERKILL), PT_USERKILL_ALERT=bool(self.PT_USERKILL_ALERT),
            LF_FLUSH=self.LF_FLUSH, PT_FORKBOMB=self.PT_FORKBOMB,
            PT_SSHDHUNG=bool(self.PT_SSHDHUNG), PT_DIGEST_AFTER=self.PT_DIGEST_AFTER,
            load=self.load, actions=self.actions))
        init("mail", MailSettings(LF_ALERT_TO=self.LF_ALERT_TO, LF_ALERT_FROM=self.LF_ALERT_FROM,
                                  LF_ALERT_SMTP=self.LF_ALERT_SMTP.strip(),
                                  SENDMAIL=self.SENDMAIL.strip()))
        init("webhooks", destinations.WebhookSettings(PT_WEBHOOK_URL=self.PT_WEBHOOK_URL,
                                         PT_WEBHOOK_FORMAT=self.PT_WEBHOOK_FORMAT))
        init("metrics", MetricsSettings(PT_METRICS_FILE=self.PT_METRICS_FILE.strip()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"settings are frozen: a load builds new ones, not {name} = ...")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self._values == other._values

    __hash__ = None             # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"

    def value_of(self, setting: Setting) -> object:
        """The value of a setting met as a declaration (``check``'s listing walks them all)."""
        return self._values[setting.name]


#: name -> declaration, in declaration order: every setting ptfast reads.
SETTINGS: dict[str, Setting] = {name: declared for name, declared in vars(Settings).items()
                                if isinstance(declared, Setting)}

MIN_INTERVAL = 10           # lfd: PT_INTERVAL under 10 is raised to 60
RAISED_INTERVAL = 60


# -- each part's slice, built with the settings: a part reads only its own --------------------
# Values are taken as the part uses them (paths and relays stripped, flags as bool).

@dataclass(frozen=True)
class ServiceSettings:
    """The service's timing and log (commands/daemon.py)."""

    PT_LIMIT: int
    PT_INTERVAL: int                #: as given, for the log line that says it was raised
    interval: int                   #: PT_INTERVAL in force: under MIN_INTERVAL it is raised
    PT_LOAD: int
    SYSLOG: bool
    PT_PASS_SUMMARY: bool


@dataclass(frozen=True)
class ActionSettings:
    """The action scripts, each path stripped; empty: none (act/actions.py)."""

    PT_DELETED_ACTION: str
    PT_USER_ACTION: str
    PT_LOAD_ACTION: str


@dataclass(frozen=True)
class LoadSettings:
    """The load check and what its alert attaches (decide/checks/load.py, act/hostload.py)."""

    PT_LOAD: int
    PT_LOAD_LEVEL: float
    PT_LOAD_SKIP: int
    PT_APACHESTATUS: str
    minutes: int                    #: PT_LOAD_AVG in force: 1, 5 or 15 (anything else: 5)


@dataclass(frozen=True)
class TrackingSettings:
    """What the policy and its checks judge with (decide/policy.py, decide/judgement.py,
    decide/checks/: ``Judging.settings``)."""

    PT_LIMIT: int
    interval: int                   #: PT_INTERVAL in force (the service's slice says why)
    GENERIC: bool
    PT_ALL_USERS: bool
    PT_SKIP_HTTP: bool
    PT_DELETED: bool
    PT_SERVICE_SOCKETS: bool
    PT_CONN_AGE: int                #: seconds a connection is held before it counts
    PT_USERPROC: int
    PT_USERMEM: int
    PT_USERRSS: int
    PT_USERTIME: int
    PT_USERKILL: bool
    PT_USERKILL_ALERT: bool
    LF_FLUSH: int
    PT_FORKBOMB: int
    PT_SSHDHUNG: bool
    PT_DIGEST_AFTER: int
    load: LoadSettings
    actions: ActionSettings         #: the scripts a planned response names


@dataclass(frozen=True)
class MailSettings:
    """Mail delivery and the headers of every alert (channels/mail.py, act/respond.py)."""

    LF_ALERT_TO: str
    LF_ALERT_FROM: str
    LF_ALERT_SMTP: str
    SENDMAIL: str


@dataclass(frozen=True)
class MetricsSettings:
    """The Prometheus textfile; empty: none (channels/metrics.py)."""

    PT_METRICS_FILE: str


#: Settings of csf.conf that belong to lfd's other work, which ptfast leaves to lfd; ``check``
#: says so when one is switched on.
LEFT_TO_LFD = {
    "PT_SSHDKILL": "kills the sshd processes of IP addresses that lfd blocks; ptfast blocks no "
                   "addresses, so lfd keeps doing this (PT_SSHDHUNG is ptfast's)",
}

MAX_NUMBER_CHARS = 20           # more digits than any range needs: never parsed (int() of a
                                # million digits is slow)
#: csf.conf is about 100 KB; csf.pignore with its Includes may be larger
MAX_INPUT_BYTES = 16 << 20
BOM = "\ufeff"

_LINE = re.compile(r"([^=]*)=(.*)", re.DOTALL)
_QUOTED = re.compile(r'"(.*)"', re.DOTALL)
_INTEGER = re.compile(r"[0-9]+")
_NAME_LIKE = re.compile(r"[A-Za-z0-9_]{1,40}")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


@dataclass
class Config:
    """What a load found: the settings in force (``settings``, typed and frozen) and where
    each came from, the problems, what csf.conf itself says (lfd runs on it)."""

    #: name -> value while the files are read; ``settings`` is built from it at the end
    values: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)   # name -> "default" | "FILE:LINE" | "--set"
    problems: list = field(default_factory=list)
    #: LEFT_TO_LFD settings switched on, as (name, "FILE:LINE")
    left_to_lfd: list = field(default_factory=list)
    path: str | None = None
    override_path: str | None = None
    #: what csf.conf itself sets, as (value, "FILE:LINE"): lfd runs on it
    in_csf_conf: dict = field(default_factory=dict)
    settings: Settings = field(init=False)

    def settle(self) -> None:
        """The values read become the settings in force (once per load)."""
        self.settings = Settings(self.values)

    def where(self, setting: Setting) -> str:
        """Where ``setting`` was given: "default", "FILE:LINE" or "--set"."""
        return self.sources[setting.name]

    def problem_at(self, setting: Setting, message: str) -> Problem:
        """A problem with a setting, at the file and line that gave it."""
        return problem_at(self.where(setting), message)


def host_is_panel(markers=PANEL_MARKERS) -> bool:
    return any(os.path.exists(path) for path in markers)


def _defaults(panel: bool | None) -> Config:
    config = Config()
    for name, declared in SETTINGS.items():
        config.values[name] = declared.default
        config.sources[name] = "default"
    if panel if panel is not None else host_is_panel():
        config.values[Settings.GENERIC.name] = 0
    return config


def defaults(panel: bool | None = None) -> Config:
    config = _defaults(panel)
    config.settle()
    return config


def did_you_mean(name: str) -> str:
    """"; did you mean PT_LIMIT?" for a name close to a known setting's, else ""."""
    import difflib
    close = difflib.get_close_matches(name.upper(), SETTINGS, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_name(name: str) -> str:
    if name in LEFT_TO_LFD:
        return f"{name} is lfd's, not ptfast's: set it in csf.conf"
    return f"unknown setting {name}{did_you_mean(name)}"


def parse_lines(lines, path: str, config: Config, strict: bool = False) -> None:
    """Apply csf.conf lines to ``config.values``, recording every problem with its line number
    (``config.settle()`` then makes them the settings in force, as ``load`` does).
    ``strict`` (ptfast.conf, which holds only ptfast's settings): an unknown name is a fatal
    problem, not the firewall part of csf.conf to pass over."""
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line or line[0] in "# \t":
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            continue
        name = re.sub(r"\s", "", match.group(1))
        quoted = _QUOTED.search(match.group(2))
        if quoted is None:
            config.problems.append(Problem(path, number, f"invalid line, the value of {name} "
                                                         "must be in double quotes"))
            continue
        if name in seen:
            config.problems.append(Problem(path, number, f"{name} is repeated "
                                                         f"(first set on line {seen[name]})"))
            continue
        seen[name] = number
        if name in LEFT_TO_LFD and quoted.group(1).strip() not in ("", "0"):
            config.left_to_lfd.append((name, f"{path}:{number}"))
        if name not in SETTINGS:
            if strict:
                config.problems.append(Problem(path, number, unknown_name(name[:60]),
                                               fatal=True))
            continue
        try:
            config.values[name] = SETTINGS[name].convert(quoted.group(1))
        except ValueError as exc:
            config.problems.append(Problem(path, number, str(exc), consequence="using the "
                                           f"default {config.values[name]!r}"))
            continue
        config.sources[name] = f"{path}:{number}"


def read_lines(path: str) -> list:
    """The lines of a config or ignore file (a regular file of at most MAX_INPUT_BYTES), without
    a leading byte order mark. Raises OSError with a reason in ``strerror``."""
    data = safepaths.read_regular_file(path, MAX_INPUT_BYTES)
    text = data.decode("utf-8", "surrogateescape")
    if text.startswith(BOM):
        text = text[len(BOM):]
    return text.split("\n")


def unreadable_reason(exc: OSError) -> str:
    """Why a file could not be read, with the fix when it is a permission a non-root run
    lacks (after install-service, /etc/ptfast is root's)."""
    why = str(exc.strerror)
    if isinstance(exc, PermissionError) and os.geteuid() != 0:
        why += " (run ptfast as root)"
    return why


def _read_file(path: str, config: Config, strict: bool = False) -> None:
    try:
        lines = read_lines(path)
    except OSError as exc:
        config.problems.append(Problem(path, 0, f"cannot read: {unreadable_reason(exc)}",
                                       fatal=True))
        return
    parse_lines(lines, path, config, strict)


def load(path: str | None = None, overrides=(), panel: bool | None = None,
         override_path: str | None = None) -> Config:
    """Defaults, then csf.conf (``path``, default /etc/csf/csf.conf when it exists), then
    ptfast's own file (``override_path``, default /etc/ptfast/ptfast.conf when it exists), then
    ``overrides`` (``NAME=VALUE`` strings, from ``--set``).

    ``PT_LIMIT = "0"`` in csf.conf is how an admin switches lfd's tracking off to hand it to
    ptfast, so there it does not switch ptfast off: ptfast keeps its default unless its own file
    or ``--set`` gives PT_LIMIT (where 0 does disable it).
    """
    config = _defaults(panel)
    csf_conf = path if path is not None else DEFAULT_CONFIG_PATH
    if path is not None or os.path.exists(csf_conf):
        config.path = csf_conf
        _read_file(csf_conf, config)
        config.in_csf_conf = {name: (config.values[name], source)
                              for name, source in config.sources.items() if source != "default"}
        limit = Settings.PT_LIMIT
        if config.values[limit.name] == 0 and config.where(limit) != "default":
            config.sources[limit.name] = (f"default ({config.where(limit)} sets 0: "
                                          "lfd's tracking is off, ptfast's is on)")
            config.values[limit.name] = limit.default
    ptfast_conf = override_path if override_path is not None else DEFAULT_OVERRIDE_PATH
    if override_path is not None or os.path.exists(ptfast_conf):
        config.override_path = ptfast_conf
        _read_file(ptfast_conf, config, strict=True)
    for override in overrides:
        name, sep, value = override.partition("=")
        name = name.strip()
        # the name only, never the value (a webhook URL carries its token); an argument
        # without "=" only when it is a setting's name or close to one (else it may be a value)
        shown = name if _NAME_LIKE.fullmatch(name) else None
        if not sep:
            why = (f"{name} has no value: expected --set {name}=VALUE" if name in SETTINGS
                   else f"{name} is not NAME=VALUE; {unknown_name(name)}"
                   if shown and (did_you_mean(name) or name in LEFT_TO_LFD)
                   else "an argument is not NAME=VALUE (not shown: it may carry a secret)")
            config.problems.append(Problem("--set", 0, why, fatal=True))
            continue
        if name not in SETTINGS:
            why = (unknown_name(shown) if shown
                   else "an argument's name is not a setting name (expected NAME=VALUE)")
            config.problems.append(Problem("--set", 0, why, fatal=True))
            continue
        try:
            config.values[name] = SETTINGS[name].convert(value.strip().strip('"'))
        except ValueError as exc:
            config.problems.append(Problem("--set", 0, str(exc), fatal=True))
            continue
        config.sources[name] = "--set"
    _check_webhooks(config)
    config.settle()
    return config


def double_tracking(config: Config) -> list:
    """What lfd and ptfast would both do with these settings, so that every such alert comes
    twice (``check`` warns). lfd tracks while csf.conf's PT_LIMIT is not 0; its load check
    (PT_LOAD) runs whatever PT_LIMIT says."""
    warnings = []
    settings = config.settings
    lfd_limit = config.in_csf_conf.get(Settings.PT_LIMIT.name)
    if lfd_limit is not None and lfd_limit[0] != 0 and settings.PT_LIMIT > 0:
        warnings.append(f"lfd is still tracking processes ({lfd_limit[1]}: PT_LIMIT = "
                        f"\"{lfd_limit[0]}\"): with ptfast running, every alert comes twice; "
                        "set PT_LIMIT = \"0\" in csf.conf and restart lfd (csf -ra)")
    lfd_load = config.in_csf_conf.get(Settings.PT_LOAD.name)
    if lfd_load is not None and lfd_load[0] != 0 and settings.PT_LOAD > 0:
        warnings.append(f"lfd and ptfast both check the load average ({lfd_load[1]}: PT_LOAD = "
                        f"\"{lfd_load[0]}\"; ptfast's PT_LOAD is {settings.PT_LOAD}): every "
                        "load alert comes twice; leave it to lfd (PT_LOAD = \"0\" in "
                        "ptfast.conf) or hand it over (PT_LOAD = \"0\" in csf.conf, then "
                        "csf -ra)")
    return warnings


def _check_webhooks(config: Config) -> None:
    """Each URL with its format (one format for all, or one per URL); when they do not go
    together, no webhook at all rather than posts in a shape their receiver refuses."""
    urls, formats = Settings.PT_WEBHOOK_URL, Settings.PT_WEBHOOK_FORMAT
    try:
        destinations.pair(config.values[urls.name], config.values[formats.name])
    except ValueError as exc:
        config.problems.append(config.problem_at(urls, f"{exc}; no webhook is sent"))
        config.values[urls.name] = ""
