# SPDX-License-Identifier: GPL-3.0-or-later
"""memory_info through real Ansible on this machine, against /proc read at the same moment."""

import json
import subprocess

from conftest import tool


def meminfo_bytes():
    values = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            fields = line.split()
            values[fields[0].rstrip(":")] = int(fields[1]) * (1024 if len(fields) > 2 else 1)
    return values


# MemAvailable moves while Ansible runs; allow what a busy 2-core machine shifts in a second.
TOLERANCE = 256 * 1024 ** 2


def test_figures_match_proc_meminfo(run_module):
    before = meminfo_bytes()
    result = run_module("sentry_selfhosted.memory.memory_info", {"containers": False, "backend": "procfs"})
    after = meminfo_bytes()
    assert not result.get("failed"), result.get("msg")
    assert result["ram"]["total"] == before["MemTotal"] == after["MemTotal"]
    low = min(before["MemAvailable"], after["MemAvailable"]) - TOLERANCE
    high = max(before["MemAvailable"], after["MemAvailable"]) + TOLERANCE
    assert low <= result["ram"]["available"] <= high
    assert result["ram"]["used"] == result["ram"]["total"] - result["ram"]["available"]
    assert result["swap"]["total"] == before["SwapTotal"]
    with open("/proc/swaps") as handle:
        assert len(result["swap"]["areas"]) == len(handle.read().splitlines()) - 1
    with open("/proc/sys/vm/swappiness") as handle:
        assert result["sysctl"]["vm.swappiness"] == int(handle.read())


def test_psutil_backend_gives_the_same_figures(run_module):
    procfs = run_module("sentry_selfhosted.memory.memory_info", {"containers": False, "backend": "procfs"})
    via_psutil = run_module("sentry_selfhosted.memory.memory_info", {"containers": False, "backend": "psutil"})
    assert via_psutil["backend"] == "psutil"
    assert via_psutil["ram"]["total"] == procfs["ram"]["total"]
    assert abs(via_psutil["ram"]["available"] - procfs["ram"]["available"]) < TOLERANCE
    assert via_psutil["swap"]["total"] == procfs["swap"]["total"]


def test_bad_threshold_fails_cleanly_through_ansible(run_module):
    result = run_module("sentry_selfhosted.memory.memory_info", {"relay_threshold": 2, "containers": False})
    assert result["failed"] is True
    assert "relay_threshold must be in (0, 1]" in result["msg"]
    # ansible-core 2.19 adds "(traceback unavailable)" to every failure; a crash would carry one.
    assert "Traceback" not in result.get("exception", "")


def test_module_comes_from_the_installed_copy(ansible_env, installed_collection):
    proc = subprocess.run([tool("ansible-doc"), "--json", "-t", "module", "sentry_selfhosted.memory.memory_info"],
                          env=ansible_env, capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)["sentry_selfhosted.memory.memory_info"]["doc"]
    assert doc["filename"].startswith(str(installed_collection))
