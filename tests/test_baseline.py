"""`ptfast baseline`: a draft of ignore lines for what a scan finds now, grouped, with only
lines no customer can borrow left active."""

import os
import subprocess
import sys
import time

import pytest

from helpers.procs import start_copied_python, start_python
from helpers.uids import uid_for

pytestmark = pytest.mark.needs_root

CUSTOMER = uid_for(230)
SYSTEM_ACCOUNT = 1              # "daemon" on Debian and EL alike: below UID_MIN
LISTEN = 'listen(socket.AF_INET, "127.0.0.1")'


def test_baseline_groups_and_leaves_only_unborrowable_lines_active(tmp_path, children):
    children.extend([start_python(LISTEN, uid=CUSTOMER) for _ in range(2)])  # an interpreter
    children.append(start_python(LISTEN, uid=SYSTEM_ACCOUNT))
    app = start_copied_python("appserver", LISTEN, uid=CUSTOMER)   # root's file, root's dir
    children.append(app)
    time.sleep(1.2)
    pignore = tmp_path / "pignore"
    pignore.write_text(f"puser:(?!(?:{CUSTOMER}|daemon)$).*\n")
    result = subprocess.run(
        [sys.executable, "-m", "ptfast", "baseline", "--config", os.devnull, "--override",
         os.devnull, "--pignore", str(pignore), "--set", "PT_LIMIT=1"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "a DRAFT, never applied" in text and "Anything already compromised" in text
    lines = text.splitlines()
    active = [line for line in lines if line and not line.startswith("#")]
    assert "user:daemon" in active
    assert f"exe:{app.info['exe']}" in active
    python = os.path.realpath(sys.executable)
    assert f"# exe:{python}" in lines and f"exe:{python}" not in active
    # grouped by listening ports: the customer's two python listeners are two groups
    assert sum(line.startswith(f"# user {CUSTOMER}, {python}, listening: tcp ")
               for line in lines) == 2
