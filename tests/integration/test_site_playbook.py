# SPDX-License-Identifier: GPL-3.0-or-later
"""The site playbook from the installed collection, on localhost.

Only what touches nothing outside a temporary copy of the checkout fixture
runs here: the audits, the summary and the relay_health role (it writes
relay/config.yml of the checkout and, with relay_health_apply off, talks to
no Docker engine). The roles that change the host (swap, timers, compose
limits with the Compose CLI) run in the molecule scenarios site and site_fleet.
"""

import json
import os
import shutil
import subprocess

import pytest

from conftest import REPO, tool

INVENTORY = os.path.join(REPO, "hacking", "localhost.yml")
FIXTURE = os.path.join(REPO, "tests", "fixtures", "checkout")
ROLES_OFF = ["site_swap=false", "site_compose_limits=false", "site_relay_health=false",
             "site_memory_alerts=false", "site_restart_timer=false"]


def run_site(ansible_env, checkout, *extra, switches=None):
    argv = [tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.site",
            "-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "site_containers=false"]
    for switch in ROLES_OFF if switches is None else switches:
        argv += ["-e", switch]
    proc = subprocess.run(argv + list(extra), env=ansible_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    return data, data["global_custom_stats"]["sentry_memory_site"]["localhost"]


def task_names(data):
    return [t["task"]["name"] for play in data["plays"] for t in play["tasks"]]


@pytest.fixture
def checkout(tmp_path):
    path = tmp_path / "sentry"
    shutil.copytree(FIXTURE, str(path))
    return path


@pytest.mark.parametrize("mode", [[], ["--check", "--diff"]])
def test_audit_only_changes_nothing_and_publishes_the_summary(ansible_env, checkout, mode):
    data, summary = run_site(ansible_env, checkout, *mode)
    assert data["stats"]["localhost"]["changed"] == 0
    assert data["stats"]["localhost"]["failures"] == 0
    names = task_names(data)
    assert names.count("Read memory, swap and Relay's view") == 2
    # The plays between the two audits: every role task skipped by its switch.
    role_results = [(t["task"]["name"], t["hosts"]["localhost"]) for play in data["plays"][1:-1] for t in play["tasks"]]
    assert role_results
    assert [name for name, result in role_results if not result.get("skipped")] == []
    assert summary["check_mode"] is bool(mode)
    assert summary["changed_files"] == []
    with open("/proc/meminfo") as handle:
        total = int(handle.readline().split()[1]) * 1024
    for key in ("relay_headroom_before", "relay_headroom_after", "swap_total_before", "swap_total_after"):
        assert isinstance(summary[key], int), (key, summary[key])
    assert abs(summary["relay_headroom_before"]) < total
    assert 0 < summary["relay_used_percent_after"] < 100
    assert summary["relay_threshold_after"] == 0.95
    assert isinstance(summary["relay_would_reject_after"], bool)
    assert isinstance(summary["recommendations"], list)
    assert not (checkout / "relay" / "config.yml").exists()


def test_tags_keep_the_audits(ansible_env, checkout):
    data, summary = run_site(ansible_env, checkout, "--tags", "relay_health", "--check")
    names = task_names(data)
    assert names.count("Read memory, swap and Relay's view") == 2
    assert "Publish the summary for AWX workflows" in names
    assert summary["changed_files"] == []


def test_summary_names_the_changed_file_then_nothing(ansible_env, checkout):
    switches = [s for s in ROLES_OFF if not s.startswith("site_relay_health")] + ["relay_health_apply=false"]
    config = checkout / "relay" / "config.yml"

    data, summary = run_site(ansible_env, checkout, "--check", "--diff", switches=switches)
    assert data["stats"]["localhost"]["changed"] > 0, "check mode on a fresh checkout shows the planned change"
    assert summary["check_mode"] is True
    assert summary["changed_files"] == []
    assert not config.exists()

    data, summary = run_site(ansible_env, checkout, switches=switches)
    assert data["stats"]["localhost"]["changed"] > 0
    assert summary["changed_files"] == [str(config)]
    assert "max_memory_percent: 0.95" in config.read_text()

    data, summary = run_site(ansible_env, checkout, switches=switches)
    assert data["stats"]["localhost"]["changed"] == 0
    assert summary["changed_files"] == []

    data, summary = run_site(ansible_env, checkout, "--check", "--diff", switches=switches)
    assert data["stats"]["localhost"]["changed"] == 0


def test_a_failing_host_stops_before_the_summary(ansible_env, checkout):
    """Bad role input fails the host in the serial play; nothing of the checkout is written."""
    switches = [s for s in ROLES_OFF if not s.startswith("site_relay_health")] + ["relay_health_apply=false"]
    argv = [tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.site",
            "-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "site_containers=false",
            "-e", "relay_health_max_memory_percent=1.5"]
    for switch in switches:
        argv += ["-e", switch]
    proc = subprocess.run(argv, env=ansible_env, capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    data = json.loads(proc.stdout)
    assert data["stats"]["localhost"]["failures"] == 1
    assert "sentry_memory_site" not in data.get("global_custom_stats", {})
    assert sorted(os.listdir(str(checkout / "relay"))) == ["config.example.yml"]
