# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check role variables with the shape their host program requires of the setting each one sets."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Documentation: shape_errors.yml beside this file.

from ansible.errors import AnsibleFilterError

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.host_program import ConfigError, checked


def shape_errors(shapes):
    """One sentence per variable whose value has not the shape given with it ({name: [shape, value]})."""
    if not isinstance(shapes, dict):
        raise AnsibleFilterError("shape_errors expects a mapping of variable names to [shape, value], got %r"
                                 % type(shapes).__name__)
    errors = []
    for name in sorted(shapes):
        shape, value = shapes[name]
        try:
            checked(name, tuple(shape) if isinstance(shape, list) else shape, value)
        except ConfigError as exc:
            errors.append(str(exc))
        except ValueError as exc:
            raise AnsibleFilterError("shape_errors: %s for %s" % (exc, name))
    return errors


class FilterModule(object):
    def filters(self):
        return {"shape_errors": shape_errors}
