#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""A no-change re-run of the site playbook: wall time on 1 and 3 hosts, tasks run, module calls, connection calls.

Each host is a systemd box (podman, the image of hacking/systemd-image) prepared as the molecule scenario `site`
prepares its box (the 25.9.0 checkout when ../shared is beside the project, the real Compose CLI, the docker
stand-in), converged once with molecule/site_fleet/converge.yml (site without swap: swap areas are the host
kernel's, shared by the boxes), then re-run:
- timed, at default verbosity, ``--runs`` times (the median is printed), with the CPU time the whole machine was
  busy meanwhile (controller, connection and boxes; /proc/stat): divided by the CPUs, the least such a run can take;
- once more at -vvv, to count per host the tasks that ran, the tasks that ran a module on the host, and the
  connection calls (the podman connection's RUN and PUT lines; over SSH, each ssh or sftp run).
Every re-run must report changed=0.

With ``--baseline REF`` the same is measured for the collection as it was at git REF (built from `git archive`
into a scratch collections path) and ratios are printed; without it, ratios against the figures of the release
before one module call a role (issue "A fleet re-run in seconds": 90 s a host, 108 tasks, 45 module tasks,
about 507 connection calls; 3 hosts 1.9x one host).

    . hacking/env && python bench/site_rerun.py                    # 1 and 3 hosts
    python bench/site_rerun.py --runs 3 --baseline e1f5334
    python bench/site_rerun.py --connection ssh                    # sshd in each box (image derived once)
"""

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import site_fleet  # noqa: E402 pylint: disable=wrong-import-position

REPO = os.path.dirname(HERE)
# site without swap, as the fleet scenario runs it: swap areas are the host kernel's, shared by every box.
CONVERGE = site_fleet.CONVERGE
# The release before: measured on this kind of machine over the podman connection (issue 27's figures).
BEFORE = {"seconds_1": 90.0, "tasks": 108, "module_tasks": 45, "connection_calls": 507, "ratio_3": 1.9}
CPU_SPENT = []


def busy_cpu_seconds():
    """CPU time the whole machine has spent busy (not idle nor waiting on I/O): the controller, podman and the boxes."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def run(argv, env, verbose=False):
    """(wall seconds, stdout). CPU_SPENT gets (the machine's busy CPU seconds, those of ansible-playbook and the
    processes it waited for: the controller, its workers and connection clients) during the run."""
    args = list(argv) + (["-vvv"] if verbose else [])
    started, cpu_started, own_started = time.monotonic(), busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SPENT.append((busy_cpu_seconds() - cpu_started,
                      own.ru_utime - own_started.ru_utime + own.ru_stime - own_started.ru_stime))
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit("%s failed (rc %d)" % (" ".join(args[-2:]), proc.returncode))
    return seconds, proc.stdout


def recap_changed(stdout):
    return sum(int(changed) for changed in re.findall(r"(?m)^\S+\s+: ok=\d+\s+changed=(\d+)", stdout))


def count_calls(stdout, hosts):
    """Per host: tasks that ran (not skipped), tasks that ran a module on the host (shipped an AnsiballZ_ file),
    and connection calls (the podman connection's RUN and PUT lines; over SSH, each ssh or sftp run)."""
    ran, with_module = set(), set()
    block = 0
    for line in stdout.splitlines():
        if re.match(r"^(TASK|RUNNING HANDLER) \[", line):
            block += 1
            continue
        result = re.match(r"^(?:ok|changed): \[([^\]]+)\]", line)
        if result:
            ran.add((block, result.group(1)))
        # A module is shipped as a file, or with pipelining fed to the interpreter's stdin.
        shipped = re.match(r"^<([^>]+)> (?:PUT .*AnsiballZ_\w+\.py|SSH: EXEC .*python[\d.]* && sleep 0)", line)
        if shipped:
            with_module.add((block, shipped.group(1)))
    calls = len(re.findall(r"(?m)^<[^>]+> (?:RUN|SSH: EXEC) ", stdout))
    if "SSH: EXEC" not in stdout:
        # The podman connection copies a file through the container's mount, a call of its own; over SSH a PUT
        # is an sftp run, counted above.
        calls += len(re.findall(r"(?m)^<[^>]+> PUT ", stdout))
    return {"tasks": len(ran) / hosts, "module_tasks": len(with_module) / hosts, "connection_calls": calls / hosts}


def measure(count, runs, env, tag, connection):
    names = ["bench-rerun-%s-%d" % (tag, index) for index in range(1, count + 1)]
    directory = tempfile.mkdtemp(prefix="bench-site-rerun-")
    try:
        site_fleet.start(names, site_fleet.SSH_IMAGE if connection == "ssh" else site_fleet.IMAGE)
        inventory = site_fleet.inventory(names, directory, connection)
        base = ["ansible-playbook", "-i", inventory]
        run(base + [site_fleet.PREPARE], env)
        dummy, converge_out = run(base + [CONVERGE], env)
        if recap_changed(converge_out) == 0:
            raise SystemExit("the converge changed nothing: the boxes were not fresh")
        times, cpu, controller = [], [], []
        for dummy in range(runs):
            seconds, out = run(base + [CONVERGE], env)
            if recap_changed(out):
                raise SystemExit("a re-run changed %d things:\n%s" % (recap_changed(out), out[-3000:]))
            times.append(seconds)
            cpu.append(CPU_SPENT[-1][0])
            controller.append(CPU_SPENT[-1][1])
        dummy, verbose_out = run(base + [CONVERGE], env, verbose=True)
        figures = count_calls(verbose_out, count)
        figures["seconds"] = statistics.median(times)
        figures["cpu_seconds"] = statistics.median(cpu)
        figures["controller_cpu_seconds"] = statistics.median(controller)
        return figures
    finally:
        site_fleet.remove(names)
        shutil.rmtree(directory, ignore_errors=True)


def baseline_env(ref, env):
    """An environment whose collections path holds the collection as it was at git ``ref``."""
    scratch = tempfile.mkdtemp(prefix="bench-baseline-")
    tree = os.path.join(scratch, "tree")
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", REPO, "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", scratch, tree],
                   check=True, capture_output=True)
    tarball = [name for name in os.listdir(scratch) if name.endswith(".tar.gz")][0]
    collections = os.path.join(scratch, "collections")
    subprocess.run(["ansible-galaxy", "collection", "install", "--offline", "-p", collections,
                    os.path.join(scratch, tarball)], check=True, capture_output=True)
    return dict(env, ANSIBLE_COLLECTIONS_PATH=collections + os.pathsep + os.path.dirname(
        os.path.dirname(os.path.dirname(site_fleet.__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=3, help="the fleet size (default 3)")
    parser.add_argument("--runs", type=int, default=1, help="timed re-runs per fleet (default 1; the median)")
    parser.add_argument("--baseline", help="a git ref to measure the same way, for the ratios")
    parser.add_argument("--connection", choices=("podman", "ssh"), default="podman",
                        help="how Ansible reaches the boxes: the podman connection (default) or SSH (sshd in each box, "
                             "Ansible's ssh connection with its defaults: ControlPersist on, pipelining as configured)")
    args = parser.parse_args()
    if not os.environ.get("DOCKER_CONFIG"):
        raise SystemExit("source hacking/env first (it provides the Compose CLI plugin under DOCKER_CONFIG)")
    site_fleet.ensure_image()
    if args.connection == "ssh":
        site_fleet.ensure_ssh_image()
    env = dict(os.environ, ANSIBLE_FORKS=str(max(5, args.hosts)), ANSIBLE_HOST_KEY_CHECKING="0")
    tag = str(os.getpid())
    now = {1: measure(1, args.runs, env, tag + "-a", args.connection),
           args.hosts: measure(args.hosts, args.runs, env, tag + "-b", args.connection)}
    if args.baseline:
        benv = baseline_env(args.baseline, env)
        then = {1: measure(1, args.runs, benv, tag + "-c", args.connection),
                args.hosts: measure(args.hosts, args.runs, benv, tag + "-d", args.connection)}
        before = dict(then[1], seconds_1=then[1]["seconds"], ratio_3=then[args.hosts]["seconds"] / then[1]["seconds"])
        label = args.baseline
    else:
        before, label = BEFORE, "the release before (recorded)"
    print("site playbook, no-change re-run, %d CPUs, %s connection%s" % (
        os.cpu_count(), args.connection, ", pipelining" if env.get("ANSIBLE_PIPELINING", "").lower() in ("1", "true", "yes") else ""))
    # CPU seconds: the whole machine busy during the run (controller, connection, boxes); divided by the CPUs, the
    # least the run can take. Where it comes near the seconds, more hosts wait for CPU, not for each other.
    # Controller: ansible-playbook and what it waited for (workers, ssh or podman clients); the rest ran in the
    # boxes (and, over podman, in its conmon), which real managed hosts run on their own CPUs.
    print("%-6s %10s %12s %10s %15s %8s %14s %18s" % (
        "hosts", "seconds", "CPU seconds", "CPU floor", "controller CPU", "tasks", "module tasks", "connection calls"))
    for hosts in sorted(now):
        fig = now[hosts]
        print("%-6d %10.1f %12.1f %10.1f %15.1f %8.0f %14.0f %18.0f" % (
            hosts, fig["seconds"], fig["cpu_seconds"], fig["cpu_seconds"] / os.cpu_count(),
            fig["controller_cpu_seconds"], fig["tasks"], fig["module_tasks"], fig["connection_calls"]))
    ratio = now[args.hosts]["seconds"] / now[1]["seconds"]
    print("%d hosts / 1 host: %.2f (against %s: %.2f)" % (args.hosts, ratio, label, before["ratio_3"]))
    print("1 host against %s: time %.2f, tasks %.2f, module tasks %.2f, connection calls %.2f" % (
        label, now[1]["seconds"] / before["seconds_1"], now[1]["tasks"] / before["tasks"],
        now[1]["module_tasks"] / before["module_tasks"], now[1]["connection_calls"] / before["connection_calls"]))


if __name__ == "__main__":
    main()
