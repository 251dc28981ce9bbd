# SPDX-License-Identifier: GPL-3.0-or-later
"""host_memory's one Relay view: the threshold from relay/config.yml (with and without PyYAML),
the figure, the project and the notes; any bytes in the operator's files."""

import builtins
import os
import shutil

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck

from checkouts import UPSTREAM

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))))
HOSTS = os.path.join(REPO, "tests", "unit", "fixtures", "hosts")

CONFIGS = [
    ("health:\n  max_memory_percent: 0.9\n", 0.9),
    ("relay:\n  mode: managed\nhealth:\n  refresh_interval_ms: 3000\n  max_memory_percent: 0.85  # ops\n", 0.85),
    ("health: {max_memory_percent: 0.8, refresh_interval_ms: 3000}\n", 0.8),
    ("relay:\n  max_memory_percent: 0.5\nlogging:\n  level: info\n", ck.DEFAULT_RELAY_THRESHOLD),
    ("# health:\n#   max_memory_percent: 1.0\nrelay:\n  mode: proxy\n", ck.DEFAULT_RELAY_THRESHOLD),
    ("health:\n  max_memory_percent: 1\n", 1.0),
]


@pytest.fixture(params=["pyyaml", "no-pyyaml"])
def yaml_or_not(request, monkeypatch):
    """Hosts may lack PyYAML: both readers must give the same answer."""
    if request.param == "no-pyyaml":
        real_import = builtins.__import__

        def no_yaml(name, *args, **kwargs):
            if name == "yaml":
                raise ImportError("no yaml here")
            return real_import(name, *args, **kwargs)
        monkeypatch.setattr(builtins, "__import__", no_yaml)
    return request.param


@pytest.mark.parametrize("text, expected", CONFIGS)
def test_threshold_from_relay_config(tmp_path, yaml_or_not, text, expected):
    (tmp_path / "relay").mkdir()
    (tmp_path / "relay" / "config.yml").write_text(text)
    threshold, source = ck.relay_config_threshold(str(tmp_path))
    assert threshold == expected
    assert source == (str(tmp_path / "relay" / "config.yml") if expected != ck.DEFAULT_RELAY_THRESHOLD
                      else "Relay's default")


def test_missing_config_is_relays_default(tmp_path, yaml_or_not):
    assert ck.relay_config_threshold(str(tmp_path)) == (ck.DEFAULT_RELAY_THRESHOLD, "Relay's default")


@pytest.mark.skipif(not os.path.isdir(UPSTREAM), reason="upstream checkouts are beside development checkouts only")
@pytest.mark.parametrize("release", ["24.8.0", "24.12.1", "25.9.0", "26.6.0", "26.8.0"])
def test_upstream_example_configs_read_alike(tmp_path, release):
    shutil.copytree(os.path.join(UPSTREAM, release, "relay"), str(tmp_path / "relay"))
    os.rename(str(tmp_path / "relay" / "config.example.yml"), str(tmp_path / "relay" / "config.yml"))
    with_yaml = ck.relay_config_threshold(str(tmp_path))
    lines = ck.read_text_lines(str(tmp_path / "relay" / "config.yml"))
    assert ck._scan_health_key(lines, "max_memory_percent") is None  # upstream leaves it commented out
    assert with_yaml == (ck.DEFAULT_RELAY_THRESHOLD, "Relay's default")


def test_latin1_byte_in_relay_config_is_a_note(tmp_path, yaml_or_not):
    (tmp_path / "relay").mkdir()
    (tmp_path / "relay" / "config.yml").write_bytes(b"# f\xfcr ops\nhealth:\n  max_memory_percent: 0.9\n")
    notes = []
    assert ck.relay_config_threshold(str(tmp_path), notes)[0] == 0.9
    assert notes == ["%s line 1 is not UTF-8: read with the bad bytes replaced" % (tmp_path / "relay" / "config.yml")]


def test_threshold_that_is_not_a_number_is_a_note(tmp_path, yaml_or_not):
    (tmp_path / "relay").mkdir()
    (tmp_path / "relay" / "config.yml").write_text("health:\n  max_memory_percent: lots\n")
    notes = []
    assert ck.relay_config_threshold(str(tmp_path), notes) == (ck.DEFAULT_RELAY_THRESHOLD, "Relay's default")
    assert "is not a number" in notes[0]


def test_relay_figure_takes_release_project_and_threshold_from_the_checkout(tmp_path):
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=sentry-self-hosted\nRELAY_IMAGE=getsentry/relay:24.8.0\n")
    (tmp_path / ".env.custom").write_text("COMPOSE_PROJECT_NAME=sentry-two\n")
    (tmp_path / "relay").mkdir()
    (tmp_path / "relay" / "config.yml").write_text("health:\n  max_memory_percent: 0.9\n")
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, "", ""
    figure = ck.relay_figure(str(tmp_path), os.path.join(HOSTS, "v2-relay-unlimited"), run)
    assert figure["project"] == "sentry-two"
    assert calls[0][-1] == "label=com.docker.compose.project=sentry-two"
    relay = figure["relay"]
    assert (relay["release"], relay["threshold"], relay["measures"]) == ("24.8.0", 0.9, "host")
    assert relay["threshold_source"] == str(tmp_path / "relay" / "config.yml")
    assert relay["used_percent"] == 98.16 and relay["would_reject"]
    assert figure["containers_listed"] and figure["notes"] == []


def test_relay_figure_refuses_a_threshold_outside_the_range(tmp_path):
    (tmp_path / "relay").mkdir()
    (tmp_path / "relay" / "config.yml").write_text("health:\n  max_memory_percent: 1.5\n")
    with pytest.raises(hm.MemoryReadError, match=r"outside \(0, 1\]"):
        ck.relay_figure(str(tmp_path), os.path.join(HOSTS, "v2-relay-unlimited"))


@pytest.mark.parametrize("answer", ["Error: not json", "{}", "[1, 2]", '[{"Name": "x"}]'])
def test_docker_inspect_answer_that_is_not_a_container_list_is_refused(answer):
    def run(argv):
        return (0, "abc\n", "") if argv[1] == "ps" else (0, answer, "")
    with pytest.raises(hm.MemoryReadError, match="did not answer with a JSON list of containers"):
        ck.list_compose_containers(run, "sentry-self-hosted")
