"""Config and ignore files a careless admin (or a hostile Include) could hand to ptfast
(issue 13, items 6, 7 and 8): byte order marks, FIFOs, devices, Include cycles, numbers out of
range, huge rule sets, regexes switched off in the middle of a run, and the match cache."""

import os
import re
import resource
import subprocess
import sys
import tracemalloc

import pytest
import regex

from ptfast.foundation import config
from ptfast.decide import pignore
from helpers.inproc import run_ptfast
from helpers.procs import start_python
from helpers.service import ServiceDir, recorded_command
from helpers.uids import uid_for

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = pytest.mark.usefixtures("aged")

BOM = "\ufeff"
HANG_GUARD = 60         # seconds: a guard against a hang, not a speed requirement


def ptfast(*args, memory_limit=None, timeout=HANG_GUARD):
    """``python -m ptfast ARGS`` (optionally under an address-space limit, so a runaway read
    fails fast instead of taking the host's memory)."""
    def limit():
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    return subprocess.run([sys.executable, "-m", "ptfast", *args], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit)


def check_args(tmp_path, *args) -> list:
    return ["check", "--override", os.devnull, "--state-dir", str(tmp_path / "state"),
            "--log-file", str(tmp_path / "log"), "--events-file", str(tmp_path / "events"), *args]


@pytest.fixture
def check(tmp_path):
    """``ptfast check ARGS`` with the service's paths in a root-only directory, in a process of
    its own: for files that could hang it (a FIFO) or take its memory (/dev/zero)."""
    def run(*args, **kw):
        return ptfast(*check_args(tmp_path, *args), **kw)
    return run


@pytest.fixture
def check_here(tmp_path):
    """The same ``ptfast check ARGS`` in the test process (helpers.inproc), for regular files."""
    def run(*args):
        return run_ptfast(check_args(tmp_path, *args), text=True)
    return run


# -- byte order mark ----------------------------------------------------------------------

def test_bom_does_not_hide_the_first_setting(tmp_path, check_here):
    path = tmp_path / "csf.conf"
    path.write_text(f'{BOM}PT_LIMIT = "120"\nPT_INTERVAL = "90"\n', encoding="utf-8")
    conf = config.load(str(path), override_path=os.devnull, panel=False)
    assert conf.problems == []
    assert conf.settings.PT_LIMIT == 120 and conf.where(config.Settings.PT_LIMIT) == f"{path}:1"
    result = check_here("--config", str(path), "--pignore", os.devnull)
    assert re.search(r"^PT_LIMIT +=  *120 ", result.stdout, re.MULTILINE)


def test_bom_does_not_break_the_first_ignore_rule(tmp_path):
    path = tmp_path / "csf.pignore"
    path.write_text(f"{BOM}user:alice\nuser:bob\n", encoding="utf-8")
    rules = pignore.load(str(path))
    assert rules.problems == []
    assert rules.ignores("user", "alice") and rules.ignores("user", "bob")


# -- what a config or ignore file may be ----------------------------------------------------

@pytest.mark.parametrize("option", ["--config", "--pignore"])
def test_a_fifo_as_config_or_pignore_does_not_hang_check(tmp_path, check, option):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    others = {"--config": ["--pignore", os.devnull], "--pignore": ["--config", os.devnull]}
    result = check(option, str(fifo), *others[option])
    assert result.returncode == 2
    assert f"{fifo}: cannot read: not a regular file (a FIFO)" in result.stdout or \
        f"cannot read {fifo}: not a regular file (a FIFO)" in result.stdout


def test_a_fifo_as_include_does_not_hang_scan(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pignore_file = tmp_path / "csf.pignore"
    pignore_file.write_text(f"user:carol\nInclude {fifo}\n")
    result = ptfast("scan", "--config", os.devnull, "--override", os.devnull,
                    "--pignore", str(pignore_file), "--set", "PT_LOAD=0")
    assert f"{pignore_file}:2: cannot read {fifo}: not a regular file (a FIFO)" in result.stderr


@pytest.mark.needs_root
def test_a_fifo_as_config_does_not_hang_the_daemon(tmp_path):
    root = tmp_path / "service"
    root.mkdir(mode=0o700)
    service = ServiceDir(root, uid_for(620))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    command = recorded_command(service)
    command[command.index("--config") + 1] = str(fifo)
    result = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD)
    # a named config it cannot read stops the service (issue 22): it does not track on defaults
    assert result.returncode == 2, result.stderr
    assert f"{fifo}: cannot read: not a regular file (a FIFO)" in service.log()
    assert "not started" in service.log()


@pytest.mark.parametrize("option", ["--config", "--pignore", "include"])
def test_dev_zero_is_refused_not_read(tmp_path, check, option):
    args = {"--config": ["--config", "/dev/zero", "--pignore", os.devnull],
            "--pignore": ["--config", os.devnull, "--pignore", "/dev/zero"]}
    if option == "include":
        including = tmp_path / "csf.pignore"
        including.write_text("Include /dev/zero\n")
        args["include"] = ["--config", os.devnull, "--pignore", str(including)]
    result = check(*args[option], memory_limit=1 << 30)
    assert "MemoryError" not in result.stderr and "Traceback" not in result.stderr
    assert result.returncode == 2
    assert any("/dev/zero" in line and "not a regular file (a character device)" in line
               for line in result.stdout.splitlines())


def test_an_oversized_file_is_refused(tmp_path):
    path = tmp_path / "csf.conf"
    with open(path, "wb") as handle:
        handle.truncate(config.MAX_INPUT_BYTES + 1)       # sparse: no disk used
    conf = config.load(str(path), override_path=os.devnull, panel=False)
    assert [str(p) for p in conf.problems] == [
        f"{path}: cannot read: larger than {config.MAX_INPUT_BYTES} bytes"]


# -- Include cycles and repeats ------------------------------------------------------------

def test_a_file_including_itself_is_read_once(tmp_path):
    path = tmp_path / "csf.pignore"
    path.write_text(f"Include {path}\n" * 5 + "user:erin\n")
    rules = pignore.load(str(path))       # before: 5**8 reads, 22 s and 490 MB
    assert rules.sources == [str(path)]
    assert rules.ignores("user", "erin")
    cycles = [p for p in rules.problems if "is a cycle" in p.message]
    assert [(p.path, p.line) for p in cycles] == [(str(path), n) for n in range(1, 6)]


def test_a_cycle_through_another_spelling_and_a_symlink_is_found(tmp_path):
    first, second = tmp_path / "a.pignore", tmp_path / "b.pignore"
    os.symlink(first, tmp_path / "link.pignore")
    first.write_text(f"Include {second}\nuser:one\n")
    second.write_text(f"Include {tmp_path}/./link.pignore\nuser:two\n")
    rules = pignore.load(str(first))
    assert rules.sources == [str(first), str(second)]
    (problem,) = rules.problems
    assert (problem.path, problem.line) == (str(second), 1) and "is a cycle" in problem.message
    assert rules.ignores("user", "one") and rules.ignores("user", "two")


def test_a_diamond_of_includes_reads_each_file_once(tmp_path):
    leaf = tmp_path / "leaf"
    leaf.write_text("user:leaf\n")
    middle = tmp_path / "middle"
    middle.write_text(f"Include {leaf}\n" * 10)
    top = tmp_path / "top"
    top.write_text(f"Include {middle}\n" * 10)
    rules = pignore.load(str(top))
    assert rules.sources == [str(top), str(middle), str(leaf)]
    assert rules.problems == [] and rules.ignores("user", "leaf")


# -- numbers in range ---------------------------------------------------------------------

def numeric_settings():
    return [name for name, setting in config.SETTINGS.items()
            if setting.kind in (config.INT, config.FLOAT)]


def test_every_numeric_setting_has_a_range_holding_its_default():
    for name in numeric_settings():
        lowest, highest = config.SETTINGS[name].limits
        assert lowest <= config.SETTINGS[name].default <= highest, name


@pytest.mark.parametrize("name", numeric_settings())
def test_values_outside_the_range_are_problems_with_file_and_line(tmp_path, name):
    lowest, highest = config.SETTINGS[name].limits
    path = tmp_path / "csf.conf"
    too_big = int(highest) + 1
    path.write_text(f'# {name} one above its range\n{name} = "{too_big}"\n')
    conf = config.load(str(path), override_path=os.devnull, panel=False)
    (problem,) = conf.problems
    assert (problem.path, problem.line) == (str(path), 2)
    assert f"{name} must be between {lowest} and {highest}" in problem.message
    assert conf.settings.value_of(config.SETTINGS[name]) == config.SETTINGS[name].default
    accepted = config.load(os.devnull, [f"{name}={highest}"], override_path=os.devnull,
                           panel=False)
    assert accepted.problems == [] and accepted.settings.value_of(config.SETTINGS[name]) == highest


def test_a_huge_interval_is_a_problem_for_check_and_not_used_by_run(tmp_path, check_here):
    path = tmp_path / "csf.conf"
    path.write_text('PT_LIMIT = "60"\nPT_INTERVAL = "99999999999"\n')
    result = check_here("--config", str(path), "--pignore", os.devnull)
    assert result.returncode == 2
    assert f"{path}:2: PT_INTERVAL must be between 0 and 86400, not 99999999999" in result.stdout
    # a million digits is not even parsed
    conf = config.load(os.devnull, ["PT_LIMIT=" + "9" * 1_000_000], override_path=os.devnull,
                       panel=False)
    assert conf.settings.PT_LIMIT == 60 and "must be between" in conf.problems[0].message


@pytest.mark.needs_root
def test_the_daemon_runs_on_the_default_interval_and_logs_the_problem(tmp_path):
    root = tmp_path / "service"
    root.mkdir(mode=0o700)
    service = ServiceDir(root, uid_for(621))
    with open(service.override, "a") as handle:
        handle.write('PT_INTERVAL = "99999999999"\n')
    result = run_ptfast(recorded_command(service)[3:], text=True)
    assert result.returncode == 0, result.stderr
    log = service.log()
    assert f"{service.override}:3: PT_INTERVAL must be between 0 and 86400" in log
    assert "PT_INTERVAL=60," in log


# -- rule compilation ---------------------------------------------------------------------

def test_regexes_compile_in_bounded_chunks_at_load_never_during_a_match(tmp_path, monkeypatch):
    count = 3 * pignore.CHUNK_SIZE + 7
    path = tmp_path / "csf.pignore"
    path.write_text("".join(f"pcmd:/opt/app{n}/bin/worker --id=\\d+\n" for n in range(count)))
    compiled = []
    real_compile = regex.compile

    def counting_compile(pattern, *args, **kw):
        compiled.append(pattern.count("|") + 1 if isinstance(pattern, str) else 1)
        return real_compile(pattern, *args, **kw)
    monkeypatch.setattr(regex, "compile", counting_compile)   # pignore imports it when needed
    rules = pignore.load(str(path))
    at_load = list(compiled)
    assert rules.problems == [] and rules.rule_count() == count
    assert max(at_load) <= pignore.CHUNK_SIZE        # no alternation of every rule
    assert sum(at_load) == count                      # each rule compiled once, in its chunk
    compiled.clear()
    assert rules.ignores("cmd", f"/opt/app{count - 1}/bin/worker --id=42")
    assert not rules.ignores("cmd", "/opt/app1/bin/worker --id=x")
    assert compiled == []                             # matching compiles nothing


def test_an_invalid_regex_in_a_chunk_is_found_and_only_it_skipped(tmp_path):
    lines = [f"pexe:/opt/good{n}/.*" for n in range(pignore.CHUNK_SIZE + 10)]
    lines.insert(7, "pexe:/opt/(broken")
    path = tmp_path / "csf.pignore"
    path.write_text("\n".join(lines) + "\n")
    rules = pignore.load(str(path))
    (problem,) = rules.problems
    assert (problem.path, problem.line) == (str(path), 8) and "invalid pexe" in problem.message
    assert rules.rule_count() == pignore.CHUNK_SIZE + 10
    assert rules.ignores("exe", "/opt/good3/x") and rules.ignores("exe", "/opt/good205/y")


def test_check_says_how_long_the_rules_took_to_compile(tmp_path, check_here):
    path = tmp_path / "csf.pignore"
    path.write_text("pcmd:a.*\npexe:/b/.*\n")
    result = check_here("--config", os.devnull, "--pignore", str(path))
    assert "(2 rules, regexes compiled in " in result.stdout


# -- a rule switched off during a run is said ----------------------------------------------

CATASTROPHIC = "pcmd:[\\s\\S]*(a|aa)+b\n"


@pytest.mark.needs_root
def test_a_rule_switched_off_in_run_is_logged(tmp_path):
    uid = uid_for(622)
    root = tmp_path / "service"
    root.mkdir(mode=0o700)
    service = ServiceDir(root, uid)
    with open(service.pignore, "a") as handle:
        handle.write(CATASTROPHIC)
    child = start_python("", uid=uid, argv=("a" * 5000 + "!",))
    try:
        result = subprocess.run(recorded_command(service, "PT_USERPROC=0"),
                                capture_output=True, text=True, timeout=120)
    finally:
        child.stop()
    assert result.returncode == 0, result.stderr
    switched = [line for line in service.log().splitlines() if "rule switched off" in line]
    assert len(switched) == 1
    assert f"{service.pignore}:2: cmd regex" in switched[0]


def test_match_problems_are_handed_over_once(tmp_path):
    path = tmp_path / "csf.pignore"
    path.write_text("user:x\n" + CATASTROPHIC)
    rules = pignore.load(str(path))
    assert rules.take_match_problems() == []          # load problems are not match problems
    assert not rules.ignores("cmd", "x " + "a" * 5000 + "!")
    (problem,) = rules.take_match_problems()
    assert problem.line == 2 and "switched off" in problem.message
    assert rules.take_match_problems() == []


# -- the match cache is bounded by bytes ---------------------------------------------------

def test_the_match_cache_is_bounded_by_bytes_not_entries(monkeypatch):
    rules = pignore.IgnoreRules()
    pignore.parse_lines(["pcmd:/usr/sbin/ignored .*"], "test", rules)
    values = [f"/tmp/x{n} " + "y" * (2 << 20) for n in range(40)]    # 40 distinct 2 MB lines
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for value in values:
            assert not rules.ignores("cmd", value)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # before: every value stayed in the cache (80 MB); the values themselves are the test's
    assert kept < pignore.MATCH_CACHE_CHARS + (1 << 20)
    # many small values: a bound of 1 MB, passed twice by 20,000 values (the real 16 MB took
    # 200,000 calls, 0.7 s of CPU, to pass once)
    monkeypatch.setattr(pignore, "MATCH_CACHE_CHARS", 1 << 20)
    small = [f"/bin/job{n}" for n in range(20_000)]
    for value in small:
        rules.ignores("cmd", value)
    assert rules._cached_chars <= pignore.MATCH_CACHE_CHARS


def test_a_fifo_as_a_template_does_not_hang_check(tmp_path, check):
    templates = tmp_path / "tpl"
    templates.mkdir()
    os.mkfifo(templates / "processtracking.txt")
    result = check("--config", os.devnull, "--pignore", os.devnull, "--templates", str(templates))
    assert result.returncode == 2
    assert (f"{templates}/processtracking.txt: cannot read (not a regular file (a FIFO)); "
            "using ptfast") in result.stdout
