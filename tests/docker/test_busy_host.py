# SPDX-License-Identifier: GPL-3.0-or-later
"""The busy host that has the outage, on the real engine: a plan at every level of use.

Every service of release 25.9.0 (74 with the feature-complete profile, the
largest set of any release) runs as a stand-in that holds real anonymous
memory: what a busy host uses, spread over the services as
tests/checkouts.busy_use spreads it (kafka most, nginx least), at 4, 8, 12
and 14 GiB in all, at scale 1:1. The stores' containers (kafka, clickhouse,
postgres) also hold real page cache: a process in each writes and reads a
file of its own. memory_info reads the containers' cgroups, and the
compose_limits role plans for a 16 GiB host from what they use (apply off:
the plan and the override are the point, not recreating 74 stand-ins). Sentry's
images cannot run here; the stand-ins (chaos/hold.py) are not Sentry.

Skipped without upstream's checkouts (../shared/upstream beside the repository).
"""

import json
import os
import time

import pytest

import chaos_scenario as chaos
import checkouts
from conftest import docker, run_playbook

RELEASE = "25.9.0"
PROFILE = "feature-complete"
PLANNED_MB = 16384
LEVELS_GIB = (4, 8, 12, 14)
CACHE_MB = 1024  # per store: 3 GiB of page cache in all
MIB = 1024 ** 2
# The interpreter of a stand-in whose share is smaller than Python itself holds a few MiB more than its share.
INTERPRETER_MB = 8


@pytest.fixture(scope="module")
def busy(engine, tmp_path_factory):
    """The release's stand-ins up, in a parent cgroup of their own (no limit: the host is the machine)."""
    if RELEASE not in checkouts.upstream_releases():
        pytest.skip("upstream's checkout of %s is not at %s" % (RELEASE, checkouts.UPSTREAM))
    workdir = str(tmp_path_factory.mktemp("busy"))
    cgroup = "%s%d-busy" % (chaos.CGROUP_PREFIX, os.getpid())
    chaos.remove_stale_cgroups()
    os.mkdir(os.path.join(chaos.MEMORY_ROOT, cgroup))
    directory = chaos.write_checkout(RELEASE, os.path.join(workdir, "sentry"), cgroup, 0, 0, engine)
    stack = chaos.Stack(directory)
    hold(stack, dict((name, 1) for name in chaos.active_services(RELEASE)))
    try:
        stack.compose("up", "-d", "--wait", "--wait-timeout", str(chaos.UP_TIMEOUT), timeout=chaos.UP_TIMEOUT + 60)
        yield stack
    finally:
        stack.down()
        chaos.remove_cgroup(cgroup)


def hold(stack, figures):
    with open(os.path.join(stack.state, "hold.json"), "w") as handle:
        json.dump(figures, handle)


def settle(run_module, stack, want_mb, timeout=120):
    """memory_info's containers once the stand-ins hold want_mb between them."""
    deadline = time.monotonic() + timeout
    while True:
        args = {"project_dir": stack.dir, "containers": True, "top_processes": 0}
        info = run_module("sentry_selfhosted.memory.memory_info", args)
        if "containers" not in info:
            raise AssertionError("memory_info failed: %s" % json.dumps(info)[-2000:])
        held = sum(c["use"] for c in info["containers"]) // MIB
        if held >= want_mb or time.monotonic() > deadline:
            return info
        time.sleep(1)


def fill_page_cache(stack):
    """A file of CACHE_MB inside each store's container, written once and read back: page cache charged to it.

    Read again at every level: the kernel may have dropped some of it meanwhile (it is cache)."""
    script = ("import os\n"
              "if not os.path.exists('/tmp/segments'):\n"
              "    with open('/tmp/segments.new', 'wb') as out:\n"
              "        for _ in range(%d): out.write(b'\\x02' * 1048576)\n"
              "        out.flush(); os.fsync(out.fileno())\n"
              "    os.rename('/tmp/segments.new', '/tmp/segments')\n"
              "with open('/tmp/segments', 'rb') as back:\n"
              "    while back.read(1048576): pass\n") % CACHE_MB
    for service in checkouts.CACHE_HOLDERS:
        stack.compose("exec", "-T", service, "python3", "-c", script, timeout=300)


def plan(stack, tmp_path, level):
    """The role's plan for a 16 GiB host from what the containers use, and the play's exit code."""
    peaks = tmp_path / ("peaks-%d.json" % level)
    returncode, data = run_playbook(tmp_path / ("busy-%d.yml" % level), [{
        "name": "Limits for the busy host", "hosts": "localhost", "gather_facts": False,
        "roles": [{"role": "sentry_selfhosted.memory.compose_limits", "vars": {
            "sentry_selfhosted_dir": stack.dir, "sentry_selfhosted_peaks_file": str(peaks),
            "compose_limits_total_memory_mb": PLANNED_MB, "compose_limits_apply": False, "compose_limits_backup": False}}],
        "post_tasks": [{"name": "Hand back the plan", "ansible.builtin.debug": {"var": "compose_limits_plan"}}],
    }])
    found = None
    for item in data["plays"][0]["tasks"]:
        if item["task"]["name"] == "Hand back the plan":
            found = item["hosts"]["localhost"]["compose_limits_plan"]
    return returncode, found, json.loads(peaks.read_text()) if peaks.exists() else None, data


@pytest.mark.parametrize("level", LEVELS_GIB)
def test_a_busy_host_gets_a_plan_from_what_it_uses(busy, run_module, tmp_path, level):
    use = checkouts.busy_use(checkouts.upstream(RELEASE), PROFILE, level * 1024)
    assert sorted(use) == chaos.active_services(RELEASE)
    hold(busy, use)
    busy.compose("kill", "-s", "HUP")
    fill_page_cache(busy)
    # nginx's stand-in is a shell that holds nothing of its share (a few MiB).
    expected = level * 1024 - use["nginx"]
    info = settle(run_module, busy, expected)
    containers = dict((c["service"], c) for c in info["containers"])
    assert sorted(containers) == sorted(use)
    # The engine's figures: each container uses what its stand-in holds; the stores' page cache is apart.
    for service in checkouts.CACHE_HOLDERS:
        cache = containers[service]["current"] - containers[service]["use"]
        assert cache >= 0.9 * CACHE_MB * MIB, (service, containers[service])
    held = sum(c["use"] for c in containers.values()) // MIB
    assert expected <= held <= expected + INTERPRETER_MB * len(use), held

    returncode, result, peaks, data = plan(busy, tmp_path, level)
    assert returncode == 0, json.dumps(data)[-3000:]
    assert result["fits"] and result["refusal"] is None
    rows = result["services"]
    assert sorted(rows) == sorted(use)
    # Planned from use, page cache never counted: kafka's usual figure is what it uses, not its 1 GiB of cache on top.
    assert result["usual_sum_mb"] == sum(rows[n]["usual_mb"] for n in rows)
    # Each service is rounded up to a whole MiB; nothing else stands between the engine and the plan.
    assert abs(result["usual_sum_mb"] - held) <= 0.01 * held + len(rows), (result["usual_sum_mb"], held)
    assert rows["kafka"]["usual_mb"] < containers["kafka"]["current"] // MIB - 0.9 * CACHE_MB
    for name, row in rows.items():
        margin = 1.5 if name in ("kafka", "clickhouse", "postgres", "redis", "zookeeper") else 1.2
        assert row["source"] == "measured" and row["mem_limit_mb"] >= row["usual_mb"] * margin, (name, row)
    relay = rows["relay"]
    assert relay["usual_mb"] * 1.15 <= relay["mem_limit_mb"] * result["relay_threshold"]
    assert result["history"]["text"].startswith("no history of peaks yet: planned from the use of now of 74 services")
    assert peaks["services"]["kafka"]["mb"] == rows["kafka"]["usual_mb"]
    if level <= 12:
        assert result["warning"] is None and result["past_rule"] == [], result["warning"]
    else:
        assert result["warning"].startswith("Less headroom than the rule wants") and result["past_rule"]
    # The override the role wrote gives every service a limit, and the real Compose CLI takes it.
    config = json.loads(busy.compose("config", "--format", "json").stdout)["services"]
    assert all(config[n].get("mem_limit") for n in use), [n for n in use if not config[n].get("mem_limit")]
    assert docker("info").returncode == 0
