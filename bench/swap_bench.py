# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: the swapfile module and the swap role against the dd approach.

1. The module's create-and-activate step (Swapfile.present(), called directly,
   no Ansible start-up) against `dd if=/dev/zero bs=1M` + chmod + mkswap + swapon.
2. The whole swap role by ansible-playbook on localhost against a playbook
   that writes the file with dd the way the most used swap role does, for a
   fresh file and for the idempotent re-run.

Runs are interleaved (A B, B A, A B, ...); medians and ratios are printed.
Everything lives in one directory on the filesystem under test and is
switched off and removed afterwards; other swap areas are never touched.
Needs root and swapon rights; run after `. hacking/env`:

    python bench/swap_bench.py --dir /var/tmp/sentry-memory-swap-test/bench --size 2G --runs 5 --playbook-runs 3
"""

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
# tests/conftest.py makes the source tree importable as the collection.
importlib.import_module("conftest")

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import swapfile as sw  # noqa: E402
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_checkout import DEFAULT_RELAY_THRESHOLD  # noqa: E402

ROLE_PLAYBOOK = """---
- name: Swap role
  hosts: localhost
  gather_facts: false
  roles:
    - role: sentry_selfhosted.memory.swap
      vars:
        swap_file_path: {path}
        swap_file_size: {size}
        swap_fstab_path: {dir}/fstab
        swap_sysctl_file: {dir}/sysctl.conf
        swap_sysctl_apply: false
        swap_allow_in_container: true
"""

# The approach of the most used swap role (dd guarded by `creates`, then
# permissions, mkswap and swapon when the file was written, fstab, swappiness).
DD_PLAYBOOK = """---
- name: Swap with dd
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the swap file with dd
      ansible.builtin.command:
        cmd: dd if=/dev/zero of={path} bs=1M count={mib}
        creates: {path}
      register: swap_file_create
    - name: Set permissions
      ansible.builtin.file:
        path: {path}
        owner: root
        group: root
        mode: "0600"
    - name: Make swap
      ansible.builtin.command: mkswap {path}
      when: swap_file_create is changed
    - name: Swapon
      ansible.builtin.command: swapon {path}
      when: swap_file_create is changed
    - name: Fstab entry
      ansible.posix.mount:
        name: none
        src: {path}
        fstype: swap
        opts: sw
        state: present
        fstab: {dir}/fstab
    - name: Swappiness
      ansible.posix.sysctl:
        name: vm.swappiness
        value: "60"
        state: present
        sysctl_file: {dir}/sysctl.conf
        sysctl_set: false
        reload: false
"""


def run(argv, timeout=None):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
                          check=False)
    return proc.returncode, proc.stdout, proc.stderr


def bin_path(name, required=False):
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def active_under(directory):
    with open("/proc/swaps") as handle:
        return [line.split()[0] for line in handle.read().splitlines()[1:] if line.split()[0].startswith(directory + "/")]


def reset(directory):
    """Switch off and remove whatever the benchmark made; never anything outside its directory."""
    for path in active_under(directory):
        subprocess.run(["swapoff", path], check=True)
    for name in os.listdir(directory):
        full = os.path.join(directory, name)
        if name not in ("role.yml", "dd.yml"):
            os.unlink(full)
    open(os.path.join(directory, "fstab"), "w").close()
    subprocess.run(["sync"], check=True)


def module_step(path, size, directory):
    params = {
        "path": path, "size": size, "state": "present", "priority": None, "fstab": True,
        "fstab_path": os.path.join(directory, "fstab"), "create_method": "auto", "min_free_disk": 1024 ** 3,
        "force": False, "relay_threshold": DEFAULT_RELAY_THRESHOLD, "swapoff_timeout": 600, "allow_in_container": True,
    }
    started = time.monotonic()
    result = sw.Swapfile(params, run, bin_path).present()
    elapsed = time.monotonic() - started
    assert result["active"] and result["method"] == "fallocate", result
    return elapsed


def dd_step(path, size):
    started = time.monotonic()
    for argv in (["dd", "if=/dev/zero", "of=%s" % path, "bs=1M", "count=%d" % (size // 1024 ** 2), "status=none"],
                 ["chmod", "0600", path], ["mkswap", path], ["swapon", path]):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def playbook(playbook_path):
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", playbook_path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit("ansible-playbook %s failed:\n%s" % (playbook_path, proc.stdout[-3000:]))
    return elapsed


def report(title, a_name, a_times, b_name, b_times):
    a, b = statistics.median(a_times), statistics.median(b_times)
    print("%s" % title)
    print("  %-34s median %7.3f s   runs %s" % (a_name, a, " ".join("%.3f" % t for t in a_times)))
    print("  %-34s median %7.3f s   runs %s" % (b_name, b, " ".join("%.3f" % t for t in b_times)))
    print("  ratio %s / %s = %.1fx" % (b_name, a_name, b / a if a else float("inf")))
    return b / a if a else float("inf")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--dir", default="/var/tmp/sentry-memory-swap-test/bench")
    parser.add_argument("--size", default="2G")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--playbook-runs", type=int, default=3)
    parser.add_argument("--skip-playbooks", action="store_true")
    args = parser.parse_args()
    size = sw.parse_size(args.size)
    os.makedirs(args.dir, exist_ok=True)
    directory = os.path.realpath(args.dir)
    path = os.path.join(directory, "swapfile")
    if os.listdir(directory):
        raise SystemExit("%s is not empty; give an empty directory" % directory)
    fstype = sw.mount_of(directory, sw.hm.read_mounts())["fstype"]
    print("swapfile benchmark: %s on %s (%s), %d interleaved runs per side" % (sw.human(size), directory, fstype, args.runs))
    try:
        module_times, dd_times = [], []
        for run_index in range(args.runs):
            # A B, B A, A B, ...: neither side always follows the other's writes.
            for side in (("module", "dd") if run_index % 2 == 0 else ("dd", "module")):
                reset(directory)
                if side == "module":
                    module_times.append(module_step(path, size, directory))
                else:
                    dd_times.append(dd_step(path, size))
        reset(directory)
        report("1. create and activate (no Ansible start-up)", "swapfile module step", module_times,
               "dd + mkswap + swapon", dd_times)
        if args.skip_playbooks:
            return
        with open(os.path.join(directory, "role.yml"), "w") as handle:
            handle.write(ROLE_PLAYBOOK.format(path=path, size=size, dir=directory))
        with open(os.path.join(directory, "dd.yml"), "w") as handle:
            handle.write(DD_PLAYBOOK.format(path=path, mib=size // 1024 ** 2, dir=directory))
        fresh = {"role": [], "dd": []}
        again = {"role": [], "dd": []}
        for run_index in range(args.playbook_runs):
            for name in (("role", "dd") if run_index % 2 == 0 else ("dd", "role")):
                reset(directory)
                fresh[name].append(playbook(os.path.join(directory, name + ".yml")))
                again[name].append(playbook(os.path.join(directory, name + ".yml")))
        print()
        report("2a. ansible-playbook, fresh file", "swap role", fresh["role"], "dd playbook", fresh["dd"])
        print()
        report("2b. ansible-playbook, idempotent re-run", "swap role", again["role"], "dd playbook", again["dd"])
    finally:
        reset(directory)
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
