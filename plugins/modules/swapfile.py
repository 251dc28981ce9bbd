#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: swapfile
short_description: A swapfile that is created, resized and removed without an unprotected moment
version_added: 0.1.0
author:
  - sentry_selfhosted.memory maintainers (@sentry-selfhosted)
description:
  - Creates a swapfile that C(swapon) accepts on the filesystem that holds it, activates it and keeps one
    C(/etc/fstab) line for it. A file that is already right is left alone.
  - Resizes an active swapfile without leaving the host without swap. An active swapfile cannot be renamed or
    deleted, so a standby file (C(.NAME.swapstandby) beside it) is built and activated first, the canonical file is
    switched off, rebuilt under its own name and activated again, then the standby is switched off and deleted.
    The fstab line names the canonical file throughout. The filesystem must hold both files at once.
  - Before any swap area is switched off, checks that RAM can take back the swap it holds while the RAM in use
    (C(MemTotal - MemAvailable), the figure Relay counts) stays below O(relay_threshold) of RAM; if not, fails with
    the numbers before anything is changed. swapoff is bounded by O(swapoff_timeout); the kernel keeps an
    interrupted area active.
  - Files are written beside their final name (C(.NAME.swapbuild)) and renamed into place after mkswap, so a
    crash never leaves a half-written file under a name in use; left-overs of an interrupted run are removed by
    the next run.
  - A run that changes something holds a host-wide lock, the root-owned file
    C(/var/lib/sentry-selfhosted-memory/swapfile.lock), so two runs never work at once (the second waits up to
    O(swapoff_timeout) seconds, then fails having changed nothing). The lock file is also the journal of the
    standby and build files the module made; a C(.NAME.swapstandby) or C(.NAME.swapbuild) file the journal does
    not list is not removed without O(force).
  - Only the swapfile named by O(path) and its own standby and build files are ever switched off or removed;
    other swap areas (partitions, other files) are never touched.
  - A failure after something was done (for example the fstab cannot be written after swapon) reports
    C(changed) and says in its message what was already done.
  - With O(swappiness) or O(vfs_cache_pressure), also keeps the kernel's swap settings in O(sysctl_file) and, with
    O(sysctl_apply), in the running kernel, so that one call does the whole of the C(swap) role's work.
  - Every run first reads the host and makes a plan (the steps, in order); check mode and C(--diff) report that
    plan, and a real run carries out exactly its steps. A run with nothing to do takes no lock and writes nothing.
  - Returns swap before and after, the settings before and after and Relay's memory figure, read once, so that
    a caller needs no other module to report them.
options:
  path:
    description:
      - Absolute path of the swapfile. Its directory must exist.
    type: path
    required: true
  size:
    description:
      - Size of the swapfile, required with O(state=present).
      - V(auto) applies the collection's one sizing rule for self-hosted Sentry hosts, half of RAM rounded up to a
        whole GiB, at least 2 GiB and at most 16 GiB (see the C(swap) role's README for why).
      - An integer of bytes, or a string with a unit as util-linux reads them; V(K), V(M), V(G), V(T) and
        V(KiB), V(MiB), V(GiB), V(TiB) are powers of 1024, V(KB), V(MB), V(GB), V(TB) powers of 1000
        (V(512M), V(8G), V(8GiB), V(1.5G)).
      - Must be a whole number of pages (the error says what it would round to) and at least what mkswap accepts
        (10 pages).
    type: raw
  state:
    description:
      - V(present) makes the file, activates it and keeps the fstab line; V(absent) switches it off, removes the
        fstab line and deletes it.
    type: str
    choices: [present, absent]
    default: present
  priority:
    description:
      - Swap priority (C(swapon --priority)), from -1 to 32767. When not given the kernel's default applies and an
        existing priority is kept. Changing it on an active file cycles it through the standby file.
    type: int
  fstab:
    description:
      - Keep one fstab line for the file (V(true)) or leave the fstab alone (V(false)).
    type: bool
    default: true
  fstab_path:
    description:
      - The fstab file to keep in step. Only its swap line for O(path) is changed; every other line is kept as is.
    type: path
    default: /etc/fstab
  create_method:
    description:
      - How the file is written.
      - V(auto) preallocates with C(fallocate) on ext4 and xfs and writes zeros with C(dd) elsewhere, and falls
        back to C(dd) when C(swapon) refuses the preallocated file. On btrfs it uses C(btrfs filesystem mkswapfile)
        with btrfs-progs 6.1 or later, else sets No_COW (C(chattr +C)) on the empty file before allocating.
      - V(fallocate) and V(dd) force one way (on btrfs still with No_COW).
    type: str
    choices: [auto, fallocate, dd]
    default: auto
  min_free_disk:
    description:
      - Space that must stay free on the filesystem at the moment the most is written (both files during a
        resize). Bytes or a size with a unit as for O(size).
    type: raw
    default: 1G
  force:
    description:
      - Replace (V(state=present)) or delete (V(state=absent)) a file at O(path) that has no swap signature, and
        remove C(.NAME.swapstandby) and C(.NAME.swapbuild) files the module's journal does not list.
    type: bool
    default: false
  relay_threshold:
    description:
      - Relay's C(health.max_memory_percent) as a fraction in (0, 1]. A swap area is switched off only when RAM in
        use plus the swap it holds stays below this fraction of RAM.
      - When not given, read from O(project_dir)'s C(relay/config.yml), Relay's default 0.95 without one.
    type: float
  project_dir:
    description:
      - The self-hosted checkout. Its C(relay/config.yml) gives Relay's threshold when O(relay_threshold) is not
        given, and its C(.env) Relay's release for the figure returned in RV(relay).
    type: path
    default: /opt/sentry
  swappiness:
    description:
      - C(vm.swappiness) to keep (0 to 200); not given, left alone.
    type: int
  vfs_cache_pressure:
    description:
      - C(vm.vfs_cache_pressure) to keep (0 or more); not given, left alone.
    type: int
  sysctl_file:
    description:
      - A C(sysctl.d) file of the module's own, written whole (root's, mode 0644) with the settings given, when its
        content, mode or owner differ. With O(state=absent) it is removed; the running kernel keeps its values.
      - Not given, no file is kept; the running values are still set (O(sysctl_apply)).
    type: path
  sysctl_apply:
    description:
      - Also set the settings in the running kernel (through C(/proc/sys)), only those whose running value
        differs. V(false) only writes O(sysctl_file), for example in a test container whose kernel is the host's.
    type: bool
    default: true
  swapoff_timeout:
    description:
      - Seconds one C(swapoff) may take; it is interrupted after that and the module fails with the area still
        active. Moving several GiB back into RAM can take minutes.
    type: int
    default: 600
  allow_in_container:
    description:
      - Swap areas are host-wide, so a privileged container can change the host's swap. Inside a container the
        module refuses to act unless this is V(true).
    type: bool
    default: false
attributes:
  check_mode:
    description:
      - Reports what would change, after the same checks (disk space, memory safety), and changes nothing.
      - Where a real run would be refused because of the host itself (inside a container without
        O(allow_in_container), or without CAP_SYS_ADMIN), check mode still shows the plan, warns, and returns
        the reason as RV(blocked).
    support: full
  diff_mode:
    description: Shows the size, activation, priority and fstab line before and after, and O(sysctl_file)'s content.
    support: full
notes:
  - Needs C(mkswap), C(swapon), C(swapoff) and C(timeout) on the host, C(fallocate) or C(dd) to write the file,
    C(chattr) or btrfs-progs on btrfs, and C(chcon) on SELinux hosts (the file gets the C(swapfile_t) type).
  - Refuses tmpfs, overlay, network filesystems, ZFS, compressed btrfs and btrfs subvolumes that have snapshots.
seealso:
  - module: sentry_selfhosted.memory.memory_info
"""

EXAMPLES = r"""
- name: An 8 GiB swapfile
  sentry_selfhosted.memory.swapfile:
    path: /swapfile
    size: 8G

- name: Resize it while it is in use, with a stricter Relay threshold for the safety check
  sentry_selfhosted.memory.swapfile:
    path: /swapfile
    size: 12GiB
    relay_threshold: 0.9
    swapoff_timeout: 900

- name: A swapfile sized for this host, and the kernel's swap settings in a file of their own and the running kernel
  sentry_selfhosted.memory.swapfile:
    path: /swapfile
    size: auto
    swappiness: 60
    vfs_cache_pressure: 100
    sysctl_file: /etc/sysctl.d/60-sentry-selfhosted-swap.conf
    project_dir: /opt/sentry
  register: swap

- name: Say what changed
  ansible.builtin.debug:
    msg: "{{ swap.summary | join('; ') or 'nothing changed' }}; Relay's figure {{ swap.relay.used_percent }}%"

- name: Remove it
  sentry_selfhosted.memory.swapfile:
    path: /swapfile
    state: absent
"""

RETURN = r"""
path:
  description: The swapfile.
  returned: always
  type: str
  sample: /swapfile
size:
  description: Size in bytes after the run (0 when absent).
  returned: always
  type: int
  sample: 8589934592
active:
  description: Whether the file is an active swap area after the run.
  returned: always
  type: bool
priority:
  description: Its swap priority when active, else null.
  returned: always
  type: int
  sample: -2
fstab_line:
  description: The fstab line for the file, or null when absent or O(fstab=false).
  returned: always
  type: str
  sample: /swapfile none swap sw 0 0
method:
  description: How the file was or would be written (C(fallocate), C(dd), C(btrfs-mkswapfile), C(btrfs-nocow-fallocate), C(btrfs-nocow-dd)), null for V(absent).
  returned: always
  type: str
  sample: fallocate
changes:
  description: What changed on the swapfile (or would change in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["activated a standby file while /swapfile was switched off", "rebuilt (4.0 GiB -> 8.0 GiB)", "activated"]
summary:
  description:
    - What this run changed (in check mode, would change), one short line per thing; empty when nothing.
    - The swapfile's figures before and after, then O(sysctl_file) written or removed, then each running value set.
  returned: always
  type: list
  elements: str
  sample: ["/swapfile: 0 B -> 12.0 GiB, active, fstab line added", "/etc/sysctl.d/60-sentry-selfhosted-swap.conf written",
           "vm.swappiness 60 -> 10"]
swap_before:
  description: The host's swap before the run; C(areas) as in C(/proc/swaps), sizes in bytes.
  returned: always
  type: dict
  sample: {total: 0, used: 0, areas: []}
swap_after:
  description:
    - The host's swap after the run, read again when the run changed something.
    - In check mode, where the swapfile would change, the plan's figure (the other areas as they are, the swapfile
      at its size); C(used) is then null.
  returned: always
  type: dict
  sample: {total: 8589930496, used: 0, areas: [{path: /swapfile, type: file, size: 8589930496, used: 0, priority: -2}]}
sysctl_before:
  description: The running values of the settings given, before the run.
  returned: always
  type: dict
  sample: {vm.swappiness: 60, vm.vfs_cache_pressure: 100}
sysctl_after:
  description: The running values after the run (in check mode, planned); the same as before with O(sysctl_apply=false).
  returned: always
  type: dict
  sample: {vm.swappiness: 60, vm.vfs_cache_pressure: 100}
relay:
  description:
    - Relay's memory figure after the run (in check mode, now), as C(sentry_selfhosted.memory.memory_info) returns
      it (the host's figures stand in for Relay's container, which is not looked up), with the threshold the safety
      check used.
  returned: always
  type: dict
  sample: {used_percent: 71.3, threshold: 0.95, headroom: 3865470566, would_reject: false}
blocked:
  description:
    - Why swap cannot act on this host (inside a container without O(allow_in_container), or without
      CAP_SYS_ADMIN), else null. A real run fails with this message; check mode returns the plan with it.
  returned: always
  type: str
  sample: "this looks like a container (/.dockerenv exists): ..."
done:
  description: On a failure half-way, what this run had already done (the task then reports changed).
  returned: failure
  type: list
  elements: str
safety:
  description: On a refused swapoff, the figures of the memory check (RAM total, used, swap to move, threshold).
  returned: failure
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_checkout import DEFAULT_PROJECT_DIR
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import swapfile as sw


class SwapfileModule:
    """Ansible's side: options in, commands through run_command, the result out."""

    def __init__(self, module):
        self.module = module

    def bin_path(self, name, required=False):
        return self.module.get_bin_path(name, required=required, opt_dirs=["/sbin", "/usr/sbin"])

    def run(self, argv, timeout=None):
        if timeout:
            # timeout(1) sends SIGTERM; swapoff then stops and the kernel keeps the area active (rc 124).
            argv = [self.bin_path("timeout", required=True), str(timeout)] + list(argv)
        return self.module.run_command(argv)

    def params(self):
        params = dict(self.module.params)
        if params["state"] == "present":
            if params["size"] is None:
                self.module.fail_json(msg="size is required with state=present")
            original = params["size"]
            wanted = sw.wanted_size(original, hm.read_meminfo()["MemTotal"])
            params["size"] = wanted if str(original).strip().lower() == "auto" else sw.check_size(
                wanted, os.sysconf("SC_PAGE_SIZE"), original)
        params["min_free_disk"] = sw.parse_size(params["min_free_disk"]) if params["min_free_disk"] not in (0, "0") else 0
        if params["priority"] is not None and not -1 <= params["priority"] <= 32767:
            raise sw.SwapfileError("priority must be between -1 and 32767, got %d" % params["priority"])
        if params["relay_threshold"] is not None and not 0 < params["relay_threshold"] <= 1:
            raise sw.SwapfileError("relay_threshold must be in (0, 1], got %s" % params["relay_threshold"])
        if params["swappiness"] is not None and not 0 <= params["swappiness"] <= 200:
            raise sw.SwapfileError("swappiness must be between 0 and 200, got %d" % params["swappiness"])
        if params["vfs_cache_pressure"] is not None and params["vfs_cache_pressure"] < 0:
            raise sw.SwapfileError("vfs_cache_pressure must not be negative, got %d" % params["vfs_cache_pressure"])
        if params["swapoff_timeout"] <= 0:
            raise sw.SwapfileError("swapoff_timeout must be positive, got %d" % params["swapoff_timeout"])
        return params

    def main(self):
        try:
            manager = sw.Swapfile(self.params(), self.run, self.bin_path, check_mode=self.module.check_mode)
            result = manager.present() if self.module.params["state"] == "present" else manager.absent()
        except sw.SwapfileError as exc:
            self.module.fail_json(msg=exc.msg, **exc.details)
        except hm.MemoryReadError as exc:
            self.module.fail_json(msg="cannot read the host's memory state: %s" % exc)
        except (IOError, OSError) as exc:
            self.module.fail_json(msg="%s: %s" % (self.module.params["path"], exc))
        diff = result.pop("diff")
        if result["blocked"]:
            self.module.warn("a real run would be refused: %s" % result["blocked"])
        if self.module._diff:
            result["diff"] = diffs(result["path"], diff, self.module.params["sysctl_file"])
        self.module.exit_json(**result)


def diffs(path, diff, sysctl_file):
    """Ansible's diffs: the swapfile's state, and the settings file's content when it changes."""
    shown = [{"before_header": "%s (before)" % path, "after_header": "%s (after)" % path,
              "before": render(diff["before"]), "after": render(diff["after"])}]
    if diff["sysctl_file"] is not None:
        before, after = diff["sysctl_file"]
        shown.append({"before_header": sysctl_file, "after_header": sysctl_file,
                      "before": before or "", "after": after or ""})
    return shown


def render(state):
    lines = ["size: %s" % (sw.human(state["size"]) if state["size"] else "0"), "active: %s" % str(state["active"]).lower(),
             "priority: %s" % ("null" if state["priority"] is None else state["priority"])]
    if state["fstab"] is not None:
        lines.append("fstab: %s" % (" | ".join(state["fstab"]) if state["fstab"] else "(none)"))
    return "\n".join(lines) + "\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            size=dict(type="raw"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            priority=dict(type="int"),
            fstab=dict(type="bool", default=True),
            fstab_path=dict(type="path", default="/etc/fstab"),
            create_method=dict(type="str", default="auto", choices=["auto", "fallocate", "dd"]),
            min_free_disk=dict(type="raw", default="1G"),
            force=dict(type="bool", default=False),
            relay_threshold=dict(type="float"),
            project_dir=dict(type="path", default=DEFAULT_PROJECT_DIR),
            swappiness=dict(type="int"),
            vfs_cache_pressure=dict(type="int"),
            sysctl_file=dict(type="path"),
            sysctl_apply=dict(type="bool", default=True),
            swapoff_timeout=dict(type="int", default=600),
            allow_in_container=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    SwapfileModule(module).main()


if __name__ == "__main__":
    main()
