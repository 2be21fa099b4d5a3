"""`ptfast scan` end to end against a population of real processes, on both cores."""

import json
import os
import subprocess
import sys

import pytest

from helpers.uids import uid_for
from helpers.procs import process_age, ptfast_as, start_copied_python, start_python
from helpers.scan import CONNECTIONS_AT_ONCE, CORES, core_env, run_scan

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

LISTEN_ANY = 'info["port"] = listen(socket.AF_INET, "0.0.0.0").getsockname()[1]'
CONNECT_V4 = """
s = socket.create_connection(("127.0.0.1", ROOT_PORT)); KEEP.append(s)
info["port"] = s.getsockname()[1]
"""
CONNECT_V6 = """
s = socket.create_connection(("::1", ROOT_PORT6)); KEEP.append(s)
info["port"] = s.getsockname()[1]
"""
UDP_BOUND = 'info["port"] = listen(socket.AF_INET6, "::", socket.SOCK_DGRAM).getsockname()[1]'


POPULATION_UIDS = {name: uid_for(101 + number) for number, name in enumerate(
    ["bindshell", "connected", "connected6", "udp", "container", "quiet", "deleted",
     "fake_deleted", "hostile"])}


@pytest.fixture(scope="module")
def population():
    """Old enough for PT_LIMIT=1: every child is started, then we wait past the limit once."""
    started = {}
    try:
        root = start_python("""
            a = listen(socket.AF_INET, "127.0.0.1"); b = listen(socket.AF_INET6, "::1")
            info.update(port=a.getsockname()[1], port6=b.getsockname()[1])
            import threading
            def serve(sock):
                while True:
                    KEEP.append(sock.accept()[0])
            for sock in (a, b):
                threading.Thread(target=serve, args=(sock,), daemon=True).start()
        """)
        started["root"] = root
        ports = f"ROOT_PORT = {root.info['port']}\nROOT_PORT6 = {root.info['port6']}\n"
        started["bindshell"] = start_python(LISTEN_ANY, uid=POPULATION_UIDS["bindshell"])
        started["connected"] = start_python(ports + CONNECT_V4, uid=POPULATION_UIDS["connected"])
        started["connected6"] = start_python(ports + CONNECT_V6,
                                             uid=POPULATION_UIDS["connected6"])
        started["udp"] = start_python(UDP_BOUND, uid=POPULATION_UIDS["udp"])
        started["container"] = start_python(LISTEN_ANY, uid=POPULATION_UIDS["container"],
                                            netns=True)
        started["quiet"] = start_python("", uid=POPULATION_UIDS["quiet"])
        started["deleted"] = start_copied_python("miner", uid=POPULATION_UIDS["deleted"],
                                                 delete=True)
        started["fake_deleted"] = start_copied_python("bot", LISTEN_ANY,
                                                      uid=POPULATION_UIDS["fake_deleted"],
                                                      subdir="cache (deleted)")
        started["hostile"] = start_copied_python("x\x1b]0;pwned\x07\n*Suspicious*", LISTEN_ANY,
                                                 uid=POPULATION_UIDS["hostile"])
        yield started
    finally:
        for child in started.values():
            child.stop()


@pytest.fixture(params=["compiled", "pure-python"])
def scan_json(request, population):
    def scan(*args):
        result = run_scan("--json", *args, core=request.param)
        assert result.returncode in (0, 1), result.stderr
        findings = [json.loads(line) for line in result.stdout.splitlines()]
        assert result.returncode == (1 if findings else 0)
        return {finding["pid"]: finding for finding in findings}
    return scan


def test_reports_every_kind_of_network_socket(population, scan_json):
    age_before = {name: process_age(child.pid) for name, child in population.items()}
    findings = scan_json()
    expected = {
        "bindshell": ["listening socket"],
        "connected": ["socket"],
        "connected6": ["socket"],
        "udp": ["listening socket"],
        "container": ["listening socket"],
        "fake_deleted": ["listening socket"],
        "hostile": ["listening socket"],
    }
    for name, reasons in expected.items():
        child = population[name]
        assert child.pid in findings, name
        finding = findings[child.pid]
        assert finding["reasons"] == reasons, name
        assert finding["check"] == "suspicious"
        # the test uids have no account: the user is shown as the number, as ls does
        assert finding["uid"] == POPULATION_UIDS[name], name
        assert finding["user"] == str(POPULATION_UIDS[name]), name
        # the real age in whole seconds, read while the scan ran (the age seam moves no age
        # that is shown; a slow scan on a loaded machine must not make it look wrong)
        assert age_before[name] - 1 <= finding["uptime"] <= process_age(child.pid) + 1, name
        assert any(sock["local"].endswith(f":{child.info['port']}")
                   for sock in finding["sockets"]), name
    for name in ("root", "quiet", "deleted"):       # PT_DELETED is 0 by default
        assert population[name].pid not in findings, name


def test_socket_fields(population, scan_json):
    finding = scan_json()[population["connected6"].pid]
    (sock,) = finding["sockets"]
    assert sock["proto"] == "tcp6" and sock["state"] == "ESTABLISHED"
    assert sock["local"] == f"[::1]:{population['connected6'].info['port']}"
    assert sock["remote"] == f"[::1]:{population['root'].info['port6']}"


def test_deleted_executable_with_pt_deleted(population, scan_json):
    findings = scan_json("--set", "PT_DELETED=1")
    finding = findings[population["deleted"].pid]
    assert finding["reasons"] == ["deleted executable"]
    assert finding["exe_deleted"] and finding["exe"] == population["deleted"].info["exe"]
    assert not findings[population["fake_deleted"].pid]["exe_deleted"]


def test_young_processes_are_not_inspected(population, scan_json):
    young = start_python(LISTEN_ANY, uid=uid_for(110))
    try:
        # an hour: the population is a few seconds old, however long the earlier scans took
        # (each waits PT_CONN_AGE for the connections it holds)
        findings = scan_json("--set", "PT_LIMIT=3600")
        assert young.pid not in findings
        assert population["bindshell"].pid not in findings
    finally:
        young.stop()


def test_hostile_name_is_escaped_in_json_and_table(population):
    pid = population["hostile"].pid
    escaped = "x\\x1b]0;pwned\\x07\\n*Suspicious*"
    for args in (("--json",), ()):
        output = run_scan(*args).stdout.decode("ascii")    # pure ASCII, or this raises
        line = next(line for line in output.splitlines() if str(pid) in line)
        assert "\x1b" not in output and "\x07" not in output
        if args:
            assert json.loads(line)["exe"].endswith("/" + escaped)
        else:
            assert escaped in line
    # the newline in the name cannot start a forged line
    assert not [row for row in run_scan().stdout.splitlines() if row.startswith(b"*Suspicious*")]


@pytest.mark.parametrize("core", CORES)
def test_table_output(population, core):
    result = run_scan(core=core)
    text = result.stdout.decode()
    assert result.returncode == 1
    assert "PID" in text and "listening socket" in text
    assert f"{population['bindshell'].pid}" in text
    assert "suspicious of" in text
    assert f"({core} core, " in text            # PTFAST_NO_EXTENSIONS chose the scan's core


def test_version_names_the_core():
    for core in ("compiled", "pure-python"):
        out = subprocess.run([sys.executable, "-m", "ptfast", "--version"], env=core_env(core),
                             capture_output=True, text=True).stdout
        assert f"({core} core)" in out


def test_non_root_run_says_what_it_could_not_inspect(population):
    # connections at once: the population holds some, and a scan would wait PT_CONN_AGE
    result = ptfast_as(uid_for(199), "scan", "--config", os.devnull, "--override", os.devnull,
                       "--pignore", os.devnull, "--set", "PT_LIMIT=1", "--set", "PT_LOAD=0",
                       "--set", "PT_USERPROC=0", "--set", "PT_USERMEM=0",
                       "--set", "PT_USERRSS=0", "--set", "PT_USERTIME=0",
                       "--set", CONNECTIONS_AT_ONCE)
    assert result.returncode == 2, result.stderr      # incomplete: never "clean"
    assert "could not be inspected (" in result.stderr
    denied = int(result.stderr.split("could not be inspected (")[1].split()[0])
    assert denied >= len(population) - 1


def test_unreadable_proc_root_is_an_error():
    result = subprocess.run([sys.executable, "-m", "ptfast", "scan", "--proc-root",
                             "/nonexistent"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "/nonexistent" in result.stderr


def test_every_ignore_kind_against_real_processes(population, scan_json, tmp_path):
    fake = population["fake_deleted"].info["exe"]
    rules = tmp_path / "csf.pignore"
    rules.write_text("\n".join([
        f"user:{uid_for(101)}",                                        # bindshell
        f"puser:{uid_for(104)}",                                     # udp
        # a newline cannot be written in a one-rule-per-line file: a regex escape matches it
        "pexe:/tmp/ptfast-test-[^/]+/x\\x1b\\]0;pwned\\x07\\n\\*Suspicious\\*",  # hostile
        f"exe:{fake}",                                       # fake_deleted
        # (?s): the child's command line holds newlines, which "." does not cross (as in Perl)
        'pcmd:(?s).*create_connection\\(\\("::1", ROOT_PORT6\\).*',  # connected6
        "cmd:this matches nothing",
        "exe:/nonexistent/connected",
    ]) + "\n")
    findings = scan_json("--pignore", str(rules))
    for name in ("bindshell", "udp", "hostile", "fake_deleted", "connected6"):
        assert population[name].pid not in findings, name
    for name in ("connected", "container"):                 # negatives: still reported
        assert population[name].pid in findings, name
    assert fake.startswith("/tmp/ptfast-test-")


def test_ignored_exe_with_deleted_executable_is_still_reported(population, scan_json, tmp_path):
    rules = tmp_path / "csf.pignore"
    rules.write_text(f"exe:{population['deleted'].info['exe']}\n")
    findings = scan_json("--pignore", str(rules), "--set", "PT_DELETED=1")
    assert findings[population["deleted"].pid]["reasons"] == ["deleted executable"]


def test_bad_pignore_is_reported_and_the_scan_goes_on(population, tmp_path):
    rules = tmp_path / "csf.pignore"
    rules.write_text(f"pexe:/usr/(bin\nuser:{uid_for(101)}\n")
    result = run_scan("--json", "--pignore", str(rules))
    assert result.returncode == 1
    assert f"{rules}:1: invalid pexe regex".encode() in result.stderr
    pids = {json.loads(line)["pid"] for line in result.stdout.splitlines()}
    assert population["bindshell"].pid not in pids and population["connected"].pid in pids


def test_a_scan_that_does_not_wait_imports_only_what_it_uses():
    # each was paid by every scan (a tenth of its start-up together, docs/benchmarks.md):
    # the connect hook's module with ctypes and socket (only a scan that waits PT_CONN_AGE
    # opens the hook), tempfile (only writers), signal (only tune's watch), random (only a wait)
    unused = ["ptfast.scan.connecthook", "ptfast.scan.procevents", "ctypes", "socket",
              "tempfile", "signal", "random"]
    code = ("import sys\n"
            "from ptfast.commands.cli import main\n"
            f"main(['scan', '--json', '--config', {os.devnull!r}, '--override', {os.devnull!r},"
            " '--set', 'PT_CONN_AGE=0'])\n"
            f"print(sorted(set({unused!r}) & set(sys.modules)), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=core_env("compiled", False))
    assert result.stderr.splitlines()[-1] == "[]", result.stderr
