# SPDX-License-Identifier: GPL-3.0-or-later
"""yaml_text, unmarked (set_scalars, as relay_config edits relay/config.yml).

The edit is checked on upstream's own config.example.yml (24.8.0 and 26.8.0,
when ../shared/upstream is present) and on the project's operator fixtures:
the managed keys read back as wanted, every line outside them is unchanged,
and a second run changes nothing.
"""

import os

import pytest
import yaml

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.yaml_text import (
    EditError, YamlText, set_scalars, strip_dotted)

from relay_files import FIXTURES, assert_managed_values, assert_only_managed_lines_differ, read, upstream_example

# What relay_config writes for its test arguments: Relay 24.11.2 and later, and the releases before.
CURRENT = [("health.max_memory_percent", 0.95), ("spool.envelopes.path", "/work/spool/envelopes.db"),
           ("spool.envelopes.max_disk_size", 2147483648), ("spool.envelopes.max_backpressure_memory_percent", 0.8)]
LEGACY = CURRENT[:3] + [("spool.envelopes.max_memory_size", 67108864)]
# "+crlf": the same file with Windows line endings (made here: the repository keeps LF only).
OPERATOR_FILES = ["operator-config.yml", "operator-flow.yml", "operator-null-sections.yml", "operator-null-sections.yml+crlf"]


def edit(text, settings):
    return set_scalars(text, settings, "Relay")


def assert_edit_is_exact(before, settings):
    after, changed = edit(before, settings)
    assert changed, "nothing changed, so the test proves nothing"
    assert_managed_values(after, settings)
    assert_only_managed_lines_differ(before, after)
    # Every comment of the original is still there, in the same order.
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    kept = [line for line in after.splitlines() if line.lstrip().startswith("#")]
    assert kept == comments
    # Everything else parses exactly as before.
    dotted = [key for key, dummy in settings]
    assert strip_dotted(yaml.safe_load(after), dotted) == strip_dotted(yaml.safe_load(before) or {}, dotted)
    again, changed_again = edit(after, settings)
    assert again == after and changed_again == []
    return after


@pytest.mark.parametrize("release, settings", [("24.8.0", LEGACY), ("26.8.0", CURRENT)])
def test_upstream_example(release, settings):
    before = upstream_example(release)
    after = assert_edit_is_exact(before, settings)
    # Upstream's own lines are all still there, untouched, in order.
    assert after.startswith(before)


@pytest.mark.parametrize("settings", [LEGACY, CURRENT])
@pytest.mark.parametrize("name", OPERATOR_FILES)
def test_operator_files(name, settings):
    before = read(os.path.join(FIXTURES, name.split("+")[0]))
    if name.endswith("+crlf"):
        before = before.replace("\n", "\r\n")
    after = assert_edit_is_exact(before, settings)
    if "\r\n" in before:
        assert after.count("\n") == after.count("\r\n"), "line endings were mixed"


def test_operator_file_keeps_its_own_health_keys():
    before = read(os.path.join(FIXTURES, "operator-config.yml"))
    after, changed = edit(before, CURRENT)
    data = yaml.safe_load(after)
    assert data["health"] == {"max_memory_percent": 0.95, "probe_timeout_ms": 900}
    assert data["http"] == {"dns_cache": False, "timeout": 10}
    # The value changed in place, under the operator's comment about it.
    assert "  # 98% tripped too late once; see the runbook.\n  max_memory_percent: 0.95\n" in after
    assert changed[0] == "health.max_memory_percent"


def test_same_value_written_differently_is_left_alone():
    before = "health:\n  max_memory_percent: 0.950   # ours\nspool:\n  envelopes:\n    path: '/work/spool/envelopes.db'\n"
    settings = [("health.max_memory_percent", 0.95), ("spool.envelopes.path", "/work/spool/envelopes.db")]
    assert edit(before, settings) == (before, [])


def test_missing_key_goes_at_the_end_of_its_existing_section():
    before = "relay:\n  port: 3000\nspool:\n  envelopes:\n    # operator note\n    partitions: 2\n"
    after, changed = edit(before, [("spool.envelopes.path", "/work/spool/envelopes.db")])
    assert after == ("relay:\n  port: 3000\nspool:\n  envelopes:\n    # operator note\n"
                     "    partitions: 2\n    path: \"/work/spool/envelopes.db\"\n")
    assert changed == ["spool.envelopes.path"]


def test_empty_file_gets_the_sections():
    after, changed = edit("# nothing yet\n", [("health.max_memory_percent", 0.9)])
    assert after == "# nothing yet\nhealth:\n  max_memory_percent: 0.9\n"


def test_a_changed_value_keeps_its_comment_and_spacing():
    before = "health:\n  max_memory_percent:   1.0  # ours\nspool:\n  envelopes:\n    path: '/tmp/x'  # 'quoted'\n"
    after, changed = edit(before, CURRENT[:2])
    assert after == ("health:\n  max_memory_percent:   0.95  # ours\n"
                     "spool:\n  envelopes:\n    path: \"/work/spool/envelopes.db\"  # 'quoted'\n")


def test_a_null_value_takes_the_value_and_keeps_its_comment():
    after, dummy = edit("health:\n  max_memory_percent:   # unset\n", CURRENT[:1])
    assert after == "health:\n  max_memory_percent:   0.95 # unset\n"


def test_flow_mappings_nested_and_empty():
    after, dummy = edit("health: {}\nspool: {envelopes: {path: /x}}\n", CURRENT[:3])
    assert after == ("health: {max_memory_percent: 0.95}\n"
                     "spool: {envelopes: {max_disk_size: 2147483648, path: \"/work/spool/envelopes.db\"}}\n")


def test_a_byte_order_mark_is_kept():
    before = u"\ufeffrelay:\n  # caf\u00e9\n  port: 3000\n"
    after, dummy = edit(before, CURRENT[:1])
    assert after == before + "health:\n  max_memory_percent: 0.95\n"


@pytest.mark.parametrize("marked", [True, False])
def test_lines_break_at_line_feeds_alone(marked):
    """A U+2028 or a form feed in a comment is no line break to Compose's YAML 1.2 reader: it stays where it is."""
    before = u"x-note: 1  # caf\u00e9\u2028and\x0cmore\r\nservices: {}\r\n"
    doc = YamlText(before, marked=marked)
    assert doc.text() == before and len(doc.lines) == 2


# --- refused, before anything is edited ---------------------------------------

@pytest.mark.parametrize("name, message", [
    ("invalid-yaml.txt", "is not valid YAML"),
    ("duplicate-health.txt", "has the key health twice"),
    ("health-not-mapping.yml", "health set to something that is not a mapping"),
])
def test_bad_files_are_refused(name, message):
    with pytest.raises(EditError, match=message):
        edit(read(os.path.join(FIXTURES, name)), CURRENT)


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "not a YAML mapping"),
    ("health:\n  max_memory_percent: [1]\n", "set to a mapping or list"),
    ("relay: {a: 1, a: 2}\n", "has the key relay.a twice"),
    ("health: {max_memory_percent: 0.9,\n  probe_timeout_ms: 900}\n", "flow mapping over several lines"),
])
def test_odd_shapes_are_refused(text, message):
    with pytest.raises(EditError, match=message):
        edit(text, [("health.max_memory_percent", 0.95)])


def test_the_line_editor_refuses_what_it_cannot_tell_apart_without_pyyaml():
    """What set_scalars' PyYAML checks catch first, the line editor refuses by itself (marked or not)."""
    for marked in (True, False):
        with pytest.raises(EditError, match=r"has the key health twice \(lines 1 and 3\)"):
            YamlText("health:\n  a: 1\nhealth:\n  b: 2\n", marked=marked).set_value(["health", "a"], "2")
        with pytest.raises(EditError, match=r"is not a block mapping at the top level, unindented \(line 2: - a\)"):
            YamlText("# list\n- a\n", marked=marked).set_value(["health", "a"], "2")
        with pytest.raises(EditError, match=r"is not a block mapping at the top level, unindented \(line 1: \{a: 1\}\)"):
            YamlText("{a: 1}\n", marked=marked).set_value(["health", "a"], "2")
        with pytest.raises(EditError, match=r"is not a block mapping at the top level, unindented \(line 1: a: 1\)"):
            YamlText("  a: 1\n", marked=marked).set_value(["health", "a"], "2")
        # A directive and a document marker are no part of the mapping.
        doc = YamlText("%YAML 1.2\n---\na: 1\n", marked=marked)
        doc.set_value(["b"], "2")
        assert doc.text().startswith("%YAML 1.2\n---\na: 1\nb: 2")
