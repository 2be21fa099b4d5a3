"""csf.pignore: the ignore rules of process tracking.

One rule per line, ``kind:value``; kinds are case-insensitive, surrounding spaces trimmed:

* ``exe:/path``, ``user:name``, ``cmd:command line``: the value equals the string;
* ``pexe:REGEX``, ``puser:REGEX``, ``pcmd:REGEX``: a Perl-style regex matching the WHOLE value;
* ``Include /path/to/file`` pulls in another file; ``#`` starts a comment line.

Files are read as config files are (``config.read_lines``: regular files only, with a size cap,
a UTF-8 byte order mark dropped). An Include of a file that is already being read (by real
path: a cycle, however it is spelt) is reported and skipped; one already read elsewhere is
skipped quietly (its rules are in), so no arrangement of Includes reads a file twice.

Regexes are compiled with the ``regex`` library (Perl syntax such as POSIX classes, possessive
quantifiers and atomic groups works; ``\\d``/``\\w``/``\\s`` are ASCII as in Perl on bytes). Every
match runs under a time limit: a rule that backtracks catastrophically is reported with its file
and line and switched off, instead of stalling the scan. An invalid regex is reported and skipped;
the other rules still load.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import regex

from ptfast.foundation.problems import Problem
from ptfast.foundation.config import read_lines, unreadable_reason
from ptfast.foundation.paths import DEFAULT_PIGNORE_PATH
KINDS = ("exe", "user", "cmd")
REGEX_TIMEOUT = 0.05      # seconds one regex may spend on one value
MAX_INCLUDE_DEPTH = 8
# Rules are compiled together, CHUNK_SIZE to one alternation: one timed match per chunk instead
# of one per rule, and a compile cost that stays linear in the number of rules. Measured on a
# busy 2-core host: 50,000 rules as one alternation 55 s, in chunks of 500: 33 s; 10,000 rules
# compiled one by one 15.8 s, in chunks of 20: 8.5 s, of 100 or more: about 4.5 s. A match costs
# about 40 us per chunk of 500.
CHUNK_SIZE = 500
# The match cache: values already judged, bounded by their total size, not their number
# (distinct 2 MB command lines once grew it by megabytes a pass). Longer values than
# MAX_CACHED_VALUE are judged again each time rather than crowd out every other entry.
MATCH_CACHE_CHARS = 16 << 20
MAX_CACHED_VALUE = 1 << 20
CACHE_ENTRY_OVERHEAD = 100          # bytes a cached entry costs beyond its characters


@dataclass
class PatternRule:
    kind: str            # exe, user or cmd
    text: str            # the regex as written
    path: str
    line: int
    enabled: bool = True
    _pattern: object = None

    @property
    def pattern(self):
        """The rule compiled alone (only needed when its chunk cannot answer for it)."""
        if self._pattern is None:
            self._pattern = _regex().compile(self.text, _regex().ASCII)
        return self._pattern


def _regex():
    """The ``regex`` library, imported when a p* rule first needs it: a rule file without
    regexes (ptfast's built-in list) costs no import of it."""
    import regex
    return regex


# Rules that cannot share one alternation with others: global inline flags such as (?s) would
# leak into the other rules, and group references would change their numbers.
# (the standard re is enough to read a rule's text; regex is for matching with it)
_NOT_COMBINABLE = re.compile(r"\(\?[a-zA-Z]+\)|\\[1-9]|\(\?P=|\(\?P<|\(\?<[a-zA-Z_]")


def _not_combinable(text: str) -> bool:
    return _NOT_COMBINABLE.search(text) is not None


@dataclass
class Chunk:
    """Rules matched as one alternation (``pattern`` None: each rule alone)."""

    rules: list
    pattern: Optional[regex.Pattern] = None


def _alternation(rules: list):
    if len(rules) == 1:
        return rules[0].pattern
    return _regex().compile("|".join(f"(?:{rule.text})" for rule in rules), _regex().ASCII)


@dataclass
class IgnoreRules:
    exact: dict = field(default_factory=lambda: {kind: set() for kind in KINDS})
    patterns: dict = field(default_factory=lambda: {kind: [] for kind in KINDS})
    problems: list = field(default_factory=list)
    sources: list = field(default_factory=list)   # files read, in order
    _reading: list = field(default_factory=list)   # real paths of the Include chain being read
    _read: set = field(default_factory=set)        # real paths of every file read
    _cache: dict = field(default_factory=lambda: {kind: {} for kind in KINDS})
    _cached_chars: int = 0
    _chunks: dict = field(default_factory=dict)    # kind -> [Chunk], built by prepare()
    _unsaid: list = field(default_factory=list)    # problems found while matching
    compile_seconds: float = 0.0                   # what prepare() took (`check` shows it)

    def rule_count(self) -> int:
        return sum(len(v) for v in self.exact.values()) + sum(len(v) for v in
                                                             self.patterns.values())

    def switched_off(self) -> list:
        """Regex rules switched off after a match ran too long: "FILE:LINE: kind regex"."""
        return [f"{rule.path}:{rule.line}: p{rule.kind}:{rule.text}"
                for rules in self.patterns.values() for rule in rules if not rule.enabled]

    def rules_changed(self) -> None:
        self._chunks.clear()
        self._clear_cache()

    def _clear_cache(self) -> None:
        for cache in self._cache.values():
            cache.clear()
        self._cached_chars = 0

    def take_match_problems(self) -> list:
        """Problems found while matching since the last call (a rule switched off after a
        regex timeout): whoever runs passes must say them. Problems of loading are not
        included; they are in ``problems`` from the start."""
        said, self._unsaid = self._unsaid, []
        return said

    # -- compiling ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Compile every regex rule, CHUNK_SIZE to an alternation; an invalid one is reported
        and dropped. Done once after loading, so no pass pays for it."""
        started = time.perf_counter()
        for kind in KINDS:
            if kind not in self._chunks:
                self._chunks[kind] = self._build_chunks(kind)
        self.compile_seconds = time.perf_counter() - started

    def _build_chunks(self, kind: str) -> list:
        enabled = [rule for rule in self.patterns[kind] if rule.enabled]
        together = [rule for rule in enabled if not _not_combinable(rule.text)]
        alone = [rule for rule in enabled if _not_combinable(rule.text)]
        invalid: list = []
        chunks = [self._chunk(together[start:start + CHUNK_SIZE], invalid)
                  for start in range(0, len(together), CHUNK_SIZE)]
        chunks += [self._chunk([rule], invalid) for rule in alone]
        if invalid:                 # skipped, as if never written
            self.patterns[kind] = [rule for rule in self.patterns[kind] if rule not in invalid]
        return [chunk for chunk in chunks if chunk.rules]

    def _chunk(self, rules: list, invalid: list) -> Chunk:
        """One alternation of ``rules``; when it does not compile, each rule alone finds the
        invalid ones (reported and added to ``invalid``)."""
        try:
            return Chunk(rules, _alternation(rules))
        except _regex().error:
            pass
        valid = []
        for rule in rules:
            try:
                rule.pattern        # noqa: B018 (compiles it)
                valid.append(rule)
            except _regex().error as exc:
                invalid.append(rule)
                self.problems.append(Problem(rule.path, rule.line,
                                             f"invalid p{rule.kind} regex '{rule.text}': {exc}",
                                             consequence="rule skipped"))
        try:
            return Chunk(valid, _alternation(valid) if valid else None)
        except _regex().error:         # valid alone, not together: match each alone
            return Chunk(valid, None)

    # -- matching -------------------------------------------------------------------------
    def _rule_matches(self, rule: PatternRule, value: str) -> bool:
        try:
            return rule.pattern.fullmatch(value, timeout=REGEX_TIMEOUT) is not None
        except TimeoutError:
            rule.enabled = False
            problem = Problem(
                rule.path, rule.line,
                f"{rule.kind} regex '{rule.text}' took over {REGEX_TIMEOUT * 1000:.0f} ms on a "
                f"value of {len(value)} characters (catastrophic backtracking); "
                "rule switched off")
            self.problems.append(problem)
            self._unsaid.append(problem)
            return False

    def _chunk_matches(self, chunk: Chunk, value: str) -> bool:
        if chunk.pattern is not None:
            try:
                return chunk.pattern.fullmatch(value, timeout=REGEX_TIMEOUT) is not None
            except TimeoutError:
                pass
        # each rule alone (a list, not a generator: all culprits are found, switched off and
        # reported, not only the first); then the chunk without the culprits
        matched = any([self._rule_matches(rule, value) for rule in chunk.rules if rule.enabled])
        if any(not rule.enabled for rule in chunk.rules):
            chunk.rules = [rule for rule in chunk.rules if rule.enabled]
            chunk.pattern = self._chunk(chunk.rules, []).pattern if chunk.rules else None
        return matched

    def _matches_pattern(self, kind: str, value: str) -> bool:
        chunks = self._chunks.get(kind)
        if chunks is None:
            chunks = self._chunks[kind] = self._build_chunks(kind)
        return any(self._chunk_matches(chunk, value) for chunk in chunks if chunk.rules)

    def ignores(self, kind: str, value: str) -> bool:
        """Does an ``exe``/``user``/``cmd`` rule (exact or regex) match ``value``?"""
        if value in self.exact[kind]:
            return True
        if not self.patterns[kind]:
            return False
        cache = self._cache[kind]
        hit = cache.get(value)
        if hit is not None:
            return hit
        hit = self._matches_pattern(kind, value)
        if len(value) <= MAX_CACHED_VALUE:
            cost = len(value) + CACHE_ENTRY_OVERHEAD
            if self._cached_chars + cost > MATCH_CACHE_CHARS:
                self._clear_cache()
            cache[value] = hit
            self._cached_chars += cost
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
                                                        f"'{line[:60]}'"))
            continue
        if not value:
            rules.problems.append(Problem(path, number, f"empty {kind}: rule"))
            continue
        if not regex_kind:
            rules.exact[kind].add(value)
            continue
        rules.patterns[kind[1:]].append(PatternRule(kind[1:], value, path, number))
    rules.rules_changed()
    if depth == 0:              # every Include read: compile (and check) the regexes now
        rules.prepare()
        # in the order of the files and lines they are about, as they were written
        order = {source: index for index, source in enumerate(rules.sources)}
        rules.problems.sort(key=lambda problem: (order.get(problem.path, len(order)),
                                                 problem.line))


def _include(target: str, path: str, number: int, rules: IgnoreRules, depth: int) -> None:
    if depth >= MAX_INCLUDE_DEPTH:
        rules.problems.append(Problem(path, number, f"Include '{target}' nested more than "
                                                    f"{MAX_INCLUDE_DEPTH} deep; skipped"))
        return
    load_file(target, rules, depth + 1, included_from=(path, number))


def load_file(path: str, rules: IgnoreRules, depth: int = 0, included_from=None) -> None:
    where_path, where_line = included_from or (path, 0)
    real = os.path.realpath(path)
    if real in rules._reading:
        rules.problems.append(Problem(where_path, where_line,
                                      f"Include {path} is a cycle ({real} is already being "
                                      "read); skipped"))
        return
    if real in rules._read:
        return
    try:
        lines = read_lines(path)
    except OSError as exc:
        what = (f"cannot read {path}: {unreadable_reason(exc)}; the ignore rules are incomplete"
                if included_from else f"cannot read: {unreadable_reason(exc)}")
        rules.problems.append(Problem(where_path, where_line, what, fatal=True))
        return
    rules.sources.append(path)
    rules._read.add(real)
    rules._reading.append(real)
    try:
        parse_lines(lines, path, rules, depth)
    finally:
        rules._reading.pop()


BUILTIN_SOURCE = "built-in default ignore list"


def builtin_lines() -> list:
    # beside this module: importlib.resources would cost more to import than the file to read
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.pignore")
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()


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
