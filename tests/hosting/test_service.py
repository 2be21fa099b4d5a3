"""Issue 21, measured as the service: ``ptfast run`` (live mode) on the busy bed, the attacks
planted while it runs (tests/hosting/live.py). Every attack reported at most
SECONDS_AFTER_LIMIT after its PT_LIMIT, by its log line and its mail; no false positive with
the built-in ignore list and at most CSF_FALSE_POSITIVES_AT_MOST with csf's cPanel
csf.pignore, never a worker, login process or session of a root service (the bed opens new
ones while the service runs, so live mode judges them at their PT_LIMIT too).
"""

from __future__ import annotations

import pytest

from .attacks import ATTACK_NAMES
from .goals import CSF_FALSE_POSITIVES_AT_MOST, SECONDS_AFTER_LIMIT, RUN_MISSES, attack_cases
from .live import SERVICE_IGNORE_FILES, service_table
from .measure import BUILTIN, SERVICE_WORKER_ROLES

pytestmark = pytest.mark.hosting

FALSE_POSITIVES_AT_MOST = {BUILTIN: 0, "csf.pignore": CSF_FALSE_POSITIVES_AT_MOST}


def test_the_goals_cover_every_ignore_file_the_service_ran_with():
    assert set(FALSE_POSITIVES_AT_MOST) == set(SERVICE_IGNORE_FILES)


@pytest.mark.parametrize("ignore_file", SERVICE_IGNORE_FILES)
def test_the_service_ran_all_along(hosting, ignore_file):
    assert hosting.service["service"][ignore_file]["failure"] == ""


@pytest.mark.parametrize("attack", attack_cases(ATTACK_NAMES, RUN_MISSES))
@pytest.mark.parametrize("ignore_file", SERVICE_IGNORE_FILES)
def test_every_attack_is_reported_soon_after_its_pt_limit(hosting, ignore_file, attack):
    results = hosting.service
    deadline = results["settings"]["PT_LIMIT"] + SECONDS_AFTER_LIMIT
    measured = next(entry for entry in results["attacks"] if entry["name"] == attack)
    logged, mailed = measured["to_log"][ignore_file], measured["to_mail"][ignore_file]
    explanation = "\n" + service_table(results)
    assert logged is not None and logged <= deadline, explanation
    assert mailed is not None and mailed <= deadline, explanation


@pytest.mark.parametrize("ignore_file", SERVICE_IGNORE_FILES)
def test_few_false_positives_of_the_service_and_no_service_worker(hosting, ignore_file):
    results = hosting.service
    found = results["service"][ignore_file]
    explanation = "\n" + service_table(results)
    workers = [role for role in found["false_positive_roles"]
               if role.startswith(SERVICE_WORKER_ROLES)]
    assert workers == [], explanation
    assert found["false_positives"] <= FALSE_POSITIVES_AT_MOST[ignore_file], explanation
