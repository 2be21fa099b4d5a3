"""The typed settings (ptfast.foundation.config.Settings): frozen, each part's slice holds the
settings it is named after, and mypy refuses a misspelt setting."""

import dataclasses
import os
import subprocess
import sys

import pytest

from ptfast.foundation import config
from ptfast.foundation.config import SETTINGS, Settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLICES = ("service", "accounts", "actions", "load", "tracking", "mail", "webhooks", "metrics")


def default_values() -> dict:
    return {name: setting.default for name, setting in SETTINGS.items()}


def fields_named_after_settings(settings: Settings) -> dict:
    """(slice path, field) -> value of every slice field that bears a setting's name (the
    others, such as ``interval``, are worked out from one)."""
    found = {}

    def walk(part, path):
        for field in dataclasses.fields(part):
            value = getattr(part, field.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{path}.{field.name}")
            elif field.name in SETTINGS:
                found[(path, field.name)] = value
    for name in SLICES:
        walk(getattr(settings, name), name)
    return found


def another_value(setting):
    """A value of ``setting``'s kind other than its default (ranges are not the point here)."""
    if setting.kind == config.TEXT:
        return " /another/value "
    if setting.limits == config.FLAG:
        return 1 - setting.default
    return setting.default + (3 if setting.kind == config.INT else 1.5)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_a_setting_reaches_exactly_the_slice_fields_named_after_it(name):
    # mypy checks names and types; this catches two settings of one type wired crosswise
    before = fields_named_after_settings(Settings(default_values()))
    after = fields_named_after_settings(Settings({**default_values(),
                                                  name: another_value(SETTINGS[name])}))
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {key for key in before if key[1] == name}


def test_a_slice_holds_the_value_as_its_part_uses_it():
    values = {**default_values(), "SENDMAIL": "  /usr/sbin/sendmail  ", "PT_SSHDHUNG": 1,
              "PT_CUSTOMER_CODE_USERS": " alice, ,bob ", "PT_INTERVAL": 5, "PT_LOAD_AVG": 7}
    settings = Settings(values)
    assert settings.SENDMAIL == "  /usr/sbin/sendmail  "      # as given, for check's listing
    assert settings.mail.SENDMAIL == "/usr/sbin/sendmail"
    assert settings.tracking.PT_SSHDHUNG is True
    assert settings.accounts.PT_CUSTOMER_CODE_USERS == ("alice", "bob")
    assert (settings.PT_INTERVAL, settings.service.interval) == (5, config.RAISED_INTERVAL)
    assert (settings.PT_LOAD_AVG, settings.load.minutes) == (7, 5)


def test_settings_and_their_slices_are_frozen():
    settings = config.defaults(panel=False).settings
    with pytest.raises(AttributeError):
        settings.PT_LIMIT = 0                               # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.PT_LIMTI = 0                               # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.mail.SENDMAIL = "/tmp/evil"                # type: ignore[misc]
    assert settings.PT_LIMIT == 60 and Settings.PT_LIMIT.default == 60


def test_every_setting_is_declared_with_its_meaning_and_kind():
    for name, setting in SETTINGS.items():
        assert setting.name == name and setting.help, name
        assert isinstance(setting.default, {config.INT: int, config.FLOAT: float,
                                            config.TEXT: str}[setting.kind]), name
        assert (setting.limits is None) == (setting.kind == config.TEXT), name


MISSPELT = """\
from ptfast.foundation.config import Settings, defaults
settings = defaults().settings
limit: int = settings.PT_LIMTI
relay: str = settings.mail.LF_ALERT_SMPT
level: str = settings.PT_LOAD_LEVEL
where = Settings.PT_INTERVALL
"""


def test_mypy_refuses_a_misspelt_setting(tmp_path, request):
    pytest.importorskip("mypy")
    program = tmp_path / "misspelt.py"
    program.write_text(MISSPELT)
    # mypy's cache in pytest's, kept between runs: mypy reads the standard library's stubs and
    # ptfast again only when they changed (0.75 s of CPU cold, 0.2 s warm); the program itself
    # is new each time, so it is always checked and its errors always said
    pytest_cache = getattr(request.config, "cache", None)     # None under -p no:cacheprovider
    cache = pytest_cache.mkdir("mypy") if pytest_cache else tmp_path / "cache"
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary",
                             "--cache-dir", str(cache), str(program)],
                            cwd=ROOT, capture_output=True, text=True)
    errors = {int(line.split(":")[1]): line.split(": error: ", 1)[1]
              for line in result.stdout.splitlines() if ": error: " in line}
    said = result.stdout + result.stderr
    assert sorted(errors) == [3, 4, 5, 6], said
    assert errors[3].startswith('"Settings" has no attribute "PT_LIMTI"'), said
    assert errors[4].startswith('"MailSettings" has no attribute "LF_ALERT_SMPT"'), said
    assert '"float"' in errors[5] and "[assignment]" in errors[5], said
    assert 'has no attribute "PT_INTERVALL"' in errors[6], said
