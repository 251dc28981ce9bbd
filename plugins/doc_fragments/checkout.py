# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # DOCUMENTATION: the checkout and the Docker CLI, as every module that reads a checkout takes them (a module may
    # say more of project_dir in its own options); roles and playbooks pass sentry_selfhosted_dir and
    # sentry_selfhosted_docker. TIMEOUT (sentry_selfhosted.memory.checkout.timeout): for the modules that run Docker
    # commands; its default is sentry_compose.DOCKER_TIMEOUT, and 900 is its RECREATE_TIMEOUT.
    # Attributes of a doc fragment must be plain string literals: ansible-test reads them without running Python.
    DOCUMENTATION = r"""
options:
  project_dir:
    description: The self-hosted checkout.
    type: path
    default: /opt/sentry
  docker:
    description:
      - The Docker CLI on the host, a name on the PATH or a path; Compose v2 runs as its C(compose) plugin.
      - The roles and playbooks pass the collection-wide variable C(sentry_selfhosted_docker) here.
    type: str
    default: docker
"""
    TIMEOUT = r"""
options:
  docker_timeout:
    description:
      - Seconds each Docker or Compose command the module runs may take (C(docker ps), C(docker inspect),
        C(docker compose config), C(docker compose exec) and the like). A command still running then is stopped
        and the task fails, naming the command and the limit, instead of waiting for ever on a stuck daemon.
      - Commands that stop and start containers (C(docker compose up), C(docker compose restart)) may take
        900 seconds, or this value when it is larger.
      - Must be at least 1.
    type: int
    default: 60
"""
