# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit playbook from the installed collection, on localhost, normal and check mode."""

import json
import os
import subprocess

import pytest

from conftest import REPO, tool

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
