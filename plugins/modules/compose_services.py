#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: compose_services
short_description: The services and profiles of a self-hosted Sentry checkout, read-only
version_added: 0.3.0
author:
  - sentry_selfhosted.memory maintainers (@sentry-selfhosted)
description:
  - Reads the checkout as the host's Docker Compose v2 resolves it (C(.env),
    C(.env.custom), C(COMPOSE_PROFILES), the existing override) and returns its
    services with their profiles and worker counts, the input of the
    P(sentry_selfhosted.memory.memory_budget#filter) filter.
  - Checks the override's service entries against the services the checkout's
    own C(docker-compose.yml) defines (all profiles), as
    M(sentry_selfhosted.memory.compose_override) does before it writes. An entry
    of the operator's own that names a service the checkout no longer has (no
    C(image), C(build) or C(extends) of its own) fails the task with its name
    and line; entries the collection wrote for such services are listed in
    RV(stale_services).
  - With O(peaks_file), also reads the history of peaks of use the plan is made
    from, so that one call gathers what the filter needs besides the host's memory.
  - Writes nothing, on the host or in the checkout.
extends_documentation_fragment:
  - sentry_selfhosted.memory.checkout
  - sentry_selfhosted.memory.checkout.timeout
options:
  peaks_file:
    description:
      - The history of peaks of use that M(sentry_selfhosted.memory.compose_override) keeps (the collection-wide
        C(sentry_selfhosted_peaks_file)), returned as RV(peaks).
      - Only a regular file of the module's user that group and others cannot write is read; a symlink, another
        user's file or a writable one fails the task, naming it, as does a file that is not JSON.
      - Not given, no history is read.
    type: path
attributes:
  check_mode:
    description: Reads the same in check mode.
    support: full
  diff_mode:
    description: Nothing to show; it changes nothing.
    support: none
notes:
  - Standard library only on the managed host; the host's Compose CLI is the YAML parser that decides.
seealso:
  - module: sentry_selfhosted.memory.compose_override
"""

EXAMPLES = r"""
- name: Read the checkout's services
  sentry_selfhosted.memory.compose_services:
    project_dir: /opt/sentry
  register: checkout

- name: Plan limits for them
  ansible.builtin.debug:
    msg: "{{ checkout.service_profiles | sentry_selfhosted.memory.memory_budget(total_memory_mb=16384) }}"
"""

RETURN = r"""
services:
  description: Services of the active profiles, in compose's order.
  returned: always
  type: list
  elements: str
  sample: [clickhouse, kafka, relay, web]
service_profiles:
  description:
    - The same services as dicts with C(name), C(profiles) and C(workers), the input the memory_budget filter takes.
    - C(workers) is the service's concurrency (C(--concurrency) in its command, or a C(*_CONCURRENCY) variable), or null.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "taskworker", "profiles": ["feature-complete"], "workers": 4}]
limit_keys:
  description: Per service, C(mem_limit) or C(deploy) (the key the service uses, which compose_override keeps).
  returned: always
  type: dict
engine:
  description:
    - What the docker CLI drives, C(kind) (docker, podman-docker or snap-docker), C(rootless), C(supported) and a C(note).
  returned: always
  type: dict
compose_version:
  description: The host's Compose version.
  returned: always
  type: str
override:
  description: Path of the checkout's override file (it need not exist).
  returned: always
  type: str
stale_services:
  description: Services the override names with lines of the collection only, which the checkout no longer defines.
  returned: always
  type: list
  elements: str
managed_services:
  description: Services the override holds lines of the collection for.
  returned: always
  type: list
  elements: str
peaks:
  description: The content of O(peaks_file); null without that option or without the file.
  returned: always
  type: dict
  sample: {"version": 1, "since": 1765000000, "services": {"web": {"mb": 1200, "at": 1765000000}}}
notes:
  description: What the reader noticed (engine, stale lines of the collection).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.host_memory import PeaksFileError, read_peaks
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_checkout import Checkout, CheckoutError, checkout_argument_spec, module_compose


def main():
    module = AnsibleModule(
        argument_spec=checkout_argument_spec(peaks_file=dict(type="path")),
        supports_check_mode=True,
    )
    docker = module.get_bin_path(module.params["docker"], required=True)
    checkout = Checkout(module_compose(module, docker), module.tmpdir)
    try:
        # The history first: a file another user controls stops the run before Docker is asked anything.
        peaks = read_peaks(module.params["peaks_file"]) if module.params["peaks_file"] else None
        facts, dummy = checkout.read()
    except PeaksFileError as exc:
        module.fail_json(msg=str(exc))
    except CheckoutError as exc:
        module.fail_json(msg=str(exc), notes=checkout.notes, **exc.details)
    module.exit_json(changed=False, peaks=peaks, **facts)


if __name__ == "__main__":
    main()
