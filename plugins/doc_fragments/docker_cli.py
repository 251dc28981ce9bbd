# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The one docker option of the modules; roles and playbooks pass sentry_selfhosted_docker to it.
    DOCUMENTATION = r"""
options:
  docker:
    description:
      - The Docker CLI on the host, a name on the PATH or a path; Compose v2 runs as its C(compose) plugin.
      - The roles and playbooks pass the collection-wide variable C(sentry_selfhosted_docker) here.
    type: str
    default: docker
"""
