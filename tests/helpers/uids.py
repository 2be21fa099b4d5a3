"""uids for the tests' processes: a block that no account and no running process uses.

The suite runs on real servers, beside whatever else runs there (another test run included):
fixed uids could belong to someone, and a test counting "the processes of uid N" would count
theirs too. The block is chosen once per test session.
"""

from __future__ import annotations

import os
import pwd
import random

BLOCK = 1000


def _uids_in_use() -> set:
    used = {entry.pw_uid for entry in pwd.getpwall()}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"Uid:"):
                        used.update(int(field) for field in line.split()[1:])
                        break
        except (OSError, ValueError):
            continue
    return used


def _pick_base() -> int:
    used = _uids_in_use()
    chooser = random.SystemRandom()
    while True:
        base = chooser.randrange(1_000_000, 2_000_000_000, BLOCK)
        if not any(base <= uid < base + BLOCK for uid in used):
            return base


BASE = _pick_base()


def uid_for(offset: int) -> int:
    """The test uid number ``offset`` (0 <= offset < 1000) of this session."""
    if not 0 <= offset < BLOCK:
        raise ValueError(f"uid offset {offset} outside 0..{BLOCK - 1}")
    return BASE + offset
