"""csf.conf reading: lfd's syntax, lfd's process-tracking settings and their defaults.

Syntax, as lfd reads it: one ``NAME = "value"`` per line. Lines that start with ``#`` or with
white space, and blank lines, are comments; a line without ``=`` is ignored. A value not in
double quotes, or a name given twice, is an error. Names ptfast does not use (the firewall part of
csf.conf) are ignored.

Unlike lfd, a broken line does not stop ptfast: it is reported with file and line, and the
setting keeps its default. So is a number outside its setting's range (``LIMITS``). A UTF-8
byte order mark before the first line is dropped. A config file must be a regular file of at most
MAX_INPUT_BYTES (a FIFO or a device would hang or flood the reader).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ptfast.foundation import destinations, safepaths
from ptfast.foundation.problems import Problem, problem_at
from ptfast.scan._corespec import PID_MAX_LIMIT
from ptfast.foundation.paths import DEFAULT_CONFIG_PATH, DEFAULT_OVERRIDE_PATH

# Directories whose presence marks a control-panel host (GENERIC then defaults to 0, as the
# panel installs of csf ship it).
PANEL_MARKERS = ("/var/cpanel/users", "/usr/local/directadmin/data/users",
                 "/usr/local/interworx", "/usr/local/cwpsrv")

INT, FLOAT, TEXT = "integer", "number", "text"

#: name -> (default, kind). Defaults are lfd's; see spec section 2.
SETTINGS: dict[str, tuple[object, str]] = {
    "PT_LIMIT": (60, INT),
    "PT_INTERVAL": (60, INT),
    "PT_SKIP_HTTP": (0, INT),
    "PT_ALL_USERS": (0, INT),
    "GENERIC": (1, INT),
    "PT_DELETED": (0, INT),
    "PT_DELETED_ACTION": ("", TEXT),
    "PT_USERPROC": (10, INT),
    "PT_USERMEM": (512, INT),
    "PT_USERRSS": (256, INT),
    "PT_USERTIME": (1800, INT),
    "PT_USERKILL": (0, INT),
    "PT_USERKILL_ALERT": (1, INT),
    "PT_USER_ACTION": ("", TEXT),
    "PT_LOAD": (30, INT),
    "PT_LOAD_AVG": (5, INT),
    "PT_LOAD_LEVEL": (6.0, FLOAT),
    "PT_LOAD_SKIP": (3600, INT),
    "PT_LOAD_ACTION": ("", TEXT),
    "PT_APACHESTATUS": ("http://127.0.0.1/server-status", TEXT),
    "PT_FORKBOMB": (0, INT),
    "PT_SSHDHUNG": (0, INT),
    # ptfast's own (ptfast.conf): lfd has no such settings
    "PT_SERVICE_SOCKETS": (1, INT),
    # accounts besides the web server's and nobody that run customers' code (comma separated)
    "PT_CUSTOMER_CODE_USERS": ("", TEXT),
    "PT_DIGEST_AFTER": (10, INT),
    "LF_ALERT_TO": ("", TEXT),
    "LF_ALERT_FROM": ("", TEXT),
    "LF_ALERT_SMTP": ("", TEXT),
    "SENDMAIL": ("/usr/sbin/sendmail", TEXT),
    "LF_FLUSH": (3600, INT),
    "SYSLOG": (0, INT),                 # lfd's: every log line to syslog too
    # ptfast's own, for running a fleet (ptfast.conf)
    "PT_PASS_SUMMARY": (1, INT),        # one log line per pass
    "PT_METRICS_FILE": ("", TEXT),      # Prometheus textfile; empty: none
    "PT_WEBHOOK_URL": ("", TEXT),       # comma separated
    "PT_WEBHOOK_FORMAT": (destinations.JSON, TEXT),
}

#: Settings of csf.conf that belong to lfd's other work, which ptfast leaves to lfd; ``check``
#: says so when one is switched on.
LEFT_TO_LFD = {
    "PT_SSHDKILL": "kills the sshd processes of IP addresses that lfd blocks; ptfast blocks no "
                   "addresses, so lfd keeps doing this (PT_SSHDHUNG is ptfast's)",
}

YEAR = 365 * 86400
FLAG = (0, 1)
#: name -> (lowest, highest) for every numeric setting; outside it, the default is kept and the
#: value is reported (PT_INTERVAL="99999999999" once crashed the daemon after its first pass)
LIMITS: dict[str, tuple] = {
    "PT_LIMIT": (0, YEAR),
    "PT_INTERVAL": (0, 86400),
    "PT_SKIP_HTTP": FLAG,
    "PT_ALL_USERS": FLAG,
    "GENERIC": FLAG,
    "PT_DELETED": FLAG,
    "PT_USERPROC": (0, PID_MAX_LIMIT),
    "PT_USERMEM": (0, 1 << 24),           # MB: 16 TiB
    "PT_USERRSS": (0, 1 << 24),
    "PT_USERTIME": (0, 10 * YEAR),
    "PT_USERKILL": FLAG,
    "PT_USERKILL_ALERT": FLAG,
    "PT_LOAD": (0, 86400),
    "PT_LOAD_AVG": (1, 15),               # 1, 5 or 15; anything else in range means 5
    "PT_LOAD_LEVEL": (0, 1_000_000),
    "PT_LOAD_SKIP": (0, YEAR),
    "PT_FORKBOMB": (0, PID_MAX_LIMIT),
    "PT_SSHDHUNG": FLAG,
    "PT_SERVICE_SOCKETS": FLAG,
    "PT_DIGEST_AFTER": (0, PID_MAX_LIMIT),
    "LF_FLUSH": (0, YEAR),
    "SYSLOG": FLAG,
    "PT_PASS_SUMMARY": FLAG,
}


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


#: name -> check of a text setting's value (raises ValueError saying why, never quoting a
#: secret); the default is kept when it fails
TEXT_CHECKS = {
    "PT_WEBHOOK_URL": destinations.check_urls,
    "PT_WEBHOOK_FORMAT": destinations.check_formats,
    "PT_METRICS_FILE": _absolute_path("PT_METRICS_FILE", ".prom"),
    "PT_CUSTOMER_CODE_USERS": check_user_names("PT_CUSTOMER_CODE_USERS"),
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
    """Effective settings; ``config["PT_LIMIT"]`` reads one under its lfd name."""

    values: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)   # name -> "default" | "FILE:LINE" | "--set"
    problems: list = field(default_factory=list)
    #: LEFT_TO_LFD settings switched on, as (name, "FILE:LINE")
    left_to_lfd: list = field(default_factory=list)
    path: str | None = None
    override_path: str | None = None
    #: what csf.conf itself sets, as (value, "FILE:LINE"): lfd runs on it
    in_csf_conf: dict = field(default_factory=dict)

    def __getitem__(self, name: str):
        return self.values[name]


MIN_INTERVAL = 10           # lfd: PT_INTERVAL under 10 is raised to 60
RAISED_INTERVAL = 60


def effective_interval(config: "Config") -> int:
    value = config["PT_INTERVAL"]
    return RAISED_INTERVAL if value < MIN_INTERVAL else value


def host_is_panel(markers=PANEL_MARKERS) -> bool:
    return any(os.path.exists(path) for path in markers)


def defaults(panel: bool | None = None) -> Config:
    config = Config()
    for name, (default, _kind) in SETTINGS.items():
        config.values[name] = default
        config.sources[name] = "default"
    if panel if panel is not None else host_is_panel():
        config.values["GENERIC"] = 0
    return config


def convert(name: str, text: str) -> object:
    """Turn a raw value into the setting's type; ValueError says why not."""
    _default, kind = SETTINGS[name]
    value = text.strip()
    if kind == TEXT:
        if name in TEXT_CHECKS:
            TEXT_CHECKS[name](text)
        return text
    shown = value if len(value) <= 40 else value[:40] + "..."
    if kind == INT:
        if not _INTEGER.fullmatch(value):
            raise ValueError(f"{name} must be a whole number, not '{shown}'")
    elif not _NUMBER.fullmatch(value):
        raise ValueError(f"{name} must be a number, not '{shown}'")
    lowest, highest = LIMITS[name]
    number = (int if kind == INT else float)(value) if len(value) <= MAX_NUMBER_CHARS else None
    if number is None or not lowest <= number <= highest:
        raise ValueError(f"{name} must be between {lowest} and {highest}, not {shown}")
    return number


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
    """Apply csf.conf lines to ``config``, recording every problem with its line number.
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
            config.values[name] = convert(name, quoted.group(1))
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
    config = defaults(panel)
    csf_conf = path if path is not None else DEFAULT_CONFIG_PATH
    if path is not None or os.path.exists(csf_conf):
        config.path = csf_conf
        _read_file(csf_conf, config)
        config.in_csf_conf = {name: (config.values[name], source)
                              for name, source in config.sources.items() if source != "default"}
        if config.values["PT_LIMIT"] == 0 and config.sources["PT_LIMIT"] != "default":
            config.sources["PT_LIMIT"] = (f"default ({config.sources['PT_LIMIT']} sets 0: "
                                          "lfd's tracking is off, ptfast's is on)")
            config.values["PT_LIMIT"] = SETTINGS["PT_LIMIT"][0]
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
            config.values[name] = convert(name, value.strip().strip('"'))
        except ValueError as exc:
            config.problems.append(Problem("--set", 0, str(exc), fatal=True))
            continue
        config.sources[name] = "--set"
    _check_webhooks(config)
    return config


def double_tracking(config: Config) -> list:
    """What lfd and ptfast would both do with these settings, so that every such alert comes
    twice (``check`` warns). lfd tracks while csf.conf's PT_LIMIT is not 0; its load check
    (PT_LOAD) runs whatever PT_LIMIT says."""
    warnings = []
    lfd_limit = config.in_csf_conf.get("PT_LIMIT")
    if lfd_limit is not None and lfd_limit[0] != 0 and config["PT_LIMIT"] > 0:
        warnings.append(f"lfd is still tracking processes ({lfd_limit[1]}: PT_LIMIT = "
                        f"\"{lfd_limit[0]}\"): with ptfast running, every alert comes twice; "
                        "set PT_LIMIT = \"0\" in csf.conf and restart lfd (csf -ra)")
    lfd_load = config.in_csf_conf.get("PT_LOAD")
    if lfd_load is not None and lfd_load[0] != 0 and config["PT_LOAD"] > 0:
        warnings.append(f"lfd and ptfast both check the load average ({lfd_load[1]}: PT_LOAD = "
                        f"\"{lfd_load[0]}\"; ptfast's PT_LOAD is {config['PT_LOAD']}): every "
                        "load alert comes twice; leave it to lfd (PT_LOAD = \"0\" in "
                        "ptfast.conf) or hand it over (PT_LOAD = \"0\" in csf.conf, then "
                        "csf -ra)")
    return warnings


def _check_webhooks(config: Config) -> None:
    """Each URL with its format (one format for all, or one per URL); when they do not go
    together, no webhook at all rather than posts in a shape their receiver refuses."""
    try:
        destinations.pair(config["PT_WEBHOOK_URL"], config["PT_WEBHOOK_FORMAT"])
    except ValueError as exc:
        config.problems.append(problem_at(config, "PT_WEBHOOK_URL", f"{exc}; no webhook is "
                                                                     "sent"))
        config.values["PT_WEBHOOK_URL"] = ""
