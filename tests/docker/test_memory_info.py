# SPDX-License-Identifier: GPL-3.0-or-later
"""memory_info with containers on, through the installed collection, against a real engine.

The module's figures are compared with what `docker stats --no-stream` and the
kernel's cgroup files say around the same moment. The cgroup files are read
here with a few lines of their own, on purpose: the module's parser
(host_memory) must not be its own oracle.

Tolerance: the containers are idle stand-ins, but their charge still moves by
a few pages between two readings (the Python runtime, exec probes), and
`docker stats` prints 4 significant digits (0.05 %). A figure passes when it
lies within SLACK of the range the files gave just before and just after the
module ran; `docker stats` (sampled right after the module) within SLACK plus
its rounding of the module's figure.
"""

import os
import re
import time

import pytest

from conftest import PROJECT, SERVICES_ALL as SERVICES, docker

MIB = 1024 ** 2
SLACK = 2 * MIB
MODULE = "sentry_selfhosted.memory.memory_info"


# --- the oracle: cgroup files and docker stats ------------------------------

def cgroup_mode():
    with open("/proc/self/mounts") as handle:
        mounts = [line.split() for line in handle]
    if any(m[1] == "/sys/fs/cgroup" and m[2] == "cgroup2" for m in mounts):
        return "v2"
    return "hybrid" if any(m[2] == "cgroup2" for m in mounts) else "v1"


def files_of(pid):
    """usage (as docker stats counts it), anon, use (anon and shmem: v1's figure, the engine here is v1) and limit
    of a process's memory cgroup, from the files."""
    with open("/proc/%d/cgroup" % pid) as handle:
        lines = [line.rstrip("\n").split(":", 2) for line in handle]
    v2 = cgroup_mode() == "v2"
    if v2:
        path = "/sys/fs/cgroup" + next(p for h, c, p in lines if h == "0")
        names = ("memory.current", "memory.max", "inactive_file", "anon")
    else:
        path = "/sys/fs/cgroup/memory" + next(p for h, c, p in lines if "memory" in c.split(","))
        names = ("memory.usage_in_bytes", "memory.limit_in_bytes", "total_inactive_file", "total_rss")
    with open(os.path.join(path, names[0])) as handle:
        current = int(handle.read())
    with open(os.path.join(path, names[1])) as handle:
        limit = handle.read().strip()
    with open(os.path.join(path, "memory.stat")) as handle:
        stat = dict((k, int(v)) for k, v in (line.split() for line in handle))
    limit = None if limit == "max" or int(limit) >= 0x7FFFFFFFFFFFF000 else int(limit)
    # On v2 the figure has more keys (host_memory.UNRECLAIMABLE_V2); the engines here are v1.
    use = None if v2 else stat["total_rss"] + stat.get("total_shmem", 0)
    return {"usage": current - stat[names[2]], "anon": stat[names[3]], "use": use, "limit": limit}


UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 ** 3, "TiB": 1024 ** 4}


def parse_size(text):
    match = re.match(r"^([0-9.]+)\s*([A-Za-z]+)$", text.strip())
    assert match, "docker stats printed %r where a size belongs" % text
    return float(match.group(1)) * UNITS[match.group(2)]


def docker_stats(ids):
    """{container id: (usage, limit)} from `docker stats --no-stream`, in bytes (4 significant digits).

    A container that has only just started can still show "--": ask again.
    """
    size = r"[0-9.]+\s*[A-Za-z]+"
    deadline = time.monotonic() + 10
    while True:
        out = docker("stats", "--no-stream", "--no-trunc", "--format", "{{.ID}}\t{{.MemUsage}}", *ids).stdout
        rows = [line.split("\t") for line in out.splitlines()]
        if all(re.match(r"^%s\s*/\s*%s$" % (size, size), row[1].strip()) for row in rows) or time.monotonic() > deadline:
            break
        time.sleep(1)
    stats = {}
    for cid, mem in rows:
        usage, limit = mem.split("/")
        stats[cid] = (parse_size(usage), parse_size(limit))
    return stats


def mem_total():
    with open("/proc/meminfo") as handle:
        return int(handle.readline().split()[1]) * 1024


def assert_within(value, readings, slack, what):
    low, high = min(readings) - slack, max(readings) + slack
    assert low <= value <= high, "%s: %s is outside [%s, %s] (readings %s)" % (what, value, low, high, readings)


@pytest.fixture
def clean(stack):
    """Put the checkout back as it came (no override, relay config as shipped) after a test."""
    config = os.path.join(stack.dir, "relay", "config.yml")
    with open(config) as handle:
        shipped = handle.read()
    yield stack
    stack.write_override(None)
    with open(config, "w") as handle:
        handle.write(shipped)
    stack.up()


def measure(stack, run_module, **args):
    """Files before, the module, docker stats, files after: all within a few seconds."""
    containers = stack.containers()
    pids = dict((s, c["State"]["Pid"]) for s, c in containers.items())
    before = dict((s, files_of(pid)) for s, pid in pids.items())
    result = run_module(MODULE, dict({"project_dir": stack.dir, "containers": True}, **args))
    stats = docker_stats([c["Id"] for c in containers.values()])
    after = dict((s, files_of(pid)) for s, pid in pids.items())
    assert not result.get("failed"), result.get("msg")
    return result, stats, before, after


# --- tests -----------------------------------------------------------------

def test_lists_the_project_containers_by_service_and_name(stack, run_module):
    result = run_module(MODULE, {"project_dir": stack.dir, "containers": True})
    assert not result.get("failed"), result.get("msg")
    ids = stack.ids()
    assert set(ids) == SERVICES
    listed = dict((c["service"], c) for c in result["containers"])
    assert set(listed) == SERVICES
    for service, container in listed.items():
        assert container["name"] == "%s-%s-1" % (PROJECT, service)
        assert container["id"] == ids[service]
        assert "error" not in container
    uses = [c["use"] for c in result["containers"]]
    assert uses == sorted(uses, reverse=True), "containers are listed by what they use, largest first"
    assert result["relay"]["release"] == "24.8.0"


def test_figures_match_docker_stats_and_the_cgroup_files(stack, run_module):
    result, stats, before, after = measure(stack, run_module)
    total = mem_total()
    for container in result["containers"]:
        service = container["service"]
        readings = (before[service], after[service])
        assert_within(container["usage"], [r["usage"] for r in readings], SLACK, "%s usage vs files" % service)
        assert_within(container["anon"], [r["anon"] for r in readings], SLACK, "%s anon vs files" % service)
        if readings[0]["use"] is not None:
            assert_within(container["use"], [r["use"] for r in readings], SLACK, "%s use vs files" % service)
        # Use never counts page cache: it is at most the cgroup's whole charge.
        assert container["anon"] <= container["use"] <= container["current"]
        assert container["limit"] is None and before[service]["limit"] is None
        stats_usage, stats_limit = stats[container["id"]]
        assert_within(stats_usage, [container["usage"]], SLACK + container["usage"] * 0.0005, "%s docker stats usage" % service)
        # With no limit the engine reports the host's RAM as the limit.
        assert abs(stats_limit - total) <= total * 0.0005
        assert container["current"] >= container["usage"]
    worker = next(c for c in result["containers"] if c["service"] == "worker")
    # The worker stand-in holds 64 MiB written byte by byte: its figures are real, not zeros.
    assert worker["anon"] >= 64 * MIB
    assert worker["usage"] >= worker["anon"] - SLACK


def test_a_container_with_a_limit_shows_it(clean, run_module):
    stack = clean
    ids = stack.ids()
    stack.write_override({"worker": {"mem_limit": "256m"}})
    stack.up()
    assert stack.inspect("worker")["HostConfig"]["Memory"] == 256 * MIB
    result, stats, before, after = measure(stack, run_module)
    listed = dict((c["service"], c) for c in result["containers"])
    worker = listed["worker"]
    assert worker["limit"] == 256 * MIB == before["worker"]["limit"] == after["worker"]["limit"]
    assert worker["configured_limit"] == 256 * MIB
    assert stats[worker["id"]][1] == 256 * MIB
    assert worker["id"] != ids["worker"], "the new limit needed a new container"
    for service in SERVICES - {"worker"}:
        assert listed[service]["limit"] is None, service
        assert listed[service]["id"] == ids[service], "%s was recreated though its settings did not change" % service


def expected_measure(mode, relay_limited):
    """The brief's table for Relay 24.8.0 (sysinfo fork): v1 and hybrid hosts always read the cgroup."""
    if mode == "v2" and not relay_limited:
        return "host"
    return "cgroup"


def test_relay_view_follows_the_relay_container(clean, run_module):
    stack = clean
    mode = cgroup_mode()
    total = mem_total()
    result, stats, before, after = measure(stack, run_module)
    relay = result["relay"]
    assert result["cgroup_mode"] == mode
    assert relay["measures"] == expected_measure(mode, False)
    assert relay["threshold"] == 0.95 and relay["threshold_source"] == "Relay's default"
    if relay["measures"] == "cgroup":
        # Relay 24.8 on a v1/hybrid host: its own cgroup's anon against the host's RAM.
        assert relay["total"] == total
        assert_within(relay["used"], [before["relay"]["anon"], after["relay"]["anon"]], SLACK, "relay used")
    else:
        assert relay["total"] == total and relay["used"] > before["relay"]["anon"]

    # A limit on relay: Relay's total becomes the limit (and on v2 the figure moves to the cgroup).
    stack.write_override({"relay": {"mem_limit": "512m"}})
    with open(os.path.join(stack.dir, "relay", "config.yml"), "a") as handle:
        handle.write("health:\n  max_memory_percent: 0.9\n")
    stack.up()
    result, stats, before, after = measure(stack, run_module)
    relay = result["relay"]
    assert relay["measures"] == "cgroup" == expected_measure(mode, True)
    assert relay["total"] == 512 * MIB
    assert_within(relay["used"], [before["relay"]["anon"], after["relay"]["anon"]], SLACK, "relay used")
    assert relay["threshold"] == 0.9
    assert relay["threshold_source"] == os.path.join(stack.dir, "relay", "config.yml")
    assert relay["threshold_bytes"] == int(512 * MIB * 0.9)
    assert relay["headroom"] == relay["threshold_bytes"] - relay["used"]
    assert relay["would_reject"] is False


def test_relay_stopped_falls_back_to_host_figures_and_says_so(clean, run_module):
    stack = clean
    stack.compose("stop", "relay")
    result = run_module(MODULE, {"project_dir": stack.dir, "containers": True})
    assert not result.get("failed"), result.get("msg")
    assert "relay" not in [c["service"] for c in result["containers"]]
    assert result["relay"]["measures"] == "host"
    assert "relay container not found" in result["relay"]["source"]


def test_a_wrong_project_name_fails_clearly(stack, run_module):
    result = run_module(MODULE, {"project_dir": stack.dir, "containers": True, "compose_project": "no-such-project"})
    assert result["failed"] is True
    assert "no running container belongs to compose project 'no-such-project'" in result["msg"]
