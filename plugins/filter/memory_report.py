# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn a memory_info result into the audit's readable report and advice."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Documentation: memory_report.yml and memory_recommendations.yml beside this file
# (one page per filter; ansible-doc reads a .py file's DOCUMENTATION for every filter in it).

from ansible.errors import AnsibleFilterError

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.host_memory import (
    GIB,
    human_bytes as human,
    recommended_swap_bytes,
)

# Below this, swap cannot take the cold memory that would let Relay's figure fall.
LOW_SWAPPINESS = 10
# Memory MemAvailable does not count, worth naming once it is this share of RAM.
HIDDEN_MEMORY_SHARE = 0.05


def _require(result):
    for key in ("ram", "swap", "relay", "containers", "sysctl"):
        if key not in (result or {}):
            raise AnsibleFilterError("memory_report expects a memory_info result; %r is missing" % key)


def memory_recommendations(result):
    """Concrete advice, most urgent first."""
    _require(result)
    ram, swap, relay = result["ram"], result["swap"], result["relay"]
    advice = []
    if relay["would_reject"]:
        advice.append("Relay is rejecting events now: %.1f%% used >= %.0f%% threshold. Restart the leaking "
                      "service or relay, then apply limits (compose_limits role)." % (relay["used_percent"], relay["threshold"] * 100))
    if relay["measures"] == "host" and relay["source"] == "host":
        advice.append("Relay %s measures the whole host here (cgroup v2, no limit on relay): any container can make it "
                      "reject events. Give relay a memory limit (compose_limits role)." % (relay["release"] or ""))
    wanted = recommended_swap_bytes(ram["total"])
    if swap["total"] == 0:
        advice.append("No swap: add a swapfile of %d GiB (swap role)." % (wanted // GIB))
    elif swap["total"] < wanted * 0.9:
        advice.append("Swap is %s: grow it to %d GiB (swap role)." % (human(swap["total"]), wanted // GIB))
    swappiness = result["sysctl"].get("vm.swappiness")
    if swap["total"] and isinstance(swappiness, int) and swappiness < LOW_SWAPPINESS:
        advice.append("vm.swappiness is %d: cold memory stays in RAM and swap cannot help Relay; use 30-60 (swap role)." % swappiness)
    unlimited = sorted(c["service"] for c in result["containers"] if c.get("limit") is None and "error" not in c)
    if unlimited:
        advice.append("%d %s no memory limit (%s): apply the compose_limits role." % (
            len(unlimited), "service has" if len(unlimited) == 1 else "services have",
            ", ".join(unlimited[:8]) + (", ..." if len(unlimited) > 8 else "")))
    if relay["max_memory_bytes"] is not None:
        by_percent = relay["threshold_bytes"]
        first = "max_memory_bytes" if relay["max_memory_bytes"] < by_percent else "max_memory_percent"
        advice.append("Relay's %s trips first (%s vs %s)." % (first, human(relay["max_memory_bytes"]), human(by_percent)))
    hidden = [(name, ram.get(key)) for name, key in (("Shmem (tmpfs)", "shmem"), ("unreclaimable slab", "slab_unreclaimable"), ("ZFS ARC", "zfs_arc"))]
    for name, size in hidden:
        if size and size >= ram["total"] * HIDDEN_MEMORY_SHARE:
            advice.append("%s holds %s that MemAvailable does not count as free." % (name, human(size)))
    if result.get("oom_kills"):
        advice.append("The kernel OOM-killed %d processes since boot: check `journalctl -k | grep -i oom`." % result["oom_kills"])
    pressure = result.get("pressure") or {}
    if pressure.get("some", {}).get("avg60", 0) >= 10:
        advice.append("Memory pressure: tasks stalled %.0f%% of the last minute." % pressure["some"]["avg60"])
    return advice


def memory_report(result):
    """Readable lines: RAM, swap, Relay's view and headroom, top consumers, advice."""
    _require(result)
    ram, swap, relay = result["ram"], result["swap"], result["relay"]
    lines = [
        "RAM    %s total, %s used (%.1f%%), %s available; page cache %s, shmem %s" % (
            human(ram["total"]), human(ram["used"]), ram["used_percent"], human(ram["available"]),
            human(ram["page_cache"]), human(ram["shmem"])),
        "Swap   %s total, %s used, %d area(s); vm.swappiness=%s" % (
            human(swap["total"]), human(swap["used"]), len(swap["areas"]), result["sysctl"].get("vm.swappiness")),
    ]
    for area in swap["areas"]:
        lines.append("         %s (%s) %s, %s used, priority %d" % (
            area["path"], area["type"], human(area["size"]), human(area["used"]), area["priority"]))
    lines.append("Relay  %s measures %s: %s of %s = %.1f%%, rejects at %.0f%% (%s); headroom %s%s" % (
        relay["release"] or "(release unknown)", relay["source"], human(relay["used"]), human(relay["total"]),
        relay["used_percent"], relay["threshold"] * 100, relay.get("threshold_source", ""),
        human(relay["headroom"]), "  REJECTING EVENTS" if relay["would_reject"] else ""))
    lines.append("Kernel cgroup %s, OOM kills %s, PSI %s" % (
        result.get("cgroup_mode"), result.get("oom_kills"),
        "some avg60=%.1f" % result["pressure"]["some"]["avg60"] if result.get("pressure") else "not available"))
    if result["containers"]:
        lines.append("Top containers (use: what a limit cannot reclaim; reclaimable: page cache and the like):")
        for container in result["containers"][:8]:
            reclaimable = max(0, (container.get("current") or 0) - (container.get("use") or 0))
            lines.append("         %-28s %10s  reclaimable %s  limit %s" % (
                container["service"], human(container.get("use")), human(reclaimable), human(container.get("limit"))))
    elif result.get("top_processes"):
        lines.append("Top processes:")
        for proc in result["top_processes"]:
            lines.append("         %-28s %10s  pid %d" % (proc["name"], human(proc["rss"]), proc["pid"]))
    advice = memory_recommendations(result)
    lines.append("Recommendations:" if advice else "Recommendations: none, this host has headroom.")
    lines.extend("  - " + item for item in advice)
    lines.extend("  note: " + note for note in result.get("notes", []))
    return lines


class FilterModule:
    def filters(self):
        return {
            "memory_report": memory_report,
            "memory_recommendations": memory_recommendations,
            "human_bytes": human,
        }
