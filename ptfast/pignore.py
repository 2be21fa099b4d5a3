"""csf.pignore: the ignore rules of process tracking.

One rule per line, ``kind:value``; kinds are case-insensitive, surrounding spaces trimmed:

* ``exe:/path``, ``user:name``, ``cmd:command line``: the value equals the string;
* ``pexe:REGEX``, ``puser:REGEX``, ``pcmd:REGEX``: a Perl-style regex matching the WHOLE value;
* ``Include /path/to/file`` pulls in another file; ``#`` starts a comment line.

Regexes are compiled with the ``regex`` library (Perl syntax such as POSIX classes, possessive
quantifiers and atomic groups works; ``\\d``/``\\w``/``\\s`` are ASCII as in Perl on bytes). Every
match runs under a time limit: a rule that backtracks catastrophically is reported with its file
and line and switched off, instead of stalling the scan. An invalid regex is reported and skipped;
the other rules still load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources

import regex

from .config import Problem
from .paths import DEFAULT_PIGNORE_PATH
KINDS = ("exe", "user", "cmd")
REGEX_TIMEOUT = 0.05      # seconds one regex may spend on one value
MAX_INCLUDE_DEPTH = 8


@dataclass
class PatternRule:
    kind: str            # exe, user or cmd
    text: str            # the regex as written
    path: str
    line: int
    pattern: regex.Pattern   # compiled
    enabled: bool = True


# Rules that cannot share one alternation with others: global inline flags such as (?s) would
# leak into the other rules, and group references would change their numbers.
_NOT_COMBINABLE = regex.compile(r"\(\?[a-zA-Z]+\)|\\[1-9]|\(\?P=|\(\?P<|\(\?<[a-zA-Z_]")
MATCH_CACHE_SIZE = 50_000   # values remembered per kind


@dataclass
class IgnoreRules:
    exact: dict = field(default_factory=lambda: {kind: set() for kind in KINDS})
    patterns: dict = field(default_factory=lambda: {kind: [] for kind in KINDS})
    problems: list = field(default_factory=list)
    sources: list = field(default_factory=list)   # files read, in order
    _cache: dict = field(default_factory=lambda: {kind: {} for kind in KINDS})
    _combined: dict = field(default_factory=dict)  # kind -> (alternation or None, the rest)

    def rule_count(self) -> int:
        return sum(len(v) for v in self.exact.values()) + sum(len(v) for v in
                                                             self.patterns.values())

    def rules_changed(self) -> None:
        self._combined.clear()
        for cache in self._cache.values():
            cache.clear()

    def _compiled(self, kind: str) -> tuple:
        """One alternation of every combinable rule (one timed match per value instead of one
        per rule), and the rules that must run alone."""
        built = self._combined.get(kind)
        if built is None:
            enabled = [rule for rule in self.patterns[kind] if rule.enabled]
            together = [rule for rule in enabled if not _NOT_COMBINABLE.search(rule.text)]
            built = (None, enabled)
            if len(together) > 1:
                try:
                    alternation = regex.compile("|".join(f"(?:{rule.text})" for rule in together),
                                                regex.ASCII)
                    built = (alternation, [rule for rule in enabled if rule not in together])
                except regex.error:
                    pass
            self._combined[kind] = built
        return built

    def _rule_matches(self, rule: PatternRule, value: str) -> bool:
        try:
            return rule.pattern.fullmatch(value, timeout=REGEX_TIMEOUT) is not None
        except TimeoutError:
            rule.enabled = False
            self._combined.pop(rule.kind, None)
            self.problems.append(Problem(
                rule.path, rule.line,
                f"{rule.kind} regex {rule.text!r} took over {REGEX_TIMEOUT * 1000:.0f} ms on a "
                f"value of {len(value)} characters (catastrophic backtracking); "
                "rule switched off"))
            return False

    def _matches_pattern(self, kind: str, value: str) -> bool:
        alternation, alone = self._compiled(kind)
        if alternation is not None:
            try:
                if alternation.fullmatch(value, timeout=REGEX_TIMEOUT) is not None:
                    return True
            except TimeoutError:
                # every rule alone (a list, not a generator: all culprits are found, switched
                # off and reported, not only the first)
                return any([self._rule_matches(rule, value) for rule in self.patterns[kind]
                            if rule.enabled])
        return any(self._rule_matches(rule, value) for rule in alone if rule.enabled)

    def ignores(self, kind: str, value: str) -> bool:
        """Does an ``exe``/``user``/``cmd`` rule (exact or regex) match ``value``?"""
        if value in self.exact[kind]:
            return True
        if not self.patterns[kind]:
            return False
        cache = self._cache[kind]
        hit = cache.get(value)
        if hit is None:
            if len(cache) >= MATCH_CACHE_SIZE:   # command lines can be endless: stay bounded
                cache.clear()
            hit = cache[value] = self._matches_pattern(kind, value)
        return hit


def parse_lines(lines, path: str, rules: IgnoreRules, depth: int = 0) -> None:
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line[:8].lower() == "include " or line[:8].lower() == "include\t":
            _include(line[8:].strip(), path, number, rules, depth)
            continue
        kind, sep, value = line.partition(":")
        kind = kind.strip().lower()
        value = value.strip()
        regex_kind = kind.startswith("p") and kind[1:] in KINDS
        if not sep or not (kind in KINDS or regex_kind):
            rules.problems.append(Problem(path, number, f"not a rule: expected exe:, user:, "
                                                        f"cmd:, pexe:, puser: or pcmd:, got "
                                                        f"{line[:60]!r}"))
            continue
        if not value:
            rules.problems.append(Problem(path, number, f"empty {kind}: rule"))
            continue
        if not regex_kind:
            rules.exact[kind].add(value)
            continue
        try:
            pattern = regex.compile(value, regex.ASCII)
        except regex.error as exc:
            rules.problems.append(Problem(path, number, f"invalid {kind} regex {value!r}: {exc}; "
                                                        "rule skipped"))
            continue
        rules.patterns[kind[1:]].append(PatternRule(kind[1:], value, path, number, pattern))
    rules.rules_changed()


def _include(target: str, path: str, number: int, rules: IgnoreRules, depth: int) -> None:
    if depth >= MAX_INCLUDE_DEPTH:
        rules.problems.append(Problem(path, number, f"Include {target!r} nested more than "
                                                    f"{MAX_INCLUDE_DEPTH} deep; skipped"))
        return
    load_file(target, rules, depth + 1, included_from=(path, number))


def load_file(path: str, rules: IgnoreRules, depth: int = 0, included_from=None) -> None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.readlines()
    except OSError as exc:
        where_path, where_line = included_from or (path, 0)
        rules.problems.append(Problem(where_path, where_line,
                                      f"cannot read {path}: {exc.strerror}"))
        return
    rules.sources.append(path)
    parse_lines(lines, path, rules, depth)


BUILTIN_SOURCE = "built-in default ignore list"


def builtin_lines() -> list:
    return resources.files("ptfast").joinpath("default.pignore").read_text().splitlines()


def load(path: str | None = None) -> IgnoreRules:
    """Rules from ``path``; without one, /etc/csf/csf.pignore when it exists, else ptfast's
    built-in list for common daemons on generic Linux hosts."""
    rules = IgnoreRules()
    if path is None and not os.path.exists(DEFAULT_PIGNORE_PATH):
        rules.sources.append(BUILTIN_SOURCE)
        parse_lines(builtin_lines(), BUILTIN_SOURCE, rules)
        return rules
    load_file(path or DEFAULT_PIGNORE_PATH, rules)
    return rules
