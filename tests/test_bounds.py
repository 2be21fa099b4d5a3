"""What a process shows ptfast is bounded in log lines, mails and events (issue 13, item 5): a
6 MB command line and 19,000 fds open to one long path, for real."""

import json
import os
import re
import resource
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ptfast.channels import alerts
from ptfast.foundation import bounds
from ptfast.foundation.escape import escape_text
from helpers.procs import public_tempdir, start_python
from helpers.service import SendmailRecorder, ServiceDir
from helpers.uids import uid_for

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = pytest.mark.usefixtures("aged")

LONG_ARGS = 46                       # arguments of 128 KiB - 1 (the kernel's most for one)
ARG_CHARS = 128 * 1024 - 1
FDS = 19_000
LISTEN = 'info["port"] = listen(socket.AF_INET, "127.0.0.1").getsockname()[1]'
# what one alert may weigh with these inputs: the lists are capped at MAX_LIST_CHARS each
MAX_MAIL_BYTES = 1 << 20
MAX_LOG_LINE = 4 * bounds.MAX_TEXT_CHARS + 1024


def test_bounded_text_says_what_it_left_out():
    assert bounds.bounded_text("a\nb") == "a\\nb"
    text = "x" * 10 + "\x1b" * 5
    assert bounds.bounded_text(text, 12) == "x" * 10 + "\\x1b\\x1b ... 3 more characters"


def test_bounded_lines_counts_repeats_and_caps_items_and_characters():
    lines = bounds.bounded_lines(["/a", "/b", "/a", "/a", "/c"], max_items=2)
    assert lines == ["/a (3 times)", "/b", "... 1 more"]
    many = bounds.bounded_lines((f"/file{n}" for n in range(10_000)), max_chars=100)
    assert sum(len(line) + 1 for line in many[:-1]) <= 100
    assert many[-1] == f"... {10_000 - len(many) + 1} more"
    rendered = []
    bounds.bounded_lines(range(10_000), lambda n: rendered.append(n) or str(n), max_items=3)
    assert rendered == [0, 1, 2]          # only what is shown is rendered


#: escape_text's output, token by token: an escape or one printable character that is none
WHOLE_ESCAPES = re.compile(r'(?:\\x[0-9a-f]{2}|\\[\\"\'nrt]|[ -\[\]-~])*')


def test_cut_escaped_cuts_between_escapes_and_says_how_much():
    line = escape_text("ab\x1bcd\\x41" * 100)
    for limit in range(40):
        cut = bounds.cut_escaped(line, limit)
        kept, _, note = cut.partition(" ... ")
        assert WHOLE_ESCAPES.fullmatch(kept) and line.startswith(kept)
        assert len(kept) > limit - 4
        assert note == f"{len(line) - len(kept)} more characters"
    assert bounds.cut_escaped("short") == "short"


# any text a process can show: 4-byte characters, controls, quotes, undecodable bytes
HOSTILE_TEXT = st.text(st.sampled_from(["a", " ", "\\", "\"", "\n", "\x1b", "\u202e", "\U0001d4c1",
                                        "\udcff", "x"]), max_size=300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(HOSTILE_TEXT, st.integers(1, 40)), max_size=8),
                max_size=bounds.MAX_DIGEST_ENTRIES + 20))
def test_a_digest_stays_under_its_bound_whatever_the_findings(entries):
    # each line repeated up to 40 times: lines of up to 12,000 characters, 190 KB escaped
    lines_of = [[escape_text(text * times) for text, times in entry] for entry in entries]
    digest = bounds.bounded_digest(lines_of)
    assert sum(len(line) + 1 for line in digest) <= bounds.MAX_DIGEST_CHARS
    assert all(line.isascii() and line.isprintable() for line in digest)
    shown = min(len(entries), bounds.MAX_DIGEST_ENTRIES)
    assert len(digest) <= shown * bounds.MAX_ENTRY_LINES + 1
    if len(entries) > bounds.MAX_DIGEST_ENTRIES:
        assert digest[-1].startswith(f"... and {len(entries) - shown} more findings")
    for line in digest:
        kept = line.split(" ... ", 1)[0]
        assert len(kept) <= bounds.MAX_ENTRY_LINE_CHARS and WHOLE_ESCAPES.fullmatch(kept)


def test_wrap_cuts_long_lines_and_loses_nothing():
    body = "head\n" + "y" * (3 * alerts.MAX_LINE + 5) + "\n\nend"
    wrapped = alerts.wrap(body)
    assert wrapped.replace("\n", "") == body.replace("\n", "")
    assert [len(line) for line in wrapped.split("\n")] == [4, alerts.MAX_LINE, alerts.MAX_LINE,
                                                           alerts.MAX_LINE, 5, 0, 3]


@pytest.fixture
def raised_stack_limit():
    """Room for a 6 MB argument list (the kernel allows a quarter of the stack limit, at most
    6 MB); restored afterwards."""
    before = soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    wanted = 64 << 20
    if hard != resource.RLIM_INFINITY:
        hard = max(hard, wanted)
    resource.setrlimit(resource.RLIMIT_STACK, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_STACK, before)


def long_path(base: str) -> str:
    """A directory path of about 3,900 characters (open() takes up to 4,095)."""
    parts = [("d%02d" % n) * 50 for n in range(19)]        # 19 components of 150 characters
    path = os.path.join(base, *parts)
    os.makedirs(path)
    for index in range(len(parts)):
        os.chmod(os.path.join(base, *parts[:index + 1]), 0o755)
    return os.path.join(path, "held.log")


#: runs a command and says its exit status and peak RSS (KB). A small interpreter in between:
#: a process's ru_maxrss keeps the high-water mark of the memory it had before its exec, which
#: for a child of the pytest worker is the worker's (163 MB after a few modules: it failed the
#: bound with ptfast's own peak far below it)
MEASURE = """
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_once_measured(service, *settings):
    """``ptfast run --once``; returns (exit status, stderr, its peak RSS in MB)."""
    result = subprocess.run([sys.executable, "-S", "-c", MEASURE, *service.command(*settings)],
                            capture_output=True, timeout=300)
    code, peak_kb = (int(field) for field in result.stdout.split())
    return code, result.stderr.decode(errors="replace"), peak_kb / 1024


@pytest.mark.needs_root
def test_a_huge_command_line_and_a_flood_of_fds_make_a_bounded_alert(tmp_path,
                                                                      raised_stack_limit):
    cmdline_uid, fds_uid = uid_for(630), uid_for(631)
    root = tmp_path / "service"
    root.mkdir(mode=0o700)
    service = ServiceDir(root, cmdline_uid, fds_uid)
    recorder = SendmailRecorder(str(tmp_path))
    base = public_tempdir()
    children = []
    try:
        held = long_path(base)
        long_args = tuple(chr(ord("a") + n % 26) * ARG_CHARS for n in range(LONG_ARGS))
        children.append(start_python(LISTEN, uid=cmdline_uid, argv=long_args))
        with open(held, "w"):
            pass
        os.chown(held, fds_uid, fds_uid)            # the customer's own file
        children.append(start_python(f"""
HELD = [open({held!r}, "a") for _ in range({FDS})]
{LISTEN}
""", uid=fds_uid, root_setup=f"""
resource.setrlimit(resource.RLIMIT_NOFILE, ({FDS + 100}, {FDS + 100}))
"""))
        with open(f"/proc/{children[0].pid}/cmdline", "rb") as handle:
            cmdline_chars = len(handle.read().rstrip(b"\0"))
        code, stderr, peak_mb = run_once_measured(service, f"SENDMAIL={recorder.path}",
                                                  "PT_USERPROC=0", "PT_USERMEM=0",
                                                  "PT_USERRSS=0", "PT_USERTIME=0")
    finally:
        for child in children:
            child.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert code == 0, stderr
    cmdline_pid, fds_pid = (child.pid for child in children)
    assert cmdline_chars > 6_000_000
    left_out = f"... {cmdline_chars - bounds.MAX_TEXT_CHARS} more characters"

    assert len(recorder.calls()) == 2
    for call in recorder.calls():
        message = call["message"].encode()
        assert len(message) < MAX_MAIL_BYTES
        assert max(len(line) for line in message.split(b"\n")) <= alerts.MAX_LINE
    bodies = "".join(call["message"] for call in recorder.calls())
    assert left_out in bodies.replace("\n", "")

    lines = service.log().splitlines()
    suspicious = {int(line.split("PID:")[1].split()[0]): line for line in lines
                  if "*Suspicious Process*" in line}
    assert set(suspicious) == {cmdline_pid, fds_pid}
    assert suspicious[cmdline_pid].endswith(left_out)
    assert max(len(line) for line in lines) < MAX_LOG_LINE

    with open(service.events_file, "rb") as handle:
        events = [json.loads(line) for line in handle]
    assert max(len(json.dumps(event)) for event in events) < MAX_MAIL_BYTES
    by_pid = {event["pid"]: event for event in events}
    # the path once (the core or the alert counts repeats), not 19,000 times
    assert [entry for entry in by_pid[fds_pid]["open_files"] if entry.startswith(held)] in (
        [held], [f"{held} ({FDS} times)"])
    assert by_pid[cmdline_pid]["cmdline"].endswith(left_out)
    # before: 590 MB for the fds alone; what is left is the interpreter and the scan
    assert peak_mb < 150, f"run --once peaked at {peak_mb:.0f} MB"
