"""``ptfast install-service``: the files that make this installation of ptfast a service.

For the ptfast that runs the command (a venv such as /opt/ptfast, pipx, /usr/local) it writes
the systemd unit whose ExecStart names that ptfast, a logrotate file for its two logs, a
commented sample /etc/ptfast/ptfast.conf (only where none exists: an admin's file is never
written over), the man page and bash completion. Running it again rewrites only what differs;
``--dry-run`` shows what it would write; ``--uninstall`` removes what it wrote (ptfast.conf only
while it is still the untouched sample) and leaves the state and the logs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from importlib import resources

from ptfast import __version__
from ptfast.foundation.paths import (DEFAULT_EVENTS_FILE, DEFAULT_LOG_FILE, DEFAULT_OVERRIDE_PATH,
                                     DEFAULT_STATE_DIR)
from ptfast.foundation.safepaths import write_atomically

UNIT_PATH = "/etc/systemd/system/ptfast.service"
LOGROTATE_PATH = "/etc/logrotate.d/ptfast"
MAN_PAGE_PATH = "/usr/local/share/man/man8/ptfast.8"
# bash-completion 2 looks here ($XDG_DATA_DIRS) for a command's completion on first use
COMPLETION_PATH = "/usr/local/share/bash-completion/completions/ptfast"
SYSTEMD_RUNNING = "/run/systemd/system"       # sd_booted(): present only under systemd
#: what `systemctl enable ptfast` creates (WantedBy=multi-user.target)
WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/ptfast.service"
# directories install-service may have created; --uninstall removes them once empty, deepest first
OWN_DIRECTORIES = ("/etc/ptfast", "/usr/local/share/man/man8",
                   "/usr/local/share/bash-completion/completions",
                   "/usr/local/share/bash-completion")


@dataclass(frozen=True)
class ServiceFile:
    path: str                   # where it goes on the host
    text: str
    mode: int
    summary: str = ""           # shown by --dry-run instead of the text (long generated files)
    keep_existing: bool = False  # the admin's copy wins; removed only while untouched


def ptfast_command() -> list:
    """The command that starts this installation of ptfast, as absolute paths.

    The script the admin ran, else the one installed beside this interpreter, else the
    interpreter itself with ``-m ptfast``. A script that is a symlink (pipx's ~/.local/bin)
    is named by its target, inside its own environment; links above it (/opt/ptfast pointing
    at a versioned directory) are kept, and so is a venv's python, a symlink that must not be
    resolved.
    """
    ran = sys.argv[0] if sys.argv else ""
    candidates = [ran] if os.path.basename(ran) == "ptfast" else []
    candidates.append(os.path.join(sysconfig.get_path("scripts"), "ptfast"))
    for script in candidates:
        if os.path.isfile(script) and os.access(script, os.X_OK):
            return [os.path.realpath(script) if os.path.islink(script)
                    else os.path.abspath(script)]
    return [os.path.abspath(sys.executable), "-m", "ptfast"]


def systemd_word(word: str) -> str:
    """One word of an ExecStart= line: % and $ are systemd's, quotes where needed."""
    word = word.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def packaged_text(name: str) -> str:
    return resources.files("ptfast").joinpath("service", name).read_text(encoding="utf-8")


def unit_text(command: list) -> str:
    return packaged_text("ptfast.service").replace(
        "@PTFAST@", " ".join(systemd_word(word) for word in command))


def sample_config_text() -> str:
    """A commented ptfast.conf listing every setting ptfast reads, with lfd's default."""
    from ptfast.foundation.config import SETTINGS
    lines = [
        f"# {DEFAULT_OVERRIDE_PATH}: ptfast's own settings. Written as a commented sample by",
        "# `ptfast install-service`, which never writes over it once it exists.",
        "#",
        '# The syntax is csf.conf\'s: NAME = "value". ptfast reads /etc/csf/csf.conf (when it',
        "# exists), then this file: a setting given here wins. `ptfast check` shows every setting",
        "# in force and the file and line it came from; `systemctl reload ptfast` re-reads it.",
        "#",
        '# Handing tracking over from lfd: PT_LIMIT = "0" in csf.conf (then `csf -ra`) switches',
        "# lfd's tracking off, and ptfast reads that 0 as the hand-over: it keeps the default of",
        '# 60 s or the PT_LIMIT given here. PT_LIMIT = "0" here switches ptfast\'s tracking off.',
        '# lfd keeps its load check (PT_LOAD): leave it to lfd with PT_LOAD = "0" here, or hand it',
        '# over too (PT_LOAD = "0" in csf.conf, PT_LOAD = "30" here), so that one of them alerts.',
        "#",
        "# Every setting ptfast reads, with lfd's default (GENERIC defaults to 0 on a host with a",
        "# control panel). Remove the '# ' before a line to set it here:",
        "#",
    ]
    lines += [f'# {name} = "{setting.default}"' for name, setting in SETTINGS.items()]
    return "\n".join(lines) + "\n"


def manual_page() -> str:
    """ptfast(8): written by hand (ptfast/man/ptfast.8: the hand-over, the ignore rules,
    signals, files, exit status), with this version filled in."""
    page = resources.files("ptfast").joinpath("man", "ptfast.8").read_text(encoding="utf-8")
    return page.replace("@VERSION@", __version__)


def bash_completion(parser: argparse.ArgumentParser) -> str:
    import shtab

    return shtab.complete(parser, shell="bash")


def service_files(command: list, parser: argparse.ArgumentParser) -> list:
    """What install-service writes; ``parser`` is the command line the completion completes
    (handed in by cli, which builds it: install does not reach back up to cli)."""
    return [
        ServiceFile(UNIT_PATH, unit_text(command), 0o644),
        ServiceFile(LOGROTATE_PATH, packaged_text("logrotate"), 0o644),
        ServiceFile(DEFAULT_OVERRIDE_PATH, sample_config_text(), 0o600, keep_existing=True),
        ServiceFile(MAN_PAGE_PATH, manual_page(), 0o644, summary="the man page, ptfast(8)"),
        ServiceFile(COMPLETION_PATH, bash_completion(parser), 0o644, summary="bash completion"),
    ]


def read_text(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:       # not ours: treat as changed
        return ""


def make_directories(directory: str) -> None:
    """Create ``directory`` and its missing parents world-readable, whatever the umask (the
    man page and completion are read by every user)."""
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for created in reversed(missing):
        os.mkdir(created)
        os.chmod(created, 0o755)


class Installer:
    """Writes or removes the service files under ``root`` (``/`` on a real install)."""

    def __init__(self, root: str, dry_run: bool, say=print) -> None:
        self.root = root
        self.dry_run = dry_run
        self.say = say
        # systemctl only acts on the running system, never on a tree under --root
        self.manage_systemd = root == "/" and os.path.isdir(SYSTEMD_RUNNING)
        self._said_no_systemd = False

    def on_disk(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def systemctl(self, *words: str) -> None:
        if not self.manage_systemd:
            self.say_no_systemctl(" ".join(words))
            return
        command = ["systemctl", *words]
        if self.dry_run:
            self.say(f"would run: {' '.join(command)}")
        else:
            self.say(f"running: {' '.join(command)}")
            subprocess.run(command, check=False)

    def say_no_systemctl(self, what: str) -> None:
        """Once: systemctl is not run, and why (an admin must not think it was)."""
        if self._said_no_systemd:
            return
        why = (f"files are written under --root {self.root}" if self.root != "/"
               else f"systemd is not running here ({SYSTEMD_RUNNING} is missing): start "
                    "`ptfast run` with this system's own service manager")
        self.say(f"not running systemctl ({what} and the like): {why}")
        self._said_no_systemd = True

    def install(self, files: list) -> None:
        unit_changed = False
        for item in files:
            target = self.on_disk(item.path)
            current = read_text(target)
            if current == item.text:
                self.say(f"unchanged: {target}")
                continue
            if item.keep_existing and current is not None:
                self.say(f"kept: {target} (it exists; the sample never replaces it)")
                continue
            if self.dry_run:
                self.show(target, item)
            else:
                make_directories(os.path.dirname(target))
                write_atomically(target, item.text.encode(), item.mode)
                os.chmod(target, item.mode)      # whatever the admin's umask
                self.say(f"wrote: {target}")
            unit_changed |= item.path == UNIT_PATH
        if unit_changed:
            self.systemctl("daemon-reload")
        if not self.manage_systemd:
            self.say_no_systemctl("daemon-reload")
        if not self.dry_run:
            self.say(f"next: hand tracking over from lfd (the comments in "
                     f"{DEFAULT_OVERRIDE_PATH} say how), then `systemctl enable --now ptfast`")

    def remove_wants_link(self) -> None:
        """What `systemctl enable` made, when systemctl did not remove it (systemd not
        running, --root): left behind, it would start the service's missing unit at boot."""
        link = self.on_disk(WANTS_LINK)
        if not os.path.islink(link):
            return
        if self.dry_run:
            self.say(f"would remove: {link}")
        else:
            os.unlink(link)
            self.say(f"removed: {link}")
        try:
            if not self.dry_run:
                os.rmdir(os.path.dirname(link))     # only when nothing else is wanted
        except OSError:
            pass

    def show(self, target: str, item: ServiceFile) -> None:
        if item.summary:
            self.say(f"would write: {target} ({item.summary}, {len(item.text)} bytes)")
            return
        self.say(f"would write: {target}")
        for line in item.text.splitlines():
            self.say(f"    {line}")

    def uninstall(self, files: list) -> None:
        if os.path.exists(self.on_disk(UNIT_PATH)):
            self.systemctl("disable", "--now", "ptfast")
        self.remove_wants_link()
        for item in files:
            target = self.on_disk(item.path)
            current = read_text(target)
            if current is None:
                continue
            if item.keep_existing and current != item.text:
                self.say(f"kept: {target} (changed since it was written)")
                continue
            if self.dry_run:
                self.say(f"would remove: {target}")
            else:
                os.unlink(target)
                self.say(f"removed: {target}")
        if not self.dry_run:
            for directory in OWN_DIRECTORIES:
                try:
                    os.rmdir(self.on_disk(directory))
                except OSError:          # not empty, or not there
                    pass
        self.systemctl("daemon-reload")
        self.say(f"left in place: {DEFAULT_STATE_DIR} (reported processes, unsent mail), "
                 f"{DEFAULT_LOG_FILE}, {DEFAULT_EVENTS_FILE}")


def run(args, parser: argparse.ArgumentParser) -> int:
    installer = Installer(args.root, args.dry_run)
    files = service_files(ptfast_command(), parser)
    if args.uninstall:
        installer.uninstall(files)
    else:
        installer.install(files)
    return 0

