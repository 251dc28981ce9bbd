#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""How long memory_info takes against ansible.builtin.setup (hardware subset).

Today a user gets ansible_memtotal_mb / ansible_swaptotal_mb from `setup` with
gather_subset [hardware]. Both modules are run directly with an arguments file
(``python MODULE ARGS.json``), so Ansible's start-up, the same for both, does
not hide the difference; the runs are interleaved and the medians compared.
End-to-end `ansible localhost -m ...` times are reported too.

Run after `. hacking/env` (it installs the collection this times):
    python bench/memory_info.py [--runs 15]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def installed_module():
    for base in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(":"):
        path = os.path.join(base, "ansible_collections", "sentry_selfhosted", "memory", "plugins", "modules", "memory_info.py")
        if os.path.exists(path):
            return base, path
    sys.exit("bench: the collection is not installed; run `. hacking/env` first")


def timed(argv, env=None):
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or '"failed": true' in proc.stdout:
        sys.exit("bench: %s failed:\n%s%s" % (" ".join(argv), proc.stdout[-2000:], proc.stderr[-2000:]))
    return elapsed, proc.stdout


def args_file(directory, name, args):
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    base, module = installed_module()
    env = dict(os.environ, PYTHONPATH=base)
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "memory_info": [sys.executable, module, args_file(tmp, "mi.json", {})],
            "setup hardware": [sys.executable, "-m", "ansible.modules.setup",
                               args_file(tmp, "setup.json", {"gather_subset": ["!all", "!min", "hardware"]})],
            "empty module (ping)": [sys.executable, "-m", "ansible.modules.ping", args_file(tmp, "ping.json", {})],
        }
        ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
        adhoc = {
            "ansible -m memory_info": [ansible, "localhost", "-c", "local", "-m", "sentry_selfhosted.memory.memory_info"],
            "ansible -m setup hardware": [ansible, "localhost", "-c", "local", "-m", "ansible.builtin.setup",
                                          "-a", "gather_subset=!all,!min,hardware"],
        }
        sizes = {
            "memory_info": len(json.loads(timed(cases["memory_info"], env)[1])),
            "setup hardware": len(json.loads(timed(cases["setup hardware"], env)[1])["ansible_facts"]),
        }
        samples = {name: [] for name in list(cases) + list(adhoc)}
        for dummy in range(options.runs):  # interleaved, so drift hits both alike
            for name, argv in cases.items():
                samples[name].append(timed(argv, env)[0])
        for dummy in range(max(3, options.runs // 3)):
            for name, argv in adhoc.items():
                samples[name].append(timed(argv, dict(env, ANSIBLE_PYTHON_INTERPRETER=sys.executable))[0])
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print("%-28s %10s %6s" % ("case", "median s", "runs"))
    for name, value in medians.items():
        print("%-28s %10.3f %6d" % (name, value, len(samples[name])))
    print("top-level keys returned: memory_info %d, setup hardware %d facts" % (sizes["memory_info"], sizes["setup hardware"]))
    print("ratio memory_info / setup hardware (module only): %.2f  (target <= 0.50)"
          % (medians["memory_info"] / medians["setup hardware"]))
    print("ratio end to end (ansible -m): %.2f" % (medians["ansible -m memory_info"] / medians["ansible -m setup hardware"]))


if __name__ == "__main__":
    main()
