#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: relay_restart
short_description: Restart Relay (or other services) of a self-hosted Sentry and wait until Relay is ready
version_added: 0.1.0
author:
  - sentry_selfhosted.memory maintainers (@sentry-selfhosted)
description:
  - Runs C(docker compose restart) of O(services) in the self-hosted checkout,
    with the same C(--env-file)s as upstream's scripts.
  - After Relay restarts on a release whose nginx does not follow Relay by
    itself (24.x, where the checkout's compose file has no
    C(depends_on.relay.restart)), runs C(nginx -s reload) in the nginx
    container, because nginx resolves Relay's address only when it starts.
  - Then probes Relay's readiness (C(/api/relay/healthcheck/ready/)) until it
    answers ready or O(timeout) passes; with C(/bin/relay healthcheck --mode ready)
    inside the relay container from Relay 25.8.0 on, else from the nginx
    container over the compose network.
  - Restarts only services that are running; C(docker compose restart) would
    start stopped ones. When none of O(services) runs, or C(install.sh) runs in
    the checkout, nothing is done and RV(stood_aside) says why.
  - Holds the host-wide restart lock shared with the restart_timer role's
    timer, so two restarts never overlap.
extends_documentation_fragment:
  - sentry_selfhosted.memory.checkout
  - sentry_selfhosted.memory.checkout.timeout
options:
  project_dir:
    description:
      - The self-hosted checkout (holds C(docker-compose.yml) and C(.env)).
    type: path
    default: /opt/sentry
  services:
    description:
      - Compose services to restart, in one C(docker compose restart) call.
    type: list
    elements: str
    default: [relay]
  reload_nginx:
    description:
      - Reload nginx after Relay restarts, when the checkout's release needs it
        (see the description). V(false) never reloads.
    type: bool
    default: true
  wait_ready:
    description:
      - Wait for Relay to answer ready after the restart.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for Relay's readiness, and at most for the restart lock.
    type: int
    default: 120
  clear_record:
    description:
      - A file recording a restart still to be done (M(sentry_selfhosted.memory.relay_config)
        O(sentry_selfhosted.memory.relay_config#module:restart_record)), removed once the restart succeeded and
        Relay is ready (or the module stood aside, the stack being down on purpose, and nothing is left to do).
        Kept when the restart fails, and in check mode.
    type: path
attributes:
  check_mode:
    description: Reports the steps it would take (it reads the running services and the compose configuration) and changes nothing.
    support: full
  diff_mode:
    description: Restarts have no file content to diff.
    support: none
notes:
  - Needs the O(docker) CLI with Compose v2 on the host.
  - Fails when Relay is not ready by O(timeout); the services were restarted.
  - The role C(sentry_selfhosted.memory.restart_timer) runs the same action on a
    schedule, or only when memory or readiness says so.
"""

EXAMPLES = r"""
- name: Restart Relay and wait until it takes events again
  sentry_selfhosted.memory.relay_restart:

- name: Restart Relay and the ingest consumers of another checkout
  sentry_selfhosted.memory.relay_restart:
    project_dir: /srv/sentry
    services: [relay, ingest-consumer]
    timeout: 300
"""

RETURN = r"""
actions:
  description: What was done (or in check mode would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["restart relay", "reload nginx", "wait for relay ready"]
ready:
  description: Whether Relay answered ready; null when readiness was not checked.
  returned: always
  type: bool
stood_aside:
  description: Why nothing was done (install.sh running, services stopped), or null.
  returned: always
  type: str
  sample: none of relay is running (the stack is down on purpose or not installed)
release:
  description: Relay's release from C(RELAY_IMAGE) in the checkout, or null when unknown.
  returned: always
  type: str
  sample: 24.8.0
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_compose as sc


class RelayRestartModule:
    """Plans and runs the restart; ``lock`` and ``root`` let tests use a temporary tree."""

    def __init__(self, module, lock_path=None, root="/"):
        self.module = module
        self.params = module.params
        self.lock_path = lock_path or sc.DEFAULT_LOCK_PATH
        self.root = root

    def run(self):
        params = self.params
        project_dir = params["project_dir"]
        bad = [s for s in params["services"] if not sc.valid_service_name(s)]
        if bad:
            self.module.fail_json(msg="not a compose service name: %s" % ", ".join(repr(s) for s in bad))
        if not params["services"]:
            self.module.fail_json(msg="services must name at least one compose service")
        if params["timeout"] < 1:
            self.module.fail_json(msg="timeout must be at least 1 second, got %s" % params["timeout"])
        if not ck.is_selfhosted_checkout(project_dir):
            self.module.fail_json(msg="%s is not a self-hosted checkout (docker-compose.yml, .env and relay/ expected)" % project_dir)
        docker = self.module.get_bin_path(self.params["docker"], required=True)
        release = ck.relay_release(ck.checkout_env(project_dir))
        compose = ck.module_compose(self.module, docker)
        restarter = sc.RelayRestart(compose, release, log=self.module.debug)
        result = dict(changed=False, actions=[], ready=None, stood_aside=None,
                      release=".".join(str(p) for p in release) if release else None)
        lock = sc.RestartLock(self.lock_path)
        if not self.module.check_mode and not lock.acquire(wait=params["timeout"]):
            self.module.fail_json(msg="another restart holds %s; waited %d s" % (self.lock_path, params["timeout"]), **result)
        try:
            compose.version()
            running = restarter.running_services()
            reason = restarter.stand_aside_reason(params["services"], running, self.root)
            if reason:
                result["stood_aside"] = reason
                self.clear_record()
                return result
            steps = restarter.plan(params["services"], running, params["reload_nginx"], params["wait_ready"])
            if self.module.check_mode:
                result["actions"] = [restarter.describe(step) for step in steps]
                result["changed"] = any(step[0] != "wait_ready" for step in steps)
                return result
            actions, ready = restarter.execute(steps, params["timeout"])
        except sc.ComposeError as exc:
            # A step that failed or ran out of time after others were done: say what was done.
            result.update(actions=list(restarter.done), changed=any(not a.startswith("wait") for a in restarter.done))
            self.module.fail_json(msg=str(exc), **result)
        finally:
            lock.release()
        result.update(actions=actions, ready=ready, changed=any(not a.startswith("wait") for a in actions))
        if ready is False:
            self.module.fail_json(msg="Relay is not ready %d s after the restart (%s); see `docker compose logs relay`"
                                  % (params["timeout"], ", ".join(actions)), **result)
        self.clear_record()
        return result

    def clear_record(self):
        path = self.params.get("clear_record")
        if path and os.path.lexists(path) and not self.module.check_mode:
            try:
                os.remove(path)
            except OSError as exc:
                self.module.fail_json(msg="relay restarted, but the record %s cannot be removed: %s" % (path, exc))


def main():
    module = AnsibleModule(
        argument_spec=ck.checkout_argument_spec(
            services=dict(type="list", elements="str", default=["relay"]),
            reload_nginx=dict(type="bool", default=True),
            wait_ready=dict(type="bool", default=True),
            timeout=dict(type="int", default=120),
            clear_record=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**RelayRestartModule(module).run())


if __name__ == "__main__":
    main()
