# SPDX-License-Identifier: GPL-3.0-or-later
"""yaml_text, marked (the override): the collection's lines in docker-compose.override.yml, set and dropped as text; the operator's kept."""

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.yaml_text import MARK, EditError, YamlText


def test_new_file_gets_a_services_block():
    doc = YamlText("")
    doc.set_value(["services", "web", "mem_limit"], "2048m")
    assert doc.text() == "services:  %s\n  web:  %s\n    mem_limit: 2048m  %s\n" % (MARK, MARK, MARK)


def test_operator_lines_survive_byte_for_byte():
    text = ("# top comment\nservices:\n    web:\n        # why\n        environment:\n            A: 1   # keep\n"
            "        mem_limit: 4g # old\n\n    # trailing comment\nvolumes: {}\n")
    # The operator's own 4g stays theirs unless the caller adopts it.
    refused = YamlText(text)
    refused.set_value(["services", "web", "mem_limit"], "2048m")
    assert [str(c) for c in refused.operator_values] == ["web.mem_limit at line 7 (4g; planned 2048m)"]
    assert "        mem_limit: 4g # old" in refused.text().splitlines()
    doc = YamlText(text, adopt=True)
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
    doc = YamlText("services:\n  kafka:\n    environment:\n    - A=1\n")
    doc.set_env(["services", "kafka"], "KAFKA_HEAP_OPTS", "-Xmx1g -Xms1g")
    assert doc.text() == 'services:\n  kafka:\n    environment:\n    - A=1\n    - "KAFKA_HEAP_OPTS=-Xmx1g -Xms1g"  %s\n' % MARK


def test_flow_style_on_a_managed_path_is_refused():
    doc = YamlText("services:\n  web: {environment: {A: 1}}\n")
    with pytest.raises(EditError, match="flow style"):
        doc.set_value(["services", "web", "mem_limit"], "1g")


def test_stale_managed_lines_go_but_operator_children_stay():
    text = ("services:\n  worker:  %s\n    mem_limit: 1g  %s\n  web:  %s\n    mem_limit: 1g  %s\n    ports: [\"1:1\"]\n"
            % (MARK, MARK, MARK, MARK))
    doc = YamlText(text)
    doc.drop_stale()
    assert doc.text() == "services:\n  web:  %s\n    ports: [\"1:1\"]\n" % MARK


# --- one line per service of the collection's alone ------------------------------------

WEB = [("mem_limit", "1920m"), ("mem_reservation", "1024m"), ("memswap_limit", "3840m")]
KAFKA = [("mem_limit", "2176m"), ("memswap_limit", "2176m"), ("environment", '{KAFKA_HEAP_OPTS: "-Xmx1088m -Xms1088m"}')]


def line_of(name, values, pad=2):
    return "%s%s: {%s}  %s" % (" " * pad, name, ", ".join("%s: %s" % kv for kv in values), MARK)


def test_a_service_of_the_collections_alone_is_one_line_with_the_mark_once():
    doc = YamlText("")
    assert doc.set_service("web", WEB) and doc.set_service("kafka", KAFKA)
    doc.drop_stale()
    assert doc.text() == "services:  %s\n%s\n%s\n" % (MARK, line_of("web", WEB), line_of("kafka", KAFKA))
    again = YamlText(doc.text())
    assert again.set_service("web", WEB) and again.set_service("kafka", KAFKA)
    again.drop_stale()
    assert again.text() == doc.text()


# The operator's part of an override written by an earlier release: before the kafka entry, and after it.
OPERATORS_HEAD = ("# the operator's header\n"
                  "x-logging: &logging\n"
                  "  driver: local\n"
                  "services:\n"
                  "    web:\n"
                  "        # our SMTP relay\n"
                  "        environment:\n"
                  "            SENTRY_MAIL_HOST: smtp.example.org\n"
                  "        mem_limit: 1920m  %(m)s\n")
OPERATORS_TAIL = ("    relay:\n"
                  "        logging: *logging\n")


def test_the_key_per_line_layout_of_earlier_releases_becomes_one_line_and_the_operators_part_stays():
    old = (OPERATORS_HEAD
           + "    kafka:  %(m)s\n"
           "        # kept: the operator's comment\n"
           "        mem_limit: 1g  %(m)s\n"
           "        memswap_limit: 1g  %(m)s\n"
           "        environment:  %(m)s\n"
           "            KAFKA_HEAP_OPTS: \"-Xmx512m -Xms512m\"  %(m)s\n"
           + OPERATORS_TAIL) % {"m": MARK}
    doc = YamlText(old)
    assert doc.set_service("kafka", KAFKA)
    # web and relay hold lines of the operator's: set key by key inside them, as before.
    assert not doc.set_service("web", WEB) and not doc.set_service("relay", WEB)
    for key, value in WEB:
        doc.set_value(["services", "web", key], value)
    doc.drop_stale()
    assert doc.text() == (OPERATORS_HEAD
                          + "        mem_reservation: 1024m  %(m)s\n"
                          "        memswap_limit: 3840m  %(m)s\n"
                          "%(kafka)s\n"
                          "        # kept: the operator's comment\n"
                          + OPERATORS_TAIL) % {"m": MARK, "kafka": line_of("kafka", KAFKA, 4)}
    entries = dict((e["name"], e) for e in YamlText(doc.text()).service_entries())
    assert entries["kafka"]["ours"] and not entries["kafka"]["complete"]
    assert not entries["web"]["ours"] and entries["web"]["managed"]


def test_a_service_line_goes_with_state_absent_and_when_the_checkout_drops_the_service():
    text = "services:\n  web:\n    image: custom\n%s\n%s\n" % (line_of("kafka", KAFKA), line_of("worker", WEB))
    doc = YamlText(text)
    assert doc.set_service("kafka", KAFKA)
    doc.drop_stale()
    assert doc.text() == "services:\n  web:\n    image: custom\n%s\n" % line_of("kafka", KAFKA)
    absent = YamlText(text)
    absent.drop_stale()
    assert absent.text() == "services:\n  web:\n    image: custom\n"


def test_a_flow_entry_of_the_operators_or_a_merged_services_key_is_left_to_the_key_by_key_path():
    operator_flow = "services:\n  web: {mem_limit: 1g}\n"
    doc = YamlText(operator_flow)
    assert not doc.set_service("web", WEB) and doc.text() == operator_flow
    assert dict((e["name"], e["complete"]) for e in doc.service_entries()) == {"web": True}
    merged = "x: &base\n  web:\n    image: a\nservices:\n  <<: *base\n"
    doc = YamlText(merged)
    assert not doc.set_service("kafka", KAFKA) and doc.text() == merged
    flow_services = "services: {}\n"
    assert not YamlText(flow_services).set_service("kafka", KAFKA)


def test_a_quoted_value_is_read_without_its_comment():
    """An operator's ``mem_limit: "1g"  # ours`` says what a plan of 1024m says: theirs, untouched, no conflict."""
    text = "services:\n  web:\n    mem_limit: \"1g\"  # ours\n    memswap_limit: '2g'  # 'quoted' too\n"
    doc = YamlText(text)
    doc.set_value(["services", "web", "mem_limit"], "1024m")
    doc.set_value(["services", "web", "memswap_limit"], "3g")
    assert [str(c) for c in doc.operator_values] == ["web.memswap_limit at line 4 ('2g'; planned 3g)"]
    assert doc.text() == text
