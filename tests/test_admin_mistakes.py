"""Issue 22: an admin's mistakes are caught, not run on. Typos in setting names (points 2), a
missing ignore file for `run` (point 3), an unreadable Include (point 7)."""

import os
import subprocess
import sys

import pytest

from helpers.service import CHECKED_SENDMAIL
from helpers.inproc import run_ptfast

PROC_TREE_ARGS = ("--proc-root", "/proc")


def ptfast(*args, **kwargs) -> subprocess.CompletedProcess:
    """In this process (helpers.inproc), but `run` (a service: lock, signals, spool) as one."""
    if args[0] == "run" and "--help" not in args:
        return subprocess.run([sys.executable, "-m", "ptfast", *args], capture_output=True,
                              text=True, timeout=120, **kwargs)
    return run_ptfast(args, text=True, **kwargs)


@pytest.fixture
def files(tmp_path):
    pignore = tmp_path / "pignore"
    pignore.write_text("exe:/usr/sbin/sshd\n")
    override = tmp_path / "ptfast.conf"
    override.write_text('PT_LOAD = "0"\n')
    return tmp_path, ["--config", os.devnull, "--override", str(override),
                      "--pignore", str(pignore)]


def test_a_mistyped_name_in_ptfast_conf_is_an_error_with_a_suggestion(files):
    root, options = files
    (root / "ptfast.conf").write_text('PT_LOAD = "0"\nPT_LIMT = "5"\n')
    for command in ("check", "scan"):
        result = ptfast(command, *options)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert (f"{root / 'ptfast.conf'}:2: unknown setting PT_LIMT; did you mean PT_LIMIT?"
                in result.stdout + result.stderr)
        assert "no problems found" not in result.stdout


def test_an_unknown_name_in_csf_conf_is_the_firewalls_and_passes(files):
    root, options = files
    csf = root / "csf.conf"
    csf.write_text('TCP_IN = "22,80"\nPT_LIMIT = "0"\n')
    options[1] = str(csf)
    result = ptfast("check", *options, "--state-dir", str(root / "state"),
                    "--log-file", str(root / "log"), "--events-file", str(root / "events"))
    assert "TCP_IN" not in result.stdout + result.stderr


def test_a_mistyped_set_is_an_error_with_a_suggestion(files):
    _root, options = files
    result = ptfast("scan", *options, "--set", "PT_LIMT=5")
    assert result.returncode == 2, result.stdout
    assert "--set: unknown setting PT_LIMT; did you mean PT_LIMIT?" in result.stderr
    assert result.stdout == ""          # no scan on the default


def test_a_set_without_a_value_names_the_argument(files):
    _root, options = files
    result = ptfast("scan", *options, "--set", "PT_LIMIT")
    assert result.returncode == 2
    assert "--set: PT_LIMIT has no value: expected --set PT_LIMIT=VALUE" in result.stderr


def test_a_set_value_that_may_be_a_secret_is_not_shown(files):
    _root, options = files
    result = ptfast("scan", *options, "--set", "https://hooks.example/T0K3N")
    assert result.returncode == 2
    assert "T0K3N" not in result.stderr
    assert "not NAME=VALUE" in result.stderr


def test_run_refuses_a_missing_ignore_file(files):
    root, options = files
    options[-1] = str(root / "pignroe")
    result = ptfast("run", "--once", *options, "--state-dir", str(root / "state"),
                    "--log-file", str(root / "log"), "--events-file", str(root / "events"),
                    "--templates", str(root / "templates"))
    assert result.returncode == 2, result.stderr
    assert f"{root / 'pignroe'}: cannot read: No such file or directory" in result.stderr
    assert "not started" in result.stderr
    assert not os.path.exists(root / "state" / "status.json")


def test_a_scan_whose_include_cannot_be_read_exits_2(files):
    root, options = files
    (root / "pignore").write_text(f"exe:/usr/sbin/sshd\nInclude {root / 'gone.pignore'}\n")
    result = ptfast("scan", *options)
    assert result.returncode == 2, result.stderr
    assert (f"{root / 'pignore'}:2: cannot read {root / 'gone.pignore'}: No such file or "
            "directory; the ignore rules are incomplete") in result.stderr
    assert result.stdout == ""


def test_problems_are_shown_without_double_escaping(files):
    """Issue 22, point 16: a value and a regex read as written, not escaped twice."""
    root, options = files
    (root / "ptfast.conf").write_text('PT_LOAD = "0"\nPT_INTERVAL = "6O"\n')
    (root / "pignore").write_text("pexe:listener\\.py(\n")
    result = ptfast("check", *options)
    assert "PT_INTERVAL must be a whole number, not '6O'" in result.stdout
    assert "invalid pexe regex 'listener\\.py(':" in result.stdout


def check_with_csf_conf(root, options, csf_text: str, override_text: str):
    csf = root / "csf.conf"
    csf.write_text(csf_text)
    (root / "ptfast.conf").write_text(override_text)
    options = list(options)
    options[1] = str(csf)
    return ptfast("check", *options, "--state-dir", str(root / "state"),
                  "--log-file", str(root / "log"), "--events-file", str(root / "events"),
                  "--set", CHECKED_SENDMAIL)


def test_check_warns_while_lfd_still_tracks(files):
    """Issue 22, point 4: csf.conf still at PT_LIMIT = "60" means every alert twice."""
    root, options = files
    result = check_with_csf_conf(root, options, 'PT_LIMIT = "60"\nPT_LOAD = "0"\n', "")
    assert result.returncode == 0, result.stdout
    assert (f'lfd is still tracking processes ({root / "csf.conf"}:1: PT_LIMIT = "60")'
            in result.stdout)
    handed_over = check_with_csf_conf(root, options, 'PT_LIMIT = "0"\nPT_LOAD = "0"\n', "")
    assert "warning" not in handed_over.stdout, handed_over.stdout


def test_check_warns_when_lfd_and_ptfast_both_check_the_load(files):
    root, options = files
    both = check_with_csf_conf(root, options, 'PT_LIMIT = "0"\nPT_LOAD = "30"\n', "")
    assert (f'lfd and ptfast both check the load average ({root / "csf.conf"}:2: PT_LOAD = '
            '"30"; ptfast\'s PT_LOAD is 30)') in both.stdout
    left_to_lfd = check_with_csf_conf(root, options, 'PT_LIMIT = "0"\nPT_LOAD = "30"\n',
                                      'PT_LOAD = "0"\n')
    assert "warning" not in left_to_lfd.stdout
    handed_over = check_with_csf_conf(root, options, 'PT_LIMIT = "0"\nPT_LOAD = "0"\n',
                                      'PT_LOAD = "30"\n')
    assert "warning" not in handed_over.stdout


@pytest.mark.parametrize("command", ["scan", "baseline", "check", "run", "status", "tune",
                                     "install-service"])
def test_every_commands_help_lists_its_exit_statuses(command):
    """Issue 22, point 14."""
    result = ptfast(command, "--help")
    assert result.returncode == 0
    said = result.stdout[result.stdout.index("exit status:"):]
    assert "0 " in said and "2 " in said


def test_a_set_without_equals_that_is_no_setting_name_is_not_shown(files):
    """A bare token (it may be a webhook secret pasted without its name) is never echoed."""
    _root, options = files
    result = ptfast("scan", *options, "--set", "a1b2c3d4e5f6SECRET")
    assert result.returncode == 2
    assert "SECRET" not in result.stderr and "not NAME=VALUE" in result.stderr
    close = ptfast("scan", *options, "--set", "PT_LIMT")
    assert "PT_LIMT is not NAME=VALUE; unknown setting PT_LIMT; did you mean PT_LIMIT?" \
        in close.stderr
