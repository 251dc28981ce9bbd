# SPDX-License-Identifier: GPL-3.0-or-later
"""Relay's choice of figure, per release and cgroup mode (the brief's table)."""

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm


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
    assert hm.relay_measures(release, mode, limited) == expected


@pytest.mark.parametrize("image, expected", [
    ("getsentry/relay:24.8.0", (24, 8, 0)),
    ("ghcr.io/getsentry/relay:26.8.0", (26, 8, 0)),
    ("registry.example:5000/getsentry/relay:25.10.1", (25, 10, 1)),
    ("getsentry/relay:nightly", None),
    ("", None),
])
def test_relay_release(image, expected):
    assert hm.relay_release({"RELAY_IMAGE": image}) == expected


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
    view = hm.relay_view(MEMINFO, release, mode, None)
    assert view["source"].startswith(says), view["source"]
    assert view["used"] == 12 * 1024 ** 3
