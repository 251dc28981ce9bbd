# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check what an operator set against the roles' own argument specs, in one short sentence per mistake."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Documentation: input_errors.yml, misspelt_variables.yml and size_error.yml beside this file.

import difflib
import glob
import os

import yaml

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.swapfile import SwapfileError, parse_size

ROLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles")
# Names that look like the collection's: a role's prefix, site's, or the collection-wide one.
PREFIXES = ("compose_limits_", "swap_", "relay_health_", "memory_alerts_", "restart_timer_", "site_", "sentry_selfhosted_")
# A name without one of those prefixes is taken for a misspelling only this close to a known name.
CLOSE = 0.85
ACCEPTED = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "path": "a path",
    "list": "a list",
    "dict": "a mapping",
}
_SPECS = {}


def _argument_specs(role):
    """Every entry point of a role's meta/argument_specs.yml (read once)."""
    if role not in _SPECS:
        path = os.path.join(ROLES_DIR, role, "meta", "argument_specs.yml")
        try:
            with open(path, encoding="utf-8") as handle:
                _SPECS[role] = yaml.safe_load(handle)["argument_specs"]
        except (IOError, OSError, KeyError, TypeError) as exc:
            raise AnsibleFilterError("no argument spec for role %r (%s): %s" % (role, path, exc))
    return _SPECS[role]


def _accepted(option):
    """What an option takes, in words."""
    choices = option.get("choices")
    if option.get("type") == "list" and choices:
        return "a list of %s" % ", ".join(str(c) for c in choices)
    if choices:
        return "one of %s" % ", ".join(str(c) for c in choices)
    return ACCEPTED.get(option.get("type", "str"), "a %s" % option.get("type"))


def _shown(value, option):
    if option.get("no_log"):
        return "(hidden, it is a secret)"
    return repr(value) if isinstance(value, str) else str(value)


def input_errors(values, role):
    """One sentence per variable of values that the role's main argument spec refuses (type or choices)."""
    if not isinstance(values, dict):
        raise AnsibleFilterError("input_errors expects a mapping of variable names to values, got %r" % type(values).__name__)
    options = _argument_specs(role)["main"].get("options", {})
    errors = []
    for name in sorted(values):
        option = options.get(name)
        if option is None or values[name] is None:
            continue
        result = ArgumentSpecValidator({name: option}).validate({name: values[name]}, validate_role_argument_spec=True)
        if result.error_messages:
            errors.append("%s=%s is not %s" % (name, _shown(values[name], option), _accepted(option)))
    return errors


def known_variables():
    """Every option of every entry point of every role of the collection."""
    names = set()
    for path in glob.glob(os.path.join(ROLES_DIR, "*", "meta", "argument_specs.yml")):
        for entry in _argument_specs(os.path.basename(os.path.dirname(os.path.dirname(path)))).values():
            names.update(entry.get("options", {}))
    return names


def misspelt_variables(names, known=None):
    """A warning for each name that looks like one of the collection's variables but is none, with the likely one."""
    known_names = known_variables() | set(known or [])
    choices = sorted(known_names)
    warnings = []
    for name in sorted(set(names) - known_names):
        prefixed = name.startswith(PREFIXES)
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6 if prefixed else CLOSE)
        if close:
            warnings.append("%s is not a variable of sentry_selfhosted.memory: did you mean %s?" % (name, close[0]))
        elif prefixed:
            warnings.append("%s is not a variable of sentry_selfhosted.memory (no variable has a close name; "
                            "each role's README lists its variables)" % name)
    return warnings


def size_error(value):
    """Why value is not a size the swapfile module reads (bytes, or 512M, 8G, 8GiB, 8GB), else None."""
    try:
        parse_size(value)
    except SwapfileError as exc:
        return exc.msg
    return None


class FilterModule(object):
    def filters(self):
        return {
            "input_errors": input_errors,
            "misspelt_variables": misspelt_variables,
            "size_error": size_error,
        }
