# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit recommends what site would do on the same host with the same inputs: the swap role's size and its
refusal in a container, compose_limits' plan (or its refusal or warning), relay_health's threshold, the timers;
and the report names how Relay measures for every release from 24.8.0 to 26.8.0."""

import os

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.filter import memory_budget as mb
from ansible_collections.sentry_selfhosted.memory.plugins.filter.memory_report import (
    limits_plan,
    memory_recommendations,
    memory_report,
    relay_line,
    swap_plan,
)
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import swapfile as sw
from ansible_collections.sentry_selfhosted.memory.plugins.modules import swapfile as swapfile_module

import checkouts

GIB = 1024 ** 3
MIB = 1024 ** 2

# Sizes as MemTotal shows them (a "16 GB" host has 15.2 GiB) and round ones.
HOST_SIZES = [int(gib * GIB) for gib in (1, 2, 3.5, 4, 7.6, 8, 15.2, 16, 23.5, 24, 31.1, 32, 64, 128)]
# The checkouts limits are planned for: the project's fixtures and upstream's releases beside development checkouts.
CHECKOUTS = [checkouts.FIXTURE_24, checkouts.FIXTURE] + [checkouts.upstream(t) for t in checkouts.upstream_releases()]


def memory(ram_total, swap_areas=(), container=None, containers=(), swappiness=60, release="26.8.0"):
    """A memory_info result of a host with ``ram_total`` bytes, its swap areas and running containers."""
    meminfo = {"MemTotal": ram_total, "MemFree": ram_total // 2, "MemAvailable": ram_total // 2}
    return {
        "ram": hm.host_memory_from_meminfo(meminfo), "sysctl": {"vm.swappiness": swappiness},
        "swap": {"total": sum(a["size"] for a in swap_areas), "used": 0, "areas": list(swap_areas)},
        "relay": ck.relay_view(meminfo, ck.parse_version(release), "v2", None), "containers": list(containers),
        "container": container, "pressure": None, "oom_kills": 0, "cgroup_mode": "v2", "notes": [],
    }


def area(path, size):
    return {"path": path, "type": "file", "size": size, "used": 0, "priority": -2}


def site(**parts):
    """Site's inputs as the audit playbook passes them: the roles' defaults unless a part says otherwise."""
    inputs = {
        "swap": {"enabled": True, "state": "present", "path": "/swapfile", "size": "auto", "allow_in_container": False,
                 "swappiness": 60, "swappiness_min": 11},
        "limits": {"enabled": True, "plan": None, "error": None},
        "relay": {"enabled": True, "max_memory_percent": 0.95},
        "timers": {"memory_alerts": {"enabled": True, "state": "present", "unit": "sentry-memory-alerts",
                                     "on_calendar": "minutely", "installed": True},
                   "restart_timer": {"enabled": True, "state": "present", "unit": "sentry-relay-restart",
                                     "on_calendar": "*-*-* 04:17:00", "installed": True}},
    }
    for name, values in parts.items():
        inputs[name] = dict(inputs[name], **values)
    return inputs


def swap_roles_size(monkeypatch, ram_total, size):
    """The size the swap role's module would make on a host with ``ram_total`` (its own option reading)."""
    monkeypatch.setattr(hm, "read_meminfo", lambda root="/": {"MemTotal": ram_total, "MemFree": ram_total // 2})
    module = type("Module", (), {"params": {"path": "/swapfile", "size": size, "state": "present", "priority": None,
                                            "min_free_disk": "1G", "relay_threshold": 0.95, "swapoff_timeout": 600,
                                            "swappiness": None, "vfs_cache_pressure": None}})
    return swapfile_module.SwapfileModule(module()).params()["size"]


# --- swap -------------------------------------------------------------------

@pytest.mark.parametrize("size", ["auto", "4G", "1536M", 8 * GIB])
@pytest.mark.parametrize("ram_total", HOST_SIZES)
def test_recommended_swap_is_the_swap_roles_size(monkeypatch, ram_total, size):
    wanted = swap_roles_size(monkeypatch, ram_total, size)
    plan = swap_plan(memory(ram_total), site(swap={"size": size}))
    assert (plan["action"], plan["size"], plan["path"]) == ("add", wanted, "/swapfile")
    advice = memory_recommendations(memory(ram_total), site(swap={"size": size}))
    assert advice[0] == "No swap: the swap role would add a swapfile of %s at /swapfile (swap_file_size: %s)." % (
        hm.human_bytes(wanted), size)


@pytest.mark.parametrize("ram_total", HOST_SIZES)
def test_swap_of_the_roles_size_at_its_path_needs_nothing_and_another_size_is_resized(monkeypatch, ram_total):
    wanted = swap_roles_size(monkeypatch, ram_total, "auto")
    # /proc/swaps lists a swapfile without its header page.
    active = [area("/swapfile", wanted - 4096)]
    assert swap_plan(memory(ram_total, active), site())["action"] == "none"
    assert memory_recommendations(memory(ram_total, active), site()) == []
    for other in (wanted + GIB, wanted // 2):
        plan = swap_plan(memory(ram_total, [area("/swapfile", other - 4096)]), site())
        assert (plan["action"], plan["size"]) == ("resize", wanted)


def test_swap_elsewhere_still_gets_the_roles_swapfile_beside_it():
    # The swap role keeps swap_file_path whatever other areas exist: the audit says so instead of "enough swap".
    advice = memory_recommendations(memory(16 * GIB, [area("/dev/sda2", 8 * GIB)]), site())
    assert advice == ["Swap is 8.0 GiB (/dev/sda2): the swap role would add a swapfile of 8.0 GiB at /swapfile beside "
                      "it (swap_file_size: auto); site_swap: false keeps swap as it is."]


def test_a_size_the_swap_role_refuses_is_its_error():
    with pytest.raises(sw.SwapfileError) as refused:
        sw.parse_size("lots")
    assert memory_recommendations(memory(16 * GIB), site(swap={"size": "lots"})) == [
        "The swap role would stop here: swap_file_size: %s." % refused.value.msg]


@pytest.mark.parametrize("ram_total", [8 * GIB, int(15.2 * GIB), 24 * GIB])
def test_in_a_container_no_swapfile_is_recommended(tmp_path, ram_total):
    (tmp_path / ".dockerenv").write_text("")
    reason = sw.container_reason(str(tmp_path))
    # The swap role's own refusal on the same host (its check that touches nothing).
    refusal, dummy = sw.host_blocker(str(tmp_path), allow_in_container=False)
    assert refusal.startswith("this looks like a container (%s)" % reason)
    result = memory(ram_total, container=reason, swappiness=1)
    assert swap_plan(result, site())["action"] == "refused"
    for inputs in (site(), None):
        advice = memory_recommendations(result, inputs)
        assert not [a for a in advice if "swapfile of" in a or "vm.swappiness" in a], advice
        assert advice[0] == (
            "Swap is the host's to set: this looks like a container (/.dockerenv exists), where the swap role refuses "
            "to act (a swap area here would be the host's). Give the host swap on the host itself; set "
            "swap_allow_in_container: true only when changing the host's swap from here is meant.")
    allowed = swap_plan(result, site(swap={"allow_in_container": True}))
    assert (allowed["action"], allowed["size"]) == ("add", hm.recommended_swap_bytes(ram_total))


def test_swap_switched_off_or_absent_is_what_site_does():
    assert memory_recommendations(memory(16 * GIB), site(swap={"enabled": False})) == [
        "No swap, and site leaves swap as it is here (site_swap: false)."]
    assert memory_recommendations(memory(16 * GIB, [area("/swapfile", 8 * GIB)]), site(swap={"state": "absent"})) == [
        "The swap role would switch off and delete /swapfile (swap_state: absent)."]


def test_low_swappiness_names_what_the_swap_role_would_set():
    advice = memory_recommendations(memory(16 * GIB, [area("/swapfile", 8 * GIB)], swappiness=10), site())
    assert advice == ["vm.swappiness is 10: cold memory stays in RAM and swap cannot help Relay; the swap role would "
                      "set 60 (swap_swappiness)."]


# --- limits -----------------------------------------------------------------

def unlimited(services):
    return [{"service": name, "use": 100 * MIB, "current": 200 * MIB, "limit": None} for name in services]


@pytest.mark.parametrize("ram_gib", [8, 16, 24, 32])
@pytest.mark.parametrize("path", CHECKOUTS, ids=os.path.basename)
def test_limits_recommended_are_compose_limits_plan(path, ram_gib):
    services = checkouts.service_profiles(path)
    active = checkouts.active_services(path)
    ram_total = ram_gib * GIB - 700 * MIB  # MemTotal of a host sold as ram_gib GB
    # compose_limits' own call (tasks/plan.yml), with what the audit's memory_info measured.
    result = memory(ram_total, containers=unlimited(active))
    plan = mb.plan(services, ram_total // MIB, reserve_mb=512, measured=result["containers"], relay_threshold=0.95)
    found = limits_plan(result, site(limits={"plan": plan}))
    advice = memory_recommendations(result, site(limits={"plan": plan}))
    if not plan["fits"]:
        assert found["action"] == "refused" and found["limits_mb"] == {}
        assert any(a.endswith("the compose_limits role would refuse this host and write no limit: " + plan["refusal"])
                   for a in advice), advice
        return
    wanted = dict((name, row["mem_limit_mb"]) for name, row in plan["services"].items())
    assert found["action"] == "write" and found["limits_mb"] == wanted
    assert found["unlimited"] == sorted(active)
    sentence = next(a for a in advice if "compose_limits role would limit all" in a)
    assert "all %d services of this checkout (relay %d MiB" % (len(wanted), wanted["relay"]) in sentence
    assert "the limits adding up to %d MiB" % sum(wanted.values()) in sentence
    warned = [a for a in advice if a.startswith("The compose_limits role would warn: ")]
    assert warned == (["The compose_limits role would warn: " + plan["warning"]] if plan["warning"] else [])
    # Once the containers run with the plan's limits, the audit has nothing to say about limits.
    limited = [dict(c, limit=wanted[c["service"]] * MIB) for c in result["containers"]]
    after = memory(ram_total, containers=limited)
    assert limits_plan(after, site(limits={"plan": plan}))["action"] == "none"
    assert not [a for a in memory_recommendations(after, site(limits={"plan": plan})) if "would limit" in a]


def test_a_limit_other_than_the_plans_is_named():
    plan = mb.plan(checkouts.service_profiles(checkouts.FIXTURE), 16384, relay_threshold=0.95)
    containers = [{"service": name, "use": 100 * MIB, "limit": row["mem_limit_mb"] * MIB}
                  for name, row in plan["services"].items()]
    containers[0]["limit"] += 64 * MIB
    found = limits_plan(memory(16 * GIB, containers=containers), site(limits={"plan": plan}))
    assert (found["action"], found["changed"], found["unlimited"]) == ("write", [containers[0]["service"]], [])


def test_limits_switched_off_or_not_planned():
    result = memory(16 * GIB, [area("/swapfile", 8 * GIB)], containers=unlimited(["kafka", "web"]))
    assert memory_recommendations(result, site(limits={"enabled": False})) == [
        "2 services have no memory limit (kafka, web); site leaves the limits alone here (site_compose_limits: false)."]
    assert memory_recommendations(result, site(limits={"error": "docker compose config failed: boom"})) == [
        "2 services have no memory limit (kafka, web): apply the compose_limits role (its plan could not be made "
        "here: docker compose config failed: boom)."]


def test_relay_measuring_the_host_is_told_the_limit_compose_limits_would_give_it():
    plan = mb.plan(checkouts.service_profiles(checkouts.FIXTURE_24), 16384, relay_threshold=0.95)
    result = memory(16 * GIB, [area("/swapfile", 8 * GIB)], containers=unlimited(["relay"]))
    result["relay"] = ck.relay_view({"MemTotal": 16 * GIB, "MemFree": GIB, "MemAvailable": 2 * GIB}, (24, 8, 0), "v2",
                                    {"anon": GIB, "limit": None})
    advice = memory_recommendations(result, site(limits={"plan": plan}))
    assert ("Give relay a memory limit (compose_limits role: %d MiB here)." % plan["services"]["relay"]["mem_limit_mb"]
            in advice[0])


# --- Relay's threshold and the timers ----------------------------------------

def test_relay_threshold_is_relay_healths():
    result = memory(16 * GIB, [area("/swapfile", 8 * GIB)])
    result["relay"] = dict(result["relay"], threshold=1.0, threshold_source="/opt/sentry/relay/config.yml")
    assert memory_recommendations(result, site()) == [
        "Relay rejects events at 100% (/opt/sentry/relay/config.yml): relay_health would set "
        "health.max_memory_percent to 95% (relay_health_max_memory_percent)."]
    assert memory_recommendations(result, site(relay={"enabled": False})) == []
    assert memory_recommendations(result, site(relay={"max_memory_percent": 1.0})) == []


def test_timers_not_installed_are_what_site_would_install():
    result = memory(16 * GIB, [area("/swapfile", 8 * GIB)])
    timers = site()["timers"]
    timers["memory_alerts"]["installed"] = False
    timers["restart_timer"]["installed"] = False
    assert memory_recommendations(result, site(timers=timers)) == [
        "The alerts check is not installed: the memory_alerts role would install sentry-memory-alerts.timer "
        "(memory_alerts_on_calendar: minutely).",
        "The restart timer is not installed: the restart_timer role would install sentry-relay-restart.timer "
        "(restart_timer_on_calendar: *-*-* 04:17:00)."]
    timers["restart_timer"].update(installed=True, state="absent")
    timers["memory_alerts"]["enabled"] = False
    assert memory_recommendations(result, site(timers=timers)) == [
        "The restart timer is installed: the restart_timer role would remove sentry-relay-restart.timer "
        "(restart_timer_state: absent)."]


# --- how Relay measures, every release from 24.8.0 to 26.8.0 ------------------
# self-hosted's releases (its .env pins the same Relay release) from the outage's to the newest here.
RELEASES = [
    "24.8.0", "24.9.0", "24.10.0", "24.11.0", "24.11.1", "24.11.2", "24.12.0", "24.12.1",
    "25.1.0", "25.2.0", "25.3.0", "25.4.0", "25.5.0", "25.5.1", "25.6.0", "25.6.1", "25.6.2", "25.7.0", "25.8.0",
    "25.9.0", "25.10.0", "25.11.0", "25.11.1", "25.12.0", "25.12.1",
    "26.1.0", "26.2.0", "26.2.1", "26.3.0", "26.3.1", "26.4.0", "26.4.1", "26.4.2", "26.5.0", "26.6.0", "26.7.0",
    "26.8.0",
]
HOST = "the whole host (MemTotal - MemAvailable)"
OWN = "its own cgroup (its anonymous memory against its limit)"
STAND_IN = "its own cgroup (relay container not found: no relay container runs, so the host's figures stand in)"
MEMINFO = {"MemTotal": 16 * GIB, "MemFree": GIB, "MemAvailable": 4 * GIB}
RELAY_CGROUPS = {"no container": None, "no limit": {"anon": GIB, "limit": None}, "limit": {"anon": GIB, "limit": 3 * GIB}}


def expected_measure(release, mode, relay):
    """The brief's table: Relay 24.7.1-25.4.x (and 25.5.x, before sysinfo 0.35 came with 25.6.0) on a cgroup v2 host
    measures the whole host unless relay has a limit; on cgroup v1 and from 25.6.0 on, always its own cgroup."""
    old_fork = ck.parse_version(release) < (25, 6, 0)
    if old_fork and mode == "v2" and relay != "limit":
        return HOST
    return STAND_IN if relay == "no container" else OWN


@pytest.mark.parametrize("relay", sorted(RELAY_CGROUPS))
@pytest.mark.parametrize("mode", ["v2", "hybrid", "v1"])
@pytest.mark.parametrize("release", RELEASES)
def test_the_report_names_how_each_release_measures(release, mode, relay):
    view = ck.relay_view(MEMINFO, ck.parse_version(release), mode, RELAY_CGROUPS[relay])
    line = relay_line(view)
    assert line.startswith("Relay  %s measures %s: " % (release, expected_measure(release, mode, relay))), line
    report = memory_report(dict(memory(MEMINFO["MemTotal"]), relay=view), site())
    assert line in report


@pytest.mark.skipif(not checkouts.upstream_releases(), reason="upstream checkouts are beside development checkouts only")
@pytest.mark.parametrize("mode", ["v2", "v1"])
def test_each_upstream_checkout_is_named_as_its_release_measures(mode):
    for tag in checkouts.upstream_releases():
        release = ck.relay_release(ck.checkout_env(checkouts.upstream(tag)))
        line = relay_line(ck.relay_view(MEMINFO, release, mode, None))
        assert line.startswith("Relay  %s measures %s: " % (tag, expected_measure(tag, mode, "no container"))), line


@pytest.mark.parametrize("release, rejecting", [("24.8.0", True), ("25.12.0", False), ("26.8.0", False)])
def test_a_full_host_is_rejecting_only_where_relay_measures_the_host(release, rejecting):
    # No relay container could be read: a release that measures its own cgroup is not said to reject events.
    full = {"MemTotal": 16 * GIB, "MemFree": GIB // 4, "MemAvailable": GIB // 2}
    view = ck.relay_view(full, ck.parse_version(release), "v2", None)
    assert view["would_reject"] is True
    result = dict(memory(full["MemTotal"], [area("/swapfile", 8 * GIB)]), relay=view)
    line = relay_line(view)
    advice = memory_recommendations(result, site())
    if rejecting:
        assert line.endswith("  REJECTING EVENTS") and advice[0].startswith("Relay is rejecting events now: 96.9%")
    else:
        assert line.endswith("  OVER THE THRESHOLD"), line
        assert advice[0] == ("The host is at 96.9% >= 95%, Relay's threshold, but Relay measures its own cgroup and no "
                             "relay container was found to read it: start relay (or check docker), then run the audit "
                             "again.")
