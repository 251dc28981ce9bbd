# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""relay/config.yml files for the tests of its edit (module_utils/yaml_text) and of the module that makes it
(relay_config): the project's operator fixtures, upstream's examples, and what an exact edit leaves."""

import difflib
import os
import re

import pytest
import yaml

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.yaml_text import get_dotted

import checkouts
from checkouts import UPSTREAM

# The tests of relay/config.yml name the project and its Relay config fixtures from here.
REPO = checkouts.REPO
FIXTURES = checkouts.RELAY_CONFIGS
MANAGED_NAMES = ("max_memory_percent", "max_memory_bytes", "refresh_interval_ms", "path",
                 "max_disk_size", "max_backpressure_memory_percent", "max_memory_size")
PARENTS = ("health", "spool", "envelopes")


def read(path):
    with open(path, newline="") as handle:
        return handle.read()


def upstream_example(release):
    path = os.path.join(UPSTREAM, release, "relay", "config.example.yml")
    if not os.path.isdir(UPSTREAM):
        pytest.skip("../shared/upstream is not present in this checkout")
    return read(path)


def assert_only_managed_lines_differ(before, after):
    """Removed lines are managed values (or an emptied null section); added lines are managed keys or their parents."""
    managed_key = re.compile(r"^\s*(%s):\s" % "|".join(MANAGED_NAMES))
    parent_key = re.compile(r"^\s*(%s):\s*$" % "|".join(PARENTS))
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        tag, text = line[:2], line[2:]
        if tag == "- ":
            assert managed_key.match(text) or re.match(r"^\s*(health|spool):\s*(~|null)?\s*$", text) or (
                text.lstrip().startswith(("health: {", "envelopes: {"))), "an unmanaged line was changed: %r" % text
        elif tag == "+ ":
            assert managed_key.match(text) or parent_key.match(text) or (
                text.lstrip().startswith(("health: {", "envelopes: {"))), "an unmanaged line was added: %r" % text


def assert_managed_values(text, settings):
    data = yaml.safe_load(text)
    for dotted, want in settings:
        assert get_dotted(data, dotted) == want, dotted
