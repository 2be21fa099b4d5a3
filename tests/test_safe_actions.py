"""Action scripts (and SENDMAIL) run as root only when no customer can change them (issue 13,
item 4): owned by root, not group/other-writable, in directories that are the same up to /."""

import json
import os
import subprocess
import sys

import pytest

from helpers.procs import start_copied_python
from helpers.service import SendmailRecorder, ServiceDir
from helpers.uids import uid_for
from helpers.inproc import run_ptfast

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

CUSTOMER = uid_for(610)
MINER = uid_for(611)


def recording_script(path, record) -> None:
    path.write_text(f"#!{sys.executable} -S\nimport json, sys\n"
                    f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    path.chmod(0o755)


@pytest.fixture
def scripts(tmp_path):
    """name -> (script, record): one safe script and three a customer could change."""
    made = {}
    root_dir = tmp_path / "root-scripts"
    root_dir.mkdir(mode=0o700)
    customer_dir = tmp_path / "customer"
    customer_dir.mkdir(mode=0o755)
    os.chown(customer_dir, CUSTOMER, CUSTOMER)
    records = tmp_path / "records"
    records.mkdir(mode=0o777)
    records.chmod(0o777)               # customer-owned scripts must be able to record, too
    for name, directory in (("safe", root_dir), ("customer_owned", root_dir),
                            ("group_writable", root_dir), ("in_customer_dir", customer_dir)):
        script, record = directory / name, records / f"{name}.json"
        recording_script(script, record)
        made[name] = (script, record)
    os.chown(made["customer_owned"][0], CUSTOMER, CUSTOMER)
    os.chown(made["group_writable"][0], 0, CUSTOMER)
    made["group_writable"][0].chmod(0o775)
    return made


def test_deleted_action_runs_only_when_no_customer_can_change_it(tmp_path, scripts, aged):
    root = tmp_path / "service"
    root.mkdir(mode=0o700)
    service = ServiceDir(root, MINER)
    recorder = SendmailRecorder(str(tmp_path))
    child = start_copied_python("miner", uid=MINER, delete=True)
    try:
        for name, (script, _record) in scripts.items():
            # a fresh state each time: the same process is reported again
            subprocess.run(["rm", "-rf", service.state_dir], check=True)
            result = service.run_once("PT_DELETED=1", f"PT_DELETED_ACTION={script}",
                                      f"SENDMAIL={recorder.path}")
            assert result.returncode == 0, result.stderr
    finally:
        child.stop()
    assert json.loads(scripts["safe"][1].read_text())[1] == str(child.pid)
    for name in ("customer_owned", "group_writable", "in_customer_dir"):
        script, record = scripts[name]
        assert not record.exists(), f"{name} ran as root"
    log = service.log()
    customer_dir = scripts["in_customer_dir"][0].parent
    assert (f"PT_DELETED_ACTION {scripts['customer_owned'][0]} not run: "
            f"{scripts['customer_owned'][0]} is owned by uid {CUSTOMER}, not by root") in log
    assert f"{scripts['group_writable'][0]} is writable by group {CUSTOMER}" in log
    assert f"directory {customer_dir} is owned by uid {CUSTOMER}" in log
    assert len(recorder.calls()) == 4                  # the alerts went out all the same


def test_check_reports_every_unsafe_action_script_and_sendmail(tmp_path, scripts):
    settings = {"PT_DELETED_ACTION": "customer_owned", "PT_USER_ACTION": "group_writable",
                "PT_LOAD_ACTION": "in_customer_dir", "SENDMAIL": "customer_owned"}
    command = ["check", "--config", os.devnull, "--override", os.devnull, "--pignore", os.devnull,
               "--state-dir", str(tmp_path / "state"), "--log-file", str(tmp_path / "log"),
               "--events-file", str(tmp_path / "events")]
    for setting, name in settings.items():
        command += ["--set", f"{setting}={scripts[name][0]}"]
    result = run_ptfast(command, text=True)
    assert result.returncode == 2
    for setting, name in settings.items():
        assert f"--set: {setting} {scripts[name][0]} will not be run: " in result.stdout
    safe = run_ptfast(command[:-8] + ["--set", f"PT_DELETED_ACTION={scripts['safe'][0]}",
                                      "--set", f"SENDMAIL={scripts['safe'][0]}"], text=True)
    assert safe.returncode == 0, safe.stdout
    assert "no problems found" in safe.stdout
