# SPDX-License-Identifier: GPL-3.0-or-later
"""Relay's choice of figure, per release and cgroup mode (the brief's table), and the figure it computes on fixture
trees of several host shapes."""

import os

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck

HOSTS = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "hosts")
GIB = 1024 ** 3


def host(name):
    return os.path.join(HOSTS, name)


@pytest.mark.parametrize("release, mode, limited, expected", [
    ((24, 6, 0), "v2", True, "host-total-free"),
    ((24, 8, 0), "v2", False, "host"),
    ((24, 8, 0), "v2", True, "cgroup"),
    ((24, 8, 0), "v1", False, "cgroup"),
    ((24, 8, 0), "hybrid", False, "cgroup"),
    ((25, 4, 1), "v2", False, "host"),
    ((25, 6, 0), "v2", False, "cgroup"),
    ((26, 8, 0), "v2", False, "cgroup"),
    (None, "v2", False, "cgroup"),
])
def test_relay_measures(release, mode, limited, expected):
    assert ck.relay_measures(release, mode, limited) == expected


@pytest.mark.parametrize("image, expected", [
    ("getsentry/relay:24.8.0", (24, 8, 0)),
    ("ghcr.io/getsentry/relay:26.8.0", (26, 8, 0)),
    ("registry.example:5000/getsentry/relay:25.10.1", (25, 10, 1)),
    ("getsentry/relay:nightly", None),
    ("", None),
])
def test_relay_release(image, expected):
    assert ck.relay_release({"RELAY_IMAGE": image}) == expected


MEMINFO = {"MemTotal": 16 * 1024 ** 3, "MemFree": 2 * 1024 ** 3, "MemAvailable": 4 * 1024 ** 3}


@pytest.mark.parametrize("release, mode, says", [
    ((24, 8, 0), "v2", "host"),
    ((24, 8, 0), "v1", "its own cgroup (relay container not found"),
    ((24, 12, 1), "v2", "host"),
    ((25, 9, 0), "v2", "its own cgroup (relay container not found"),
    ((25, 12, 0), "v2", "its own cgroup (relay container not found"),
    ((26, 8, 0), "v1", "its own cgroup (relay container not found"),
])
def test_without_a_relay_container_the_report_still_names_how_the_release_measures(release, mode, says):
    # No relay container: the host's figures stand in, but a release that measures its own cgroup is not said to
    # measure the host (the audit said "measures host" for 25.12.0).
    view = ck.relay_view(MEMINFO, release, mode, None)
    assert view["source"].startswith(says), view["source"]
    assert view["used"] == 12 * 1024 ** 3


def test_original_outage_figures_are_reproduced():
    """Relay 24.8.0, cgroup v2, relay without limit: the whole host, as in the report."""
    root = host("v2-relay-unlimited")
    meminfo = hm.read_meminfo(root)
    relay_cg = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v2", root), 2)
    view = ck.relay_view(meminfo, (24, 8, 0), hm.cgroup_mode(root), relay_cg)
    assert (view["used"], view["total"]) == (16071245824, 16372436992)
    assert view["used_percent"] == 98.16
    assert view["measures"] == "host"
    assert view["would_reject"] is True
    assert view["headroom"] < 0


def test_limit_on_relay_makes_relay_measure_itself():
    root = host("v2-relay-limited")
    relay_cg = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v2", root), 2)
    view = ck.relay_view(hm.read_meminfo(root), (24, 8, 0), "v2", relay_cg)
    assert view["measures"] == "cgroup"
    assert view["used"] == 1468006400  # anon of the relay cgroup
    assert view["total"] == 2 * GIB
    assert view["would_reject"] is False
    assert view["headroom"] == int(2 * GIB * 0.95) - 1468006400


def test_unlimited_relay_on_v2_with_current_release_uses_cgroup_against_ram():
    root = host("v2-relay-unlimited")
    relay_cg = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v2", root), 2)
    view = ck.relay_view(hm.read_meminfo(root), (26, 8, 0), "v2", relay_cg)
    assert view["measures"] == "cgroup"
    assert (view["used"], view["total"]) == (1468006400, 16372436992)


def test_max_memory_bytes_trips_before_the_percentage():
    root = host("v2-relay-limited")
    relay_cg = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v2", root), 2)
    view = ck.relay_view(hm.read_meminfo(root), (25, 10, 0), "v2", relay_cg, 0.95, max_bytes=1400000000)
    assert view["would_reject"] is True
    assert view["headroom"] == 1400000000 - 1468006400


def test_release_before_24_7_1_counts_page_cache():
    meminfo = hm.read_meminfo(host("v1-no-psi-two-swaps"))
    view = ck.relay_view(meminfo, (24, 5, 0), "v1", None)
    assert view["used"] == meminfo["MemTotal"] - meminfo["MemFree"]


def test_relay_not_found_falls_back_to_host_and_says_so():
    meminfo = hm.read_meminfo(host("v1-no-psi-two-swaps"))
    view = ck.relay_view(meminfo, (26, 8, 0), "v1", None)
    assert view["measures"] == "host"
    assert "not found" in view["source"]
    # One plain statement: no relay container runs, host figures stand in (no claim about a container that is not there).
    assert "no relay container runs" in view["source"] and "Relay itself" not in view["source"]


@pytest.mark.parametrize("threshold, rejects", [(0.5, True), (0.99, False), (1.0, False)])
def test_threshold_is_inclusive_like_relay(threshold, rejects):
    meminfo = {"MemTotal": 1000, "MemFree": 100, "MemAvailable": 500}
    assert ck.relay_view(meminfo, (24, 8, 0), "v2", None, threshold)["would_reject"] is rejects
    at_threshold = ck.relay_view(meminfo, (24, 8, 0), "v2", None, 0.5)
    assert at_threshold["used"] == 500 and at_threshold["would_reject"] is True
