# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit playbook from the installed collection, on localhost, normal and check mode."""

import json
import os
import shutil
import subprocess

import pytest

import checkouts
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import swapfile as sw
from conftest import REPO, task, tool

INVENTORY = os.path.join(REPO, "hacking", "localhost.yml")


def run_audit(ansible_env, *extra):
    proc = subprocess.run([tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.audit"] + list(extra),
                          env=ansible_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("mode", [[], ["--check"]])
def test_audit_reports_changes_nothing_and_publishes_stats(ansible_env, mode):
    data = run_audit(ansible_env, "-e", "audit_containers=false", *mode)
    assert data["stats"]["localhost"]["changed"] == 0
    assert data["stats"]["localhost"]["failures"] == 0
    tasks = {t["task"]["name"]: t["hosts"]["localhost"] for t in data["plays"][0]["tasks"]}
    report = tasks["Show the report"]["msg"]
    assert report[0].startswith("RAM ")
    assert any(line.startswith("Relay ") for line in report)
    summary = data["global_custom_stats"]["sentry_memory_audit"]["localhost"]
    with open("/proc/meminfo") as handle:
        total = int(handle.readline().split()[1]) * 1024
    assert 0 < float(summary["relay_used_percent"]) < 100
    assert int(summary["relay_headroom_bytes"]) < total
    assert summary["relay_would_reject"] in (False, "False")
    assert isinstance(summary["recommendations"], list)


def test_audit_refuses_a_bad_threshold(ansible_env):
    proc = subprocess.run([tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.audit",
                           "-e", "sentry_selfhosted_relay_threshold=1.5", "-e", "audit_containers=false"],
                          env=ansible_env, capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "relay_threshold must be in (0, 1]" in proc.stdout


@pytest.fixture
def checkout(tmp_path):
    target = tmp_path / "sentry"
    shutil.copytree(checkouts.FIXTURE_24, str(target))
    return target


def test_audit_recommends_what_site_would_do(tmp_path, ansible_env, compose_cli, checkout):
    # The same inventory for both: this machine, the fixture checkout, no containers measured.
    inventory = ["-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "audit_containers=false",
                 "-e", "compose_limits_use_measured=false"]
    data = run_audit(ansible_env, *inventory)
    assert data["stats"]["localhost"]["changed"] == 0 and data["stats"]["localhost"]["failures"] == 0
    advice = data["global_custom_stats"]["sentry_memory_audit"]["localhost"]["recommendations"]

    # compose_limits itself, in check mode, on the same host and inputs.
    playbook = tmp_path / "limits.yml"
    playbook.write_text(json.dumps([{"name": "Limits", "hosts": "localhost", "gather_facts": False,
                                     "roles": ["sentry_selfhosted.memory.compose_limits"]}]))
    proc = subprocess.run([tool("ansible-playbook"), "-i", INVENTORY, str(playbook), "--check"] + inventory,
                          env=ansible_env, capture_output=True, text=True, check=False)
    table = task(json.loads(proc.stdout), "Show the plan")["msg"]
    total = next(line for line in table if line.startswith("limits add up to ")).split()[4]
    relay = next(line for line in table if line.split()[0] == "relay").split()[3]
    limits = next(a for a in advice if "compose_limits role would limit all" in a)
    assert "(relay %s MiB, " % relay in limits and "the limits adding up to %s MiB" % total in limits

    # The swap role's answer on this machine: none in a container, else the module's own size at /swapfile.
    with open("/proc/meminfo") as handle:
        ram = int(handle.readline().split()[1]) * 1024
    if sw.container_reason("/"):
        assert not [a for a in advice if "swapfile of" in a], advice
        assert any(a.startswith("Swap is the host's to set: this looks like a container") for a in advice), advice
    else:
        assert not [a for a in advice if "swapfile of" in a and hm.human_bytes(hm.recommended_swap_bytes(ram)) not in a]
