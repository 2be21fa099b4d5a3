"""Attacker-chosen text is made printable ASCII before any output."""

import orjson

from ptfast.foundation.escape import escape_text


def test_plain_text_is_unchanged():
    assert escape_text("/usr/bin/perl -w /home/a/x.pl") == "/usr/bin/perl -w /home/a/x.pl"


def test_controls_quotes_backslashes_and_high_bytes_are_escaped():
    raw = b"a\x1b[2J\n\"q\" 'r' \\ \x7f \xc3\xa9 \xff\xfe".decode("utf-8", "surrogateescape")
    assert escape_text(raw) == ("a\\x1b[2J\\n\\\"q\\\" \\'r\\' \\\\ \\x7f \\xc3\\xa9 "
                                "\\xff\\xfe")


def test_escaped_text_always_fits_a_json_line():
    raw = b"\xff\n\x00\xed\xa0\x80".decode("utf-8", "surrogateescape")
    line = orjson.dumps({"cmdline": escape_text(raw)})
    assert b"\n" not in line
    assert orjson.loads(line)["cmdline"] == "\\xff\\n\\x00\\xed\\xa0\\x80"
