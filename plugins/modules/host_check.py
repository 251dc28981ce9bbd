#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: host_check
short_description: Say what a host lacks to run the collection, in one read
version_added: 0.1.0
author:
  - sentry_selfhosted.memory maintainers (@sentry-selfhosted)
description:
  - Reads, and changes nothing, what the collection's roles need on a host.
  - The Python the modules run under (RV(python)).
  - The self-hosted checkout's files at O(project_dir) (RV(checkout_missing)).
  - Whether systemd runs (RV(systemd)), which the timers need.
  - Whether the O(docker) CLI is there (RV(docker_path)), which compose_limits, relay_health and restart_timer call.
  - Whether C(systemd-analyze calendar) takes each of O(calendars) (RV(calendars_refused)).
  - The site playbook runs it first on every host, and stops with one sentence per mistake before anything changes.
extends_documentation_fragment:
  - sentry_selfhosted.memory.checkout
options:
  calendars:
    description:
      - systemd calendar expressions (C(OnCalendar=) values) to check with C(systemd-analyze calendar).
      - Not checked where the host has no C(systemd-analyze).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: The module only reads; check mode reads the same.
    support: full
  diff_mode:
    description: Nothing is written.
    support: none
notes:
  - A host whose Python cannot run Ansible's modules fails this module as it would any other; the site playbook
    turns that failure into a sentence naming the Python needed.
"""

EXAMPLES = r"""
- name: Look for the checkout, systemd, the Docker CLI and the Python that runs modules
  sentry_selfhosted.memory.host_check:
    project_dir: /opt/sentry
    calendars: ["*-*-* 04:30:00"]
  register: host

- name: Stop where the checkout is missing
  ansible.builtin.assert:
    that: host.checkout_missing | length == 0
    fail_msg: "/opt/sentry has no {{ host.checkout_missing | join(', ') }}"
"""

RETURN = r"""
python:
  description: The Python that ran the module.
  returned: always
  type: dict
  contains:
    version:
      description: Its version, major.minor.micro.
      type: str
      sample: 3.11.2
    executable:
      description: Its path.
      type: str
      sample: /usr/bin/python3
checkout_missing:
  description: The files of a self-hosted checkout that O(project_dir) lacks; empty when it is one.
  returned: always
  type: list
  elements: str
  sample: [docker-compose.yml, .env, relay]
systemd:
  description: Whether systemd runs on the host (C(/run/systemd/system) is there).
  returned: always
  type: bool
docker_path:
  description: Where the O(docker) CLI is; null when there is none.
  returned: always
  type: str
  sample: /usr/bin/docker
calendars_refused:
  description: The O(calendars) C(systemd-analyze calendar) refuses; empty when it takes them all or is not there.
  returned: always
  type: list
  elements: str
  sample: ["every day at 4"]
"""

import os
import platform
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck


class HostCheck:
    """The reads, each its own method; ``root`` lets tests use a temporary tree for /run/systemd/system."""

    def __init__(self, module, root="/"):
        self.module = module
        self.root = root

    def run(self):
        params = self.module.params
        return {
            "changed": False,
            "python": {"version": platform.python_version(), "executable": sys.executable},
            "checkout_missing": ck.checkout_missing(params["project_dir"]),
            "systemd": os.path.isdir(os.path.join(self.root, "run", "systemd", "system")),
            "docker_path": self.module.get_bin_path(params["docker"]),
            "calendars_refused": self.calendars_refused(params["calendars"]),
        }

    def calendars_refused(self, calendars):
        analyze = self.module.get_bin_path("systemd-analyze") if calendars else None
        if analyze is None:
            return []
        return [calendar for calendar in calendars
                if self.module.run_command([analyze, "calendar", "--", calendar])[0] != 0]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", default=ck.DEFAULT_PROJECT_DIR),
            docker=dict(type="str", default="docker"),
            calendars=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**HostCheck(module).run())


if __name__ == "__main__":
    main()
