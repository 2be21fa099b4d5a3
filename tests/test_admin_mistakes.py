"""Issue 22: an admin's mistakes are caught, not run on. Typos in setting names (points 2), a
missing ignore file for `run` (point 3), an unreadable Include (point 7)."""

import os
import subprocess
import sys

import pytest

PROC_TREE_ARGS = ("--proc-root", "/proc")


def ptfast(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptfast", *args], capture_output=True,
                          text=True, timeout=120, **kwargs)


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
