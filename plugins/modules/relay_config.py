#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: relay_config
short_description: Set Relay's health and spool thresholds in a self-hosted Sentry checkout
version_added: 0.1.0
author:
  - sentry_selfhosted.memory maintainers (@sentry-selfhosted)
description:
  - Sets C(health.max_memory_percent), optionally C(health.max_memory_bytes) and
    C(health.refresh_interval_ms), and the envelope spool (C(spool.envelopes.*))
    in O(project_dir)/relay/config.yml.
  - Edits the file in place, value by value. Every other key, every comment, the
    order and the formatting outside the managed values stay byte-for-byte as
    they were. A missing key is written at the end of its existing section; a missing
    section is appended at the end of the file. The editor is the collection's one
    (module_utils C(yaml_text)), the one that also writes C(docker-compose.override.yml).
  - Knows the Relay release from C(RELAY_IMAGE) in the checkout's C(.env) and
    C(.env.custom) and writes only the spool keys that release reads.
    Releases before 24.11.2 read C(spool.envelopes.max_memory_size); later ones
    read C(spool.envelopes.max_backpressure_memory_percent) instead. An unknown
    release (no tag, C(nightly), a digest) gets the newest schema and a warning.
  - When C(relay/config.yml) is missing it is created from C(relay/config.example.yml),
    as the self-hosted installer does.
  - Every input is checked before anything is written; a file that is not valid
    YAML, or that Relay itself would refuse (a duplicate key), is left untouched.
  - Also refused, naming the file and the line, with nothing written - a file that is not UTF-8 (a Latin-1
    comment); a managed key whose current value Relay cannot read (C(max_memory_percent) set to C(abc), a list,
    a mapping); YAML anchors, aliases or merge keys inside C(health) or C(spool); a flow mapping there that runs
    over several lines (write it on one line or as a block); and aliases anywhere that
    expand to more than 100000 nodes (a billion-laughs file of a few hundred bytes would otherwise take
    minutes).
options:
  project_dir:
    description:
      - The self-hosted checkout (holding C(docker-compose.yml), C(.env) and C(relay/)).
    type: path
    required: true
  max_memory_percent:
    description:
      - C(health.max_memory_percent), a fraction in (0, 1].
      - Relay answers every envelope with HTTP 503 while its memory figure is at or above it.
    type: float
    required: true
  max_memory_bytes:
    description:
      - C(health.max_memory_bytes) in bytes. Not managed when omitted.
    type: int
  refresh_interval_ms:
    description:
      - C(health.refresh_interval_ms). Not managed when omitted.
    type: int
  spool_path:
    description:
      - C(spool.envelopes.path), the SQLite file of the disk spool as seen inside
        the relay container. Relay creates its parent directories.
      - When omitted, no spool key is managed (Relay then buffers in memory only).
    type: str
  spool_max_disk_size:
    description:
      - C(spool.envelopes.max_disk_size) in bytes. Only written together with O(spool_path).
    type: int
  spool_max_backpressure_memory_percent:
    description:
      - C(spool.envelopes.max_backpressure_memory_percent), a fraction in (0, 1]
        below O(max_memory_percent). Only written for Relay 24.11.2 and later,
        and only together with O(spool_path).
    type: float
  spool_max_memory_size:
    description:
      - C(spool.envelopes.max_memory_size) in bytes, the in-memory part of the
        spool before it spills to disk. Only written for Relay before 24.11.2,
        and only together with O(spool_path).
    type: int
  backup:
    description:
      - Keep a timestamped copy of the previous file beside it when the file changes.
    type: bool
    default: true
  restart_record:
    description:
      - A file (root's, mode C(0644), its directory made) recording that relay must restart to read the new
        values, written when this run changes the file and left for the restart to remove
        (M(sentry_selfhosted.memory.relay_restart) O(sentry_selfhosted.memory.relay_restart#module:clear_record)),
        so that a restart that fails (a stopped Docker engine) is done by the next run. Not written in check mode.
      - Not given, nothing is recorded and RV(restart_pending) only says whether the file changes.
    type: path
attributes:
  check_mode:
    description: Reports what would change and writes nothing.
    support: full
  diff_mode:
    description:
      - Shows the change of C(relay/config.yml) as a text diff; a file still to be created is shown against
        C(relay/config.example.yml), which it is made from.
    support: full
requirements:
  - PyYAML on the managed host (Debian/Ubuntu C(python3-yaml)).
notes:
  - Relay ignores keys it does not know, so a key of another release is harmless,
    but it does nothing; this module never writes one.
  - Relay refuses a config file with a duplicate key; so does this module.
"""

EXAMPLES = r"""
- name: Keep Relay's memory check meaningful and buffer bursts on disk
  sentry_selfhosted.memory.relay_config:
    project_dir: /opt/sentry
    max_memory_percent: 0.95
    spool_path: /work/spool/envelopes.db
    spool_max_disk_size: 2147483648
    spool_max_backpressure_memory_percent: 0.8
    spool_max_memory_size: 67108864
  register: relay_config
"""

RETURN = r"""
path:
  description: The file managed.
  returned: always
  type: str
  sample: /opt/sentry/relay/config.yml
release:
  description: Relay's release from C(RELAY_IMAGE), or null when unknown.
  returned: always
  type: str
  sample: 24.8.0
schema:
  description: Which spool keys were used, C(legacy) (before 24.11.2) or C(current).
  returned: always
  type: str
  sample: current
settings:
  description: The managed keys (dotted) and the values now wanted for them.
  returned: always
  type: dict
  sample: {health.max_memory_percent: 0.95, spool.envelopes.path: /work/spool/envelopes.db}
changed_keys:
  description: The dotted keys whose value was (or in check mode would be) written.
  returned: always
  type: list
  elements: str
created:
  description: Whether the file was (or would be) created from C(config.example.yml).
  returned: always
  type: bool
restart_pending:
  description: Whether relay must restart to read the file, because it changes now or O(restart_record) is there from an earlier run.
  returned: always
  type: bool
changes:
  description: What this run changed (in check mode, would change), as short sentences; empty when nothing.
  returned: always
  type: list
  elements: str
  sample: ["relay/config.yml: health.max_memory_percent 0.95, spool.envelopes.max_disk_size 2147483648"]
backup_file:
  description: The copy of the previous file, when one was made.
  returned: when changed and O(backup) is true and the file existed
  type: str
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_program
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_compose
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import yaml_text
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.managed_file import ManagedFile

# Relay 24.11.2 removed spool.envelopes.{min_connections,max_connections,unspool_interval,
# max_memory_size} with the old disk spooler (getsentry/relay#4303).
CURRENT_SPOOL_SINCE = (24, 11, 2)


class RelayConfigError(Exception):
    """A module argument that must not be written."""


def wanted_settings(params, release):
    """The dotted keys this release understands, with their wanted values, after validation."""
    percent = params["max_memory_percent"]
    if percent is None or not 0 < percent <= 1:
        raise RelayConfigError("max_memory_percent must be in (0, 1] (a fraction, 0.95 = 95%%), got %s" % percent)
    backpressure = params.get("spool_max_backpressure_memory_percent")
    if backpressure is not None:
        if not 0 < backpressure <= 1:
            raise RelayConfigError("spool_max_backpressure_memory_percent must be in (0, 1], got %s" % backpressure)
        if backpressure >= percent:
            raise RelayConfigError(
                "spool_max_backpressure_memory_percent (%s) must be below max_memory_percent (%s): "
                "Relay's docs warn that otherwise the two flip-flop" % (backpressure, percent))
    for name in ("max_memory_bytes", "refresh_interval_ms", "spool_max_disk_size", "spool_max_memory_size"):
        value = params.get(name)
        if value is not None and value <= 0:
            raise RelayConfigError("%s must be a positive integer, got %s" % (name, value))
    spool_path = params.get("spool_path")
    if spool_path is not None:
        if not spool_path.startswith("/") or re.search(r"[\x00-\x1f\x7f]", spool_path) or spool_path.endswith("/"):
            raise RelayConfigError("spool_path must be an absolute file path inside the relay container, got %r" % spool_path)

    legacy = release is not None and release < CURRENT_SPOOL_SINCE
    settings = [("health.max_memory_percent", float(percent))]
    if params.get("max_memory_bytes") is not None:
        settings.append(("health.max_memory_bytes", params["max_memory_bytes"]))
    if params.get("refresh_interval_ms") is not None:
        settings.append(("health.refresh_interval_ms", params["refresh_interval_ms"]))
    if spool_path is not None:
        settings.append(("spool.envelopes.path", spool_path))
        if params.get("spool_max_disk_size") is not None:
            settings.append(("spool.envelopes.max_disk_size", params["spool_max_disk_size"]))
        if legacy and params.get("spool_max_memory_size") is not None:
            settings.append(("spool.envelopes.max_memory_size", params["spool_max_memory_size"]))
        if not legacy and backpressure is not None:
            settings.append(("spool.envelopes.max_backpressure_memory_percent", float(backpressure)))
    return ("legacy" if legacy else "current"), settings


class RelayConfig:
    """Reads the checkout, decides the keys and writes relay/config.yml."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.project_dir = self.params["project_dir"]
        self.path = os.path.join(self.project_dir, ck.RELAY_CONFIG)
        self.example = os.path.join(self.project_dir, "relay", "config.example.yml")

    def fail(self, msg):
        self.module.fail_json(msg=msg, path=self.path)

    def read(self, path):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except (IOError, OSError) as exc:
            self.fail("cannot read %s: %s" % (path, exc))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Relay reads its config as UTF-8 too: say where the stray byte is (often a Latin-1 comment).
            line = data.count(b"\n", 0, exc.start) + 1
            self.fail("%s is not UTF-8 text: byte 0x%02x on line %d (Latin-1 or another encoding?); save it as "
                      "UTF-8; nothing was written" % (path, bytearray(data[exc.start:exc.start + 1])[0], line))

    def run(self):
        if not os.path.isdir(self.project_dir) or not ck.is_selfhosted_checkout(self.project_dir):
            self.fail("%s is not a self-hosted Sentry checkout (docker-compose.yml, .env and relay/ are needed); "
                      "set sentry_selfhosted_dir" % self.project_dir)
        release = ck.relay_release(ck.checkout_env(self.project_dir))
        if release is None:
            self.module.warn("the Relay release is unknown (no version tag in RELAY_IMAGE of %s/.env or .env.custom): "
                             "the newest config schema is used" % self.project_dir)
        try:
            schema, settings = wanted_settings(self.params, release)
        except RelayConfigError as exc:
            self.fail(str(exc))

        created = not os.path.exists(self.path)
        source = self.example if created else self.path
        if created and not os.path.isfile(self.example):
            self.fail("neither %s nor %s exists; run the self-hosted installer first" % (self.path, self.example))
        before = self.read(source)
        try:
            after, changed_keys = yaml_text.set_scalars(before, settings, "Relay")
        except yaml_text.EditError as exc:
            self.fail("%s %s" % (source, exc))

        changed = created or after != before
        record = self.params.get("restart_record")
        result = {
            "changed": changed,
            "path": self.path,
            "release": ".".join(str(p) for p in release) if release else None,
            "schema": schema,
            "settings": dict(settings),
            "changed_keys": changed_keys,
            "created": created,
            "restart_pending": changed or bool(record and os.path.exists(record)),
            "changes": [self.change(settings, changed_keys, created)] if changed else [],
        }
        if self.module._diff:
            # A new file is the example with the managed keys: shown against it, only they differ.
            result["diff"] = {
                "before": before,
                "after": after,
                "before_header": "%s (relay/config.yml is made from it)" % self.example if created else self.path,
                "after_header": self.path,
            }
        if changed and not self.module.check_mode:
            if not created and self.params["backup"]:
                result["backup_file"] = self.module.backup_local(self.path)
            self.write(after)
            if record:
                self.record_restart(record, changed_keys)
        return result

    @staticmethod
    def change(settings, changed_keys, created):
        """One short sentence: the file and the keys that change, with their values."""
        values = dict(settings)
        keys = ", ".join("%s %s" % (key, values[key]) for key in changed_keys)
        return "relay/config.yml%s: %s" % (" (made from config.example.yml)" if created else "", keys or "made")

    def record_restart(self, path, changed_keys):
        """Note that relay must restart (kept until a restart succeeds), root's alone to change."""
        try:
            sentry_compose.private_directory(os.path.dirname(path), 0o755)
            host_program.write_atomic(path, json.dumps({"project_dir": self.project_dir, "changed_keys": changed_keys},
                                                       indent=4) + "\n", 0o644)
        except Exception as exc:  # pylint: disable=broad-except
            self.fail("%s was written, but the pending relay restart cannot be recorded in %s: %s"
                      % (self.path, path, to_native(exc)))

    def write(self, text):
        """Through a symlink, keeping mode, owner and line endings; a new file is 0644: Relay reads it as its own user."""
        try:
            ManagedFile(self.path).write(text)
        except Exception as exc:  # pylint: disable=broad-except
            self.fail("cannot write %s: %s" % (self.path, to_native(exc)))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", required=True),
            max_memory_percent=dict(type="float", required=True),
            max_memory_bytes=dict(type="int"),
            refresh_interval_ms=dict(type="int"),
            spool_path=dict(type="str"),
            spool_max_disk_size=dict(type="int"),
            spool_max_backpressure_memory_percent=dict(type="float"),
            spool_max_memory_size=dict(type="int"),
            backup=dict(type="bool", default=True),
            restart_record=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if yaml_text.yaml is None:
        module.fail_json(msg=missing_required_lib("PyYAML (Debian/Ubuntu package python3-yaml)"),
                         exception=yaml_text.YAML_IMPORT_ERROR)
    module.exit_json(**RelayConfig(module).run())


if __name__ == "__main__":
    main()
