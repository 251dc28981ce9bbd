#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: compose_override
short_description: Memory limits of a self-hosted Sentry checkout in its docker-compose.override.yml
version_added: 0.1.0
author:
  - sentry_selfhosted.memory maintainers (@sentry-selfhosted)
description:
  - To read a checkout without writing, use
    M(sentry_selfhosted.memory.compose_services); this module returns the same
    facts and, without O(plan), writes nothing.
  - With O(plan) (a result of the P(sentry_selfhosted.memory.memory_budget#filter)
    filter), writes each service's memory limit, C(memswap_limit), reservation,
    the environment that must follow the limit (C(KAFKA_HEAP_OPTS),
    C(MAX_MEMORY_USAGE_RATIO)) and Redis' C(--maxmemory) into
    C(docker-compose.override.yml).
  - The merge edits text, line by line, and touches only the lines it manages
    (each carries the comment C(# sentry_selfhosted.memory)) or the one line of
    a key it takes over; every other byte of the operator's file, comments
    included, stays as it was. Lines it wrote for services the checkout no
    longer has are removed, so an upgrade that drops a service does not leave
    an override that breaks every compose command.
  - On every run, before anything else, the override's service entries are
    checked against the services the checkout's C(docker-compose.yml) defines
    (all profiles). Entries the collection wrote for services the checkout no
    longer has are removed at the next write; an entry of the operator's own
    that names such a service (no C(image), C(build) or C(extends) of its own)
    fails the task with its name and line, and nothing is written.
  - With O(state=absent), every line the collection wrote is removed and the
    operator's part stays. The upgrade playbook lifts the limits this way while
    C(install.sh) runs its migrations.
  - "A service the override has no line of the operator's for is written as one
    line, its keys in a flow mapping and the mark once at its end (C(web: {mem_limit: 1920m,
    mem_reservation: 1024m, memswap_limit: 3840m}  # sentry_selfhosted.memory)); the key-per-line layout of
    earlier releases is converted to it. Inside an entry of the operator's own, each managed key is a line of
    its own, as before."
  - Writes the key the service already uses, C(mem_limit) or
    C(deploy.resources.limits.memory), never both.
  - Before the file is replaced, C(docker compose config) validates the
    checkout with the new override, and the merged result is compared with the
    old one, so that only the managed keys differ; otherwise the task fails and
    the old file stays.
extends_documentation_fragment:
  - sentry_selfhosted.memory.checkout
  - sentry_selfhosted.memory.checkout.timeout
options:
  plan:
    description:
      - A result of the memory_budget filter. Every service of the active
        profiles must be in it, and no other.
      - When not given, nothing is written.
    type: dict
  state:
    description:
      - V(present) writes the limits of O(plan) (or only reads, without a plan).
      - V(absent) removes every line the collection wrote and keeps the operator's part; O(plan) must not be given.
    type: str
    choices: [present, absent]
    default: present
  backup:
    description: Keep a timestamped copy of the override when it changes.
    type: bool
    default: true
  apply:
    description:
      - Recreate the services whose limits changed (C(docker compose up -d
        --no-deps)), and reload nginx when relay was recreated.
      - Only with rootful Docker Engine; with podman-docker, snap Docker or
        rootless Docker the module fails before writing anything.
    type: bool
    default: false
  peaks_file:
    description:
      - Keep the plan's C(peaks) (the history of peaks of use it was made with) in this file, root's own, mode
        C(0600), in a directory only root can change, for the next plan (the collection-wide
        C(sentry_selfhosted_peaks_file)). Not in check mode; never reported as a change, since it records what the
        collection saw rather than something an operator configured.
      - Not given, no history is kept.
    type: path
  adopt:
    description:
      - Take over lines of the operator's own (without the collection's mark) whose values the plan would change, with
        a note per line. They are then the collection's, and O(state=absent) removes them.
      - Without it such a line fails the task before anything is written; a line of the operator's that already says
        what the plan says is left as it is, theirs.
    type: bool
    default: false
attributes:
  check_mode:
    description: Validates and reports what would change; writes and restarts nothing.
    support: full
  diff_mode:
    description: Shows the override before and after.
    support: full
notes:
  - "Flow-style YAML (for example C(web: {mem_limit: 1g})) on a path the
    module has to write is refused with a clear error; change that part of the
    file to block style once."
  - Standard library only on the managed host; the host's Compose CLI is the
    YAML parser that decides.
"""

EXAMPLES = r"""
- name: Read the checkout
  sentry_selfhosted.memory.compose_services:
    project_dir: /opt/sentry
  register: checkout

- name: Lift the limits, keep the operator's own part of the override
  sentry_selfhosted.memory.compose_override:
    project_dir: /opt/sentry
    state: absent

- name: Write the limits and recreate what changed
  sentry_selfhosted.memory.compose_override:
    project_dir: /opt/sentry
    plan: "{{ checkout.service_profiles | sentry_selfhosted.memory.memory_budget(total_memory_mb=16384) }}"
    apply: true
"""

RETURN = r"""
services:
  description: The checkout's services, as M(sentry_selfhosted.memory.compose_services) returns them.
  returned: always
  type: list
  elements: str
service_profiles:
  description: The services with their profiles and workers, as M(sentry_selfhosted.memory.compose_services) returns them.
  returned: always
  type: list
  elements: dict
limit_keys:
  description: Per service, C(mem_limit) or C(deploy) (the key the service uses or will use).
  returned: always
  type: dict
engine:
  description:
    - What the docker CLI drives, as M(sentry_selfhosted.memory.compose_services) returns it.
    - Only rootful Docker Engine is supported for O(apply).
  returned: always
  type: dict
compose_version:
  description: The host's Compose version, which validated the new override.
  returned: always
  type: str
override:
  description: Path of the override file this module writes.
  returned: always
  type: str
backup_file:
  description: The copy of the old override, when one was made.
  returned: when changed and a backup was made
  type: str
changed_services:
  description: Services whose managed values change.
  returned: always
  type: list
  elements: str
recreated:
  description: Services recreated (O(apply)).
  returned: always
  type: list
  elements: str
nginx_reloaded:
  description: Whether nginx was reloaded after relay was recreated.
  returned: always
  type: bool
stale_services:
  description: Services the override names with lines of the collection only, which the checkout no longer defines (removed at the next write).
  returned: always
  type: list
  elements: str
managed_services:
  description: Services the override holds lines of the collection for (before this run).
  returned: always
  type: list
  elements: str
changes:
  description:
    - What this run changed (in check mode, would change), as short sentences; empty when nothing.
  returned: always
  type: list
  elements: str
  sample: ["docker-compose.override.yml: limits of 74 services", "recreate 12 services", "reload nginx"]
notes:
  description: What was left alone and why.
  returned: always
  type: list
  elements: str
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.host_memory import MIB, PeaksFileError, write_peaks
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.managed_file import ManagedFileError
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.yaml_text import MARK, EditError, YamlText
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_checkout import (
    Checkout,
    CheckoutError,
    checkout_argument_spec,
    deploy_memory,
    limit_key,
    module_compose,
    service_config,
)
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import DOCKER_FAULTS, OVERRIDE_FILE, ComposeError


def _plan_problems(plan):
    """What is wrong with the plan's values, before any of them is written (a list of sentences)."""
    def whole(value):
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    problems = []
    services = plan.get("services")
    if not isinstance(services, dict):
        return ["the plan has no services mapping"]
    for name, row in sorted(services.items()):
        if not isinstance(row, dict):
            problems.append("%s: %r is not a mapping" % (name, row))
            continue
        limit, swap, reservation = row.get("mem_limit_mb"), row.get("memswap_limit_mb"), row.get("mem_reservation_mb")
        if not whole(limit):
            problems.append("%s: mem_limit_mb %r is not a positive integer of MiB" % (name, limit))
        elif not whole(swap) or swap < limit:
            problems.append("%s: memswap_limit_mb %r must be an integer of MiB at least mem_limit_mb (%d)" % (name, swap, limit))
        elif reservation is not None and (not whole(reservation) or reservation > limit):
            problems.append("%s: mem_reservation_mb %r must be null or an integer of MiB at most mem_limit_mb (%d)" % (name, reservation, limit))
    for name, variables in sorted((plan.get("environment") or {}).items()):
        if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
            problems.append("environment of %s must map names to strings, not %r" % (name, variables))
    maxmemory = plan.get("redis_maxmemory_mb")
    if maxmemory is not None and not whole(maxmemory):
        problems.append("redis_maxmemory_mb %r is not a positive integer of MiB" % (maxmemory,))
    return problems


def _strip_maxmemory(command):
    out, skip = [], False
    for word in command:
        if skip:
            skip = False
            continue
        if word == "--maxmemory":
            skip = True
            continue
        out.append(word)
    return out


class ComposeOverride:
    def __init__(self, module, compose):
        self.module = module
        self.params = module.params
        self.compose = compose
        self.checkout = Checkout(compose, getattr(module, "tmpdir", None))
        self.file = self.checkout.override
        self.path = self.file.path
        self.notes = self.checkout.notes

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, notes=self.notes, **extra)

    def read_text(self):
        try:
            return self.file.read()
        except ManagedFileError as exc:
            self.fail(str(exc))

    @staticmethod
    def redis_command(old_config):
        """redis' command as compose has it, without a --maxmemory of ours."""
        redis = service_config(old_config, "redis")
        command = redis.get("command")
        if isinstance(command, str):
            command = command.split()
        if not command:
            # 24.8's redis has no command: the image's own (redis-server, or valkey-server for valkey images).
            command = ["valkey-server" if "valkey" in (redis.get("image") or "") else "redis-server"]
        return _strip_maxmemory(command)

    def remove_managed(self, result):
        """state=absent: drop every line of the collection, keep the operator's part (validated first)."""
        old_text = self.read_text()
        doc = YamlText(old_text)
        doc.drop_stale()
        new_text = doc.text()
        if new_text == old_text:
            return result
        try:
            with self.checkout.with_override(new_text) as files:
                self.compose.config(files=files)
        except DOCKER_FAULTS as exc:
            self.fail("%s; the file is left as it was" % exc)
        except ComposeError as exc:
            self.fail("the override without the collection's lines is not valid for this checkout; the file is left as it was: %s" % exc)
        result["changed"] = True
        result["changed_services"] = list(result["managed_services"])
        self.show_diff(result, old_text, new_text)
        if not self.module.check_mode:
            self.write(new_text, result)
        return result

    def render(self, old_text, old_config, plan):
        """The new override text, and the managed values per service for the checks."""
        doc = YamlText(old_text, adopt=self.params.get("adopt"))
        expected = {}
        for name in sorted(plan["services"]):
            row = plan["services"][name]
            key = limit_key(service_config(old_config, name))
            env = dict((plan.get("environment") or {}).get(name) or {})
            expected[name] = {"limit": row["mem_limit_mb"] * MIB, "memswap": row["memswap_limit_mb"] * MIB,
                              "reservation": row["mem_reservation_mb"] * MIB if row.get("mem_reservation_mb") else None,
                              "key": key, "environment": env}
            command = self.planned_command(doc, old_config, plan, name)
            if command is not None:
                expected[name]["command"] = command
            if not doc.set_service(name, self.flow_values(row, key, env, command)):
                self.set_keys(doc, name, row, key, env, command)
        if doc.operator_values:
            raise EditError(
                "the override sets values of its own that the plan would change: %s. Nothing was written. Keep yours by "
                "naming the limits in compose_limits_overrides, or let the collection take these lines over (adopt: true; "
                "role variable compose_limits_adopt), after which they are the collection's and go with state=absent"
                % "; ".join(str(c) for c in doc.operator_values))
        for adopted in doc.adopted:
            self.notes.append("adopted the operator's %s" % adopted)
        doc.drop_stale()
        return doc.text(), expected

    def planned_command(self, doc, old_config, plan, name):
        """redis' command with the planned --maxmemory; None for other services, or when the operator's override sets one."""
        maxmemory = plan.get("redis_maxmemory_mb")
        if name != "redis" or not maxmemory:
            return None
        own = doc.find(["services", name, "command"])
        if own is not None and not own.text.rstrip().endswith(MARK):
            self.notes.append("redis: the override sets its own command; maxmemory is left to the operator")
            return None
        return self.redis_command(old_config) + ["--maxmemory", "%dmb" % maxmemory]

    @staticmethod
    def flow_values(row, key, env, command):
        """The managed keys of one service as (key, YAML text), for its one line in the override."""
        values = []
        if key == "deploy":
            resources = ["limits: {memory: %dM}" % row["mem_limit_mb"]]
            if row.get("mem_reservation_mb"):
                resources.append("reservations: {memory: %dM}" % row["mem_reservation_mb"])
            values.append(("deploy", "{resources: {%s}}" % ", ".join(resources)))
        else:
            values.append(("mem_limit", "%dm" % row["mem_limit_mb"]))
            if row.get("mem_reservation_mb"):
                values.append(("mem_reservation", "%dm" % row["mem_reservation_mb"]))
        values.append(("memswap_limit", "%dm" % row["memswap_limit_mb"]))
        if env:
            values.append(("environment", "{%s}" % ", ".join("%s: %s" % (var, json.dumps(env[var])) for var in sorted(env))))
        if command is not None:
            values.append(("command", json.dumps(command)))
        return values

    @staticmethod
    def set_keys(doc, name, row, key, env, command):
        """The managed keys of one service, a line each, inside the operator's own entry for it."""
        base = ["services", name]
        if key == "deploy":
            doc.set_value(base + ["deploy", "resources", "limits", "memory"], "%dM" % row["mem_limit_mb"])
            if row.get("mem_reservation_mb"):
                doc.set_value(base + ["deploy", "resources", "reservations", "memory"], "%dM" % row["mem_reservation_mb"])
        else:
            doc.set_value(base + ["mem_limit"], "%dm" % row["mem_limit_mb"])
            if row.get("mem_reservation_mb"):
                doc.set_value(base + ["mem_reservation"], "%dm" % row["mem_reservation_mb"])
        doc.set_value(base + ["memswap_limit"], "%dm" % row["memswap_limit_mb"])
        for var in sorted(env):
            doc.set_env(base, var, env[var])
        if command is not None:
            doc.set_value(base + ["command"], json.dumps(command))

    @staticmethod
    def managed_view(config, expected):
        """The merged config with the managed keys taken out, for the 'nothing else changed' check."""
        view = json.loads(json.dumps(config))
        for name, want in expected.items():
            service = (view.get("services") or {}).get(name)
            if service is None:
                continue
            for key in ("mem_limit", "memswap_limit", "mem_reservation"):
                service.pop(key, None)
            resources = (service.get("deploy") or {}).get("resources") or {}
            for kind in ("limits", "reservations"):
                (resources.get(kind) or {}).pop("memory", None)
            for var in want.get("environment", {}):
                (service.get("environment") or {}).pop(var, None)
            if "command" in want:
                service.pop("command", None)
        return _pruned(view)

    def check_result(self, new_config, expected):
        problems = []
        for name, want in expected.items():
            service = service_config(new_config, name)
            limit = deploy_memory(service, "limits") if want["key"] == "deploy" else service.get("mem_limit")
            if limit is None or int(limit) != want["limit"]:
                problems.append("%s: limit %s, wanted %s" % (name, limit, want["limit"]))
            if int(service.get("memswap_limit") or 0) != want["memswap"]:
                problems.append("%s: memswap_limit %s, wanted %s" % (name, service.get("memswap_limit"), want["memswap"]))
            if want["reservation"]:
                got = deploy_memory(service, "reservations") if want["key"] == "deploy" else service.get("mem_reservation")
                if got is None or int(got) != want["reservation"]:
                    problems.append("%s: reservation %s, wanted %s" % (name, got, want["reservation"]))
            for var, value in want["environment"].items():
                if (service.get("environment") or {}).get(var) != value:
                    problems.append("%s: %s is %r, wanted %r" % (name, var, (service.get("environment") or {}).get(var), value))
            if "command" in want and service.get("command") != want["command"]:
                problems.append("%s: command %s, wanted %s" % (name, service.get("command"), want["command"]))
        return problems

    def validate(self, new_text, old_config, expected):
        """Run compose config on the checkout plus the new text; return the merged result."""
        try:
            with self.checkout.with_override(new_text) as files:
                new_config = self.compose.config(files=files)
        except DOCKER_FAULTS as exc:
            self.fail("%s; the old file is left in place" % exc)
        except ComposeError as exc:
            self.fail("the new override is not valid for this checkout; the old file is left in place: %s" % exc)
        problems = self.check_result(new_config, expected)
        if self.managed_view(new_config, expected) != self.managed_view(old_config, expected):
            problems.append("the merged configuration differs outside the managed keys")
        if problems:
            self.fail("the merged override does not say what was planned; the old file is left in place: %s" % "; ".join(problems))
        return new_config

    @staticmethod
    def changed_services(old_config, new_config, expected):
        changed = []
        for name, want in expected.items():
            old, new = service_config(old_config, name), service_config(new_config, name)
            keys = ("mem_limit", "memswap_limit", "mem_reservation", "command")
            if any(old.get(k) != new.get(k) for k in keys) or old.get("deploy") != new.get("deploy") or \
                    any((old.get("environment") or {}).get(v) != (new.get("environment") or {}).get(v) for v in want["environment"]):
                changed.append(name)
        return changed

    def run(self):
        state = self.params.get("state") or "present"
        plan = self.params["plan"]
        if state == "absent" and plan is not None:
            self.fail("state=absent removes the collection's lines; it takes no plan")
        if plan is not None:
            self.check_plan(plan)
        try:
            facts, old_config = self.checkout.read()
        except CheckoutError as exc:
            self.fail(str(exc), **exc.details)
        engine = facts["engine"]
        if self.params["apply"] and plan is not None and not engine["supported"]:
            self.fail("apply is not supported with this engine (%s); nothing was written. Write the limits with apply off "
                      "and recreate the services yourself." % engine["note"], engine=engine)
        services = facts["services"]
        result = dict(facts, changed=False, changed_services=[], recreated=[], nginx_reloaded=False, changes=[])
        if state == "absent":
            return self.with_changes(self.remove_managed(result))
        if plan is None:
            return result
        planned = set((plan.get("services") or {}))
        missing, unknown = [s for s in services if s not in planned], sorted(planned - set(services))
        if missing or unknown:
            self.fail("the plan does not match the checkout's services (missing: %s; not in the checkout: %s)"
                      % (", ".join(missing) or "none", ", ".join(unknown) or "none"))
        old_text = self.read_text()
        try:
            new_text, expected = self.render(old_text, old_config, plan)
        except EditError as exc:
            self.fail("%s: %s" % (self.path, exc))
        if new_text != old_text:
            new_config = self.validate(new_text, old_config, expected)
            result["changed"] = True
            result["changed_services"] = self.changed_services(old_config, new_config, expected)
            self.show_diff(result, old_text, new_text)
            if not self.module.check_mode:
                self.write(new_text, result)
                if self.params["apply"]:
                    self.apply(result)
        self.keep_peaks(plan)
        return self.with_changes(result)

    def show_diff(self, result, old_text, new_text):
        """The override's change as Ansible's diff, in diff mode only: a task's ``diff: false`` keeps it out of a
        run with --diff (Ansible shows any diff a module returns then), as the collection's other modules do."""
        if self.module._diff:
            result["diff"] = dict(before=old_text, after=new_text, before_header=self.path, after_header=self.path)

    def check_plan(self, plan):
        """Refuse a plan that does not fit or holds values that cannot be written, before anything is read or written."""
        if plan.get("fits") is False:
            self.fail("the plan does not fit this host; %s was left as it was: %s" % (self.path, plan.get("refusal")))
        problems = _plan_problems(plan)
        if problems:
            self.fail("the plan's values are not usable; %s was left as it was: %s" % (self.path, "; ".join(problems)))

    def keep_peaks(self, plan):
        if self.params.get("peaks_file") and plan.get("peaks") is not None and not self.module.check_mode:
            try:
                write_peaks(self.params["peaks_file"], plan["peaks"])
            except PeaksFileError as exc:
                self.fail(str(exc))

    def with_changes(self, result):
        """``result`` with RV(changes): what the run changed, or would change in check mode, in short sentences."""
        if not result["changed"]:
            return result
        name, changed = OVERRIDE_FILE, result["changed_services"]
        if self.params.get("state") == "absent":
            result["changes"].append("%s: the collection's lines removed" % name)
        else:
            parts = ["limits of %d service%s" % (len(changed), "" if len(changed) == 1 else "s")] if changed else []
            if result["stale_services"]:
                parts.append("lines of %s removed (gone from the checkout)" % ", ".join(result["stale_services"]))
            result["changes"].append("%s: %s" % (name, "; ".join(parts) or "one line per service, the limits as they were"))
        recreate = result["recreated"] if not self.module.check_mode else changed if self.params["apply"] else []
        if recreate:
            result["changes"].append("recreate %d service%s" % (len(recreate), "" if len(recreate) == 1 else "s"))
            if "relay" in recreate and "nginx" in result["services"]:
                result["changes"].append("reload nginx")
        return result

    def write(self, new_text, result):
        """Replace the override atomically, through a symlink, keeping its mode, owner and line endings, after a backup."""
        try:
            if self.file.exists() and self.params["backup"]:
                result["backup_file"] = self.file.backup()
            self.file.write(new_text)
        except ManagedFileError as exc:
            # A backup made before the write failed is whole: say where it is.
            self.fail(str(exc), **dict((k, result[k]) for k in ("backup_file",) if k in result))

    def apply(self, result):
        try:
            self.compose.up_no_deps(result["changed_services"])
            result["recreated"] = list(result["changed_services"])
            if "relay" in result["recreated"] and "nginx" in result["services"]:
                self.compose.reload_nginx()
                result["nginx_reloaded"] = True
        except ComposeError as exc:
            self.fail("the override was written but recreating the services failed: %s" % exc, **result)


def _pruned(value):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _pruned(item)
            if item not in ({}, None):
                out[key] = item
        return out
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value


def main():
    module = AnsibleModule(
        argument_spec=checkout_argument_spec(
            plan=dict(type="dict"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            backup=dict(type="bool", default=True),
            apply=dict(type="bool", default=False),
            adopt=dict(type="bool", default=False),
            peaks_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    docker = module.get_bin_path(module.params["docker"], required=True)
    compose = module_compose(module, docker)
    module.exit_json(**ComposeOverride(module, compose).run())


if __name__ == "__main__":
    main()
