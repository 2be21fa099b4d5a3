"""One pass is not a mail flood: past PT_DIGEST_AFTER, one digest mail lists the rest; every
finding is still logged, written to the events file and remembered."""

import os
import time

import pytest

from ptfast import config, findings, policy

from helpers.procs import start_python
from helpers.service import SendmailRecorder, ServiceDir
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
