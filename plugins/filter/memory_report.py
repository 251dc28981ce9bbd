# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn a memory_info result into the audit's readable report and advice.

The advice is what the site playbook would do on the same host with the same
inputs: the audit playbook passes site's inputs (the roles' variables as the
inventory and the roles' defaults give them, and compose_limits' own plan) as
``site``, and each rule is taken from where site takes it (the swap size from
host_memory and the swapfile module's size reader, the container check from
memory_info, the limits from memory_budget through the role's own tasks).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Documentation: memory_report.yml and memory_recommendations.yml beside this file
# (one page per filter; ansible-doc reads a .py file's DOCUMENTATION for every filter in it).

from ansible.errors import AnsibleFilterError

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import swapfile as sw
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.host_memory import (
    MIB,
    human_bytes as human,
    recommended_swap_bytes,
)

# Without site's inputs: the swap role's lowest vm.swappiness (its __swap_swappiness_min); below it cold memory
# stays in RAM and swap cannot let Relay's figure fall.
LOW_SWAPPINESS = 11
# Memory MemAvailable does not count, worth naming once it is this share of RAM.
HIDDEN_MEMORY_SHARE = 0.05
# /proc/swaps gives a swapfile's size less its header page (4 KiB, up to 64 KiB on some arm64 kernels).
SWAP_HEADER_MAX = 64 * 1024
# How many names a sentence lists before "...".
NAMES_SHOWN = 8

# What Relay's figure is, in the report's words (relay_view's ``source``); any other source is a sentence already.
MEASURES = {
    "host": "the whole host (MemTotal - MemAvailable)",
    "host-total-free": "the whole host (MemTotal - MemFree)",
    "cgroup": "its own cgroup (its anonymous memory against its limit)",
}


def _require(result):
    for key in ("ram", "swap", "relay", "containers", "sysctl"):
        if key not in (result or {}):
            raise AnsibleFilterError("memory_report expects a memory_info result; %r is missing" % key)


def _names(names):
    names = sorted(names)
    return ", ".join(names[:NAMES_SHOWN]) + (", ..." if len(names) > NAMES_SHOWN else "")


def _sentence(text):
    """``text`` with its first letter upper case (str.capitalize would lower the rest)."""
    return text[:1].upper() + text[1:]


def _services(count):
    return "%d service%s" % (count, "" if count == 1 else "s")


def _part(site, name):
    """Site's inputs for one part (a dict); a part is on unless site switches it off (site_swap: false, ...)."""
    part = dict((site or {}).get(name) or {})
    part.setdefault("enabled", True)
    return part


def swap_plan(result, site=None):
    """What the swap role would do here: a dict with ``action`` (none, add, resize, remove, refused, off, error;
    without site's inputs, grow when the host's swap is short of the rule),
    ``path``, ``size`` (bytes), ``reason`` (a refusal or an error) and ``swappiness`` (what it would set, or None)."""
    part = _part(site, "swap")
    path = part.get("path")
    plan = {"action": "none", "path": path, "size": None, "reason": None, "swappiness": None}
    if not part["enabled"]:
        plan["action"] = "off"
        return plan
    container = result.get("container")
    if container and not part.get("allow_in_container"):
        plan.update(action="refused", reason="this looks like a container (%s)" % container)
        return plan
    if "swap" not in (site or {}):
        # Site's inputs unknown (site's own summary): the sizing rule against the host's whole swap.
        plan.update(path=None, size=recommended_swap_bytes(result["ram"]["total"]))
        total = result["swap"]["total"]
        plan["action"] = "add" if total == 0 else "grow" if total < plan["size"] * 0.9 else "none"
        return plan
    area = next((a for a in result["swap"]["areas"] if a["path"] == path), None)
    if part.get("state", "present") == "absent":
        plan["action"] = "remove" if area else "none"
        return plan
    try:
        plan["size"] = sw.wanted_size(part.get("size"), result["ram"]["total"])
    except sw.SwapfileError as exc:
        plan.update(action="error", reason="swap_file_size: %s" % exc.msg)
        return plan
    if area is None:
        plan["action"] = "add"
    elif not 0 <= plan["size"] - area["size"] <= SWAP_HEADER_MAX:
        plan["action"] = "resize"
    swappiness, wanted = result["sysctl"].get("vm.swappiness"), part.get("swappiness")
    if wanted is not None and isinstance(swappiness, int) and swappiness != int(wanted):
        plan["swappiness"] = int(wanted)
    return plan


def _swap_advice(result, site):
    swap = result["swap"]
    plan = swap_plan(result, site)
    action, size = plan["action"], plan["size"]
    rule = "swap_file_size: %s" % (_part(site, "swap").get("size") or "auto")
    if action == "refused":
        return ["Swap is the host's to set: %s, where the swap role refuses to act (a swap area here would be the "
                "host's). Give the host swap on the host itself; set swap_allow_in_container: true only when changing "
                "the host's swap from here is meant." % plan["reason"]]
    if action == "error":
        return ["The swap role would stop here: %s." % plan["reason"]]
    advice = []
    if action == "off" and swap["total"] == 0:
        advice.append("No swap, and site leaves swap as it is here (site_swap: false).")
    elif action == "remove":
        advice.append("The swap role would switch off and delete %s (swap_state: absent)." % plan["path"])
    elif action == "add" and swap["total"] == 0:
        advice.append("No swap: the swap role would add a swapfile of %s%s (%s)." % (
            human(size), " at %s" % plan["path"] if plan["path"] else "", rule))
    elif action == "grow":
        advice.append("Swap is %s: the swap role's rule wants %s (%s)." % (human(swap["total"]), human(size), rule))
    elif action == "add":
        advice.append("Swap is %s (%s): the swap role would add a swapfile of %s at %s beside it (%s); "
                      "site_swap: false keeps swap as it is." % (
                          human(swap["total"]), ", ".join(a["path"] for a in swap["areas"]) or "no area listed",
                          human(size), plan["path"], rule))
    elif action == "resize":
        current = next(a for a in swap["areas"] if a["path"] == plan["path"])
        advice.append("The swap role would resize %s from %s to %s (%s)."
                      % (plan["path"], human(current["size"]), human(size), rule))
    swappiness, part = result["sysctl"].get("vm.swappiness"), _part(site, "swap")
    swapping = action in ("none", "add", "grow", "resize") and (swap["total"] or action == "add")
    if swapping and isinstance(swappiness, int) and swappiness < part.get("swappiness_min", LOW_SWAPPINESS):
        wanted = "would set %d (swap_swappiness)" % part["swappiness"] if "swappiness" in part else "sets swap_swappiness"
        advice.append("vm.swappiness is %d: cold memory stays in RAM and swap cannot help Relay; the swap role %s."
                      % (swappiness, wanted))
    return advice


def limits_plan(result, site=None):
    """What compose_limits would do here: a dict with ``action`` (none, write, refused, unknown, off), ``limits_mb``
    ({service: MiB} of its plan), ``unlimited`` and ``changed`` (services whose limit it would set or change),
    ``plan`` (memory_budget's result, as the role made it) and ``reason`` (why no plan was made)."""
    part = _part(site, "limits")
    unlimited = sorted(c["service"] for c in result["containers"]
                       if c.get("limit") is None and "error" not in c and c.get("service"))
    found = {"action": "none", "limits_mb": {}, "unlimited": unlimited, "changed": [], "plan": part.get("plan"),
             "reason": part.get("error")}
    plan = part.get("plan")
    if not part["enabled"]:
        found["action"] = "off"
    elif not plan:
        found["action"] = "unknown" if unlimited or found["reason"] else "none"
    elif not plan.get("fits"):
        found.update(action="refused", reason=plan.get("refusal"))
    else:
        found["limits_mb"] = dict((name, row["mem_limit_mb"]) for name, row in plan["services"].items())
        now = {}
        for container in result["containers"]:
            if container.get("service") and "error" not in container:
                now[container["service"]] = container.get("limit")
        found["unlimited"] = sorted(n for n in found["limits_mb"] if n in now and now[n] is None)
        found["changed"] = sorted(n for n, mb in found["limits_mb"].items()
                                  if n in now and now[n] is not None and now[n] // MIB != mb)
        if found["unlimited"] or found["changed"] or not now:
            found["action"] = "write"
    return found


def _limits_advice(result, site):
    found = limits_plan(result, site)
    action, unlimited, plan = found["action"], found["unlimited"], found["plan"]
    without = "%s no memory limit (%s)" % (
        _services(len(unlimited)) + (" has" if len(unlimited) == 1 else " have"), _names(unlimited)) if unlimited else ""
    if action == "off":
        return ["%s; site leaves the limits alone here (site_compose_limits: false)." % _sentence(without)] if unlimited else []
    if action == "unknown" and not unlimited:
        return ["The compose_limits role's plan could not be made here: %s." % found["reason"]]
    if action == "unknown":
        why = " (its plan could not be made here: %s)" % found["reason"] if found["reason"] else ""
        return ["%s: apply the compose_limits role%s." % (_sentence(without), why)]
    if action == "refused":
        return ["%s compose_limits role would refuse this host and write no limit: %s" % (
            _sentence(without) + "; the" if unlimited else "The", found["reason"])]
    advice = []
    if action == "write":
        limits = found["limits_mb"]
        changes = [without] if unlimited else []
        if found["changed"]:
            changes.append("%s another limit now (%s)" % (
                _services(len(found["changed"])) + (" has" if len(found["changed"]) == 1 else " have"),
                _names(found["changed"])))
        lead = _sentence("; ".join(changes)) + ": the" if changes else "The"
        # Relay's limit first (what it measures against), then the largest.
        shown = (["relay"] if "relay" in limits else []) + sorted(
            (n for n in limits if n != "relay"), key=lambda n: (-limits[n], n))[:2]
        advice.append("%s compose_limits role would limit all %s of this checkout (%s, ...), the limits adding up to "
                      "%d MiB (%d%% of RAM), the usual use %d MiB of the %d MiB below Relay's threshold." % (
                          lead, _services(len(limits)), ", ".join("%s %d MiB" % (n, limits[n]) for n in shown),
                          plan["sum_mb"], round(100.0 * plan["sum_mb"] / plan["total_memory_mb"]),
                          plan["usual_sum_mb"], plan["threshold_mb"]))
    if plan and plan.get("fits") and plan.get("warning"):
        advice.append("The compose_limits role would warn: %s" % plan["warning"])
    return advice


def _relay_advice(relay, site):
    part = _part(site, "relay")
    wanted = part.get("max_memory_percent")
    if not part["enabled"] or wanted is None or abs(float(wanted) - relay["threshold"]) < 1e-9:
        return []
    return ["Relay rejects events at %.0f%% (%s): relay_health would set health.max_memory_percent to %.0f%% "
            "(relay_health_max_memory_percent)."
            % (relay["threshold"] * 100, relay.get("threshold_source") or "", float(wanted) * 100)]


# The timers' roles, in the report's words (their units and calendars come with site's inputs).
TIMERS = (("memory_alerts", "The alerts check"), ("restart_timer", "The restart timer"))


def _timer_advice(site):
    advice = []
    for role, what in TIMERS:
        part = _part((site or {}).get("timers"), role)
        if not part["enabled"] or "installed" not in part:
            continue
        unit = "%s.timer" % part["unit"]
        if part.get("state", "present") == "present" and not part["installed"]:
            advice.append("%s is not installed: the %s role would install %s (%s_on_calendar: %s)." % (
                what, role, unit, role, part.get("on_calendar")))
        elif part.get("state") == "absent" and part["installed"]:
            advice.append("%s is installed: the %s role would remove %s (%s_state: absent)." % (what, role, unit, role))
    return advice


def memory_recommendations(result, site=None):
    """Concrete advice, most urgent first: what site would do on this host with the same inputs (``site``)."""
    _require(result)
    ram, relay = result["ram"], result["relay"]
    advice = []
    if relay["would_reject"] and _stand_in(relay):
        advice.append("The host is at %.1f%% >= %.0f%%, Relay's threshold, but Relay measures its own cgroup and no "
                      "relay container was found to read it: start relay (or check docker), then run the audit again."
                      % (relay["used_percent"], relay["threshold"] * 100))
    elif relay["would_reject"]:
        advice.append("Relay is rejecting events now: %.1f%% used >= %.0f%% threshold. Restart the leaking "
                      "service or relay, then apply limits (compose_limits role)." % (relay["used_percent"], relay["threshold"] * 100))
    if relay["measures"] == "host" and relay["source"] == "host":
        relay_limit = limits_plan(result, site)["limits_mb"].get("relay")
        advice.append("Relay %s measures the whole host here (cgroup v2, no limit on relay): any container can make it "
                      "reject events. Give relay a memory limit (compose_limits role%s)." % (
                          relay["release"] or "", ": %d MiB here" % relay_limit if relay_limit else ""))
    advice.extend(_swap_advice(result, site))
    advice.extend(_limits_advice(result, site))
    advice.extend(_relay_advice(relay, site))
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
    advice.extend(_timer_advice(site))
    return advice


def _stand_in(relay):
    """Whether the host's figures only stand in for Relay's own (no relay container could be read)."""
    return relay["source"] not in MEASURES


def relay_line(relay):
    """The report's Relay line: the release, what it measures here and its figure against the threshold."""
    return "Relay  %s measures %s: %s of %s = %.1f%%, rejects at %.0f%% (%s); headroom %s%s" % (
        relay["release"] or "(release unknown)", MEASURES.get(relay["source"], relay["source"]), human(relay["used"]),
        human(relay["total"]), relay["used_percent"], relay["threshold"] * 100, relay.get("threshold_source", ""),
        human(relay["headroom"]),
        "" if not relay["would_reject"] else "  OVER THE THRESHOLD" if _stand_in(relay) else "  REJECTING EVENTS")


def memory_report(result, site=None):
    """Readable lines: RAM, swap, Relay's view and headroom, top consumers, advice (see memory_recommendations)."""
    _require(result)
    ram, swap = result["ram"], result["swap"]
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
    lines.append(relay_line(result["relay"]))
    lines.append("Kernel cgroup %s, OOM kills %s, PSI %s%s" % (
        result.get("cgroup_mode"), result.get("oom_kills"),
        "some avg60=%.1f" % result["pressure"]["some"]["avg60"] if result.get("pressure") else "not available",
        "; in a container (%s)" % result["container"] if result.get("container") else ""))
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
    advice = memory_recommendations(result, site)
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
