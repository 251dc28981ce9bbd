#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: memory_info
short_description: Where a self-hosted Sentry host stands on memory, as Relay sees it
version_added: 0.1.0
author:
  - sentry_selfhosted.memory maintainers (@sentry-selfhosted)
description:
  - Reports RAM, swap and every active swap area, the kernel's memory settings,
    memory pressure (PSI) and OOM kills, the cgroup mode, and the memory of each
    container of the self-hosted Sentry compose project.
  - Computes the used/total pair that Relay's C(system memory) health probe
    computes on this host, for the Relay release of the checkout and the
    host's cgroup mode, and whether Relay would now answer every event with
    HTTP 503.
  - Uses psutil for the host's RAM and swap figures when it is importable on
    the host, otherwise reads C(/proc); both give the same figures. cgroup and
    swap-area data always come from the kernel's files.
extends_documentation_fragment:
  - sentry_selfhosted.memory.checkout
  - sentry_selfhosted.memory.checkout.timeout
options:
  relay_threshold:
    description:
      - Relay's C(health.max_memory_percent) as a fraction in (0, 1].
      - When not given, it is read from O(project_dir)/relay/config.yml
        (when that file sets it and PyYAML is importable), else Relay's default
        V(0.95).
    type: float
  relay_max_memory_bytes:
    description:
      - Relay's C(health.max_memory_bytes), when set there.
    type: int
  project_dir:
    description:
      - The self-hosted checkout. Its C(.env) and C(.env.custom) give the Relay
        release (C(RELAY_IMAGE)) and its C(relay/config.yml) the threshold.
      - A missing directory is not an error; the Relay release is then unknown
        and taken to be a current one.
    type: path
    default: /opt/sentry
  containers:
    description:
      - Whether to list the compose project's containers with their memory.
      - When not given, on when the O(docker) CLI is found, off otherwise.
    type: bool
  compose_project:
    description:
      - The compose project name.
      - When not given, C(COMPOSE_PROJECT_NAME) of the checkout's C(.env) and C(.env.custom), else C(sentry-self-hosted).
    type: str
  backend:
    description:
      - Where the host's RAM and swap figures come from.
      - V(auto) uses psutil when it is importable, else C(/proc).
    type: str
    choices: [auto, psutil, procfs]
    default: auto
  top_processes:
    description:
      - How many of the largest processes (by resident memory) to report.
      - The module's own process and its ancestors (the Ansible processes that
        run it) are left out.
    type: int
    default: 5
attributes:
  check_mode:
    description: Can run in check_mode and return the same facts.
    support: full
  diff_mode:
    description: Changes nothing, so there is nothing to diff.
    support: none
notes:
  - Read-only; never changes the host.
  - Inside a container, C(/proc/meminfo) shows the host's figures.
"""

EXAMPLES = r"""
- name: Where does this Sentry host stand?
  sentry_selfhosted.memory.memory_info:
  register: memory

- name: Stop when Relay is about to reject events
  ansible.builtin.assert:
    that: not memory.relay.would_reject
    fail_msg: "Relay is at {{ memory.relay.used_percent }}% of {{ memory.relay.total }} bytes"

- name: Another checkout and a stricter threshold, without containers
  sentry_selfhosted.memory.memory_info:
    project_dir: /srv/sentry
    relay_threshold: 0.9
    containers: false
"""

RETURN = r"""
backend:
  description: Which backend served the RAM and swap figures.
  returned: always
  type: str
  sample: procfs
ram:
  description: RAM in bytes; C(used) is C(MemTotal - MemAvailable), as Relay computes it.
  returned: always
  type: dict
  contains:
    total: {description: "MemTotal.", type: int}
    available: {description: "MemAvailable.", type: int}
    free: {description: "MemFree.", type: int}
    used: {description: "MemTotal - MemAvailable.", type: int}
    used_percent: {description: "used / total in percent.", type: float}
    page_cache: {description: "Cached.", type: int}
    buffers: {description: "Buffers.", type: int}
    anon: {description: "AnonPages.", type: int}
    shmem: {description: "Shmem (tmpfs, shared memory), counted as used though it looks like cache.", type: int}
    slab_unreclaimable: {description: "SUnreclaim.", type: int}
    zfs_arc: {description: "Bytes in the ZFS ARC (not counted in MemAvailable), or null without ZFS.", type: int}
  sample: {total: 16372436992, available: 3000000000, used: 13372436992, used_percent: 81.68}
swap:
  description: Swap totals in bytes and every active swap area from /proc/swaps.
  returned: always
  type: dict
  contains:
    total: {description: "SwapTotal.", type: int}
    free: {description: "SwapFree.", type: int}
    used: {description: "SwapTotal - SwapFree.", type: int}
    areas:
      description: Active swap areas.
      type: list
      elements: dict
      contains:
        path: {description: "Device or file.", type: str}
        type: {description: "C(file) or C(partition).", type: str}
        size: {description: "Size in bytes.", type: int}
        used: {description: "Used bytes.", type: int}
        priority: {description: "Priority.", type: int}
sysctl:
  description: C(vm.swappiness), C(vm.vfs_cache_pressure), C(vm.overcommit_memory), C(vm.overcommit_ratio), C(vm.min_free_kbytes).
  returned: always
  type: dict
  sample: {vm.swappiness: 60, vm.overcommit_memory: 0}
pressure:
  description: Memory pressure from /proc/pressure/memory (C(some) and C(full), each with avg10, avg60, avg300, total), or null without PSI.
  returned: always
  type: dict
psi_available:
  description: Whether the kernel exposes pressure stall information.
  returned: always
  type: bool
oom_kills:
  description: OOM kills since boot (C(oom_kill) in /proc/vmstat), or null on kernels without the counter.
  returned: always
  type: int
cgroup_mode:
  description: C(v1), C(v2), C(hybrid) or C(unknown).
  returned: always
  type: str
container:
  description:
    - Why this host looks like a container (for example C(/.dockerenv exists)), or null on a plain host or VM.
    - The swap role's own check - there swap areas are the host's, and the role refuses to change them unless
      C(swap_allow_in_container) is true - so the audit recommends no swapfile there.
  returned: always
  type: str
  sample: /run/.containerenv exists
relay:
  description: What Relay's memory probe computes on this host and its verdict.
  returned: always
  type: dict
  contains:
    measures:
      description:
        - C(host) (MemTotal - MemAvailable of the whole host), C(cgroup) (the
          relay container's anon memory against its limit) or
          C(host-total-free) (releases before 24.7.1).
      type: str
    source: {description: "What was actually read, with the reason when it differs from what Relay reads.", type: str}
    release: {description: "Relay release from RELAY_IMAGE, or null when unknown.", type: str}
    used: {description: "Bytes Relay counts as used.", type: int}
    total: {description: "Bytes Relay counts as total.", type: int}
    used_percent: {description: "used / total in percent.", type: float}
    threshold: {description: "The rejection threshold as a fraction.", type: float}
    threshold_source: {description: "Where the threshold came from (option, config file, default).", type: str}
    threshold_bytes: {description: "total x threshold.", type: int}
    max_memory_bytes: {description: "health.max_memory_bytes, or null.", type: int}
    headroom: {description: "Bytes left before Relay rejects events (negative once it does).", type: int}
    would_reject: {description: "Whether Relay answers every event with 503 now.", type: bool}
containers:
  description: Running containers of the compose project, the largest C(use) first.
  returned: always
  type: list
  elements: dict
  contains:
    service: {description: "Compose service name.", type: str}
    name: {description: "Container name.", type: str}
    id: {description: "Container ID.", type: str}
    use:
      description:
        - What the container uses - the memory its limit cannot reclaim - in bytes, never page cache. cgroup v2 -
          memory.stat C(anon) + C(shmem) + C(kernel_stack) + C(pagetables) + C(sock) + C(slab_unreclaimable) +
          C(percpu); cgroup v1 - C(total_rss) + C(total_shmem).
        - The figure the compose_limits role sizes from, the audit report shows and the alerts compare with the limit.
      type: int
    usage: {description: "Memory as docker stats shows it (usage less inactive file pages; active page cache included).", type: int}
    anon: {description: "Anonymous memory (what Relay counts for its own container).", type: int}
    current: {description: "The cgroup's whole charge, page cache included.", type: int}
    limit: {description: "The cgroup's memory limit, or null for none.", type: int}
    peak: {description: "Highest charge the kernel recorded (page cache included), or null where the kernel has no such file.", type: int}
    swap: {description: "Swap used by the container, or null where not accounted.", type: int}
top_processes:
  description: The largest processes by resident memory, without the module's own process and its ancestors.
  returned: always
  type: list
  elements: dict
  sample: [{pid: 1234, name: java, rss: 1500000000}]
notes:
  description: Things worth knowing about how the figures were obtained.
  returned: always
  type: list
  elements: str
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.swapfile import container_reason
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import ComposeTimeout


class MemoryInfo:
    """Gathers the report; ``root`` lets tests read a fixture tree and ``run`` (host_program.run_command's shape) answer for docker."""

    def __init__(self, module, root="/", run=None):
        self.module = module
        self.params = module.params
        self.root = root
        self.run = run
        self.notes = []

    def want_containers(self):
        if self.params["containers"] is not None:
            return self.params["containers"]
        return self.module.get_bin_path(self.params["docker"]) is not None

    def containers(self, mode):
        if not self.want_containers():
            self.notes.append("containers were not listed (no docker CLI %s on the PATH)" % self.params["docker"])
            return []
        docker = self.module.get_bin_path(self.params["docker"], required=self.params["containers"] is True)
        if docker is None:
            return []
        project = ck.compose_project_name(ck.checkout_env(self.params["project_dir"], []), self.params["compose_project"])
        compose = ck.module_compose(self.module, docker, self.run)
        try:
            found = ck.list_compose_containers(compose.run_docker, project, docker)
        except (ComposeTimeout, hm.MemoryReadError) as exc:
            # A host short of memory is where dockerd answers slowly: the audit still reports the host's figures
            # then, with a note, unless the containers were asked for.
            if self.params["containers"]:
                self.module.fail_json(msg="cannot list the containers of compose project %s: %s" % (project, exc))
            self.notes.append("containers were not listed: %s" % exc)
            return []
        if not found:
            message = "no running container belongs to compose project %r" % project
            if self.params["containers"]:
                self.module.fail_json(
                    msg=message + "; check compose_project (COMPOSE_PROJECT_NAME in the checkout's .env)")
            self.notes.append(message)
        ck.container_memory(found, mode, self.root)
        found.sort(key=lambda c: c.get("use", 0), reverse=True)
        return found

    def gather(self):
        backend = hm.choose_backend(self.params["backend"], self.root)
        meminfo = backend.meminfo()
        mode = hm.cgroup_mode(self.root)
        containers = self.containers(mode)
        try:
            figure = ck.relay_figure(self.params["project_dir"], self.root, threshold=self.params["relay_threshold"],
                                     max_bytes=self.params["relay_max_memory_bytes"], meminfo=meminfo,
                                     containers=containers)
        except hm.MemoryReadError as exc:
            self.module.fail_json(msg=str(exc))
        self.notes.extend(figure["notes"])
        relay = figure["relay"]
        ram = hm.host_memory_from_meminfo(meminfo)
        ram["zfs_arc"] = hm.read_zfs_arc_size(self.root)
        swap = hm.swap_from_meminfo(meminfo)
        swap["areas"] = hm.read_swaps(self.root)
        pressure = hm.read_pressure(self.root)
        if pressure is None:
            self.notes.append("this kernel has no pressure stall information (/proc/pressure/memory)")
        return {
            "backend": backend.name,
            "ram": ram,
            "swap": swap,
            "sysctl": hm.read_memory_sysctls(self.root),
            "pressure": pressure,
            "psi_available": pressure is not None,
            "oom_kills": hm.read_vmstat(self.root).get("oom_kill"),
            "cgroup_mode": mode,
            "container": container_reason(self.root),
            "relay": relay,
            "containers": containers,
            "top_processes": hm.top_processes(self.root, self.params["top_processes"], leave_out=os.getpid()),
            "notes": self.notes,
        }


def main():
    module = AnsibleModule(
        argument_spec=ck.checkout_argument_spec(
            relay_threshold=dict(type="float"),
            relay_max_memory_bytes=dict(type="int"),
            containers=dict(type="bool"),
            compose_project=dict(type="str"),
            backend=dict(type="str", default="auto", choices=["auto", "psutil", "procfs"]),
            top_processes=dict(type="int", default=5),
        ),
        supports_check_mode=True,
    )
    threshold = module.params["relay_threshold"]
    if threshold is not None and not 0 < threshold <= 1:
        module.fail_json(msg="relay_threshold must be in (0, 1] (Relay's max_memory_percent as a fraction), got %s" % threshold)
    if module.params["top_processes"] < 0:
        module.fail_json(msg="top_processes must not be negative, got %s" % module.params["top_processes"])
    if module.params["backend"] == "psutil":
        try:
            import psutil  # noqa: F401 pylint: disable=unused-import
        except ImportError:
            module.fail_json(msg=missing_required_lib("psutil"), exception=traceback.format_exc())
    try:
        result = MemoryInfo(module).gather()
    except hm.MemoryReadError as exc:
        module.fail_json(msg="cannot read the host's memory state: %s" % exc)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
