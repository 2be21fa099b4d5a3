"""`ptfast install-service`, run as an admin would, into a scratch root (never the real /etc);
the files it writes are checked by the tools that will read them: systemd-analyze, logrotate,
man, bash."""

import argparse
import os
import re
import shutil
import subprocess
import sysconfig


import pytest

from helpers.native import needs_program
from helpers.inproc import run_ptfast
from ptfast import __version__
from ptfast.foundation import config
from ptfast.commands import install

UNIT = "etc/systemd/system/ptfast.service"
SAMPLE_CONFIG = "etc/ptfast/ptfast.conf"
MAN_DIR = "usr/local/share/man"


def install_service(root, *args, program=None):
    if program is None:
        result = run_ptfast(["install-service", "--root", str(root), *args], text=True)
    else:
        result = subprocess.run([*program, "install-service", "--root", str(root), *args],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def verify(unit_path, root):
    """systemd-analyze verify, with man able to find the page named in Documentation=."""
    env = dict(os.environ, MANPATH=str(root / MAN_DIR))
    return subprocess.run(["systemd-analyze", "verify", str(unit_path)], capture_output=True,
                          text=True, env=env, timeout=60)


def exec_start(unit_text):
    line = next(line for line in unit_text.splitlines() if line.startswith("ExecStart="))
    return line[len("ExecStart="):]


def tree(root):
    return {str(path.relative_to(root)): path.read_bytes()
            for path in root.rglob("*") if path.is_file()}


def test_the_unit_names_this_ptfast_and_verifies(tmp_path):
    install_service(tmp_path)
    unit = tmp_path / UNIT
    command = exec_start(unit.read_text()).split()
    assert command[-1] == "run"
    ours = run_ptfast(["--version"], text=True).stdout
    theirs = subprocess.run([*command[:-1], "--version"], capture_output=True, text=True).stdout
    assert theirs == ours and "ptfast" in ours
    result = verify(unit, tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_verify_refuses_a_unit_whose_ptfast_is_not_there(tmp_path):
    """The check above can fail: the unit as it was shipped before (a fixed path) does not
    verify where ptfast is elsewhere."""
    install_service(tmp_path)
    unit = tmp_path / UNIT
    missing = tmp_path / "nowhere" / "ptfast"
    unit.write_text(unit.read_text().replace(exec_start(unit.read_text()), f"{missing} run"))
    result = verify(unit, tmp_path)
    assert result.returncode != 0 and str(missing) in result.stderr


def test_run_as_the_installed_script(tmp_path):
    script = os.path.join(sysconfig.get_path("scripts"), "ptfast")
    install_service(tmp_path, program=[script])
    assert exec_start((tmp_path / UNIT).read_text()) == f"{script} run"


def test_a_symlinked_script_is_named_by_its_target_a_symlinked_directory_is_kept(tmp_path):
    script = os.path.join(sysconfig.get_path("scripts"), "ptfast")
    on_path = tmp_path / "local-bin"            # as pipx links ~/.local/bin/ptfast
    on_path.mkdir()
    (on_path / "ptfast").symlink_to(script)
    install_service(tmp_path / "root1", program=[str(on_path / "ptfast")])
    assert exec_start((tmp_path / "root1" / UNIT).read_text()) == f"{script} run"
    current = tmp_path / "current"              # /opt/ptfast -> /opt/ptfast-0.2
    current.symlink_to(os.path.dirname(script))
    install_service(tmp_path / "root2", program=[str(current / "ptfast")])
    assert exec_start((tmp_path / "root2" / UNIT).read_text()) == f"{current}/ptfast run"


def test_a_path_with_spaces_and_percent_is_quoted_for_systemd(tmp_path):
    odd = tmp_path / "opt dir 100%" / "bin"
    odd.mkdir(parents=True)
    script = odd / "ptfast"
    shutil.copy(os.path.join(sysconfig.get_path("scripts"), "ptfast"), script)
    install_service(tmp_path)        # the man page, for Documentation=
    unit = tmp_path / UNIT
    unit.write_text(install.unit_text([str(script)]))
    assert exec_start(unit.read_text()) == f'"{odd}/ptfast" run'.replace("%", "%%")
    result = verify(unit, tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_second_run_changes_nothing(tmp_path):
    install_service(tmp_path)
    before = tree(tmp_path)
    stamps = {path: os.stat(tmp_path / path).st_mtime_ns for path in before}
    output = install_service(tmp_path)
    assert tree(tmp_path) == before
    assert {path: os.stat(tmp_path / path).st_mtime_ns for path in before} == stamps
    assert "wrote" not in output and output.count("unchanged: ") == len(before) == 5


def test_dry_run_writes_nothing_and_shows_the_unit(tmp_path):
    output = install_service(tmp_path, "--dry-run")
    assert list(tmp_path.iterdir()) == []
    assert f"would write: {tmp_path / UNIT}" in output
    assert "    ExecStart=" in output and "    ProtectHome=read-only" in output


def test_an_admins_ptfast_conf_is_never_replaced_or_removed(tmp_path):
    admin = tmp_path / SAMPLE_CONFIG
    admin.parent.mkdir(parents=True)
    admin.write_text('PT_LIMIT = "120"\n')
    output = install_service(tmp_path)
    assert admin.read_text() == 'PT_LIMIT = "120"\n'
    assert f"kept: {admin}" in output
    install_service(tmp_path, "--uninstall")
    assert admin.read_text() == 'PT_LIMIT = "120"\n'
    assert sorted(tree(tmp_path)) == [SAMPLE_CONFIG]


def test_uninstall_removes_what_it_wrote(tmp_path):
    install_service(tmp_path)
    assert len(tree(tmp_path)) == 5
    output = install_service(tmp_path, "--uninstall", "--dry-run")
    assert len(tree(tmp_path)) == 5 and output.count("would remove: ") == 5
    install_service(tmp_path, "--uninstall")
    assert tree(tmp_path) == {}
    for created in ("etc/ptfast", "usr/local/share/man/man8", "usr/local/share/bash-completion"):
        assert not (tmp_path / created).exists()
    assert (tmp_path / "etc/systemd/system").is_dir()      # never a system directory


def test_the_sample_config_lists_every_setting_with_its_default(tmp_path):
    sample = tmp_path / "sample.conf"
    sample.write_text(install.sample_config_text())
    commented = config.load(os.devnull, override_path=str(sample), panel=False)
    assert commented.problems == []
    assert all(source == "default" for source in commented.sources.values())
    # every listed line, with its '# ' removed, is a valid setting holding lfd's default
    # (the prose lines that quote the syntax are not settings: ptfast.conf refuses unknown names)
    sample.write_text("".join(line[2:] + "\n" for line in sample.read_text().splitlines()
                              if re.fullmatch(r'# [A-Z_]+ = ".*"', line)))
    active = config.load(os.devnull, override_path=str(sample), panel=False)
    assert active.problems == []
    assert {name for name, source in active.sources.items() if source != "default"} \
        == set(config.SETTINGS)
    assert active.values == {name: setting.default for name, setting in config.SETTINGS.items()}


@needs_program("logrotate", "logrotate")
def test_logrotate_accepts_the_file(tmp_path):
    install_service(tmp_path)
    result = subprocess.run(["logrotate", "--debug", "--state", str(tmp_path / "state"),
                             str(tmp_path / "etc/logrotate.d/ptfast")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "/var/log/ptfast.log" in result.stderr and "/var/log/ptfast.jsonl" in result.stderr
    assert "error" not in result.stderr.lower()


MAN_SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS",
                "HANDING TRACKING OVER FROM LFD", "SETTINGS", "IGNORE RULES", "SIGNALS", "FILES",
                "EXIT STATUS", "SEE ALSO")


def rendered_man_page(path) -> str:
    """The page as man(1) shows it, wide enough that no option is broken across lines; groff's
    warnings (a bad macro, an unknown escape) are a failure."""
    env = dict(os.environ, MANWIDTH="200", LC_ALL="C.UTF-8")
    env.pop("MAN_KEEP_FORMATTING", None)        # plain text, no overstrike
    result = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # groff may render a hyphen or minus as U+2010 or U+2212
    return result.stdout.replace("\u2010", "-").replace("\u2212", "-")


def man_sections(text: str) -> dict:
    """Section heading -> its text, from rendered output: headings start in column 0, a
    section's text in column 7, where a tag (.TP) starts too and its paragraph is indented
    further; the text is kept from column 7, so a tag is a line that starts with no space."""
    sections: dict = {}
    heading = None
    for line in text.splitlines()[1:-1]:        # the header and footer lines
        if line and not line[0].isspace():
            heading = line.strip()
            sections[heading] = ""
        elif heading is not None:
            sections[heading] += line[7:].rstrip() + "\n"
    return sections


def cli_commands() -> dict:
    """Subcommand name -> its parser, as ptfast's command line defines them."""
    from ptfast.commands.cli import build_parser
    return dict(next(action for action in build_parser()._actions
                     if isinstance(action, argparse._SubParsersAction)).choices)


def test_man_finds_the_page_and_it_documents_every_command(tmp_path):
    install_service(tmp_path)
    env = dict(os.environ, MANPATH=str(tmp_path / MAN_DIR))
    found = subprocess.run(["man", "-w", "8", "ptfast"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert found.stdout.strip() == str(tmp_path / MAN_DIR / "man8/ptfast.8")
    page = (tmp_path / MAN_DIR / "man8/ptfast.8").read_text()
    assert "@VERSION@" not in page and f'"ptfast {__version__}"' in page
    sections = man_sections(rendered_man_page(tmp_path / MAN_DIR / "man8/ptfast.8"))
    assert list(sections) == list(MAN_SECTIONS)
    described = re.findall(r"^(\S+)", sections["COMMANDS"], re.MULTILINE)
    commands = cli_commands()
    assert sorted(described) == sorted(commands), "each subcommand needs its entry in COMMANDS"
    for name, parser in commands.items():
        assert f"ptfast {name}" in sections["SYNOPSIS"]
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in sections["SYNOPSIS"] + sections["OPTIONS"] \
                        + sections["COMMANDS"], f"ptfast {name} {option} is not in the man page"


def test_the_man_page_says_what_an_admin_looks_for(tmp_path):
    """The hand-over, the pignore syntax, the signals, the files and every exit status."""
    sections = man_sections(rendered_man_page(
        os.path.join(os.path.dirname(install.__file__), "..", "man", "ptfast.8")))
    exit_tags = re.findall(r"^([0-9]) ", sections["EXIT STATUS"], re.MULTILINE)
    sections = {heading: " ".join(text.split()) for heading, text in sections.items()}
    handover = sections["HANDING TRACKING OVER FROM LFD"]
    assert 'PT_LIMIT = "0" in /etc/csf/csf.conf' in handover and "csf -ra" in handover
    rules = sections["IGNORE RULES"]
    for kind in ("user:", "exe:", "cmd:", "puser:", "pexe:", "pcmd:", "Include "):
        assert kind in rules
    assert "ptfast baseline" in rules and "systemctl reload ptfast" in rules
    for signal_name in ("SIGHUP", "SIGTERM", "SIGINT"):
        assert signal_name in sections["SIGNALS"]
    for path in ("/etc/csf/csf.conf", install.DEFAULT_OVERRIDE_PATH, "/etc/csf/csf.pignore",
                 install.DEFAULT_STATE_DIR, install.DEFAULT_LOG_FILE,
                 install.DEFAULT_EVENTS_FILE, install.UNIT_PATH, install.LOGROTATE_PATH):
        assert path in sections["FILES"]
    assert exit_tags == ["0", "1", "2"]


def test_bash_completes_the_commands(tmp_path):
    install_service(tmp_path)
    completion = tmp_path / "usr/local/share/bash-completion/completions/ptfast"
    script = (f"source {completion}; COMP_WORDS=(ptfast ins); COMP_CWORD=1; "
              "COMP_LINE='ptfast ins'; COMP_POINT=${#COMP_LINE}; "
              '$(complete -p ptfast | sed "s/.*-F \\([^ ]*\\) .*/\\1/") ptfast ins ptfast; '
              'echo "${COMPREPLY[@]}"')
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["install-service"], result.stderr


def test_uninstall_removes_the_link_systemctl_enable_made(tmp_path):
    """Issue 22, point 11: without systemctl (no systemd running, or --root) the
    multi-user.target.wants link would be left behind, pointing at a removed unit."""
    install_service(tmp_path)
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / "ptfast.service").symlink_to("/etc/systemd/system/ptfast.service")
    output = install_service(tmp_path, "--uninstall")
    assert f"removed: {wants / 'ptfast.service'}" in output
    assert not os.path.lexists(wants / "ptfast.service")
    assert tree(tmp_path) == {}
    assert "not running systemctl" in output


@pytest.mark.skipif(os.path.isdir(install.SYSTEMD_RUNNING), reason="systemd runs here")
def test_install_without_systemd_says_it_did_not_run_systemctl():
    """--dry-run on the real root: it writes nothing, and says systemctl was not run."""
    for extra in ((), ("--uninstall",)):
        result = run_ptfast(["install-service", "--dry-run", *extra], text=True)
        assert result.returncode == 0, result.stderr
        assert ("not running systemctl (daemon-reload and the like): systemd is not running "
                f"here ({install.SYSTEMD_RUNNING} is missing)") in result.stdout \
            or "not running systemctl (disable --now ptfast" in result.stdout, result.stdout
