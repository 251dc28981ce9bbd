# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The checkout and the Docker CLI, as every module that reads a checkout takes them (a module may say more of
    # project_dir in its own options); roles and playbooks pass sentry_selfhosted_dir and sentry_selfhosted_docker.
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
