"""One pass is not a mail flood: past PT_DIGEST_AFTER, one digest mail lists the rest; every
finding is still logged, written to the events file and remembered."""

import os
import time

import pytest

from ptfast import alerts, bounds, config, findings, pignore, policy, settings, spool
from ptfast.checks import MAX_LOGGED_FORKBOMB_PROCESSES
from ptfast.respond import Responder

from helpers.procs import start_python
from helpers.service import SendmailRecorder, ServiceDir
from helpers.snapshots import proc
from helpers.uids import uid_for

pytestmark = pytest.mark.needs_root

UID = uid_for(210)
LISTENERS = 7


def test_past_pt_digest_after_one_mail_lists_the_rest(tmp_path, children):
    for _ in range(LISTENERS):
        children.append(start_python('listen(socket.AF_INET, "127.0.0.1")', uid=UID))
    time.sleep(1.2)                                  # older than PT_LIMIT=1
    service = ServiceDir(tmp_path, UID)
    recorder = SendmailRecorder(str(tmp_path))
    settings = (f"SENDMAIL={recorder.path}", "PT_DIGEST_AFTER=3", "PT_USERPROC=0")
    result = service.run_once(*settings)
    assert result.returncode == 0, result.stderr.decode()
    subjects = [call["parsed"]["Subject"] for call in recorder.calls()]
    assert len(subjects) == 4, subjects
    assert sum("suspicious process" in subject for subject in subjects) == 3
    [digest] = [call["parsed"] for call in recorder.calls()
                if "4 more findings in one pass" in call["parsed"]["Subject"]]
    body = digest.get_content()
    digested = {child.pid for child in children if f"*Suspicious Process* PID:{child.pid} "
                in body}
    assert len(digested) == LISTENERS - 3
    # nothing lost: each one in the log and the events file, the digest's with its spool file
    log = service.log()
    assert all(f"*Suspicious Process* PID:{child.pid} " in log for child in children)
    events = service.events()
    assert {event["pid"] for event in events} == {child.pid for child in children}
    assert sum(event["response"]["alert"] == "digest.txt" for event in events) == 4
    # and remembered: the next pass mails nothing
    assert service.run_once(*settings).returncode == 0
    assert len(recorder.calls()) == 4


def test_digest_is_planned_by_the_policy_and_off_at_zero():
    conf = config.load(os.devnull, [], override_path=os.devnull)
    planned = [findings.Finding("suspicious", ("socket",), None, "alice",
                                response=findings.Response(alert="processtracking.txt"))
               for _ in range(12)]
    planned.insert(5, findings.Finding("sshd_hung", ("x",), None, "sshd"))   # mails nothing
    alerts = [f.response.alert for f in policy.digest_beyond(planned, conf["PT_DIGEST_AFTER"])]
    assert conf["PT_DIGEST_AFTER"] == 10
    assert alerts.count("processtracking.txt") == 10 and alerts.count("digest.txt") == 2
    assert alerts[5] is None
    again = [findings.Finding("suspicious", ("socket",), None, "alice",
                              response=findings.Response(alert="processtracking.txt"))
             for _ in range(12)]
    assert all(f.response.alert == "processtracking.txt"
               for f in policy.digest_beyond(again, 0))


class _Memory:
    def remember(self, memo):
        pass


class _Actions:
    def run(self, *args):
        pass


def respond_to(tmp_path, found) -> str:
    """Carry ``found`` out with a real spool in ``tmp_path``; the digest as the spool reads it
    back (OSError when it does not fit)."""
    conf = config.load(os.devnull, [], override_path=os.devnull)
    the_settings = settings.Settings(conf, pignore.IgnoreRules(), alerts.Templates(None))
    the_spool = spool.Spool(str(tmp_path))
    responder = Responder(the_settings, lambda line: None, the_spool, _Memory(), _Actions(),
                          hostname="host", user_names=lambda uid: "\u202e\U0001d4c1" * 50,
                          proc_root="/nonexistent", events_file=None)
    responder.carry_out_all(found)
    [digest] = [path for path in the_spool.pending()
                if b"more findings in one pass" in the_spool.read(path)[:4096]]
    return the_spool.read(digest).decode()


def test_the_worst_digest_fits_the_spool(tmp_path):
    """As many findings as one likes, each with the longest command line the kernel takes for
    one argument and the longest path, of 4-byte characters and control characters (16 escaped
    characters each), and fork bombs of thousands of processes: the digest still fits."""
    cmdline = ("\U0001d4c1\x1b" * (128 << 10))[:(128 << 10) - 1]
    exe = "/tmp/" + "\U0001d4c1" * 1020
    members = tuple(proc(10_000 + n, exe=exe, cmdline=cmdline) for n in range(5000))
    found = [findings.Finding("forkbomb", ("fork bomb",), members[0], "alice", members,
                              f"session {number} holds 5000 processes >= PT_FORKBOMB 100",
                              response=findings.Response(alert="digest.txt"))
             for number in range(3)]
    found += [findings.Finding("suspicious", ("socket",),
                               proc(1000 + n, exe=exe, cmdline=cmdline), "alice",
                               response=findings.Response(alert="digest.txt"))
              for n in range(400)]
    digest = respond_to(tmp_path, found)
    assert len(digest.encode()) <= bounds.MAX_DIGEST_CHARS + 4096      # + the template
    assert len(digest.encode()) < spool.MAX_ENTRY_BYTES
    assert digest.isascii()
    assert f"... and {400 + 3 - bounds.MAX_DIGEST_ENTRIES} more findings" in digest
    # a bomb's entry: its first processes, how many lines were left out, and its verdict
    assert "*PT_FORKBOMB* session 0 holds 5000 processes >= PT_FORKBOMB 100" in digest
    logged = MAX_LOGGED_FORKBOMB_PROCESSES + 2             # and "... and N more processes"
    assert f"... {logged - (bounds.MAX_ENTRY_LINES - 1)} more lines of this finding" in digest
