# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit's report and recommendations."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sentry_selfhosted.memory.plugins.filter.memory_report import (
    memory_recommendations,
    memory_report,
)

GIB = 1024 ** 3


def result(**over):
    base = {
        "ram": {"total": 16 * GIB, "available": 4 * GIB, "used": 12 * GIB, "used_percent": 75.0, "free": GIB,
                "page_cache": 2 * GIB, "shmem": 0, "slab_unreclaimable": 0, "zfs_arc": None},
        "swap": {"total": 8 * GIB, "used": 0, "free": 8 * GIB, "areas": []},
        "sysctl": {"vm.swappiness": 60},
        "relay": {"measures": "cgroup", "source": "cgroup", "release": "26.8.0", "used": GIB, "total": 2 * GIB,
                  "used_percent": 50.0, "threshold": 0.95, "threshold_bytes": int(2 * GIB * 0.95),
                  "max_memory_bytes": None, "headroom": GIB // 2, "would_reject": False, "threshold_source": "default"},
        "containers": [{"service": "relay", "use": GIB, "usage": 2 * GIB, "current": 3 * GIB, "limit": 4 * GIB}],
        "pressure": None, "oom_kills": 0, "cgroup_mode": "v2", "notes": [], "top_processes": [],
    }
    for key, value in over.items():
        if isinstance(value, dict) and key in base:
            base[key] = dict(base[key], **value)
        else:
            base[key] = value
    return base


def test_healthy_host_has_no_advice():
    assert memory_recommendations(result()) == []
    assert memory_report(result())[-1] == "Recommendations: none, this host has headroom."


def test_containers_are_shown_by_what_they_use_with_page_cache_apart():
    lines = memory_report(result())
    row = lines[lines.index("Top containers (use: what a limit cannot reclaim; reclaimable: page cache and the like):") + 1]
    assert row.split() == ["relay", "1.0", "GiB", "reclaimable", "2.0", "GiB", "limit", "4.0", "GiB"]


def test_no_swap_recommends_the_rule_size():
    advice = memory_recommendations(result(swap={"total": 0}))
    assert advice == ["No swap: the swap role would add a swapfile of 8.0 GiB (swap_file_size: auto)."]


def test_short_swap_without_sites_inputs_is_measured_against_the_rule():
    advice = memory_recommendations(result(swap={"total": 2 * GIB}))
    assert advice == ["Swap is 2.0 GiB: the swap role's rule wants 8.0 GiB (swap_file_size: auto)."]


def test_low_swappiness_defeats_swap():
    advice = memory_recommendations(result(sysctl={"vm.swappiness": 1}))
    assert advice == ["vm.swappiness is 1: cold memory stays in RAM and swap cannot help Relay; the swap role "
                      "sets swap_swappiness."]


def test_unlimited_services_are_named():
    containers = [{"service": "kafka", "usage": GIB, "limit": None}, {"service": "web", "usage": GIB, "limit": None}]
    advice = memory_recommendations(result(containers=containers))
    assert "2 services have no memory limit (kafka, web)" in advice[0]


def test_rejecting_and_host_wide_measure_come_first():
    advice = memory_recommendations(result(relay={"would_reject": True, "used_percent": 98.2, "measures": "host",
                                                  "source": "host", "release": "24.8.0"}))
    assert advice[0].startswith("Relay is rejecting events now: 98.2% used >= 95% threshold")
    assert "measures the whole host" in advice[1]


def test_memory_that_memavailable_does_not_count():
    advice = memory_recommendations(result(ram={"shmem": 2 * GIB, "zfs_arc": 4 * GIB}))
    assert any(a.startswith("Shmem (tmpfs) holds 2.0 GiB") for a in advice)
    assert any(a.startswith("ZFS ARC holds 4.0 GiB") for a in advice)


def test_which_threshold_trips_first():
    advice = memory_recommendations(result(relay={"max_memory_bytes": GIB}))
    assert "max_memory_bytes trips first" in advice[0]


def test_report_lines():
    lines = memory_report(result(relay={"would_reject": True}))
    assert lines[0].startswith("RAM    16.0 GiB total, 12.0 GiB used (75.0%)")
    assert "REJECTING EVENTS" in lines[2]
    assert any(line.strip().startswith("relay") for line in lines)


def test_not_a_memory_info_result():
    with pytest.raises(AnsibleFilterError, match="'relay' is missing"):
        memory_report({"ram": {}, "swap": {}, "containers": [], "sysctl": {}})
