"""csf.conf reading and `ptfast check`."""

import os

import pytest

from ptfast.foundation import config
from helpers.realworld import REALWORLD, needs_realworld
from helpers.service import CHECKED_SENDMAIL
from helpers.inproc import run_ptfast


def write(tmp_path, text, name="csf.conf"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load(path, **kw):
    return config.load(path, override_path=os.devnull, panel=False, **kw)


def test_defaults_without_any_file():
    conf = config.load(os.devnull, override_path=os.devnull, panel=False)
    assert conf.settings.PT_LIMIT == 60 and conf.settings.PT_INTERVAL == 60 and conf.settings.GENERIC == 1
    assert conf.settings.PT_USERMEM == 512 and conf.settings.PT_LOAD_LEVEL == 6.0
    assert conf.settings.SENDMAIL == "/usr/sbin/sendmail"
    assert not conf.problems
    assert all(source == "default" for source in conf.sources.values())


def test_panel_hosts_default_to_non_generic():
    assert config.defaults(panel=True).settings.GENERIC == 0


@needs_realworld
@pytest.mark.parametrize("name", ["csf.conf", "csf.generic.conf"])
def test_real_csf_conf_loads_cleanly(name):
    path = os.path.join(REALWORLD, name)
    conf = load(path)
    assert conf.problems == []
    assert conf.settings.PT_USERTIME == 1800 and conf.settings.PT_LOAD_SKIP == 3600
    assert conf.where(config.Settings.PT_USERPROC).startswith(path + ":")
    line = int(conf.where(config.Settings.PT_USERPROC).rsplit(":", 1)[1])
    with open(path) as handle:
        assert handle.readlines()[line - 1].startswith('PT_USERPROC = "10"')


def test_values_and_lfd_syntax(tmp_path):
    path = write(tmp_path, '# comment\n\nPT_LIMIT = "120"\nPT_LOAD_LEVEL="2.5"\n'
                           'TCP_IN = "20,21,22"\nno equals sign here\n'
                           '  PT_INTERVAL = "99"\nPT_DELETED_ACTION = "/usr/local/bin/a b"\n')
    conf = load(path)
    assert conf.problems == []
    assert conf.settings.PT_LIMIT == 120 and conf.where(config.Settings.PT_LIMIT) == f"{path}:3"
    assert conf.settings.PT_LOAD_LEVEL == 2.5
    assert conf.settings.PT_INTERVAL == 60          # lfd ignores lines starting with white space
    assert conf.settings.PT_DELETED_ACTION == "/usr/local/bin/a b"


@pytest.mark.parametrize("text, line, words", [
    ('PT_LIMIT = 60\n', 1, "double quotes"),
    ('PT_LIMIT = "60"\nPT_USERPROC = "5"\nPT_LIMIT = "70"\n', 3, "repeated"),
    ('\nPT_USERMEM = "lots"\n', 2, "whole number"),
    ('PT_LOAD_LEVEL = "high"\n', 1, "number"),
])
def test_errors_name_file_and_line_and_keep_defaults(tmp_path, text, line, words):
    path = write(tmp_path, text)
    conf = load(path)
    assert len(conf.problems) == 1
    problem = conf.problems[0]
    assert (problem.path, problem.line) == (path, line)
    assert words in problem.message
    assert str(problem).startswith(f"{path}:{line}: ")
    assert conf.settings.PT_USERMEM == 512 and conf.settings.PT_LOAD_LEVEL == 6.0


def test_pt_limit_zero_in_csf_conf_hands_tracking_to_ptfast(tmp_path):
    csf = write(tmp_path, 'PT_LIMIT = "0"\n')
    conf = config.load(csf, override_path=os.devnull, panel=False)
    assert conf.settings.PT_LIMIT == 60
    assert "lfd's tracking is off" in conf.where(config.Settings.PT_LIMIT)
    own = write(tmp_path, 'PT_LIMIT = "45"\n', "ptfast.conf")
    assert config.load(csf, override_path=own, panel=False).settings.PT_LIMIT == 45
    off = write(tmp_path, 'PT_LIMIT = "0"\n', "off.conf")
    assert config.load(csf, override_path=off, panel=False).settings.PT_LIMIT == 0
    assert config.load(csf, ["PT_LIMIT=0"], override_path=os.devnull, panel=False).settings.PT_LIMIT == 0


def test_set_overrides(tmp_path):
    conf = load(write(tmp_path, 'PT_LIMIT = "120"\n'), overrides=["PT_LIMIT=5", "NOPE=1",
                                                                   "PT_USERPROC=x"])
    assert conf.settings.PT_LIMIT == 5 and conf.where(config.Settings.PT_LIMIT) == "--set"
    assert [p.path for p in conf.problems] == ["--set", "--set"]


def run_check(*args):
    return run_ptfast(["check", "--override", os.devnull, "--pignore", os.devnull, "--set",
                       CHECKED_SENDMAIL, *args], text=True)


def test_check_prints_settings_with_sources_and_exits_clean(tmp_path):
    path = write(tmp_path, 'PT_LIMIT = "90"\n')
    result = run_check("--config", path)
    assert result.returncode == 0, result.stdout
    assert "PT_LIMIT" in result.stdout and "90" in result.stdout
    assert f"{path}:1" in result.stdout
    assert "PT_USERPROC" in result.stdout and "default" in result.stdout


def test_check_reports_problems_with_file_and_line(tmp_path):
    path = write(tmp_path, 'PT_LIMIT = "60"\nPT_LIMIT = "61"\n')
    rules = write(tmp_path, "exe:/bin/ok\npexe:/usr/(bin\n", "csf.pignore")
    result = run_ptfast(["check", "--config", path, "--override", os.devnull, "--pignore",
                         rules], text=True)
    assert result.returncode == 2
    assert f"{path}:2: PT_LIMIT is repeated" in result.stdout
    assert f"{rules}:2: invalid pexe regex" in result.stdout


def test_check_reports_template_problems_and_sources(tmp_path):
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "resalert.txt").write_text("Subject: [user]\nnot a header\n\nbody\n")
    result = run_check("--config", os.devnull, "--templates", str(templates))
    assert result.returncode == 2
    assert f"{templates}/resalert.txt:2: not a header line" in result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.startswith("templates:")]
    assert line.split(":", 1)[1].strip().split(", ") == [f"{templates}/resalert.txt", "built-in"]


def test_check_says_which_settings_it_leaves_to_lfd(tmp_path):
    path = write(tmp_path, 'PT_LIMIT = "60"\nPT_SSHDKILL = "1"\n')
    result = run_check("--config", path)
    assert result.returncode == 0, result.stdout
    assert f"PT_SSHDKILL ({path}:2) is lfd's" in result.stdout
    assert "PT_SSHDKILL =" not in result.stdout             # not a setting ptfast uses
    quiet = run_check("--config", write(tmp_path, 'PT_SSHDKILL = "0"\n', name="off.conf"))
    assert "is lfd's" not in quiet.stdout
