"""csf.pignore rules: kinds, Perl-style regexes, Include, errors, pathological patterns."""

import os
import time

import pytest

from ptfast.decide import pignore
from helpers.realworld import REALWORLD, needs_realworld


def rules_from(tmp_path, text, name="csf.pignore"):
    path = tmp_path / name
    path.write_text(text)
    return pignore.load(str(path)), str(path)


def test_exact_kinds_case_insensitive_and_trimmed(tmp_path):
    rules, _ = rules_from(tmp_path, "# comment\n\n  EXE:/usr/sbin/named  \nUser:bob\n"
                                    "cmd:/usr/bin/perl /home/x/run.pl -d\n")
    assert rules.problems == []
    assert rules.ignores("exe", "/usr/sbin/named")
    assert not rules.ignores("exe", "/usr/sbin/named2")
    assert rules.ignores("user", "bob") and not rules.ignores("user", "bobby")
    assert rules.ignores("cmd", "/usr/bin/perl /home/x/run.pl -d")
    assert not rules.ignores("cmd", "/usr/bin/perl /home/x/run.pl")


@pytest.mark.parametrize("rule, kind, matching, not_matching", [
    (r"pexe:/usr/bin/php\d+", "exe", "/usr/bin/php81", "/usr/bin/php"),
    (r"pexe:/usr/bin/ph", "exe", "/usr/bin/ph", "/usr/bin/php"),              # whole value
    (r"pexe:^/usr/lib/jvm/java-.*/jre/bin/java$", "exe", "/usr/lib/jvm/java-11/jre/bin/java",
     "/tmp/usr/lib/jvm/java-11/jre/bin/java"),
    (r"pcmd:php-fpm: pool \w+", "cmd", "php-fpm: pool www", "php-fpm: pool www evil"),
    (r"pcmd:/usr/bin/python\s+/opt/app/.*", "cmd", "/usr/bin/python  /opt/app/x.py",
     "/usr/bin/pythonX /opt/app/x.py"),
    (r"pcmd:sshd: \w+ ?\[priv\]", "cmd", "sshd: alice [priv]", "sshd: alice  [priv]"),
    (r"pexe:/usr/sbin/(exim|postfix)", "exe", "/usr/sbin/postfix", "/usr/sbin/sendmail"),
    (r"pexe:/usr/local/bin/node\.js", "exe", "/usr/local/bin/node.js", "/usr/local/bin/nodexjs"),
    (r"puser:[a-z]{3}[0-9]", "user", "web1", "web12"),
    (r"pexe:/opt/[[:alpha:]]+/bin/.?x", "exe", "/opt/app/bin/x", "/opt/app1/bin/x"),
    (r"pcmd:\d+", "cmd", "123", "\u0661\u0662"),     # \d is ASCII, as in Perl on bytes
])
def test_perl_style_regexes_match_the_whole_value(tmp_path, rule, kind, matching, not_matching):
    rules, _ = rules_from(tmp_path, rule + "\n")
    assert rules.problems == []
    assert rules.ignores(kind, matching)
    assert not rules.ignores(kind, not_matching)


def test_invalid_regex_is_reported_and_the_rest_load(tmp_path):
    rules, path = rules_from(tmp_path, "exe:/bin/a\npexe:/usr/(bin\nbogus line\npuser:ok\\d\n")
    assert [(p.path, p.line) for p in rules.problems] == [(path, 2), (path, 3)]
    assert "invalid pexe regex" in rules.problems[0].message
    assert rules.ignores("exe", "/bin/a") and rules.ignores("user", "ok7")


def test_include(tmp_path):
    inner = tmp_path / "more.pignore"
    inner.write_text("user:carol\n")
    rules, _ = rules_from(tmp_path, f"Include {inner}\nuser:dave\nInclude /nonexistent/x\n")
    assert rules.ignores("user", "carol") and rules.ignores("user", "dave")
    assert len(rules.problems) == 1 and "/nonexistent/x" in rules.problems[0].message


def test_include_loop_is_stopped(tmp_path):
    path = tmp_path / "loop.pignore"
    path.write_text(f"Include {path}\nuser:erin\n")
    rules = pignore.load(str(path))
    assert rules.ignores("user", "erin")
    assert any("is a cycle" in p.message for p in rules.problems)


def test_catastrophic_regex_is_cut_off_reported_and_switched_off(tmp_path):
    rules, path = rules_from(tmp_path, "exe:/bin/x\npcmd:(a|aa)+b\n")
    hostile = "a" * 5000 + "!"
    started = time.monotonic()
    assert not rules.ignores("cmd", hostile)
    assert not rules.ignores("cmd", hostile)          # switched off: no second stall
    assert time.monotonic() - started < 10            # a hang guard, not a speed test
    (problem,) = rules.problems
    assert (problem.path, problem.line) == (path, 2)
    assert "catastrophic" in problem.message and "switched off" in problem.message


@needs_realworld
@pytest.mark.parametrize("name", ["csf.pignore", "csf.generic.pignore", "csf.cwp.pignore",
                                  "csf.directadmin.pignore", "csf.interworx.pignore"])
def test_real_world_pignore_files_load(name):
    rules = pignore.load(os.path.join(REALWORLD, name))
    assert rules.problems == []
    assert rules.rule_count() > 20


def test_realistic_pignore_with_every_syntax(tmp_path):
    text = """
# ptfast test: a realistic csf.pignore
exe:/usr/sbin/exim
EXE:/usr/libexec/dovecot/imap
 exe:/usr/local/cpanel/cpanel
user:mailman
USER:named
cmd:spamd child
cmd:/usr/sbin/httpd -k start
pexe:/usr/lib/jvm/java-.*/jre/bin/java
pexe:/usr/local/cpanel/3rdparty/bin/git.*
pexe:^/opt/cpanel/ea-php\\d+/root/usr/sbin/php-fpm$
PEXE:/usr/local/(bin|sbin)/lsphp\\d?
puser:cp[a-z]+\\d*
pcmd:php-fpm: pool \\S+
pcmd:/usr/bin/perl\\s+-w\\s+/usr/local/cpanel/.*
pcmd:imap\\s*\\[[\\w.@-]+ \\d+\\.\\d+\\.\\d+\\.\\d+\\]
"""
    rules, _ = rules_from(tmp_path, text)
    assert rules.problems == []
    assert rules.ignores("exe", "/usr/local/cpanel/cpanel")
    assert rules.ignores("exe", "/opt/cpanel/ea-php81/root/usr/sbin/php-fpm")
    assert rules.ignores("exe", "/usr/local/sbin/lsphp8")
    assert rules.ignores("user", "cpanelsolr2")
    assert rules.ignores("cmd", "imap [bob@example.com 192.168.0.10]")
    assert not rules.ignores("cmd", "imap [bob@example.com 192.168.0.10] ; rm")


def test_builtin_list_is_clean_and_used_without_a_file(monkeypatch, tmp_path):
    rules = pignore.IgnoreRules()
    pignore.parse_lines(pignore.builtin_lines(), pignore.BUILTIN_SOURCE, rules)
    assert rules.problems == []
    # service accounts only: nothing a customer can start (an interpreter, a JVM, dbus-daemon,
    # php-fpm or a web server with their own configuration) and no command line, which anyone
    # can borrow
    assert {kind for kind, values in rules.exact.items() if values} == {"user"}
    assert not any(rules.patterns.values())
    for account in ("mysql", "redis", "memcache", "bind", "Debian-exim", "dovenull"):
        assert rules.ignores("user", account), account
    for account in ("www-data", "apache", "nobody", "root"):       # customers' code runs so
        assert not rules.ignores("user", account), account
    # a host without csf (the test may run on one with it: point the default elsewhere)
    monkeypatch.setattr(pignore, "DEFAULT_PIGNORE_PATH", str(tmp_path / "no-csf.pignore"))
    assert pignore.load().sources == [pignore.BUILTIN_SOURCE]
    (tmp_path / "no-csf.pignore").write_text("user:alice\n")
    assert pignore.load().sources == [str(tmp_path / "no-csf.pignore")]


def test_catastrophic_rule_among_combined_rules_is_found_and_only_it_switched_off(tmp_path):
    rules, path = rules_from(tmp_path, "pcmd:safe\\d+\npcmd:(a|aa)+b\npcmd:other .*\n")
    assert not rules.ignores("cmd", "a" * 5000 + "!")
    (problem,) = rules.problems
    assert (problem.path, problem.line) == (path, 2)
    assert rules.ignores("cmd", "safe42") and rules.ignores("cmd", "other thing")
    assert [rule.enabled for rule in rules.patterns["cmd"]] == [True, False, True]


def test_inline_flags_stay_with_their_own_rule(tmp_path):
    rules, _ = rules_from(tmp_path, "pcmd:(?s)multi.*line\npcmd:one.two\npcmd:three\\d\n")
    assert rules.ignores("cmd", "multi\nline")
    assert not rules.ignores("cmd", "one\ntwo")      # (?s) must not leak into other rules
    assert rules.ignores("cmd", "one two") and rules.ignores("cmd", "three3")
