#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: host_program
short_description: Install one of the collection's host programs with its configuration and systemd timer, in one call
version_added: 0.1.0
author:
  - sentry_selfhosted.memory maintainers (@sentry-selfhosted)
description:
  - The one installer of the programs the collection runs on hosts from a systemd timer
    (C(sentry_memory_alerts.py) of the memory_alerts role, C(sentry_relay_restart.py) of the restart_timer role).
    The role C(sentry_selfhosted.memory.host_program) calls it; see its README.
  - "Layout, shared by every host program: C(/usr/local/libexec/sentry-selfhosted-memory/) holds the programs and
    the collection's module_utils they import (root's, 0755, files 0644); C(/etc/sentry-selfhosted-memory/) their
    configurations (0600); C(/var/lib/sentry-selfhosted-memory/) their state (the units' C(StateDirectory=))."
  - The module_utils written beside the programs are those this module was built with, so a program always runs
    with the collection release that installed it.
  - Compares every file by checksum, mode and owner and writes (atomically) only what differs.
    Checks the timer's calendars with C(systemd-analyze calendar) and the units with C(systemd-analyze verify)
    only when a unit's content changes, before anything is written.
  - Root runs what the program directory holds and imports from it first, so anything there that is not the
    collection's, not a regular file of root's, or writable by group or others is removed.
  - With O(state=absent), stops and disables the timer, removes the units, the program, its configuration and
    O(files); the shared module_utils and the shared directories go with the last program.
options:
  name:
    description: The units' name (C(NAME.service), C(NAME.timer)) and of the configuration C(NAME.json).
    type: str
    required: true
  program:
    description: The program's file name in the program directory.
    type: str
    required: true
    choices: [sentry_memory_alerts.py, sentry_relay_restart.py]
  state:
    description: Whether the program, its configuration and its timer are installed.
    type: str
    choices: [present, absent]
    default: present
  source:
    description: The program's source text. Required with O(state=present).
    type: str
  config:
    description: The configuration's text (JSON), written to C(/etc/sentry-selfhosted-memory/NAME.json), 0600.
      Required with O(state=present).
    type: str
  units:
    description: The text of C(NAME.service) and C(NAME.timer), keyed by file name. Required with O(state=present).
    type: dict
  calendars:
    description: Every C(OnCalendar=) expression of the timer, checked with C(systemd-analyze calendar).
    type: list
    elements: str
    default: []
  secrets:
    description:
      - Files only root may read (0600), keyed by path, with their text; an empty text removes the file.
        Never shown, logged or diffed.
    type: dict
    default: {}
  data_dirs:
    description: Directories the program writes to, made (root's, 0755) when missing and otherwise left as they are.
    type: list
    elements: path
    default: []
  files:
    description: Further paths of this program (state, output) removed with O(state=absent).
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    description: Reports what it would write, remove and start, and checks calendars and units as a real run would.
    support: full
  diff_mode:
    description:
      - One listing of the managed paths with mode and checksum before and after, and a line diff of a changed
        (not new) configuration or unit; program sources and secrets are never shown.
    support: full
notes:
  - Needs systemd (C(systemctl), C(systemd-analyze)) on the host.
"""

EXAMPLES = r"""
- name: Install the alerts program and its timer
  sentry_selfhosted.memory.host_program:
    name: sentry-memory-alerts
    program: sentry_memory_alerts.py
    source: "{{ lookup('ansible.builtin.file', 'sentry_memory_alerts.py') }}"
    config: "{{ {'project_dir': '/opt/sentry'} | to_nice_json }}"
    units:
      sentry-memory-alerts.service: "{{ lookup('ansible.builtin.template', 'sentry-memory-alerts.service.j2') }}"
      sentry-memory-alerts.timer: "{{ lookup('ansible.builtin.template', 'sentry-memory-alerts.timer.j2') }}"
    calendars: [minutely]

- name: Remove it
  sentry_selfhosted.memory.host_program:
    name: sentry-memory-alerts
    program: sentry_memory_alerts.py
    state: absent
    files: [/var/lib/sentry-selfhosted-memory/memory-alerts-state.json]
"""

RETURN = r"""
changes:
  description: What the run changed (in check mode, would change), one short sentence each; empty when nothing.
  returned: always
  type: list
  elements: str
  sample: ["sentry-memory-alerts: wrote the program, 6 module_utils, the configuration and the units",
           "sentry-memory-alerts.timer: enabled and started"]
written:
  description: The paths written (in check mode, that would be).
  returned: always
  type: list
  elements: str
removed:
  description: The paths removed (in check mode, that would be).
  returned: always
  type: list
  elements: str
"""

import hashlib
import os
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
# The programs import these by their file name: sentry_checkout and host_memory, and the module_utils those two import.
# Imported here, they travel with this module (Ansible ships a module with the module_utils it imports), so the copies
# written beside the programs are of this module's release.
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import (
    host_memory,
    host_program,
    managed_file,
    sentry_checkout,
    sentry_compose,
    yaml_text,
)
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.managed_file import replace_file

SHIPPED = (host_memory, host_program, managed_file, sentry_checkout, sentry_compose, yaml_text)
MODULE_UTILS = tuple(os.path.basename(shipped.__file__) for shipped in SHIPPED)
PROGRAMS = ("sentry_memory_alerts.py", "sentry_relay_restart.py")


class Layout:
    """Where host programs live; one instance per host (tests give a scratch root)."""

    def __init__(self, root="/"):
        self.libexec = os.path.join(root, "usr/local/libexec/sentry-selfhosted-memory")
        self.etc = os.path.join(root, "etc/sentry-selfhosted-memory")
        self.state = os.path.join(root, "var/lib/sentry-selfhosted-memory")
        self.units = os.path.join(root, "etc/systemd/system")

    def shared_dirs(self):
        return [self.libexec, self.etc, self.state]


def module_utils_sources():
    """{file name: bytes} of the module_utils the programs import, as this module carries them (read through their
    loader: on a host they come from the module's zip payload)."""
    return {os.path.basename(shipped.__file__): shipped.__loader__.get_data(shipped.__file__) for shipped in SHIPPED}


def fingerprint(data):
    return hashlib.sha256(data).hexdigest()[:16]


class Entry:
    """A file the installer wants: its bytes and mode, and how it shows in a diff."""

    def __init__(self, path, data, mode, kind):
        self.path, self.data, self.mode, self.kind = path, data, mode, kind

    def describe(self):
        if self.kind == "secret":
            return "%s %04o (secret)" % (self.path, self.mode)
        return "%s %04o sha256:%s" % (self.path, self.mode, fingerprint(self.data))


def describe_existing(path):
    """The listing line of what ``path`` holds now, or None when nothing is there."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return "%s (not a regular file)" % path
    with open(path, "rb") as handle:
        digest = fingerprint(handle.read())
    owner = "" if info.st_uid == 0 else " uid %d" % info.st_uid
    return "%s %04o sha256:%s%s" % (path, stat.S_IMODE(info.st_mode), digest, owner)


def is_current(entry):
    try:
        info = os.lstat(entry.path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != entry.mode or (info.st_uid, info.st_gid) != (0, 0):
        return False
    with open(entry.path, "rb") as handle:
        return handle.read() == entry.data


def is_trusted_program_file(path):
    """Root may import it: a regular file of root's that no one else may write."""
    info = os.lstat(path)
    return stat.S_ISREG(info.st_mode) and info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class InstallError(Exception):
    pass


class HostProgram:
    """Plans (``plan_present``/``plan_absent``) what to write, remove and run, then ``apply``s exactly that."""

    def __init__(self, params, run, layout=None):
        self.params = params
        self.run = run  # argv -> (rc, out, err)
        self.layout = layout or Layout()
        self.name = params["name"]
        self.timer = self.name + ".timer"
        self.service = self.name + ".service"
        # systemctl calls: ``stops`` before anything is removed, ``systemd`` after everything is written.
        self.make_dirs, self.writes, self.removals, self.stops, self.systemd = [], [], [], [], []
        self.diffs = []

    # --- what is wanted -------------------------------------------------------------------------------------
    def wanted_entries(self):
        lay, params = self.layout, self.params
        entries = [Entry(os.path.join(lay.libexec, params["program"]), params["source"].encode("utf-8"), 0o644, "program")]
        entries += [Entry(os.path.join(lay.libexec, name), data, 0o644, "module_utils")
                    for name, data in sorted(module_utils_sources().items())]
        entries.append(Entry(os.path.join(lay.etc, self.name + ".json"), with_newline(params["config"]), 0o600, "configuration"))
        entries += [Entry(os.path.join(lay.units, unit), with_newline(params["units"][unit]), 0o644, "unit")
                    for unit in (self.service, self.timer)]
        entries += [Entry(path, with_newline(text), 0o600, "secret")
                    for path, text in sorted(params["secrets"].items()) if text]
        return entries

    def check_units_given(self):
        given = sorted(self.params["units"] or {})
        if given != sorted([self.service, self.timer]):
            raise InstallError("units must be exactly %s and %s, got %s" % (self.service, self.timer, ", ".join(given) or "none"))

    # --- planning ---------------------------------------------------------------------------------------------
    def plan_present(self):
        self.check_units_given()
        if os.path.islink(self.layout.libexec):
            raise InstallError("%s is a symlink (to %s): root's programs are not installed through it. Remove the link;"
                               " the installer makes the directory." % (self.layout.libexec, os.readlink(self.layout.libexec)))
        for directory in self.layout.shared_dirs():
            if not dir_is_roots(directory, 0o755):
                self.make_dirs.append((directory, 0o755, True))
        for directory in self.params["data_dirs"]:
            if not os.path.isdir(directory):
                self.make_dirs.append((directory, 0o755, False))
        entries = self.wanted_entries()
        self.removals += self.foreign_program_entries(set(entry.path for entry in entries))
        self.removals += [path for path, text in sorted(self.params["secrets"].items()) if not text and os.path.lexists(path)]
        self.writes = [entry for entry in entries if not is_current(entry)]
        units_changed = [entry for entry in self.writes if entry.kind == "unit"]
        if units_changed:
            self.check_calendars()
            self.verify_units()
            self.systemd.append(["systemctl", "daemon-reload"])
        self.plan_timer(restart=bool(units_changed))
        self.diffs = self.listing_diff(entries) + self.text_diffs()

    def foreign_program_entries(self, wanted_paths):
        """What the program directory holds that root must not import: not the collection's, or not root's alone."""
        libexec = self.layout.libexec
        if not os.path.isdir(libexec) or os.path.islink(libexec):
            return []
        ours = set(os.path.join(libexec, name) for name in PROGRAMS + MODULE_UTILS)
        foreign = []
        for name in sorted(os.listdir(libexec)):
            path = os.path.join(libexec, name)
            if path not in ours or not is_trusted_program_file(path):
                # A wanted file that is untrusted is rewritten anyway, but a directory or link in its place must go.
                if path not in wanted_paths or not os.path.isfile(path) or os.path.islink(path):
                    foreign.append(path)
        return foreign

    def check_calendars(self):
        bad = []
        for expression in self.params["calendars"]:
            # "--": an expression such as "--help" is an expression, not an option.
            rc, dummy, err = self.run(["systemd-analyze", "calendar", "--", expression])
            if rc != 0:
                bad.append("%r is not a systemd calendar expression: %s" % (expression, err.strip()))
        if bad:
            raise InstallError("; ".join(bad))

    def verify_units(self):
        scratch = tempfile.mkdtemp(suffix=".host_program")
        try:
            paths = []
            for unit in (self.service, self.timer):
                path = os.path.join(scratch, unit)
                with open(path, "wb") as handle:
                    handle.write(with_newline(self.params["units"][unit]))
                paths.append(path)
            rc, out, err = self.run(["systemd-analyze", "verify"] + paths)
            if rc != 0:
                raise InstallError("systemd-analyze verify refuses the units of %s: %s"
                                   % (self.name, (err or out).strip().replace(scratch + "/", "")))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def plan_timer(self, restart):
        rc, out, dummy = self.run(["systemctl", "is-enabled", self.timer])
        if out.strip() != "enabled":
            self.systemd.append(["systemctl", "enable", self.timer])
        rc, out, dummy = self.run(["systemctl", "is-active", self.timer])
        if rc != 0 or out.strip() != "active":
            self.systemd.append(["systemctl", "start", self.timer])
        elif restart:
            # A running timer keeps its old schedule until restarted.
            self.systemd.append(["systemctl", "restart", self.timer])

    def plan_absent(self):
        lay = self.layout
        unit_paths = [os.path.join(lay.units, unit) for unit in (self.service, self.timer)]
        if os.path.lexists(unit_paths[1]):
            # The service too: a run that is going on.
            self.stops = [["systemctl", "disable", "--now", self.timer], ["systemctl", "stop", self.service]]
        own = unit_paths + [os.path.join(lay.libexec, self.params["program"]), os.path.join(lay.etc, self.name + ".json")]
        own += list(self.params["files"]) + sorted(self.params["secrets"])
        self.removals = [path for path in own if os.path.lexists(path)]
        if any(path in self.removals for path in unit_paths):
            self.systemd += [["systemctl", "daemon-reload"], ["systemctl", "reset-failed", self.service]]
        others = [name for name in PROGRAMS if name != self.params["program"]
                  and os.path.lexists(os.path.join(lay.libexec, name))]
        if not others:
            shared = [os.path.join(lay.libexec, name) for name in MODULE_UTILS + ("__pycache__",)]
            self.removals += [path for path in shared if os.path.lexists(path)]
        self.diffs = [{"before_header": "%s (installed files)" % self.name, "after_header": "%s (installed files)" % self.name,
                       "before": "".join("%s present\n" % path for path in self.removals), "after": ""}]

    # --- reporting --------------------------------------------------------------------------------------------
    def listing_diff(self, entries):
        """One line a managed path: mode and checksum before and after. What is missing has no line before, what
        goes none after, so a first install reads as its new files alone."""
        before, after = [], []
        for entry in entries:
            now = describe_existing(entry.path)
            if entry.kind == "secret" and now:
                now = "%s (secret)" % entry.path if entry not in self.writes else "%s (secret, other)" % entry.path
            if now:
                before.append(now)
            after.append(entry.describe())
        # Only the path of what goes: a secret's checksum is not shown either.
        before += ["%s present" % path for path in self.removals]
        after += ["%s/ directory %04o" % (path, mode) for path, mode, dummy in self.make_dirs if not os.path.isdir(path)]
        header = "%s (installed files)" % self.name
        return [{"before_header": header, "after_header": header,
                 "before": "".join(line + "\n" for line in before), "after": "".join(line + "\n" for line in after)}]

    def text_diffs(self):
        """Line diffs of a configuration or unit that changes (a new file is in the listing: its text is ours)."""
        diffs = []
        for entry in self.writes:
            if entry.kind in ("configuration", "unit") and os.path.isfile(entry.path):
                with open(entry.path, "rb") as handle:
                    before = handle.read().decode("utf-8", "replace")
                diffs.append({"before_header": entry.path, "after_header": entry.path,
                              "before": before, "after": entry.data.decode("utf-8")})
        return diffs

    def changes(self):
        said = []
        if self.writes:
            kinds = [entry.kind for entry in self.writes]
            parts = []
            for kind, one, many in (("program", "the program", "the program"),
                                    ("module_utils", "1 module_utils", "%d module_utils"),
                                    ("configuration", "the configuration", "the configuration"),
                                    ("unit", "a unit", "the units"),
                                    ("secret", "a secret", "%d secrets")):
                count = kinds.count(kind)
                if count:
                    parts.append(one if count == 1 else many.replace("%d", str(count)))
            said.append("%s: wrote %s" % (self.name, join_words(parts)))
        if self.removals:
            said.append("%s: removed %s" % (self.name, ", ".join(self.removals)))
        if self.make_dirs:
            said.append("made %s" % ", ".join(path for path, dummy, dummy2 in self.make_dirs))
        done = {"enable": "enabled", "start": "started", "restart": "restarted", "disable": "stopped and disabled",
                "stop": "stopped"}
        verbs = [done[argv[1]] for argv in self.stops[:1] + self.systemd if argv[1] in done]
        if verbs:
            said.append("%s: %s" % (self.timer, join_words(verbs)))
        return said

    # --- applying ---------------------------------------------------------------------------------------------
    def apply(self):
        self.run_systemctl(self.stops)
        for path, mode, roots in self.make_dirs:
            if not os.path.isdir(path):
                os.makedirs(path, mode)
            if roots:
                os.chown(path, 0, 0)
            os.chmod(path, mode)
        for path in self.removals:
            remove(path)
        for entry in self.writes:
            replace_file(entry.path, entry.data, entry.mode, owner=(0, 0))
        self.run_systemctl(self.systemd)
        if self.params["state"] == "absent":
            for directory in reversed(self.layout.shared_dirs()):
                if os.path.isdir(directory) and not os.listdir(directory):
                    os.rmdir(directory)

    def run_systemctl(self, calls):
        for argv in calls:
            rc, out, err = self.run(argv)
            # reset-failed answers non-zero for a unit systemd has already forgotten.
            if rc != 0 and argv[1] != "reset-failed":
                raise InstallError("%s failed: %s" % (" ".join(argv), (err or out).strip()))

    def result(self):
        return {"changed": bool(self.make_dirs or self.writes or self.removals or self.stops
                                or [argv for argv in self.systemd if argv[1] != "reset-failed"]),
                "changes": self.changes(), "written": [entry.path for entry in self.writes],
                "removed": list(self.removals)}


def with_newline(text):
    text = text or ""
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def join_words(parts):
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def dir_is_roots(path, mode):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == mode and (info.st_uid, info.st_gid) == (0, 0)


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            program=dict(type="str", required=True, choices=list(PROGRAMS)),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            source=dict(type="str"),
            config=dict(type="str"),
            units=dict(type="dict"),
            calendars=dict(type="list", elements="str", default=[]),
            secrets=dict(type="dict", default={}, no_log=True),
            data_dirs=dict(type="list", elements="path", default=[]),
            files=dict(type="list", elements="path", default=[]),
        ),
        required_if=[("state", "present", ("source", "config", "units"))],
        supports_check_mode=True,
    )
    installer = HostProgram(module.params, module.run_command)
    try:
        if module.params["state"] == "present":
            installer.plan_present()
        else:
            installer.plan_absent()
        if not module.check_mode:
            installer.apply()
    except (InstallError, OSError) as exc:
        module.fail_json(msg=str(exc), **installer.result())
    result = installer.result()
    if module._diff and result["changed"]:
        result["diff"] = installer.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
