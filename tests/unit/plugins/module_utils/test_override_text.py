# SPDX-License-Identifier: GPL-3.0-or-later
"""override_text: the collection's lines in docker-compose.override.yml, set and dropped as text; the operator's kept."""

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.override_text import MARK, EditError, OverrideText


def test_new_file_gets_a_services_block():
    doc = OverrideText("")
    doc.set_value(["services", "web", "mem_limit"], "2048m")
    assert doc.text() == "services:  %s\n  web:  %s\n    mem_limit: 2048m  %s\n" % (MARK, MARK, MARK)


def test_operator_lines_survive_byte_for_byte():
    text = ("# top comment\nservices:\n    web:\n        # why\n        environment:\n            A: 1   # keep\n"
            "        mem_limit: 4g # old\n\n    # trailing comment\nvolumes: {}\n")
    # The operator's own 4g stays theirs unless the caller adopts it.
    refused = OverrideText(text)
    refused.set_value(["services", "web", "mem_limit"], "2048m")
    assert [str(c) for c in refused.operator_values] == ["web.mem_limit at line 7 (4g; planned 2048m)"]
    assert "        mem_limit: 4g # old" in refused.text().splitlines()
    doc = OverrideText(text, adopt=True)
    doc.set_value(["services", "web", "mem_limit"], "2048m")
    doc.set_value(["services", "web", "memswap_limit"], "4096m")
    doc.set_env(["services", "web"], "B", "2")
    out = doc.text().splitlines()
    for line in text.splitlines():
        if "mem_limit" not in line:
            assert line in out
    assert "        mem_limit: 2048m  %s" % MARK in out  # four-space indent followed
    assert "            B: \"2\"  %s" % MARK in out
    assert out.index("        memswap_limit: 4096m  %s" % MARK) < out.index("    # trailing comment")
    assert [str(c) for c in doc.adopted] == ["web.mem_limit at line 7 (4g; planned 2048m)"]


def test_list_environment_gets_a_list_item():
    doc = OverrideText("services:\n  kafka:\n    environment:\n    - A=1\n")
    doc.set_env(["services", "kafka"], "KAFKA_HEAP_OPTS", "-Xmx1g -Xms1g")
    assert doc.text() == 'services:\n  kafka:\n    environment:\n    - A=1\n    - "KAFKA_HEAP_OPTS=-Xmx1g -Xms1g"  %s\n' % MARK


def test_flow_style_on_a_managed_path_is_refused():
    doc = OverrideText("services:\n  web: {environment: {A: 1}}\n")
    with pytest.raises(EditError, match="flow style"):
        doc.set_value(["services", "web", "mem_limit"], "1g")


def test_stale_managed_lines_go_but_operator_children_stay():
    text = ("services:\n  worker:  %s\n    mem_limit: 1g  %s\n  web:  %s\n    mem_limit: 1g  %s\n    ports: [\"1:1\"]\n"
            % (MARK, MARK, MARK, MARK))
    doc = OverrideText(text)
    doc.drop_stale()
    assert doc.text() == "services:\n  web:  %s\n    ports: [\"1:1\"]\n" % MARK
