# SPDX-License-Identifier: GPL-3.0-or-later
"""The compose_limits role with apply on, from the installed collection, against a real engine.

The limits it writes must reach the containers (HostConfig.Memory), only the
services whose limits changed may be recreated (the others keep their
container IDs), nginx must be reloaded when relay was recreated, and a second
run must recreate nothing.
"""

import json
import time

import pytest

from conftest import SERVICES_ALL, run_playbook

MIB = 1024 ** 2


@pytest.fixture
def play(stack, tmp_path):
    """Run the role on localhost with these variables; returns (rc, the role's result, the play's stats, all)."""

    def run(**role_vars):
        role_vars = dict(dict(sentry_selfhosted_dir=stack.dir, compose_limits_apply=True, compose_limits_total_memory_mb=16384,
                              compose_limits_use_measured=False, compose_limits_backup=False), **role_vars)
        returncode, data = run_playbook(tmp_path / "play.yml", [{
            "name": "Limits", "hosts": "localhost", "gather_facts": False,
            "roles": [{"role": "sentry_selfhosted.memory.compose_limits", "vars": role_vars}],
            "post_tasks": [{"name": "Hand back the result", "ansible.builtin.debug": {"var": "compose_limits_result"}}],
        }])
        result = None
        for item in data["plays"][0]["tasks"]:
            if item["task"]["name"] == "Hand back the result":
                result = item["hosts"]["localhost"]["compose_limits_result"]
        return returncode, result, data["stats"]["localhost"], data
    yield run
    stack.write_override(None)
    stack.up()


def planned_limits(stack):
    """mem_limit of every service as compose resolves the checkout with the override (bytes)."""
    config = json.loads(stack.compose("config", "--format", "json").stdout)
    limits = {}
    for name, service in config["services"].items():
        limit = service.get("mem_limit") or ((service.get("deploy") or {}).get("resources", {}).get("limits", {}).get("memory"))
        limits[name] = int(limit) if limit is not None else None
    return limits


def reloads(stack):
    return [line for line in stack.log("nginx.log") if line.startswith("reload")]


def relay_ip(stack):
    return next(iter(stack.inspect("relay")["NetworkSettings"]["Networks"].values()))["IPAddress"]


def test_limits_reach_the_containers_and_only_changed_services_are_recreated(stack, play):
    before = stack.ids()
    reloads_before = reloads(stack)

    rc, result, stats, data = play()
    assert rc == 0, data
    limits = planned_limits(stack)
    assert set(limits) == SERVICES_ALL and all(limits.values()), limits
    after = stack.ids()
    for service in SERVICES_ALL:
        assert stack.inspect(service)["HostConfig"]["Memory"] == limits[service], service
        assert after[service] != before[service], "%s got a limit but kept its old container" % service
    assert set(result["recreated"]) == SERVICES_ALL
    assert result["nginx_reloaded"] is True
    # nginx was reloaded after relay was recreated: the reload saw relay's new address.
    first_relay_ip = relay_ip(stack)
    assert reloads(stack) == reloads_before + ["reload relay=%s" % first_relay_ip]

    # A second run changes and recreates nothing.
    rc, result, stats, data = play()
    assert rc == 0, data
    assert stats["changed"] == 0
    assert result["recreated"] == [] and result["nginx_reloaded"] is False
    assert stack.ids() == after
    assert len(reloads(stack)) == len(reloads_before) + 1

    # One service's limit changes (every limit pinned to what it is, worker's
    # moved): only worker is recreated, and nginx is left alone.
    pinned = dict((service, limit // MIB) for service, limit in limits.items())
    pinned["worker"] = 300 if pinned["worker"] != 300 else 320
    rc, result, stats, data = play(compose_limits_overrides=pinned)
    assert rc == 0, data
    assert result["recreated"] == ["worker"] and result["nginx_reloaded"] is False
    again = stack.ids()
    assert stack.inspect("worker")["HostConfig"]["Memory"] == pinned["worker"] * MIB
    assert again["worker"] != after["worker"]
    for service in SERVICES_ALL - {"worker"}:
        assert again[service] == after[service], "%s was recreated though its limit did not change" % service
    assert len(reloads(stack)) == len(reloads_before) + 1

    # relay's limit changes: relay is recreated and the running nginx (kept) reloads.
    pinned["relay"] += 64
    rc, result, stats, data = play(compose_limits_overrides=pinned)
    assert rc == 0, data
    assert result["recreated"] == ["relay"] and result["nginx_reloaded"] is True
    last = stack.ids()
    assert last["relay"] != again["relay"] and last["nginx"] == again["nginx"]
    assert stack.inspect("relay")["HostConfig"]["Memory"] == pinned["relay"] * MIB
    assert reloads(stack) == reloads_before + ["reload relay=%s" % ip for ip in (first_relay_ip, relay_ip(stack))]


def worker_use_mb(stack):
    """What worker's container uses (anonymous memory and shmem, v1), read from its cgroup."""
    pid = stack.inspect("worker")["State"]["Pid"]
    with open("/proc/%d/cgroup" % pid) as handle:
        path = next(line.rstrip("\n").split(":", 2)[2] for line in handle if "memory" in line.split(":")[1].split(","))
    with open("/sys/fs/cgroup/memory%s/memory.stat" % path) as handle:
        stat = dict((k, int(v)) for k, v in (line.split() for line in handle))
    return (stat["total_rss"] + stat.get("total_shmem", 0)) // MIB


def test_peaks_of_use_survive_the_restart_that_resets_them(stack, play, tmp_path):
    """Sizing from the peaks of use is stable: a second run, even after the recreate
    that started the container's use again from zero, changes nothing."""
    peaks = tmp_path / "peaks.json"
    measured = dict(compose_limits_use_measured=True, sentry_selfhosted_peaks_file=str(peaks),
                    # A low minimum and no share of the spare RAM, so that worker's limit is its lowest limit,
                    # which follows its use (on 16 GiB a share would reach the row's max either way).
                    compose_limits_table={"worker": {"min": 32, "weight": 0}})
    # worker holds 64 MiB; a burst of 200 MiB more (written, so every page counts) goes on while the role runs.
    stack.compose("exec", "-d", "worker", "python3", "-c", "import time; burst = b'x' * (200 * 1024 * 1024); time.sleep(900)")
    deadline = time.monotonic() + 30
    while worker_use_mb(stack) < 250 and time.monotonic() < deadline:
        time.sleep(0.5)

    rc, result, stats, data = play(**measured)
    assert rc == 0, data
    remembered = json.loads(peaks.read_text())["services"]["worker"]
    assert remembered["mb"] >= 250, remembered
    limit = stack.inspect("worker")["HostConfig"]["Memory"] // MIB
    assert limit >= remembered["mb"] * 1.2
    assert "worker" in result["recreated"]
    # The recreate ended the burst; worker is back near its 64 MiB.
    assert worker_use_mb(stack) < 128

    for run in ("second", "third"):
        rc, result, stats, data = play(**measured)
        assert rc == 0, data
        assert stats["changed"] == 0 and result["recreated"] == [], (run, data)
        assert stack.inspect("worker")["HostConfig"]["Memory"] // MIB == limit, run
        assert json.loads(peaks.read_text())["services"]["worker"] == remembered, run

    # Forgetting the peaks plans from worker's use of now: its limit shrinks.
    rc, result, stats, data = play(compose_limits_forget_peaks=True, **measured)
    assert rc == 0, data
    assert "worker" in result["recreated"]
    assert stack.inspect("worker")["HostConfig"]["Memory"] // MIB < limit
    assert json.loads(peaks.read_text())["services"]["worker"]["mb"] < remembered["mb"]
