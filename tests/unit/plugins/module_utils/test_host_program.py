# SPDX-License-Identifier: GPL-3.0-or-later
"""host_program: the plumbing of the programs the collection installs on hosts (commands, journal, configuration, writes)."""

import io
import os
import stat
import sys

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_program as hp


def test_run_command_answers_and_never_raises(tmp_path):
    assert hp.run_command([sys.executable, "-c", "print('hi')"]) == (0, "hi\n", "")
    rc, out, err = hp.run_command([str(tmp_path / "no-such-docker"), "ps"])
    assert (rc, out) == (hp.NOT_RUN, "") and "cannot run %s" % (tmp_path / "no-such-docker") in err
    rc, out, err = hp.run_command([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
    assert rc == hp.TIMED_OUT and "did not end within 0.5 s" in err


def test_journal_lines_under_systemd_and_by_hand(monkeypatch):
    stream = io.StringIO()
    hp.Journal(stream, systemd=True).log("critical", "relay critical:\nx")
    assert stream.getvalue() == "<2>relay critical: x\n"
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    plain = io.StringIO()
    hp.Journal(plain).log("notice", "standing aside")
    assert plain.getvalue() == "notice: standing aside\n"
    monkeypatch.setenv("JOURNAL_STREAM", "8:1")
    unit = io.StringIO()
    hp.Journal(unit).log("error", "boom")
    assert unit.getvalue() == "<3>boom\n"


@pytest.mark.parametrize("kind, value, expected", [
    ("number", "30", 30), ("number", 2.5, 2.5), ("ratio", "0.9", 0.9), ("ratio", 1, 1.0), ("positive", 3, 3),
    ("count", 0, 0), (("json", "slack"), "slack", "slack"),
    ("ratio?", "None", None), ("ratio?", None, None), ("ratio?", 0.8, 0.8), ("bool", True, True), ("bool", "False", False),
    ("string", "/opt/sentry", "/opt/sentry"), ("string?", None, None), ("strings", ["relay"], ["relay"]),
])
def test_values_in_their_shape(kind, value, expected):
    assert hp.checked("key", kind, value) == expected


@pytest.mark.parametrize("kind, value, message", [
    ("number", True, "key must be a number, got True"),
    ("number", None, "key must be a number, got None"),
    ("ratio", 1.5, "key must be in (0, 1], got 1.5"),
    ("ratio", 0, "key must be in (0, 1], got 0"),
    ("positive", 0, "key must be positive, got 0"),
    ("count", -1, "key must be 0 or more, got -1"),
    (("json", "slack"), "teams", "key must be one of json, slack, got 'teams'"),
    ("bool", "yes", "key must be true or false, got 'yes'"),
    ("string", "", "key must be a non-empty string, got ''"),
    ("strings", "relay", "key must be a list of strings, got 'relay'"),
])
def test_values_of_the_wrong_shape_are_refused(kind, value, message):
    with pytest.raises(hp.ConfigError) as refused:
        hp.checked("key", kind, value)
    assert str(refused.value) == message


def test_make_config_merges_defaults_skips_comments_and_refuses_unknown_keys():
    settings = {"a": ("positive", 1), "b": ("string", "x")}
    assert hp.make_config({"_comment": "managed", "a": "2"}, settings) == {"a": 2, "b": "x"}
    with pytest.raises(hp.ConfigError, match="b must be a non-empty string"):
        hp.make_config({"b": ""}, settings)
    with pytest.raises(hp.ConfigError, match="unknown configuration keys: c, d"):
        hp.make_config({"d": 1, "c": 2}, settings)
    with pytest.raises(hp.ConfigError, match="it must hold a JSON object, got list"):
        hp.make_config([], settings)


def test_read_json_says_why_it_cannot(tmp_path):
    with pytest.raises(hp.ConfigError, match="cannot read it: "):
        hp.read_json(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(hp.ConfigError, match="cannot read it: "):
        hp.read_json(str(tmp_path / "bad.json"))


def test_write_atomic_replaces_sets_the_mode_and_leaves_no_staged_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    os.chmod(str(target), 0o644)
    hp.write_atomic(str(target), "new", 0o600)
    assert target.read_text() == "new"
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ["state.json"]
