#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""How long one memory_alerts check takes, and what the alternative costs.

The check reads each container's memory from its cgroup files after one
`docker ps` and one `docker inspect`. The alternative a user would otherwise
reach for is `docker stats --no-stream`, which asks the engine to collect
stats of every container (about a second per container batch on a busy host).

Part 1 (always): the check's own work on a synthetic cgroup v2 host with
N containers and a full hour of history (N series of 60 samples for the
Theil-Sen fits): sampling, the trend, and a whole run with metrics and state
written. The docker CLI is answered in-process here, so this is the program's
cost alone.

Part 2 (only when a Docker engine answers, e.g. DOCKER_HOST of a private
dockerd): `docker ps` + `docker inspect` + cgroup reads against
`docker stats --no-stream` for the engine's running containers, interleaved,
medians and their ratio. Nothing is started or stopped on that engine.

    python bench/memory_alerts.py [--containers 60] [--runs 15]
"""

import argparse
import importlib.util
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "plugins", "module_utils"))
SPEC = importlib.util.spec_from_file_location(
    "sentry_memory_alerts", os.path.join(REPO, "roles", "memory_alerts", "files", "sentry_memory_alerts.py"))
alerts = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(alerts)
MIB = alerts.MIB

from timing import median_time  # noqa: E402  pylint: disable=wrong-import-position


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def synthetic_host(root, count):
    """A cgroup v2 host with ``count`` compose containers; returns the docker inspect items."""
    write(os.path.join(root, "proc/meminfo"),
          "MemTotal: 16000000 kB\nMemFree: 500000 kB\nMemAvailable: 3000000 kB\nSwapTotal: 8000000 kB\nSwapFree: 7000000 kB\n")
    write(os.path.join(root, "proc/self/mounts"), "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")
    write(os.path.join(root, "proc/swaps"), "Filename Type Size Used Priority\n/swapfile file 8000000 1000000 -2\n")
    write(os.path.join(root, "proc/vmstat"), "oom_kill 0\n")
    write(os.path.join(root, "proc/pressure/memory"),
          "some avg10=1.00 avg60=0.50 avg300=0.10 total=1000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=10\n")
    items = []
    for index in range(count):
        cid = "%064x" % (index + 1)
        pid = 1000 + index
        scope = "/system.slice/docker-%s.scope" % cid
        write(os.path.join(root, "proc/%d/cgroup" % pid), "0::%s\n" % scope)
        base = os.path.join(root, "sys/fs/cgroup" + scope)
        usage = (100 + index * 7) * MIB
        write(os.path.join(base, "memory.current"), "%d\n" % usage)
        write(os.path.join(base, "memory.max"), "%d\n" % (2 * usage))
        write(os.path.join(base, "memory.peak"), "%d\n" % usage)
        write(os.path.join(base, "memory.stat"), "anon %d\nfile %d\ninactive_file %d\n" % (usage - 20 * MIB, 20 * MIB, 10 * MIB))
        service = "relay" if index == 0 else "service%d" % index
        items.append({"Id": cid, "Name": "/sentry-self-hosted-%s-1" % service, "State": {"Pid": pid},
                      "Config": {"Labels": {"com.docker.compose.service": service}},
                      "HostConfig": {"Memory": 2 * usage}})
    return items


def fake_docker(items):
    ps = "".join(i["Id"] + "\n" for i in items)
    inspect = json.dumps(items)

    def run(argv):
        return (0, ps, "") if argv[1] == "ps" else (0, inspect, "")
    return run


def part_one(count, runs):
    tmp = tempfile.mkdtemp()
    try:
        root = os.path.join(tmp, "host")
        items = synthetic_host(root, count)
        run = fake_docker(items)
        os.makedirs(os.path.join(tmp, "checkout"))
        write(os.path.join(tmp, "checkout", ".env"), "RELAY_IMAGE=getsentry/relay:24.8.0\n")
        os.makedirs(os.path.join(tmp, "metrics"))
        config = alerts.make_config({"project_dir": os.path.join(tmp, "checkout"),
                                     "state_file": os.path.join(tmp, "state", "state.json"),
                                     "peaks_file": os.path.join(tmp, "state", "use-peaks.json"),
                                     "metrics_file": os.path.join(tmp, "metrics", "sentry_memory.prom"), "host": "bench"})

        def which(name):
            return "/usr/bin/docker"
        sample = alerts.sample(config, 0.0, root, run, which)
        assert len(sample["containers"]) == count and sample["containers_listed"]
        history = []
        for minute in range(61):
            history = alerts.record(history, sample, minute * 60.0, config)
        now = 60 * 60.0
        levels = alerts.relay_levels(config, sample["relay"])
        # A state file holding that full hour, so the whole run fits N series of 60 samples.
        state = {"version": 1, "alerts": {}, "history": history}
        alerts.save_state(config["state_file"], state)
        quiet = alerts.hp.Journal(io.StringIO(), systemd=True)

        def whole_run():
            alerts.save_state(config["state_file"], state)
            alerts.run_once(config, quiet, now + 1, root, run, which)
        results = {
            "sample (cgroup files, %d containers)" % count: median_time(lambda: alerts.sample(config, 0.0, root, run, which), runs),
            "relay trend (Theil-Sen, 61 samples)": median_time(
                lambda: alerts.relay_trend(history, now, sample["relay"], levels["reject"], config), runs),
            "container growth (%d series x 61)" % count: median_time(lambda: alerts.container_growth(history, now, config), runs),
            "whole run (state, metrics, journal)": median_time(whole_run, runs),
        }
    finally:
        shutil.rmtree(tmp)
    print("Part 1: the check's own work (docker CLI answered in-process)")
    for name, value in results.items():
        print("  %-42s %8.1f ms" % (name, value * 1000))


def timed(argv):
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    return time.perf_counter() - start, proc


def part_two(runs):
    docker = shutil.which("docker")
    if docker is None:
        print("Part 2: not measured (no docker CLI)")
        return
    elapsed, proc = timed([docker, "ps", "-q", "--no-trunc"])
    if proc.returncode != 0:
        print("Part 2: not measured (no Docker engine answers: %s)" % proc.stderr.strip().splitlines()[-1:])
        return
    ids = proc.stdout.split()
    if not ids:
        print("Part 2: not measured (the engine runs no container)")
        return
    from host_memory import cgroup_mode  # pylint: disable=import-error
    from sentry_checkout import container_memory  # pylint: disable=import-error

    def ours():
        start = time.perf_counter()
        rc, out, err = alerts.run_argv([docker, "ps", "-q", "--no-trunc"])
        rc, out, err = alerts.run_argv([docker, "inspect"] + out.split())
        found = [{"pid": item["State"]["Pid"], "name": item["Name"]} for item in json.loads(out)]
        container_memory(found, cgroup_mode())
        return time.perf_counter() - start

    def stats():
        return timed([docker, "stats", "--no-stream", "--format", "{{json .}}"])[0]
    mine, theirs = [], []
    for dummy in range(runs):
        mine.append(ours())
        theirs.append(stats())
    print("Part 2: %d running containers on %s" % (len(ids), os.environ.get("DOCKER_HOST", "the default engine")))
    print("  ps + inspect + cgroup files   %8.3f s (median of %d)" % (statistics.median(mine), runs))
    print("  docker stats --no-stream      %8.3f s (median of %d)" % (statistics.median(theirs), runs))
    print("  ratio docker stats / ours     %8.1f" % (statistics.median(theirs) / statistics.median(mine)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--containers", type=int, default=60)
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    part_one(options.containers, options.runs)
    part_two(max(3, options.runs // 3))


if __name__ == "__main__":
    main()
