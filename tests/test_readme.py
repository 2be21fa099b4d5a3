"""The README stays an admin's document, in step with the code: short, with its section on
silencing a false positive, every command and each command's true options, every setting with
its default, and links that lead somewhere. Runs without root."""

import argparse
import os
import re

from ptfast.foundation import config
from ptfast.commands.cli import build_parser

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
README = os.path.join(ROOT, "README.md")
MAX_LINES = 420


def readme() -> str:
    with open(README, encoding="utf-8") as handle:
        return handle.read()


def section(text: str, heading: str) -> str:
    """From ``heading`` (a whole line) to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.find(f"\n{heading}\n")
    assert start >= 0, f"README.md has no section {heading!r}"
    rest = text[start + len(heading) + 2:]
    ends = [match.start() for match in re.finditer(r"^#{1,%d} " % len(level), rest, re.M)]
    return rest[:ends[0]] if ends else rest


def table_rows(text: str) -> list:
    """The cells of each row of the markdown tables in ``text`` (header and rule left out)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [row for row in rows if row[0] not in ("command", "setting", "path", "file")]


def subcommands() -> dict:
    return dict(next(action for action in build_parser()._actions
                     if isinstance(action, argparse._SubParsersAction)).choices)


def test_the_readme_is_short():
    lines = readme().count("\n")
    assert lines <= MAX_LINES, (f"README.md has {lines} lines: keep it an admin's document "
                                "and put the long form in docs/")


def test_lines_3_and_4_are_the_install_and_test_commands():
    """.ci/run runs line 4 exactly; line 3 must not leave a venv mixed from two Pythons."""
    lines = readme().split("\n")
    assert lines[2].startswith("    python3 -m venv --clear /opt/ptfast && ")
    assert lines[3].startswith("    python3 -m venv --clear .venv && ") and "pytest" in lines[3]


def test_silencing_a_false_positive_has_the_syntax_and_the_workflow():
    text = section(readme(), "## Silencing a false positive")
    for kind in ("user:", "exe:", "cmd:", "puser:", "pexe:", "pcmd:", "Include "):
        assert f"`{kind}" in text, kind
    assert "/etc/csf/csf.pignore" in text
    workflow = [text.index(f"\n    {step}") for step in     # the commands, in that order
                ("ptfast baseline", "ptfast check", "systemctl reload ptfast")]
    assert workflow == sorted(workflow)


def test_the_commands_table_has_every_subcommand():
    rows = table_rows(section(readme(), "### Commands").split("Options")[0])
    listed = {match.group(1) for match in
              (re.fullmatch(r"`ptfast ([a-z][a-z-]*)`", row[0]) for row in rows) if match}
    assert listed == set(subcommands())


def test_the_options_table_gives_each_command_its_true_options():
    rows = table_rows(section(readme(), "### Commands").split("Options", 1)[1])
    documented = {row[0].strip("`"): set(re.findall(r"`(--[a-z-]+)", row[1])) for row in rows}
    actual = {name: {option for action in parser._actions for option in action.option_strings
                     if option.startswith("--") and option != "--help"}
              for name, parser in subcommands().items()}
    assert documented == actual


def shown_default(default) -> str:
    if default == "":
        return "empty"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def test_every_setting_has_a_row_with_its_default():
    rows = table_rows(section(readme(), "### Settings"))
    documented = {}
    for row in rows:
        for name in re.findall(r"`([A-Z_]+)`", row[0]):
            documented[name] = row[1]
    missing = set(config.SETTINGS) - set(documented)
    assert not missing, f"settings without a row in the README's reference: {sorted(missing)}"
    for name, setting in config.SETTINGS.items():
        assert documented[name].startswith(shown_default(setting.default)), (name, documented[name])


def test_lfds_settings_and_ptfasts_own_are_in_tables_of_their_own():
    """Admins read in the README which settings are lfd's (at home in csf.conf) and which are
    ptfast's own (put in ptfast.conf): as declared (config.Setting.lfd)."""
    tables = re.split(r"\n(?!\|)[^\n]*\n", section(readme(), "### Settings"))
    whose = []
    for table in tables:
        names = {name for row in table_rows(table) for name in re.findall(r"`([A-Z_]+)`", row[0])
                 if name in config.SETTINGS}
        if names:
            whose.append({name: config.SETTINGS[name].lfd for name in names})
    assert len(whose) == 2, whose
    for table in whose:
        assert len(set(table.values())) == 1, table


def anchors(text: str) -> set:
    """The anchors GitHub makes of a markdown file's headings (outside code blocks)."""
    found, fenced = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_links_lead_to_files_and_their_sections():
    text = readme()
    for target, anchor in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", text):
        path = os.path.join(ROOT, target) if target else README
        assert os.path.exists(path), target
        if anchor:
            with open(path, encoding="utf-8") as handle:
                assert anchor in anchors(handle.read()), f"{target}#{anchor}"


def test_every_command_says_its_exit_status_in_help_and_readme():
    rows = table_rows(section(readme(), "### Exit codes"))
    in_readme = {name.split()[0] for row in rows for name in re.findall(r"`([a-z][^`]*)`", row[0])}
    commands = subcommands()
    assert in_readme == set(commands)
    for name, parser in commands.items():
        assert "exit status: 0 " in parser.format_help(), f"ptfast {name} --help"
